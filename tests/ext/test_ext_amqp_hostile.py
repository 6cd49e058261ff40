"""Hostile peers and hostile bodies against a real broker (issue 10).

An outsider publishes garbage, unsigned, foreign-signed or tampered bodies; a member
tries to speak for another member, to jump or rewind its sequence numbers, to flood one
body with thousands of frames. Every case ends in the documented dead letter (one per
body), nothing is half-applied, and the real traffic keeps flowing.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import time
import tracemalloc
from typing import Any

import aio_pika
import pytest
from amqp_helpers import client_for, drain_dlq, echo, until
from amqp_helpers import start_nodes as start
from ext_echo import EchoKind, EchoNode

from vsm_phoenix import cbor
from vsm_phoenix.crypto import KeyKind, Keyset, SecureChannel
from vsm_phoenix.crypto.batch import seal_batch
from vsm_phoenix.crypto.credentials import ClusterSecrets
from vsm_phoenix.crypto.identity import Identity
from vsm_phoenix.ext.amqp import (
    CTL_REQUEST,
    ENVELOPE,
    AmqpConfig,
    AmqpNode,
    NodeFenced,
    Topology,
)
from vsm_phoenix.storage import MemoryStorage

pytestmark = pytest.mark.amqp


def reasons(dead: list[aio_pika.abc.AbstractIncomingMessage]) -> list[str]:
    return sorted(str(m.headers["x-vsm-reason"]) for m in dead)


def test_garbage_and_forgeries_are_dead_lettered_once_each(clusters: Any,
                                                           broker_url: str) -> None:
    secrets = clusters.secrets("a", "b")
    topo = Topology(secrets.roster.cluster)
    cluster = secrets.roster.cluster

    async def main() -> None:
        a, b = await start(secrets, ["a", "b"], broker_url)
        client = await client_for(secrets, "ops", broker_url)
        try:
            key = topo.direct_key("b", "echo.ping")
            ops = secrets.identities["ops"]
            # 1. not CBOR at all; 2. a CBOR body that is not a signed batch
            await client.publish_raw(key, b"\xff\x00garbage")
            await client.publish_raw(key, cbor.dumps([b"\xa5\x00\x01junk"]))
            # 3. signed by someone the roster does not list
            await client.publish_raw(key, seal_batch(Identity.generate("ops"), cluster,
                                                     [b"x"]))
            # 4. a member's signature over other bytes (the signature byte flipped)
            body = bytearray(client.sign_raw([b"x"]))
            body[-5] ^= 1
            await client.publish_raw(key, bytes(body))
            # 5. a genuine batch for another cluster
            await client.publish_raw(key, seal_batch(ops, cluster + "-other", [b"x"]))
            # 6. a signed batch whose frame is junk (header length past the end)
            await client.publish_raw(key, client.sign_raw([b"\xa5\x00\x01junk"]))
            # 7. a frame sealed under a key the cluster does not hold
            forger = SecureChannel(Keyset.generate(KeyKind.AES256_GCM), MemoryStorage(),
                                   identity="ops")
            forged = forger.seal({"recipient": "b", "content_type": CTL_REQUEST, "rid": "f"},
                                 b"\xa0")
            await client.publish_raw(key, client.sign_raw([forged]))
            # 8. a genuine frame with one bit flipped
            good = client.seal_raw("b", {"content_type": CTL_REQUEST, "rid": "x"}, b"\xa0")
            tampered = bytearray(good)
            tampered[-3] ^= 0x01
            await client.publish_raw(key, client.sign_raw([bytes(tampered)]))
            # 9. an authentic envelope the node rejects as a protocol error
            await a.request({"op": "bad", "to": "b"})
            # 10. a control client (no peer role) sending protocol envelopes
            env = a.node.msg.envelope(a.now(), "echo.ping", b"x", recipient="b")  # type: ignore[attr-defined]
            h, p = env.wire_parts()
            sneaky = client.seal_raw("b", {"content_type": ENVELOPE, "env": dict(h, s="ops")}, p)
            await client.publish_raw(key, client.sign_raw([sneaky]))
            dead = await drain_dlq(broker_url, topo, 10)
            assert reasons(dead) == (["authentication"] * 6 + ["decode"] * 2
                                     + ["permission", "protocol"]), reasons(dead)
            for m in dead:
                assert m.headers["x-vsm-node"] == "b" and m.headers["x-vsm-error"]
                assert m.headers["x-vsm-failures"] == 1
            # the node is still alive and serving
            await a.request({"op": "ping", "to": "b", "n": 3})
            na = a.node
            assert isinstance(na, EchoNode)
            await until(lambda: na.counts["pongs"] == 3)
            kind, status = await client.request("b", {"op": "status"})
            assert kind == "status" and status["stats"]["dead_lettered"] == 10
        finally:
            await client.close()
            await a.stop()
            await b.stop()

    asyncio.run(main())


def test_a_member_cannot_speak_for_another(clusters: Any, broker_url: str) -> None:
    """Node c receives a frame sealed by member a in b's name (with a sequence number
    near 2**64): it is refused as AuthenticationError and dead-lettered with the reason,
    and b's real frames are still delivered -- its sequence numbers were not burnt."""
    secrets = clusters.secrets("a", "b", "c")
    topo = Topology(secrets.roster.cluster)

    async def main() -> None:
        a, b, c = await start(secrets, ["a", "b", "c"], broker_url)
        try:
            # a holds the cluster keyset, so it can seal a frame that *claims* to be b's
            storage = MemoryStorage()
            storage.put("channel/1:b/3:seq", (2**64 - 100).to_bytes(8, "big"))
            as_b = SecureChannel(secrets.keyset, storage, identity="b")
            env = b.node.msg.envelope(b.now(), "echo.ping", b"x", recipient="c")  # type: ignore[attr-defined]
            h, p = env.wire_parts()
            frame = as_b.seal({"recipient": "c", "content_type": ENVELOPE, "env": h}, p)
            body = seal_batch(secrets.identities["a"], secrets.roster.cluster, [frame])
            conn = await aio_pika.connect(broker_url)
            try:
                ch = await conn.channel()
                ex = await ch.get_exchange(topo.exchange)
                await ex.publish(aio_pika.Message(body), topo.direct_key("c", "echo.ping"))
            finally:
                await conn.close()
            dead = await drain_dlq(broker_url, topo, 1)
            assert reasons(dead) == ["authentication"]
            assert "claims sender 'b' but was sent by 'a'" in str(dead[0].headers["x-vsm-error"])
            nc = c.node
            assert isinstance(nc, EchoNode)
            assert nc.counts["pings"] == 0
            # b's genuine traffic still gets through
            await b.request({"op": "ping", "to": "c", "n": 5})
            await until(lambda: nc.counts["pings"] == 5, what="b's real pings")
        finally:
            for n in (a, b, c):
                await n.stop()

    asyncio.run(main())


def test_an_unauthenticated_body_costs_one_dead_letter(clusters: Any, broker_url: str,
                                                       caplog: pytest.LogCaptureFixture) -> None:
    """20,000 frames in one body: one dead letter and at most one log line, whether
    the body fails to authenticate or authenticates and every frame fails."""
    secrets = clusters.secrets("b")
    topo = Topology(secrets.roster.cluster)
    frames = [bytes([i % 251]) for i in range(20_000)]

    async def main() -> None:
        (b,) = await start(secrets, ["b"], broker_url)
        client = await client_for(secrets, "ops", broker_url)
        try:
            key = topo.direct_key("b", "x")
            outsider = seal_batch(Identity.generate("mallory"), secrets.roster.cluster, frames)
            t0 = time.monotonic()
            with caplog.at_level(logging.WARNING, logger="vsm_phoenix.ext.amqp"):
                await client.publish_raw(key, outsider)
                await client.publish_raw(key, client.sign_raw(frames))
                dead = await drain_dlq(broker_url, topo, 2)
            assert time.monotonic() - t0 < 30
            assert reasons(dead) == ["authentication", "decode"]
            failures = sorted(int(m.headers["x-vsm-failures"]) for m in dead)
            assert failures == [1, 20_000]
            lines = [r for r in caplog.records if "dead-lettered" in r.getMessage()]
            assert len(lines) <= 2  # one per reason at most
            assert b.stats["dead_lettered"] == 2
        finally:
            await client.close()
            await b.stop()

    asyncio.run(main())


def test_garbage_on_many_routing_keys_leaves_nothing_behind(clusters: Any,
                                                            broker_url: str) -> None:
    """A distinct topic routing key per garbage publish must not leave a per-key object
    in the node (it used to keep a secure channel per topic name seen)."""
    secrets = clusters.secrets("b")
    topo = Topology(secrets.roster.cluster)

    async def main() -> None:
        (b,) = await start(secrets, ["b"], broker_url, log_interval_s=60.0)
        client = await client_for(secrets, "ops", broker_url)
        try:
            async def burst(base: int, n: int) -> None:
                for i in range(n):
                    await client.publish_raw(topo.topic_key(f"t{base + i}", "x"), b"\xa0")
                # idle again: every body received and its one dead letter published
                await until(lambda: b.stats["dead_lettered"] >= base + n, timeout=60)
                await asyncio.sleep(0.2)

            await burst(0, 200)  # warm up caches and the log limiter
            tracemalloc.start()
            gc.collect()
            before = tracemalloc.take_snapshot()
            await burst(200, 2000)
            gc.collect()  # cyclic garbage (messages <-> channels) is not a leak
            after = tracemalloc.take_snapshot()
            tracemalloc.stop()
            diffs = [s for s in after.compare_to(before, "lineno")
                     if "vsm_phoenix" in str(s.traceback)]
            grown = sum(s.size_diff for s in diffs)
            assert grown < 50_000, diffs[:5]  # was ~1.1 KB per routing key
        finally:
            await client.close()
            await b.stop()

    asyncio.run(main())


def test_sequence_jumps_and_old_frames_are_dead_lettered(clusters: Any,
                                                         broker_url: str) -> None:
    secrets = clusters.secrets("b")
    topo = Topology(secrets.roster.cluster)
    cluster = secrets.roster.cluster

    async def main() -> None:
        (b,) = await start(secrets, ["b"], broker_url)
        client = await client_for(secrets, "ops", broker_url)
        try:
            storage = MemoryStorage()
            ch = SecureChannel(secrets.keyset, storage, identity="ops#test")
            header = {"content_type": CTL_REQUEST, "rid": "s"}
            old = ch.seal({"recipient": "b", **header}, cbor.dumps({"op": "status"}))
            storage.put("channel/8:ops#test/3:seq", (5000).to_bytes(8, "big"))
            new = ch.seal({"recipient": "b", **header}, cbor.dumps({"op": "status"}))
            storage.put("channel/8:ops#test/3:seq", (2**41).to_bytes(8, "big"))
            far = ch.seal({"recipient": "b", **header}, cbor.dumps({"op": "status"}))
            key = topo.control_key("b")
            ops = secrets.identities["ops"]
            for frame in (new, new, old, far):
                await client.publish_raw(key, seal_batch(ops, cluster, [frame]))
            dead = await drain_dlq(broker_url, topo, 2)
            assert reasons(dead) == ["jump", "too-old"]
            status = await client.status("b")
            assert status["stats"]["duplicates"] == 1  # the redelivered copy: dropped
        finally:
            await client.close()
            await b.stop()

    asyncio.run(main())


def test_sealing_stops_with_an_alarm_at_the_key_usage_limit(
    clusters: Any, broker_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """The runner never rotates the shared keyset on its own: near the limit it warns,
    at the limit it stops sealing (and says so in its status) but keeps receiving."""
    secrets = clusters.secrets("a", "b")
    limit = 2**20

    async def main() -> None:
        store = MemoryStorage()
        store.put(f"aead/usage/{secrets.keyset.primary_id:08x}", (limit - 10).to_bytes(8, "big"))
        config = AmqpConfig(url=broker_url, key_usage_limit=limit, key_usage_warn=limit - 100)
        a = AmqpNode(echo("a"), credentials=secrets.credentials("a"), storage=store,
                     config=config, codec=EchoKind())
        (b,) = await start(secrets, ["b"], broker_url)
        await a.start()
        client = await client_for(secrets, "ops", broker_url)
        try:
            with caplog.at_level(logging.ERROR, logger="vsm_phoenix.ext.amqp"):
                await a.request({"op": "ping", "to": "b", "n": 30})
            nb = b.node
            assert isinstance(nb, EchoNode)
            await until(lambda: nb.counts["pings"] >= 1)
            await asyncio.sleep(0.3)
            assert nb.counts["pings"] == 10  # exactly the 10 left under the limit
            assert a.sealing_error is not None and "limit" in a.sealing_error
            text = " ".join(r.getMessage() for r in caplog.records)
            assert "rotate the cluster keyset" in text
            assert keyset_primary_unchanged(secrets, a)
            # a still receives (its status is asked for; its reply cannot be sealed)
            with pytest.raises(TimeoutError):
                await client.request("a", {"op": "status"}, timeout=1.0)
            assert a.stats["unsealed"] >= 21
        finally:
            await client.close()
            await a.stop()
            await b.stop()

    asyncio.run(main())


def keyset_primary_unchanged(secrets: ClusterSecrets, node: AmqpNode) -> bool:
    return node._ep.credentials.keyset.primary_id == secrets.keyset.primary_id


def test_a_second_process_for_the_same_node_is_fenced(clusters: Any, broker_url: str) -> None:
    secrets = clusters.secrets("a")

    async def main() -> None:
        (a,) = await start(secrets, ["a"], broker_url)
        try:
            twin = AmqpNode(echo("a"), credentials=secrets.credentials("a"),
                            config=AmqpConfig(url=broker_url), codec=EchoKind())
            with pytest.raises(NodeFenced, match="already runs"):
                await twin.start()
        finally:
            await a.stop()

    asyncio.run(main())
