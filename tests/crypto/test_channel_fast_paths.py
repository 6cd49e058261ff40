"""The channel's per-shape fast paths (module doc of ``vsm_phoenix.crypto.channel``,
"Cost") against the full encode / decode they replace.

* seal: a header whose shape is remembered must produce exactly the bytes of the full
  canonical encoding (a cold channel reads it back; the bytes are canonical CBOR);
* open: for *any* authentic header bytes -- a genuine header whose two number slots,
  widths, middle or tail were tampered with before sealing -- a channel that knows the
  genuine shape answers exactly what a channel that never saw it answers (the same
  header, or the same error type), and a refused frame changes no state;
* the replay guard's exact write per accept on the memory store equals the record of
  the plain window after every accept.
"""

from __future__ import annotations

import random
from typing import Any

import cbor2
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vsm_phoenix import cbor
from vsm_phoenix.crypto import (
    ChannelMode,
    KeyKind,
    Keyset,
    MemoryStorage,
    ReplayGuard,
    ReplayWindow,
    SecureChannel,
)
from vsm_phoenix.crypto.replay import decode_record
from vsm_phoenix.errors import (
    AuthenticationError,
    DecodeError,
    KeyExpiredError,
    ReplayError,
)

KS = {ChannelMode.AEAD: Keyset.generate(KeyKind.AES256_GCM),
      ChannelMode.MAC: Keyset.generate(KeyKind.HMAC_SHA256)}
MODES = list(KS)
NOW = 1_800_000_000.0  # timestamps above 2**32 ms: the 9-byte slot


class Clock:
    def __init__(self, now: float = NOW) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def channel(name: str, mode: ChannelMode, clock: Clock | None = None,
            storage: MemoryStorage | None = None) -> SecureChannel:
    return SecureChannel(KS[mode], storage if storage is not None else MemoryStorage(),
                         identity=name, mode=mode, clock=clock or Clock(), max_age=None,
                         max_skew=None)


# Header names of every canonical-order position: shorter than "key_id", between the
# auto fields, and longer than all of them.
NAMES = st.sampled_from(["a", "env", "kind", "z_name", "seq_no", "priority", "reply_to",
                         "session_id", "correlation", "a_very_long_field_name"])
VALUES = st.one_of(st.text(max_size=12), st.binary(max_size=12))
HEADERS = st.dictionaries(NAMES, VALUES, max_size=4)


@pytest.mark.parametrize("mode", MODES)
@settings(max_examples=60, deadline=None)
@given(extra=HEADERS, content_type=st.one_of(st.none(), st.text(max_size=8)),
       seqs=st.lists(st.sampled_from([0, 1, 23, 24, 255, 256, 65535, 65536, 2**32 - 1,
                                      2**32, 2**40 - 1]), min_size=1, max_size=4),
       clock_ms=st.sampled_from([0, 23, 1_000_000_000, 2**32 - 1, 2**32, 1_800_000_000_000]))
def test_remembered_seal_writes_the_full_canonical_header(
    mode: ChannelMode, extra: dict[str, Any], content_type: str | None, seqs: list[int],
    clock_ms: int,
) -> None:
    clock = Clock(clock_ms / 1000)
    alice = channel("alice", mode, clock)
    header: dict[str, Any] = {"recipient": "bob", **extra}
    if content_type is not None:
        header["content_type"] = content_type
    for seq in sorted(set(seqs)):
        alice._next_seq, alice._reserved_seq = seq, seq + 1  # sequence slot of each width
        frame = alice.seal(header, b"payload")
        end = 3 + int.from_bytes(frame[1:3], "big")
        raw = frame[3:end]
        decoded = cbor.loads(raw, wire=True)  # strict: canonical, or DecodeError
        assert raw == cbor2.dumps(decoded, canonical=True)
        assert decoded["sequence"] == seq and decoded["timestamp"] == clock_ms
        assert {k: v for k, v in decoded.items() if k in extra} == extra
        cold = channel("bob", mode, clock)
        opened, payload = cold.open(frame)
        assert opened == decoded and payload == b"payload"
    assert len(alice._templates) == 1  # remembered, and used for the later seals


def _uint(n: int, width: int) -> bytes:
    """An unsigned integer head of ``width`` bytes (possibly not the shortest)."""
    if width == 1:
        return bytes((n,))
    info = {2: 24, 3: 25, 5: 26, 9: 27}[width]
    return bytes((info,)) + n.to_bytes(width - 1, "big")


def _authentic(mode: ChannelMode, raw: bytes) -> bytes:
    """A frame sealed under the cluster key around arbitrary header bytes ``raw``."""
    aad = bytes((mode.value,)) + len(raw).to_bytes(2, "big") + raw
    ks = KS[mode]
    if mode is ChannelMode.AEAD:
        from vsm_phoenix.crypto import KeysetAead

        return aad + KeysetAead(ks, MemoryStorage()).encrypt(b"body", aad)
    from vsm_phoenix.crypto import KeysetMac

    return aad + KeysetMac(ks).compute(aad + b"body") + b"body"


def _outcome(ch: SecureChannel, frame: bytes) -> object:
    try:
        return ch.open(frame)
    except (DecodeError, AuthenticationError, KeyExpiredError, ReplayError) as exc:
        return type(exc)


def _genuine_pieces(mode: ChannelMode) -> tuple[dict[str, Any], list[bytes]]:
    """A genuine header and its canonical encoding split around its two slots."""
    header = {"content_type": "t", "env": b"e", "key_id": KS[mode].primary_id,
              "recipient": "bob", "sender": "alice", "sequence": 0, "timestamp": 0}
    marker_seq, marker_ts = 0xDEADBEEF01, 0xFEEDFACE02
    raw = cbor2.dumps({**header, "sequence": marker_seq, "timestamp": marker_ts},
                      canonical=True)
    s_enc, t_enc = cbor2.dumps(marker_seq), cbor2.dumps(marker_ts)
    head, rest = raw.split(s_enc)
    middle, tail = rest.split(t_enc)
    return header, [head, middle, tail]


@pytest.mark.parametrize("mode", MODES)
@settings(max_examples=150, deadline=None)
@given(seq=st.integers(0, 2**64 - 1), ts=st.integers(0, 2**64 - 1),
       seq_width=st.sampled_from([1, 2, 3, 5, 9]), ts_width=st.sampled_from([1, 2, 3, 5, 9]),
       tamper=st.sampled_from(["none", "middle", "tail", "trailing", "short", "head_byte"]),
       pos=st.integers(0, 200))
def test_a_known_shape_answers_what_a_full_decode_answers(
    mode: ChannelMode, seq: int, ts: int, seq_width: int, ts_width: int, tamper: str,
    pos: int,
) -> None:
    seq %= 256 ** (seq_width - 1) if seq_width > 1 else 24
    ts %= 256 ** (ts_width - 1) if ts_width > 1 else 24
    _, (head, middle, tail) = _genuine_pieces(mode)
    if tamper == "middle":
        middle = middle[: pos % len(middle)] + b"\x00" + middle[pos % len(middle) + 1 :]
    elif tamper == "tail":
        tail = tail[: pos % len(tail)] + b"\x61" + tail[pos % len(tail) + 1 :]
    elif tamper == "trailing":
        tail += b"\x00"
    elif tamper == "short":
        tail = tail[: pos % len(tail)]
    raw = head + _uint(seq, seq_width) + middle + _uint(ts, ts_width) + tail
    if tamper == "head_byte":
        where = len(head) + (pos % 2) * (seq_width + len(middle))
        raw = raw[:where] + bytes(((raw[where] + 0x20) & 0xFF,)) + raw[where + 1 :]
    frame = _authentic(mode, raw)
    # ``warm`` has learnt the genuine shape from a real frame; ``cold`` never has.
    clock = Clock()
    warm, cold = channel("bob", mode, clock), channel("bob", mode, clock)
    genuine_head, genuine_middle, genuine_tail = _genuine_pieces(mode)[1]
    genuine = _authentic(mode, genuine_head + _uint(0, 1) + genuine_middle + _uint(0, 1)
                         + genuine_tail)
    for ch in (warm, cold):
        ch.open(genuine)
    cold._skeletons.clear()
    cold._shape_lengths = ()
    assert warm._skeletons
    before = (dict(warm._guard._storage.items()), warm.replay_guard.highest("alice"))
    got, want = _outcome(warm, frame), _outcome(cold, frame)
    assert got == want
    if isinstance(got, type):
        assert (dict(warm._guard._storage.items()),
                warm.replay_guard.highest("alice")) == before


@pytest.mark.parametrize("mode", MODES)
def test_known_shapes_still_check_key_recipient_and_sender(mode: ChannelMode) -> None:
    clock = Clock()
    alice, bob = channel("alice", mode, clock), channel("bob", mode, clock)
    for _ in range(3):  # learnt on the first, matched on the others
        assert bob.open(alice.seal({"recipient": "bob"}, b"x"))[1] == b"x"
    frame = alice.seal({"recipient": "bob"}, b"x")
    with pytest.raises(AuthenticationError, match="claims sender"):
        bob.open(frame, sender="mallory")
    with pytest.raises(AuthenticationError, match="addressed to"):
        bob.open(frame, recipient="topic:t")
    assert bob.open(frame, sender="alice")[1] == b"x"
    with pytest.raises(ReplayError):
        bob.open(frame)


@pytest.mark.parametrize("mode", MODES)
def test_a_known_shape_must_name_the_key_that_authenticated_it(mode: ChannelMode) -> None:
    """The header's key id is part of the remembered bytes; a frame whose header is a
    known shape but that another key of the keyset authenticated is refused."""
    kind = KeyKind.AES256_GCM if mode is ChannelMode.AEAD else KeyKind.HMAC_SHA256
    ks = Keyset.generate(kind)
    first = ks.primary_id
    second = ks.rotate(now=0)
    clock = Clock()
    bob = SecureChannel(ks, MemoryStorage(), identity="bob", mode=mode, clock=clock)
    ks.set_primary(first)
    alice = SecureChannel(ks, MemoryStorage(), identity="alice", mode=mode, clock=clock)
    bob.open(alice.seal({"recipient": "bob"}, b"x"))  # learns the shape under ``first``
    frame = alice.seal({"recipient": "bob"}, b"x")
    end = 3 + int.from_bytes(frame[1:3], "big")
    ks.set_primary(second)  # the same header bytes, authenticated under ``second``
    if mode is ChannelMode.AEAD:
        from vsm_phoenix.crypto import KeysetAead

        forged = frame[:end] + KeysetAead(ks, MemoryStorage()).encrypt(b"x", frame[:end])
    else:
        from vsm_phoenix.crypto import KeysetMac

        forged = frame[:end] + KeysetMac(ks).compute(frame[:end] + b"x") + b"x"
    assert bob._skeletons
    with pytest.raises(AuthenticationError, match="different key"):
        bob.open(forged)
    assert bob.open(frame)[1] == b"x"  # the genuine frame was not burnt


@pytest.mark.parametrize("mode", MODES)
def test_opened_headers_are_fresh_dicts(mode: ChannelMode) -> None:
    clock = Clock()
    alice, bob = channel("alice", mode, clock), channel("bob", mode, clock)
    first, _ = bob.open(alice.seal({"recipient": "bob", "kind": "k"}, b""))
    first["kind"] = "changed by the caller"
    second, _ = bob.open(alice.seal({"recipient": "bob", "kind": "k"}, b""))
    assert second["kind"] == "k" and second["sequence"] == first["sequence"] + 1


def test_shape_caches_stay_bounded() -> None:
    clock = Clock()
    alice, bob = channel("alice", ChannelMode.AEAD, clock), channel("bob", ChannelMode.AEAD, clock)
    for i in range(1200):
        bob.open(alice.seal({"recipient": "bob", "id": f"{i}"}, b""))
    assert 0 < len(alice._templates) <= 512 and 0 < len(bob._skeletons) <= 512


def test_headers_with_other_values_take_the_full_path() -> None:
    """Values whose equality is not exact (1 == True == 1.0) or that are mutable are
    never remembered: each seal validates and encodes them."""
    clock = Clock()
    alice, bob = channel("alice", ChannelMode.AEAD, clock), channel("bob", ChannelMode.AEAD, clock)
    for value in (1, True, 1.0, [1], {"n": 1}, None):
        header, _ = bob.open(alice.seal({"recipient": "bob", "n": value}, b""))
        assert header["n"] == value and type(header["n"]) is type(value)
    assert alice._templates == {}


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(0, 3000), max_size=60), st.integers(0, 2**64 - 1))
def test_exact_write_per_accept_is_the_plain_windows_record(seqs: list[int], base: int) -> None:
    base = min(base, 2**64 - 1 - 3000)
    storage = MemoryStorage()
    guard = ReplayGuard(storage, size=128)
    oracle = ReplayWindow(128)
    rng = random.Random(base)
    for s in seqs:
        seq = base + s
        try:
            oracle.check(seq)
        except ReplayError:
            with pytest.raises(ReplayError):
                guard.accept("s", seq, rng.randrange(2**40))
            continue
        oracle.record(seq)
        guard.accept("s", seq, rng.randrange(2**40))
        window, zone_seq, zone_ts = decode_record(storage.get("replay/s") or b"")
        assert window == oracle and (zone_seq, zone_ts) == (0, 0)
