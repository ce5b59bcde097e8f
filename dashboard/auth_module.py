"""Bokeh's ``--auth-module`` file: the dashboard's login (see :mod:`dashboard.auth`).

``panel serve ... --auth-module <this file>`` with ``SMITHERS_DASHBOARD_BASIC_AUTH=users.json``
and ``PANEL_COOKIE_SECRET`` in the environment serves Panel's ``/login`` and ``/logout``,
checking passwords (plaintext or ``smithers-dashboard hash-password`` hashes) against the
users file. Bokeh loads this file by path, so it imports the package absolutely.
"""

from __future__ import annotations

from dashboard.auth import provider_from_environment

_provider = provider_from_environment()

get_user = _provider.get_user
login_url = _provider.login_url
LoginHandler = _provider.login_handler
logout_url = _provider.logout_url
LogoutHandler = _provider.logout_handler
