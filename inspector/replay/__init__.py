"""A replay Gateway: the Smithers Gateway protocol on loopback, driven by recorded runs.

:class:`ReplayGateway` plays :class:`~inspector.transcript.RecordedRun` values back as
*live* runs: their DevTools events and run events are released over time (recorded timing
divided by ``speed``), so a dashboard connected to it sees what it would see from a real
Gateway while the run executes. ``smithers-dashboard replay`` serves recordings with it,
``smithers-dashboard demo`` the bundled ones (:func:`serve_demo`), and the tests build their
fault-injecting double on it (``tests/faulty_replay.py``).

A run's ``getRun`` says ``running`` (or ``waiting-approval`` while a recorded approval gate
is open) until its last recorded event is out, then the recorded final status; its
``summary`` counts node states per (nodeId, iteration) from the node events released so
far, as ``countNodesByState`` does; scores and node outputs appear as the replay reaches
them; every recorded timestamp is moved onto the replay's wall clock and every recorded run
id onto the replay's. ``launchRun {workflow}`` starts another replay of a recorded run of
that workflow. ``rewindRun`` sends ``run.time_travel_jumped``, then a snapshot with a
*lower* seq, then re-executes.

Deliberate differences from the real Gateway: a subscription always starts with a snapshot
of the latest released frame (the real Gateway may start from an older rebaseline frame
and replay deltas; both are valid streams); without a configured token every caller is an
``admin``; ``getDevToolsSnapshot {frameNo}`` returns the tree as it really was at that frame
(the real one pastes *current* task states onto old frames); ``submitApproval`` is not
served (a recorded gate opens when the recording says so).

One module per job, so each reads on its own and none grows past a screenful of concerns:

- :mod:`~inspector.replay.playback`: a recording as a timeline and one replay's state
  (tree, frame history, node states, approvals, rows); pure, no asyncio, no sockets;
- :mod:`~inspector.replay.player`: the playback clock (what is due when, speed, pauses,
  loops, rewinds), telling a listener what it releases;
- :mod:`~inspector.replay.methods`: the RPC method handlers and their routing;
- :mod:`~inspector.replay.rpc`: error codes, HTTP statuses, scopes and grants;
- :mod:`~inspector.replay.server`: tornado HTTP + WebSocket, the handshake, the connections;
- :mod:`~inspector.replay.demo`: the bundled recordings and the looping demo.
"""

from __future__ import annotations

from .demo import DEMO_TRANSCRIPTS, demo_runs, serve_demo
from .playback import AutoRewind
from .rpc import http_status_for
from .server import ReplayGateway

__all__ = [
    "DEMO_TRANSCRIPTS",
    "AutoRewind",
    "ReplayGateway",
    "demo_runs",
    "http_status_for",
    "serve_demo",
]
