"""A node that runs signed commands: the command router on a transport, end to end.

Theory of operation
-------------------
:class:`RouterNode` is a sans-IO node (:class:`~vsm_phoenix.protocol.node.Node`) that
composes a :class:`~vsm_phoenix.protocol.swim.SwimNode` (membership: who is alive, what
each member advertises -- capabilities and capability grants) and a
:class:`~vsm_phoenix.ext.router.CommandRouter` whose membership view is that SWIM node.
The same code runs on the simulator and, through :class:`RouterKind`, as an AMQP node
(``Cluster.connect(url, credentials, kind=RouterKind(...))``).

A signed command (:func:`~vsm_phoenix.ext.router.sign_command`) is carried as opaque
bytes: the client hands it to any node in a :class:`RouteCommand`, naming the node that
should run it (``to``); a node that is not the target forwards the bytes unchanged in a
``router.command`` message and relays the answer back. Only the target verifies and
runs the command, so the issuer's signature, roles, grant, freshness and nonce are
checked where the effect happens -- a relay (or the client that carries the bytes, which
needs only the ``read`` role on the control plane) can neither forge, alter nor replay
a command.

==============================  ===============================================================
event                           effects
==============================  ===============================================================
Start / Restart                 SWIM's boot; Restart reloads the application data and the
                                replay windows from ``router/...`` persists
ClientRequest RouteCommand      target here: run it (below); else ``Send(router.command)``
(to: here or another node)      to the target, the request remembered by a token
Receive router.command          run it, ``Send(router.result)`` back to the sender
Receive router.result           ``Deliver`` of the relayed answer to the waiting request
ClientRequest ReadData          ``Deliver(router.data)``: the application data
Receive / timer / cmd swim.*    whatever the SWIM node returns
==============================  ===============================================================

*Running* a command: :meth:`CommandRouter.open` (at the event's ``now``), then the
route's handler on the node's application data. An accepted command answers
``Deliver(router.accepted, {command, issuer, nonce, at, result})`` after the
``Persist`` of the issuer's replay window and of every data key it changed (persists
before the answer, so a restart cannot accept the command again); a refused one
``Deliver(router.refused, {error, reason, at})`` and changes nothing (the router
records the decision either way). The default application (:data:`DEFAULT_ROUTES`)
is a small key-value map: ``kv.set`` / ``kv.delete`` for writers, ``kv.get`` for
readers, and ``job.claim`` for members holding the authority-granted ``jobs``
capability, advertised through membership.

A ``router.command`` / ``router.result`` payload that does not decode raises
:class:`~vsm_phoenix.protocol.node.RemoteProtocolError` and changes nothing; a result
for no pending request (late, or never asked) is dropped.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Final

import attrs

from vsm_phoenix.crypto.identity import (
    ROLE_PEER,
    ROLE_READ,
    ROLE_WRITE,
    Roster,
    RosterBook,
)
from vsm_phoenix.errors import InvalidArgument, TypeMismatch, VsmPhoenixError
from vsm_phoenix.ext.agents.grants import CapabilityGrant, GrantBook
from vsm_phoenix.ext.router import MAX_COMMAND_BYTES, Command, CommandRouter
from vsm_phoenix.protocol.envelope import Envelope, decode_cbor, encode_cbor
from vsm_phoenix.protocol.kit import Messenger, decode_payload
from vsm_phoenix.protocol.node import (
    ClientRequest,
    Deliver,
    Effect,
    Event,
    LocalProtocolError,
    Node,
    Persist,
    Receive,
    RemoteProtocolError,
    Restart,
    Start,
    TimerFired,
)
from vsm_phoenix.protocol.swim import SwimConfig, SwimNode
from vsm_phoenix.storage import MemoryStorage

__all__ = [
    "DEFAULT_ROUTES",
    "K_ACCEPTED",
    "K_DATA",
    "K_REFUSED",
    "M_COMMAND",
    "M_RESULT",
    "ReadData",
    "RouteCommand",
    "RouteSpec",
    "RouterKind",
    "RouterNode",
]

M_COMMAND: Final = "router.command"
M_RESULT: Final = "router.result"
K_ACCEPTED: Final = "router.accepted"
K_REFUSED: Final = "router.refused"
K_DATA: Final = "router.data"
_DATA: Final = "router/data/"
_REPLAY_NS: Final = "router/replay"
_MAX_PENDING: Final = 1024
_PENDING_TTL_MS: Final = 60_000
_MAX_KEY: Final = 256
_MAX_VALUE: Final = 64 * 1024


@attrs.frozen
class RouteCommand:
    """Run the signed command ``wire`` on node ``to`` (``None``: the receiving node)."""

    wire: bytes
    to: str | None = None


@attrs.frozen
class ReadData:
    """Answer with the node's application data."""


#: A handler: the node's data (mutable) and the authenticated command -> the answer.
Handler = Callable[[dict[str, str], Command], Any]


@attrs.frozen
class RouteSpec:
    """A command route: its handler, the roster role and the capability it needs."""

    handler: Handler
    role: str = ROLE_WRITE
    capability: str | None = None


def _key(cmd: Command) -> str:
    k = cmd.args.get("k")
    if not isinstance(k, str) or not 1 <= len(k) <= _MAX_KEY:
        raise InvalidArgument(f"{cmd.name} needs a key 'k' of 1..{_MAX_KEY} characters")
    return k


def _kv_set(data: dict[str, str], cmd: Command) -> None:
    v = cmd.args.get("v")
    if not isinstance(v, str) or len(v) > _MAX_VALUE:
        raise InvalidArgument(f"kv.set needs a string value 'v' of at most {_MAX_VALUE}")
    data[_key(cmd)] = v


def _kv_get(data: dict[str, str], cmd: Command) -> str | None:
    return data.get(_key(cmd))


def _kv_delete(data: dict[str, str], cmd: Command) -> bool:
    return data.pop(_key(cmd), None) is not None


def _job_claim(data: dict[str, str], cmd: Command) -> str:
    job = cmd.args.get("job")
    if not isinstance(job, str) or not 1 <= len(job) <= _MAX_KEY:
        raise InvalidArgument(f"job.claim needs a job id of 1..{_MAX_KEY} characters")
    return data.setdefault(f"job/{job}", cmd.principal)


#: The demo application: a key-value map, and jobs claimed by granted members.
DEFAULT_ROUTES: Final[Mapping[str, RouteSpec]] = {
    "kv.set": RouteSpec(_kv_set, ROLE_WRITE),
    "kv.delete": RouteSpec(_kv_delete, ROLE_WRITE),
    "kv.get": RouteSpec(_kv_get, ROLE_READ),
    "job.claim": RouteSpec(_job_claim, ROLE_PEER, "jobs"),
}


class _Unreachable:
    """The router's handlers are run by the node, synchronously (never awaited)."""

    async def __call__(self, cmd: Command) -> None:  # pragma: no cover
        raise LocalProtocolError("RouterNode runs its handlers itself")


class RouterNode:
    """See the module docstring. ``grants``: the authority-signed grants the node
    starts with (bytes or objects); more are learnt from membership."""

    def __init__(
        self,
        node_id: str,
        rng: random.Random,
        roster: Roster | RosterBook,
        *,
        swim: SwimConfig | None = None,
        capabilities: Iterable[str] = (),
        grants: Iterable[CapabilityGrant | bytes] = (),
        routes: Mapping[str, RouteSpec] | None = None,
        max_age_ms: int = 30_000,
        max_skew_ms: int = 5_000,
    ) -> None:
        self._id = node_id
        self.rng = rng
        self.roster = roster
        self.msg = Messenger(node_id, rng)
        self.swim = SwimNode(node_id, rng, swim or SwimConfig(), messenger=self.msg,
                             capabilities=tuple(capabilities))
        self.grants = GrantBook(roster, authority_only=True)
        for g in grants:
            self.grants.add(g)
        self.routes = dict(DEFAULT_ROUTES if routes is None else routes)
        self.max_age_ms = max_age_ms
        self.max_skew_ms = max_skew_ms
        self.data: dict[str, str] = {}
        self._replay = MemoryStorage()
        self.router = self._make_router()
        self._pending: dict[int, tuple[str, str, int]] = {}  # token -> (target, rid, at)
        self._next_token = 0

    def _make_router(self) -> CommandRouter:
        router = CommandRouter(self.roster, grants=self.grants, membership=self.swim,
                               storage=self._replay, max_age_ms=self.max_age_ms,
                               max_skew_ms=self.max_skew_ms, clock_ms=lambda: 0)
        for name, spec in self.routes.items():
            router.register(name, _Unreachable(), role=spec.role, capability=spec.capability)
        return router

    @property
    def node_id(self) -> str:
        return self._id

    def state_key(self) -> tuple[Any, ...]:
        guard = self.router.guard
        return (tuple(sorted(self.data.items())),
                tuple(sorted((s, guard.highest(s)) for s in guard.senders())),
                tuple(sorted(self._pending)))

    # -- events ---------------------------------------------------------------------------
    def step(self, event: Event) -> list[Effect]:
        if isinstance(event, Start | Restart):
            if isinstance(event, Restart):
                self._reload(event.persisted)
            return self.swim.step(event)
        if isinstance(event, Receive):
            kind = event.envelope.type
            if kind == M_COMMAND:
                return self._on_command(event.now, event.envelope)
            if kind == M_RESULT:
                return self._on_result(event.now, event.envelope)
            return self.swim.step(event)
        if isinstance(event, ClientRequest):
            if isinstance(event.payload, RouteCommand):
                return self._route(event.now, event.payload, event.request_id)
            if isinstance(event.payload, ReadData):
                return [Deliver(K_DATA, dict(self.data), event.request_id)]
            return self.swim.step(event)
        if isinstance(event, TimerFired):
            return self.swim.step(event)
        raise LocalProtocolError(f"unknown event {event!r}")

    def _reload(self, persisted: Mapping[str, bytes]) -> None:
        data: dict[str, str] = {}
        replay = MemoryStorage()
        for key, raw in persisted.items():
            if key.startswith(_DATA):
                value = decode_cbor(raw)
                if isinstance(value, str):
                    data[key[len(_DATA):]] = value
            elif key.startswith(_REPLAY_NS + "/"):
                replay.put(key, raw)
        self.data = data
        self._replay = replay
        self.router = self._make_router()

    # -- running a command ----------------------------------------------------------------
    def run(self, now: int, wire: bytes) -> tuple[list[Effect], str, dict[str, Any]]:
        """Open and run ``wire`` here: (persists, reply kind, reply payload)."""
        try:
            cmd = self.router.open(wire, now_ms=now)
        except VsmPhoenixError as exc:
            return [], K_REFUSED, {"error": type(exc).__name__, "reason": str(exc)[:300],
                                   "at": self._id}
        spec = self.routes[cmd.name]
        before = dict(self.data)
        work = dict(self.data)
        out: list[Effect] = []
        try:
            result = spec.handler(work, cmd)
            encode_cbor(result)  # the answer must travel
        except Exception as exc:
            answer: dict[str, Any] = {"error": f"handler:{type(exc).__name__}",
                                      "reason": str(exc)[:300], "at": self._id,
                                      "command": cmd.name, "nonce": cmd.nonce}
            kind = K_REFUSED
        else:
            self.data = work
            for k in sorted(set(before) | set(work)):
                if before.get(k) != work.get(k):
                    out.append(Persist(_DATA + k, encode_cbor(work.get(k))))
            answer = {"command": cmd.name, "issuer": cmd.issuer, "nonce": cmd.nonce,
                      "at": self._id, "result": result}
            kind = K_ACCEPTED
        # the nonce is spent either way: persist the issuer's window before answering
        record_key = f"{_REPLAY_NS}/{cmd.issuer}"
        record = self._replay.get(record_key)
        if record is not None:
            out.insert(0, Persist(record_key, record))
        return out, kind, answer

    def _route(self, now: int, req: RouteCommand, rid: str) -> list[Effect]:
        if not isinstance(req.wire, bytes) or len(req.wire) > MAX_COMMAND_BYTES:
            raise LocalProtocolError(f"a command is at most {MAX_COMMAND_BYTES} bytes")
        if req.to is None or req.to == self._id:
            effects, kind, answer = self.run(now, req.wire)
            return [*effects, Deliver(kind, answer, rid)]
        if self.swim.member(req.to) is None:
            return [Deliver(K_REFUSED, {"error": "Unreachable", "at": self._id,
                                        "reason": f"{req.to!r} is not a member"}, rid)]
        self._expire(now)
        if len(self._pending) >= _MAX_PENDING:
            return [Deliver(K_REFUSED, {"error": "Busy", "at": self._id,
                                        "reason": "too many relayed commands in flight"},
                            rid)]
        self._next_token += 1
        self._pending[self._next_token] = (req.to, rid, now)
        return [self.msg.send(now, req.to, M_COMMAND, {"t": self._next_token,
                                                       "w": req.wire})]

    def _expire(self, now: int) -> None:
        for token, (_, _, at) in list(self._pending.items()):
            if now - at > _PENDING_TTL_MS:
                del self._pending[token]

    def _check_envelope(self, now: int, env: Envelope) -> None:
        """What :meth:`Messenger.accept` would refuse, before anything changes."""
        if env.recipient not in (None, self._id) or env.sender == self._id:
            raise RemoteProtocolError(f"{env.type} from {env.sender}: misaddressed")
        if env.timestamp[0] > max(now, 0) + self.msg.clock.max_drift_ms:
            raise RemoteProtocolError(f"{env.type} from {env.sender}: clock too far ahead")

    def _on_command(self, now: int, env: Envelope) -> list[Effect]:
        body = decode_payload(env, dict)
        token, wire = body.get("t"), body.get("w")
        if (set(body) != {"t", "w"} or type(token) is not int or not 0 < token < 2**63
                or not isinstance(wire, bytes) or len(wire) > MAX_COMMAND_BYTES):
            raise RemoteProtocolError(f"{M_COMMAND} from {env.sender}: bad payload")
        self._check_envelope(now, env)
        self.msg.accept(now, env)
        effects, kind, answer = self.run(now, wire)
        return [*effects, self.msg.send(now, env.sender, M_RESULT,
                                        {"t": token, "k": kind, "a": answer})]

    def _on_result(self, now: int, env: Envelope) -> list[Effect]:
        body = decode_payload(env, dict)
        token, kind, answer = body.get("t"), body.get("k"), body.get("a")
        if (set(body) != {"t", "k", "a"} or type(token) is not int
                or kind not in (K_ACCEPTED, K_REFUSED) or not isinstance(answer, dict)):
            raise RemoteProtocolError(f"{M_RESULT} from {env.sender}: bad payload")
        self._check_envelope(now, env)
        pending = self._pending.get(token)
        if pending is None or pending[0] != env.sender:
            return []  # late (expired) or never asked of this sender
        self.msg.accept(now, env)
        del self._pending[token]
        return [Deliver(kind, answer, pending[1])]


# -- the AMQP node kind --------------------------------------------------------------------
class RouterKind:
    """:class:`RouterNode` as an AMQP node kind (see :mod:`vsm_phoenix.ext.amqp.kinds`).

    ``roster``: the cluster's roster (each node's router trusts it); ``grants``: the
    authority-signed grants every node starts with; ``capabilities``: what each node id
    advertises (capability names and grant advertisements). Operations: ``command``
    (``w``: the signed command bytes, ``to``: the node that runs it) -- the ``read``
    role is enough to carry one, since the command's own signature says who asks --
    and ``data`` (the application data). Status: members, the router's decision
    counts, the data size."""

    name = "router"

    def __init__(self, roster: Roster | RosterBook, *,
                 grants: Sequence[CapabilityGrant | bytes] = (),
                 capabilities: Mapping[str, Sequence[str]] | None = None,
                 period_ms: int = 300) -> None:
        from vsm_phoenix.ext.amqp.control import Operation, Param

        if not isinstance(roster, Roster | RosterBook):
            raise TypeMismatch("roster must be a Roster or RosterBook")
        self.roster = roster
        self.grants = list(grants)
        self.capabilities = dict(capabilities or {})
        self.period_ms = period_ms
        self.operations = {
            "command": Operation("command", ROLE_READ, "run a signed command (vsm-phoenix "
                                 "command router) on this node or relay it to 'to'",
                                 (Param("w", "WIRE", "the signed command"),
                                  Param("to", "NODE", "the node that runs it",
                                        optional=True))),
            "data": Operation("data", ROLE_READ, "the node's application data"),
        }

    def build(self, node_id: str, rng: random.Random, peers: Sequence[str]) -> Node:
        swim = SwimConfig(seeds=tuple(peers), period_ms=self.period_ms,
                          ping_timeout_ms=max(1, self.period_ms // 3),
                          join_retry_ms=self.period_ms,
                          reconnect_interval_ms=4 * self.period_ms)
        return RouterNode(node_id, rng, self.roster, swim=swim,
                          capabilities=self.capabilities.get(node_id, ()),
                          grants=self.grants)

    def decode_request(self, node: Node, raw: Mapping[str, Any]) -> Any:
        op = raw.get("op")
        if op == "data":
            return ReadData()
        if op != "command":
            raise InvalidArgument(f"unknown router operation {str(op)[:64]!r} "
                                  "(have: command, data)")
        wire, to = raw.get("w"), raw.get("to")
        if not isinstance(wire, bytes) or len(wire) > MAX_COMMAND_BYTES:
            raise InvalidArgument(f"command needs 'w': the signed command bytes "
                                  f"(at most {MAX_COMMAND_BYTES})")
        if to is not None and not isinstance(to, str):
            raise InvalidArgument("'to' must be a node id")
        return RouteCommand(wire, to)

    def encode_reply(self, deliver: Deliver) -> Any:
        from vsm_phoenix.ext.amqp.kinds import plain

        return plain(deliver.payload)

    def status(self, node: Node) -> dict[str, Any]:
        assert isinstance(node, RouterNode)
        return {"members": node.swim.alive_members(), "decisions": dict(node.router.counts),
                "keys": len(node.data)}
