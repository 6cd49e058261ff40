"""Packed dots: the representation of a dot store's dots, shared by both backends.

A dot ``(replica, counter)`` inside a dot store (ORSet, ORMap presence) is one ``int``::

    packed = counter << RID_BITS | replica_id(replica)

where ``replica_id`` is the replica's index in :data:`REPLICAS`, a per-process table of
every replica id a dot store has held (interned on first use, never reused, never
removed). A packed dot costs one 32-byte ``int`` (counters below 2**28) instead of a
2-tuple and a counter ``int`` (84 bytes), hashes and compares as a machine word, and
counters stay unbounded (they sit in the high bits).

A *dot store* maps each key to its dots in *normal form*: the bare packed ``int`` when
the key has one dot (the common case), else a ``tuple`` of two or more packed dots in
ascending order. Both forms are immutable, so copying a store is copying the dict, and
equal stores (of one process) are equal dicts. Packed values never leave the process:
encoding writes ``[replica, counter]`` pairs in canonical order, and an ORSet pickles
and deep-copies through its canonical bytes.

The table only grows: its size is the number of distinct replica ids this process has
seen in dot stores (including ids in decoded input, valid or not -- a decoder interns
an id as it meets it). Replica ids are few in practice; a process that decodes
unauthenticated input from many sources should bound the input it accepts first.
"""

from __future__ import annotations

import threading
from collections.abc import Hashable, Iterable, Mapping
from typing import TypeVar

K = TypeVar("K", bound=Hashable)

#: Low bits of a packed dot holding the replica's index in :data:`REPLICAS`.
RID_BITS = 32
RID_MASK = (1 << RID_BITS) - 1

#: Replica ids by index (append-only; the native kernels read it directly).
REPLICAS: list[str] = []
_IDS: dict[str, int] = {}
_LOCK = threading.Lock()

#: What a dot store holds under a key: one packed dot, or a sorted tuple of two or more.
Dots = int | tuple[int, ...]


def replica_id(replica: str) -> int:
    """The index of ``replica`` in :data:`REPLICAS`, interning it on first use."""
    i = _IDS.get(replica)
    if i is None:
        with _LOCK:  # two threads interning one id must agree on its index
            i = _IDS.get(replica)
            if i is None:
                i = len(REPLICAS)
                if i > RID_MASK:
                    raise MemoryError(f"more than {RID_MASK + 1} replica ids in one process")
                REPLICAS.append(replica)
                _IDS[replica] = i
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
