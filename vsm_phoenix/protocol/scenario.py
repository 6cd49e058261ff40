"""The demo scenario: a 5-node cluster with discovery and CRDT sync under faults.

Five :class:`~vsm_phoenix.protocol.cluster.ClusterNode` members join through seed
``n0`` (SWIM), advertise capabilities, and keep three replicated values in sync with
delta anti-entropy (every 5 s) while the simulator injects faults:

=========  =============================================================
time (s)   fault
=========  =============================================================
0 - 70     5 % loss, 5 % duplication, 10 % reordering; n2's clock +3 s
20 - 45    partition {n0, n1} | {n2, n3, n4}
30 - 50    n3 crashed, then restarted from its persisted state
35 - 55    asymmetric: messages n4 → n1 lost
70         network repaired; the run continues until convergence
=========  =============================================================

Clients mutate replicas on random live nodes from 2 s to 60 s. The run succeeds when
every replica is equal on all five nodes, the counter equals the number of increments
the clients saw acknowledged, and all members see each other alive again. It writes the
space-time diagram (``spacetime.html``) and the trace (``trace.json``) to ``out_dir``.
The whole run is a function of ``seed``.
"""

from __future__ import annotations

import hashlib
import random
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from vsm_phoenix.crdt import CRDT, GCounter, ORSet, PNCounter
from vsm_phoenix.protocol.cluster import ClusterNode
from vsm_phoenix.protocol.sim import NetworkConfig, Simulator
from vsm_phoenix.protocol.swim import SwimConfig
from vsm_phoenix.protocol.sync import Mutate, SyncConfig

__all__ = ["build_demo", "demo_trace_digest", "run_demo"]

NODES = ["n0", "n1", "n2", "n3", "n4"]
CAPABILITIES = {
    "n0": (["coordinator"], 0.1),
    "n1": (["gpu", "llm"], 0.6),
    "n2": (["gpu"], 0.3),
    "n3": (["llm", "storage"], 0.2),
    "n4": (["gpu", "llm"], 0.4),
}
WORK_END_MS = 60_000
REPAIR_MS = 70_000
DEADLINE_MS = 180_000


def _replicas() -> dict[str, CRDT]:
    return {"tasks": ORSet(), "events": GCounter(), "balance": PNCounter()}


def _replica_id(sim: Simulator, node: str) -> str:
    """The replica id of ``node``'s live incarnation (its sync origin, read when the
    mutation runs): dots and counter entries name the node's history, not its bare id,
    so an incarnation that lost its disk never re-issues a dot others hold."""
    live = sim.node(node)
    if not isinstance(live, ClusterNode):  # pragma: no cover - ops run on live nodes only
        raise RuntimeError(f"{node} is down")
    return live.sync.replica_id


def _add(sim: Simulator, node: str, task: str) -> Callable[[Any], CRDT]:
    return lambda s: s.add(_replica_id(sim, node), task)


def _remove(task: str) -> Callable[[Any], CRDT]:
    return lambda s: s.remove(task)


def _increment(sim: Simulator, node: str) -> Callable[[Any], CRDT]:
    return lambda g: g.increment(_replica_id(sim, node))


def _decrement(sim: Simulator, node: str, amount: int) -> Callable[[Any], CRDT]:
    return lambda p: p.decrement(_replica_id(sim, node), amount)


def build_demo(seed: int = 0) -> tuple[Simulator, dict[str, str]]:
    """The scripted simulation (not yet run) and the increment requests it issues
    (request id -> node)."""
    swim_cfg = SwimConfig(seeds=("n0",))
    sync_cfg = SyncConfig(interval_ms=5000)

    def factory(nid: str, rng: random.Random) -> ClusterNode:
        caps, load = CAPABILITIES[nid]
        return ClusterNode(nid, rng, swim=swim_cfg, sync=sync_cfg, replicas=_replicas(),
                           capabilities=caps, load=load)

    net = NetworkConfig(drop_rate=0.05, duplicate_rate=0.05, reorder_rate=0.10,
                        max_latency_ms=30)
    sim = Simulator(factory, NODES, seed=seed, network=net, autostart=False)
    sim.set_skew("n2", 3000)
    for nid in NODES:
        sim.start(nid)
    sim.schedule(20_000, lambda s: s.partition(["n0", "n1"], ["n2", "n3", "n4"]))
    sim.schedule(30_000, lambda s: s.crash("n3"))
    sim.schedule(35_000, lambda s: s.block("n4", "n1"))
    sim.schedule(45_000, lambda s: s.heal())
    sim.schedule(50_000, lambda s: s.restart("n3"))
    sim.schedule(55_000, lambda s: s.unblock("n4", "n1"))
    sim.schedule(REPAIR_MS, lambda s: s.set_network(drop_rate=0.0, duplicate_rate=0.0))

    rng = random.Random(f"{seed}/workload")
    increments: dict[str, str] = {}
    next_task = 0
    for at in range(2000, WORK_END_MS, 400):
        nid = rng.choice(NODES)
        roll = rng.random()
        if roll < 0.45:
            task = f"task-{next_task}"
            next_task += 1
            sim.client_request(nid, Mutate("tasks", _add(sim, nid, task)), delay_ms=at)
        elif roll < 0.6 and next_task:
            task = f"task-{rng.randrange(next_task)}"
            sim.client_request(nid, Mutate("tasks", _remove(task)), delay_ms=at)
        elif roll < 0.85:
            rid = sim.client_request(nid, Mutate("events", _increment(sim, nid)), delay_ms=at)
            increments[rid] = nid
        else:
            amount = rng.randint(1, 5)
            sim.client_request(nid, Mutate("balance", _decrement(sim, nid, amount)), delay_ms=at)
    return sim, increments


def _nodes(sim: Simulator) -> list[ClusterNode]:
    out = []
    for nid in NODES:
        node = sim.node(nid)
        if isinstance(node, ClusterNode):
            out.append(node)
    return out


def _converged(sim: Simulator, increments: dict[str, str]) -> bool:
    nodes = _nodes(sim)
    if len(nodes) != len(NODES):
        return False
    first = nodes[0].sync.replicas
    for node in nodes[1:]:
        if any(node.sync.replicas[name] != first[name] for name in first):
            return False
        if node.swim.alive_members() != NODES:
            return False
    acked = {d.request_id for n in NODES for d in sim.delivered[n] if d.kind == "sync.mutated"}
    expected = sum(1 for rid in increments if rid in acked)
    return bool(first["events"].value == expected and nodes[0].swim.alive_members() == NODES)


def demo_trace_digest(seed: int = 0, until_ms: int = 90_000) -> str:
    """SHA-256 of the demo's trace JSON up to ``until_ms`` (for determinism checks)."""
    sim, _ = build_demo(seed)
    sim.run_until(until_ms)
    return hashlib.sha256(sim.trace_json().encode()).hexdigest()


def run_demo(seed: int = 0, out_dir: str = "demo-out", progress: bool = True,
             command: str = "demo") -> int:
    """Run the scenario, print what happens and whether it converged, write the
    diagram and trace to ``out_dir``. Returns 0 on convergence, 1 otherwise.
    ``command`` names the command in the header (``demo`` or ``simulate``)."""
    started = time.perf_counter()

    def say(msg: str) -> None:
        if progress:
            print(f"[{sim.now / 1000:7.1f}s] {msg}", flush=True)

    sim, increments = build_demo(seed)
    print(f"vsm-phoenix {command}: 5-node cluster on the deterministic simulator (virtual "
          f"time), SWIM discovery + delta CRDT sync, seed {seed}")
    print("  replicated values: tasks (ORSet of task ids: add, remove), events (GCounter: one "
          "per client event), balance (PNCounter: clients only withdraw 1-5, so it goes "
          "negative)")
    print("  timeline: [virtual time] fault or milestone, alive-views = how many members "
          "each node sees alive")
    milestones = {
        5_000: "cluster formed",
        20_000: "partition {n0,n1} | {n2,n3,n4}",
        30_000: "n3 crashed",
        35_000: "link n4->n1 cut (asymmetric)",
        45_000: "partition healed",
        50_000: "n3 restarted from persisted state",
        55_000: "link n4->n1 restored",
        60_000: "clients stop writing",
        70_000: "network repaired; waiting for convergence",
    }
    converged_at: int | None = None
    t = 0
    while t < DEADLINE_MS:
        t += 1000
        sim.run_until(t)
        if t in milestones:
            views = {n.node_id: len(n.swim.alive_members()) for n in _nodes(sim)}
            say(f"{milestones[t]:<45} alive-views={views}")
        if t >= REPAIR_MS and _converged(sim, increments):
            converged_at = t
            break

    nodes = _nodes(sim)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    html = sim.write_html(out / "spacetime.html", title="vsm-phoenix demo: SWIM + delta sync",
                          px_per_second=40.0, max_messages=6000)
    trace = sim.write_trace(out / "trace.json")
    report: dict[str, Any] = {
        "seed": seed,
        "converged": converged_at is not None,
        "converged_at_s": None if converged_at is None else converged_at / 1000,
        "messages": sim.stats,
        "bytes_by_type": dict(sorted(sim.bytes_by_type.items())),
    }
    if nodes:
        first = nodes[0]
        print(f"tasks   = {len(first.sync.value('tasks'))} elements on every node"
              if report["converged"] else "replicas differ:")
        print("  per node: elements in tasks, the events counter, the balance, its SWIM "
              "incarnation (raised to refute a suspicion) and the members it sees alive")
        for node in nodes:
            print(f"  {node.node_id}: tasks={len(node.sync.value('tasks')):3d} "
                  f"events={node.sync.value('events'):3d} "
                  f"balance={node.sync.value('balance'):4d} "
                  f"incarnation={node.swim.incarnation} alive={node.swim.alive_members()}")
        print(f"match(['gpu','llm']) at n0 -> {first.swim.match(['gpu', 'llm'])} "
              "(alive, least loaded first)")
    print(f"network: {sim.stats['sent']} sent, {sim.stats['dropped']} dropped, "
          f"{sim.stats['duplicated']} duplicated, {sim.stats['bytes']} bytes "
          f"(sync {sum(v for k, v in sim.bytes_by_type.items() if k.startswith('sync.'))}, "
          f"swim {sum(v for k, v in sim.bytes_by_type.items() if k.startswith('swim.'))})")
    if converged_at is not None:
        print(f"CONVERGED at t={converged_at / 1000:.0f}s (virtual) — all 5 replicas equal, "
              f"membership agreed")
    else:
        print(f"NOT CONVERGED by t={DEADLINE_MS / 1000:.0f}s (seed {seed})")
    print(f"space-time diagram: {html}")
    print(f"trace:              {trace}")
    print(f"({time.perf_counter() - started:.1f}s wall)")
    return 0 if converged_at is not None else 1
