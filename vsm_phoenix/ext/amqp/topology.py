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
from collections.abc import Callable
from typing import Final

import aio_pika
import aiormq
import attrs

from vsm_phoenix.errors import InvalidArgument, PermissionDenied
from vsm_phoenix.ext.broker_url import DEFAULT_AMQP_URL, redact

__all__ = [
    "DEFAULT_AMQP_URL",
    "DEFAULT_DLQ_MAX_LENGTH",
    "DEFAULT_DLQ_TTL_MS",
    "Topology",
    "broker_available",
    "declare_topology",
    "delete_topology",
    "redact",
    "unword",
    "wait_for_broker",
    "word",
]

log = logging.getLogger("vsm_phoenix.ext.amqp")

DEFAULT_DLQ_MAX_LENGTH: Final = 10_000
DEFAULT_DLQ_TTL_MS: Final = 7 * 24 * 3600 * 1000


async def _probe(url: str, timeout: float) -> BaseException | None:
    try:
        conn = await asyncio.wait_for(aio_pika.connect(url), timeout)
    except Exception as exc:  # any connect failure means "no broker"
        return exc
    await conn.close()
    return None


def _reason(url: str, exc: BaseException) -> str:
    detail = " ".join(str(exc).split())[:200] or "no answer"
    return redact(f"no AMQP broker at {url}: {type(exc).__name__}: {detail}", url)


async def broker_available(url: str, timeout: float = 3.0) -> str | None:
    """``None`` when a broker answers at ``url`` within ``timeout`` seconds, else the
    reason it does not (one line, with the password redacted)."""
    exc = await _probe(url, timeout)
    return None if exc is None else _reason(url, exc)


async def wait_for_broker(
    url: str,
    *,
    timeout_s: float | None = None,
    first_delay_s: float = 0.5,
    max_delay_s: float = 10.0,
    on_wait: Callable[[str, float], None] | None = None,
) -> None:
    """Return once a broker answers at ``url``; until then retry with exponential
    backoff (``first_delay_s`` doubling up to ``max_delay_s``), calling
    ``on_wait(reason, delay_s)`` before each pause. Raises :class:`TimeoutError` (with
    the last reason, password redacted) after ``timeout_s`` seconds (``None``: wait
    for ever), and :class:`~vsm_phoenix.errors.PermissionDenied` at once when the
    broker refuses the URL's credentials or virtual host (waiting would not help)."""
    loop = asyncio.get_running_loop()
    deadline = None if timeout_s is None else loop.time() + timeout_s
    delay = first_delay_s
    while True:
        exc = await _probe(url, 3.0)
        if exc is None:
            return
        reason = _reason(url, exc)
        if isinstance(exc, aiormq.exceptions.ProbableAuthenticationError | aiormq.exceptions.
                      ConnectionNotAllowed):
            raise PermissionDenied(reason)
        if deadline is not None and loop.time() + delay > deadline:
            raise TimeoutError(reason)
        if on_wait is not None:
            on_wait(reason, delay)
        await asyncio.sleep(delay)
        delay = min(max_delay_s, delay * 2)


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


async def delete_topology(topology: Topology, node_ids: tuple[str, ...], url: str) -> None:
    """Delete the cluster's queues (node queues and DLQ) and exchanges."""
    conn = await aio_pika.connect(url)
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
