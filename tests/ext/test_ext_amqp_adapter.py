"""The AMQP adapter in one process against a real broker: effects, batching, topics,
timers, restart from SQLite, SWIM membership, the control plane and its roles.
(Hostile peers and hostile bodies: test_ext_amqp_hostile.py.)"""

from __future__ import annotations

import asyncio
import random
import time
from pathlib import Path
from typing import Any

import pytest
from amqp_helpers import client_for, echo, start_nodes, until
from ext_echo import EchoNode

from vsm_phoenix.ext.amqp import AmqpConfig, AmqpNode, ControlError
from vsm_phoenix.protocol.swim import SwimConfig, SwimNode
from vsm_phoenix.storage import SQLiteStorage

pytestmark = pytest.mark.amqp


def test_ping_pong_batched_and_confirmed(clusters: Any, broker_url: str) -> None:
    secrets = clusters.secrets("a", "b")

    async def main() -> None:
        a, b = await start_nodes(secrets, ["a", "b"], broker_url)
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


def test_unbatched_publishes_one_frame_each(clusters: Any,
                                            broker_url: str) -> None:
    secrets = clusters.secrets("a", "b")

    async def main() -> None:
        a, b = await start_nodes(secrets, ["a", "b"], broker_url, batch_max_messages=1)
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


def test_topic_broadcast_reaches_everyone_else(clusters: Any,
                                               broker_url: str) -> None:
    secrets = clusters.secrets("a", "b", "c")

    async def main() -> None:
        nodes = await start_nodes(secrets, ["a", "b", "c"], broker_url)
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


def test_timers_fire_and_cancel(clusters: Any, broker_url: str) -> None:
    secrets = clusters.secrets("a")

    async def main() -> None:
        (a,) = await start_nodes(secrets, ["a"], broker_url)
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


def test_restart_recovers_persisted_state_from_sqlite(clusters: Any,
                                                      broker_url: str, tmp_path: Path) -> None:
    secrets = clusters.secrets("a", "b")
    db = tmp_path / "b.sqlite"

    async def main() -> None:
        config = AmqpConfig(url=broker_url)
        a = AmqpNode(echo("a"), credentials=secrets.credentials("a"), config=config)
        b = AmqpNode(echo("b"), credentials=secrets.credentials("b"), config=config,
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
        b2 = AmqpNode(echo("b", seed=1), credentials=secrets.credentials("b"), config=config,
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


def test_swim_nodes_find_each_other(clusters: Any, broker_url: str) -> None:
    ids = ["s1", "s2", "s3"]
    secrets = clusters.secrets(*ids)

    async def main() -> None:
        cfg = SwimConfig(seeds=("s1",), period_ms=200, ping_timeout_ms=60, join_retry_ms=200)
        config = AmqpConfig(url=broker_url)
        nodes = [AmqpNode(SwimNode(i, random.Random(i), cfg), credentials=secrets.credentials(i),
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


def test_control_plane_requests_and_errors(clusters: Any,
                                           broker_url: str) -> None:
    secrets = clusters.secrets("a")

    async def main() -> None:
        (a,) = await start_nodes(secrets, ["a"], broker_url)
        client = await client_for(secrets, "ops", broker_url)
        try:
            kind, counts = await client.request("a", {"op": "count"})
            assert kind == "echo.count" and counts == {"pings": 0, "pongs": 0, "bcasts": 0}
            with pytest.raises(ControlError, match="unknown echo op"):
                await client.request("a", {"op": "nope"})
            status = await client.status("a")
            assert status["node"] == "a" and status["boot"] == "start"
            assert status["roster"] == 1 and status["sealing"] == "ok"
            assert client.client_id.startswith("ops#")  # a session of the ops principal
        finally:
            await client.close()
            await a.stop()

    asyncio.run(main())


def test_roles_decide_what_a_client_may_ask(clusters: Any, broker_url: str) -> None:
    """read: status and the role's read ops; write: also state changes; admin: also
    stop / reset-replay / roster. A writer cannot stop a node."""
    secrets = clusters.secrets("a")

    async def main() -> None:
        (a,) = await start_nodes(secrets, ["a"], broker_url)
        reader = await client_for(secrets, "reader", broker_url)
        writer = await client_for(secrets, "writer", broker_url)
        try:
            assert (await reader.status("a"))["node"] == "a"
            kind, _ = await reader.request("a", {"op": "count"})  # a read op of the role
            assert kind == "echo.count"
            with pytest.raises(ControlError, match=r"PermissionDenied.*'write'"):
                await reader.request("a", {"op": "timer", "name": "t", "ms": 1})
            kind, _ = await writer.request("a", {"op": "timer", "name": "t", "ms": 1})
            assert kind == "echo.timer"
            for op in ({"op": "stop"}, {"op": "reset-replay", "sender": "b"},
                       {"op": "roster", "roster": secrets.roster.to_bytes()}):
                with pytest.raises(ControlError, match=r"PermissionDenied.*'admin'"):
                    await writer.request("a", op)
            await asyncio.sleep(0.5)
            status = await reader.status("a")  # still running: the stops were refused
            assert status["stats"]["refused"] == 4
        finally:
            await reader.close()
            await writer.close()
            await a.stop()

    asyncio.run(main())


def test_admin_installs_a_new_roster_and_resets_a_window(clusters: Any,
                                                         broker_url: str) -> None:
    secrets = clusters.secrets("a", "b")

    async def main() -> None:
        a, b = await start_nodes(secrets, ["a", "b"], broker_url)
        ops = await client_for(secrets, "ops", broker_url)
        try:
            await a.request({"op": "ping", "to": "b", "n": 3})
            assert isinstance(a.node, EchoNode)
            await until(lambda: a.node.counts["pongs"] == 3)  # type: ignore[attr-defined]
            kind, info = await ops.request("b", {"op": "reset-replay", "sender": "a"})
            assert kind == "ok" and info["sender"] == "a" and info["was"] >= 1
            # a new roster (serial 2) that adds a principal, installed by the admin
            roster2 = secrets.reissue(add={"auditor": ["read"]})
            for nid in ("a", "b"):
                kind, info = await ops.request(nid, {"op": "roster", "roster": roster2.to_bytes()})
                assert info == {"serial": 2, "adopted": True}
            assert a.roster_serial == b.roster_serial == 2
            auditor = await client_for(secrets, "auditor", broker_url)
            try:
                assert (await auditor.status("b"))["roster"] == 2
            finally:
                await auditor.close()
            # the old roster cannot come back
            stale = secrets.authority.issue(secrets.roster.cluster, {}, serial=1)
            with pytest.raises(ControlError, match="older"):
                await ops.request("a", {"op": "roster", "roster": stale.to_bytes()})
        finally:
            await ops.close()
            await a.stop()
            await b.stop()

    asyncio.run(main())
