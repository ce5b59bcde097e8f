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
