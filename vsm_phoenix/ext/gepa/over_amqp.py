"""GEPA engines whose shared state syncs over RabbitMQ (:class:`~vsm_phoenix.ext.amqp.Cluster`).

Theory of operation
-------------------
Each node is a :class:`~vsm_phoenix.ext.amqp.Cluster` *member* (delta anti-entropy
through the broker, sealed and signed by the AMQP runner) hosting the replica
``"gepa"`` (an :class:`~vsm_phoenix.ext.gepa.state.EvolutionState`), plus one upstream
GEPA engine in a thread of its own, with the hooks of
:mod:`~vsm_phoenix.ext.gepa.shared`. Unlike the simulator, the engines run at the same
time (wall clock) and the network is real.

The engine works on a private working copy. At every iteration (the stop callback's
``before_check``) the engine thread hands the deltas it wrote to the event loop, which
applies them to the member's replica (``Replica.update``: joined, shipped) and returns
a fresh copy of the replica -- everything that reached this member so far. The engine
thread never touches the replica itself, so the event loop and the engine never share
mutable state.

The members may live in one process (:func:`run_members`, what the tests and
``vsm-phoenix gepa --transport amqp`` do) or in several, each calling
:func:`run_member` with its own credentials. The deployed prompt is not committed
here: the Raft KV over AMQP runs on ``--kind kv`` nodes, which this runner does not
start (see :mod:`~vsm_phoenix.ext.gepa.deploy` for the simulator's).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import Any, cast

import attrs

from vsm_phoenix.ext.gepa.cluster import REPLICA, ClusterConfig
from vsm_phoenix.ext.gepa.models import GuardedModel
from vsm_phoenix.ext.gepa.records import instance_key
from vsm_phoenix.ext.gepa.shared import (
    ClusterStop,
    KeyedLoader,
    Migration,
    NodeContext,
    ReplicaEvaluationCache,
    SharedAdapter,
)
from vsm_phoenix.ext.gepa.state import EvolutionState, Frontier
from vsm_phoenix.ext.gepa.task import (
    TicketTask,
    TicketTriageAdapter,
    rule_model,
    scripted_reflection,
    ticket_task,
)

__all__ = ["MemberReport", "run_member", "run_members"]


@attrs.frozen
class MemberReport:
    node: str
    metric_calls: int
    hits: int
    migrated: int
    published: int
    stop_reason: str | None
    frontier: Frontier
    state_digest: bytes


def _join(delta: EvolutionState) -> Callable[[EvolutionState, str], EvolutionState]:
    def mutate(state: EvolutionState, _rid: str) -> EvolutionState:
        state |= delta
        return delta

    return mutate


async def run_member(
    cluster: Any,
    config: ClusterConfig,
    *,
    task: TicketTask | None = None,
    adapter_factory: Callable[[GuardedModel], Any] = TicketTriageAdapter,
    seed_offset: int = 0,
) -> MemberReport:
    """Run one engine against ``cluster`` (a connected member) until it stops."""
    from gepa.api import optimize

    task = task or ticket_task()
    node_id = cluster.principal
    replica = await cluster.replica(REPLICA, EvolutionState)
    loop = asyncio.get_running_loop()
    box: dict[str, EvolutionState] = {"work": replica.state}
    ctx = NodeContext(node_id, lambda: box["work"], config.evaluator)

    async def exchange() -> EvolutionState:
        delta = ctx.take_deltas()
        if delta is not None:
            await replica.update(_join(delta))
        return cast(EvolutionState, replica.state)

    def before_check() -> None:
        box["work"] = asyncio.run_coroutine_threadsafe(exchange(), loop).result()

    val_ids = [instance_key(x) for x in task.valset]
    task_model = GuardedModel(rule_model, name=f"{node_id}/task")
    reflection = GuardedModel(scripted_reflection, name=f"{node_id}/reflection")
    adapter = SharedAdapter(adapter_factory(task_model), ctx)
    migration = Migration(ctx, val_ids, enabled=config.migrate,
                          cache=ReplicaEvaluationCache(ctx))
    stop = ClusterStop(ctx, config.max_metric_calls, val_ids, target=config.target,
                       before_check=before_check)

    class _Quiet:
        def log(self, message: str) -> None:
            return None

    def run() -> None:
        try:
            optimize(
                seed_candidate=dict(task.seed_candidate),
                trainset=KeyedLoader(task.trainset), valset=KeyedLoader(task.valset),
                adapter=adapter, reflection_lm=reflection,
                candidate_selection_strategy="pareto",
                reflection_minibatch_size=config.minibatch_size,
                stop_callbacks=[stop], callbacks=[cast(Any, migration)],
                cache_evaluation=True, logger=_Quiet(),
                seed=config.seed * 1009 + seed_offset * 31, raise_on_exception=True)
        finally:
            task_model.close()
            reflection.close()

    await asyncio.to_thread(run)
    if migration.errors:
        raise migration.errors[0]
    box["work"] = await exchange()
    final = cast(EvolutionState, replica.state)
    return MemberReport(
        node=node_id, metric_calls=ctx.metric_calls, hits=ctx.hits, migrated=ctx.migrated,
        published=ctx.published, stop_reason=stop.reason,
        frontier=final.frontier(val_ids, config.evaluator), state_digest=final.to_bytes())


async def run_members(
    clusters: Sequence[Any],
    config: ClusterConfig,
    *,
    converge_timeout_s: float = 60.0,
    **kw: Any,
) -> list[MemberReport]:
    """Run one engine per connected member concurrently, then wait until every
    member's replica is the same and report each member's view."""
    reports = await asyncio.gather(*(run_member(c, config, seed_offset=i, **kw)
                                     for i, c in enumerate(clusters)))
    replica = await clusters[0].replica(REPLICA, EvolutionState)
    await replica.wait_converged(timeout_s=converge_timeout_s,
                                 members=[c.principal for c in clusters])
    val_ids = [instance_key(x) for x in (kw.get("task") or ticket_task()).valset]
    out = []
    for rep, c in zip(reports, clusters, strict=True):
        state = (await c.replica(REPLICA, EvolutionState)).state
        out.append(attrs.evolve(rep, frontier=state.frontier(val_ids, config.evaluator),
                                state_digest=state.to_bytes()))
    return out

