"""The deployed prompt, agreed through the Raft KV; signed evidence of evaluations.

Theory of operation
-------------------
A GEPA node is two sans-IO protocols on one node id (:class:`GepaNode`, composed like
:class:`~vsm_phoenix.protocol.cluster.ClusterNode`):

=====================  =========================================================
event                  goes to
=====================  =========================================================
``sync.*`` messages,   the :class:`~vsm_phoenix.protocol.sync.SyncNode` hosting
``sync.*`` timers,     the :class:`~vsm_phoenix.ext.gepa.state.EvolutionState`
``Merge`` / ``Read``   replica (eventually consistent: evaluations, pool, budget)
``raft.*`` messages,   the :class:`~vsm_phoenix.protocol.raft.RaftNode` with a
``raft.*`` timers,     :class:`~vsm_phoenix.protocol.kv.KVStateMachine`
``Propose`` / ``Read`` (linearizable: the deployed prompt)
``Start`` / ``Restart``  both (each reads only its own storage keys)
=====================  =========================================================

The replicas converge, but "which prompt is deployed" must be one answer at any moment,
with a version: that is what consensus is for. :meth:`Deployment.decision` turns a
replica's frontier into a :class:`Decision` (the best candidate by mean validation
score, its score, its lineage back to the seed); :meth:`Deployment.propose` commits it
under :data:`DEPLOYED_KEY` with compare-and-set on the value it read, so concurrent
deployers never lose an update, versions count up by one, and a decision that is not
better than the deployed one is not proposed. Every node reads the same value back
(ReadIndex).

**Signed evidence.** :func:`sign_candidate` signs a candidate's texts and its resolved
validation scores (with who evaluated each) under a node's
:class:`~vsm_phoenix.crypto.signature.SigningKey`; :func:`verify_candidate` checks it
against the replica, so a node can show which texts scored what, and who said so.
"""

from __future__ import annotations

import json
import math
import random
from collections.abc import Mapping, Sequence
from typing import Any, Final

import attrs

from vsm_phoenix import cbor
from vsm_phoenix.crypto.signature import SigningKey, VerifyKey
from vsm_phoenix.errors import DecodeError, InvalidArgument
from vsm_phoenix.ext.gepa.records import CandidateId
from vsm_phoenix.ext.gepa.state import EvolutionState
from vsm_phoenix.protocol import kv
from vsm_phoenix.protocol.node import (
    ClientRequest,
    Effect,
    Event,
    LocalProtocolError,
    Receive,
    RemoteProtocolError,
    Restart,
    Start,
    TimerFired,
)
from vsm_phoenix.protocol.raft import Propose, RaftConfig, RaftNode
from vsm_phoenix.protocol.raft import Read as RaftRead
from vsm_phoenix.protocol.sync import Merge, Mutate, Read, SyncConfig, SyncNode

__all__ = [
    "DEPLOYED_KEY",
    "Decision",
    "Deployment",
    "GepaNode",
    "sign_candidate",
    "verify_candidate",
]

#: The KV key of the deployed prompt.
DEPLOYED_KEY: Final = "gepa/deployed"


class GepaNode:
    """Sync (the evolution state) + Raft KV (the deployed prompt) on one node id."""

    def __init__(self, node_id: str, rng: random.Random, *, sync: SyncConfig,
                 raft: RaftConfig, replica_name: str) -> None:
        self._id = node_id
        self.sync = SyncNode(node_id, rng, sync, replicas={replica_name: EvolutionState()})
        self.raft = RaftNode(node_id, rng, raft, kv.KVStateMachine())

    @property
    def node_id(self) -> str:
        return self._id

    def step(self, event: Event) -> list[Effect]:
        if isinstance(event, Start | Restart):
            return [*self.sync.step(event), *self.raft.step(event)]
        if isinstance(event, Receive):
            t = event.envelope.type
            if t.startswith("sync."):
                return self.sync.step(event)
            if t.startswith("raft."):
                return self.raft.step(event)
            raise RemoteProtocolError(f"no handler for message type {t!r}")
        if isinstance(event, TimerFired):
            return (self.raft if event.name.startswith("raft.") else self.sync).step(event)
        if isinstance(event, ClientRequest):
            if isinstance(event.payload, Merge | Mutate | Read):
                return self.sync.step(event)
            if isinstance(event.payload, Propose | RaftRead):
                return self.raft.step(event)
            raise LocalProtocolError(f"unknown command {event.payload!r}")
        raise LocalProtocolError(f"unknown event {event!r}")  # pragma: no cover


@attrs.frozen
class Decision:
    """A deployment: the candidate, its texts, mean validation score, lineage (ids back
    to the seed, newest first) and -- once committed -- its version."""

    candidate: CandidateId
    texts: Mapping[str, str]
    score: float
    lineage: tuple[CandidateId, ...]
    version: int = 0

    def to_json(self) -> str:
        return json.dumps({
            "candidate": self.candidate.hex(), "texts": dict(self.texts),
            "score": self.score, "lineage": [c.hex() for c in self.lineage],
            "version": self.version,
        }, sort_keys=True, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str) -> Decision:
        """Strict decoder of a committed value (``DecodeError`` on anything else,
        including nesting too deep for the JSON parser and values over the KV's size)."""
        if not isinstance(text, str) or len(text) > kv.MAX_VALUE:
            raise DecodeError("not a deployment record: not a str of at most MAX_VALUE")
        try:
            d = json.loads(text)
            out = cls(candidate=bytes.fromhex(d["candidate"]),
                      texts={str(k): str(v) for k, v in d["texts"].items()},
                      score=float(d["score"]),
                      lineage=tuple(bytes.fromhex(c) for c in d["lineage"]),
                      version=int(d["version"]))
        except (ValueError, KeyError, TypeError, AttributeError, RecursionError,
                OverflowError) as exc:
            raise DecodeError(f"not a deployment record: {type(exc).__name__}") from None
        if len(out.candidate) != 32 or out.version < 1 or not math.isfinite(out.score):
            raise DecodeError("not a deployment record: bad candidate id or version")
        return out


class Deployment:
    """Derives decisions from a replica and builds the KV commands that commit them."""

    def __init__(self, client: str, valset_ids: Sequence[str], evaluator: str) -> None:
        self.client = client
        self.valset_ids = tuple(valset_ids)
        self.evaluator = evaluator
        self.seq = 0

    def decision(self, state: EvolutionState) -> Decision | None:
        f = state.frontier(self.valset_ids, self.evaluator)
        if f.best is None or f.best_score is None:
            return None
        texts = state.candidate(f.best)
        assert texts is not None
        lineage: list[CandidateId] = []
        cur: CandidateId | None = f.best
        while cur is not None and cur not in lineage:
            lineage.append(cur)
            ps = sorted(state.parents(cur))
            cur = ps[0] if ps else None
        return Decision(f.best, texts, f.best_score, tuple(lineage))

    @staticmethod
    def next_value(decision: Decision, deployed: str | None) -> str | None:
        """The value that deploys ``decision`` over the ``deployed`` value read from
        the KV (its version one more), or ``None`` when it is not better than what is
        deployed. ``DecodeError`` when ``deployed`` is not a deployment record."""
        version = 1
        if deployed is not None:
            current = Decision.from_json(deployed)
            if current.candidate == decision.candidate or current.score >= decision.score:
                return None
            version = current.version + 1
        return attrs.evolve(decision, version=version).to_json()

    def propose(self, decision: Decision, deployed: str | None) -> Propose | None:
        """The compare-and-set (a Raft ``Propose`` for :class:`GepaNode`) that deploys
        ``decision`` over ``deployed``, or ``None`` (see :meth:`next_value`). Over
        AMQP, send ``KV.cas(DEPLOYED_KEY, deployed, next_value(...))`` instead."""
        new = self.next_value(decision, deployed)
        if new is None:
            return None
        self.seq += 1
        return kv.cas(self.client, self.seq, DEPLOYED_KEY, deployed, new)


def _evidence(state: EvolutionState, cid: CandidateId, valset_ids: Sequence[str],
              evaluator: str) -> bytes:
    texts = state.candidate(cid)
    if texts is None:
        raise InvalidArgument("unknown candidate")
    rows: list[Any] = []
    for v in valset_ids:
        ev = state.resolved(_key(cid, v, evaluator))
        if ev is None:
            raise InvalidArgument(f"candidate has no resolved score on {v!r}")
        rows.append([v, ev.score, ev.by])
    return cbor.dumps(["gepa.evidence", 1, cid, texts, evaluator, rows])


def _key(cid: CandidateId, v: str, evaluator: str) -> Any:
    from vsm_phoenix.ext.gepa.records import EvalKey

    return EvalKey(cid, v, evaluator)


def sign_candidate(key: SigningKey, state: EvolutionState, cid: CandidateId,
                   valset_ids: Sequence[str], evaluator: str) -> bytes:
    """Sign the candidate's texts and resolved validation scores (with evaluators)."""
    return key.sign(_evidence(state, cid, valset_ids, evaluator))


def verify_candidate(key: VerifyKey, signature: bytes, state: EvolutionState,
                     cid: CandidateId, valset_ids: Sequence[str], evaluator: str) -> None:
    """Raise ``AuthenticationError`` unless ``signature`` signs exactly what ``state``
    holds for the candidate now."""
    key.verify(signature, _evidence(state, cid, valset_ids, evaluator))
