"""The canonical codec: round trips, one encoding per state, and hostile input.

Any byte string handed to a decoder either raises ``DecodeError`` or decodes to an
object whose canonical encoding is exactly that byte string. Non-bytes raise
``TypeError``.
"""

from __future__ import annotations

from typing import Any

import cbor2
import pytest
from hypothesis import given
from hypothesis import strategies as st

from vsm_phoenix.crdt import (
    CRDT,
    GCounter,
    GSet,
    LWWElementSet,
    LWWRegister,
    MVRegister,
    ORMap,
    ORSet,
    Timestamp,
    TwoPSet,
    decode,
)
from vsm_phoenix.crdt._domain import MAX_ATOM_DEPTH
from vsm_phoenix.crdt.maps import MAX_NESTING, nesting
from vsm_phoenix.crdt.testing import LATTICE_TYPES, corruptions, related_states, states
from vsm_phoenix.errors import DecodeError

TYPES = pytest.mark.parametrize("cls", LATTICE_TYPES, ids=lambda c: c.__name__)


def canon(obj: Any) -> bytes:
    return cbor2.dumps(obj, canonical=True)


def accepts_only_canonical(data: bytes, cls: type[CRDT] | None = None) -> None:
    """``data`` is refused with DecodeError, or it is the canonical encoding of what
    it decodes to."""
    for dec in (decode, cls.from_bytes) if cls is not None else (decode,):
        try:
            obj = dec(data)
        except DecodeError:
            continue
        assert obj.to_bytes() == data
        assert decode(obj.to_bytes()) == obj


@TYPES
@given(data=st.data())
def test_round_trip(cls: type[CRDT], data: Any) -> None:
    s = data.draw(states(cls))
    raw = s.to_bytes()
    for back in (decode(raw), cls.from_bytes(raw), decode(bytearray(raw)), decode(memoryview(raw))):
        assert type(back) is cls
        assert back == s
        assert back.to_bytes() == raw
        assert back.value == s.value
    assert raw == s.to_bytes()  # encoding is a pure function of the state


@TYPES
@given(data=st.data())
def test_equal_states_iff_equal_bytes(cls: type[CRDT], data: Any) -> None:
    a, b, c = data.draw(related_states(cls, 3))
    pairs = [(a, b), (a | b, b | a), ((a | b) | c, a | (b | c)), (a | a | b, b | a), (a, c)]
    for x, y in pairs:
        assert (x == y) == (x.to_bytes() == y.to_bytes())


@TYPES
@given(data=st.data())
def test_corrupted_encodings_rejected_or_canonical(cls: type[CRDT], data: Any) -> None:
    s = data.draw(states(cls))
    bad = data.draw(corruptions(s.to_bytes()))
    accepts_only_canonical(bad, cls)


@given(st.binary(max_size=64))
def test_random_bytes_only_decode_error(raw: bytes) -> None:
    accepts_only_canonical(raw)
    for cls in LATTICE_TYPES:
        accepts_only_canonical(raw, cls)


@given(
    st.recursive(
        st.none()
        | st.integers()
        | st.text(max_size=4)
        | st.binary(max_size=4)
        | st.booleans()
        | st.floats(),
        lambda x: st.lists(x, max_size=4) | st.dictionaries(st.text(max_size=3), x, max_size=3),
        max_leaves=10,
    ),
    st.sampled_from([c.TAG for c in LATTICE_TYPES]),
)
def test_random_cbor_states_only_decode_error(state: Any, tag: str) -> None:
    """Well-formed canonical CBOR with a real tag and a random state."""
    for version in (1, 0, 2):
        accepts_only_canonical(canon([tag, version, state]))


@TYPES
def test_non_bytes_type_error(cls: type[CRDT]) -> None:
    for junk in ("", "abc", None, 1, 1.5, [1], object(), bytearray(b"x").decode()):
        with pytest.raises(TypeError):
            decode(junk)  # type: ignore[arg-type]
        with pytest.raises(TypeError):
            cls.from_bytes(junk)  # type: ignore[arg-type]


@TYPES
def test_wrong_tag_and_unknown_version(cls: type[CRDT]) -> None:
    raw = cls().to_bytes()
    tag, version, state = cbor2.loads(raw)
    assert (tag, version) == (cls.TAG, cls.VERSION)
    assert decode(canon([tag, cls.VERSION, state])) == cls()
    for v in (0, cls.VERSION + 1, 99, -1, 2**70):
        with pytest.raises(DecodeError):
            decode(canon([tag, v, state]))
        with pytest.raises(DecodeError):
            cls.from_bytes(canon([tag, v, state]))
    for other in LATTICE_TYPES:
        if other is cls:
            continue
        with pytest.raises(DecodeError):
            other.from_bytes(raw)  # right bytes, wrong class
        # A real tag with another type's layout.
        o_state = cbor2.loads(other().to_bytes())[2]
        if canon(o_state) != canon(state):
            with pytest.raises(DecodeError):
                decode(canon([tag, 1, o_state]))
    for bad in (
        ["nosuchtype", 1, state],
        [1, 1, state],
        [tag, "1", state],
        [tag, 1.0, state],
        [tag, True, state],
        [tag, 1],
        [tag, 1, state, 0],
        {tag: state},
        tag,
        None,
    ):
        with pytest.raises(DecodeError):
            decode(canon(bad))
        with pytest.raises(DecodeError):
            cls.from_bytes(canon(bad))


def test_size_limit_and_trailing_bytes() -> None:
    c = GCounter()
    c.increment("r1", 5)
    raw = c.to_bytes()
    assert decode(raw, max_size=len(raw)) == c
    with pytest.raises(DecodeError):
        decode(raw, max_size=len(raw) - 1)
    with pytest.raises(DecodeError):
        GCounter.from_bytes(raw, max_size=len(raw) - 1)
    for bad in (b"", raw + b"\x00", raw[:-1], b"\x81" * 100_000 + b"\x00", b"\xff"):
        with pytest.raises(DecodeError):
            decode(bad)


def test_non_canonical_cbor_rejected() -> None:
    s = ORSet()
    s.add("r1", "a")
    raw = s.to_bytes()
    tag, version, state = cbor2.loads(raw)
    assert raw == b"\x83" + canon(tag) + canon(version) + canon(state)
    non_canonical = [
        b"\x9f" + raw[1:] + b"\xff",  # indefinite-length outer array
        b"\x83" + canon(tag) + b"\x18\x01" + canon(state),  # long-form integer 1
        b"\x83"
        + b"\x7f"
        + canon(tag)
        + b"\xff"
        + canon(version)
        + canon(state),  # indefinite-length text
        # Map keys out of canonical order.
        b"\x83"
        + canon("vclock")
        + b"\x01"
        + b"\xa2"
        + canon("r2")
        + b"\x01"
        + canon("r1")
        + b"\x01",
    ]
    assert decode(
        b"\x83" + canon("vclock") + b"\x01\xa2" + canon("r1") + b"\x01" + canon("r2") + b"\x01"
    ).value == {"r1": 1, "r2": 1}
    for bad in non_canonical:
        with pytest.raises(DecodeError):
            decode(bad)


# -- semantically invalid states, each built as canonical CBOR -------------------------

TS = [1, 0, "r1"]
CTX1 = [{"r1": 1}, []]  # the context {(r1, 1)}
VALID: list[tuple[str, Any]] = [
    ("gcounter", {"r1": 2}),
    ("pncounter", [{"r1": 2}, {"r2": 1}]),
    ("gset", [1, "a"]),
    ("2pset", [[1], [1]]),
    ("lwwset", ["add", [["a", TS]], [["a", TS]]]),
    ("orset", [[["a", [["r1", 1]]]], CTX1]),
    ("lwwreg", [TS, "v"]),
    ("lwwreg", []),
    ("mvreg", [[[["r1", 1], "v"]], CTX1]),
    ("ormap", [[["k", [["r1", 1]]]], CTX1, [["k", ["gcounter", 1, {"r1": 1}]]]]),
    ("ormap", [[], CTX1, [["k", ["gcounter", 1, {"r1": 1}]]]]),
    ("vclock", {"r1": 3}),
    ("cctx", [{"r1": 2}, [["r1", 4], ["r2", 2]]]),
]
INVALID: list[tuple[str, str, Any]] = [
    ("negative count", "gcounter", {"r1": -1}),
    ("zero count stored", "gcounter", {"r1": 0}),
    ("empty replica id", "gcounter", {"": 1}),
    ("non-str replica id", "gcounter", {1: 1}),
    ("bool count", "gcounter", {"r1": True}),
    ("float count", "gcounter", {"r1": 1.0}),
    ("counter not a map", "gcounter", [["r1", 1]]),
    ("pn negative", "pncounter", [{"r1": 1}, {"r1": -2}]),
    ("pn short", "pncounter", [{"r1": 1}]),
    ("pn long", "pncounter", [{}, {}, {}]),
    ("float element", "gset", [1.5]),
    ("bool element", "gset", [True]),
    ("map element", "gset", [{"a": 1}]),
    ("unsorted elements", "gset", ["a", 1]),
    ("duplicate elements", "gset", [1, 1]),
    ("set not array", "gset", {"a": 1}),
    ("tagged element", "gset", [cbor2.CBORTag(1, 0)]),
    ("2p one part", "2pset", [[1]]),
    ("2p unsorted", "2pset", [["a", 1], []]),
    ("bad bias", "lwwset", ["both", [], []]),
    ("negative physical", "lwwset", ["add", [["a", [-1, 0, "r1"]]], []]),
    ("negative logical", "lwwset", ["add", [["a", [0, -1, "r1"]]], []]),
    ("empty ts replica", "lwwset", ["add", [["a", [0, 0, ""]]], []]),
    ("short timestamp", "lwwset", ["add", [["a", [0, 0]]], []]),
    ("duplicate lww element", "lwwset", ["add", [["a", TS], ["a", [2, 0, "r1"]]], []]),
    ("unsorted lww elements", "lwwset", ["add", [["a", TS], [1, TS]], []]),
    ("dot outside context", "orset", [[["a", [["r1", 2]]]], CTX1]),
    ("dot outside empty context", "orset", [[["a", [["r1", 1]]]], [{}, []]]),
    ("empty dot set", "orset", [[["a", []]], CTX1]),
    ("duplicate dot in element", "orset", [[["a", [["r1", 1], ["r1", 1]]]], CTX1]),
    ("dot in two elements", "orset", [[["a", [["r1", 1]]], ["b", [["r1", 1]]]], CTX1]),
    (
        "unsorted orset elements",
        "orset",
        [[["b", [["r1", 1]]], ["a", [["r1", 2]]]], [{"r1": 2}, []]],
    ),
    ("unsorted dots", "orset", [[["a", [["r1", 2], ["r1", 1]]]], [{"r1": 2}, []]]),
    ("zero dot counter", "orset", [[["a", [["r1", 0]]]], CTX1]),
    ("non-compact context (cloud adjacent)", "orset", [[], [{}, [["r1", 1]]]]),
    ("non-compact context (cloud covered)", "cctx", [{"r1": 2}, [["r1", 1]]]),
    ("non-compact context (cloud next)", "cctx", [{"r1": 2}, [["r1", 3]]]),
    ("zero in version vector", "cctx", [{"r1": 0}, []]),
    ("negative in version vector", "cctx", [{"r1": -1}, []]),
    ("duplicate cloud dot", "cctx", [{}, [["r1", 3], ["r1", 3]]]),
    ("unsorted cloud", "cctx", [{}, [["r2", 3], ["r1", 3]]]),
    ("cloud dot not a pair", "cctx", [{}, [["r1", 3, 4]]]),
    ("context not a pair", "cctx", [{}]),
    ("lwwreg bad ts", "lwwreg", [[-1, 0, "r1"], "v"]),
    ("lwwreg float value", "lwwreg", [TS, 1.5]),
    ("lwwreg short", "lwwreg", [TS]),
    ("lwwreg null", "lwwreg", None),
    ("mvreg dot outside", "mvreg", [[[["r1", 2], "v"]], CTX1]),
    ("mvreg duplicate dot", "mvreg", [[[["r1", 1], "v"], [["r1", 1], "w"]], CTX1]),
    ("mvreg unsorted", "mvreg", [[[["r2", 1], "v"], [["r1", 1], "w"]], [{"r1": 1, "r2": 1}, []]]),
    ("mvreg bad value", "mvreg", [[[["r1", 1], 1.5]], CTX1]),
    ("ormap key without value", "ormap", [[["k", [["r1", 1]]]], CTX1, []]),
    ("ormap unknown nested tag", "ormap", [[], CTX1, [["k", ["nosuch", 1, {}]]]]),
    ("ormap nested bad version", "ormap", [[], CTX1, [["k", ["gcounter", 2, {}]]]]),
    ("ormap nested invalid", "ormap", [[], CTX1, [["k", ["gcounter", 1, {"r1": -1}]]]]),
    ("ormap nested non-canonical", "ormap", [[], CTX1, [["k", ["gset", 1, [2, 1]]]]]),
    ("ormap nested short", "ormap", [[], CTX1, [["k", ["gcounter", 1]]]]),
    (
        "ormap dot outside",
        "ormap",
        [[["k", [["r2", 1]]]], CTX1, [["k", ["gcounter", 1, {"r1": 1}]]]],
    ),
    (
        "ormap unsorted values",
        "ormap",
        [[], CTX1, [["k", ["gcounter", 1, {}]], ["a", ["gcounter", 1, {}]]]],
    ),
    (
        "ormap duplicate value key",
        "ormap",
        [[], CTX1, [["k", ["gcounter", 1, {}]], ["k", ["gcounter", 1, {}]]]],
    ),
    ("vclock zero", "vclock", {"r1": 0}),
    ("vclock negative", "vclock", {"r1": -1}),
    ("vclock bad replica", "vclock", {"": 1}),
    ("vclock bignum-tagged small int", "vclock", {"r1": cbor2.CBORTag(2, b"\x01")}),
]


@pytest.mark.parametrize(("tag", "state"), VALID, ids=[t for t, _ in VALID])
def test_handmade_valid_layouts_decode(tag: str, state: Any) -> None:
    """The layouts the invalid cases perturb are the real ones."""
    raw = canon([tag, 1, state])
    obj = decode(raw)
    assert tag == obj.TAG
    if obj.VERSION == 1:
        assert obj.to_bytes() == raw
    else:  # format 1 is still read; it is written in the current format
        assert decode(obj.to_bytes()) == obj


@pytest.mark.parametrize(("why", "tag", "state"), INVALID, ids=[w for w, _, _ in INVALID])
def test_semantically_invalid_states_rejected(why: str, tag: str, state: Any) -> None:
    raw = canon([tag, 1, state])
    with pytest.raises(DecodeError):
        decode(raw)
    cls = type(decode(canon([tag, 1, dict(VALID)[tag]])))
    with pytest.raises(DecodeError):
        cls.from_bytes(raw)


def test_deeply_nested_ormap_decodes_or_decode_error() -> None:
    state: Any = {}
    tag = "gcounter"
    for _ in range(120):
        state = [[], [{}, []], [["k", [tag, 1, state]]]]
        tag = "ormap"
    raw = canon([tag, 1, state])
    try:
        obj = decode(raw)
    except DecodeError:
        return
    assert decode(obj.to_bytes()) == obj  # format 1 read, written as format 2


def _deepest_leaves() -> list[CRDT]:
    """One state of every type, holding the deepest element the domain allows."""
    deep: Any = "x"
    for _ in range(MAX_ATOM_DEPTH):
        deep = (deep,)
    orset, gset, twop = ORSet(), GSet(), TwoPSet()
    orset.add("r", deep)
    gset.add(deep)
    twop.add(deep)
    lww_set = LWWElementSet()
    lww_set.add(deep, Timestamp(5, 0, "r"))
    mv, lww = MVRegister(), LWWRegister()
    mv.assign("r", deep)
    lww.assign(deep, Timestamp(5, 0, "r"))
    counter = GCounter()
    counter.increment("r")
    return [orset, gset, twop, lww_set, mv, lww, counter]


def _wrap(inner: CRDT, key: Any) -> ORMap:
    outer = ORMap()

    def put(work: CRDT) -> CRDT:
        work |= inner
        return inner.copy()

    outer.update("r", key, type(inner), put)
    return outer


@pytest.mark.parametrize("leaf", _deepest_leaves(), ids=lambda c: type(c).__name__)
def test_every_map_update_can_build_decodes(leaf: CRDT) -> None:
    """Issue 10: an ORMap nested 100 levels encoded but did not decode. Whatever
    ``update`` builds decodes, at the deepest nesting, with the deepest keys and
    leaves; one level more is refused at the mutator, the map unchanged."""
    key: Any = "k"
    for _ in range(MAX_ATOM_DEPTH):
        key = (key,)
    state: CRDT = leaf
    for _ in range(MAX_NESTING):
        state = _wrap(state, key)
    assert isinstance(state, ORMap) and nesting(state) == MAX_NESTING
    assert decode(state.to_bytes()) == state
    outer = ORMap()
    outer.update("r", "other", GCounter, lambda c: c.increment("r"))
    before = outer.copy()
    with pytest.raises(ValueError, match="nested deeper"):
        outer.update("r", key, ORMap, lambda w: _merge_into(w, state))
    assert outer == before and outer.to_bytes() == before.to_bytes()


def _merge_into(work: ORMap, other: ORMap) -> ORMap:
    work |= other
    return other.copy()


def test_nesting_built_inside_one_update_is_refused_too() -> None:
    """The check sees the whole nested value after ``mutate``, however it was made."""

    def nest(work: ORMap, levels: int) -> ORMap:
        if levels == 0:
            return work.update("r", "leaf", GCounter, lambda c: c.increment("r"))
        return work.update("r", "k", ORMap, lambda w: nest(w, levels - 1))

    ok = ORMap()
    nest(ok, MAX_NESTING - 1)
    assert nesting(ok) == MAX_NESTING and decode(ok.to_bytes()) == ok
    too_deep = ORMap()
    with pytest.raises(ValueError, match="nested deeper"):
        nest(too_deep, MAX_NESTING)
    assert too_deep == ORMap()
