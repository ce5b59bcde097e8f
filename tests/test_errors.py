"""One error root, and the hierarchy its docstring draws is the real one."""

from __future__ import annotations

import re

import pytest

from inspector import errors
from inspector.errors import (
    GatewayError,
    GatewayRpcError,
    GatewayUnavailable,
    ProtocolError,
    SmithersDashboardError,
)


def _drawn_parents() -> dict[str, str]:
    """Class name -> parent name, read off the tree in the module docstring."""
    doc = errors.__doc__ or ""
    parents: dict[str, str] = {}
    stack: list[tuple[int, str]] = []
    for line in doc.splitlines():
        match = re.match(r"^(\s*(?:[│ ]\s*)*(?:[├└]── )?)([A-Z]\w+)\b", line)
        if match is None or not hasattr(errors, match.group(2)):
            continue
        depth, name = len(match.group(1)), match.group(2)
        while stack and stack[-1][0] >= depth:
            stack.pop()
        if stack:
            parents[name] = stack[-1][1]
        stack.append((depth, name))
    return parents


def test_the_docstring_draws_every_error_under_one_root() -> None:
    classes = {name for name in errors.__all__ if isinstance(getattr(errors, name), type)
               and issubclass(getattr(errors, name), BaseException)}
    parents = _drawn_parents()
    assert set(parents) | {"SmithersDashboardError"} == classes
    for name, parent in parents.items():
        assert getattr(errors, parent) in getattr(errors, name).__bases__, f"{name} is drawn under {parent}"
        assert issubclass(getattr(errors, name), SmithersDashboardError)


def test_protocol_errors_are_still_value_errors() -> None:
    assert issubclass(ProtocolError, ValueError)


@pytest.mark.parametrize(
    "error",
    [GatewayRpcError("Busy", "later", retry_after=2.5), GatewayUnavailable("HTTP 503", status=503, retry_after=2.5),
     GatewayError("cut", retry_after=2.5)],
)
def test_retry_after_is_given_when_the_error_is_made(error: GatewayError) -> None:
    assert error.retry_after == 2.5
    with pytest.raises(SmithersDashboardError):
        raise error


def test_retry_after_defaults_to_unknown() -> None:
    assert GatewayRpcError("Busy", "later").retry_after is None
    assert GatewayUnavailable("refused").retry_after is None
