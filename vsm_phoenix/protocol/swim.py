"""SWIM membership and discovery with Lifeguard suspicion and capability matching.

Theory of operation
-------------------
Each :class:`SwimNode` keeps a member table ``id -> (status, incarnation, metadata)``
with status ``alive``, ``suspect``, ``dead`` or ``left`` (Das, Gupta, Motivala 2002;
Dadgar et al., *Lifeguard*, 2018).

* **Join.** On ``Start`` a node sends ``swim.join`` (carrying its whole member table)
  to its seeds, retrying every ``join_retry_ms`` until it knows another alive member;
  the receiver merges the table and answers ``swim.join-ack`` with its own (push-pull).
  On ``Restart`` it also contacts the members it persisted, and it bumps its persisted
  incarnation so its fresh ``alive`` overrides any ``dead`` others hold about it.
* **Failure detection.** Every protocol period ``T`` the node pings the next member of
  a shuffled round-robin order (reshuffled each pass, joiners inserted at a random
  place). Without an ack after ``ping_timeout_ms`` it asks ``k = indirect_probes``
  random members to ``swim.ping-req`` the target. Without any ack by the end of the
  period the target becomes *suspect*, and we tell it so directly (one
  ``swim.gossip``), so it can refute before any timer runs out.
* **Local health (Lifeguard's LHA-Probe).** ``health`` (0 .. ``health_max``) rises by
  one when an ack arrives for a probe we had already given up on (our own messages
  are slow) and when we must refute a suspicion of ourselves; it falls by one when a
  probe is answered within its timeout. The period and the ping timeout are scaled by
  ``health + 1``, so a node whose messages are late probes less and waits longer
  instead of suspecting everyone it probes.
* **Suspicion (Lifeguard).** A suspect is declared dead when its suspicion timer
  expires. The timeout starts at ``S_max = beta * S_min`` with
  ``S_min = alpha * max(1, log10 n) * T`` and shrinks towards ``S_min`` as independent
  suspicions arrive: ``max(S_min, S_max - (S_max - S_min) * log(C + 1) / log(K + 1))``
  with ``C`` confirmations and ``K = indirect_probes``.
* **Refutation.** A member that hears it is suspect or dead at incarnation ``i``
  raises its incarnation above ``i`` and disseminates ``alive`` — piggybacked, and at
  once to ``indirect_probes`` random members (to every member while its health is
  degraded: a slow node probes rarely, so its piggybacks alone would come too late). Precedence:
  ``alive(j)`` beats ``alive/suspect(i)`` iff ``j > i`` and beats ``dead/left(i)`` iff
  ``j > i``; ``suspect(j)`` beats ``alive(i)`` iff ``j >= i`` and ``suspect(i)`` iff
  ``j > i``; ``dead(j)`` / ``left(j)`` beat ``alive/suspect(i)`` iff ``j >= i``.
* **Dissemination.** Every state change is queued and piggybacked (at most
  ``max_piggyback`` per message, least-sent first) on pings, acks and ping-reqs, each
  update at most ``lambda * ceil(log10(n + 1))`` times (``lambda = retransmit_mult``).
  A message to a member we suspect always carries that suspicion as well, so the
  member can refute it at once instead of waiting for gossip to reach it.
* **Merging tables (memberlist's mergeState).** Rows of a member table received in
  ``swim.join`` / ``swim.join-ack`` are *rumours*, not verdicts: a ``dead`` row about a
  member we believe alive only makes it *suspect* here — locally (not gossiped, not a
  Lifeguard confirmation, so its timer runs the full ``S_max``) — and we ask the member
  directly (``swim.gossip`` carrying the suspicion), which answers the asker with a
  higher incarnation at once. ``dead`` verdicts gossiped by a detector stay verdicts.
* **Push-pull.** Every ``push_pull_ms`` (30 s, as memberlist), and every period while
  the table is still gaining members, the node exchanges whole tables with one random
  alive member (``swim.join`` / ``swim.join-ack``): a cluster booted at once agrees in
  O(log n) periods instead of waiting for every ``alive`` to be piggybacked around.
* **Healing.** Every ``reconnect_interval_ms`` the node sends ``swim.join`` to one
  random *dead* (not left) member, so two sides of a healed partition find each other
  again: each sees itself declared dead in the other's table and refutes, and the
  other side's verdicts about our own side arrive as refutable suspicions.
* **Reaping and the table limit.** A dead or left member is forgotten
  ``reap_after_ms`` (default 1 h) after its verdict; a tombstone (id, incarnation) is
  kept as long again so stale rumours cannot resurrect it, while a real rejoin (higher
  incarnation) is admitted. A table holds at most ``max_members`` rows; a new member
  beyond that is refused explicitly: counted in ``members_refused`` and reported once
  per id as ``Deliver("swim.refused", {member, reason, limit, at})``.
* **Leave.** ``ClientRequest(Leave())`` marks the node ``left`` at a higher
  incarnation, sends that to every alive member and stops probing and answering.
* **Metadata and capabilities.** Each member advertises :class:`Metadata`: a set of
  capabilities as an :class:`~vsm_phoenix.crdt.ORSet` (so advertisements merge by
  join) and a load figure. The owner changes it with ``UpdateMetadata``, which bumps
  its incarnation. An advertisement belongs to its incarnation: receivers replace
  what they hold with the advertisement of a higher incarnation and never join
  advertisements, so dots an owner reuses after a restart cannot cancel anything.
  An owner that hears an advertisement of its own that differs from what it now
  advertises at the same (or a higher) incarnation — it restarted without its disk,
  or with other capabilities — outbids it with a higher incarnation. After a restart
  the owner advertises the capabilities it is constructed with.
  :meth:`SwimNode.match` returns the alive members (self included) that advertise
  every required capability, least loaded first.

Detection-time bound
--------------------
With round-robin target selection each alive member probes every other member at
least once in every ``2n - 2`` consecutive periods (the SWIM paper's time-bounded
completeness: worst case, a member is first in one permutation and last in the next).
A probe of a crashed member makes it suspect one period later, and the suspicion
timer never exceeds ``S_max``. Hence, with ``n`` members and no joins during the
window, **every alive member declares a member that crashed at time t dead by**::

    t + (2n - 1) * T + S_max + T          (the last T absorbs network latency)
      = t + (2n + beta * alpha * max(1, log10 n)) * T

which is :meth:`SwimConfig.detection_bound_ms` (for an observer at health 0; at
health ``h`` its period is ``(h + 1) * T``). For the defaults (``T = 1000 ms``,
``alpha = 4``, ``beta = 6``) and ``n = 5`` that is 34 s; gossip and confirmations make
typical detection far faster (see ``tests/protocol/test_swim.py``).

Persisted keys: ``swim/incarnation`` (CBOR int), ``swim/members`` (CBOR list of ids).
"""

from __future__ import annotations

import enum
import math
import random
from collections.abc import Iterable, Sequence
from typing import Any

import attrs

from vsm_phoenix.crdt import ORSet, decode
from vsm_phoenix.errors import DecodeError
from vsm_phoenix.protocol.envelope import Envelope, decode_cbor, encode_cbor
from vsm_phoenix.protocol.kit import Messenger, decode_payload
from vsm_phoenix.protocol.node import (
    CancelTimer,
    ClientRequest,
    Deliver,
    Effect,
    Event,
    LocalProtocolError,
    Persist,
    Receive,
    RemoteProtocolError,
    Restart,
    Send,
    SetTimer,
    Start,
    TimerFired,
)

__all__ = [
    "Leave",
    "Match",
    "MemberInfo",
    "Metadata",
    "Status",
    "SwimConfig",
    "SwimNode",
    "UpdateMetadata",
]

T_PERIOD = "swim.period"
T_PING = "swim.ping-timeout"
T_JOIN = "swim.join"
T_RECONNECT = "swim.reconnect"
T_SUSPECT = "swim.suspect:"

MAX_MEMBERS = 4096


class Status(enum.Enum):
    ALIVE = "alive"
    SUSPECT = "suspect"
    DEAD = "dead"
    LEFT = "left"


_LIVE = (Status.ALIVE, Status.SUSPECT)


@attrs.frozen
class SwimConfig:
    """Protocol parameters (times in ms). See the module docstring for their roles."""

    seeds: tuple[str, ...] = ()
    period_ms: int = 1000
    ping_timeout_ms: int = 200
    indirect_probes: int = 3
    suspicion_alpha: float = 4.0
    suspicion_beta: float = 6.0
    retransmit_mult: int = 4
    max_piggyback: int = 8
    join_retry_ms: int = 1000
    reconnect_interval_ms: int = 10_000
    reap_after_ms: int = 3_600_000
    max_members: int = 4096
    push_pull_ms: int = 30_000
    health_max: int = 8

    def __attrs_post_init__(self) -> None:
        if not 0 < self.ping_timeout_ms < self.period_ms:
            raise LocalProtocolError("need 0 < ping_timeout_ms < period_ms")
        if self.indirect_probes < 0 or self.retransmit_mult < 1 or self.max_piggyback < 1:
            raise LocalProtocolError("indirect_probes >= 0, retransmit_mult/max_piggyback >= 1")
        if self.suspicion_alpha <= 0 or self.suspicion_beta < 1:
            raise LocalProtocolError("suspicion_alpha > 0 and suspicion_beta >= 1")
        if self.reap_after_ms <= 0 or not 1 <= self.max_members <= MAX_MEMBERS:
            raise LocalProtocolError(f"reap_after_ms > 0 and 1 <= max_members <= {MAX_MEMBERS}")
        if self.push_pull_ms <= 0 or not 0 <= self.health_max <= 64:
            raise LocalProtocolError("push_pull_ms > 0 and 0 <= health_max <= 64")

    def suspicion_min_ms(self, n: int) -> float:
        return self.suspicion_alpha * max(1.0, math.log10(max(n, 1))) * self.period_ms

    def suspicion_timeout_ms(self, n: int, confirmations: int) -> int:
        """Lifeguard's timeout for a suspicion with ``confirmations`` independent
        confirmations in a group of ``n``."""
        lo = self.suspicion_min_ms(n)
        hi = self.suspicion_beta * lo
        k = max(self.indirect_probes, 1)
        frac = math.log(confirmations + 1) / math.log(k + 1)
        return math.ceil(max(lo, hi - (hi - lo) * frac))

    def retransmit_limit(self, n: int) -> int:
        """How often one update is piggybacked: ``lambda * ceil(log10(n + 1))``."""
        return self.retransmit_mult * max(1, math.ceil(math.log10(n + 1)))

    def detection_bound_ms(self, n: int) -> int:
        """Worst-case time from a crash until every alive member declares it dead."""
        return (2 * n - 1) * self.period_ms + self.suspicion_timeout_ms(n, 0) + self.period_ms


# -- application commands (ClientRequest payloads) --------------------------------------
@attrs.frozen
class Leave:
    """Leave the group gracefully."""


@attrs.frozen
class UpdateMetadata:
    """Change this node's advertisement: load and/or capabilities."""

    load: float | None = None
    add_capabilities: tuple[str, ...] = ()
    remove_capabilities: tuple[str, ...] = ()


@attrs.frozen
class Match:
    """Answer with :meth:`SwimNode.match` for ``required`` capabilities."""

    required: tuple[str, ...] = ()


@attrs.define
class Metadata:
    """A member's advertisement. ``capabilities`` is an ORSet of strings."""

    capabilities: ORSet = attrs.field(factory=ORSet)
    load: float = 0.0

    def to_wire(self) -> list[Any]:
        return [self.capabilities.to_bytes(), float(self.load)]

    @classmethod
    def from_wire(cls, raw: Any) -> Metadata:
        if not (isinstance(raw, list) and len(raw) == 2 and isinstance(raw[0], bytes)):
            raise RemoteProtocolError("metadata must be [capabilities, load]")
        if type(raw[1]) not in (int, float) or not math.isfinite(raw[1]):
            raise RemoteProtocolError("metadata load must be a finite number")
        caps = _CAPS_SEEN.get(raw[0])
        if caps is None:  # decoding (with its canonical-form check) dominates big tables
            fresh = decode(raw[0])
            if not isinstance(fresh, ORSet) or not all(isinstance(c, str) for c in fresh.value):
                raise RemoteProtocolError("capabilities must be an ORSet of strings")
            caps = fresh
            if len(_CAPS_SEEN) >= 4096:
                _CAPS_SEEN.pop(next(iter(_CAPS_SEEN)))
            _CAPS_SEEN[raw[0]] = caps
        return cls(caps.copy(), float(raw[1]))


#: Capability sets already decoded and validated, by their exact bytes (read-only:
#: :meth:`Metadata.from_wire` hands out copies).
_CAPS_SEEN: dict[bytes, ORSet] = {}


@attrs.frozen
class MemberInfo:
    """A read-only view of one member-table row."""

    node_id: str
    status: Status
    incarnation: int
    capabilities: frozenset[str]
    load: float


@attrs.define
class _Member:
    status: Status
    incarnation: int
    meta: Metadata
    suspect_start: int = 0
    suspecters: list[str] = attrs.field(factory=list)
    changed_at: int = 0  # when the status last changed (reaping dead/left rows)


# An update on the wire: [kind, member, incarnation, extra]
Update = list[Any]


class SwimNode:
    """A SWIM member (sans-IO; see the module docstring)."""

    def __init__(
        self,
        node_id: str,
        rng: random.Random,
        config: SwimConfig | None = None,
        *,
        capabilities: Iterable[str] = (),
        load: float = 0.0,
        messenger: Messenger | None = None,
    ) -> None:
        self._id = node_id
        self.rng = rng
        self.config = config or SwimConfig()
        self.msg = messenger or Messenger(node_id, rng)
        meta = Metadata(ORSet(), float(load))
        for cap in sorted(set(capabilities)):
            meta.capabilities.add(node_id, cap)
        self.members: dict[str, _Member] = {node_id: _Member(Status.ALIVE, 0, meta)}
        self.started = False
        self.left = False
        self._order: list[str] = []
        self._order_idx = 0
        self._seq = 0
        self._probe_target: str | None = None
        self._probe_seq = -1
        self._probe_acked = True
        self._relays: dict[int, tuple[str, int]] = {}  # our seq -> (requester, their seq)
        self._queue: dict[str, tuple[Update, int]] = {}  # member -> (update, times sent)
        self._contacts: list[str] = []  # who to (re)join through
        self._joined = False
        self._now = 0
        self.probes_sent = 0  # metrics: direct probes started
        self.suspicions_raised = 0  # metrics: probes that ended in a suspicion
        self.members_refused = 0  # metrics: new members refused (table full)
        self.push_pulls = 0  # metrics: table exchanges started
        self._reaped: dict[str, tuple[int, int]] = {}  # id -> (incarnation, reaped at)
        self._refused: dict[str, int] = {}  # ids reported refused -> when
        self.health = 0  # Lifeguard's local health multiplier (0 = healthy)
        self._failed: dict[int, int] = {}  # our probes that failed: seq -> when
        self._ping_sent_at = 0
        self._last_push_pull = 0
        self._grew_at = 0  # when the table last gained a member
        self._wire_cache: dict[str, tuple[int, list[Any]]] = {}

    # -- public read-only API ----------------------------------------------------------
    @property
    def node_id(self) -> str:
        return self._id

    @property
    def incarnation(self) -> int:
        return self.members[self._id].incarnation

    def member(self, node_id: str) -> MemberInfo | None:
        m = self.members.get(node_id)
        if m is None:
            return None
        return MemberInfo(node_id, m.status, m.incarnation,
                          frozenset(str(c) for c in m.meta.capabilities.value), m.meta.load)

    def view(self) -> list[MemberInfo]:
        """Every member-table row, sorted by id."""
        return [info for nid in sorted(self.members) if (info := self.member(nid))]

    def alive_members(self, *, include_self: bool = True) -> list[str]:
        """Ids of members currently alive or suspect (suspects are not yet dead)."""
        return [
            nid for nid in sorted(self.members)
            if self.members[nid].status in _LIVE and (include_self or nid != self._id)
        ]

    def match(self, required: Iterable[str]) -> list[str]:
        """Alive members (self included) advertising every capability in ``required``,
        ranked by advertised load (ties broken by id)."""
        need = frozenset(required)
        hits = [
            (m.meta.load, nid)
            for nid, m in self.members.items()
            if m.status is Status.ALIVE and need <= m.meta.capabilities.value
        ]
        return [nid for _, nid in sorted(hits)]

    def group_size(self) -> int:
        return sum(1 for m in self.members.values() if m.status in _LIVE)

    # -- the state machine -------------------------------------------------------------
    def step(self, event: Event) -> list[Effect]:
        """Apply one event; see :class:`vsm_phoenix.protocol.node.Node`."""
        if isinstance(event, Start | Restart):
            if self.started:
                raise LocalProtocolError("node already started")
            return self._boot(event)
        if not self.started:
            raise LocalProtocolError(f"{type(event).__name__} before Start/Restart")
        if isinstance(event, Receive):
            return self._receive(event.now, event.envelope)  # sets _now once validated
        self._now = event.now
        if isinstance(event, TimerFired):
            return self._timer(event.now, event.name)
        if isinstance(event, ClientRequest):
            return self._client(event)
        raise LocalProtocolError(f"unknown event {event!r}")  # pragma: no cover

    # -- boot --------------------------------------------------------------------------
    def _boot(self, event: Start | Restart) -> list[Effect]:
        now = event.now
        self._now = now
        self.started = True
        self._last_push_pull = self._grew_at = now
        out: list[Effect] = []
        contacts = [s for s in self.config.seeds if s != self._id]
        if isinstance(event, Restart):
            try:
                inc = decode_cbor(event.persisted.get("swim/incarnation", encode_cbor(0)))
                known = decode_cbor(event.persisted.get("swim/members", encode_cbor([])))
            except DecodeError:
                inc, known = 0, []
            if type(inc) is int and 0 <= inc < 2**63 - 1:  # what peers accept on the wire
                self.members[self._id].incarnation = inc + 1
            if isinstance(known, list):
                contacts += [k for k in known  # ids a message could be addressed to
                             if isinstance(k, str) and 0 < len(k) <= 256 and k != self._id]
        self._contacts = sorted(set(contacts))
        out.append(Persist("swim/incarnation", encode_cbor(self.incarnation)))
        self._enqueue(self._alive_update(self._id))
        if self._contacts:
            out += self._send_joins(now, self._contacts)
            out.append(SetTimer(T_JOIN, self.config.join_retry_ms))
        else:
            self._joined = True
        out.append(SetTimer(T_PERIOD, self.rng.randint(1, self.config.period_ms)))
        out.append(SetTimer(T_RECONNECT, self.config.reconnect_interval_ms))
        return out

    def _send_joins(self, now: int, targets: Sequence[str]) -> list[Effect]:
        body = {"members": self._table_updates()}
        return [self.msg.send(now, t, "swim.join", body) for t in targets]

    # -- timers ------------------------------------------------------------------------
    def _timer(self, now: int, name: str) -> list[Effect]:
        if self.left:
            return []
        if name == T_PERIOD:
            return self._period(now)
        if name == T_PING:
            return self._indirect(now)
        if name == T_JOIN:
            if self._joined:
                return []
            return [*self._send_joins(now, self._contacts),
                    SetTimer(T_JOIN, self.config.join_retry_ms)]
        if name == T_RECONNECT:
            dead = [n for n in sorted(self.members) if self.members[n].status is Status.DEAD]
            out: list[Effect] = [SetTimer(T_RECONNECT, self.config.reconnect_interval_ms)]
            if dead:
                out += self._send_joins(now, [self.rng.choice(dead)])
            return out
        if name.startswith(T_SUSPECT):
            return self._suspicion_expired(now, name[len(T_SUSPECT):])
        return []

    def _period(self, now: int) -> list[Effect]:
        scale = self.health + 1
        out: list[Effect] = [SetTimer(T_PERIOD, self.config.period_ms * scale)]
        out += self._reap(now)
        target = self._probe_target
        if target is not None and not self._probe_acked:
            self._failed[self._probe_seq] = now
            if len(self._failed) > 64:
                del self._failed[min(self._failed)]
            m = self.members.get(target)
            if m is not None and m.status in _LIVE:
                self.suspicions_raised += 1
                update: Update = ["suspect", target, m.incarnation, self._id]
                out += self._apply(now, update)
                # tell the member at once, so it can refute before the timer runs out
                out.append(self.msg.send(now, target, "swim.gossip", {"g": [update]}))
        self._probe_target = None
        self._probe_acked = True
        nxt = self._next_target()
        if nxt is None:
            return out
        self._seq += 1
        self._probe_target, self._probe_seq, self._probe_acked = nxt, self._seq, False
        self.probes_sent += 1
        self._ping_sent_at = now
        out.append(self._ping(now, nxt, self._seq))
        out.append(SetTimer(T_PING, self.config.ping_timeout_ms * scale))
        out += self._push_pull(now)
        return out

    def _push_pull(self, now: int) -> list[Effect]:
        """Exchange whole tables (``swim.join`` / ``swim.join-ack``) with one random
        alive member: every ``push_pull_ms``, and every period while the table is still
        gaining members (a cluster booted at once agrees in O(log n) periods)."""
        growing = now - self._grew_at <= 2 * self.config.period_ms
        if not self._joined or not (growing or now - self._last_push_pull
                                    >= self.config.push_pull_ms):
            return []
        others = self.alive_members(include_self=False)
        if not others:
            return []
        self._last_push_pull = now
        self.push_pulls += 1
        return self._send_joins(now, [self.rng.choice(others)])

    def _adjust_health(self, delta: int) -> None:
        self.health = min(self.config.health_max, max(0, self.health + delta))

    def _next_target(self) -> str | None:
        live = [n for n in self._order if n in self.members and self.members[n].status in _LIVE]
        if len(live) != len(self._order):
            # drop departed members, keeping the index on the same successor
            before = sum(1 for n in self._order[: self._order_idx] if n in live)
            self._order, self._order_idx = live, before
        if not self._order:
            return None
        if self._order_idx >= len(self._order):
            self._order = sorted(self._order)
            self.rng.shuffle(self._order)
            self._order_idx = 0
        target = self._order[self._order_idx]
        self._order_idx += 1
        return target

    def _insert_order(self, nid: str) -> None:
        """Insert a (re)joined member at a random place of the round-robin order."""
        if nid in self._order:
            return
        pos = self.rng.randint(0, len(self._order))
        self._order.insert(pos, nid)
        if pos < self._order_idx:
            self._order_idx += 1

    def _indirect(self, now: int) -> list[Effect]:
        target = self._probe_target
        if target is None or self._probe_acked:
            return []
        helpers = [n for n in self.alive_members(include_self=False) if n != target]
        k = min(self.config.indirect_probes, len(helpers))
        chosen = self.rng.sample(helpers, k) if k else []
        return [
            self.msg.send(now, h, "swim.ping-req",
                          {"seq": self._probe_seq, "target": target, "g": self._piggyback(h)})
            for h in chosen
        ]

    def _suspicion_expired(self, now: int, nid: str) -> list[Effect]:
        m = self.members.get(nid)
        if m is None or m.status is not Status.SUSPECT:
            return []
        return self._apply(now, ["dead", nid, m.incarnation, self._id])

    # -- messages ----------------------------------------------------------------------
    def _ping(self, now: int, to: str, seq: int) -> Send:
        return self.msg.send(now, to, "swim.ping", {"seq": seq, "g": self._piggyback(to)})

    def _receive(self, now: int, env: Envelope) -> list[Effect]:
        if not env.type.startswith("swim."):
            raise RemoteProtocolError(f"SWIM node got {env.type!r}")
        body = decode_payload(env)
        updates = self._validate_updates(body.get("g", []))
        table = self._validate_updates(body.get("members", []))
        seq = body.get("seq", 0)
        if type(seq) is not int or seq < 0:
            raise RemoteProtocolError("seq must be a non-negative int")
        target = body.get("target")
        if env.type == "swim.ping-req" and (not isinstance(target, str) or not target):
            raise RemoteProtocolError("ping-req needs a target")
        if env.type not in ("swim.ping", "swim.ack", "swim.ping-req", "swim.join",
                            "swim.join-ack", "swim.gossip"):
            raise RemoteProtocolError(f"unknown SWIM message {env.type!r}")
        # -- validated: from here on we mutate --
        self.msg.accept(now, env)
        self._now = now
        if self.left:
            return []
        out: list[Effect] = []
        for u in table:
            out += self._apply(now, u, rumour=True)
        for u in updates:
            out += self._apply(now, u)
        if self.members.get(env.sender) is None and env.type in ("swim.ping", "swim.ping-req"):
            # an unknown prober: ask it for its table
            out += self._send_joins(now, [env.sender])
        if env.type == "swim.ping":
            out.append(self.msg.send(now, env.sender, "swim.ack",
                                     {"seq": seq, "g": self._piggyback(env.sender)},
                                     correlation_id=env.message_id))
        elif env.type == "swim.ack":
            if seq in self._relays:
                requester, their_seq = self._relays.pop(seq)
                out.append(self.msg.send(now, requester, "swim.ack",
                                         {"seq": their_seq, "g": self._piggyback(requester)}))
            elif seq == self._probe_seq and not self._probe_acked:
                self._probe_acked = True
                if now - self._ping_sent_at <= self.config.ping_timeout_ms * (self.health + 1):
                    self._adjust_health(-1)  # answered in time: we are healthy
            elif self._failed.pop(seq, None) is not None:
                # an answer to a probe we had given up on: our own messages are slow
                # (Lifeguard's local health): probe less often, wait longer
                self._adjust_health(+1)
        elif env.type == "swim.ping-req":
            assert isinstance(target, str)
            self._seq += 1
            self._relays[self._seq] = (env.sender, seq)
            if len(self._relays) > 256:
                self._relays.pop(min(self._relays))
            out.append(self._ping(now, target, self._seq))
        elif env.type == "swim.gossip" and any(
            u[0] in ("suspect", "dead") and u[1] == self._id for u in updates
        ):
            # asked directly whether we are dead: answer the asker at once
            out.append(self.msg.send(now, env.sender, "swim.gossip",
                                     {"g": [self._alive_update(self._id)]}))
        elif env.type == "swim.join":
            out.append(self.msg.send(now, env.sender, "swim.join-ack",
                                     {"members": self._table_updates()},
                                     correlation_id=env.message_id))
        if env.type in ("swim.join-ack", "swim.join") and not self._joined and (
            self.alive_members(include_self=False)
        ):
            self._joined = True
            out.append(CancelTimer(T_JOIN))
        return out

    def _validate_updates(self, raw: Any) -> list[Update]:
        if not isinstance(raw, list) or len(raw) > 2 * MAX_MEMBERS:
            raise RemoteProtocolError("updates must be a bounded list")
        out: list[Update] = []
        for u in raw:
            if not (isinstance(u, list) and len(u) == 4):
                raise RemoteProtocolError("update must be [kind, member, incarnation, extra]")
            kind, nid, inc, extra = u
            if kind not in ("alive", "suspect", "dead", "left"):
                raise RemoteProtocolError(f"unknown update kind {kind!r}")
            if not isinstance(nid, str) or not nid or len(nid) > 256:
                raise RemoteProtocolError("member id must be a non-empty string")
            if type(inc) is not int or not 0 <= inc < 2**63:
                raise RemoteProtocolError("incarnation must be a non-negative int")
            if kind == "alive":
                extra = Metadata.from_wire(extra)
            elif kind in ("suspect", "dead") and not isinstance(extra, str):
                raise RemoteProtocolError("suspect/dead need the suspecting member")
            out.append([kind, nid, inc, extra])
        return out

    # -- the member table --------------------------------------------------------------
    def _apply(self, now: int, u: Update, *, rumour: bool = False) -> list[Effect]:
        """Merge one (validated) update; returns effects (refutation, timers, events).

        ``rumour``: the row comes from another member's table (join / push-pull), not
        from a detector. As in memberlist's ``mergeState``, a ``dead`` row is then only
        a *suspicion* the member can refute: a table exchanged after a partition heals
        holds verdicts that were true on the far side, not on ours. Such a suspicion is
        kept local (not gossiped, not counted as a confirmation, so its timer runs for
        the full ``S_max``) and put to the member directly, which refutes at once."""
        kind, nid, inc, extra = u
        out: list[Effect] = []
        if rumour and kind == "dead" and nid != self._id:
            m = self.members.get(nid)
            if m is None or m.status not in _LIVE:
                return self._apply(now, u)  # not believed alive: keep the verdict
            if (m.status is Status.ALIVE and inc >= m.incarnation) or (
                m.status is Status.SUSPECT and inc > m.incarnation
            ):
                m.status, m.incarnation = Status.SUSPECT, inc
                m.suspect_start, m.suspecters = now, []
                timeout = self.config.suspicion_timeout_ms(self.group_size(), 0)
                out.append(SetTimer(T_SUSPECT + nid, timeout))
                out.append(self._event(now, nid))
                out.append(self.msg.send(now, nid, "swim.gossip",
                                         {"g": [["suspect", nid, inc, self._id]]}))
            return out
        me = self.members[self._id]
        if nid == self._id:
            if kind in ("suspect", "dead") and inc >= me.incarnation and not self.left:
                me.incarnation = inc + 1  # refute
                self._adjust_health(+1)
                self._enqueue(self._alive_update(self._id))
                out.append(Persist("swim/incarnation", encode_cbor(me.incarnation)))
                out += self._broadcast_refutation(now)
            elif kind in ("suspect", "dead") and not self.left:
                # a stale rumour about us: re-announce our current incarnation so the
                # member still holding it (who may be about to time out) hears it
                self._enqueue(self._alive_update(self._id))
            elif kind == "alive" and not self.left and (
                inc > me.incarnation
                or (inc == me.incarnation and extra.to_wire() != self._wire(self._id))
            ):
                # someone holds an advertisement of ours we no longer make (we restarted
                # without our incarnation, or with other capabilities): outbid it
                me.incarnation = inc + 1
                self._enqueue(self._alive_update(self._id))
                out.append(Persist("swim/incarnation", encode_cbor(me.incarnation)))
            return out
        m = self.members.get(nid)
        if m is None:
            tomb = self._reaped.get(nid)
            if tomb is not None and inc <= tomb[0]:
                return out  # a stale rumour about a member we reaped
            if kind == "suspect":
                return out
            if len(self.members) >= self.config.max_members:
                return self._refuse(now, nid)
            self._reaped.pop(nid, None)
            if kind == "alive":
                meta: Metadata = extra
                self.members[nid] = _Member(Status.ALIVE, inc, meta, changed_at=now)
                self._grew_at = now
                self._insert_order(nid)
                self._enqueue(["alive", nid, inc, self._wire(nid)])
                out.append(self._event(now, nid))
            else:
                # unknown member reported dead/left: remember the verdict (so a healed
                # partition can reconnect to it, and its refutation can reach us)
                self.members[nid] = _Member(Status(kind), inc, Metadata(), changed_at=now)
                self._enqueue([kind, nid, inc, extra])
            out.append(self._persist_members())
            return out
        if kind == "alive":
            meta = extra
            if inc <= m.incarnation:
                return out  # an owner's advertisement is a function of its incarnation
            was = m.status
            m.status, m.incarnation = Status.ALIVE, inc
            m.meta = Metadata(meta.capabilities.copy(), meta.load)
            m.suspecters = []
            out.append(CancelTimer(T_SUSPECT + nid))
            if was not in _LIVE:
                m.changed_at = now
                self._insert_order(nid)
            self._enqueue(["alive", nid, inc, self._wire(nid)])
            if was is not Status.ALIVE:
                out.append(self._event(now, nid))
            return out
        if kind == "suspect":
            n = self.group_size()
            if (m.status is Status.ALIVE and inc >= m.incarnation) or (
                m.status is Status.SUSPECT and inc > m.incarnation
            ):
                m.status, m.incarnation = Status.SUSPECT, inc
                m.suspect_start, m.suspecters = now, [extra]
                out.append(SetTimer(T_SUSPECT + nid, self.config.suspicion_timeout_ms(n, 0)))
                self._enqueue(["suspect", nid, inc, extra])
                out.append(self._event(now, nid))
            elif (
                m.status is Status.SUSPECT and inc == m.incarnation
                and extra not in m.suspecters
            ):
                m.suspecters.append(extra)  # an independent confirmation
                timeout = self.config.suspicion_timeout_ms(n, max(0, len(m.suspecters) - 1))
                left = max(0, m.suspect_start + timeout - now)
                out.append(SetTimer(T_SUSPECT + nid, left))
                self._enqueue(["suspect", nid, inc, extra])
            return out
        # dead / left
        if (m.status in _LIVE and inc >= m.incarnation) or (
            m.status is Status.DEAD and kind == "left" and inc >= m.incarnation
        ):
            m.status, m.incarnation = Status(kind), inc
            m.suspecters = []
            m.changed_at = now
            out.append(CancelTimer(T_SUSPECT + nid))
            self._enqueue([kind, nid, inc, extra])
            out.append(self._event(now, nid))
        return out

    def _broadcast_refutation(self, now: int) -> list[Effect]:
        """Send our fresh ``alive`` at once to ``indirect_probes`` random members — to
        every member while our own health is degraded: a refutation must not wait for
        our next probe (a slow node probes rarely, and everyone suspects it)."""
        others = self.alive_members(include_self=False)
        k = len(others) if self.health else min(len(others), max(1, self.config.indirect_probes))
        update = self._alive_update(self._id)
        return [self.msg.send(now, nid, "swim.gossip", {"g": [update]})
                for nid in (self.rng.sample(others, k) if k else [])]

    def _refuse(self, now: int, nid: str) -> list[Effect]:
        """The member table is full: refuse ``nid`` explicitly (counted, and reported
        once per id as a ``swim.refused`` delivery) instead of dropping it silently."""
        self.members_refused += 1
        if nid in self._refused:
            return []
        if len(self._refused) >= 1024:
            self._refused.pop(next(iter(self._refused)))
        self._refused[nid] = now
        return [Deliver("swim.refused", {"member": nid, "reason": "member table full",
                                         "limit": self.config.max_members, "at": now})]

    def _reap(self, now: int) -> list[Effect]:
        """Forget dead and left members ``reap_after_ms`` after their verdict, keeping a
        tombstone (id -> incarnation) for as long again so stale rumours about them
        cannot bring them back; a higher incarnation (a real rejoin) still can."""
        horizon = self.config.reap_after_ms
        for nid in [n for n, (_, at) in self._reaped.items() if now - at >= horizon]:
            del self._reaped[nid]
        gone = [
            nid for nid, m in self.members.items()
            if nid != self._id and m.status not in _LIVE and now - m.changed_at >= horizon
        ]
        if not gone:
            return []
        out: list[Effect] = []
        for nid in sorted(gone):
            self._reaped[nid] = (self.members.pop(nid).incarnation, now)
            self._wire_cache.pop(nid, None)
            self._queue.pop(nid, None)
            out.append(CancelTimer(T_SUSPECT + nid))
        while len(self._reaped) > self.config.max_members:
            self._reaped.pop(next(iter(self._reaped)))
        out.append(self._persist_members())
        return out

    def _event(self, now: int, nid: str) -> Deliver:
        m = self.members[nid]
        return Deliver("swim.member", {"member": nid, "status": m.status.value,
                                       "incarnation": m.incarnation, "at": now})

    def _persist_members(self) -> Persist:
        return Persist("swim/members", encode_cbor(sorted(self.members)))

    def _alive_update(self, nid: str) -> Update:
        m = self.members[nid]
        return ["alive", nid, m.incarnation, self._wire(nid)]

    def _wire(self, nid: str) -> list[Any]:
        """``nid``'s advertisement on the wire, encoded once per incarnation (an
        advertisement is a function of its owner's incarnation)."""
        m = self.members[nid]
        hit = self._wire_cache.get(nid)
        if hit is None or hit[0] != m.incarnation:
            hit = (m.incarnation, m.meta.to_wire())
            self._wire_cache[nid] = hit
        return hit[1]

    def _table_updates(self) -> list[Update]:
        rows: list[Update] = []
        for nid in sorted(self.members):
            m = self.members[nid]
            if m.status in _LIVE:
                rows.append(["alive", nid, m.incarnation, self._wire(nid)])
                if m.status is Status.SUSPECT:
                    rows.append(["suspect", nid, m.incarnation,
                                 m.suspecters[0] if m.suspecters else self._id])
            else:
                rows.append([m.status.value, nid, m.incarnation, self._id])
        return rows

    def _enqueue(self, u: Update) -> None:
        self._queue[u[1]] = (u, 0)

    def _piggyback(self, to: str) -> list[Update]:
        """Updates to attach to a message for ``to``: least-sent first, each at most
        ``retransmit_limit`` times — plus, always, our suspicion of ``to`` itself, so a
        suspected member learns of it from the first message it gets and can refute."""
        limit = self.config.retransmit_limit(self.group_size())
        ranked = sorted(self._queue.items(), key=lambda kv: (kv[1][1], kv[0]))
        chosen = ranked[: self.config.max_piggyback]
        out: list[Update] = []
        m = self.members.get(to)
        if m is not None and m.status is Status.SUSPECT and all(nid != to for nid, _ in chosen):
            out.append(["suspect", to, m.incarnation,
                        m.suspecters[0] if m.suspecters else self._id])
        for nid, (u, sent) in chosen:
            out.append(u)
            if sent + 1 >= limit:
                del self._queue[nid]
            else:
                self._queue[nid] = (u, sent + 1)
        return out

    # -- application commands ----------------------------------------------------------
    def _client(self, req: ClientRequest) -> list[Effect]:
        cmd, now = req.payload, req.now
        if isinstance(cmd, Match):
            return [Deliver("swim.match", self.match(cmd.required), req.request_id)]
        if self.left:
            raise LocalProtocolError("node has left the group")
        me = self.members[self._id]
        if isinstance(cmd, UpdateMetadata):
            for cap in cmd.add_capabilities:
                me.meta.capabilities.add(self._id, cap)
            for cap in cmd.remove_capabilities:
                me.meta.capabilities.remove(cap)
            if cmd.load is not None:
                if not math.isfinite(cmd.load):
                    raise LocalProtocolError("load must be finite")
                me.meta.load = float(cmd.load)
            me.incarnation += 1
            self._enqueue(self._alive_update(self._id))
            return [Persist("swim/incarnation", encode_cbor(me.incarnation)),
                    Deliver("swim.metadata", None, req.request_id)]
        if isinstance(cmd, Leave):
            me.incarnation += 1
            me.status = Status.LEFT
            self.left = True
            update: Update = ["left", self._id, me.incarnation, None]
            out: list[Effect] = [
                self.msg.send(now, nid, "swim.gossip", {"g": [update]})
                for nid in self.alive_members(include_self=False)
            ]
            out += [CancelTimer(T_PERIOD), CancelTimer(T_PING), CancelTimer(T_RECONNECT),
                    Persist("swim/incarnation", encode_cbor(me.incarnation)),
                    Deliver("swim.left", None, req.request_id)]
            return out
        raise LocalProtocolError(f"unknown SWIM command {cmd!r}")
