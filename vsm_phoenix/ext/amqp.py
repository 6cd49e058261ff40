"""The AMQP adapter: any sans-IO node over RabbitMQ (asyncio, aio-pika).

Theory of operation
-------------------
An :class:`AmqpNode` owns one protocol node (:class:`~vsm_phoenix.protocol.node.Node`)
and carries out its effects against a broker, a SQLite store and the event loop:

=================  ================================================================
effect             carried out as
=================  ================================================================
``Persist``        a write to the node's :class:`~vsm_phoenix.storage.Storage` under
                   ``node/<key>``, committed *before* any later effect runs
``Send``           the envelope sealed by the crypto
                   :class:`~vsm_phoenix.crypto.SecureChannel`, appended to the
                   outbox, published to the cluster's topic exchange
``SetTimer`` /     ``loop.call_later`` / its cancellation (one handle per name)
``CancelTimer``
``Deliver``        the reply of a pending request (in-process or over the control
                   plane), otherwise the ``on_deliver`` callback
=================  ================================================================

Topology (per cluster ``C``; :class:`Topology`): a durable topic exchange ``vsm.C``, a
durable queue ``vsm.C.node.<id>`` per node bound to ``to.<id>.#`` (direct messages)
and ``tp.#`` (topic broadcasts), and a dead-letter exchange ``vsm.C.dlx`` (fanout)
feeding the durable queue ``vsm.C.dlq``. Routing keys say where and what:
``to.<recipient>.<message type>``, ``tp.<topic>.<message type>``, ``to.<node>.ctl``
for control requests and ``to.<client>.ctl`` for their replies.

Wire format: one AMQP message carries a *batch*: the canonical CBOR array of sealed
frames (``content_type`` :data:`BATCH_CONTENT_TYPE`). A frame is
``SecureChannel.seal(header, payload)`` where ``header`` holds the recipient (a node
id, or ``topic:<name>`` for broadcasts), a content type (:data:`ENVELOPE` or a control
kind) and, for envelopes, the envelope's own header (``env``); the payload is the
envelope's wire payload, encrypted. Small messages to the same routing key share one
publish: the outbox flushes a batch when it reaches ``batch_max_messages`` or
``batch_max_bytes``, or ``linger_ms`` after its first frame.

Reliability
-----------
* **Publisher confirms**: a batch leaves the outbox only when the broker confirmed it;
  a failed or unconfirmed publish is retried after the robust connection is back
  (at-least-once; receivers drop the duplicates by the channel's replay window).
* **Bounded in-flight window**: at most ``window`` unconfirmed publishes; the consumer
  stops taking messages while the outbox holds more than ``max_outbox`` frames.
* **Ack after persist**: incoming messages are processed in arrival order, several at
  a time in one storage transaction (group commit): authenticate (which records the
  sender's sequence number), step the node, write its ``Persist`` effects, commit --
  and only then carry out the other effects and ack the group (one cumulative ack).
  A crash before the commit loses nothing: the broker redelivers, and the replay
  record was rolled back with the state.
* **Reconnection**: ``aio_pika.connect_robust`` re-opens channels and re-declares
  queues, bindings and consumers; acks for deliveries of a dead channel are dropped
  (the broker redelivers those, and the replay window filters them).
* **TTL**: every publish carries ``expiration = message_ttl_ms``; what a stopped node
  does not consume in time is discarded by the broker (protocols tolerate loss).
* **Dead letters**: a body that is not a batch, a frame that fails to decode or
  authenticate, and an envelope the node rejects (``DecodeError``) are republished to
  ``vsm.C.dlx`` with the reason (``decode``, ``authentication``, ``protocol``,
  ``node-error``) in the ``x-vsm-reason`` / ``x-vsm-error`` headers and logged; the
  node keeps running. Replays and stale frames are duplicates: dropped and
  counted, not dead-lettered.

Restart: on start the adapter gives the node ``Restart(persisted)`` (every
``node/<key>`` it wrote) when its store says it booted before, else ``Start``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
import uuid
from collections import deque
from collections.abc import Callable, Mapping
from typing import Any, Final, Protocol

import aio_pika
import aiormq
import attrs

from vsm_phoenix.crypto import Keyset, SecureChannel
from vsm_phoenix.errors import (
    AuthenticationError,
    DecodeError,
    InvalidArgument,
    KeyExpiredError,
    ReplayError,
    VsmPhoenixError,
)
from vsm_phoenix.protocol.envelope import Envelope, decode_cbor, encode_cbor
from vsm_phoenix.protocol.node import (
    CancelTimer,
    ClientRequest,
    Deliver,
    Effect,
    Event,
    Node,
    Persist,
    Receive,
    Restart,
    Send,
    SetTimer,
    Start,
    TimerFired,
)
from vsm_phoenix.storage import MemoryStorage, Storage, TransactionalStorage

__all__ = [
    "BATCH_CONTENT_TYPE",
    "CTL_REPLY",
    "CTL_REQUEST",
    "DEFAULT_AMQP_URL",
    "ENVELOPE",
    "AmqpClient",
    "AmqpConfig",
    "AmqpNode",
    "ControlCodec",
    "ControlError",
    "Topology",
    "amqp_url",
    "broker_available",
    "declare_topology",
    "decode_batch",
    "delete_topology",
    "encode_batch",
    "load_keyset",
]

log = logging.getLogger("vsm_phoenix.ext.amqp")

DEFAULT_AMQP_URL: Final = "amqp://guest:guest@127.0.0.1:5672/"
BATCH_CONTENT_TYPE: Final = "application/vnd.vsm-phoenix.batch+cbor"
ENVELOPE: Final = "vsm/envelope"
CTL_REQUEST: Final = "vsm/ctl-request"
CTL_REPLY: Final = "vsm/ctl-reply"
MAX_BATCH_FRAMES: Final = 65_536
MAX_BODY_BYTES: Final = 64 * 1024 * 1024
MAX_PENDING_CONTROL: Final = 10_000
_NODE_PREFIX: Final = "node/"
_BOOT_KEY: Final = "runner/boots"


def amqp_url() -> str:
    """``$AMQP_URL``, or :data:`DEFAULT_AMQP_URL`."""
    return os.environ.get("AMQP_URL") or DEFAULT_AMQP_URL


def load_keyset(path: str | None = None) -> Keyset:
    """The cluster keyset (Tink cleartext JSON, AES-256-GCM) from ``path``, else from
    ``$VSM_PHOENIX_KEYSET`` (the JSON itself) or ``$VSM_PHOENIX_KEYSET_FILE``.
    Cleartext keysets are for demos and tests; production keeps them encrypted."""
    if path:
        with open(path, encoding="utf-8") as fh:
            return Keyset.from_tink_json(fh.read())
    text = os.environ.get("VSM_PHOENIX_KEYSET")
    if text:
        return Keyset.from_tink_json(text)
    file = os.environ.get("VSM_PHOENIX_KEYSET_FILE")
    if file:
        return load_keyset(file)
    raise InvalidArgument("no keyset: pass a path or set VSM_PHOENIX_KEYSET(_FILE)")


async def broker_available(url: str | None = None, timeout: float = 3.0) -> str | None:
    """``None`` when a broker answers at ``url``, else the reason it does not."""
    try:
        conn = await asyncio.wait_for(aio_pika.connect(url or amqp_url()), timeout)
    except Exception as exc:  # any connect failure means "no broker"
        return f"no AMQP broker at {url or amqp_url()}: {type(exc).__name__}: {exc}"
    await conn.close()
    return None


# -- names --------------------------------------------------------------------------------
def _word(text: str) -> str:
    """One routing-key word: the AMQP topic metacharacters ``. * #`` percent-escaped."""
    return (
        text.replace("%", "%25").replace(".", "%2E").replace("*", "%2A").replace("#", "%23")
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
        return f"to.{_word(recipient)}.{_word(msg_type)}"

    def topic_key(self, topic: str, msg_type: str) -> str:
        return f"tp.{_word(topic)}.{_word(msg_type)}"

    def control_key(self, recipient: str) -> str:
        return f"to.{_word(recipient)}.ctl"

    def bindings(self, node_id: str) -> tuple[str, ...]:
        return (f"to.{_word(node_id)}.#", "tp.#")


async def declare_topology(
    channel: aio_pika.abc.AbstractChannel, topology: Topology, node_ids: tuple[str, ...] = ()
) -> aio_pika.abc.AbstractExchange:
    """Declare the cluster's exchanges, the DLQ and the queues of ``node_ids``
    (idempotent). Returns the topic exchange."""
    exchange = await channel.declare_exchange(
        topology.exchange, aio_pika.ExchangeType.TOPIC, durable=True
    )
    dlx = await channel.declare_exchange(topology.dlx, aio_pika.ExchangeType.FANOUT, durable=True)
    dlq = await channel.declare_queue(topology.dlq, durable=True)
    await dlq.bind(dlx, routing_key="")
    for nid in node_ids:
        queue = await channel.declare_queue(topology.node_queue(nid), durable=True)
        for key in topology.bindings(nid):
            await queue.bind(exchange, routing_key=key)
    return exchange


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


# -- batches --------------------------------------------------------------------------------
def encode_batch(frames: list[bytes]) -> bytes:
    """The AMQP body for ``frames``: canonical CBOR array of byte strings."""
    return encode_cbor(frames)


def decode_batch(body: bytes) -> list[bytes]:
    """Inverse of :func:`encode_batch`; :class:`DecodeError` on anything else."""
    if len(body) > MAX_BODY_BYTES:
        raise DecodeError(f"body of {len(body)} bytes exceeds {MAX_BODY_BYTES}")
    frames = decode_cbor(body)
    if not isinstance(frames, list) or not 1 <= len(frames) <= MAX_BATCH_FRAMES:
        raise DecodeError("batch must be a non-empty CBOR array of frames")
    if not all(isinstance(f, bytes) for f in frames):
        raise DecodeError("batch items must be byte strings")
    return frames


# -- configuration ------------------------------------------------------------------------
@attrs.frozen(kw_only=True)
class AmqpConfig:
    """Adapter knobs. ``batch_max_messages=1`` turns batching off."""

    url: str = attrs.field(factory=amqp_url)
    batch_max_messages: int = 256
    batch_max_bytes: int = 128 * 1024
    linger_ms: float = 2.0
    window: int = 64
    prefetch: int = 512
    max_outbox: int = 20_000
    message_ttl_ms: int = 60_000
    reconnect_interval: float = 0.5
    retry_delay: float = 0.25
    max_age: float = 300.0

    def __attrs_post_init__(self) -> None:
        if self.batch_max_messages < 1 or self.batch_max_bytes < 1 or self.linger_ms < 0:
            raise InvalidArgument("batch limits must be positive and linger_ms >= 0")
        if self.window < 1 or self.prefetch < 1 or self.max_outbox < 1:
            raise InvalidArgument("window, prefetch and max_outbox must be positive")
        if self.message_ttl_ms < 1:
            raise InvalidArgument("message_ttl_ms must be positive")


class ControlCodec(Protocol):
    """How the control plane talks to one kind of node (a *role*).

    Control requests carry plain CBOR values; the codec turns them into the node's
    ``ClientRequest`` payloads and turns ``Deliver`` payloads back into CBOR values.
    """

    def decode_request(self, node: Node, raw: Any) -> Any:
        """The ``ClientRequest`` payload for ``raw``; ``InvalidArgument`` if unknown."""
        ...

    def encode_reply(self, deliver: Deliver) -> Any:
        """A CBOR-encodable rendering of ``deliver.payload``."""
        ...

    def status(self, node: Node) -> dict[str, Any]:
        """A CBOR-encodable summary of the node's state (for ``{"op": "status"}``)."""
        ...


class ControlError(VsmPhoenixError):
    """A control request failed on the node (the reply carried an error)."""


# -- the publishing side ----------------------------------------------------------------
class _Outbox:
    """Per-routing-key batches, a linger timer, and a window of unconfirmed publishes."""

    def __init__(
        self,
        config: AmqpConfig,
        publish: Callable[[str, bytes, int], Any],
        stats: dict[str, int],
    ) -> None:
        self._config = config
        self._publish = publish
        self._stats = stats
        self._buffers: dict[str, list[bytes]] = {}
        self._sizes: dict[str, int] = {}
        self._linger: asyncio.TimerHandle | None = None
        self._window = asyncio.Semaphore(config.window)
        self._tasks: set[asyncio.Task[None]] = set()
        self.pending = 0  # frames added and not yet confirmed
        self._idle = asyncio.Event()
        self._idle.set()
        self._room = asyncio.Event()
        self._room.set()

    def add(self, routing_key: str, frame: bytes) -> None:
        buf = self._buffers.setdefault(routing_key, [])
        buf.append(frame)
        self._sizes[routing_key] = self._sizes.get(routing_key, 0) + len(frame)
        self.pending += 1
        self._idle.clear()
        if self.pending >= self._config.max_outbox:
            self._room.clear()
        cfg = self._config
        if len(buf) >= cfg.batch_max_messages or self._sizes[routing_key] >= cfg.batch_max_bytes:
            self._flush_key(routing_key)
        elif self._linger is None:
            loop = asyncio.get_running_loop()
            self._linger = loop.call_later(cfg.linger_ms / 1000.0, self.flush)

    def flush(self) -> None:
        """Start publishing every buffered batch now."""
        if self._linger is not None:
            self._linger.cancel()
            self._linger = None
        for key in list(self._buffers):
            self._flush_key(key)

    def _flush_key(self, key: str) -> None:
        frames = self._buffers.pop(key, None)
        self._sizes.pop(key, None)
        if not frames:
            return
        task = asyncio.get_running_loop().create_task(self._send(key, frames))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _send(self, key: str, frames: list[bytes]) -> None:
        body = encode_batch(frames)
        async with self._window:
            await self._publish(key, body, len(frames))
        self.pending -= len(frames)
        self._stats["frames_confirmed"] += len(frames)
        if self.pending < self._config.max_outbox // 2:
            self._room.set()
        if self.pending == 0:
            self._idle.set()

    async def wait_room(self) -> None:
        await self._room.wait()

    async def drain(self, timeout: float | None = None) -> bool:
        """Flush and wait until every frame is confirmed; ``False`` on timeout."""
        self.flush()
        try:
            await asyncio.wait_for(self._idle.wait(), timeout)
        except TimeoutError:
            return False
        return True

    def cancel(self) -> None:
        if self._linger is not None:
            self._linger.cancel()
        for task in list(self._tasks):
            task.cancel()


def _retryable_publish_error(exc: BaseException) -> bool:
    return not isinstance(exc, asyncio.CancelledError)


class _Endpoint:
    """What nodes and clients share: a robust connection, a confirming publish channel,
    a consuming channel, a sealing identity and the outbox."""

    def __init__(
        self,
        identity: str,
        topology: Topology,
        keyset: Keyset,
        storage: Storage,
        config: AmqpConfig,
        clock: Callable[[], float],
    ) -> None:
        self.identity = identity
        self.topology = topology
        self.config = config
        self.storage = storage
        # (a runtime Protocol check is slow: decide once)
        self._transactional = isinstance(storage, TransactionalStorage)
        self.keyset = keyset
        self.clock = clock
        self.channel = SecureChannel(
            keyset, storage, identity=identity, clock=clock, max_age=config.max_age
        )
        self._topic_channels: dict[str, SecureChannel] = {}
        self.stats: dict[str, int] = {
            "frames_sent": 0, "frames_confirmed": 0, "publishes": 0, "publish_retries": 0,
            "bodies_received": 0, "frames_received": 0, "dead_lettered": 0,
            "duplicates": 0, "delivered": 0, "reconnects": 0, "acks_lost": 0,
        }
        self.connection: aio_pika.abc.AbstractRobustConnection | None = None
        self._pub: aio_pika.abc.AbstractChannel | None = None
        self._sub: aio_pika.abc.AbstractChannel | None = None
        self._exchange: aio_pika.abc.AbstractExchange | None = None
        self._dlx: aio_pika.abc.AbstractExchange | None = None
        self.outbox: _Outbox | None = None
        self._closing = False

    def txn(self) -> contextlib.AbstractContextManager[None]:
        if self._transactional:
            return self.storage.transaction()  # type: ignore[attr-defined, no-any-return]
        return contextlib.nullcontext()

    async def connect(self) -> None:
        self.connection = await aio_pika.connect_robust(
            self.config.url,
            reconnect_interval=self.config.reconnect_interval,
            client_properties={
                "connection_name": f"vsm-phoenix {self.topology.cluster} {self.identity}"
            },
        )
        self.connection.reconnect_callbacks.add(self._on_reconnect)
        self._pub = await self.connection.channel(publisher_confirms=True)
        self._sub = await self.connection.channel(publisher_confirms=True)
        await self._sub.set_qos(prefetch_count=self.config.prefetch)
        self._exchange = await declare_topology(self._pub, self.topology)
        self._dlx = await self._pub.get_exchange(self.topology.dlx)
        self.outbox = _Outbox(self.config, self._publish, self.stats)

    def _on_reconnect(self, *_args: Any) -> None:
        self.stats["reconnects"] += 1
        log.warning("%s: reconnected to the broker", self.identity)

    async def _publish(self, routing_key: str, body: bytes, count: int) -> None:
        """Publish one batch with confirms, retrying until the broker confirms it."""
        while True:
            assert self._exchange is not None
            message = aio_pika.Message(
                body,
                content_type=BATCH_CONTENT_TYPE,
                delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                expiration=self.config.message_ttl_ms / 1000.0,
                headers={"x-vsm-count": count},
                app_id="vsm-phoenix",
            )
            try:
                result = await self._exchange.publish(message, routing_key, mandatory=False)
                if isinstance(result, aiormq.spec.Basic.Ack):
                    self.stats["publishes"] += 1
                    return
                raise ConnectionError(f"publish not confirmed: {result!r}")
            except BaseException as exc:
                if not _retryable_publish_error(exc) or self._closing:
                    raise
                self.stats["publish_retries"] += 1
                log.info("%s: publish to %s failed (%s); retrying", self.identity,
                         routing_key, type(exc).__name__)
                await asyncio.sleep(self.config.retry_delay)

    def seal_to(self, recipient: str, routing_key: str, header: dict[str, Any],
                payload: bytes) -> None:
        """Seal one frame for ``recipient`` and queue it on ``routing_key``."""
        assert self.outbox is not None
        frame = self.channel.seal({"recipient": recipient, **header}, payload)
        self.stats["frames_sent"] += 1
        self.outbox.add(routing_key, frame)

    def channel_for(self, recipient: str) -> SecureChannel:
        """The opening channel for frames addressed to ``recipient`` (us or a topic)."""
        if recipient == self.identity:
            return self.channel
        ch = self._topic_channels.get(recipient)
        if ch is None:
            ch = SecureChannel(self.keyset, self.storage, identity=recipient,
                               clock=self.clock, max_age=self.config.max_age)
            self._topic_channels[recipient] = ch
        return ch

    async def dead_letter(self, body: bytes, reason: str, error: str, routing_key: str) -> None:
        """Publish ``body`` to the DLQ with the reason in its headers (never raises)."""
        self.stats["dead_lettered"] += 1
        log.warning("%s: dead-lettering a message on %s: %s: %s", self.identity, routing_key,
                    reason, error)
        assert self._dlx is not None
        message = aio_pika.Message(
            body,
            delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
            headers={
                "x-vsm-reason": reason,
                "x-vsm-error": error[:500],
                "x-vsm-node": self.identity,
                "x-vsm-routing-key": routing_key,
                "x-vsm-time": int(self.clock() * 1000),
            },
            app_id="vsm-phoenix",
        )
        for _ in range(20):
            try:
                await self._dlx.publish(message, "", mandatory=False, timeout=10.0)
                return
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.info("%s: DLQ publish failed (%s); retrying", self.identity, exc)
                await asyncio.sleep(self.config.retry_delay)
        log.error("%s: gave up dead-lettering a message: %s", self.identity, reason)

    async def close(self, drain_timeout: float = 5.0) -> None:
        if self.outbox is not None:
            await self.outbox.drain(drain_timeout)
        self._closing = True
        if self.outbox is not None:
            self.outbox.cancel()
        if self.connection is not None:
            with contextlib.suppress(Exception):
                await self.connection.close()


def _classify(exc: BaseException) -> str:
    if isinstance(exc, ReplayError):
        return "replay"
    if isinstance(exc, AuthenticationError | KeyExpiredError):
        return "authentication"
    if isinstance(exc, DecodeError):
        return "decode"
    return "error"


class _Rejected(Exception):
    """The node refused an authentic envelope (its ``DecodeError``)."""


@attrs.define
class _Incoming:
    """The outcome of processing one AMQP message inside the group transaction."""

    message: aio_pika.abc.AbstractIncomingMessage
    effects: list[Effect] = attrs.field(factory=list)
    replies: list[tuple[str, str, str, Any, bool]] = attrs.field(factory=list)
    dead: list[tuple[bytes, str, str]] = attrs.field(factory=list)


# -- the node runner ------------------------------------------------------------------------
class AmqpNode:
    """Runs ``node`` against the broker (see the module docstring).

    ``storage`` holds the node's persisted keys (``node/...``), the channel's sequence
    counter and replay windows; give it a :class:`~vsm_phoenix.storage.SQLiteStorage`
    for crash-restart. ``codec`` enables the control plane (requests from an
    :class:`AmqpClient`); ``on_deliver`` gets every ``Deliver`` that answers no request.
    """

    def __init__(
        self,
        node: Node,
        *,
        cluster: str,
        keyset: Keyset,
        storage: Storage | None = None,
        config: AmqpConfig | None = None,
        codec: ControlCodec | None = None,
        on_deliver: Callable[[Deliver], None] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.node = node
        self.node_id = node.node_id
        self.topology = Topology(cluster)
        self.config = config or AmqpConfig()
        self.storage: Storage = storage if storage is not None else MemoryStorage()
        self.codec = codec
        self.on_deliver = on_deliver
        self._clock = clock
        self._ep = _Endpoint(self.node_id, self.topology, keyset, self.storage, self.config,
                             clock)
        self.stats = self._ep.stats
        self.recent: deque[Deliver] = deque(maxlen=1000)
        self._timers: dict[str, asyncio.TimerHandle] = {}
        self._inbox: asyncio.Queue[aio_pika.abc.AbstractIncomingMessage] = asyncio.Queue()
        self._waiters: dict[str, asyncio.Future[Deliver]] = {}
        self._ctl_pending: dict[str, tuple[str, str]] = {}  # request id -> (client, rid)
        self._processor: asyncio.Task[None] | None = None
        self._stopped = asyncio.Event()
        self._tasks: set[asyncio.Task[Any]] = set()
        self.booted_with: str = ""
        self.started = False

    # -- lifecycle -------------------------------------------------------------------------
    def now(self) -> int:
        return int(self._clock() * 1000)

    async def start(self) -> None:
        """Connect, declare the node's queue, boot the node, start consuming."""
        ep = self._ep
        await ep.connect()
        assert ep._sub is not None and ep._exchange is not None
        exchange = await declare_topology(ep._sub, self.topology)
        node_queue = await ep._sub.declare_queue(
            self.topology.node_queue(self.node_id), durable=True
        )
        for key in self.topology.bindings(self.node_id):
            await node_queue.bind(exchange, routing_key=key)
        self._processor = asyncio.get_running_loop().create_task(self._process_loop())
        self._boot()
        await node_queue.consume(self._on_message, no_ack=False)
        self.started = True

    def _boot(self) -> None:
        boots_raw = self.storage.get(_BOOT_KEY)
        boots = int.from_bytes(boots_raw, "big") if boots_raw else 0
        persisted = {k[len(_NODE_PREFIX):]: v for k, v in self.storage.items(_NODE_PREFIX)}
        event: Event
        if boots:
            event = Restart(self.now(), persisted)
            self.booted_with = "restart"
        else:
            event = Start(self.now())
            self.booted_with = "start"
        log.info("%s: %s (boot %d, %d persisted keys)", self.node_id, self.booted_with,
                 boots + 1, len(persisted))
        with self._ep.txn():
            self.storage.put(_BOOT_KEY, (boots + 1).to_bytes(8, "big"))
            effects = self._step_persist(event)
        self._carry_out(effects)

    async def stop(self, drain_timeout: float = 5.0) -> None:
        """Stop timers and consumption, flush the outbox, close the connection."""
        for handle in self._timers.values():
            handle.cancel()
        self._timers.clear()
        if self._processor is not None:
            self._processor.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._processor
        await self._ep.close(drain_timeout)
        self._stopped.set()

    async def wait_stopped(self) -> None:
        await self._stopped.wait()

    def request_stop(self) -> None:
        """Ask the node to stop (from a signal handler or a control request)."""
        task = asyncio.get_running_loop().create_task(self.stop())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # -- stepping --------------------------------------------------------------------------
    def step(self, event: Event) -> list[Effect]:
        """Step the node with ``event`` in one storage transaction and carry out the
        effects (persists inside the transaction, the rest after the commit)."""
        with self._ep.txn():
            effects = self._step_persist(event)
        self._carry_out(effects)
        return effects

    def _step_persist(self, event: Event) -> list[Effect]:
        """Step the node and write its ``Persist`` effects; return the other effects."""
        effects = self.node.step(event)
        rest: list[Effect] = []
        for effect in effects:
            if isinstance(effect, Persist):
                key = _NODE_PREFIX + effect.key
                if effect.value is None:
                    self.storage.delete(key)
                else:
                    self.storage.put(key, effect.value)
            else:
                rest.append(effect)
        return rest

    def _carry_out(self, effects: list[Effect]) -> None:
        for effect in effects:
            if isinstance(effect, Send):
                self._send(effect.envelope)
            elif isinstance(effect, SetTimer):
                old = self._timers.pop(effect.name, None)
                if old is not None:
                    old.cancel()
                loop = asyncio.get_running_loop()
                self._timers[effect.name] = loop.call_later(
                    effect.delay_ms / 1000.0, self._fire, effect.name
                )
            elif isinstance(effect, CancelTimer):
                old = self._timers.pop(effect.name, None)
                if old is not None:
                    old.cancel()
            elif isinstance(effect, Deliver):
                self._deliver(effect)

    def _fire(self, name: str) -> None:
        self._timers.pop(name, None)
        try:
            self.step(TimerFired(self.now(), name))
        except DecodeError as exc:
            log.warning("%s: timer %s rejected: %s", self.node_id, name, exc)
        except Exception:
            log.exception("%s: node failed on timer %s", self.node_id, name)

    def _send(self, env: Envelope) -> None:
        header, body = env.wire_parts()
        topo = self.topology
        if env.recipient is not None:
            recipient = env.recipient
            key = topo.direct_key(recipient, env.type)
        else:
            assert env.topic is not None
            recipient = "topic:" + env.topic
            key = topo.topic_key(env.topic, env.type)
        self._ep.seal_to(recipient, key, {"content_type": ENVELOPE, "env": header}, body)

    def _deliver(self, d: Deliver) -> None:
        rid = d.request_id
        if rid is not None and rid in self._waiters:
            fut = self._waiters.pop(rid)
            if not fut.done():
                fut.set_result(d)
            return
        if rid is not None and rid in self._ctl_pending:
            client, client_rid = self._ctl_pending.pop(rid)
            payload = self.codec.encode_reply(d) if self.codec is not None else None
            self._reply(client, client_rid, d.kind, payload, True)
            return
        self.stats["delivered"] += 1
        self.recent.append(d)
        if self.on_deliver is not None:
            try:
                self.on_deliver(d)
            except Exception:
                log.exception("%s: on_deliver callback failed", self.node_id)

    def _reply(self, client: str, rid: str, kind: str, payload: Any, ok: bool) -> None:
        try:
            body = encode_cbor(payload)
        except Exception as exc:
            body, ok, kind = encode_cbor(f"unencodable reply: {exc}"), False, "error"
        self._ep.seal_to(
            client, self.topology.control_key(client),
            {"content_type": CTL_REPLY, "rid": rid, "kind": kind, "ok": ok}, body,
        )

    async def request(self, payload: Any, timeout: float = 10.0) -> Deliver:
        """Issue a ``ClientRequest`` in process and wait for its ``Deliver``."""
        rid = f"local/{uuid.uuid4().hex}"
        fut: asyncio.Future[Deliver] = asyncio.get_running_loop().create_future()
        self._waiters[rid] = fut
        try:
            self.step(ClientRequest(self.now(), rid, payload))
            return await asyncio.wait_for(fut, timeout)
        finally:
            self._waiters.pop(rid, None)

    # -- consuming -------------------------------------------------------------------------
    async def _on_message(self, message: aio_pika.abc.AbstractIncomingMessage) -> None:
        self._inbox.put_nowait(message)

    async def _process_loop(self) -> None:
        limit = max(1, self.config.prefetch)
        while True:
            first = await self._inbox.get()
            batch = [first]
            while len(batch) < limit and not self._inbox.empty():
                batch.append(self._inbox.get_nowait())
            assert self._ep.outbox is not None
            await self._ep.outbox.wait_room()
            try:
                await self._process(batch)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("%s: processing a batch failed; requeueing it", self.node_id)
                for m in batch:
                    with contextlib.suppress(Exception):
                        await m.nack(requeue=True)
                await asyncio.sleep(self.config.retry_delay)

    async def _process(self, batch: list[aio_pika.abc.AbstractIncomingMessage]) -> None:
        results: list[_Incoming] = []
        with self._ep.txn():
            for m in batch:
                results.append(self._handle(m))
        for res in results:
            self._carry_out(res.effects)
            for client, rid, kind, payload, ok in res.replies:
                self._reply(client, rid, kind, payload, ok)
        for res in results:
            for body, reason, error in res.dead:
                await self._ep.dead_letter(body, reason, error, res.message.routing_key or "")
        # Every message of the group is done: one cumulative ack per channel (messages
        # are processed in delivery order, so no earlier delivery is still open).
        last: dict[int, aio_pika.abc.AbstractIncomingMessage] = {}
        for m in batch:
            last[id(m.channel)] = m
        for m in last.values():
            try:
                await m.ack(multiple=True)
            except Exception:
                self.stats["acks_lost"] += 1  # a channel that died: the broker redelivers

    def _handle(self, m: aio_pika.abc.AbstractIncomingMessage) -> _Incoming:
        """Authenticate, decode and step one AMQP message (inside the transaction)."""
        res = _Incoming(m)
        self.stats["bodies_received"] += 1
        try:
            frames = decode_batch(m.body)
        except DecodeError as exc:
            res.dead.append((m.body, "decode", str(exc)))
            return res
        for frame in frames:
            self.stats["frames_received"] += 1
            try:
                self._handle_frame(m, frame, res)
            except _Rejected as exc:
                res.dead.append((frame, "protocol", str(exc)))
            except ReplayError as exc:
                self.stats["duplicates"] += 1
                log.debug("%s: dropped a duplicate or stale frame: %s", self.node_id, exc)
            except (DecodeError, AuthenticationError, KeyExpiredError) as exc:
                res.dead.append((frame, _classify(exc), f"{type(exc).__name__}: {exc}"))
            except Exception as exc:  # a node bug must not stop the node
                log.exception("%s: node failed on a message", self.node_id)
                res.dead.append((frame, "node-error", f"{type(exc).__name__}: {exc}"))
        return res

    def _handle_frame(
        self, m: aio_pika.abc.AbstractIncomingMessage, frame: bytes, res: _Incoming
    ) -> None:
        key = m.routing_key or ""
        if key.startswith("tp."):
            topic = key.split(".")[1] if key.count(".") >= 2 else ""
            recipient = "topic:" + _unword(topic)
        else:
            recipient = self.node_id
        header, payload = self._ep.channel_for(recipient).open(frame)
        sender = header["sender"]
        ctype = header["content_type"]
        if ctype == ENVELOPE:
            envh = header.get("env")
            if not isinstance(envh, dict) or envh.get("s") != sender:
                raise AuthenticationError("envelope sender differs from the sealing sender")
            env = Envelope.from_wire_parts(envh, payload)
            if env.sender == self.node_id:
                return  # our own topic broadcast
            try:
                res.effects += self._step_persist(Receive(self.now(), env))
            except DecodeError as exc:
                raise _Rejected(f"{type(exc).__name__}: {exc}") from None
        elif ctype == CTL_REQUEST:
            rid = header.get("rid")
            if not isinstance(rid, str):
                raise DecodeError("control request without a str rid")
            raw = decode_cbor(payload)
            self._control(sender, rid, raw, res)
        else:
            raise DecodeError(f"unexpected content type {ctype!r}")

    def _control(self, client: str, rid: str, raw: Any, res: _Incoming) -> None:
        op = raw.get("op") if isinstance(raw, dict) else None
        if op == "status":
            status: dict[str, Any] = {
                "node": self.node_id, "boot": self.booted_with, "stats": dict(self.stats),
            }
            if self.codec is not None:
                status.update(self.codec.status(self.node))
            res.replies.append((client, rid, "status", status, True))
            return
        if op == "stop":
            res.replies.append((client, rid, "stop", None, True))
            asyncio.get_running_loop().call_later(0.2, self.request_stop)
            return
        if self.codec is None:
            res.replies.append((client, rid, "error", "no control codec", False))
            return
        local_rid = f"{client}/{rid}"
        try:
            payload = self.codec.decode_request(self.node, raw)
            if len(self._ctl_pending) >= MAX_PENDING_CONTROL:  # never answered: forget
                del self._ctl_pending[next(iter(self._ctl_pending))]
            self._ctl_pending[local_rid] = (client, rid)
            res.effects += self._step_persist(ClientRequest(self.now(), local_rid, payload))
        except VsmPhoenixError as exc:
            self._ctl_pending.pop(local_rid, None)
            res.replies.append((client, rid, "error", f"{type(exc).__name__}: {exc}", False))


def _unword(word: str) -> str:
    return (
        word.replace("%2E", ".").replace("%2A", "*").replace("%23", "#").replace("%25", "%")
    )


# -- the control-plane client -------------------------------------------------------------
class AmqpClient:
    """Sends control requests to nodes and waits for their replies (tests, the CLI).

    Each client has a fresh random identity, so its sequence numbers never collide with
    an earlier client's in the nodes' replay windows.
    """

    def __init__(
        self,
        *,
        cluster: str,
        keyset: Keyset,
        config: AmqpConfig | None = None,
        name: str = "client",
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.client_id = f"{name}-{uuid.uuid4().hex[:12]}"
        self.topology = Topology(cluster)
        self.config = config or AmqpConfig(linger_ms=0.5)
        self._ep = _Endpoint(self.client_id, self.topology, keyset, MemoryStorage(),
                             self.config, clock)
        self._futures: dict[str, asyncio.Future[tuple[str, Any]]] = {}
        self._counter = 0

    async def start(self, node_ids: tuple[str, ...] = ()) -> None:
        """Connect, declare the topology (and ``node_ids``' queues) and the reply queue."""
        ep = self._ep
        await ep.connect()
        assert ep._sub is not None
        exchange = await declare_topology(ep._sub, self.topology, node_ids)
        queue = await ep._sub.declare_queue(
            self.topology.client_queue(self.client_id), exclusive=True, auto_delete=True
        )
        await queue.bind(exchange, routing_key=self.topology.control_key(self.client_id))
        await queue.consume(self._on_reply, no_ack=True)

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
            frames = decode_batch(message.body)
        except DecodeError:
            return
        for frame in frames:
            try:
                header, payload = self._ep.channel.open(frame)
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
                log.warning("%s: bad reply frame: %s", self.client_id, exc)

    async def request(self, node_id: str, raw: Any, timeout: float = 10.0) -> tuple[str, Any]:
        """Send control request ``raw`` (a CBOR value) to ``node_id``; return the reply
        ``(kind, payload)``. Raises :class:`TimeoutError` or :class:`ControlError`."""
        self._counter += 1
        rid = f"r{self._counter}"
        fut: asyncio.Future[tuple[str, Any]] = asyncio.get_running_loop().create_future()
        self._futures[rid] = fut
        self._ep.seal_to(
            node_id, self.topology.control_key(node_id),
            {"content_type": CTL_REQUEST, "rid": rid}, encode_cbor(raw),
        )
        try:
            return await asyncio.wait_for(fut, timeout)
        finally:
            self._futures.pop(rid, None)

    async def status(self, node_id: str, timeout: float = 5.0) -> dict[str, Any]:
        _kind, value = await self.request(node_id, {"op": "status"}, timeout)
        if not isinstance(value, dict):
            raise ControlError(f"status of {node_id} is not a map")
        return value

    async def publish_raw(self, routing_key: str, body: bytes,
                          headers: Mapping[str, Any] | None = None) -> None:
        """Publish ``body`` as is (unsealed) -- for fault injection in tests."""
        assert self._ep._exchange is not None
        await self._ep._exchange.publish(
            aio_pika.Message(body, headers=dict(headers or {}),
                             content_type=BATCH_CONTENT_TYPE),
            routing_key, mandatory=False,
        )

    def seal_raw(self, recipient: str, header: dict[str, Any], payload: bytes) -> bytes:
        """A frame sealed by this client's channel (for building test traffic)."""
        return self._ep.channel.seal({"recipient": recipient, **header}, payload)
