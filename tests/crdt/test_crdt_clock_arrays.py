"""Array-backed vector clocks and the replica id table.

* the ``vc_*_arrays`` kernels against the plain definition (pointwise maximum, order
  by every replica) on both backends, on every path (same replicas in lockstep, a
  small delta by binary search, the merge walk, wide counters in lists);
* native against pure on well-formed and hostile inputs (same result or exception
  type, same argument state after: the in-place join included);
* the class: normal form of the counters, no sharing between replicas, copies and
  pickles, and the intern table (reads and refused inputs add nothing).
"""

from __future__ import annotations

import copy
import os
import pickle
import subprocess
import sys
from array import array
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from kernel_twin import BACKENDS, check_same, needs_native

from vsm_phoenix.crdt import Ordering, VectorClock, _intern, _pure
from vsm_phoenix.errors import DecodeError

KERNELS = ("vc_join_arrays", "vc_leq_arrays", "vc_compare_arrays")
WIDE = 2**63 - 1

REPLICAS = [f"r{i}" for i in range(12)]
counters = st.integers(1, 5) | st.integers(1, 2**63 - 1) | st.sampled_from([WIDE, WIDE + 1, 2**70])
plain_clocks = st.dictionaries(st.sampled_from(REPLICAS), counters, max_size=12)


def arrays_of(vv: dict[str, int]) -> tuple[Any, Any]:
    c = VectorClock(vv)
    return c._ids, c._ns


def plain_join(a: dict[str, int], b: dict[str, int]) -> dict[str, int]:
    return {r: max(a.get(r, 0), b.get(r, 0)) for r in a.keys() | b.keys()}


def plain_order(a: dict[str, int], b: dict[str, int]) -> int:
    reps = a.keys() | b.keys()
    le = all(a.get(r, 0) <= b.get(r, 0) for r in reps)
    ge = all(a.get(r, 0) >= b.get(r, 0) for r in reps)
    if le:
        return _pure.EQUAL if ge else _pure.BEFORE
    return _pure.AFTER if ge else _pure.CONCURRENT


def as_dict(ids: Any, ns: Any) -> dict[str, int]:
    return {_intern.name(i): n for i, n in zip(ids, ns, strict=True)}


@st.composite
def clock_pairs(draw: st.DrawFn) -> tuple[dict[str, int], dict[str, int]]:
    """Pairs shaped to reach every path: same replicas, a small subset, disjoint or
    overlapping replicas, and large clocks."""
    shape = draw(st.sampled_from(["random", "same", "subset", "large_same", "large_delta"]))
    if shape.startswith("large"):
        n = draw(st.sampled_from([40, 1000]))
        rnd = draw(st.randoms(use_true_random=False))
        a = {f"big{i}": rnd.randint(1, 50) for i in range(n)}
        if shape == "large_same":
            b = {r: c + rnd.randint(-1, 1) or 1 for r, c in a.items()}
        else:
            b = {r: rnd.randint(1, 60) for r in rnd.sample(sorted(a), draw(st.integers(0, 5)))}
            if draw(st.booleans()):
                b[f"new{draw(st.integers(0, 3))}"] = 1
        return (a, b) if draw(st.booleans()) else (b, a)
    a = draw(plain_clocks)
    if shape == "same":
        b = {r: draw(counters) for r in a}
    elif shape == "subset":
        b = {r: draw(counters) for r in list(a)[: len(a) // 4]}
    else:
        b = draw(plain_clocks)
    return a, b


@given(clock_pairs())
def test_kernels_match_the_plain_definition(pair: tuple[dict[str, int], dict[str, int]]) -> None:
    a, b = pair
    for k in BACKENDS:
        for x, y in ((a, b), (b, a), (a, a)):
            xi, xn = arrays_of(x)
            yi, yn = arrays_of(y)
            assert k.vc_compare_arrays(xi, xn, yi, yn) == plain_order(x, y)
            assert k.vc_leq_arrays(xi, xn, yi, yn) is (plain_order(x, y) in (0, -1))
            ids, ns = k.vc_join_arrays(xi, xn, yi, yn)
            assert as_dict(ids, ns) == plain_join(x, y)
            assert list(ids) == sorted(ids) and len(set(ids)) == len(ids)
            # Normal form: a list exactly when a counter needs more than 64 bits.
            assert (type(ns) is list) is any(n > WIDE for n in ns)
            assert as_dict(yi, yn) == y  # the right operand is never changed


@given(clock_pairs())
def test_in_place_paths_equal_the_merge_walk(pair: tuple[dict[str, int], dict[str, int]]) -> None:
    """Every fast path (lockstep, binary search) gives what the plain merge gives."""
    a, b = pair
    ai, an = arrays_of(a)
    bi, bn = arrays_of(b)
    want = _pure._merged(ai, an, bi, bn)
    for k in BACKENDS:
        target = an[:]
        ids, ns = k.vc_join_arrays(ai, target, bi, bn)
        assert (list(ids), list(ns)) == (list(want[0]), list(want[1]))
        assert type(ns) is type(want[1])
        if ids is ai:  # joined in place: the result is the receiving counters
            assert ns is target or type(target) is not type(ns)


# -- native against pure ------------------------------------------------------------------


int64 = st.integers(-(2**63), 2**63 - 1)
small = st.integers(-3, 8)
raw_arrays = st.builds(lambda xs: array("q", xs), st.lists(small | int64, max_size=8))
sorted_arrays = st.builds(
    lambda xs: array("q", sorted(set(xs))), st.lists(st.integers(0, 12), max_size=8)
)
junk = (
    st.none() | st.integers() | st.text(max_size=2) | st.lists(st.integers() | st.text(max_size=1))
)
hostile = (
    raw_arrays
    | sorted_arrays
    | st.builds(lambda xs: array("l" if len(xs) % 2 else "i", xs), st.lists(small, max_size=5))
    | st.builds(tuple, st.lists(small, max_size=5))
    | st.lists(st.integers(-(2**70), 2**70), max_size=5)
    | junk
)


@needs_native
@given(clock_pairs())
def test_native_twin_on_clocks(pair: tuple[dict[str, int], dict[str, int]]) -> None:
    a, b = pair
    for x, y in ((a, b), (b, a), (a, a)):
        for name in KERNELS:
            check_same(name, *arrays_of(x), *arrays_of(y))


@needs_native
@given(hostile, hostile, hostile, hostile)
def test_native_twin_on_hostile_inputs(ai: Any, an: Any, bi: Any, bn: Any) -> None:
    """Unsorted or negative ids and counters, length mismatches, other typecodes,
    tuples, lists of wide or junk values: the same outcome on both backends."""
    for name in KERNELS:
        check_same(name, ai, an, bi, bn)


@needs_native
@given(st.data())
def test_native_twin_on_raw_arrays_of_equal_length(data: st.DataObject) -> None:
    """Arrays of matching lengths reach the C paths with values no clock holds
    (unsorted, duplicate, negative, extreme ids and counters)."""
    la, lb = data.draw(st.integers(0, 8)), data.draw(st.integers(0, 8))
    same = data.draw(st.booleans())
    vals = st.lists(small | int64, min_size=la, max_size=la)
    ai = array("q", data.draw(vals))
    an = array("q", data.draw(vals))
    bi = ai[:] if same else array("q", data.draw(st.lists(small | int64, min_size=lb, max_size=lb)))
    bn = array("q", data.draw(st.lists(small | int64, min_size=len(bi), max_size=len(bi))))
    for name in KERNELS:
        check_same(name, ai, an, bi, bn)
        check_same(name, bi, bn, ai, an)


# -- the class ------------------------------------------------------------------------------


def test_counters_widen_past_64_bits_and_keep_one_normal_form() -> None:
    c = VectorClock({"w": WIDE - 1, "x": 3})
    assert type(c._ns) is array
    c.increment("w")
    assert type(c._ns) is array and c.get("w") == WIDE
    before = c.copy()
    delta = c.increment("w")
    assert type(c._ns) is list and c.get("w") == WIDE + 1 and delta.value == {"w": WIDE + 1}
    assert before.get("w") == WIDE and type(before._ns) is array
    wide = VectorClock({"w": WIDE + 1, "x": 3})
    assert c == wide and c.to_bytes() == wide.to_bytes()
    assert (before | wide) == wide and (wide | before) == wide
    assert before <= wide and not wide <= before
    assert before.compare(wide) is Ordering.BEFORE
    narrow = before.copy()
    narrow |= VectorClock({"x": 2**70})
    assert type(narrow._ns) is list and narrow.value == {"w": WIDE, "x": 2**70}


def test_replicas_never_share_counters() -> None:
    a = VectorClock({"p": 1, "q": 2})
    b = a.copy()
    b.increment("p")
    c = a | VectorClock({"p": 5, "q": 1})
    d = copy.copy(a)
    e = copy.deepcopy(a)
    a.increment("q")
    assert b.value == {"p": 2, "q": 2} and c.value == {"p": 5, "q": 2}
    assert d.value == e.value == {"p": 1, "q": 2} and a.value == {"p": 1, "q": 3}
    a.increment("new-replica")
    assert d.value == {"p": 1, "q": 2} and a.get("new-replica") == 1
    f = VectorClock({"p": 1})
    f |= VectorClock({"p": 1, "q": 1, "zz": 4})  # merge walk: new arrays
    assert f.value == {"p": 1, "q": 1, "zz": 4}


def test_pickle_carries_names_not_ids() -> None:
    c = VectorClock({"pickled-a": 3, "pickled-b": 2**64})
    blob = pickle.dumps(c)
    assert pickle.loads(blob) == c
    # Another process meets its replicas in another order: the ids differ, the clock not.
    code = (
        "import pickle, sys; from vsm_phoenix.crdt import VectorClock;"
        "VectorClock({'other': 1, 'pickled-b': 1});"
        "c = pickle.loads(sys.stdin.buffer.read()); sys.stdout.buffer.write(c.to_bytes())"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], input=blob, capture_output=True, check=True, timeout=60,
        env=dict(os.environ),
    )
    assert out.stdout == c.to_bytes()


def test_reads_and_refused_inputs_add_no_replica_ids() -> None:
    VectorClock({"known": 1})
    n = _intern.size()
    assert VectorClock({"known": 2}).get("never-seen-replica-id") == 0
    assert _intern.lookup("never-seen-replica-id") == -1 and _intern.lookup(5) == -1
    with pytest.raises(TypeError):
        _intern.lookup([])  # unhashable, as a dict lookup
    for bad in ({"fresh-1": 1, "": 2}, {"fresh-2": 1, "x": -1}, {"fresh-3": True}):
        with pytest.raises((TypeError, ValueError)):
            VectorClock(bad)
    assert _intern.size() == n
    assert all(_intern.lookup(f"fresh-{i}") == -1 for i in (1, 2, 3))
    good = VectorClock({"fresh-4": 2}).to_bytes()
    n = _intern.size()
    with pytest.raises(DecodeError):  # a zero counter: refused before any interning
        VectorClock.from_bytes(good.replace(b"fresh-4", b"fresh-5").replace(b"\x02", b"\x00"))
    assert _intern.lookup("fresh-5") == -1 and _intern.size() == n


def test_str_subclass_replica_ids_are_interned_as_plain_str() -> None:
    class Sneaky(str):
        def __hash__(self) -> int:
            return 7

        def __eq__(self, other: object) -> bool:
            return True

        __ne__ = str.__ne__

    c = VectorClock({Sneaky("sneaky-id"): 4})
    (name,) = c.value
    assert type(name) is str and name == "sneaky-id"
    assert type(_intern.name(_intern.lookup("sneaky-id"))) is str
    assert c.get("sneaky-id") == 4 and c.get("other-id") == 0
