"""SMT proofs of the lattice laws of every CRDT join, over unbounded states.

Each obligation is proved by asking z3 for a counterexample: the hypotheses (the
type's invariants over every state involved, the mutator's preconditions) together
with the *negated* law must be unsatisfiable. See :mod:`lattice_models` for how each
type is modelled and :mod:`test_lattice_models_match` for the tie to the code.

Per type: commutativity, associativity and idempotence of the join; the invariants are
closed under the join; ⊥ is the identity; the type's own order (as the code computes
it) is the join order (``a ≤ b ⟺ a ⊔ b = b``). Per mutator: it preserves the
invariant and inflates (``s ≤ m(s)``); for delta mutators also ``s ⊔ δ = m(s)``,
``δ ≤ m(s)`` and the delta satisfies the invariant.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import z3
from lattice_models import MODELS, Model

TIMEOUT_MS = 30_000


def prove(hypotheses: list[Any], goal: Any) -> None:
    solver = z3.Solver()
    solver.set(timeout=TIMEOUT_MS)
    solver.add(*hypotheses)
    solver.add(z3.Not(goal))
    verdict = solver.check()
    if verdict == z3.sat:
        pytest.fail(f"counterexample: {solver.model()}")
    assert verdict == z3.unsat, f"z3 could not decide ({solver.reason_unknown()})"


def law_commutative(m: Model) -> tuple[list[Any], Any]:
    (a, ia), (b, ib) = m.fresh("a"), m.fresh("b")
    return m.axioms + ia + ib, m.eq(m.join(a, b), m.join(b, a))


def law_associative(m: Model) -> tuple[list[Any], Any]:
    (a, ia), (b, ib), (c, ic) = m.fresh("a"), m.fresh("b"), m.fresh("c")
    return m.axioms + ia + ib + ic, m.eq(m.join(m.join(a, b), c), m.join(a, m.join(b, c)))


def law_idempotent(m: Model) -> tuple[list[Any], Any]:
    a, ia = m.fresh("a")
    return m.axioms + ia, m.eq(m.join(a, a), a)


def law_closed(m: Model) -> tuple[list[Any], Any]:
    (a, ia), (b, ib) = m.fresh("a"), m.fresh("b")
    return m.axioms + ia + ib, z3.And(*m.invariant(m.join(a, b)), True)


def law_bottom(m: Model) -> tuple[list[Any], Any]:
    a, ia = m.fresh("a")
    return m.axioms + ia, z3.And(m.eq(m.join(m.bottom, a), a), *m.invariant(m.bottom))


def law_order_is_join_order(m: Model) -> tuple[list[Any], Any]:
    (a, ia), (b, ib) = m.fresh("a"), m.fresh("b")
    return m.axioms + ia + ib, m.leq(a, b) == m.eq(m.join(a, b), b)


LAWS: dict[str, Callable[[Model], tuple[list[Any], Any]]] = {
    "commutative": law_commutative,
    "associative": law_associative,
    "idempotent": law_idempotent,
    "invariant-closed": law_closed,
    "bottom-identity": law_bottom,
    "order-is-join-order": law_order_is_join_order,
}

MUTATOR_LAWS = ("keeps-invariant", "inflationary", "delta-joins-to-result", "delta-below-result")


def _mutation_goal(m: Model, mutator: str, law: str) -> tuple[list[Any], Any] | None:
    s, inv = m.fresh("s")
    mut = m.mutators[mutator](s, "m")
    hyps = m.axioms + inv + mut.pre
    if law == "keeps-invariant":
        return hyps, z3.And(True, *m.invariant(mut.after))
    if law == "inflationary":
        return hyps, m.leq(s, mut.after)
    if mut.delta is None:
        return None
    if law == "delta-joins-to-result":
        return hyps, z3.And(m.eq(m.join(s, mut.delta), mut.after), *mut.delta_invariants)
    return hyps, m.leq(mut.delta, mut.after)


JOIN_CASES = [(t, law) for t in MODELS for law in LAWS]
def _returns_delta(type_name: str, mutator: str) -> bool:
    model = MODELS[type_name]()
    return model.mutators[mutator](model.fresh("s")[0], "m").delta is not None


# Delta laws only for delta mutators (CausalContext.add changes the context in place).
MUTATOR_CASES = [
    (t, mutator, law)
    for t in MODELS
    for mutator in MODELS[t]().mutators
    for law in MUTATOR_LAWS
    if law in ("keeps-invariant", "inflationary") or _returns_delta(t, mutator)
]


@pytest.mark.parametrize(("type_name", "law"), JOIN_CASES, ids=[f"{t}-{x}" for t, x in JOIN_CASES])
def test_join_law(type_name: str, law: str) -> None:
    model = MODELS[type_name]()
    prove(*LAWS[law](model))


@pytest.mark.parametrize(
    ("type_name", "mutator", "law"), MUTATOR_CASES,
    ids=[f"{t}.{m}-{x}" for t, m, x in MUTATOR_CASES],
)
def test_mutator_law(type_name: str, mutator: str, law: str) -> None:
    model = MODELS[type_name]()
    obligation = _mutation_goal(model, mutator, law)
    assert obligation is not None
    prove(*obligation)


def test_the_prover_finds_broken_joins() -> None:
    """Sanity: the same harness refutes a join that is not idempotent-safe (sum
    instead of max) and a dot-store join that forgets the causal context."""
    model = MODELS["GCounter"]()
    r = z3.Const("r", z3.StringSort())
    model.join = lambda a, b: (z3.Lambda([r], a[0][r] + b[0][r]),)
    hyps, goal = law_idempotent(model)
    solver = z3.Solver()
    solver.add(*hyps, z3.Not(goal))
    assert solver.check() == z3.sat

    orset = MODELS["ORSet"]()
    e, d = z3.Const("e", z3.StringSort()), z3.Const("d", orset.bottom[1].sort().domain())
    orset.join = lambda a, b: (
        z3.Lambda([e, d], z3.Or(a[0][e, d], b[0][e, d])),
        z3.Lambda([d], z3.Or(a[1][d], b[1][d])),
    )
    hyps, goal = _mutation_goal(orset, "remove", "delta-joins-to-result") or ([], True)
    solver = z3.Solver()
    solver.add(*hyps, z3.Not(goal))
    assert solver.check() == z3.sat


@pytest.mark.parametrize("type_name", list(MODELS))
def test_hypotheses_are_satisfiable(type_name: str) -> None:
    """Non-vacuity: the invariants and preconditions the proofs assume have models
    (an inconsistent hypothesis would make every law 'proved'). With quantified
    invariants z3 may answer "unknown" instead of producing a model; only "unsat"
    (vacuity) fails here — :mod:`test_lattice_models_match` also checks that the
    invariants hold of real states."""
    model = MODELS[type_name]()
    (a, ia), (_b, ib), (_c, ic) = model.fresh("a"), model.fresh("b"), model.fresh("c")
    hyps = model.axioms + ia + ib + ic
    for name, mutator in model.mutators.items():
        hyps += mutator(a, name).pre
    solver = z3.Solver()
    solver.set(timeout=TIMEOUT_MS)
    solver.add(*hyps)
    assert solver.check() != z3.unsat
