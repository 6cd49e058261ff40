"""Lattice laws of every CRDT and causal lattice, over reachable, mutually consistent
states (``vsm_phoenix.crdt.testing``): join commutative, associative, idempotent,
``a <= a | b``, ``<=`` agrees with the join, ``|=`` equals ``|``, mutators inflationary,
deltas correct (locally and at other replicas), copies and joins independent."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from vsm_phoenix.crdt import CRDT
from vsm_phoenix.crdt.testing import LATTICE_TYPES, executions, ops, related_states

TYPES = pytest.mark.parametrize("cls", LATTICE_TYPES, ids=lambda c: c.__name__)


def same(x: CRDT, y: CRDT) -> bool:
    """State equality, checked both ways and by canonical bytes."""
    eq = x == y
    assert eq == (y == x)
    assert eq == (x.to_bytes() == y.to_bytes())
    return eq


@TYPES
@given(data=st.data())
def test_join_commutative(cls: type[CRDT], data: Any) -> None:
    a, b = data.draw(related_states(cls, 2))
    assert same(a | b, b | a)


@TYPES
@given(data=st.data())
def test_join_associative(cls: type[CRDT], data: Any) -> None:
    a, b, c = data.draw(related_states(cls, 3))
    assert same((a | b) | c, a | (b | c))


@TYPES
@given(data=st.data())
def test_join_idempotent_and_bottom(cls: type[CRDT], data: Any) -> None:
    (a,) = data.draw(related_states(cls, 1))
    assert same(a | a, a)
    bottom = type(a)() if cls.__name__ != "LWWElementSet" else type(a)(a.bias)  # type: ignore[attr-defined]
    assert same(a | bottom, a)
    assert bottom <= a
    x = a.copy()
    x |= x  # the in-place self-join path
    assert same(x, a)


@TYPES
@given(data=st.data())
def test_join_is_upper_bound_and_order_agrees(cls: type[CRDT], data: Any) -> None:
    a, b, c = data.draw(related_states(cls, 3))
    j = a | b
    assert a <= j and b <= j
    assert j >= a and j >= b
    # <= agrees with "a | b == b", on an arbitrary pair and on an ordered one.
    for x, y in ((a, b), (b, a), (a, a | c), (a | c, a), (c, j | c)):
        assert (x <= y) == same(x | y, y)
        assert (x <= y) == (y >= x)
        assert (x < y) == (x <= y and not same(x, y))
        assert (x > y) == (y < x)
    # Least upper bound: any upper bound of a and b is above a | b.
    u = a | b | c
    assert j <= u


@TYPES
@given(data=st.data())
def test_inplace_join_equals_join(cls: type[CRDT], data: Any) -> None:
    a, b = data.draw(related_states(cls, 2))
    a_bytes, b_bytes = a.to_bytes(), b.to_bytes()
    expected = a | b
    assert a.to_bytes() == a_bytes and b.to_bytes() == b_bytes  # | is pure
    x = a.copy()
    ret = x.__ior__(b)
    assert ret is x
    assert same(x, expected)
    assert b.to_bytes() == b_bytes
    y = a.copy()
    assert y.join(b) is y
    assert same(y, expected)


@TYPES
@given(data=st.data())
def test_mutators_inflationary_and_deltas_correct(cls: type[CRDT], data: Any) -> None:
    ex = data.draw(executions(cls))
    i = data.draw(st.integers(0, len(ex.replicas) - 1))
    state = ex.replicas[i]
    for _ in range(data.draw(st.integers(1, 3))):
        op = data.draw(ops(cls, [ex.replica_ids[i]]))
        before = state.copy()
        delta = op.apply(state)
        after = state.copy()
        assert type(delta) is cls
        assert before <= after, "mutator not inflationary"
        assert same(before | delta, after), "before | delta != after"
        assert delta <= after
        # The delta brings any other replica exactly as far as the full state would.
        for other in ex.snapshots[-6:] + [r for k, r in enumerate(ex.replicas) if k != i]:
            assert same((other | before) | delta, other | after)
            assert (other | delta) <= (other | after)
            z = other | before
            z |= delta
            assert same(z, other | after)


@TYPES
@given(data=st.data())
def test_copies_and_joins_are_independent(cls: type[CRDT], data: Any) -> None:
    ex = data.draw(executions(cls))
    i = data.draw(st.integers(0, len(ex.replicas) - 1))
    rid = ex.replica_ids[i]
    a = ex.replicas[i]
    b = data.draw(st.sampled_from(ex.snapshots))
    op1 = data.draw(ops(cls, [rid]))
    op2 = data.draw(ops(cls, [rid]))

    # A copy is equal, and mutating either side leaves the other alone.
    c = a.copy()
    assert same(c, a)
    a_bytes = a.to_bytes()
    op1.apply(c)
    assert a.to_bytes() == a_bytes
    c2 = a.copy()
    c2_bytes = c2.to_bytes()
    op2.apply(a)
    assert c2.to_bytes() == c2_bytes

    # A join result shares nothing with its inputs.
    a_bytes, b_bytes = a.to_bytes(), b.to_bytes()
    j = a | b
    op1.apply(j)
    assert a.to_bytes() == a_bytes and b.to_bytes() == b_bytes

    # Neither does a replica with what it joined in place, nor a delta with its replica.
    x = a.copy()
    x |= b
    op2.apply(x)
    assert b.to_bytes() == b_bytes
    y = a.copy()
    delta = op1.apply(y)
    d_bytes = delta.to_bytes()
    op2.apply(y)
    assert delta.to_bytes() == d_bytes
    z = b.copy()
    z |= delta
    op1.apply(z)
    assert delta.to_bytes() == d_bytes
