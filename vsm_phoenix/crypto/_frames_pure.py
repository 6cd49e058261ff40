"""The per-frame kernels of :mod:`vsm_phoenix.crypto.channel` and
:mod:`vsm_phoenix.crypto.replay`, in pure Python; ``_frames_native.pyx`` is their Cython
twin (same signatures, results and exceptions; ``tests/crypto/test_frames_backends.py``
checks them against each other). :mod:`vsm_phoenix.crypto._frames` picks one.

* :func:`match_header` -- is a sealed frame's header a remembered *shape* with a
  canonical unsigned integer in each of its two slots (sequence, timestamp)?
* :func:`seal_header` -- the first part of a frame (format, length, header) from a
  remembered shape and the two numbers.
* :func:`slide_mark` -- a replay window's ring after a new highest sequence number.
"""

from __future__ import annotations

from typing import Any

__all__ = ["Shape", "match_header", "read_uint", "seal_header", "slide_mark", "uint"]

#: An opened header's shape: (middle, tail, decoded header, key prefix, sender); the
#: bytes before the sequence number are the key it is remembered under.
Shape = tuple[bytes, bytes, dict[str, Any], bytes, str]

_SMALL = tuple(bytes((n,)) for n in range(24))


def uint(n: int) -> bytes:
    """CBOR unsigned integer ``0 <= n < 2**64`` at its shortest (canonical) length."""
    if n < 24:
        return _SMALL[n]
    if n < 0x100:
        return bytes((0x18, n))
    if n < 0x10000:
        return b"\x19" + n.to_bytes(2, "big")
    if n < 0x100000000:
        return b"\x1a" + n.to_bytes(4, "big")
    return b"\x1b" + n.to_bytes(8, "big")


def read_uint(data: bytes, p: int, end: int) -> tuple[int, int]:
    """The canonical CBOR unsigned integer that starts at ``data[p]`` and ends at or
    before ``end``, and the offset after it; ``(-1, p)`` when there is none (another
    major type, a head longer than the number needs, or not enough bytes)."""
    if p >= end:
        return -1, p
    b = data[p]
    if b < 24:
        return b, p + 1
    if b == 0x18:
        width, least = 1, 24
    elif b == 0x19:
        width, least = 2, 0x100
    elif b == 0x1A:
        width, least = 4, 0x10000
    elif b == 0x1B:
        width, least = 8, 0x100000000
    else:
        return -1, p
    if p + 1 + width > end:
        return -1, p
    n = int.from_bytes(data[p + 1 : p + 1 + width], "big")
    return (n, p + 1 + width) if n >= least else (-1, p)


def match_header(
    data: bytes, end: int, shapes: dict[bytes, Shape], lengths: tuple[int, ...]
) -> tuple[Shape, int, int] | None:
    """``(shape, sequence, timestamp)`` when the header ``data[3:end]`` is
    ``key || seq || middle || ts || tail`` for a ``shapes[key]`` whose key length is in
    ``lengths`` (the first length that finds a key decides), with canonical numbers
    ``seq`` and ``ts``; else ``None``. Reads nothing at or after ``end``."""
    for length in lengths:
        p = 3 + length
        if p < end:
            shape = shapes.get(data[3:p])
            if shape is not None:
                break
    else:
        return None
    middle, tail = shape[0], shape[1]
    seq, p = read_uint(data, p, end)
    if seq < 0 or p + len(middle) > end or not data.startswith(middle, p):
        return None
    ts, p = read_uint(data, p + len(middle), end)
    if ts < 0 or p + len(tail) != end or not data.startswith(tail, p):
        return None
    return shape, seq, ts


def seal_header(fmt: bytes, head: bytes, middle: bytes, tail: bytes, seq: int, ts: int) -> bytes:
    """``fmt || length (2 bytes) || head || seq || middle || ts || tail`` with the two
    numbers (``0 <= n < 2**64``) in canonical CBOR; ``length`` counts from ``head``."""
    s, t = uint(seq), uint(ts)
    size = len(head) + len(s) + len(middle) + len(t) + len(tail)
    return b"".join((fmt, size.to_bytes(2, "big"), head, s, middle, t, tail))


def slide_mark(blocks: list[int], highest: int, seq: int) -> None:
    """Slide an RFC 6479 ring of 64-bit ``blocks`` (highest accepted ``highest``, -1
    for none) forward to ``seq > highest``: clear the blocks passed over, then mark
    ``seq``. The caller checks ``seq > highest``."""
    n = len(blocks)
    target = seq >> 6
    current = highest >> 6 if highest >= 0 else -1
    if target != current:
        for i in range(current + 1, current + min(target - current, n) + 1):
            blocks[i % n] = 0
    blocks[target % n] |= 1 << (seq & 63)
