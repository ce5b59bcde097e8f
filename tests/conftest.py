"""Shared pytest configuration: each area of the test suite registers its fixtures as a plugin."""

from __future__ import annotations

pytest_plugins = [
    "tests.gateway.plugin",
    "tests.browser",
]
