"""The per-process replica id table: each replica id (a ``str``) gets a small ``int``.

Array-backed clocks (:class:`~vsm_phoenix.crdt.clocks.VectorClock`) store interned ids,
so their kernels compare and merge machine integers instead of hashing strings.

Invariants:

* an id, once given, names the same replica for the life of the process (ids are
  dense: ``0, 1, 2, ...`` in first-seen order) -- arrays built at any time stay valid;
* ids never leave the process: the wire and storage forms carry replica names, so the
  canonical bytes do not depend on the order in which a process met its replicas;
* the table only grows, by one entry (the id string, a dict slot and a list slot, about
  100 bytes beyond the string itself) per distinct replica id this process has put in
  a clock. Reads (:func:`lookup`) never add an entry; callers validate a whole input
  before they intern any of it, so a refused input leaves the table as it was.

Thread-safe: the table only grows, under a lock; reads need none.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable

__all__ = ["intern", "intern_many", "lookup", "name", "names", "size"]

_ids: dict[str, int] = {}
_names: list[str] = []
_lock = threading.Lock()


def intern(replica: str) -> int:
    """The id of ``replica`` (a validated replica id), given a new one if it has none.

    The table keeps an exact ``str``: a ``str`` subclass is copied first, so no
    caller's ``__eq__``/``__hash__``/``__str__`` ever lives in the process-wide table.
    """
    if type(replica) is not str:
        replica = str.__str__(replica)
    i = _ids.get(replica)
    if i is None:
        with _lock:
            i = _ids.get(replica)
            if i is None:
                i = len(_names)
                _names.append(replica)
                _ids[replica] = i
    return i


def intern_many(replicas: Iterable[str]) -> list[int]:
    """:func:`intern` of each of ``replicas``, in order."""
    get = _ids.get
    return [
        i if type(r) is str and (i := get(r)) is not None else intern(r) for r in replicas
    ]


def lookup(replica: object) -> int:
    """The id of ``replica``, or ``-1`` when it is not an interned replica id (adds
    nothing; ``TypeError`` only for an unhashable argument)."""
    if type(replica) is not str:
        if not isinstance(replica, str):
            hash(replica)  # unhashable: TypeError, as a dict lookup would raise
            return -1
        replica = str.__str__(replica)
    return _ids.get(replica, -1)


def name(i: int) -> str:
    """The replica id interned as ``i``."""
    return _names[i]


def names() -> list[str]:
    """The table itself, indexed by id (read it, never change it)."""
    return _names


def size() -> int:
    """How many replica ids this process has interned."""
    return len(_names)
