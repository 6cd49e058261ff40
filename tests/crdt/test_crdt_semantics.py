"""Sequential specifications: ORSet add-wins, MVRegister and ORMap against
happened-before oracles under causal delivery; removes arriving before the adds they
observed; LWW tie-breaks; PNCounter arithmetic."""

from __future__ import annotations

from typing import Any

import cbor2
import pytest
from crdt_sim import Sim, model_value
from hypothesis import given
from hypothesis import strategies as st

from vsm_phoenix.crdt import (
    CRDT,
    GCounter,
    LWWElementSet,
    LWWRegister,
    MVRegister,
    ORMap,
    ORSet,
    PNCounter,
    Timestamp,
    decode,
)
from vsm_phoenix.crdt.testing import atoms, ops, timestamps

IDS = ("r1", "r2", "r3", "r4")


@pytest.mark.parametrize("cls", [ORSet, MVRegister, ORMap, PNCounter], ids=lambda c: c.__name__)
@given(data=st.data())
def test_value_matches_happened_before_oracle(cls: type[CRDT], data: Any) -> None:
    """Causal delivery (deltas only once their op's past is known here; full states at
    any time), with duplicates and reordering: after every step, every replica's value
    is the oracle's value for the ops it has seen."""
    n = data.draw(st.integers(3, 4))
    sim = Sim([cls() for _ in range(n)], [set() for _ in range(n)])
    for _ in range(data.draw(st.integers(0, 20))):
        kind = data.draw(st.sampled_from(["op", "op", "deliver", "deliver", "dup", "state"]))
        if kind == "op":
            i = data.draw(st.integers(0, n - 1))
            sim.do_op(i, data.draw(ops(cls, [IDS[i]])))
        elif kind == "state":
            sim.send_state(data.draw(st.integers(0, n - 1)), data.draw(st.integers(0, n - 1)))
        else:
            ready = [k for k, m in enumerate(sim.inflight) if sim.ready(m)]
            if not ready:
                continue
            k = data.draw(st.sampled_from(ready))
            msg = sim.inflight[k] if kind == "dup" else sim.inflight.pop(k)
            sim.deliver(msg)
        for r, known in zip(sim.replicas, sim.known, strict=True):
            assert r.value == model_value(cls, sim.events, known, "add"), sim.events


def test_orset_concurrent_add_wins() -> None:
    a, b = ORSet(), ORSet()
    b |= a.add("r1", "x")
    rem = b.remove("x")  # observed r1's add
    add2 = a.add("r1", "x")  # concurrent re-add at r1
    a |= rem
    b |= add2
    assert a == b and a.value == b.value == frozenset({"x"})


def test_remove_arriving_before_the_add_it_observed_still_wins() -> None:
    """DESIGN lesson: r2 sees r1's add and removes; r3 gets the remove first, then the
    add (twice) -- the element stays removed, and r3 ends equal to r2."""
    r1, r2, r3 = ORSet(), ORSet(), ORSet()
    add = r1.add("r1", "x")
    other = r1.add("r1", "y")
    r2 |= add
    rem = r2.remove("x")
    r3 |= rem
    assert "x" not in r3
    r3 |= add
    r3 |= add
    assert "x" not in r3
    assert r3 == r2
    r3 |= other
    r2 |= other
    r1 |= rem
    assert r1 == r2 == r3 and r1.value == frozenset({"y"})
    # A concurrent add at r3 (not observed by the remove) still wins.
    r4 = ORSet()
    r4 |= rem
    own = r4.add("r4", "x")
    r4 |= add
    assert "x" in r4
    r2 |= own
    assert "x" in r2 and r2 == r4 | r2


def test_ormap_remove_before_update_it_observed() -> None:
    m1, m2, m3 = ORMap(), ORMap(), ORMap()
    up = m1.update("r1", "k", GCounter, lambda c: c.increment("r1", 3))
    m2 |= up
    rem = m2.remove("k")
    m3 |= rem
    m3 |= up
    assert "k" not in m3 and m3 == m2
    # The remove freed the nested value: a later update starts from bottom.
    up2 = m3.update("r3", "k", GCounter, lambda c: c.increment("r3"))
    m1 |= rem
    m1 |= up2
    assert m1.value == {"k": 1} == m3.value


@given(
    st.lists(st.tuples(st.sampled_from(IDS), st.booleans(), st.integers(0, 10)), max_size=30),
    st.randoms(use_true_random=False),
)
def test_pncounter_value_is_sum_of_ops(seq: list[tuple[str, bool, int]], rnd: Any) -> None:
    replicas = {r: PNCounter() for r in IDS}
    deltas = []
    for r, up, amount in seq:
        s = replicas[r]
        deltas.append(s.increment(r, amount) if up else s.decrement(r, amount))
        other = replicas[rnd.choice(IDS)]
        other |= s
    expected = sum(a if up else -a for _, up, a in seq)
    rnd.shuffle(deltas)
    via_deltas = PNCounter()
    for d in deltas:
        via_deltas |= d
    total = PNCounter()
    for s in replicas.values():
        total |= s
    assert total.value == via_deltas.value == expected
    assert total == via_deltas


# -- LWW tie-breaks --------------------------------------------------------------------


@given(atoms(), atoms(), timestamps())
def test_lww_register_tie_greater_canonical_bytes_wins(v1: Any, v2: Any, ts: Timestamp) -> None:
    winner = max(v1, v2, key=lambda v: cbor2.dumps(v, canonical=True))
    a, b = LWWRegister(), LWWRegister()
    da = a.assign(v1, ts)
    db = b.assign(v2, ts)
    for x in (a | b, b | a, decode((a | b).to_bytes())):
        assert cbor2.dumps(x.value, canonical=True) == cbor2.dumps(winner, canonical=True)
    assert a | b == b | a
    # Same replica writing both, in either order, agrees with the join.
    c, d = LWWRegister(), LWWRegister()
    c.assign(v1, ts)
    c.assign(v2, ts)
    d.assign(v2, ts)
    d.assign(v1, ts)
    assert c == d == a | b
    a |= db
    b |= da
    assert a == b == c


@given(timestamps(), timestamps())
def test_lww_register_later_timestamp_wins(t1: Timestamp, t2: Timestamp) -> None:
    a, b = LWWRegister(), LWWRegister()
    a.assign("one", t1)
    b.assign("two", t2)
    j = a | b
    if t1 != t2:
        assert j.value == ("one" if t1 > t2 else "two")
        assert j.timestamp == max(t1, t2)


@pytest.mark.parametrize("bias", ["add", "remove"])
def test_lww_element_set_bias_on_equal_timestamps(bias: str) -> None:
    ts = Timestamp(5, 1, "r1")
    expected = bias == "add"
    s = LWWElementSet(bias)  # type: ignore[arg-type]
    s.add("x", ts)
    s.remove("x", ts)
    assert ("x" in s) is expected
    t = LWWElementSet(bias)  # type: ignore[arg-type]
    t.remove("x", ts)
    t.add("x", ts)
    assert ("x" in t) is expected and s == t
    a, b = LWWElementSet(bias), LWWElementSet(bias)  # type: ignore[arg-type]
    a.add("x", ts)
    b.remove("x", ts)
    assert ("x" in (a | b)) is expected and ("x" in (b | a)) is expected
    # Different timestamps: the later one wins whatever the bias.
    later = Timestamp(5, 2, "r1")
    a.remove("x", later)
    assert "x" not in a
    b.add("x", Timestamp(6, 0, "r1"))
    assert "x" in b
    assert decode(s.to_bytes()) == s and decode(s.to_bytes()).value == s.value


def test_mvregister_concurrent_writes_survive_until_overwritten() -> None:
    a, b = MVRegister(), MVRegister()
    da = a.assign("r1", "x")
    db = b.assign("r2", "y")
    a |= db
    b |= da
    assert a.value == b.value == frozenset({"x", "y"})
    dc = a.assign("r1", "z")  # saw both
    b |= dc
    assert a.value == b.value == frozenset({"z"})
    c = MVRegister()
    c |= dc  # only the overwrite, out of order
    c |= da
    c |= db
    assert c == a
