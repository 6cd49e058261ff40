"""Progress of the benchmark run, measurement by measurement.

A suite says how many measurements it will make and announces each one::

    from bench import progress

    def run(quick: bool) -> dict:
        cases = [...]
        progress.plan(len(cases))
        for case in cases:
            progress.step(f"join n={case.n}")   # a measurement starts
            ...

The runner (``python -m bench`` / ``vsm-phoenix bench``) decides how that shows:

* on a terminal: one ``tqdm`` bar per suite (measurements done / planned, the current
  measurement's name, elapsed and remaining time);
* otherwise (CI logs, pipes): one line per measurement, ``suite [3/12] name``;
* ``--no-progress``: one line when a suite starts and one when it ends.

Outside a run (a suite imported by pytest-benchmark, say) every call does nothing.
"""

from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from typing import IO, Any, TypeVar

__all__ = ["Reporter", "plan", "reporting", "step", "track"]

T = TypeVar("T")


class Reporter:
    """Shows one suite's progress (see the module docstring for the three modes)."""

    def __init__(self, suite: str, mode: str, stream: IO[str] | None = None) -> None:
        if mode not in ("bar", "lines", "quiet", "off"):
            raise ValueError(f"unknown progress mode {mode!r}")
        self.suite = suite
        self.mode = mode
        self.stream = stream or sys.stderr
        self.total: int | None = None
        self.done = 0
        self.started = time.perf_counter()
        self._label: str | None = None
        self._bar: Any = None
        if mode == "bar":
            try:
                from tqdm import tqdm
            except ImportError:  # pragma: no cover - tqdm is in the bench extra
                self.mode = "lines"
            else:
                self._bar = tqdm(total=None, desc=suite, unit="measurement", file=self.stream,
                                 dynamic_ncols=True, leave=True)
        if self.mode in ("lines", "quiet"):
            self._say(f"{suite}: started")

    def _say(self, text: str) -> None:
        self.stream.write(text + "\n")
        self.stream.flush()

    def plan(self, total: int) -> None:
        """The suite will make ``total`` measurements (more may be planned later)."""
        self.total = max(total, self.done)
        if self._bar is not None:
            self._bar.total = self.total
            self._bar.refresh()

    def step(self, label: str) -> None:
        """A measurement named ``label`` starts; the previous one is done."""
        if self._label is not None:
            self._advance()
        self._label = label
        if self._bar is not None:
            self._bar.set_postfix_str(label[:60], refresh=True)
        elif self.mode == "lines":
            total = "?" if self.total is None else str(self.total)
            self._say(f"{self.suite} [{self.done + 1}/{total}] {label}")

    def _advance(self) -> None:
        self.done += 1
        if self.total is not None and self.done > self.total:
            self.plan(self.done)
        if self._bar is not None:
            self._bar.update(1)

    def close(self, failed: bool = False) -> float:
        """The suite is over; returns its wall time in seconds."""
        if self._label is not None:
            self._advance()
            self._label = None
        seconds = time.perf_counter() - self.started
        if self._bar is not None:
            self._bar.set_postfix_str("failed" if failed else "done", refresh=True)
            self._bar.close()
        elif self.mode in ("lines", "quiet"):
            self._say(f"{self.suite}: {'FAILED' if failed else 'done'} after {seconds:.1f} s "
                      f"({self.done} measurements)")
        return seconds


_current: Reporter | None = None


@contextlib.contextmanager
def reporting(reporter: Reporter) -> Iterator[Reporter]:
    """Route :func:`plan` and :func:`step` to ``reporter`` for the duration."""
    global _current
    previous, _current = _current, reporter
    try:
        yield reporter
    finally:
        _current = previous


def plan(total: int) -> None:
    """This suite will make ``total`` measurements."""
    if _current is not None:
        _current.plan(total)


def step(label: str) -> None:
    """A measurement named ``label`` starts (the previous one is done)."""
    if _current is not None:
        _current.step(label)


def track(items: Iterable[T], label: Callable[[T], str] = str) -> Iterator[T]:
    """Iterate ``items``, announcing each as a measurement (plans the total first when
    ``items`` has a length)."""
    if hasattr(items, "__len__"):
        plan(len(items))
    for item in items:
        step(label(item))
        yield item
