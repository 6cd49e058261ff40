"""Fixtures for the AMQP tests: the broker gate, unique clusters with their secrets,
cleanup.

Tests marked ``amqp`` need RabbitMQ at ``$AMQP_URL`` (default
``amqp://guest:guest@127.0.0.1:5672/``). Without a broker they are skipped with the
reason -- unless ``VSM_PHOENIX_REQUIRE_AMQP=1`` (set by ``.ci/run``), where they fail.
Without aio-pika installed the adapter tests are not collected (again: unless required).
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import Iterator

import pytest

from vsm_phoenix.crypto.credentials import ClusterSecrets

REQUIRED = os.environ.get("VSM_PHOENIX_REQUIRE_AMQP") == "1"

try:  # the adapter needs the optional aio-pika (extra "amqp")
    import aio_pika  # noqa: F401
except ImportError:
    if REQUIRED:
        raise
    collect_ignore_glob = ["test_ext_amqp_*.py"]


@pytest.fixture(scope="session")
def broker_url() -> str:
    from vsm_phoenix.cli.base import amqp_url
    from vsm_phoenix.ext.amqp import broker_available

    url = amqp_url()
    reason = asyncio.run(broker_available(url))
    if reason is not None:
        if REQUIRED:
            pytest.fail(f"VSM_PHOENIX_REQUIRE_AMQP=1 but {reason}")
        pytest.skip(reason)
    return url


@pytest.fixture(autouse=True)
def _amqp_gate(request: pytest.FixtureRequest) -> None:
    if request.node.get_closest_marker("amqp") is not None:
        request.getfixturevalue("broker_url")


#: The control clients every test cluster's roster lists, with their roles.
CLIENTS = {"ops": ["admin"], "writer": ["write"], "reader": ["read"]}


class Clusters:
    """Hands out unique clusters (names and secrets) and deletes their topology
    afterwards."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.made: list[tuple[str, tuple[str, ...]]] = []

    def new(self, *node_ids: str) -> str:
        name = f"test-{uuid.uuid4().hex[:10]}"
        self.made.append((name, node_ids))
        return name

    def secrets(self, *node_ids: str) -> ClusterSecrets:
        """A fresh cluster: every node a ``peer``, plus the clients of :data:`CLIENTS`."""
        return ClusterSecrets.create(self.new(*node_ids), nodes=node_ids, clients=CLIENTS)


@pytest.fixture
def clusters(broker_url: str) -> Iterator[Clusters]:
    c = Clusters(broker_url)
    yield c
    from vsm_phoenix.ext.amqp import Topology, delete_topology

    for name, nodes in c.made:
        asyncio.run(delete_topology(Topology(name), nodes, broker_url))
