"""``MemoryStorage.put_behind``: every reader sees what a write at each change would
have left, whichever way it reads; a later write or delete wins; transactions see and
undo real values."""

from __future__ import annotations

import pytest

from vsm_phoenix.crypto import MemoryStorage, ReplayGuard
from vsm_phoenix.crypto.replay import decode_record
from vsm_phoenix.errors import ReplayError


class State:
    """A component's state and its encoding, counting renders."""

    def __init__(self) -> None:
        self.value = 0
        self.renders = 0

    def render(self) -> bytes:
        self.renders += 1
        return b"v%d" % self.value


def _behind(storage: MemoryStorage, state: State, value: int) -> None:
    with storage.lock:
        state.value = value
        storage.put_behind("k", state.render)


@pytest.mark.parametrize("read", ["get", "peek", "items", "keys", "len"])
def test_every_read_sees_the_latest_change(read: str) -> None:
    storage, state = MemoryStorage(), State()
    for value in (1, 2, 3):
        _behind(storage, state, value)
    assert state.renders == 0  # nobody read: nothing encoded
    seen = {
        "get": lambda: storage.get("k"),
        "peek": lambda: storage.peek("k"),
        "items": lambda: dict(storage.items()).get("k"),
        "keys": lambda: storage.keys() and storage.get("k"),
        "len": lambda: len(storage) and storage.get("k"),
    }[read]()
    assert seen == b"v3" and state.renders == 1
    _behind(storage, state, 4)
    assert storage.get("k") == b"v4"


def test_a_later_put_or_delete_wins() -> None:
    storage, state = MemoryStorage(), State()
    _behind(storage, state, 1)
    storage.put("k", b"direct")
    state.value = 2
    assert storage.get("k") == b"direct" and state.renders == 0
    _behind(storage, state, 3)
    storage.delete("k")
    assert storage.get("k") is None and storage.keys() == []


def test_a_transaction_starts_from_the_rendered_value_and_undoes_to_it() -> None:
    storage, state = MemoryStorage(), State()
    _behind(storage, state, 1)
    with pytest.raises(RuntimeError), storage.transaction():
        storage.put("k", b"in the transaction")
        raise RuntimeError
    assert storage.get("k") == b"v1"
    with storage.transaction():
        _behind(storage, state, 5)  # inside a transaction: written now
        assert storage.get("k") == b"v5"
    assert storage.get("k") == b"v5"


def test_a_restarted_guard_over_the_same_store_sees_the_exact_windows() -> None:
    """The memory store's crash model: a new incarnation over the same object. The
    windows written behind are exactly those a write per accept would have left."""
    storage = MemoryStorage()
    guard = ReplayGuard(storage, size=64)
    for seq in (5, 3, 9, 70):
        guard.accept("a", seq, 1000 + seq)
    guard.accept("b", 1, 7)
    window, zone_seq, zone_ts = decode_record(storage.get("replay/a") or b"")
    assert window.highest == 70 and (zone_seq, zone_ts) == (0, 0)
    reborn = ReplayGuard(storage, size=64)
    for seq in (9, 70):
        with pytest.raises(ReplayError):
            reborn.accept("a", seq, 1000 + seq)
    reborn.accept("a", 8, 1008)  # inside the window, never accepted: nothing is lost
    reborn.accept("b", 2, 8)
    # the old incarnation's later accepts still reach the store (last writer wins)
    guard.accept("b", 40, 9)
    assert decode_record(storage.get("replay/b") or b"")[0].highest == 40


def test_subclassed_stores_get_a_real_write_per_accept() -> None:
    class Counting(MemoryStorage):
        __slots__ = ("puts",)

        def __init__(self) -> None:
            super().__init__()
            self.puts = 0

        def put(self, key: str, value: bytes) -> None:
            self.puts += 1
            super().put(key, value)

    storage = Counting()
    guard = ReplayGuard(storage)
    for seq in range(1, 11):
        guard.accept("a", seq, 5)
    assert storage.puts == 10
