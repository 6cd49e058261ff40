"""The upstream GEPA engine on one node, with its shared parts replaced by CRDT views.

Each node runs ``gepa.optimize`` unchanged. What must be shared is plugged in through
the engine's own hooks, all reading and writing one :class:`EvolutionState` replica
(the live replica the node's sync protocol keeps converging):

==========================  ===========================================================
upstream hook               what is plugged in
==========================  ===========================================================
``adapter``                 :class:`SharedAdapter` around the user's ``GEPAAdapter``:
                            a key already evaluated anywhere is answered from the
                            replica; only misses reach the user's ``evaluate``; every
                            miss is recorded and counted against this node's budget
                            (and, with a :class:`~vsm_phoenix.ext.gepa.budget.
                            BudgetLease`, made only within calls the node leased)
``valset`` / ``trainset``   :class:`KeyedLoader`: data ids are instance *content* keys
``cache_evaluation``        :class:`ReplicaEvaluationCache` (an ``EvaluationCache``)
                            so the engine's valset bookkeeping counts cache hits as
                            free; ``optimize`` only takes a flag, so :class:`Migration`
                            installs it in the state at the first iteration start
                            (``GEPAEngine`` takes it as ``evaluation_cache=``)
``stop_callbacks``          :class:`ClusterStop`: cluster-wide metric-call budget
                            (the replicated count, and a lease for the next iteration
                            taken before it starts), a target score on the replicated
                            frontier, and the yield point of the deterministic scheduler
``callbacks``               :class:`Migration`: publishes accepted candidates to the
                            replicated pool and imports candidates found elsewhere
==========================  ===========================================================

**What the hooks do not reach, and what was written instead:**

1. *Minibatch evaluations bypass the cache.* GEPA's reflective proposer evaluates the
   parent and the child on a training minibatch with ``adapter.evaluate`` directly
   (it only *writes* the cache), so a shared ``EvaluationCache`` alone would not save
   those calls. The adapter wrapper caches at the adapter boundary instead, and
   reports ``EvaluationBatch.num_metric_calls`` (the misses) so the engine's own count
   stays right. The seed's validation run also calls the adapter directly.
2. *List loaders give positional ids.* With a trainset and a valset as lists, GEPA's
   data ids are ``0..n-1`` in both, and its evaluation cache keys
   ``(candidate hash, data id)`` -- the proposer's minibatch writes (train id 3) and
   the valset reads (val id 3) then share keys. :class:`KeyedLoader` makes ids content
   keys, which also lets different nodes name the same instance the same way.
3. *No import of foreign candidates.* The engine has no hook to add a candidate it did
   not propose. :class:`Migration` does it at ``on_iteration_start`` (the event carries
   the live ``GEPAState``) through ``GEPAState.update_state_with_new_program``, with
   the validation scores taken from the replica -- a migrated candidate costs no
   metric call. Only candidates whose scores cover the whole valset migrate, and only
   those whose validation score row no local candidate has already: GEPA's Pareto
   selector prunes candidates with equal rows down to one anyway, and its pruning
   (``gepa_utils.remove_dominated_programs``, run at every selection and every
   accepted candidate) is cubic in the number of frontier programs -- with 0/1 scores
   and every node's candidates imported, it dominated the run time.
4. *Objective scores travel with the records.* Every frontier type of gepa 0.1.x
   works (:data:`FRONTIER_TYPES`): a record holds the output, the score, the trace
   and -- when the adapter returns ``EvaluationBatch.objective_scores`` -- the
   per-objective scores, which the cache and the migration hand back to the engine.
   Under ``objective``, ``hybrid`` and ``cartesian`` a record without them answers
   nothing (the adapter is called), an adapter that returns none is refused with
   ``InvalidArgument`` naming the frontier type, and a candidate whose records lack
   them does not migrate. The replicated :class:`~vsm_phoenix.ext.gepa.state.Frontier`
   (and the deployed prompt) stays per instance: the best mean validation score.
5. *A user's ``batch_evaluate`` would bypass the wrapper* (GEPA calls it instead of
   ``evaluate`` when the adapter has one): :meth:`SharedAdapter.batch_evaluate`
   evaluates each pair through :meth:`SharedAdapter.evaluate` instead.

Outputs and traces the replica cannot hold (not plain data, see
:mod:`~vsm_phoenix.ext.gepa.records`) are recorded as ``None``; a trace-less record
cannot answer a call that needs traces, which then counts as a miss.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import Any, Final, cast

from gepa.core.adapter import EvaluationBatch
from gepa.core.state import CachedEvaluation, EvaluationCache, GEPAState, ValsetEvaluation

from vsm_phoenix.errors import InvalidArgument, TypeMismatch, VsmPhoenixError
from vsm_phoenix.ext.gepa.budget import BudgetExhausted, LeaseUnavailable
from vsm_phoenix.ext.gepa.records import (
    CandidateId,
    EvalKey,
    Evaluation,
    candidate_id,
    check_plain,
    instance_key,
)
from vsm_phoenix.ext.gepa.state import EvolutionState

__all__ = [
    "FRONTIER_TYPES",
    "ClusterStop",
    "KeyedLoader",
    "Migration",
    "NodeContext",
    "ReplicaEvaluationCache",
    "SharedAdapter",
    "check_frontier_type",
]


#: GEPA's frontier types this package shares (every one of gepa 0.1.x): ``instance``
#: ranks by per-instance scores; ``objective``, ``hybrid`` and ``cartesian`` also by
#: the adapter's per-objective scores, which the records then carry.
FRONTIER_TYPES: Final = ("instance", "objective", "hybrid", "cartesian")


def check_frontier_type(frontier_type: object) -> str:
    """``frontier_type`` when it is one of :data:`FRONTIER_TYPES`, else
    ``InvalidArgument`` naming them."""
    if frontier_type not in FRONTIER_TYPES:
        raise InvalidArgument(f"frontier_type must be one of {', '.join(FRONTIER_TYPES)}; "
                              f"got {frontier_type!r}")
    return str(frontier_type)


class NodeContext:
    """What the hooks of one node share: the live replica (through ``replica()``, so
    the scheduler may swap it), the node id, the evaluator version, the deltas written
    since the last :meth:`take_deltas`, and counts.

    ``replica_id`` is the id this node's budget counts go under: its sync node's
    :attr:`~vsm_phoenix.protocol.sync.SyncNode.replica_id` (the history it names), not
    the bare node id -- a node restarted without its disk takes a fresh one, so its
    new counts never hide under the old incarnation's higher ones. ``node_id`` names
    the evaluator in records (evidence). ``lease`` (optional) is the node's
    :class:`~vsm_phoenix.ext.gepa.budget.BudgetLease`: when set, no metric call is
    made that the lease does not cover. ``frontier_type`` is the engine's (see
    :data:`FRONTIER_TYPES`)."""

    def __init__(self, node_id: str, replica: Callable[[], EvolutionState], evaluator: str,
                 *, on_metric_call: Callable[[int], None] | None = None,
                 replica_id: str | None = None, lease: Any = None,
                 frontier_type: str = "instance") -> None:
        if not isinstance(node_id, str) or not node_id:
            raise InvalidArgument("node_id must be a non-empty str")
        if not isinstance(evaluator, str) or not evaluator:
            raise InvalidArgument("evaluator must be a non-empty str")
        if replica_id is not None and (not isinstance(replica_id, str) or not replica_id):
            raise InvalidArgument("replica_id must be a non-empty str")
        self.node_id = node_id
        self.replica_id = replica_id or node_id
        self.lease = lease
        check_frontier_type(frontier_type)
        self.frontier_type = frontier_type
        #: Whether evaluations must carry objective scores (every frontier but
        #: "instance" ranks by them): a record without them then counts as a miss.
        self.needs_objectives = frontier_type != "instance"
        self.replica = replica
        self.evaluator = evaluator
        self.on_metric_call = on_metric_call
        self._pending: EvolutionState | None = None
        self.metric_calls = 0  # misses: calls that reached the user's evaluate
        self.hits = 0  # instances answered from the replica
        self.duplicate_records = 0  # records added to a key that already had one
        self.migrated = 0
        self.published = 0

    def write(self, delta: EvolutionState) -> None:
        if self._pending is None:
            self._pending = delta
        else:
            self._pending |= delta

    def take_deltas(self) -> EvolutionState | None:
        """The join of the deltas written since the last call (``None`` if none)."""
        out, self._pending = self._pending, None
        return out

    def key(self, cid: CandidateId, instance: str) -> EvalKey:
        return EvalKey(cid, instance, self.evaluator)


class KeyedLoader:
    """A GEPA ``DataLoader`` whose ids are the instances' content keys (sorted by
    position). Duplicate instances are refused: they would be one key."""

    def __init__(self, items: Sequence[Any],
                 key: Callable[[Any], str] = instance_key) -> None:
        self._ids = [key(x) for x in items]
        if len(set(self._ids)) != len(self._ids):
            raise InvalidArgument("instances must be distinct (two share a content key)")
        self._items = dict(zip(self._ids, items, strict=True))

    def all_ids(self) -> list[str]:
        return list(self._ids)

    def fetch(self, ids: Sequence[str]) -> list[Any]:
        return [self._items[i] for i in ids]

    def __len__(self) -> int:
        return len(self._ids)

    def key_of(self, item: Any) -> str | None:
        """Reverse lookup by identity/equality (linear; used only on adapter misses)."""
        for k, v in self._items.items():
            if v is item or v == item:
                return k
        return None


def _plain_or_none(x: Any) -> Any:
    try:
        return check_plain(x)
    except (TypeError, ValueError):
        return None


class SharedAdapter:
    """Wraps a user's ``GEPAAdapter`` unchanged (see the module docstring, point 1)."""

    def __init__(self, inner: Any, ctx: NodeContext,
                 key: Callable[[Any], str] = instance_key) -> None:
        for name in ("evaluate", "make_reflective_dataset"):
            if not callable(getattr(inner, name, None)):
                raise TypeMismatch(f"adapter has no {name}()")
        self.inner = inner
        self.ctx = ctx
        self.key = key
        self.propose_new_texts = getattr(inner, "propose_new_texts", None)

    def evaluate(self, batch: list[Any], candidate: dict[str, str],
                 capture_traces: bool = False) -> EvaluationBatch[Any, Any]:
        ctx = self.ctx
        state = ctx.replica()
        cid = candidate_id(candidate)
        keys = [self.key(x) for x in batch]
        # key -> (output, score, trace, objective scores)
        found: dict[str, tuple[Any, float, Any, dict[str, float] | None]] = {}
        todo: list[str] = []
        todo_items: list[Any] = []
        for k, item in zip(keys, batch, strict=True):
            if k in found or k in todo:
                continue
            ev = state.resolved(ctx.key(cid, k))
            if ev is not None and (ev.trace is not None or not capture_traces) and (
                    ev.objectives is not None or not ctx.needs_objectives):
                found[k] = (ev.output, ev.score, ev.trace, ev.objective_scores())
            else:
                todo.append(k)
                todo_items.append(item)
        ctx.hits += len(batch) - len(todo)
        if todo:
            n = len(todo)
            lease = ctx.lease
            if lease is not None:  # a hard budget: no call without a lease covering it
                if not lease.ensure(n):  # LeaseUnavailable when the KV does not answer
                    raise BudgetExhausted(n, lease.held)
                lease.use(n)  # before the call: a call that fails still counts
            fresh = self.inner.evaluate(todo_items, candidate, capture_traces=True)
            if len(fresh.outputs) != n or len(fresh.scores) != n:
                raise InvalidArgument("the adapter returned a different number of results")
            traces = fresh.trajectories if fresh.trajectories is not None else [None] * n
            if len(traces) != n:
                raise InvalidArgument("the adapter returned a different number of traces")
            objs = getattr(fresh, "objective_scores", None)
            if objs is None and ctx.needs_objectives:
                raise InvalidArgument(
                    f"frontier_type={ctx.frontier_type!r} needs objective scores: the "
                    "adapter's evaluate must return EvaluationBatch(objective_scores=...)")
            objs = objs if objs is not None else [None] * n
            if len(objs) != n:
                raise InvalidArgument("the adapter returned a different number of "
                                      "objective scores")
            for k, out, score, trace, obj in zip(todo, fresh.outputs, fresh.scores, traces,
                                                 objs, strict=True):
                ev = Evaluation(_plain_or_none(out), float(score), _plain_or_none(trace),
                                ctx.node_id, objectives=obj)
                if state.records_for(ctx.key(cid, k)):
                    ctx.duplicate_records += 1
                ctx.write(state.record(ctx.key(cid, k), ev))
                # The caller gets its own call's result (the replica may resolve another).
                found[k] = (out, ev.score, trace, ev.objective_scores())
            ctx.metric_calls += n
            ctx.write(state.spend(ctx.replica_id, n))
            if ctx.on_metric_call is not None:
                ctx.on_metric_call(n)
        objectives = [found[k][3] for k in keys]
        return EvaluationBatch(
            outputs=[found[k][0] for k in keys],
            scores=[found[k][1] for k in keys],
            trajectories=[found[k][2] for k in keys] if capture_traces else None,
            objective_scores=(None if any(o is None for o in objectives)
                              else cast(list[dict[str, float]], objectives)),
            num_metric_calls=len(todo),
        )

    def batch_evaluate(self, items: list[tuple[dict[str, str], list[Any]]]
                       ) -> list[EvaluationBatch[Any, Any]]:
        """GEPA calls an adapter's ``batch_evaluate`` instead of ``evaluate`` when it
        has one: defined here so that every evaluation goes through :meth:`evaluate`
        (the replica, the budget) -- the user's own ``batch_evaluate`` is not called."""
        return [self.evaluate(batch, candidate, capture_traces=True)
                for candidate, batch in items]

    def make_reflective_dataset(self, candidate: dict[str, str], eval_batch: Any,
                                components_to_update: list[str]) -> Any:
        return self.inner.make_reflective_dataset(candidate, eval_batch, components_to_update)

    def __getattr__(self, name: str) -> Any:  # get/set_adapter_state and the like
        if name in ("inner", "ctx", "key"):
            raise AttributeError(name)
        return getattr(self.inner, name)


class ReplicaEvaluationCache(EvaluationCache[Any, Any]):
    """GEPA's ``EvaluationCache`` answered from the replica (point 1 of the module
    docstring: the writes happen in :class:`SharedAdapter`; a ``put`` here records
    only keys nobody has recorded yet)."""

    def __init__(self, ctx: NodeContext) -> None:
        super().__init__()
        self.ctx = ctx

    def get(self, candidate: dict[str, str], example_id: Any) -> CachedEvaluation[Any] | None:
        ev = self.ctx.replica().resolved(self.ctx.key(candidate_id(candidate), example_id))
        if ev is None or (ev.objectives is None and self.ctx.needs_objectives):
            return None
        return CachedEvaluation(ev.output, ev.score, ev.objective_scores())

    def put(self, candidate: dict[str, str], example_id: Any, output: Any, score: float,
            objective_scores: Any = None) -> None:
        key = self.ctx.key(candidate_id(candidate), example_id)
        state = self.ctx.replica()
        if not state.records_for(key):
            ev = Evaluation(_plain_or_none(output), float(score), None, self.ctx.node_id,
                            objectives=objective_scores)
            self.ctx.write(state.record(key, ev))

    def get_batch(self, candidate: dict[str, str], example_ids: list[Any]
                  ) -> tuple[dict[Any, CachedEvaluation[Any]], list[Any]]:
        cached: dict[Any, CachedEvaluation[Any]] = {}
        uncached: list[Any] = []
        for eid in example_ids:
            hit = self.get(candidate, eid)
            if hit is None:
                uncached.append(eid)
            else:
                cached[eid] = hit
        return cached, uncached

    def put_batch(self, candidate: dict[str, str], example_ids: list[Any], outputs: list[Any],
                  scores: list[float], objective_scores_list: Any = None) -> None:
        objs = objective_scores_list or [None] * len(example_ids)
        for eid, out, score, obj in zip(example_ids, outputs, scores, objs, strict=False):
            self.put(candidate, eid, out, score, obj)


class ClusterStop:
    """GEPA stop callback: stop when the cluster has spent ``max_metric_calls`` (the sum
    of every node's count in the replica), when the replicated frontier's best mean
    reaches ``target`` (if given), when :attr:`stop_requested`, or when the engine has
    *stalled*: ``stall_iterations`` iterations in a row without a metric call while
    the pool did not grow. (GEPA skips a parent whose minibatch is already perfect;
    once the training set is solved, every iteration is such a skip, and with the
    evaluations cached it costs nothing -- upstream's metric-call budget alone would
    then never end the run.) ``before_check`` runs first at every call -- the
    scheduler's yield point (once per engine iteration).

    With a lease in the context (a hard budget), an engine that goes on first holds
    ``reserve_calls`` leased calls for the coming iteration, waiting at the yield
    point while the KV does not answer (see :meth:`_reserve`); the engine's run ends
    with :class:`~vsm_phoenix.ext.gepa.budget.BudgetExhausted` from the adapter when
    a call is needed that the rest of the budget cannot cover (the runners treat it as
    "budget spent")."""

    def __init__(self, ctx: NodeContext, max_metric_calls: int, valset_ids: Sequence[str],
                 *, target: float | None = None, stall_iterations: int = 32,
                 before_check: Callable[[], None] | None = None,
                 reserve_calls: int = 0) -> None:
        if type(max_metric_calls) is not int or max_metric_calls <= 0:
            raise InvalidArgument("max_metric_calls must be a positive int")
        if type(reserve_calls) is not int or reserve_calls < 0:
            raise InvalidArgument("reserve_calls must be a non-negative int")
        self.ctx = ctx
        self.reserve_calls = reserve_calls
        self.lease_waits = 0
        self.limit = max_metric_calls
        self.valset_ids = tuple(valset_ids)
        self.target = target
        self.before_check = before_check
        self.stop_requested = False
        self.reason: str | None = None
        self.stall_iterations = stall_iterations
        self._idle = 0
        self._last: tuple[int, int] = (-1, -1)

    def __call__(self, gepa_state: Any) -> bool:
        if self.before_check is not None:
            self.before_check()
        state = self.ctx.replica()
        mark = (self.ctx.metric_calls, len(state.candidate_ids()))
        self._idle = self._idle + 1 if mark == self._last else 0
        self._last = mark
        if self.stop_requested:
            self.reason = self.reason or "stop requested"
        elif self._idle >= self.stall_iterations:
            self.reason = "stalled"
        elif state.budget_spent >= self.limit:
            self.reason = "budget spent"
        elif self.target is not None:
            f = state.frontier(self.valset_ids, self.ctx.evaluator)
            if f.best_score is not None and f.best_score >= self.target:
                self.reason = "target reached"
        if self.reason is None and self.ctx.lease is not None:
            self._reserve()
        return self.reason is not None

    def _reserve(self) -> None:
        """Hold a lease for the coming iteration (``reserve_calls``) before it starts.
        While the KV does not answer, wait here (at the yield point, so the scheduler
        and the network run on) until it does or a stop is requested. When the budget
        has nothing left, go on with what is held (the adapter stops the engine at the
        first call it cannot cover), or stop when nothing is."""
        lease = self.ctx.lease
        while True:
            try:
                if not lease.ensure(self.reserve_calls) and lease.held == 0:
                    self.reason = "budget spent"
                return
            except LeaseUnavailable:
                self.lease_waits += 1
                if self.before_check is not None:
                    self.before_check()
                if self.stop_requested:
                    self.reason = "stop requested"
                    return


class Migration:
    """GEPA callback: publish this node's accepted candidates to the replicated pool,
    import the pool's complete candidates into the local ``GEPAState`` (point 3 of the
    module docstring)."""

    def __init__(self, ctx: NodeContext, valset_ids: Sequence[str], *,
                 enabled: bool = True, cache: ReplicaEvaluationCache | None = None) -> None:
        self.ctx = ctx
        self.cache = cache
        self.valset_ids = list(valset_ids)
        self.enabled = enabled
        self.local: dict[CandidateId, int] = {}
        self.skipped: set[CandidateId] = set()
        self.gepa_state: GEPAState[Any, Any] | None = None
        self.errors: list[BaseException] = []
        self._lock = threading.Lock()

    def _publish(self, candidate: dict[str, str], parents: list[CandidateId]) -> CandidateId:
        state = self.ctx.replica()
        cid = candidate_id(candidate)
        if state.candidate(cid) is None or not set(parents) <= state.parents(cid):
            self.ctx.write(state.add_candidate(candidate, parents))
            self.ctx.published += 1
        return cid

    def on_valset_evaluated(self, event: Any) -> None:
        try:
            candidate = dict(event["candidate"])
            idx = int(event["candidate_idx"])
            parents: list[CandidateId] = []
            gs = self.gepa_state
            for p in event["parent_ids"]:
                if p is not None and gs is not None and p < len(gs.program_candidates):
                    parents.append(candidate_id(gs.program_candidates[p]))
            cid = self._publish(candidate, parents)
            self.local.setdefault(cid, idx)
        except Exception as exc:
            self.errors.append(exc)

    def on_iteration_start(self, event: Any) -> None:
        try:
            gs = event["state"]
            self.gepa_state = gs
            if self.cache is not None and gs.evaluation_cache is not self.cache:
                gs.evaluation_cache = self.cache
            for i, cand in enumerate(gs.program_candidates):
                self.local.setdefault(candidate_id(cand), i)
            if self.enabled:
                self._import(gs)
        except Exception as exc:
            self.errors.append(exc)

    def _import(self, gs: GEPAState[Any, Any]) -> None:
        state = self.ctx.replica()
        rows = {tuple(sub.get(v) for v in self.valset_ids)
                for sub in gs.prog_candidate_val_subscores}
        for cid in state.candidate_ids():
            if cid in self.local or cid in self.skipped:
                continue
            evs = [state.resolved(self.ctx.key(cid, v)) for v in self.valset_ids]
            if any(ev is None for ev in evs):
                continue  # scores not complete here yet
            row = tuple(ev.score for ev in evs if ev is not None)
            if row in rows and not self.ctx.needs_objectives:
                # GEPA's instance selector collapses candidates with equal score rows
                # (its domination pruning keeps one); importing another costs its cubic
                # pruning time and adds no choice. (Objective frontiers rank by more
                # than the row: there every complete candidate migrates.)
                self.skipped.add(cid)
                continue
            rows.add(row)
            comps = state.candidate(cid)
            if comps is None or set(comps) != set(gs.list_of_named_predictors):
                continue  # another task's candidate
            objs = {v: ev.objective_scores() for v, ev in zip(self.valset_ids, evs,
                                                              strict=True) if ev}
            complete = all(o is not None for o in objs.values())
            if self.ctx.needs_objectives and not complete:
                continue  # the engine's frontier needs objective scores it cannot have
            evaluation = ValsetEvaluation(
                outputs_by_val_id={v: ev.output for v, ev in zip(self.valset_ids, evs,
                                                                  strict=True) if ev},
                scores_by_val_id={v: ev.score for v, ev in zip(self.valset_ids, evs,
                                                                strict=True) if ev},
                objective_scores_by_val_id=(cast(dict[str, dict[str, float]], objs)
                                            if complete else None),
            )
            parents = sorted(self.local[p] for p in state.parents(cid) if p in self.local)
            idx = gs.update_state_with_new_program(
                parent_program_idx=parents,
                new_program=comps,
                valset_evaluation=evaluation,
                run_dir=None,
                num_metric_calls_by_discovery_of_new_program=gs.total_num_evals,
            )
            self.local[cid] = idx
            self.ctx.migrated += 1


class MigrationError(VsmPhoenixError):
    """A callback failed inside the engine (GEPA logs and swallows callback errors)."""
