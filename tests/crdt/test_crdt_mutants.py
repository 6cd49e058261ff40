"""Kernel tests written against the CRDT mutants of ``mutants/catalog.py``
(``make mutate MUTATE_ARGS='--area crdt'``): known inputs and answers for each rule of
the clock, causal-context and dot-store kernels, run on every backend that is built
(the pure kernels always, the Cython twins when present). Each names the bug it
catches; they do not rely on the differential test (``test_backends.py``), so they
also judge the pure kernels on their own.
"""

from __future__ import annotations

import contextlib
import importlib
from types import ModuleType
from typing import Any

import pytest

from vsm_phoenix.crdt import _pure
from vsm_phoenix.crdt._dots import cloud_of as C
from vsm_phoenix.crdt._dots import pack, sets_of, store_of
from vsm_phoenix.errors import DecodeError

BACKENDS: list[ModuleType] = [_pure]
with contextlib.suppress(ImportError):  # the Cython twins, when built
    BACKENDS.append(importlib.import_module("vsm_phoenix.crdt._native"))


@pytest.fixture(params=BACKENDS, ids=lambda m: m.__name__.rsplit(".", 1)[-1])
def k(request: pytest.FixtureRequest) -> ModuleType:
    module: ModuleType = request.param
    return module


# -- version vectors ---------------------------------------------------------------------------
def test_clock_join_keeps_the_larger_counter(k: ModuleType) -> None:
    a = {"x": 5, "y": 1}
    k.vc_join_into(a, {"x": 3, "y": 4, "z": 2})
    assert a == {"x": 5, "y": 4, "z": 2}


def test_clock_order_needs_every_counter_covered(k: ModuleType) -> None:
    assert not k.vc_leq({"x": 1}, {"y": 1})  # same size, disjoint replicas
    assert not k.vc_leq({"x": 2, "y": 1}, {"x": 1, "y": 5})
    assert k.vc_leq({"x": 1}, {"x": 1, "y": 1})
    assert k.vc_leq({}, {})


def test_clock_compare_on_single_steps(k: ModuleType) -> None:
    assert k.vc_compare({}, {"x": 1}) == _pure.BEFORE
    assert k.vc_compare({"x": 1}, {}) == _pure.AFTER
    assert k.vc_compare({"x": 1}, {"x": 2}) == _pure.BEFORE
    assert k.vc_compare({"x": 2, "y": 1}, {"x": 1, "y": 1}) == _pure.AFTER
    assert k.vc_compare({"x": 1}, {"y": 1}) == _pure.CONCURRENT
    assert k.vc_compare({"x": 2, "y": 1}, {"x": 1, "y": 2}) == _pure.CONCURRENT
    assert k.vc_compare({"x": 3}, {"x": 3}) == _pure.EQUAL


# -- causal contexts -----------------------------------------------------------------------------
def test_context_contains_the_vectors_last_dot(k: ModuleType) -> None:
    assert k.ctx_contains({"a": 3}, {}, "a", 3)
    assert k.ctx_contains({"a": 3}, {}, "a", 1)
    assert not k.ctx_contains({"a": 3}, {}, "a", 4)
    assert k.ctx_contains({"a": 3}, C({("a", 5)}), "a", 5)
    assert not k.ctx_contains({}, C({("a", 5)}), "b", 5)


def test_compaction_never_folds_across_a_gap(k: ModuleType) -> None:
    vv, cloud = {"a": 1}, C({("a", 3), ("b", 2)})
    k.ctx_compact(vv, cloud)
    assert (vv, cloud) == ({"a": 1}, C({("a", 3), ("b", 2)}))
    vv, cloud = {"a": 1}, C({("a", 2), ("a", 4), ("a", 1)})
    k.ctx_compact(vv, cloud)
    assert (vv, cloud) == ({"a": 2}, C({("a", 4)}))


def test_compaction_absorbs_every_contiguous_run_whatever_the_set_order(k: ModuleType) -> None:
    dots = {(r, c) for r in ("a", "b", "c", "replica-d") for c in range(1, 41)}
    dots.add(("e", 7))
    vv: dict[str, int] = {}
    cloud = C(dots)
    k.ctx_compact(vv, cloud)
    assert vv == {"a": 40, "b": 40, "c": 40, "replica-d": 40}
    assert cloud == C({("e", 7)})


def test_context_join_is_compact(k: ModuleType) -> None:
    vv, cloud = {"a": 1}, C({("a", 3)})
    k.ctx_join_into(vv, cloud, {"b": 1}, C({("a", 2), ("b", 2)}))
    assert (vv, cloud) == ({"a": 3, "b": 2}, {})


def test_context_order_checks_every_dot_of_a_vector_run(k: ModuleType) -> None:
    # {a:1} is not inside ({}, {b:5}): the shortcut on cloud sizes does not decide it
    assert not k.ctx_leq({"a": 1}, {}, {}, C({("b", 5)}))
    assert not k.ctx_leq({"a": 2}, {}, {"a": 1}, C({("b", 5), ("c", 9)}))
    assert k.ctx_leq({"a": 1}, C({("a", 3)}), {"a": 3}, {})
    assert not k.ctx_leq({"a": 1}, C({("a", 3)}), {"a": 1}, C({("a", 4)}))


def sets(store: dict[Any, Any]) -> dict[Any, set[tuple[str, int]]]:
    """A dot store with every key's support as a set of ``(replica, counter)``."""
    return sets_of(store)


def packed(entries: dict[Any, set[tuple[str, int]]]) -> dict[Any, Any]:
    """A dot store in the packed normal form from ``{key: {(replica, counter), ...}}``."""
    return store_of(entries)


# -- dot stores and dot functions ------------------------------------------------------------------
def test_dot_store_join_drops_keys_the_other_side_removed(k: ModuleType) -> None:
    seen_and_removed = ({}, {"a": 1}, {})
    holding = (packed({"k": {("a", 1)}}), {"a": 1}, {})
    assert sets(k.dotstore_join(*seen_and_removed, *holding)) == {}
    assert sets(k.dotstore_join(*holding, *seen_and_removed)) == {}
    unseen = ({}, {}, {})
    assert sets(k.dotstore_join(*unseen, *holding)) == {"k": {("a", 1)}}
    assert sets(k.dotstore_join(*holding, *unseen)) == {"k": {("a", 1)}}


def test_dot_store_join_of_a_shared_key_keeps_only_live_dots(k: ModuleType) -> None:
    both = (packed({"k": {("a", 1), ("b", 1)}}), {"a": 1, "b": 1}, {})
    removed_b = (packed({"k": {("a", 1)}}), {"a": 1, "b": 1}, {})  # saw (b, 1), removed it
    assert sets(k.dotstore_join(*both, *removed_b)) == {"k": {("a", 1)}}
    assert sets(k.dotstore_join(*removed_b, *both)) == {"k": {("a", 1)}}
    removed_c = (packed({"k": {("a", 1)}}), {"a": 1}, C({("c", 5)}))  # (c, 5) seen via the cloud
    added_c = (packed({"k": {("a", 1), ("c", 5)}}), {"a": 1}, C({("c", 5)}))
    assert sets(k.dotstore_join(*removed_c, *added_c)) == {"k": {("a", 1)}}
    assert sets(k.dotstore_join(*added_c, *removed_c)) == {"k": {("a", 1)}}
    fresh_c = (packed({"k": {("a", 1), ("c", 5)}}), {"a": 1}, C({("c", 5)}))
    assert sets(k.dotstore_join(*fresh_c, packed({"k": {("a", 1)}}), {"a": 1}, {})) == {
        "k": {("a", 1), ("c", 5)}}


def test_dot_fun_join_honours_the_other_sides_cloud(k: ModuleType) -> None:
    written = ({pack("a", 3): "x"}, {"a": 3}, {})
    overwritten = ({}, {"a": 1}, C({("a", 3)}))  # saw dot (a, 3) and replaced it
    assert k.dotfun_join(*written, *overwritten) == {}
    assert k.dotfun_join(*overwritten, *written) == {}
    assert k.dotfun_join(*written, {}, {"a": 1}, {}) == {pack("a", 3): "x"}


@pytest.mark.parametrize(("state", "vv", "cloud"), [
    ([["k1", [["a", 1]]], ["k2", [["a", 1]]]], {"a": 1}, {}),  # one dot, two keys
    ([["k", [["a", 2]]]], {"a": 1}, {}),  # outside the context
    ([["k", [["a", 3]]]], {"a": 1}, C({("a", 4)})),
    ([["k", [["b", 1]]]], {"a": 1}, {}),
])
def test_dot_store_decoder_refuses_dots_the_context_does_not_allow(
    k: ModuleType, state: list[object], vv: dict[str, int], cloud: set[tuple[str, int]]
) -> None:
    with pytest.raises((ValueError, DecodeError)):
        k.dotstore_decode(state, vv, cloud)


def test_dot_store_decoder_accepts_what_the_context_covers(k: ModuleType) -> None:
    state = [["k1", [["a", 1], ["b", 4]]], ["k2", [["a", 2]]]]
    assert sets(k.dotstore_decode(state, {"a": 2}, C({("b", 4)}))) == {
        "k1": {("a", 1), ("b", 4)}, "k2": {("a", 2)}}
