"""Login with Panel's own basic auth, from a users file that may hold password hashes.

Panel's ``--basic-auth users.json`` compares the typed password with the file's plaintext
entry. :class:`HashedBasicAuthProvider` is Panel's :class:`~panel.auth.BasicAuthProvider`
(same ``/login`` page with ``username`` / ``password`` fields, same signed ``user`` cookie,
same ``/logout``, so ``pn.state.user`` works) whose login handler also accepts entries made
by :func:`hash_password` (``smithers-dashboard hash-password``), so no plaintext password
needs to sit on disk, and compares in constant time either way.

Its login and logout pages are :data:`LOGIN_TEMPLATE` / :data:`LOGOUT_TEMPLATE`: Panel's
load their logo from Panel's CDN, and a dashboard on a private network must not.

The users file is Panel's format, a JSON object ``{"alice": ENTRY, ...}``; an ENTRY is
``scrypt$N$r$p$SALT$HASH`` (base64) or, as in Panel's, a plaintext password. It is read at
every login, so adding a user or changing a password needs no restart.

``panel serve`` users get this provider with ``--auth-module`` pointing at
:data:`AUTH_MODULE_PATH` and the users file in ``SMITHERS_DASHBOARD_BASIC_AUTH`` (see
``docs/deploy.md``); ``smithers-dashboard serve --basic-auth FILE`` does exactly that.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from panel.auth import BasicAuthProvider, BasicLoginHandler

from .passwords import UsersFileError, check_login, hash_password, load_users, verify_password

__all__ = [
    "AUTH_MODULE_PATH",
    "LOGIN_TEMPLATE",
    "LOGOUT_TEMPLATE",
    "USERS_FILE_ENV",
    "HashedBasicAuthProvider",
    "HashedLoginHandler",
    "UsersFileError",
    "check_login",
    "hash_password",
    "load_users",
    "provider_from_environment",
    "verify_password",
]

log = logging.getLogger(__name__)

#: The environment variable naming the users file for :func:`provider_from_environment`.
USERS_FILE_ENV = "SMITHERS_DASHBOARD_BASIC_AUTH"
#: The file to give Bokeh's ``--auth-module`` (it builds the provider from the environment).
AUTH_MODULE_PATH = Path(__file__).resolve().parent / "auth_module.py"
#: Login and logout pages without Panel's CDN logo (``--basic-login-template`` / ``--logout-template``).
LOGIN_TEMPLATE = Path(__file__).resolve().parent / "templates" / "login.html"
LOGOUT_TEMPLATE = Path(__file__).resolve().parent / "templates" / "logout.html"

class HashedLoginHandler(BasicLoginHandler):
    """Panel's login page and cookie; the password is checked by :func:`check_login`."""

    users_file: str = ""

    def _validate(self, username: str, password: str) -> bool:
        ok = check_login(self.users_file, username, password)
        log.info("login %s for user %r", "accepted" if ok else "refused", username)
        return ok


class HashedBasicAuthProvider(BasicAuthProvider):
    """Panel's :class:`~panel.auth.BasicAuthProvider` checking logins against ``users_file``."""

    def __init__(self, users_file: str | os.PathLike[str], **kwargs: Any) -> None:
        self.users_file = os.path.abspath(users_file)
        load_users(self.users_file)  # fail at start, not at the first login
        kwargs.setdefault("login_template", str(LOGIN_TEMPLATE))
        kwargs.setdefault("logout_template", str(LOGOUT_TEMPLATE))
        super().__init__(**kwargs)  # type: ignore[no-untyped-call]

    @property
    def login_handler(self) -> type[HashedLoginHandler]:
        base = super().login_handler  # Panel sets the endpoint and template on its class
        attrs = {
            "users_file": self.users_file,
            "_login_endpoint": base._login_endpoint,
            "_login_template": base._login_template,
        }
        return type("SmithersLoginHandler", (HashedLoginHandler,), attrs)


def provider_from_environment(env: dict[str, str] | None = None) -> HashedBasicAuthProvider:
    """The provider for the users file named by ``SMITHERS_DASHBOARD_BASIC_AUTH``."""
    env = dict(os.environ) if env is None else env
    path = env.get(USERS_FILE_ENV, "").strip()
    if not path:
        raise UsersFileError(f"{USERS_FILE_ENV} must name the users file (JSON: user -> password or hash)")
    return HashedBasicAuthProvider(path)
