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
