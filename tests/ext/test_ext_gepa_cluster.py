"""Distributed GEPA on the simulator: the upstream engine on every node, shared cache,
pool and budget; duplicates, partitions, crash-restart, and a user's adapter unchanged.

No test reaches a network: the task model and the reflection model are the shipped
deterministic local models (functions of their prompts)."""

from __future__ import annotations

import gepa
import pytest

from vsm_phoenix.ext.breaker import BreakerConfig, CallNotPermittedError, CircuitBreaker
from vsm_phoenix.ext.gepa import EvolutionState, InvalidArgument
from vsm_phoenix.ext.gepa.cluster import ClusterConfig, SimulatedCluster
from vsm_phoenix.ext.gepa.models import GuardedModel
from vsm_phoenix.ext.gepa.task import (
    SEED_RULES,
    apply_rules,
    rule_model,
    scripted_reflection,
    ticket_task,
)


class _Quiet:
    def log(self, message: str) -> None:
        return None


def _all_keys(cl: SimulatedCluster) -> EvolutionState:
    merged = EvolutionState()
    for nid in cl.node_ids:
        merged |= cl.replica(nid)
    return merged


def test_the_shipped_models_are_functions_of_their_prompts() -> None:
    assert apply_rules(SEED_RULES, "my invoice please") == "billing"
    assert apply_rules(SEED_RULES, "the app crash error") == "technical"
    assert apply_rules(SEED_RULES, "nothing matches") == "billing"  # otherwise
    assert apply_rules("a: x\nb: y, z", "y z x") == "b"
    prompt = ("```\nrules\nbilling: invoice\nshipping: delivery\n```\n"
              "Feedback: expected 'shipping' but the rules gave 'billing'; "
              "ticket: parcel invoice late\n"
              "Feedback: expected 'shipping' but the rules gave 'billing'; ticket: parcel lost\n")
    import asyncio

    out = asyncio.run(scripted_reflection(prompt))
    # 'invoice' voted wrong on a shipping ticket: dropped; 'parcel' is the shared word.
    assert "billing: \n" in out or "billing:\n" in out or "billing: " in out
    assert "shipping: delivery, parcel" in out and "invoice" not in out
    assert asyncio.run(rule_model(f"{SEED_RULES}\n\nTicket: my password\nLabel:")) == "account"


class UserAdapter(gepa.GEPAAdapter):  # type: ignore[misc]
    """A user's adapter written for ``gepa.optimize`` (only gepa imports): it calls
    whatever model it was given with the rules and the ticket, exact-match scoring,
    feedback in its own trace format."""

    def __init__(self, model: object) -> None:
        self.model = model

    def evaluate(self, batch, candidate, capture_traces=False):  # type: ignore[no-untyped-def]
        outputs, scores, traces = [], [], []
        for inst in batch:
            label = self.model(f"{candidate['rules']}\n\nTicket: {inst['ticket']}\nLabel:")
            outputs.append(label)
            scores.append(1.0 if label == inst["label"] else 0.0)
            fb = ("correct" if label == inst["label"] else
                  f"expected '{inst['label']}' but the rules gave '{label}'; "
                  f"ticket: {inst['ticket']}")
            traces.append({"ticket": inst["ticket"], "feedback": fb})
        return gepa.EvaluationBatch(outputs=outputs, scores=scores,
                                    trajectories=traces if capture_traces else None)

    def make_reflective_dataset(self, candidate, eval_batch, components_to_update):  # type: ignore[no-untyped-def]
        rows = [{"Inputs": t["ticket"], "Feedback": t["feedback"]}
                for t in eval_batch.trajectories]
        return {c: rows for c in components_to_update}


def test_a_user_adapter_for_gepa_optimize_runs_unchanged() -> None:
    task = ticket_task()
    model = GuardedModel(rule_model, name="task")
    result = gepa.optimize(
        seed_candidate=task.seed_candidate, trainset=task.trainset, valset=task.valset,
        adapter=UserAdapter(model), reflection_lm=GuardedModel(scripted_reflection),
        max_metric_calls=200, logger=_Quiet(), seed=0)
    assert max(result.val_aggregate_scores) > result.val_aggregate_scores[0]
    # The same class, unchanged, on three simulated nodes.
    cl = SimulatedCluster(ClusterConfig(nodes=3, max_metric_calls=300, target=None,
                                        schedule="turns"), adapter_factory=UserAdapter)
    report = cl.run()
    assert report.frontier is not None and report.frontier.best_score is not None
    assert report.frontier.best_score > 0.5625  # the seed rules' score
    assert report.metric_calls == sum(n.metric_calls for n in report.nodes)
    assert report.metric_calls == cl.replica("n1").budget_spent
    model.close()


def test_turns_without_partitions_never_evaluate_a_key_twice() -> None:
    cl = SimulatedCluster(ClusterConfig(nodes=3, max_metric_calls=500, target=None,
                                        schedule="turns", seed=1))
    report = cl.run()
    merged = _all_keys(cl)
    assert report.evaluated_keys > 100
    assert report.duplicate_keys == 0
    assert all(merged.records_for(k) == 1 for k in merged.evaluation_keys())
    assert all(n.migrated > 0 for n in report.nodes)  # candidates found elsewhere entered
    assert sum(n.hits for n in report.nodes) > 0
    # Converged: every replica is the same state and derives the same frontier.
    states = [cl.replica(nid).to_bytes() for nid in cl.node_ids]
    assert len(set(states)) == 1 and report.frontiers_agree
    # The deployed prompt went through the Raft KV: every node reads the same record,
    # and it is the frontier's best, with its lineage back to the seed.
    assert report.deployed_agree and report.deployed is not None
    assert report.frontier is not None and report.deployed.candidate == report.frontier.best
    assert report.deployed.version == 1 and report.deployed.score == report.frontier.best_score
    assert cl.replica("n1").candidate(report.deployed.lineage[-1]) == {"rules": SEED_RULES}


def test_under_a_partition_only_keys_evaluated_on_both_sides_are_duplicated() -> None:
    # Slices of 150 calls: the node cut off from the KV majority keeps evaluating on
    # the slice it holds (with the default slice it would soon wait for a lease).
    cl = SimulatedCluster(ClusterConfig(nodes=3, max_metric_calls=600, target=None,
                                        schedule="turns", seed=2, lease_calls=150))
    for _ in range(6):
        cl.step()
    before = set(_all_keys(cl).evaluation_keys())
    cl.partition(["n1"], ["n2", "n3"])
    for _ in range(24):
        cl.step()
    side_a = set(cl.replica("n1").evaluation_keys()) - before
    side_b = set((cl.replica("n2") | cl.replica("n3")).evaluation_keys()) - before
    cl.heal()
    report = cl.run()
    merged = _all_keys(cl)
    dups = {k for k in merged.evaluation_keys() if merged.records_for(k) > 1}
    assert dups <= side_a & side_b
    assert dups, "the scenario must produce concurrent evaluations to be meaningful"
    assert report.frontiers_agree


def test_parallel_schedule_converges_and_counts_every_call() -> None:
    cl = SimulatedCluster(ClusterConfig(nodes=3, max_metric_calls=300, target=None, seed=3))
    report = cl.run()
    merged = _all_keys(cl)
    assert report.frontiers_agree
    assert len({cl.replica(n).to_bytes() for n in cl.node_ids}) == 1
    # Every metric call is one record; duplicates are keys with more than one.
    assert merged.evaluation_count == report.metric_calls == merged.budget_spent
    assert report.duplicate_keys == sum(1 for k in merged.evaluation_keys()
                                        if merged.records_for(k) > 1)


def test_independent_nodes_share_nothing() -> None:
    cl = SimulatedCluster(ClusterConfig(nodes=2, share=False, max_metric_calls=200,
                                        target=None))
    report = cl.run()
    assert report.sync_bytes == 0
    assert all(n.migrated == 0 for n in report.nodes)
    assert cl.replica("n1").budget_spent == report.nodes[0].metric_calls


def test_a_restarted_node_resumes_without_respending_on_cached_evaluations() -> None:
    cl = SimulatedCluster(ClusterConfig(nodes=3, max_metric_calls=600, target=None,
                                        schedule="turns", seed=4))
    for _ in range(15):
        cl.step()
    rid = cl.replica_id("n2")
    assert rid != "n2" and rid.startswith("n2.")  # the sync origin, not the bare id
    spent_before = cl.replica("n2").spent_by(rid)
    assert spent_before > 0 and cl.replica("n2").spent_by("n2") == 0
    cl.crash("n2")
    for _ in range(4):
        cl.step()
    cl.restart("n2")
    restored = cl.replica("n2")
    assert cl.replica_id("n2") == rid  # restarted with its disk: the same history
    assert restored.spent_by(rid) == spent_before  # its own writes were persisted
    n2 = cl.nodes["n2"]
    while n2.steps < 1:
        cl.step()
    # The first step is the seed's validation run: answered from the stored state.
    assert n2.ctx is not None and n2.ctx.metric_calls == 0 and n2.ctx.hits >= 16
    while n2.steps < 2:
        cl.step()
    assert n2.ctx.migrated > 0  # the pool it stored re-entered its search
    # Its seed evaluation was answered from stored state: nothing re-spent on it.
    seed_keys = [k for k in restored.evaluation_keys()
                 if restored.candidate(k.candidate) == {"rules": SEED_RULES}]
    assert seed_keys and all(restored.records_for(k) == 1 for k in seed_keys)
    cl.crash("n3")  # the deployment needs a Raft majority, not every node
    report = cl.run()
    assert report.frontiers_agree and report.nodes[1].restarts == 1
    assert report.deployed_agree and report.deployed is not None
    assert cl.deployed("n1") == cl.deployed("n2")


def test_bad_configuration_is_refused() -> None:
    with pytest.raises(InvalidArgument):
        ClusterConfig(nodes=0)
    with pytest.raises(InvalidArgument):
        ClusterConfig(schedule="sometimes")
    with pytest.raises(InvalidArgument):
        ClusterConfig(target=1.5)


def test_model_calls_go_through_the_circuit_breaker() -> None:
    calls = []

    async def flaky(prompt: str) -> str:
        calls.append(prompt)
        raise ConnectionError("endpoint down")

    breaker = CircuitBreaker("m", BreakerConfig(minimum_calls=3, wait_in_open_ms=60_000.0))
    model = GuardedModel(flaky, breaker=breaker)
    for _ in range(3):
        with pytest.raises(ConnectionError):
            model("p")
    with pytest.raises(CallNotPermittedError):
        model("p")  # open: fails fast, the endpoint is not called
    assert len(calls) == 3 and model.calls == 4
    model.close()


def test_deployment_versions_count_up_and_only_improvements_are_proposed() -> None:
    from vsm_phoenix.ext.gepa import candidate_id
    from vsm_phoenix.ext.gepa.deploy import Decision, Deployment
    from vsm_phoenix.protocol.kv import KVStateMachine

    s = EvolutionState()
    seed, better = {"rules": "a"}, {"rules": "b"}
    s.add_candidate(seed)
    s.add_candidate(better, [candidate_id(seed)])
    from vsm_phoenix.ext.gepa import EvalKey, Evaluation

    for cand, score in ((seed, 0.0), (better, 1.0)):
        s.record(EvalKey(candidate_id(cand), "v0", "e"), Evaluation(None, score, None, "n1"))
    dep = Deployment("c", ["v0"], "e")
    decision = dep.decision(s)
    assert decision is not None and decision.candidate == candidate_id(better)
    assert decision.lineage == (candidate_id(better), candidate_id(seed))
    sm = KVStateMachine()
    first = dep.propose(decision, None)
    assert first is not None and sm.apply(first.command) is True
    deployed = sm.query(__import__("vsm_phoenix.protocol.kv", fromlist=["get"])
                        .get("gepa/deployed").query)
    assert Decision.from_json(deployed).version == 1
    assert dep.propose(decision, deployed) is None  # the same candidate: nothing to do
    worse = Decision(candidate_id(seed), seed, 0.0, (candidate_id(seed),))
    assert dep.propose(worse, deployed) is None
    best = Decision(b"\x01" * 32, {"rules": "c"}, 2.0, (b"\x01" * 32,))
    cmd = dep.propose(best, deployed)
    assert cmd is not None and sm.apply(cmd.command) is True
    # A stale deployer (still holding version 1) loses its compare-and-set.
    stale = Deployment("d", ["v0"], "e").propose(
        Decision(b"\x02" * 32, {"rules": "d"}, 3.0, ()), deployed)
    assert stale is not None and sm.apply(stale.command) is False


def test_hostile_deployment_records_are_decode_errors() -> None:
    from vsm_phoenix.ext.gepa import DecodeError
    from vsm_phoenix.ext.gepa.deploy import Decision

    for bad in ["", "[]", "{}", '{"candidate": "zz", "texts": {}, "score": 1, '
                '"lineage": [], "version": 1}',
                '{"candidate": "' + "00" * 32 + '", "texts": {}, "score": 1, '
                '"lineage": [], "version": 0}', "{" * 5000]:
        with pytest.raises(DecodeError):
            Decision.from_json(bad)


def test_signed_evidence_of_a_candidates_scores() -> None:
    from vsm_phoenix.crypto import AuthenticationError
    from vsm_phoenix.crypto.signature import SigningKey
    from vsm_phoenix.ext.gepa import EvalKey, Evaluation, candidate_id
    from vsm_phoenix.ext.gepa.deploy import sign_candidate, verify_candidate

    s = EvolutionState()
    cand = {"rules": "a"}
    cid = candidate_id(cand)
    s.add_candidate(cand)
    s.record(EvalKey(cid, "v0", "e"), Evaluation("x", 1.0, None, "n1"))
    key = SigningKey.generate()
    sig = sign_candidate(key, s, cid, ["v0"], "e")
    verify_candidate(key.verify_key, sig, s, cid, ["v0"], "e")
    # Another node's lower score for the same key changes what the replica resolves:
    # the old signature no longer covers it.
    s.record(EvalKey(cid, "v0", "e"), Evaluation("y", 0.0, None, "n2"))
    with pytest.raises(AuthenticationError):
        verify_candidate(key.verify_key, sig, s, cid, ["v0"], "e")
    with pytest.raises(InvalidArgument):
        sign_candidate(key, s, cid, ["v1"], "e")
