"""Time and memory budgets for searches that may not finish: measured, not estimated.

Theory of operation
-------------------
A search calls :meth:`Budget.tick` once per step. Every so often — not every step, a
clock read and a ``/proc`` read cost microseconds — the budget measures the wall
clock and the process's resident set size (RSS) and answers whether to stop. How
often it measures adapts to what it sees: it keeps the expected time *and* memory
growth between two measurements below a small fraction of what is left (1 % of the
time budget; 2 % of the memory headroom, and at most ~5 ms of work when memory is
bounded), so a search whose single steps are slow, or allocate megabytes, is still
stopped close to its limit: the deadline is kept within about 1 % plus one step and
the memory limit within a few percent plus one step.

Memory is the RSS of the whole process (``/proc/self/statm`` on Linux; elsewhere the
peak RSS from ``getrusage``, which can only grow), so a budget covers everything the
process holds — the history, the interpreter and the search. DESIGN.md: *out of
memory is not a verdict*; a search stopped by its budget reports UNKNOWN with the
reason (:data:`TIMEOUT` or :data:`MEMORY`).
"""

from __future__ import annotations

import math
import os
import re
import sys
import time
from typing import Final

from vsm_phoenix.errors import InvalidArgument, TypeMismatch

__all__ = [
    "MEMORY",
    "TIMEOUT",
    "Budget",
    "default_memory_limit",
    "parse_duration",
    "parse_size",
    "rss_bytes",
]

#: Reasons a budget gives for stopping.
TIMEOUT: Final = "timeout"
MEMORY: Final = "memory limit"

_UNITS: Final = {"": 1, "B": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}
_SIZE: Final = re.compile(r"([0-9]+(?:\.[0-9]+)?)\s*([KMGT]?)(?:I?B)?", re.IGNORECASE)

try:
    _PAGE: int = os.sysconf("SC_PAGE_SIZE")
except (AttributeError, ValueError, OSError):  # pragma: no cover - non-POSIX
    _PAGE = 4096


def parse_size(text: str) -> int:
    """Bytes from ``"1G"``, ``"512M"``, ``"1.5GiB"``, ``"200000"`` (binary units).

    Raises :class:`InvalidArgument` for anything else, zero included.
    """
    if not isinstance(text, str):
        raise TypeMismatch(f"a size is a str, got {type(text).__name__}")
    m = _SIZE.fullmatch(text.strip())
    if m is None:
        raise InvalidArgument(f"not a size: {text!r} (examples: 1G, 512M, 200000)")
    value = float(m.group(1)) * _UNITS[m.group(2).upper()]
    if not 1 <= value < 1 << 62:
        raise InvalidArgument(f"size out of range: {text!r}")
    return int(value)


def parse_duration(text: str) -> float | None:
    """Seconds from a ``--timeout`` argument: a finite number >= 0; ``0`` means no
    limit (``None``). Negative, NaN, infinite or non-numeric values raise
    :class:`InvalidArgument`."""
    try:
        value = float(text)
    except (TypeError, ValueError):
        raise InvalidArgument(f"not a number of seconds: {text!r}") from None
    if not math.isfinite(value) or value < 0:
        raise InvalidArgument(f"a timeout is a finite number of seconds >= 0, got {text!r}")
    return None if value == 0 else value


def rss_bytes() -> int:
    """The resident set size of this process now (peak RSS where ``/proc`` is absent)."""
    try:
        with open("/proc/self/statm", "rb") as f:
            return int(f.read().split()[1]) * _PAGE
    except (OSError, ValueError, IndexError):  # pragma: no cover - non-Linux
        import resource

        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return peak if sys.platform == "darwin" else peak * 1024


def _cgroup_limit() -> int | None:
    for path in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        try:
            with open(path) as f:
                text = f.read().strip()
        except OSError:
            continue
        if text.isdigit() and int(text) < 1 << 60:
            return int(text)
    return None


def default_memory_limit(fraction: float = 0.5) -> int | None:
    """``fraction`` of the memory this process may use: the smaller of physical RAM
    and a cgroup limit. ``None`` where neither can be read."""
    try:
        ram: int | None = os.sysconf("SC_PHYS_PAGES") * _PAGE
    except (AttributeError, ValueError, OSError):  # pragma: no cover - non-POSIX
        ram = None
    limits = [x for x in (ram, _cgroup_limit()) if x]
    return int(min(limits) * fraction) if limits else None


class Budget:
    """Stops a search at ``deadline`` (a ``time.monotonic()`` instant) or when the RSS
    exceeds ``max_memory`` bytes; either may be ``None`` (unbounded).

    ``tick()`` returns ``None`` while the search may go on and the reason once it
    must stop (and from then on). ``check_now()`` measures at once; a hot loop may
    instead count ``interval`` steps itself between calls of ``check_now()``.
    """

    __slots__ = (
        "_last_rss",
        "_last_t",
        "_left",
        "deadline",
        "interval",
        "max_memory",
        "peak_rss",
        "reason",
        "start",
        "steps",
    )

    def __init__(self, deadline: float | None = None, max_memory: int | None = None) -> None:
        if max_memory is not None and (type(max_memory) is not int or max_memory < 1):
            raise InvalidArgument(f"max_memory must be a positive int, got {max_memory!r}")
        self.deadline = deadline
        self.max_memory = max_memory
        self.reason: str | None = None
        self.start = time.monotonic()
        self.steps = 0
        self.interval = 1  # steps between measurements
        self._left = 1
        self._last_t = self.start
        self._last_rss = rss_bytes() if max_memory is not None else 0
        self.peak_rss = self._last_rss

    @classmethod
    def of(cls, timeout: float | None, max_memory: int | None) -> Budget:
        """A budget of ``timeout`` seconds from now and ``max_memory`` bytes."""
        deadline = None if timeout is None else time.monotonic() + timeout
        return cls(deadline, max_memory)

    @property
    def bounded(self) -> bool:
        return self.deadline is not None or self.max_memory is not None

    def tick(self) -> str | None:
        self._left -= 1
        if self._left > 0:
            return self.reason
        return self.check_now()

    def check_now(self) -> str | None:
        steps = self.interval
        self.steps += steps
        if self.reason is not None:
            self._left = 1
            return self.reason
        now = time.monotonic()
        per_step = max(now - self._last_t, 1e-9) / steps
        limits: list[float] = []
        if self.deadline is not None:
            if now >= self.deadline:
                self.reason = TIMEOUT
                return self.reason
            span = self.deadline - self.start
            limits.append(max(span * 0.01, 1e-4) / per_step)
        if self.max_memory is not None:
            # Never more than ~5 ms between measurements: a burst of allocation after
            # a quiet phase is caught within what 5 ms of work can allocate.
            limits.append(0.005 / per_step)
            rss = rss_bytes()
            self.peak_rss = max(self.peak_rss, rss)
            if rss >= self.max_memory:
                self.reason = MEMORY
                return self.reason
            growth = max(rss - self._last_rss, 0) / steps
            headroom = self.max_memory - rss
            if growth > 0:
                limits.append(headroom * 0.02 / growth)
            self._last_rss = rss
        self._last_t = now
        grown = self.interval * 2
        self.interval = max(1, min(grown, 4096, *(int(x) for x in limits)))
        self._left = self.interval
        return None
