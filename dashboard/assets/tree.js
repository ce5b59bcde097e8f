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
