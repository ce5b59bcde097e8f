"""A rewind resets the agents model to what the run now is.

Smithers' ``jumpToFrame`` deletes the attempts started after the target frame but keeps every
event row, so the durable history and ``listRunTokenUsage`` of a rewound run still list the
discarded attempts, and a re-executed task reuses their attempt numbers. The pure part
(:func:`inspector.agent_history.discard_rewound`, :func:`~inspector.agent_history.rebuilt_agents`) is tested on history rows
shaped like the engine's; :class:`dashboard.agent_feed.AgentFeed` with a scripted client; the
whole dashboard stack on the real Gateway's ``agent-steps`` workflow.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from dashboard.agent_feed import AgentFeed
from inspector.agent_history import discard_rewound, rebuilt_agents
from inspector.agents import RunAgents
from inspector.items import RunEvent
from inspector.pricing import TokenCounts
from inspector.protocol import EventFrame, TimeTravelJump

if TYPE_CHECKING:
    from tests.gateway.server import GatewayServer

RUN = "r1"


class History:
    """Durable rows as ``/v1/api/events`` gives them, numbered as they are added."""

    def __init__(self) -> None:
        self.rows: list[dict[str, Any]] = []

    def add(self, kind: str, at: float, **payload: Any) -> dict[str, Any]:
        row = {"seq": len(self.rows), "event": kind, "timestampMs": at,
               "payload": {"runId": RUN, "timestampMs": at, **payload}}
        self.rows.append(row)
        return row

    def frame(self, frame_no: int, at: float) -> None:
        self.add("FrameCommitted", at, frameNo=frame_no)

    def attempt(self, node: str, at: float, text: str, tokens: int, *, action: str | None = None) -> None:
        key = {"nodeId": node, "iteration": 0, "attempt": 1}
        self.add("NodeStarted", at, **key)
        self.add("NodeOutput", at + 1, **key, text=text, stream="stdout")
        if action is not None:
            self.add("AgentEvent", at + 2, **key, engine="scripted", event={
                "type": "action", "phase": "completed", "ok": True, "action": {"id": action, "kind": "tool", "title": action}})
        self.add("TokenUsageReported", at + 3, **key, model="m", agent="stepper", inputTokens=tokens, outputTokens=0)
        self.add("NodeFinished", at + 4, **key)

    def usage(self) -> list[dict[str, Any]]:
        """``listRunTokenUsage``'s rows: every TokenUsageReported, old or not."""
        return [{**row["payload"], "timestampMs": row["timestampMs"]} for row in self.rows if row["event"] == "TokenUsageReported"]


def rewound_run() -> History:
    """``a`` and ``b`` run, ``c`` starts; a rewind to frame 2 (after ``a``) discards ``b``'s and
    ``c``'s attempts; ``b`` runs again as attempt 1, with other output and usage."""
    h = History()
    h.add("RunStarted", 900)
    h.frame(1, 1000)
    h.attempt("a", 1010, "a says hi\n", 100)
    h.frame(2, 1100)
    h.attempt("b", 1110, "old b\n", 200, action="old-tool")
    h.frame(3, 1200)
    h.add("NodeStarted", 1210, nodeId="c", iteration=0, attempt=1)
    h.add("NodeOutput", 1211, nodeId="c", iteration=0, attempt=1, text="old c\n", stream="stdout")
    h.add("TimeTravelJumped", 1300, fromFrameNo=3, toFrameNo=2, caller="user:op")
    h.frame(3, 1310)
    h.attempt("b", 1320, "new b\n", 400)
    return h


def test_discard_rewound_cuts_what_followed_the_target_frame_up_to_the_jump() -> None:
    h = rewound_run()
    cut = discard_rewound(h.rows)
    kept = [(r["event"], r["payload"].get("nodeId"), r["payload"].get("text")) for r in cut.rows]
    assert ("NodeOutput", "b", "old b\n") not in kept and ("NodeOutput", "c", "old c\n") not in kept
    assert ("NodeOutput", "a", "a says hi\n") in kept and ("NodeOutput", "b", "new b\n") in kept
    assert cut.rows[cut.resume - 1]["event"] == "TimeTravelJumped"
    assert cut.windows == ((1100, 1300),)
    assert [r["inputTokens"] for r in h.usage() if not cut.discards(r)] == [100, 400]
    assert discard_rewound(list(reversed(h.rows))).rows == cut.rows, "rows are taken in seq order"


def test_a_second_rewind_goes_back_to_the_frame_as_renumbered() -> None:
    """Frames after the target are renumbered: a later jump to frame 3 means the frame 3
    committed after the first rewind (before ``b`` ran again), not the discarded one."""
    h = rewound_run()
    h.frame(4, 1400)
    h.attempt("c", 1410, "c after the first rewind\n", 50)
    h.add("TimeTravelJumped", 1500, fromFrameNo=4, toFrameNo=3)
    model = rebuilt_agents(h.rows, h.usage(), run_id=RUN)
    assert sorted(a.key for a in model) == [("a", 0, 1)]
    assert model.totals().input == 100
    assert discard_rewound(h.rows).windows == ((1100, 1300), (1310, 1500))
    h.frame(4, 1510)
    h.attempt("b", 1520, "b, third time\n", 800)
    h.frame(5, 1600)
    h.add("TimeTravelJumped", 1700, fromFrameNo=5, toFrameNo=5)  # to the newest frame: nothing after it
    model = rebuilt_agents(h.rows, h.usage(), run_id=RUN)
    b = model.attempt("b")
    assert b is not None and b.text() == "b, third time\n" and model.totals().input == 900


def test_a_jump_to_a_frame_the_history_does_not_hold_discards_everything_before_it() -> None:
    h = History()
    h.attempt("a", 10, "gone\n", 5)
    h.add("TimeTravelJumped", 50, fromFrameNo=1, toFrameNo=0)
    cut = discard_rewound(h.rows)
    assert [r["event"] for r in cut.rows] == ["TimeTravelJumped"] and cut.resume == 1
    assert rebuilt_agents(h.rows, h.usage()).attempts == {}


def test_the_rebuilt_model_holds_the_run_as_it_now_is() -> None:
    h = rewound_run()
    before = RunAgents(RUN)
    before.apply_history(h.rows)
    before.apply_token_usage_rows(h.usage())
    old_b = before.attempt("b")
    # What the model folds without the cut: the discarded attempt's output, action and usage
    # under the same key as the re-run (first report wins), and a task that never ran again.
    assert old_b is not None and old_b.text() == "old b\nnew b\n" and old_b.usage == TokenCounts(input=200)
    assert before.attempt("c") is not None

    model = rebuilt_agents(h.rows, h.usage(), run_id=RUN)
    b = model.attempt("b")
    assert b is not None and b.text() == "new b\n" and b.actions == {} and b.usage == TokenCounts(input=400)
    assert b.status == "finished"
    assert model.attempt("c") is None
    assert sorted(a.key for a in model) == [("a", 0, 1), ("b", 0, 1)]
    assert model.totals().input == 500 and model.attempt_counts() == (2, 0)


def test_a_live_stream_resumed_after_the_rewind_lines_up_with_the_history() -> None:
    """The live stream after the jump never sent the rows before it: its first output chunk
    of ``b`` is the history's first after the jump (a duplicate), and ``a``'s next chunk is
    its second (new), not a repeat of its first."""
    h = rewound_run()
    model = rebuilt_agents(h.rows, h.usage(), run_id=RUN, live_source="live#1")
    live = [("node.started", {"nodeId": "b"}), ("task.output", {"nodeId": "b", "output": "new b\n"}),
            ("task.output", {"nodeId": "b", "output": "more b\n"}), ("task.output", {"nodeId": "a", "output": "a again\n"})]
    for seq, (event, payload) in enumerate(live, start=40):
        model.apply(event, {"runId": RUN, **payload}, seq=seq, source="live#1")
    b, a = model.attempt("b"), model.attempt("a")
    assert b is not None and b.text() == "new b\nmore b\n"
    assert a is not None and a.text() == "a says hi\na again\n"


def test_adopt_keeps_the_object_and_moves_the_version_on() -> None:
    h = rewound_run()
    model = RunAgents(RUN)
    model.apply_history(h.rows)
    version = model.version
    holder = model
    model.adopt(rebuilt_agents(h.rows, h.usage(), run_id=RUN))
    assert holder is model and model.attempt("c") is None and model.version > version


class ScriptedClient:
    """``list_run_events`` / ``list_run_token_usage`` from a :class:`History`, each read
    counted; ``hold`` makes the reads wait until released (events arrive meanwhile)."""

    def __init__(self, history: History) -> None:
        self.history = history
        self.reads = 0
        self.hold = asyncio.Event()
        self.hold.set()

    async def list_run_events(self, run_id: str) -> list[dict[str, Any]]:
        self.reads += 1
        await self.hold.wait()
        return list(self.history.rows)

    async def list_run_token_usage(self, run_id: str) -> list[dict[str, Any]]:
        return self.history.usage()


def live(seq: int, event: str, **payload: Any) -> RunEvent:
    return RunEvent(EventFrame(event, {"runId": RUN, **payload}), seq=seq)


JUMP = TimeTravelJump(RUN, 3, 2, 1300, "user:op")


async def test_the_feed_rebuilds_once_per_jump_and_keeps_what_came_meanwhile() -> None:
    h = rewound_run()
    feed = AgentFeed(RUN)
    agents = feed.agents
    before = [live(seq, event, **payload) for seq, (event, payload) in enumerate([
        ("node.started", {"nodeId": "a"}), ("task.output", {"nodeId": "a", "output": "a says hi\n"}),
        ("node.finished", {"nodeId": "a"}), ("node.started", {"nodeId": "b"}),
        ("task.output", {"nodeId": "b", "output": "old b\n"}),
        ("token.usage", {"nodeId": "b", "iteration": 0, "attempt": 1, "inputTokens": 200, "outputTokens": 0}),
    ], start=1)]
    for item in before:
        feed.feed(item)
    client = ScriptedClient(h)
    client.hold.clear()
    first = asyncio.ensure_future(feed.rewind(client, RUN, JUMP))
    second = asyncio.ensure_future(feed.rewind(client, RUN, JUMP))  # another session, same jump
    await asyncio.sleep(0)
    # The resumed run numbers its live events from 1 again: after the jump, during the reads.
    feed.feed(live(1, "node.started", nodeId="b"))
    feed.feed(live(2, "task.output", nodeId="b", output="new b\n"))
    client.hold.set()
    assert await first and await second
    assert client.reads == 1, "one rebuild for every session of the run"
    assert feed.agents is agents, "every store's reference stays valid"
    b = agents.attempt("b")
    assert b is not None and b.text() == "new b\n" and b.usage == TokenCounts(input=400)
    assert agents.attempt("c") is None
    # A late joiner's catch-up hands in the hub's pre-jump items again, and durable rows: old news.
    assert all(feed.feed(item) is None for item in before)
    assert feed.feed(RunEvent(EventFrame("task.output", {"runId": RUN, "nodeId": "b", "output": "old b\n"}, seq=8),
                              replayed=True)) is None
    # The live stream goes on.
    feed.feed(live(3, "task.output", nodeId="b", output="more b\n"))
    assert b.text() == "new b\nmore b\n" and b.usage == TokenCounts(input=400)
    assert feed.live_source == "live#1"


async def test_token_usage_read_after_a_rewind_leaves_out_the_discarded_reports() -> None:
    h = rewound_run()
    feed = AgentFeed(RUN)
    client = ScriptedClient(h)
    assert await feed.rewind(client, RUN, JUMP)
    await feed.read_token_usage(client, RUN, "settled")
    assert feed.agents.totals().input == 500


async def test_a_rewind_found_in_a_replayed_durable_history_calls_for_the_rebuild() -> None:
    """A finished run opened after it was rewound is fed its durable history: the jump row
    among it (renamed by ``durable_run_events``) is recognised, and the rebuild cuts it."""
    from inspector.run_history import durable_run_events

    h = rewound_run()
    feed = AgentFeed(RUN)
    jumps = [jump for item in durable_run_events(h.rows, RUN) if (feed.feed(item), jump := feed.replayed_jump(item))[1]]
    assert jumps == [TimeTravelJump(RUN, 3, 2, 1300, "user:op")]
    assert feed.agents.attempt("c") is not None, "folded as it came"
    assert await feed.rewind(ScriptedClient(h), RUN, jumps[0])
    assert feed.agents.attempt("c") is None and feed.agents.totals().input == 500
    assert all(feed.replayed_jump(item) is None for item in durable_run_events(h.rows, RUN)), "once rebuilt, old news"


async def test_a_failed_read_leaves_the_model_and_is_tried_again() -> None:
    from inspector.errors import GatewayUnavailable

    h = rewound_run()
    feed = AgentFeed(RUN)
    feed.feed(live(1, "task.output", nodeId="b", output="old b\n"))

    class Failing(ScriptedClient):
        async def list_run_events(self, run_id: str) -> list[dict[str, Any]]:
            self.reads += 1
            if self.reads == 1:
                raise GatewayUnavailable("down")
            return list(self.history.rows)

    client = Failing(h)
    assert not await feed.rewind(client, RUN, JUMP)
    b = feed.agents.attempt("b")
    assert b is not None and b.text() == "old b\n" and feed.generation == 0
    assert await feed.rewind(client, RUN, JUMP)
    assert feed.agents.attempt("b") is not None and feed.agents.attempt("b").text() == "new b\n"  # type: ignore[union-attr]


# ---------------------------------------------------------------------------- real Gateway


def quiet_frame_after(rows: list[dict[str, Any]], node: str) -> int:
    """The first frame committed after ``node`` finished and before anything else started:
    a frame with no attempt in flight, so the rewind's cut is exactly "the attempts after"."""
    finished = min(r["seq"] for r in rows if r["event"] == "NodeFinished" and r["payload"].get("nodeId") == node)
    later = [r["seq"] for r in rows if r["event"] == "NodeStarted" and r["seq"] > finished]
    frames = [r for r in rows if r["event"] == "FrameCommitted" and finished < r["seq"] < min(later, default=1 << 60)]
    assert frames, f"no frame between {node} finishing and the next start: {[r['event'] for r in rows]}"
    frame: int = frames[0]["payload"]["frameNo"]
    return frame


async def test_a_rewound_agent_run_shows_what_the_gateway_now_has(make_gateway: Any) -> None:
    """``agent-steps`` on the real Gateway: four agent tasks one after the other, their agent
    reporting more tokens at every call. Rewound once it finished to the frame after the first
    task, the tasks after that frame run again under the same attempt numbers; the dashboard's agents then hold
    exactly the attempts the Gateway lists, each with its newest usage report, and one start
    line in each output (not the discarded run's too). (Rewound when finished, so no attempt
    is in flight: an aborted attempt's late events would land after the jump.)"""
    from dashboard.hub import GatewayHub
    from dashboard.store import RunStore
    from inspector.client import GatewayClient
    from tests.gateway.server import ADMIN_TOKEN
    from tests.test_hub import until

    gw: GatewayServer = make_gateway(pace=2)
    client = GatewayClient(gw.url, ADMIN_TOKEN)
    hub = GatewayHub(client, grace=0.2)
    try:
        run_id = await asyncio.to_thread(gw.launch_run, "agent-steps")
        store = RunStore(hub=hub, run_id=run_id)
        try:
            await asyncio.to_thread(gw.wait_for_run, run_id, timeout=120)
            await until(lambda: store.settled and len(store.agents) == 4, timeout=60, what="the first run settled")
            target = quiet_frame_after(await client.list_run_events(run_id), "agent-step-0")
            await client.rpc("rewindRun", {"runId": run_id, "frameNo": target, "confirm": True})
            await until(lambda: store.last_jump is not None, timeout=30, what="the rewind reached the store")
            await asyncio.to_thread(gw.wait_for_run, run_id, timeout=120)
            attempts = await client.rpc("attempts.list", {"runId": run_id})
            truth = {(a.get("nodeId", a.get("node_id")), a["iteration"], a["attempt"]) for a in attempts}
            usage = await client.list_run_token_usage(run_id)
            newest: dict[tuple[str, int, int], int] = {}
            for row in sorted(usage, key=lambda r: r["timestampMs"]):
                newest[(row["nodeId"], row["iteration"], row["attempt"])] = row["inputTokens"]
            want = sum(newest[key] for key in truth)
            assert len(usage) > len(truth), "the rewind discarded reported attempts (else this tests nothing)"

            def matches() -> bool:
                return store.settled and {a.key for a in store.agents} == truth and store.agents.totals().input == want

            await until(matches, timeout=60, what="the agents model equals the Gateway's attempts")
            for key in truth:
                attempt = store.agents.attempt(*key)
                assert attempt is not None and attempt.text().count("starting (iteration") == 1, attempt
        finally:
            store.close()
    finally:
        await hub.aclose()
