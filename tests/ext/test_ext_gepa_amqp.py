"""Distributed GEPA over RabbitMQ: engines in threads, the shared state synced between
Cluster members through the broker (no model leaves the process)."""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any

import pytest

from vsm_phoenix.ext.amqp import Cluster
from vsm_phoenix.ext.gepa.cluster import ClusterConfig
from vsm_phoenix.ext.gepa.over_amqp import run_members
from vsm_phoenix.ext.gepa.task import TicketTriageAdapter

pytestmark = pytest.mark.amqp


def _paced_adapter(model: Any) -> TicketTriageAdapter:
    """The shipped adapter with a model that takes 10 ms a call, as a real one takes
    far longer: unpaced, the local rule model spends the whole budget in well under a
    second, before a single sync interval has passed, and the members cannot have seen
    each other's spending yet (the budget is a replicated counter, not a lock)."""

    def paced(prompt: str) -> str:
        time.sleep(0.01)
        return str(model(prompt))

    return TicketTriageAdapter(paced)


def test_engines_share_state_over_the_broker(clusters: Any, broker_url: str) -> None:
    secrets = clusters.secrets("g1", "g2")

    async def main() -> None:
        async with contextlib.AsyncExitStack() as stack:
            members = [await stack.enter_async_context(
                Cluster.connect(broker_url, secrets.credentials(n))) for n in ("g1", "g2")]
            reports = await run_members(members, ClusterConfig(
                nodes=2, max_metric_calls=160, target=None, seed=5), converge_timeout_s=60,
                adapter_factory=_paced_adapter)
        a, b = reports
        assert a.state_digest == b.state_digest  # the same replica everywhere
        assert a.frontier == b.frontier and a.frontier.best is not None
        assert a.metric_calls > 0 and b.metric_calls > 0
        # The budget is the cluster's: both stopped on the sum of both counts. A member
        # that never saw the other's spending would have spent 160 itself; at least one
        # of them stopped short, which it could only do by seeing the other's count
        # through the broker (how far each got depends on scheduling).
        assert a.stop_reason == b.stop_reason == "budget spent"
        assert min(a.metric_calls, b.metric_calls) < 160
        assert a.metric_calls + b.metric_calls >= 160

    asyncio.run(main())


def test_the_command_line_over_the_broker(broker_url: str,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    from vsm_phoenix.cli import main

    code = main(["gepa", "--transport", "amqp", "--amqp-url", broker_url, "--nodes", "2",
                 "--budget", "80", "--target", "-1", "--json"])
    out, _ = capsys.readouterr()
    import json

    data = json.loads(out)
    assert code == 0 and data["replicas_agree"] and len(data["per_node"]) == 2
