"""Causal primitives: dots, vector clocks, hybrid logical clocks.

* :class:`Dot` -- one event: ``(replica, counter)``, counters start at 1.
* :class:`VectorClock` -- a join-semilattice of per-replica counters; ``compare()``
  gives the causal order (BEFORE / AFTER / EQUAL / CONCURRENT). Array-backed: interned
  replica ids (:mod:`~vsm_phoenix.crdt._intern`) and counters in two ``array('q')``,
  joined and compared by the ``vc_*_arrays`` kernels.
* :class:`Timestamp` and :class:`HLC` -- hybrid logical clocks (Kulkarni et al., 2014):
  timestamps close to physical time that never go backwards and respect causality,
  totally ordered by ``(physical_ms, logical, replica)``.

All of it is sans-IO: the HLC never reads a clock; the caller passes wall time in.
"""

from __future__ import annotations

import enum
from array import array
from bisect import bisect_left
from typing import Any, NamedTuple, Self

from vsm_phoenix.crdt import _backend as K
from vsm_phoenix.crdt import _intern
from vsm_phoenix.crdt._base import CRDT
from vsm_phoenix.crdt._domain import check_count, check_replica, wire_count, wire_replica
from vsm_phoenix.crdt._pure import Counts
from vsm_phoenix.errors import InvalidArgument, TypeMismatch

__all__ = ["HLC", "Dot", "Ordering", "Timestamp", "VectorClock"]


class Dot(NamedTuple):
    """The ``counter``-th event of ``replica`` (``counter >= 1``)."""

    replica: str
    counter: int


class Ordering(enum.Enum):
    """Causal order between two clocks, from the left operand's point of view."""

    BEFORE = -1
    EQUAL = 0
    AFTER = 1
    CONCURRENT = 2


_ORDERINGS = {o.value: o for o in Ordering}


class VectorClock(CRDT):
    """Per-replica event counters; the join is the pointwise maximum.

    Representation (array-backed): ``_ids``, the interned ids of the replicas with a
    positive counter (:mod:`~vsm_phoenix.crdt._intern`), strictly ascending, in an
    ``array('q')``; ``_ns``, their counters in the same order, an ``array('q')`` --
    or a ``list`` when some counter does not fit in 64 bits (normal form: a list iff a
    counter exceeds 2**63 - 1). 16 bytes per replica, and the kernels join and compare
    two clocks in one pass over machine integers (in lockstep when both clocks hold the
    same replicas; a small delta by binary search). ``_ids`` is never changed in place,
    so clocks may share it; ``_ns`` belongs to one clock.

    Invariant: only positive counters are stored, so equal clocks have equal state.
    """

    TAG = "vclock"
    __slots__ = ("_ids", "_ns")

    _ids: array[int]
    _ns: Counts

    def __init__(self, counters: dict[str, int] | None = None) -> None:
        items: list[tuple[str, int]] = []
        for r, n in (counters or {}).items():
            check_replica(r)
            check_count(n, "counter")
            if n:
                items.append((r, n))
        self._ids, self._ns = _arrays(items)

    def increment(self, replica: str) -> VectorClock:
        """Count one event at ``replica``; returns the delta ``{replica: n}``."""
        check_replica(replica)
        i = _intern.intern(replica)
        ids = self._ids
        k = bisect_left(ids, i)
        if k < len(ids) and ids[k] == i:
            n = self._ns[k] + 1
            try:
                self._ns[k] = n
            except OverflowError:  # past 2**63 - 1: the counters widen to a list
                wide = list(self._ns)
                wide[k] = n
                self._ns = wide
        else:
            n = 1
            grown = array("q", ids)
            grown.insert(k, i)
            self._ns.insert(k, 1)
            self._ids = grown
        return VectorClock._raw(array("q", (i,)), _counts([n]))

    def get(self, replica: str) -> int:
        """The counter of ``replica`` (0 when absent)."""
        i = _intern.lookup(replica)
        if i < 0:
            return 0
        ids = self._ids
        k = bisect_left(ids, i)
        return self._ns[k] if k < len(ids) and ids[k] == i else 0

    def compare(self, other: VectorClock) -> Ordering:
        """BEFORE if self happened before other, AFTER if after, EQUAL, or CONCURRENT."""
        o = self._same_type(other, "compare")
        return _ORDERINGS[K.vc_compare_arrays(self._ids, self._ns, o._ids, o._ns)]

    def dominates(self, other: VectorClock) -> bool:
        """Strictly after: ``other <= self`` and ``other != self``."""
        return self.compare(other) is Ordering.AFTER

    def concurrent(self, other: VectorClock) -> bool:
        """Neither clock is ``<=`` the other."""
        return self.compare(other) is Ordering.CONCURRENT

    @property
    def value(self) -> dict[str, int]:
        names = _intern.names()
        return {names[i]: n for i, n in zip(self._ids, self._ns, strict=True)}

    def __len__(self) -> int:
        return len(self._ids)

    # -- CRDT plumbing ---------------------------------------------------------------

    @classmethod
    def _raw(cls, ids: array[int], ns: Counts) -> Self:
        obj = cls.__new__(cls)
        obj._ids = ids
        obj._ns = ns
        return obj

    def _join_into(self, other: Self) -> None:
        self._ids, self._ns = K.vc_join_arrays(self._ids, self._ns, other._ids, other._ns)

    def _leq(self, other: Self) -> bool:
        return bool(K.vc_leq_arrays(self._ids, self._ns, other._ids, other._ns))

    def _eq_state(self, other: Self) -> bool:
        return self._ids == other._ids and self._ns == other._ns

    def copy(self) -> Self:
        return self._raw(self._ids, self._ns[:])

    def __deepcopy__(self, memo: dict[int, Any]) -> Self:
        return self.copy()

    def __reduce__(self) -> tuple[Any, ...]:
        # By replica name: interned ids mean nothing in another process.
        return (type(self), (self.value,))

    def _encode_state(self) -> Any:
        return self.value

    @classmethod
    def _from_state(cls, state: Any) -> Self:
        if not isinstance(state, dict):
            raise ValueError("expected a map")
        items = [
            (wire_replica(r), wire_count(n, "counter", positive=True)) for r, n in state.items()
        ]
        return cls._raw(*_arrays(items))


def _counts(values: list[int]) -> Counts:
    """Counters in normal form: an ``array('q')`` when every one fits in 64 bits."""
    try:
        return array("q", values)
    except OverflowError:
        return values


def _arrays(items: list[tuple[str, int]]) -> tuple[array[int], Counts]:
    """The ``(ids, ns)`` of validated ``(replica, positive counter)`` pairs (distinct
    replicas); interns the replicas."""
    ids = _intern.intern_many([r for r, _ in items])
    order = sorted(range(len(items)), key=ids.__getitem__)
    return array("q", [ids[k] for k in order]), _counts([items[k][1] for k in order])


class Timestamp(NamedTuple):
    """An HLC reading. Tuple order is the total order: physical time, then the logical
    counter, then the replica id (the deterministic tie-break between replicas)."""

    physical_ms: int
    logical: int
    replica: str

    @classmethod
    def check(cls, ts: object) -> Timestamp:
        """Validate an argument claimed to be a timestamp."""
        if not isinstance(ts, Timestamp):
            raise TypeMismatch(f"expected Timestamp, got {type(ts).__name__}")
        check_count(ts.physical_ms, "physical_ms")
        check_count(ts.logical, "logical")
        check_replica(ts.replica)
        return ts

    def to_wire(self) -> list[Any]:
        return [self.physical_ms, self.logical, self.replica]

    @classmethod
    def from_wire(cls, x: Any) -> Timestamp:
        if not (isinstance(x, list) and len(x) == 3):
            raise ValueError("timestamp must be [physical_ms, logical, replica]")
        return cls(wire_count(x[0], "physical_ms"), wire_count(x[1], "logical"), wire_replica(x[2]))


_new_tuple = tuple.__new__
#: Wall-clock readings up to this pass ``check_count`` without being looked at again.
_WALL_MS_SURELY_VALID = 2**63 - 1


class HLC:
    """A hybrid logical clock for one replica (sans-IO: the caller supplies wall time).

    ``now(wall_ms)`` stamps a local or send event; ``update(remote, wall_ms)`` stamps
    a receive event. Readings strictly increase and are ``>=`` every timestamp
    received. ``max_drift_ms`` bounds how far a remote timestamp may run ahead of
    local wall time: a timestamp further ahead raises ``ValueError`` and leaves the
    clock unchanged (so one bad peer cannot drag everyone's clock into the future).
    """

    __slots__ = ("_c", "_l", "max_drift_ms", "replica")

    def __init__(self, replica: str, max_drift_ms: int = 60_000) -> None:
        self.replica = check_replica(replica)
        self.max_drift_ms = check_count(max_drift_ms, "max_drift_ms")
        self._l = 0
        self._c = 0

    @property
    def last(self) -> Timestamp:
        """The latest reading handed out (``(0, 0, replica)`` before the first)."""
        return Timestamp(self._l, self._c, self.replica)

    def now(self, wall_ms: int) -> Timestamp:
        """A timestamp for a local event at wall time ``wall_ms``."""
        if type(wall_ms) is not int or not 0 <= wall_ms <= _WALL_MS_SURELY_VALID:
            check_count(wall_ms, "wall_ms")
        if wall_ms > self._l:
            self._l, self._c = wall_ms, 0
        else:
            self._c += 1
        # (what Timestamp(...) makes, without the named tuple's Python-level __new__:
        # every message a node sends is stamped here)
        return _new_tuple(Timestamp, (self._l, self._c, self.replica))

    def update(self, remote: Timestamp, wall_ms: int) -> Timestamp:
        """A timestamp for receiving ``remote`` at wall time ``wall_ms``."""
        Timestamp.check(remote)
        check_count(wall_ms, "wall_ms")
        if remote.physical_ms > wall_ms + self.max_drift_ms:
            raise InvalidArgument(
                f"remote clock {remote.physical_ms} ms is more than {self.max_drift_ms} ms "
                f"ahead of local wall time {wall_ms} ms"
            )
        l_new = max(self._l, remote.physical_ms, wall_ms)
        if l_new == self._l and l_new == remote.physical_ms:
            c_new = max(self._c, remote.logical) + 1
        elif l_new == self._l:
            c_new = self._c + 1
        elif l_new == remote.physical_ms:
            c_new = remote.logical + 1
        else:
            c_new = 0
        self._l, self._c = l_new, c_new
        return self.last

    def __repr__(self) -> str:
        return f"HLC({self.replica!r}, last={self.last})"
