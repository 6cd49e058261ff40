"""The ``dotstore_parse`` shortcut (ORSet bytes read straight into a dot store) against
the general decoder it stands in for.

The shortcut may decline (answer None: the general decoder runs), but whatever it
accepts must be exactly what the general decoder builds from the same bytes -- equal
state, same dict order, same canonical bytes -- and it must never accept what the
general decoder refuses. Checked on valid encodings, on encodings damaged byte by byte
(``corruptions``) and on hand-made near misses of every canonicality rule.
"""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from vsm_phoenix import cbor
from vsm_phoenix.crdt import ORSet, _pure, codec
from vsm_phoenix.crdt._base import CRDT
from vsm_phoenix.crdt.testing import corruptions, states
from vsm_phoenix.errors import DecodeError

_native: ModuleType | None
try:
    _native = importlib.import_module("vsm_phoenix.crdt._native")
except ImportError:  # pragma: no cover - depends on the build
    _native = None

BACKENDS = [pytest.param(_pure, id="pure")] + (
    [pytest.param(_native, id="native")] if _native is not None else []
)


def general(data: Any) -> ORSet:
    """The general decoder: parse, build, re-encode and compare."""
    return CRDT.from_bytes.__func__(ORSet, data)  # type: ignore[attr-defined,no-any-return]


def outcome(fn: Any, data: Any) -> tuple[str, Any]:
    try:
        return ("ok", fn(data))
    except Exception as exc:  # the type is what we compare
        return ("raised", type(exc))


def check_agrees(data: Any) -> None:
    want = outcome(general, data)
    if _native is not None:
        fast = _native.dotstore_parse(data, codec.MAX_DECODE_BYTES, b"orset")
        if fast is not None:
            assert want[0] == "ok", f"the shortcut accepted what the decoder refuses: {data!r}"
            store, vv, cloud = fast
            ref: ORSet = want[1]
            assert store == ref._store
            assert list(store) == list(ref._store)
            assert list(vv.items()) == list(ref._ctx.vv.items())
            assert cloud == ref._ctx.cloud
            assert all(type(v) is int or type(v) is tuple for v in store.values())
    assert _pure.dotstore_parse(data, codec.MAX_DECODE_BYTES, b"orset") is None
    got = outcome(ORSet.from_bytes, data)
    assert got[0] == want[0]
    if want[0] == "ok":
        assert got[1] == want[1]
        assert got[1].to_bytes() == want[1].to_bytes() == bytes(data)
    else:
        assert got[1] is want[1]


@given(states(ORSet, n_replicas=3, max_steps=14))
def test_valid_states_decode_the_same(s: ORSet) -> None:
    check_agrees(s.to_bytes())


@given(st.data())
def test_damaged_bytes_decode_the_same(data: st.DataObject) -> None:
    s = data.draw(states(ORSet, n_replicas=3, max_steps=10))
    check_agrees(data.draw(corruptions(s.to_bytes())))


def _orset(entries: list[Any], vv: dict[str, int], cloud: list[Any]) -> bytes:
    """Canonical CBOR of an ORSet layout, written as given (it may break any rule but
    CBOR's own canonical form)."""
    return cbor.dumps(["orset", 1, [entries, [vv, cloud]]])


NEAR_MISSES = {
    "valid": _orset([[1, [["a", 1]]], ["x", [["a", 2], ["b", 1]]]], {"a": 2, "b": 1}, []),
    "valid, cloud": _orset([[b"k", [["a", 3]]]], {"a": 1}, [["a", 3]]),
    "valid, null and negatives": _orset(
        [[-1, [["a", 1]]], [-300, [["a", 2]]], [None, [["a", 3]]]], {"a": 3}, []
    ),
    "elements out of order": _orset([["x", [["a", 1]]], [1, [["a", 2]]]], {"a": 2}, []),
    "element twice": _orset([[1, [["a", 1]]], [1, [["a", 2]]]], {"a": 2}, []),
    "dots out of order": _orset([[1, [["b", 1], ["a", 1]]]], {"a": 1, "b": 1}, []),
    "counters out of order": _orset([[1, [["a", 2], ["a", 1]]]], {"a": 2}, []),
    "dot twice in one element": _orset([[1, [["a", 1], ["a", 1]]]], {"a": 1}, []),
    "dot under two elements": _orset([[1, [["a", 1]]], [2, [["a", 1]]]], {"a": 1}, []),
    "dot outside the context": _orset([[1, [["a", 2]]]], {"a": 1}, []),
    "no dots": _orset([[1, []]], {}, []),
    "empty replica": _orset([[1, [["", 1]]]], {"": 1}, []),
    "zero counter": _orset([[1, [["a", 0]]]], {"a": 1}, []),
    "zero vv entry": _orset([], {"a": 0}, []),
    "cloud dot covered": _orset([], {"a": 2}, [["a", 2]]),
    "cloud dot adjacent": _orset([], {"a": 2}, [["a", 3]]),
    "cloud out of order": _orset([], {}, [["a", 5], ["a", 3]]),
    "cloud dot twice": _orset([], {}, [["a", 3], ["a", 3]]),
    "bool element": _orset([[True, [["a", 1]]]], {"a": 1}, []),
    "float element": _orset([[1.5, [["a", 1]]]], {"a": 1}, []),
    "tuple element": _orset([[[1, "x"], [["a", 1]]]], {"a": 1}, []),
    "bignum element": _orset([[2**70, [["a", 1]]]], {"a": 1}, []),
    "bool counter": _orset([[1, [["a", True]]]], {"a": 1}, []),
    "wrong tag": cbor.dumps(["gset", 1, [[], [{}, []]]]),
    "wrong version": cbor.dumps(["orset", 2, [[], [{}, []]]]),
    "bottom": _orset([], {}, []),
}


@pytest.mark.parametrize("name", list(NEAR_MISSES))
def test_near_misses(name: str) -> None:
    check_agrees(NEAR_MISSES[name])
    if _native is not None and name.startswith(("valid", "bottom")):
        # The common layouts do take the shortcut (else this file tests nothing).
        assert _native.dotstore_parse(NEAR_MISSES[name], 1 << 20, b"orset") is not None


def test_non_canonical_heads_and_trailing_bytes() -> None:
    good = NEAR_MISSES["valid"]
    check_agrees(good + b"\x00")  # trailing byte
    check_agrees(good[:-1])  # truncated
    # The counter 1 of ("a", 1) written with a one-byte argument (0x18 0x01): not shortest.
    i = good.index(b"\x61a\x01")
    check_agrees(good[: i + 2] + b"\x18\x01" + good[i + 3 :])
    # An indefinite-length outer array.
    check_agrees(b"\x9f" + good[1:] + b"\xff")
    # A text element that is not UTF-8, and one with an encoded surrogate.
    check_agrees(_orset([["x", [["a", 1]]]], {"a": 1}, []).replace(b"\x61x", b"\x61\xff"))
    check_agrees(_orset([["xyz", [["a", 1]]]], {"a": 1}, []).replace(b"xyz", b"\xed\xa0\x80"))


@pytest.mark.parametrize("kernels", BACKENDS)
def test_arguments_the_shortcut_declines(kernels: ModuleType) -> None:
    good = NEAR_MISSES["valid"]
    assert kernels.dotstore_parse(bytearray(good), 1000, b"orset") is None
    assert kernels.dotstore_parse(good, len(good) - 1, b"orset") is None
    assert kernels.dotstore_parse(b"", 1000, b"orset") is None
    assert kernels.dotstore_parse(good, 1000, "orset") is None
    with pytest.raises(DecodeError):
        ORSet.from_bytes(good, max_size=len(good) - 1)
    assert ORSet.from_bytes(memoryview(good)) == ORSet.from_bytes(good)


def test_a_refused_input_interns_no_replica_id() -> None:
    """Decoders validate the whole input before any replica id enters the process's
    table (the shortcut hands out provisional ids and interns them only at the end)."""
    import uuid

    from vsm_phoenix.crdt import _intern

    fresh = [f"never-seen-{uuid.uuid4().hex}" for _ in range(4)]
    refused = [
        # a new replica's dot, then a dot outside the context (refused at the end)
        _orset([[1, [[fresh[0], 1]]], [2, [["a", 9]]]], {fresh[0]: 1, "a": 1}, []),
        # a new replica only in a non-compact cloud
        _orset([], {fresh[1]: 2}, [[fresh[1], 3]]),
        # trailing bytes after an otherwise valid state
        _orset([[1, [[fresh[2], 1]]]], {fresh[2]: 1}, []) + b"\x00",
    ]
    for data in refused:
        with pytest.raises(DecodeError):
            ORSet.from_bytes(data)
        with pytest.raises(DecodeError):
            general(data)
    assert all(_intern.lookup(r) == -1 for r in fresh[:3])
    ok = ORSet.from_bytes(_orset([[1, [[fresh[3], 1]]]], {fresh[3]: 1}, []))
    assert _intern.lookup(fresh[3]) >= 0
    assert ok.dots_of(1) == {(fresh[3], 1)}


def test_copy_copy_is_a_real_copy() -> None:
    """``copy.copy(orset)`` shares nothing with the original (issue 11 friction)."""
    import copy

    s, t = ORSet(), ORSet()
    s.add("a", 1)
    t.add("b", 1)
    s |= t  # two concurrent dots under one element
    s.add("a", 2)
    c = copy.copy(s)
    assert c == s and c._store is not s._store and c._ctx is not s._ctx
    c.remove(1)
    c.add("c", 3)
    assert s.value == {1, 2} and c.value == {2, 3}
    assert s.dots_of(1) == {("a", 1), ("b", 1)}


def test_a_join_into_bottom_copies_and_keeps_the_context_object() -> None:
    """Bottom joined with a state becomes an independent copy of it, and keeps its own
    context object (a container may share that object with the set)."""
    src = ORSet()
    for x in range(20):
        src.add("a", x)
    src.remove(3)
    dst = ORSet()
    ctx = dst._ctx
    dst |= src
    assert dst == src and dst.to_bytes() == src.to_bytes()
    assert dst._ctx is ctx and dst._store is not src._store
    dst.add("b", 3)
    assert 3 not in src and 3 in dst
