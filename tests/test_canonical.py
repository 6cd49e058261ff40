"""The fast canonical-CBOR paths (``vsm_phoenix._canonical``) against cbor2's canonical
mode."""

from __future__ import annotations

from typing import Any

import cbor2
from hypothesis import given, settings
from hypothesis import strategies as st

from vsm_phoenix import _canonical

KEYS = st.one_of(st.text(max_size=30), st.binary(max_size=30))
SCALARS = st.one_of(
    st.integers(-(2**64), 2**64 - 1),
    st.text(max_size=40),
    st.binary(max_size=40),
    st.booleans(),
    st.none(),
    st.floats(allow_nan=False),
)
VALUES = st.recursive(
    SCALARS,
    lambda inner: st.one_of(
        st.lists(inner, max_size=5),
        st.dictionaries(KEYS, inner, max_size=6),
    ),
    max_leaves=25,
)
HEADERS = st.dictionaries(st.text(max_size=20), VALUES, max_size=10)


@settings(max_examples=150, deadline=None)
@given(VALUES)
def test_dumps_equals_cbor2_canonical(value: Any) -> None:
    assert _canonical.dumps(value) == cbor2.dumps(value, canonical=True)


@settings(max_examples=150, deadline=None)
@given(HEADERS, st.data())
def test_is_canonical_agrees_with_cbor2(header: dict[str, Any], data: st.DataObject) -> None:
    canonical = cbor2.dumps(header, canonical=True)
    assert _canonical.is_canonical(cbor2.loads(canonical), canonical)
    variants = [bytes(cbor2.dumps(header))]  # insertion order, 64-bit floats
    if header:
        items = list(header.items())
        data.draw(st.randoms()).shuffle(items)
        variants.append(bytes(cbor2.dumps(dict(items))))
    for raw in variants:
        try:
            decoded = cbor2.loads(raw)
        except Exception:
            continue
        expected = cbor2.dumps(decoded, canonical=True) == raw
        assert _canonical.is_canonical(decoded, raw) == expected


def test_non_canonical_examples() -> None:
    for raw in (
        b"\xa2ab\x01aa\x02",  # keys out of order
        b"\xa1aa\x18\x01",  # a non-shortest integer
        b"\xa1aa\xfb\x3f\xf8\x00\x00\x00\x00\x00\x00",  # 1.5 as a 64-bit float
        b"\xa2Ba\x00\x01Ac\x02",  # bytes keys: longer first
        b"\xa2ab\x01Ac\x02",  # a text key before a bytes key of the same length
    ):
        decoded = cbor2.loads(raw)
        assert not _canonical.is_canonical(decoded, raw), raw
    assert _canonical.is_canonical(1.5, b"\xf9\x3e\x00")
    assert _canonical.is_canonical({1: 2}, b"\xa1\x01\x02")  # int keys: the slow check
    assert _canonical.dumps({1: 2.5}) == cbor2.dumps({1: 2.5}, canonical=True)
