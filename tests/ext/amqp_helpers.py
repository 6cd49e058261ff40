"""Helpers shared by the in-process AMQP tests: waiting, echo nodes, clients, the DLQ."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable
from typing import Any

import aio_pika
from ext_echo import EchoKind, EchoNode

from vsm_phoenix.crypto.credentials import ClusterSecrets
from vsm_phoenix.ext.amqp import AmqpClient, AmqpConfig, AmqpNode, Topology


async def until(cond: Callable[[], bool], timeout: float = 10.0, what: str = "") -> None:
    """Wait until ``cond()`` holds; ``AssertionError`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what or cond}")
        await asyncio.sleep(0.02)


def echo(nid: str, seed: int = 0) -> EchoNode:
    return EchoNode(nid, random.Random(f"{seed}/{nid}"))


async def start_nodes(secrets: ClusterSecrets, ids: list[str], url: str,
                      **cfg: Any) -> list[AmqpNode]:
    """Started echo nodes ``ids`` of the cluster ``secrets`` describes."""
    config = AmqpConfig(url=url, **cfg)
    nodes = [AmqpNode(echo(i), credentials=secrets.credentials(i), config=config,
                      codec=EchoKind()) for i in ids]
    for n in nodes:
        await n.start()
    return nodes


async def client_for(secrets: ClusterSecrets, principal: str, url: str) -> AmqpClient:
    """A started control client speaking as ``principal``."""
    client = AmqpClient(credentials=secrets.credentials(principal), config=AmqpConfig(url=url))
    await client.start()
    return client


async def drain_dlq(url: str, topo: Topology, expect: int, timeout: float = 10.0,
                    settle: float = 0.5) -> list[aio_pika.abc.AbstractIncomingMessage]:
    """Everything in the DLQ: at least ``expect`` messages, then ``settle`` seconds
    more to catch any extra."""
    got: list[aio_pika.abc.AbstractIncomingMessage] = []
    conn = await aio_pika.connect(url)
    try:
        ch = await conn.channel()
        q = await ch.declare_queue(topo.dlq, passive=True)
        deadline = time.monotonic() + timeout
        quiet_until: float | None = None
        while time.monotonic() < deadline:
            m = await q.get(no_ack=True, fail=False)
            if m is not None:
                got.append(m)
                continue
            if len(got) >= expect:
                quiet_until = quiet_until or time.monotonic() + settle
                if time.monotonic() > quiet_until:
                    break
            await asyncio.sleep(0.05)
    finally:
        await conn.close()
    return got
