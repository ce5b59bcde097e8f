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
