"""Strong eventual consistency: N replicas, random ops, random delivery of deltas and
full states with drop, duplication and reordering.

* Replicas that have received the same set of updates are equal (same state, same
  bytes, same value) -- checked after every step, not only at the end.
* After a final full exchange all replicas are equal.
* Delta-only delivery: once every delta has arrived (any order, duplicated), all
  replicas are equal.
* For types whose value depends only on the set of ops (counters, G/2P/LWW sets, LWW
  register, clocks), every replica's value matches the sequential specification at
  every step. (ORSet, MVRegister, ORMap are checked against their happened-before
  oracles under causal delivery in ``test_crdt_semantics``.)
"""

from __future__ import annotations

from typing import Any

import pytest
from crdt_sim import ORDER_FREE, Msg, Sim, model_value, observed_value
from hypothesis import given
from hypothesis import strategies as st

from vsm_phoenix.crdt import CRDT, LWWElementSet
from vsm_phoenix.crdt.testing import LATTICE_TYPES, ops

TYPES = pytest.mark.parametrize("cls", LATTICE_TYPES, ids=lambda c: c.__name__)
IDS = ("r1", "r2", "r3", "r4")


def new_sim(cls: type[CRDT], n: int, bias: str) -> Sim:
    def bottom() -> CRDT:
        return LWWElementSet(bias) if cls is LWWElementSet else cls()  # type: ignore[arg-type]

    return Sim([bottom() for _ in range(n)], [set() for _ in range(n)])


def check_invariants(cls: type[CRDT], sim: Sim, bias: str) -> None:
    by_known: dict[frozenset[int], CRDT] = {}
    for r, k in zip(sim.replicas, sim.known, strict=True):
        fk = frozenset(k)
        if fk in by_known:
            other = by_known[fk]
            assert r == other, f"replicas that saw {sorted(fk)} differ"
            assert r.to_bytes() == other.to_bytes()
        else:
            by_known[fk] = r
        if cls in ORDER_FREE:
            assert observed_value(r) == model_value(cls, sim.events, k, bias)


def run(cls: type[CRDT], data: Any, *, states_allowed: bool, drops: bool) -> Sim:
    n = data.draw(st.integers(3, 4), label="replicas")
    bias = data.draw(st.sampled_from(["add", "remove"])) if cls is LWWElementSet else "add"
    sim = new_sim(cls, n, bias)
    dropped = []
    kinds = ["op", "op", "deliver", "deliver", "dup"]
    if states_allowed:
        kinds.append("state")
    if drops:
        kinds.append("drop")
    for _ in range(data.draw(st.integers(0, 16), label="steps")):
        kind = data.draw(st.sampled_from(kinds))
        if kind == "op":
            i = data.draw(st.integers(0, n - 1))
            sim.do_op(i, data.draw(ops(cls, [IDS[i]])))
        elif kind == "state":
            i, j = data.draw(st.integers(0, n - 1)), data.draw(st.integers(0, n - 1))
            sim.send_state(i, j)
        elif sim.inflight:
            m = data.draw(st.integers(0, len(sim.inflight) - 1))
            msg = sim.inflight[m]
            if kind == "drop":
                dropped.append(sim.inflight.pop(m))
            elif kind == "deliver":
                sim.deliver(sim.inflight.pop(m))
            else:  # deliver, and keep a copy in flight to arrive again later
                sim.deliver(msg)
        check_invariants(cls, sim, bias)
    sim.inflight.extend(dropped)  # retransmission (used by the delta-only runs)
    return sim


@TYPES
@given(data=st.data())
def test_converge_after_full_exchange(cls: type[CRDT], data: Any) -> None:
    sim = run(cls, data, states_allowed=True, drops=True)
    n = len(sim.replicas)
    # Final anti-entropy: every replica's state reaches every other (two rounds).
    for _ in range(2):
        for i in range(n):
            for j in range(n):
                sim.deliver(Msg(j, sim.replicas[i].copy(), frozenset(sim.known[i]), "state"))
    check_invariants(cls, sim, getattr(sim.replicas[0], "bias", "add"))
    first = sim.replicas[0]
    for r in sim.replicas[1:]:
        assert r == first
        assert r.to_bytes() == first.to_bytes()
        assert observed_value(r) == observed_value(first)
    assert all(k == set(sim.events) for k in sim.known)


@TYPES
@given(data=st.data())
def test_converge_with_deltas_only(cls: type[CRDT], data: Any) -> None:
    sim = run(cls, data, states_allowed=False, drops=True)
    # Every delta eventually arrives: the rest, in random order, some twice.
    rest = sim.inflight
    order = data.draw(st.permutations(range(len(rest)))) if rest else []
    twice = data.draw(st.lists(st.integers(0, max(len(rest) - 1, 0)), max_size=5))
    for idx in list(order) + [t for t in twice if rest]:
        sim.deliver(rest[idx])
        check_invariants(cls, sim, getattr(sim.replicas[0], "bias", "add"))
    first = sim.replicas[0]
    for r in sim.replicas[1:]:
        assert r == first
        assert r.to_bytes() == first.to_bytes()
    assert all(k == set(sim.events) for k in sim.known)
    # ... and equal to the plain join of everything any replica holds.
    joined = first.copy()
    for r in sim.replicas:
        joined |= r
    assert joined == first
