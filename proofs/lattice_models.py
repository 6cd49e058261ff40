"""z3 models of every CRDT join in :mod:`vsm_phoenix.crdt`, over unbounded states.

Each :class:`Model` describes one type as z3 terms:

* a state is a tuple of z3 terms (its components); ``fresh`` makes a symbolic state
  and the type's invariants over it;
* ``join``, ``leq`` (the type's own order, written as the implementation computes it)
  and ``eq`` (state equality);
* ``mutators``: each builds, from a state and fresh parameters, the preconditions of
  the mutation, the state after it and — for delta mutators — the delta it returns;
* ``to_z3`` translates a concrete Python object of the type to a ground z3 state, so
  :mod:`test_lattice_models_match` can evaluate ``join`` on real states and compare
  with the Python join.

Modelling choices (where the model abstracts the implementation)
----------------------------------------------------------------
* Maps with a default (replica → count, element → flag) are z3 arrays; "absent" is the
  default (0, ``False``, ⊥). The implementation's "only positive counts / no empty
  dot sets are stored" is exactly what makes its dicts canonical for these arrays.
* Replica ids and elements are z3 strings (concrete atoms are written as the hex of
  their canonical CBOR bytes, which is injective). Where an order matters — HLC
  timestamps ``(physical, logical, replica)`` and the LWW register's tie-break on value
  bytes — replicas and values are integers *ranks*: the laws hold for any total order,
  and the translation maps a fixed universe of concrete ids/values order-preservingly.
* Dots are ``dot(replica, counter)``. Dots are minted once, for one purpose, so the
  element an OR-Set dot supports and the value an MV-Register dot carries are global
  functions of the dot (``elem_of``, ``written``), not per-state data: this is the
  invariant "a dot is written once" that the implementation relies on (and checks on
  decode: no dot supports two elements).
* A causal context is a set of dots (``Array(Dot, Bool)``); its compact
  ``(version vector, cloud)`` encoding is a representation of that set.
* ORMap (format 2) over non-causal values: each key's update dots carry the value the
  update wrote; modelled once with GCounter values and once with an *uninterpreted*
  value lattice (a sort ``V`` with a join axiomatised only by the semilattice laws and
  a bottom), which proves the lifting for every value type at once.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import z3

from vsm_phoenix.crdt import (
    CausalContext,
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

State = tuple[Any, ...]

# -- sorts -----------------------------------------------------------------------------
R = z3.StringSort()  # replica ids
E = z3.StringSort()  # elements / map keys

_dot = z3.Datatype("Dot")
_dot.declare("dot", ("rep", R), ("ctr", z3.IntSort()))
Dot = _dot.create()

# An optional HLC timestamp: bot, or (physical, logical, replica rank).
_ts = z3.Datatype("TS")
_ts.declare("bot")
_ts.declare("ts", ("phys", z3.IntSort()), ("log", z3.IntSort()), ("rk", z3.IntSort()))
TS = _ts.create()

# An optional LWW write: bot, or (timestamp fields, value rank).
_w = z3.Datatype("Write")
_w.declare("nowrite")
_w.declare(
    "write",
    ("w_phys", z3.IntSort()), ("w_log", z3.IntSort()), ("w_rk", z3.IntSort()),
    ("w_val", z3.IntSort()),
)
Write = _w.create()

V = z3.DeclareSort("V")  # an arbitrary value lattice (ORMap composition)
vjoin = z3.Function("vjoin", V, V, V)
vbot = z3.Const("vbot", V)

#: The element an OR-Set / OR-Map-key dot was minted for, and the value an
#: MV-Register dot carries: global functions of the dot (a dot is written once).
elem_of = z3.Function("elem_of", Dot, E)
written = z3.Function("written", Dot, z3.IntSort())


def _lex_lt(a: Sequence[Any], b: Sequence[Any]) -> Any:
    """Lexicographic strict order on equal-length tuples of Int terms."""
    out = z3.BoolVal(False)
    for x, y in reversed(list(zip(a, b, strict=True))):
        out = z3.Or(x < y, z3.And(x == y, out))
    return out


def ts_lt(a: Any, b: Any) -> Any:
    fields_a = [TS.phys(a), TS.log(a), TS.rk(a)]
    fields_b = [TS.phys(b), TS.log(b), TS.rk(b)]
    return z3.If(
        TS.is_bot(a), z3.Not(TS.is_bot(b)),
        z3.And(z3.Not(TS.is_bot(b)), _lex_lt(fields_a, fields_b)),
    )


def ts_max(a: Any, b: Any) -> Any:
    return z3.If(ts_lt(a, b), b, a)


def w_lt(a: Any, b: Any) -> Any:
    fa = [Write.w_phys(a), Write.w_log(a), Write.w_rk(a), Write.w_val(a)]
    fb = [Write.w_phys(b), Write.w_log(b), Write.w_rk(b), Write.w_val(b)]
    return z3.If(
        Write.is_nowrite(a), z3.Not(Write.is_nowrite(b)),
        z3.And(z3.Not(Write.is_nowrite(b)), _lex_lt(fa, fb)),
    )


def vleq(x: Any, y: Any) -> Any:
    return vjoin(x, y) == y


def value_lattice_axioms() -> list[Any]:
    """``vjoin`` is a semilattice join with bottom ``vbot`` — and nothing more."""
    x, y, z = z3.Consts("vx vy vz", V)
    return [
        z3.ForAll([x, y], vjoin(x, y) == vjoin(y, x)),
        z3.ForAll([x, y, z], vjoin(vjoin(x, y), z) == vjoin(x, vjoin(y, z))),
        z3.ForAll([x], vjoin(x, x) == x),
        z3.ForAll([x], vjoin(vbot, x) == x),
    ]


# -- the model interface --------------------------------------------------------------
@dataclass
class Mutation:
    """``pre`` ⟹ (``after`` is the mutated state; ``delta`` the returned delta)."""

    pre: list[Any]
    after: State
    delta: State | None = None
    delta_invariants: list[Any] = field(default_factory=list)


Mutator = Callable[[State, str], Mutation]


@dataclass
class Model:
    name: str
    fresh: Callable[[str], tuple[State, list[Any]]]
    join: Callable[[State, State], State]
    leq: Callable[[State, State], Any]
    bottom: State
    mutators: dict[str, Mutator]
    to_z3: Callable[[Any], State] | None = None
    axioms: list[Any] = field(default_factory=list)
    #: The invariant over a given state (``fresh`` returns it for new constants).
    invariant: Callable[[State], list[Any]] = lambda s: []

    def eq(self, a: State, b: State) -> Any:
        return z3.And(*[x == y for x, y in zip(a, b, strict=True)])


# -- arrays over one index: counters, clocks, flags ---------------------------------
def _max_join(a: Any, b: Any) -> Any:
    r = z3.Const("r!j", R)
    return z3.Lambda([r], z3.If(a[r] >= b[r], a[r], b[r]))


def _counts_leq(a: Any, b: Any) -> Any:
    r = z3.Const("r!l", R)
    return z3.ForAll([r], a[r] <= b[r])


def _nonneg(a: Any) -> list[Any]:
    r = z3.Const("r!n", R)
    return [z3.ForAll([r], a[r] >= 0)]


ZERO_COUNTS = z3.K(R, z3.IntVal(0))


def _counts_z3(counts: dict[str, int]) -> Any:
    arr = ZERO_COUNTS
    for r, n in sorted(counts.items()):
        arr = z3.Store(arr, z3.StringVal(r), z3.IntVal(n))
    return arr


def _fresh_counts(name: str) -> tuple[State, list[Any]]:
    a = z3.Array(name, R, z3.IntSort())
    return (a,), _nonneg(a)


def _increment(by_one: bool) -> Mutator:
    def mutate(s: State, tag: str) -> Mutation:
        (a,) = s
        r = z3.Const(f"r0!{tag}", R)
        n = z3.IntVal(1) if by_one else z3.Int(f"n!{tag}")
        total = a[r] + n
        delta = z3.Store(ZERO_COUNTS, r, total)
        return Mutation([n >= 0], (z3.Store(a, r, total),), (delta,), _nonneg(delta))

    return mutate


def gcounter_model() -> Model:
    return Model(
        "GCounter",
        _fresh_counts,
        lambda a, b: (_max_join(a[0], b[0]),),
        lambda a, b: _counts_leq(a[0], b[0]),
        (ZERO_COUNTS,),
        {"increment": _increment(by_one=False)},
        lambda g: (_counts_z3(g.counts),),
        invariant=lambda s: _nonneg(s[0]),
    )


def vectorclock_model() -> Model:
    return Model(
        "VectorClock",
        _fresh_counts,
        lambda a, b: (_max_join(a[0], b[0]),),
        lambda a, b: _counts_leq(a[0], b[0]),
        (ZERO_COUNTS,),
        {"increment": _increment(by_one=True)},
        lambda v: (_counts_z3(v.value),),
        invariant=lambda s: _nonneg(s[0]),
    )


def pncounter_model() -> Model:
    inc = _increment(by_one=False)

    def fresh(name: str) -> tuple[State, list[Any]]:
        p = z3.Array(name + ".p", R, z3.IntSort())
        n = z3.Array(name + ".n", R, z3.IntSort())
        return (p, n), _nonneg(p) + _nonneg(n)

    def increment(s: State, tag: str) -> Mutation:
        m = inc((s[0],), tag)
        assert m.delta is not None
        return Mutation(m.pre, (m.after[0], s[1]), (m.delta[0], ZERO_COUNTS), m.delta_invariants)

    def decrement(s: State, tag: str) -> Mutation:
        m = inc((s[1],), tag)
        assert m.delta is not None
        return Mutation(m.pre, (s[0], m.after[0]), (ZERO_COUNTS, m.delta[0]), m.delta_invariants)

    return Model(
        "PNCounter",
        fresh,
        lambda a, b: (_max_join(a[0], b[0]), _max_join(a[1], b[1])),
        lambda a, b: z3.And(_counts_leq(a[0], b[0]), _counts_leq(a[1], b[1])),
        (ZERO_COUNTS, ZERO_COUNTS),
        {"increment": increment, "decrement": decrement},
        lambda c: (_counts_z3(c._p.counts), _counts_z3(c._n.counts)),
        invariant=lambda s: _nonneg(s[0]) + _nonneg(s[1]),
    )


# -- grow-only and two-phase sets ----------------------------------------------------
NO_ELEMENTS = z3.K(E, z3.BoolVal(False))


def elem(x: Any) -> Any:
    """A concrete atom as a z3 string: the hex of its canonical bytes (injective)."""
    return z3.StringVal(atom_key(x).hex())


def _elems_z3(items: Any) -> Any:
    arr = NO_ELEMENTS
    for x in sorted(items, key=atom_key):
        arr = z3.Store(arr, elem(x), z3.BoolVal(True))
    return arr


def _union(a: Any, b: Any) -> Any:
    e = z3.Const("e!u", E)
    return z3.Lambda([e], z3.Or(a[e], b[e]))


def _subset(a: Any, b: Any) -> Any:
    e = z3.Const("e!s", E)
    return z3.ForAll([e], z3.Implies(a[e], b[e]))


def _add_flag(which: int, width: int) -> Mutator:
    def mutate(s: State, tag: str) -> Mutation:
        x = z3.Const(f"x!{tag}", E)
        after = list(s)
        after[which] = z3.Store(s[which], x, True)
        delta = [NO_ELEMENTS] * width
        delta[which] = z3.Store(NO_ELEMENTS, x, True)
        return Mutation([], tuple(after), tuple(delta))

    return mutate


def gset_model() -> Model:
    return Model(
        "GSet",
        lambda name: ((z3.Array(name, E, z3.BoolSort()),), []),
        lambda a, b: (_union(a[0], b[0]),),
        lambda a, b: _subset(a[0], b[0]),
        (NO_ELEMENTS,),
        {"add": _add_flag(0, 1)},
        lambda g: (_elems_z3(g.value),),
    )


def twopset_model() -> Model:
    return Model(
        "TwoPSet",
        lambda name: (
            (z3.Array(name + ".add", E, z3.BoolSort()), z3.Array(name + ".rm", E, z3.BoolSort())),
            [],
        ),
        lambda a, b: (_union(a[0], b[0]), _union(a[1], b[1])),
        lambda a, b: z3.And(_subset(a[0], b[0]), _subset(a[1], b[1])),
        (NO_ELEMENTS, NO_ELEMENTS),
        {"add": _add_flag(0, 2), "remove": _add_flag(1, 2)},
        lambda t: (_elems_z3(t._adds), _elems_z3(t._removes)),
    )


# -- last-writer-wins ------------------------------------------------------------------
REPLICAS = ("a", "b", "c", "r0", "r1", "r2")
"""The concrete replica universe of the implementation tie tests (ranked in order)."""


def replica_rank(r: str) -> int:
    return sorted(REPLICAS).index(r)


def ts_z3(t: Timestamp | None) -> Any:
    if t is None:
        return TS.bot
    return TS.ts(t.physical_ms, t.logical, replica_rank(t.replica))


NO_STAMPS = z3.K(E, TS.bot)


def _stamps_z3(d: dict[Any, Timestamp]) -> Any:
    arr = NO_STAMPS
    for x in sorted(d, key=atom_key):
        arr = z3.Store(arr, elem(x), ts_z3(d[x]))
    return arr


def _ts_nonneg(t: Any) -> Any:
    return z3.Or(TS.is_bot(t), z3.And(TS.phys(t) >= 0, TS.log(t) >= 0, TS.rk(t) >= 0))


def _stamp_join(a: Any, b: Any) -> Any:
    e = z3.Const("e!t", E)
    return z3.Lambda([e], ts_max(a[e], b[e]))


def _stamp_leq(a: Any, b: Any) -> Any:
    e = z3.Const("e!tl", E)
    return z3.ForAll([e], z3.Not(ts_lt(b[e], a[e])))


def _stamp(which: int) -> Mutator:
    def mutate(s: State, tag: str) -> Mutation:
        x = z3.Const(f"x!{tag}", E)
        t = z3.Const(f"t!{tag}", TS)
        after = list(s)
        after[which] = z3.Store(s[which], x, ts_max(s[which][x], t))
        delta = [NO_STAMPS, NO_STAMPS]
        delta[which] = z3.Store(NO_STAMPS, x, t)
        return Mutation([z3.Not(TS.is_bot(t)), _ts_nonneg(t)], tuple(after), tuple(delta))

    return mutate


def lwwset_model() -> Model:
    return Model(
        "LWWElementSet",
        lambda name: (
            (z3.Array(name + ".add", E, TS), z3.Array(name + ".rm", E, TS)),
            [],
        ),
        lambda a, b: (_stamp_join(a[0], b[0]), _stamp_join(a[1], b[1])),
        lambda a, b: z3.And(_stamp_leq(a[0], b[0]), _stamp_leq(a[1], b[1])),
        (NO_STAMPS, NO_STAMPS),
        {"add": _stamp(0), "remove": _stamp(1)},
        lambda s: (_stamps_z3(s._adds), _stamps_z3(s._removes)),
    )


VALUES: tuple[Any, ...] = (None, 0, 1, 2, "x", "y", b"z", ("t", 1))
"""The concrete register values of the tie tests, ranked by canonical bytes."""


def value_rank(v: Any) -> int:
    return sorted(atom_key(x) for x in VALUES).index(atom_key(v))


def lwwreg_model() -> Model:
    def to_z3(reg: LWWRegister) -> State:
        t = reg.timestamp
        if t is None:
            return (Write.nowrite,)
        return (Write.write(t.physical_ms, t.logical, replica_rank(t.replica),
                            value_rank(reg.value)),)

    def assign(s: State, tag: str) -> Mutation:
        w = z3.Const(f"w!{tag}", Write)
        after = z3.If(w_lt(s[0], w), w, s[0])
        return Mutation([z3.Not(Write.is_nowrite(w))], (after,), (w,))

    return Model(
        "LWWRegister",
        lambda name: ((z3.Const(name, Write),), []),
        lambda a, b: (z3.If(w_lt(a[0], b[0]), b[0], a[0]),),
        lambda a, b: z3.Not(w_lt(b[0], a[0])),
        (Write.nowrite,),
        {"assign": assign},
        to_z3,
    )


# -- dots, causal contexts and dotted stores ----------------------------------------
NO_DOTS = z3.K(Dot, z3.BoolVal(False))


def dot_z3(d: tuple[str, int]) -> Any:
    return Dot.dot(z3.StringVal(d[0]), z3.IntVal(d[1]))


def dots_z3(dots: Any) -> Any:
    arr = NO_DOTS
    for d in sorted(dots):
        arr = z3.Store(arr, dot_z3(d), z3.BoolVal(True))
    return arr


def ctx_z3(ctx: CausalContext) -> Any:
    return dots_z3((d.replica, d.counter) for d in ctx.dots())


def _dot_union(a: Any, b: Any) -> Any:
    d = z3.Const("d!u", Dot)
    return z3.Lambda([d], z3.Or(a[d], b[d]))


def _dot_subset(a: Any, b: Any) -> Any:
    d = z3.Const("d!s", Dot)
    return z3.ForAll([d], z3.Implies(a[d], b[d]))


def causal_context_model() -> Model:
    def add(s: State, tag: str) -> Mutation:
        d0 = z3.Const(f"d0!{tag}", Dot)
        return Mutation([Dot.ctr(d0) >= 1], (z3.Store(s[0], d0, True),))

    return Model(
        "CausalContext",
        lambda name: ((z3.Array(name, Dot, z3.BoolSort()),), []),
        lambda a, b: (_dot_union(a[0], b[0]),),
        lambda a, b: _dot_subset(a[0], b[0]),
        (NO_DOTS,),
        {"add": add},
        lambda c: (ctx_z3(c),),
    )


NO_ENTRIES = z3.Lambda([z3.Const("e!0", E), z3.Const("d!0", Dot)], z3.BoolVal(False))


def entries_z3(entries: dict[Any, set[tuple[str, int]]]) -> Any:
    arr = NO_ENTRIES
    for x in sorted(entries, key=atom_key):
        for d in sorted(entries[x]):
            arr = z3.Store(arr, elem(x), dot_z3(d), z3.BoolVal(True))
    return arr


def dotstore_join(sa: Any, ca: Any, sb: Any, cb: Any) -> Any:
    """The add-wins dot-store join: a dot survives if both sides keep it, or one side
    keeps it and the other has not seen it."""
    e, d = z3.Const("e!j", E), z3.Const("d!j", Dot)
    a, b = sa[e, d], sb[e, d]
    return z3.Lambda([e, d], z3.Or(z3.And(a, b), z3.And(a, z3.Not(cb[d])),
                                   z3.And(b, z3.Not(ca[d]))))


def dotstore_invariant(s: Any, c: Any) -> list[Any]:
    """Every stored dot is in the context and supports the element it was minted for
    (so no dot supports two elements)."""
    e, d = z3.Const("e!i", E), z3.Const("d!i", Dot)
    return [z3.ForAll([e, d], z3.Implies(s[e, d], z3.And(c[d], elem_of(d) == e)))]


def _dotstore_leq(a: State, b: State) -> Any:
    # Exactly the implementation's ORSet._leq: contexts ordered and the join of the
    # stores is the bigger store.
    e, d = z3.Const("e!l", E), z3.Const("d!l", Dot)
    joined = dotstore_join(a[0], a[1], b[0], b[1])
    return z3.And(_dot_subset(a[1], b[1]), z3.ForAll([e, d], joined[e, d] == b[0][e, d]))


def _dotstore_add(s: State, tag: str) -> Mutation:
    """ORSet.add / the key part of ORMap.update: a fresh dot minted for ``x``."""
    store, ctx = s[0], s[1]
    x, d0 = z3.Const(f"x!{tag}", E), z3.Const(f"d0!{tag}", Dot)
    e, d = z3.Const("e!a", E), z3.Const("d!a", Dot)
    after_store = z3.Lambda([e, d], z3.If(e == x, d == d0, store[e, d]))
    after_ctx = z3.Store(ctx, d0, True)
    delta_store = z3.Lambda([e, d], z3.And(e == x, d == d0))
    delta_ctx = z3.Lambda([d], z3.Or(store[x, d], d == d0))
    pre = [z3.Not(ctx[d0]), elem_of(d0) == x]
    return Mutation(pre, (after_store, after_ctx), (delta_store, delta_ctx),
                    dotstore_invariant(delta_store, delta_ctx))


def _dotstore_remove(s: State, tag: str) -> Mutation:
    store, ctx = s[0], s[1]
    x = z3.Const(f"x!{tag}", E)
    e, d = z3.Const("e!r", E), z3.Const("d!r", Dot)
    after_store = z3.Lambda([e, d], z3.And(e != x, store[e, d]))
    delta_ctx = z3.Lambda([d], store[x, d])
    return Mutation([], (after_store, ctx), (NO_ENTRIES, delta_ctx))


def _fresh_dotstore(name: str) -> tuple[State, list[Any]]:
    s = z3.Array(name + ".s", E, Dot, z3.BoolSort())
    c = z3.Array(name + ".c", Dot, z3.BoolSort())
    return (s, c), dotstore_invariant(s, c)


def orset_model() -> Model:
    return Model(
        "ORSet",
        _fresh_dotstore,
        lambda a, b: (dotstore_join(a[0], a[1], b[0], b[1]), _dot_union(a[1], b[1])),
        _dotstore_leq,
        (NO_ENTRIES, NO_DOTS),
        {"add": _dotstore_add, "remove": _dotstore_remove},
        lambda o: (entries_z3(o._entries), ctx_z3(o._ctx)),
        invariant=lambda s: dotstore_invariant(s[0], s[1]),
    )


def dotfun_invariant(p: Any, c: Any) -> list[Any]:
    d = z3.Const("d!f", Dot)
    return [z3.ForAll([d], z3.Implies(p[d], c[d]))]


def mvregister_model() -> Model:
    """Present dots + context; the value of a present dot is ``written(dot)``."""

    def join(a: State, b: State) -> State:
        d = z3.Const("d!m", Dot)
        pa, pb = a[0][d], b[0][d]
        present = z3.Lambda([d], z3.Or(z3.And(pa, pb), z3.And(pa, z3.Not(b[1][d])),
                                       z3.And(pb, z3.Not(a[1][d]))))
        return present, _dot_union(a[1], b[1])

    def leq(a: State, b: State) -> Any:
        d = z3.Const("d!ml", Dot)
        return z3.And(_dot_subset(a[1], b[1]), z3.ForAll([d], join(a, b)[0][d] == b[0][d]))

    def assign(s: State, tag: str) -> Mutation:
        p, c = s
        d0 = z3.Const(f"d0!{tag}", Dot)
        v = z3.Int(f"v!{tag}")
        d = z3.Const("d!ma", Dot)
        delta = (z3.Lambda([d], d == d0), z3.Lambda([d], z3.Or(p[d], d == d0)))
        pre = [z3.Not(c[d0]), written(d0) == v]
        return Mutation(pre, (delta[0], z3.Store(c, d0, True)), delta,
                        dotfun_invariant(*delta))

    def fresh(name: str) -> tuple[State, list[Any]]:
        p = z3.Array(name + ".p", Dot, z3.BoolSort())
        c = z3.Array(name + ".c", Dot, z3.BoolSort())
        return (p, c), dotfun_invariant(p, c)

    def to_z3(m: MVRegister) -> State:
        return dots_z3(m._writes), ctx_z3(m._ctx)

    return Model("MVRegister", fresh, join, leq, (NO_DOTS, NO_DOTS), {"assign": assign},
                 to_z3, invariant=lambda s: dotfun_invariant(s[0], s[1]))


# -- OR-Map (format 2): keys → dot functions of values; a remove drops the key's dots ---
def ormap_model(values: str) -> Model:
    """The map over non-causal values: each key holds the update dots minted for it
    (a dot store, as the OR-Set's) and each present dot carries the value its update
    wrote; a dot both sides hold joins its two values. ``values="V"``: any value
    lattice (uninterpreted, axiomatised); ``values="GCounter"``: GCounter values (a
    concrete instance, tied to the code). Absent dots carry bottom (normal form).
    Causal values (ORSet, MVRegister, maps) share the map's context and are the OR-Set
    and MV-Register dot stores above, keyed once more: not modelled separately."""
    generic = values == "V"
    d_, r_ = z3.Const("d!v", Dot), z3.Const("r!v", R)
    bottom_vals = z3.K(Dot, vbot) if generic else z3.Lambda([d_, r_], z3.IntVal(0))

    def present(store: Any, d: Any) -> Any:
        return store[elem_of(d), d]

    def val(v: Any, d: Any, r: Any) -> Any:
        return v[d] if generic else v[d, r]

    def lam(body: Callable[[Any, Any], Any], name: str) -> Any:
        d, r = z3.Const(f"d!{name}", Dot), z3.Const(f"r!{name}", R)
        return z3.Lambda([d], body(d, None)) if generic else z3.Lambda([d, r], body(d, r))

    def vjoin_at(a: Any, b: Any, d: Any, r: Any) -> Any:
        if generic:
            return vjoin(a[d], b[d])
        return z3.If(a[d, r] >= b[d, r], a[d, r], b[d, r])

    def bot() -> Any:
        return vbot if generic else z3.IntVal(0)

    def vals_inv(store: Any, v: Any) -> list[Any]:
        d, r = z3.Const("d!vi", Dot), z3.Const("r!vi", R)
        if generic:
            return [z3.ForAll([d], z3.Implies(z3.Not(present(store, d)), v[d] == vbot))]
        return [
            z3.ForAll([d, r], z3.Implies(z3.Not(present(store, d)), v[d, r] == 0)),
            z3.ForAll([d, r], v[d, r] >= 0),
        ]

    def fresh(name: str) -> tuple[State, list[Any]]:
        (s, c), inv = _fresh_dotstore(name)
        v = (z3.Array(name + ".v", Dot, V) if generic
             else z3.Array(name + ".v", Dot, R, z3.IntSort()))
        return (s, c, v), inv + vals_inv(s, v)

    def join(a: State, b: State) -> State:
        store = dotstore_join(a[0], a[1], b[0], b[1])

        def body(d: Any, r: Any) -> Any:
            pa, pb = present(a[0], d), present(b[0], d)
            both = vjoin_at(a[2], b[2], d, r)
            one = z3.If(pa, val(a[2], d, r), val(b[2], d, r))
            return z3.If(present(store, d), z3.If(z3.And(pa, pb), both, one), bot())

        return store, _dot_union(a[1], b[1]), lam(body, "j")

    def eq(a: State, b: State) -> Any:
        return z3.And(a[0] == b[0], a[1] == b[1], a[2] == b[2])

    def leq(a: State, b: State) -> Any:
        # Exactly the implementation's ORMap._leq: contexts ordered, and the join is b.
        return z3.And(_dot_subset(a[1], b[1]), eq(join(a, b), b))

    def update(s: State, tag: str) -> Mutation:
        """Mint a fresh dot for key ``x``; it carries ``w``, the value the update
        wrote (any value: the laws hold whatever ``mutate`` did), and supersedes the
        key's dots."""
        m = _dotstore_add(s, tag)
        assert m.delta is not None
        x, d0 = z3.Const(f"x!{tag}", E), z3.Const(f"d0!{tag}", Dot)
        w = (z3.Const(f"w!{tag}", V) if generic
             else z3.Array(f"w!{tag}", R, z3.IntSort()))

        def w_at(r: Any) -> Any:
            return w if generic else w[r]

        after_v = lam(lambda d, r: z3.If(d == d0, w_at(r),
                                         z3.If(s[0][x, d], bot(), val(s[2], d, r))), "u")
        delta_v = lam(lambda d, r: z3.If(d == d0, w_at(r), bot()), "ud")
        w_inv = [] if generic else [z3.ForAll([r_], w[r_] >= 0)]
        return Mutation(
            m.pre + w_inv,
            (*m.after, after_v),
            (*m.delta, delta_v),
            m.delta_invariants + vals_inv(m.delta[0], delta_v),
        )

    def remove(s: State, tag: str) -> Mutation:
        m = _dotstore_remove(s, tag)
        assert m.delta is not None
        x = z3.Const(f"x!{tag}", E)
        after_v = lam(lambda d, r: z3.If(s[0][x, d], bot(), val(s[2], d, r)), "rm")
        return Mutation(m.pre, (*m.after, after_v), (*m.delta, bottom_vals))

    def to_z3(o: ORMap) -> State:
        entries: dict[Any, set[tuple[str, int]]] = {}
        vals: Any = bottom_vals
        d, r = z3.Const("d!z", Dot), z3.Const("r!z", R)
        for key, slot in o._slots.items():
            if slot.kind is not GCounter or slot.states is None:
                raise TypeError("the concrete ORMap model holds GCounter values")
            entries[key] = set(slot.states)
            for dot, g in sorted(slot.states.items()):
                assert isinstance(g, GCounter)
                vals = z3.Lambda([d, r], z3.If(d == dot_z3(dot), _counts_z3(g.counts)[r],
                                               vals[d, r]))
        return entries_z3(entries), ctx_z3(o._ctx), vals

    model = Model(
        f"ORMap[{values}]",
        fresh,
        join,
        leq,
        (NO_ENTRIES, NO_DOTS, bottom_vals),
        {"update": update, "remove": remove},
        None if generic else to_z3,
        value_lattice_axioms() if generic else [],
        invariant=lambda s: dotstore_invariant(s[0], s[1]) + vals_inv(s[0], s[2]),
    )
    model.eq = eq  # type: ignore[method-assign]
    return model


MODELS: dict[str, Callable[[], Model]] = {
    "GCounter": gcounter_model,
    "PNCounter": pncounter_model,
    "VectorClock": vectorclock_model,
    "GSet": gset_model,
    "TwoPSet": twopset_model,
    "LWWElementSet": lwwset_model,
    "LWWRegister": lwwreg_model,
    "CausalContext": causal_context_model,
    "ORSet": orset_model,
    "MVRegister": mvregister_model,
    "ORMap[GCounter]": lambda: ormap_model("GCounter"),
    "ORMap[V]": lambda: ormap_model("V"),
}

#: Which implementation class each concrete model describes.
IMPLEMENTATIONS: dict[str, type] = {
    "GCounter": GCounter,
    "PNCounter": PNCounter,
    "VectorClock": VectorClock,
    "GSet": GSet,
    "TwoPSet": TwoPSet,
    "LWWElementSet": LWWElementSet,
    "LWWRegister": LWWRegister,
    "CausalContext": CausalContext,
    "ORSet": ORSet,
    "MVRegister": MVRegister,
    "ORMap[GCounter]": ORMap,
}
