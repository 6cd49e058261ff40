"""KeysetAead: round trips, tamper rejection, rotation, expiry, nonce budget."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vsm_phoenix.crypto import (
    KeyKind,
    Keyset,
    KeysetAead,
    KeyStatus,
    MemoryStorage,
    SQLiteStorage,
    UnknownKeyError,
)
from vsm_phoenix.crypto.aead import NONCE_SIZE, OVERHEAD
from vsm_phoenix.errors import (
    AuthenticationError,
    CapacityError,
    DecodeError,
    InvalidArgument,
    KeyExpiredError,
    KeyNotFoundError,
    TypeMismatch,
)

KEYSET = Keyset.generate(KeyKind.AES256_GCM)
AEAD = KeysetAead(KEYSET)


@settings(max_examples=100, deadline=None)
@given(st.binary(max_size=300), st.binary(max_size=40))
def test_round_trip_and_layout(payload: bytes, aad: bytes) -> None:
    ct = AEAD.encrypt(payload, aad)
    assert len(ct) == len(payload) + OVERHEAD
    assert ct[0] == 1 and int.from_bytes(ct[1:5], "big") == KEYSET.primary_id
    assert KeysetAead.key_id_of(ct) == KEYSET.primary_id
    assert AEAD.decrypt(ct, aad) == payload


@settings(max_examples=30, deadline=None)
@given(st.binary(max_size=48), st.binary(max_size=16))
def test_every_single_bit_flip_is_rejected(payload: bytes, aad: bytes) -> None:
    ct = AEAD.encrypt(payload, aad)
    for bit in range(len(ct) * 8):
        bad = bytearray(ct)
        bad[bit // 8] ^= 1 << (bit % 8)
        with pytest.raises(AuthenticationError):
            AEAD.decrypt(bytes(bad), aad)


@settings(max_examples=30, deadline=None)
@given(st.binary(max_size=48))
def test_every_truncation_and_extension_is_rejected(payload: bytes) -> None:
    ct = AEAD.encrypt(payload)
    for n in range(len(ct)):
        with pytest.raises(AuthenticationError):
            AEAD.decrypt(ct[:n])
    with pytest.raises(AuthenticationError):
        AEAD.decrypt(ct + b"\x00")


def test_wrong_associated_data_is_rejected() -> None:
    ct = AEAD.encrypt(b"payload", b"aad")
    with pytest.raises(AuthenticationError):
        AEAD.decrypt(ct, b"aae")


def test_nonces_are_fresh() -> None:
    ct1, ct2 = AEAD.encrypt(b"same"), AEAD.encrypt(b"same")
    assert ct1[5 : 5 + NONCE_SIZE] != ct2[5 : 5 + NONCE_SIZE]


def test_unknown_key_id_is_both_auth_and_not_found() -> None:
    other = KeysetAead(Keyset.generate(KeyKind.AES256_GCM))
    with pytest.raises(UnknownKeyError) as info:
        AEAD.decrypt(other.encrypt(b"x"))
    assert isinstance(info.value, AuthenticationError)
    assert isinstance(info.value, KeyNotFoundError)


def test_rotation_keeps_old_messages_until_disabled() -> None:
    ks = Keyset.generate(KeyKind.AES256_GCM)
    aead = KeysetAead(ks)
    old_id = ks.primary_id
    old = aead.encrypt(b"old")
    new_id = ks.rotate(now=0.0)
    assert ks.primary_id == new_id != old_id
    new = aead.encrypt(b"new")
    assert KeysetAead.key_id_of(new) == new_id
    assert aead.decrypt(old) == b"old"
    ks.disable(old_id)
    with pytest.raises(UnknownKeyError):
        aead.decrypt(old)
    assert aead.decrypt(new) == b"new"
    ks.enable(old_id)
    assert aead.decrypt(old) == b"old"
    ks.destroy(old_id)
    assert ks.key(old_id).material is None
    assert ks.key(old_id).status is KeyStatus.DESTROYED
    with pytest.raises(UnknownKeyError):
        aead.decrypt(old)
    with pytest.raises(InvalidArgument):
        ks.enable(old_id)


def test_expired_key_opens_and_seals_nothing() -> None:
    now = [100.0]
    ks = Keyset.generate(KeyKind.AES256_GCM, expires_at=200.0)
    aead = KeysetAead(ks, clock=lambda: now[0])
    ct = aead.encrypt(b"x")
    now[0] = 200.0
    with pytest.raises(KeyExpiredError):
        aead.decrypt(ct)
    with pytest.raises(KeyExpiredError):
        aead.encrypt(b"y")
    ks.rotate(now=now[0], expires_at=300.0)
    assert aead.decrypt(aead.encrypt(b"z")) == b"z"
    with pytest.raises(KeyExpiredError):
        aead.decrypt(ct)


def test_soft_limit_rotates_automatically() -> None:
    ks = Keyset.generate(KeyKind.AES256_GCM)
    rotated: list[int] = []
    aead = KeysetAead(ks, soft_limit=10, lease=3, on_rotate=lambda k, kid: rotated.append(kid))
    first = ks.primary_id
    cts = [aead.encrypt(bytes([i])) for i in range(25)]
    ids = [KeysetAead.key_id_of(c) for c in cts]
    assert ids[:10] == [first] * 10
    assert len(set(ids)) == 3 and rotated == [ids[10], ids[20]]
    assert all(aead.usage(k) <= 10 for k in set(ids))
    assert [aead.decrypt(c) for c in cts] == [bytes([i]) for i in range(25)]


def test_hard_limit_raises_without_auto_rotation() -> None:
    ks = Keyset.generate(KeyKind.AES256_GCM)
    aead = KeysetAead(ks, soft_limit=5, hard_limit=5, auto_rotate=False)
    for _ in range(5):
        aead.encrypt(b"")
    with pytest.raises(CapacityError):
        aead.encrypt(b"")
    assert aead.usage(ks.primary_id) == 5


@pytest.mark.parametrize("backend", ["memory", "sqlite"])
def test_usage_counter_survives_restart(backend: str, tmp_path: Path) -> None:
    storage = MemoryStorage() if backend == "memory" else SQLiteStorage(tmp_path / "s.db")
    ks = Keyset.generate(KeyKind.AES256_GCM)
    kid = ks.primary_id
    aead = KeysetAead(ks, storage, hard_limit=7, soft_limit=7, lease=2, auto_rotate=False)
    for _ in range(3):
        aead.encrypt(b"")
    assert aead.usage(kid) == 3
    if isinstance(storage, SQLiteStorage):
        storage.close()
        storage = SQLiteStorage(tmp_path / "s.db")
    # restart: the leased-but-unused invocation (3 of 0..3) is counted as used
    again = KeysetAead(ks, storage, hard_limit=7, soft_limit=7, lease=2, auto_rotate=False)
    assert again.usage(kid) == 4
    again.encrypt(b"")
    again.encrypt(b"")
    again.encrypt(b"")
    with pytest.raises(CapacityError):
        again.encrypt(b"")
    if isinstance(storage, SQLiteStorage):
        storage.close()


def test_corrupt_usage_counter_is_decode_error() -> None:
    storage = MemoryStorage()
    ks = Keyset.generate(KeyKind.AES256_GCM)
    storage.put(f"aead/usage/{ks.primary_id:08x}", b"\x01")
    with pytest.raises(DecodeError):
        KeysetAead(ks, storage).encrypt(b"")


def test_threads_never_share_a_nonce() -> None:
    ks = Keyset.generate(KeyKind.AES256_GCM)
    aead = KeysetAead(ks, lease=7)
    per_thread, threads = 400, 8
    results: list[list[bytes]] = [[] for _ in range(threads)]

    def work(i: int) -> None:
        results[i] = [aead.encrypt(b"m") for _ in range(per_thread)]

    workers = [threading.Thread(target=work, args=(i,)) for i in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    nonces = [ct[5 : 5 + NONCE_SIZE] for r in results for ct in r]
    assert len(nonces) == per_thread * threads == len(set(nonces))
    assert aead.usage(ks.primary_id) == per_thread * threads


def test_threads_with_rotation_stay_within_budget() -> None:
    ks = Keyset.generate(KeyKind.AES256_GCM)
    aead = KeysetAead(ks, soft_limit=50, lease=4)
    cts: list[bytes] = []
    lock = threading.Lock()

    def work() -> None:
        mine = [aead.encrypt(b"m") for _ in range(100)]
        with lock:
            cts.extend(mine)

    workers = [threading.Thread(target=work) for _ in range(4)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    counts: dict[int, int] = {}
    for ct in cts:
        counts[KeysetAead.key_id_of(ct)] = counts.get(KeysetAead.key_id_of(ct), 0) + 1
    assert sum(counts.values()) == 400 and all(c <= 50 for c in counts.values())
    assert all(aead.decrypt(ct) == b"m" for ct in cts)


def test_constructor_validation() -> None:
    with pytest.raises(InvalidArgument):
        KeysetAead(Keyset.generate(KeyKind.HMAC_SHA256))
    with pytest.raises(TypeMismatch):
        KeysetAead("not a keyset")  # type: ignore[arg-type]
    with pytest.raises(InvalidArgument):
        KeysetAead(KEYSET, soft_limit=2**33)
    with pytest.raises(InvalidArgument):
        KeysetAead(KEYSET, lease=0)
    with pytest.raises(TypeMismatch):
        AEAD.decrypt("text")  # type: ignore[arg-type]
    with pytest.raises(DecodeError):
        KeysetAead.key_id_of(b"\x00\x00")


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=80), st.booleans())
def test_hostile_ciphertexts_only_raise_authentication_error(data: bytes, keyed: bool) -> None:
    # with ``keyed`` the bytes carry the prefix of a key we hold, so they reach AES-GCM
    ct = KEYSET.primary.prefix + data if keyed else data
    before = AEAD.usage(KEYSET.primary_id)
    with pytest.raises(AuthenticationError):
        AEAD.decrypt(ct)
    assert AEAD.usage(KEYSET.primary_id) == before
