"""Differential tests: the Cython kernels (``_native``) against their pure twins.

For random inputs -- well-formed, large, edge-case and hostile -- every native kernel
must return an equal result of the same type, leave its in-place arguments in the same
state, and raise the same exception type as the pure one. End to end, the same
operations on the CRDT types must give identical values and bytes on both backends
(in process, by swapping the kernels ``_backend`` hands to the types, and once in a
subprocess with ``VSM_PHOENIX_PURE=1``). Every fast path is also checked against the
plain join it replaces (a lesson from riak_dt and Akka: merge optimisations break correctness).
"""

from __future__ import annotations

import copy
import functools
import importlib
import inspect
import json
import os
import random
import subprocess
import sys
from array import array
from collections.abc import Callable, Iterator
from types import ModuleType
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from vsm_phoenix.crdt import CausalContext, _backend, _pure
from vsm_phoenix.crdt._dots import RID_MASK, cloud_of, pack, store_of

_native_mod: ModuleType | None
try:
    _native_mod = importlib.import_module("vsm_phoenix.crdt._native")
except ImportError:  # pragma: no cover - depends on the build
    _native_mod = None

native: Any = _native_mod

_NOT_BUILT = ("vsm_phoenix.crdt._native is not built (run `python setup.py build_ext --inplace` "
              "or `pip install -e .` with Cython and a C compiler)")
if _native_mod is None and os.environ.get("VSM_PHOENIX_REQUIRE_NATIVE") == "1":
    # CI (.ci/run) requires the second backend: a lost build fails, it is never skipped.
    pytest.fail(_NOT_BUILT + " and VSM_PHOENIX_REQUIRE_NATIVE=1", pytrace=False)

pytestmark = pytest.mark.skipif(_native_mod is None, reason=_NOT_BUILT + "; nothing to compare")

KERNELS = [
    name
    for name, obj in vars(_pure).items()
    if inspect.isfunction(obj) and not name.startswith("_") and obj.__module__ == _pure.__name__
]

SLOW = settings(
    deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large]
)


# -- strategies ------------------------------------------------------------------------

REPLICAS = ["a", "b", "c", "replica-with-a-long-name-" + "x" * 40, "", "é"]
replicas = st.sampled_from(REPLICAS) | st.text(max_size=4)
# Counters from the edges too: zero, past 2**63 (off the C fast path) and huge.
counters = (
    st.integers(1, 6) | st.integers(0, 2**63 + 5) | st.sampled_from([2**63 - 1, 2**63, 2**64])
)
dots = st.tuples(replicas, counters)

vvs = st.dictionaries(replicas, counters, max_size=6)
clouds = st.sets(dots, max_size=8).map(cloud_of)
keys = st.integers(-3, 20) | st.text(max_size=3) | st.tuples(st.integers(0, 3), st.text(max_size=2))
# Dot stores in the packed normal form (``_dots``): a lone packed dot or an ascending tuple.
stores = st.dictionaries(keys, st.sets(dots, min_size=1, max_size=3), max_size=8).map(store_of)
# Dot functions (MVRegister) keyed by packed dots.
dotfuns = st.dictionaries(dots, st.integers() | st.text(max_size=3), max_size=8).map(
    lambda f: {pack(r, c): v for (r, c), v in f.items()}
)

hashables = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False)
    | st.text(max_size=3)
    | st.binary(max_size=3),
    lambda inner: (
        st.tuples(inner)
        | st.tuples(inner, inner)
        | st.tuples(inner, inner, inner)
        | st.frozensets(inner, max_size=3)
    ),
    max_leaves=6,
)
anything = st.recursive(
    hashables,
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(hashables, inner, max_size=3)
        | st.sets(hashables, max_size=3)
    ),
    max_leaves=8,
)
hostile_vvs = vvs | st.dictionaries(hashables, anything, max_size=4) | anything
hostile_clouds = (
    clouds
    # Entries out of normal form: unsorted / duplicated / negative arrays, lists, junk.
    | st.dictionaries(
        replicas,
        st.lists(st.integers(-(2**63), 2**63 - 1), max_size=4).map(lambda xs: array("q", xs))
        | st.lists(counters | hashables, max_size=3)
        | anything,
        max_size=3,
    )
    | st.dictionaries(hashables, anything, max_size=3)
    | st.sets(dots, max_size=4)
    | anything
)
hostile_stores = (
    stores
    | st.dictionaries(hashables, st.sets(hashables, max_size=3) | anything, max_size=4)
    # Packed-looking values: bools for ints, unsorted / short tuples, negative, huge,
    # unknown replica indexes.
    | st.dictionaries(
        hashables,
        st.booleans()
        | st.integers(-5, 2**70)
        | st.lists(st.integers(-1, 2**40) | st.booleans(), max_size=3).map(tuple),
        max_size=4,
    )
    | anything
)
hostile_dotfuns = (
    dotfuns
    | st.dictionaries(hashables, anything, max_size=4)
    # Packed-looking keys: negative, huge, unknown replica indexes.
    | st.dictionaries(st.integers(-5, 2**70), st.integers() | st.text(max_size=2), max_size=4)
    | anything
)


def _big_vv(rnd: random.Random, n: int) -> dict[str, int]:
    return {f"r{i}": rnd.randint(1, 1000) for i in range(n) if rnd.random() < 0.9}


def _big_ctx(rnd: random.Random, n: int) -> tuple[dict[str, int], Any]:
    vv = _big_vv(rnd, n)
    cloud = cloud_of((f"r{rnd.randrange(n)}", rnd.randint(1, 1100)) for _ in range(n))
    return vv, cloud


@st.composite
def big_vv_pairs(draw: st.DrawFn) -> tuple[dict[str, int], dict[str, int]]:
    rnd = random.Random(draw(st.integers(0, 2**32)))
    n = draw(st.sampled_from([1, 100, 1000, 3000]))
    a = _big_vv(rnd, n)
    shape = draw(st.sampled_from(["random", "equal", "leq", "geq"]))
    if shape == "equal":
        b = dict(a)
    elif shape == "leq":
        b = {r: c + rnd.randint(0, 2) for r, c in a.items()}
        b[f"extra{rnd.randrange(9)}"] = 1
    elif shape == "geq":
        b = {r: max(1, c - rnd.randint(0, 2)) for r, c in a.items() if rnd.random() < 0.9}
    else:
        b = _big_vv(rnd, n)
    return a, b


@st.composite
def replica_states(draw: st.DrawFn) -> tuple[Any, ...]:
    """Two dot stores with their causal contexts, as real replicas produce them: random
    adds and removes on a few replicas with partial, out-of-order delta exchange, so
    clouds, concurrent adds and observed removes all occur. Sizes up to ~2,000 keys."""
    from vsm_phoenix.crdt import ORSet

    rnd = random.Random(draw(st.integers(0, 2**32)))
    n_ops = draw(st.sampled_from([5, 50, 400, 2000]))
    universe = draw(st.sampled_from([3, 30, 3000]))
    reps = [ORSet() for _ in range(3)]
    deltas: list[ORSet] = []
    for _ in range(n_ops):
        i = rnd.randrange(3)
        x = rnd.randrange(universe)
        if rnd.random() < 0.7:
            deltas.append(reps[i].add(f"r{i}", x))
        else:
            deltas.append(reps[i].remove(x))
        if deltas and rnd.random() < 0.2:
            reps[rnd.randrange(3)] |= rnd.choice(deltas)
    a, b = rnd.sample(reps, 2)
    return (a._store, a._ctx.vv, a._ctx.cloud, b._store, b._ctx.vv, b._ctx.cloud)


# -- the comparison ---------------------------------------------------------------------


def _outcome(fn: Callable[..., Any], args: tuple[Any, ...]) -> tuple[str, Any, tuple[Any, ...]]:
    try:
        result = fn(*args)
    except Exception as exc:  # the type is what we compare
        return ("raised", type(exc), args)
    return ("returned", result, args)


def _order(x: Any) -> Any:
    """The key order of every dict in ``x`` (tuples and lists walked)."""
    if type(x) is dict:
        return [(k, _order(v)) for k, v in x.items()]
    if type(x) in (tuple, list):
        return [_order(v) for v in x]
    return None


def check_same(name: str, *args: Any) -> Any:
    """Run kernel ``name`` from both backends on deep copies of ``args``; assert equal
    outcomes (result and type, or exception type) and equal argument states after."""
    p_args = copy.deepcopy(args)
    n_args = copy.deepcopy(args)
    p = _outcome(getattr(_pure, name), p_args)
    n = _outcome(getattr(native, name), n_args)
    assert p[0] == n[0], f"{name}: pure {p[0]} {p[1]!r}, native {n[0]} {n[1]!r}"
    if p[0] == "raised":
        assert p[1] is n[1], f"{name}: pure raised {p[1]}, native raised {n[1]}"
    else:
        assert type(p[1]) is type(n[1]), f"{name}: result types {type(p[1])} vs {type(n[1])}"
        assert p[1] == n[1], f"{name}: results differ"
    assert p_args == n_args, f"{name}: in-place arguments left in different states"
    # Same insertion order too: a dict's order is observable (repr, iteration, value).
    assert _order(p_args) == _order(n_args), f"{name}: dict order differs"
    if p[0] == "returned":
        assert _order(p[1]) == _order(n[1]), f"{name}: result dict order differs"
    return n[1] if n[0] == "returned" else None


# -- the function set -------------------------------------------------------------------


def test_native_is_a_twin_of_every_pure_kernel() -> None:
    for name in KERNELS:
        assert callable(getattr(native, name, None)), f"_native lacks {name}"
    for const in ("EQUAL", "BEFORE", "AFTER", "CONCURRENT"):
        assert getattr(native, const) == getattr(_pure, const)
    exported = set(_backend.__all__) - {"BACKEND", "kernels"}
    assert exported == set(KERNELS), "every kernel is exported by _backend, and only kernels"


def test_backend_is_native_when_built() -> None:
    if os.environ.get("VSM_PHOENIX_PURE") == "1":
        assert _backend.BACKEND == "pure"
    else:
        assert _backend.BACKEND == "native"
        assert _backend.kernels is native


# -- well-formed and edge-case inputs -----------------------------------------------------


@given(vvs, vvs)
def test_vector_kernels(a: dict[str, int], b: dict[str, int]) -> None:
    for name in ("vc_join_into", "vc_leq", "vc_compare"):
        check_same(name, a, b)
        check_same(name, a, a)
        check_same(name, b, a)


@SLOW
@given(big_vv_pairs())
def test_vector_kernels_large(pair: tuple[dict[str, int], dict[str, int]]) -> None:
    a, b = pair
    for name in ("vc_join_into", "vc_leq", "vc_compare"):
        check_same(name, a, b)
        check_same(name, b, a)


@given(vvs, clouds, replicas | hashables, counters | hashables)
def test_ctx_contains(vv: dict[str, int], cloud: set[Any], r: Any, c: Any) -> None:
    check_same("ctx_contains", vv, cloud, r, c)


@given(vvs, clouds, vvs, clouds)
def test_context_kernels(
    vv: dict[str, int], cloud: set[Any], o_vv: dict[str, int], o_cloud: set[Any]
) -> None:
    check_same("ctx_compact", vv, cloud)
    check_same("ctx_join_into", vv, cloud, o_vv, o_cloud)
    # ctx_leq's contract is for compact contexts; compare it on compacted ones too.
    a_vv, a_cloud, b_vv, b_cloud = copy.deepcopy((vv, cloud, o_vv, o_cloud))
    _pure.ctx_compact(a_vv, a_cloud)
    _pure.ctx_compact(b_vv, b_cloud)
    for args in ((vv, cloud, o_vv, o_cloud), (a_vv, a_cloud, b_vv, b_cloud)):
        check_same("ctx_leq", *args)
    joined_vv, joined_cloud = copy.deepcopy((a_vv, a_cloud))
    _pure.ctx_join_into(joined_vv, joined_cloud, b_vv, b_cloud)
    check_same("ctx_leq", a_vv, a_cloud, joined_vv, joined_cloud)


@SLOW
@given(st.integers(0, 2**32), st.sampled_from([10, 300, 2000]))
def test_context_kernels_large(seed: int, n: int) -> None:
    rnd = random.Random(seed)
    (vv, cloud), (o_vv, o_cloud) = _big_ctx(rnd, n), _big_ctx(rnd, n)
    check_same("ctx_compact", vv, cloud)
    check_same("ctx_join_into", vv, cloud, o_vv, o_cloud)
    _pure.ctx_compact(vv, cloud)
    _pure.ctx_compact(o_vv, o_cloud)
    check_same("ctx_leq", vv, cloud, o_vv, o_cloud)
    check_same("ctx_leq", vv, cloud, vv, cloud)


@given(st.tuples(stores, vvs, clouds, stores, vvs, clouds))
def test_dotstore_kernels(args: tuple[Any, ...]) -> None:
    for name in ("dotstore_join", "dotstore_join_into"):
        check_same(name, *args)
    check_same("dotstore_copy", args[0])


@given(st.tuples(dotfuns, vvs, clouds, dotfuns, vvs, clouds))
def test_dotfun_join(args: tuple[Any, ...]) -> None:
    check_same("dotfun_join", *args)


@SLOW
@given(replica_states())
def test_dotstore_kernels_on_replica_states(args: tuple[Any, ...]) -> None:
    a, a_vv, a_cloud, b, b_vv, b_cloud = args
    for name in ("dotstore_join", "dotstore_join_into"):
        check_same(name, a, a_vv, a_cloud, b, b_vv, b_cloud)
        check_same(name, b, b_vv, b_cloud, a, a_vv, a_cloud)
        check_same(name, a, a_vv, a_cloud, a, a_vv, a_cloud)
    check_same("dotstore_copy", a)
    check_same("ctx_leq", a_vv, a_cloud, b_vv, b_cloud)
    check_same("ctx_join_into", a_vv, a_cloud, b_vv, b_cloud)


@st.composite
def wire_stores(draw: st.DrawFn) -> tuple[Any, dict[str, int], Any]:
    """A dot store's wire layout with the context it is checked against: a real
    replica's encoding, or one damaged in a random place."""
    from vsm_phoenix.crdt import ORSet
    from vsm_phoenix.crdt.sets import _encode_dotstore

    args = draw(replica_states())
    a = ORSet._raw(args[0], CausalContext._raw(args[1], args[2]))
    wire = _encode_dotstore(a._store)
    vv, cloud = dict(a._ctx.vv), copy.deepcopy(a._ctx.cloud)
    damage = draw(st.sampled_from(["none", "none", "item", "dot", "key", "ctx", "dup"]))
    if wire and damage != "none":
        i = draw(st.integers(0, len(wire) - 1))
        junk = draw(anything)
        if damage == "item":
            wire[i] = junk
        elif damage == "dot":
            wire[i][1][0] = junk
        elif damage == "key":
            wire[i][0] = draw(anything | st.lists(st.integers(), max_size=2))
        elif damage == "ctx":
            vv.clear()
            cloud.clear()
        else:
            wire.append([draw(st.integers(-5, 5)), list(wire[i][1])])
    return wire, vv, cloud


@SLOW
@given(wire_stores())
def test_dotstore_decode(args: tuple[Any, dict[str, int], set[Any]]) -> None:
    check_same("dotstore_decode", *args)


@given(anything, hostile_vvs, hostile_clouds)
def test_dotstore_decode_hostile(state: Any, vv: Any, cloud: Any) -> None:
    check_same("dotstore_decode", state, vv, cloud)


# -- fast paths against the plain join ---------------------------------------------------


@given(st.tuples(stores, vvs, clouds, stores, vvs, clouds))
def test_kernels_return_stores_in_normal_form(args: tuple[Any, ...]) -> None:
    """The joins return a lone dot as a bare int and two or more as an ascending tuple."""
    a, a_vv, a_cloud, b, b_vv, b_cloud = args
    for kernels in (_pure, native):
        out = kernels.dotstore_join(a, a_vv, a_cloud, b, b_vv, b_cloud)
        for v in out.values():
            assert type(v) is int or (
                type(v) is tuple and len(v) > 1 and list(v) == sorted(set(v))
            )
        into = dict(a)
        kernels.dotstore_join_into(into, a_vv, a_cloud, b, b_vv, b_cloud)
        assert into == out


@SLOW
@given(replica_states() | st.tuples(stores, vvs, clouds, stores, vvs, clouds))
def test_join_into_equals_plain_join_and_shares_nothing(args: tuple[Any, ...]) -> None:
    a, a_vv, a_cloud, b, b_vv, b_cloud = copy.deepcopy(args)
    plain = _pure.dotstore_join(a, a_vv, a_cloud, b, b_vv, b_cloud)
    b_before = copy.deepcopy(b)
    for kernels in (_pure, native):
        target = copy.deepcopy(a)
        kernels.dotstore_join_into(target, a_vv, a_cloud, b, b_vv, b_cloud)
        assert target == plain
        assert list(target) == list(plain)
        assert b == b_before
        fresh = kernels.dotstore_join(a, a_vv, a_cloud, b, b_vv, b_cloud)
        assert fresh == plain
        # Values are immutable (ints and tuples), so sharing them is safe; the mappings
        # themselves are new.
        assert all(type(v) in (int, tuple) for v in (*target.values(), *fresh.values()))
        clone = kernels.dotstore_copy(a)
        assert clone == a and clone is not a


# -- hostile inputs -----------------------------------------------------------------------


@given(hostile_vvs, hostile_vvs)
def test_vector_kernels_hostile(a: Any, b: Any) -> None:
    for name in ("vc_join_into", "vc_leq", "vc_compare"):
        check_same(name, a, b)


@given(hostile_vvs, hostile_clouds, anything, anything)
def test_ctx_contains_hostile(vv: Any, cloud: Any, r: Any, c: Any) -> None:
    check_same("ctx_contains", vv, cloud, r, c)


@given(hostile_vvs, hostile_clouds, hostile_vvs, hostile_clouds)
def test_context_kernels_hostile(vv: Any, cloud: Any, o_vv: Any, o_cloud: Any) -> None:
    check_same("ctx_compact", vv, cloud)
    check_same("ctx_join_into", vv, cloud, o_vv, o_cloud)
    check_same("ctx_leq", vv, cloud, o_vv, o_cloud)


@given(
    st.tuples(
        hostile_stores, hostile_vvs, hostile_clouds, hostile_stores, hostile_vvs, hostile_clouds
    )
)
def test_dotstore_kernels_hostile(args: tuple[Any, ...]) -> None:
    for name in ("dotstore_join", "dotstore_join_into"):
        check_same(name, *args)
    check_same("dotstore_copy", args[0])


@given(
    st.tuples(
        hostile_dotfuns, hostile_vvs, hostile_clouds, hostile_dotfuns, hostile_vvs, hostile_clouds
    )
)
def test_dotfun_join_hostile(args: tuple[Any, ...]) -> None:
    check_same("dotfun_join", *args)


class _DictSub(dict):  # type: ignore[type-arg]
    def get(self, key: Any, default: Any = None) -> Any:
        return 10**9


@pytest.mark.parametrize(
    ("name", "args"),
    [
        ("vc_join_into", ({"a": 1}, _DictSub(a=5))),
        ("vc_join_into", (_DictSub(a=1), {"a": 5, "b": 2})),
        ("vc_join_into", ({"a": 1}, {"a": "x"})),
        ("vc_join_into", ({"a": 1, "b": 1}, {"b": 3, "a": None})),
        ("vc_join_into", ({"a": 1}, {"a": 1.5, "b": True})),
        ("vc_join_into", ({}, [("a", 1)])),
        ("vc_leq", (_DictSub(a=1), {"a": 0})),
        ("vc_compare", ({"a": 2**70}, {"a": 2**70 + 1})),
        ("ctx_contains", ({"a": 1}, {}, ["a"], 2)),
        ("ctx_contains", ({"a": 1}, {}, "a", 2**64)),
        ("ctx_contains", (_DictSub(), {}, "a", 2)),
        ("ctx_contains", ({"a": 1}, {"a": [3, 2**64]}, "a", 3)),
        ("ctx_contains", ({"a": 1}, {"a": array("l", [3])}, "a", 3)),
        ("ctx_contains", ({"a": 1}, {("a", 3)}, "a", 3)),
        ("ctx_compact", ({"a": 1}, {"a": [2, "x"]})),
        ("ctx_compact", ({"a": 1}, {"a": array("q", [5, 2, 3])})),
        ("ctx_compact", ({"a": "1"}, {"a": array("q", [2])})),
        ("ctx_compact", ({"a": 1}, _DictSub(a=array("q", [2])))),
        ("ctx_compact", ({"a": 1}, {("a", 2)})),
        ("ctx_compact", ({"a": 1}, {"a": array("q", [2, 3]), "b": [2**64]})),
        ("ctx_compact", ({"a": 1, "b": None}, {"a": array("q", [2]), "b": array("q", [1])})),
        ("ctx_add", ({"a": 1}, {"a": array("q", [2**63 - 1])}, "a", 2**63 + 1)),
        ("ctx_add", ({"a": 1}, {"a": [5, 2**64]}, "a", 3)),
        ("ctx_add", ({"a": 1}, {"a": "xyz"}, "a", 3)),
        ("ctx_join_into", ({"a": 1}, {"a": array("q", [3])}, {"a": 2}, [("a", 3)])),
        ("ctx_join_into", ({"a": 1}, [("a", 3)], {"a": 2}, {"a": array("q", [3])})),
        ("ctx_join_into", ({"a": 1}, {"a": array("q", [3])}, {"a": 2}, {"a": [3, 2**64]})),
        ("ctx_join_into", ({"a": 1}, {"a": array("q", [9, 3])}, {},
                           {"a": array("q", [3, 4, 5, 6, 7, 8, 9, 10])})),
        ("ctx_join_into", ({}, {"a": array("q", [3, 4, 5, 6, 7, 8, 9, 10, 11])}, {},
                           {"a": array("q", [2])})),
        # A receiving entry past 64 bits (a list) as the vector grows to 2**63 - 1.
        ("ctx_join_into", ({}, {"a": [2**63]}, {"a": 2**63 - 1}, {"a": array("q", [1])})),
        ("ctx_join_into", ({}, {"a": [2**63]}, {"a": 2**63 - 1}, {})),
        ("ctx_leq", ({"a": 3}, {}, {"a": 1}, {"a": array("q", [2, 3])})),
        ("ctx_leq", ({"a": 3}, {"x": "y"}, {"a": 3}, {})),
        ("ctx_leq", ({"a": 3}, {"a": array("q", [9, 5])}, {"a": 3}, {"a": array("q", [5, 9])})),
        ("ctx_leq", ({}, {"a": array("q", [5])}, {}, {"a": [5, 2**64]})),
        ("dotstore_join", ({1: {("a", 1)}}, {"a": 1}, {}, {1: [("a", 1)]}, {"a": 1}, {})),
        ("dotstore_join", ({1: {("a", 1, 9)}}, {"a": 1}, {}, {}, {"a": 0}, {})),
        ("dotstore_join", ({1: {"ab"}}, {}, {}, {}, {}, {})),
        ("dotstore_join", ({1: {("a", 1)}}, {}, {}, {}, None, {})),
        ("dotstore_join", ({}, None, None, {}, None, None)),
        ("dotstore_join_into", ({1: {("a", 1)}, 2: {("b", 2)}}, {}, {}, {}, {"a": 5}, {1})),
        ("dotstore_join_into", ({1: {("a", 1)}, 2: {5}}, {}, {}, {}, {"a": 5}, {})),
        ("dotstore_join_into", ({1: {("a", 1)}}, {}, {}, _DictSub({1: {("a", 1)}}), {}, {})),
        ("dotstore_copy", ({1: [("a", 1)], 2: "ab"},)),
        # Packed values that are not clean: bool for int, unsorted, short, negative,
        # an unknown replica index, a counter past the C fast path.
        ("dotstore_join", ({True: 1 << 32}, {}, {}, {1: True}, {}, {})),
        ("dotstore_join", ({1: True}, {"a": 1}, {}, {}, {"a": 1}, {})),
        ("dotstore_join", ({True: set()}, {}, {}, {1: set()}, {}, {})),
        ("dotstore_join_into", ({True: set()}, {}, {}, {1: set()}, {}, {})),
        ("dotstore_join_into", ({1: (pack("a", 2), pack("a", 1))}, {}, {}, {}, {"a": 1}, {})),
        ("dotstore_join", ({1: (pack("a", 1),)}, {}, {}, {1: pack("a", 2)}, {"a": 1}, {})),
        ("dotstore_join", ({1: -5}, {}, {}, {}, {"a": 1}, {})),
        ("dotstore_join", ({1: RID_MASK}, {}, {}, {}, {"a": 1}, {})),
        ("dotstore_join_into", ({1: pack("a", 2**40)}, {}, {}, {}, {"a": 2**41}, {})),
        ("dotstore_join_into", ({1: pack("a", 3)}, {}, {}, {2: pack("a", 3)}, {"a": 3}, {})),
        ("dotstore_copy", ({1: 5},)),
        ("dotstore_copy", (_DictSub({1: {("a", 1)}}),)),
        ("dotfun_join", ({pack("a", 1): "x", "junk": 1}, {}, {}, {}, {"a": 1}, {})),
        ("dotfun_join", ({pack("a", 1): "x"}, {}, {}, {}, {"a": [1]}, {})),
        ("dotfun_join", ({("a", 1): "x"}, {}, {}, {}, {"a": 1}, {})),
        ("dotfun_join", ({True: "x"}, {}, {}, {1: "y"}, {}, {})),
        ("dotfun_join", ({RID_MASK: "x"}, {}, {}, {}, {}, {})),
        ("dotfun_join", ({pack("a", 1): "x"}, {}, {}, {pack("a", 1): "y"}, {"a": 1}, {})),
        ("dotfun_join", ({pack("a", 1): 1}, {}, {}, {pack("a", 1): True}, {"a": 1}, {})),
        ("dotstore_decode", ([[1, [["a", 1]]], [2, [["a", 1]]]], {"a": 1}, {})),
        ("dotstore_decode", ([[1, [["a", 2]]]], {"a": 1}, {})),
        ("dotstore_decode", ([[1, [["a", 2]]]], {"a": 1}, {("a", 2)})),
        ("dotstore_decode", ([[1, [["", 1]]]], {"": 1}, {})),
        ("dotstore_decode", ([[1, [["a", True]]]], {"a": 1}, {})),
        ("dotstore_decode", ([[1, []]], {}, {})),
        ("dotstore_decode", ([[[1, [2]], [["a", 1]]]], {"a": 1}, {})),
        ("dotstore_decode", ([[1.5, [["a", 1]]]], {"a": 1}, {})),
        ("dotstore_decode", ([[1, [["a", 1]]], [1, [["a", 2]]]], {"a": 2}, {})),
        ("dotstore_decode", ((1, [["a", 1]]), {"a": 1}, {})),
    ],
)
def test_hostile_examples(name: str, args: tuple[Any, ...]) -> None:
    check_same(name, *args)


# -- end to end: the types on either backend ----------------------------------------------


def _use(monkeypatch: pytest.MonkeyPatch, kernels: ModuleType) -> None:
    for name in KERNELS:
        monkeypatch.setattr(_backend, name, getattr(kernels, name))


def _bump(replica: str, counter: Any) -> Any:
    return counter.increment(replica)


def _scenario(seed: int, n_ops: int) -> Iterator[tuple[str, Any]]:
    """A random workload over every type that calls a kernel; yields (label, state)."""
    from vsm_phoenix.crdt import (
        CausalContext,
        GCounter,
        MVRegister,
        ORMap,
        ORSet,
        PNCounter,
        VectorClock,
    )

    rnd = random.Random(seed)
    reps = ["r0", "r1", "r2"]
    sets = [ORSet() for _ in reps]
    maps = [ORMap() for _ in reps]
    regs = [MVRegister() for _ in reps]
    ctrs = [PNCounter() for _ in reps]
    gcs = [GCounter() for _ in reps]
    clocks = [VectorClock() for _ in reps]
    ctxs = [CausalContext() for _ in reps]
    deltas: list[Any] = []
    replicated: list[list[Any]] = [sets, maps, regs, ctrs, gcs, clocks]
    for step in range(n_ops):
        i = rnd.randrange(3)
        r = reps[i]
        x = rnd.randrange(max(2, n_ops // 3))
        op = rnd.randrange(9)
        if op == 0:
            deltas.append(sets[i].add(r, x))
        elif op == 1:
            deltas.append(sets[i].remove(x))
        elif op == 2:
            deltas.append(maps[i].update(r, x % 7, GCounter, functools.partial(_bump, r)))
        elif op == 3:
            deltas.append(maps[i].remove(x % 7))
        elif op == 4:
            deltas.append(regs[i].assign(r, x))
        elif op == 5:
            deltas.append(ctrs[i].increment(r, x % 5 + 1) if x % 2 else ctrs[i].decrement(r))
            deltas.append(gcs[i].increment(r))
        elif op == 6:
            deltas.append(clocks[i].increment(r))
            ctxs[i].add((r, rnd.randint(1, n_ops)))
        elif op == 7 and deltas:
            # deliver a random old delta to a random replica (reordered, duplicated)
            d = rnd.choice(deltas)
            j = rnd.randrange(3)
            for group in replicated:
                if type(d) is type(group[j]):
                    group[j] |= d
        else:
            j = rnd.randrange(3)
            for group in [*replicated, ctxs]:
                joined = group[i] | group[j]
                assert group[i] <= joined and group[j] <= joined
                group[i].join(group[j])
        if step % 25 == 0:
            for k in range(3):
                yield (
                    f"{step}/{k}/leq",
                    [
                        sets[k] <= sets[(k + 1) % 3],
                        maps[k] <= maps[(k + 1) % 3],
                        clocks[k].compare(clocks[(k + 1) % 3]).name,
                        ctxs[k] <= ctxs[(k + 1) % 3],
                    ],
                )
    for k in range(3):
        for group in [*replicated, ctxs]:
            yield f"{type(group[k]).__name__}/{k}", group[k].to_bytes().hex()


def _run_scenario(seed: int, n_ops: int) -> list[tuple[str, Any]]:
    return [(label, state) for label, state in _scenario(seed, n_ops)]


@SLOW
@given(st.integers(0, 2**32), st.sampled_from([10, 60, 300]))
def test_types_identical_on_both_backends(seed: int, n_ops: int) -> None:
    with pytest.MonkeyPatch.context() as mp:
        _use(mp, _pure)
        pure_run = _run_scenario(seed, n_ops)
    with pytest.MonkeyPatch.context() as mp:
        _use(mp, native)
        native_run = _run_scenario(seed, n_ops)
    assert pure_run == native_run


_CHILD = """
import json, sys
sys.path.insert(0, {tests!r})
from vsm_phoenix.crdt import BACKEND
import test_backends as t
out = {{"backend": BACKEND, "runs": [t._run_scenario(s, 200) for s in (1, 2, 3)]}}
print(json.dumps(out))
"""


def test_types_identical_in_a_forced_pure_process() -> None:
    here = os.path.dirname(os.path.abspath(__file__))
    env = dict(os.environ, VSM_PHOENIX_PURE="1")
    proc = subprocess.run(
        [sys.executable, "-c", _CHILD.format(tests=here)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    child = json.loads(proc.stdout)
    assert child["backend"] == "pure"
    with pytest.MonkeyPatch.context() as mp:
        _use(mp, native)
        mine = [_run_scenario(s, 200) for s in (1, 2, 3)]
    assert json.loads(json.dumps(mine)) == child["runs"]
