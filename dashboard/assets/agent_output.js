// The browser half of dashboard/views/agent.py's AgentOutput: an agent attempt's output,
// appended as it streams.
//
// Python sends {type:"reset"|"append", seq, key, html, first, dropped}. `html` is built by
// Python from escaped text only (inspector/ansi.py: every character of the agent's text
// escaped, styles from a fixed palette): one <span data-c="N"> per output chunk. An append
// carries only the new chunks; `first` is the index of the oldest chunk the server still
// keeps, so older chunk elements are removed here too and the page stays bounded by the
// same byte cap as the server. `dropped` is how many earlier lines are gone ("N earlier
// lines"). A message out of sequence (a view that rendered after the last reset) asks for
// a reset with {type:"ready"}.

export function render({model, el}) {
  const dropped = document.createElement("div")
  dropped.className = "sd-agent-dropped"
  dropped.hidden = true
  const out = document.createElement("pre")
  out.className = "sd-agent-output"
  out.setAttribute("data-testid", "agent-output")
  out.tabIndex = 0
  el.append(dropped, out)
  let seq = 0

  const nearBottom = () => out.scrollHeight - out.scrollTop - out.clientHeight < 32
  // Chunks the server dropped are removed in batches of TRIM_BATCH, not one per message:
  // removing the first lines of the <pre> lays out all of it again (appending at its end
  // does not), so once an attempt is at its byte cap, trimming on every append made each
  // message a full layout of ~256 KiB of text and the pane fell seconds behind. The page
  // holds at most TRIM_BATCH chunks more than the server's cap.
  const TRIM_BATCH = 64
  const trim = (first, always) => {
    let child = out.firstElementChild
    if (!always && (!child || first - Number(child.dataset.c) < TRIM_BATCH)) { return }
    while (child && Number(child.dataset.c) < first) {
      const next = child.nextElementSibling
      child.remove()
      child = next
    }
  }
  const handler = (msg) => {
    if (!msg || typeof msg !== "object") { return }
    if (msg.type === "reset") {
      out.replaceChildren()
    } else if (msg.type === "append") {
      if (seq === 0) { return }  // a reset is on its way
      if (msg.seq !== seq + 1) {
        seq = 0
        model.send_msg({type: "ready", seq: 0})
        return
      }
    } else {
      return
    }
    const follow = msg.type === "reset" || nearBottom()
    seq = msg.seq
    out.insertAdjacentHTML("beforeend", msg.html)
    trim(msg.first, msg.type === "reset")
    out.dataset.attempt = msg.key ?? ""
    out.dataset.seq = String(seq)
    dropped.hidden = !msg.dropped
    dropped.textContent = msg.dropped ? `${msg.dropped} earlier line${msg.dropped === 1 ? "" : "s"} not shown (download the whole text below)` : ""
    if (follow) { out.scrollTop = out.scrollHeight }
  }
  model.on("msg:custom", handler)
  model.on("remove", () => model.off("msg:custom", handler))
  model.send_msg({type: "ready", seq: 0})
}

export default {render}
