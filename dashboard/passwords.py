"""Password entries of the dashboard's users file: scrypt hashes or plaintext, checked in constant time.

No Panel here, so ``smithers-dashboard hash-password`` starts fast; the login handler that
uses these checks is :mod:`dashboard.auth`.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac
import json
import logging
import os
import secrets
from pathlib import Path

from inspector.errors import ConfigurationError

__all__ = ["UsersFileError", "check_login", "hash_password", "load_users", "set_user", "verify_password"]

log = logging.getLogger(__name__)

_SCHEME = "scrypt"
# scrypt cost: 2**15 * 8 * 128 bytes = 32 MiB and ~50 ms a check (OWASP's minimum is 2**17
# with r=8, p=1 at 128 MiB; 2**15 keeps several concurrent logins affordable on a small host).
_N, _R, _P = 2**15, 8, 1
_MAXMEM = 64 * 1024 * 1024


class UsersFileError(ConfigurationError):
    """The users file cannot be read or is not a JSON object of strings."""


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def hash_password(password: str, *, salt: bytes | None = None) -> str:
    """A users-file entry for ``password``: ``scrypt$N$r$p$SALT$HASH``."""
    salt = salt if salt is not None else secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode("utf-8"), salt=salt, n=_N, r=_R, p=_P, maxmem=_MAXMEM, dklen=32)
    return f"{_SCHEME}${_N}${_R}${_P}${_b64(salt)}${_b64(digest)}"


def _verify_hash(password: str, entry: str) -> bool:
    try:
        _scheme, n, r, p, salt, digest = entry.split("$")
        expected = base64.b64decode(digest, validate=True)
        actual = hashlib.scrypt(
            password.encode("utf-8"), salt=base64.b64decode(salt, validate=True),
            n=int(n), r=int(r), p=int(p), maxmem=_MAXMEM, dklen=len(expected),
        )
    except (ValueError, TypeError):
        log.warning("a users-file entry looks like a hash but cannot be read")
        return False
    return hmac.compare_digest(actual, expected)


def verify_password(password: str, entry: str) -> bool:
    """Does ``password`` match the users-file ``entry`` (a hash or plaintext)? Constant time."""
    if entry.startswith(_SCHEME + "$"):
        return _verify_hash(password, entry)
    return hmac.compare_digest(password.encode("utf-8"), entry.encode("utf-8"))


def load_users(path: str | os.PathLike[str]) -> dict[str, str]:
    """The ``{user: entry}`` object of a users file."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise UsersFileError(f"the users file {os.fspath(path)!r} cannot be read: {exc.strerror or exc}") from None
    except ValueError as exc:
        raise UsersFileError(f"the users file {os.fspath(path)!r} is not JSON: {exc}") from None
    if not isinstance(data, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in data.items()):
        raise UsersFileError(f"the users file {os.fspath(path)!r} must be a JSON object of user: password-or-hash")
    return data


def check_login(path: str | os.PathLike[str], username: str, password: str) -> bool:
    """``username`` / ``password`` against the users file at ``path`` (False if unreadable)."""
    try:
        users = load_users(path)
    except UsersFileError as exc:
        log.error("login refused: %s", exc)
        return False
    entry = users.get(username)
    if entry is None:
        # Same work as a known user, so response time does not tell which users exist.
        verify_password(password, _dummy_entry())
        return False
    return verify_password(password, entry)


@functools.cache
def _dummy_entry() -> str:
    return hash_password("", salt=b"smithers-dummy-salt")


def set_user(path: str | os.PathLike[str], username: str, entry: str) -> None:
    """Add or replace ``username``'s entry in the users file at ``path`` (created, mode 0600)."""
    target = Path(path)
    users = load_users(target) if target.exists() else {}
    users[username] = entry
    tmp = target.with_name(f".{target.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        json.dump(users, out, indent=2, sort_keys=True)
        out.write("\n")
    os.replace(tmp, target)


