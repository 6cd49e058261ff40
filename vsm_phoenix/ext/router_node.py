"""A node that runs signed commands: the command router on a transport, end to end.

Theory of operation
-------------------
:class:`RouterNode` is a sans-IO node (:class:`~vsm_phoenix.protocol.node.Node`) that
composes a :class:`~vsm_phoenix.protocol.swim.SwimNode` (membership: who is alive, what
each member advertises -- capabilities and capability grants) and a
:class:`~vsm_phoenix.ext.router.CommandRouter` whose membership view is that SWIM node.
The same code runs on the simulator and, through :class:`RouterKind`, as an AMQP node
(``Cluster.connect(url, credentials, kind=RouterKind(...))``). There the runner hands
the node its roster book (:meth:`RouterNode.bind_roster`), so a roster installed live
(the ``roster`` control request) governs the router at once.

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
ClientRequest ReadDecisions     ``Deliver(router.decisions)``: the newest router decisions
Receive / timer / cmd swim.*    whatever the SWIM node returns
==============================  ===============================================================

*Running* a command: :meth:`CommandRouter.open` (at the event's ``now``), then the
route's handler on a copy of the node's application data (a ``dict[str, str]``). An
accepted command answers ``Deliver(router.accepted, {command, issuer, nonce, at,
result})`` after the ``Persist`` of the issuer's replay window and of every data key
it changed (persists before the answer, so a restart cannot accept the command
again); a refused one ``Deliver(router.refused, {error, reason, at})`` and changes
nothing. A handler that raises, returns what CBOR cannot carry or leaves a key or
value that is not a string answers ``router.refused`` with error
``handler:<class>``: its nonce is spent (persisted), the data are left as they were.
The router records every decision (:attr:`CommandRouter.decisions`, bounded, and
``on_decision``), a handler's failure as a second one
(:meth:`CommandRouter.handler_failed`). The default application
(:data:`DEFAULT_ROUTES`) is a small key-value map: ``kv.set`` / ``kv.delete`` for
writers, ``kv.get`` for readers, and ``job.claim`` for members holding the
authority-granted ``jobs`` capability, advertised through membership. Other
applications are a table of :class:`RouteSpec` (``routes=``; :func:`load_routes`
reads one named ``module:attribute``).

A ``router.command`` / ``router.result`` payload that does not decode raises
:class:`~vsm_phoenix.protocol.node.RemoteProtocolError` and changes nothing; a result
for no pending request (late, or never asked) is dropped.
"""

from __future__ import annotations

import inspect
import random
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Final

import attrs

from vsm_phoenix.crypto.identity import (
    ROLE_PEER,
    ROLE_READ,
    ROLE_WRITE,
    ROLES,
    Roster,
    RosterBook,
)
from vsm_phoenix.errors import InvalidArgument, TypeMismatch, VsmPhoenixError
from vsm_phoenix.ext.agents.grants import CapabilityGrant, GrantBook, check_capability
from vsm_phoenix.ext.router import (
    MAX_COMMAND_BYTES,
    Command,
    CommandRouter,
    Decision,
    check_command_name,
)
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
    "K_DECISIONS",
    "K_REFUSED",
    "MAX_DECISIONS_READ",
    "M_COMMAND",
    "M_RESULT",
    "ReadData",
    "ReadDecisions",
    "RouteCommand",
    "RouteSpec",
    "RouterKind",
    "RouterNode",
    "decision_record",
    "router_operations",
]

M_COMMAND: Final = "router.command"
M_RESULT: Final = "router.result"
K_ACCEPTED: Final = "router.accepted"
K_REFUSED: Final = "router.refused"
K_DATA: Final = "router.data"
K_DECISIONS: Final = "router.decisions"
#: The most decisions one :class:`ReadDecisions` answers.
MAX_DECISIONS_READ: Final = 1000
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


@attrs.frozen
class ReadDecisions:
    """Answer with the router's ``limit`` newest decisions, oldest first
    (:func:`decision_record` each)."""

    limit: int = 20


def decision_record(decision: Decision) -> dict[str, Any]:
    """A decision as a CBOR-encodable map (the fields of :class:`Decision`)."""
    return attrs.asdict(decision)


#: A handler: the node's data (mutable) and the authenticated command -> the answer.
Handler = Callable[[dict[str, str], Command], Any]


@attrs.frozen
class RouteSpec:
    """A command route: its handler, the roster role and the capability it needs.
    The handler is a plain (not ``async``) callable ``handler(data, command)``: it may
    change ``data`` (a ``dict[str, str]``) and returns the answer (CBOR-encodable)."""

    handler: Handler
    role: str = ROLE_WRITE
    capability: str | None = None

    def __attrs_post_init__(self) -> None:
        if not callable(self.handler):
            raise TypeMismatch("a route's handler must be callable")
        if inspect.iscoroutinefunction(self.handler) or inspect.iscoroutinefunction(
                type(self.handler).__call__):
            raise InvalidArgument("a RouterNode handler is a plain function: the node runs "
                                  "it inside a step, it cannot await")
        if self.role not in ROLES:
            raise InvalidArgument(f"a route's role is one of {sorted(ROLES)}")
        if self.capability is not None:
            check_capability(self.capability)


def _check_data(data: dict[Any, Any]) -> None:
    """What a handler leaves must persist and reload as it is: str keys and values."""
    for k, v in data.items():
        if not isinstance(k, str) or not isinstance(v, str) or not 1 <= len(k) <= _MAX_KEY:
            raise TypeMismatch(f"a handler left {str(k)[:64]!r} -> {type(v).__name__}: the "
                               f"data hold str keys (1..{_MAX_KEY}) and str values")


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


def _check_routes(routes: object) -> dict[str, RouteSpec]:
    if not isinstance(routes, Mapping):
        raise TypeMismatch("routes must be a mapping of command name to RouteSpec")
    checked: dict[str, RouteSpec] = {}
    for name, spec in routes.items():
        check_command_name(name)
        if not isinstance(spec, RouteSpec):
            raise TypeMismatch(f"route {name!r} must be a RouteSpec, not "
                               f"{type(spec).__name__}")
        checked[name] = spec
    if not checked:
        raise InvalidArgument("routes must name at least one command")
    return checked


class RouterNode:
    """See the module docstring. ``grants``: the authority-signed grants the node
    starts with (bytes or objects); more are learnt from membership. ``routes``: the
    application (default :data:`DEFAULT_ROUTES`). ``on_decision``: called with every
    decision the router records (an audit trail, e.g. a log line)."""

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
        on_decision: Callable[[Decision], None] | None = None,
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
        self.routes = _check_routes(DEFAULT_ROUTES if routes is None else routes)
        self.max_age_ms = max_age_ms
        self.max_skew_ms = max_skew_ms
        self.on_decision = on_decision
        self.data: dict[str, str] = {}
        self._replay = MemoryStorage()
        self.router = self._make_router()
        self._pending: dict[int, tuple[str, str, int]] = {}  # token -> (target, rid, at)
        self._next_token = 0

    def _make_router(self) -> CommandRouter:
        router = CommandRouter(self.roster, grants=self.grants, membership=self.swim,
                               storage=self._replay, max_age_ms=self.max_age_ms,
                               max_skew_ms=self.max_skew_ms, clock_ms=lambda: 0,
                               on_decision=self.on_decision)
        for name, spec in self.routes.items():
            router.register(name, _Unreachable(), role=spec.role, capability=spec.capability)
        return router

    @property
    def node_id(self) -> str:
        return self._id

    def bind_roster(self, book: RosterBook) -> None:
        """Trust ``book`` from now on -- the AMQP runner's roster book, which adopts the
        newer rosters a ``roster`` control request installs -- so a principal removed
        or re-keyed live is refused at once (the runner calls this when it takes the
        node). ``InvalidArgument`` for a book of another cluster."""
        if not isinstance(book, RosterBook):
            raise TypeMismatch("bind_roster needs a RosterBook")
        if book.cluster != self.roster.cluster:
            raise InvalidArgument(f"the roster book is for cluster {book.cluster!r}, not "
                                  f"{self.roster.cluster!r}")
        self.roster = book
        self.grants.roster = book
        self.router.roster = book

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
            if isinstance(event.payload, ReadDecisions):
                return [Deliver(K_DECISIONS, self._decisions(event.payload.limit),
                                event.request_id)]
            return self.swim.step(event)
        if isinstance(event, TimerFired):
            return self.swim.step(event)
        raise LocalProtocolError(f"unknown event {event!r}")

    def _decisions(self, limit: object) -> list[dict[str, Any]]:
        if type(limit) is not int or not 1 <= limit <= MAX_DECISIONS_READ:
            raise LocalProtocolError(f"ReadDecisions.limit is an int in 1.."
                                     f"{MAX_DECISIONS_READ}")
        log = self.router.decisions
        return [decision_record(d) for d in list(log)[max(0, len(log) - limit):]]

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
            changed = sorted((k for k in set(before) | set(work)
                              if before.get(k) != work.get(k)), key=repr)
            _check_data({k: work[k] for k in changed if k in work})
        except Exception as exc:
            failed = self.router.handler_failed(cmd, exc, now_ms=now)
            answer: dict[str, Any] = {"error": failed.error, "reason": failed.reason,
                                      "at": self._id, "command": cmd.name,
                                      "nonce": cmd.nonce}
            kind = K_REFUSED
        else:
            self.data = work
            out += [Persist(_DATA + k, encode_cbor(work.get(k))) for k in changed]
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
def router_operations() -> dict[str, Any]:
    """The control operations of :class:`RouterKind` (no roster needed: ``vsm-phoenix
    ctl`` lists them beside the other kinds')."""
    from vsm_phoenix.ext.amqp.control import Operation, Param

    return {
        "command": Operation("command", ROLE_READ, "run a signed command (vsm-phoenix "
                             "command router) on this node or relay it to 'to'",
                             (Param("w", "WIRE", "the signed command"),
                              Param("to", "NODE", "the node that runs it", optional=True))),
        "data": Operation("data", ROLE_READ, "the router node's application data"),
        "decisions": Operation("decisions", ROLE_READ,
                               "the router's newest decisions (accepted or refused, why)",
                               (Param("limit", "LIMIT", "how many, newest last (default 20, at "
                                      f"most {MAX_DECISIONS_READ})", optional=True),)),
    }


class RouterKind:
    """:class:`RouterNode` as an AMQP node kind (see :mod:`vsm_phoenix.ext.amqp.kinds`).

    ``roster``: the cluster's roster (each node's router trusts it); ``grants``: the
    authority-signed grants every node starts with; ``capabilities``: what each node id
    advertises (capability names and grant advertisements); ``routes``: the application
    (default :data:`DEFAULT_ROUTES`); ``max_age_ms`` / ``max_skew_ms``: the freshness
    bounds; ``on_decision``: every router decision (``vsm-phoenix node`` logs them).
    Arguments are checked here, before any node is built.

    Operations: ``command`` (``w``: the signed command bytes, ``to``: the node that
    runs it) -- the ``read`` role is enough to carry one, since the command's own
    signature says who asks; its answer is the node's reply with ``decision``:
    ``accepted`` or ``refused`` added -- ``data`` (the application data) and
    ``decisions`` (``limit``: the newest decisions, oldest first). Status: members,
    the router's decision counts, the data size."""

    name = "router"

    def __init__(self, roster: Roster | RosterBook, *,
                 grants: Sequence[CapabilityGrant | bytes] = (),
                 capabilities: Mapping[str, Sequence[str]] | None = None,
                 routes: Mapping[str, RouteSpec] | None = None,
                 max_age_ms: int = 30_000,
                 max_skew_ms: int = 5_000,
                 period_ms: int = 300,
                 on_decision: Callable[[Decision], None] | None = None) -> None:
        if not isinstance(roster, Roster | RosterBook):
            raise TypeMismatch("roster must be a Roster or RosterBook")
        book = GrantBook(roster, authority_only=True)
        for g in grants:  # each verifies now (DecodeError, AuthenticationError, ...)
            book.add(g)
        self.roster = roster
        self.grants = list(grants)
        self.capabilities = dict(capabilities or {})
        self.routes = _check_routes(DEFAULT_ROUTES if routes is None else routes)
        self.max_age_ms = max_age_ms
        self.max_skew_ms = max_skew_ms
        self.period_ms = period_ms
        self.on_decision = on_decision
        CommandRouter(roster, max_age_ms=max_age_ms, max_skew_ms=max_skew_ms)  # validates
        self.operations = router_operations()

    def build(self, node_id: str, rng: random.Random, peers: Sequence[str]) -> Node:
        swim = SwimConfig(seeds=tuple(peers), period_ms=self.period_ms,
                          ping_timeout_ms=max(1, self.period_ms // 3),
                          join_retry_ms=self.period_ms,
                          reconnect_interval_ms=4 * self.period_ms)
        return RouterNode(node_id, rng, self.roster, swim=swim,
                          capabilities=self.capabilities.get(node_id, ()),
                          grants=self.grants, routes=self.routes,
                          max_age_ms=self.max_age_ms, max_skew_ms=self.max_skew_ms,
                          on_decision=self.on_decision)

    def decode_request(self, node: Node, raw: Mapping[str, Any]) -> Any:
        op = raw.get("op")
        if op == "data":
            return ReadData()
        if op == "decisions":
            limit = raw.get("limit", 20)
            if isinstance(limit, str) and limit.isdecimal() and len(limit) <= 4:
                limit = int(limit)  # the command line sends text
            if type(limit) is not int or not 1 <= limit <= MAX_DECISIONS_READ:
                raise InvalidArgument(f"decisions: 'limit' is an int in "
                                      f"1..{MAX_DECISIONS_READ}")
            return ReadDecisions(limit)
        if op != "command":
            raise InvalidArgument(f"unknown router operation {str(op)[:64]!r} "
                                  "(have: command, data, decisions)")
        wire, to = raw.get("w"), raw.get("to")
        if not isinstance(wire, bytes) or len(wire) > MAX_COMMAND_BYTES:
            raise InvalidArgument(f"command needs 'w': the signed command bytes "
                                  f"(at most {MAX_COMMAND_BYTES})")
        if to is not None and not isinstance(to, str):
            raise InvalidArgument("'to' must be a node id")
        return RouteCommand(wire, to)

    def encode_reply(self, deliver: Deliver) -> Any:
        from vsm_phoenix.ext.amqp.kinds import plain

        value = plain(deliver.payload)
        if deliver.kind in (K_ACCEPTED, K_REFUSED) and isinstance(value, dict):
            value["decision"] = "accepted" if deliver.kind == K_ACCEPTED else "refused"
        return value

    def status(self, node: Node) -> dict[str, Any]:
        assert isinstance(node, RouterNode)
        return {"members": node.swim.alive_members(), "decisions": dict(node.router.counts),
                "keys": len(node.data)}
