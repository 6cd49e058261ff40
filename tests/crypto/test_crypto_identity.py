"""Identities, the signed roster and its trust store, signed batches, credentials, and
Ed25519 public-key validation (issue 10, "authenticate who, not only that")."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from hypothesis import given, settings
from hypothesis import strategies as st

from vsm_phoenix import cbor
from vsm_phoenix.crypto import MemoryStorage, SecureChannel, SigningKey, VerifyKey
from vsm_phoenix.crypto.batch import MAX_BATCH_FRAMES, open_batch, seal_batch
from vsm_phoenix.crypto.credentials import ClusterSecrets, Credentials
from vsm_phoenix.crypto.identity import (
    Authority,
    Identity,
    Roster,
    RosterBook,
    check_principal,
)
from vsm_phoenix.crypto.signature import _SMALL_ORDER_Y
from vsm_phoenix.errors import (
    AuthenticationError,
    DecodeError,
    InvalidArgument,
    PermissionDenied,
    ReplayError,
    TypeMismatch,
)

_P = 2**255 - 19


def _encodings_of_small_order_points() -> list[bytes]:
    out = []
    for y in sorted(_SMALL_ORDER_Y):
        for sign in (0, 1):
            enc = bytearray(y.to_bytes(32, "little"))
            enc[31] |= sign << 7
            out.append(bytes(enc))
    return out


@pytest.mark.parametrize("raw", _encodings_of_small_order_points())
def test_small_order_public_keys_are_refused(raw: bytes) -> None:
    with pytest.raises(DecodeError, match=r"small order|canonical"):
        VerifyKey.from_bytes(raw)


def test_the_identity_key_really_is_dangerous_and_refused() -> None:
    """The issue's example: under ``01 00…00`` one forged signature verifies every
    message with OpenSSL -- exactly why it must never enter a roster."""
    raw = b"\x01" + bytes(31)
    forged = raw + bytes(32)  # R = identity, S = 0
    Ed25519PublicKey.from_public_bytes(raw).verify(forged, b"any message at all")
    with pytest.raises(DecodeError):
        VerifyKey.from_bytes(raw)


@pytest.mark.parametrize("y", [_P, _P + 1, _P + 5, 2**255 - 1])
def test_non_canonical_encodings_are_refused(y: int) -> None:
    with pytest.raises(DecodeError, match="canonical"):
        VerifyKey.from_bytes(y.to_bytes(32, "little"))


@settings(max_examples=200)
@given(st.binary(min_size=32, max_size=32))
def test_any_32_bytes_give_a_key_or_decode_error(raw: bytes) -> None:
    try:
        key = VerifyKey.from_bytes(raw)
    except DecodeError:
        return
    assert key.to_bytes() == raw


def test_principal_ids() -> None:
    assert check_principal("n1") == "n1"
    for bad in ("", "a#b", "a b", "x" * 129, "tab\t", "\x00"):
        with pytest.raises(InvalidArgument):
            check_principal(bad)
    with pytest.raises(TypeMismatch):
        check_principal(5)


def test_identity_files_are_private_and_round_trip(tmp_path: Path) -> None:
    ident = Identity.generate("n1")
    path = tmp_path / "n1.identity.json"
    ident.save(path)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    again = Identity.load(path)
    assert again.principal == "n1" and again.verify_key == ident.verify_key
    assert "private" not in repr(ident) and ident.signing_key.to_bytes().hex() not in repr(ident)
    text = path.read_text().replace('"n1"', '"n2"', 1)
    assert Identity.from_json(text).principal == "n2"  # the principal is just a name...
    other = Identity.generate("n1").to_json()
    mixed = text.replace(ident.to_json().split('"public_key": ')[1].split(",")[0],
                         other.split('"public_key": ')[1].split(",")[0])
    with pytest.raises(DecodeError, match="does not match"):  # ...but the keys must agree
        Identity.from_json(mixed)
    for junk in ("", "{}", "[1]", '{"type": "vsm-phoenix/identity", "version": 2}',
                 "9" * 5000, "[" * 100_000):
        with pytest.raises(DecodeError):
            Identity.from_json(junk)


def _roster(serial: int = 1, authority: Authority | None = None) -> tuple[Authority, Roster]:
    authority = authority or Authority.generate()
    members = {
        "n1": (Identity.generate("n1").verify_key, ["peer"]),
        "ops": (Identity.generate("ops").verify_key, ["admin"]),
        "ro": (Identity.generate("ro").verify_key, ["read"]),
    }
    return authority, authority.issue("c", members, serial=serial)


def test_roster_round_trips_and_answers_roles() -> None:
    _, roster = _roster()
    again = Roster.from_bytes(roster.to_bytes())
    assert again == roster and again.serial == 1 and again.cluster == "c"
    assert roster.member("ops#abc") is roster.members["ops"]  # a session of ops
    roster.require("ops", "write")  # admin implies write and read
    roster.require("ro", "read")
    with pytest.raises(PermissionDenied, match="lacks the 'write' role"):
        roster.require("ro", "write")
    with pytest.raises(PermissionDenied):
        roster.require("n1", "read")  # peers are not clients
    with pytest.raises(AuthenticationError, match="not in the roster"):
        roster.member("mallory")
    assert roster.principals("read") == ["ops", "ro"]


def test_a_tampered_roster_is_refused_before_its_body_is_read() -> None:
    _, roster = _roster()
    raw = bytearray(roster.to_bytes())
    for i in range(0, len(raw), 7):
        bad = bytearray(raw)
        bad[i] ^= 0x40
        with pytest.raises((DecodeError, AuthenticationError)):
            Roster.from_bytes(bytes(bad))


@settings(max_examples=200)
@given(st.binary(max_size=300))
def test_roster_decoding_is_total(data: bytes) -> None:
    # random bytes never carry a valid signature: always one of the documented errors
    with pytest.raises((DecodeError, AuthenticationError)):
        Roster.from_bytes(data)


def test_roster_book_adopts_successors_only(tmp_path: Path) -> None:
    authority, r1 = _roster()
    store = MemoryStorage()
    book = RosterBook(r1, storage=store)
    assert book.adopt(r1) is False  # already held
    new_authority = Authority.generate()
    members = {p: (m.verify_key, m.roles) for p, m in r1.members.items()}
    r2 = authority.issue("c", members, serial=2,
                         authorities=[authority.verify_key, new_authority.verify_key])
    assert book.adopt(r2.to_bytes()) is True and book.roster.serial == 2
    # authority handed over: the new key may sign serial 3, a stranger may not
    r3 = new_authority.issue("c", members, serial=3, authorities=[new_authority.verify_key])
    stranger = Authority.generate().issue("c", members, serial=4)
    with pytest.raises(AuthenticationError, match="not signed by a current authority"):
        book.adopt(stranger)
    assert book.adopt(r3) and book.roster.serial == 3
    for bad, why in ((r1, "older"), (authority.issue("c", members, serial=3), "different"),
                     (new_authority.issue("other", members, serial=9), "cluster")):
        with pytest.raises(AuthenticationError, match=why):
            book.adopt(bad)
        assert book.roster == r3  # unchanged
    # restart with the old file: the persisted roster wins (no rollback)
    assert RosterBook(r1, storage=store).roster == r3
    # a roster must be signed by one of its own authorities (or a pinned key)
    with pytest.raises(AuthenticationError):
        RosterBook(stranger, pinned=[authority.verify_key])


def test_signed_batches_authenticate_the_whole_body() -> None:
    authority, roster = _roster()
    ident = Identity.generate("n1")
    members = {p: (m.verify_key, m.roles) for p, m in roster.members.items()}
    members["n1"] = (ident.verify_key, ["peer"])
    roster = authority.issue("c", members)
    body = seal_batch(ident, "c", [b"a", b"bc"])
    opened = open_batch(body, roster)
    assert opened.signer == "n1" and opened.frames == [b"a", b"bc"]
    assert opened.member.allows("peer")
    with pytest.raises(AuthenticationError, match="not in the roster"):
        open_batch(seal_batch(Identity.generate("x"), "c", [b"a"]), roster)
    with pytest.raises(AuthenticationError, match="does not verify"):
        open_batch(seal_batch(Identity.generate("n1"), "c", [b"a"]), roster)  # wrong key
    with pytest.raises(AuthenticationError):
        open_batch(seal_batch(ident, "other-cluster", [b"a"]), roster)
    for i in range(len(body)):
        bad = bytearray(body)
        bad[i] ^= 0x01
        with pytest.raises((DecodeError, AuthenticationError)):
            open_batch(bytes(bad), roster)
    with pytest.raises(InvalidArgument):
        seal_batch(ident, "c", [])
    with pytest.raises(InvalidArgument):
        seal_batch(ident, "c", [b"x"] * (MAX_BATCH_FRAMES + 1))


@settings(max_examples=300)
@given(st.binary(max_size=400))
def test_open_batch_is_total(data: bytes) -> None:
    _, roster = _roster()
    with pytest.raises((DecodeError, AuthenticationError)):
        open_batch(data, roster)


def test_open_batch_checks_the_signature_before_parsing_the_frames() -> None:
    """An unauthenticated body pays for one outer parse and one signature check: the
    payload is never parsed, however many frames it claims."""
    _, roster = _roster()
    payload = cbor.dumps([b"x"] * 50_000)
    body = cbor.dumps([1, "n1", payload, bytes(64)])
    with pytest.raises(AuthenticationError):
        open_batch(body, roster)
    junk = cbor.dumps([1, "n1", b"\xff" * 100, bytes(64)])  # payload is not even CBOR
    with pytest.raises(AuthenticationError):
        open_batch(junk, roster)


def test_channel_refuses_frames_sealed_in_another_principals_name() -> None:
    secrets = ClusterSecrets.create("c", nodes=["a", "b", "c"])
    store_c = MemoryStorage()
    c = SecureChannel(secrets.keyset, store_c, identity="c")
    seq_store = MemoryStorage()
    seq_store.put("channel/1:b/3:seq", (2**64 - 100).to_bytes(8, "big"))
    as_b = SecureChannel(secrets.keyset, seq_store, identity="b")
    frame = as_b.seal({"recipient": "c"}, b"x")
    before = dict(store_c.items())
    with pytest.raises(AuthenticationError, match="claims sender 'b' but was sent by 'a'"):
        c.open(frame, sender="a")
    assert dict(store_c.items()) == before  # nothing recorded: b's numbers not burnt
    real = SecureChannel(secrets.keyset, MemoryStorage(), identity="b").seal(
        {"recipient": "c"}, b"y")
    assert c.open(real, sender="b")[1] == b"y"
    with pytest.raises(ReplayError) as err:  # even b itself may not jump that far
        c.open(frame, sender="b")
    assert err.value.reason == "jump"
    session = SecureChannel(secrets.keyset, MemoryStorage(), identity="b#s1").seal(
        {"recipient": "c"}, b"z")
    assert c.open(session, sender="b")[1] == b"z"  # a session of b
    topic = SecureChannel(secrets.keyset, MemoryStorage(), identity="a").seal(
        {"recipient": "topic:t"}, b"t")
    with pytest.raises(AuthenticationError, match="addressed to"):
        c.open(topic, sender="a")
    assert c.open(topic, sender="a", recipient="topic:t")[1] == b"t"


def test_operators_can_reset_one_senders_window() -> None:
    secrets = ClusterSecrets.create("c", nodes=["a", "b"])
    b = SecureChannel(secrets.keyset, MemoryStorage(), identity="b")
    a_store = MemoryStorage()
    a1 = SecureChannel(secrets.keyset, a_store, identity="a")
    for _ in range(3):
        b.open(a1.seal({"recipient": "b"}, b"x"), sender="a")
    assert b.replay_guard.highest("a") == 3 and b.replay_guard.senders() == ["a"]
    # a loses its disk and starts counting from 1 again: refused until the reset
    a2 = SecureChannel(secrets.keyset, MemoryStorage(), identity="a")
    with pytest.raises(ReplayError):
        b.open(a2.seal({"recipient": "b"}, b"x"), sender="a")
    b.replay_guard.reset("a")
    assert b.replay_guard.highest("a") == -1
    b.open(a2.seal({"recipient": "b"}, b"x"), sender="a")


def test_credentials_files_and_their_checks(tmp_path: Path) -> None:
    secrets = ClusterSecrets.create("c", nodes=["n1", "n2"], clients={"ops": ["admin"]})
    d = secrets.write(tmp_path / "keys")
    for name in ("keyset.json", "authority.json", "n1.identity.json", "ops.identity.json"):
        assert stat.S_IMODE(os.stat(d / name).st_mode) == 0o600
    creds = Credentials.from_dir(d, "n1")
    assert creds.cluster == "c" and creds.principal == "n1"
    with pytest.raises(InvalidArgument, match="another public key"):
        Credentials(secrets.keyset, Identity.generate("n1"), secrets.roster)
    with pytest.raises(InvalidArgument, match="not in the roster"):
        Credentials(secrets.keyset, Identity.generate("n9"), secrets.roster)
    with pytest.raises(OSError):
        Credentials.from_dir(d, "n9")
    r2 = secrets.reissue(add={"n3": ["peer"]}, remove=["n2"], rekey=["n1"])
    assert r2.serial == 2 and r2.principals() == ["n1", "n3", "ops"]
    assert secrets.credentials("n1").identity.verify_key == r2.members["n1"].verify_key
    with pytest.raises(InvalidArgument):
        ClusterSecrets.create("c", nodes=["x"], clients={"x": ["read"]})


def test_signing_keys_never_show_their_secret() -> None:
    key = SigningKey.generate()
    assert key.to_bytes().hex() not in repr(key)
    assert repr(Authority(key)).startswith("Authority(public=")
