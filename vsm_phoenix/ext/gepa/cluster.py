"""N GEPA engines on simulated nodes, sharing one replicated state through sync.

Theory of operation
-------------------
Every node runs the upstream engine (``gepa.optimize``) in its own thread, with the
hooks of :mod:`~vsm_phoenix.ext.gepa.shared` reading and writing the node's live
:class:`~vsm_phoenix.ext.gepa.state.EvolutionState` -- the replica hosted by the node's
:class:`~vsm_phoenix.protocol.sync.SyncNode` inside the deterministic
:class:`~vsm_phoenix.protocol.sim.Simulator`. The threads never run at the same time:
the engine's stop callback, called once per GEPA iteration, is a *yield point* where
the engine thread hands control back to the scheduler and waits for its next turn. So
a run is a pure function of its seed, like every simulator run.

A step is the seed's validation run (the first step of an engine) or one GEPA
iteration. It costs virtual time: ``task_call_ms`` per task-model call and
``reflection_call_ms`` per reflection call. The engine works on a *working copy* of
its node's replica: refreshed from the sync node when a step starts, and its writes
handed to the sync node (one ``Merge``: joined, logged durably, shipped by
anti-entropy) when the step ends. Two schedules:

* ``parallel`` (default; a discrete-event simulation): every node has its own clock;
  the node with the earliest clock steps next, after the network has run up to that
  time, and its writes reach its sync node when its step completes. A node sees what
  others finished and synced before its step began -- so two nodes may evaluate the
  same key in overlapping steps, and those duplicates are measured, not hidden.
  Virtual time is the latest node clock (the nodes work in parallel).
* ``turns``: one step at a time, and after each step the network runs until every
  reachable peer holds its writes. Every evaluation then happens after every earlier
  one: without partitions no key is evaluated twice, and under a partition only keys
  evaluated on both sides (concurrently, in the causal sense) are. Virtual time is the
  sum of all steps (no parallel speed-up is claimed).

The run ends when a replica's frontier reaches ``target`` (every engine is then told
to stop), or when every engine has stopped (budget spent, or stalled). The budget is
**hard** (``hard_budget``, the default; :mod:`~vsm_phoenix.ext.gepa.budget`): each
engine makes metric calls only within slices of ``slice_calls`` it leased through the
Raft KV, so the calls of all engines together never exceed ``max_metric_calls``,
whatever the partitions and crashes; the KV commands are sent from the engine's thread
through the simulator, and the virtual time they take is the node's. With
``hard_budget=False`` each engine stops only when its view of the replicated counter
reaches the budget: concurrent steps, and each side of a partition, overspend. Then
the network runs alone for ``settle_ms`` so the replicas converge. **Independent**
mode (``share=False``) gives every node an empty peer list, a KV of its own and
``max_metric_calls // nodes`` calls: the baseline without sharing, on the same total
budget.

Faults between steps: :meth:`SimulatedCluster.partition` / ``heal`` (the network),
``crash`` (the engine thread is stopped and the sync node's memory lost) and
``restart`` (a fresh engine on the sync node rebuilt from what it persisted: cached
evaluations are answered from that state, so the restart re-spends no budget on them;
the crashed incarnation's unused lease is lost, never reused).
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any, cast

import attrs

from vsm_phoenix.errors import InvalidArgument, VsmPhoenixError
from vsm_phoenix.ext.gepa.budget import (
    BUDGET_KEY,
    BudgetExhausted,
    BudgetLease,
    LeaseUnavailable,
    lease_value,
    release_value,
)
from vsm_phoenix.ext.gepa.deploy import DEPLOYED_KEY, Decision, Deployment, GepaNode
from vsm_phoenix.ext.gepa.models import GuardedModel
from vsm_phoenix.ext.gepa.records import CandidateId, instance_key
from vsm_phoenix.ext.gepa.shared import (
    ClusterStop,
    KeyedLoader,
    Migration,
    NodeContext,
    ReplicaEvaluationCache,
    SharedAdapter,
    check_frontier_type,
)
from vsm_phoenix.ext.gepa.state import EvolutionState, Frontier
from vsm_phoenix.ext.gepa.task import (
    TicketTask,
    TicketTriageAdapter,
    rule_model,
    scripted_reflection,
    ticket_task,
)
from vsm_phoenix.protocol import kv
from vsm_phoenix.protocol.raft import K_NOT_LEADER, K_OK, RaftConfig
from vsm_phoenix.protocol.sim import NetworkConfig, Simulator
from vsm_phoenix.protocol.sync import Merge, SyncConfig

__all__ = ["ClusterConfig", "EngineFailed", "NodeReport", "RunReport", "SimulatedCluster",
           "REPLICA"]

#: The name of the replica every sync node hosts.
REPLICA = "gepa"


class EngineFailed(VsmPhoenixError):
    """A node's engine raised; ``node`` names it, ``__cause__`` is the error."""

    def __init__(self, node: str, cause: BaseException) -> None:
        super().__init__(f"GEPA engine on {node} failed: {cause!r}")
        self.node = node


@attrs.frozen
class ClusterConfig:
    """Settings of a simulated run (times in virtual milliseconds)."""

    nodes: int = 3
    share: bool = True
    migrate: bool = True
    max_metric_calls: int = 1500
    target: float | None = 0.875
    seed: int = 0
    evaluator: str = "tickets-v1"
    sync_interval_ms: int = 200
    task_call_ms: int = 20
    reflection_call_ms: int = 400
    settle_ms: int = 3_000
    max_rounds: int = 2_000
    minibatch_size: int = 3
    schedule: str = "parallel"
    hard_budget: bool = True
    lease_calls: int | None = None
    lease_timeout_ms: int = 2_000
    frontier_type: str = "instance"

    def __attrs_post_init__(self) -> None:
        check_frontier_type(self.frontier_type)
        if self.schedule not in ("parallel", "turns"):
            raise InvalidArgument("schedule must be 'parallel' or 'turns'")
        for name in ("nodes", "max_metric_calls", "sync_interval_ms", "max_rounds",
                     "minibatch_size"):
            v = getattr(self, name)
            if type(v) is not int or v <= 0:
                raise InvalidArgument(f"{name} must be a positive int")
        if self.lease_calls is not None and (type(self.lease_calls) is not int
                                             or self.lease_calls <= 0):
            raise InvalidArgument("lease_calls must be a positive int (or None)")
        if type(self.hard_budget) is not bool:
            raise InvalidArgument("hard_budget must be a bool")
        for name in ("task_call_ms", "reflection_call_ms", "settle_ms", "lease_timeout_ms"):
            v = getattr(self, name)
            if type(v) is not int or v < 0:
                raise InvalidArgument(f"{name} must be a non-negative int")
        if self.target is not None and not 0.0 <= self.target <= 1.0:
            raise InvalidArgument("target must be in [0, 1]")

    def slice_calls(self, valset_size: int) -> int:
        """Calls a budget lease takes at a time: ``lease_calls``, by default what one
        GEPA iteration can cost (the parent's and the child's minibatch, then the
        whole valset)."""
        return self.lease_calls or 2 * self.minibatch_size + valset_size


@attrs.frozen
class NodeReport:
    node: str
    metric_calls: int
    hits: int
    task_model_calls: int
    reflection_calls: int
    migrated: int
    published: int
    duplicate_records: int
    restarts: int
    stop_reason: str | None
    leased: int = 0
    lease_waits: int = 0


@attrs.frozen
class RunReport:
    """What a run measured (a record; rendering lives in the CLI and the bench)."""

    config: ClusterConfig
    nodes: tuple[NodeReport, ...]
    steps: int
    reached: bool
    metric_calls_to_target: int | None
    model_calls_to_target: int | None
    virtual_ms_to_target: int | None
    virtual_ms: int
    wall_s: float
    metric_calls: int
    model_calls: int
    accepted_candidates: int
    sync_bytes: int
    evaluated_keys: int
    duplicate_keys: int
    frontiers_agree: bool
    frontier: Frontier | None
    best_candidate: dict[str, str] | None
    best_lineage: tuple[CandidateId, ...]
    deployed: Decision | None = None
    deployed_agree: bool = False
    leased_calls: int = 0


class _Engine:
    """One engine thread and its turn-taking (see the module docstring)."""

    def __init__(self, node_id: str, run: Callable[[ClusterStop], Any], stop: ClusterStop
                 ) -> None:
        self.node_id = node_id
        self.stop = stop
        self._go = threading.Semaphore(0)
        self._done = threading.Semaphore(0)
        self.finished = False
        self.error: BaseException | None = None
        stop.before_check = self._yield
        self._run = run
        self._thread = threading.Thread(target=self._main, name=f"gepa-{node_id}", daemon=True)
        self._started = False

    def _main(self) -> None:
        try:
            self._run(self.stop)
        except BaseException as exc:
            self.error = exc
        finally:
            self.finished = True
            self._done.release()

    def _yield(self) -> None:
        self._done.release()
        self._go.acquire()

    def step(self) -> None:
        if self.finished:
            return
        if not self._started:
            self._started = True
            self._thread.start()
        else:
            self._go.release()
        self._done.acquire()
        if self.error is not None:
            raise EngineFailed(self.node_id, self.error) from self.error

    def shutdown(self) -> None:
        """Ask the engine to stop and wait for its thread."""
        self.stop.stop_requested = True
        while not self.finished and self._started:
            self.step()


class _Node:
    def __init__(self, node_id: str) -> None:
        self.node_id = node_id
        self.task_model: GuardedModel | None = None
        self.reflection: GuardedModel | None = None
        self.ctx: NodeContext | None = None
        self.engine: _Engine | None = None
        self.migration: Migration | None = None
        self.restarts = 0
        self.lease: BudgetLease | None = None
        self.work: EvolutionState | None = None
        self.clock = 0
        self.steps = 0  # steps of the current engine
        self.totals = {"metric_calls": 0, "hits": 0, "task": 0, "reflection": 0,
                       "migrated": 0, "published": 0, "duplicates": 0, "leased": 0,
                       "lease_waits": 0}
        self.stop_reason: str | None = None


class SimulatedCluster:
    """N upstream GEPA engines on simulated nodes (see the module docstring).

    ``task`` defaults to the shipped ticket task; ``adapter_factory(model)`` builds the
    user's adapter around a node's task model, ``reflection_model`` is the async
    reflection callable. ``progress(round, report_so_far)`` is called after every round.
    """

    def __init__(
        self,
        config: ClusterConfig | None = None,
        *,
        task: TicketTask | None = None,
        adapter_factory: Callable[[GuardedModel], Any] = TicketTriageAdapter,
        task_model: Callable[[str], Any] = rule_model,
        reflection_model: Callable[[str], Any] = scripted_reflection,
        network: NetworkConfig | None = None,
        progress: Callable[[int, dict[str, Any]], None] | None = None,
    ) -> None:
        self.config = cfg = config or ClusterConfig()
        self.task = task or ticket_task()
        self.adapter_factory = adapter_factory
        self.task_model_fn = task_model
        self.reflection_fn = reflection_model
        self.progress = progress
        self.node_ids = [f"n{i + 1}" for i in range(cfg.nodes)]
        self.val_ids = [instance_key(x) for x in self.task.valset]
        ids = self.node_ids
        share = cfg.share

        def factory(node_id: str, rng: random.Random) -> GepaNode:
            peers = tuple(p for p in ids if p != node_id) if share else ()
            return GepaNode(node_id, rng,
                            sync=SyncConfig(interval_ms=cfg.sync_interval_ms, peers=peers),
                            raft=RaftConfig(peers=tuple(ids) if share else (node_id,)),
                            replica_name=REPLICA)

        self.sim = Simulator(factory, ids, seed=cfg.seed, network=network)
        self.nodes = {nid: _Node(nid) for nid in ids}
        self.steps = 0
        self.busy_ms = 0
        self._turn = 0
        self.reached_at: tuple[int, int, int] | None = None  # (metric, model calls, ms)
        self._t0 = time.perf_counter()
        self._closed = False
        self._deployers: dict[str, Deployment] = {}
        self._reads: dict[str, str | None] = {}

    # -- nodes ----------------------------------------------------------------------------

    def replica(self, node_id: str) -> EvolutionState:
        node = self.sim.node(node_id)
        if not isinstance(node, GepaNode):
            raise InvalidArgument(f"node {node_id!r} is down")
        r = node.sync.replicas[REPLICA]
        assert isinstance(r, EvolutionState)
        return r

    def replica_id(self, node_id: str) -> str:
        """The replica id ``node_id``'s budget counts go under (its sync node's
        :attr:`~vsm_phoenix.protocol.sync.SyncNode.replica_id`; kept across a restart
        with its disk)."""
        node = self.sim.node(node_id)
        if not isinstance(node, GepaNode):
            raise InvalidArgument(f"node {node_id!r} is down")
        return node.sync.replica_id

    def _work(self, node_id: str) -> EvolutionState:
        w = self.nodes[node_id].work
        if w is None:
            raise InvalidArgument(f"node {node_id!r} has no running engine")
        return w

    def _limit(self) -> int:
        cfg = self.config
        return cfg.max_metric_calls if cfg.share else max(cfg.max_metric_calls // cfg.nodes, 1)

    def _boot(self, node_id: str) -> None:
        from gepa.api import optimize

        cfg = self.config
        n = self.nodes[node_id]
        n.task_model = GuardedModel(self.task_model_fn, name=f"{node_id}/task",
                                    cost_ms=cfg.task_call_ms)
        n.reflection = GuardedModel(self.reflection_fn, name=f"{node_id}/reflection",
                                    cost_ms=cfg.reflection_call_ms)
        n.work = self.replica(node_id).copy()
        n.clock = max(n.clock, self.sim.now)
        slice_calls = cfg.slice_calls(len(self.val_ids))
        lease = None
        if cfg.hard_budget:
            # A fresh KV session per incarnation: a restarted node must not reuse the
            # sequence numbers its previous incarnation's commands carried.
            acquire, give_back = self._lease_client(node_id,
                                                    f"gepa-lease-{node_id}.{n.restarts}")
            lease = BudgetLease(acquire, slice_calls=slice_calls, give_back=give_back)
        n.lease = lease
        ctx = NodeContext(node_id, lambda: self._work(node_id), cfg.evaluator,
                          replica_id=self.replica_id(node_id), lease=lease,
                          frontier_type=cfg.frontier_type)
        n.ctx = ctx
        adapter = SharedAdapter(self.adapter_factory(n.task_model), ctx)
        migration = Migration(ctx, self.val_ids, enabled=cfg.share and cfg.migrate,
                              cache=ReplicaEvaluationCache(ctx))
        n.migration = migration
        stop = ClusterStop(ctx, self._limit(), self.val_ids, target=cfg.target,
                           reserve_calls=slice_calls if lease is not None else 0)
        trainset = KeyedLoader(self.task.trainset)
        valset = KeyedLoader(self.task.valset)
        # Each node explores with its own seed (and each incarnation with a new one).
        seed = cfg.seed * 1009 + self.node_ids.index(node_id) * 31 + n.restarts
        reflection = n.reflection

        def run(stopper: ClusterStop) -> Any:
            try:
                return engine_run(stopper)
            except BudgetExhausted:
                stopper.reason = "budget spent"
            except LeaseUnavailable:
                stopper.reason = "lease unavailable"
            finally:
                if lease is not None:  # the engine's last call is made: give back
                    lease.release()    # (nothing after a crash: abandoned)
            return None

        def engine_run(stopper: ClusterStop) -> Any:
            return optimize(
                seed_candidate=dict(self.task.seed_candidate),
                trainset=trainset,
                valset=valset,
                adapter=adapter,
                reflection_lm=reflection,
                candidate_selection_strategy="pareto",
                frontier_type=cast(Any, cfg.frontier_type),
                reflection_minibatch_size=cfg.minibatch_size,
                stop_callbacks=[stopper],
                callbacks=[cast(Any, migration)],
                cache_evaluation=True,  # replaced by the replica's (Migration installs it)
                logger=_Quiet(),
                seed=seed,
                raise_on_exception=True,
            )

        n.engine = _Engine(node_id, run, stop)
        n.steps = 0

    def _lease_client(self, node_id: str, client: str
                      ) -> tuple[Callable[[int], int], Callable[[int], None]]:
        """``acquire(want)`` and ``give_back(n)`` for ``node_id``'s
        :class:`BudgetLease`: a linearizable read of :data:`BUDGET_KEY` and a
        compare-and-set raising (lowering) it, sent through the simulator from the
        engine's thread while the scheduler waits (so the run stays a function of its
        seed; the virtual time it takes is the node's)."""
        seq = 0
        limit = self._limit()
        timeout = self.config.lease_timeout_ms

        def cas(new_value: Callable[[str | None], tuple[str, int] | None]) -> int:
            nonlocal seq
            for _ in range(8):  # a concurrent lease may win the compare-and-set
                try:
                    got = self.kv_request(node_id, kv.get(BUDGET_KEY), timeout_ms=timeout)
                    current = got if isinstance(got, str) else None
                    step = new_value(current)
                    if step is None:
                        return 0
                    seq += 1
                    done = self.kv_request(
                        node_id, kv.cas(client, seq, BUDGET_KEY, current, step[0]),
                        timeout_ms=timeout)
                except TimeoutError as exc:
                    raise LeaseUnavailable(f"{node_id}: {exc}") from None
                if done is True:
                    return step[1]
            raise LeaseUnavailable(f"{node_id}: lost 8 compare-and-sets in a row")

        def acquire(want: int) -> int:
            return cas(lambda current: lease_value(current, want, limit))

        def give_back(calls: int) -> None:
            cas(lambda current: (release_value(current, calls), calls))

        return acquire, give_back

    def start(self) -> None:
        for nid in self.node_ids:
            if self.nodes[nid].engine is None:
                self._boot(nid)

    def _retire(self, node_id: str) -> None:
        n = self.nodes[node_id]
        if n.engine is not None:
            n.engine.shutdown()
            n.stop_reason = n.engine.stop.reason
        if n.ctx is not None:
            t = n.totals
            t["metric_calls"] += n.ctx.metric_calls
            t["hits"] += n.ctx.hits
            t["migrated"] += n.ctx.migrated
            t["published"] += n.ctx.published
            t["duplicates"] += n.ctx.duplicate_records
        if n.lease is not None:
            n.totals["leased"] += n.lease.net
        if n.engine is not None:
            n.totals["lease_waits"] += n.engine.stop.lease_waits
        for m, k in ((n.task_model, "task"), (n.reflection, "reflection")):
            if m is not None:
                t = n.totals
                t[k] += m.calls
                m.close()
        n.engine = n.ctx = n.migration = n.task_model = n.reflection = n.lease = None
        n.work = None

    # -- faults ---------------------------------------------------------------------------

    def partition(self, *groups: Iterable[str]) -> None:
        self.sim.partition(*groups)

    def heal(self) -> None:
        """Restore every link. Under ``turns`` the network then runs one sync round, so
        the next step sees what the other side did (the schedule's invariant)."""
        self.sim.heal()
        if self.config.schedule == "turns":
            self.sim.run_for(self.config.sync_interval_ms + self._max_latency() + 1)

    def crash(self, node_id: str) -> None:
        """Stop the node's engine (its deltas not yet merged are lost) and crash its
        sync node (memory lost, persisted state kept)."""
        if node_id not in self.nodes:
            raise InvalidArgument(f"no node {node_id!r}")
        n = self.nodes[node_id]
        if n.ctx is not None:
            n.ctx.take_deltas()  # in memory only: lost with the crash
        if n.lease is not None:
            n.lease.abandon()  # a crashed node gives nothing back
        self._retire(node_id)
        self.sim.crash(node_id)

    def restart(self, node_id: str) -> None:
        """Restart the sync node from its persisted state and boot a fresh engine."""
        if node_id not in self.nodes:
            raise InvalidArgument(f"no node {node_id!r}")
        self.sim.restart(node_id)
        self.nodes[node_id].restarts += 1
        self._boot(node_id)

    # -- running --------------------------------------------------------------------------

    def _flush(self, node_id: str, delay_ms: int = 0) -> None:
        n = self.nodes[node_id]
        if n.ctx is None:
            return
        delta = n.ctx.take_deltas()
        if delta is not None:
            self.sim.client_request(node_id, Merge(REPLICA, delta), delay_ms=delay_ms)

    def _calls(self) -> tuple[int, int]:
        metric = model = 0
        for n in self.nodes.values():
            metric += n.totals["metric_calls"] + (n.ctx.metric_calls if n.ctx else 0)
            model += n.totals["task"] + n.totals["reflection"]
            for m in (n.task_model, n.reflection):
                model += m.calls if m is not None else 0
        return metric, model

    def _next(self) -> str | None:
        live = [nid for nid in self.node_ids
                if (e := self.nodes[nid].engine) is not None and not e.finished]
        if not live:
            return None
        if self.config.schedule == "parallel":
            return min(live, key=lambda nid: (self.nodes[nid].clock, self.node_ids.index(nid)))
        order = self.node_ids[self._turn % len(self.node_ids):] + \
            self.node_ids[:self._turn % len(self.node_ids)]
        self._turn += 1
        return next(nid for nid in order if nid in live)

    def step(self) -> bool:
        """Run one engine step (see the module docstring); ``False`` once no engine is
        left running."""
        if self.steps == 0:
            self.start()
        nid = self._next()
        if nid is None:
            return False
        cfg = self.config
        n = self.nodes[nid]
        assert n.engine is not None and n.task_model is not None and n.reflection is not None
        if cfg.schedule == "parallel":
            self.sim.run_until(n.clock)
        n.work = self._work(nid) | self.replica(nid)  # what reached this node so far
        before = (n.task_model.calls, n.reflection.calls)
        started = self.sim.now
        n.engine.step()
        n.steps += 1
        if n.migration is not None and n.migration.errors:
            raise EngineFailed(nid, n.migration.errors[0])
        # Model calls cost their virtual time; budget leases (KV round trips the engine
        # made through the simulator) cost the time the network ran meanwhile.
        cost = (n.task_model.calls - before[0]) * cfg.task_call_ms \
            + (n.reflection.calls - before[1]) * cfg.reflection_call_ms \
            + (self.sim.now - started)
        self.steps += 1
        self.busy_ms += cost
        if cfg.schedule == "parallel":
            n.clock += max(cost, 1)
            self._flush(nid, delay_ms=max(n.clock - self.sim.now, 0))
        else:
            n.clock = self.busy_ms
            self._flush(nid)
            self.sim.run_for(cfg.sync_interval_ms + self._max_latency() + 1)
        if n.engine.finished:
            n.stop_reason = n.engine.stop.reason
        if self.reached_at is None and cfg.target is not None:
            f = self._work(nid).frontier(self.val_ids, cfg.evaluator)
            if f.best_score is not None and f.best_score >= cfg.target:
                metric, model = self._calls()
                self.reached_at = (metric, model, self._virtual_ms())
                for other in self.nodes.values():
                    if other.engine is not None:
                        other.engine.stop.stop_requested = True
        if self.progress is not None:
            metric, model = self._calls()
            self.progress(self.steps, {"metric_calls": metric, "model_calls": model,
                                       "virtual_ms": self._virtual_ms(), "node": nid})
        return True

    def _max_latency(self) -> int:
        net = self.sim.network
        return net.max_latency_ms + (net.reorder_extra_ms if net.reorder_rate else 0)

    def _virtual_ms(self) -> int:
        if self.config.schedule == "turns":
            return self.busy_ms
        return max(n.clock for n in self.nodes.values())

    def run(self) -> RunReport:
        """Steps until the target is reached or every engine stopped, then settle."""
        limit = self.config.max_rounds * self.config.nodes
        while self.steps < limit and self.step():
            pass
        return self.finish()

    def finish(self) -> RunReport:
        """Stop every engine, let the network settle, and report."""
        if not self._closed:
            for nid in self.node_ids:
                self._retire_and_flush(nid)
            self.sim.run_until(max(self.sim.now, self._virtual_ms()))
            self.sim.run_for(self.config.settle_ms)
            self._closed = True
            self.deploy()
        return self.report()

    # -- the deployed prompt (Raft KV) ----------------------------------------------------

    def kv_request(self, node_id: str, payload: Any, *, timeout_ms: int = 10_000) -> Any:
        """Send a KV command or read to ``node_id`` (following leader hints, retrying;
        commands carry client sequence numbers, so a retry applies once) and run the
        network until it is answered. ``TimeoutError`` if it is not in time."""
        deadline = self.sim.now + timeout_ms
        target = node_id
        while self.sim.now < deadline:
            if self.sim.node(target) is None:
                target = next((n for n in self.node_ids if self.sim.node(n) is not None),
                              node_id)
            seen = len(self.sim.delivered[target])
            rid = self.sim.client_request(target, payload)
            reply = None
            for _ in range(100):
                self.sim.run_for(10)
                for d in self.sim.delivered[target][seen:]:
                    if d.request_id == rid:
                        reply = d
                if reply is not None:
                    break
            if reply is None:
                continue
            if reply.kind == K_OK:
                return reply.payload
            if reply.kind == K_NOT_LEADER and isinstance(reply.payload, str) \
                    and reply.payload in self.nodes:
                target = reply.payload
            else:
                self.sim.run_for(100)
        raise TimeoutError(f"KV request to {node_id} not answered in {timeout_ms} ms")

    def deployed(self, node_id: str) -> str | None:
        """The deployed value as ``node_id`` reads it (linearizable)."""
        value = self.kv_request(node_id, kv.get(DEPLOYED_KEY))
        return value if isinstance(value, str) else None

    def deploy(self) -> None:
        """Every up node proposes its replica's decision through compare-and-set; the
        KV keeps the best (versions count up). Then every node reads it back."""
        for nid in self.node_ids:
            if self.sim.node(nid) is None:
                continue
            dep = self._deployers.setdefault(
                nid, Deployment(f"gepa-deployer-{nid}", self.val_ids, self.config.evaluator))
            decision = dep.decision(self.replica(nid))
            for _ in range(5):  # a concurrent deployer may win the cas: read again
                if decision is None:
                    break
                current = self.deployed(nid)
                cmd = dep.propose(decision, current)
                if cmd is None or self.kv_request(nid, cmd) is True:
                    break
        self._reads = {nid: self.deployed(nid) for nid in self.node_ids
                       if self.sim.node(nid) is not None}

    def report(self) -> RunReport:
        cfg = self.config
        up = [nid for nid in self.node_ids if self.sim.node(nid) is not None]
        frontiers = [self.replica(nid).frontier(self.val_ids, cfg.evaluator) for nid in up]
        agree = all(_same(f, frontiers[0]) for f in frontiers[1:]) if frontiers else True
        # In independent mode each replica holds only its own node's work.
        merged = EvolutionState()
        for nid in up:
            merged |= self.replica(nid)
        front = frontiers[0] if cfg.share and frontiers else (
            merged.frontier(self.val_ids, cfg.evaluator) if up else None)
        if not cfg.share and up:
            front = max(frontiers, key=lambda f: (f.best_score is not None,
                                                  f.best_score or 0.0))
        best = None if front is None or front.best is None else merged.candidate(front.best)
        lineage: list[CandidateId] = []
        cur = None if front is None else front.best
        while cur is not None and cur not in lineage:
            lineage.append(cur)
            ps = sorted(merged.parents(cur))
            cur = ps[0] if ps else None
        keys = merged.evaluation_keys()
        dup = sum(1 for k in keys if merged.records_for(k) > 1)
        metric, model = self._calls()
        nodes = []
        for nid in self.node_ids:
            n = self.nodes[nid]
            t = n.totals
            nodes.append(NodeReport(
                node=nid, metric_calls=t["metric_calls"], hits=t["hits"],
                task_model_calls=t["task"], reflection_calls=t["reflection"],
                migrated=t["migrated"], published=t["published"],
                duplicate_records=t["duplicates"], restarts=n.restarts,
                stop_reason=n.stop_reason, leased=t["leased"],
                lease_waits=t["lease_waits"]))
        reached = self.reached_at is not None
        reads = self._reads
        first = next(iter(reads.values()), None)
        deployed = Decision.from_json(first) if first is not None and cfg.share else None
        return RunReport(
            config=cfg, nodes=tuple(nodes), steps=self.steps, reached=reached,
            metric_calls_to_target=self.reached_at[0] if self.reached_at else None,
            model_calls_to_target=self.reached_at[1] if self.reached_at else None,
            virtual_ms_to_target=self.reached_at[2] if self.reached_at else None,
            virtual_ms=self._virtual_ms(), wall_s=time.perf_counter() - self._t0,
            metric_calls=metric, model_calls=model,
            accepted_candidates=len(merged.candidate_ids()),
            sync_bytes=self.sim.bytes_by_type.get("sync.delta", 0),
            evaluated_keys=len(keys), duplicate_keys=dup,
            frontiers_agree=agree, frontier=front, best_candidate=best,
            best_lineage=tuple(lineage), deployed=deployed,
            deployed_agree=bool(reads) and len(set(reads.values())) == 1,
            leased_calls=sum(n.leased for n in nodes),
        )

    def _retire_and_flush(self, node_id: str) -> None:
        n = self.nodes[node_id]
        if n.engine is not None:
            n.engine.stop.stop_requested = True
            while not n.engine.finished:
                n.engine.step()
        delay = max(n.clock - self.sim.now, 0) if self.config.schedule == "parallel" else 0
        self._flush(node_id, delay_ms=delay)
        self._retire(node_id)

    def close(self) -> None:
        for nid in self.node_ids:
            self._retire(nid)


def _same(a: Frontier, b: Frontier) -> bool:
    return (dict(a.scores) == dict(b.scores) and a.per_instance == b.per_instance
            and a.members == b.members and a.best == b.best and a.best_score == b.best_score)


class _Quiet:
    def log(self, message: str) -> None:
        return None
