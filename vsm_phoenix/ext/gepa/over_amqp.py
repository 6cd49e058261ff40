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

When the engines have stopped, every member marks itself done in a second replica
(``"gepa.done"``, a ``GSet`` of member ids) and waits until it sees every member's mark
and every member holds the same ``"gepa"`` replica: nobody writes any more, so that
replica is final and every member derives the same frontier from it. Then, when the
run has KV nodes, each member commits the **deployed prompt** through the Raft KV of
``--kind kv`` members (:meth:`~vsm_phoenix.ext.amqp.Cluster.kv`): it reads
:data:`~vsm_phoenix.ext.gepa.deploy.DEPLOYED_KEY`, and compare-and-sets its decision
over it when better (:meth:`~vsm_phoenix.ext.gepa.deploy.Deployment.next_value`);
since every member decides from the same final state, the first one commits it (version
1 on a fresh KV) and the others find it deployed. Each member then reads the committed value back
(linearizable) and reports it. The members need the ``write`` role besides ``peer``
(:func:`gepa_secrets` makes such a roster).

The members may live in one process (:func:`run_members`, what
``vsm-phoenix gepa --transport amqp`` does) or in one OS process each, calling
:func:`run_member` with its own credentials (:mod:`~vsm_phoenix.ext.gepa.processes`,
``--processes``).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
from collections.abc import Callable, Sequence
from typing import Any, Final, cast

import attrs

from vsm_phoenix.crdt import GSet
from vsm_phoenix.crypto.credentials import ClusterSecrets
from vsm_phoenix.crypto.identity import ROLE_PEER, ROLE_WRITE
from vsm_phoenix.errors import InvalidArgument
from vsm_phoenix.ext.gepa.budget import (
    BUDGET_KEY,
    BudgetExhausted,
    BudgetLease,
    LeaseUnavailable,
    lease_value,
    release_value,
)
from vsm_phoenix.ext.gepa.cluster import REPLICA, ClusterConfig
from vsm_phoenix.ext.gepa.deploy import DEPLOYED_KEY, Decision, Deployment
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

__all__ = ["DONE_REPLICA", "MemberReport", "connected", "deploy", "gepa_secrets",
           "run_member", "run_members"]

#: The replica where members mark their engine done (a ``GSet`` of member ids).
DONE_REPLICA: Final = "gepa.done"


@attrs.frozen
class MemberReport:
    """One member's view once every member is done and the replicas agree.
    ``state_digest``: SHA-256 of the final replica's bytes (equal digests, equal
    states); ``leased``: metric calls this member leased (hard budget)."""

    node: str
    metric_calls: int
    hits: int
    migrated: int
    published: int
    stop_reason: str | None
    frontier: Frontier
    state_digest: bytes
    deployed: Decision | None = None
    leased: int = 0  # calls leased minus calls given back


def gepa_secrets(cluster: str, nodes: Sequence[str], kv_nodes: Sequence[str] = (),
                 clients: dict[str, list[str]] | None = None) -> ClusterSecrets:
    """Fresh secrets for a GEPA run: ``nodes`` (the engines' members) get the ``peer``
    and ``write`` roles (write: to commit the deployed prompt), ``kv_nodes`` the
    ``peer`` role (the Raft KV members)."""
    if not nodes or set(nodes) & set(kv_nodes) or len(set(nodes)) != len(nodes) \
            or len(set(kv_nodes)) != len(kv_nodes):
        raise InvalidArgument("nodes and kv_nodes must be distinct, and nodes non-empty")
    secrets = ClusterSecrets.create(cluster, nodes=[*nodes, *kv_nodes], clients=clients)
    secrets.reissue(roles={n: (ROLE_PEER, ROLE_WRITE) for n in nodes})
    return secrets


def _join(delta: EvolutionState) -> Callable[[EvolutionState, str], EvolutionState]:
    def mutate(state: EvolutionState, _rid: str) -> EvolutionState:
        state |= delta
        return delta

    return mutate


def _lease_client(cluster: Any, kv_nodes: Sequence[str], config: ClusterConfig,
                  loop: asyncio.AbstractEventLoop
                  ) -> tuple[Callable[[int], int], Callable[[int], None]]:
    """``acquire(want)`` and ``give_back(n)`` of a member's :class:`BudgetLease`,
    called from the engine's thread: a linearizable read of :data:`BUDGET_KEY` and a
    compare-and-set raising (lowering) it, run on the member's event loop through
    :meth:`Cluster.kv`."""
    kv = cluster.kv(kv_nodes)
    # The cluster's timeout, not the simulator's lease_timeout_ms: the first lease
    # (the seed's validation run, inside the adapter) may wait for the KV's election.
    timeout_s = cluster.timeout_s

    async def cas(new_value: Callable[[str | None], tuple[str, int] | None]) -> int:
        for _ in range(8):  # a concurrent lease may win the compare-and-set
            current = await kv.get(BUDGET_KEY, timeout_s=timeout_s)
            step = new_value(current)
            if step is None:
                return 0
            if await kv.cas(BUDGET_KEY, current, step[0], timeout_s=timeout_s):
                return step[1]
        raise LeaseUnavailable("lost 8 compare-and-sets in a row")

    def run(new_value: Callable[[str | None], tuple[str, int] | None]) -> int:
        try:
            return asyncio.run_coroutine_threadsafe(cas(new_value), loop).result()
        except TimeoutError as exc:
            raise LeaseUnavailable(str(exc)) from None

    def acquire(want: int) -> int:
        return run(lambda current: lease_value(current, want, config.max_metric_calls))

    def give_back(calls: int) -> None:
        run(lambda current: (release_value(current, calls), calls))

    return acquire, give_back


async def deploy(cluster: Any, kv_nodes: Sequence[str], state: EvolutionState,
                 valset_ids: Sequence[str], evaluator: str, *, attempts: int = 5,
                 timeout_s: float | None = None) -> Decision | None:
    """Commit ``state``'s decision (best mean validation score) as the deployed prompt
    through the KV of ``kv_nodes`` -- compare-and-set over what is deployed, when
    better -- and return what is committed afterwards (a linearizable read; ``None``
    when nothing is). ``TimeoutError`` when the KV does not answer."""
    kv = cluster.kv(kv_nodes)
    decision = Deployment(cluster.principal, valset_ids, evaluator).decision(state)
    for _ in range(attempts):  # a concurrent deployer may win the cas: read again
        if decision is None:
            break
        current = await kv.get(DEPLOYED_KEY, timeout_s=timeout_s)
        value = Deployment.next_value(decision, current)
        if value is None or await kv.cas(DEPLOYED_KEY, current, value, timeout_s=timeout_s):
            break
    committed = await kv.get(DEPLOYED_KEY, timeout_s=timeout_s)
    return None if committed is None else Decision.from_json(committed)


async def run_member(
    cluster: Any,
    config: ClusterConfig,
    *,
    task: TicketTask | None = None,
    adapter_factory: Callable[[GuardedModel], Any] = TicketTriageAdapter,
    seed_offset: int = 0,
    members: Sequence[str] | None = None,
    kv_nodes: Sequence[str] = (),
    converge_timeout_s: float = 60.0,
) -> MemberReport:
    """Run one engine against ``cluster`` (a connected member) until it stops, then
    wait for ``members`` (default: this one alone) to be done and agree, and commit
    the deployed prompt through ``kv_nodes`` (none: no commit). See the module
    docstring."""
    from gepa.api import optimize

    task = task or ticket_task()
    node_id = cluster.principal
    everyone = list(members) if members is not None else [node_id]
    if node_id not in everyone:
        raise InvalidArgument(f"{node_id!r} is not one of the members {everyone}")
    replica = await cluster.replica(REPLICA, EvolutionState)
    done = await cluster.replica(DONE_REPLICA, GSet)
    loop = asyncio.get_running_loop()
    box: dict[str, EvolutionState] = {"work": replica.state}
    ctx = NodeContext(node_id, lambda: box["work"], config.evaluator,
                      replica_id=replica.replica_id, frontier_type=config.frontier_type)

    async def exchange() -> EvolutionState:
        delta = ctx.take_deltas()
        if delta is not None:
            await replica.update(_join(delta))
        return cast(EvolutionState, replica.state)

    def before_check() -> None:
        box["work"] = asyncio.run_coroutine_threadsafe(exchange(), loop).result()

    val_ids = [instance_key(x) for x in task.valset]
    slice_calls = config.slice_calls(len(val_ids))
    if kv_nodes and config.hard_budget:
        acquire, give_back = _lease_client(cluster, kv_nodes, config, loop)
        ctx.lease = BudgetLease(acquire, slice_calls=slice_calls, give_back=give_back)
    task_model = GuardedModel(rule_model, name=f"{node_id}/task")
    reflection = GuardedModel(scripted_reflection, name=f"{node_id}/reflection")
    adapter = SharedAdapter(adapter_factory(task_model), ctx)
    migration = Migration(ctx, val_ids, enabled=config.migrate,
                          cache=ReplicaEvaluationCache(ctx))
    stop = ClusterStop(ctx, config.max_metric_calls, val_ids, target=config.target,
                       before_check=before_check,
                       reserve_calls=slice_calls if ctx.lease is not None else 0)

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
                frontier_type=cast(Any, config.frontier_type),
                reflection_minibatch_size=config.minibatch_size,
                stop_callbacks=[stop], callbacks=[cast(Any, migration)],
                cache_evaluation=True, logger=_Quiet(),
                seed=config.seed * 1009 + seed_offset * 31, raise_on_exception=True)
        except BudgetExhausted:
            stop.reason = "budget spent"
        except LeaseUnavailable:
            stop.reason = "lease unavailable"
        finally:
            if ctx.lease is not None:  # the engine's last call is made: give back
                ctx.lease.release()
            task_model.close()
            reflection.close()

    await asyncio.to_thread(run)
    if migration.errors:
        raise migration.errors[0]
    box["work"] = await exchange()
    await done.add(node_id)
    deadline = loop.time() + converge_timeout_s
    while not set(everyone) <= done.value:
        if loop.time() > deadline:
            missing = sorted(set(everyone) - done.value)
            raise TimeoutError(f"members not done in time: {', '.join(missing)}")
        await asyncio.sleep(0.05)
    await replica.wait_converged(timeout_s=max(deadline - loop.time(), 1.0),
                                 members=everyone)
    final = cast(EvolutionState, replica.state)  # every member's, and final
    deployed = None
    if kv_nodes:
        deployed = await deploy(cluster, kv_nodes, final, val_ids, config.evaluator,
                                timeout_s=converge_timeout_s)
    return MemberReport(
        node=node_id, metric_calls=ctx.metric_calls, hits=ctx.hits, migrated=ctx.migrated,
        published=ctx.published, stop_reason=stop.reason,
        frontier=final.frontier(val_ids, config.evaluator),
        state_digest=hashlib.sha256(final.to_bytes()).digest(),
        deployed=deployed, leased=0 if ctx.lease is None else ctx.lease.net)


async def run_members(
    clusters: Sequence[Any],
    config: ClusterConfig,
    *,
    kv_nodes: Sequence[str] = (),
    converge_timeout_s: float = 60.0,
    **kw: Any,
) -> list[MemberReport]:
    """Run one engine per connected member concurrently (in this process); each
    report is taken once every member is done and the replicas agree, after the
    deployed prompt is committed through ``kv_nodes`` (when given)."""
    members = [c.principal for c in clusters]
    return list(await asyncio.gather(*(
        run_member(c, config, seed_offset=i, members=members, kv_nodes=kv_nodes,
                   converge_timeout_s=converge_timeout_s, **kw)
        for i, c in enumerate(clusters))))


@contextlib.asynccontextmanager
async def connected(url: str, secrets: ClusterSecrets, nodes: Sequence[str],
                    kv_nodes: Sequence[str] = (), **kw: Any) -> Any:
    """Connect ``kv_nodes`` (Raft KV members, ``kind="kv"``) and ``nodes`` (the
    engines' members, syncing with each other only) in this process; yields the
    members' :class:`~vsm_phoenix.ext.amqp.Cluster` objects, closes all on exit."""
    from vsm_phoenix.ext.amqp import Cluster

    async with contextlib.AsyncExitStack() as stack:
        for k in kv_nodes:
            await stack.enter_async_context(Cluster.connect(
                url, secrets.credentials(k), kind="kv", peers=list(kv_nodes), **kw))
        yield [await stack.enter_async_context(Cluster.connect(
            url, secrets.credentials(n), peers=list(nodes), **kw)) for n in nodes]
