"""Causal contexts: the set of dots a replica has seen, kept compact.

A :class:`CausalContext` is a set of :class:`~vsm_phoenix.crdt.clocks.Dot` stored as a
version vector (every dot ``(r, 1..vv[r])``) plus a *dot cloud* of the dots that are not
contiguous with it. It is always kept compact -- no cloud dot is covered by or adjacent
to the vector -- so equal sets have equal state and equal bytes. It is a lattice (the
join is set union) and the causal half of every dotted CRDT (ORSet, ORMap, MVRegister).

The pair ``(vv, cloud)`` -- a ``dict`` of replica id to counter and a ``set`` of
``(replica, counter)`` tuples -- is also what the dot-store kernels read, so it stays in
that form. ``ctx_add`` and ``ctx_join_into`` touch only what the added dot or the other
context names (plus the cloud dots a grown vector entry newly covers); the native twins
run the same steps as C loops, which saves the interpreter's share: about 1.5-3.5x on
delta-sized joins, little on joins that probe or scan a large cloud, where the time is
the set's own hashing and memory traffic.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Iterator
from typing import Any, Self

from vsm_phoenix.crdt import _backend as K
from vsm_phoenix.crdt._base import CRDT
from vsm_phoenix.crdt._domain import check_count, check_replica, wire_count, wire_replica
from vsm_phoenix.crdt.clocks import Dot, VectorClock
from vsm_phoenix.errors import InvalidArgument, TypeMismatch

__all__ = ["CausalContext"]


class CausalContext(CRDT):
    """A compact set of dots: version vector + dot cloud."""

    TAG = "cctx"
    __slots__ = ("_top", "cloud", "vv")

    vv: dict[str, int]
    cloud: set[tuple[str, int]]
    #: Per replica, the greatest counter ever held in the cloud (a cache: the context
    #: only grows, so ``max(vv[r], _top[r])`` is the greatest counter of ``r`` without
    #: a pass over the cloud). Not part of the state.
    _top: dict[str, int]

    def __init__(self, dots: Iterable[Dot | tuple[str, int]] = ()) -> None:
        cloud: set[tuple[str, int]] = set()
        for d in dots:
            cloud.add(_check_dot(d))
        self.vv = {}
        self.cloud = cloud
        self._top = _tops(cloud)
        K.ctx_compact(self.vv, self.cloud)

    @classmethod
    def _raw(cls, vv: dict[str, int], cloud: set[tuple[str, int]]) -> Self:
        obj = cls.__new__(cls)
        obj.vv = vv
        obj.cloud = cloud
        obj._top = _tops(cloud)
        return obj

    @classmethod
    def _of_dots(cls, dots: set[tuple[str, int]]) -> Self:
        """The compact context of already-validated dots (takes ownership of ``dots``)."""
        obj = cls._raw({}, dots)
        K.ctx_compact(obj.vv, obj.cloud)
        return obj

    @classmethod
    def from_vector(cls, clock: VectorClock) -> CausalContext:
        """The context holding every dot ``(r, 1..clock[r])``."""
        if not isinstance(clock, VectorClock):
            raise TypeMismatch(f"expected VectorClock, got {type(clock).__name__}")
        return cls._raw(clock.value, set())

    def contains(self, dot: Dot | tuple[str, int]) -> bool:
        """Whether ``dot`` has been seen."""
        r, c = _check_dot(dot)
        return bool(K.ctx_contains(self.vv, self.cloud, r, c))

    def __contains__(self, dot: object) -> bool:
        """``dot in ctx``: False for anything that is not a valid dot."""
        try:
            return self.contains(dot)  # type: ignore[arg-type]
        except (TypeError, ValueError):
            return False

    def max_counter(self, replica: str) -> int:
        """The highest counter of ``replica`` in the context (0 if none)."""
        check_replica(replica)
        return max(self.vv.get(replica, 0), self._top.get(replica, 0))

    def next_dot(self, replica: str) -> Dot:
        """The next fresh dot of ``replica`` (not yet in the context; not added)."""
        return Dot(replica, self.max_counter(replica) + 1)

    def add(self, dot: Dot | tuple[str, int]) -> None:
        """Insert one dot, keeping the context compact: O(1) plus the cloud dots it
        folds into the vector, whatever the size of the cloud."""
        r, c = _check_dot(dot)
        self._add(r, c)

    def _add(self, r: str, c: int) -> None:
        """:meth:`add` of an already-validated dot."""
        if c > self._top.get(r, 0):
            self._top[r] = c
        K.ctx_add(self.vv, self.cloud, r, c)

    def compact(self) -> None:
        """Restore compactness (every public operation already does this)."""
        K.ctx_compact(self.vv, self.cloud)

    def dots(self) -> Iterator[Dot]:
        """Every dot in the context (expands the version vector: may be large)."""
        for r, n in sorted(self.vv.items()):
            for c in range(1, n + 1):
                yield Dot(r, c)
        for r, c in sorted(self.cloud):
            yield Dot(r, c)

    @property
    def value(self) -> tuple[dict[str, int], frozenset[Dot]]:
        """The compact form: ``(version vector, dot cloud)``."""
        return dict(self.vv), frozenset(Dot(r, c) for r, c in self.cloud)

    @property
    def size(self) -> int:
        """The number of dots, exactly (``len()`` cannot go past ``sys.maxsize``)."""
        return sum(self.vv.values()) + len(self.cloud)

    def __len__(self) -> int:
        """The number of dots; ``OverflowError`` past ``sys.maxsize`` (use :attr:`size`)."""
        n = self.size
        if n > sys.maxsize:
            raise OverflowError(f"the context holds {n} dots, more than len(); use .size")
        return n

    # -- CRDT plumbing ---------------------------------------------------------------

    def _join_into(self, other: Self) -> None:
        top = self._top
        for r, c in other._top.items():
            if c > top.get(r, 0):
                top[r] = c
        K.ctx_join_into(self.vv, self.cloud, other.vv, other.cloud)

    def _leq(self, other: Self) -> bool:
        return bool(K.ctx_leq(self.vv, self.cloud, other.vv, other.cloud))

    def _eq_state(self, other: Self) -> bool:
        return self.vv == other.vv and self.cloud == other.cloud

    def copy(self) -> Self:
        obj = self.__class__.__new__(self.__class__)
        obj.vv, obj.cloud, obj._top = dict(self.vv), set(self.cloud), dict(self._top)
        return obj

    def _encode_state(self) -> Any:
        return [dict(self.vv), [[r, c] for r, c in sorted(self.cloud)]]

    @classmethod
    def _from_state(cls, state: Any) -> Self:
        if not (isinstance(state, list) and len(state) == 2):
            raise ValueError("expected [vv, cloud]")
        vv_raw, cloud_raw = state
        if not isinstance(vv_raw, dict) or not isinstance(cloud_raw, list):
            raise ValueError("expected [map, array]")
        vv = {wire_replica(r): wire_count(n, "counter", positive=True) for r, n in vv_raw.items()}
        cloud: set[tuple[str, int]] = set()
        for item in cloud_raw:
            if not (isinstance(item, list) and len(item) == 2):
                raise ValueError("a dot is [replica, counter]")
            cloud.add((wire_replica(item[0]), wire_count(item[1], "counter", positive=True)))
        # Non-compact layouts are refused by the canonical-layout check in CRDT.
        obj = cls._raw(vv, cloud)
        obj.compact()
        return obj


def _check_dot(d: object) -> tuple[str, int]:
    if not (isinstance(d, tuple) and len(d) == 2):
        raise TypeMismatch(f"a dot is (replica, counter), got {d!r}")
    r, c = d
    check_replica(r)
    check_count(c, "dot counter")
    if c == 0:
        raise InvalidArgument("dot counters start at 1")
    return (r, c)


def _tops(cloud: set[tuple[str, int]]) -> dict[str, int]:
    """Per replica, the greatest counter in ``cloud``."""
    top: dict[str, int] = {}
    for r, c in cloud:
        if c > top.get(r, 0):
            top[r] = c
    return top
