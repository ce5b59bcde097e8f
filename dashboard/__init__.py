"""smithers-dashboard: Panel views and the param store that feeds them.

``RunStore`` and ``GatewayHub`` are plain param/asyncio (no Panel import);
``Dashboard`` (the composed app) is imported lazily so the store can be used, and
tested, without loading Panel.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .config import DashboardConfig, load_config
from .hub import GatewayHub
from .store import EventRecord, RunStore

if TYPE_CHECKING:
    from .app import Dashboard

__all__ = ["Dashboard", "DashboardConfig", "EventRecord", "GatewayHub", "RunStore", "load_config"]


def __getattr__(name: str) -> Any:
    if name == "Dashboard":
        from .app import Dashboard

        return Dashboard
    raise AttributeError(f"module 'dashboard' has no attribute {name!r}")
