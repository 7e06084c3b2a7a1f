# SPDX-License-Identifier: MIT
"""Faults on purpose: what ``faults=`` / ``--fault NAME[=VALUE]`` may ask for, checked at
start, and the per-client output gate that throttles and cuts channel data on the wire."""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Union

__all__ = ["FAULT_NAMES", "Faults", "OutputGate"]

#: Channel types ``refuse-channel`` can name.
REFUSABLE_CHANNELS = ("session", "direct-tcpip")
MAX_DELAY = 3600.0
MAX_COUNT = 1 << 31
MAX_RATE = 1 << 40

#: name -> kind of value: "seconds", "count", "bytes", "rate", "channel" or None (a flag).
FAULT_NAMES: dict[str, str | None] = {
    "delay-banner": "seconds",
    "delay-auth": "seconds",
    "fail-auth": "count",
    "disconnect-after-auth": None,
    "reject-connections": "count",
    "drop-after-bytes": "bytes",
    "refuse-channel": "channel",
    "no-exit-status": None,
    "throttle": "rate",
}

FaultValue = Union[float, int, str, bool, None]


def _value(name: str, kind: str | None, raw: Any) -> Any:
    """The checked value of one fault (ValueError naming the fault otherwise)."""
    if kind is None:
        if raw not in (None, True, "", "true", "1"):
            raise ValueError(f"fault {name} takes no value (got {raw!r})")
        return None
    if raw is None or raw == "" or isinstance(raw, bool):
        raise ValueError(f"fault {name} needs a value: {name}=<{kind}>")
    if kind == "channel":
        if raw not in REFUSABLE_CHANNELS:
            raise ValueError(f"fault {name}: channel type must be one of "
                             f"{', '.join(REFUSABLE_CHANNELS)}, not {raw!r}")
        return raw
    try:
        number = float(raw) if kind == "seconds" else int(raw)
    except (TypeError, ValueError):
        raise ValueError(f"fault {name}: not a number: {raw!r}") from None
    if kind == "seconds":
        if not math.isfinite(number) or not 0 < number <= MAX_DELAY:
            raise ValueError(f"fault {name}: seconds must be more than 0 and at most "
                             f"{MAX_DELAY:g}, not {raw!r}")
    elif kind == "count" and not 1 <= number <= MAX_COUNT:
        raise ValueError(f"fault {name}: must be 1 to {MAX_COUNT}, not {raw!r}")
    elif kind == "bytes" and not 0 <= number <= MAX_RATE:
        raise ValueError(f"fault {name}: bytes must be 0 to {MAX_RATE}, not {raw!r}")
    elif kind == "rate" and not 1 <= number <= MAX_RATE:
        raise ValueError(f"fault {name}: bytes per second must be 1 to {MAX_RATE}, "
                         f"not {raw!r}")
    return number


@dataclass(frozen=True)
class Faults:
    """The faults a server applies, checked.  Build with :meth:`parse`.

    Attributes:
        values: fault name -> value (None for flags); ``refuse-channel`` is a tuple.
    """

    values: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def parse(cls, faults: Faults | Mapping[str, FaultValue] | Iterable[str] | None) -> Faults:
        """Check ``faults``: a mapping (``{"throttle": 65536, "no-exit-status": True}``) or
        an iterable of ``NAME[=VALUE]`` strings (the CLI's form; ``refuse-channel`` may be
        given more than once).

        Raises:
            ValueError: an unknown fault or a value out of range (the message names it).
            TypeError: ``faults`` is neither form.
        """
        if faults is None:
            return cls()
        if isinstance(faults, Faults):
            return faults
        items: list[tuple[str, Any]]
        if isinstance(faults, Mapping):
            items = list(faults.items())
        elif isinstance(faults, str):
            raise TypeError("faults must be a mapping or a list of NAME[=VALUE] strings, "
                            "not one str")
        else:
            items = []
            for item in faults:
                if not isinstance(item, str):
                    raise TypeError(f"a fault is a NAME[=VALUE] str, not {type(item).__name__}")
                name, _, raw = item.partition("=")
                items.append((name.strip(), raw.strip() if raw else None))
        values: dict[str, Any] = {}
        for name, raw in items:
            if name not in FAULT_NAMES:
                raise ValueError(f"unknown fault {name!r}; known: {', '.join(FAULT_NAMES)}")
            kind = FAULT_NAMES[name]
            if kind == "channel":
                raws = raw if isinstance(raw, (list, tuple, set, frozenset)) else [raw]
                types = {_value(name, kind, r) for r in raws}
                values[name] = tuple(sorted(set(values.get(name, ())) | types))
            elif name in values:
                raise ValueError(f"fault {name} is given twice")
            else:
                values[name] = _value(name, kind, raw)
        return cls(values)

    def __contains__(self, name: object) -> bool:
        return name in self.values

    def __getitem__(self, name: str) -> Any:
        return self.values[name]

    def __bool__(self) -> bool:
        return bool(self.values)

    def refuses(self, channel_type: str) -> bool:
        """Whether ``refuse-channel`` names ``channel_type``."""
        return channel_type in self.values.get("refuse-channel", ())


class Counter:
    """A server-wide count-down (``fail-auth=N``, ``reject-connections=N``), thread-safe."""

    def __init__(self, count: int) -> None:
        self._left = count
        self._lock = threading.Lock()

    def take(self) -> bool:
        """True (and one fewer left) while the count lasts."""
        with self._lock:
            if self._left <= 0:
                return False
            self._left -= 1
            return True


class OutputGate:
    """Channel data to one client: a token bucket for ``throttle`` and a byte budget for
    ``drop-after-bytes``.  Used only by the client's own thread.

    Args:
        rate: bytes per second, or None for no throttle.
        limit: bytes after which the connection is cut, or None.
    """

    #: How much may go at once: a tenth of a second's worth, so the rate is smooth.
    BURST_SECONDS = 0.1
    UNLIMITED = 1 << 62
    sent: int

    def __init__(self, rate: int | None, limit: int | None) -> None:
        self.rate = rate
        self.limit = limit
        self.sent = 0
        self._burst = max(1.0, rate * self.BURST_SECONDS) if rate else 0.0
        self._tokens = self._burst
        self._stamp = time.monotonic()

    def _refill(self) -> None:
        if self.rate:
            now = time.monotonic()
            self._tokens = min(self._burst, self._tokens + (now - self._stamp) * self.rate)
            self._stamp = now

    def room(self) -> int:
        """Bytes that may go now."""
        room = self.UNLIMITED
        if self.rate:
            self._refill()
            room = max(0, int(self._tokens))
        if self.limit is not None:
            room = min(room, self.limit - self.sent)
        return room

    def admit(self, n: int) -> int:
        """Account for ``n`` bytes about to go; returns how many may (all but what lies past
        the cut).  The throttle may go into debt for data that cannot wait (a reply already
        built): later data then waits longer."""
        if self.limit is not None:
            n = max(0, min(n, self.limit - self.sent))
        if self.rate:
            self._refill()
            self._tokens -= n
        self.sent += n
        return n

    @property
    def exhausted(self) -> bool:
        """True once ``drop-after-bytes`` worth went: the connection is to be cut."""
        return self.limit is not None and self.sent >= self.limit

    def wait(self) -> float:
        """Seconds until some data may go again (0 when it may now)."""
        if not self.rate:
            return 0.0
        self._refill()
        if self._tokens >= 1:
            return 0.0
        return (1 - self._tokens) / self.rate
