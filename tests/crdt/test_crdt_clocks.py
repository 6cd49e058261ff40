"""Causal primitives: VectorClock.compare against a brute-force definition, HLC
monotonicity and drift bound, CausalContext compaction is canonical."""

from __future__ import annotations

import os
import subprocess
import sys
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

import vsm_phoenix.crdt as crdt
from vsm_phoenix.crdt import HLC, CausalContext, Dot, Ordering, Timestamp, VectorClock
from vsm_phoenix.crdt.testing import dots
from vsm_phoenix.errors import InvalidArgument

CLOCKS = st.dictionaries(st.sampled_from(["r1", "r2", "r3"]), st.integers(0, 3))


@given(CLOCKS, CLOCKS)
def test_vector_clock_compare_brute_force(a: dict[str, int], b: dict[str, int]) -> None:
    va, vb = VectorClock(a), VectorClock(b)
    reps = set(a) | set(b)
    le = all(a.get(r, 0) <= b.get(r, 0) for r in reps)
    ge = all(a.get(r, 0) >= b.get(r, 0) for r in reps)
    expected = (
        Ordering.EQUAL
        if le and ge
        else Ordering.BEFORE
        if le
        else Ordering.AFTER
        if ge
        else Ordering.CONCURRENT
    )
    assert va.compare(vb) is expected
    mirror = {Ordering.BEFORE: Ordering.AFTER, Ordering.AFTER: Ordering.BEFORE}
    assert vb.compare(va) is mirror.get(expected, expected)
    assert (va <= vb) is le and (va == vb) is (le and ge)
    assert va.dominates(vb) is (expected is Ordering.AFTER)
    assert va.concurrent(vb) is (expected is Ordering.CONCURRENT)
    assert (va | vb).value == {
        r: max(a.get(r, 0), b.get(r, 0)) for r in reps if max(a.get(r, 0), b.get(r, 0)) > 0
    }


def test_vector_clock_increment_delta() -> None:
    v = VectorClock()
    d = v.increment("r1")
    d2 = v.increment("r1")
    assert d.value == {"r1": 1} and d2.value == {"r1": 2} and v.get("r1") == 2
    assert v.get("zz") == 0 and len(v) == 1


EVENTS = st.lists(
    st.one_of(
        st.tuples(st.just("now"), st.integers(0, 50)),
        st.tuples(
            st.just("update"),
            st.integers(0, 50),
            st.builds(
                Timestamp, st.integers(0, 200), st.integers(0, 5), st.sampled_from(["a", "r1", "z"])
            ),
        ),
    ),
    max_size=30,
)


@given(EVENTS)
def test_hlc_monotonic_and_ahead_of_received(events: list[Any]) -> None:
    clock = HLC("r1", max_drift_ms=100)
    prev = clock.last
    for ev in events:
        wall = ev[1]
        before = clock.last
        if ev[0] == "now":
            ts = clock.now(wall)
        else:
            remote = ev[2]
            if remote.physical_ms > wall + 100:
                with pytest.raises(ValueError) as info:
                    clock.update(remote, wall)
                assert isinstance(info.value, InvalidArgument)
                assert clock.last == before  # unchanged
                continue
            ts = clock.update(remote, wall)
            assert (ts.physical_ms, ts.logical) > (remote.physical_ms, remote.logical)
            assert ts > remote
        assert ts > prev and ts == clock.last and ts.replica == "r1"
        assert ts.physical_ms >= wall
        prev = ts


def test_hlc_drift_bound_leaves_clock_unchanged() -> None:
    clock = HLC("r1", max_drift_ms=10)
    clock.now(100)
    before = clock.last
    with pytest.raises(ValueError):
        clock.update(Timestamp(111, 0, "r2"), 100)
    assert clock.last == before
    assert clock.update(Timestamp(110, 3, "r2"), 100) == Timestamp(110, 4, "r1")
    for bad in (-1, 1.5, True, None):
        with pytest.raises((TypeError, ValueError)):
            clock.now(bad)  # type: ignore[arg-type]
        assert clock.last == Timestamp(110, 4, "r1")
    for bad_ts in ((1, 0, "r2"), Timestamp(-1, 0, "r2"), Timestamp(1, 0, "")):
        with pytest.raises((TypeError, ValueError)):
            clock.update(bad_ts, 100)  # type: ignore[arg-type]
    assert clock.last == Timestamp(110, 4, "r1")
    for args in (("",), (1,), ("r1", -1)):
        with pytest.raises((TypeError, ValueError)):
            HLC(*args)  # type: ignore[arg-type]


@given(st.lists(dots(max_counter=10), max_size=25), st.randoms(use_true_random=False))
def test_causal_context_compaction_is_canonical(ds: list[Dot], rnd: Any) -> None:
    ref = CausalContext(ds)
    shuffled = list(ds)
    rnd.shuffle(shuffled)
    by_add = CausalContext()
    for d in shuffled:
        by_add.add(d)
    by_join = CausalContext()
    for d in reversed(shuffled):
        by_join |= CausalContext([d])
    for c in (by_add, by_join):
        assert c == ref and c.to_bytes() == ref.to_bytes()
    # Compact: no cloud dot is covered by, or adjacent to, the version vector.
    vv, cloud = ref.value
    for r, c in cloud:
        assert c > vv.get(r, 0) + 1
    assert set(ref.dots()) == set(ds) and len(ref) == len(set(ds))
    for r in ("r1", "r2", "r3"):
        for c in range(1, 12):
            assert ref.contains((r, c)) is ((r, c) in set(ds))
        mine = [c for rr, c in ds if rr == r]
        assert ref.max_counter(r) == max(mine, default=0)
        assert ref.next_dot(r) == Dot(r, max(mine, default=0) + 1)


@given(st.lists(dots(max_counter=6), max_size=12), st.lists(dots(max_counter=6), max_size=12))
def test_causal_context_order_is_set_inclusion(a: list[Dot], b: list[Dot]) -> None:
    ca, cb = CausalContext(a), CausalContext(b)
    assert (ca <= cb) is (set(a) <= set(b))
    assert set((ca | cb).dots()) == set(a) | set(b)


def test_backend_is_known() -> None:
    assert crdt.BACKEND in ("pure", "native")


def test_pure_backend_forced_by_environment() -> None:
    env = dict(os.environ, VSM_PHOENIX_PURE="1")
    out = subprocess.run(
        [sys.executable, "-c", "import vsm_phoenix.crdt as c; print(c.BACKEND)"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    assert out.stdout.strip() == "pure"
