"""The Storage protocol and its two implementations."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

import pytest

from vsm_phoenix.crypto import MemoryStorage, SQLiteStorage, Storage
from vsm_phoenix.errors import InvalidArgument, TypeMismatch
from vsm_phoenix.storage import transaction_hooks


@pytest.fixture(params=["memory", "sqlite"])
def storage(request: pytest.FixtureRequest, tmp_path: Path) -> object:
    if request.param == "memory":
        yield MemoryStorage()
    else:
        with SQLiteStorage(tmp_path / "kv.db") as s:
            yield s


def test_get_put(storage: Storage) -> None:
    assert isinstance(storage, Storage)
    assert storage.get("a") is None
    storage.put("a", b"1")
    storage.put("a", b"22")
    storage.put("b/c", b"")
    assert storage.get("a") == b"22" and storage.get("b/c") == b""
    with pytest.raises(TypeMismatch):
        storage.put("a", "text")  # type: ignore[arg-type]
    with pytest.raises(TypeMismatch):
        storage.get(b"a")  # type: ignore[arg-type]


def test_threads(storage: Storage) -> None:
    def work(i: int) -> None:
        for j in range(50):
            storage.put(f"{i}/{j}", bytes([j]))

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(storage.get(f"{i}/{j}") == bytes([j]) for i in range(4) for j in range(50))


def test_sqlite_is_durable_and_wal(tmp_path: Path) -> None:
    path = tmp_path / "kv.db"
    with SQLiteStorage(path) as s:
        s.put("k", b"v")
    with SQLiteStorage(path, synchronous="NORMAL") as s:
        assert s.get("k") == b"v"
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    conn.close()
    with pytest.raises(InvalidArgument):
        SQLiteStorage(path, synchronous="OFF")


def test_memory_helpers() -> None:
    m = MemoryStorage()
    m.put("b", b"")
    m.put("a", b"")
    assert dict(m.items()) == {"a": b"", "b": b""} and len(m) == 2


def test_memory_transaction_undoes_only_its_writes() -> None:
    storage = MemoryStorage()
    for i in range(1000):
        storage.put(f"k{i}", b"v")
    with pytest.raises(RuntimeError), storage.transaction():
        storage.put("k1", b"changed")
        storage.put("new", b"x")
        storage.delete("k2")
        with storage.transaction():  # nested: the outermost one decides
            storage.put("k3", b"inner")
        raise RuntimeError
    assert storage.get("k1") == b"v" and storage.get("k2") == b"v"
    assert storage.get("k3") == b"v" and storage.get("new") is None
    assert len(storage) == 1000
    with storage.transaction():
        storage.put("k1", b"kept")
    assert storage.get("k1") == b"kept"


@pytest.mark.parametrize("backend", ["memory", "sqlite"])
def test_transaction_hooks(backend: str, tmp_path: Path) -> None:
    storage: MemoryStorage | SQLiteStorage = (
        MemoryStorage() if backend == "memory" else SQLiteStorage(tmp_path / "h.db")
    )
    calls: list[str] = []
    assert transaction_hooks(storage) is None and not storage.in_transaction()
    with storage.transaction():
        hooks = transaction_hooks(storage)
        assert hooks is not None and storage.in_transaction()
        hooks.commit.append(lambda: storage.put("by-hook", b"1"))  # joins the commit
        hooks.rollback.append(lambda: calls.append("rollback"))
        with storage.transaction():
            assert transaction_hooks(storage) is hooks
    assert storage.get("by-hook") == b"1" and calls == []
    with pytest.raises(RuntimeError), storage.transaction():
        storage.put("gone", b"1")
        hooks = transaction_hooks(storage)
        assert hooks is not None
        hooks.rollback.append(lambda: calls.append("rollback"))
        raise RuntimeError
    assert calls == ["rollback"] and storage.get("gone") is None

    def failing() -> None:
        storage.put("half", b"1")
        raise OSError("disk full")

    with pytest.raises(OSError), storage.transaction():
        storage.put("before", b"1")
        hooks = transaction_hooks(storage)
        assert hooks is not None
        hooks.commit.append(failing)
        hooks.rollback.append(lambda: calls.append("rollback"))
    assert storage.get("before") is None and storage.get("half") is None
    assert calls == ["rollback", "rollback"]
    assert transaction_hooks(object()) is None  # a storage without hooks
    if isinstance(storage, SQLiteStorage):
        storage.close()
