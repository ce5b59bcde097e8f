"""The fault table's rows and the measurements that fill them, for ``fault_suite.py``.

A :class:`Row` is one scenario's outcome; the helpers poll a :class:`Timeline` or the Gateway
with deadlines and turn what they saw into a row's cells; :func:`print_table` prints the table.
Kept apart from the scenarios so that the suite reads as scenarios: injection, then a verdict.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from inspector.status import ConnectionStatus
from tests.chaos_proxy import data_lost

if TYPE_CHECKING:
    from collections.abc import Callable

    from tests.chaos_proxy import Timeline
    from tests.gateway.server import GatewayServer



@dataclass
class Row:
    """One line of the fault table."""

    fault: str
    how: str
    expected: str
    observed: str = ""
    injected: int = 0
    recovered: int = 0
    ttr: list[float] = field(default_factory=list)
    lost: int | None = None
    said: str = ""
    ok: bool = False

    def ttr_text(self) -> str:
        if not self.ttr:
            return "-"
        return f"{statistics.median(self.ttr):.2f} / {max(self.ttr):.2f}"



# --------------------------------------------------------------------------- measurements


async def until(condition: Callable[[], bool], timeout: float) -> bool:
    """Poll ``condition`` until it holds (True) or ``timeout`` passes (False)."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.02)  # poll interval
    return True


async def finish(tl: Timeline, timeout: float) -> str | None:
    """Wait for the subscription to end by itself; the crash, if it crashed."""
    assert tl.task is not None
    try:
        await asyncio.wait_for(asyncio.shield(tl.task), timeout)
    except TimeoutError:
        await tl.stop()
        return f"did not settle within {timeout:g} s"
    except Exception as exc:  # the point of the suite: report it, do not die of it
        return f"CRASH {type(exc).__name__}: {str(exc)[:80]}"
    return None


def said(tl: Timeline) -> str:
    """The distinct errors the status carried, in order, shortened."""
    out: list[str] = []
    for _, state in tl.states():
        if state.status in (ConnectionStatus.OFFLINE, ConnectionStatus.UNAUTHORIZED) and state.error:
            text = f"{state.status.value}: {state.error[:70]}"
            if text not in out:
                out.append(text)
    return "; ".join(out[:3]) + (" ..." if len(out) > 3 else "")


async def truth_of(gw: GatewayServer, run_id: str) -> dict[str, Any]:
    result: dict[str, Any] = await asyncio.to_thread(gw.rpc, "getDevToolsSnapshot", {"runId": run_id})
    return result


async def gateway_seq(gw: GatewayServer, run_id: str, seq: int, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while (await truth_of(gw, run_id))["seq"] < seq:
        if time.monotonic() > deadline:
            raise TimeoutError(f"run {run_id} never reached seq {seq}")
        await asyncio.sleep(0.1)  # poll interval


async def converge(tl: Timeline, gw: GatewayServer, run_id: str, timeout: float = 30) -> tuple[int, str | None]:
    """After a Gateway restart: wait (up to ``timeout``) for the tree to equal the Gateway's,
    then stop the subscription. The data lost at the end, and the crash, if it crashed."""
    deadline = time.monotonic() + timeout
    lost = data_lost(tl.sub.tree, await truth_of(gw, run_id))
    while lost and time.monotonic() < deadline:
        await asyncio.sleep(0.2)  # poll interval
        lost = data_lost(tl.sub.tree, await truth_of(gw, run_id))
    crash = None
    if tl.task is not None and tl.task.done() and tl.task.exception():
        crash = f"CRASH {tl.task.exception()!r}"
    await tl.stop()
    return lost, crash


def back_after(tl: Timeline, starting: float, healthy: float) -> list[float]:
    """Seconds from the Gateway answering its health check again to ``online`` (0 if sooner)."""
    online = next((t for t, s in tl.states() if t >= starting and s.status is ConnectionStatus.ONLINE), None)
    return [] if online is None else [max(0.0, online - healthy)]


def recovered_cuts(tl: Timeline, times: list[float]) -> tuple[int, list[float]]:
    ttr = [t for t in tl.recoveries(times) if t is not None]
    return len(ttr), ttr



# --------------------------------------------------------------------------- the table


def print_table(rows: list[Row]) -> None:
    head = ("| fault | how injected | expected | observed | injected | recovered | time to recover s (median / max) "
            "| data lost | the status said | pass |")
    print(head)
    print("|" + "---|" * 10)
    for r in rows:
        cells = [r.fault, r.how, r.expected, r.observed, str(r.injected), str(r.recovered), r.ttr_text(),
                 "-" if r.lost is None else str(r.lost), r.said or "-", "yes" if r.ok else "**NO**"]
        print("| " + " | ".join(c.replace("|", "/") for c in cells) + " |")
    total = sum(r.injected for r in rows)
    recovered = sum(r.recovered for r in rows)
    lost = sum(r.lost or 0 for r in rows)
    all_ttr = [t for r in rows for t in r.ttr]
    print()
    print(f"faults injected {total}, recoveries {recovered}, data lost {lost}, "
          f"time to recover median {statistics.median(all_ttr):.2f} s / max {max(all_ttr):.2f} s, "
          f"scenarios passing {sum(r.ok for r in rows)}/{len(rows)}")
