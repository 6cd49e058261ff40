"""The library API over a real broker: :class:`Cluster`, :class:`Replica`, :class:`KV`.

Replicas of several CRDT types converge between members; a member restarted from its
data dir keeps its state; a second process on the same data dir is fenced; every
refusal (wrong role, wrong type, a mutator the type lacks) is the documented error,
raised before anything is sent; the KV follows the leader and applies each write once.
"""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path
from typing import Any

import pytest

from vsm_phoenix.crdt import GCounter, GSet, ORSet, PNCounter
from vsm_phoenix.ext.amqp import (
    Cluster,
    ControlError,
    CrdtKind,
    InvalidArgument,
    NodeFenced,
    PermissionDenied,
    TypeMismatch,
)

pytestmark = pytest.mark.amqp


def test_replicas_of_several_types_converge_between_members(
    clusters: Any, broker_url: str
) -> None:
    secrets = clusters.secrets("a", "b", "c")

    async def main() -> None:
        async with contextlib.AsyncExitStack() as stack:
            members = [await stack.enter_async_context(
                Cluster.connect(broker_url, secrets.credentials(n))) for n in "abc"]
            a, b, c = members
            cart = await a.replica("cart", ORSet)
            hits = await b.replica("hits", PNCounter)
            tags = await c.replica("tags", GSet)
            await cart.add("milk")
            await hits.increment(5)
            await hits.decrement(2)
            await tags.add("new")
            await (await b.replica("cart", ORSet)).add("eggs")
            for replica in (cart, hits, tags):
                await replica.wait_converged(timeout_s=30)
            assert (await c.replica("cart", ORSet)).value == {"milk", "eggs"}
            assert (await a.replica("hits", PNCounter)).value == 3
            assert (await b.replica("tags", GSet)).value == {"new"}
            await cart.remove("milk")
            await cart.wait_converged(timeout_s=30)
            assert (await b.replica("cart", ORSet)).value == {"eggs"}
            # the documented refusals, nothing sent
            with pytest.raises(TypeMismatch):
                await a.replica("cart", GSet)
            with pytest.raises(TypeMismatch):
                await hits.add("x")
            with pytest.raises(TypeMismatch):
                await a.replica("x", dict)  # type: ignore[type-var]
            with pytest.raises(InvalidArgument):
                await a.replica("", ORSet)
            status = await a.status("b")
            assert status["replicas"]["cart"]["digest"] == cart.digest

    asyncio.run(main())


def test_a_member_restarts_from_its_data_dir_and_is_fenced(
    clusters: Any, broker_url: str, tmp_path: Path
) -> None:
    secrets = clusters.secrets("a", "b")

    async def main() -> None:
        async with Cluster.connect(broker_url, secrets.credentials("b")) as b:
            async with Cluster.connect(broker_url, secrets.credentials("a"),
                                       data_dir=tmp_path) as a:
                counter = await a.replica("n", GCounter)
                await counter.increment(7)
                await counter.wait_converged(timeout_s=30)
                with pytest.raises(NodeFenced):  # one process per principal and data dir
                    await Cluster.connect(broker_url, secrets.credentials("a"),
                                          data_dir=tmp_path)
            async with Cluster.connect(broker_url, secrets.credentials("a"),
                                       data_dir=tmp_path) as again:
                counter = await again.replica("n", GCounter)
                assert counter.value == 7  # from SQLite
                await counter.increment(1)
                await counter.wait_converged(timeout_s=30)
                assert (await b.replica("n", GCounter)).value == 8

    asyncio.run(main())


def test_roles_are_checked_before_anything_is_sent(clusters: Any, broker_url: str) -> None:
    secrets = clusters.secrets("n1")

    async def main() -> None:
        async with Cluster.connect(broker_url, secrets.credentials("reader")) as reader:
            assert not reader.member
            with pytest.raises(PermissionDenied):
                await reader.replica("cart", ORSet)  # not a peer
            with pytest.raises(PermissionDenied):
                await reader.kv(["n1"]).put("k", "v")  # read only
            with pytest.raises(PermissionDenied):
                await reader.request("n1", "stop")
        with pytest.raises(PermissionDenied):
            await Cluster.connect(broker_url, secrets.credentials("writer"), member=True)
        async with Cluster.connect(broker_url, secrets.credentials("writer")) as writer:
            with pytest.raises(InvalidArgument):
                await writer.request("n1", "frobnicate")

    asyncio.run(main())


def test_kv_members_and_a_client_apply_each_write_once(clusters: Any, broker_url: str) -> None:
    ids = ("n1", "n2", "n3")
    secrets = clusters.secrets(*ids)

    async def main() -> None:
        async with contextlib.AsyncExitStack() as stack:
            for n in ids:
                await stack.enter_async_context(
                    Cluster.connect(broker_url, secrets.credentials(n), kind="kv"))
            writer = await stack.enter_async_context(
                Cluster.connect(broker_url, secrets.credentials("writer")))
            store = writer.kv()
            await store.put("k", "a")
            await store.append("k", "b")
            assert await store.cas("k", "ab", "c") is True
            assert await store.cas("k", "zz", "d") is False
            assert await store.cas("new", None, "x") is True  # absent -> set
            assert await store.get("k") == "c"
            await store.delete("k")
            assert await store.get("k") is None
            leader = store.leader
            assert leader in ids
            follower = next(n for n in ids if n != leader)
            hinted = writer.kv(first=follower)  # a follower's hint leads to the leader
            await hinted.put("h", "1")
            assert hinted.leader == leader
            statuses = [await writer.status(n) for n in ids]
            assert sum(s["role"] == "leader" for s in statuses) == 1
            with pytest.raises(ControlError):  # a crdt operation sent to a kv node
                await writer.request("n1", "add", operations=CrdtKind.operations, elem="x")

    asyncio.run(main())
