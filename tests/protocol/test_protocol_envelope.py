"""Envelope codec: round-trips, compression, and hostile bytes → DecodeError only."""

from __future__ import annotations

import zlib

import cbor2
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from vsm_phoenix.crdt import Timestamp
from vsm_phoenix.errors import DecodeError, InvalidArgument
from vsm_phoenix.protocol.envelope import (
    COMPRESS_NONE,
    COMPRESS_ZLIB,
    COMPRESS_ZSTD,
    Envelope,
    decode_cbor,
    encode_cbor,
    zstd_available,
)

names = st.text(min_size=1, max_size=20)
ids = st.binary(min_size=1, max_size=32)


@st.composite
def envelopes(draw: st.DrawFn) -> Envelope:
    to_topic = draw(st.booleans())
    return Envelope(
        message_id=draw(ids),
        type=draw(names),
        sender=draw(names),
        recipient=None if to_topic else draw(names),
        topic=draw(names) if to_topic else None,
        correlation_id=draw(st.none() | ids),
        timestamp=(
            draw(st.integers(0, 2**48)),
            draw(st.integers(0, 2**16)),
            draw(names),
        ),
        hop_limit=draw(st.integers(0, 255)),
        causal_context=draw(st.none() | st.binary(max_size=40)),
        payload=draw(st.binary(max_size=3000) | st.just(b"x" * 5000)),
    )


def sample(payload: bytes = b"hello") -> Envelope:
    return Envelope(
        message_id=b"\x01" * 16, type="sync.delta", sender="a", recipient="b",
        timestamp=Timestamp(10, 0, "a"), payload=payload,
    )


@given(envelopes(), st.booleans())
def test_round_trip(env: Envelope, prefer_zstd: bool) -> None:
    data = env.to_bytes(prefer_zstd=prefer_zstd)
    back = Envelope.from_bytes(data)
    assert back == env
    assert back.to_bytes(prefer_zstd=prefer_zstd) == data  # canonical: one encoding
    header, body = env.wire_parts(prefer_zstd=prefer_zstd)
    assert Envelope.from_wire_parts(header, body) == env


def test_compression_flagged_and_chosen() -> None:
    big = sample(b"abc" * 2000)
    header, body = big.wire_parts(prefer_zstd=False)
    assert header["z"] == COMPRESS_ZLIB and len(body) < 6000 and header["n"] == 6000
    header, _ = big.wire_parts(prefer_zstd=True)
    assert header["z"] == (COMPRESS_ZSTD if zstd_available() else COMPRESS_ZLIB)
    header, body = sample(b"tiny").wire_parts()
    assert header["z"] == COMPRESS_NONE and body == b"tiny"
    # incompressible payloads stay raw
    import random

    noise = random.Random(0).randbytes(4000)
    assert sample(noise).wire_parts()[0]["z"] == COMPRESS_NONE


def _frame(header_changes: dict[str, object], body: bytes | None = None) -> bytes:
    header, wire = sample(b"q" * 2000).wire_parts(prefer_zstd=False)
    header.update(header_changes)
    return encode_cbor([header, wire if body is None else body])


@pytest.mark.parametrize(
    "changes",
    [
        {"v": 2}, {"v": True}, {"id": b""}, {"id": "x"}, {"t": ""}, {"t": 5}, {"s": None},
        {"r": "b", "tp": "t"}, {"ts": [1, 2]}, {"ts": [-1, 0, "a"]}, {"ts": [1, 0, ""]},
        {"h": 256}, {"h": -1}, {"cc": "text"}, {"z": 3}, {"n": -1}, {"n": 1999},
        {"n": 2001}, {"extra": 1}, {"c": 7},
    ],
)
def test_bad_headers(changes: dict[str, object]) -> None:
    with pytest.raises(DecodeError):
        Envelope.from_bytes(_frame(changes))


def test_missing_keys_and_shapes() -> None:
    header, body = sample().wire_parts()
    for key in list(header):
        h = dict(header)
        del h[key]
        with pytest.raises(DecodeError):
            Envelope.from_bytes(encode_cbor([h, body]))
    for bad in ([header], [header, body, 1], {"h": header}, "x", [[], body], [header, "x"]):
        with pytest.raises(DecodeError):
            Envelope.from_bytes(encode_cbor(bad))


def test_non_canonical_and_trailing_rejected() -> None:
    good = sample().to_bytes()
    with pytest.raises(DecodeError):
        Envelope.from_bytes(good + b"\x00")
    header, body = sample().wire_parts()
    non_canonical = cbor2.dumps([header, body], canonical=False)
    if non_canonical != good:
        with pytest.raises(DecodeError):
            Envelope.from_bytes(non_canonical)
    with pytest.raises(DecodeError):
        decode_cbor(b"\xc1\x01")  # a tag (epoch datetime)
    with pytest.raises(DecodeError):
        decode_cbor(b"\x18\x01")  # 1 encoded in two bytes: not the shortest form


def test_decompression_bombs() -> None:
    bomb = zlib.compress(b"\0" * 10_000_000, 9)
    with pytest.raises(DecodeError):  # declared small, inflates large
        Envelope.from_bytes(_frame({"z": COMPRESS_ZLIB, "n": 100}, bomb))
    with pytest.raises(DecodeError):  # declared above the limit
        Envelope.from_bytes(_frame({"z": COMPRESS_ZLIB, "n": 10_000_000}, bomb),
                            max_payload=1_000_000)
    with pytest.raises(DecodeError):
        Envelope.from_bytes(_frame({"z": COMPRESS_ZLIB}, b"not zlib"))
    with pytest.raises(DecodeError):  # trailing data after the zlib stream
        Envelope.from_bytes(_frame({"z": COMPRESS_ZLIB, "n": 3}, zlib.compress(b"abc") + b"x"))
    if zstd_available():
        import zstandard

        zbomb = zstandard.ZstdCompressor().compress(b"\0" * 10_000_000)
        with pytest.raises(DecodeError):
            Envelope.from_bytes(_frame({"z": COMPRESS_ZSTD, "n": 100}, zbomb))
        with pytest.raises(DecodeError):
            Envelope.from_bytes(_frame({"z": COMPRESS_ZSTD}, b"garbage!"))
    with pytest.raises(DecodeError):
        Envelope.from_bytes(b"\x00" * 100, max_message=50)


def test_construction_validates() -> None:
    with pytest.raises(InvalidArgument):
        Envelope(message_id=b"1", type="t", sender="a", timestamp=(0, 0, "a"))  # no target
    with pytest.raises(InvalidArgument):
        Envelope(message_id=b"1", type="t", sender="a", recipient="b", topic="x",
                 timestamp=(0, 0, "a"))
    with pytest.raises(InvalidArgument):
        Envelope(message_id=b"1", type="t", sender="a", recipient="b", hop_limit=300,
                 timestamp=(0, 0, "a"))


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=300))
def test_random_bytes_only_decode_error(data: bytes) -> None:
    _decodes_canonically_or_refuses(data)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(envelopes(), st.data())
def test_mutated_frames_only_decode_error(env: Envelope, data: st.DataObject) -> None:
    raw = bytearray(env.to_bytes())
    for _ in range(data.draw(st.integers(1, 4))):
        i = data.draw(st.integers(0, len(raw) - 1))
        raw[i] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(0, len(raw)))
    for candidate in (bytes(raw), bytes(raw[:cut])):
        _decodes_canonically_or_refuses(candidate)


def _decodes_canonically_or_refuses(data: bytes) -> None:
    """Every branch asserts: bytes either raise DecodeError (nothing else) or decode to
    an envelope that survives its own encodings (frame, and header + wire payload)
    unchanged."""
    try:
        env = Envelope.from_bytes(data)
    except DecodeError:
        return
    again = env.to_bytes()
    assert Envelope.from_bytes(again) == env
    header, wire = Envelope.from_bytes(again).wire_parts()
    assert Envelope.from_wire_parts(header, wire) == env
