"""Bytes on the wire: delta anti-entropy vs full-state sync.

Two :class:`~vsm_phoenix.protocol.sync.SyncNode` replicas ``a`` and ``b`` share a
10 000-element :class:`~vsm_phoenix.crdt.ORSet`. Each round, ``a`` replaces 1 % of the
elements (100 removes + 100 adds, each its own client request) and then one shipping
interval (5 s) passes in the simulator. We count every ``sync.*`` byte that crosses the
network in either direction (data and acks, after the envelope's compression) during
the measured rounds, once with delta-interval anti-entropy and once with the same node
in ``full_state_only`` mode (which, like classic state-based anti-entropy, sends its
whole state to a peer whenever the peer lacks something the sender wrote — here only
``a`` writes, so one full state per round). Target: delta/full <= 1/50. The delta
figure includes the acks and the pull's digests (each node opens one per interval to
a peer it has not otherwise compared with).

The figure is also reported against the size of *one* compressed full-state message
(a lower bound for any full-state protocol); with one writer the two coincide.

Fan-out: ``n`` replicas (5, 10, 20, 40) in a quiet cluster; after a warm-up, one node
makes one add and the cluster runs six intervals. We count every ``sync.*`` message
and byte sent in that window: deltas per update (target <= 3n; the rule "forward what
you received" cost (n-1)^2), acks, digests (the pull's background: one per node per
interval whether or not anything changed), and delta + ack bytes per receiver.

``run(quick)`` returns the figures; ``python -m bench --only sync [--quick]`` prints them
and writes the JSON report; ``pytest bench/bench_sync.py`` runs it under
pytest-benchmark. Nothing here asserts a time.
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Callable
from typing import Any

from bench import progress
from vsm_phoenix.crdt import CRDT, ORSet
from vsm_phoenix.protocol.sim import Simulator
from vsm_phoenix.protocol.sync import Mutate, SyncConfig, SyncNode

ELEMENTS = 10_000
CHURN = 0.01
INTERVAL_MS = 5_000
TARGET = 1 / 50


def _initial_set(n: int) -> ORSet:
    s = ORSet()
    for i in range(n):
        s.add("a", f"item-{i:06d}")
    return s


def _add(element: str) -> Callable[[Any], CRDT]:
    return lambda s: s.add("a", element)


def _remove(element: str) -> Callable[[Any], CRDT]:
    return lambda s: s.remove(element)


def _measure(full_state_only: bool, rounds: int, seed: int) -> dict[str, Any]:
    base = _initial_set(ELEMENTS)
    cfg = SyncConfig(interval_ms=INTERVAL_MS, peers=("a", "b"), full_state_only=full_state_only)
    sim = Simulator(
        lambda nid, rng: SyncNode(nid, rng, cfg, replicas={"set": base}),
        ["a", "b"],
        seed=seed,
    )
    sim.run_for(2 * INTERVAL_MS)  # warm-up: first contact ships full state both ways
    rng = random.Random(seed)
    live = [f"item-{i:06d}" for i in range(ELEMENTS)]
    next_id = ELEMENTS
    per_round: list[int] = []
    churn = int(ELEMENTS * CHURN)
    one_way: list[int] = []
    for _ in range(rounds):
        before = sum(v for k, v in sim.bytes_by_type.items() if k.startswith("sync."))
        mark = len(sim.trace)
        for victim in rng.sample(range(len(live)), churn):
            element = live[victim]
            sim.client_request("a", Mutate("set", _remove(element)))
            live[victim] = f"item-{next_id:06d}"
            sim.client_request("a", Mutate("set", _add(live[victim])))
            next_id += 1
        sim.run_for(INTERVAL_MS)
        after = sum(v for k, v in sim.bytes_by_type.items() if k.startswith("sync."))
        per_round.append(after - before)
        one_way.append(max((e["bytes"] for e in sim.trace[mark:]
                            if e["k"] == "send" and e["n"] == "a" and e["type"] == "sync.delta"),
                           default=0))
    sim.run_for(2 * INTERVAL_MS)
    a, b = sim.node("a"), sim.node("b")
    assert isinstance(a, SyncNode) and isinstance(b, SyncNode)
    converged = a.replicas["set"] == b.replicas["set"] and len(a.value("set")) == ELEMENTS
    return {
        "bytes_per_round": per_round,
        "mean_bytes_per_round": sum(per_round) / len(per_round),
        "mean_largest_a_to_b_message": sum(one_way) / len(one_way),
        "full_state_bytes": len(a.replicas["set"].to_bytes()),
        "converged": converged,
    }


def fanout(n: int, seed: int = 1) -> dict[str, Any]:
    """Messages and bytes one update costs in a quiet cluster of ``n`` replicas."""
    ids = [f"n{i:02d}" for i in range(n)]
    cfg = SyncConfig(interval_ms=INTERVAL_MS, peers=tuple(ids))
    sim = Simulator(lambda nid, rng: SyncNode(nid, rng, cfg, replicas={"set": ORSet()}),
                    ids, seed=seed)
    sim.client_request(ids[0], Mutate("set", _add("warm-up")))
    sim.run_for(6 * INTERVAL_MS)
    mark = len(sim.trace)
    sim.client_request(ids[1], Mutate("set", _add("x")))
    sim.run_for(6 * INTERVAL_MS)
    count: dict[str, int] = {}
    size: dict[str, int] = {}
    for e in sim.trace[mark:]:
        if e["k"] == "send" and e["type"].startswith("sync."):
            count[e["type"]] = count.get(e["type"], 0) + 1
            size[e["type"]] = size.get(e["type"], 0) + e["bytes"]
    nodes = [sim.node(i) for i in ids]
    first = nodes[0]
    assert isinstance(first, SyncNode)
    converged = all(isinstance(x, SyncNode) and x.replicas == first.replicas for x in nodes)
    return {
        "n": n,
        "delta_messages_per_update": count.get("sync.delta", 0),
        "target_delta_messages": 3 * n,
        "ack_messages": count.get("sync.ack", 0),
        "digest_messages_in_6_intervals": count.get("sync.digest", 0),
        "delta_and_ack_bytes_per_receiver": round(
            (size.get("sync.delta", 0) + size.get("sync.ack", 0)) / (n - 1)),
        "digest_bytes_per_node_per_interval": round(
            size.get("sync.digest", 0) / (6 * n)),
        "converged": converged,
    }


def run(quick: bool = False) -> dict[str, Any]:
    """Measure delta vs full-state bytes per round, and the fan-out of one update;
    ``quick`` uses fewer rounds."""
    rounds = 3 if quick else 10
    sizes = [5, 10, 20, 40]
    t0 = time.perf_counter()
    progress.plan(2 + len(sizes))
    progress.step(f"delta sync, {rounds} rounds")
    delta = _measure(False, rounds, seed=1)
    progress.step(f"full-state sync, {rounds} rounds")
    full = _measure(True, rounds, seed=1)
    ratio = delta["mean_bytes_per_round"] / full["mean_bytes_per_round"]
    one_full_state = full["mean_largest_a_to_b_message"]
    conservative = delta["mean_bytes_per_round"] / one_full_state
    fan = []
    for n in sizes:
        progress.step(f"one update among {n} replicas")
        fan.append(fanout(n))
    return {
        "benchmark": "sync_bytes_delta_vs_full",
        "elements": ELEMENTS,
        "churn_per_round": CHURN,
        "rounds": rounds,
        "interval_ms": INTERVAL_MS,
        "delta_bytes_per_round": delta["mean_bytes_per_round"],
        "full_bytes_per_round": full["mean_bytes_per_round"],
        "uncompressed_state_bytes": delta["full_state_bytes"],
        "ratio_delta_over_full": ratio,
        "target_ratio": TARGET,
        "meets_target": ratio <= TARGET,
        "one_full_state_message_bytes": one_full_state,
        "ratio_delta_over_one_full_state_message": conservative,
        "meets_target_vs_one_full_state_message": conservative <= TARGET,
        "converged": delta["converged"] and full["converged"],
        "fanout": fan,
        "meets_target_fanout_le_3n": all(
            f["delta_messages_per_update"] <= f["target_delta_messages"] for f in fan),
        "seconds": round(time.perf_counter() - t0, 2),
    }


def test_sync_bytes(benchmark: Any) -> None:
    """pytest-benchmark entry: one quick run, figures attached to the report."""
    result = benchmark.pedantic(run, args=(True,), rounds=1, iterations=1)
    benchmark.extra_info.update(result)
    print(json.dumps(result, indent=2))
