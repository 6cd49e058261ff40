"""The z3 models describe the code: evaluated on concrete states, they agree with it.

For every modelled type, Hypothesis runs a small cluster of three replicas (ids
``a``, ``b``, ``c``) through random mutations and merges using the public API, picks
two of the resulting states ``x`` and ``y``, and checks — by ground z3 queries on the
translated states — that

* the model's join of ``⟦x⟧`` and ``⟦y⟧`` equals ``⟦x | y⟧`` (the Python join), and
* the model's order holds of ``⟦x⟧, ⟦y⟧`` exactly when ``x <= y`` does.

States come from one shared history so that dots are globally unique, as they are in
any real deployment (the models assume it; see :mod:`lattice_models`). The history
ships *deltas* as well as whole states (so causal contexts with holes occur), and
every example also applies a real mutator to a real state and checks its delta, in
the code and in the model. ``make test`` runs this module on both kernel backends
(``test-pure`` repeats it with the pure kernels); ``make soak`` runs 2,000 examples
per type.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import z3
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from lattice_models import (
    IMPLEMENTATIONS,
    MODELS,
    REPLICAS,
    VALUES,
    Model,
    dot_z3,
    elem,
    elem_of,
    written,
)
from lattice_models import value_rank as rank

from vsm_phoenix.crdt import (
    CausalContext,
    Dot,
    GCounter,
    GSet,
    LWWElementSet,
    LWWRegister,
    MVRegister,
    ORMap,
    ORSet,
    PNCounter,
    Timestamp,
    TwoPSet,
    VectorClock,
)
from vsm_phoenix.crdt._domain import atom_key

IDS = ("a", "b", "c")
ELEMENTS = st.sampled_from([0, 1, "x", "y", b"z", None, ("t", 1)])
COUNTS = st.integers(0, 3)
STAMPS = st.builds(Timestamp, st.integers(0, 4), st.integers(0, 2), st.sampled_from(REPLICAS))

FEW = st.sampled_from([0, "x", ("t", 1)])  # few elements: removes meet adds often

Op = Callable[[Any, str], Any]


def _remove_present(pick: int) -> Op:
    """Remove the ``pick``-th present element (in canonical order), if any."""

    def op(o: Any, r: str) -> Any:
        present = sorted(o.value, key=atom_key)
        return o.remove(present[pick % len(present)]) if present else None

    return op


def _ops(type_name: str) -> st.SearchStrategy[Op]:
    """One random mutation of a replica (called with the object and its replica id)."""
    if type_name == "GCounter":
        return COUNTS.map(lambda n: lambda o, r: o.increment(r, n))
    if type_name == "PNCounter":
        return st.one_of(
            COUNTS.map(lambda n: lambda o, r: o.increment(r, n)),
            COUNTS.map(lambda n: lambda o, r: o.decrement(r, n)),
        )
    if type_name == "VectorClock":
        return st.just(lambda o, r: o.increment(r))
    if type_name == "GSet":
        return ELEMENTS.map(lambda e: lambda o, r: o.add(e))
    if type_name == "TwoPSet":
        return st.one_of(
            FEW.map(lambda e: lambda o, r: o.add(e)),
            FEW.map(lambda e: lambda o, r: o.remove(e)),
        )
    if type_name == "LWWElementSet":
        return st.one_of(
            st.tuples(FEW, STAMPS).map(lambda p: lambda o, r: o.add(*p)),
            st.tuples(FEW, STAMPS).map(lambda p: lambda o, r: o.remove(*p)),
        )
    if type_name == "LWWRegister":
        return st.tuples(st.sampled_from(VALUES), STAMPS).map(
            lambda p: lambda o, r: o.assign(*p)
        )
    if type_name == "CausalContext":
        return st.integers(1, 5).map(lambda c: lambda o, r: o.add(Dot(r, c)))
    if type_name == "ORSet":
        return st.one_of(
            FEW.map(lambda e: lambda o, r: o.add(r, e)),
            st.integers(0, 2).map(_remove_present),
        )
    if type_name == "MVRegister":
        return st.sampled_from(VALUES).map(lambda v: lambda o, r: o.assign(r, v))
    if type_name == "ORMap[GCounter]":
        return st.one_of(
            st.tuples(FEW, COUNTS).map(
                lambda p: lambda o, r: o.update(r, p[0], GCounter, lambda c: c.increment(r, p[1]))
            ),
            st.integers(0, 2).map(_remove_present),
        )
    raise AssertionError(type_name)


_CRDT_TYPES = tuple(IMPLEMENTATIONS.values())


def _as_delta(value: Any) -> Any:
    """A mutator's return value when it is a delta state (some return ``None``)."""
    return value if isinstance(value, _CRDT_TYPES) else None


@st.composite
def two_states(draw: st.DrawFn, type_name: str) -> tuple[Any, Any]:
    """Two states of one shared history. Replicas mutate, merge whole states, and
    receive *deltas* — the mutators' return values, delivered late, twice or never —
    so contexts with holes (dot clouds) and delta-built states occur, not only states
    made by full merges."""
    cls = IMPLEMENTATIONS[type_name]
    replicas = [cls() for _ in IDS]
    deltas: list[Any] = []
    steps = draw(st.lists(st.tuples(st.integers(0, 2), st.integers(0, 2), st.integers(0, 3),
                                    _ops(type_name)), min_size=2, max_size=24))
    for i, j, action, op in steps:
        if action == 1:
            replicas[i] |= replicas[j]
        elif action == 2 and deltas:
            replicas[i] |= deltas[j % len(deltas)]  # a delta shipped alone
        else:
            delta = _as_delta(op(replicas[i], IDS[i]))
            if delta is not None:
                deltas.append(delta.copy())
    i = draw(st.integers(0, 2))
    j = (i + draw(st.integers(1, 2))) % 3  # two different replicas
    x = replicas[i].copy()
    choice = draw(st.integers(0, 4))
    x_is_delta = False
    if choice == 0:  # sometimes a state and a later version of it
        x = replicas[j] | replicas[i]
    elif choice == 1 and deltas:  # sometimes a delta itself
        x = deltas[draw(st.integers(0, len(deltas) - 1))].copy()
        x_is_delta = True
    y = replicas[j].copy()
    pattern = draw(st.integers(0, 2))
    if pattern:  # y saw x, then one of them mutated (e.g. removed what it observed)
        y |= x
        # A bare delta lacks its replica's earlier dots: a mutator run on it as that
        # replica would reuse a dot with another value (a replica that lost its state),
        # which the models exclude (dots are globally unique). Mutate y then.
        if pattern == 1 or x_is_delta:
            draw(_ops(type_name))(y, IDS[j])
        else:
            draw(_ops(type_name))(x, IDS[i])
    return x, y


def _decide(hypotheses: list[Any], claim: Any) -> None:
    solver = z3.Solver()
    solver.set(timeout=20_000)
    solver.add(*hypotheses, z3.Not(claim))
    assert solver.check() == z3.unsat, f"model disagrees with the code: {claim}"


def _dot_facts(type_name: str, *states: Any) -> list[Any]:
    """What the global functions of the models say about the concrete dots: the value
    an MV-Register dot carries, the element/key an OR-Set/OR-Map dot was minted for."""
    if type_name == "MVRegister":
        return [written(dot_z3(d)) == rank(v) for s in states for d, v in s._writes.items()]
    if type_name == "ORSet":
        return [elem_of(dot_z3(d)) == elem(e) for s in states
                for e, ds in s._entries.items() for d in ds]
    if type_name == "ORMap[GCounter]":
        return [elem_of(dot_z3(d)) == elem(k) for s in states
                for k, slot in s._slots.items() for d in slot.dots()]
    return []


def _check(type_name: str, x: Any, y: Any) -> None:
    model: Model = MODELS[type_name]()
    assert model.to_z3 is not None
    joined = x | y
    zx, zy, zj = model.to_z3(x), model.to_z3(y), model.to_z3(joined)
    facts = _dot_facts(type_name, x, y, joined)
    consistent = z3.Solver()
    consistent.add(*facts)
    assert consistent.check() == z3.sat  # no dot carries two values / elements
    for z in (zx, zy, zj):  # the invariants the proofs assume hold of real states
        _decide(facts, z3.And(True, *model.invariant(z)))
    _decide(facts, model.eq(model.join(zx, zy), zj))
    order = model.leq(zx, zy)
    _decide(facts, order if x <= y else z3.Not(order))
    # Bottom is the implementation's T().
    bottom = IMPLEMENTATIONS[type_name]()
    _decide([], model.eq(model.to_z3(bottom), model.bottom))


def _check_delta(type_name: str, x: Any, op: Op) -> None:
    """A real mutator on a real state: its delta satisfies what the proofs assume of
    deltas — in the code (``x | δ == m(x)``, ``δ <= m(x)``) and in the model
    (``⟦x⟧ ⊔ ⟦δ⟧ = ⟦m(x)⟧``, ``⟦δ⟧ ≤ ⟦m(x)⟧``, the invariant holds of ``⟦δ⟧``)."""
    model: Model = MODELS[type_name]()
    assert model.to_z3 is not None
    before = x.copy()
    delta = _as_delta(op(x, IDS[0]))
    if delta is None:
        return
    assert before | delta == x, "the delta does not rebuild the mutated state"
    assert delta <= x and before <= x
    zb, zd, za = model.to_z3(before), model.to_z3(delta), model.to_z3(x)
    facts = _dot_facts(type_name, before, delta, x)
    _decide(facts, z3.And(True, *model.invariant(zd)))
    _decide(facts, model.eq(model.join(zb, zd), za))
    _decide(facts, model.leq(zd, za))
    _decide(facts, model.leq(zb, za))


# The profile's examples (dev 50, ci 150), not a fixed 60: a join bug that shows in 5 %
# of random pairs is missed by 60 examples one time in twenty. ``make soak`` runs 2000.
EXAMPLES = settings.default.max_examples


def _make_test(type_name: str) -> Any:
    @settings(max_examples=EXAMPLES, deadline=None,
              suppress_health_check=[HealthCheck.too_slow])
    @given(two_states(type_name), _ops(type_name))
    def test(pair: tuple[Any, Any], op: Op) -> None:
        _check(type_name, *pair)
        _check_delta(type_name, pair[0].copy(), op)

    test.__name__ = f"test_model_matches_{type_name.replace('[', '_').replace(']', '')}"
    return test


for _name in IMPLEMENTATIONS:
    _t = _make_test(_name)
    globals()[_t.__name__] = _t


@pytest.mark.soak
@pytest.mark.parametrize("type_name", list(IMPLEMENTATIONS))
def test_model_matches_at_length(type_name: str) -> None:
    @settings(max_examples=2_000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(two_states(type_name), _ops(type_name))
    def run(pair: tuple[Any, Any], op: Op) -> None:
        _check(type_name, *pair)
        _check_delta(type_name, pair[0].copy(), op)

    run()


def test_every_type_is_modelled() -> None:
    catalogue = {CausalContext, GCounter, GSet, LWWElementSet, LWWRegister, MVRegister,
                 ORMap, ORSet, PNCounter, TwoPSet, VectorClock}
    assert set(IMPLEMENTATIONS.values()) == catalogue
