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
produced is lost -- and it pays for one commit instead of several. A transaction costs
what it writes: the in-memory store keeps an undo log of the keys written (their
previous values), never a copy of the store.

Components that keep state in memory and persist it (replay windows, sequence
counters) use :func:`transaction_hooks`: a callback that runs just before the calling
thread's outermost transaction commits (its writes join the commit) and one that runs
after it rolled back. ``cheap_writes`` says whether a write outside a transaction is a
dict assignment (memory) or a commit (SQLite), and :meth:`SQLiteStorage.on_close`
lets such a component write its exact state at a clean shutdown.

Invariants: a write that returned (outside a transaction) or a transaction that exited
normally is visible to every later ``get`` on the same storage, from any thread and, for
SQLite, from any later process. A transaction that exits with an exception leaves the
store as it was before it began (SQLite rolls back; memory replays its undo log).
"""

from __future__ import annotations

import contextlib
import sqlite3
import threading
import weakref
from collections.abc import Callable, Iterator
from pathlib import Path
from types import TracebackType
from typing import Protocol, runtime_checkable

from vsm_phoenix.errors import InvalidArgument, TypeMismatch

__all__ = [
    "MemoryStorage",
    "SQLiteStorage",
    "Storage",
    "TransactionHooks",
    "TransactionalStorage",
    "transaction_hooks",
]


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


class TransactionHooks:
    """Callbacks of the outermost transaction of one storage (see
    :func:`transaction_hooks`)."""

    __slots__ = ("commit", "rollback")

    def __init__(self) -> None:
        self.commit: list[Callable[[], None]] = []
        self.rollback: list[Callable[[], None]] = []

    def run_commit(self) -> None:
        # A hook may register another one (a write that joins the commit): run until done.
        i = 0
        while i < len(self.commit):
            self.commit[i]()
            i += 1

    def run_rollback(self) -> None:
        for fn in reversed(self.rollback):
            fn()


class MemoryStorage:
    """In-memory :class:`Storage`; survives simulated crashes by being reused.

    A transaction keeps an undo log: the first write of a key inside it remembers the
    key's previous value, and a rollback puts those values back. So a transaction
    costs what it writes, not the size of the store.
    """

    __slots__ = ("_behind", "_data", "_depth", "_hooks", "_lock", "_owner", "_undo")

    #: A write is a dict assignment: callers may write per message (see
    #: :class:`~vsm_phoenix.crypto.replay.ReplayGuard`).
    cheap_writes = True

    def __init__(self) -> None:
        self._data: dict[str, bytes] = {}
        self._lock = threading.RLock()
        self._depth = 0
        self._owner = 0
        self._undo: dict[str, bytes | None] | None = None
        self._hooks: TransactionHooks | None = None
        self._behind: dict[str, Callable[[], bytes]] = {}

    def _settle(self) -> None:
        """Write every value put behind (lock held): before any read, and before a
        transaction starts, so that its undo log and its readers see real values."""
        rendered = [(key, render()) for key, render in self._behind.items()]
        self._behind = {}
        self._data.update(rendered)

    def get(self, key: str) -> bytes | None:
        _check(key)
        with self._lock:
            if self._behind:
                self._settle()
            return self._data.get(key)

    def peek(self, key: str) -> bytes | None:
        """``get`` without the lock or the argument check: one dict lookup, for a
        value read once per message (a ``str`` key; a key written behind is read as
        ``get`` reads it)."""
        if key in self._behind:
            return self.get(key)
        return self._data.get(key)

    def put(self, key: str, value: bytes) -> None:
        _check(key, value)
        with self._lock:
            if self._behind:
                self._behind.pop(key, None)
            undo = self._undo
            if undo is not None and key not in undo:
                undo[key] = self._data.get(key)
            self._data[key] = value

    def put_behind(self, key: str, render: Callable[[], bytes]) -> None:
        """Write behind: ``key`` holds ``render()`` as of the next read of the store
        (``get``, ``items``, ``keys``, ``len``) or the next transaction, whichever
        comes first, unless a later ``put``/``delete`` of ``key`` replaces it.

        For a component that would otherwise write its state under ``key`` after
        every change: it changes its state under :attr:`lock` and calls this (once is
        enough while ``render`` stays the same), and ``render`` returns, whenever it is
        called, exactly what that write would have stored -- so every reader sees what
        a write per change would have left, and nobody pays for the encodings nobody
        reads. The caller holds :attr:`lock` outside any transaction of its thread
        (inside one, the value is written now)."""
        if self._depth:
            self.put(key, render())
            return
        if self._behind.get(key) is not render:
            self._behind[key] = render

    def delete(self, key: str) -> None:
        _check(key)
        with self._lock:
            if self._behind:
                self._behind.pop(key, None)
            undo = self._undo
            if undo is not None and key not in undo:
                undo[key] = self._data.get(key)
            self._data.pop(key, None)

    def items(self, prefix: str = "") -> list[tuple[str, bytes]]:
        _check_prefix(prefix)
        with self._lock:
            if self._behind:
                self._settle()
            return sorted((k, v) for k, v in self._data.items() if k.startswith(prefix))

    @property
    def lock(self) -> threading.RLock:
        """The store's reentrant lock. Every call takes it, and a transaction holds it
        from start to end: a component that holds it while it reads, decides and
        writes is atomic with respect to every transaction, without opening one."""
        return self._lock

    def keys(self) -> list[str]:
        """Every key present, sorted (for tests and debugging)."""
        with self._lock:
            if self._behind:
                self._settle()
            return sorted(self._data)

    def __len__(self) -> int:
        with self._lock:
            if self._behind:
                self._settle()
            return len(self._data)

    def in_transaction(self) -> bool:
        """Whether the calling thread is inside a :meth:`transaction`."""
        return self._depth > 0 and self._owner == threading.get_ident()

    def transaction_hooks(self) -> TransactionHooks | None:
        """The hooks of the calling thread's transaction (``None`` outside one); see
        :func:`transaction_hooks`."""
        if self._depth == 0 or self._owner != threading.get_ident():  # (per message)
            return None
        if self._hooks is None:
            self._hooks = TransactionHooks()
        return self._hooks

    def transaction(self) -> _MemoryTransaction:
        """All-or-nothing group of writes (undoes them on error)."""
        return _MemoryTransaction(self)


class _MemoryTransaction:
    """The context manager of :meth:`MemoryStorage.transaction` (a class: it is entered
    once per message on hot paths, where a generator-based one costs several times
    more)."""

    __slots__ = ("_s",)

    def __init__(self, storage: MemoryStorage) -> None:
        self._s = storage

    def __enter__(self) -> None:
        s = self._s
        s._lock.acquire()
        if s._depth == 0:
            if s._behind:
                try:
                    s._settle()
                except BaseException:
                    s._lock.release()
                    raise
            s._undo = {}
            s._hooks = None
            s._owner = threading.get_ident()
        s._depth += 1

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        s = self._s
        try:
            if s._depth == 1:
                hooks = s._hooks
                if exc_type is None and hooks is not None:
                    try:
                        hooks.run_commit()
                    except BaseException:
                        self._rollback(hooks)
                        raise
                elif exc_type is not None:
                    self._rollback(hooks)
        finally:
            s._depth -= 1
            if s._depth == 0:
                s._undo = None
                s._hooks = None
                s._owner = 0
            s._lock.release()

    def _rollback(self, hooks: TransactionHooks | None) -> None:
        s = self._s
        undo, s._undo = s._undo or {}, None
        for key, value in undo.items():
            if value is None:
                s._data.pop(key, None)
            else:
                s._data[key] = value
        if hooks is not None:
            hooks.run_rollback()


class SQLiteStorage:
    """:class:`Storage` in one SQLite file (WAL mode, one ``kv`` table).

    ``synchronous`` is SQLite's pragma: ``"FULL"`` (default) survives power loss,
    ``"NORMAL"`` survives process crashes only and is faster (in WAL mode a commit
    then writes the log without waiting for the disk). One connection is shared by all
    threads behind a lock; a transaction holds that lock until it ends, so other
    threads wait rather than interleave their writes into it.
    """

    __slots__ = ("_close_hooks", "_conn", "_depth", "_hooks", "_lock", "_owner", "path")

    #: Every write outside a transaction is a commit (a disk sync with ``FULL``).
    cheap_writes = False

    def __init__(self, path: str | Path, *, synchronous: str = "FULL") -> None:
        if synchronous not in ("FULL", "NORMAL", "EXTRA"):
            raise InvalidArgument(f"synchronous must be FULL, NORMAL or EXTRA: {synchronous!r}")
        self.path = str(path)
        self._lock = threading.RLock()
        self._depth = 0
        self._owner = 0
        self._hooks: TransactionHooks | None = None
        self._close_hooks: list[weakref.WeakMethod[Callable[[], None]]] = []
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

    def in_transaction(self) -> bool:
        """Whether the calling thread is inside a :meth:`transaction`."""
        return self._depth > 0 and self._owner == threading.get_ident()

    def transaction_hooks(self) -> TransactionHooks | None:
        """The hooks of the calling thread's transaction (``None`` outside one); see
        :func:`transaction_hooks`."""
        if not self.in_transaction():
            return None
        if self._hooks is None:
            self._hooks = TransactionHooks()
        return self._hooks

    def on_close(self, flush: Callable[[], None]) -> None:
        """Call the bound method ``flush`` when the storage closes, before the connection
        does (held weakly: a collected owner is skipped)."""
        with self._lock:  # (dropping hooks of owners collected since: bounded growth)
            self._close_hooks = [ref for ref in self._close_hooks if ref() is not None]
            self._close_hooks.append(weakref.WeakMethod(flush))

    @contextlib.contextmanager
    def transaction(self) -> Iterator[None]:
        """One atomic commit for every write inside (see :class:`TransactionalStorage`)."""
        with self._lock:
            outer = self._depth == 0
            if outer:
                self._conn.execute("BEGIN IMMEDIATE")
                self._owner = threading.get_ident()
                self._hooks = None
            self._depth += 1
            try:
                yield
                if outer and self._hooks is not None:
                    self._hooks.run_commit()
            except BaseException:
                self._depth -= 1
                if outer:
                    hooks, self._hooks, self._owner = self._hooks, None, 0
                    self._conn.execute("ROLLBACK")
                    if hooks is not None:
                        hooks.run_rollback()
                raise
            self._depth -= 1
            if outer:
                self._hooks, self._owner = None, 0
                self._conn.execute("COMMIT")

    def close(self) -> None:
        """Run the close hooks (:meth:`on_close`), then close the connection
        (idempotent)."""
        with self._lock:
            hooks, self._close_hooks = self._close_hooks, []
        for ref in hooks:  # outside our lock: a hook takes its owner's lock, then ours
            flush = ref()
            if flush is not None:
                with contextlib.suppress(sqlite3.ProgrammingError):  # already closed
                    flush()
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


def transaction_hooks(storage: object) -> TransactionHooks | None:
    """The hooks of the calling thread's transaction on ``storage``, or ``None`` when it
    is in none (or the storage has no hooks). ``hooks.commit`` callbacks run inside the
    outermost transaction just before it commits (their writes join the commit);
    ``hooks.rollback`` callbacks run after it rolled back. A component that keeps state
    in memory uses them to write once per transaction and to forget what a rollback
    undid."""
    get = getattr(storage, "transaction_hooks", None)
    if get is None:
        return None
    hooks: TransactionHooks | None = get()
    return hooks
