"""``smithers-dashboard replay`` serves a recorded run; ``watch`` follows it like a live one."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time

import httpx

from inspector.transcript import load_runs
from tests.recordings import recording


def start_replay(*args: str) -> tuple[subprocess.Popen[str], str]:
    env = {k: v for k, v in os.environ.items() if k != "SMITHERS_TOKEN"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "inspector.cli", "replay", *args, "--port", "0", "--no-auth"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
    )
    assert proc.stdout is not None
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        match = re.search(r"replay gateway on (http://\S+)", line)
        if match:
            return proc, match.group(1)
        if proc.poll() is not None:
            break
    proc.kill()
    raise AssertionError("the replay gateway did not report its URL")


def test_watch_a_replayed_run_to_the_recorded_final_tree() -> None:
    recorded = load_runs(recording("rich-run.jsonl"))[0]
    proc, url = start_replay(str(recording("rich-run.jsonl")), "--speed", "1")
    try:
        assert httpx.get(f"{url}/health", timeout=5).status_code == 200
        out = subprocess.run(
            [sys.executable, "-m", "inspector.cli", "watch", recorded.run_id, "--json", "--timeout", "60", "--gateway", url],
            capture_output=True, text=True, timeout=90,
        )
        assert out.returncode == 0, out.stderr
        final = json.loads(out.stdout.splitlines()[-1])
        expected = recorded.final_snapshot
        assert expected is not None and final["snapshot"]["root"] == expected["root"]
        assert "settled" in [json.loads(line)["event"] for line in out.stdout.splitlines()]

        # A new replay of the workflow, watched from its start: snapshot, then live deltas.
        launched = httpx.post(f"{url}/v1/rpc/launchRun", json={"workflow": "rich", "input": {}}, timeout=5).json()
        run_id = launched["payload"]["runId"]
        out = subprocess.run(
            [sys.executable, "-m", "inspector.cli", "watch", run_id, "--json", "--timeout", "60", "--gateway", url],
            capture_output=True, text=True, timeout=90,
        )
        assert out.returncode == 0, out.stderr
        lines = [json.loads(line) for line in out.stdout.splitlines()]
        assert [line["kind"] for line in lines if line["event"] == "tree"].count("delta") >= 2
        assert lines[-1]["snapshot"]["root"] == expected["root"]
    finally:
        proc.terminate()
        proc.wait(10)
    assert proc.returncode == 0, "SIGTERM stops the replay gateway cleanly"
