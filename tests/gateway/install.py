#!/usr/bin/env python3
"""Install the real Smithers Gateway used by the end-to-end tests, once per content.

The Gateway is ``smithers-orchestrator`` from npm running under Bun (which ships inside the
npm package ``@oven/bun-linux-x64``). Its ``node_modules`` is ~740 MB and takes a minute or
more to install, so it lives in a cache outside the repository::

    ${SMITHERS_GATEWAY_CACHE:-$HOME/.cache/smithers-dashboard}/gateway-<hash>

where ``<hash>`` is the first 12 hex digits of the SHA-256 of ``package.json``,
``package-lock.json`` and ``suite.tsx`` (in that order). Editing any of them (say, adding a
workflow to ``suite.tsx``) therefore gives a new directory instead of silently testing against
stale files; an unchanged checkout reuses the existing one without touching the network.

Why ``npm install`` and not ``npm ci``: the npm registry reachable from these machines lacks a
few optional, platform-specific packages that the dependency tree names (for example
``@opentui/core-linux-arm64-musl``), so npm leaves them out of the lock and ``npm ci`` then
refuses the lock as "out of sync" (``Missing: ... from lock file``), however it is regenerated.
``npm install`` with the lock present installs exactly the locked versions (we check that the
lock comes out unchanged) and tolerates the missing optional packages.

An install is built in a temporary sibling directory and renamed into place only after npm
succeeded and a marker file was written, so an interrupted install never looks complete and two
concurrent installers cannot corrupt each other. When only ``suite.tsx`` changed, the
``node_modules`` of a complete sibling install with the same ``package.json`` and lock is
hard-linked instead of downloading again.

Usage: ``python tests/gateway/install.py [--cache DIR] [--force]``; the last line printed on
stdout is the install directory. npm's own output goes to stderr.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

__all__ = [
    "BUN_RELATIVE",
    "FILES",
    "MARKER",
    "SOURCE_DIR",
    "bun_path",
    "cache_root",
    "content_hash",
    "install",
    "is_complete",
]

#: Where the files that define the install live (this folder).
SOURCE_DIR = Path(__file__).resolve().parent
#: The files copied into the install directory, in hashing order.
FILES = ("package.json", "package-lock.json", "suite.tsx")
#: Written last, after npm succeeded: its presence is what "complete" means.
MARKER = ".smithers-dashboard-install.json"
#: The Bun binary inside the install directory.
BUN_RELATIVE = Path("node_modules/@oven/bun-linux-x64/bin/bun")
#: Files that must exist in a usable install besides the marker (a cheap sanity check that
#: nobody deleted half of node_modules by hand).
REQUIRED = (
    BUN_RELATIVE,
    Path("node_modules/smithers-orchestrator/package.json"),
    Path("node_modules/@smithers-orchestrator/devtools/src/applyDelta.js"),
)
NPM_FLAGS = ("--no-audit", "--no-fund", "--ignore-scripts", "--legacy-peer-deps")


def _log(message: str) -> None:
    print(f"[gateway-install] {message}", file=sys.stderr, flush=True)


def cache_root() -> Path:
    """The cache folder: ``$SMITHERS_GATEWAY_CACHE`` or ``~/.cache/smithers-dashboard``."""
    configured = os.environ.get("SMITHERS_GATEWAY_CACHE")
    if configured:
        return Path(configured).expanduser()
    return Path.home() / ".cache" / "smithers-dashboard"


def content_hash(source: Path = SOURCE_DIR, files: tuple[str, ...] = FILES) -> str:
    """First 12 hex digits of the SHA-256 over the given files' bytes, in order."""
    digest = hashlib.sha256()
    for name in files:
        data = (source / name).read_bytes()
        # Length-prefix each file so moving bytes from one file to the next changes the hash.
        digest.update(f"{name}\0{len(data)}\0".encode())
        digest.update(data)
    return digest.hexdigest()[:12]


def bun_path(install_dir: Path) -> Path:
    """The Bun binary of an install directory."""
    return install_dir / BUN_RELATIVE


def is_complete(install_dir: Path, full_hash: str | None = None) -> bool:
    """Whether ``install_dir`` holds a finished install (marker written, key files present)."""
    marker = install_dir / MARKER
    if not marker.is_file():
        return False
    try:
        info = json.loads(marker.read_text())
    except (OSError, ValueError):
        return False
    if full_hash is not None and info.get("hash") != full_hash:
        return False
    return all((install_dir / rel).exists() for rel in REQUIRED)


def _deps_hash(source: Path) -> str:
    return content_hash(source, ("package.json", "package-lock.json"))


def _reusable_sibling(root: Path, deps_hash: str) -> Path | None:
    """A complete install with the same package.json and lock (only suite.tsx differs)."""
    if not root.is_dir():
        return None
    for candidate in sorted(root.glob("gateway-*")):
        if not candidate.is_dir() or ".tmp-" in candidate.name:
            continue
        try:
            info = json.loads((candidate / MARKER).read_text())
        except (OSError, ValueError):
            continue
        if info.get("deps_hash") == deps_hash and is_complete(candidate):
            return candidate
    return None


def _run_npm(workdir: Path) -> None:
    npm = shutil.which("npm")
    if npm is None:
        raise SystemExit("npm is not on PATH: install Node.js (20+) and npm first")
    lock_before = (workdir / "package-lock.json").read_bytes()
    command = [npm, "install", *NPM_FLAGS]
    _log(f"running {' '.join(command)} in {workdir} (about a minute, ~740 MB)")
    started = time.monotonic()
    # npm talks on stdout; keep our stdout for the one path line callers read.
    result = subprocess.run(command, cwd=workdir, stdout=sys.stderr, stderr=sys.stderr, check=False)
    if result.returncode != 0:
        raise SystemExit(f"npm install failed with exit code {result.returncode}")
    _log(f"npm install took {time.monotonic() - started:.0f} s")
    if (workdir / "package-lock.json").read_bytes() != lock_before:
        # Not fatal (a registry that has the optional packages this one lacks adds entries),
        # but worth saying: the tests are then not running the exact locked tree.
        _log("warning: npm rewrote package-lock.json; the installed tree differs from the committed lock")


def install(source: Path = SOURCE_DIR, root: Path | None = None, force: bool = False) -> Path:
    """Make sure the install for ``source``'s current files exists; return its directory."""
    root = cache_root() if root is None else root
    short = content_hash(source)
    target = root / f"gateway-{short}"
    if not force and is_complete(target, short):
        return target
    root.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f"gateway-{short}.tmp-", dir=root))
    try:
        for name in FILES:
            shutil.copyfile(source / name, staging / name)
        sibling = None if force else _reusable_sibling(root, _deps_hash(source))
        if sibling is not None:
            _log(f"reusing node_modules of {sibling} (same package.json and lock) by hard links")
            subprocess.run(
                ["cp", "-al", str(sibling / "node_modules"), str(staging / "node_modules")], check=True
            )
        else:
            _run_npm(staging)
        missing = [str(rel) for rel in REQUIRED if not (staging / rel).exists()]
        if missing:
            raise SystemExit(f"install incomplete, missing: {', '.join(missing)}")
        bun = bun_path(staging)
        bun.chmod(bun.stat().st_mode | 0o111)
        marker = {
            "hash": short,
            "deps_hash": _deps_hash(source),
            "installed_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "npm_flags": list(NPM_FLAGS),
        }
        (staging / MARKER).write_text(json.dumps(marker, indent=2) + "\n")
        if target.exists():
            # An incomplete leftover (or --force): move it aside, then delete it.
            trash = Path(tempfile.mkdtemp(prefix=f"gateway-{short}.tmp-old-", dir=root))
            target.rename(trash / "old")
            shutil.rmtree(trash, ignore_errors=True)
        try:
            staging.rename(target)
        except OSError:
            # Another installer finished first; use its result if it is complete.
            if is_complete(target, short):
                shutil.rmtree(staging, ignore_errors=True)
                return target
            raise
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    _log(f"installed {target}")
    return target


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument(
        "--cache",
        type=Path,
        help="cache folder (default: $SMITHERS_GATEWAY_CACHE or ~/.cache/smithers-dashboard)",
    )
    parser.add_argument("--force", action="store_true", help="reinstall even if a complete install exists")
    args = parser.parse_args(argv)
    target = install(root=args.cache, force=args.force)
    print(target, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
