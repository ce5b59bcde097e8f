"""A real install: the wheel, in a fresh venv outside the checkout, serves the dashboard.

The wheel is built (``pip wheel --no-deps``, build isolation on: setuptools from PyPI) from a
copy of just what a release contains (``pyproject.toml``, ``README.md``, ``LICENSE``,
``inspector/``, ``dashboard/``), so nothing but the packages and their package data can leak
in. It is installed with ``--no-deps`` into a venv made without the checkout; the venv
reaches the dependencies through a ``.pth`` line naming this test environment's
site-packages. A path named in a ``.pth`` line is appended to ``sys.path`` but its own
``.pth`` files are not run, so the checkout's editable-install finder there never loads:
``inspector`` and ``dashboard`` can only come from the wheel (asserted), and ``pip check``
proves the wheel's declared requirements (with their upper bounds) are met by what is there.
A full dependency download would test PyPI, not our package, and take minutes.

Every process runs with its cwd in the temporary directory and no ``PYTHONPATH``.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
import pytest

from tests.deploy_support import Served, free_port, poll

if TYPE_CHECKING:
    from collections.abc import Iterator

ROOT = Path(__file__).resolve().parent.parent
#: The checkout's generated bundle of the tree's browser module (dashboard/views/tree_bundle.py).
TREE_BUNDLE = ROOT / "dashboard" / "views" / "tree.bundle.js"
RELEASE_FILES = ("pyproject.toml", "README.md", "LICENSE", "inspector", "dashboard")


class Installed:
    def __init__(self, home: Path) -> None:
        self.home = home
        self.venv = home / "venv"
        self.python = self.venv / "bin" / "python"
        self.script = self.venv / "bin" / "smithers-dashboard"
        self.env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "SMITHERS_TOKEN")}

    def run(self, *args: str, stdin: str | None = None, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return subprocess.run(list(args), cwd=self.home, env=self.env, input=stdin, capture_output=True, text=True,
                              timeout=timeout)


def _site_packages(python: Path) -> Path:
    out = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                         capture_output=True, text=True, check=True)
    return Path(out.stdout.strip())


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Installed]:
    home = tmp_path_factory.mktemp("install")
    assert not home.resolve().is_relative_to(ROOT)
    source = home / "source"
    source.mkdir()
    for name in RELEASE_FILES:
        path = ROOT / name
        if path.is_dir():
            shutil.copytree(path, source / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            shutil.copy2(path, source / name)
    wheels = home / "wheels"
    build = subprocess.run([sys.executable, "-m", "pip", "wheel", str(source), "--no-deps", "-w", str(wheels), "-q"],
                           cwd=home, capture_output=True, text=True, timeout=300)
    assert build.returncode == 0, build.stdout + build.stderr
    (wheel,) = wheels.glob("smithers_dashboard-*.whl")
    shutil.rmtree(source)  # from here on, the wheel is all there is

    inst = Installed(home)
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(inst.venv)], check=True, cwd=home, timeout=120)
    setup = subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(inst.python), "install", "--no-deps", "--no-index", "-q", str(wheel)],
        cwd=home, capture_output=True, text=True, timeout=300, env=inst.env,
    )
    assert setup.returncode == 0, setup.stdout + setup.stderr
    deps = {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]}
    (_site_packages(inst.python) / "_test_dependencies.pth").write_text("\n".join(sorted(deps)) + "\n")
    yield inst


def test_the_packages_come_from_the_wheel_with_their_data(installed: Installed) -> None:
    site = _site_packages(installed.python)
    probe = installed.run(str(installed.python), "-c", (
        "import json, importlib.metadata as md, dashboard, inspector, inspector.client as c, dashboard.apps as a;"
        "print(json.dumps([dashboard.__file__, inspector.__file__, inspector.__version__, c.CLIENT_VERSION,"
        " md.version('smithers-dashboard'), str(a.MAIN_SCRIPT)]))"
    ))
    assert probe.returncode == 0, probe.stderr
    dashboard_file, inspector_file, version, client_version, dist_version, main_script = json.loads(probe.stdout)
    assert Path(dashboard_file).is_relative_to(site) and Path(inspector_file).is_relative_to(site)
    assert version == client_version == dist_version
    assert Path(main_script) == site / "dashboard" / "apps" / "main.py" and Path(main_script).is_file()
    demo_runs = sorted(p.name for p in (site / "inspector" / "demo_data").glob("*.jsonl"))
    assert demo_runs == sorted(p.name for p in (ROOT / "inspector" / "demo_data").glob("*.jsonl")) and demo_runs
    assert (site / "dashboard" / "assets" / "tree.js").is_file()
    assert (site / "dashboard" / "views" / "tree.bundle.js").read_bytes() == TREE_BUNDLE.read_bytes()
    (dist_info,) = site.glob("smithers_dashboard-*.dist-info")
    assert "MIT License" in (dist_info / "licenses" / "LICENSE").read_text()
    metadata = (dist_info / "METADATA").read_text()
    assert re.search(r"Requires-Dist: panel<[\d.]+,>=1\.8", metadata), "Panel has an upper bound"
    assert re.search(r"Requires-Dist: bokeh<[\d.]+,>=3\.8", metadata), "Bokeh has an upper bound"
    check = installed.run(sys.executable, "-m", "pip", "--python", str(installed.python), "check")
    assert check.returncode == 0, check.stdout + check.stderr


def test_hash_password_runs_from_the_install(installed: Installed) -> None:
    out = installed.run(str(installed.script), "hash-password", stdin="correct horse\n")
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("scrypt$") and "correct horse" not in out.stdout


def test_demo_and_panel_serve_of_the_packaged_app(installed: Installed) -> None:
    port = free_port()
    demo = Served([str(installed.script), "demo", "--port", str(port), "--speed", "4"], installed.home / "demo.log",
                  env=installed.env, cwd=installed.home)
    panel: Served | None = None
    try:
        demo.wait_status(f"http://127.0.0.1:{port}/healthz")
        page = httpx.get(f"http://127.0.0.1:{port}/apps", timeout=30)
        assert page.status_code == 200 and "<title>Smithers dashboard</title>" in page.text
        assert demo.wait_status(f"http://127.0.0.1:{port}/readyz").json()["status"] == "ready"
        # The tree's module as browsers get it: the installed bundle, on Panel's component route.
        bundle = httpx.get(f"http://127.0.0.1:{port}/components/dashboard.views.tree/TreeComponent/_bundle_path/"
                           "tree.bundle.js", timeout=30)
        assert bundle.status_code == 200 and bundle.content == TREE_BUNDLE.read_bytes()
        match = poll(lambda: re.search(r"replay gateway on (http://\S+);", demo.log()), 30, "the demo's gateway URL")
        gateway_url = match.group(1)

        # `panel serve` of the installed app folder, as a user of the wheel would run it.
        site = _site_packages(installed.python)
        other = free_port()
        env = {**installed.env, "SMITHERS_GATEWAY_URL": gateway_url}
        panel = Served([str(installed.python), "-m", "panel", "serve", str(site / "dashboard" / "apps"),
                        "--port", str(other), "--plugins", "dashboard.ops"], installed.home / "panel.log",
                       env=env, cwd=installed.home)
        panel.wait_status(f"http://127.0.0.1:{other}/healthz")
        page = httpx.get(f"http://127.0.0.1:{other}/apps", timeout=30)
        assert page.status_code == 200 and "<title>Smithers dashboard</title>" in page.text
        # The demo's gateway lets in only the demo's own dashboard (a random token it was handed):
        # this second server, without that token, reaches it and is refused.
        refused = panel.wait_status(f"http://127.0.0.1:{other}/readyz", 503).json()
        assert refused["gateway"] == gateway_url and refused["reason"] == "token_rejected", refused
        for server in (demo, panel):
            assert "Traceback" not in server.log(), server.log()
            assert "tree.bundle.js" not in server.log(), "the installed bundle is current"
            assert str(ROOT) not in server.log(), "nothing is served from the checkout"
    finally:
        if panel is not None:
            panel.stop()
        demo.stop()
