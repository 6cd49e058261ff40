"""What nodes and control clients share: configuration, the connection, sealing and
signing, the batching outbox with publisher confirms, and dead-lettering.

Outgoing: items are appended to the :class:`Outbox`, and the items for one routing key
share one publish: a body signed by the endpoint's identity
(:func:`~vsm_phoenix.crypto.batch.seal_batch`) holding frames sealed by the endpoint's
:class:`~vsm_phoenix.crypto.SecureChannel` (cluster keyset, AES-256-GCM, header as
associated data). Two kinds of item:

* a protocol :class:`~vsm_phoenix.protocol.envelope.Envelope` (:meth:`Endpoint.send_envelope`)
  is sealed when its publish leaves, *together with* the other envelopes of that
  publish: one :data:`ENVELOPES` frame per publish (per run of envelopes to one address)
  whose payload is the columnar batch of
  :mod:`vsm_phoenix.protocol.envelope_batch`. So a publish of 256 envelopes costs one
  header encoding, one sequence number, one AES-GCM seal and one signature, and the
  receiver one signature check, one AES-GCM open, one canonical check and one replay
  record. Per-frame sealing is kept only where a frame stands alone: control requests
  and replies (:meth:`Endpoint.seal_to`, sealed at once so that the caller learns at
  once whether sealing stopped), which are few;
* an already sealed frame (:meth:`Endpoint.seal_to`).

Incoming: :meth:`Endpoint.open_body` authenticates a whole body against the roster
(one parse, one signature check) before any frame is looked at; frames are then
opened with ``sender=`` the batch's signer, so a member can no longer seal a frame in
another member's name, and the envelopes of an :data:`ENVELOPES` frame take their
sender and address from the frame's authenticated header.

The cluster keyset is never rotated by one endpoint on its own (a key only it knew
would make every peer refuse what it seals): sealing stops with an alarm at
``key_usage_limit`` uses of a key, after a warning at ``key_usage_warn``. A use is one
*message*, whether it is sealed alone or in a batch: a batch of ``n`` envelopes is
charged ``n`` uses (one AES-GCM invocation and ``n - 1`` counted ahead), so the limit
means the same number of messages whatever the batching, and over-counts, never
under-counts, the invocations NIST SP 800-38D bounds. When the budget has fewer uses
left than a batch holds, the first envelopes are sealed and the rest are counted as
``unsealed``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from typing import Any, Final

import aio_pika
import aiormq
import attrs

from vsm_phoenix.crypto import KeysetAead, SecureChannel
from vsm_phoenix.crypto.batch import OpenedBatch, open_batch, seal_batch
from vsm_phoenix.crypto.credentials import Credentials
from vsm_phoenix.crypto.identity import RosterBook
from vsm_phoenix.errors import (
    AuthenticationError,
    CapacityError,
    DecodeError,
    InvalidArgument,
    KeyExpiredError,
    PermissionDenied,
    ReplayError,
    VsmPhoenixError,
)
from vsm_phoenix.ext.amqp.topology import (
    DEFAULT_AMQP_URL,
    DEFAULT_DLQ_MAX_LENGTH,
    DEFAULT_DLQ_TTL_MS,
    Topology,
    declare_topology,
    redact,
)
from vsm_phoenix.ext.breaker import (
    BreakerConfig,
    CallNotPermittedError,
    CircuitBreaker,
    CountWindow,
)
from vsm_phoenix.protocol.envelope import Envelope
from vsm_phoenix.protocol.envelope_batch import MAX_ENVELOPES, encode_envelopes
from vsm_phoenix.storage import Storage, TransactionalStorage

__all__ = [
    "BATCH_CONTENT_TYPE",
    "ENVELOPE",
    "ENVELOPES",
    "AmqpConfig",
    "Endpoint",
    "LogLimiter",
    "Outbox",
    "SealedBody",
    "classify",
]

log = logging.getLogger("vsm_phoenix.ext.amqp")

BATCH_CONTENT_TYPE: Final = "application/vnd.vsm-phoenix.batch+cbor"
#: Content type of a frame holding one protocol envelope (header ``env``).
ENVELOPE: Final = "vsm/envelope"
#: Content type of a frame holding a batch of envelopes
#: (:mod:`vsm_phoenix.protocol.envelope_batch`).
ENVELOPES: Final = "vsm/envelopes"
#: Bytes an envelope adds to a batch beyond its payload (for ``batch_max_bytes``).
_ENVELOPE_OVERHEAD: Final = 64


@attrs.frozen(kw_only=True)
class AmqpConfig:
    """Adapter knobs; every time setting names its unit (``_ms`` or ``_s``).
    ``batch_max_messages=1`` turns batching off. ``url`` is a parameter: the library
    never reads ``$AMQP_URL`` (the command line does)."""

    url: str = DEFAULT_AMQP_URL
    batch_max_messages: int = 256
    batch_max_bytes: int = 128 * 1024
    linger_ms: float = 2.0
    window: int = 64
    prefetch: int = 512
    max_outbox: int = 20_000
    message_ttl_ms: int = 60_000
    reconnect_interval_s: float = 0.5
    retry_delay_s: float = 0.25
    max_age_s: float = 300.0
    dlq_max_length: int = DEFAULT_DLQ_MAX_LENGTH
    dlq_ttl_ms: int = DEFAULT_DLQ_TTL_MS
    #: Invocations of one cluster key after which this endpoint stops sealing.
    key_usage_limit: int = 2**30
    #: Invocations after which the rotate-the-keyset alarm is logged (once per key).
    key_usage_warn: int = 7 * 2**27
    #: At most one log line per dead-letter reason in this many seconds.
    log_interval_s: float = 10.0

    def __attrs_post_init__(self) -> None:
        if self.batch_max_messages < 1 or self.batch_max_bytes < 1 or self.linger_ms < 0:
            raise InvalidArgument("batch limits must be positive and linger_ms >= 0")
        if self.window < 1 or self.prefetch < 1 or self.max_outbox < 1:
            raise InvalidArgument("window, prefetch and max_outbox must be positive")
        if self.message_ttl_ms < 1 or self.dlq_max_length < 1 or self.dlq_ttl_ms < 1:
            raise InvalidArgument("message_ttl_ms and the DLQ bounds must be positive")
        if not 0 < self.key_usage_warn <= self.key_usage_limit <= 2**32:
            raise InvalidArgument("need 0 < key_usage_warn <= key_usage_limit <= 2**32")


class LogLimiter:
    """At most one log line per key per ``interval`` seconds; the next line says how
    many were suppressed. Bounded: an attacker choosing keys cannot grow it."""

    def __init__(self, interval: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.interval = interval
        self._clock = clock
        self._last: dict[str, float] = {}
        self._suppressed: dict[str, int] = {}

    def log(self, level: int, key: str, msg: str, *args: Any) -> None:
        now = self._clock()
        last = self._last.get(key)
        if last is not None and now - last < self.interval:
            self._suppressed[key] = self._suppressed.get(key, 0) + 1
            return
        if len(self._last) >= 256:  # keys are reasons; never grow without bound
            self._last.clear()
            self._suppressed.clear()
        self._last[key] = now
        dropped = self._suppressed.pop(key, 0)
        if dropped:
            msg += f" ({dropped} similar suppressed)"
        log.log(level, msg, *args)


@attrs.frozen
class SealedBody:
    """What a publish carries once sealed: the body (``None``: nothing could be sealed)
    and the number of messages in it."""

    body: bytes | None
    count: int


class Outbox:
    """Per-routing-key batches, a linger timer, and a window of unconfirmed publishes.

    Items are sealed frames (``bytes``) or envelopes; ``seal(items)`` turns the items of
    one publish into its body when the publish leaves -- ``bytes`` (every item is in it)
    or a :class:`SealedBody` (fewer, or none)."""

    def __init__(
        self,
        config: AmqpConfig,
        publish: Callable[[str, bytes, int], Any],
        seal: Callable[[list[Any]], bytes | SealedBody],
        stats: dict[str, int],
    ) -> None:
        self._config = config
        self._publish = publish
        self._seal = seal
        self._stats = stats
        self._buffers: dict[str, list[Any]] = {}
        self._sizes: dict[str, int] = {}
        self._linger: asyncio.TimerHandle | None = None
        self._window = asyncio.Semaphore(config.window)
        self._tasks: set[asyncio.Task[None]] = set()
        self.pending = 0  # frames added and not yet confirmed
        self._idle = asyncio.Event()
        self._idle.set()
        self._room = asyncio.Event()
        self._room.set()

    def add(self, routing_key: str, item: bytes | Envelope) -> None:
        """Queue a sealed frame or an envelope (sealed with its publish) on ``routing_key``."""
        buf = self._buffers.get(routing_key)
        if buf is None:
            buf = self._buffers[routing_key] = []
            self._sizes[routing_key] = 0
        buf.append(item)
        size = self._sizes[routing_key] + (
            len(item) if type(item) is bytes
            else len(item.payload) + _ENVELOPE_OVERHEAD)  # type: ignore[union-attr]
        self._sizes[routing_key] = size
        self.pending += 1
        cfg = self._config
        if self.pending == 1:  # (idle is set exactly when nothing is pending)
            self._idle.clear()
        if self.pending >= cfg.max_outbox:
            self._room.clear()
        if len(buf) >= cfg.batch_max_messages or size >= cfg.batch_max_bytes:
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

    async def _send(self, key: str, items: list[Any]) -> None:
        try:
            sealed = self._seal(items)
            if isinstance(sealed, SealedBody):
                body, count = sealed.body, sealed.count
            else:
                body, count = sealed, len(items)
            if body is not None:
                async with self._window:
                    await self._publish(key, body, count)
                self._stats["frames_confirmed"] += count
        finally:
            self.pending -= len(items)
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


def classify(exc: BaseException) -> str:
    """The dead-letter reason for an error (the ``x-vsm-reason`` header)."""
    if isinstance(exc, ReplayError):
        return exc.reason
    if isinstance(exc, PermissionDenied):
        return "permission"
    if isinstance(exc, AuthenticationError | KeyExpiredError):
        return "authentication"
    if isinstance(exc, DecodeError):
        return "decode"
    return "error"


def publish_breaker(name: str, config: AmqpConfig) -> CircuitBreaker:
    """The circuit breaker every publish of endpoint ``name`` goes through: once half of
    the last 20 publishes (at least 5) failed or went unconfirmed, retries wait for the
    breaker (``max(1 s, 4 x retry_delay_s)``, then one trial publish) instead of
    hammering a failing broker. A publish is never dropped: it is retried until
    confirmed."""
    return CircuitBreaker(
        f"{name}/publish",
        BreakerConfig(window=CountWindow(20), minimum_calls=5,
                      wait_in_open_ms=max(1000.0, 4000 * config.retry_delay_s),
                      half_open_permits=1,
                      failure_on_result=lambda r: not isinstance(r, aiormq.spec.Basic.Ack)),
    )


class Endpoint:
    """A principal on the broker: a robust connection, a confirming publish channel, a
    consuming channel, its sealing channel and identity, and the outbox.

    ``session``: a client without durable storage speaks as ``<principal>#<session>``
    so that its sequence numbers never collide with an earlier run's.
    """

    def __init__(
        self,
        credentials: Credentials,
        *,
        storage: Storage,
        config: AmqpConfig,
        clock: Callable[[], float],
        session: str | None = None,
    ) -> None:
        self.credentials = credentials
        self.identity = credentials.identity
        self.name = credentials.principal + ("" if session is None else f"#{session}")
        self.topology = Topology(credentials.cluster)
        self.config = config
        self.storage = storage
        # (a runtime Protocol check is slow: decide once)
        self._transactional = isinstance(storage, TransactionalStorage)
        self.clock = clock
        self.book = RosterBook(credentials.roster, storage=storage)
        self.aead = KeysetAead(
            credentials.keyset, storage, clock=clock, auto_rotate=False,
            soft_limit=config.key_usage_limit, hard_limit=config.key_usage_limit,
            warn_at=config.key_usage_warn,
            on_warn=self._key_alarm,
        )
        self.channel = SecureChannel(credentials.keyset, storage, identity=self.name,
                                     clock=clock, max_age=config.max_age_s, aead=self.aead)
        self.sealing_error: str | None = None
        self.logs = LogLimiter(config.log_interval_s)
        self.stats: dict[str, int] = {
            "frames_sent": 0, "frames_confirmed": 0, "publishes": 0, "publish_retries": 0,
            "bodies_received": 0, "frames_received": 0, "dead_lettered": 0,
            "duplicates": 0, "delivered": 0, "reconnects": 0, "acks_lost": 0,
            "refused": 0, "unsealed": 0,
        }
        self.connection: aio_pika.abc.AbstractRobustConnection | None = None
        self.pub: aio_pika.abc.AbstractChannel | None = None
        self.sub: aio_pika.abc.AbstractChannel | None = None
        self.exchange: aio_pika.abc.AbstractExchange | None = None
        self._dlx: aio_pika.abc.AbstractExchange | None = None
        self.outbox: Outbox | None = None
        self._closing = False
        self.publish_breaker = publish_breaker(self.name, config)

    # -- keys ----------------------------------------------------------------------------
    def _key_alarm(self, key_id: int, used: int, limit: int) -> None:
        log.error(
            "%s: cluster key %#010x has sealed %d of the %d messages this node may seal "
            "with it; rotate the cluster keyset now (sealing stops at the limit)",
            self.name, key_id, used, limit,
        )

    def _sealing_stopped(self, exc: CapacityError, messages: int = 1) -> None:
        if self.sealing_error is None:
            log.critical("%s: sealing stopped: %s; rotate the cluster keyset and restart",
                         self.name, exc)
        self.sealing_error = str(exc)
        self.stats["unsealed"] += messages

    # -- connection ------------------------------------------------------------------------
    def txn(self) -> contextlib.AbstractContextManager[None]:
        if self._transactional:
            return self.storage.transaction()  # type: ignore[attr-defined, no-any-return]
        return contextlib.nullcontext()

    async def connect(self) -> None:
        self.connection = await aio_pika.connect_robust(
            self.config.url,
            reconnect_interval=self.config.reconnect_interval_s,
            client_properties={
                "connection_name": f"vsm-phoenix {self.topology.cluster} {self.name}"
            },
        )
        self.connection.reconnect_callbacks.add(self._on_reconnect)
        await declare_topology(self.connection, self.topology,
                               dlq_max_length=self.config.dlq_max_length,
                               dlq_ttl_ms=self.config.dlq_ttl_ms)
        self.pub = await self.connection.channel(publisher_confirms=True)
        self.sub = await self.connection.channel(publisher_confirms=True)
        await self.sub.set_qos(prefetch_count=self.config.prefetch)
        self.exchange = await self.pub.get_exchange(self.topology.exchange)
        self._dlx = await self.pub.get_exchange(self.topology.dlx)
        self.outbox = Outbox(self.config, self._publish, self.seal_body, self.stats)

    def _on_reconnect(self, *_args: Any) -> None:
        self.stats["reconnects"] += 1
        log.warning("%s: reconnected to the broker", self.name)

    async def _publish(self, routing_key: str, body: bytes, count: int) -> None:
        """Publish one batch with confirms, retrying until the broker confirms it."""
        while True:
            assert self.exchange is not None
            message = aio_pika.Message(
                body,
                content_type=BATCH_CONTENT_TYPE,
                delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                expiration=self.config.message_ttl_ms / 1000.0,
                headers={"x-vsm-count": count},
                app_id="vsm-phoenix",
            )
            try:
                result = await self.publish_breaker.call_async(
                    self.exchange.publish, message, routing_key, mandatory=False)
                if isinstance(result, aiormq.spec.Basic.Ack):
                    self.stats["publishes"] += 1
                    return
                raise ConnectionError(f"publish not confirmed: {result!r}")
            except asyncio.CancelledError:
                raise
            except CallNotPermittedError as refused:  # the breaker is open: wait it out
                if self._closing:
                    raise
                self.stats["publish_retries"] += 1
                await asyncio.sleep(max(refused.retry_after_ms / 1000,
                                        self.config.retry_delay_s))
            except BaseException as exc:
                if self._closing:
                    raise
                self.stats["publish_retries"] += 1
                log.info("%s: publish to %s failed (%s); retrying", self.name,
                         routing_key, type(exc).__name__)
                await asyncio.sleep(self.config.retry_delay_s)

    # -- frames and batches ------------------------------------------------------------------
    def sign(self, frames: list[bytes]) -> bytes:
        """The body for ``frames``: a batch signed by this endpoint's identity."""
        return seal_batch(self.identity, self.topology.cluster, frames)

    def seal_to(self, recipient: str, routing_key: str, header: dict[str, Any],
                payload: bytes) -> bool:
        """Seal one frame for ``recipient`` and queue it on ``routing_key``; ``False``
        (and an alarm) when sealing has stopped at the key's usage limit."""
        assert self.outbox is not None
        try:
            frame = self.channel.seal({"recipient": recipient, **header}, payload)
        except CapacityError as exc:
            self._sealing_stopped(exc)
            return False
        self.stats["frames_sent"] += 1
        self.outbox.add(routing_key, frame)
        return True

    def send_envelope(self, routing_key: str, env: Envelope) -> None:
        """Queue ``env`` on ``routing_key``; it is sealed in one frame with the other
        envelopes of its publish when that publish leaves (:meth:`seal_body`). An
        envelope that names another sender than this endpoint cannot share a batch
        (whose envelopes take the sealed sender): it is sealed alone, as an
        :data:`ENVELOPE` frame, and receivers refuse it as they always did."""
        assert self.outbox is not None
        if env.sender != self.name:
            header, body = env.wire_parts()
            address = env.recipient if env.recipient is not None else f"topic:{env.topic}"
            self.seal_to(address, routing_key, {"content_type": ENVELOPE, "env": header}, body)
            return
        self.outbox.add(routing_key, env)

    def seal_body(self, items: list[Any]) -> SealedBody:
        """The body of one publish: sealed frames as they are, each run of envelopes to
        one address sealed as one :data:`ENVELOPES` frame, all signed as one batch."""
        frames: list[bytes] = []
        if bytes not in set(map(type, items)) and len(
                {(e.recipient, e.topic) for e in items}) == 1:  # the usual publish: one run
            count = self._seal_run(list(items), frames)
            return SealedBody(self.sign(frames) if frames else None, count)
        count = 0
        run: list[Envelope] = []
        for item in items:
            if type(item) is bytes:
                count += self._seal_run(run, frames)
                frames.append(item)
                count += 1
            else:
                if run and (item.recipient != run[0].recipient or item.topic != run[0].topic):
                    count += self._seal_run(run, frames)
                run.append(item)
        count += self._seal_run(run, frames)
        return SealedBody(self.sign(frames) if frames else None, count)

    def _seal_run(self, run: list[Envelope], frames: list[bytes]) -> int:
        """Seal ``run`` (then empty it) as frames appended to ``frames``, one per
        :data:`~vsm_phoenix.protocol.envelope_batch.MAX_ENVELOPES`; return how many of
        its envelopes they hold (fewer when the key's budget runs out)."""
        envs = run[:]
        run.clear()
        return sum(self._seal_envelopes(envs[i:i + MAX_ENVELOPES], frames)
                   for i in range(0, len(envs), MAX_ENVELOPES))

    def _seal_envelopes(self, envs: list[Envelope], frames: list[bytes]) -> int:
        first = envs[0]
        address = first.recipient if first.recipient is not None else f"topic:{first.topic}"
        try:
            allowed = self._charge_ahead(len(envs))
            payload = encode_envelopes(envs[:allowed], sender=self.name,
                                       recipient=first.recipient, topic=first.topic)
            frames.append(self.channel.seal({"recipient": address, "content_type": ENVELOPES},
                                            payload))
        except CapacityError as exc:
            self._sealing_stopped(exc, len(envs))
            return 0
        except (VsmPhoenixError, ValueError, TypeError) as exc:
            self.stats["unsealed"] += len(envs)
            self.logs.log(logging.ERROR, "unsealable", "%s: could not seal %d envelopes to "
                          "%s: %s", self.name, len(envs), address[:200], exc)
            return 0
        if allowed < len(envs):
            self._sealing_stopped(CapacityError("the key reached its usage limit"),
                                  len(envs) - allowed)
        self.stats["frames_sent"] += allowed
        return allowed

    def _charge_ahead(self, n: int) -> int:
        """Charge the sealing key for ``n`` messages but one (the seal that follows
        charges that one); return how many (``1..n``) to seal: all that the key's budget
        still allows, and 1 when it allows none (the seal then raises
        ``CapacityError``). See the module doc: a use is a message."""
        if n == 1:
            return 1
        key_id = self.aead.keyset.primary_id
        room = self.config.key_usage_limit - self.aead.usage(key_id)
        allowed = max(1, min(n, room))  # room <= 0: the seal itself raises CapacityError
        self.aead.charge(allowed - 1)  # one addition inside the key's lease
        return allowed

    def open_body(self, body: bytes) -> OpenedBatch:
        """Authenticate a received body against the current roster (module doc)."""
        return open_batch(body, self.book.roster)

    async def dead_letter(self, body: bytes, reason: str, error: str, routing_key: str,
                          failures: int = 1) -> None:
        """Publish ``body`` to the DLQ with the reason in its headers (never raises).
        One call per received body, whatever number of frames in it failed."""
        self.stats["dead_lettered"] += 1
        self.logs.log(logging.WARNING, reason, "%s: dead-lettered a message on %s: %s: %s",
                      self.name, routing_key[:200], reason, redact(error[:300]))
        assert self._dlx is not None
        message = aio_pika.Message(
            body,
            delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
            headers={
                "x-vsm-reason": reason,
                "x-vsm-error": error[:500],
                "x-vsm-failures": failures,
                "x-vsm-node": self.name,
                "x-vsm-routing-key": routing_key[:255],
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
                log.info("%s: DLQ publish failed (%s); retrying", self.name, exc)
                await asyncio.sleep(self.config.retry_delay_s)
        log.error("%s: gave up dead-lettering a message: %s", self.name, reason)

    async def close(self, drain_timeout: float = 5.0) -> None:
        if self.outbox is not None:
            await self.outbox.drain(drain_timeout)
        self._closing = True
        if self.outbox is not None:
            self.outbox.cancel()
        if self.connection is not None:
            with contextlib.suppress(Exception):
                await self.connection.close()
