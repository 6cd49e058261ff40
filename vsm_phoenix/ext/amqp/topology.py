"""Names and declarations of a cluster on the broker, and broker reachability.

Per cluster ``C``: a durable topic exchange ``vsm.C``; a durable queue
``vsm.C.node.<id>`` per node bound to ``to.<id>.#`` (direct messages) and ``tp.#``
(topic broadcasts); a dead-letter exchange ``vsm.C.dlx`` (fanout) feeding the durable
queue ``vsm.C.dlq``. Routing keys say where and what: ``to.<recipient>.<message type>``,
``tp.<topic>.<message type>``, ``to.<node>.ctl`` for control requests and
``to.<client>.ctl`` for their replies.

The dead-letter queue is bounded (queue arguments, so no broker policy is needed):
at most ``dlq_max_length`` messages (the oldest are dropped first) and each kept for
``dlq_ttl_ms``. A DLQ declared earlier with other bounds is used as it is, with a
warning (RabbitMQ refuses to change a queue's arguments in place).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
from typing import Final

import aio_pika
import aiormq
import attrs

from vsm_phoenix.errors import InvalidArgument

__all__ = [
    "DEFAULT_AMQP_URL",
    "DEFAULT_DLQ_MAX_LENGTH",
    "DEFAULT_DLQ_TTL_MS",
    "Topology",
    "amqp_url",
    "broker_available",
    "declare_topology",
    "delete_topology",
    "redact",
    "unword",
    "word",
]

log = logging.getLogger("vsm_phoenix.ext.amqp")

DEFAULT_AMQP_URL: Final = "amqp://guest:guest@127.0.0.1:5672/"
DEFAULT_DLQ_MAX_LENGTH: Final = 10_000
DEFAULT_DLQ_TTL_MS: Final = 7 * 24 * 3600 * 1000
_USERINFO = re.compile(r"(?P<scheme>amqps?://)(?P<user>[^:@/\s]*):(?P<password>[^@\s]*)@")


def amqp_url() -> str:
    """``$AMQP_URL``, or :data:`DEFAULT_AMQP_URL`."""
    return os.environ.get("AMQP_URL") or DEFAULT_AMQP_URL


def redact(text: str, url: str | None = None) -> str:
    """``text`` with every AMQP URL password replaced by ``***`` (and the password of
    ``url`` wherever it appears alone): for anything printed or logged."""
    out = _USERINFO.sub(lambda m: f"{m['scheme']}{m['user']}:***@", text)
    if url:
        found = _USERINFO.search(url)
        if found and len(found["password"]) >= 4:
            out = out.replace(found["password"], "***")
    return out


async def broker_available(url: str | None = None, timeout: float = 3.0) -> str | None:
    """``None`` when a broker answers at ``url``, else the reason it does not (with the
    password redacted)."""
    target = url or amqp_url()
    try:
        conn = await asyncio.wait_for(aio_pika.connect(target), timeout)
    except Exception as exc:  # any connect failure means "no broker"
        return redact(f"no AMQP broker at {target}: {type(exc).__name__}: {exc}", target)
    await conn.close()
    return None


def word(text: str) -> str:
    """One routing-key word: the AMQP topic metacharacters ``. * #`` percent-escaped."""
    return (
        text.replace("%", "%25").replace(".", "%2E").replace("*", "%2A").replace("#", "%23")
    )


def unword(text: str) -> str:
    """Inverse of :func:`word`."""
    return (
        text.replace("%2E", ".").replace("%2A", "*").replace("%23", "#").replace("%25", "%")
    )


@attrs.frozen
class Topology:
    """Exchange, queue and routing-key names of one cluster."""

    cluster: str

    def __attrs_post_init__(self) -> None:
        if not self.cluster or len(self.cluster) > 100:
            raise InvalidArgument("cluster name must be 1..100 characters")

    @property
    def exchange(self) -> str:
        return f"vsm.{self.cluster}"

    @property
    def dlx(self) -> str:
        return f"vsm.{self.cluster}.dlx"

    @property
    def dlq(self) -> str:
        return f"vsm.{self.cluster}.dlq"

    def node_queue(self, node_id: str) -> str:
        return f"vsm.{self.cluster}.node.{node_id}"

    def client_queue(self, client_id: str) -> str:
        return f"vsm.{self.cluster}.client.{client_id}"

    def direct_key(self, recipient: str, msg_type: str) -> str:
        return f"to.{word(recipient)}.{word(msg_type)}"

    def topic_key(self, topic: str, msg_type: str) -> str:
        return f"tp.{word(topic)}.{word(msg_type)}"

    def control_key(self, recipient: str) -> str:
        return f"to.{word(recipient)}.ctl"

    def bindings(self, node_id: str) -> tuple[str, ...]:
        return (f"to.{word(node_id)}.#", "tp.#")


async def _declare_dlq(
    connection: aio_pika.abc.AbstractConnection, name: str, max_length: int, ttl_ms: int
) -> None:
    """Declare the bounded DLQ; an existing one with other arguments is kept."""
    probe = await connection.channel()
    try:
        await probe.declare_queue(
            name,
            durable=True,
            arguments={
                "x-max-length": max_length,
                "x-overflow": "drop-head",
                "x-message-ttl": ttl_ms,
            },
        )
    except aiormq.exceptions.ChannelPreconditionFailed:
        log.warning("%s exists with other bounds; using it as it is", name)
    finally:
        with contextlib.suppress(Exception):
            await probe.close()


async def declare_topology(
    connection: aio_pika.abc.AbstractConnection,
    topology: Topology,
    node_ids: tuple[str, ...] = (),
    *,
    dlq_max_length: int = DEFAULT_DLQ_MAX_LENGTH,
    dlq_ttl_ms: int = DEFAULT_DLQ_TTL_MS,
) -> None:
    """Declare the cluster's exchanges, the bounded DLQ and the queues of ``node_ids``
    (idempotent), on a channel of its own."""
    await _declare_dlq(connection, topology.dlq, dlq_max_length, dlq_ttl_ms)
    channel = await connection.channel()
    try:
        exchange = await channel.declare_exchange(
            topology.exchange, aio_pika.ExchangeType.TOPIC, durable=True
        )
        dlx = await channel.declare_exchange(
            topology.dlx, aio_pika.ExchangeType.FANOUT, durable=True
        )
        dlq = await channel.declare_queue(topology.dlq, passive=True)
        await dlq.bind(dlx, routing_key="")
        for nid in node_ids:
            queue = await channel.declare_queue(topology.node_queue(nid), durable=True)
            for key in topology.bindings(nid):
                await queue.bind(exchange, routing_key=key)
    finally:
        with contextlib.suppress(Exception):
            await channel.close()


async def delete_topology(
    topology: Topology, node_ids: tuple[str, ...], url: str | None = None
) -> None:
    """Delete the cluster's queues (node queues and DLQ) and exchanges."""
    conn = await aio_pika.connect(url or amqp_url())
    try:
        for name in (*(topology.node_queue(n) for n in node_ids), topology.dlq):
            ch = await conn.channel()
            with contextlib.suppress(Exception):
                await ch.queue_delete(name)
            with contextlib.suppress(Exception):
                await ch.close()
        for name in (topology.exchange, topology.dlx):
            ch = await conn.channel()
            with contextlib.suppress(Exception):
                await ch.exchange_delete(name)
            with contextlib.suppress(Exception):
                await ch.close()
    finally:
        await conn.close()
