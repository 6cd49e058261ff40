"""The node runner: any sans-IO node over RabbitMQ (asyncio, aio-pika).

Theory of operation
-------------------
An :class:`AmqpNode` owns one protocol node (:class:`~vsm_phoenix.protocol.node.Node`)
and carries out its effects against a broker, a SQLite store and the event loop:

=================  ================================================================
effect             carried out as
=================  ================================================================
``Persist``        a write to the node's :class:`~vsm_phoenix.storage.Storage` under
                   ``node/<key>``, committed *before* any later effect runs
``Send``           the envelope appended to the outbox; the envelopes of one publish
                   are sealed together by the endpoint's channel (one frame) and
                   signed by the node's identity (one signature)
``SetTimer`` /     ``loop.call_later`` / its cancellation (one handle per name)
``CancelTimer``
``Deliver``        the reply of a pending request (in-process or over the control
                   plane), otherwise the ``on_deliver`` callback
=================  ================================================================

Incoming bodies are processed in arrival order, several at a time in one storage
transaction (group commit): authenticate the body (roster + signature), open each frame
(sealed sender = the signer; this records the sender's sequence number), check the
signer's role, step the node, write its ``Persist`` effects, commit -- and only then
carry out the other effects and ack the group (one cumulative ack). A crash before the
commit loses nothing: the broker redelivers, and the replay record was rolled back with
the state.

An ``ENVELOPES`` frame (a batch of envelopes, sealed as one) is checked once: one
AES-GCM open, one replay record, one role check, one canonical-form check and
column-wise validation of the whole batch
(:func:`~vsm_phoenix.protocol.envelope_batch.decode_envelopes`); its envelopes take the
frame's sealed sender and address, and are stepped in order with one clock reading.
The node refusing one of them fails that envelope only (``protocol``); a redelivered
batch is one duplicate. Single ``ENVELOPE`` frames (one envelope with its header in
the sealed header) are still accepted.

Roles (from the roster): protocol envelopes need ``peer``; a control request needs the
role its operation names in the control table (:mod:`vsm_phoenix.ext.amqp.control`:
``read`` for queries, ``write`` for state changes, ``admin`` for ``stop``,
``reset-replay`` and ``roster``; a ``peer`` may ask for queries). A refused request is
answered with a ``PermissionDenied`` error reply, not executed.

Dead letters: a body that does not authenticate is dead-lettered once, whole, with its
reason (``decode``, ``authentication``), whatever it claims to contain; a body whose
frames fail is dead-lettered once with the first reason and the number of failed frames
(``x-vsm-failures``). Reasons for frames: ``decode``, ``authentication``,
``permission``, ``protocol`` (the node refused an authentic envelope), ``too-old``,
``stale``, ``future``, ``jump`` (replay-window verdicts other than a duplicate),
``node-error``. Exact duplicates -- at-least-once redeliveries -- are dropped and
counted. Log lines for dead letters are rate-limited per reason.

Fencing: one process per node id. The command line takes an exclusive lock on the
node's data directory; the adapter consumes its queue as the *exclusive* consumer, so a
second process for the same id (even on another machine) fails to start with
:class:`NodeFenced` instead of splitting the node's traffic.

Restart: on start the adapter gives the node ``Restart(persisted)`` (every
``node/<key>`` it wrote) when its store says it booted before, else ``Start``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections import deque
from collections.abc import Callable
from itertools import repeat
from typing import Any, Final

import aio_pika
import aiormq
import attrs

from vsm_phoenix.crypto.batch import OpenedBatch
from vsm_phoenix.crypto.credentials import Credentials
from vsm_phoenix.crypto.identity import ROLE_PEER
from vsm_phoenix.errors import (
    AuthenticationError,
    DecodeError,
    InvalidArgument,
    KeyExpiredError,
    PermissionDenied,
    ReplayError,
    VsmPhoenixError,
)
from vsm_phoenix.ext.amqp.control import (
    CTL_REPLY,
    CTL_REQUEST,
    ControlCodec,
    may_ask,
    needed_role,
)
from vsm_phoenix.ext.amqp.endpoint import (
    ENVELOPE,
    ENVELOPES,
    AmqpConfig,
    Endpoint,
    classify,
)
from vsm_phoenix.ext.amqp.topology import unword
from vsm_phoenix.protocol import _fill
from vsm_phoenix.protocol.envelope import Envelope, decode_cbor, encode_cbor
from vsm_phoenix.protocol.envelope_batch import decode_envelopes
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
from vsm_phoenix.storage import MemoryStorage, Storage

__all__ = ["ENVELOPE", "ENVELOPES", "AmqpNode", "NodeFenced"]

log = logging.getLogger("vsm_phoenix.ext.amqp")

MAX_PENDING_CONTROL: Final = 10_000
_NODE_PREFIX: Final = "node/"
_BOOT_KEY: Final = "runner/boots"
_RECEIVE: Final = _fill.Layout(Receive, ("now", "envelope"))


class NodeFenced(VsmPhoenixError, RuntimeError):
    """Another process already runs this node id (its queue has an exclusive consumer,
    or its data directory is locked)."""


class _Rejected(Exception):
    """The node refused an authentic envelope (its ``DecodeError``)."""


@attrs.define
class _Incoming:
    """The outcome of processing one AMQP message inside the group transaction."""

    message: aio_pika.abc.AbstractIncomingMessage
    effects: list[Effect] = attrs.field(factory=list)
    replies: list[tuple[str, str, str, Any, bool]] = attrs.field(factory=list)
    dead: tuple[str, str, int] | None = None  # (reason, error, failed frames)


class AmqpNode:
    """Runs ``node`` against the broker (see the module docstring).

    ``credentials`` are the node's keyset, identity (its principal must be the node id)
    and roster. ``storage`` holds the node's persisted keys (``node/...``), the channel's
    sequence counter, replay windows, key usage and the adopted roster; give it a
    :class:`~vsm_phoenix.storage.SQLiteStorage` for crash-restart. ``codec`` enables
    the control plane; ``on_deliver`` gets every ``Deliver`` that answers no request.
    """

    def __init__(
        self,
        node: Node,
        *,
        credentials: Credentials,
        storage: Storage | None = None,
        config: AmqpConfig | None = None,
        codec: ControlCodec | None = None,
        on_deliver: Callable[[Deliver], None] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if credentials.principal != node.node_id:
            raise InvalidArgument(
                f"identity {credentials.principal!r} does not match node id {node.node_id!r}"
            )
        if not credentials.roster.members[node.node_id].allows(ROLE_PEER):
            raise InvalidArgument(f"the roster does not grant {node.node_id!r} the peer role")
        self.node = node
        self.node_id = node.node_id
        self.config = config or AmqpConfig()
        self.storage: Storage = storage if storage is not None else MemoryStorage()
        self.codec = codec
        self.on_deliver = on_deliver
        self._clock = clock
        self._ep = Endpoint(credentials, storage=self.storage, config=self.config, clock=clock)
        # a node that checks principals itself (a command router) trusts this runner's
        # roster, newer ones installed by a ``roster`` request included
        bind = getattr(node, "bind_roster", None)
        if callable(bind):
            bind(self._ep.book)
        self.topology = self._ep.topology
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
        self._keys: dict[tuple[str | None, str | None, str], str] = {}  # routing keys

    @property
    def roster_serial(self) -> int:
        return self._ep.book.roster.serial

    @property
    def sealing_error(self) -> str | None:
        """Why sealing stopped (the key usage limit was reached), else ``None``."""
        return self._ep.sealing_error

    # -- lifecycle -------------------------------------------------------------------------
    def now(self) -> int:
        return int(self._clock() * 1000)

    async def start(self) -> None:
        """Connect, declare the node's queue, boot the node, start consuming.
        :class:`NodeFenced` when another process consumes this node's queue."""
        ep = self._ep
        await ep.connect()
        assert ep.sub is not None and ep.connection is not None
        exchange = await ep.sub.get_exchange(self.topology.exchange)
        node_queue = await ep.sub.declare_queue(
            self.topology.node_queue(self.node_id), durable=True
        )
        for key in self.topology.bindings(self.node_id):
            await node_queue.bind(exchange, routing_key=key)
        try:
            await node_queue.consume(self._on_message, no_ack=False, exclusive=True)
        except aiormq.exceptions.ChannelAccessRefused:
            await ep.close(drain_timeout=0.5)
            raise NodeFenced(
                f"node {self.node_id!r} of cluster {self.topology.cluster!r} already runs "
                "elsewhere (its queue has an exclusive consumer)"
            ) from None
        self._processor = asyncio.get_running_loop().create_task(self._process_loop())
        self._boot()
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
        return self._persist(self.node.step(event))

    def _persist(self, effects: list[Effect]) -> list[Effect]:
        """Write the ``Persist`` effects among ``effects``; return the others."""
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
        send = self._send
        for effect in effects:
            if type(effect) is Send or isinstance(effect, Send):
                send(effect.envelope)
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
        cache = (env.recipient, env.topic, env.type)
        key = self._keys.get(cache)
        if key is None:
            topo = self.topology
            if env.recipient is not None:
                key = topo.direct_key(env.recipient, env.type)
            else:
                assert env.topic is not None
                key = topo.topic_key(env.topic, env.type)
            if len(self._keys) >= 4096:  # names are the node's own choice; still bounded
                self._keys.clear()
            self._keys[cache] = key
        outbox = self._ep.outbox
        if env.sender == self.node_id and outbox is not None:
            outbox.add(key, env)  # (what send_envelope does for our own envelopes)
        else:
            self._ep.send_envelope(key, env)

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
                await asyncio.sleep(self.config.retry_delay_s)

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
            if res.dead is not None:
                reason, error, failures = res.dead
                await self._ep.dead_letter(res.message.body, reason, error,
                                           res.message.routing_key or "", failures)
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

    def _recipient(self, routing_key: str) -> str:
        """Whom a frame that arrived under ``routing_key`` must be addressed to."""
        if routing_key.startswith("tp."):
            parts = routing_key.split(".")
            return "topic:" + unword(parts[1]) if len(parts) >= 3 else ""
        return self.node_id

    def _handle(self, m: aio_pika.abc.AbstractIncomingMessage) -> _Incoming:
        """Authenticate, decode and step one AMQP message (inside the transaction)."""
        res = _Incoming(m)
        self.stats["bodies_received"] += 1
        try:
            batch = self._ep.open_body(m.body)
        except (DecodeError, AuthenticationError) as exc:
            res.dead = (classify(exc), f"{type(exc).__name__}: {exc}", 1)
            return res
        recipient = self._recipient(m.routing_key or "")
        failures: list[tuple[str, str]] = []
        self.stats["frames_received"] += len(batch.frames)
        # Open every frame at once (one clock reading, the replay windows written at
        # the group's commit), then step the node with each in order.
        for opened in self._ep.channel.open_many(batch.frames, sender=batch.signer,
                                                 recipient=recipient):
            try:
                if isinstance(opened, Exception):
                    raise opened
                if opened[0]["content_type"] == ENVELOPES:
                    self._handle_envelopes(batch, opened[0], opened[1], recipient, res,
                                           failures)
                    continue
                self._handle_frame(batch, opened[0], opened[1], res)
            except _Rejected as exc:
                failures.append(("protocol", str(exc)))
            except ReplayError as exc:
                if exc.reason == "duplicate":
                    self.stats["duplicates"] += 1
                else:
                    failures.append((exc.reason, f"ReplayError: {exc}"))
            except (DecodeError, AuthenticationError, KeyExpiredError, PermissionDenied) as exc:
                failures.append((classify(exc), f"{type(exc).__name__}: {exc}"))
            except Exception as exc:  # a node bug must not stop the node
                self._ep.logs.log(logging.ERROR, "node-error", "%s: node failed on a message: %r",
                                  self.node_id, exc)
                failures.append(("node-error", f"{type(exc).__name__}: {exc}"))
        if failures:
            reason, error = failures[0]
            res.dead = (reason, error, len(failures))
        return res

    def _handle_envelopes(self, batch: OpenedBatch, header: dict[str, Any], payload: bytes,
                          recipient: str, res: _Incoming,
                          failures: list[tuple[str, str]]) -> None:
        """Step the node with every envelope of an authentic ``ENVELOPES`` frame (see the
        module doc). Errors of the whole frame are raised; an envelope the node refuses
        (or fails on) is appended to ``failures`` and the others go on."""
        if not batch.member.allows(ROLE_PEER):
            raise PermissionDenied(f"{batch.signer!r} may not send protocol messages")
        sender = header["sender"]
        if sender == self.node_id:
            return  # our own topic broadcast
        if recipient.startswith("topic:"):
            envs = decode_envelopes(payload, sender=sender, topic=recipient[6:])
        else:
            envs = decode_envelopes(payload, sender=sender, recipient=recipient)
        self.stats["frames_received"] += len(envs) - 1
        step = self.node.step
        effects = res.effects
        # Receive(now, env) for each, built column-wise (one clock reading; Receive has
        # no converter or validator)
        for event in _fill.build_many(_RECEIVE, len(envs), (repeat(self.now()), envs)):
            try:
                out = step(event)
                if out:
                    effects += self._persist(out)
            except DecodeError as exc:
                failures.append(("protocol", f"{type(exc).__name__}: {exc}"))
            except Exception as exc:  # a node bug must not stop the node
                self._ep.logs.log(logging.ERROR, "node-error", "%s: node failed on a message: "
                                  "%r", self.node_id, exc)
                failures.append(("node-error", f"{type(exc).__name__}: {exc}"))

    def _handle_frame(self, batch: OpenedBatch, header: dict[str, Any], payload: bytes,
                      res: _Incoming) -> None:
        sender = header["sender"]
        ctype = header["content_type"]
        if ctype == ENVELOPE:
            if not batch.member.allows(ROLE_PEER):
                raise PermissionDenied(f"{batch.signer!r} may not send protocol messages")
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
            if not isinstance(rid, str) or len(rid) > 128:
                raise DecodeError("control request without a short str rid")
            raw = decode_cbor(payload)
            self._control(sender, batch, rid, raw, res)
        else:
            raise DecodeError(f"unexpected content type {str(ctype)[:64]!r}")

    def _needed_role(self, op: object) -> str:
        return needed_role(op, self.codec.operations if self.codec is not None else {})

    def _control(self, client: str, batch: OpenedBatch, rid: str, raw: Any,
                 res: _Incoming) -> None:
        op = raw.get("op") if isinstance(raw, dict) else None
        needed = self._needed_role(op)
        if not may_ask(batch.member, needed):
            self.stats["refused"] += 1
            self._ep.logs.log(logging.WARNING, "refused", "%s: refused %r from %s (needs %s)",
                              self.node_id, str(op)[:64], client, needed)
            res.replies.append((client, rid, "error",
                                f"PermissionDenied: {op!r} needs the {needed!r} role", False))
            return
        if not isinstance(raw, dict) or not isinstance(op, str):
            res.replies.append((client, rid, "error",
                                "InvalidArgument: a control request is a map with a str 'op'",
                                False))
        elif op == "status":
            res.replies.append((client, rid, "status", self._status(), True))
        elif op == "stop":
            res.replies.append((client, rid, "stop", None, True))
            asyncio.get_running_loop().call_later(0.2, self.request_stop)
        elif op == "reset-replay":
            self._admin(client, rid, res, lambda: self._reset_replay(raw.get("sender")))
        elif op == "roster":
            self._admin(client, rid, res, lambda: self._adopt_roster(raw.get("roster")))
        elif self.codec is None:
            res.replies.append((client, rid, "error", "no control codec", False))
        else:
            local_rid = f"{client}/{rid}"
            try:
                payload = self.codec.decode_request(self.node, raw)
                if len(self._ctl_pending) >= MAX_PENDING_CONTROL:  # never answered: forget
                    del self._ctl_pending[next(iter(self._ctl_pending))]
                self._ctl_pending[local_rid] = (client, rid)
                res.effects += self._step_persist(ClientRequest(self.now(), local_rid, payload))
            except VsmPhoenixError as exc:
                self._ctl_pending.pop(local_rid, None)
                res.replies.append((client, rid, "error", f"{type(exc).__name__}: {exc}",
                                    False))

    @staticmethod
    def _admin(client: str, rid: str, res: _Incoming, action: Callable[[], Any]) -> None:
        try:
            res.replies.append((client, rid, "ok", action(), True))
        except VsmPhoenixError as exc:
            res.replies.append((client, rid, "error", f"{type(exc).__name__}: {exc}", False))

    def _reset_replay(self, sender: object) -> dict[str, Any]:
        if not isinstance(sender, str) or not sender:
            raise InvalidArgument("reset-replay needs a str 'sender'")
        guard = self._ep.channel.replay_guard
        before = guard.highest(sender)
        guard.reset(sender)
        log.warning("%s: replay window of %s reset by an operator (was at %d)",
                    self.node_id, sender, before)
        return {"sender": sender, "was": before}

    def _adopt_roster(self, raw: object) -> dict[str, Any]:
        if not isinstance(raw, bytes):
            raise InvalidArgument("roster needs the roster's bytes in 'roster'")
        adopted = self._ep.book.adopt(raw)
        return {"serial": self._ep.book.roster.serial, "adopted": adopted}

    def _status(self) -> dict[str, Any]:
        status: dict[str, Any] = {
            "node": self.node_id, "kind": getattr(self.codec, "name", None),
            "boot": self.booted_with, "stats": dict(self.stats),
            "roster": self._ep.book.roster.serial,
            "sealing": self._ep.sealing_error or "ok",
        }
        if self.codec is not None:
            status.update(self.codec.status(self.node))
        return status
