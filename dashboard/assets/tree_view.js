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

