"""``smithers-dashboard``: watch, record and replay Gateway runs; serve the dashboard.

- ``watch RUN_ID``: the live tree in the terminal, with what the agents print and do and
  the run's tokens and cost (``--json`` for JSON lines).
- ``record RUN_ID -o FILE``: the session as a JSONL transcript (token redacted).
- ``replay FILE...``: a replay gateway serving recorded sessions on loopback (it needs a
  token, from ``SMITHERS_TOKEN`` or ``--token-file``, unless told ``--no-auth``).
- ``serve``: the Panel dashboard (``panel serve`` with server-side configuration and login).
- ``demo``: a looping replay gateway on recorded real runs, and the dashboard on it.
- ``hash-password``: a scrypt entry for ``serve --basic-auth``'s users file.

``serve`` and ``demo`` run ``panel serve`` on the packaged app (``dashboard/apps``) with the
``dashboard.ops`` plugin (``/healthz``, ``/readyz``, ``/metrics``); login is Panel's auth
(``--basic-auth`` through :mod:`dashboard.auth`, or ``--oauth-*``), its secrets passed in the
environment, never on ``panel serve``'s command line. ``--operators`` / ``--operator-claim``
name who may change runs and ``--audit-log`` where actions are recorded (:mod:`dashboard.roles`,
:mod:`dashboard.audit`), ``--workflow-schemas`` the launch form's input schemas
(:mod:`dashboard.schema_form`), all passed in the environment. ``--trusted-proxy`` (Bokeh's
``--use-xheaders``) takes a visitor's address from a reverse proxy's headers, for the
per-visitor subscription limit (:func:`dashboard.roles.session_visitor`).

The Gateway comes from ``--gateway URL`` or ``SMITHERS_GATEWAY_URL``; the token only from
``SMITHERS_TOKEN`` or ``--token-file``: never from the command line, where ``ps`` and
shell history would show it, and it is never printed.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ipaddress
import json
import os
import signal
import socket
import sys
import time
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from .client import DEFAULT_GATEWAY_URL, GatewayClient, redact_url
from .errors import GatewayError, GatewayRpcError
from .status import ConnectionStatus
from .stream import DevToolsSubscription, Resynced, RunEvent, Settled, StatusChanged, TreeUpdated

if TYPE_CHECKING:
    from collections.abc import Sequence

    from .agents import RunAgents
    from .pricing import PriceTable

__all__ = ["main"]

EXIT_TIMEOUT = 124
EXIT_UNAUTHORIZED = 77
#: The Gateway speaks a protocol version we do not (``EX_CONFIG``): retrying cannot help.
EXIT_UNSUPPORTED = 78


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
    from .agents import RunAgents
    from .pricing import load_price_table

    agents = RunAgents(args.run_id)
    prices = load_price_table()
    if not args.json and writer is None:
        from rich.console import Console
        from rich.live import Live

        from .render import render_watch

        live = Live(console=Console(file=out), refresh_per_second=8, transient=False)
        live.start()

    def redraw() -> None:
        if live is not None:
            live.update(render_watch(sub.tree, sub.state, args.run_id, sub.run_status, agents=agents, prices=prices))

    async def consume() -> int:
        async for item in sub:
            if isinstance(item, StatusChanged):
                state = item.state
                if args.json:
                    _emit(out, {"event": "connection", "status": state.status.value, "error": state.error,
                                "outageSince": state.outage_since, "retryIn": state.retry_in})
                if state.status is ConnectionStatus.UNAUTHORIZED:
                    return EXIT_UNAUTHORIZED
                if state.status is ConnectionStatus.UNSUPPORTED:
                    return EXIT_UNSUPPORTED
            elif isinstance(item, TreeUpdated):
                if args.json:
                    tree = item.tree
                    _emit(out, {"event": "tree", "kind": item.change.kind, "seq": tree.seq, "frameNo": tree.frame_no,
                                "nodes": len(tree), "states": tree.state_counts()})
            elif isinstance(item, RunEvent):
                payload = item.frame.payload if isinstance(item.frame.payload, dict) else {}
                agents.apply(item.frame.event, payload, seq=item.seq, t_ms=item.at * 1000 if item.at else None)
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
        _emit(out, {"event": "final", "settled": code == 0, "snapshot": sub.tree.snapshot(),
                    "agents": _agents_summary(agents, prices)})
    if code == EXIT_UNAUTHORIZED:
        print(f"smithers-dashboard: the gateway rejected the token ({sub.state.error})", file=sys.stderr)
    elif code == EXIT_UNSUPPORTED:
        print(f"smithers-dashboard: {sub.state.error}", file=sys.stderr)
    elif code == EXIT_TIMEOUT:
        print(f"smithers-dashboard: gave up after {args.timeout:g} s (status {sub.state.status.value})", file=sys.stderr)
    return code


def _agents_summary(agents: RunAgents, prices: PriceTable) -> dict[str, Any]:
    """The run's attempts, token totals and estimated cost, for ``watch --json``'s last line."""
    from .pricing import estimate_cost

    total = agents.totals()
    cost = estimate_cost(((row.model, row.tokens) for row in agents.usage_rows()), prices)
    return {
        "attempts": len(agents),
        "tokens": {"input": total.input, "output": total.output, "cacheRead": total.cache_read,
                   "cacheWrite": total.cache_write, "reasoning": total.reasoning},
        "costUsd": cost.cost_usd,
        "unpricedTokens": cost.unpriced_tokens,
    }


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
    token = _token(args)
    if token is None and not args.no_auth:
        print("smithers-dashboard: the replay gateway needs a token (SMITHERS_TOKEN or --token-file); "
              "--no-auth lets every caller in as admin", file=sys.stderr)
        return 2
    gateway = ReplayGateway(runs, token=token, speed=args.speed, loop=args.loop, port=args.port,
                            no_auth=args.no_auth, allowed_origins=args.allow_origin or ())
    await gateway.start()
    print(f"replay gateway on {gateway.url} ({len(runs)} runs)", flush=True)
    try:
        await _wait_forever()
    finally:
        await gateway.stop()
    return 0


def apps_dir() -> Path:
    """The packaged app folder ``panel serve`` serves at ``/apps`` (``dashboard/apps``)."""
    from dashboard.apps import APP_DIR

    return APP_DIR


#: What ``panel serve --plugins`` loads: ``/healthz``, ``/readyz``, ``/metrics`` and the log settings.
OPS_PLUGIN = "dashboard.ops"
LOG_LEVELS = ("debug", "info", "warning", "error", "critical")


def panel_command(
    port: int,
    *,
    num_procs: int = 1,
    address: str = "127.0.0.1",
    show: bool = False,
    origins: Sequence[str] = (),
    auth_module: Path | None = None,
    oauth: Sequence[str] = (),
    log_level: str | None = None,
    trusted_proxy: bool = False,
) -> list[str]:
    """The ``panel serve`` command line (no secret on it: those go in the environment).

    ``trusted_proxy`` is Bokeh's ``--use-xheaders``: the client address comes from the
    proxy's ``X-Real-Ip`` / ``X-Forwarded-For`` (only behind a proxy that sets them)."""
    allowed = list(dict.fromkeys([*origins, f"{address}:{port}", f"localhost:{port}", f"127.0.0.1:{port}"]))
    cmd = [sys.executable, "-m", "panel", "serve", str(apps_dir()), "--port", str(port), "--address", address,
           "--plugins", OPS_PLUGIN, "--unused-session-lifetime", "60000", "--check-unused-sessions", "15000",
           # One session built at start: imports, the run history's first page and the
           # charts' first build are paid there, not by the first visitor.
           "--warm"]
    for origin in allowed:
        cmd += ["--allow-websocket-origin", origin]
    if auth_module is not None:
        cmd += ["--auth-module", str(auth_module)]
    cmd += list(oauth)
    if log_level:
        cmd += ["--log-level", log_level]
    if trusted_proxy:
        cmd.append("--use-xheaders")
    if num_procs != 1:
        cmd += ["--num-procs", str(num_procs)]
    if show:
        cmd.append("--show")
    return cmd


def _serve_env(gateway_url: str, token: str | None, token_file: str | None = None) -> dict[str, str]:
    """The server's environment. A token file is passed as its path, so the server reads it
    again when the Gateway rejects the token (a rotation needs no restart)."""
    env = dict(os.environ)
    env["SMITHERS_GATEWAY_URL"] = gateway_url
    env.pop("SMITHERS_TOKEN_FILE", None)
    env.pop("SMITHERS_TOKEN", None)
    if token_file:
        env["SMITHERS_TOKEN_FILE"] = str(Path(token_file).expanduser().resolve())
    elif token:
        env["SMITHERS_TOKEN"] = token  # the environment, never argv
    return env


def _log_env(env: dict[str, str], args: argparse.Namespace) -> None:
    from dashboard.logs import FORMAT_ENV, LEVEL_ENV

    if args.log_level:
        env[LEVEL_ENV] = args.log_level
    env[FORMAT_ENV] = args.log_format


def is_loopback(address: str) -> bool:
    """Does binding ``address`` keep the server on this machine?"""
    if address.strip().lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(address.strip().strip("[]")).is_loopback
    except ValueError:
        return False  # a host name or "" (every interface): assume reachable from outside


class ServeRefused(Exception):
    """``serve``'s options are unsafe or inconsistent; the message says what to change."""


def _secret_from_file(path: str, what: str) -> str:
    try:
        secret = Path(path).expanduser().read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise ServeRefused(f"cannot read the {what} file {path!r}: {exc.strerror}") from None
    if not secret:
        raise ServeRefused(f"the {what} file {path!r} is empty")
    return secret


def _roles_env(args: argparse.Namespace, env: dict[str, str], login: bool) -> None:
    """Roles and audit for the served app (``dashboard.config`` reads them from ``env``).

    Naming operators turns actions on; it needs a login (a session without one cannot say
    who it is), and a claim needs OAuth (basic-auth users have no claims)."""
    from dashboard.config import parse_claim, parse_operators

    for name in ("SMITHERS_DASHBOARD_OPERATORS", "SMITHERS_DASHBOARD_OPERATOR_CLAIM", "SMITHERS_DASHBOARD_LOGIN",
                 "SMITHERS_DASHBOARD_AUDIT_LOG"):
        env.pop(name, None)
    operators = parse_operators(",".join(args.operators or []))
    try:
        claim = parse_claim(args.operator_claim)
    except ValueError as exc:
        raise ServeRefused(str(exc)) from None
    if (operators or claim) and not login:
        raise ServeRefused("--operators and --operator-claim name logged-in users: add --basic-auth FILE or --oauth-provider ...")
    if claim and not args.oauth_provider:
        raise ServeRefused("--operator-claim reads an OAuth identity: it needs --oauth-provider")
    if operators or claim:
        args.actions = True
        env["SMITHERS_DASHBOARD_ACTIONS"] = "1"
    if operators:
        env["SMITHERS_DASHBOARD_OPERATORS"] = ",".join(sorted(operators))
    if claim:
        env["SMITHERS_DASHBOARD_OPERATOR_CLAIM"] = "=".join(claim)
    if login:
        env["SMITHERS_DASHBOARD_LOGIN"] = "1"
        if args.actions and not (operators or claim):
            print("smithers-dashboard: --actions with a login and no --operators: every logged-in user may change runs",
                  file=sys.stderr)
    if args.audit_log:
        path = Path(args.audit_log).expanduser().resolve()
        try:
            fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)  # fail now, not at the first action
        except OSError as exc:
            raise ServeRefused(f"cannot open the audit log {str(path)!r}: {exc.strerror}") from None
        os.close(fd)
        env["SMITHERS_DASHBOARD_AUDIT_LOG"] = str(path)


def _schemas_env(args: argparse.Namespace, env: dict[str, str]) -> None:
    """``--workflow-schemas FILE`` for the launch form (``dashboard.config`` reads it from
    ``env``), checked now so a broken file stops the start, not the first launch."""
    if not args.workflow_schemas:
        return
    from dashboard.schema_form import SCHEMAS_ENV, InputProblem, load_workflow_schemas

    path = Path(args.workflow_schemas).expanduser().resolve()
    try:
        load_workflow_schemas(path)
    except OSError as exc:
        raise ServeRefused(f"cannot read the workflow schemas file {str(path)!r}: {exc.strerror}") from None
    except ValueError as exc:
        raise ServeRefused(f"the workflow schemas file {str(path)!r} is not JSON: {exc}") from None
    except InputProblem as exc:
        raise ServeRefused(str(exc)) from None
    env[SCHEMAS_ENV] = str(path)


def serve_plan(args: argparse.Namespace, env: dict[str, str]) -> list[str]:
    """Check ``serve``'s login and network options, put secrets in ``env``, return the command."""
    from dashboard.auth import AUTH_MODULE_PATH, USERS_FILE_ENV
    from dashboard.passwords import UsersFileError, load_users

    if args.basic_auth and args.oauth_provider:
        raise ServeRefused("choose one login: --basic-auth or --oauth-provider")
    login = bool(args.basic_auth or args.oauth_provider)
    _roles_env(args, env, login)
    if args.actions and not login and not is_loopback(args.address):
        raise ServeRefused(
            f"refusing to serve --actions on {args.address or 'every interface'} without a login: anyone who reaches "
            "the port could cancel, rewind or approve runs. Add --basic-auth FILE (and --cookie-secret-file FILE) or "
            "--oauth-provider ..., or bind --address 127.0.0.1."
        )
    for name in ("PANEL_BASIC_AUTH", "PANEL_OAUTH_PROVIDER"):
        if env.pop(name, None):
            print(f"smithers-dashboard: ignoring {name} from the environment (use serve's options)", file=sys.stderr)
    if args.cookie_secret_file:
        env["PANEL_COOKIE_SECRET"] = _secret_from_file(args.cookie_secret_file, "cookie secret")
    elif login and not (env.get("PANEL_COOKIE_SECRET") or env.get("BOKEH_COOKIE_SECRET")):
        import secrets

        env["PANEL_COOKIE_SECRET"] = secrets.token_urlsafe(32)
        print("smithers-dashboard: no --cookie-secret-file: logins last until this server stops", file=sys.stderr)
    auth_module: Path | None = None
    if args.basic_auth:
        try:
            load_users(args.basic_auth)
        except UsersFileError as exc:
            raise ServeRefused(str(exc)) from None
        env[USERS_FILE_ENV] = str(Path(args.basic_auth).expanduser().resolve())
        auth_module = AUTH_MODULE_PATH
    oauth: list[str] = []
    if args.oauth_provider:
        from dashboard.auth import LOGOUT_TEMPLATE

        oauth += ["--oauth-provider", args.oauth_provider, "--logout-template", str(LOGOUT_TEMPLATE)]
        if args.oauth_key:
            oauth += ["--oauth-key", args.oauth_key]
        if args.oauth_secret_file:
            env["PANEL_OAUTH_SECRET"] = _secret_from_file(args.oauth_secret_file, "OAuth secret")
        if args.oauth_encryption_key_file:
            env["PANEL_OAUTH_ENCRYPTION"] = _secret_from_file(args.oauth_encryption_key_file, "OAuth encryption key")
        if args.oauth_redirect_uri:
            oauth += ["--oauth-redirect-uri", args.oauth_redirect_uri]
        if args.oauth_extra_params:
            oauth += ["--oauth-extra-params", args.oauth_extra_params]
    if not is_loopback(args.address) and not args.allow_websocket_origin:
        print("smithers-dashboard: pages opened under another host name than "
              f"{socket.gethostname()} need --allow-websocket-origin HOST:{args.port}", file=sys.stderr)
    origins = list(args.allow_websocket_origin or [])
    if not is_loopback(args.address):
        origins.append(f"{socket.gethostname()}:{args.port}")
    _schemas_env(args, env)
    if args.follow_active is not None:  # else the environment's SMITHERS_DASHBOARD_FOLLOW_ACTIVE, if any
        if args.follow_active < 0:
            raise ServeRefused("--follow-active is a number of runs: 0 or more")
        env["SMITHERS_DASHBOARD_FOLLOW_ACTIVE"] = str(args.follow_active)
    _log_env(env, args)
    return panel_command(args.port, num_procs=args.num_procs, address=args.address, origins=origins,
                         auth_module=auth_module, oauth=oauth, log_level=args.log_level,
                         trusted_proxy=args.trusted_proxy)


def _serve(args: argparse.Namespace) -> int:
    """Check the options, then become ``panel serve`` (``exec``: one process, so a service
    manager's signals reach the server and nothing is left behind)."""
    env = _serve_env(_gateway(args), _token(args), getattr(args, "token_file", None))
    if args.actions:
        env["SMITHERS_DASHBOARD_ACTIONS"] = "1"
    try:
        cmd = serve_plan(args, env)
    except ServeRefused as exc:
        print(f"smithers-dashboard: {exc}", file=sys.stderr)
        return 2
    gateway = redact_url(env["SMITHERS_GATEWAY_URL"])
    print(f"dashboard on http://{args.address}:{args.port}/apps (gateway {gateway})", flush=True)
    sys.stderr.flush()
    os.execve(cmd[0], cmd, env)


async def _demo(args: argparse.Namespace) -> int:
    from .replay import serve_demo

    gateway = await serve_demo(port=0, speed=args.speed)  # a random token, handed over in the environment
    port = args.port or 5006
    env = _serve_env(gateway.url, gateway.token)
    _log_env(env, args)
    cmd = panel_command(port, address=args.address, origins=args.allow_websocket_origin or (), log_level=args.log_level)
    proc = await asyncio.create_subprocess_exec(*cmd, env=env)
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


def _hash_password(args: argparse.Namespace) -> int:
    """Print (or store with ``--users-file``) a hashed entry; the password is read from the
    terminal, or from stdin's first line when it is not a terminal: never from argv."""
    import getpass

    from dashboard.passwords import UsersFileError, hash_password, set_user

    if sys.stdin.isatty():
        password = getpass.getpass("password: ")
        if getpass.getpass("again: ") != password:
            print("smithers-dashboard: the passwords differ", file=sys.stderr)
            return 2
    else:
        password = sys.stdin.readline().rstrip("\r\n")
    if not password:
        print("smithers-dashboard: empty password", file=sys.stderr)
        return 2
    entry = hash_password(password)
    if args.users_file:
        if not args.user:
            print("smithers-dashboard: --users-file needs --user NAME", file=sys.stderr)
            return 2
        try:
            set_user(args.users_file, args.user, entry)
        except (UsersFileError, OSError) as exc:
            print(f"smithers-dashboard: {exc}", file=sys.stderr)
            return 2
        print(f"{args.user}: password set in {args.users_file}")
    else:
        print(entry)
    return 0


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
    replay.add_argument("--token-file", help="require this token (default $SMITHERS_TOKEN)")
    replay.add_argument("--no-auth", action="store_true", help="no token: every caller is admin (loopback demos only)")
    replay.add_argument("--allow-origin", action="append", metavar="ORIGIN",
                        help="a browser origin (http://host:port) allowed to open the WebSocket (repeatable)")

    def log_opts(p: argparse.ArgumentParser) -> None:
        p.add_argument("--log-level", choices=LOG_LEVELS, help="server log level (default: warnings and Bokeh's info)")
        p.add_argument("--log-format", choices=("text", "json"), default="text", help="json: one JSON object a line")
        p.add_argument("--allow-websocket-origin", action="append", metavar="HOST[:PORT]",
                       help="a host the page may be opened under (repeatable; loopback is always allowed)")

    serve = sub.add_parser("serve", help="serve the dashboard (panel serve of the packaged app)")
    gateway_opts(serve)
    serve.add_argument("--port", type=int, default=5006)
    serve.add_argument("--address", default="127.0.0.1",
                       help="interface to bind; a non-loopback one with --actions needs a login")
    serve.add_argument("--num-procs", type=int, default=1)
    serve.add_argument("--actions", action="store_true", help="enable approve/cancel/rewind controls (with confirmation)")
    serve.add_argument("--audit-log", metavar="FILE", help="append every action to FILE, one JSON object a line")
    serve.add_argument("--workflow-schemas", metavar="FILE",
                       help="JSON file {workflow key: JSON Schema of its input} for the launch form "
                            "(default $SMITHERS_DASHBOARD_WORKFLOW_SCHEMAS)")
    serve.add_argument("--follow-active", type=int, metavar="N",
                       help="follow the Gateway's N newest active runs before anyone opens them, so their pages "
                            "open at once (one Gateway stream each; default $SMITHERS_DASHBOARD_FOLLOW_ACTIVE or 0)")
    serve.add_argument("--trusted-proxy", action="store_true",
                       help="behind a reverse proxy that sets X-Real-Ip / X-Forwarded-For: take the client "
                            "address from them (Bokeh's --use-xheaders)")
    log_opts(serve)
    login = serve.add_argument_group("login (Panel's auth: /login, /logout)")
    login.add_argument("--basic-auth", metavar="FILE",
                       help="JSON users file {user: password or hash-password entry}")
    login.add_argument("--cookie-secret-file", metavar="FILE", help="file holding the secret that signs login cookies")
    login.add_argument("--oauth-provider", help="Panel OAuth provider (generic, github, google, azure, okta, ...)")
    login.add_argument("--oauth-key", help="the OAuth client id")
    login.add_argument("--oauth-secret-file", metavar="FILE", help="file holding the OAuth client secret")
    login.add_argument("--oauth-encryption-key-file", metavar="FILE",
                       help="file holding the key that encrypts OAuth tokens in cookies (panel oauth-secret)")
    login.add_argument("--oauth-redirect-uri", help="the redirect URI registered with the provider")
    login.add_argument("--oauth-extra-params", help="extra provider parameters, a Python dict literal (as Panel's)")
    roles = serve.add_argument_group("roles (viewers see; operators also change runs)")
    roles.add_argument("--operators", action="append", metavar="USER[,USER...]",
                       help="the logged-in users who may change runs (implies --actions; repeatable)")
    roles.add_argument("--operator-claim", metavar="NAME=VALUE",
                       help="OAuth users whose claim NAME holds VALUE operate, e.g. groups=smithers-operators")

    demo = sub.add_parser("demo", help="the dashboard on a built-in replay of real recorded runs")
    demo.add_argument("--port", type=int, default=5006)
    demo.add_argument("--address", default="127.0.0.1")
    demo.add_argument("--speed", type=float, default=1.0)
    log_opts(demo)

    hashpw = sub.add_parser("hash-password", help="a hashed password entry for --basic-auth's users file")
    hashpw.add_argument("--user", help="the user name (with --users-file)")
    hashpw.add_argument("--users-file", help="add or replace the user's entry in this file instead of printing it")
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
        if args.command == "hash-password":
            return _hash_password(args)
    except KeyboardInterrupt:
        return 130
    except GatewayRpcError as exc:
        print(f"smithers-dashboard: {exc}", file=sys.stderr)
        return 1
    raise AssertionError(args.command)


if __name__ == "__main__":
    raise SystemExit(main())
