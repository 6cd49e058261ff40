"""Packed dots: the representation of a dot store's dots, shared by both backends.

A dot ``(replica, counter)`` inside a dot store (ORSet, ORMap presence) is one ``int``::

    packed = counter << RID_BITS | replica_id(replica)

where ``replica_id`` is the replica's id in the per-process replica table
(:mod:`vsm_phoenix.crdt._intern`, shared with the array clocks: interned on first use,
never reused, never removed; :data:`REPLICAS` is that table). A packed dot costs one
32-byte ``int`` (counters below 2**28) instead of a 2-tuple and a counter ``int`` (84
bytes), hashes and compares as a machine word, and counters stay unbounded (they sit in
the high bits).

A *dot store* maps each key to its dots in *normal form*: the bare packed ``int`` when
the key has one dot (the common case), else a ``tuple`` of two or more packed dots in
ascending order. Both forms are immutable, so copying a store is copying the dict, and
equal stores (of one process) are equal dicts. Packed values never leave the process:
encoding writes ``[replica, counter]`` pairs in canonical order, and an ORSet pickles
and deep-copies through its canonical bytes.

The table only grows, by one entry per distinct replica id this process has put in a
state. Decoders validate a whole input before they intern any of it (the native
byte reader gives provisional ids to new replicas and interns them only once the
input has proved valid), so a refused input leaves the table as it was.
"""

from __future__ import annotations

from array import array
from collections.abc import Hashable, Iterable, Mapping
from typing import TypeAlias, TypeVar

from vsm_phoenix.crdt import _intern

K = TypeVar("K", bound=Hashable)

#: Low bits of a packed dot holding the replica's index in :data:`REPLICAS`.
RID_BITS = 32
RID_MASK = (1 << RID_BITS) - 1

#: Replica ids by index: the process's replica table itself (append-only; the native
#: kernels read it directly).
REPLICAS: list[str] = _intern.names()

#: What a dot store holds under a key: one packed dot, or a sorted tuple of two or more.
Dots = int | tuple[int, ...]


def replica_id(replica: str) -> int:
    """The id of ``replica`` (validated) in the replica table, interning it on first use."""
    i = _intern.intern(replica)
    if i > RID_MASK:
        raise MemoryError(f"more than {RID_MASK + 1} replica ids in one process")
    return i


def pack(replica: str, counter: int) -> int:
    """The packed form of the dot ``(replica, counter)``."""
    return counter << RID_BITS | replica_id(replica)


def unpack(dot: int) -> tuple[str, int]:
    """The ``(replica, counter)`` of a packed dot."""
    return REPLICAS[dot & RID_MASK], dot >> RID_BITS


def normal(dots: Iterable[int]) -> Dots | None:
    """Packed dots in normal form: None when there are none, the bare dot when there is
    one, else the ascending tuple (duplicates dropped)."""
    kept = sorted(set(dots))
    if not kept:
        return None
    if len(kept) == 1:
        return kept[0]
    return tuple(kept)


def dots_of(value: Dots) -> tuple[int, ...]:
    """The packed dots of a store value, as a tuple."""
    return (value,) if type(value) is int else value  # type: ignore[return-value]


def store_of(entries: Mapping[K, Iterable[tuple[str, int]]]) -> dict[K, Dots]:
    """A dot store in normal form from ``{key: [(replica, counter), ...]}`` (keys with no
    dot are left out). For tests, tools and models."""
    out: dict[K, Dots] = {}
    for key, dots in entries.items():
        v = normal(pack(r, c) for r, c in dots)
        if v is not None:
            out[key] = v
    return out


def sets_of(store: Mapping[K, Dots]) -> dict[K, set[tuple[str, int]]]:
    """``{key: {(replica, counter), ...}}`` of a dot store (the inverse of
    :func:`store_of`)."""
    return {key: {unpack(d) for d in dots_of(v)} for key, v in store.items()}


# -- dot clouds ----------------------------------------------------------------------
#
# The cloud of a causal context (:mod:`vsm_phoenix.crdt.causal`) maps each replica id
# to its cloud counters: a strictly ascending ``array('q')``, or a ``list`` when the
# greatest of them does not fit in 64 bits (the normal form). No entry is empty.

#: The greatest counter an ``array('q')`` holds.
QMAX = 2**63 - 1

#: One replica's cloud counters, strictly ascending.
Counters: TypeAlias = "array[int] | list[int]"
#: A dot cloud: replica id → its cloud counters.
Cloud: TypeAlias = "dict[str, array[int] | list[int]]"


def counters(ascending: list[int]) -> Counters:
    """The normal form of a cloud entry from strictly ascending counters."""
    if ascending and ascending[-1] > QMAX:
        return ascending
    return array("q", ascending)


def cloud_of(dots: Iterable[tuple[str, int]]) -> Cloud:
    """The cloud (replica → ascending counters) of ``(replica, counter)`` dots
    (duplicates dropped; not compacted against any vector)."""
    by_replica: dict[str, set[int]] = {}
    for r, c in dots:
        cs = by_replica.get(r)
        if cs is None:
            cs = by_replica[r] = set()
        cs.add(c)
    return {r: counters(sorted(cs)) for r, cs in by_replica.items()}


def cloud_dots(cloud: Cloud) -> set[tuple[str, int]]:
    """The ``(replica, counter)`` dots of a cloud (the inverse of :func:`cloud_of`)."""
    return {(r, c) for r, cs in cloud.items() for c in cs}
