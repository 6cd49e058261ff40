"""Distributed GEPA over RabbitMQ: engines in threads, the shared state synced between
Cluster members through the broker (no model leaves the process)."""

from __future__ import annotations

import asyncio
import hashlib
import os
import time
from pathlib import Path
from typing import Any

import pytest

from vsm_phoenix.errors import InvalidArgument
from vsm_phoenix.ext.gepa import EvalKey, Evaluation, EvolutionState, candidate_id, instance_key
from vsm_phoenix.ext.gepa.budget import BUDGET_KEY
from vsm_phoenix.ext.gepa.cluster import REPLICA, ClusterConfig
from vsm_phoenix.ext.gepa.deploy import DEPLOYED_KEY, Decision
from vsm_phoenix.ext.gepa.over_amqp import connected, deploy, gepa_secrets, run_members
from vsm_phoenix.ext.gepa.processes import run_processes
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
            final = (await members[0].replica(REPLICA, EvolutionState)).state
            rids = [(await m.replica(REPLICA, EvolutionState)).replica_id for m in members]
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
        assert a.state_digest == hashlib.sha256(final.to_bytes()).digest()
        # Spending is counted under each member's replica id (its sync origin).
        assert final.spenders() == {rids[0]: a.metric_calls, rids[1]: b.metric_calls}
        assert all(r.startswith(n + ".") for r, n in zip(rids, nodes, strict=True))
        assert dict(a.deployed.texts) == final.candidate(a.frontier.best)

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


def test_one_os_process_per_member(broker_url: str, tmp_path: Path) -> None:
    """run_processes: two member processes and one KV process, sharing only the
    broker, reach the same replica and commit the same prompt; the budget holds."""
    run = run_processes(broker_url, ClusterConfig(nodes=2, max_metric_calls=80, target=None,
                                                  seed=1),
                        work_dir=tmp_path, kv_nodes=["kv1"], timeout_s=240)
    a, b = run.reports
    assert [a.node, b.node] == ["n1", "n2"]
    assert len(set(run.pids.values())) == 3 and os.getpid() not in run.pids.values()
    assert a.state_digest == b.state_digest and a.frontier == b.frontier
    assert a.deployed is not None and a.deployed == b.deployed
    assert a.deployed.candidate == a.frontier.best
    assert a.metric_calls + b.metric_calls <= a.leased + b.leased <= 80
    for n in ("n1", "n2"):  # each member process logged its own report, then stopped
        assert f"REPORTED {n}" in (tmp_path / "members" / f"{n}.log").read_text()


def test_the_command_line_with_processes(broker_url: str,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    from vsm_phoenix.cli import main

    code = main(["gepa", "--transport", "amqp", "--processes", "--amqp-url", broker_url,
                 "--nodes", "2", "--kv-nodes", "1", "--budget", "60", "--target", "-1",
                 "--json", "--no-progress"])
    out, _ = capsys.readouterr()
    import json

    data = json.loads(out)
    assert code == 0 and data["processes"] == 3 and data["replicas_agree"]
    assert data["committed"] is not None and data["committed_agree"]
    assert data["metric_calls"] <= 60


def _children() -> list[int]:
    """Live child processes of this test process (from /proc)."""
    me, out = os.getpid(), []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == me and fields[0] != "Z":
            out.append(int(entry.name))
    return out


def test_a_run_out_of_time_stops_every_process(broker_url: str, tmp_path: Path) -> None:
    before = set(_children())
    with pytest.raises(TimeoutError, match="members without a report"):
        run_processes(broker_url, ClusterConfig(nodes=1, max_metric_calls=40, target=None),
                      work_dir=tmp_path, kv_nodes=["kv1"], timeout_s=0.5)
    assert set(_children()) <= before  # every member and KV process was stopped
