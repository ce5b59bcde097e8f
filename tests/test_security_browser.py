"""Security in Debian's Chromium: hostile Gateway text stays text, and the page cannot move the server.

Two claims of the "reliability and security" issue, checked against the served dashboard
(``panel serve apps/`` through ``tests/browser.py``'s ``serve_dashboard``):

1. **Untrusted text is rendered as text in every view.** A :class:`~inspector.replay.ReplayGateway`
   (the real protocol, on its own thread) serves a crafted run in which every field the
   Gateway controls carries the payloads of :data:`PAYLOADS` (``<script>``, ``<img onerror>``,
   ``<svg onload>``, a ``javascript:`` link, markdown, template syntax, Bokeh tooltip field
   tricks and ``</textarea>`` / ``</pre>`` breakouts): the workflow name, node names, labels,
   nodeIds, types and states, props keys and values, the task's agent and prompt, output
   field names and values, diff paths and hunks, the run's error, node error messages,
   event names, scorer names and reasons, an RPC error, an approval title and a resync
   notice. Chromium then visits every view (run list, run page: header and failure banner,
   tree, node detail tabs, timeline and scores charts with their hover tooltips, events,
   frames, actions; and the wall monitor) and checks that each payload's TEXT is on screen
   where it belongs (so the test cannot pass by showing nothing), that no payload ran
   (``window.__xss`` stays undefined; the ``page`` fixture fails on any dialog), that no
   element a payload would create exists in any open shadow root, and that clicking the
   payload's link text does nothing. :func:`test_the_checks_see_an_injected_payload` proves
   those checks fire when a payload does get parsed as HTML.
2. **No server-side request forgery.** The Gateway URL is server configuration: page URLs
   with ``?gateway=``, ``?gateway_url=``, ``?url=``, ``?SMITHERS_GATEWAY_URL=``,
   ``?base_url=``, ``?host=`` and run ids that look like paths or URLs never make the server
   (or the browser) connect to a second listener, while the dashboard keeps talking to its
   configured Gateway; and no widget offers a Gateway URL field.

Every wait polls a condition with a deadline. Screenshots of the hostile run go to
``$SMITHERS_SCREENSHOTS`` (default: the test's temporary directory).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import socket
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, quote, urlsplit

import pytest
from playwright.sync_api import expect

from dashboard.format import shorten
from inspector.transcript import RecordedAnswer, RecordedRun, TimedDevToolsEvent, TimedRunEvent, rpc_key
from tests.browser import wait_until
from tests.gateway.server import ADMIN_TOKEN
from tests.replay_thread import ReplayThread

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    from playwright.sync_api import Locator, Page

    from tests.browser import BrowserLog, DashboardServer

pytestmark = pytest.mark.browser

#: What an attacker who controls a workflow, an agent or a tool could write into Gateway data.
#: Each would set ``window.__xss`` (or render markup) if it reached the page as HTML, markdown,
#: a template or a Bokeh ``{safe}`` tooltip field.
PAYLOADS = (
    "<script>window.__xss=1</script>",
    '<img src=x onerror="window.__xss=2">',
    '<svg onload="window.__xss=3">',
    '<a href="javascript:window.__xss=4">click</a>',
    "[md](javascript:window.__xss=5) **bold**",
    "{{7*7}} ${7*7}",
    "@{x}{safe} @node{safe} @reason{safe}",
    '</textarea></pre></script><img src=x onerror="window.__xss=6">',
)
HOSTILE = " ".join(PAYLOADS)

RUN = "hostile-run"
RUN_2 = "hostile-status-run"
#: Task nodeIds the Gateway accepts in RPCs (``/^[a-zA-Z0-9:_-]{1,128}$/``): their output,
#: diff and scores are hostile, not their ids.
TASK_OUT = "hx-out"
TASK_ERR = "hx-err"


def hostile(tag: str) -> str:
    """The full payload, tagged with the field it sits in."""
    return f"{tag}: {HOSTILE}"


def marker(tag: str) -> str:
    """What must be visible of :func:`hostile` even where a view shortens or JSON-quotes it:
    the tag and the ``<script>`` payload (no quotes, so JSON leaves it alone)."""
    return f"{tag}: {PAYLOADS[0]}"


# ---------------------------------------------------------------------------- the hostile run


def _task(node_id: int, depth: int, task: dict[str, Any], props: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"id": node_id, "type": "task", "name": "task", "depth": depth, "children": [],
            "props": props or {"id": task["nodeId"]}, "task": task}


#: The hostile task nodeId (the tree, the timeline, the events and the scores chart show it;
#: the Gateway refuses it in RPCs) and the scorer names. Long: the charts shorten what they
#: draw on their axes and legend (the hover and the tables show it whole).
HOSTILE_NODE_ID = '<img src=x onerror="window.__xss=7">@{x}{safe} ' + "n" * 250
SCORER = "<b>bold</b>@{reason}{safe} " + "s" * 250
SCORER_2 = '<svg onload="window.__xss=8">'
HOSTILE_STATE = hostile("state")


def hostile_tree() -> dict[str, Any]:
    """A workflow whose every name, label, type, prop and task field is hostile; all pending."""
    tasks = [
        _task(10, 2, {
            "nodeId": TASK_OUT, "label": hostile("label"), "kind": "agent", "agent": hostile("agent"),
            "prompt": hostile("prompt"), "outputTableName": hostile("table"), "iteration": 0, "state": "pending",
            "attempt": 0, "maxAttempts": 2,
        }, props={"id": TASK_OUT, hostile("prop-key"): hostile("prop-value"), "nested": {hostile("deep-key"): [hostile("deep")]}}),
        _task(11, 2, {"nodeId": HOSTILE_NODE_ID, "kind": "compute", "iteration": 0, "state": "pending", "attempt": 0}),
        _task(12, 2, {"nodeId": TASK_ERR, "kind": "compute", "iteration": 0, "state": "pending", "attempt": 0}),
    ]
    group = {"id": 2, "type": hostile("type"), "name": hostile("name"), "depth": 1, "children": tasks,
             "props": {"label": hostile("group-label"), hostile("group-key"): hostile("group-value")}}
    return {"id": 1, "type": "workflow", "name": hostile("workflow-node"), "depth": 0, "children": [group],
            "props": {"name": hostile("workflow-node")}}


def _delta(seq: int, node_id: int, task: dict[str, Any]) -> dict[str, Any]:
    return {"version": 1, "kind": "delta", "delta": {"version": 1, "baseSeq": seq - 1, "seq": seq, "ops": [
        {"op": "updateTask", "id": node_id, "task": task}]}}


def hostile_run() -> RecordedRun:
    """The crafted run (failed), with recorded answers for every read the dashboard makes."""
    root = hostile_tree()
    tasks = {n["id"]: n["task"] for n in root["children"][0]["children"]}
    snapshot = {"version": 1, "kind": "snapshot",
                "snapshot": {"version": 1, "runId": RUN, "frameNo": 0, "seq": 0, "root": root}}
    devtools = [TimedDevToolsEvent(0.0, snapshot)]
    events = [TimedRunEvent(0.0, "run.started", {"runId": RUN})]
    events += [TimedRunEvent(1.0, "node.pending", {"runId": RUN, "nodeId": t["nodeId"], "state": "pending", "iteration": 0})
               for t in tasks.values()]
    seq = 0
    t_ms = 10.0

    def step(node_id: int, state: str, event: str, **extra: Any) -> None:
        nonlocal seq, t_ms
        seq += 1
        t_ms += 120.0
        tasks[node_id] = {**tasks[node_id], "state": state, "attempt": 1}
        devtools.append(TimedDevToolsEvent(t_ms, _delta(seq, node_id, dict(tasks[node_id]))))
        payload = {"runId": RUN, "nodeId": tasks[node_id]["nodeId"], "iteration": 0, "attempt": 1, "state": state, **extra}
        events.append(TimedRunEvent(t_ms, event, payload))

    step(10, "in-progress", "node.started")
    step(11, "in-progress", "node.started")
    step(10, "finished", "node.finished")
    step(11, "failed", "node.failed", error={"name": "Error", "message": hostile("node-error")})
    step(12, "in-progress", "node.started")
    step(12, HOSTILE_STATE, "node.failed", error={"name": hostile("error-name"), "message": hostile("err-task-error")})
    t_ms += 50.0
    events.append(TimedRunEvent(t_ms, hostile("event"), {"runId": RUN, "nodeId": TASK_OUT, "reason": hostile("event-reason")}))
    events.append(TimedRunEvent(t_ms + 10, "approval.requested", {"runId": RUN, "nodeId": TASK_OUT, "iteration": 0}))
    error = {"name": "SmithersError", "code": "SESSION_ERROR", "message": hostile("run-error")}
    events.append(TimedRunEvent(t_ms + 20, "run.completed", {"runId": RUN, "status": "failed", "error": error}))
    now_ms = int(time.time() * 1000)
    row = {"runId": RUN, "parentRunId": None, "workflowName": hostile("workflow"), "workflowKey": hostile("workflow-key"),
           "status": "failed", "createdAtMs": now_ms, "startedAtMs": now_ms, "finishedAtMs": now_ms + 1000,
           "errorJson": json.dumps(error), "system": False}
    schema = {"fields": [{"name": hostile("field"), "type": hostile("field-type"), "optional": False, "nullable": False},
                         {"name": "note", "type": "string", "optional": True, "nullable": False}]}
    diff_text = "\n".join([
        f"--- a/{hostile('old-path')}", f"+++ b/{hostile('new-path')}", f"@@ -1,2 +1,2 @@ {hostile('hunk-head')}",
        f"-{hostile('hunk-del')}", f"+{hostile('hunk-add')}", f" {hostile('hunk-context')}",
    ])
    scores = [
        {"runId": RUN, "nodeId": TASK_OUT, "iteration": 0, "attempt": 1, "scorerId": "s1", "scorerName": SCORER,
         "source": hostile("source"), "score": 0.5, "reason": hostile("reason")},
        {"runId": RUN, "nodeId": HOSTILE_NODE_ID, "iteration": 0, "attempt": 1, "scorerId": "s2",
         "scorerName": SCORER_2, "source": "live", "score": 0.25, "reason": hostile("reason-2")},
    ]
    answers = {
        rpc_key("getNodeOutput", {"nodeId": TASK_OUT, "iteration": 0}): RecordedAnswer(True, {
            "status": "produced", "schema": schema,
            "row": {hostile("field"): hostile("value"), "note": hostile("note"), hostile("extra-key"): [hostile("extra")]}}),
        rpc_key("getNodeDiff", {"nodeId": TASK_OUT, "iteration": 0}): RecordedAnswer(True, {
            "seq": 3, "baseRef": hostile("base"),
            "patches": [{"path": hostile("path"), "operation": hostile("op"), "diff": diff_text}]}),
        rpc_key("getNodeOutput", {"nodeId": TASK_ERR, "iteration": 0}): RecordedAnswer(
            False, error={"code": "NodeNotFound", "message": hostile("rpc-error")}),
        rpc_key("getNodeDiff", {"nodeId": TASK_ERR, "iteration": 0}): RecordedAnswer(
            False, error={"code": "VcsError", "message": hostile("diff-error")}),
        rpc_key("listScores", {}): RecordedAnswer(True, scores),
        rpc_key("listApprovals", {}): RecordedAnswer(True, [{
            "runId": RUN, "nodeId": TASK_OUT, "iteration": 0, "requestTitle": hostile("approval"),
            "requestSummary": hostile("approval-summary"), "approvalMode": "gate", "options": []}]),
    }
    return RecordedRun(run_id=RUN, workflow=hostile("workflow"), devtools=tuple(devtools), run_events=tuple(events),
                       answers=answers, row=row, source="hostile")


def hostile_status_run() -> RecordedRun:
    """A second, tiny run whose status itself is hostile (the run list's status column, the pill)."""
    root = {"id": 1, "type": "workflow", "name": "w", "props": {}, "depth": 0, "children": []}
    snapshot = {"version": 1, "kind": "snapshot", "snapshot": {"version": 1, "runId": RUN_2, "frameNo": 0, "seq": 0, "root": root}}
    row = {"runId": RUN_2, "workflowName": hostile("workflow-2"), "status": hostile("status"), "errorJson": None}
    return RecordedRun(run_id=RUN_2, workflow=hostile("workflow-2"), devtools=(TimedDevToolsEvent(0.0, snapshot),),
                       run_events=(TimedRunEvent(1.0, "run.started", {"runId": RUN_2}),), row=row, source="hostile")


@pytest.fixture(scope="module")
def hostile_gateway() -> Iterator[ReplayThread]:
    """The replay gateway serving both hostile runs, played to their end before any test looks."""
    replay = ReplayThread([hostile_run(), hostile_status_run()], token=ADMIN_TOKEN, speed=1.0, loop=False)
    try:
        wait_until(lambda: replay.call(lambda: all(replay.gateway.run_done(r) for r in (RUN, RUN_2))), 30,
                   "the hostile runs to play to their end")
        yield replay
    finally:
        replay.stop()


# ---------------------------------------------------------------------------- what the page holds

#: Every element in the document and in every open shadow root that a payload would have
#: created, and ``window.__xss``. Panel and Bokeh render inside shadow roots, which
#: ``document.querySelectorAll`` does not enter.
INJECTED_JS = """() => {
  const hits = [];
  const describe = (el) => el.outerHTML.slice(0, 160);
  const walk = (root) => {
    for (const el of root.querySelectorAll("*")) {
      const tag = el.tagName.toLowerCase();
      if (tag === "img" && (el.getAttribute("src") === "x" || el.hasAttribute("onerror"))) hits.push(describe(el));
      if (tag === "svg" && el.hasAttribute("onload")) hits.push(describe(el));
      if (tag === "a" && /^\\s*javascript:/i.test(el.getAttribute("href") || "")) hits.push(describe(el));
      if (tag === "script" && (el.textContent || "").includes("__xss")) hits.push(describe(el));
      for (const attr of el.attributes) {
        if (/^on/i.test(attr.name) && attr.value.includes("__xss")) hits.push(describe(el));
      }
      if ((tag === "strong" || tag === "b" || tag === "em") && el.textContent === "bold") hits.push(describe(el));
      if (el.shadowRoot) walk(el.shadowRoot);
    }
  };
  walk(document);
  return {xss: window.__xss === undefined ? null : String(window.__xss), hits};
}"""


def assert_nothing_ran(page: Page, where: str) -> None:
    """No payload executed and none became an element, anywhere in the page."""
    found = page.evaluate(INJECTED_JS)
    assert found["xss"] is None, f"{where}: a payload ran (window.__xss = {found['xss']})"
    assert found["hits"] == [], f"{where}: payloads became elements: {found['hits']}"


def see(page: Page, text: str, where: str, timeout: float = 20_000) -> Locator:
    """The first visible element showing ``text`` (a payload as literal text)."""
    locator = page.get_by_text(text).filter(visible=True).first
    try:
        expect(locator).to_be_visible(timeout=timeout)
    except AssertionError as exc:
        raise AssertionError(f"{where}: the text {text!r} is not shown") from exc
    return locator


def click_tab(page: Page, name: str, *, last: bool = False) -> None:
    tabs = page.locator(".bk-tab", has_text=re.compile(rf"^{re.escape(name)}$"))
    (tabs.last if last else tabs.first).click()


#: Query keys the dashboard itself keeps in the URL as the selection changes (not navigation).
_SYNCED_KEYS = frozenset({"nodeId", "tab", "iteration", "attempt"})


def _place(url: str) -> tuple[str, str, str, list[tuple[str, str]]]:
    """Where a URL leads, less the selection the dashboard syncs into its query."""
    parts = urlsplit(url)
    query = sorted((k, v) for k, v in parse_qsl(parts.query) if k not in _SYNCED_KEYS)
    return parts.scheme, parts.netloc, parts.path, query


def click_payload_link_text(page: Page, near: Locator, where: str, *, opens_run: str | None = None) -> None:
    """Click where the payload's link text ("click", "md") is drawn: it must be inert text.

    ``opens_run``: the click is on a row whose own job is to open that run in place (the run
    list): the page must then reach the dashboard's ``?runId=<run>`` and nothing else. Waiting
    for that designed step keeps the check from racing it (the server answers the click over
    the websocket, sometimes within the 200 ms, sometimes after).
    """
    before = _place(page.url)
    scheme, netloc, path, _ = before
    expected = before if opens_run is None else (scheme, netloc, path, [("runId", opens_run)])
    near.click()
    if opens_run is not None:
        page.wait_for_url(lambda url: _place(url) == expected, timeout=20_000)
    page.wait_for_timeout(200)  # not synchronisation: a handler would have run on the click itself
    assert _place(page.url) == expected, f"{where}: clicking the payload text navigated to {page.url}"
    assert_nothing_ran(page, f"{where} after a click")


#: Canvas coordinates of every glyph of the plots whose data source has ``column``: the
#: centre of each bar (hbar: ``sleft/sright/sy``) or marker (``sx/sy``), from Bokeh's own
#: views. The plot's canvas element gets ``data-hover-target=<column>`` so Playwright can
#: hover at those coordinates (scrolling it into view first).
GLYPHS_JS = """(column) => {
  const out = [];
  for (const view of Bokeh.index.query((v) => v.model && v.model.type === "GlyphRenderer")) {
    const data = view.model.data_source.data;
    if (!(column in data)) continue;
    view.parent.canvas_view.el.setAttribute("data-hover-target", column);
    const g = view.glyph;
    const n = g.sy ? g.sy.length : 0;
    for (let i = 0; i < n; i++) {
      const x = g.sx ? g.sx[i] : (g.sleft[i] + g.sright[i]) / 2;
      if (!Number.isFinite(x) || !Number.isFinite(g.sy[i])) continue;
      out.push({x: x, y: g.sy[i], i});
    }
  }
  return out;
}"""


def hover_tooltips(page: Page, column: str, want: list[str], where: str) -> list[str]:
    """Hover every glyph of the chart with ``column`` and collect the tooltip texts; every
    string of ``want`` must appear in one of them."""
    points = wait_until(lambda: page.evaluate(GLYPHS_JS, column), 20, f"{where}: glyphs to hover", page)
    texts: list[str] = []
    canvas = page.locator(f'[data-hover-target="{column}"]').first
    for point in points:
        canvas.hover(position={"x": point["x"] + 1, "y": point["y"] + 1}, force=True)
        canvas.hover(position={"x": point["x"], "y": point["y"]}, force=True)
        tooltip = page.locator(".bk-tooltip-content").filter(visible=True)
        with contextlib.suppress(AssertionError):
            expect(tooltip.first).to_be_visible(timeout=3_000)
            texts.extend(t for t in tooltip.all_inner_texts() if t.strip())
        assert_nothing_ran(page, f"{where} tooltip")
    joined = "\n".join(texts)
    for text in want:
        assert " ".join(text.split()) in " ".join(joined.split()), (
            f"{where}: no tooltip showed {text!r}; the tooltips said:\n{joined[:3000]}")
    page.mouse.move(5, 5)
    return texts


def screenshot(page: Page, tmp_path: Path, name: str) -> Path:
    folder = Path(os.environ.get("SMITHERS_SCREENSHOTS") or tmp_path)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    page.screenshot(path=str(path), full_page=True)
    return path


# ---------------------------------------------------------------------------- 0. the checks can fail


def test_the_checks_see_an_injected_payload(page: Page) -> None:
    """The detector is not blind: the same payloads parsed as HTML inside a shadow root
    (as a view that used innerHTML would) set ``window.__xss`` and leave elements behind."""
    page.set_content("<div id='host'></div>")
    page.evaluate("""(html) => {
      const root = document.getElementById("host").attachShadow({mode: "open"});
      root.innerHTML = html;
    }""", HOSTILE)
    wait_until(lambda: page.evaluate("() => window.__xss !== undefined"), 5, "the injected onerror to run", page)
    found = page.evaluate(INJECTED_JS)
    assert found["xss"] is not None
    kinds = " ".join(found["hits"])
    for piece in ("<img", "<svg", 'href="javascript:'):
        assert piece in kinds, f"the detector missed {piece}: {found['hits']}"
    with pytest.raises(AssertionError, match="a payload ran"):
        assert_nothing_ran(page, "canary")


# ---------------------------------------------------------------------------- 1. every view


def test_hostile_text_is_shown_as_text_in_every_view(
    hostile_gateway: ReplayThread, serve_dashboard: Callable[..., DashboardServer], page: Page,
    browser_log: BrowserLog, tmp_path: Path,
) -> None:
    server = serve_dashboard(hostile_gateway.gateway.url, env={"SMITHERS_DASHBOARD_ACTIONS": "1"})
    # An <img src=x> that made it into the page asks the server for ".../x" (a 404).
    failed: list[str] = []
    page.on("response", lambda r: failed.append(f"{r.status} {r.url}") if r.status >= 400 else None)
    # A blob: URL is the page's own object (a worker, a download) that navigation aborts; a
    # payload's request is an http(s) one.
    page.on("requestfailed", lambda r: None if r.url.startswith("blob:") else failed.append(f"{r.failure} {r.url}"))

    # --- the run list: workflow names and a hostile status, as table cells
    page.goto(server.url(), wait_until="domcontentloaded")
    see(page, hostile("workflow"), "run list workflow", timeout=40_000)
    see(page, hostile("status"), "run list status")
    see(page, hostile("workflow-2"), "run list workflow (second run)")
    assert_nothing_ran(page, "run list")
    click_payload_link_text(page, see(page, hostile("workflow"), "run list"), "run list", opens_run=RUN)

    # --- the run page: header, failure banner, tree
    page.goto(f"{server.url()}?runId={RUN}", wait_until="domcontentloaded")  # the list sits below the overview
    expect(page.locator(f'.sd-runid:text-is("{RUN}")')).to_be_visible(timeout=30_000)
    see(page, hostile("workflow"), "header workflow")
    banner = page.locator('[data-testid="failure-banner"]')
    expect(banner).to_contain_text(hostile("run-error"), timeout=20_000)
    see(page, hostile("label"), "tree label")
    see(page, HOSTILE_NODE_ID, "tree nodeId")
    see(page, hostile("group-label"), "tree structural label")
    see(page, hostile("type"), "tree unknown type")
    see(page, HOSTILE_STATE, "tree unknown state")
    rows = page.locator(".st-row[data-node-id]")
    expect(rows).to_have_count(5, timeout=20_000)
    # The state filter offers the hostile state by name.
    deadline = time.monotonic() + 20
    while True:  # the filter's options follow the run's states once the page is ready: poll
        options = page.locator(".sd-state-filter select option").all_inner_texts()
        if any(HOSTILE_STATE in " ".join(o.split()) for o in options):
            break
        assert time.monotonic() < deadline, f"the state filter lacks the hostile state: {options}"
        page.wait_for_timeout(100)
    assert_nothing_ran(page, "run page")

    # --- node detail of the hostile task: Task (agent, prompt, props), Output, Diff, Scores
    page.locator('.st-row[data-node-id="10"]').click()
    expect(page.locator(".sd-node-title")).to_contain_text(hostile("label"), timeout=20_000)
    see(page, hostile("agent"), "task agent")
    see(page, hostile("prompt"), "task prompt")
    see(page, hostile("table"), "task output table name")
    for tag in ("prop-key", "prop-value", "deep-key", "deep"):
        see(page, marker(tag), f"props {tag}")
    actions = page.locator(".bk-btn", has_text="Approve").filter(visible=True).first
    see(page, f"Waiting for approval: {hostile('approval')}", "approval title")
    actions.click()
    see(page, "Approve this request?", "approval confirmation")
    page.locator(".bk-btn", has_text="Keep").filter(visible=True).first.click()
    screenshot(page, tmp_path, "hostile-task.png")
    assert_nothing_ran(page, "task tab")

    click_tab(page, "Output")
    for tag in ("field", "field-type", "value", "note", "extra-key"):
        see(page, hostile(tag), f"output {tag}")
    see(page, marker("extra"), "output list value")
    click_payload_link_text(page, page.locator(".tabulator-cell", has_text=hostile("value")).first, "output cell")

    click_tab(page, "Diff")
    for tag in ("path", "op", "base", "old-path", "new-path", "hunk-head", "hunk-del", "hunk-add", "hunk-context"):
        see(page, hostile(tag), f"diff {tag}")
    screenshot(page, tmp_path, "hostile-diff.png")
    assert_nothing_ran(page, "diff tab")

    click_tab(page, "Scores")
    see(page, SCORER, "node scores scorer")
    for tag in ("reason", "source"):
        see(page, hostile(tag), f"node scores {tag}")
    assert_nothing_ran(page, "node scores tab")

    # --- the task whose reads fail with hostile RPC errors
    page.locator('.st-row[data-node-id="12"]').click()
    expect(page.locator(".sd-node-title")).to_contain_text(TASK_ERR, timeout=20_000)
    see(page, HOSTILE_STATE, "state pill")
    click_tab(page, "Output")
    see(page, hostile("rpc-error"), "output RPC error")
    click_tab(page, "Diff")
    see(page, hostile("diff-error"), "diff RPC error")
    # --- the structural node with a hostile type, and the task with a hostile nodeId
    page.locator('.st-row[data-node-id="2"]').click()
    expect(page.locator(".sd-node-title")).to_contain_text(hostile("group-label"), timeout=20_000)
    see(page, hostile("type"), "node title type")
    click_tab(page, "Task")
    for tag in ("group-key", "group-value"):
        see(page, marker(tag), f"structural props {tag}")
    page.locator('.st-row[data-node-id="11"]').click()
    expect(page.locator(".sd-node-title")).to_contain_text(HOSTILE_NODE_ID, timeout=20_000)
    assert_nothing_ran(page, "node detail")

    # --- bottom tabs: the timeline and its hover tooltips
    click_tab(page, "Timeline", last=True)
    expect(page.get_by_text(re.compile(r"\d+ attempts on 3 tasks"))).to_be_visible(timeout=30_000)
    hover_tooltips(page, "duration", [HOSTILE_NODE_ID, TASK_ERR], "timeline")
    screenshot(page, tmp_path, "hostile-timeline.png")

    # --- the scores chart and table
    click_tab(page, "Scores", last=True)
    see(page, hostile("reason-2"), "run scores table reason")
    see(page, SCORER_2, "run scores table scorer")
    tips = hover_tooltips(page, "reason", [SCORER, SCORER_2, hostile("reason"), hostile("reason-2"), HOSTILE_NODE_ID],
                          "scores chart")
    assert any("@{x}{safe}" in t for t in tips), "the Bokeh field tricks must show as typed"
    screenshot(page, tmp_path, "hostile-scores.png")

    # --- the event log: hostile event names, nodeIds, error messages, reasons
    click_tab(page, "Events", last=True)
    search = page.get_by_placeholder("Filter: node, event, message…")
    # The table draws only the rows in view: filter down to each one (the filter is text too).
    for needle, text in (("node-error:", hostile("node-error")), ("event:", hostile("event")),
                         ("event-reason:", hostile("event-reason")), ("__xss=7", HOSTILE_NODE_ID),
                         ("state:", HOSTILE_STATE), ("run-error:", f"SESSION_ERROR: {hostile('run-error')}"),
                         ("err-task-error:", f"{hostile('error-name')}: {hostile('err-task-error')}")):
        search.fill(needle)
        see(page, text, f"events table ({needle})")
    search.fill("node-error:")
    click_payload_link_text(page, page.locator(".tabulator-cell", has_text=hostile("node-error")).first, "events cell")
    search.fill("")

    # --- the frame scrubber: the tree as it was, labels as text
    click_tab(page, "Frames", last=True)
    see(page, hostile("label"), "frames tree label")
    see(page, HOSTILE_NODE_ID, "frames tree nodeId")
    assert_nothing_ran(page, "frames tab")

    # --- a resync notice carrying Gateway text (devtools.error's message)
    sent = hostile_gateway.call(lambda: hostile_gateway.gateway.devtools_error(RUN, "BackpressureDisconnect", hostile("resync")))
    assert sent >= 1, "the dashboard had no DevTools stream open on the run"
    notice = page.locator(".sd-notice")
    expect(notice).to_contain_text(hostile("resync"), timeout=20_000)
    expect(notice).to_contain_text("Resynced")
    screenshot(page, tmp_path, "hostile-run.png")
    assert_nothing_ran(page, "run page at the end")

    # --- the wall monitor on the same run
    page.goto(server.url(f"view=monitor&runId={RUN}"), wait_until="domcontentloaded")
    expect(page.locator(f'.sd-runid:text-is("{RUN}")')).to_be_visible(timeout=30_000)
    see(page, hostile("workflow"), "monitor header")
    expect(page.locator('[data-testid="failure-banner"]')).to_contain_text(hostile("run-error"), timeout=20_000)
    see(page, hostile("label"), "monitor tree")
    recent = page.locator(".sd-recent")
    for text in (marker("node-error"), marker("event"), shorten(HOSTILE_NODE_ID, 60)):
        expect(recent).to_contain_text(text, timeout=20_000)
    screenshot(page, tmp_path, "hostile-monitor.png")
    assert_nothing_ran(page, "monitor")
    assert browser_log.dialogs == []
    assert failed == [], f"requests that failed (a payload's <img src=x> asks for .../x): {failed}"


# ---------------------------------------------------------------------------- 2. no SSRF


class Listener:
    """A plain TCP listener on loopback that records every connection made to it: the host a
    forged ``?gateway=`` would point the server (or the browser) at."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.sock.settimeout(0.2)
        self.port = int(self.sock.getsockname()[1])
        self.url = f"http://127.0.0.1:{self.port}"
        self.connections: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._accept, daemon=True, name="ssrf-listener")
        self._thread.start()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, peer = self.sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with conn:
                conn.settimeout(0.5)
                try:
                    first = conn.recv(200)
                except OSError:
                    first = b""
                self.connections.append(f"{peer}: {first[:120]!r}")

    def assert_untouched(self, seconds: float, where: str) -> None:
        """Poll for ``seconds``: any connection fails at once, naming what it sent."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            assert self.connections == [], f"{where}: something connected to the forged host: {self.connections}"
            time.sleep(0.1)  # poll interval
        assert self.connections == [], f"{where}: something connected to the forged host: {self.connections}"

    def close(self) -> None:
        self._stop.set()
        self.sock.close()
        self._thread.join(5)


@pytest.fixture
def listener() -> Iterator[Listener]:
    forged = Listener()
    yield forged
    forged.close()


#: Every input, text area and select of the page (all shadow roots), described by what a
#: user would read: placeholder, label, name, aria-label, value, and whether it is editable.
INPUTS_JS = """() => {
  const out = [];
  const walk = (root) => {
    for (const el of root.querySelectorAll("input, textarea, select, [contenteditable='true']")) {
      const label = el.id && root.querySelector ? root.querySelector(`label[for="${el.id}"]`) : null;
      out.push({
        tag: el.tagName.toLowerCase(), type: el.getAttribute("type") || "",
        text: [el.getAttribute("placeholder"), el.getAttribute("name"), el.getAttribute("aria-label"),
               label && label.textContent, el.closest("label") && el.closest("label").textContent,
               el.parentElement && el.parentElement.textContent, el.value].filter(Boolean).join(" | "),
        editable: !(el.readOnly || el.disabled),
      });
    }
    for (const el of root.querySelectorAll("*")) if (el.shadowRoot) walk(el.shadowRoot);
  };
  walk(document);
  return out;
}"""
_URLISH = re.compile(r"gateway|url|host|https?:|ws:|wss:|:\d{2,5}\b|endpoint|server", re.IGNORECASE)


def assert_no_gateway_field(page: Page, where: str) -> list[dict[str, Any]]:
    fields: list[dict[str, Any]] = page.evaluate(INPUTS_JS)
    offending = [f for f in fields if f["editable"] and _URLISH.search(f["text"])]
    assert offending == [], f"{where}: a widget offers a gateway/URL field: {offending}"
    return fields


def test_the_page_url_cannot_point_the_server_at_another_host(
    hostile_gateway: ReplayThread, serve_dashboard: Callable[..., DashboardServer], page: Page,
    browser_log: BrowserLog, listener: Listener,
) -> None:
    server = serve_dashboard(hostile_gateway.gateway.url, env={"SMITHERS_DASHBOARD_ACTIONS": "1"})
    forged = listener.url
    before = hostile_gateway.call(lambda: hostile_gateway.gateway.connections_total)

    # Pages without a run: the run list must still come from the configured Gateway (A).
    for name in ("gateway", "gateway_url", "url", "SMITHERS_GATEWAY_URL", "base_url", "host", "smithers_token"):
        page.goto(server.url(f"{name}={quote(forged, safe='')}"), wait_until="domcontentloaded")
        expect(page.locator(".tabulator-cell", has_text=RUN).first).to_be_visible(timeout=40_000)
        listener.assert_untouched(0.5, f"?{name}=")
    fields = assert_no_gateway_field(page, "run list")
    assert fields, "the run list page has no inputs at all: the widget check saw nothing"

    # Run ids that look like paths or URLs, with and without a forged gateway beside them:
    # the Gateway (A) is asked about them, and says it does not know them.
    run_ids = ["../../x", f"{forged}/", f"{forged}/v1/rpc/getRun", "a/b?c=d&gateway=" + forged, "//127.0.0.1:1/x"]
    extras = ("", f"&gateway={quote(forged, safe='')}&nodeId={quote(forged, safe='')}")
    for i, run_id in enumerate(run_ids):
        for extra in extras if i < 2 else extras[:1]:
            page.goto(server.url(f"runId={quote(run_id, safe='')}{extra}"), wait_until="domcontentloaded")
            expect(page.locator(".sd-runid")).to_have_text(run_id, timeout=40_000)
            expect(page.locator(".sd-banner").first).to_contain_text(f"Run not found: {run_id}", timeout=20_000)
            listener.assert_untouched(0.5, f"?runId={run_id}{extra}")
    assert_no_gateway_field(page, "run page")

    # The monitor, with a forged gateway and a forged run id.
    page.goto(server.url(f"view=monitor&gateway={quote(forged, safe='')}&runId={RUN}"), wait_until="domcontentloaded")
    expect(page.locator(f'.sd-runid:text-is("{RUN}")')).to_be_visible(timeout=40_000)
    expect(page.locator("[data-connection-status]")).to_have_attribute("data-connection-status", "online", timeout=30_000)
    assert_no_gateway_field(page, "monitor")

    # A real run still opens from the configured Gateway after all that.
    page.goto(server.url(f"runId={RUN}&gateway={quote(forged, safe='')}"), wait_until="domcontentloaded")
    see(page, hostile("label"), "the configured Gateway's run")
    listener.assert_untouched(3.0, "after every page")
    after = hostile_gateway.call(lambda: hostile_gateway.gateway.connections_total)
    assert after > before, "the dashboard never talked to its configured Gateway"
    # The browser only ever opened the dashboard's own socket (the query string rides along).
    assert {(urlsplit(u).hostname, urlsplit(u).port) for u in browser_log.websockets} == {("127.0.0.1", server.port)}
    # The listener is not deaf: a connection of ours is seen.
    socket.create_connection(("127.0.0.1", listener.port), timeout=5).close()
    wait_until(lambda: len(listener.connections) == 1, 5, "the listener to record our own connection")
