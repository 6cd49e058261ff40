"""Every frontier type of gepa 0.1.x on the simulated cluster: objective scores travel
in the records; an adapter without them is refused with a clear error; a user's
``batch_evaluate`` cannot bypass the shared cache and budget."""

from __future__ import annotations

from typing import Any

import gepa
import pytest

from vsm_phoenix import cbor
from vsm_phoenix.errors import DecodeError, InvalidArgument
from vsm_phoenix.ext.gepa import EvolutionState
from vsm_phoenix.ext.gepa.cluster import ClusterConfig, EngineFailed, SimulatedCluster
from vsm_phoenix.ext.gepa.records import (
    Evaluation,
    decode_evaluation,
    encode_evaluation,
)
from vsm_phoenix.ext.gepa.shared import FRONTIER_TYPES
from vsm_phoenix.ext.gepa.task import TicketTriageAdapter


class ObjectiveAdapter(TicketTriageAdapter):
    """The shipped adapter plus two objectives per instance: exactness and brevity of
    the rules (shorter rules score higher)."""

    def evaluate(self, batch: Any, candidate: Any, capture_traces: bool = False) -> Any:
        out = super().evaluate(batch, candidate, capture_traces)
        brevity = 1.0 / (1.0 + len(candidate["rules"]) / 200)
        return gepa.EvaluationBatch(
            outputs=out.outputs, scores=out.scores, trajectories=out.trajectories,
            objective_scores=[{"exact": s, "brevity": brevity} for s in out.scores])


def _merged(cl: SimulatedCluster) -> EvolutionState:
    merged = EvolutionState()
    for nid in cl.node_ids:
        merged |= cl.replica(nid)
    return merged


@pytest.mark.parametrize("frontier_type", ["objective", "hybrid", "cartesian"])
def test_objective_frontiers_share_their_scores(frontier_type: str) -> None:
    cl = SimulatedCluster(ClusterConfig(nodes=2, max_metric_calls=200, target=None,
                                        schedule="turns", seed=1,
                                        frontier_type=frontier_type),
                          adapter_factory=ObjectiveAdapter)
    report = cl.run()
    merged = _merged(cl)
    keys = merged.evaluation_keys()
    assert keys and report.metric_calls <= 200
    for k in keys:  # every record carries the objectives the adapter gave
        ev = merged.resolved(k)
        assert ev is not None and ev.objective_scores() is not None
        assert set(ev.objective_scores() or ()) == {"exact", "brevity"}
    assert report.duplicate_keys == 0 and report.frontiers_agree and report.deployed_agree
    # Candidates found on the other node entered each engine's objective frontier.
    assert sum(n.migrated for n in report.nodes) > 0


def test_an_adapter_without_objective_scores_is_refused_by_name() -> None:
    cl = SimulatedCluster(ClusterConfig(nodes=1, max_metric_calls=60, target=None,
                                        frontier_type="objective"))
    with pytest.raises(EngineFailed) as info:
        cl.run()
    cause = info.value.__cause__
    assert isinstance(cause, InvalidArgument) and "frontier_type='objective'" in str(cause)
    cl.close()


def test_unknown_frontier_types_are_refused() -> None:
    assert FRONTIER_TYPES == ("instance", "objective", "hybrid", "cartesian")
    for bad in ("pareto", "", None, 3):
        with pytest.raises(InvalidArgument, match="instance, objective, hybrid, cartesian"):
            ClusterConfig(frontier_type=bad)  # type: ignore[arg-type]


def test_objective_scores_round_trip_and_keep_old_records_byte_for_byte() -> None:
    plain = Evaluation("billing", 1.0, None, "n1")
    assert encode_evaluation(plain) == cbor.dumps(["billing", 1.0, None, "n1"])
    with_obj = Evaluation("billing", 1.0, None, "n1", objectives={"b": 2, "a": 0.5})
    assert with_obj.objectives == (("a", 0.5), ("b", 2.0))
    raw = encode_evaluation(with_obj)
    assert raw == cbor.dumps(["billing", 1.0, None, "n1", {"a": 0.5, "b": 2.0}])
    assert decode_evaluation(raw) == with_obj
    assert decode_evaluation(encode_evaluation(plain)) == plain


@pytest.mark.parametrize("fields", [
    ["x", 1.0, None, "n1", None],
    ["x", 1.0, None, "n1", [1.0]],
    ["x", 1.0, None, "n1", {"a": 1}],
    ["x", 1.0, None, "n1", {"": 1.0}],
    ["x", 1.0, None, "n1", {"a": float("inf")}],
    ["x", 1.0, None, "n1", {1: 1.0}],
    ["x", 1.0, None, "n1", {"a": 1.0}, 0],
])
def test_malformed_objective_scores_are_decode_errors(fields: list[Any]) -> None:
    with pytest.raises(DecodeError):
        decode_evaluation(cbor.dumps(fields))


def test_bad_objective_scores_are_refused() -> None:
    for bad in ([("a", 1.0)], {"a": "1"}, {"a": float("nan")}, {f"o{i}": 1.0 for i in range(65)}):
        with pytest.raises((TypeError, ValueError)):
            Evaluation("x", 1.0, None, "n1", objectives=bad)  # type: ignore[arg-type]


class BatchingAdapter(TicketTriageAdapter):
    """A user adapter with its own batch_evaluate (GEPA prefers it to evaluate)."""

    batch_calls = 0

    def batch_evaluate(self, items: Any) -> Any:
        BatchingAdapter.batch_calls += 1
        return [self.evaluate(batch, cand, capture_traces=True) for cand, batch in items]


def test_a_users_batch_evaluate_cannot_bypass_the_shared_cache() -> None:
    cl = SimulatedCluster(ClusterConfig(nodes=2, max_metric_calls=120, target=None,
                                        schedule="turns", seed=2),
                          adapter_factory=BatchingAdapter)
    report = cl.run()
    assert BatchingAdapter.batch_calls == 0
    # Every metric call went through the wrapper: recorded once, counted, leased.
    assert report.metric_calls == _merged(cl).evaluation_count <= report.leased_calls <= 120
    assert report.duplicate_keys == 0
