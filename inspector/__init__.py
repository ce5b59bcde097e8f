"""smithers-dashboard's inspector: everything about talking to a Smithers Gateway.

No Panel here. The pure core (:mod:`inspector.protocol` wire types, :mod:`inspector.tree`
the DevTools tree, :mod:`inspector.subscription` the resync policy, :mod:`inspector.vocabulary`,
:mod:`inspector.agents`, :mod:`inspector.pricing`) opens no socket; :mod:`inspector.client` and
:mod:`inspector.stream` talk to a Gateway, and :mod:`inspector.replay` serves a recorded one.
Everything raised derives from :class:`SmithersDashboardError`.
"""

from __future__ import annotations

#: The one source of the version: setuptools reads it for the wheel, the client announces it.
__version__ = "0.1.0"

from .errors import (
    DevToolsError,
    ErrorCode,
    FrameDecodeError,
    GatewayError,
    GatewayRpcError,
    GatewayUnavailable,
    InvalidDelta,
    InvalidSnapshot,
    ProtocolError,
    SeqGap,
    SmithersDashboardError,
)
from .tree import DevToolsTree, TreeChange, TreeNode

__all__ = [
    "__version__",
    "DevToolsError",
    "DevToolsTree",
    "ErrorCode",
    "FrameDecodeError",
    "GatewayError",
    "GatewayRpcError",
    "GatewayUnavailable",
    "InvalidDelta",
    "InvalidSnapshot",
    "ProtocolError",
    "SeqGap",
    "SmithersDashboardError",
    "TreeChange",
    "TreeNode",
]
