"""Crash-point tests of the in-memory replay windows and sequence counters.

The store is crashed at *every* write of a run (before the write lands, and just
after it lands), in each durability mode of :class:`ReplayGuard` (lease, exact per
accept, once per caller transaction). After each crash a new incarnation is built over
the same store, every frame of the run is replayed, and the run goes on. The
invariants, checked over all crash points:

* no frame ``(sender, seq, ts)`` is ever accepted twice, across all incarnations;
* a sender never hands out one sequence number twice, across all incarnations;
* (liveness, where it is promised) after a clean shutdown nothing is lost: a frame
  never accepted before is accepted after the restart.
"""

from __future__ import annotations

import random
from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vsm_phoenix.crypto import KeyKind, Keyset, SecureChannel
from vsm_phoenix.crypto.replay import ReplayGuard, decode_record
from vsm_phoenix.errors import ReplayError
from vsm_phoenix.storage import MemoryStorage, SQLiteStorage


class Crash(BaseException):
    """The process died (a BaseException: nothing in the library catches it)."""


class CrashStorage(MemoryStorage):
    """A memory store that survives crashes (it is reused by the next incarnation) and
    crashes at its ``crash_at``-th write, before or after the write lands."""

    __slots__ = ("after", "cheap_writes", "crash_at", "writes")

    def __init__(self, *, cheap: bool, crash_at: int = -1, after: bool = False) -> None:
        super().__init__()
        self.cheap_writes = cheap
        self.crash_at = crash_at
        self.after = after
        self.writes = 0

    def _point(self, apply: object) -> None:
        n, self.writes = self.writes, self.writes + 1
        if n == self.crash_at and not self.after:
            raise Crash
        assert callable(apply)
        apply()
        if n == self.crash_at:
            raise Crash

    def put(self, key: str, value: bytes) -> None:
        self._point(lambda: MemoryStorage.put(self, key, value))

    def delete(self, key: str) -> None:
        self._point(lambda: MemoryStorage.delete(self, key))


MODES = ["lease", "cheap", "txn"]


def _schedule(seed: int, n: int) -> list[tuple[int, int]]:
    """Deliveries ``(seq, ts)``: each of ``n`` frames once or twice, reordered locally,
    with timestamps that advance and sometimes stall."""
    rng = random.Random(seed)
    frames = []
    ts = 1000
    for seq in range(1, n + 1):
        ts += rng.choice((0, 1, 3))
        frames.append((seq, ts))
    out = []
    for i, f in enumerate(frames):
        out.append(f)
        if rng.random() < 0.3:
            out.append(frames[rng.randrange(max(0, i - 5), i + 1)])  # a duplicate
    for i in range(len(out) - 1):
        if rng.random() < 0.2:
            out[i], out[i + 1] = out[i + 1], out[i]
    return out


def _run(
    mode: str, crash_at: int, after: bool, seed: int, n: int = 24
) -> tuple[int, Counter[tuple[int, int]]]:
    """One run with a crash at write ``crash_at``; returns (writes, accept counts)."""
    storage = CrashStorage(cheap=mode == "cheap", crash_at=crash_at, after=after)
    schedule = _schedule(seed, n)
    accepted: Counter[tuple[int, int]] = Counter()

    def guard() -> ReplayGuard:
        return ReplayGuard(storage, size=64, lease=3, lease_ms=2)

    g = guard()
    crashed = False
    i = 0
    while i < len(schedule):
        seq, ts = schedule[i]
        try:
            if mode == "txn":
                with storage.transaction():
                    g.accept("s", seq, ts)
            else:
                g.accept("s", seq, ts)
            accepted[(seq, ts)] += 1
        except ReplayError:
            pass
        except Crash:
            assert not crashed
            crashed = True
            g = guard()  # the new incarnation over the surviving store
            for old_seq, old_ts in schedule[: i + 1]:  # an attacker replays everything
                try:
                    g.accept("s", old_seq, old_ts)
                    accepted[(old_seq, old_ts)] += 1
                except ReplayError:
                    pass
        i += 1
    return storage.writes, accepted


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("seed", range(3))
def test_no_replay_accepted_across_a_crash_at_any_write(mode: str, seed: int) -> None:
    total, accepted = _run(mode, -1, False, seed)
    assert max(accepted.values()) == 1
    assert total > 0
    for crash_at in range(total):
        for after in (False, True):
            _, accepted = _run(mode, crash_at, after, seed)
            assert max(accepted.values(), default=0) <= 1, (mode, crash_at, after)


@settings(max_examples=30, deadline=None)
@given(st.integers(0, 2**32), st.sampled_from(MODES), st.integers(2, 30), st.data())
def test_no_replay_accepted_random_schedules(
    seed: int, mode: str, n: int, data: st.DataObject
) -> None:
    total, _ = _run(mode, -1, False, seed, n)
    crash_at = data.draw(st.integers(0, total))
    _, accepted = _run(mode, crash_at, data.draw(st.booleans()), seed, n)
    assert max(accepted.values(), default=0) <= 1


def test_lease_mode_writes_once_per_lease() -> None:
    storage = CrashStorage(cheap=False)
    g = ReplayGuard(storage, lease=100, lease_ms=10_000)
    for seq in range(1, 1001):
        g.accept("s", seq, 5000)
    assert storage.writes == 10  # one write per 100 sequence numbers


def test_lease_zone_rejects_only_the_ambiguous_frames_after_a_crash() -> None:
    storage = CrashStorage(cheap=False)
    g = ReplayGuard(storage, size=64, lease=10, lease_ms=100)
    for seq in range(1, 6):
        g.accept("s", seq, 1000 + seq)
    window, zone_seq, zone_ts = decode_record(storage.get("replay/s") or b"")
    assert window.highest == 1 and (zone_seq, zone_ts) == (11, 1101)  # the first write
    reborn = ReplayGuard(storage, size=64, lease=10, lease_ms=100)  # a crash: no flush
    for seq in range(2, 6):  # accepted before, unrecorded: rejected by the zone
        with pytest.raises(ReplayError) as info:
            reborn.accept("s", seq, 1000 + seq)
        assert info.value.reason == "duplicate"
    reborn.accept("s", 6, 1101)  # sealed after the zone's time: certainly new
    reborn.accept("s", 11, 1020)  # above the zone's sequence numbers: new
    with pytest.raises(ReplayError):
        reborn.accept("s", 1, 1001)  # in the stored window


@pytest.mark.parametrize("backend", ["memory", "sqlite"])
def test_clean_shutdown_loses_nothing(backend: str, tmp_path: object) -> None:
    from pathlib import Path

    path = Path(str(tmp_path)) / "g.db"
    storage: MemoryStorage | SQLiteStorage = (
        MemoryStorage() if backend == "memory" else SQLiteStorage(path)
    )
    g = ReplayGuard(storage, size=64, lease=1000, lease_ms=100_000)
    for seq in (1, 2, 3, 5, 9):
        g.accept("s", seq, 7)
    if isinstance(storage, SQLiteStorage):
        storage.close()  # flushes the exact windows
        storage = SQLiteStorage(path)
    reborn = ReplayGuard(storage, size=64)
    for seq in (4, 6, 7, 8, 10):
        reborn.accept("s", seq, 7)
    for seq in (1, 2, 3, 5, 9):
        with pytest.raises(ReplayError):
            reborn.accept("s", seq, 7)
    if isinstance(storage, SQLiteStorage):
        storage.close()


def test_zone_survives_a_second_crash() -> None:
    """An exact write by the second incarnation keeps the zone it inherited."""
    storage = CrashStorage(cheap=False)
    g = ReplayGuard(storage, size=64, lease=10, lease_ms=100)
    for seq in range(1, 6):
        g.accept("s", seq, 1000)
    second = ReplayGuard(storage, size=64, lease=10, lease_ms=100)
    second.accept("s", 20, 2000)
    second.flush()
    third = ReplayGuard(storage, size=64)
    for seq in range(2, 6):
        with pytest.raises(ReplayError):
            third.accept("s", seq, 1000)


# ---------------------------------------------------------------------- sequences

KS = Keyset.generate(KeyKind.AES256_GCM)


def _seal_run(
    crash_at: int, after: bool, crash_seal: int = -1, n: int = 12
) -> tuple[int, list[int]]:
    """Seal ``n`` frames; crash at write ``crash_at`` or just after seal ``crash_seal``."""
    storage = CrashStorage(cheap=True, crash_at=crash_at, after=after)
    bob = SecureChannel(KS, MemoryStorage(), identity="bob")  # rejects a reused number

    def alice() -> SecureChannel:
        return SecureChannel(KS, storage, identity="alice", sequence_lease=3)

    a = alice()
    seqs: list[int] = []
    for i in range(n):
        try:
            frame = a.seal({"recipient": "bob"}, bytes([i]))
        except Crash:
            a = alice()
            continue
        if i == crash_seal:
            a = alice()
        seqs.append(bob.open(frame)[0]["sequence"])
    return storage.writes, seqs


def test_no_sequence_reused_across_a_crash_at_any_point() -> None:
    total, seqs = _seal_run(-1, False)
    assert seqs == list(range(1, 13))
    points = [(w, after, -1) for w in range(total) for after in (False, True)]
    points += [(-1, False, s) for s in range(12)]
    for crash_at, after, crash_seal in points:
        _, seqs = _seal_run(crash_at, after, crash_seal)
        assert len(seqs) == len(set(seqs)) and seqs == sorted(seqs), (crash_at, after)



def test_close_hooks_of_collected_guards_are_dropped(tmp_path: object) -> None:
    import gc
    from pathlib import Path

    storage = SQLiteStorage(Path(str(tmp_path)) / "h.db")
    for i in range(200):
        ReplayGuard(storage).accept(f"s{i}", 1, 5)  # each guard is garbage at once
    gc.collect()
    ReplayGuard(storage)
    assert len(storage._close_hooks) <= 2
    storage.close()
