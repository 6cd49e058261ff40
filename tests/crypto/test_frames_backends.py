"""Differential tests: the Cython frame kernels (``_frames_native``) against their pure
twins (``_frames_pure``) -- same results, same exceptions, same changes in place -- on
well-formed, edge-case and hostile inputs."""

from __future__ import annotations

from types import ModuleType
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vsm_phoenix.crypto import _frames_pure as pure

native: ModuleType | None
try:
    from vsm_phoenix.crypto import _frames_native as native
except ImportError:  # pragma: no cover - the pure-only build
    native = None

pytestmark = pytest.mark.skipif(native is None, reason="native frame kernels not built")

U64 = 2**64 - 1
NUMBERS = st.one_of(st.sampled_from([0, 1, 23, 24, 255, 256, 65535, 65536, 2**32 - 1,
                                     2**32, U64]), st.integers(0, U64))


def _outcome(fn: Any, *args: Any) -> Any:
    try:
        return ("ok", fn(*args))
    except Exception as exc:
        return ("raised", type(exc))


def _pair(name: str, *args: Any) -> None:
    assert native is not None
    assert _outcome(getattr(native, name), *args) == _outcome(getattr(pure, name), *args)


@settings(max_examples=300, deadline=None)
@given(fmt=st.binary(max_size=2), head=st.binary(max_size=40), middle=st.binary(max_size=20),
       tail=st.binary(max_size=20), seq=NUMBERS, ts=NUMBERS)
def test_seal_header(fmt: bytes, head: bytes, middle: bytes, tail: bytes, seq: int,
                     ts: int) -> None:
    _pair("seal_header", fmt, head, middle, tail, seq, ts)


@pytest.mark.parametrize("args", [
    (b"\xa5", b"h", b"m", b"t", -1, 0), (b"\xa5", b"h", b"m", b"t", 0, 2**64),
    (b"\xa5", b"h", b"m", b"t", True, 0), (b"\xa5", "h", b"m", b"t", 0, 0),
    (bytearray(b"\xa5"), b"h", b"m", b"t", 1, 1), (b"\xa5", b"h" * 70000, b"m", b"t", 1, 1),
])
def test_seal_header_odd_arguments(args: tuple[Any, ...]) -> None:
    _pair("seal_header", *args)


def _header(seq: bytes, ts: bytes, head: bytes, middle: bytes, tail: bytes) -> bytes:
    return b"\xa5\x00\x00" + head + seq + middle + ts + tail


SLOTS = st.one_of(st.builds(pure.uint, NUMBERS), st.binary(max_size=10))


@settings(max_examples=400, deadline=None)
@given(head=st.binary(min_size=1, max_size=12), middle=st.binary(max_size=8),
       tail=st.binary(max_size=8), seq=SLOTS, ts=SLOTS, extra=st.binary(max_size=6),
       cut=st.integers(-8, 8), other=st.binary(max_size=12))
def test_match_header(head: bytes, middle: bytes, tail: bytes, seq: bytes, ts: bytes,
                      extra: bytes, cut: int, other: bytes) -> None:
    data = _header(seq, ts, head, middle, tail) + extra
    end = max(0, min(len(data), len(data) - len(extra) + cut))
    shape: Any = (middle, tail, {"recipient": "r"}, b"\x01\x00\x00\x00\x01", "s")
    shapes = {head: shape, other: (b"x", b"y", {}, b"", "o")}
    lengths = tuple(sorted({len(head), len(other)}))
    _pair("match_header", data, end, shapes, lengths)
    _pair("match_header", data, end, shapes, lengths[::-1])


@pytest.mark.parametrize("args", [
    (b"\xa5\x00\x00ab\x01mc\x02t", 9, {b"ab": (b"m", b"t")}, (2,)),
    (b"\xa5\x00\x00ab\x01mc\x02t", 10, {b"ab": (b"m", b"t")}, (2,)),
    (bytearray(b"\xa5\x00\x00ab\x01m\x02t"), 9, {b"ab": (b"m", b"t")}, (2,)),
    (b"\xa5\x00\x00ab\x01m\x02t", 9, {b"ab": ("m", b"t")}, (2,)),
    (b"\xa5\x00\x00ab\x01m\x02t", 9, {b"ab": (b"m",)}, (2,)),
    (b"\xa5\x00\x00ab\x01m\x02t", 9, {b"ab": 5}, (2,)),
    (b"\xa5\x00\x00ab\x01m\x02t", 9, {b"ab": (b"m", b"t")}, (2.0,)),
    (b"\xa5\x00\x00ab\x01m\x02t", 9, {b"ab": (b"m", b"t")}, (-1, 2)),
    (b"\xa5\x00\x00ab\x01m\x02t", 99, {b"ab": (b"m", b"t")}, (2,)),
    (b"\xa5\x00\x00ab\x01m\x02t", -1, {b"ab": (b"m", b"t")}, (2,)),
    (b"\xa5\x00\x00ab\x01m\x02t", 9, {b"ab": (b"m", b"t")}, [2]),
    (b"\xa5\x00\x00ab\x01m\x02t", 9, {[]: 1} if False else {b"ab": (b"m", b"t")}, (2, 50)),
])
def test_match_header_odd_arguments(args: tuple[Any, ...]) -> None:
    _pair("match_header", *args)


@settings(max_examples=400, deadline=None)
@given(n=st.integers(1, 5), words=st.lists(st.integers(0, U64), min_size=5, max_size=5),
       highest=st.one_of(st.just(-1), st.integers(0, U64 - 1)),
       step=st.one_of(st.integers(1, 700), st.integers(1, 2**41)))
def test_slide_mark(n: int, words: list[int], highest: int, step: int) -> None:
    seq = min(U64, highest + step)
    if seq <= highest:
        return
    a, b = words[:n], words[:n]
    assert native is not None
    assert _outcome(native.slide_mark, a, highest, seq) == _outcome(pure.slide_mark, b,
                                                                    highest, seq)
    assert a == b


@pytest.mark.parametrize("blocks,highest,seq", [
    ([1, "x"], 63, 64), ([1, "x"], 64, 65), ([1, -1], 64, 65), ([1, 2**64], 64, 65),
    ([], -1, 5), ((1, 2), 3, 5), ([1, 2], 5, 5), ([1, 2], 5, 2**64), ([1, 2], True, 5),
    ([1, 2], -2, 5), ([0, 0], -1, 0),
])
def test_slide_mark_odd_arguments(blocks: Any, highest: Any, seq: Any) -> None:
    assert native is not None
    a = list(blocks) if isinstance(blocks, list) else blocks
    b = list(blocks) if isinstance(blocks, list) else blocks
    assert _outcome(native.slide_mark, a, highest, seq) == _outcome(pure.slide_mark, b,
                                                                    highest, seq)
    assert a == b
