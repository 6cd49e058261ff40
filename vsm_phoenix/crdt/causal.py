"""Causal contexts: the set of dots a replica has seen, kept compact.

A :class:`CausalContext` is a set of :class:`~vsm_phoenix.crdt.clocks.Dot` stored as a
version vector (every dot ``(r, 1..vv[r])``) plus a *dot cloud* of the dots that are not
contiguous with it. It is always kept compact -- no cloud dot is covered by or adjacent
to the vector -- so equal sets have equal state and equal bytes. It is a lattice (the
join is set union) and the causal half of every dotted CRDT (ORSet, ORMap, MVRegister).

Representation (what the kernels of :mod:`vsm_phoenix.crdt._pure` read): ``vv`` is a
``dict`` of replica id to counter, and ``cloud`` a ``dict`` of replica id to that
replica's cloud counters as a strictly ascending ``array('q')`` (a ``list`` only once a
counter passes 2**63 - 1) -- 8 bytes per cloud dot, not a tuple and an ``int`` in a
``set``. Membership is a binary search; ``add`` is a binary search and an insertion, or
a fold of the run it completes (the folded prefix leaves the array); a join touches
only the replicas the other context names, merging a small cloud entry by binary-search
insertions (O(k log n) for k dots into n) and a large one by a sorted union (a C merge
on the native backend). Folding is incremental: a vector entry that grows drops the
prefix of the cloud it now covers and absorbs the run that continues it.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Iterator
from typing import Any, Self

from vsm_phoenix.crdt import _backend as K
from vsm_phoenix.crdt._base import CRDT
from vsm_phoenix.crdt._domain import check_count, check_replica, wire_count, wire_replica
from vsm_phoenix.crdt._dots import Cloud, cloud_dots, cloud_of
from vsm_phoenix.crdt.clocks import Dot, VectorClock
from vsm_phoenix.errors import InvalidArgument, SizeOverflow, TypeMismatch

__all__ = ["CausalContext"]


class CausalContext(CRDT):
    """A compact set of dots: version vector + dot cloud."""

    TAG = "cctx"
    __slots__ = ("cloud", "vv")

    vv: dict[str, int]
    cloud: Cloud

    def __init__(self, dots: Iterable[Dot | tuple[str, int]] = ()) -> None:
        self.vv = {}
        self.cloud = cloud_of(_check_dot(d) for d in dots)
        K.ctx_compact(self.vv, self.cloud)

    @classmethod
    def _raw(cls, vv: dict[str, int], cloud: Cloud) -> Self:
        obj = cls.__new__(cls)
        obj.vv = vv
        obj.cloud = cloud
        return obj

    @classmethod
    def _of_dots(cls, dots: Iterable[tuple[str, int]]) -> Self:
        """The compact context of already-validated dots."""
        obj = cls._raw({}, cloud_of(dots))
        K.ctx_compact(obj.vv, obj.cloud)
        return obj

    @classmethod
    def from_vector(cls, clock: VectorClock) -> CausalContext:
        """The context holding every dot ``(r, 1..clock[r])``."""
        if not isinstance(clock, VectorClock):
            raise TypeMismatch(f"expected VectorClock, got {type(clock).__name__}")
        return cls._raw(clock.value, {})

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
        cs = self.cloud.get(replica)
        if cs is not None:
            return cs[-1]  # compact: the cloud lies above the vector
        return self.vv.get(replica, 0)

    def next_dot(self, replica: str) -> Dot:
        """The next fresh dot of ``replica`` (not yet in the context; not added)."""
        return Dot(replica, self.max_counter(replica) + 1)

    def add(self, dot: Dot | tuple[str, int]) -> None:
        """Insert one dot, keeping the context compact: a binary search and an
        insertion into that replica's cloud, or a fold of the run it completes."""
        r, c = _check_dot(dot)
        K.ctx_add(self.vv, self.cloud, r, c)

    def _add(self, r: str, c: int) -> None:
        """:meth:`add` of an already-validated dot."""
        K.ctx_add(self.vv, self.cloud, r, c)

    def compact(self) -> None:
        """Restore compactness (every public operation already does this)."""
        K.ctx_compact(self.vv, self.cloud)

    def dots(self) -> Iterator[Dot]:
        """Every dot in the context (expands the version vector: may be large)."""
        for r, n in sorted(self.vv.items()):
            for c in range(1, n + 1):
                yield Dot(r, c)
        for r in sorted(self.cloud):
            for c in self.cloud[r]:
                yield Dot(r, c)

    @property
    def value(self) -> tuple[dict[str, int], frozenset[Dot]]:
        """The compact form: ``(version vector, dot cloud)``."""
        return dict(self.vv), frozenset(Dot(r, c) for r, c in cloud_dots(self.cloud))

    @property
    def cloud_size(self) -> int:
        """How many dots the cloud holds (the dots outside the version vector)."""
        return sum(len(cs) for cs in self.cloud.values())

    @property
    def size(self) -> int:
        """The number of dots, exactly (``len()`` cannot go past ``sys.maxsize``)."""
        return sum(self.vv.values()) + self.cloud_size

    def __len__(self) -> int:
        """The number of dots; :class:`~vsm_phoenix.errors.SizeOverflow` (an
        ``OverflowError``) past ``sys.maxsize``, where :attr:`size` is exact."""
        n = self.size
        if n > sys.maxsize:
            raise SizeOverflow(f"the context holds {n} dots, more than len(); use .size")
        return n

    # -- CRDT plumbing ---------------------------------------------------------------

    def _join_into(self, other: Self) -> None:
        K.ctx_join_into(self.vv, self.cloud, other.vv, other.cloud)

    def _leq(self, other: Self) -> bool:
        return bool(K.ctx_leq(self.vv, self.cloud, other.vv, other.cloud))

    def _eq_state(self, other: Self) -> bool:
        return self.vv == other.vv and self.cloud == other.cloud

    def copy(self) -> Self:
        return self._raw(dict(self.vv), {r: cs[:] for r, cs in self.cloud.items()})

    def _encode_state(self) -> Any:
        cloud = self.cloud
        return [dict(self.vv), [[r, c] for r in sorted(cloud) for c in cloud[r]]]

    @classmethod
    def _from_state(cls, state: Any) -> Self:
        if not (isinstance(state, list) and len(state) == 2):
            raise ValueError("expected [vv, cloud]")
        vv_raw, cloud_raw = state
        if not isinstance(vv_raw, dict) or not isinstance(cloud_raw, list):
            raise ValueError("expected [map, array]")
        vv = {wire_replica(r): wire_count(n, "counter", positive=True) for r, n in vv_raw.items()}
        dots: list[tuple[str, int]] = []
        for item in cloud_raw:
            if not (isinstance(item, list) and len(item) == 2):
                raise ValueError("a dot is [replica, counter]")
            dots.append((wire_replica(item[0]), wire_count(item[1], "counter", positive=True)))
        # Duplicate, unsorted or non-compact layouts re-encode differently and are
        # refused by the canonical-layout check in CRDT.
        obj = cls._raw(vv, cloud_of(dots))
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
