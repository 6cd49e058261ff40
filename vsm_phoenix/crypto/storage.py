"""The persistence interface of the crypto layer: the project-wide :mod:`vsm_phoenix.storage`.

Whatever must survive a restart -- nonce usage counters, per-sender sequence numbers,
replay-window high-water marks -- is written through a
:class:`~vsm_phoenix.storage.Storage` (a thread-safe durable ``str -> bytes`` map). The
crypto layer only ever calls ``get`` and ``put``; this module re-exports the project's
implementations (:class:`MemoryStorage`, :class:`SQLiteStorage`) so ``vsm_phoenix.crypto``
users need one import.

:func:`atomic` is how crypto code writes: when the storage offers ``transaction()`` it
wraps the read-check-write in one, *taken before* any crypto-internal lock. That order
(storage first, then ours) is the order of a caller that opens a message inside its own
transaction, so the two can never deadlock, and a caller's rollback undoes our write
together with its own.
"""

from __future__ import annotations

import contextlib
from typing import Any

from vsm_phoenix.storage import MemoryStorage, SQLiteStorage, Storage, TransactionalStorage

__all__ = ["MemoryStorage", "SQLiteStorage", "Storage", "TransactionalStorage", "atomic"]


def atomic(storage: Any) -> contextlib.AbstractContextManager[None]:
    """``storage.transaction()`` when the storage has one, else a no-op context."""
    transaction = getattr(storage, "transaction", None)
    if callable(transaction):
        cm: contextlib.AbstractContextManager[None] = transaction()
        return cm
    return contextlib.nullcontext()
