"""Views render from the store, carry their data-* attributes, and never render Gateway text as HTML."""

from __future__ import annotations

import html
import time
from typing import Any

import panel as pn
import pytest
from bokeh.document import Document
from bokeh.models import HoverTool
from bokeh.server.callbacks import TimeoutCallback
from panel.io.state import set_curdoc

from dashboard.app import Dashboard
from dashboard.config import DashboardConfig, load_config
from dashboard.format import format_duration, state_colour, state_label, task_summary
from dashboard.store import EventRecord, RunStore
from dashboard.views import (
    ConnectionBadge,
    EventLog,
    FrameScrubber,
    NodeDetail,
    RunHeader,
    ScoresView,
    Timeline,
)
from dashboard.views.detail import diff_html, output_frame, title_html
from dashboard.views.events import filter_events
from dashboard.views.scrubber import changed_ids, frame_html
from dashboard.views.status import connection_html
from dashboard.views.timeline import build_attempts
from inspector.tree import DevToolsTree

from .test_hub import FakeFeeds, FakeRpc, delta_event, make_hub, set_state, snapshot_event, task_node, until

XSS = "<script>alert('x')</script><img src=x onerror=alert(2)>"


def render(view: Any) -> list[Any]:
    """Build the Bokeh models of a view; return every model in the document."""
    doc = Document()
    root = pn.panel(view).get_root(doc)
    return list(root.references())


def html_texts(models: list[Any]) -> str:
    """The markup HTML models will put in the page (Panel escapes it once for transport)."""
    return "\n".join(html.unescape(str(getattr(m, "text", ""))) for m in models if type(m).__name__ == "HTML")


def assert_plaintext(tables: list[Any], columns: set[str]) -> None:
    """Every named column of the rendered Tabulators uses Tabulator's ``plaintext`` formatter."""
    seen = set()
    for table in tables:
        for column in table.configuration.get("columns", []):
            if column.get("field") in columns:
                assert column.get("formatter") == "plaintext", column
                seen.add(column["field"])
    assert seen == columns


def tree_with(*tasks: dict[str, Any]) -> DevToolsTree:
    return DevToolsTree(snapshot_event("r1", 5, list(tasks)))


def store_with_tree(tree: DevToolsTree, **params: Any) -> RunStore:
    store = RunStore(**params)
    store.tree = tree
    store.tree_version += 1
    return store


# ---------------------------------------------------------------------------- pure helpers


def test_format_helpers() -> None:
    assert format_duration(None) == "–"
    assert format_duration(3.25) == "3.2 s" or format_duration(3.25) == "3.3 s"
    assert format_duration(125) == "2 min 05 s"
    assert format_duration(7300) == "2 h 01 min"
    assert state_label("in-progress") == "in-progress" and state_label("waiting-newthing") == "waiting-newthing"
    assert state_label("unknown") == "no state"
    assert state_colour("pending") != state_colour("finished")  # queued is never success-green
    assert state_colour("waiting-newthing") == state_colour("waiting-approval")
    summary = task_summary({"finished": 3, "in-progress": 2, "failed": 1, "waiting-approval": 1, "weird": 1})
    assert (summary.total, summary.finished, summary.running, summary.failed, summary.waiting, summary.other) == (8, 3, 2, 1, 1, 1)


def test_config_reads_env_and_token_file(tmp_path: Any) -> None:
    token_file = tmp_path / "token"
    token_file.write_text("from-file\n")
    cfg = load_config({"SMITHERS_GATEWAY_URL": "http://gw:1/", "SMITHERS_TOKEN_FILE": str(token_file),
                       "SMITHERS_DASHBOARD_ACTIONS": "1"})
    assert cfg.gateway_url == "http://gw:1" and cfg.token == "from-file" and cfg.actions_enabled
    assert "from-file" not in repr(cfg)
    assert load_config({"SMITHERS_TOKEN": "a", "SMITHERS_TOKEN_FILE": str(token_file)}).token == "a"
    assert not load_config({}).actions_enabled
    with pytest.raises(ValueError):
        load_config({"SMITHERS_TOKEN_FILE": str(tmp_path / "missing")})


def test_connection_html_says_how_long_and_escapes() -> None:
    now = time.time()
    text = connection_html("offline", outage_since=now - 75, retry_in=2.0, error=XSS, now=now)
    assert 'data-connection-status="offline"' in text
    assert "Offline for 1 min 15 s" in text and "retrying in 2.0 s" in text
    assert "<script>" not in text and "&lt;script&gt;" in text
    text = connection_html("unauthorized", required_scope="observability:read")
    assert 'data-connection-status="unauthorized"' in text and "observability:read" in text
    assert "SMITHERS_TOKEN" in connection_html("unauthorized")
    # Between two retries of an outage the badge still says how long it has been down.
    text = connection_html("connecting", outage_since=now - 12, error=XSS, now=now)
    assert 'data-connection-status="connecting"' in text and "offline for 12 s" in text
    assert "<script>" not in text
    assert "offline" not in connection_html("connecting", now=now)


def test_diff_and_title_escape_everything() -> None:
    diff = {"baseRef": "abc", "patches": [{"path": "a<b>.py", "operation": "modify",
                                           "diff": f"@@ -1 +1 @@\n-old\n+{XSS}\n context"}]}
    text = diff_html(diff, None)
    assert "<script>" not in text and "&lt;script&gt;" in text
    assert '<span class="add">' in text and '<span class="del">' in text and '<span class="hunk">' in text
    assert "AttemptNotFinished" in diff_html(None, "AttemptNotFinished: no jj pointer")
    node = tree_with(task_node(10, "t", "finished", label=XSS)).get(10)
    title = title_html(node)
    assert "<img" not in title and "&lt;img" in title


def test_output_frame_follows_the_schema_and_keeps_values_as_text() -> None:
    frame = output_frame({"status": "produced", "row": {"note": XSS, "value": 1, "extra": [1, 2]},
                          "schema": {"fields": [{"name": "value", "type": "number"}, {"name": "note", "type": "string"}]}})
    assert list(frame["field"]) == ["value", "note", "extra"]
    assert frame.loc[1, "value"] == XSS and frame.loc[2, "value"] == "[1, 2]"


def test_attempts_from_events_with_retry_and_loop() -> None:
    def ev(t: float, name: str, node: str, **kw: Any) -> EventRecord:
        return EventRecord(t, name, node_id=node, **kw)

    events = [
        ev(0, "node.pending", "flaky", iteration=0), ev(1, "node.started", "flaky"), ev(2, "node.failed", "flaky"),
        ev(2.1, "node.retrying", "flaky", attempt=2), ev(3, "node.started", "flaky"), ev(4, "node.finished", "flaky"),
        ev(4, "node.pending", "refine", iteration=1), ev(5, "node.started", "refine"),
    ]
    attempts = build_attempts(events, {("refine", 1): "finished"})
    assert [(a.node_id, a.iteration, a.attempt, a.outcome) for a in attempts] == [
        ("flaky", 0, 1, "failed"), ("flaky", 0, 2, "finished"), ("refine", 1, 1, "finished"),
    ]
    assert build_attempts(events)[-1].outcome == "running"
    # The tree lagging the log (still "pending" after node.started) keeps the attempt running.
    assert build_attempts(events, {("refine", 1): "pending"})[-1].outcome == "running"


def test_event_filters() -> None:
    records = [EventRecord(1, "node.started", node_id="a"), EventRecord(2, "node.failed", node_id="b", message="boom"),
               EventRecord(3, "run.completed", message="run finished")]
    assert [r.event for r in filter_events(records, kind="failures")] == ["node.failed"]
    assert [r.node_id for r in filter_events(records, text="BOOM")] == ["b"]
    assert len(filter_events(records)) == 3


def test_scrubber_marks_changed_nodes() -> None:
    before = snapshot_event("r", 1, [task_node(10, "a", "pending"), task_node(11, "b", "pending")])["snapshot"]["root"]
    after = snapshot_event("r", 2, [task_node(10, "a", "finished"), task_node(11, "b", "pending"),
                                    task_node(12, XSS, "pending")])["snapshot"]["root"]
    assert changed_ids(before, after) == {10, 12}
    text = frame_html(after, {10, 12})
    assert text.count('class="changed"') == 2 and "&lt;script&gt;" in text and "<script>" not in text


# ---------------------------------------------------------------------------- rendered views


def test_connection_status_renders_its_attribute_and_ticks_only_offline() -> None:
    store = RunStore()
    view = ConnectionBadge(store=store)
    assert 'data-connection-status="idle"' in html_texts(render(view))
    store.param.update(connection_status="online")
    assert 'data-connection-status="online"' in view._pane.object
    assert view._callback is None
    store.param.update(connection_status="offline", outage_since=time.time() - 12, connection_error=XSS)
    assert 'data-connection-status="offline"' in view._pane.object and "<script>" not in view._pane.object
    store.param.update(connection_status="online", outage_since=None)
    assert view._callback is None  # no timer runs while online


def test_header_task_summary_attributes_and_failure_banner() -> None:
    tree = tree_with(task_node(10, "a", "finished"), task_node(11, "b", "in-progress"),
                     task_node(12, "c", "failed"), task_node(13, "d", "pending"))
    store = store_with_tree(tree, run_id=None)
    store.run_id = "r1"  # no hub: the store stays inert but the header renders
    store.tree = tree
    store.param.update(run={"runId": "r1", "workflowName": XSS, "status": "failed", "startedAtMs": 1000,
                            "finishedAtMs": 5000, "errorJson": '{"message": "disk <b>full</b>"}'},
                       tree_version=store.tree_version + 1)
    text = html_texts(render(RunHeader(store=store)))
    assert 'data-testid="task-summary"' in text
    assert 'data-total="4"' in text and 'data-finished="1"' in text and 'data-running="1"' in text and 'data-failed="1"' in text
    assert "&lt;script&gt;" in text and "<script>" not in text
    assert 'data-testid="failure-banner"' in text and "disk &lt;b&gt;full&lt;/b&gt;" in text


def test_node_detail_renders_output_as_plaintext_table() -> None:
    tree = tree_with(task_node(10, "plan", "finished", attempt=1, maxAttempts=3))
    store = store_with_tree(tree)
    view = NodeDetail(store=store)
    store.selected_node = 10
    store.param.update(
        node_output={"status": "produced", "row": {"note": XSS}, "schema": {"fields": [{"name": "note", "type": "string"}]}},
        node_diff=None, node_diff_error="No diff yet: Attempt has no finished jj pointer.",
        node_scores=[{"scorerName": "len", "score": 0.5, "reason": XSS, "iteration": 0, "attempt": 1}],
    )
    assert view._tabs.dynamic  # a page builds a detail tab's models when the tab is opened ...
    assert view._out_table is None and view._scores is None, "... and its tables when one is first opened"
    view.tab = "scores"
    assert view._tabs.active == 3
    view._tabs.dynamic = False  # ... here every tab's models at once
    models = render(view)
    text = html_texts(models)
    assert "<script>" not in text
    assert "1 of 3" in text and "No diff yet" in text
    tables = [m for m in models if type(m).__name__ == "DataTabulator"]
    assert len(tables) == 2, "the output and scores tables render"
    assert_plaintext(tables, {"field", "type", "value", "scorer", "reason", "source"})
    assert view._out_table is not None and view._out_table.value.loc[0, "value"] == XSS
    # A pending or failed output is said in words.
    store.node_output = {"status": "failed", "row": None, "error": {"message": "boom", "attempt": 2}}
    assert "Failed (attempt 2): boom" in view._out_msg.object


def test_scores_chart_hover_uses_escaped_fields() -> None:
    store = RunStore()
    store.scores = [{"nodeId": "plan", "iteration": 0, "scorerName": "len", "score": 0.7, "reason": XSS},
                    {"nodeId": "refine", "iteration": 1, "scorerName": "len", "score": 0.4, "reason": "ok"}]
    view = ScoresView(store=store)
    models = render(view)
    hovers = [m for m in models if isinstance(m, HoverTool)]
    assert hovers
    for hover in hovers:
        tooltips = hover.tooltips if isinstance(hover.tooltips, list) else []
        assert all("{safe}" not in str(value) for _, value in tooltips)
    assert "2 scores" in view._summary.object


def test_timeline_and_event_log_render() -> None:
    store = RunStore()
    store.events = (EventRecord(1.0, "node.started", node_id="a"), EventRecord(2.0, "node.finished", node_id="a"),
                    EventRecord(2.5, "node.failed", node_id="b", message=XSS))
    timeline = Timeline(store=store)
    render(timeline)
    assert "1 attempts" in timeline._note.object
    log = EventLog(store=store)
    models = render(log)
    assert len(log._table.value) == 3 and log._table.current_view.iloc[0]["event"] == "node.failed"  # newest on top
    tables = [m for m in models if type(m).__name__ == "DataTabulator"]
    assert_plaintext(tables, {"time", "event", "nodeId", "state", "message"})
    # The rows reach the model the page draws (not only the widget's value), and later ones too.
    assert [len(column) for column in tables[0].source.data.values()] == [3] * len(tables[0].source.data)
    store.events = (*store.events, EventRecord(3.0, "run.failed"))
    log._update()
    assert len(tables[0].source.data["event"]) == 4 and "run.failed" in list(tables[0].source.data["event"])


async def test_scrubber_fetches_a_frame_and_follows_rewinds() -> None:
    feeds = FakeFeeds()
    snapshots = {n: snapshot_event("r1", n, [task_node(10, "a", "finished" if n > 2 else "pending")])["snapshot"]
                 for n in range(19)}
    rpc = FakeRpc({"getDevToolsSnapshot": lambda p: snapshots[p["frameNo"]], "getRun": {}, "listScores": []})
    hub = make_hub(feeds, rpc)
    store = RunStore(hub=hub, run_id="r1")
    scrubber = FrameScrubber(store=store, debounce=0.01)
    render(scrubber)
    await until(lambda: "r1" in feeds.queues)
    feeds.push("r1", snapshot_event("r1", 18, [task_node(10, "a", "finished")]))
    await until(lambda: scrubber._slider.end == 18 and scrubber._slider.value == 18)
    scrubber.show_frame(3)
    await until(lambda: "Frame 3 of 18 · 1 node(s) changed from frame 2" in scrubber._status.object)
    assert 'class="changed"' in scrubber._tree.object
    assert not scrubber.live and rpc.count("getDevToolsSnapshot", frameNo=3) == 1
    scrubber.show_frame(3)
    await until(lambda: "changed from frame 2" in scrubber._status.object)
    assert rpc.count("getDevToolsSnapshot", frameNo=3) == 1  # cached
    # A rewind shrinks the range and drops cached frames past the target.
    store.last_jump = {"from": 18, "to": 2, "at": time.time()}
    feeds.push("r1", snapshot_event("r1", 2, [task_node(10, "a", "pending")]))
    await until(lambda: scrubber._slider.end == 2)
    assert all(frame <= 2 for _, frame in scrubber._cache)
    assert scrubber.live
    store.close()
    await hub.aclose()


async def test_dashboard_composes_and_follows_deep_links() -> None:
    feeds, rpc = FakeFeeds(), FakeRpc({"getRun": {"runId": "r1", "status": "running"}, "listScores": [],
                                       "listRuns": [], "getNodeOutput": {"status": "pending", "row": None},
                                       "getNodeDiff": {"patches": []}})
    hub = make_hub(feeds, rpc)
    dash = Dashboard(hub=hub, config=DashboardConfig())
    models = render(dash)
    assert 'data-connection-status="idle"' in html_texts(models)
    assert dash.page == "runs"  # no run: the run list
    dash.open_run("r1")
    dash.node_key = "b"  # ?nodeId=b before the tree arrives
    await until(lambda: "r1" in feeds.queues)
    feeds.push("r1", snapshot_event("r1", 1, [task_node(10, "a"), task_node(11, "b")]))
    await until(lambda: dash.store.selected_node == 11)
    assert dash.page == "run"
    dash.store.selected_node = 10
    assert dash.node_key == "a"
    dash.close()
    monitor = Dashboard(run_id="r1", hub=hub, view="monitor", config=DashboardConfig())
    render(monitor)
    monitor.store.connection_status = "offline"
    assert monitor._content.styles.get("filter") == "grayscale(1)"
    monitor.store.param.update(connection_status="connecting", outage_since=time.time() - 5)  # a retry
    assert monitor._content.styles.get("filter") == "grayscale(1)", "grey for the whole outage"
    monitor.store.param.update(connection_status="online", outage_since=None)
    # Explicit "none", not a missing key: Bokeh keeps a removed style key in the browser.
    assert monitor._content.styles.get("filter") == "none"
    monitor.close()
    await hub.aclose()


def dashboard_rpc() -> FakeRpc:
    return FakeRpc({"getRun": {"runId": "r1", "status": "running"}, "listScores": [], "listRuns": [],
                    "getNodeOutput": {"status": "pending", "row": None}, "getNodeDiff": {"patches": []}})


async def test_a_run_page_builds_the_overview_when_asked_and_syncs_its_filters() -> None:
    """Issue 14: a run page's session builds the runs overview only when "All runs" is asked
    for (never on a timer), and that overview's filters still follow the URL without
    reopening the run being closed (the Location re-applies the URL's whole query when the
    overview is synced)."""
    hub = make_hub(FakeFeeds(), dashboard_rpc())
    doc = Document()  # no session context: onload callbacks run at once (the page has "loaded")
    with set_curdoc(doc):
        location = pn.state.location
        assert location is not None
        location.search = "?runId=r1&nodeId=a"
        dash = Dashboard(run_id="r1", hub=hub, config=DashboardConfig())
        dash.bind_location()
        render(dash)
        assert pn.state.loaded
        assert dash._landing is None, "a run page built the runs overview before it was asked for"
        assert not [cb for cb in doc.session_callbacks if isinstance(cb, TimeoutCallback)]
        assert dash.page == "run" and dash.node_key == "a"

        dash.open_run(None)  # "← All runs"
        assert dash.store.run_id is None and dash.page == "runs", "the closing run was reopened"
        assert dash._landing is not None and dash._landing_bound
        assert "runId" not in location.search and "nodeId" not in location.search, location.search
        dash.landing.overview.status = "failed"
        assert "status=failed" in location.search and "runId" not in location.search, location.search

        dash.open_run("r2")  # the filters stay in the URL beside the next run, and come back with it
        assert "runId=r2" in location.search and "status=failed" in location.search
        dash.open_run(None)
        assert dash.store.run_id is None and dash.page == "runs"
        assert "runId" not in location.search and "status=failed" in location.search
        dash.close()
    await hub.aclose()


async def test_a_url_with_null_keys_opens_the_overview_and_loses_them() -> None:
    """Links copied before ``Dashboard._tidy_url`` carry ``runId=null`` (Panel's None): no
    run called "null" is opened, the overview's filters apply, and the keys leave the URL."""
    hub = make_hub(FakeFeeds(), dashboard_rpc())
    with set_curdoc(Document()):
        location = pn.state.location
        assert location is not None
        location.search = "?window=7d&runId=null&nodeId=null&status=failed"
        dash = Dashboard(hub=hub, config=DashboardConfig())
        dash.bind_location()
        assert dash.store.run_id is None and dash.node_key is None and dash.page == "runs"
        assert (dash.landing.overview.window, dash.landing.overview.status) == ("7d", "failed")
        assert "null" not in location.search and "window=7d" in location.search, location.search
        dash.close()
    await hub.aclose()


async def test_scrubber_shows_the_states_a_frame_had_when_it_streamed_them() -> None:
    """Gateway 0.32 answers getDevToolsSnapshot(frameNo) with the tasks' CURRENT states (all
    finished here); for frames the hub watched, the scrubber shows what they were then."""
    feeds = FakeFeeds()
    current = {n: snapshot_event("r1", n, [task_node(10, "a", "finished"), task_node(11, "b", "finished")])["snapshot"]
               for n in range(5)}
    rpc = FakeRpc({"getDevToolsSnapshot": lambda p: current[p["frameNo"]], "getRun": {}, "listScores": []})
    hub = make_hub(feeds, rpc)
    store = RunStore(hub=hub, run_id="r1")
    scrubber = FrameScrubber(store=store, debounce=0.01)
    render(scrubber)
    await until(lambda: "r1" in feeds.queues)
    feeds.push("r1", snapshot_event("r1", 1, [task_node(10, "a"), task_node(11, "b")]))
    feeds.push("r1", delta_event(1, [set_state(10, "a", "in-progress")]))
    feeds.push("r1", delta_event(2, [set_state(10, "a", "finished"), set_state(11, "b", "in-progress")]))
    feeds.push("r1", delta_event(3, [set_state(11, "b", "finished")]))
    await until(lambda: scrubber._slider.end == 4)
    scrubber.show_frame(2)
    await until(lambda: "Frame 2 of 4" in scrubber._status.object and "loading" not in scrubber._status.object)
    assert "as this dashboard saw them stream" in scrubber._status.object
    assert "1 node(s) changed from frame 1" in scrubber._status.object  # a: pending -> in-progress
    text = html.unescape(scrubber._tree.object)
    assert ">in-progress<" in text and ">pending<" in text and ">finished<" not in text
    scrubber.show_frame(1)  # the first frame watched: frame 0 was not, so structure only
    await until(lambda: "Frame 1 of 4" in scrubber._status.object and "loading" not in scrubber._status.object)
    assert "0 node(s) changed from frame 0" in scrubber._status.object
    scrubber.show_frame(0)  # before the hub was watching: said, not guessed
    await until(lambda: "Frame 0 of 4" in scrubber._status.object and "loading" not in scrubber._status.object)
    assert "the Gateway's current ones" in scrubber._status.object
    store.close()
    await hub.aclose()


@pytest.fixture(autouse=True)
def _reset_panel_state() -> Any:
    yield
    pn.state.reset()
