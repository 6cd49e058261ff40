"""Sagas per second on each durable log, and the log's overhead over no log at all.

One saga is the order shape of the saga scenario (``order`` -> ``stock`` | ``credit``
-> ``charge`` (pivot) -> ``ship`` -> ``notify``) with steps that succeed at once, so
what is measured is the coordinator and its log, not the steps. Each backend runs the
same ``sagas`` sagas, ``concurrency`` at a time, through a
:class:`~vsm_phoenix.ext.saga.orchestrator.SagaOrchestrator`:

* ``raw`` -- the baseline: the same step callables awaited in the same order (the
  parallel stage with ``gather``), no log, no coordinator: what running the steps
  costs without any durability;
* ``memory`` -- the log in :class:`~vsm_phoenix.storage.MemoryStorage` (the
  coordinator's own cost: records, encoding, the state machine);
* ``sqlite_full`` / ``sqlite_normal`` -- one SQLite file in WAL mode, ``synchronous``
  FULL (survives power loss) or NORMAL (survives process crashes);
* ``raft_kv`` -- the log on the Raft-replicated KV: three
  :class:`~vsm_phoenix.protocol.raft.RaftNode` s in-process
  (:class:`~vsm_phoenix.ext.saga.raftkv.SimulatedRaftKV`, virtual-time network), so
  this is the CPU cost of consensus per saga, not network latency.

Reported: ``sagas_per_s`` per backend, ``records_per_saga``, and ratios measured side
by side in this run: ``overhead_ratio_<backend>`` (time per saga over ``raw``) and
``sqlite_over_raft_kv_ratio`` (SQLite FULL sagas/s over Raft-KV sagas/s). Nothing
asserts a time. ``python -m bench --only saga [--quick]``.
"""

from __future__ import annotations

import asyncio
import json
import random
import tempfile
import time
from pathlib import Path
from typing import Any

from bench import progress
from vsm_phoenix.ext.saga import (
    KVSagaLog,
    SagaLog,
    SagaOrchestrator,
    SimulatedRaftKV,
    StorageSagaLog,
)
from vsm_phoenix.ext.saga.definition import Parallel, SagaDefinition, Step, StepContext
from vsm_phoenix.storage import MemoryStorage, SQLiteStorage

BACKENDS = ("raw", "memory", "sqlite_full", "sqlite_normal", "raft_kv")


async def _step(ctx: StepContext) -> str:
    return ctx.step


async def _undo(ctx: StepContext) -> None:
    return None


def _definition() -> SagaDefinition:
    return SagaDefinition(name="order", stages=[
        Step(name="order", action=_step, compensation=_undo),
        Parallel([Step(name="stock", action=_step, compensation=_undo),
                  Step(name="credit", action=_step, compensation=_undo)]),
        Step(name="charge", action=_step, pivot=True),
        Step(name="ship", action=_step),
        Step(name="notify", action=_step),
    ])


async def _raw(definition: SagaDefinition, saga_id: str) -> None:
    for stage in definition.stages:
        steps = SagaDefinition.stage_steps(stage)
        ctx = [StepContext(saga_id=saga_id, step=s.name, attempt=1, compensation=False,
                           idempotency_key=f"{saga_id}/{s.name}/do", context={}, results={})
               for s in steps]
        await asyncio.gather(*(s.action(c) for s, c in zip(steps, ctx, strict=True)))


async def _measure(backend: str, sagas: int, concurrency: int, workdir: Path) -> dict[str, Any]:
    definition = _definition()
    log: SagaLog | None = None
    kv = None
    if backend == "memory":
        log = StorageSagaLog(MemoryStorage())
    elif backend.startswith("sqlite"):
        sync = "FULL" if backend == "sqlite_full" else "NORMAL"
        log = StorageSagaLog(SQLiteStorage(workdir / f"{backend}.db", synchronous=sync))
    elif backend == "raft_kv":
        kv = SimulatedRaftKV(seed=1)
        log = KVSagaLog(kv)
        await kv.put("warm-up", "x")  # elect a leader before the clock starts
    sem = asyncio.Semaphore(concurrency)
    orch = None if log is None else SagaOrchestrator(log, "bench", [definition],
                                                    rng=random.Random(1))

    async def one(i: int) -> None:
        async with sem:
            if orch is None:
                await _raw(definition, f"b{i}")
            else:
                r = await orch.run(definition, {}, saga_id=f"b{i}")
                assert r.outcome == "completed", r

    t0 = time.perf_counter()
    await asyncio.gather(*(one(i) for i in range(sagas)))
    elapsed = time.perf_counter() - t0
    out: dict[str, Any] = {"sagas": sagas, "seconds": round(elapsed, 4),
                           "sagas_per_s": round(sagas / elapsed, 1)}
    if log is not None:
        records = await log.load("b0")
        out["records_per_saga"] = len(records or [])
    if kv is not None:
        out["kv_calls_per_saga"] = round(kv.calls / sagas, 1)
    return out


def run(quick: bool = False) -> dict[str, Any]:
    sagas = 40 if quick else 200
    concurrency = 20
    out: dict[str, Any] = {"sagas": sagas, "concurrency": concurrency}
    progress.plan(len(BACKENDS))
    with tempfile.TemporaryDirectory(prefix="bench-saga-") as tmp:
        for backend in BACKENDS:
            progress.step(f"{backend}, {sagas} sagas")
            out[backend] = asyncio.run(_measure(backend, sagas, concurrency, Path(tmp)))
    raw = out["raw"]["seconds"]
    for backend in BACKENDS[1:]:
        out[f"overhead_ratio_{backend}"] = round(out[backend]["seconds"] / raw, 1)
    out["sqlite_over_raft_kv_ratio"] = round(
        out["sqlite_full"]["sagas_per_s"] / out["raft_kv"]["sagas_per_s"], 2)
    return out


def test_saga_throughput(benchmark: Any) -> None:
    result = benchmark.pedantic(run, args=(True,), rounds=1, iterations=1)
    print(json.dumps(result, indent=2))
