"""Secure-channel and replay-window tests written against the mutants of
``mutants/catalog.py`` (``make mutate MUTATE_ARGS='--area channel'``): each names the
bug it catches -- sender identity by prefix, sequence leases at their boundary, a stale
frame burning its sequence number, the exact freshness bound (also on the batch path,
``open_many``, which computes its bounds once per batch), the RFC 6479 ring at a slide,
and the replay guard after a rolled-back or failed write (also on its lease path).
"""

from __future__ import annotations

import pytest

from vsm_phoenix.crypto import (
    ChannelMode,
    KeyKind,
    Keyset,
    MemoryStorage,
    ReplayGuard,
    ReplayWindow,
    SecureChannel,
)
from vsm_phoenix.errors import AuthenticationError, ReplayError

KS = {ChannelMode.AEAD: Keyset.generate(KeyKind.AES256_GCM),
      ChannelMode.MAC: Keyset.generate(KeyKind.HMAC_SHA256)}
MODES = [ChannelMode.AEAD, ChannelMode.MAC]


class Clock:
    def __init__(self, now: float = 1_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def channel(identity: str, mode: ChannelMode, clock: Clock | None = None,
            storage: MemoryStorage | None = None, **kw: object) -> SecureChannel:
    return SecureChannel(KS[mode], storage if storage is not None else MemoryStorage(),
                         identity=identity, mode=mode, clock=clock or Clock(),
                         **kw)  # type: ignore[arg-type]


# -- who sent it --------------------------------------------------------------------------
@pytest.mark.parametrize("mode", MODES)
def test_the_known_sender_must_match_the_sealed_one_exactly(mode: ChannelMode) -> None:
    """``open(sender="n1")`` accepts frames sealed by ``n1`` and its sessions
    (``n1#...``), never by ``n10`` or ``n1x``: a prefix is not an identity."""
    bob = channel("bob", mode)
    for sealed_by, ok in (("n1", True), ("n1#s2", True), ("n10", False), ("n1x", False),
                          ("n", False)):
        frame = channel(sealed_by, mode).seal({"recipient": "bob"}, b"x")
        if ok:
            assert bob.open(frame, sender="n1")[0]["sender"] == sealed_by
        else:
            with pytest.raises(AuthenticationError):
                bob.open(frame, sender="n1")
            assert bob.replay_guard.highest(sealed_by) == -1  # nothing recorded


# -- sequence numbers survive restarts --------------------------------------------------------
@pytest.mark.parametrize("lease", [1, 2, 3, 64])
def test_no_sequence_number_is_handed_out_twice_across_restarts(lease: int) -> None:
    """Each restart (a new channel over the same storage) continues above every number
    the previous one handed out, whatever the lease and wherever in a lease it stops."""
    storage = MemoryStorage()
    receiver = channel("bob", ChannelMode.MAC)
    seen: list[int] = []
    for frames in (1, lease, lease + 1, 2 * lease, 1):
        alice = channel("alice", ChannelMode.MAC, storage=storage, sequence_lease=lease)
        for _ in range(frames):
            header, _ = receiver.open(alice.seal({"recipient": "bob"}, b"m"))
            seen.append(header["sequence"])
    assert len(seen) == len(set(seen)) and seen == sorted(seen)


# -- freshness --------------------------------------------------------------------------------
@pytest.mark.parametrize("mode", MODES)
def test_a_stale_frame_is_refused_without_burning_its_sequence(mode: ChannelMode) -> None:
    clock = Clock()
    alice, bob = channel("alice", mode, clock), channel("bob", mode, clock, max_age=10.0)
    frame = alice.seal({"recipient": "bob"}, b"late")
    clock.now += 11
    with pytest.raises(ReplayError) as err:
        bob.open(frame)
    assert err.value.reason == "stale"
    assert bob.replay_guard.highest("alice") == -1  # the window recorded nothing
    # A receiver whose clock lags (it opens the same frame in time) still accepts it.
    clock.now -= 11
    assert bob.open(frame)[1] == b"late"


@pytest.mark.parametrize("mode", MODES)
def test_the_age_bound_is_exact_to_the_millisecond(mode: ChannelMode) -> None:
    clock = Clock(1_000_000.0)
    alice = channel("alice", mode, clock)
    frames = [alice.seal({"recipient": "bob"}, b"%d" % i) for i in range(2)]
    bob = channel("bob", mode, clock, max_age=10.0)
    clock.now = 1_000_010.0  # exactly max_age old: accepted
    assert bob.open(frames[0])[1] == b"0"
    clock.now = 1_000_010.001  # one millisecond more: refused
    with pytest.raises(ReplayError):
        bob.open(frames[1])


# -- the replay window ------------------------------------------------------------------------
def test_a_slide_over_a_full_ring_clears_the_reused_block() -> None:
    """Window 64: two ring blocks. After 2, a jump to 133 (block 2, ring slot 0 again)
    must clear slot 0: 130 was never seen and is inside the window."""
    w = ReplayWindow(64)
    w.accept(2)
    w.accept(133)
    w.accept(130)
    with pytest.raises(ReplayError):
        w.accept(130)
    assert ReplayWindow.from_bytes(w.to_bytes()) == w


def test_every_sequence_of_a_block_stays_recorded() -> None:
    w = ReplayWindow(128)
    for seq in (1, 2, 3, 70, 65):
        w.accept(seq)
    for seq in (1, 2, 3, 65, 70):
        with pytest.raises(ReplayError):
            w.accept(seq)


def test_a_rolled_back_accept_leaves_the_guard_as_it_was() -> None:
    """The caller's transaction rolls back after ``accept``: the write is undone, and
    the guard must not remember the sequence from its cache either."""
    storage = MemoryStorage()
    guard = ReplayGuard(storage, size=64)
    guard.accept("alice", 4)
    with pytest.raises(RuntimeError), storage.transaction():
        guard.accept("alice", 5)
        raise RuntimeError("caller fails after the accept")
    assert guard.highest("alice") == 4
    guard.accept("alice", 5)  # the genuine delivery after the rollback


class FailingStorage(MemoryStorage):
    """A storage whose next ``put`` fails (a full disk, a lost connection)."""

    def __init__(self) -> None:
        super().__init__()
        self.fail_next = False

    def put(self, key: str, value: bytes) -> None:
        if self.fail_next:
            self.fail_next = False
            raise OSError("disk full")
        super().put(key, value)


def test_a_failed_write_leaves_the_guard_as_it_was() -> None:
    """The window is persisted *before* the in-memory copy changes: when the write
    fails, the sequence is not recorded anywhere and its genuine retry is accepted."""
    storage = FailingStorage()
    guard = ReplayGuard(storage, size=64)
    guard.accept("alice", 4)
    storage.fail_next = True
    with pytest.raises(OSError):
        guard.accept("alice", 5)
    assert guard.highest("alice") == 4
    guard.check("alice", 5)
    guard.accept("alice", 5)
    assert guard.highest("alice") == 5


# -- the batch path (open_many) and the guard's lease path ----------------------------------
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


class SlowFailingStorage(FailingStorage):
    """A failing store whose writes are commits (like SQLite's), so the guard leases
    its records ahead instead of writing each one."""

    cheap_writes = False


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
