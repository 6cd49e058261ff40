"""Model-checker throughput and reductions, on real nodes, measured side by side.

Workloads (each an exhaustive breadth-first search; depth-bounded where the space is
infinite):

* ``two_phase_3`` / ``two_phase_5`` — two-phase commit as nodes
  (:mod:`vsm_phoenix.verify.twophase`) on a set network: the specification's 288 and
  8,832 states; the 3-RM run repeats until it has taken a second, so its rate is not a
  rounding error.
* ``raft_3_nodes`` — three :class:`~vsm_phoenix.protocol.raft.RaftNode` s (no
  pre-vote), one proposal, two timer firings, to depth 8 and 10; invariants:
  ``raft.check_invariants``.
* ``sync_2_nodes`` — two :class:`~vsm_phoenix.protocol.sync.SyncNode` s with an ORSet, one
  add on each, three timer firings, one drop and one duplicate allowed.

Ratios, each measured in this run: memoized local steps against a fresh copy per
transition (``memoize=False``, what every transition cost before); 2PC with 5 RMs
with symmetry over the RMs against without (time and states); the structural node
copy against ``copy.deepcopy``. Rates are given per wall-clock second and per CPU
second (``time.process_time``): on a shared machine the CPU figure is the one that
compares across runs.

``run(quick)`` returns the figures; ``python -m bench --only model_checker [--quick]``
prints them and writes the JSON report. Nothing here asserts a time.
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
from vsm_phoenix.verify.twophase import TM, rm_ids, two_phase_factory, two_phase_invariants

RAFT_IDS = ("n1", "n2", "n3")


def _timed(fn: Any, *args: Any, **kwargs: Any) -> tuple[Any, float, float]:
    wall, cpu = time.perf_counter(), time.process_time()
    res = fn(*args, **kwargs)
    return res, time.perf_counter() - wall, time.process_time() - cpu


def _figures(res: Any, wall: float, cpu: float, runs: int = 1) -> dict[str, Any]:
    states = res.states * runs
    return {
        "ok": res.ok,
        "exhausted": res.exhausted,
        "depth_complete": res.depth_complete,
        "states": res.states,
        "transitions": res.transitions,
        "runs": runs,
        "wall_s": round(wall, 3),
        "cpu_s": round(cpu, 3),
        "states_per_s": round(states / wall, 1) if wall else 0.0,
        "states_per_cpu_s": round(states / cpu, 1) if cpu else 0.0,
    }


def _two_phase(n: int, *, symmetry: bool = False, memoize: bool = True) -> Any:
    rms = rm_ids(n)
    return check_model(two_phase_factory(rms), (TM, *rms), invariants=two_phase_invariants(),
                       network="set", max_depth=1_000, symmetry=[rms] if symmetry else False,
                       memoize=memoize)


def _two_phase_3() -> dict[str, Any]:
    runs, wall, cpu = 0, 0.0, 0.0
    res = None
    while wall < 1.0 or runs < 3:
        res, w, c = _timed(_two_phase, 3)
        runs, wall, cpu = runs + 1, wall + w, cpu + c
    return _figures(res, wall, cpu, runs)


def _raft(depth: int, memoize: bool = True) -> dict[str, Any]:
    config = RaftConfig(peers=RAFT_IDS, pre_vote=False, check_quorum=False)

    def safety(view: ClusterView) -> list[str]:
        return check_invariants(view.values())  # type: ignore[arg-type]

    res, wall, cpu = _timed(
        check_model, lambda nid, rng: RaftNode(nid, rng, config), RAFT_IDS,
        invariants={"raft-safety": safety}, requests=[Request(Propose(b"x"))],
        max_timer_fires=2, max_depth=depth, now=lambda d: d * 1000, memoize=memoize,
    )
    return _figures(res, wall, cpu)


def _sync_key(node: Any) -> Any:
    return (
        tuple(sorted((n, r.to_bytes()) for n, r in node.replicas.items())),
        node.origin, node.counter, tuple(sorted(node.have.items())),
        tuple(sorted((o, tuple(g)) for o, g in node._gaps.items())),
        tuple(sorted((s, tuple(sorted(tags.items())),
                      tuple(sorted((n, d.to_bytes()) for n, d in ds.items())))
                     for s, (tags, ds) in node.buffer.items())),
        tuple(sorted((p, o, tuple(sorted(v.items()))) for p, (o, v) in node.known.items())),
        tuple(node.peers), node.started, len(node._log_keys),
    )


def _add(replica: str, element: str) -> Any:
    return lambda s: s.add(replica, element)


def _sync(depth: int) -> dict[str, Any]:
    ids = ("a", "b")
    res, wall, cpu = _timed(
        check_model,
        lambda nid, rng: SyncNode(nid, rng, SyncConfig(peers=ids), replicas={"s": ORSet()}),
        ids,
        requests=[Request(Mutate("s", _add("a", "x")), targets=["a"]),
                  Request(Mutate("s", _add("b", "y")), targets=["b"])],
        node_key=_sync_key, max_timer_fires=3, max_drops=1, max_duplicates=1,
        max_depth=depth,
    )
    return _figures(res, wall, cpu)


def _copy_ratio(n: int) -> dict[str, Any]:
    config = RaftConfig(peers=RAFT_IDS)
    node = RaftNode("n1", random.Random(1), config)
    t0 = time.process_time()
    for _ in range(n):
        deepcopy_node(node)
    ours = (time.process_time() - t0) / n
    t0 = time.process_time()
    for _ in range(n):
        copy.deepcopy(node)
    plain = (time.process_time() - t0) / n
    return {
        "copies": n,
        "structural_copy_us": round(ours * 1e6, 1),
        "copy_deepcopy_us": round(plain * 1e6, 1),
        "ratio_deepcopy_over_structural": round(plain / ours, 2),
    }


def _symmetry() -> dict[str, Any]:
    plain, w0, c0 = _timed(_two_phase, 5)
    sym, w1, c1 = _timed(_two_phase, 5, symmetry=True)
    return {
        "states_without": plain.states,
        "states_with": sym.states,
        "cpu_s_without": round(c0, 3),
        "cpu_s_with": round(c1, 3),
        "ratio_time_with_over_without": round(c1 / c0, 3) if c0 else 0.0,
        "ratio_wall_with_over_without": round(w1 / w0, 3) if w0 else 0.0,
    }


def run(quick: bool = False) -> dict[str, Any]:
    """Every workload; ``quick`` uses shallower Raft and sync bounds."""
    t0 = time.perf_counter()
    progress.plan(4)
    progress.step("raft, 3 nodes")
    raft_depth = 8 if quick else 10
    raft = _raft(raft_depth)
    progress.step("raft, memoized against fresh copies")
    raft_fresh = _raft(8 if quick else 9, memoize=False)
    raft_memo_same = _raft(8 if quick else 9)
    progress.step("two-phase commit, symmetry, delta sync, node copy")
    return {
        "benchmark": "model_checker_states_per_s",
        "two_phase_3": _two_phase_3(),
        "two_phase_5": _figures(*_timed(_two_phase, 5)),
        "two_phase_5_symmetry": _symmetry(),
        f"raft_3_nodes_depth_{raft_depth}": raft,
        "raft_memo_speedup": {
            "fresh_copy_states_per_cpu_s": raft_fresh["states_per_cpu_s"],
            "memoized_states_per_cpu_s": raft_memo_same["states_per_cpu_s"],
            "ratio_memoized_over_fresh": round(
                raft_memo_same["states_per_cpu_s"] / raft_fresh["states_per_cpu_s"], 2)
            if raft_fresh["states_per_cpu_s"] else 0.0,
        },
        "sync_2_nodes": _sync(9 if quick else 11),
        "node_copy": _copy_ratio(200 if quick else 1000),
        "seconds": round(time.perf_counter() - t0, 2),
    }


def test_model_checker_throughput(benchmark: Any) -> None:
    """pytest-benchmark entry: one quick run, figures attached to the report."""
    result = benchmark.pedantic(run, args=(True,), rounds=1, iterations=1)
    benchmark.extra_info.update(result)
    assert result["two_phase_3"]["states"] == 288 and result["two_phase_5"]["states"] == 8832
