"""Model-checker throughput: distinct states explored per second on real nodes.

Two workloads, each an exhaustive breadth-first search bounded by depth:

* ``raft`` — three :class:`~vsm_phoenix.protocol.raft.RaftNode` s (no pre-vote), one
  proposal, two timer firings; invariants: ``raft.check_invariants``.
* ``sync`` — two :class:`~vsm_phoenix.protocol.sync.SyncNode` s with an ORSet, one add
  on each, three timer firings, one drop and one duplicate allowed.

Plus the cost of copying one Raft node, measured side by side: the checker's
:func:`~vsm_phoenix.verify.model_checker.deepcopy_node` against plain
``copy.deepcopy`` (the ratio is what copying generators by state buys).

``run(quick)`` returns the figures; ``python -m bench --only model_checker [--quick]``
prints them and writes the JSON report; ``pytest
bench/bench_model_checker.py`` runs the quick variant under pytest-benchmark. Nothing
here asserts a time.
"""

from __future__ import annotations

import copy
import random
import time
from typing import Any

from bench import progress
from vsm_phoenix.crdt import ORSet
from vsm_phoenix.protocol.raft import Propose, RaftConfig, RaftNode, check_invariants
from vsm_phoenix.protocol.sync import Mutate, SyncConfig, SyncNode
from vsm_phoenix.verify.model_checker import ClusterView, Request, check_model, deepcopy_node

RAFT_IDS = ("n1", "n2", "n3")


def _raft(depth: int) -> dict[str, Any]:
    config = RaftConfig(peers=RAFT_IDS, pre_vote=False, check_quorum=False)

    def safety(view: ClusterView) -> list[str]:
        return check_invariants(view.values())  # type: ignore[arg-type]

    res = check_model(
        lambda nid, rng: RaftNode(nid, rng, config), RAFT_IDS,
        invariants={"raft-safety": safety}, requests=[Request(Propose(b"x"))],
        max_timer_fires=2, max_depth=depth, now=lambda d: d * 1000,
    )
    return _figures(res, depth)


def _sync_key(node: Any) -> Any:
    return (
        tuple(sorted((n, r.to_bytes()) for n, r in node.replicas.items())),
        node.counter,
        tuple(sorted((s, tuple(sorted((n, d.to_bytes()) for n, d in ds.items())), o)
                     for s, (ds, o) in node.buffer.items())),
        tuple(sorted(node.acked.items())), tuple(node.peers), node.started,
        len(node._log_keys),
    )


def _add(replica: str, element: str) -> Any:
    return lambda s: s.add(replica, element)


def _sync(depth: int) -> dict[str, Any]:
    ids = ("a", "b")
    res = check_model(
        lambda nid, rng: SyncNode(nid, rng, SyncConfig(peers=ids), replicas={"s": ORSet()}),
        ids,
        requests=[Request(Mutate("s", _add("a", "x")), targets=["a"]),
                  Request(Mutate("s", _add("b", "y")), targets=["b"])],
        node_key=_sync_key, max_timer_fires=3, max_drops=1, max_duplicates=1,
        max_depth=depth,
    )
    return _figures(res, depth)


def _figures(res: Any, depth: int) -> dict[str, Any]:
    return {
        "ok": res.ok,
        "max_depth": depth,
        "states": res.states,
        "transitions": res.transitions,
        "seconds": round(res.elapsed_s, 3),
        "states_per_s": round(res.states_per_second, 1),
        "transitions_per_s": round(res.transitions / res.elapsed_s, 1) if res.elapsed_s else 0,
    }


def _copy_ratio(n: int) -> dict[str, Any]:
    config = RaftConfig(peers=RAFT_IDS)
    node = RaftNode("n1", random.Random(1), config)
    t0 = time.perf_counter()
    for _ in range(n):
        deepcopy_node(node)
    ours = (time.perf_counter() - t0) / n
    t0 = time.perf_counter()
    for _ in range(n):
        copy.deepcopy(node)
    plain = (time.perf_counter() - t0) / n
    return {
        "copies": n,
        "deepcopy_node_us": round(ours * 1e6, 1),
        "copy_deepcopy_us": round(plain * 1e6, 1),
        "ratio_plain_over_ours": round(plain / ours, 2),
    }


def run(quick: bool = False) -> dict[str, Any]:
    """Explore both workloads; ``quick`` uses shallower bounds."""
    t0 = time.perf_counter()
    progress.plan(3)
    progress.step("raft, 3 nodes")
    raft = _raft(6 if quick else 8)
    progress.step("delta sync, 2 nodes")
    sync = _sync(9 if quick else 11)
    progress.step("node copy")
    return {
        "benchmark": "model_checker_states_per_s",
        "raft_3_nodes": raft,
        "sync_2_nodes": sync,
        "node_copy": _copy_ratio(200 if quick else 1000),
        "seconds": round(time.perf_counter() - t0, 2),
    }


def test_model_checker_throughput(benchmark: Any) -> None:
    """pytest-benchmark entry: one quick run, figures attached to the report."""
    result = benchmark.pedantic(run, args=(True,), rounds=1, iterations=1)
    benchmark.extra_info.update(result)
    assert result["raft_3_nodes"]["ok"] and result["sync_2_nodes"]["ok"]
