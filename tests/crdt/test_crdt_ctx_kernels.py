"""The causal-context kernels ``ctx_add``, ``ctx_join_into``, ``ctx_leq`` and
``ctx_contains``: native against pure.

The native twins run the pure twin's steps as C loops over the clouds' ``array('q')``
memory once every value they meet has proved clean, and hand everything else to the
pure twin (a step, or the whole call); these properties hold them to the same results,
the same exceptions and the same argument states -- on well-formed contexts (compact or
not), at the 64-bit edge of the counters, on sparse and dense merges, with aliased
arguments and with hostile values (list entries, unsorted or duplicated arrays, arrays
of another type code, junk).
"""

from __future__ import annotations

import copy
from array import array
from typing import Any

from hypothesis import given
from hypothesis import strategies as st
from kernel_twin import BACKENDS, check_same, needs_native

from vsm_phoenix.crdt import CausalContext, _pure
from vsm_phoenix.crdt._dots import cloud_dots, cloud_of

EDGE = 2**63 - 1
replicas = st.sampled_from(["a", "b", "c", "é"])
counters = st.integers(1, 12) | st.integers(EDGE - 4, EDGE + 4)
vvs = st.dictionaries(replicas, counters, max_size=4)
dot_sets = st.sets(st.tuples(replicas, counters), max_size=10)
clouds = dot_sets.map(cloud_of)
#: Clouds whose entries are arrays but not in normal form: unsorted, duplicated,
#: negative, empty.
raw_arrays = st.lists(st.integers(-(2**63), EDGE) | st.integers(1, 12), max_size=6).map(
    lambda xs: array("q", xs)
)
loose_clouds = st.dictionaries(replicas, raw_arrays, max_size=3)
#: Dense merges: many dots of few replicas, so entries meet entries of similar size.
dense_clouds = st.sets(st.tuples(st.sampled_from(["a", "b"]), st.integers(1, 60)),
                       max_size=40).map(cloud_of)


class _Str(str):
    pass


hashables = (
    st.none()
    | st.integers(-(2**70), 2**70)
    | st.booleans()
    | st.text(max_size=2)
    | st.builds(_Str, st.text(max_size=2))
    | st.tuples(st.text(max_size=1))
    | st.tuples(replicas, st.integers(-3, 3), st.integers())
    | st.tuples(replicas, st.floats(allow_nan=False) | st.text(max_size=1))
)
hostile_vvs = vvs | st.dictionaries(hashables, hashables, max_size=4) | hashables
hostile_clouds = (
    clouds
    | loose_clouds
    | st.dictionaries(replicas | hashables, st.lists(counters | hashables, max_size=4),
                      max_size=3)
    | st.dictionaries(replicas, st.lists(st.integers(0, 99), max_size=4).map(
        lambda xs: array("l", xs)), max_size=2)
    | st.dictionaries(hashables, hashables, max_size=3)
    | st.sets(st.tuples(replicas, counters), max_size=4)
    | hashables
)


@needs_native
@given(vvs, clouds, vvs, clouds)
def test_join_twin_on_contexts(vv: Any, cloud: Any, o_vv: Any, o_cloud: Any) -> None:
    """Compact or not, narrow or wide vector growth, folds across the 64-bit edge."""
    check_same("ctx_join_into", vv, cloud, o_vv, o_cloud)
    check_same("ctx_join_into", o_vv, o_cloud, vv, cloud)
    a_vv, a_cloud, b_vv, b_cloud = copy.deepcopy((vv, cloud, o_vv, o_cloud))
    _pure.ctx_compact(a_vv, a_cloud)
    _pure.ctx_compact(b_vv, b_cloud)
    check_same("ctx_join_into", a_vv, a_cloud, b_vv, b_cloud)
    check_same("ctx_leq", a_vv, a_cloud, b_vv, b_cloud)
    check_same("ctx_leq", b_vv, b_cloud, a_vv, a_cloud)
    _pure.ctx_join_into(b_vv, b_cloud, a_vv, a_cloud)
    check_same("ctx_leq", a_vv, a_cloud, b_vv, b_cloud)


@needs_native
@given(vvs, dense_clouds, vvs, dense_clouds)
def test_dense_merges_twin(vv: Any, cloud: Any, o_vv: Any, o_cloud: Any) -> None:
    """Entries of similar size merge by a sorted union (a C merge natively)."""
    check_same("ctx_join_into", vv, cloud, o_vv, o_cloud)
    a_vv, a_cloud, b_vv, b_cloud = copy.deepcopy((vv, cloud, o_vv, o_cloud))
    _pure.ctx_compact(a_vv, a_cloud)
    _pure.ctx_compact(b_vv, b_cloud)
    check_same("ctx_leq", a_vv, a_cloud, b_vv, b_cloud)
    _pure.ctx_join_into(b_vv, b_cloud, a_vv, a_cloud)
    check_same("ctx_leq", a_vv, a_cloud, b_vv, b_cloud)


@needs_native
@given(vvs, loose_clouds, vvs, loose_clouds, replicas, counters)
def test_twins_on_arrays_out_of_normal_form(
    vv: Any, cloud: Any, o_vv: Any, o_cloud: Any, r: str, c: int
) -> None:
    """Unsorted, duplicated, negative or empty entries: unspecified, but the same."""
    check_same("ctx_join_into", vv, cloud, o_vv, o_cloud)
    check_same("ctx_leq", vv, cloud, o_vv, o_cloud)
    check_same("ctx_add", vv, cloud, r, c)
    check_same("ctx_contains", vv, cloud, r, c)
    check_same("ctx_compact", vv, cloud)


@needs_native
@given(vvs, clouds, replicas | hashables, counters | hashables)
def test_add_twin(vv: Any, cloud: Any, r: Any, c: Any) -> None:
    check_same("ctx_add", vv, cloud, r, c)
    check_same("ctx_contains", vv, cloud, r, c)


@needs_native
@given(hostile_vvs, hostile_clouds, hostile_vvs, hostile_clouds)
def test_join_twin_on_hostile_values(vv: Any, cloud: Any, o_vv: Any, o_cloud: Any) -> None:
    check_same("ctx_join_into", vv, cloud, o_vv, o_cloud)
    check_same("ctx_leq", vv, cloud, o_vv, o_cloud)


@needs_native
@given(hostile_vvs, hostile_clouds, hashables | replicas, hashables | counters)
def test_add_twin_on_hostile_values(vv: Any, cloud: Any, r: Any, c: Any) -> None:
    check_same("ctx_add", vv, cloud, r, c)
    check_same("ctx_contains", vv, cloud, r, c)


@needs_native
@given(vvs, hostile_clouds, vvs)
def test_wide_growth_over_a_hostile_receiving_cloud(vv: Any, cloud: Any, o_vv: Any) -> None:
    """A vector entry growing past the receiving cloud's entry settles (drops a covered
    prefix, folds a run) there: junk there gives the same outcome on both."""
    big = {r: n + 50 for r, n in o_vv.items()}
    check_same("ctx_join_into", vv, cloud, big, {})
    check_same("ctx_join_into", vv, cloud, big, cloud_of({("a", 999)}))


@needs_native
def test_aliased_arguments() -> None:
    vv, cloud = {"a": 2, "b": 1}, cloud_of({("a", 4), ("b", 3)})
    check_same("ctx_join_into", vv, cloud, vv, cloud)
    check_same("ctx_join_into", vv, cloud, {"a": 3}, cloud)
    check_same("ctx_join_into", vv, cloud, vv, cloud_of({("a", 3)}))
    shared = array("q", [5, 9])  # one array object in both clouds
    check_same("ctx_join_into", {}, {"a": shared}, {}, {"a": shared})


def test_fold_across_the_64_bit_edge() -> None:
    for k in BACKENDS:
        vv = {"a": EDGE - 2}
        cloud = cloud_of({("a", EDGE), ("a", EDGE + 1), ("a", EDGE + 3), ("b", 5)})
        assert type(cloud["a"]) is list and type(cloud["b"]) is array
        k.ctx_add(vv, cloud, "a", EDGE - 1)
        assert vv == {"a": EDGE + 1} and cloud == cloud_of({("a", EDGE + 3), ("b", 5)})
        vv2, cloud2 = {"a": 1}, cloud_of({("a", EDGE), ("a", EDGE + 1)})
        k.ctx_join_into(vv2, cloud2, {"a": EDGE - 1}, {})
        assert vv2 == {"a": EDGE + 1} and cloud2 == {}
        vv3, cloud3 = {"a": 1}, cloud_of({("a", 5)})
        k.ctx_add(vv3, cloud3, "a", EDGE + 9)  # past 64 bits: the entry becomes a list
        assert cloud3 == {"a": [5, EDGE + 9]}


@given(st.lists(st.tuples(replicas, st.integers(1, 30)), max_size=30), st.data())
def test_context_joins_match_set_union_on_both_backends(
    dots: list[tuple[str, int]], data: st.DataObject
) -> None:
    """End to end: a | b holds exactly the union of the dots, compact, on each backend."""
    split = data.draw(st.integers(0, len(dots)))
    want = CausalContext(dots)
    for k in BACKENDS:
        a, b = CausalContext(dots[:split]), CausalContext(dots[split:])
        vv, cloud = a.copy().vv, a.copy().cloud
        k.ctx_join_into(vv, cloud, b.vv, b.cloud)
        assert (vv, cloud) == (want.vv, want.cloud)
        assert cloud_dots(cloud) | {(r, c) for r, n in vv.items() for c in range(1, n + 1)} \
            == set(dots)
        vv, cloud = b.copy().vv, b.copy().cloud
        for r, c in dots[:split]:
            k.ctx_add(vv, cloud, r, c)
        assert (vv, cloud) == (want.vv, want.cloud)
        assert k.ctx_leq(a.vv, a.cloud, want.vv, want.cloud)
        assert k.ctx_leq(b.vv, b.cloud, want.vv, want.cloud)
        assert k.ctx_leq(want.vv, want.cloud, a.vv, a.cloud) == (a == want)


@needs_native
def test_vector_growth_up_to_the_last_64_bit_counter() -> None:
    """Covering counters up to 2**63 - 1 ends (the step past it would overflow), and
    negative or 64-bit-extreme entries give the pure twin's outcome."""
    cloud = cloud_of({("a", EDGE - 1), ("a", EDGE), ("b", 3)})
    for o_vv in ({"a": EDGE}, {"a": EDGE, "b": 1}, {"a": EDGE - 1}):
        check_same("ctx_join_into", {"a": EDGE - 3}, cloud, o_vv, {})
    check_same("ctx_join_into", {"a": -(2**63)}, cloud, {"a": EDGE}, {})
    check_same("ctx_join_into", {"a": 1}, cloud, {"a": -5, "b": EDGE}, cloud_of({("a", EDGE)}))
    check_same("ctx_leq", {"a": EDGE}, {}, {"a": EDGE - 2}, cloud)
    check_same("ctx_leq", {"a": 3}, {}, {"a": -(2**63)}, cloud)
    check_same("ctx_add", {"a": EDGE}, cloud, "a", EDGE)
    check_same("ctx_add", {"a": -(2**63)}, cloud, "a", -(2**63) + 1)
