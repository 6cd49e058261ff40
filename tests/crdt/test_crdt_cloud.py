"""The dot cloud as one sorted ``array('q')`` per replica.

The cloud of a causal context maps each replica to its cloud counters, strictly
ascending, in an ``array('q')`` (a ``list`` only once a counter passes 2**63 - 1). These
tests hold both backends to that normal form through adds and joins -- sparse deltas
(binary-search insertions) and dense ones (sorted unions) -- against the plain set of
dots, check that out-of-order deltas fold back into the vector, that hostile encodings
are refused with ``DecodeError`` and change nothing, and that ``len()`` past
``sys.maxsize`` raises the project's ``OverflowError``.
"""

from __future__ import annotations

import random
from array import array
from types import ModuleType

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from kernel_twin import BACKENDS, kernels_of

import vsm_phoenix
from vsm_phoenix.crdt import CausalContext, ORSet, VectorClock, codec
from vsm_phoenix.crdt._dots import QMAX, cloud_dots
from vsm_phoenix.errors import DecodeError, SizeOverflow, VsmPhoenixError


def assert_normal(ctx: CausalContext) -> None:
    """Non-empty, strictly ascending entries; an array unless a counter passes 64 bits;
    compact against the vector."""
    for r, cs in ctx.cloud.items():
        assert len(cs) > 0
        assert list(cs) == sorted(set(cs))
        assert type(cs) is (list if cs[-1] > QMAX else array)
        if type(cs) is array:
            assert cs.typecode == "q"
        assert cs[0] > ctx.vv.get(r, 0) + 1


replicas = st.sampled_from(["a", "b", "c"])
counters = st.integers(1, 40) | st.integers(QMAX - 3, QMAX + 3)
dot_lists = st.lists(st.tuples(replicas, counters), max_size=40)


@settings(max_examples=60, deadline=None)
@given(dot_lists, dot_lists, st.integers(1, 6))
def test_joins_and_adds_keep_the_normal_form_and_the_set(
    xs: list[tuple[str, int]], ys: list[tuple[str, int]], chunk: int
) -> None:
    want = set(xs) | set(ys)
    for k in BACKENDS:
        with kernels_of(k):
            a = CausalContext(xs)
            # Deltas of `chunk` dots each: sparse against a big entry, dense otherwise.
            for i in range(0, len(ys), chunk):
                a |= CausalContext(ys[i:i + chunk])
                assert_normal(a)
            assert a == CausalContext(want)
            assert cloud_dots(a.cloud) <= want
            b = CausalContext(ys)
            for r, c in xs:
                b.add((r, c))
                assert_normal(b)
            assert b == a
            assert CausalContext.from_bytes(a.to_bytes()) == a
            assert CausalContext(xs) <= a and CausalContext(ys) <= a
            assert (a <= CausalContext(xs)) == (a == CausalContext(xs))


@pytest.mark.parametrize("kernels", BACKENDS, ids=lambda m: m.__name__.rsplit(".", 1)[-1])
def test_out_of_order_one_dot_deltas_fold_back_into_the_vector(kernels: ModuleType) -> None:
    with kernels_of(kernels):
        src = ORSet()
        deltas = [src.add("s", i) for i in range(3_000)]
        order = deltas[:]
        random.Random(11).shuffle(order)
        dst = ORSet()
        peak = 0
        for d in order:
            dst |= d
            peak = max(peak, dst._ctx.cloud_size)
        assert peak > 100  # the cloud did grow while dots were missing
        assert dst == src and dst._ctx.cloud == {} and dst._ctx.vv == {"s": 3_000}


@pytest.mark.parametrize("kernels", BACKENDS, ids=lambda m: m.__name__.rsplit(".", 1)[-1])
def test_a_lost_delta_leaves_one_array_and_adds_append(kernels: ModuleType) -> None:
    with kernels_of(kernels):
        src, dst = ORSet(), ORSet()
        deltas = [src.add("s", i) for i in range(2_000)]
        for d in deltas[1:]:
            dst |= d
        cs = dst._ctx.cloud["s"]
        assert type(cs) is array and list(cs) == list(range(2, 2_001))
        dst.add("s", "own")  # the next dot goes at the end of the same array
        assert dst._ctx.cloud["s"] is cs and cs[-1] == 2_001
        dst |= deltas[0]
        assert dst._ctx.cloud == {} and dst._ctx.vv == {"s": 2_001}


@pytest.mark.parametrize("kernels", BACKENDS, ids=lambda m: m.__name__.rsplit(".", 1)[-1])
def test_counters_past_64_bits_take_a_list_and_round_trip(kernels: ModuleType) -> None:
    with kernels_of(kernels):
        a = CausalContext([("r", 5), ("r", 2**64)])
        assert a.cloud["r"] == [5, 2**64]
        b = CausalContext([("r", 7)])
        joined = a | b
        assert joined.cloud["r"] == [5, 7, 2**64] and type(joined.cloud["r"]) is list
        assert (b | a) == joined
        assert CausalContext.from_bytes(joined.to_bytes()) == joined
        b.add(("r", 2**64))
        assert b == CausalContext([("r", 7), ("r", 2**64)])


HOSTILE_STATES = [
    [{}, [["r", 3], ["r", 3]]],  # duplicate
    [{}, [["r", 5], ["r", 3]]],  # out of order within a replica
    [{}, [["s", 3], ["r", 3]]],  # out of order across replicas
    [{"r": 2}, [["r", 1]]],  # covered
    [{"r": 2}, [["r", 3]]],  # adjacent
    [{}, [["r", 0]]],
    [{}, [["r", -4]]],
    [{}, [["r", True]]],
    [{}, [["", 3]]],
    [{}, [["r", 3, 4]]],
    [{}, [["r"]]],
    [{}, "r"],
    [{"r": 0}, []],
    [[], []],
]


@pytest.mark.parametrize("kernels", BACKENDS, ids=lambda m: m.__name__.rsplit(".", 1)[-1])
@pytest.mark.parametrize("state", HOSTILE_STATES, ids=repr)
def test_hostile_contexts_are_refused_and_change_nothing(
    kernels: ModuleType, state: object
) -> None:
    with kernels_of(kernels):
        held = CausalContext([("r", 1), ("r", 4)])
        before = held.to_bytes()
        blob = codec.encode_object("cctx", 1, state)
        with pytest.raises(DecodeError):
            CausalContext.from_bytes(blob)
        with pytest.raises(DecodeError):
            held |= CausalContext.from_bytes(blob)
        assert held.to_bytes() == before


@settings(max_examples=80, deadline=None)
@given(dot_lists, st.data())
def test_damaged_bytes_decode_to_their_own_state_or_are_refused(
    dots: list[tuple[str, int]], data: st.DataObject
) -> None:
    blob = bytearray(CausalContext(dots).to_bytes())
    for _ in range(data.draw(st.integers(1, 3))):
        i = data.draw(st.integers(0, len(blob) - 1))
        blob[i] = data.draw(st.integers(0, 255))
    for k in BACKENDS:
        with kernels_of(k):
            try:
                got = CausalContext.from_bytes(bytes(blob))
            except DecodeError:
                continue
            assert got.to_bytes() == bytes(blob)
            assert_normal(got)


def test_len_past_sys_maxsize_raises_the_projects_overflow_error() -> None:
    ctx = CausalContext.from_vector(VectorClock({"r": 2**63 + 10}))
    with pytest.raises(SizeOverflow) as caught:
        len(ctx)
    assert isinstance(caught.value, OverflowError)
    assert isinstance(caught.value, VsmPhoenixError)
    assert ctx.size == 2**63 + 10
    assert vsm_phoenix.SizeOverflow is SizeOverflow
    from vsm_phoenix import crdt

    assert crdt.SizeOverflow is SizeOverflow and "SizeOverflow" in crdt.__all__
    ctx.add(("s", 1))
    assert ctx.size == 2**63 + 11
    assert cloud_dots(ctx.cloud) == set()
