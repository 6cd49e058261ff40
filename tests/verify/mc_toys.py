"""Tiny hand-written protocols whose model-checking answers are known.

* ``VoteNode`` — a one-round majority election. The correct voter votes once; the
  buggy one grants every request, so two leaders appear after exactly six actions
  (each leader needs its timer, one request delivered and one grant delivered).
* ``TokenRing`` — one token passed around three nodes. Without faults the token is
  conserved (the space is small and exhausted); one duplicated message yields two
  holders after six actions.
"""

from __future__ import annotations

import random
from typing import Any

from vsm_phoenix.errors import DecodeError
from vsm_phoenix.protocol.kit import Messenger, decode_payload
from vsm_phoenix.protocol.node import (
    Deliver,
    Effect,
    Event,
    Receive,
    SetTimer,
    Start,
    TimerFired,
)
from vsm_phoenix.verify.model_checker import ClusterView

IDS = ("n1", "n2", "n3")


class VoteNode:
    """One election round: on its timer a node votes for itself and asks the others."""

    def __init__(self, node_id: str, rng: random.Random, *, buggy: bool = False) -> None:
        self._id = node_id
        self.messenger = Messenger(node_id, rng)
        self.peers = [p for p in IDS if p != node_id]
        self.buggy = buggy
        self.voted_for: str | None = None
        self.votes: set[str] = set()
        self.leader = False

    @property
    def node_id(self) -> str:
        return self._id

    def state_key(self) -> Any:
        return (self.voted_for, frozenset(self.votes), self.leader)

    def step(self, event: Event) -> list[Effect]:
        m = self.messenger
        if isinstance(event, Start):
            return [SetTimer("elect", 100)]
        if isinstance(event, TimerFired):
            if self.voted_for is not None and not self.buggy:
                return []
            self.voted_for = self._id
            self.votes = {self._id}
            return [m.send(event.now, p, "vote.request", {}) for p in self.peers]
        if isinstance(event, Receive):
            env = event.envelope
            decode_payload(env)
            m.accept(event.now, env)
            if env.type == "vote.request":
                if self.voted_for is None or self.buggy:
                    self.voted_for = env.sender
                    return [m.send(event.now, env.sender, "vote.grant", {})]
                return []
            if env.type == "vote.grant":
                self.votes.add(env.sender)
                if 2 * len(self.votes) > len(IDS) and not self.leader:
                    self.leader = True
                    return [Deliver("vote.leader", self._id)]
                return []
            raise DecodeError(f"unknown message {env.type}")
        return []


def one_leader(view: ClusterView) -> str | None:
    leaders = sorted(nid for nid, n in view.items() if n.leader)  # type: ignore[attr-defined]
    return f"two leaders: {leaders}" if len(leaders) > 1 else None


def vote_factory(buggy: bool) -> Any:
    return lambda nid, rng: VoteNode(nid, rng, buggy=buggy)


class TokenRing:
    """n1 starts with the token; holding it, a node's timer passes it to the next."""

    def __init__(self, node_id: str, rng: random.Random) -> None:
        self._id = node_id
        self.messenger = Messenger(node_id, rng)
        self.holding = False
        self.next = IDS[(IDS.index(node_id) + 1) % len(IDS)]

    @property
    def node_id(self) -> str:
        return self._id

    def state_key(self) -> Any:
        return self.holding

    def step(self, event: Event) -> list[Effect]:
        if isinstance(event, Start):
            if self._id == "n1":
                self.holding = True
                return [SetTimer("pass", 10)]
            return []
        if isinstance(event, TimerFired):
            self.holding = False
            return [self.messenger.send(event.now, self.next, "token", {})]
        if isinstance(event, Receive):
            self.messenger.accept(event.now, event.envelope)
            self.holding = True
            return [SetTimer("pass", 10)]
        return []


def one_holder(view: ClusterView) -> bool:
    return sum(n.holding for n in view.values()) <= 1  # type: ignore[attr-defined]
