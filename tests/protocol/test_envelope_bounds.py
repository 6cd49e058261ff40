"""The envelope decoder's *bounds*, measured — not only the error type it raises.

A decompression bomb must be refused with work and memory bounded by the size the
header declares, not by what the stream would inflate to: the decoder may produce at
most ``n + 1`` bytes before it knows the payload is too long. These tests measure the
peak memory Python allocates while decoding a 64 MB bomb (tracemalloc), so a decoder
that inflates everything and only then compares sizes — raising the same
``DecodeError`` — fails here. Also: compression is kept only when it shrinks the
payload, and the frame size limit is checked before anything is decoded.
"""

from __future__ import annotations

import os
import tracemalloc
import zlib
from collections.abc import Callable

import pytest

from vsm_phoenix.crdt import Timestamp
from vsm_phoenix.errors import DecodeError
from vsm_phoenix.protocol.envelope import (
    COMPRESS_NONE,
    COMPRESS_ZLIB,
    COMPRESS_ZSTD,
    Envelope,
    encode_cbor,
    zstd_available,
)

BOMB = 64 << 20  # what the bombs inflate to
BOUND = 4 << 20  # peak allocation allowed while refusing one (the frame itself is small)


def sample(payload: bytes) -> Envelope:
    return Envelope(message_id=b"\x01" * 16, type="sync.delta", sender="a", recipient="b",
                    timestamp=Timestamp(10, 0, "a"), payload=payload)


def frame(method: int, declared: int, body: bytes) -> bytes:
    header, _ = sample(b"q" * 2000).wire_parts(prefer_zstd=False)
    header.update({"z": method, "n": declared})
    return encode_cbor([header, body])


def peak_while(fn: Callable[[], object]) -> int:
    tracemalloc.start()
    try:
        with pytest.raises(DecodeError):
            fn()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


@pytest.mark.parametrize("declared", [100, 1_000_000])
def test_a_zlib_bomb_is_refused_within_the_declared_size(declared: int) -> None:
    bomb = zlib.compress(b"\0" * BOMB, 9)
    data = frame(COMPRESS_ZLIB, declared, bomb)
    peak = peak_while(lambda: Envelope.from_bytes(data, max_payload=2_000_000))
    assert peak < declared + BOUND, f"decoding allocated {peak} bytes"


@pytest.mark.skipif(not zstd_available(), reason="zstandard is not installed")
@pytest.mark.parametrize("declared", [100, 1_000_000])
def test_a_zstd_bomb_is_refused_within_the_declared_size(declared: int) -> None:
    import zstandard

    bomb = zstandard.ZstdCompressor(level=3).compress(b"\0" * BOMB)
    data = frame(COMPRESS_ZSTD, declared, bomb)
    peak = peak_while(lambda: Envelope.from_bytes(data, max_payload=2_000_000))
    assert peak < declared + BOUND, f"decoding allocated {peak} bytes"


def test_a_payload_exactly_as_declared_decodes_and_one_byte_more_does_not() -> None:
    body = b"abc" * 1000
    ok = frame(COMPRESS_ZLIB, len(body), zlib.compress(body))
    assert Envelope.from_bytes(ok).payload == body
    with pytest.raises(DecodeError):
        Envelope.from_bytes(frame(COMPRESS_ZLIB, len(body) - 1, zlib.compress(body)))
    with pytest.raises(DecodeError):
        Envelope.from_bytes(frame(COMPRESS_ZLIB, len(body) + 1, zlib.compress(body)))


def test_compression_is_kept_only_when_it_shrinks_the_payload() -> None:
    noise = os.urandom(5000)  # incompressible: zlib makes it longer
    header, wire = sample(noise).wire_parts(compress_threshold=100, prefer_zstd=False)
    assert header["z"] == COMPRESS_NONE and wire == noise
    text = b"the same line again\n" * 300
    header, wire = sample(text).wire_parts(compress_threshold=100, prefer_zstd=False)
    assert header["z"] == COMPRESS_ZLIB and len(wire) < len(text)
    assert Envelope.from_wire_parts(header, wire).payload == text
    # Barely compressible: a few bytes saved still counts, a few bytes lost does not.
    header, wire = sample(noise + b"\0" * 200).wire_parts(compress_threshold=100,
                                                          prefer_zstd=False)
    assert header["z"] == COMPRESS_ZLIB and len(wire) < len(noise) + 200


def test_the_frame_limit_is_checked_before_decoding() -> None:
    big = encode_cbor([{"v": 1}, b"\0" * 10_000])
    peak = peak_while(lambda: Envelope.from_bytes(big, max_message=1_000))
    assert peak < BOUND
