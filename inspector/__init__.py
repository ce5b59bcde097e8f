"""smithers-dashboard's inspector: everything about talking to a Smithers Gateway.

No Panel here. :mod:`inspector.protocol` (wire types) and :mod:`inspector.tree` (the
DevTools tree model) are pure; :mod:`inspector.client` is the only module that opens
sockets.
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
    "TreeChange",
    "TreeNode",
]
