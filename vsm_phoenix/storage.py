"""The project-wide durable store: a small ``str -> bytes`` map that survives restarts.

Whatever must survive a crash -- Raft term/vote/log, CRDT snapshots, replay high-water
marks, sequence counters -- goes through :class:`Storage` (ARCHITECTURE.md, principle 6). It
is the interface of :mod:`vsm_phoenix.crypto.storage` (same class names, same ``get`` /
``put`` semantics) extended with ``delete`` and ``items``, so the crypto module can
become a re-export of this one. Two implementations ship:

* :class:`MemoryStorage` -- a dict behind a lock. The simulator keeps one per node and
  hands the *same* object to the node's new incarnation after a simulated crash.
* :class:`SQLiteStorage` -- stdlib :mod:`sqlite3` in WAL mode, one ``kv`` table. Every
  ``put``/``delete`` outside a transaction is committed before it returns.

Both also offer :meth:`~SQLiteStorage.transaction`: a context manager that makes every
write inside it one atomic, durable commit (all or nothing after a crash). The AMQP
runner wraps "authenticate a message, step the node, write its ``Persist`` effects" in
one transaction, so a crash never leaves a message recorded as seen while the state it
produced is lost -- and it pays for one commit instead of several.

Invariants: a write that returned (outside a transaction) or a transaction that exited
normally is visible to every later ``get`` on the same storage, from any thread and, for
SQLite, from any later process. A transaction that exits with an exception leaves the
store as it was before it began (SQLite rolls back; memory restores its snapshot).
"""

from __future__ import annotations

import contextlib
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType
from typing import Protocol, runtime_checkable

from vsm_phoenix.errors import InvalidArgument, TypeMismatch

__all__ = ["MemoryStorage", "SQLiteStorage", "Storage", "TransactionalStorage"]


@runtime_checkable
class Storage(Protocol):
    """A durable map ``str -> bytes``. Implementations must be safe to call from
    several threads."""

    def get(self, key: str) -> bytes | None:
        """The value last put under ``key``, or ``None``."""
        ...

    def put(self, key: str, value: bytes) -> None:
        """Store ``value`` under ``key``; durable once this returns."""
        ...

    def delete(self, key: str) -> None:
        """Remove ``key`` (no-op when absent); durable once this returns."""
        ...

    def items(self, prefix: str = "") -> list[tuple[str, bytes]]:
        """Every ``(key, value)`` whose key starts with ``prefix``, sorted by key."""
        ...


@runtime_checkable
class TransactionalStorage(Storage, Protocol):
    """A :class:`Storage` that can group writes into one atomic commit."""

    def transaction(self) -> contextlib.AbstractContextManager[None]:
        """Writes inside the ``with`` block commit together when it exits normally and
        are discarded when it raises. Transactions nest (the outermost one commits)."""
        ...


def _check(key: str, value: bytes | None = None) -> None:
    if not isinstance(key, str):
        raise TypeMismatch(f"storage key must be str, not {type(key).__name__}")
    if value is not None and not isinstance(value, bytes):
        raise TypeMismatch(f"storage value must be bytes, not {type(value).__name__}")


def _check_prefix(prefix: str) -> None:
    if not isinstance(prefix, str):
        raise TypeMismatch(f"prefix must be str, not {type(prefix).__name__}")


class MemoryStorage:
    """In-memory :class:`Storage`; survives simulated crashes by being reused."""

    __slots__ = ("_data", "_depth", "_lock", "_snapshot")

    def __init__(self) -> None:
        self._data: dict[str, bytes] = {}
        self._lock = threading.RLock()
        self._depth = 0
        self._snapshot: dict[str, bytes] | None = None

    def get(self, key: str) -> bytes | None:
        _check(key)
        with self._lock:
            return self._data.get(key)

    def put(self, key: str, value: bytes) -> None:
        _check(key, value)
        with self._lock:
            self._data[key] = value

    def delete(self, key: str) -> None:
        _check(key)
        with self._lock:
            self._data.pop(key, None)

    def items(self, prefix: str = "") -> list[tuple[str, bytes]]:
        _check_prefix(prefix)
        with self._lock:
            return sorted((k, v) for k, v in self._data.items() if k.startswith(prefix))

    def keys(self) -> list[str]:
        """Every key present, sorted (for tests and debugging)."""
        with self._lock:
            return sorted(self._data)

    def __len__(self) -> int:
        with self._lock:
            return len(self._data)

    @contextlib.contextmanager
    def transaction(self) -> Iterator[None]:
        """All-or-nothing group of writes (restores a snapshot on error)."""
        with self._lock:
            if self._depth == 0:
                self._snapshot = dict(self._data)
            self._depth += 1
            try:
                yield
            except BaseException:
                if self._depth == 1 and self._snapshot is not None:
                    self._data = self._snapshot
                raise
            finally:
                self._depth -= 1
                if self._depth == 0:
                    self._snapshot = None


class SQLiteStorage:
    """:class:`Storage` in one SQLite file (WAL mode, one ``kv`` table).

    ``synchronous`` is SQLite's pragma: ``"FULL"`` (default) survives power loss,
    ``"NORMAL"`` survives process crashes only and is faster (in WAL mode a commit
    then writes the log without waiting for the disk). One connection is shared by all
    threads behind a lock; a transaction holds that lock until it ends, so other
    threads wait rather than interleave their writes into it.
    """

    __slots__ = ("_conn", "_depth", "_lock", "path")

    def __init__(self, path: str | Path, *, synchronous: str = "FULL") -> None:
        if synchronous not in ("FULL", "NORMAL", "EXTRA"):
            raise InvalidArgument(f"synchronous must be FULL, NORMAL or EXTRA: {synchronous!r}")
        self.path = str(path)
        self._lock = threading.RLock()
        self._depth = 0
        self._conn = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        try:
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute(f"PRAGMA synchronous={synchronous}")
            self._conn.execute(
                "CREATE TABLE IF NOT EXISTS kv (key TEXT PRIMARY KEY, value BLOB NOT NULL)"
            )
        except BaseException:
            self._conn.close()
            raise

    def get(self, key: str) -> bytes | None:
        _check(key)
        with self._lock:
            row = self._conn.execute("SELECT value FROM kv WHERE key = ?", (key,)).fetchone()
        return None if row is None else bytes(row[0])

    def put(self, key: str, value: bytes) -> None:
        _check(key, value)
        with self._lock:
            self._conn.execute(
                "INSERT INTO kv (key, value) VALUES (?, ?) "
                "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                (key, value),
            )

    def delete(self, key: str) -> None:
        _check(key)
        with self._lock:
            self._conn.execute("DELETE FROM kv WHERE key = ?", (key,))

    def items(self, prefix: str = "") -> list[tuple[str, bytes]]:
        _check_prefix(prefix)
        with self._lock:
            if prefix:
                # Range scan on the primary key: [prefix, prefix + U+10FFFF).
                rows = self._conn.execute(
                    "SELECT key, value FROM kv WHERE key >= ? AND key < ? ORDER BY key",
                    (prefix, prefix + "\U0010ffff"),
                ).fetchall()
            else:
                rows = self._conn.execute("SELECT key, value FROM kv ORDER BY key").fetchall()
        return [(str(k), bytes(v)) for k, v in rows if str(k).startswith(prefix)]

    @contextlib.contextmanager
    def transaction(self) -> Iterator[None]:
        """One atomic commit for every write inside (see :class:`TransactionalStorage`)."""
        with self._lock:
            outer = self._depth == 0
            if outer:
                self._conn.execute("BEGIN IMMEDIATE")
            self._depth += 1
            try:
                yield
            except BaseException:
                self._depth -= 1
                if outer:
                    self._conn.execute("ROLLBACK")
                raise
            self._depth -= 1
            if outer:
                self._conn.execute("COMMIT")

    def close(self) -> None:
        """Close the connection (idempotent)."""
        with self._lock:
            self._conn.close()

    def __enter__(self) -> SQLiteStorage:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
