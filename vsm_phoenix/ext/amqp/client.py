"""The control-plane client: send requests to nodes, wait for their replies.

A client is a principal of the roster with a ``read``, ``write`` or ``admin`` role
(tests, the command line, operators' tools). It keeps no durable state, so each client
object speaks as a fresh *session* of its principal (``ops#<random>``): its sequence
numbers start over without colliding with an earlier run's in the nodes' replay
windows. Replies are accepted only from principals with the ``peer`` role.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import aio_pika

from vsm_phoenix.crypto.credentials import Credentials
from vsm_phoenix.crypto.identity import ROLE_PEER
from vsm_phoenix.errors import VsmPhoenixError
from vsm_phoenix.ext.amqp.control import CTL_REPLY, CTL_REQUEST
from vsm_phoenix.ext.amqp.endpoint import BATCH_CONTENT_TYPE, AmqpConfig, Endpoint
from vsm_phoenix.ext.amqp.topology import declare_topology
from vsm_phoenix.protocol.envelope import decode_cbor, encode_cbor
from vsm_phoenix.storage import MemoryStorage

__all__ = ["AmqpClient", "ControlError"]

log = logging.getLogger("vsm_phoenix.ext.amqp")


class ControlError(VsmPhoenixError):
    """A control request failed on the node (the reply carried an error)."""


class AmqpClient:
    """Sends control requests to nodes and waits for their replies."""

    def __init__(
        self,
        *,
        credentials: Credentials,
        config: AmqpConfig | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.config = config or AmqpConfig(linger_ms=0.5)
        self._ep = Endpoint(credentials, storage=MemoryStorage(), config=self.config,
                            clock=clock, session=uuid.uuid4().hex[:12])
        self.client_id = self._ep.name
        self.topology = self._ep.topology
        self._futures: dict[str, asyncio.Future[tuple[str, Any]]] = {}
        self._counter = 0

    async def start(self, node_ids: Sequence[str] = ()) -> None:
        """Connect, declare the topology (and ``node_ids``' queues) and the reply queue."""
        ep = self._ep
        await ep.connect()
        assert ep.sub is not None and ep.connection is not None
        if node_ids:
            await declare_topology(ep.connection, self.topology, tuple(node_ids),
                                   dlq_max_length=self.config.dlq_max_length,
                                   dlq_ttl_ms=self.config.dlq_ttl_ms)
        exchange = await ep.sub.get_exchange(self.topology.exchange)
        queue = await ep.sub.declare_queue(
            self.topology.client_queue(self.client_id), exclusive=True, auto_delete=True
        )
        await queue.bind(exchange, routing_key=self.topology.control_key(self.client_id))
        await queue.consume(self._on_reply, no_ack=True)

    async def declare_nodes(self, node_ids: Sequence[str]) -> None:
        """Declare the queues of ``node_ids`` (idempotent): requests to a node that has
        not started yet then wait in its queue."""
        assert self._ep.connection is not None, "start() first"
        await declare_topology(self._ep.connection, self.topology, tuple(node_ids),
                               dlq_max_length=self.config.dlq_max_length,
                               dlq_ttl_ms=self.config.dlq_ttl_ms)

    async def close(self) -> None:
        for fut in self._futures.values():
            if not fut.done():
                fut.cancel()
        await self._ep.close(drain_timeout=1.0)

    async def __aenter__(self) -> AmqpClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def _on_reply(self, message: aio_pika.abc.AbstractIncomingMessage) -> None:
        try:
            batch = self._ep.open_body(message.body)
        except VsmPhoenixError as exc:
            self._ep.logs.log(logging.WARNING, "bad-reply", "%s: bad reply body: %s",
                              self.client_id, exc)
            return
        if not batch.member.allows(ROLE_PEER):
            self._ep.logs.log(logging.WARNING, "bad-reply", "%s: reply from non-node %r",
                              self.client_id, batch.signer)
            return
        for frame in batch.frames:
            try:
                header, payload = self._ep.channel.open(frame, sender=batch.signer)
                if header.get("content_type") != CTL_REPLY:
                    continue
                fut = self._futures.pop(str(header.get("rid")), None)
                if fut is None or fut.done():
                    continue
                value = decode_cbor(payload)
                if header.get("ok") is True:
                    fut.set_result((str(header.get("kind")), value))
                else:
                    fut.set_exception(ControlError(str(value)))
            except VsmPhoenixError as exc:
                self._ep.logs.log(logging.WARNING, "bad-reply", "%s: bad reply frame: %s",
                                  self.client_id, exc)

    async def request(self, node_id: str, raw: Any, timeout: float = 10.0) -> tuple[str, Any]:
        """Send control request ``raw`` (a CBOR value) to ``node_id``; return the reply
        ``(kind, payload)``. Raises :class:`TimeoutError` or :class:`ControlError`
        (which names ``PermissionDenied`` when the client's roles do not allow it)."""
        self._counter += 1
        rid = f"r{self._counter}"
        fut: asyncio.Future[tuple[str, Any]] = asyncio.get_running_loop().create_future()
        self._futures[rid] = fut
        sealed = self._ep.seal_to(
            node_id, self.topology.control_key(node_id),
            {"content_type": CTL_REQUEST, "rid": rid}, encode_cbor(raw),
        )
        if not sealed:
            self._futures.pop(rid, None)
            raise ControlError(f"sealing stopped: {self._ep.sealing_error}")
        try:
            return await asyncio.wait_for(fut, timeout)
        finally:
            self._futures.pop(rid, None)

    async def status(self, node_id: str, timeout: float = 5.0) -> dict[str, Any]:
        _kind, value = await self.request(node_id, {"op": "status"}, timeout)
        if not isinstance(value, dict):
            raise ControlError(f"status of {node_id} is not a map")
        return value

    # -- for tests and fault injection ----------------------------------------------------
    async def publish_raw(self, routing_key: str, body: bytes,
                          headers: Mapping[str, Any] | None = None) -> None:
        """Publish ``body`` as is (not signed, not sealed) -- for fault injection."""
        assert self._ep.exchange is not None
        await self._ep.exchange.publish(
            aio_pika.Message(body, headers=dict(headers or {}),
                             content_type=BATCH_CONTENT_TYPE),
            routing_key, mandatory=False,
        )

    def seal_raw(self, recipient: str, header: dict[str, Any], payload: bytes) -> bytes:
        """A frame sealed by this client's channel (for building test traffic)."""
        return self._ep.channel.seal({"recipient": recipient, **header}, payload)

    def sign_raw(self, frames: list[bytes]) -> bytes:
        """A body signed by this client's identity (for building test traffic)."""
        return self._ep.sign(frames)
