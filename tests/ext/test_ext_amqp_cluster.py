"""Separate node processes over RabbitMQ: convergence under faults (SIGKILL + restart
from SQLite, every broker connection closed under load), dead letters, recovery."""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
import time
from pathlib import Path
from typing import Any

import aio_pika
import pytest

from vsm_phoenix.crypto import KeyKind, Keyset, SecureChannel
from vsm_phoenix.ext.amqp import (
    CTL_REQUEST,
    AmqpClient,
    AmqpConfig,
    Topology,
    encode_batch,
)
from vsm_phoenix.ext.runner import (
    ProcessCluster,
    close_connections,
    main_simulate_amqp,
    rabbitmqctl_path,
    wait_ready,
    write_keyset,
)
from vsm_phoenix.storage import MemoryStorage

pytestmark = pytest.mark.amqp

needs_rabbitmqctl = pytest.mark.skipif(
    rabbitmqctl_path() is None, reason="closing broker connections needs rabbitmqctl"
)

HERE = Path(__file__).parent


@needs_rabbitmqctl
def test_crdt_replicas_converge_through_kill_and_connection_close(
    clusters: Any, broker_url: str, tmp_path: Path
) -> None:
    ids = ("n1", "n2", "n3")
    cluster = clusters.new(*ids)
    out = tmp_path / "result.json"
    code = main_simulate_amqp([
        "--nodes", "3", "--ops", "400", "--concurrency", "16", "--cluster", cluster,
        "--kill", "--close-connections", "--no-progress", "--json", str(out),
        "--data-dir", str(tmp_path / "data"), "--timeout", "60", "--amqp-url", broker_url,
    ])
    result = json.loads(out.read_text())
    assert code == 0, result
    assert result["converged"] and result["acked"] == 400 and result["lost"] == []
    # 3 nodes + the orchestrating client, each with one connection
    assert result["faults"] == ["killed n3", "restarted n3", "closed 4 broker connections",
                                "every node reconnected"]
    statuses = result["statuses"]
    assert statuses["n3"]["boot"] == "restart" and statuses["n1"]["boot"] == "start"
    assert len({s["digest"] for s in statuses.values()}) == 1
    assert {s["size"] for s in statuses.values()} == {400}
    assert all(s["stats"]["reconnects"] >= 1 for s in statuses.values())


def _forged(recipient: str) -> bytes:
    ch = SecureChannel(Keyset.generate(KeyKind.AES256_GCM), MemoryStorage(), identity="n1")
    return ch.seal({"recipient": recipient, "content_type": CTL_REQUEST, "rid": "f"}, b"\xa0")


def test_processes_dead_letter_garbage_and_recover_state_after_sigkill(
    clusters: Any, broker_url: str, tmp_path: Path
) -> None:
    ids = ("n1", "n2", "n3")
    cluster = clusters.new(*ids)
    topo = Topology(cluster)
    keyset_path = tmp_path / "keyset.json"
    keyset = write_keyset(keyset_path)
    env = {"PYTHONPATH": os.pathsep.join(filter(None, [str(HERE),
                                                       os.environ.get("PYTHONPATH")]))}
    procs = ProcessCluster(cluster=cluster, node_ids=ids, role="ext_echo:ROLE",
                           data_dir=tmp_path, keyset_path=keyset_path,
                           node_args=["--amqp-url", broker_url], env=env)

    async def main() -> None:
        client = AmqpClient(cluster=cluster, keyset=keyset, config=AmqpConfig(url=broker_url))
        await client.start(ids)
        procs.start_all()
        try:
            await wait_ready(client, ids, timeout=30)
            # garbage and forgeries onto every node's queue
            for nid in ids:
                key = topo.direct_key(nid, "echo.ping")
                await client.publish_raw(key, b"\x00not a batch")
                await client.publish_raw(key, encode_batch([_forged(nid)]))
            # real traffic: n1 pings n2 100 times
            await client.request("n1", {"op": "ping", "to": "n2", "n": 100})
            deadline = time.monotonic() + 20
            while (await client.status("n1"))["counts"]["pongs"] < 100:
                assert time.monotonic() < deadline, "pongs did not arrive"
                await asyncio.sleep(0.1)
            dead = await _dlq_reasons(broker_url, topo, 6)
            assert sorted(dead) == ["authentication"] * 3 + ["decode"] * 3
            for nid in ids:
                st = await client.status(nid)
                assert st["stats"]["dead_lettered"] == 2 and procs.alive(nid)
            # SIGKILL n2, check its store on disk, restart it: it recovers its counts
            procs.kill("n2")
            with sqlite3.connect(tmp_path / "n2.sqlite") as db:
                rows = dict(db.execute("SELECT key, value FROM kv WHERE key LIKE 'node/%'"))
            assert rows["node/pings"] == b"\x18\x64"  # CBOR 100
            await client.request("n1", {"op": "ping", "to": "n2", "n": 10})  # queued for n2
            procs.start("n2")
            await wait_ready(client, ("n2",), timeout=30)
            deadline = time.monotonic() + 20
            while True:
                st = await client.status("n2")
                if st["counts"]["pings"] == 110:
                    break
                assert time.monotonic() < deadline, st
                await asyncio.sleep(0.1)
            assert st["boot"] == "restart" and st["booted"] == "Restart"
        finally:
            procs.stop_all()
            await client.close()

    asyncio.run(main())


async def _dlq_reasons(url: str, topo: Topology, expect: int) -> list[str]:
    reasons: list[str] = []
    conn = await aio_pika.connect(url)
    try:
        ch = await conn.channel()
        q = await ch.declare_queue(topo.dlq, durable=True)
        deadline = time.monotonic() + 15
        while len(reasons) < expect and time.monotonic() < deadline:
            m = await q.get(no_ack=True, fail=False)
            if m is None:
                await asyncio.sleep(0.05)
            else:
                reasons.append(str(m.headers["x-vsm-reason"]))
    finally:
        await conn.close()
    return reasons


@needs_rabbitmqctl
def test_raft_kv_elects_a_leader_and_stays_linearizable_through_faults(
    clusters: Any, broker_url: str, tmp_path: Path
) -> None:
    ids = ("n1", "n2", "n3")
    cluster = clusters.new(*ids)
    out = tmp_path / "result.json"
    code = main_simulate_amqp([
        "--scenario", "kv", "--nodes", "3", "--ops", "240", "--concurrency", "3",
        "--cluster", cluster, "--kill", "--close-connections", "--no-progress",
        "--json", str(out), "--data-dir", str(tmp_path / "data"), "--timeout", "60",
        "--amqp-url", broker_url,
    ])
    result = json.loads(out.read_text())
    assert code == 0, result
    assert result["linearizable"] == "ok" and result["operations"] == 240
    assert result["completed"] >= 200
    assert result["leader"] in ids
    killed = result["faults"][0].removeprefix("killed ")
    assert result["faults"] == [f"killed {killed}", f"restarted {killed}",
                                "closed 4 broker connections", "every node reconnected"]
    statuses = result["statuses"]
    assert statuses[killed]["boot"] == "restart"
    assert len({s["digest"] for s in statuses.values()}) == 1
    assert len({s["applied"] for s in statuses.values()}) == 1
    assert (tmp_path / "data" / "history.jsonl").exists()


@needs_rabbitmqctl
def test_close_connections_hits_only_the_named_cluster(
    clusters: Any, broker_url: str, tmp_path: Path
) -> None:
    a, b = clusters.new(), clusters.new()
    keyset = write_keyset(tmp_path / "ks.json")

    async def main() -> None:
        ca = AmqpClient(cluster=a, keyset=keyset, config=AmqpConfig(url=broker_url))
        cb = AmqpClient(cluster=b, keyset=keyset, config=AmqpConfig(url=broker_url))
        await ca.start()
        await cb.start()
        try:
            await asyncio.sleep(0.3)  # let the broker list them
            assert await asyncio.to_thread(close_connections, a) == 1
            deadline = time.monotonic() + 10
            while ca._ep.stats["reconnects"] == 0:  # robust: it comes back
                assert time.monotonic() < deadline, "no reconnection"
                await asyncio.sleep(0.05)
            assert cb._ep.stats["reconnects"] == 0
        finally:
            await ca.close()
            await cb.close()

    asyncio.run(main())
