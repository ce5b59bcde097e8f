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
