"""ReplayWindow against a set oracle, its codec, and the persisted ReplayGuard."""

from __future__ import annotations

import contextlib
import random
import threading
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vsm_phoenix.crypto import MemoryStorage, ReplayGuard, ReplayWindow, SQLiteStorage
from vsm_phoenix.crypto.replay import MAX_JUMP
from vsm_phoenix.errors import DecodeError, InvalidArgument, ReplayError, TypeMismatch


def _oracle_accepts(seen: set[int], highest: int, size: int, seq: int) -> bool:
    if seq > highest:
        return seq - highest <= MAX_JUMP
    return seq > highest - size and seq not in seen


@settings(max_examples=150, deadline=None)
@given(
    st.sampled_from([64, 128, 1024]),
    st.lists(
        st.integers(0, 3000)
        | st.integers(0, 2**64 - 1)
        | st.integers(MAX_JUMP - 3, MAX_JUMP + 3)
        | st.integers(2 * MAX_JUMP - 3000, 2 * MAX_JUMP + 3),
        max_size=120,
    ),
)
def test_window_matches_oracle(size: int, seqs: list[int]) -> None:
    window = ReplayWindow(size)
    seen: set[int] = set()
    highest = -1
    for seq in seqs:
        before = window.to_bytes()
        ok = _oracle_accepts(seen, highest, size, seq)
        if ok:
            window.check(seq)
            window.record(seq)
            seen.add(seq)
            highest = max(highest, seq)
        else:
            with pytest.raises(ReplayError):
                window.check(seq)
            with pytest.raises(ReplayError):
                window.record(seq)
            assert window.to_bytes() == before  # a rejection changes nothing
        assert window.highest == highest
        assert ReplayWindow.from_bytes(window.to_bytes()) == window


@settings(max_examples=30, deadline=None)
@given(st.integers(0, 2**32))
def test_out_of_order_inside_window_accepted_exactly_once(seed: int) -> None:
    rnd = random.Random(seed)
    window = ReplayWindow(1024)
    order = list(range(1, 1025))
    rnd.shuffle(order)
    for seq in order:
        window.record(seq)
    rnd.shuffle(order)
    for seq in order:
        with pytest.raises(ReplayError):
            window.check(seq)


def test_older_than_window_rejected_even_if_never_seen() -> None:
    window = ReplayWindow(64)
    window.record(1000)
    window.record(1000 - 63)  # oldest inside the window
    with pytest.raises(ReplayError, match="older"):
        window.check(1000 - 64)
    with pytest.raises(ReplayError, match="older"):
        window.check(0)
    window.record(5000)  # big jump clears everything
    window.record(4999)
    with pytest.raises(ReplayError):
        window.check(1000)


def test_default_size_and_validation() -> None:
    assert ReplayWindow().size == 1024
    for bad in (0, 63, 65, 1 << 17):
        with pytest.raises(InvalidArgument):
            ReplayWindow(bad)
    window = ReplayWindow()
    with pytest.raises(InvalidArgument):
        window.check(-1)
    with pytest.raises(InvalidArgument):
        window.check(2**64)
    with pytest.raises(TypeMismatch):
        window.check(1.0)  # type: ignore[arg-type]


def test_codec_golden() -> None:
    window = ReplayWindow(64)
    window.record(3)
    window.record(1)
    expected = bytes.fromhex("840118400350000000000000000a0000000000000000")
    assert window.to_bytes() == expected
    assert ReplayWindow.from_bytes(expected) == window


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=80))
def test_hostile_window_bytes_only_raise_decode_error(data: bytes) -> None:
    with contextlib.suppress(DecodeError):
        ReplayWindow.from_bytes(data)


def test_malformed_window_bytes() -> None:
    import cbor2

    good = ReplayWindow(64)
    good.record(3)
    for doc in (
        [2, 64, 3, bytes(16)],
        [1, 63, 3, bytes(16)],
        [1, 64, -2, bytes(16)],
        [1, 64, 3, bytes(15)],
        [1, 64, 3, bytes(16)],  # highest not marked
        [1, 64, 3, (1 << 5 | 1 << 3).to_bytes(8, "big") + bytes(8)],  # bit above highest
        [1, 64, 3.0, bytes(16)],
        {"a": 1},
    ):
        with pytest.raises(DecodeError):
            ReplayWindow.from_bytes(cbor2.dumps(doc, canonical=True))
    with pytest.raises(DecodeError):
        ReplayWindow.from_bytes("x")  # type: ignore[arg-type]


@pytest.mark.parametrize("backend", ["memory", "sqlite"])
def test_guard_survives_restart(backend: str, tmp_path: Path) -> None:
    def open_storage() -> MemoryStorage | SQLiteStorage:
        return SQLiteStorage(tmp_path / "r.db")

    storage: MemoryStorage | SQLiteStorage = (
        MemoryStorage() if backend == "memory" else open_storage()
    )
    guard = ReplayGuard(storage, size=64)
    for seq in (5, 3, 9):
        guard.accept("alice", seq)
    guard.accept("bob", 1)
    if isinstance(storage, SQLiteStorage):
        storage.close()
        storage = open_storage()
    restarted = ReplayGuard(storage, size=64)
    for seq in (5, 3, 9):
        with pytest.raises(ReplayError):
            restarted.accept("alice", seq)
    with pytest.raises(ReplayError):
        restarted.check("bob", 1)
    restarted.accept("alice", 4)  # inside the window, never seen
    restarted.accept("bob", 2)
    assert restarted.highest("alice") == 9 and restarted.highest("carol") == -1
    if isinstance(storage, SQLiteStorage):
        storage.close()


def test_guard_concurrent_accept_exactly_once() -> None:
    guard = ReplayGuard(MemoryStorage())
    wins: list[int] = []
    lock = threading.Lock()

    def work() -> None:
        for seq in range(200):
            try:
                guard.accept("s", seq)
            except ReplayError:
                continue
            with lock:
                wins.append(seq)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(wins) == list(range(200))


def test_guard_does_not_persist_rejections() -> None:
    storage = MemoryStorage()
    guard = ReplayGuard(storage, size=64)
    guard.accept("s", 100)
    snapshot = dict(storage.items())
    with pytest.raises(ReplayError):
        guard.accept("s", 100)
    with pytest.raises(ReplayError):
        guard.accept("s", 1)
    assert dict(storage.items()) == snapshot
    with pytest.raises(TypeMismatch):
        guard.check(b"s", 1)  # type: ignore[arg-type]


@pytest.mark.parametrize("backend", ["memory", "sqlite"])
@pytest.mark.parametrize("size", [64, 1024])
def test_guard_reloads_a_window_that_slid_past_its_ring(
    backend: str, size: int, tmp_path: Path
) -> None:
    """More than ``size`` + 64 messages of one sender leave bits of numbers that slid
    out of the window in the ring's oldest block; the stored record must still load
    after a restart (it once raised DecodeError for every later frame of that sender)."""
    path = tmp_path / "w.db"
    storage: MemoryStorage | SQLiteStorage = (
        MemoryStorage() if backend == "memory" else SQLiteStorage(path)
    )
    guard = ReplayGuard(storage, size=size)
    last = size + 100
    for seq in range(1, last + 1):
        guard.accept("s", seq, 7)
    if isinstance(storage, SQLiteStorage):
        storage.close()
        storage = SQLiteStorage(path)
    restarted = ReplayGuard(storage, size=size)
    for seq in (last, last - 1, last - size + 1):
        with pytest.raises(ReplayError):
            restarted.accept("s", seq, 7)
    restarted.accept("s", last + 1, 7)
    assert restarted.highest("s") == last + 1
    if isinstance(storage, SQLiteStorage):
        storage.close()
