"""``smithers-dashboard``: watch, record and replay Gateway runs; serve the dashboard.

- ``watch RUN_ID``: the live tree in the terminal (``--json`` for JSON lines).
- ``record RUN_ID -o FILE``: the session as a JSONL transcript (token redacted).
- ``replay FILE...``: a replay gateway serving recorded sessions on loopback.
- ``serve``: the Panel dashboard (``panel serve apps/`` with server-side configuration).
- ``demo``: a looping replay gateway on recorded real runs, and the dashboard on it.

The Gateway comes from ``--gateway URL`` or ``SMITHERS_GATEWAY_URL``; the token only from
``SMITHERS_TOKEN`` or ``--token-file``: never from the command line, where ``ps`` and
shell history would show it, and it is never printed.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import sys
import time
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from .client import DEFAULT_GATEWAY_URL, GatewayClient
from .errors import GatewayError, GatewayRpcError
from .status import ConnectionStatus
from .stream import DevToolsSubscription, Resynced, Settled, StatusChanged, TreeUpdated

if TYPE_CHECKING:
    from collections.abc import Sequence

__all__ = ["main"]

EXIT_TIMEOUT = 124
EXIT_UNAUTHORIZED = 77


def _token(args: argparse.Namespace) -> str | None:
    if getattr(args, "token_file", None):
        try:
            return Path(args.token_file).expanduser().read_text(encoding="utf-8").strip() or None
        except OSError as exc:
            raise SystemExit(f"smithers-dashboard: cannot read the token file: {exc.strerror}") from None
    return os.environ.get("SMITHERS_TOKEN") or None


def _gateway(args: argparse.Namespace) -> str:
    return str(args.gateway or os.environ.get("SMITHERS_GATEWAY_URL") or DEFAULT_GATEWAY_URL)


def _emit(out: IO[str], record: dict[str, Any]) -> None:
    out.write(json.dumps(record, separators=(",", ":")) + "\n")
    out.flush()


# ------------------------------------------------------------------ watch / record


async def _watch(args: argparse.Namespace, out: IO[str]) -> int:
    from .transcript import TranscriptWriter

    writer = TranscriptWriter(args.output) if getattr(args, "output", None) else None
    client = GatewayClient(_gateway(args), _token(args), recorder=writer)
    sub = DevToolsSubscription(client, args.run_id, stop_when_settled=True)
    deadline = time.monotonic() + args.timeout if args.timeout else None
    code = EXIT_TIMEOUT
    live: Any = None
    if not args.json and writer is None:
        from rich.console import Console
        from rich.live import Live

        from .render import render_watch

        live = Live(console=Console(file=out), refresh_per_second=8, transient=False)
        live.start()

    def redraw() -> None:
        if live is not None:
            live.update(render_watch(sub.tree, sub.state, args.run_id, sub.run_status))

    async def consume() -> int:
        async for item in sub:
            if isinstance(item, StatusChanged):
                state = item.state
                if args.json:
                    _emit(out, {"event": "connection", "status": state.status.value, "error": state.error,
                                "outageSince": state.outage_since, "retryIn": state.retry_in})
                if state.status is ConnectionStatus.UNAUTHORIZED:
                    return EXIT_UNAUTHORIZED
            elif isinstance(item, TreeUpdated):
                if args.json:
                    tree = item.tree
                    _emit(out, {"event": "tree", "kind": item.change.kind, "seq": tree.seq, "frameNo": tree.frame_no,
                                "nodes": len(tree), "states": tree.state_counts()})
            elif isinstance(item, Resynced) and args.json:
                _emit(out, {"event": "resync", "reason": item.reason})
            elif isinstance(item, Settled):
                if args.json:
                    _emit(out, {"event": "settled", "runStatus": item.run_status, "seq": item.seq})
                return 0
            redraw()
        return 0

    try:
        remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
        code = await asyncio.wait_for(consume(), timeout=remaining)
    except TimeoutError:
        code = EXIT_TIMEOUT
    finally:
        sub.stop()
        if live is not None:
            redraw()
            live.stop()
    if writer is not None and code == 0:
        await _record_reads(client, args.run_id, sub.tree)
    await client.aclose()
    if writer is not None:
        writer.close()
    if args.json:
        _emit(out, {"event": "final", "settled": code == 0, "snapshot": sub.tree.snapshot()})
    if code == EXIT_UNAUTHORIZED:
        print(f"smithers-dashboard: the gateway rejected the token ({sub.state.error})", file=sys.stderr)
    elif code == EXIT_TIMEOUT:
        print(f"smithers-dashboard: gave up after {args.timeout:g} s (status {sub.state.status.value})", file=sys.stderr)
    return code


async def _record_reads(client: GatewayClient, run_id: str, tree: Any) -> None:
    """After the stream: the reads a viewer makes, over the socket, so they are recorded too."""
    try:
        conn = await client.open()
    except GatewayError:
        return
    async with conn:
        calls: list[tuple[str, dict[str, Any]]] = [
            ("getRun", {"runId": run_id}),
            ("listRuns", {"filter": {"limit": 20}}),
            ("listScores", {"runId": run_id}),
            ("listApprovals", {}),
            ("getDevToolsSnapshot", {"runId": run_id}),
        ]
        seen: set[tuple[str, int]] = set()
        for node in tree.walk():
            if node.node_id and (node.node_id, node.iteration or 0) not in seen:
                seen.add((node.node_id, node.iteration or 0))
                params = {"runId": run_id, "nodeId": node.node_id, "iteration": node.iteration or 0}
                calls += [("getNodeOutput", params), ("getNodeDiff", params)]
        for method, params in calls:
            with contextlib.suppress(GatewayError):
                await conn.request(method, params)


# ------------------------------------------------------------------ replay / serve / demo


async def _wait_forever() -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    await stop.wait()


async def _replay(args: argparse.Namespace) -> int:
    from .replay import ReplayGateway
    from .transcript import load_runs

    runs = load_runs(*args.files)
    if not runs:
        print("smithers-dashboard: no replayable run in those files", file=sys.stderr)
        return 2
    gateway = ReplayGateway(runs, token=_token(args), speed=args.speed, loop=args.loop, port=args.port)
    await gateway.start()
    print(f"replay gateway on {gateway.url} ({len(runs)} runs)", flush=True)
    try:
        await _wait_forever()
    finally:
        await gateway.stop()
    return 0


def apps_dir() -> Path:
    """The ``apps/`` folder served by ``panel serve`` (beside the packages in a checkout)."""
    here = Path(__file__).resolve().parent.parent / "apps"
    if not here.is_dir():
        raise SystemExit("smithers-dashboard: the apps/ folder is missing (run from a checkout of smithers-dashboard)")
    return here


def panel_command(port: int, *, num_procs: int = 1, address: str = "127.0.0.1", show: bool = False) -> list[str]:
    cmd = [sys.executable, "-m", "panel", "serve", str(apps_dir()), "--port", str(port), "--address", address,
           "--allow-websocket-origin", f"{address}:{port}", "--allow-websocket-origin", f"localhost:{port}",
           "--unused-session-lifetime", "60000", "--check-unused-sessions", "15000"]
    if num_procs != 1:
        cmd += ["--num-procs", str(num_procs)]
    if show:
        cmd.append("--show")
    return cmd


def _serve_env(gateway_url: str, token: str | None) -> dict[str, str]:
    env = dict(os.environ)
    env["SMITHERS_GATEWAY_URL"] = gateway_url
    env.pop("SMITHERS_TOKEN_FILE", None)
    if token:
        env["SMITHERS_TOKEN"] = token  # the environment, never argv
    else:
        env.pop("SMITHERS_TOKEN", None)
    return env


def _serve(args: argparse.Namespace) -> int:
    import subprocess

    port = args.port or 5006
    env = _serve_env(_gateway(args), _token(args))
    if args.actions:
        env["SMITHERS_DASHBOARD_ACTIONS"] = "1"
    print(f"dashboard on http://{args.address}:{port}/apps (gateway {env['SMITHERS_GATEWAY_URL']})", flush=True)
    return subprocess.call(panel_command(port, num_procs=args.num_procs, address=args.address), env=env)


async def _demo(args: argparse.Namespace) -> int:
    from .replay import serve_demo

    gateway = await serve_demo(port=0, speed=args.speed)
    port = args.port or 5006
    env = _serve_env(gateway.url, None)
    proc = await asyncio.create_subprocess_exec(*panel_command(port, address=args.address), env=env)
    print(f"demo: replay gateway on {gateway.url}; dashboard on http://{args.address}:{port}/apps", flush=True)
    waiter = asyncio.ensure_future(proc.wait())
    stopper = asyncio.ensure_future(_wait_forever())
    try:
        await asyncio.wait([waiter, stopper], return_when=asyncio.FIRST_COMPLETED)
    finally:
        if proc.returncode is None:
            proc.terminate()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(proc.wait(), 10)
        stopper.cancel()
        await gateway.stop()
    return proc.returncode or 0


# ------------------------------------------------------------------ entry point


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="smithers-dashboard", description=__doc__.split("\n\n")[0] if __doc__ else None)
    sub = parser.add_subparsers(dest="command", required=True)

    def gateway_opts(p: argparse.ArgumentParser) -> None:
        p.add_argument("--gateway", help=f"Gateway base URL (default $SMITHERS_GATEWAY_URL or {DEFAULT_GATEWAY_URL})")
        p.add_argument("--token-file", help="file holding the token (default $SMITHERS_TOKEN)")

    watch = sub.add_parser("watch", help="follow a run's tree in the terminal")
    watch.add_argument("run_id")
    watch.add_argument("--json", action="store_true", help="JSON lines instead of a live tree")
    watch.add_argument("--timeout", type=float, default=None, help="give up after SECONDS (exit 124)")
    gateway_opts(watch)

    record = sub.add_parser("record", help="record a run's session as a JSONL transcript")
    record.add_argument("run_id")
    record.add_argument("-o", "--output", required=True, help="transcript file to write")
    record.add_argument("--timeout", type=float, default=None)
    gateway_opts(record)

    replay = sub.add_parser("replay", help="serve recorded sessions as a gateway on loopback")
    replay.add_argument("files", nargs="+")
    replay.add_argument("--port", type=int, default=7331)
    replay.add_argument("--speed", type=float, default=1.0)
    replay.add_argument("--loop", action="store_true", help="start finished runs again as new runs")
    replay.add_argument("--token-file", help="require this token (default $SMITHERS_TOKEN, or none)")

    serve = sub.add_parser("serve", help="serve the dashboard (panel serve apps/)")
    gateway_opts(serve)
    serve.add_argument("--port", type=int, default=5006)
    serve.add_argument("--address", default="127.0.0.1")
    serve.add_argument("--num-procs", type=int, default=1)
    serve.add_argument("--actions", action="store_true", help="enable approve/cancel/rewind controls (with confirmation)")

    demo = sub.add_parser("demo", help="the dashboard on a built-in replay of real recorded runs")
    demo.add_argument("--port", type=int, default=5006)
    demo.add_argument("--address", default="127.0.0.1")
    demo.add_argument("--speed", type=float, default=1.0)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.command == "watch":
            args.output = None
            return asyncio.run(_watch(args, sys.stdout))
        if args.command == "record":
            args.json = False
            return asyncio.run(_watch(args, sys.stdout))
        if args.command == "replay":
            return asyncio.run(_replay(args))
        if args.command == "serve":
            return _serve(args)
        if args.command == "demo":
            return asyncio.run(_demo(args))
    except KeyboardInterrupt:
        return 130
    except GatewayRpcError as exc:
        print(f"smithers-dashboard: {exc}", file=sys.stderr)
        return 1
    raise AssertionError(args.command)


if __name__ == "__main__":
    raise SystemExit(main())
