"""Hypothesis strategies for the CRDT catalogue (public API).

This module needs the ``test`` extra (``pip install 'vsm-phoenix[test]'``): it imports
`Hypothesis <https://hypothesis.readthedocs.io>`_ at import time.

The strategies produce *reachable* states -- states built by applying random
operations at a few replicas and joining states and deltas between them -- never
arbitrary decoded layouts, so every invariant of a type holds for what they generate.
States drawn from one :class:`Execution` are *mutually consistent* (a dot names the
same event everywhere), which is what lattice laws over several states need: two
independently generated OR-Sets may reuse the dot ``("r1", 1)`` for different adds.

Building blocks:

* :func:`replica_ids`, :func:`atoms`, :func:`elements`, :func:`timestamps`,
  :func:`dots` -- argument domains;
* :class:`Op` and :func:`ops` -- one mutation of a given type issued by a replica;
  ``op.apply(state)`` runs it and returns the delta;
* :func:`executions` -- a random run of ops and joins over ``n`` replicas;
* :func:`states` and :func:`related_states` -- one reachable state, or ``k`` states
  from one run;
* :func:`corruptions` -- byte strings derived from a valid encoding by flipping bits,
  truncating or extending it.

Example::

    from hypothesis import given
    from vsm_phoenix.crdt import ORSet
    from vsm_phoenix.crdt.testing import related_states

    @given(related_states(ORSet, 2))
    def test_join_commutes(ab):
        a, b = ab
        assert a | b == b | a
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import cache
from typing import Any, Generic, TypeVar, cast

from hypothesis import strategies as st
from hypothesis.strategies import SearchStrategy

from vsm_phoenix.crdt._base import CRDT
from vsm_phoenix.crdt._domain import Atom
from vsm_phoenix.crdt.causal import CausalContext
from vsm_phoenix.crdt.clocks import Dot, Timestamp, VectorClock
from vsm_phoenix.crdt.counters import GCounter, PNCounter
from vsm_phoenix.crdt.maps import ORMap
from vsm_phoenix.crdt.registers import LWWRegister, MVRegister
from vsm_phoenix.crdt.sets import GSet, LWWElementSet, ORSet, TwoPSet

__all__ = [
    "CRDT_TYPES",
    "LATTICE_TYPES",
    "MAP_KINDS",
    "REPLICAS",
    "Execution",
    "Op",
    "atoms",
    "corruptions",
    "dots",
    "elements",
    "executions",
    "ops",
    "related_states",
    "replica_ids",
    "states",
    "timestamps",
]

C = TypeVar("C", bound=CRDT)

#: Default replica ids used by the strategies.
REPLICAS: tuple[str, ...] = ("r1", "r2", "r3")

#: The replicated data types of the catalogue.
CRDT_TYPES: tuple[type[CRDT], ...] = (
    GCounter,
    PNCounter,
    GSet,
    TwoPSet,
    LWWElementSet,
    ORSet,
    LWWRegister,
    MVRegister,
    ORMap,
)

#: Every join-semilattice: the data types plus the causal primitives.
LATTICE_TYPES: tuple[type[CRDT], ...] = (*CRDT_TYPES, VectorClock, CausalContext)

#: The nested type that :func:`ops` uses for each ORMap key. Keys fix their type, so
#: every replica agrees on it (a key holds one type for its whole life).
MAP_KINDS: dict[str, type[CRDT]] = {
    "n": GCounter,
    "p": PNCounter,
    "s": ORSet,
    "v": MVRegister,
    "w": LWWRegister,
    "m": ORMap,
}

#: A small pool of elements, so that generated operations collide on the same ones.
_ELEMENT_POOL: tuple[Atom, ...] = (0, 1, -1, "a", "b", b"x", None, ("t", 1))


# -- argument domains ----------------------------------------------------------------


def replica_ids(pool: Sequence[str] | None = REPLICAS) -> SearchStrategy[str]:
    """Replica ids: drawn from ``pool``, or any non-empty string when ``pool`` is None."""
    if pool is None:
        return st.text(min_size=1, max_size=12)
    return st.sampled_from(tuple(pool))


def atoms(max_leaves: int = 6) -> SearchStrategy[Atom]:
    """Arbitrary valid elements: ``None``, ints (including bignums), strings, bytes and
    nested tuples of those."""
    leaves: SearchStrategy[Atom] = st.one_of(
        st.none(),
        st.integers(),
        st.integers(min_value=-(2**70), max_value=2**70),
        st.text(max_size=8),
        st.binary(max_size=8),
    )
    return st.recursive(
        leaves,
        lambda inner: st.lists(inner, max_size=3).map(tuple),
        max_leaves=max_leaves,
    )


@cache
def elements() -> SearchStrategy[Atom]:
    """Elements from a small fixed pool (so that operations collide), now and then any
    atom."""
    return st.one_of(st.sampled_from(_ELEMENT_POOL), st.sampled_from(_ELEMENT_POOL), atoms(3))


@cache
def _timestamps(
    replicas: tuple[str, ...], max_physical_ms: int, max_logical: int
) -> SearchStrategy[Timestamp]:
    return st.builds(
        Timestamp,
        st.integers(0, max_physical_ms),
        st.integers(0, max_logical),
        st.sampled_from(replicas),
    )


def timestamps(
    replicas: Sequence[str] = REPLICAS, max_physical_ms: int = 3, max_logical: int = 2
) -> SearchStrategy[Timestamp]:
    """HLC timestamps over a small space, so that equal timestamps (ties) occur."""
    return _timestamps(tuple(replicas), max_physical_ms, max_logical)


def dots(replicas: Sequence[str] = REPLICAS, max_counter: int = 8) -> SearchStrategy[Dot]:
    """Dots ``(replica, counter)`` with ``1 <= counter <= max_counter``."""
    return st.builds(Dot, st.sampled_from(tuple(replicas)), st.integers(1, max_counter))


# -- operations ----------------------------------------------------------------------


@dataclass(frozen=True)
class Op:
    """One mutation issued by ``replica``: the mutator ``name`` and its arguments
    (without the replica id, which :meth:`apply` passes to replica-scoped mutators).

    For :class:`ORMap` the ``"update"`` arguments are ``(key, kind, nested_op)``; for
    :class:`CausalContext` ``"add"`` takes a dot counter of ``replica``.
    """

    name: str
    replica: str
    args: tuple[Any, ...] = ()

    def apply(self, state: CRDT) -> CRDT:
        """Apply to ``state`` in place; return the delta."""
        if isinstance(state, ORMap) and self.name == "update":
            key, kind, nested = self.args
            return state.update(self.replica, key, kind, cast(Any, nested.apply))
        if isinstance(state, CausalContext) and self.name == "add":
            dot = Dot(self.replica, self.args[0])
            state.add(dot)
            return CausalContext([dot])
        mutator: Callable[..., CRDT] = getattr(state, self.name)
        if (type(state), self.name) in _REPLICA_SCOPED:
            return mutator(self.replica, *self.args)
        return mutator(*self.args)


_REPLICA_SCOPED: frozenset[tuple[type[CRDT], str]] = frozenset(
    {
        (GCounter, "increment"),
        (PNCounter, "increment"),
        (PNCounter, "decrement"),
        (ORSet, "add"),
        (MVRegister, "assign"),
        (VectorClock, "increment"),
    }
)


@cache
def _ops_for(cls: type[CRDT], replica: str, map_depth: int) -> SearchStrategy[Op]:
    """Ops of ``cls`` issued by ``replica``."""
    r = replica
    counts = st.integers(0, 5)
    if cls is GCounter:
        return st.builds(lambda n: Op("increment", r, (n,)), counts)
    if cls is PNCounter:
        return st.builds(
            lambda name, n: Op(name, r, (n,)), st.sampled_from(["increment", "decrement"]), counts
        )
    if cls is GSet:
        return st.builds(lambda e: Op("add", r, (e,)), elements())
    if cls is TwoPSet or cls is ORSet:
        return st.builds(
            lambda name, e: Op(name, r, (e,)), st.sampled_from(["add", "add", "remove"]), elements()
        )
    if cls is LWWElementSet:
        return st.builds(
            lambda name, e, ts: Op(name, r, (e, ts)),
            st.sampled_from(["add", "remove"]),
            elements(),
            timestamps((r,)),
        )
    if cls is LWWRegister:
        return st.builds(lambda v, ts: Op("assign", r, (v, ts)), elements(), timestamps((r,)))
    if cls is MVRegister:
        return st.builds(lambda v: Op("assign", r, (v,)), elements())
    if cls is VectorClock:
        return st.just(Op("increment", r))
    if cls is CausalContext:
        return st.builds(lambda c: Op("add", r, (c,)), st.integers(1, 8))
    if cls is ORMap:
        keys = [k for k, kind in MAP_KINDS.items() if kind is not ORMap or map_depth > 0]
        update = st.sampled_from(keys).flatmap(
            lambda k: _ops_for(MAP_KINDS[k], r, map_depth - 1).map(
                lambda nested: Op("update", r, (k, MAP_KINDS[k], nested))
            )
        )
        remove = st.builds(lambda k: Op("remove", r, (k,)), st.sampled_from(keys))
        return st.one_of(update, update, remove)
    raise TypeError(f"no op strategy for {cls.__name__}")


def ops(cls: type[CRDT], replicas: Sequence[str] = REPLICAS) -> SearchStrategy[Op]:
    """Random mutations of ``cls`` issued by one of ``replicas``.

    Apply an op only to the current state of the replica that issues it: dotted types
    mint the issuer's next dot, which must be fresh.
    """
    return _ops(cls, tuple(replicas))


@cache
def _ops(cls: type[CRDT], replicas: tuple[str, ...]) -> SearchStrategy[Op]:
    if len(replicas) == 1:
        return _ops_for(cls, replicas[0], 1)
    return st.sampled_from(replicas).flatmap(lambda r: _ops_for(cls, r, 1))


# -- executions ----------------------------------------------------------------------


@dataclass
class Execution(Generic[C]):
    """A random run over a few replicas of one type.

    ``replicas[i]`` is the current state of replica ``replica_ids[i]`` (apply further
    ops of that replica to it). ``snapshots`` holds copies of every state the run went
    through -- bottom, each replica after each step, and each delta shipped -- all
    mutually consistent. ``steps`` is a readable log of what happened.
    """

    cls: type[C]
    replica_ids: tuple[str, ...]
    replicas: list[C]
    snapshots: list[C] = field(default_factory=list)
    deltas: list[C] = field(default_factory=list)
    steps: list[str] = field(default_factory=list)


def _bottom(cls: type[C], bias: str) -> C:
    if cls is LWWElementSet:
        return cast(C, LWWElementSet(bias="remove" if bias == "remove" else "add"))
    return cls()


@st.composite
def _executions(draw: st.DrawFn, cls: type[C], n_replicas: int, max_steps: int) -> Execution[C]:
    ids = (
        REPLICAS[:n_replicas]
        if n_replicas <= len(REPLICAS)
        else tuple(f"r{i + 1}" for i in range(n_replicas))
    )
    # LWWElementSet: one bias per run (sets with different biases do not join).
    bias = draw(_BIASES) if cls is LWWElementSet else "add"
    ex: Execution[C] = Execution(cls, ids, [_bottom(cls, bias) for _ in ids])
    ex.snapshots.append(_bottom(cls, bias))
    n_steps = draw(_small_ints(0, max_steps))
    for _ in range(n_steps):
        i = draw(_small_ints(0, n_replicas - 1))
        kind = draw(_STEP_KINDS)
        target = ex.replicas[i]
        if kind == "op":
            op = draw(_ops_for(cls, ids[i], 1))
            delta = cast(C, op.apply(target))
            ex.deltas.append(delta.copy())
            ex.snapshots.append(delta.copy())
            ex.steps.append(f"{ids[i]}: {op}")
        elif kind == "join":
            j = draw(_small_ints(0, n_replicas - 1))
            target |= ex.replicas[j]
            ex.steps.append(f"{ids[i]} |= state of {ids[j]}")
        else:
            if not ex.deltas:
                continue
            k = draw(_small_ints(0, len(ex.deltas) - 1))
            target |= ex.deltas[k]
            ex.steps.append(f"{ids[i]} |= delta #{k}")
        ex.snapshots.append(target.copy())
    return ex


@cache
def _small_ints(lo: int, hi: int) -> SearchStrategy[int]:
    return st.integers(lo, hi)


_STEP_KINDS = st.sampled_from(["op", "op", "op", "join", "delta"])
_BIASES = st.sampled_from(["add", "remove"])


def executions(
    cls: type[C], n_replicas: int = 3, max_steps: int = 10
) -> SearchStrategy[Execution[C]]:
    """Random runs of ``cls`` over ``n_replicas`` replicas: each step applies a random
    op at a replica, joins one replica's state into another, or joins a shipped delta
    into a replica."""
    if n_replicas < 1:
        raise ValueError("n_replicas must be >= 1")
    return cast(SearchStrategy[Execution[C]], _cached_executions(cls, n_replicas, max_steps))


@cache
def _cached_executions(
    cls: type[CRDT], n_replicas: int, max_steps: int
) -> SearchStrategy[Execution[CRDT]]:
    return _executions(cls, n_replicas, max_steps)


def states(cls: type[C], n_replicas: int = 3, max_steps: int = 10) -> SearchStrategy[C]:
    """One reachable state of ``cls`` (a fresh object: mutate it freely)."""
    return cast(SearchStrategy[C], _cached_states(cls, n_replicas, max_steps))


@cache
def _cached_states(cls: type[CRDT], n_replicas: int, max_steps: int) -> SearchStrategy[CRDT]:
    return _cached_related(cls, 1, n_replicas, max_steps).map(lambda t: t[0])


def related_states(
    cls: type[C], k: int, n_replicas: int = 3, max_steps: int = 10
) -> SearchStrategy[tuple[C, ...]]:
    """``k`` reachable states of ``cls`` taken from one run (mutually consistent, so
    they may be joined), as fresh objects."""
    return cast(SearchStrategy[tuple[C, ...]], _cached_related(cls, k, n_replicas, max_steps))


@st.composite
def _pick_related(
    draw: st.DrawFn, cls: type[CRDT], k: int, n_replicas: int, max_steps: int
) -> tuple[CRDT, ...]:
    ex = draw(executions(cls, n_replicas, max_steps))
    n = len(ex.snapshots)
    chosen = [ex.snapshots[draw(_small_ints(0, n - 1))] for _ in range(k)]
    return tuple(s.copy() for s in chosen)


@cache
def _cached_related(
    cls: type[CRDT], k: int, n_replicas: int, max_steps: int
) -> SearchStrategy[tuple[CRDT, ...]]:
    return _pick_related(cls, k, n_replicas, max_steps)


# -- hostile bytes -------------------------------------------------------------------


def corruptions(data: bytes) -> SearchStrategy[bytes]:
    """Byte strings near ``data``: one or more bits flipped, truncated, extended, or a
    byte replaced. Most are invalid encodings; a decoder must reject them cleanly."""
    if not data:
        return st.binary(min_size=1)
    n = len(data)
    positions = st.integers(0, n - 1)

    def flip(pos_bits: list[tuple[int, int]]) -> bytes:
        buf = bytearray(data)
        for pos, bit in pos_bits:
            buf[pos] ^= 1 << bit
        return bytes(buf)

    def replace(pos: int, byte: int) -> bytes:
        buf = bytearray(data)
        buf[pos] = byte
        return bytes(buf)

    return st.one_of(
        st.lists(st.tuples(positions, st.integers(0, 7)), min_size=1, max_size=3).map(flip),
        st.integers(0, n - 1).map(lambda cut: data[:cut]),
        st.binary(min_size=1, max_size=16).map(lambda tail: data + tail),
        st.builds(replace, positions, st.integers(0, 255)),
        st.builds(
            lambda cut, junk: data[:cut] + junk + data[cut:],
            positions,
            st.binary(min_size=1, max_size=4),
        ),
    )
