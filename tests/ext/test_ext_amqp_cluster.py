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

from vsm_phoenix.cli import main as cli_main
from vsm_phoenix.crypto import KeyKind, Keyset, SecureChannel
from vsm_phoenix.crypto.credentials import ClusterSecrets
from vsm_phoenix.ext.amqp import CTL_REQUEST, AmqpClient, AmqpConfig, Topology
from vsm_phoenix.ext.amqp.process import (
    BrokerAdmin,
    ProcessCluster,
    rabbitmqctl_path,
    wait_ready,
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
    code = cli_main([
        "simulate", "--transport", "amqp", "--nodes", "3", "--ops", "400",
        "--concurrency", "16", "--cluster", cluster,
        "--kill", "--close-connections", "--no-progress", "--json", str(out),
        "--data-dir", str(tmp_path / "data"), "--converge-timeout-s", "60",
        "--amqp-url", broker_url,
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
    ch = SecureChannel(Keyset.generate(KeyKind.AES256_GCM), MemoryStorage(), identity="ops")
    return ch.seal({"recipient": recipient, "content_type": CTL_REQUEST, "rid": "f"}, b"\xa0")


def test_processes_dead_letter_garbage_and_recover_state_after_sigkill(
    clusters: Any, broker_url: str, tmp_path: Path
) -> None:
    ids = ("n1", "n2", "n3")
    secrets = clusters.secrets(*ids)
    topo = Topology(secrets.roster.cluster)
    keys = secrets.write(tmp_path / "keys")
    env = {"PYTHONPATH": os.pathsep.join(filter(None, [str(HERE),
                                                       os.environ.get("PYTHONPATH")]))}
    procs = ProcessCluster(node_ids=ids, kind="ext_echo:KIND", data_dir=tmp_path,
                           keys_dir=keys, node_args=["--amqp-url", broker_url], env=env)

    async def main() -> None:
        client = AmqpClient(credentials=secrets.credentials("ops"),
                            config=AmqpConfig(url=broker_url))
        await client.start(ids)
        procs.start_all()
        try:
            await wait_ready(client, ids, timeout=30)
            # garbage and forgeries onto every node's queue
            for nid in ids:
                key = topo.direct_key(nid, "echo.ping")
                await client.publish_raw(key, b"\x00not a batch")
                await client.publish_raw(key, client.sign_raw([_forged(nid)]))
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
        q = await ch.declare_queue(topo.dlq, passive=True)
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
    code = cli_main([
        "simulate", "--transport", "amqp", "--scenario", "kv", "--nodes", "3",
        "--ops", "240", "--concurrency", "3",
        "--cluster", cluster, "--kill", "--close-connections", "--no-progress",
        "--json", str(out), "--data-dir", str(tmp_path / "data"),
        "--converge-timeout-s", "60", "--amqp-url", broker_url,
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
    sa, sb = clusters.secrets(), clusters.secrets()
    a = sa.roster.cluster

    async def main() -> None:
        ca = AmqpClient(credentials=sa.credentials("ops"), config=AmqpConfig(url=broker_url))
        cb = AmqpClient(credentials=sb.credentials("ops"), config=AmqpConfig(url=broker_url))
        await ca.start()
        await cb.start()
        try:
            await asyncio.sleep(0.3)  # let the broker list them
            admin = BrokerAdmin.for_url(broker_url)
            assert await asyncio.to_thread(admin.close_connections, a) == 1
            deadline = time.monotonic() + 10
            while ca._ep.stats["reconnects"] == 0:  # robust: it comes back
                assert time.monotonic() < deadline, "no reconnection"
                await asyncio.sleep(0.05)
            assert cb._ep.stats["reconnects"] == 0
        finally:
            await ca.close()
            await cb.close()

    asyncio.run(main())


def test_node_command_refuses_bad_input_before_side_effects_and_fences_twins(
    clusters: Any, broker_url: str, tmp_path: Path
) -> None:
    """`vsm-phoenix node`: a missing or forged file is a one-line error (exit 2) with no
    data dir created; a second process on the same node id and data dir exits 2; a
    broker password never reaches the output."""
    import subprocess
    import sys

    secrets = clusters.secrets("n1")
    keys = secrets.write(tmp_path / "keys")
    data = tmp_path / "data"

    def node(*args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "vsm_phoenix", "node", "--id", "n1",
                               "--data-dir", str(data), *args],
                              capture_output=True, text=True, timeout=timeout, check=False)

    missing = node("--keys", str(tmp_path / "nope"), "--amqp-url", broker_url)
    assert missing.returncode == 2 and "No such file" in missing.stderr
    assert len(missing.stderr.strip().splitlines()) == 1 and not data.exists()
    other = ClusterSecrets.create("elsewhere", nodes=["n1"])
    forged = tmp_path / "forged"
    other.write(forged)
    (forged / "keyset.json").write_text((keys / "keyset.json").read_text())
    (forged / "n1.identity.json").write_text((keys / "n1.identity.json").read_text())
    bad = node("--keys", str(forged), "--amqp-url", broker_url)
    assert bad.returncode == 2 and "another public key" in bad.stderr and not data.exists()
    wrong_kind = node("--keys", str(keys), "--kind", "nope", "--amqp-url", broker_url)
    assert wrong_kind.returncode == 2 and "unknown node kind" in wrong_kind.stderr
    assert len(wrong_kind.stderr.strip().splitlines()) == 1
    secret_url = "amqp://guest:s3cret-pw@127.0.0.1:5679/"
    leak = node("--keys", str(keys), "--amqp-url", secret_url, "--broker-wait-s", "0")
    assert leak.returncode == 1 and "s3cret-pw" not in leak.stderr + leak.stdout
    assert "***" in leak.stderr
    # the real one, then its twin on the same data dir
    first = subprocess.Popen([sys.executable, "-m", "vsm_phoenix", "node", "--id", "n1",
                              "--data-dir", str(data), "--keys", str(keys), "--amqp-url",
                              broker_url], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True)
    try:
        assert first.stdout is not None
        assert first.stdout.readline().startswith("READY n1")
        twin = node("--keys", str(keys), "--amqp-url", broker_url)
        assert twin.returncode == 2 and "already runs on data dir" in twin.stderr
        # on another data dir it still cannot take the queue: the consumer is exclusive
        other_dir = node("--keys", str(keys), "--amqp-url", broker_url, "--data-dir",
                         str(tmp_path / "data2"))
        assert other_dir.returncode == 2 and "already runs elsewhere" in other_dir.stderr
    finally:
        first.terminate()
        first.wait(20)


def test_simulate_leaves_no_secrets_behind_when_it_fails(
    clusters: Any, broker_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import tempfile

    from vsm_phoenix.ext.amqp import process

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))

    def boom(self: Any) -> None:
        raise RuntimeError("a node failed to start")

    monkeypatch.setattr(process.ProcessCluster, "start_all", boom)
    code = cli_main(["simulate", "--transport", "amqp", "--nodes", "2", "--ops", "1",
                     "--no-progress", "--amqp-url", broker_url,
                     "--cluster", clusters.new("n1", "n2")])
    assert code == 1
    assert list(tmp_path.iterdir()) == []  # neither the keys nor the data dir remain
