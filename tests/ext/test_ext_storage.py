"""vsm_phoenix.storage: the project-wide durable map (memory and SQLite)."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from vsm_phoenix.crypto import storage as crypto_storage
from vsm_phoenix.errors import InvalidArgument, TypeMismatch
from vsm_phoenix.storage import MemoryStorage, SQLiteStorage, Storage, TransactionalStorage

Factory = Callable[[Path], MemoryStorage | SQLiteStorage]


@pytest.fixture(params=["memory", "sqlite"])
def make(request: pytest.FixtureRequest) -> Factory:
    if request.param == "memory":
        return lambda _p: MemoryStorage()
    return lambda p: SQLiteStorage(p / "s.sqlite")


def test_get_put_delete_items(make: Factory, tmp_path: Path) -> None:
    s = make(tmp_path)
    assert isinstance(s, Storage) and isinstance(s, TransactionalStorage)
    assert s.get("a") is None
    s.put("a/1", b"x")
    s.put("a/2", b"y")
    s.put("b", b"z")
    s.put("a/1", b"x2")
    assert s.get("a/1") == b"x2"
    assert s.items() == [("a/1", b"x2"), ("a/2", b"y"), ("b", b"z")]
    assert s.items("a/") == [("a/1", b"x2"), ("a/2", b"y")]
    assert s.items("zz") == []
    s.delete("a/1")
    s.delete("missing")
    assert s.get("a/1") is None and s.items("a") == [("a/2", b"y")]


def test_bad_types_are_rejected(make: Factory, tmp_path: Path) -> None:
    s = make(tmp_path)
    with pytest.raises(TypeMismatch):
        s.put("k", "not bytes")  # type: ignore[arg-type]
    with pytest.raises(TypeMismatch):
        s.get(1)  # type: ignore[arg-type]
    with pytest.raises(TypeMismatch):
        s.items(None)  # type: ignore[arg-type]
    with pytest.raises(InvalidArgument):
        SQLiteStorage(tmp_path / "x.sqlite", synchronous="OFF")


def test_transaction_commits_together_or_not_at_all(make: Factory, tmp_path: Path) -> None:
    s = make(tmp_path)
    s.put("keep", b"1")
    with pytest.raises(RuntimeError), s.transaction():
        s.put("keep", b"2")
        s.put("new", b"3")
        s.delete("keep")
        raise RuntimeError("boom")
    assert s.get("keep") == b"1" and s.get("new") is None
    with s.transaction(), s.transaction():  # nested: the outer one commits
        s.put("new", b"4")
    assert s.get("new") == b"4"


def test_unicode_prefixes(make: Factory, tmp_path: Path) -> None:
    s = make(tmp_path)
    for k in ("é/1", "é/\U0010fffe", "éa", "f"):
        s.put(k, b"v")
    assert [k for k, _ in s.items("é/")] == ["é/1", "é/\U0010fffe"]


def test_sqlite_survives_a_killed_process(tmp_path: Path) -> None:
    db = tmp_path / "s.sqlite"
    code = (
        "import os, sys\n"
        "from vsm_phoenix.storage import SQLiteStorage\n"
        f"s = SQLiteStorage({str(db)!r}, synchronous='NORMAL')\n"
        "with s.transaction():\n"
        "    s.put('a', b'1'); s.put('b', b'2')\n"
        "t = s.transaction(); t.__enter__(); s.put('c', b'3')\n"  # never committed
        "os._exit(9)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], check=False)
    assert proc.returncode == 9
    with SQLiteStorage(db) as s:
        assert s.items() == [("a", b"1"), ("b", b"2")]


def test_same_semantics_as_the_crypto_storage(tmp_path: Path) -> None:
    """crypto.storage can become a re-export: same names, get/put behave alike."""
    for ours, theirs in ((MemoryStorage(), crypto_storage.MemoryStorage()),
                         (SQLiteStorage(tmp_path / "o.sqlite"),
                          crypto_storage.SQLiteStorage(tmp_path / "t.sqlite"))):
        for s in (ours, theirs):
            s.put("k", b"v")
            assert s.get("k") == b"v" and s.get("none") is None
        assert isinstance(ours, crypto_storage.Storage)
