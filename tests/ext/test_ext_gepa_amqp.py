"""Distributed GEPA over RabbitMQ: engines in threads, the shared state synced between
Cluster members through the broker (no model leaves the process)."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from vsm_phoenix.errors import InvalidArgument
from vsm_phoenix.ext.gepa import EvalKey, Evaluation, EvolutionState, candidate_id, instance_key
from vsm_phoenix.ext.gepa.budget import BUDGET_KEY
from vsm_phoenix.ext.gepa.cluster import ClusterConfig
from vsm_phoenix.ext.gepa.deploy import DEPLOYED_KEY, Decision
from vsm_phoenix.ext.gepa.over_amqp import connected, deploy, gepa_secrets, run_members
from vsm_phoenix.ext.gepa.task import TicketTriageAdapter, ticket_task

pytestmark = pytest.mark.amqp


def _paced_adapter(model: Any) -> TicketTriageAdapter:
    """The shipped adapter with a model that takes 10 ms a call, as a real one takes
    far longer: unpaced, the local rule model spends its slices in well under a sync
    interval, and the members would barely see each other's work."""

    def paced(prompt: str) -> str:
        time.sleep(0.01)
        return str(model(prompt))

    return TicketTriageAdapter(paced)


def test_engines_share_state_over_the_broker(clusters: Any, broker_url: str) -> None:
    nodes, kv_nodes = ("g1", "g2"), ("k1", "k2", "k3")
    secrets = gepa_secrets(clusters.new(*nodes, *kv_nodes), nodes, kv_nodes)

    async def main() -> None:
        async with connected(broker_url, secrets, nodes, kv_nodes) as members:
            reports = await run_members(members, ClusterConfig(
                nodes=2, max_metric_calls=160, target=None, seed=5), converge_timeout_s=60,
                adapter_factory=_paced_adapter, kv_nodes=kv_nodes)
            # The committed prompt, read back through the KV by a third party.
            committed = await members[0].kv(kv_nodes).get(DEPLOYED_KEY)
            leased = await members[0].kv(kv_nodes).get(BUDGET_KEY)
        a, b = reports
        assert a.state_digest == b.state_digest  # the same replica everywhere
        assert a.frontier == b.frontier and a.frontier.best is not None
        assert a.metric_calls > 0 and b.metric_calls > 0
        # The budget is the cluster's and hard: every call was covered by a slice
        # leased through the KV, and the KV never leased more than 160.
        assert a.stop_reason == b.stop_reason == "budget spent"
        assert a.metric_calls <= a.leased and b.metric_calls <= b.leased
        assert a.leased + b.leased == int(leased or 0) <= 160
        assert a.metric_calls + b.metric_calls <= 160
        # The deployed prompt: committed once through Raft, the same on every member,
        # and it is the frontier's best.
        assert a.deployed is not None and a.deployed == b.deployed
        assert a.deployed.version == 1 and a.deployed.candidate == a.frontier.best
        assert committed is not None and Decision.from_json(committed) == a.deployed
        state = EvolutionState.from_bytes(a.state_digest)
        assert dict(a.deployed.texts) == state.candidate(a.frontier.best)

    asyncio.run(main())


def test_a_better_deployment_replaces_the_committed_one(clusters: Any,
                                                        broker_url: str) -> None:
    """deploy() compare-and-sets over what is committed: a worse decision leaves it,
    a better one becomes the next version."""
    nodes, kv_nodes = ("d1",), ("dk1",)
    secrets = gepa_secrets(clusters.new(*nodes, *kv_nodes), nodes, kv_nodes)
    task = ticket_task()
    val = [instance_key(x) for x in task.valset]

    def state_scoring(texts: dict[str, str], score: float) -> EvolutionState:
        s = EvolutionState()
        s.add_candidate(texts)
        for v in val:
            s.record(EvalKey(candidate_id(texts), v, "e"), Evaluation(None, score, None, "x"))
        return s

    async def main() -> None:
        async with connected(broker_url, secrets, nodes, kv_nodes) as (member,):
            first = await deploy(member, kv_nodes, state_scoring({"r": "a"}, 0.5), val, "e")
            worse = await deploy(member, kv_nodes, state_scoring({"r": "b"}, 0.25), val, "e")
            better = await deploy(member, kv_nodes, state_scoring({"r": "c"}, 0.75), val, "e")
            nothing = await deploy(member, kv_nodes, EvolutionState(), val, "e")
        assert first is not None and first.version == 1 and dict(first.texts) == {"r": "a"}
        assert worse == first
        assert better is not None and better.version == 2 and dict(better.texts) == {"r": "c"}
        assert nothing == better

    asyncio.run(main())


def test_members_need_the_write_role_and_distinct_ids() -> None:
    secrets = gepa_secrets("c", ["a", "b"], ["k"])
    roster = secrets.roster.members
    assert roster["a"].allows("write") and roster["a"].allows("peer")
    assert roster["k"].allows("peer") and not roster["k"].allows("write")
    for nodes, kv_nodes in ((["a"], ["a"]), ([], ["k"]), (["a", "a"], [])):
        with pytest.raises(InvalidArgument):
            gepa_secrets("c", nodes, kv_nodes)


def test_the_command_line_over_the_broker(broker_url: str,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    from vsm_phoenix.cli import main

    code = main(["gepa", "--transport", "amqp", "--amqp-url", broker_url, "--nodes", "2",
                 "--kv-nodes", "1", "--budget", "80", "--target", "-1", "--json"])
    out, _ = capsys.readouterr()
    import json

    data = json.loads(out)
    assert code == 0 and data["replicas_agree"] and len(data["per_node"]) == 2
    assert data["committed"] is not None and data["committed_agree"]
