"""The causal-context kernels ``ctx_add`` and ``ctx_join_into``: native against pure.

The native twins run the pure twin's steps as C loops once every value they compare
has proved clean, and hand everything else to the pure twin; these properties hold
them to the same results, the same exceptions and the same argument states -- on
well-formed contexts (compact or not), at the 64-bit edge of the counters, with the
receiving cloud scanned, with aliased arguments and with hostile values.
"""

from __future__ import annotations

from typing import Any

from hypothesis import given
from hypothesis import strategies as st
from kernel_twin import BACKENDS, check_same, needs_native

from vsm_phoenix.crdt import CausalContext, _pure

EDGE = 2**63 - 1
replicas = st.sampled_from(["a", "b", "c", "é"])
counters = st.integers(1, 12) | st.integers(EDGE - 4, EDGE + 4)
vvs = st.dictionaries(replicas, counters, max_size=4)
clouds = st.sets(st.tuples(replicas, counters), max_size=10)


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
    | st.sets(hashables | st.tuples(replicas, counters), max_size=6)
    | st.frozensets(st.tuples(replicas, counters), max_size=3)
    | hashables
)


@needs_native
@given(vvs, clouds, vvs, clouds)
def test_join_twin_on_contexts(vv: Any, cloud: Any, o_vv: Any, o_cloud: Any) -> None:
    """Compact or not, narrow or wide vector growth, folds across the 64-bit edge."""
    check_same("ctx_join_into", vv, cloud, o_vv, o_cloud)
    check_same("ctx_join_into", o_vv, o_cloud, vv, cloud)
    a_vv, a_cloud, b_vv, b_cloud = dict(vv), set(cloud), dict(o_vv), set(o_cloud)
    _pure.ctx_compact(a_vv, a_cloud)
    _pure.ctx_compact(b_vv, b_cloud)
    check_same("ctx_join_into", a_vv, a_cloud, b_vv, b_cloud)


@needs_native
@given(vvs, clouds, replicas | hashables, counters | hashables)
def test_add_twin(vv: Any, cloud: Any, r: Any, c: Any) -> None:
    check_same("ctx_add", vv, cloud, r, c)


@needs_native
@given(hostile_vvs, hostile_clouds, hostile_vvs, hostile_clouds)
def test_join_twin_on_hostile_values(vv: Any, cloud: Any, o_vv: Any, o_cloud: Any) -> None:
    check_same("ctx_join_into", vv, cloud, o_vv, o_cloud)


@needs_native
@given(hostile_vvs, hostile_clouds, hashables | replicas, hashables | counters)
def test_add_twin_on_hostile_values(vv: Any, cloud: Any, r: Any, c: Any) -> None:
    check_same("ctx_add", vv, cloud, r, c)


@needs_native
@given(vvs, st.sets(hashables | st.tuples(replicas, counters), max_size=6), vvs)
def test_wide_growth_over_a_hostile_receiving_cloud(vv: Any, cloud: Any, o_vv: Any) -> None:
    """A vector entry growing by more than the cloud holds takes the pass that compares
    every dot of the receiving cloud: junk there gives the same outcome on both."""
    big = {r: n + 50 for r, n in o_vv.items()}
    check_same("ctx_join_into", vv, cloud, big, set())
    check_same("ctx_join_into", vv, cloud, big, {("a", 999)})


@needs_native
def test_aliased_arguments() -> None:
    vv, cloud = {"a": 2, "b": 1}, {("a", 4), ("b", 3)}
    check_same("ctx_join_into", vv, cloud, vv, cloud)
    check_same("ctx_join_into", vv, cloud, {"a": 3}, cloud)
    check_same("ctx_join_into", vv, cloud, vv, {("a", 3)})


def test_fold_across_the_64_bit_edge() -> None:
    for k in BACKENDS:
        vv = {"a": EDGE - 2}
        cloud = {("a", EDGE), ("a", EDGE + 1), ("a", EDGE + 3), ("b", 5)}
        k.ctx_add(vv, cloud, "a", EDGE - 1)
        assert vv == {"a": EDGE + 1} and cloud == {("a", EDGE + 3), ("b", 5)}
        vv2, cloud2 = {"a": 1}, {("a", EDGE), ("a", EDGE + 1)}
        k.ctx_join_into(vv2, cloud2, {"a": EDGE - 1}, set())
        assert vv2 == {"a": EDGE + 1} and cloud2 == set()


@given(st.lists(st.tuples(replicas, st.integers(1, 30)), max_size=30), st.data())
def test_context_joins_match_set_union_on_both_backends(
    dots: list[tuple[str, int]], data: st.DataObject
) -> None:
    """End to end: a | b holds exactly the union of the dots, compact, on each backend."""
    split = data.draw(st.integers(0, len(dots)))
    want = CausalContext(dots)
    for k in BACKENDS:
        a, b = CausalContext(dots[:split]), CausalContext(dots[split:])
        vv, cloud = dict(a.vv), set(a.cloud)
        k.ctx_join_into(vv, cloud, b.vv, b.cloud)
        assert (vv, cloud) == (want.vv, want.cloud)
        vv, cloud = dict(b.vv), set(b.cloud)
        for r, c in dots[:split]:
            k.ctx_add(vv, cloud, r, c)
        assert (vv, cloud) == (want.vv, want.cloud)


@needs_native
def test_vector_growth_up_to_the_last_64_bit_counter() -> None:
    """Covering counters up to 2**63 - 1 ends (the step past it would overflow), and
    negative or 64-bit-extreme entries give the pure twin's outcome."""
    cloud = {("a", EDGE - 1), ("a", EDGE), ("b", 3)}
    for o_vv in ({"a": EDGE}, {"a": EDGE, "b": 1}, {"a": EDGE - 1}):
        check_same("ctx_join_into", {"a": EDGE - 3}, cloud, o_vv, set())
    check_same("ctx_join_into", {"a": -(2**63)}, cloud, {"a": EDGE}, set())
    check_same("ctx_join_into", {"a": 1}, cloud, {"a": -5, "b": EDGE}, {("a", EDGE)})
    check_same("ctx_add", {"a": EDGE}, cloud, "a", EDGE)
    check_same("ctx_add", {"a": -(2**63)}, cloud, "a", -(2**63) + 1)
