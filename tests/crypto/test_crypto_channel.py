"""SecureChannel: sealed and MAC-only frames, replay, freshness, restarts, tampering."""

from __future__ import annotations

import contextlib
import random
import threading
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vsm_phoenix.crypto import (
    ChannelMode,
    KeyKind,
    Keyset,
    MemoryStorage,
    SecureChannel,
    SQLiteStorage,
    UnknownKeyError,
)
from vsm_phoenix.errors import (
    AuthenticationError,
    DecodeError,
    InvalidArgument,
    KeyExpiredError,
    ReplayError,
    TypeMismatch,
)

AEAD_KS = Keyset.generate(KeyKind.AES256_GCM)
MAC_KS = Keyset.generate(KeyKind.HMAC_SHA256)


class Clock:
    def __init__(self, now: float = 1_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def _pair(
    mode: ChannelMode, clock: Clock | None = None, **kw: object
) -> tuple[SecureChannel, SecureChannel, MemoryStorage]:
    ks = AEAD_KS if mode is ChannelMode.AEAD else MAC_KS
    clock = clock or Clock()
    receiver_storage = MemoryStorage()
    alice = SecureChannel(ks, MemoryStorage(), identity="alice", mode=mode, clock=clock, **kw)  # type: ignore[arg-type]
    bob = SecureChannel(ks, receiver_storage, identity="bob", mode=mode, clock=clock, **kw)  # type: ignore[arg-type]
    return alice, bob, receiver_storage


def _snapshot(storage: MemoryStorage) -> dict[str, bytes]:
    return dict(storage.items())


MODES = [ChannelMode.AEAD, ChannelMode.MAC]


@pytest.mark.parametrize("mode", MODES)
def test_round_trip_header_fields(mode: ChannelMode) -> None:
    alice, bob, _ = _pair(mode)
    frame = alice.seal({"recipient": "bob", "content_type": "x/y", "kind": "ping"}, b"hello")
    header, payload = bob.open(frame)
    assert payload == b"hello"
    assert header["sender"] == "alice" and header["recipient"] == "bob"
    assert header["content_type"] == "x/y" and header["kind"] == "ping"
    assert header["sequence"] == 1 and header["timestamp"] == 1_000_000_000
    assert header["key_id"] == alice.keyset.primary_id
    second, _ = bob.open(alice.seal({"recipient": "bob"}, b""))
    assert second["sequence"] == 2 and second["content_type"] == "application/octet-stream"
    assert (b"hello" in frame) is (mode is ChannelMode.MAC)


@pytest.mark.parametrize("mode", MODES)
@settings(max_examples=15, deadline=None)
@given(payload=st.binary(max_size=24), extra=st.text(max_size=6))
def test_every_bit_flip_rejected_and_changes_nothing(
    mode: ChannelMode, payload: bytes, extra: str
) -> None:
    alice, bob, storage = _pair(mode)
    frame = alice.seal({"recipient": "bob", "note": extra}, payload)
    before = _snapshot(storage)
    for bit in range(len(frame) * 8):
        bad = bytearray(frame)
        bad[bit // 8] ^= 1 << (bit % 8)
        # documented: the format byte gives DecodeError, everything else AuthenticationError
        with pytest.raises(DecodeError if bit < 8 else AuthenticationError):
            bob.open(bytes(bad))
    for n in range(len(frame)):
        with pytest.raises(DecodeError if n < 3 else AuthenticationError):
            bob.open(frame[:n])
    assert _snapshot(storage) == before
    assert bob.open(frame)[1] == payload  # the real message was not burnt


@pytest.mark.parametrize("mode", MODES)
def test_replay_rejected_also_after_restart(mode: ChannelMode, tmp_path: Path) -> None:
    ks = AEAD_KS if mode is ChannelMode.AEAD else MAC_KS
    clock = Clock()
    alice = SecureChannel(ks, MemoryStorage(), identity="alice", mode=mode, clock=clock)
    frames = [alice.seal({"recipient": "bob"}, bytes([i])) for i in range(10)]
    db = tmp_path / "bob.db"
    storage = SQLiteStorage(db)
    bob = SecureChannel(ks, storage, identity="bob", mode=mode, clock=clock)
    for f in frames[:6]:
        bob.open(f)
    for f in frames[:6]:
        with pytest.raises(ReplayError):
            bob.open(f)
    storage.close()
    storage = SQLiteStorage(db)
    bob = SecureChannel(ks, storage, identity="bob", mode=mode, clock=clock)
    for f in frames[:6]:
        with pytest.raises(ReplayError):
            bob.open(f)
    assert [bob.open(f)[1] for f in reversed(frames[6:])] == [bytes([i]) for i in (9, 8, 7, 6)]
    storage.close()


def test_sender_sequence_persists_across_restart() -> None:
    storage = MemoryStorage()
    alice = SecureChannel(AEAD_KS, storage, identity="alice", sequence_lease=4)
    bob = SecureChannel(AEAD_KS, MemoryStorage(), identity="bob")
    seqs = [bob.open(alice.seal({"recipient": "bob"}, b""))[0]["sequence"] for _ in range(6)]
    assert seqs == [1, 2, 3, 4, 5, 6]
    reborn = SecureChannel(AEAD_KS, storage, identity="alice", sequence_lease=4)
    after = [bob.open(reborn.seal({"recipient": "bob"}, b""))[0]["sequence"] for _ in range(3)]
    assert after[0] > 6 and after == sorted(after) and len(set(after)) == 3
    assert after[0] <= 6 + 4  # skips at most one lease


@settings(max_examples=20, deadline=None)
@given(st.integers(0, 2**32), st.integers(1, 150))
def test_out_of_order_within_window_accepted_exactly_once(seed: int, n: int) -> None:
    alice, bob, _ = _pair(ChannelMode.AEAD, window_size=256)
    frames = [alice.seal({"recipient": "bob"}, i.to_bytes(2, "big")) for i in range(n)]
    rnd = random.Random(seed)
    deliveries = frames + rnd.sample(frames, k=min(n, 20))
    rnd.shuffle(deliveries)
    accepted: list[bytes] = []
    for f in deliveries:
        with contextlib.suppress(ReplayError):
            accepted.append(bob.open(f)[1])
    assert sorted(accepted) == [i.to_bytes(2, "big") for i in range(n)]


def test_older_than_window_rejected() -> None:
    alice, bob, storage = _pair(ChannelMode.AEAD, window_size=64)
    frames = [alice.seal({"recipient": "bob"}, b"") for _ in range(100)]
    bob.open(frames[-1])
    bob.open(frames[-64])  # oldest inside the window
    before = _snapshot(storage)
    with pytest.raises(ReplayError, match="older"):
        bob.open(frames[-65])
    assert _snapshot(storage) == before


def test_freshness_bound_rejects_and_changes_nothing() -> None:
    clock = Clock()
    alice, bob, storage = _pair(ChannelMode.AEAD, clock, max_age=60.0, max_skew=5.0)
    frame = alice.seal({"recipient": "bob"}, b"x")
    before = _snapshot(storage)
    clock.now += 60.001
    with pytest.raises(ReplayError, match="stale"):
        bob.open(frame)
    clock.now -= 60.001 + 5.001
    with pytest.raises(ReplayError, match="future"):
        bob.open(frame)
    assert _snapshot(storage) == before
    clock.now += 5.001
    assert bob.open(frame)[1] == b"x"


def test_freshness_can_be_disabled() -> None:
    clock = Clock()
    alice, bob, _ = _pair(ChannelMode.MAC, clock, max_age=None, max_skew=None)
    frame = alice.seal({"recipient": "bob"}, b"x")
    clock.now += 10**6
    assert bob.open(frame)[1] == b"x"


def test_misaddressed_frame_rejected_without_state_change() -> None:
    alice, bob, storage = _pair(ChannelMode.AEAD)
    frame = alice.seal({"recipient": "carol"}, b"x")
    with pytest.raises(AuthenticationError, match="addressed"):
        bob.open(frame)
    assert _snapshot(storage) == {}


def test_mode_mismatch_is_decode_error() -> None:
    mac_alice, _, _ = _pair(ChannelMode.MAC)
    _, aead_bob, _ = _pair(ChannelMode.AEAD)
    with pytest.raises(DecodeError):
        aead_bob.open(mac_alice.seal({"recipient": "bob"}, b"x"))


def test_rotation_and_expiry_through_the_channel() -> None:
    clock = Clock(0.0)
    ks = Keyset.generate(KeyKind.AES256_GCM, expires_at=100.0)
    old_id = ks.primary_id
    alice = SecureChannel(ks, MemoryStorage(), identity="alice", clock=clock, max_age=None)
    bob = SecureChannel(ks, MemoryStorage(), identity="bob", clock=clock, max_age=None)
    old = [alice.seal({"recipient": "bob"}, b"old") for _ in range(3)]
    ks.rotate(now=0.0)
    new = alice.seal({"recipient": "bob"}, b"new")
    assert bob.open(new)[0]["key_id"] == ks.primary_id != old_id
    assert bob.open(old[0])[1] == b"old"
    ks.disable(old_id)
    with pytest.raises(UnknownKeyError):
        bob.open(old[1])
    ks.enable(old_id)
    clock.now = 100.0
    with pytest.raises(KeyExpiredError):
        bob.open(old[2])


def test_concurrent_open_of_one_frame_succeeds_once() -> None:
    alice, bob, _ = _pair(ChannelMode.AEAD)
    frames = [alice.seal({"recipient": "bob"}, b"") for _ in range(50)]
    wins: list[int] = []
    lock = threading.Lock()

    def work() -> None:
        for f in frames:
            try:
                header, _ = bob.open(f)
            except ReplayError:
                continue
            with lock:
                wins.append(header["sequence"])

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(wins) == list(range(1, 51))


def test_concurrent_seal_unique_sequences() -> None:
    alice, bob, _ = _pair(ChannelMode.AEAD)
    out: list[bytes] = []
    lock = threading.Lock()

    def work() -> None:
        mine = [alice.seal({"recipient": "bob"}, b"") for _ in range(100)]
        with lock:
            out.extend(mine)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    seqs = sorted(bob.open(f)[0]["sequence"] for f in out)
    assert seqs == list(range(1, 401))


@pytest.mark.parametrize(
    ("header", "error"),
    [
        ({}, InvalidArgument),
        ({"recipient": 3}, InvalidArgument),
        ({"recipient": "bob", "sequence": 5}, InvalidArgument),
        ({"recipient": "bob", "key_id": 5}, InvalidArgument),
        ({"recipient": "bob", "sender": "mallory"}, InvalidArgument),
        ({"recipient": "bob", "content_type": b"x"}, InvalidArgument),
        ({"recipient": "bob", "x": object()}, InvalidArgument),
        ({"recipient": "bob", 1: "x"}, TypeMismatch),
        ({"recipient": "bob", "x": "y" * 70000}, InvalidArgument),
    ],
)
def test_seal_rejects_bad_headers(header: dict[object, object], error: type[Exception]) -> None:
    alice, _, _ = _pair(ChannelMode.AEAD)
    with pytest.raises(error):
        alice.seal(header, b"")  # type: ignore[arg-type]


def test_seal_and_construct_validation() -> None:
    alice, _, _ = _pair(ChannelMode.AEAD)
    with pytest.raises(TypeMismatch):
        alice.seal({"recipient": "bob"}, "text")  # type: ignore[arg-type]
    with pytest.raises(TypeMismatch):
        alice.seal([("recipient", "bob")], b"")  # type: ignore[arg-type]
    assert alice.seal({"recipient": "bob", "sender": "alice"}, b"")
    with pytest.raises(InvalidArgument):
        SecureChannel(MAC_KS, MemoryStorage(), identity="a")
    with pytest.raises(InvalidArgument):
        SecureChannel(AEAD_KS, MemoryStorage(), identity="a", mode=ChannelMode.MAC)
    with pytest.raises(InvalidArgument):
        SecureChannel(AEAD_KS, MemoryStorage(), identity="")
    with pytest.raises(DecodeError):
        alice.open("frame")  # type: ignore[arg-type]


@pytest.mark.parametrize("mode", MODES)
@settings(max_examples=200, deadline=None)
@given(data=st.binary(max_size=120))
def test_hostile_frames_only_raise_documented_errors(mode: ChannelMode, data: bytes) -> None:
    _, bob, storage = _pair(mode)
    prefixed = bytes([mode.value]) + data
    for frame in (data, prefixed):
        with pytest.raises((DecodeError, AuthenticationError)):
            bob.open(frame)
    assert _snapshot(storage) == {}


def test_authentic_but_malformed_header_is_decode_error() -> None:
    import cbor2

    alice, bob, storage = _pair(ChannelMode.AEAD)
    aead = alice._aead
    assert aead is not None
    for header in (
        [1, 2],
        {"sender": "alice"},
        {
            "sender": "alice",
            "recipient": "bob",
            "content_type": "t",
            "sequence": -1,
            "timestamp": 0,
            "key_id": AEAD_KS.primary_id,
        },
    ):
        raw = cbor2.dumps(header, canonical=True)
        aad = bytes([0xA5]) + len(raw).to_bytes(2, "big") + raw
        with pytest.raises(DecodeError):
            bob.open(aad + aead.encrypt(b"", aad))
    good = {
        "sender": "alice",
        "recipient": "bob",
        "content_type": "t",
        "sequence": 1,
        "timestamp": 1_000_000_000,
        "key_id": AEAD_KS.primary_id,
    }
    raw = cbor2.dumps(good)  # not canonical: insertion order
    aad = bytes([0xA5]) + len(raw).to_bytes(2, "big") + raw
    with pytest.raises(DecodeError, match="canonical"):
        bob.open(aad + aead.encrypt(b"", aad))
    raw = cbor2.dumps({**good, "key_id": 7}, canonical=True)
    aad = bytes([0xA5]) + len(raw).to_bytes(2, "big") + raw
    with pytest.raises(AuthenticationError, match="different key"):
        bob.open(aad + aead.encrypt(b"", aad))
    assert _snapshot(storage) == {}


@pytest.mark.parametrize("backend", ["memory", "sqlite"])
def test_callers_rolled_back_transaction_undoes_the_record(backend: str, tmp_path: Path) -> None:
    storage = MemoryStorage() if backend == "memory" else SQLiteStorage(tmp_path / "t.db")
    alice = SecureChannel(AEAD_KS, MemoryStorage(), identity="alice")
    bob = SecureChannel(AEAD_KS, storage, identity="bob")
    frame = alice.seal({"recipient": "bob"}, b"x")

    class StepFailed(Exception):
        pass

    with pytest.raises(StepFailed), storage.transaction():
        bob.open(frame)
        raise StepFailed  # the application failed to apply the message
    assert bob.open(frame)[1] == b"x"  # not burnt: redelivery is accepted once
    with pytest.raises(ReplayError):
        bob.open(frame)


def test_rolled_back_sequence_lease_is_rewritten() -> None:
    storage = MemoryStorage()
    alice = SecureChannel(AEAD_KS, storage, identity="alice", sequence_lease=2)
    bob = SecureChannel(AEAD_KS, MemoryStorage(), identity="bob")
    seqs = []
    with pytest.raises(RuntimeError), storage.transaction():
        seqs += [bob.open(alice.seal({"recipient": "bob"}, b""))[0]["sequence"] for _ in range(3)]
        raise RuntimeError
    seqs.append(bob.open(alice.seal({"recipient": "bob"}, b""))[0]["sequence"])
    reborn = SecureChannel(AEAD_KS, storage, identity="alice", sequence_lease=2)
    seqs.append(bob.open(reborn.seal({"recipient": "bob"}, b""))[0]["sequence"])
    assert seqs == sorted(set(seqs))  # never reused, even after the rollback and restart


def test_threads_opening_inside_transactions_do_not_deadlock(tmp_path: Path) -> None:
    storage = SQLiteStorage(tmp_path / "d.db", synchronous="NORMAL")
    alice = SecureChannel(AEAD_KS, MemoryStorage(), identity="alice")
    bob = SecureChannel(AEAD_KS, storage, identity="bob")
    frames = [alice.seal({"recipient": "bob"}, b"") for _ in range(60)]
    wins: list[int] = []
    lock = threading.Lock()

    def work(use_txn: bool) -> None:
        for f in frames:
            try:
                if use_txn:
                    with storage.transaction():
                        header, _ = bob.open(f)
                else:
                    header, _ = bob.open(f)
            except ReplayError:
                continue
            with lock:
                wins.append(header["sequence"])

    threads = [threading.Thread(target=work, args=(i % 2 == 0,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert not any(t.is_alive() for t in threads)
    assert sorted(wins) == list(range(1, 61))
    storage.close()


@pytest.mark.parametrize("mode", MODES)
def test_open_many_matches_open_frame_by_frame(mode: ChannelMode) -> None:
    alice, bob, storage = _pair(mode)
    _, twin, twin_storage = _pair(mode)
    frames = [alice.seal({"recipient": "bob"}, bytes([i])) for i in range(6)]
    forged = bytearray(frames[2])
    forged[-1] ^= 1
    other = alice.seal({"recipient": "carol"}, b"x")
    batch = [frames[0], frames[1], bytes(forged), frames[1], b"\x00", other, frames[3],
             frames[2], "not bytes"]
    many = bob.open_many(batch, sender="alice")  # type: ignore[arg-type]
    one: list[object] = []
    for frame in batch:
        try:
            one.append(twin.open(frame, sender="alice"))  # type: ignore[arg-type]
        except (DecodeError, AuthenticationError, KeyExpiredError, ReplayError) as exc:
            one.append(exc)
    assert [type(r) for r in many] == [type(r) for r in one]
    assert [r for r in many if isinstance(r, tuple)] == [r for r in one if isinstance(r, tuple)]
    assert isinstance(many[3], ReplayError) and many[3].reason == "duplicate"
    assert _snapshot(storage) == _snapshot(twin_storage)
    assert isinstance(bob.open_many([frames[4]], sender="mallory")[0], AuthenticationError)
    opened = bob.open_many([frames[4]], sender="alice")[0]  # not burnt by the refusal
    assert isinstance(opened, tuple) and opened[1] == bytes([4])


def test_open_many_in_a_transaction_writes_each_sender_once(tmp_path: Path) -> None:
    writes: list[str] = []

    class Counting(SQLiteStorage):
        __slots__ = ()

        def put(self, key: str, value: bytes) -> None:
            writes.append(key)
            super().put(key, value)

    storage = Counting(tmp_path / "m.db", synchronous="NORMAL")
    alice = SecureChannel(AEAD_KS, MemoryStorage(), identity="alice")
    carol = SecureChannel(AEAD_KS, MemoryStorage(), identity="carol")
    bob = SecureChannel(AEAD_KS, storage, identity="bob")
    frames = [c.seal({"recipient": "bob"}, b"p") for _ in range(50) for c in (alice, carol)]
    with storage.transaction():
        results = bob.open_many(frames)
    assert all(isinstance(r, tuple) for r in results)
    assert sorted(k.rsplit("/", 1)[-1] for k in writes) == ["alice", "carol"]
    with pytest.raises(RuntimeError), storage.transaction():  # rolled back: not recorded
        assert all(isinstance(r, ReplayError) for r in bob.open_many(frames))
        late = alice.seal({"recipient": "bob"}, b"late")
        assert isinstance(bob.open_many([late])[0], tuple)
        raise RuntimeError
    assert isinstance(bob.open(late), tuple)  # the rollback forgot it: accepted once
    storage.close()
    reopened = SQLiteStorage(tmp_path / "m.db")
    reborn = SecureChannel(AEAD_KS, reopened, identity="bob")
    assert all(isinstance(r, ReplayError) for r in reborn.open_many([*frames, late]))
    reopened.close()
