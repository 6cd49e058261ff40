"""The incremental paths against the plain joins they replace.

Merge optimisations break correctness (riak_dt's dominating-clock shortcut, Akka's
ORSet fixes): the context join that touches only the replicas the other side names,
the O(log n) ``ctx_add``, the per-replica maximum, and the dot-store join that walks
the delta through a dot index must each give exactly the state of the plain join, on
the active backend and on the pure kernels, for real replica states and for deltas
that arrive late, twice and out of order (dot clouds).
"""

from __future__ import annotations

import copy
import random
from types import ModuleType
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vsm_phoenix.crdt import CausalContext, Dot, MVRegister, ORMap, ORSet, _backend, _pure
from vsm_phoenix.crdt._dots import cloud_dots, cloud_of
from vsm_phoenix.crdt.counters import GCounter

BACKENDS: list[ModuleType] = [_pure] + ([_backend.kernels] if _backend.kernels is not _pure else [])
SETTINGS = settings(max_examples=60, deadline=None)


def plain_ctx_join(vv: dict[str, int], cloud: Any, o_vv: dict[str, int], o_cloud: Any) -> None:
    """The reference: pointwise max, union of the dots, full compaction."""
    _pure.vc_join_into(vv, o_vv)
    union = cloud_of(cloud_dots(cloud) | cloud_dots(o_cloud))
    cloud.clear()
    cloud.update(union)
    _pure.ctx_compact(vv, cloud)


def compact_ctx(rnd: random.Random, n_rep: int, top: int, n_cloud: int) -> tuple[Any, Any]:
    vv = {f"r{i}": rnd.randint(0, top) for i in range(n_rep)}
    vv = {r: c for r, c in vv.items() if c}
    cloud = cloud_of(
        (f"r{rnd.randrange(n_rep)}", rnd.randint(1, top + 5)) for _ in range(n_cloud)
    )
    _pure.ctx_compact(vv, cloud)
    return vv, cloud


@SETTINGS
@given(st.integers(0, 2**32), st.sampled_from([(1, 5, 4), (3, 20, 15), (5, 400, 300)]))
def test_incremental_ctx_join_equals_plain(seed: int, shape: tuple[int, int, int]) -> None:
    rnd = random.Random(seed)
    a = compact_ctx(rnd, *shape)
    b = compact_ctx(rnd, *shape)
    want = copy.deepcopy(a)
    plain_ctx_join(*want, *b)
    for kernels in BACKENDS:
        got = copy.deepcopy(a)
        kernels.ctx_join_into(*got, *b)
        assert got == want, kernels.__name__


@SETTINGS
@given(st.integers(0, 2**32), st.sampled_from([(1, 5, 4), (3, 30, 20)]))
def test_ctx_add_equals_plain(seed: int, shape: tuple[int, int, int]) -> None:
    rnd = random.Random(seed)
    vv, cloud = compact_ctx(rnd, *shape)
    for _ in range(30):
        r, c = f"r{rnd.randrange(shape[0])}", rnd.randint(1, shape[1] + 8)
        want_vv, want_cloud = dict(vv), cloud_of(cloud_dots(cloud) | {(r, c)})
        _pure.ctx_compact(want_vv, want_cloud)
        for kernels in BACKENDS:
            got_vv, got_cloud = dict(vv), copy.deepcopy(cloud)
            kernels.ctx_add(got_vv, got_cloud, r, c)
            assert (got_vv, got_cloud) == (want_vv, want_cloud), kernels.__name__
        vv, cloud = want_vv, want_cloud


def test_ctx_join_folds_a_wide_vector_over_a_small_cloud() -> None:
    # The receiving cloud is tiny, the other vector entry jumps by a million: the join
    # passes over the cloud instead of probing a million counters.
    vv, cloud = {"a": 1}, cloud_of({("a", 5), ("a", 2_000_002), ("b", 9)})
    for kernels in BACKENDS:
        got = (dict(vv), copy.deepcopy(cloud))
        kernels.ctx_join_into(*got, {"a": 2_000_000, "b": 7}, cloud_of({("b", 11)}))
        want = (dict(vv), copy.deepcopy(cloud))
        plain_ctx_join(*want, {"a": 2_000_000, "b": 7}, cloud_of({("b", 11)}))
        assert got == want == (
            {"a": 2_000_000, "b": 7}, cloud_of({("a", 2_000_002), ("b", 9), ("b", 11)})
        )


def replicas_with_deltas(seed: int, n_ops: int, universe: int) -> tuple[list[ORSet], list[ORSet]]:
    """Three replicas under random adds and removes with partial, reordered delta
    delivery; returns them and every delta shipped (including joined delta groups)."""
    rnd = random.Random(seed)
    reps = [ORSet() for _ in range(3)]
    deltas: list[ORSet] = []
    for _ in range(n_ops):
        i = rnd.randrange(3)
        x = rnd.randrange(universe)
        deltas.append(reps[i].add(f"r{i}", x) if rnd.random() < 0.7 else reps[i].remove(x))
        if rnd.random() < 0.2:
            reps[rnd.randrange(3)] |= rnd.choice(deltas)
        if len(deltas) > 2 and rnd.random() < 0.1:
            deltas.append(rnd.choice(deltas) | rnd.choice(deltas))
    return reps, deltas


def _index_of(s: ORSet) -> dict[str, dict[int, Any]]:
    return {r: dict(by) for r, by in _pure.dotstore_index(s._store).items()}


def _nonempty(index: dict[str, dict[int, Any]] | None) -> dict[str, dict[int, Any]]:
    assert index is not None
    return {r: by for r, by in index.items() if by}


@SETTINGS
@given(st.integers(0, 2**32), st.sampled_from([(10, 3), (80, 12), (400, 60)]))
def test_delta_join_equals_plain_join(seed: int, shape: tuple[int, int]) -> None:
    reps, deltas = replicas_with_deltas(seed, *shape)
    rnd = random.Random(seed ^ 0x5EED)
    others = [*reps, *rnd.sample(deltas, min(len(deltas), 12))]
    for kernels in BACKENDS:
        for a in reps:
            for b in others:
                want = a._store, a._ctx, b._store, b._ctx
                plain = _pure.dotstore_join(
                    want[0], want[1].vv, want[1].cloud, want[2], want[3].vv, want[3].cloud
                )
                entries = _pure.dotstore_copy(a._store)
                index = kernels.dotstore_index(entries)
                vv, cloud = dict(a._ctx.vv), copy.deepcopy(a._ctx.cloud)
                kernels.dotstore_join_delta(
                    entries, index, vv, cloud, b._store, b._ctx.vv, b._ctx.cloud
                )
                assert entries == plain
                assert {r: by for r, by in index.items() if by} == _pure.dotstore_index(plain)
                assert all(type(v) in (int, tuple) for v in entries.values())


@SETTINGS
@given(st.integers(0, 2**32), st.sampled_from([(60, 10), (300, 40)]))
def test_orset_streams_of_deltas_match_the_plain_path(seed: int, shape: tuple[int, int]) -> None:
    """A replica fed deltas one by one (late, duplicated, out of order) through the
    indexed path ends byte-identical to one fed the same deltas through the kernel."""
    reps, deltas = replicas_with_deltas(seed, *shape)
    rnd = random.Random(seed)
    fast, slow = reps[0].copy(), reps[0].copy()
    order = deltas + rnd.sample(deltas, len(deltas) // 2)
    rnd.shuffle(order)
    for i, d in enumerate(order):
        fast._join_indexed(d)
        a, b = slow._ctx, d._ctx
        _backend.dotstore_join_into(slow._store, a.vv, a.cloud, d._store, b.vv, b.cloud)
        a._join_into(b)
        if i % 7 == 0:  # local mutations between deliveries keep the index honest
            x = rnd.randrange(shape[1])
            if rnd.random() < 0.6:
                fast.add("r0", x), slow.add("r0", x)
            else:
                fast.remove(x), slow.remove(x)
        assert fast == slow
    assert fast.to_bytes() == slow.to_bytes()
    assert _nonempty(fast._index) == _index_of(fast)


def test_small_deltas_take_the_indexed_path_and_big_joins_drop_the_index() -> None:
    s = ORSet()
    for i in range(200):
        s.add("a", i)
    other = ORSet()
    delta = other.add("b", "x")
    s |= delta
    assert s._index is not None and "x" in s
    s |= s.remove(5)
    s.add("a", 7)
    assert _nonempty(s._index) == _index_of(s)
    big = ORSet()
    for i in range(100):
        big.add("c", i)
    s |= big
    assert s._index is None
    assert s.value == frozenset(range(200)) - {5} | {"x"} | frozenset(range(100))


def test_remove_before_add_wins_through_the_indexed_path() -> None:
    # The remove of an add arrives first; once the add arrives it stays removed.
    src, dst = ORSet(), ORSet()
    for i in range(100):
        dst.add("d", i)
    add = src.add("s", "late")
    rm = src.remove("late")
    dst |= rm
    dst |= add
    assert dst._index is not None
    assert "late" not in dst and dst == (dst | src)


def test_dot_cloud_does_not_make_adds_scan_it() -> None:
    # 2,000 out-of-order dots of one replica: the context's max is the cloud's last
    # counter, and each add / delta stays correct (the cost shows in
    # `python -m bench --only crdt`).
    src, dst = ORSet(), ORSet()
    deltas = [src.add("s", i) for i in range(2000)]
    for d in deltas[1:]:
        dst |= d
    assert dst._ctx.cloud_size == 1999 and list(dst._ctx.cloud) == ["s"]
    assert dst._ctx.max_counter("s") == 2000
    d = dst.add("s", "own")
    assert d.dots_of("own") == frozenset({Dot("s", 2001)})
    dst |= deltas[0]
    assert dst._ctx.cloud == {} and dst._ctx.vv == {"s": 2001}
    assert dst.value == src.value | {"own"}


def test_mvregister_and_ormap_on_dot_clouds() -> None:
    a, b = MVRegister(), MVRegister()
    deltas = [a.assign("a", i) for i in range(50)]
    for d in reversed(deltas):
        b |= d
    assert b == a and b.value == frozenset({49})
    m, n = ORMap(), ORMap()
    mdeltas = [m.update("m", i % 5, GCounter, lambda c: c.increment("m")) for i in range(60)]
    for d in reversed(mdeltas):
        n |= d
    assert n == m


@pytest.mark.parametrize("kind", [ORSet, MVRegister, ORMap, CausalContext, GCounter])
def test_copy_copy_is_a_real_copy(kind: type[Any]) -> None:
    x = kind()
    y = copy.copy(x)
    if kind is ORSet:
        y.add("r", 1)
    elif kind is MVRegister:
        y.assign("r", 1)
    elif kind is ORMap:
        y.update("r", 1, GCounter, lambda c: c.increment("r"))
    elif kind is CausalContext:
        y.add(("r", 1))
    else:
        y.increment("r")
    assert x == kind() and y != x


def test_context_membership_of_non_dots_is_false() -> None:
    ctx = CausalContext([("r", 1)])
    assert Dot("r", 1) in ctx
    assert Dot("r", 0) not in ctx
    assert ("r", -1) not in ctx and "r" not in ctx and ("", 1) not in ctx
