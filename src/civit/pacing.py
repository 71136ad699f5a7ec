"""``--limit-rate``: parse a rate and share one byte budget across connections and jobs."""

from __future__ import annotations

import math
import threading
import time

__all__ = ["RateLimit", "parse_rate"]

#: The largest read a rate-limited connection makes (the engine's buffer size).
MAX_CHUNK = 1 << 20

_RATE_UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30}


def parse_rate(text: str) -> float:
    """Bytes per second from ``20M``, ``500K``, ``1.5M``, ``2G`` or a plain number
    (binary units, as curl's ``--limit-rate``; a trailing ``B``, ``/s`` or ``iB`` is fine).

    >>> parse_rate("20M"), parse_rate("500k"), parse_rate("1000")
    (20971520.0, 512000.0, 1000.0)

    Raises:
        ValueError: not a positive rate.
    """
    cleaned = text.strip().upper().removesuffix("/S").removesuffix("B").removesuffix("I")
    number, unit = cleaned[:-1], cleaned[-1:]
    if unit.isdigit() or unit == ".":
        number, unit = cleaned, ""
    try:
        value = float(number) * _RATE_UNITS[unit]
    except (KeyError, ValueError):
        value = math.nan
    if not math.isfinite(value) or value < 1:
        raise ValueError(f"not a rate: {text!r} (bytes per second, e.g. 20M or 500K)")
    return value


class RateLimit:
    """``--limit-rate``: one budget of bytes per second, shared by every connection of
    every download given the same instance (``civit install`` shares one across jobs).

    Args:
        rate: bytes per second.
    """

    def __init__(self, rate: float) -> None:
        if not rate > 0:
            raise ValueError(f"a rate must be positive, got {rate!r}")
        self.rate = float(rate)
        self._lock = threading.Lock()
        self._next_free = time.monotonic()
        #: Reads stay small enough that a connection never runs far ahead of its share.
        self.chunk = max(4096, min(MAX_CHUNK, int(rate / 10)))

    def take(self, count: int, cancelled: threading.Event) -> None:
        """Account for ``count`` bytes received; sleep until they fit the budget."""
        with self._lock:
            now = time.monotonic()
            self._next_free = max(self._next_free, now) + count / self.rate
            delay = self._next_free - now
        if delay > 0:
            cancelled.wait(delay)
