"""A signed command router: authenticate, authorise, de-duplicate, then dispatch.

Theory of operation
-------------------
A **command** is ``(name, args, issuer, issued_ms, nonce)``: what to do, its arguments
(a CBOR map), who asks, when (the issuer's clock, ms), and a per-issuer sequence number.
The issuer signs it with its Ed25519 :class:`~vsm_phoenix.crypto.identity.Identity`
(:func:`sign_command`, or a :class:`CommandSigner` that numbers the commands). Wire
format, canonical CBOR::

    wire   = [1, issuer, body, signature]
    body   = ["vsm-phoenix/command", name, args, issued_ms, nonce]
    signed = canonical CBOR ["vsm-phoenix/command", 1, cluster, issuer]  ||  body

The cluster and the issuer are signed, so a command cannot be replayed into another
cluster or passed off as another principal's, and the domain string keeps a command
signature from being valid as any other signed object (a batch, a roster, a grant).

:meth:`CommandRouter.open` checks, in this order, and stops at the first failure:

=====  ==========================================================  =====================
step   check                                                       refused with
=====  ==========================================================  =====================
1      size, strict parse of the outer array                       ``DecodeError``
2      the issuer is in the roster (a dict lookup)                 ``AuthenticationError``
3      one Ed25519 verification                                    ``AuthenticationError``
4      parse of the body                                           ``DecodeError``
5      freshness: ``issued_ms`` within ``max_age_ms`` in the past  ``ReplayError``
       and ``max_skew_ms`` in the future of the router's clock     (``stale``/``future``)
6      the nonce against the issuer's replay window (no change)    ``ReplayError``
7      a handler is registered for ``name``                        ``UnknownCommand``
8      the issuer's roster roles grant the handler's ``role``      ``PermissionDenied``
9      the issuer holds the handler's ``capability``: granted by   ``PermissionDenied``
       a :class:`~vsm_phoenix.ext.agents.grants.CapabilityGrant`
       signed by the cluster authority key, not expired at the
       router's clock, and, with a membership view, advertised
       there too
10     record the nonce (:class:`~vsm_phoenix.crypto.replay.ReplayGuard`)
=====  ==========================================================  =====================

Capabilities come from the cluster **authority** (the offline key that signs the
roster), never from a principal: the router takes only a
``GrantBook(roster, authority_only=True)``. Grants reach the router directly
(:meth:`GrantBook.add`) or **through membership**: a member advertises a grant as a
capability string (:func:`~vsm_phoenix.ext.agents.grants.advertisement`) and, with a
``membership`` view, the router adopts every valid grant its live members advertise
(:meth:`GrantBook.learn`, each string verified once) before checking. Revoking is a
newer grant with fewer capabilities (an operator's node may advertise it for everyone);
a grant's ``expires_ms`` bounds how long a revocation that has not arrived yet can be
ignored. A command whose issuer the roster no longer lists is refused at step 2.

So an input that does not authenticate costs one parse and at most one signature
check, and only an authentic, fresh, authorised command touches the replay window
(ARCHITECTURE.md: "replay windows record a message only after it authenticates").
:meth:`CommandRouter.dispatch` then awaits the handler. Every decision -- accepted,
or refused and why (the error class and its message) -- is appended to a bounded
:attr:`CommandRouter.decisions` log, counted in :attr:`CommandRouter.counts` (under
``accepted`` or the refusing error's class) and handed to ``on_decision``; a refused
input changes nothing else. A handler that raises is a second decision of the same
command (:meth:`CommandRouter.handler_failed`: ``accepted``, its nonce spent, counted
under ``handler:<class>``).

A signer without a durable counter (a command-line client) takes its nonces from the
clock (:func:`clock_nonce`); :func:`sign_command` refuses arguments the router's strict
parse would refuse (sets, integers beyond 64 bits, map keys that are not strings).
"""

from __future__ import annotations

import collections
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Final

import attrs

from vsm_phoenix import cbor
from vsm_phoenix.crypto.identity import (
    ROLE_WRITE,
    ROLES,
    Identity,
    Roster,
    RosterBook,
    check_principal,
    principal_of,
)
from vsm_phoenix.crypto.replay import ReplayGuard
from vsm_phoenix.crypto.signature import SIGNATURE_SIZE
from vsm_phoenix.errors import (
    AuthenticationError,
    DecodeError,
    InvalidArgument,
    PermissionDenied,
    ReplayError,
    TypeMismatch,
    VsmPhoenixError,
)
from vsm_phoenix.ext.agents.grants import GrantBook, check_capability
from vsm_phoenix.protocol.swim import SwimNode
from vsm_phoenix.storage import MemoryStorage, Storage

__all__ = [
    "AuthenticationError",
    "COMMAND_VERSION",
    "Command",
    "CommandRouter",
    "CommandSigner",
    "DecodeError",
    "Decision",
    "InvalidArgument",
    "MAX_COMMAND_BYTES",
    "PermissionDenied",
    "ReplayError",
    "TypeMismatch",
    "UnknownCommand",
    "check_command_name",
    "clock_nonce",
    "sign_command",
]

COMMAND_VERSION: Final = 1
#: The origin of :func:`clock_nonce`: 2024-01-01T00:00:00Z, in ms since the Unix epoch.
NONCE_EPOCH_MS: Final = 1_704_067_200_000
MAX_COMMAND_BYTES: Final = 256 * 1024
MAX_NAME: Final = 128
_DOMAIN: Final = "vsm-phoenix/command"
_MAX_U63: Final = 2**63 - 1

Handler = Callable[["Command"], Awaitable[Any]]


class UnknownCommand(InvalidArgument):
    """An authentic command names no registered handler."""

    def __init__(self, name: str) -> None:
        super().__init__(f"no handler for command {name[:MAX_NAME]!r}")
        self.name = name


def check_command_name(name: object) -> str:
    """A command name: 1..128 printable characters without whitespace
    (``TypeMismatch`` / ``InvalidArgument`` otherwise)."""
    if not isinstance(name, str):
        raise TypeMismatch("a command name is a str")
    if not 1 <= len(name) <= MAX_NAME or not name.isprintable() or any(
            c.isspace() for c in name):
        raise InvalidArgument(f"a command name is 1..{MAX_NAME} printable characters "
                              "without whitespace")
    return name


def _check_issuer(issuer: object) -> str:
    """A sender name: a principal id, or ``principal#session`` with a session of 1..128
    printable characters without whitespace or ``#``; :class:`DecodeError` otherwise."""
    if not isinstance(issuer, str):
        raise DecodeError("command issuer must be a string")
    principal, sep, session = issuer.partition("#")
    try:
        check_principal(principal)
        if sep:
            check_principal(session)
    except (TypeError, ValueError) as exc:
        raise DecodeError(f"command issuer: {exc}") from None
    return issuer


@attrs.frozen(kw_only=True)
class Command:
    """An authenticated command (what :meth:`CommandRouter.open` returns)."""

    name: str
    args: Mapping[str, Any]
    issuer: str  # the sender: a principal, or a session ``principal#session``
    issued_ms: int
    nonce: int

    @property
    def principal(self) -> str:
        return principal_of(self.issuer)


@attrs.frozen(kw_only=True)
class Decision:
    """One routing decision: ``accepted``, or refused with the error's class name in
    ``error`` and its message in ``reason``. Fields the input never got to say are
    ``None`` (an input that does not parse has no issuer)."""

    at_ms: int
    accepted: bool
    command: str | None
    issuer: str | None
    nonce: int | None
    error: str | None = None
    reason: str = ""


def _signed_bytes(cluster: str, issuer: str, body: bytes) -> bytes:
    return cbor.dumps([_DOMAIN, COMMAND_VERSION, cluster, issuer]) + body


def sign_command(identity: Identity, cluster: str, name: str, args: Mapping[str, Any], *,
                 issued_ms: int, nonce: int, issuer: str | None = None) -> bytes:
    """The wire bytes of a command signed by ``identity`` for ``cluster``. ``issuer``
    may name a session of the identity's principal (``ops#3f2a``)."""
    if not isinstance(identity, Identity):
        raise TypeMismatch("identity must be an Identity")
    if not isinstance(cluster, str):
        raise TypeMismatch("cluster must be a str")
    sender = identity.principal if issuer is None else issuer
    if not isinstance(sender, str) or principal_of(sender) != identity.principal:
        raise InvalidArgument("the issuer must be the identity's principal or a session of it")
    try:
        _check_issuer(sender)
    except DecodeError as exc:
        raise InvalidArgument(str(exc)) from None
    check_command_name(name)
    if not isinstance(args, Mapping) or not all(isinstance(k, str) for k in args):
        raise TypeMismatch("command args must be a map with str keys")
    for value, what in ((issued_ms, "issued_ms"), (nonce, "nonce")):
        if type(value) is not int or not 0 <= value <= _MAX_U63:
            raise InvalidArgument(f"{what} must be an int in 0..2**63-1")
    try:
        body = cbor.dumps([_DOMAIN, name, dict(args), issued_ms, nonce])
    except Exception as exc:  # cbor2 raises several types for unencodable values
        raise InvalidArgument(f"command args are not CBOR-encodable: "
                              f"{type(exc).__name__}") from None
    try:  # what the router's strict parse refuses (sets, bignums, int map keys) is
        cbor.loads(body, max_size=MAX_COMMAND_BYTES, wire=True)  # never signed
    except DecodeError as exc:
        raise InvalidArgument(f"command args would not parse at the router: {exc}") from None
    signature = identity.sign(_signed_bytes(cluster, sender, body))
    wire = cbor.dumps([COMMAND_VERSION, sender, body, signature])
    if len(wire) > MAX_COMMAND_BYTES:
        raise InvalidArgument(f"command of {len(wire)} bytes exceeds {MAX_COMMAND_BYTES}")
    return wire


def clock_nonce(now_ms: int) -> int:
    """A nonce from the clock, for a signer without a durable counter (a command-line
    client): milliseconds since :data:`NONCE_EPOCH_MS`. Its commands signed in order
    at most one per millisecond, or up to 1024 ms out of order, are accepted; a replay
    window refuses a first nonce more than 2**40 ahead
    (:data:`~vsm_phoenix.crypto.replay.MAX_JUMP`), which Unix-epoch milliseconds
    already are and these will be only after 2058."""
    if type(now_ms) is not int or now_ms < NONCE_EPOCH_MS:
        raise InvalidArgument("clock_nonce needs a time in ms after 2024-01-01")
    return now_ms - NONCE_EPOCH_MS


class CommandSigner:
    """Signs an issuer's commands with increasing nonces (a session's counter: give each
    process that has no durable counter its own ``session``)."""

    def __init__(self, identity: Identity, cluster: str, *, session: str | None = None,
                 clock_ms: Callable[[], int] | None = None, first_nonce: int = 1) -> None:
        self.identity = identity
        self.cluster = cluster
        self.issuer = identity.principal if session is None else \
            f"{identity.principal}#{session}"
        self.clock_ms = clock_ms or (lambda: int(time.time() * 1000))
        self.next_nonce = first_nonce

    def sign(self, name: str, args: Mapping[str, Any] | None = None) -> bytes:
        wire = sign_command(self.identity, self.cluster, name, args or {},
                            issued_ms=self.clock_ms(), nonce=self.next_nonce,
                            issuer=self.issuer)
        self.next_nonce += 1
        return wire


@attrs.frozen
class _Route:
    handler: Handler
    role: str
    capability: str | None


class CommandRouter:
    """Verifies signed commands and dispatches them to handlers (see the module doc).

    ``roster``: who is who (a :class:`Roster`, or a :class:`RosterBook` that may adopt
    newer rosters). ``grants``: authority-signed capability grants
    (``GrantBook(roster, authority_only=True)``); ``membership``: a SWIM node whose
    view must also advertise a capability and whose members' advertised grants are
    learnt (omit it to trust the book's grants alone).
    ``storage``: where the replay windows live (in memory by default; pass a
    :class:`~vsm_phoenix.storage.SQLiteStorage` so a restart cannot re-accept).
    ``on_decision``: called with every decision; if it raises, the decision stands and
    the failure is counted in :attr:`counts` under ``on_decision:<class>``.
    """

    def __init__(
        self,
        roster: Roster | RosterBook,
        *,
        grants: GrantBook | None = None,
        membership: SwimNode | None = None,
        storage: Storage | None = None,
        max_age_ms: int = 30_000,
        max_skew_ms: int = 5_000,
        replay_window: int = 1024,
        clock_ms: Callable[[], int] | None = None,
        decisions: int = 10_000,
        on_decision: Callable[[Decision], None] | None = None,
    ) -> None:
        if not isinstance(roster, Roster | RosterBook):
            raise TypeMismatch("roster must be a Roster or RosterBook")
        if grants is not None and not isinstance(grants, GrantBook):
            raise TypeMismatch("grants must be a GrantBook")
        if grants is not None and not grants.authority_only:
            raise InvalidArgument("the router honours only grants signed by the cluster "
                                  "authority: give it GrantBook(roster, authority_only=True)")
        if membership is not None and grants is None:
            raise InvalidArgument("a membership view needs grants to check against")
        for value, what in ((max_age_ms, "max_age_ms"), (max_skew_ms, "max_skew_ms"),
                            (decisions, "decisions")):
            if type(value) is not int or value < 0:
                raise InvalidArgument(f"{what} must be a non-negative int")
        self.roster = roster
        self.grants = grants
        self.membership = membership
        self.max_age_ms = max_age_ms
        self.max_skew_ms = max_skew_ms
        self.clock_ms = clock_ms or (lambda: int(time.time() * 1000))
        self.guard = ReplayGuard(storage if storage is not None else MemoryStorage(),
                                 size=replay_window, namespace="router/replay")
        self.decisions: collections.deque[Decision] = collections.deque(maxlen=decisions)
        self.counts: dict[str, int] = {}
        self.on_decision = on_decision
        self._routes: dict[str, _Route] = {}

    # -- configuration ------------------------------------------------------------------
    def register(self, name: str, handler: Handler, *, role: str = ROLE_WRITE,
                 capability: str | None = None) -> None:
        """Route command ``name`` to ``handler`` for issuers whose roster roles grant
        ``role`` and who hold ``capability`` (when given)."""
        check_command_name(name)
        if not callable(handler):
            raise TypeMismatch("handler must be callable")
        if role not in ROLES:
            raise InvalidArgument(f"role must be one of {sorted(ROLES)}")
        if capability is not None:
            check_capability(capability)
            if self.grants is None:
                raise InvalidArgument(f"command {name} needs a capability: give the router "
                                      "grants")
        self._routes[name] = _Route(handler, role, capability)

    @property
    def commands(self) -> list[str]:
        return sorted(self._routes)

    # -- the checks -----------------------------------------------------------------------
    def _cluster(self) -> str:
        return self.roster.cluster

    def _count(self, key: str) -> None:
        self.counts[key] = self.counts.get(key, 0) + 1

    def _decide(self, decision: Decision) -> None:
        self.decisions.append(decision)
        # a handler's failure counts under its error, not as a second acceptance
        self._count(decision.error or ("accepted" if decision.accepted else "refused"))
        if self.on_decision is not None:
            try:
                self.on_decision(decision)
            except Exception as exc:  # an audit hook never changes the decision: an
                # accepted command's nonce is already spent, and the caller must persist it
                self._count(f"on_decision:{type(exc).__name__}")

    def open(self, data: object, *, now_ms: int | None = None) -> Command:
        """Authenticate and authorise a command (steps 1-10 of the module doc); the
        command, its nonce now recorded. Raises the step's error otherwise, after
        recording the refusal."""
        now = self.clock_ms() if now_ms is None else now_ms
        seen: dict[str, Any] = {"command": None, "issuer": None, "nonce": None}
        try:
            cmd = self._open(data, now, seen)
        except VsmPhoenixError as exc:
            self._decide(Decision(at_ms=now, accepted=False, error=type(exc).__name__,
                                  reason=str(exc)[:300], **seen))
            raise
        self._decide(Decision(at_ms=now, accepted=True, command=cmd.name,
                              issuer=cmd.issuer, nonce=cmd.nonce))
        return cmd

    def _open(self, data: object, now: int, seen: dict[str, Any]) -> Command:
        outer = cbor.loads(data, max_size=MAX_COMMAND_BYTES, wire=True)
        if not (isinstance(outer, list) and len(outer) == 4):
            raise DecodeError("a command is [version, issuer, body, signature]")
        version, issuer, body, signature = outer
        if type(version) is not int or version != COMMAND_VERSION:
            raise DecodeError("unsupported command version")
        issuer = _check_issuer(issuer)
        if not isinstance(body, bytes) or not isinstance(signature, bytes):
            raise DecodeError("command body and signature must be byte strings")
        if len(signature) != SIGNATURE_SIZE:
            raise DecodeError("command signature has the wrong length")
        member = self.roster.member(issuer)  # AuthenticationError: unknown principal
        member.verify_key.verify(signature, _signed_bytes(self._cluster(), issuer, body))
        seen["issuer"] = issuer
        doc = cbor.loads(body, max_size=MAX_COMMAND_BYTES, wire=True)
        if not (isinstance(doc, list) and len(doc) == 5 and doc[0] == _DOMAIN):
            raise DecodeError("command body is [domain, name, args, issued_ms, nonce]")
        _, name, args, issued_ms, nonce = doc
        try:
            check_command_name(name)
        except (TypeError, ValueError) as exc:
            raise DecodeError(f"command name: {exc}") from None
        seen["command"] = name
        if not isinstance(args, dict) or not all(isinstance(k, str) for k in args):
            raise DecodeError("command args must be a map with str keys")
        for value, what in ((issued_ms, "issued_ms"), (nonce, "nonce")):
            if type(value) is not int or not 0 <= value <= _MAX_U63:
                raise DecodeError(f"command {what} must be an int in 0..2**63-1")
        seen["nonce"] = nonce
        if issued_ms < now - self.max_age_ms:
            raise ReplayError(f"command issued {now - issued_ms} ms ago, over "
                              f"{self.max_age_ms} ms", reason="stale")
        if issued_ms > now + self.max_skew_ms:
            raise ReplayError(f"command issued {issued_ms - now} ms in the future, over "
                              f"{self.max_skew_ms} ms", reason="future")
        self.guard.check(issuer, nonce, issued_ms)
        route = self._routes.get(name)
        if route is None:
            raise UnknownCommand(name)
        self.roster.require(issuer, route.role)  # PermissionDenied
        if route.capability is not None:
            self._require_capability(principal_of(issuer), name, route.capability, now)
        self.guard.accept(issuer, nonce, issued_ms)
        return Command(name=name, args=args, issuer=issuer, issued_ms=issued_ms, nonce=nonce)

    def _require_capability(self, principal: str, name: str, capability: str,
                            now: int) -> None:
        assert self.grants is not None
        if self.membership is not None:
            self.grants.learn(self.membership)
        grant = self.grants.grant(principal)
        if grant is None or capability not in grant.capabilities:
            raise PermissionDenied(f"{principal!r} is not granted capability "
                                   f"{capability!r} for command {name!r}")
        if grant.expired(now):
            raise PermissionDenied(f"{principal!r}'s grant (serial {grant.serial}) expired "
                                   f"{now - (grant.expires_ms or 0)} ms ago; command "
                                   f"{name!r} needs {capability!r}")
        if self.membership is not None and capability not in self.grants.effective(
                self.membership, principal, now_ms=now):
            raise PermissionDenied(f"{principal!r} does not advertise capability "
                                   f"{capability!r} in the membership view (granted, not "
                                   f"advertised) for command {name!r}")

    def handler_failed(self, cmd: Command, exc: BaseException, *,
                       now_ms: int | None = None) -> Decision:
        """Record that the handler of an accepted ``cmd`` raised ``exc``: a second
        decision, ``accepted`` (its nonce is spent) with ``error`` ``handler:<class>``.
        :meth:`dispatch` calls it; so does a caller that runs handlers itself
        (:class:`~vsm_phoenix.ext.router_node.RouterNode`)."""
        decision = Decision(at_ms=self.clock_ms() if now_ms is None else now_ms,
                            accepted=True, command=cmd.name, issuer=cmd.issuer,
                            nonce=cmd.nonce, error=f"handler:{type(exc).__name__}",
                            reason=str(exc)[:300])
        self._decide(decision)
        return decision

    async def dispatch(self, data: object, *, now_ms: int | None = None) -> Any:
        """:meth:`open` the command, then await its handler's answer. A handler that
        raises is recorded (:meth:`handler_failed`) and its error re-raised."""
        cmd = self.open(data, now_ms=now_ms)
        try:
            return await self._routes[cmd.name].handler(cmd)
        except Exception as exc:
            self.handler_failed(cmd, exc, now_ms=now_ms)
            raise
