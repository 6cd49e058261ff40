"""The freshness and durability rules of the secure channel on the paths that the
single-frame tests do not take: ``open_many`` (the batch path the AMQP adapter uses,
which computes its freshness bounds once per batch) and the replay guard's lease path
(stores whose writes are not cheap, e.g. SQLite). Mutants of ``mutants/catalog.py``
(``make mutate MUTATE_ARGS='--area channel'``) that changed only these paths survived
every other test.
"""

from __future__ import annotations

import pytest

from vsm_phoenix.crypto import (
    ChannelMode,
    KeyKind,
    Keyset,
    MemoryStorage,
    ReplayGuard,
    SecureChannel,
)
from vsm_phoenix.errors import ReplayError

KS = {ChannelMode.AEAD: Keyset.generate(KeyKind.AES256_GCM),
      ChannelMode.MAC: Keyset.generate(KeyKind.HMAC_SHA256)}
MODES = [ChannelMode.AEAD, ChannelMode.MAC]


class Clock:
    def __init__(self, now: float = 1_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def channel(identity: str, mode: ChannelMode, clock: Clock, **kw: float) -> SecureChannel:
    return SecureChannel(KS[mode], MemoryStorage(), identity=identity, mode=mode,
                         clock=clock, **kw)


@pytest.mark.parametrize("mode", MODES)
def test_a_batch_applies_the_age_bound_to_the_millisecond(mode: ChannelMode) -> None:
    clock = Clock()
    alice = channel("alice", mode, clock)
    first = [alice.seal({"recipient": "bob"}, b"a%d" % i) for i in range(2)]
    clock.now += 0.001
    second = [alice.seal({"recipient": "bob"}, b"b%d" % i) for i in range(2)]
    bob = channel("bob", mode, clock, max_age=10.0)
    clock.now += 10.0  # ``second`` is exactly max_age old, ``first`` 1 ms more
    results = bob.open_many([*first, *second])
    for stale in results[:2]:
        assert isinstance(stale, ReplayError) and stale.reason == "stale"
    assert [r[1] for r in results[2:] if isinstance(r, tuple)] == [b"b0", b"b1"]
    # the stale frames burnt no sequence: a receiver whose clock lags accepts them
    clock.now -= 1.0
    assert [r[1] for r in bob.open_many(first) if isinstance(r, tuple)] == [b"a0", b"a1"]


@pytest.mark.parametrize("mode", MODES)
def test_a_batch_refuses_frames_from_the_future(mode: ChannelMode) -> None:
    clock = Clock()
    alice = channel("alice", mode, clock)
    early = alice.seal({"recipient": "bob"}, b"early")
    clock.now += 5.0
    ahead = alice.seal({"recipient": "bob"}, b"ahead")
    clock.now -= 5.0
    bob = channel("bob", mode, clock, max_skew=2.0)
    out = bob.open_many([ahead, early])
    assert isinstance(out[0], ReplayError) and out[0].reason == "future"
    assert isinstance(out[1], tuple) and out[1][1] == b"early"


class SlowFailingStorage(MemoryStorage):
    """A store whose writes are commits (like SQLite's), so the guard leases its
    records ahead, and whose next ``put`` fails (a full disk)."""

    cheap_writes = False

    def __init__(self) -> None:
        super().__init__()
        self.fail_next = False

    def put(self, key: str, value: bytes) -> None:
        if self.fail_next:
            self.fail_next = False
            raise OSError("disk full")
        super().put(key, value)


def test_a_failed_lease_write_leaves_the_guard_as_it_was() -> None:
    """On the lease path the record (with its new lease) is written before the window
    in memory changes: when that write fails, nothing is recorded and the genuine
    retry of the frame is accepted."""
    storage = SlowFailingStorage()
    guard = ReplayGuard(storage, size=64, lease=16)
    guard.accept("alice", 4)
    guard.accept("alice", 5)  # inside the lease: no write
    storage.fail_next = True
    with pytest.raises(OSError):
        guard.accept("alice", 100)  # past the lease: a write, which fails
    assert guard.highest("alice") == 5
    guard.accept("alice", 100)
    assert guard.highest("alice") == 100
    with pytest.raises(ReplayError):
        guard.accept("alice", 100)
