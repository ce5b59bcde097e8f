"""Connection status and reconnect backoff: small pure pieces the client and the views share."""

from __future__ import annotations

import enum
import random
from dataclasses import dataclass, field, replace

__all__ = ["Backoff", "ConnectionState", "ConnectionStatus"]


class ConnectionStatus(enum.StrEnum):
    """Where a subscription stands with its Gateway.

    ``offline`` means we are waiting to retry after a failure; ``unauthorized`` means the
    token was rejected and retrying will not help until the operator changes it;
    ``unsupported`` means the Gateway speaks another protocol version and we stopped.
    """

    IDLE = "idle"
    CONNECTING = "connecting"
    ONLINE = "online"
    OFFLINE = "offline"
    UNAUTHORIZED = "unauthorized"
    #: The Gateway speaks a protocol version we do not: the subscription stopped, no retry.
    UNSUPPORTED = "unsupported"


@dataclass(frozen=True, slots=True)
class ConnectionState:
    """A status with the facts a view needs to explain it.

    ``outage_since`` is the wall-clock time (``time.time()``) the current outage began:
    set on the first failure after being online (or on the first failure at start) and
    kept through every retry until the connection is online again.
    """

    status: ConnectionStatus = ConnectionStatus.IDLE
    since: float = 0.0
    outage_since: float | None = None
    attempt: int = 0
    retry_in: float | None = None
    error: str | None = None
    required_scope: str | None = None

    def moved(self, status: ConnectionStatus, now: float, **changes: object) -> ConnectionState:
        """The next state; ``since`` only moves when the status really changes."""
        since = self.since if status == self.status else now
        return replace(self, status=status, since=since, **changes)  # type: ignore[arg-type]


@dataclass(slots=True)
class Backoff:
    """Exponential backoff with full jitter (AWS "full jitter": uniform in [0, cap]).

    ``delay()`` grows ``base * factor**attempt`` up to ``cap``; :meth:`reset` is called
    only once a connection has proved healthy, so a Gateway that accepts and immediately
    drops us keeps escalating instead of hot-looping at the base delay.
    """

    base: float = 0.25
    cap: float = 10.0
    factor: float = 2.0
    healthy_after: float = 5.0
    attempt: int = 0
    rng: random.Random = field(default_factory=random.Random)

    def ceiling(self) -> float:
        return min(self.cap, self.base * self.factor ** min(self.attempt, 64))

    def delay(self) -> float:
        """The next delay, and count the attempt."""
        value = self.rng.uniform(0.0, self.ceiling())
        self.attempt += 1
        return value

    def reset(self) -> None:
        self.attempt = 0
