"""The Dashboard in a notebook executed by a real IPython kernel (nbclient), on the real Gateway.

``tests/notebooks/dashboard.ipynb`` imports Panel, displays ``Dashboard(run_id, gateway_url,
token)`` and waits, on the kernel's own event loop, until the store is online and settled on
the run's tree, then prints what it sees as JSON. The kernel is this venv's Python: the test
writes a kernelspec whose argv is ``sys.executable`` into a directory of its own and gives
nbclient a kernel manager that only looks there, so no other ``python3`` kernelspec on the
machine can be picked up. The run, Gateway URL and token reach the kernel through its
environment, and the token must appear nowhere in the executed notebook.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import nbformat
import pytest
from jupyter_client.kernelspec import KernelSpecManager
from jupyter_client.manager import AsyncKernelManager
from nbclient import NotebookClient

from tests.browser import ROOT, gateway_counts
from tests.gateway.server import ADMIN_TOKEN

if TYPE_CHECKING:
    from tests.gateway.server import GatewayServer

pytestmark = pytest.mark.gateway

NOTEBOOK = Path(__file__).parent / "notebooks" / "dashboard.ipynb"
KERNEL = "smithers-dashboard-venv"
#: Mime types of a Panel/Bokeh display (the extension's loader and the view's exec bundle).
LOAD_MIME = "application/vnd.holoviews_load.v0+json"
EXEC_MIME = "application/vnd.holoviews_exec.v0+json"


def venv_kernel(tmp: Path) -> AsyncKernelManager:
    """A kernel manager for a kernelspec running this interpreter, found only in ``tmp``."""
    spec_dir = tmp / "kernels" / KERNEL
    spec_dir.mkdir(parents=True)
    spec = {
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "smithers-dashboard venv",
        "language": "python",
    }
    (spec_dir / "kernel.json").write_text(json.dumps(spec), encoding="utf-8")
    specs = KernelSpecManager(kernel_dirs=[str(tmp / "kernels")], ensure_native_kernel=False)
    assert specs.get_kernel_spec(KERNEL).argv[0] == sys.executable
    return AsyncKernelManager(kernel_name=KERNEL, kernel_spec_manager=specs)


def stream_text(cell: Any) -> str:
    return "".join(o.get("text", "") for o in cell.outputs if o.get("output_type") == "stream" and o.get("name") == "stdout")


def last_json(cell: Any) -> dict[str, Any]:
    lines = [line for line in stream_text(cell).splitlines() if line.startswith("{")]
    assert lines, f"the cell printed no JSON; outputs: {cell.outputs}"
    data: dict[str, Any] = json.loads(lines[-1])
    return data


def test_notebook_renders_the_dashboard_and_goes_online(gateway: GatewayServer, tmp_path: Path) -> None:
    run_id = gateway.launch_run("demo")
    gateway.wait_for_run(run_id, timeout=60)
    truth = gateway.rpc("getDevToolsSnapshot", {"runId": run_id})

    nb = nbformat.read(NOTEBOOK, as_version=4)
    env = {k: v for k, v in os.environ.items() if not k.startswith("SMITHERS_")}
    env.update(
        SMITHERS_RUN_ID=run_id,
        SMITHERS_GATEWAY_URL=gateway.url,
        SMITHERS_TOKEN=ADMIN_TOKEN,
        SMITHERS_NOTEBOOK_TIMEOUT="60",
        PYTHONPATH=str(ROOT),
    )
    client = NotebookClient(
        nb,
        km=venv_kernel(tmp_path),
        timeout=120,
        startup_timeout=60,
        resources={"metadata": {"path": str(ROOT)}},
    )
    client.execute(env=env)
    code = [c for c in nb.cells if c.cell_type == "code"]
    errors = [o for c in code for o in c.outputs if o.get("output_type") == "error"]
    assert not errors, f"a cell raised: {errors}"

    # The kernel was this venv's interpreter.
    kernel = last_json(code[0])
    assert Path(kernel["prefix"]).resolve() == Path(sys.prefix).resolve()
    assert kernel["executable"] == sys.executable

    # pn.extension() loaded Panel's JavaScript; displaying the Dashboard gave a Bokeh view.
    ext_types = {t for o in code[1].outputs for t in o.get("data", {})}
    assert LOAD_MIME in ext_types, f"pn.extension() output types: {ext_types}"
    shown = [o for o in code[2].outputs if o.get("output_type") in ("display_data", "execute_result")]
    assert shown, "displaying the Dashboard produced no output"
    types = {t for o in shown for t in o["data"]}
    assert EXEC_MIME in types and "text/html" in types, f"the Dashboard's output types: {types}"
    html = "".join(str(o["data"].get("text/html", "")) for o in shown)
    assert "bk-" in html or "Bokeh" in html or "data-root-id" in html, html[:500]

    # A bare pn.extension(), as the README gives it, is enough: the Dashboard loads what else
    # it needs (Panel warns when a model's JavaScript is missing from the page).
    streams = "".join(o.get("text", "") for c in code for o in c.outputs if o.get("output_type") == "stream")
    missing = [line for line in streams.splitlines() if "not imported on instantiation" in line]
    assert not missing, f"the Dashboard needs extensions the notebook's pn.extension(...) did not load: {missing}"

    # Online, settled, and the same tree as the Gateway.
    seen = last_json(code[3])
    assert seen["status"] == "online"
    assert seen["settled"] is True
    assert seen["run_status"] == "finished"
    assert seen["nodes"] >= 7
    assert seen["counts"] == gateway_counts(truth)
    assert seen["root"] == truth["root"]

    # The token is nowhere in what the notebook kept.
    assert ADMIN_TOKEN not in nbformat.writes(nb)
