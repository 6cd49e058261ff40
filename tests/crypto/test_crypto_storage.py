"""The Storage protocol and its two implementations."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

import pytest

from vsm_phoenix.crypto import MemoryStorage, SQLiteStorage, Storage
from vsm_phoenix.errors import InvalidArgument, TypeMismatch


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
