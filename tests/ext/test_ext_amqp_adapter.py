"""The AMQP adapter in one process against a real broker: effects, batching, topics,
timers, restart from SQLite, SWIM membership, and the dead-letter queue."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aio_pika
import pytest
from ext_echo import EchoNode, EchoRole

from vsm_phoenix.crypto import KeyKind, Keyset, SecureChannel
from vsm_phoenix.ext.amqp import (
    CTL_REQUEST,
    ENVELOPE,
    AmqpClient,
    AmqpConfig,
    AmqpNode,
    Topology,
    encode_batch,
)
from vsm_phoenix.protocol.swim import SwimConfig, SwimNode
from vsm_phoenix.storage import MemoryStorage, SQLiteStorage

pytestmark = pytest.mark.amqp


async def until(cond: Callable[[], bool], timeout: float = 10.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what or cond}")
        await asyncio.sleep(0.02)


async def until_async(cond: Callable[[], Awaitable[bool]], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not await cond():
        if time.monotonic() > deadline:
            raise AssertionError("timed out")
        await asyncio.sleep(0.05)


def echo(nid: str, seed: int = 0) -> EchoNode:
    return EchoNode(nid, random.Random(f"{seed}/{nid}"))


async def start_nodes(cluster: str, keyset: Keyset, ids: list[str], url: str,
                      **cfg: Any) -> list[AmqpNode]:
    config = AmqpConfig(url=url, **cfg)
    nodes = [AmqpNode(echo(i), cluster=cluster, keyset=keyset, config=config,
                      codec=EchoRole()) for i in ids]
    for n in nodes:
        await n.start()
    return nodes


def test_ping_pong_batched_and_confirmed(clusters: Any, keyset: Keyset, broker_url: str) -> None:
    cluster = clusters.new("a", "b")

    async def main() -> None:
        a, b = await start_nodes(cluster, keyset, ["a", "b"], broker_url)
        try:
            reply = await a.request({"op": "ping", "to": "b", "n": 300})
            assert (reply.kind, reply.payload) == ("echo.sent", 300)
            na, nb = a.node, b.node
            assert isinstance(na, EchoNode) and isinstance(nb, EchoNode)
            await until(lambda: na.counts["pongs"] == 300, what="300 pongs")
            assert nb.counts["pings"] == 300
            # batching: 300 frames went out in far fewer publishes, all confirmed
            await until(lambda: a.stats["frames_confirmed"] == a.stats["frames_sent"])
            assert a.stats["publishes"] < 100
            assert a.stats["dead_lettered"] == b.stats["dead_lettered"] == 0
            assert len([d for d in a.recent if d.kind == "echo.pong"]) == 300
        finally:
            await a.stop()
            await b.stop()

    asyncio.run(main())


def test_unbatched_publishes_one_frame_each(clusters: Any, keyset: Keyset,
                                            broker_url: str) -> None:
    cluster = clusters.new("a", "b")

    async def main() -> None:
        a, b = await start_nodes(cluster, keyset, ["a", "b"], broker_url, batch_max_messages=1)
        try:
            await a.request({"op": "ping", "to": "b", "n": 40})
            na = a.node
            assert isinstance(na, EchoNode)
            await until(lambda: na.counts["pongs"] == 40)
            assert a.stats["publishes"] == a.stats["frames_sent"] == 40
        finally:
            await a.stop()
            await b.stop()

    asyncio.run(main())


def test_topic_broadcast_reaches_everyone_else(clusters: Any, keyset: Keyset,
                                               broker_url: str) -> None:
    cluster = clusters.new("a", "b", "c")

    async def main() -> None:
        nodes = await start_nodes(cluster, keyset, ["a", "b", "c"], broker_url)
        try:
            await nodes[0].request({"op": "broadcast", "topic": "news.today"})
            counts = [n.node.counts for n in nodes]  # type: ignore[attr-defined]
            await until(lambda: counts[1]["bcasts"] == 1 and counts[2]["bcasts"] == 1)
            await asyncio.sleep(0.2)
            assert counts[0]["bcasts"] == 0
        finally:
            for n in nodes:
                await n.stop()

    asyncio.run(main())


def test_timers_fire_and_cancel(clusters: Any, keyset: Keyset, broker_url: str) -> None:
    cluster = clusters.new("a")

    async def main() -> None:
        (a,) = await start_nodes(cluster, keyset, ["a"], broker_url)
        try:
            t0 = time.monotonic()
            reply = await a.request({"op": "timer", "name": "t1", "ms": 150})
            assert reply.kind == "echo.timer" and time.monotonic() - t0 >= 0.14
            fut = asyncio.ensure_future(a.request({"op": "timer", "name": "t2", "ms": 300},
                                                  timeout=1.0))
            await asyncio.sleep(0.05)
            cancel = await a.request({"op": "cancel", "name": "t2"})
            assert cancel.kind == "echo.cancelled"
            with pytest.raises(TimeoutError):
                await fut
        finally:
            await a.stop()

    asyncio.run(main())


def test_restart_recovers_persisted_state_from_sqlite(clusters: Any, keyset: Keyset,
                                                      broker_url: str, tmp_path: Path) -> None:
    cluster = clusters.new("a", "b")
    db = tmp_path / "b.sqlite"

    async def main() -> None:
        config = AmqpConfig(url=broker_url)
        a = AmqpNode(echo("a"), cluster=cluster, keyset=keyset, config=config)
        b = AmqpNode(echo("b"), cluster=cluster, keyset=keyset, config=config,
                     storage=SQLiteStorage(db))
        await a.start()
        await b.start()
        assert b.booted_with == "start"
        await a.request({"op": "ping", "to": "b", "n": 25})
        na = a.node
        assert isinstance(na, EchoNode)
        await until(lambda: na.counts["pongs"] == 25)
        await b.stop()
        # b is down: these wait in its durable queue
        await a.request({"op": "ping", "to": "b", "n": 5})
        b2 = AmqpNode(echo("b", seed=1), cluster=cluster, keyset=keyset, config=config,
                      storage=SQLiteStorage(db))
        await b2.start()
        try:
            nb2 = b2.node
            assert isinstance(nb2, EchoNode)
            assert b2.booted_with == "restart" and nb2.booted == "Restart"
            await until(lambda: nb2.counts["pings"] == 30, what="30 pings after restart")
            await until(lambda: na.counts["pongs"] == 30)
        finally:
            await a.stop()
            await b2.stop()

    asyncio.run(main())


def test_swim_nodes_find_each_other(clusters: Any, keyset: Keyset, broker_url: str) -> None:
    ids = ["s1", "s2", "s3"]
    cluster = clusters.new(*ids)

    async def main() -> None:
        cfg = SwimConfig(seeds=("s1",), period_ms=200, ping_timeout_ms=60, join_retry_ms=200)
        config = AmqpConfig(url=broker_url)
        nodes = [AmqpNode(SwimNode(i, random.Random(i), cfg), cluster=cluster, keyset=keyset,
                          config=config) for i in ids]
        for n in nodes:
            await n.start()
        try:
            swims = [n.node for n in nodes]
            await until(lambda: all(s.alive_members() == ids for s in swims),  # type: ignore[attr-defined]
                        timeout=15, what="full membership")
            await nodes[2].stop()
            await until(lambda: all("s3" not in s.alive_members() for s in swims[:2]),  # type: ignore[attr-defined]
                        timeout=30, what="s3 declared dead")
        finally:
            for n in nodes[:2]:
                await n.stop()

    asyncio.run(main())


async def drain_dlq(url: str, topo: Topology, expect: int, timeout: float = 10.0) -> list[
    aio_pika.abc.AbstractIncomingMessage
]:
    got: list[aio_pika.abc.AbstractIncomingMessage] = []
    conn = await aio_pika.connect(url)
    try:
        ch = await conn.channel()
        q = await ch.declare_queue(topo.dlq, durable=True)
        deadline = time.monotonic() + timeout
        while len(got) < expect and time.monotonic() < deadline:
            m = await q.get(no_ack=True, fail=False)
            if m is None:
                await asyncio.sleep(0.05)
            else:
                got.append(m)
    finally:
        await conn.close()
    return got


def test_garbage_and_forgeries_go_to_the_dead_letter_queue(
    clusters: Any, keyset: Keyset, broker_url: str
) -> None:
    cluster = clusters.new("a", "b")
    topo = Topology(cluster)

    async def main() -> None:
        a, b = await start_nodes(cluster, keyset, ["a", "b"], broker_url)
        client = AmqpClient(cluster=cluster, keyset=keyset, config=AmqpConfig(url=broker_url))
        await client.start()
        try:
            key = topo.direct_key("b", "echo.ping")
            # 1. not CBOR at all
            await client.publish_raw(key, b"\xff\x00garbage")
            # 2. a batch whose frame is garbage (its header length points past the end:
            #    the channel calls that a truncated, i.e. unauthentic, frame)
            await client.publish_raw(key, encode_batch([b"\xa5\x00\x01junk"]))
            # 3. a forged frame: sealed under a key the cluster does not hold
            forger = SecureChannel(Keyset.generate(KeyKind.AES256_GCM), MemoryStorage(),
                                   identity="a")
            env = a.node.msg.envelope(a.now(), "echo.ping", b"x", recipient="b")  # type: ignore[attr-defined]
            h, p = env.wire_parts()
            forged = forger.seal({"recipient": "b", "content_type": ENVELOPE, "env": h}, p)
            await client.publish_raw(key, encode_batch([forged]))
            # 4. a genuine frame with one bit flipped
            good = client.seal_raw("b", {"content_type": CTL_REQUEST, "rid": "x"}, b"\xa0")
            tampered = bytearray(good)
            tampered[-3] ^= 0x01
            await client.publish_raw(key, encode_batch([bytes(tampered)]))
            # 5. an authentic envelope the node rejects as a protocol error
            await a.request({"op": "bad", "to": "b"})
            # 6. an authentic envelope whose inner sender lies about who sealed it
            h2 = dict(h, s="c")
            liar = client.seal_raw("b", {"content_type": ENVELOPE, "env": h2}, p)
            await client.publish_raw(key, encode_batch([liar]))
            dead = await drain_dlq(broker_url, topo, 6)
            reasons = sorted(str(m.headers["x-vsm-reason"]) for m in dead)
            assert reasons == ["authentication"] * 4 + ["decode", "protocol"], reasons
            for m in dead:
                assert m.headers["x-vsm-node"] == "b" and m.headers["x-vsm-error"]
            # the node is still alive and serving
            await a.request({"op": "ping", "to": "b", "n": 3})
            na = a.node
            assert isinstance(na, EchoNode)
            await until(lambda: na.counts["pongs"] == 3)
            kind, status = await client.request("b", {"op": "status"})
            assert kind == "status" and status["stats"]["dead_lettered"] == 6
        finally:
            await client.close()
            await a.stop()
            await b.stop()

    asyncio.run(main())


def test_control_plane_requests_and_errors(clusters: Any, keyset: Keyset,
                                           broker_url: str) -> None:
    cluster = clusters.new("a")

    async def main() -> None:
        (a,) = await start_nodes(cluster, keyset, ["a"], broker_url)
        client = AmqpClient(cluster=cluster, keyset=keyset, config=AmqpConfig(url=broker_url))
        await client.start()
        try:
            kind, counts = await client.request("a", {"op": "count"})
            assert kind == "echo.count" and counts == {"pings": 0, "pongs": 0, "bcasts": 0}
            from vsm_phoenix.ext.amqp import ControlError

            with pytest.raises(ControlError, match="unknown echo op"):
                await client.request("a", {"op": "nope"})
            status = await client.status("a")
            assert status["node"] == "a" and status["boot"] == "start"
        finally:
            await client.close()
            await a.stop()

    asyncio.run(main())
