"""The small persistence interface of the crypto layer.

Whatever must survive a restart -- nonce usage counters, per-sender sequence numbers,
replay-window high-water marks -- is written through :class:`Storage`: a map from ``str``
keys to ``bytes`` values with ``get`` and ``put``. Two implementations ship:

* :class:`MemoryStorage` -- a dict behind a lock. The simulator keeps one per node and
  hands the *same* object to the node's new incarnation after a simulated crash, which
  is how "restart" is tested without a disk.
* :class:`SQLiteStorage` -- stdlib :mod:`sqlite3` in WAL mode, one table, every ``put``
  committed (``synchronous=FULL`` by default) before it returns.

Invariant: a ``put`` that returned is visible to every later ``get`` on the same storage,
from any thread and, for SQLite, from any later process. Callers never rely on more
(no transactions spanning several keys).
"""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path
from types import TracebackType
from typing import Protocol, runtime_checkable

from vsm_phoenix.errors import InvalidArgument, TypeMismatch

__all__ = ["MemoryStorage", "SQLiteStorage", "Storage"]


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


def _check(key: str, value: bytes | None = None) -> None:
    if not isinstance(key, str):
        raise TypeMismatch(f"storage key must be str, not {type(key).__name__}")
    if value is not None and not isinstance(value, bytes):
        raise TypeMismatch(f"storage value must be bytes, not {type(value).__name__}")


class MemoryStorage:
    """In-memory :class:`Storage`; survives simulated crashes by being reused."""

    __slots__ = ("_data", "_lock")

    def __init__(self) -> None:
        self._data: dict[str, bytes] = {}
        self._lock = threading.Lock()

    def get(self, key: str) -> bytes | None:
        _check(key)
        with self._lock:
            return self._data.get(key)

    def put(self, key: str, value: bytes) -> None:
        _check(key, value)
        with self._lock:
            self._data[key] = value

    def snapshot(self) -> dict[str, bytes]:
        """A copy of the whole content (for tests and debugging)."""
        with self._lock:
            return dict(self._data)

    def __len__(self) -> int:
        with self._lock:
            return len(self._data)


class SQLiteStorage:
    """:class:`Storage` in one SQLite file (WAL mode, one ``kv`` table).

    ``synchronous`` is SQLite's pragma: ``"FULL"`` (default) survives power loss,
    ``"NORMAL"`` survives process crashes only and is faster. One connection is shared by
    all threads behind a lock.
    """

    __slots__ = ("_conn", "_lock", "path")

    def __init__(self, path: str | Path, *, synchronous: str = "FULL") -> None:
        if synchronous not in ("FULL", "NORMAL", "EXTRA"):
            raise InvalidArgument(f"synchronous must be FULL, NORMAL or EXTRA: {synchronous!r}")
        self.path = str(path)
        self._lock = threading.Lock()
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
