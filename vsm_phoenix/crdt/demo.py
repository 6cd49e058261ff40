"""An in-process convergence scenario for every CRDT type.

Three replicas of each type apply random operations; every state and delta they
produce goes into a "network" bag that delivers in random order, duplicates some
messages and delivers some late. At the end every replica has received everything
(some deltas twice, some states stale) and all replicas of a type must be equal.
Run it with ``vsm-phoenix demo`` or ``make demo``.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any, TextIO

from vsm_phoenix.crdt import (
    CRDT,
    HLC,
    GCounter,
    GSet,
    LWWElementSet,
    LWWRegister,
    MVRegister,
    ORMap,
    ORSet,
    PNCounter,
    TwoPSet,
)

__all__ = ["TYPES", "converge", "run"]

Op = Callable[[CRDT, str, random.Random, HLC, int], CRDT]

_ELEMENTS = ["apple", "pear", "fig", "kiwi", "plum"]


def _gcounter(s: Any, r: str, rng: random.Random, clk: HLC, t: int) -> CRDT:
    return s.increment(r, rng.randint(1, 5))  # type: ignore[no-any-return]


def _pncounter(s: Any, r: str, rng: random.Random, clk: HLC, t: int) -> CRDT:
    if rng.random() < 0.5:
        return s.increment(r, rng.randint(1, 5))  # type: ignore[no-any-return]
    return s.decrement(r, rng.randint(1, 5))  # type: ignore[no-any-return]


def _gset(s: Any, r: str, rng: random.Random, clk: HLC, t: int) -> CRDT:
    return s.add(rng.choice(_ELEMENTS))  # type: ignore[no-any-return]


def _twopset(s: Any, r: str, rng: random.Random, clk: HLC, t: int) -> CRDT:
    e = rng.choice(_ELEMENTS)
    return s.add(e) if rng.random() < 0.8 else s.remove(e)  # type: ignore[no-any-return]


def _lwwset(s: Any, r: str, rng: random.Random, clk: HLC, t: int) -> CRDT:
    e = rng.choice(_ELEMENTS)
    ts = clk.now(t)
    return s.add(e, ts) if rng.random() < 0.6 else s.remove(e, ts)  # type: ignore[no-any-return]


def _orset(s: Any, r: str, rng: random.Random, clk: HLC, t: int) -> CRDT:
    e = rng.choice(_ELEMENTS)
    return s.add(r, e) if rng.random() < 0.6 else s.remove(e)  # type: ignore[no-any-return]


def _lwwreg(s: Any, r: str, rng: random.Random, clk: HLC, t: int) -> CRDT:
    return s.assign(rng.choice(_ELEMENTS), clk.now(t))  # type: ignore[no-any-return]


def _mvreg(s: Any, r: str, rng: random.Random, clk: HLC, t: int) -> CRDT:
    return s.assign(r, rng.choice(_ELEMENTS))  # type: ignore[no-any-return]


def _ormap(s: Any, r: str, rng: random.Random, clk: HLC, t: int) -> CRDT:
    key = rng.choice(["cart", "likes", "tags"])
    if rng.random() < 0.15:
        return s.remove(key)  # type: ignore[no-any-return]
    if key == "likes":
        return s.update(r, key, GCounter, lambda c: c.increment(r))  # type: ignore[no-any-return]
    e = rng.choice(_ELEMENTS)
    return s.update(r, key, ORSet, lambda c: c.add(r, e))  # type: ignore[no-any-return]


#: Every type in the catalogue with a random-operation generator.
TYPES: dict[str, tuple[type[CRDT], Op]] = {
    "GCounter": (GCounter, _gcounter),
    "PNCounter": (PNCounter, _pncounter),
    "GSet": (GSet, _gset),
    "TwoPSet": (TwoPSet, _twopset),
    "LWWElementSet": (LWWElementSet, _lwwset),
    "ORSet": (ORSet, _orset),
    "LWWRegister": (LWWRegister, _lwwreg),
    "MVRegister": (MVRegister, _mvreg),
    "ORMap": (ORMap, _ormap),
}


def converge(
    kind: type[CRDT], op: Op, seed: int, replicas: int = 3, steps: int = 60
) -> tuple[list[CRDT], dict[str, int]]:
    """Run the scenario for one type; returns the final replicas and message counts."""
    rng = random.Random(seed)
    names = [f"r{i + 1}" for i in range(replicas)]
    states = {n: kind() for n in names}
    clocks = {n: HLC(n) for n in names}
    # In flight: (recipient, encoded message). Deltas and states travel as bytes, as on
    # a real wire, so the codec is exercised too.
    inflight: list[tuple[str, bytes]] = []
    stats = {"ops": 0, "sent": 0, "duplicated": 0, "delivered": 0}

    def deliver_one() -> None:
        i = rng.randrange(len(inflight))
        to, data = inflight.pop(i)
        states[to] |= kind.from_bytes(data)
        stats["delivered"] += 1

    for t in range(steps):
        who = rng.choice(names)
        roll = rng.random()
        if roll < 0.6:
            delta = op(states[who], who, rng, clocks[who], 1_000 + t * 7)
            stats["ops"] += 1
            payload = delta.to_bytes()
        else:
            payload = states[who].to_bytes()  # a (possibly stale later) full state
        for peer in names:
            if peer == who:
                continue
            inflight.append((peer, payload))
            stats["sent"] += 1
            if rng.random() < 0.2:
                inflight.append((peer, payload))
                stats["duplicated"] += 1
        # Deliver a random subset now; the rest waits (reordering, delay).
        for _ in range(rng.randint(0, len(inflight))):
            if rng.random() < 0.5 and inflight:
                deliver_one()
    while inflight:
        deliver_one()
    return [states[n] for n in names], stats


def run(seed: int = 0, out: TextIO | None = None) -> bool:
    """Run every type; print a line per type; True when all converged."""
    import sys

    stream = out if out is not None else sys.stdout
    ok = True
    print(f"CRDT convergence scenario (seed {seed}): 3 replicas per type, random ops,", file=stream)
    print("states and deltas delivered in random order with duplicates.\n", file=stream)
    for i, (name, (kind, op)) in enumerate(TYPES.items()):
        replicas, stats = converge(kind, op, seed * 1000 + i)
        same = all(r == replicas[0] for r in replicas[1:])
        same_bytes = len({r.to_bytes() for r in replicas}) == 1
        ok &= same and same_bytes
        verdict = "converged" if same and same_bytes else "DIVERGED"
        value = _show(replicas[0].value)
        print(
            f"  {name:<14} {verdict:<9} after {stats['ops']:>2} ops, "
            f"{stats['delivered']:>3} deliveries ({stats['duplicated']} duplicates) -> {value}",
            file=stream,
        )
    print("\nall replicas converged" if ok else "\nDIVERGENCE DETECTED", file=stream)
    return ok


def _show(v: Any) -> str:
    if isinstance(v, frozenset):
        return "{" + ", ".join(sorted(map(repr, v))) + "}"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{k!r}: {_show(x)}" for k, x in sorted(v.items())) + "}"
    return repr(v)
