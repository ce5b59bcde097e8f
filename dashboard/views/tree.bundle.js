const VOCABULARY = {"icons":{"workflow":["📋","▤"],"task":["●","●"],"sequence":["➡","→"],"parallel":["⇶","⇉"],"merge-queue":["🔀","⇄"],"branch":["⑂","⋔"],"loop":["↻","↻"],"worktree":["🌳","⎇"],"approval":["✋","⚑"],"timer":["⏱","◔"],"subflow":["🔗","↪"],"wait-for-event":["📡","◷"],"saga":["🔄","⟲"],"try-catch":["🛡","◈"],"fragment":["📦","▭"],"unknown":["❓","?"]},"running":["in-progress","retrying"],"failed":"failed"}
// ---- tree_row.js
// tree_row.js: the row record of the node tree and how a row reads (part of tree.js; see
// TREE_MODULES in dashboard/views/tree.py, which serves the parts as one module).
//
// Defines the layout constants, the packed-row decoding (unpack), the roll-up predicates
// (isFailed / isRunning), the search text of a row, number formatting and the node icons.
// Uses VOCABULARY, which dashboard/treerows.py tree_vocabulary_js() puts before every part.

const ROW_H = 22
const OVERSCAN = 8
const INDENT = 14
// Must match dashboard/treerows.py WIRE_KEYS.
const WIRE = ["id", "parent", "depth", "type", "label", "state", "nodeId", "attempt", "maxAttempts", "iteration"]
// VOCABULARY (node type -> [emoji, plain] icons, the task states counted as running and
// the one counted as failed) is not defined here: dashboard/treerows.py tree_vocabulary_js() prepends it from
// inspector/vocabulary.py when the module is served, so the browser uses the server's words.
const ICONS = VOCABULARY.icons
const RUNNING = new Set(VOCABULARY.running)
const FAILED = VOCABULARY.failed
const NUMBER = new Intl.NumberFormat()  // toLocaleString builds a formatter per call
const fmt = (n) => NUMBER.format(n)
// A compact token count for a task row: 950, 12.3k, 4.56M.
const fmtTokens = (n) => (n < 1000 ? String(n) : n < 1e6 ? `${(n / 1000).toFixed(n < 1e5 ? 1 : 0)}k` : `${(n / 1e6).toFixed(2)}M`)

let glyphs = null

// Pick each icon's emoji if the machine can draw it, else a plain Unicode fallback:
// kiosks often have no colour-emoji font, and a row of tofu boxes reads as "broken".
function iconFor(type) {
  if (glyphs === null) {
    glyphs = {}
    let probe = null
    try {
      const canvas = document.createElement("canvas")
      canvas.width = canvas.height = 24
      probe = canvas.getContext("2d", {willReadFrequently: true})
    } catch (e) { probe = null }
    const draw = (ch) => {
      probe.clearRect(0, 0, 24, 24)
      probe.font = "18px sans-serif"
      probe.textBaseline = "top"
      probe.fillStyle = "#000"
      probe.fillText(ch, 2, 2)
      return probe.getImageData(0, 0, 24, 24).data.join(",")
    }
    let missing = null
    if (probe) {
      try { missing = draw("\u{10FFFD}") } catch (e) { probe = null }
    }
    for (const [key, [emoji, plain]] of Object.entries(ICONS)) {
      let ok = true
      if (probe && emoji !== plain) {
        try { ok = draw(emoji) !== missing } catch (e) { ok = true }
      }
      glyphs[key] = ok ? emoji : plain
    }
  }
  return glyphs[type] ?? glyphs.unknown
}

// One object shape for every row (absent values are null): V8 keeps row access
// monomorphic, which halves the cost of a 10,000-row reset.
function unpack(a) {
  return {
    id: a[0], parent: a[1] ?? null, depth: a[2] ?? 0, type: a[3] ?? "unknown", label: a[4] ?? "",
    state: a[5] ?? null, nodeId: a[6] ?? null, attempt: a[7] ?? null, maxAttempts: a[8] ?? null,
    iteration: a[9] ?? null, v: 0, f: 0, r: 0, hay: null,
  }
}

const isFailed = (row) => (row.state === FAILED ? 1 : 0)
const isRunning = (row) => (RUNNING.has(row.state) ? 1 : 0)

function haystack(row) {
  return `${row.label ?? ""}\n${row.nodeId ?? ""}\n${row.state ?? ""}\n${row.type ?? ""}`.toLowerCase()
}

// A DOM element with a class (the views build every node this way, never from HTML text).
function el(tag, cls) {
  const node = document.createElement(tag)
  if (cls) { node.className = cls }
  return node
}

// ---- tree_beats.js
// tree_beats.js: how long ago each task last sent task.heartbeat, and the row tooltip that
// says it (part of tree.js; see TREE_MODULES in dashboard/views/tree.py).
//
// Python sends {type:"beats", now, beats:"{nodeId: {iteration: atMs}}", merge} (dashboard/
// views/tree.py TreeComponent.send_heartbeats), at most once a second: the whole table after
// every "ready", else (merge: true) only the entries that changed.
// The ages are worked out here against the browser's clock, corrected by the server's
// `now` at sending, so a row's "heartbeat 3 s ago" keeps counting between messages without
// any traffic (TreeView ticks the rows on screen once a second).

const BEAT_TICK_MS = 1000

// Seconds as the server's dashboard/format.py format_duration writes them:
// 0.4 s, 12 s, 3 min 05 s, 2 h 07 min, 3 d 4 h.
function fmtDuration(seconds) {
  const s = Math.max(0, seconds)
  if (s < 10) { return `${s.toFixed(1)} s` }
  const whole = Math.floor(s)
  if (whole < 60) { return `${whole} s` }
  const minutes = Math.floor(whole / 60)
  if (minutes < 60) { return `${minutes} min ${String(whole % 60).padStart(2, "0")} s` }
  const hours = Math.floor(minutes / 60)
  if (hours < 24) { return `${hours} h ${String(minutes % 60).padStart(2, "0")} min` }
  return `${Math.floor(hours / 24)} d ${hours % 24} h`
}

class Heartbeats {
  constructor() {
    this.at = new Map()   // nodeId -> Map(iteration -> server time in ms)
    this.offset = 0       // browser clock minus server clock, at the last message
  }

  get size() { return this.at.size }

  // One "beats" message: the whole table (replaces every entry), or with `merge` only the
  // entries that changed since the last message (a long run has thousands of tasks that beat
  // once; resending them all every second would cost every screen a large message).
  set(text, serverNow, merge = false) {
    let parsed = {}
    try { parsed = JSON.parse(text || "{}") } catch (e) { parsed = {} }
    const at = merge ? this.at : new Map()
    if (parsed && typeof parsed === "object") {
      for (const [nodeId, byIteration] of Object.entries(parsed)) {
        if (!byIteration || typeof byIteration !== "object") { continue }
        const inner = merge && at.has(nodeId) ? at.get(nodeId) : new Map()
        for (const [iteration, ms] of Object.entries(byIteration)) {
          if (typeof ms === "number" && Number.isFinite(ms)) { inner.set(Number(iteration), ms) }
        }
        if (inner.size) { at.set(nodeId, inner) }
      }
    }
    this.at = at
    this.offset = typeof serverNow === "number" && Number.isFinite(serverNow) ? Date.now() - serverNow : 0
  }

  // The server time (ms) of a task row's last heartbeat, or null.
  lastOf(row) {
    if (row.nodeId == null) { return null }
    const inner = this.at.get(row.nodeId)
    const ms = inner === undefined ? undefined : inner.get(row.iteration ?? 0)
    return ms === undefined ? null : ms
  }

  // Seconds since that heartbeat on the browser's clock, or null.
  ageOf(row, nowMs = Date.now()) {
    const at = this.lastOf(row)
    return at === null ? null : Math.max(0, (nowMs - this.offset - at) / 1000)
  }
}

// The row's tooltip: label, Smithers nodeId and, for a task that beats, how long ago.
function rowTitle(row, age) {
  const name = row.nodeId && row.nodeId !== row.label ? `${row.label} · ${row.nodeId}` : (row.label ?? "")
  return age === null ? name : `${name} · heartbeat ${fmtDuration(age)} ago`
}

// The small marker beside a running task's state ("♥ 3 s"); empty for any other row.
function beatMarker(row, age) {
  return age === null || !RUNNING.has(row.state) ? "" : `♥ ${fmtDuration(age)}`
}

// ---- tree_data.js
// tree_data.js: the rows a tree view shows, and the messages that change them (part of
// tree.js; see TREE_MODULES in dashboard/views/tree.py).
//
// TreeData keeps the rows in a Map plus child lists, applies the server's numbered resets
// and patches (sliced so no task blocks the page; a gap asks for a reset), and derives the
// visible list (collapse and filter). It owns no DOM: views (tree_view.js) register in
// `views` and are told what changed. Uses tree_row.js and tree_beats.js.

// After asking for a reset, wait this long for it before asking again, doubling up to
// the maximum (a server that is gone is not flooded; one that dropped the ask is retried).
const RESYNC_RETRY_MS = 2000
const RESYNC_RETRY_MAX_MS = 30000
const SLICE_MS = 12

class TreeData {
  constructor() {
    this.rows = new Map()      // id -> row (plus v: version, f/r: failed/running below)
    // Resets applied: a reset's rows start again at v 0, so a drawn row's signature
    // carries this too (a row no patch had touched, changed by the reset, is redrawn).
    this.gen = 0
    this.kids = new Map()      // id -> [child ids] in order
    this.root = null
    this.seq = 0
    this.run = undefined
    this.collapsed = new Set() // survives resets of the same run
    this.scrollTop = 0
    this.selected = null
    this.cursor = null
    this.followId = null
    this.query = ""
    this.stateFilter = ""
    this.visible = []
    this.dirty = true
    this.views = new Set()
    // A reset has been asked for and not applied yet: patches that do not follow on are
    // dropped quietly meanwhile (the reset covers them), and the ask is repeated if the
    // reset never comes. Never "drop a gap and hope": a run that goes quiet right after
    // a gap must still end up showing the server's rows.
    this.syncing = false
    this.syncTimer = null
    this.syncRetryMs = RESYNC_RETRY_MS
    // Timings for tests and profiling (milliseconds): the longest slice of message work,
    // the last visible-list rebuild and the slowest frame.
    this.stats = {resets: 0, patches: 0, maxSliceMs: 0, lastVisibleMs: 0, maxFrameMs: 0}
    // Tokens per task (nodeId -> [tokens, agent]), from {type:"tokens"} messages
    // (dashboard/treerows.py task_tokens); tokV is part of every row's signature.
    this.tokens = {}
    this.tokV = 0
    // Each task's last heartbeat, from {type:"beats"} messages (tree_beats.js).
    this.beats = new Heartbeats()
    this.inbox = []
    this.job = null
    this.draining = false
  }

  get filtering() { return this.query !== "" || this.stateFilter !== "" }

  setTokens(text) {
    let parsed = {}
    try { parsed = JSON.parse(text || "{}") } catch (e) { parsed = {} }
    this.tokens = parsed && typeof parsed === "object" ? parsed : {}
    this.tokV++
  }

  // --- messages -------------------------------------------------------------------

  // Messages are queued and applied in slices of at most SLICE_MS, in tasks of their
  // own: the WebSocket task only has Bokeh's work in it, and a 10,000-row reset is built
  // over a few tasks (the old rows stay on screen until the new ones are complete).
  receive(raw, model) {
    this.inbox.push([raw, model])
    this.kick()
  }

  kick() {
    if (this.draining) { return }
    this.draining = true
    setTimeout(() => this.drain(), 0)
  }

  drain() {
    this.draining = false
    const t0 = performance.now()
    // A hidden tab gets its timers throttled to once a second (or a minute): catch up in
    // one go there, since nobody is waiting on the main thread.
    const hidden = typeof document !== "undefined" && document.hidden
    const deadline = hidden ? Infinity : t0 + SLICE_MS
    try {
      for (;;) {
        if (this.job === null) {
          if (!this.inbox.length) { return }
          const [raw, model] = this.inbox.shift()
          const msg = typeof raw === "string" ? JSON.parse(raw) : raw
          this.job = this.start(msg, model)
        }
        if (this.job !== null) {
          let step = this.job.next()
          while (!step.done && performance.now() < deadline) { step = this.job.next() }
          if (!step.done) { break }
          this.job = null
          this.notify(step.value)
        }
        if (performance.now() >= deadline) { break }
      }
      if (this.job !== null || this.inbox.length) { this.kick() }
    } finally {
      this.stats.maxSliceMs = Math.max(this.stats.maxSliceMs, performance.now() - t0)
    }
  }

  notify(result) {
    for (const view of this.views) { view.applied(result) }
  }

  // Apply one message now, or return a generator that applies it step by step.
  start(msg, model) {
    if (msg.type === "reset" || msg.type === "patch") {
      if (msg.seq <= this.seq) { return null }  // a duplicate (two handlers) or stale
      if (msg.type === "reset") { return this.reset(msg) }
      if (msg.seq !== this.seq + 1) {
        this.stats.gaps = (this.stats.gaps ?? 0) + 1
        if (!this.syncing) { this.resync(model) }
        return null
      }
      this.notify(this.patch(msg))
    } else if (msg.type === "current") {
      // The answer to "ready" when no reset is owed: this client holds every row as of
      // msg.seq (the document's rows and the patches sent since). Stop asking.
      if (msg.seq === this.seq && this.syncing) { this.synced() }
    } else if (msg.type === "select") {
      const id = msg.id ?? null  // null: nothing selected any more
      if (id !== null) { this.reveal(id) }
      this.selected = id
      if (id !== null) { this.cursor = id }
      this.notify(id === null ? {structure: true} : {structure: true, reveal: id})
    } else if (msg.type === "tokens") {
      this.setTokens(msg.tokens)
      for (const view of this.views) { view.refreshShown() }
    } else if (msg.type === "beats") {
      this.beats.set(msg.beats, msg.now, msg.merge === true)
      for (const view of this.views) { view.beatsChanged() }
    } else if (msg.type === "expand-all" || msg.type === "collapse-all") {
      this.collapsed.clear()
      if (msg.type === "collapse-all") {
        for (const [id, kids] of this.kids) {
          if (kids.length && id !== this.root) { this.collapsed.add(id) }
        }
      }
      this.dirty = true
      this.notify({structure: true})
    }
    return null
  }

  // Ask the server for a reset (seq 0: "I have nothing you can patch") and keep asking,
  // with a growing interval, until one is applied (see reset()).
  resync(model, seq = 0) {
    this.syncing = true
    clearTimeout(this.syncTimer)
    this.stats.resyncs = (this.stats.resyncs ?? 0) + 1
    model.send_msg({type: "ready", seq, run: this.run ?? null})
    const wait = this.syncRetryMs
    this.syncRetryMs = Math.min(wait * 2, RESYNC_RETRY_MAX_MS)
    this.syncTimer = setTimeout(() => {
      this.syncTimer = null
      if (this.syncing) { this.resync(model) }
    }, wait)
  }

  synced() {
    this.syncing = false
    clearTimeout(this.syncTimer)
    this.syncTimer = null
    this.syncRetryMs = RESYNC_RETRY_MS
  }

  * reset(msg) {
    const rows = new Map()
    const kids = new Map()
    const n = msg.rows.length
    const list = new Array(n)
    let root = null
    let follow = null
    for (let i = 0; i < n; i++) {
      const row = unpack(msg.rows[i])
      list[i] = row
      rows.set(row.id, row)
      kids.set(row.id, [])
      if (row.parent === null) {
        root = row.id
      } else {
        const siblings = kids.get(row.parent)
        if (siblings) { siblings.push(row.id) }
      }
      if (RUNNING.has(row.state)) { follow = row.id }
      if ((i & 511) === 511) { yield }
    }
    // Children come after their parent in document order, so one backward pass sums
    // the failed / running descendants of every container.
    for (let i = n - 1; i >= 0; i--) {
      const row = list[i]
      const parent = row.parent === null ? undefined : rows.get(row.parent)
      if (parent) {
        parent.f += row.f + isFailed(row)
        parent.r += row.r + isRunning(row)
      }
      if ((i & 2047) === 0) { yield }
    }
    const newRun = msg.run !== this.run
    if (newRun) {
      this.collapsed.clear()
      this.scrollTop = 0
      this.selected = this.cursor = null
      for (const view of this.views) { view.scrollTo(0) }
    }
    this.run = msg.run
    this.seq = msg.seq
    this.rows = rows
    this.kids = kids
    this.root = root
    if (follow !== null) { this.followId = follow }
    this.dirty = true
    this.gen++
    this.stats.resets++
    this.synced()
    return {structure: true, reset: true, newRun}
  }

  bump(row, df, dr) {
    if (!df && !dr) { return }
    let up = row.parent == null ? undefined : this.rows.get(row.parent)
    while (up) {
      up.f += df
      up.r += dr
      up = up.parent == null ? undefined : this.rows.get(up.parent)
    }
  }

  removeSubtree(id) {
    const row = this.rows.get(id)
    if (!row) { return false }
    const gone = []
    const stack = [id]
    let df = 0
    let dr = 0
    while (stack.length) {
      const n = stack.pop()
      const r = this.rows.get(n)
      if (!r) { continue }
      gone.push(n)
      df += isFailed(r)
      dr += isRunning(r)
      const kids = this.kids.get(n)
      if (kids) { for (const k of kids) { stack.push(k) } }
    }
    this.bump(row, -df, -dr)
    const siblings = row.parent == null ? undefined : this.kids.get(row.parent)
    if (siblings) {
      const at = siblings.indexOf(id)
      if (at >= 0) { siblings.splice(at, 1) }
    }
    for (const n of gone) {
      this.rows.delete(n)
      this.kids.delete(n)
    }
    return true
  }

  patch(msg) {
    this.seq = msg.seq
    let structure = false
    const changed = []
    for (const id of msg.remove) {
      if (this.removeSubtree(id)) { structure = true }
    }
    if (msg.add.length) {
      const at = new Map(msg.at)
      const fresh = []
      for (const packed of msg.add) {
        const row = unpack(packed)
        const siblings = this.kids.get(row.parent)
        if (!siblings) { continue }  // parent unknown: cannot place it (the next reset will)
        this.rows.set(row.id, row)
        this.kids.set(row.id, [])
        if (at.has(row.id)) {
          siblings.splice(Math.min(at.get(row.id), siblings.length), 0, row.id)
        } else {
          siblings.push(row.id)
        }
        fresh.push(row)
        if (RUNNING.has(row.state)) { this.followId = row.id }
      }
      for (const row of fresh) { this.bump(row, isFailed(row), isRunning(row)) }
      structure = true
    }
    let filterHit = false
    for (const packed of msg.upsert) {
      const row = unpack(packed)
      const old = this.rows.get(row.id)
      if (!old) { continue }
      row.v = old.v + 1
      row.f = old.f
      row.r = old.r
      this.rows.set(row.id, row)
      this.bump(row, isFailed(row) - isFailed(old), isRunning(row) - isRunning(old))
      if (isRunning(row) && !isRunning(old)) { this.followId = row.id }
      if (this.filtering && (row.state !== old.state || row.label !== old.label || row.nodeId !== old.nodeId)) { filterHit = true }
      changed.push(row.id)
    }
    if (structure || filterHit) { this.dirty = true }
    this.stats.patches++
    // Rows whose failed/running roll-up changed are ancestors of changed rows; views
    // refresh the rows they show whose roll-up signature moved (cheap: ~50 rows).
    return {structure: structure || filterHit, changed}
  }

  reveal(id) {
    let row = this.rows.get(id)
    while (row && row.parent != null) {
      if (this.collapsed.delete(row.parent)) { this.dirty = true }
      row = this.rows.get(row.parent)
    }
  }

  // --- the visible list -------------------------------------------------------------

  matches(row) {
    if (this.stateFilter && row.state !== this.stateFilter) { return false }
    if (this.query && !(row.hay ??= haystack(row)).includes(this.query)) { return false }
    return true
  }

  visibleList() {
    if (!this.dirty) { return this.visible }
    const t0 = performance.now()
    const out = []
    if (this.root !== null && this.rows.has(this.root)) {
      let keep = null
      if (this.filtering) {
        keep = new Set()
        for (const row of this.rows.values()) {
          if (!this.matches(row)) { continue }
          let r = row
          while (r && !keep.has(r.id)) {
            keep.add(r.id)
            r = r.parent == null ? undefined : this.rows.get(r.parent)
          }
        }
      }
      const stack = [this.root]
      while (stack.length) {
        const id = stack.pop()
        if (keep !== null && !keep.has(id)) { continue }
        out.push(id)
        if (keep === null && this.collapsed.has(id)) { continue }
        const kids = this.kids.get(id)
        for (let i = kids.length - 1; i >= 0; i--) { stack.push(kids[i]) }
      }
    }
    this.visible = out
    this.dirty = false
    this.stats.lastVisibleMs = performance.now() - t0
    return out
  }
}

// ---- tree_view.js
// tree_view.js: one on-screen tree, rendered by virtual scrolling (part of tree.js; see
// TREE_MODULES in dashboard/views/tree.py).
//
// A TreeView draws a TreeData (tree_data.js) into a host element: a pool of fixed-height
// row elements moved under the viewport, refreshed at most once per animation frame, and
// the footer. It follows the running node unless the user took over. Clicks and keys are
// tree_input.js's (installed on this class there). Uses tree_row.js and tree_beats.js.

class TreeView {
  constructor(data, model, host) {
    this.data = data
    this.model = model
    this.pool = []
    this.shown = new Map()   // id -> row element currently in the window
    this.raf = 0
    this.followPending = true
    this.dead = false
    // Geometry is cached (viewport height from a ResizeObserver, scroll offset from
    // scroll events and our own writes) so a frame never forces a synchronous layout
    // by reading it back after writing the DOM.
    this.viewH = 0
    this.top = 0
    this.spacerH = -1
    this.chrome = ""
    this.anchor = null
    this.beatTimer = 0

    this.root = el("div", "st-tree")
    this.root.tabIndex = 0
    this.root.setAttribute("role", "tree")
    this.root.setAttribute("aria-label", "Run node tree")
    this.scroller = el("div", "st-scroll")
    this.spacer = el("div", "st-spacer")
    this.box = el("div", "st-rows")
    this.spacer.append(this.box)
    this.scroller.append(this.spacer)
    this.empty = el("div", "st-empty")
    this.footer = el("div", "st-footer")
    this.root.append(this.scroller, this.empty, this.footer)
    host.append(this.root)

    this.onScroll = () => {
      const top = this.scroller.scrollTop
      if (Math.abs(top - this.top) < 1) { return }
      this.top = top
      this.data.scrollTop = top
      this.schedule()
    }
    this.onUserScroll = (event) => {
      if (event.type === "pointerdown" && event.target !== this.scroller) { return }
      this.stopFollowing()
    }
    this.onClick = (event) => {
      const rowEl = event.target.closest(".st-row")
      if (!rowEl) { return }
      const id = Number(rowEl.getAttribute("data-node-id"))
      if (event.target.closest(".st-twisty")) {
        this.toggle(id)
      } else {
        this.choose(id)
      }
      this.root.focus({preventScroll: true})
    }
    this.onDblClick = (event) => {
      const rowEl = event.target.closest(".st-row")
      if (rowEl && !event.target.closest(".st-twisty")) { this.toggle(Number(rowEl.getAttribute("data-node-id"))) }
    }
    this.onKey = (event) => this.key(event)
    this.scroller.addEventListener("scroll", this.onScroll, {passive: true})
    this.scroller.addEventListener("wheel", this.onUserScroll, {passive: true})
    this.scroller.addEventListener("touchstart", this.onUserScroll, {passive: true})
    this.scroller.addEventListener("pointerdown", this.onUserScroll)
    this.box.addEventListener("click", this.onClick)
    this.box.addEventListener("dblclick", this.onDblClick)
    this.root.addEventListener("keydown", this.onKey)
    this.resize = typeof ResizeObserver === "undefined" ? null : new ResizeObserver((entries) => {
      for (const entry of entries) { this.viewH = entry.contentRect.height }
      this.schedule()
    })
    if (this.resize) { this.resize.observe(this.scroller) }
    this.restoreScroll = true
    this.beatsChanged()
    this.schedule()
  }

  destroy() {
    this.dead = true
    if (this.raf) { cancelAnimationFrame(this.raf) }
    if (this.resize) { this.resize.disconnect() }
    if (this.beatTimer) { clearInterval(this.beatTimer) }
    this.data.views.delete(this)
    this.root.remove()
  }

  // --- scheduling -------------------------------------------------------------------

  schedule() {
    if (this.raf || this.dead) { return }
    this.raf = requestAnimationFrame(() => {
      this.raf = 0
      this.frame()
    })
  }

  applied(result) {
    if (result.structure) {
      this.followPending = true
      if (result.reveal !== undefined) { this.revealId = result.reveal }
      if (!result.newRun && this.anchor === null && this.data.visible.length) {
        // Remember the row at the top of the viewport (by id) so rows inserted or
        // removed above it, or a reset of the same run, do not move what the user reads.
        const first = Math.min(this.data.visible.length - 1, Math.floor(this.top / ROW_H))
        this.anchor = {id: this.data.visible[first], offset: this.top - first * ROW_H}
      }
      this.schedule()
      return
    }
    // Only rows changed: refresh the ones in view now (O(changed)), and let the next
    // frame refresh roll-up dots of ancestors in view.
    let any = false
    for (const id of result.changed) {
      const rowEl = this.shown.get(id)
      if (rowEl) { this.fill(rowEl, id) }
      any = true
    }
    if (any) {
      this.followPending = true
      this.schedule()
    }
  }

  frame() {
    if (this.dead) { return }
    const t0 = performance.now()
    const data = this.data
    const visible = data.visibleList()
    if (!this.viewH) { this.viewH = this.scroller.clientHeight }  // once, before any write
    const spacerH = visible.length * ROW_H
    if (spacerH !== this.spacerH) {
      this.spacerH = spacerH
      this.spacer.style.height = `${spacerH}px`
    }
    if (this.restoreScroll && data.rows.size) {
      this.restoreScroll = false
      this.setTop(data.scrollTop)
    }
    if (this.anchor !== null) {
      const at = this.anchor.id === undefined ? -1 : visible.indexOf(this.anchor.id)
      if (at >= 0 && at * ROW_H + this.anchor.offset !== this.top) { this.setTop(at * ROW_H + this.anchor.offset) }
      this.anchor = null
    }
    if (this.revealId !== undefined) {
      const at = visible.indexOf(this.revealId)
      this.revealId = undefined
      if (at >= 0) { this.ensureVisible(at, true) }
    } else if (this.followPending && this.model.follow) {
      this.follow(visible)
    }
    this.followPending = false
    this.renderWindow(visible)
    this.renderChrome(visible)
    data.stats.maxFrameMs = Math.max(data.stats.maxFrameMs, performance.now() - t0)
  }

  // --- scrolling & following ----------------------------------------------------------

  height() { return this.viewH || ROW_H * 20 }

  setTop(top) {
    const max = Math.max(0, this.data.visible.length * ROW_H - this.height())
    const value = Math.max(0, Math.min(max, Math.round(top)))
    if (Math.abs(this.top - value) < 1) { return }
    this.top = value
    this.data.scrollTop = value
    this.scroller.scrollTop = value
  }

  scrollTo(top) { this.setTop(top) }

  ensureVisible(index, centre) {
    const top = index * ROW_H
    const height = this.height()
    const current = this.top
    if (top >= current && top + ROW_H <= current + height) { return }
    if (centre) {
      // A third of the way down, on a row boundary (no half-cut row at the top).
      this.setTop(Math.floor((top - height / 3) / ROW_H) * ROW_H)
    } else if (top < current) {
      this.setTop(top)
    } else {
      this.setTop(top + ROW_H - height)
    }
  }

  follow(visible) {
    let id = this.data.followId
    let row = id == null ? undefined : this.data.rows.get(id)
    while (row) {
      const at = visible.indexOf(row.id)
      if (at >= 0) {
        this.ensureVisible(at, true)
        return
      }
      row = row.parent == null ? undefined : this.data.rows.get(row.parent)
    }
  }

  stopFollowing() {
    if (this.model.follow) { this.model.follow = false }
  }

  // --- rendering ----------------------------------------------------------------------

  makeRow() {
    const row = el("div", "st-row")
    row.setAttribute("role", "treeitem")
    const twisty = el("span", "st-twisty")
    const icon = el("span", "st-icon")
    const label = el("span", "st-label")
    const type = el("span", "st-type")
    const dot = el("span", "st-dot")
    const meta = el("span", "st-meta")
    const beat = el("span", "st-beat")
    const state = el("span", "st-state")
    row.append(twisty, icon, label, type, dot, meta, beat, state)
    row.parts = {twisty, icon, label, type, dot, meta, beat, state}
    row.sig = ""
    row.beat = null  // [tooltip, marker] last written
    return row
  }

  renderWindow(visible) {
    const height = this.viewH || ROW_H * 30
    const top = this.top
    const start = Math.max(0, Math.floor(top / ROW_H) - OVERSCAN)
    const end = Math.min(visible.length, Math.ceil((top + height) / ROW_H) + OVERSCAN)
    const count = Math.max(0, end - start)
    while (this.pool.length < count) {
      const row = this.makeRow()
      this.pool.push(row)
      this.box.append(row)
    }
    this.box.style.transform = `translateY(${start * ROW_H}px)`
    this.shown.clear()
    for (let k = 0; k < this.pool.length; k++) {
      const rowEl = this.pool[k]
      if (k < count) {
        const id = visible[start + k]
        if (rowEl.hidden) { rowEl.hidden = false }
        this.fill(rowEl, id)
        this.shown.set(id, rowEl)
      } else if (!rowEl.hidden) {
        rowEl.hidden = true
        rowEl.sig = ""
        rowEl.beat = null
        rowEl.removeAttribute("data-node-id")  // only rows on screen carry an id
      }
    }
    // Keep the pool bounded if the viewport shrank a lot.
    while (this.pool.length > count + 4 * OVERSCAN) {
      this.pool.pop().remove()
    }
  }

  fill(rowEl, id) {
    const data = this.data
    const row = data.rows.get(id)
    if (!row) { return }
    const kids = data.kids.get(id)
    const hasKids = kids !== undefined && kids.length > 0
    const open = hasKids && (data.filtering || !data.collapsed.has(id))
    const flags = (hasKids ? 1 : 0) | (open ? 2 : 0) | (data.selected === id ? 4 : 0) |
      (data.cursor === id ? 8 : 0) | (!open && row.f > 0 ? 16 : 0) | (!open && row.r > 0 ? 32 : 0)
    const sig = `${id}:${data.gen}.${row.v}:${flags}:${data.tokV}`
    if (rowEl.sig === sig) {
      this.paintBeat(rowEl, row)
      return
    }
    rowEl.sig = sig
    const p = rowEl.parts
    rowEl.setAttribute("data-node-id", String(id))
    rowEl.setAttribute("data-state", row.state ?? "")
    rowEl.setAttribute("data-type", row.type ?? "")
    rowEl.setAttribute("aria-level", String((row.depth ?? 0) + 1))
    rowEl.setAttribute("aria-selected", data.selected === id ? "true" : "false")
    if (hasKids) { rowEl.setAttribute("aria-expanded", open ? "true" : "false") } else { rowEl.removeAttribute("aria-expanded") }
    rowEl.classList.toggle("selected", data.selected === id)
    rowEl.classList.toggle("cursor", data.cursor === id)
    rowEl.style.paddingLeft = `${4 + (row.depth ?? 0) * INDENT}px`
    p.twisty.textContent = hasKids ? (open ? "▾" : "▸") : ""
    const known = Object.prototype.hasOwnProperty.call(ICONS, row.type)
    p.icon.textContent = iconFor(known ? row.type : "unknown")
    p.label.textContent = row.label ?? ""
    p.type.textContent = known ? "" : String(row.type ?? "")
    const meta = []
    const used = row.nodeId != null && Object.prototype.hasOwnProperty.call(data.tokens, row.nodeId) ? data.tokens[row.nodeId] : null
    if (used) {
      meta.push(`${used[1] ? `${used[1]} · ` : ""}${fmtTokens(Number(used[0]) || 0)} tok`)
      rowEl.setAttribute("data-tokens", String(used[0]))
    } else {
      rowEl.removeAttribute("data-tokens")
    }
    // Loops always say which iteration they are on; tasks only once it is past the first.
    if (row.iteration != null && (row.type === "loop" || row.iteration > 0)) {
      meta.push(`iter ${row.iteration}`)
    }
    if (row.maxAttempts != null && row.maxAttempts > 1) {
      meta.push(`attempt ${row.attempt ?? 0}/${row.maxAttempts}`)
    } else if (row.attempt != null && row.attempt > 1) {
      meta.push(`attempt ${row.attempt}`)
    }
    p.meta.textContent = meta.join(" · ")
    p.state.textContent = row.state ?? ""
    const dot = !open && row.f > 0 ? "fail" : (!open && row.r > 0 ? "run" : "")
    p.dot.setAttribute("data-dot", dot)
    p.dot.title = dot === "fail" ? `${row.f} failed below` : (dot === "run" ? `${row.r} running below` : "")
    rowEl.beat = null
    this.paintBeat(rowEl, row)
  }

  // The row's tooltip and heartbeat marker (tree_beats.js), written only when their text
  // changed: the once-a-second tick costs a comparison per row on screen.
  paintBeat(rowEl, row) {
    const age = this.data.beats.ageOf(row)
    const title = rowTitle(row, age)
    const marker = beatMarker(row, age)
    const last = rowEl.beat
    if (last !== null && last[0] === title && last[1] === marker) { return }
    rowEl.beat = [title, marker]
    rowEl.title = title
    rowEl.parts.beat.textContent = marker
    const at = this.data.beats.lastOf(row)
    if (at === null) { rowEl.removeAttribute("data-heartbeat-ms") } else { rowEl.setAttribute("data-heartbeat-ms", String(at)) }
  }

  // A "beats" message arrived (or the view is new): repaint the rows on screen, and keep
  // their ages counting once a second while any task has a heartbeat.
  beatsChanged() {
    for (const [id, rowEl] of this.shown) {
      const row = this.data.rows.get(id)
      if (row) { this.paintBeat(rowEl, row) }
    }
    if (this.data.beats.size && !this.beatTimer && !this.dead) {
      this.beatTimer = setInterval(() => this.beatsChanged(), BEAT_TICK_MS)
    } else if (!this.data.beats.size && this.beatTimer) {
      clearInterval(this.beatTimer)
      this.beatTimer = 0
    }
  }

  renderChrome(visible) {
    const data = this.data
    const total = data.rows.size
    if (this.empty.hidden !== visible.length > 0) { this.empty.hidden = visible.length > 0 }
    this.empty.textContent = total === 0 ? "Waiting for the run's node tree…" : "No nodes match the filter."
    const root = data.root === null ? undefined : data.rows.get(data.root)
    const running = root ? root.r + isRunning(root) : 0
    const failed = root ? root.f + isFailed(root) : 0
    let shown = data.filtering ? `${fmt(visible.length)} of ${fmt(total)} nodes match`
      : `${fmt(total)} nodes`
    if (running) { shown += ` · ${fmt(running)} running` }
    if (failed) { shown += ` · ${fmt(failed)} failed` }
    // Following with nothing running (a finished run, a queued one) must not claim to follow.
    const follow = !this.model.follow ? "not following"
      : running ? "following the running node" : "nothing running to follow"
    const text = `${shown} · ${follow}`
    if (this.chrome !== text) {
      this.chrome = text
      this.footer.textContent = text
    }
  }

  refreshShown() {
    for (const [id, rowEl] of this.shown) { this.fill(rowEl, id) }
  }
}

// ---- tree_input.js
// tree_input.js: what clicks and keys do to a tree view (part of tree.js; see TREE_MODULES
// in dashboard/views/tree.py).
//
// Collapse and expand, picking a row (sent to Python as {type:"select", id}), and keyboard
// navigation (arrows, Page Up/Down, Home/End, Enter/Space) over the visible list. These are
// TreeView methods (tree_view.js), kept here and installed on the class at the end.

const TreeInput = {
  toggle(id) {
    const kids = this.data.kids.get(id)
    if (!kids || !kids.length || this.data.filtering) { return }
    if (this.data.collapsed.has(id)) { this.data.collapsed.delete(id) } else { this.data.collapsed.add(id) }
    this.data.dirty = true
    this.schedule()
  },

  choose(id) {
    this.data.selected = id
    this.data.cursor = id
    this.model.send_msg({type: "select", id})
    for (const view of this.data.views) { view.refreshShown() }
  },

  moveCursor(index) {
    const visible = this.data.visibleList()
    if (!visible.length) { return }
    const at = Math.max(0, Math.min(visible.length - 1, index))
    this.data.cursor = visible[at]
    this.ensureVisible(at, false)
    this.refreshShown()
    this.schedule()
  },

  key(event) {
    const data = this.data
    const visible = data.visibleList()
    if (!visible.length) { return }
    let at = data.cursor == null ? -1 : visible.indexOf(data.cursor)
    if (at < 0) {
      at = data.selected == null ? -1 : visible.indexOf(data.selected)
    }
    const page = Math.max(1, Math.floor(this.height() / ROW_H) - 1)
    const id = at >= 0 ? visible[at] : null
    const kids = id == null ? undefined : data.kids.get(id)
    const hasKids = kids !== undefined && kids.length > 0
    switch (event.key) {
      case "ArrowDown": this.moveCursor(at + 1); break
      case "ArrowUp": this.moveCursor(at < 0 ? 0 : at - 1); break
      case "PageDown": this.moveCursor(at + page); break
      case "PageUp": this.moveCursor(at - page); break
      case "Home": this.moveCursor(0); break
      case "End": this.moveCursor(visible.length - 1); break
      case "ArrowRight":
        if (id == null) { this.moveCursor(0) } else if (hasKids && data.collapsed.has(id) && !data.filtering) { this.toggle(id) } else if (hasKids) { this.moveCursor(at + 1) }
        break
      case "ArrowLeft": {
        if (id == null) { break }
        if (hasKids && !data.collapsed.has(id) && !data.filtering) {
          this.toggle(id)
        } else {
          const parent = data.rows.get(id)?.parent
          const up = parent == null ? -1 : visible.indexOf(parent)
          if (up >= 0) { this.moveCursor(up) }
        }
        break
      }
      case "Enter":
      case " ":
        if (id != null) { this.choose(id) }
        break
      default:
        return
    }
    event.preventDefault()
    event.stopPropagation()
    this.stopFollowing()
  },
}

Object.assign(TreeView.prototype, TreeInput)

// ---- tree.js
// Node-tree view of smithers-dashboard: the browser half of dashboard/views/tree.py.
//
// Served as ONE plain ES module for Panel's JSComponent (no build step, works offline):
// dashboard/views/tree.py TREE_MODULES lists the parts, which it joins in this order after
// the VOCABULARY line (a JSComponent's module is loaded from a blob: URL, where a relative
// import of a sibling file cannot resolve):
//   tree_row.js    the row record, formatting, icons
//   tree_beats.js  each task's last heartbeat and the row tooltip
//   tree_data.js   rows, child lists, resets and patches, the visible list
//   tree_view.js   one on-screen tree: virtual scrolling, rendering, following
//   tree_input.js  clicks and keys
//   tree.js        this entry: one TreeData per model, render(), the exports
//
// Python sends operations (see dashboard/treerows.py for the wire format):
//   {type:"reset", seq, run, rows:[packed rows]}            every row, document order
//   {type:"patch", seq, remove:[ids], add:[rows], at:[[id, index]], upsert:[rows]}
//   {type:"select", id} / {type:"expand-all"} / {type:"collapse-all"}
//   {type:"tokens", tokens:"{nodeId: [tokens, agent]}"}     tokens per task (JSON text)
//   {type:"beats", now, beats:"{nodeId: {iteration: ms}}"}  last heartbeat per task
//   {type:"current", seq}                                   the answer to "ready" when no
//                                                           reset is owed (rows held as of seq)
// and the parts keep the rows in a Map plus child lists, handle collapse, search and
// keyboard locally, and render only the rows in view (virtual scrolling, fixed row
// height). The model's "initial" property may carry the first reset (the rows when the
// page's document was built). This module sends {type:"ready", seq, run} when it
// (re)renders and the view
// {type:"select", id} when the user picks a row.
//
// Cost model (why it stays smooth at 10,000 nodes): a patch costs O(rows in it x depth);
// a row update in view touches that one row's DOM; anything that changes which rows are
// visible (structure, collapse, filter) marks the visible list dirty and it is rebuilt
// at most once per animation frame (one O(rows) walk, ~1 ms for 10k rows).
//
// Untrusted text (labels, ids, states, types) only ever goes through textContent,
// setAttribute or title; never through innerHTML.

// How long the rows of a component with no view left are kept (a tab switch re-renders soon).
const FORGET_MS = 60000

// Per model id, so rows, collapse state and scroll position survive a re-render of the
// view (Panel re-renders components on layout changes) and need no resend.
const DATA = new Map()

function dataFor(model) {
  const key = model.id
  let data = DATA.get(key)
  if (!data) {
    data = new TreeData()
    DATA.set(key, data)
  }
  return data
}

export function render({model, el: host}) {
  const data = dataFor(model)
  clearTimeout(data.forget)
  // A re-render of the same view: retire its previous DOM and handler.
  for (const view of [...data.views]) {
    if (view.model === model) { view.destroy() }
  }
  if (data.handler && data.handlerModel === model) { model.off("msg:custom", data.handler) }
  data.handler = (msg) => data.receive(msg, model)
  data.handlerModel = model
  model.on("msg:custom", data.handler)

  data.query = (model.query ?? "").trim().toLowerCase()
  data.stateFilter = model.state_filter ?? ""
  iconFor("workflow")  // probe the fonts now, not in the first frame of a big reset
  const view = new TreeView(data, model, host)
  data.views.add(view)
  model.on("query", () => {
    data.query = (model.query ?? "").trim().toLowerCase()
    data.dirty = true
    view.followPending = true
    view.schedule()
  })
  model.on("state_filter", () => {
    data.stateFilter = model.state_filter ?? ""
    data.dirty = true
    view.followPending = true
    view.schedule()
  })
  model.on("follow", () => {
    view.followPending = true
    view.schedule()
  })
  model.on("remove", () => {
    view.destroy()
    // Forget the rows a while after the last view went (a tab switch re-renders soon;
    // a closed component never comes back).
    if (!data.views.size) {
      clearTimeout(data.forget)
      data.forget = setTimeout(() => {
        if (!data.views.size) {
          data.synced()  // stop asking for a reset nobody will look at
          DATA.delete(model.id)
        }
      }, FORGET_MS)
    }
  })
  // Tests and the debug overlay read this; it is not an API.
  host.__smithersTree = data
  if (data.seq === 0 && model.initial) {
    // The rows as the page's document was built: drawn now; "ready" says which reset this
    // is, and the patches since come after it (or a reset, if they outgrew the rows).
    const first = JSON.parse(model.initial)
    data.receive(first, model)
    data.resync(model, first.seq)
  } else if (data.seq === 0) {
    // Nothing yet: a reset is owed, and asked for again if it does not come.
    data.resync(model, 0)
  } else {
    model.send_msg({type: "ready", seq: data.seq, run: data.run ?? null})
  }
}

// For tests (tests/test_tree_view.py drives TreeData under Node); not an API.
export {TreeData}

export default {render}

