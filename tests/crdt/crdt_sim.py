"""A tiny network simulator for CRDT replicas and the sequential-specification oracles
used by the convergence and semantics tests.

Every op gets an id; each replica tracks ``known``, the ids of the ops whose effect it
has received (its own, deltas, and the ``known`` set carried by full states). ``past``
of an op is the issuer's ``known`` set just before it: under causal delivery that is
exactly the op's happened-before history.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import cbor2

from vsm_phoenix.crdt import (
    CRDT,
    CausalContext,
    GCounter,
    GSet,
    LWWElementSet,
    LWWRegister,
    MVRegister,
    ORMap,
    ORSet,
    PNCounter,
    TwoPSet,
    VectorClock,
)
from vsm_phoenix.crdt.testing import Op


@dataclass
class Event:
    op: Op
    past: frozenset[int]


@dataclass
class Msg:
    dest: int
    payload: CRDT
    known: frozenset[int]
    kind: str  # "delta" (of one op) or "state"
    op_id: int = -1


@dataclass
class Sim:
    replicas: list[CRDT]
    known: list[set[int]]
    events: dict[int, Event] = field(default_factory=dict)
    inflight: list[Msg] = field(default_factory=list)

    def do_op(self, i: int, op: Op) -> None:
        oid = len(self.events)
        self.events[oid] = Event(op, frozenset(self.known[i]))
        delta = op.apply(self.replicas[i])
        self.known[i].add(oid)
        covers = {oid}
        if isinstance(delta, (GCounter, PNCounter, VectorClock)) and delta != type(delta)():
            # These deltas carry the issuer's whole count (for PNCounter: of that sign),
            # i.e. the effect of its earlier ops of the same kind too (an increment by 0
            # ships bottom).
            covers |= {
                j
                for j in self.events[oid].past
                if self.events[j].op.replica == op.replica and self.events[j].op.name == op.name
            }
        for j in range(len(self.replicas)):
            if j != i:
                self.inflight.append(Msg(j, delta.copy(), frozenset(covers), "delta", oid))

    def send_state(self, i: int, j: int) -> None:
        self.inflight.append(Msg(j, self.replicas[i].copy(), frozenset(self.known[i]), "state"))

    def deliver(self, msg: Msg) -> None:
        self.replicas[msg.dest] |= msg.payload
        self.known[msg.dest] |= msg.known

    def ready(self, msg: Msg) -> bool:
        """Causally deliverable: everything the message's op had seen is known here."""
        if msg.kind == "state":
            return True
        return self.events[msg.op_id].past <= self.known[msg.dest]


#: Types whose value depends only on the *set* of ops applied (not their causality).
ORDER_FREE = (
    GCounter,
    PNCounter,
    GSet,
    TwoPSet,
    LWWElementSet,
    LWWRegister,
    VectorClock,
    CausalContext,
)


def key(x: Any) -> bytes:
    return cbor2.dumps(x, canonical=True)


def model_value(cls: type[CRDT], events: dict[int, Event], known: set[int], bias: str) -> Any:
    """The value the sequential specification of ``cls`` gives for the ops ``known``,
    with ``past`` as the happened-before relation."""
    ops = {i: events[i] for i in known}
    if cls is GCounter:
        return sum(e.op.args[0] for e in ops.values())
    if cls is PNCounter:
        return sum(e.op.args[0] * (1 if e.op.name == "increment" else -1) for e in ops.values())
    if cls is GSet:
        return frozenset(e.op.args[0] for e in ops.values())
    if cls is TwoPSet:
        adds = {e.op.args[0] for e in ops.values() if e.op.name == "add"}
        removes = {e.op.args[0] for e in ops.values() if e.op.name == "remove"}
        return frozenset(adds - removes)
    if cls is LWWElementSet:
        add_ts: dict[Any, Any] = {}
        rem_ts: dict[Any, Any] = {}
        for e in ops.values():
            el, ts = e.op.args
            d = add_ts if e.op.name == "add" else rem_ts
            d[el] = max(d.get(el, ts), ts)
        present = set()
        for el, ts in add_ts.items():
            r = rem_ts.get(el)
            if r is None or ts > r or (ts == r and bias == "add"):
                present.add(el)
        return frozenset(present)
    if cls is LWWRegister:
        if not ops:
            return None
        return max(((e.op.args[1], key(e.op.args[0])), e.op.args[0]) for e in ops.values())[1]
    if cls is VectorClock:
        out: dict[str, int] = {}
        for e in ops.values():
            out[e.op.replica] = out.get(e.op.replica, 0) + 1
        return out
    if cls is CausalContext:
        return frozenset((e.op.replica, e.op.args[0]) for e in ops.values())
    if cls is ORSet:
        present = set()
        for i, e in ops.items():
            if e.op.name != "add":
                continue
            el = e.op.args[0]
            if not any(
                r.op.name == "remove" and r.op.args[0] == el and i in r.past for r in ops.values()
            ):
                present.add(el)
        return frozenset(present)
    if cls is MVRegister:

        def vc(i: int) -> dict[str, int]:
            c: dict[str, int] = {}
            for j in events[i].past | {i}:
                r = events[j].op.replica
                c[r] = c.get(r, 0) + 1
            return c

        def lt(a: dict[str, int], b: dict[str, int]) -> bool:
            reps = set(a) | set(b)
            return a != b and all(a.get(r, 0) <= b.get(r, 0) for r in reps)

        clocks = {i: vc(i) for i in ops}
        return frozenset(
            ops[i].op.args[0] for i in ops if not any(lt(clocks[i], clocks[j]) for j in ops)
        )
    if cls is ORMap:
        return _ormap_value(events, known, frozenset(), events)
    raise TypeError(cls)


CAUSAL_KINDS = (ORSet, MVRegister, ORMap)


def _ormap_value(
    events: dict[int, Event], known: set[int], cancels: frozenset[int], glob: dict[int, Event]
) -> Any:
    """The OR-Map oracle (format 2: a remove frees what it observed).

    ``events`` are this level's ops (nested ops share the ids of the top-level updates
    that carry them), ``glob`` the top-level events (their ``past`` is the op's whole
    happened-before history) and ``cancels`` the ids of removes of enclosing keys.

    A key is present when some update of it was observed by no remove of it (nor of
    an enclosing key). Causal values (ORSet, MVRegister, ORMap) keep exactly the nested
    effects no such remove observed. A non-causal value is the join of what the
    surviving updates wrote; an update writes its own op plus what the updates it had
    seen wrote, except those observed by a remove it had seen.
    """
    ops = {i: events[i] for i in known}

    def observed(i: int, by: frozenset[int]) -> bool:
        return any(i in glob[r].past for r in by)

    out: dict[Any, Any] = {}
    for k in {e.op.args[0] for e in ops.values()}:
        updates = {i for i, e in ops.items() if e.op.name == "update" and e.op.args[0] == k}
        removes = cancels | {
            i for i, e in ops.items() if e.op.name == "remove" and e.op.args[0] == k
        }
        live = {i for i in updates if not observed(i, removes)}
        if not live:
            continue
        kind = ops[next(iter(updates))].op.args[1]
        nested = {
            i: Event(events[i].op.args[2], frozenset(j for j in events[i].past if j in updates))
            for i in updates
        }
        if kind in CAUSAL_KINDS:
            out[k] = _causal_value(kind, nested, updates, removes, glob)
            continue
        written: dict[int, frozenset[int]] = {}
        ops_k: set[int] = set()
        for u in live:
            ops_k |= _wrote(u, nested, removes, glob, written)
        out[k] = model_value(kind, nested, ops_k, "add")
    return out


def _wrote(
    u: int,
    nested: dict[int, Event],
    removes: frozenset[int],
    glob: dict[int, Event],
    written: dict[int, frozenset[int]],
) -> frozenset[int]:
    """The ops whose effect non-causal update ``u`` wrote under its dot: its own and
    what the updates it had seen wrote, unless a remove it had seen observed them."""
    if u not in written:
        seen = [r for r in removes if r in glob[u].past]
        acc = {u}
        for v in nested[u].past:
            if not any(v in glob[r].past for r in seen):
                acc |= _wrote(v, nested, removes, glob, written)
        written[u] = frozenset(acc)
    return written[u]


def _causal_value(
    kind: type[CRDT],
    nested: dict[int, Event],
    ids: set[int],
    cancels: frozenset[int],
    glob: dict[int, Event],
) -> Any:
    """A causal value's oracle with every effect a remove in ``cancels`` observed gone."""
    if kind is ORMap:
        return _ormap_value(nested, ids, cancels, glob)

    def cancelled(i: int) -> bool:
        return any(i in glob[c].past for c in cancels)

    ops = {i: nested[i] for i in ids}
    if kind is ORSet:
        present = set()
        for i, e in ops.items():
            if e.op.name != "add" or cancelled(i):
                continue
            el = e.op.args[0]
            if not any(
                r.op.name == "remove" and r.op.args[0] == el and i in r.past for r in ops.values()
            ):
                present.add(el)
        return frozenset(present)
    assert kind is MVRegister
    return frozenset(
        e.op.args[0]
        for i, e in ops.items()
        if not any(i in o.past for o in ops.values()) and not cancelled(i)
    )


def observed_value(s: CRDT) -> Any:
    if isinstance(s, CausalContext):
        return frozenset(s.dots())
    return s.value
