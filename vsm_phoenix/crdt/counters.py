"""Counters: grow-only (:class:`GCounter`) and increment/decrement (:class:`PNCounter`)."""

from __future__ import annotations

from typing import Any, Self

from vsm_phoenix.crdt import _backend as K
from vsm_phoenix.crdt._base import CRDT
from vsm_phoenix.crdt._domain import check_count, check_replica, wire_count, wire_replica

__all__ = ["GCounter", "PNCounter"]


class GCounter(CRDT):
    """A grow-only counter: one non-decreasing count per replica; ``value`` is the sum.

    The join is the pointwise maximum. Invariant: only positive counts are stored.
    """

    TAG = "gcounter"
    __slots__ = ("_counts",)

    def __init__(self) -> None:
        self._counts: dict[str, int] = {}

    @classmethod
    def _raw(cls, counts: dict[str, int]) -> Self:
        obj = cls.__new__(cls)
        obj._counts = counts
        return obj

    def increment(self, replica: str, n: int = 1) -> GCounter:
        """Add ``n >= 0`` at ``replica``; returns the delta (that replica's new count)."""
        check_replica(replica)
        check_count(n, "increment")
        if n == 0:
            return GCounter()
        total = check_count(self._counts.get(replica, 0) + n, "count")
        self._counts[replica] = total
        return GCounter._raw({replica: total})

    @property
    def value(self) -> int:
        return sum(self._counts.values())

    def count_of(self, replica: str) -> int:
        """What ``replica`` has contributed."""
        return self._counts.get(replica, 0)

    @property
    def counts(self) -> dict[str, int]:
        """A copy of the per-replica counts."""
        return dict(self._counts)

    def _join_into(self, other: Self) -> None:
        K.vc_join_into(self._counts, other._counts)

    def _leq(self, other: Self) -> bool:
        return bool(K.vc_leq(self._counts, other._counts))

    def _eq_state(self, other: Self) -> bool:
        return self._counts == other._counts

    def copy(self) -> Self:
        return self._raw(dict(self._counts))

    def _encode_state(self) -> Any:
        return dict(self._counts)

    @classmethod
    def _from_state(cls, state: Any) -> Self:
        if not isinstance(state, dict):
            raise ValueError("expected a map of replica -> count")
        return cls._raw(
            {wire_replica(r): wire_count(n, "count", positive=True) for r, n in state.items()}
        )


class PNCounter(CRDT):
    """A counter that goes both ways: a pair of GCounters (increments, decrements);
    ``value`` is their difference and may be negative."""

    TAG = "pncounter"
    __slots__ = ("_n", "_p")

    def __init__(self) -> None:
        self._p = GCounter()
        self._n = GCounter()

    @classmethod
    def _raw(cls, p: GCounter, n: GCounter) -> Self:
        obj = cls.__new__(cls)
        obj._p, obj._n = p, n
        return obj

    def increment(self, replica: str, n: int = 1) -> PNCounter:
        """Add ``n >= 0``; returns the delta."""
        return PNCounter._raw(self._p.increment(replica, n), GCounter())

    def decrement(self, replica: str, n: int = 1) -> PNCounter:
        """Subtract ``n >= 0``; returns the delta."""
        return PNCounter._raw(GCounter(), self._n.increment(replica, n))

    @property
    def value(self) -> int:
        return self._p.value - self._n.value

    def _join_into(self, other: Self) -> None:
        self._p._join_into(other._p)
        self._n._join_into(other._n)

    def _leq(self, other: Self) -> bool:
        return self._p._leq(other._p) and self._n._leq(other._n)

    def _eq_state(self, other: Self) -> bool:
        return self._p._eq_state(other._p) and self._n._eq_state(other._n)

    def copy(self) -> Self:
        return self._raw(self._p.copy(), self._n.copy())

    def _encode_state(self) -> Any:
        return [self._p._encode_state(), self._n._encode_state()]

    @classmethod
    def _from_state(cls, state: Any) -> Self:
        if not (isinstance(state, list) and len(state) == 2):
            raise ValueError("expected [increments, decrements]")
        return cls._raw(GCounter._from_state(state[0]), GCounter._from_state(state[1]))
