"""Envelope tests written against the mutants of ``mutants/catalog.py``
(``make mutate MUTATE_ARGS='--area envelope'``): the declared size is exact in both
directions and bounded by ``max_payload`` even without compression; the header's
routing and version fields are checked by the decoder itself; compression starts at
the threshold, inclusive. Each test names the bug it catches.
"""

from __future__ import annotations

import zlib
from typing import Any

import pytest

from vsm_phoenix.crdt import Timestamp
from vsm_phoenix.errors import DecodeError
from vsm_phoenix.protocol.envelope import (
    COMPRESS_NONE,
    COMPRESS_ZLIB,
    DEFAULT_COMPRESS_THRESHOLD,
    Envelope,
    encode_cbor,
)


def sample(payload: bytes = b"hello") -> Envelope:
    return Envelope(message_id=b"\x01" * 16, type="sync.delta", sender="a", recipient="b",
                    timestamp=Timestamp(10, 0, "a"), payload=payload)


def frame(header_changes: dict[str, Any], body: bytes | None = None,
          drop: tuple[str, ...] = ()) -> bytes:
    header, wire = sample().wire_parts()
    header.update(header_changes)
    for key in drop:
        del header[key]
    return encode_cbor([header, wire if body is None else body])


@pytest.mark.parametrize("method", [COMPRESS_NONE, COMPRESS_ZLIB])
def test_a_payload_shorter_than_declared_is_refused(method: int) -> None:
    payload = b"x" * 100
    body = payload if method == COMPRESS_NONE else zlib.compress(payload)
    assert Envelope.from_bytes(frame({"z": method, "n": 100}, body)).payload == payload
    for declared in (101, 200):
        with pytest.raises(DecodeError):
            Envelope.from_bytes(frame({"z": method, "n": declared}, body))


def test_max_payload_bounds_an_uncompressed_payload_too() -> None:
    payload = b"y" * 5000
    env = sample(payload)
    raw = env.to_bytes(compress_threshold=10**9)  # sent uncompressed
    assert Envelope.from_bytes(raw, max_payload=5000) == env
    with pytest.raises(DecodeError):
        Envelope.from_bytes(raw, max_payload=4999)
    header, wire = env.wire_parts(compress_threshold=10**9)
    with pytest.raises(DecodeError):
        Envelope.from_wire_parts(header, wire, max_payload=4999)


def test_a_header_with_both_recipient_and_topic_is_a_decode_error() -> None:
    with pytest.raises(DecodeError):
        Envelope.from_bytes(frame({"tp": "topic"}))  # "r" is there already
    with pytest.raises(DecodeError):
        Envelope.from_bytes(frame({}, drop=("r",)))  # neither
    assert Envelope.from_bytes(frame({"tp": "topic"}, drop=("r",))).topic == "topic"


@pytest.mark.parametrize("version", [True, 1.0, 2, 0, "1"])
def test_only_the_integer_version_1_is_accepted(version: object) -> None:
    with pytest.raises(DecodeError):
        Envelope.from_bytes(frame({"v": version}))


def test_compression_starts_at_the_threshold_inclusive() -> None:
    t = DEFAULT_COMPRESS_THRESHOLD
    at = sample(b"a" * t).wire_parts(prefer_zstd=False)[0]["z"]
    below = sample(b"a" * (t - 1)).wire_parts(prefer_zstd=False)[0]["z"]
    assert (below, at) == (COMPRESS_NONE, COMPRESS_ZLIB)
    small = sample(b"b" * 64).wire_parts(compress_threshold=64, prefer_zstd=False)[0]
    assert small["z"] == COMPRESS_ZLIB and small["n"] == 64


def test_the_frame_limit_is_exact() -> None:
    raw = sample(b"z" * 300).to_bytes(compress_threshold=10**9)
    assert Envelope.from_bytes(raw, max_message=len(raw)).payload == b"z" * 300
    for limit in (len(raw) - 1, len(raw) - 2):
        with pytest.raises(DecodeError):
            Envelope.from_bytes(raw, max_message=limit)
