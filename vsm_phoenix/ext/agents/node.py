"""An agent node: SWIM membership with capabilities, plus an evidence-graph replica.

Theory of operation
-------------------
:class:`AgentNode` is a sans-IO node (:class:`~vsm_phoenix.protocol.node.Node`) that
composes two parts and shares one :class:`~vsm_phoenix.protocol.kit.Messenger`:

* a :class:`~vsm_phoenix.protocol.swim.SwimNode`, which keeps the member table and
  each member's advertisement (capabilities as an OR-Set, load) -- every ``swim.*``
  message, timer and command goes to it unchanged;
* an :class:`~vsm_phoenix.ext.evidence.EvidenceGraph` signed with the agent's
  identity. The application records decisions with ``ClientRequest(Record(payload))``;
  every ``sync_interval_ms`` the node opens an :class:`~vsm_phoenix.ext.evidence.
  EvidenceSync` with one random alive member, so every replica converges to the same
  graph (anti-entropy).

========================  ==========================================================
event                     effects
========================  ==========================================================
Start / Restart           SWIM's boot; the graph reloaded from ``evidence/<id>``
                          persists (re-verified); ``SetTimer(agents.sync)``
TimerFired agents.sync    ``Send(evidence.sync)`` opening a session with a random peer
Receive evidence.sync     ``Persist`` of every new event, then the ``Send`` answer
Receive / timer swim.*    whatever the SWIM node returns
ClientRequest Record      ``Persist`` of the new event, ``Deliver(agents.recorded, id)``
ClientRequest (SWIM cmd)  whatever the SWIM node returns (UpdateMetadata, Leave, Match)
========================  ==========================================================

A sync message that does not decode or carries a forged event raises
:class:`~vsm_phoenix.protocol.node.RemoteProtocolError` and changes nothing.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from typing import Any, Final

import attrs

from vsm_phoenix.crypto.identity import Identity
from vsm_phoenix.errors import AuthenticationError, DecodeError
from vsm_phoenix.ext.evidence import Event as EvidenceEvent
from vsm_phoenix.ext.evidence import EvidenceGraph, EvidenceSync
from vsm_phoenix.ext.evidence.event import KeySource
from vsm_phoenix.ext.evidence.graph import STORE_PREFIX
from vsm_phoenix.protocol.envelope import Envelope
from vsm_phoenix.protocol.kit import Messenger, decode_payload
from vsm_phoenix.protocol.node import (
    ClientRequest,
    Deliver,
    Effect,
    Event,
    LocalProtocolError,
    Persist,
    Receive,
    RemoteProtocolError,
    Restart,
    SetTimer,
    Start,
    TimerFired,
)
from vsm_phoenix.protocol.swim import SwimConfig, SwimNode

__all__ = ["AgentConfig", "AgentNode", "Record"]

T_SYNC: Final = "agents.sync"
M_SYNC: Final = "evidence.sync"
K_RECORDED: Final = "agents.recorded"
_SESSION_TTL_MS: Final = 10_000
_MAX_SESSIONS: Final = 64


@attrs.frozen
class Record:
    """Sign ``payload`` as this agent and add it to the evidence graph."""

    payload: Any


@attrs.frozen
class AgentConfig:
    """An agent's settings (times in ms)."""

    swim: SwimConfig = attrs.field(factory=SwimConfig)
    sync_interval_ms: int = 500
    max_events_per_message: int = 64


class _EffectStore:
    """A storage the graph writes through: each put becomes a ``Persist`` effect."""

    def __init__(self) -> None:
        self.pending: list[Effect] = []

    def put(self, key: str, value: bytes) -> None:
        self.pending.append(Persist(key, value))

    def get(self, key: str) -> bytes | None:  # pragma: no cover - the graph only writes
        return None

    def delete(self, key: str) -> None:  # pragma: no cover
        return None

    def items(self, prefix: str = "") -> list[tuple[str, bytes]]:  # pragma: no cover
        return []

    def take(self) -> list[Effect]:
        out, self.pending = self.pending, []
        return out


class AgentNode:
    """See the module docstring."""

    def __init__(self, identity: Identity, rng: random.Random, keys: KeySource,
                 config: AgentConfig | None = None, *, capabilities: tuple[str, ...] = (),
                 load: float = 0.0) -> None:
        self.identity = identity
        self.rng = rng
        self.config = config or AgentConfig()
        self.msg = Messenger(identity.principal, rng)
        self.swim = SwimNode(identity.principal, rng, self.config.swim,
                             capabilities=capabilities, load=load, messenger=self.msg)
        self._store = _EffectStore()
        self.graph = EvidenceGraph(keys, storage=self._store)
        self._sessions: dict[tuple[str, int, bool], tuple[EvidenceSync, int]] = {}
        self._next_session = 0
        self.rejected_events = 0

    @property
    def node_id(self) -> str:
        return self.identity.principal

    def state_key(self) -> tuple[bytes, tuple[tuple[str, int, bool], ...]]:
        return (self.graph.digest(), tuple(sorted(self._sessions)))

    def step(self, event: Event) -> list[Effect]:
        if isinstance(event, Start | Restart):
            out = self.swim.step(event)
            if isinstance(event, Restart):
                self._reload(event.persisted)
            return [*out, SetTimer(T_SYNC, self.config.sync_interval_ms)]
        if isinstance(event, TimerFired):
            if event.name == T_SYNC:
                return self._open_session(event.now)
            return self.swim.step(event)
        if isinstance(event, Receive):
            if event.envelope.type == M_SYNC:
                return self._on_sync(event.now, event.envelope)
            return self.swim.step(event)
        if isinstance(event, ClientRequest):
            if isinstance(event.payload, Record):
                if self.swim.left:
                    raise LocalProtocolError("agent has left the group")
                recorded = self.graph.append(self.identity, event.payload.payload,
                                             wall_ms=max(event.now, 0))
                return [*self._store.take(),
                        Deliver(K_RECORDED, recorded.id, event.request_id)]
            return self.swim.step(event)
        raise LocalProtocolError(f"unknown event {event!r}")

    def _reload(self, persisted: Mapping[str, bytes]) -> None:
        good: list[bytes] = []
        for key in sorted(persisted):
            if key.startswith(STORE_PREFIX):
                try:  # each record checked alone: one bad record does not cost the rest
                    EvidenceEvent.from_bytes(persisted[key], self.graph.keys)
                except (DecodeError, AuthenticationError):
                    self.rejected_events += 1
                    continue
                good.append(persisted[key])
        self.graph.add_many(good)  # in stamp order
        self._store.take()  # already persisted

    def _expire(self, now: int) -> None:
        for key, (_, started) in list(self._sessions.items()):
            if now - started > _SESSION_TTL_MS:
                del self._sessions[key]

    def _open_session(self, now: int) -> list[Effect]:
        out: list[Effect] = [SetTimer(T_SYNC, self.config.sync_interval_ms)]
        if self.swim.left:
            return out
        self._expire(now)
        peers = self.swim.alive_members(include_self=False)
        if not peers or len(self._sessions) >= _MAX_SESSIONS:
            return out
        peer = self.rng.choice(peers)
        self._next_session += 1
        session = EvidenceSync(self.graph, max_events=self.config.max_events_per_message)
        self._sessions[(peer, self._next_session, True)] = (session, now)
        out.append(self.msg.send(now, peer, M_SYNC,
                                 {"s": self._next_session, "o": True, "d": session.start()}))
        return out

    def _on_sync(self, now: int, env: Envelope) -> list[Effect]:
        body = decode_payload(env, dict)
        sid, opener, data = body.get("s"), body.get("o"), body.get("d")
        if (set(body) != {"s", "o", "d"} or type(sid) is not int or not 0 < sid < 2**63
                or type(opener) is not bool or not isinstance(data, bytes)):
            raise RemoteProtocolError(f"{M_SYNC} from {env.sender}: bad payload")
        if self.swim.left:
            return []
        key = (env.sender, sid, not opener)  # the peer opened: I answer, and vice versa
        entry = self._sessions.get(key)
        if entry is None:
            if not opener:
                return []  # an answer to a session that expired
            if len(self._sessions) >= _MAX_SESSIONS:
                self._expire(now)
                if len(self._sessions) >= _MAX_SESSIONS:
                    return []
            session = EvidenceSync(self.graph, max_events=self.config.max_events_per_message)
        else:
            session = entry[0]
        # What Messenger.accept would refuse, checked before anything changes:
        if env.recipient not in (None, self.node_id) or env.sender == self.node_id:
            raise RemoteProtocolError(f"{M_SYNC} from {env.sender}: misaddressed")
        if env.timestamp[0] > max(now, 0) + self.msg.clock.max_drift_ms:
            raise RemoteProtocolError(f"{M_SYNC} from {env.sender}: clock too far ahead")
        try:
            reply = session.receive(data)
        except (DecodeError, AuthenticationError) as exc:
            raise RemoteProtocolError(f"{M_SYNC} from {env.sender}: {exc}") from None
        self.msg.accept(now, env)  # cannot refuse now: the graph is already joined
        out = self._store.take()
        if reply is None:
            self._sessions.pop(key, None)
            return out
        self._sessions[key] = (session, now if entry is None else entry[1])
        out.append(self.msg.send(now, env.sender, M_SYNC,
                                 {"s": sid, "o": key[2], "d": reply}))
        return out
