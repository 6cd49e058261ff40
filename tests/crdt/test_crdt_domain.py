"""Argument domains: the inline canonical sort key and text validity."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from vsm_phoenix.crdt import GSet, ORSet, decode
from vsm_phoenix.crdt._domain import atom_key
from vsm_phoenix.crdt.codec import dumps
from vsm_phoenix.crdt.testing import atoms
from vsm_phoenix.errors import DecodeError, InvalidArgument

EDGE_INTS = [0, 23, 24, 255, 256, 65535, 65536, 2**32 - 1, 2**32, 2**64 - 1, 2**64,
             -1, -24, -25, -256, -257, -(2**64), -(2**64) - 1]


@given(atoms())
def test_atom_key_is_the_canonical_encoding(x: object) -> None:
    assert atom_key(x) == dumps(x)  # type: ignore[arg-type]


@pytest.mark.parametrize("n", EDGE_INTS)
def test_atom_key_integer_boundaries(n: int) -> None:
    assert atom_key(n) == dumps(n)


@pytest.mark.parametrize("length", [0, 23, 24, 255, 256, 65535, 65536])
def test_atom_key_length_boundaries(length: int) -> None:
    assert atom_key("é" * length) == dumps("é" * length)
    assert atom_key(b"x" * length) == dumps(b"x" * length)


@pytest.mark.parametrize("bad", ["\ud800", "ok\udfff"])
def test_lone_surrogates_are_refused_and_change_nothing(bad: str) -> None:
    s, g = ORSet(), GSet()
    with pytest.raises(InvalidArgument):
        s.add("r", bad)
    with pytest.raises(InvalidArgument):
        s.add(bad, "e")
    with pytest.raises(InvalidArgument):
        g.add((1, bad))
    assert s == ORSet() and g == GSet()
    assert decode(s.to_bytes()) == s


@given(st.sampled_from(EDGE_INTS))
def test_unknown_cbor_tags_are_decode_errors(n: int) -> None:
    # tag 4711 wrapping an int where a set member belongs
    data = dumps(["gset", 1, [n]])
    tagged = data[:-len(dumps(n))] + b"\xd9\x12\x67" + dumps(n)
    with pytest.raises(DecodeError):
        decode(tagged)
