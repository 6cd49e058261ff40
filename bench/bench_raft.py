"""Committed Raft operations per second in the simulator, batched vs unbatched.

A 3-node :class:`~vsm_phoenix.protocol.raft.RaftNode` cluster replicating the KV state
machine, no faults, 1-5 ms latency. Once a leader is elected, ``ops`` ``put`` commands
arrive at the leader at ``rate`` per virtual millisecond (open loop); we run until
every one has been answered and report, for each mode:

* ``ops_per_s_wall`` — committed operations per second of wall-clock time spent
  simulating (the cost of our code: encoding, the node, the simulator);
* ``ops_per_s_virtual`` — committed operations per simulated second (what the
  protocol achieves under the simulated network);
* ``messages_per_op`` and ``bytes_per_op`` on the wire.

*Unbatched*: every proposal is shipped at once, one entry per ``raft.append`` and one
entry in flight per follower (``batch_delay_ms=0, max_batch=1``). *Batched*: proposals
are collected for 2 ms and shipped together, up to 64 entries per message. *Immediate*
(for comparison): every proposal ships at once with all unacknowledged entries (up to
64). ``run(quick)`` returns the figures;
``python -m bench --only raft [--quick]`` prints them and writes the JSON report;
``pytest bench/bench_raft.py`` runs it under pytest-benchmark. Nothing asserts a time.
"""

from __future__ import annotations

import json
import time
from typing import Any

from bench import progress
from vsm_phoenix.protocol.kv import kv_node_factory, put
from vsm_phoenix.protocol.raft import K_OK, RaftConfig, RaftNode
from vsm_phoenix.protocol.sim import NetworkConfig, Simulator

IDS = ("n1", "n2", "n3")
MODES = {
    "unbatched": {"batch_delay_ms": 0, "max_batch": 1},
    "immediate": {"batch_delay_ms": 0, "max_batch": 64},
    "batched": {"batch_delay_ms": 2, "max_batch": 64},
}


def _measure(mode: str, ops: int, rate: int, seed: int) -> dict[str, Any]:
    cfg = RaftConfig(peers=IDS, snapshot_threshold=1_000, **MODES[mode])  # type: ignore[arg-type]
    sim = Simulator(kv_node_factory(cfg), list(IDS), seed=seed,
                    network=NetworkConfig(min_latency_ms=1, max_latency_ms=5))
    leader = None
    while leader is None:
        sim.run_for(50)
        leader = next((i for i in IDS if isinstance(n := sim.node(i), RaftNode)
                       and n.is_leader), None)
    sim.run_for(100)
    sent, nbytes, start_virtual = sim.stats["sent"], sim.stats["bytes"], sim.now
    rids = {sim.client_request(leader, put("bench", i + 1, f"k{i % 16}", f"v{i}"),
                               delay_ms=i // rate) for i in range(ops)}
    answered = 0
    cursor = len(sim.delivered[leader])
    t0 = time.perf_counter()
    while answered < ops:
        sim.run_for(5)
        for d in sim.delivered[leader][cursor:]:
            if d.request_id in rids:
                if d.kind != K_OK:
                    raise RuntimeError(f"{mode}: {d}")
                answered += 1
        cursor = len(sim.delivered[leader])
        if sim.now - start_virtual > 600_000:
            raise RuntimeError(f"{mode}: only {answered}/{ops} committed")
    wall = time.perf_counter() - t0
    virtual_s = (sim.now - start_virtual) / 1000
    return {
        "ops": ops,
        "wall_s": round(wall, 4),
        "ops_per_s_wall": round(ops / wall, 1),
        "ops_per_s_virtual": round(ops / virtual_s, 1),
        "messages_per_op": round((sim.stats["sent"] - sent) / ops, 3),
        "bytes_per_op": round((sim.stats["bytes"] - nbytes) / ops, 1),
    }


def run(quick: bool = False) -> dict[str, Any]:
    ops = 400 if quick else 4_000
    rate = 4  # proposals per virtual ms
    out: dict[str, Any] = {"cluster": len(IDS), "ops": ops, "rate_per_ms": rate}
    progress.plan(len(MODES))
    for mode in MODES:
        progress.step(f"{mode}, {ops} ops")
        out[mode] = _measure(mode, ops, rate, seed=1)
    out["batched_over_unbatched_wall"] = round(
        out["batched"]["ops_per_s_wall"] / out["unbatched"]["ops_per_s_wall"], 2
    )
    return out


def test_raft_throughput(benchmark: Any) -> None:
    result = benchmark.pedantic(run, args=(True,), rounds=1, iterations=1)
    print(json.dumps(result, indent=2))
