"""Stateful (Hypothesis) test of delta sync: arbitrary interleavings of mutations,
shipping, delivery, duplication, loss and crash-restart, chosen and shrunk by
Hypothesis; whenever the network is drained the replicas are equal."""

from __future__ import annotations

import random

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, rule

from vsm_phoenix.crdt import GCounter, ORSet
from vsm_phoenix.protocol.envelope import Envelope
from vsm_phoenix.protocol.node import (
    ClientRequest,
    Effect,
    Event,
    Persist,
    Receive,
    Restart,
    Send,
    Start,
    TimerFired,
)
from vsm_phoenix.protocol.sync import Mutate, SyncConfig, SyncNode

IDS = ("a", "b", "c")
CFG = SyncConfig(peers=IDS, max_buffer=4)
nodes_st = st.sampled_from(IDS)
elems = st.integers(0, 4)


class SyncMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.now = 0
        self.nodes: dict[str, SyncNode] = {}
        self.store: dict[str, dict[str, bytes]] = {n: {} for n in IDS}
        self.inflight: list[Envelope] = []
        self.increments = 0
        self.boots = 0

    def fresh(self, nid: str) -> SyncNode:
        self.boots += 1
        return SyncNode(nid, random.Random(self.boots), CFG,
                        replicas={"s": ORSet(), "g": GCounter()})

    def run(self, nid: str, event: Event) -> list[Effect]:
        self.now += 1
        effects = self.nodes[nid].step(event)
        for e in effects:
            if isinstance(e, Send):
                self.inflight.append(e.envelope)
            elif isinstance(e, Persist):
                if e.value is None:
                    self.store[nid].pop(e.key, None)
                else:
                    self.store[nid][e.key] = e.value
        return effects

    @initialize()
    def boot(self) -> None:
        for nid in IDS:
            self.nodes[nid] = self.fresh(nid)
            self.run(nid, Start(0))

    @rule(nid=nodes_st, x=elems)
    def add(self, nid: str, x: int) -> None:
        self.run(nid, ClientRequest(self.now, "r", Mutate("s", lambda s: s.add(nid, x))))

    @rule(nid=nodes_st, x=elems)
    def remove(self, nid: str, x: int) -> None:
        self.run(nid, ClientRequest(self.now, "r", Mutate("s", lambda s: s.remove(x))))

    @rule(nid=nodes_st)
    def increment(self, nid: str) -> None:
        self.run(nid, ClientRequest(self.now, "r", Mutate("g", lambda g: g.increment(nid))))
        self.increments += 1

    @rule(nid=nodes_st)
    def ship(self, nid: str) -> None:
        self.run(nid, TimerFired(self.now, "sync.ship"))

    @rule(i=st.integers(0, 50), keep=st.booleans())
    def deliver(self, i: int, keep: bool) -> None:
        """Deliver any in-flight message (out of order); ``keep`` duplicates it."""
        if not self.inflight:
            return
        env = self.inflight[i % len(self.inflight)]
        if not keep:
            self.inflight.remove(env)
        assert env.recipient is not None
        self.run(env.recipient, Receive(self.now, env))

    @rule(i=st.integers(0, 50))
    def drop(self, i: int) -> None:
        if self.inflight:
            self.inflight.pop(i % len(self.inflight))

    @rule(nid=nodes_st)
    def crash_restart(self, nid: str) -> None:
        self.nodes[nid] = self.fresh(nid)
        self.run(nid, Restart(self.now, dict(self.store[nid])))

    @rule()
    def drain_and_check(self) -> None:
        for _ in range(6):
            for nid in IDS:
                self.ship(nid)
            while self.inflight:
                self.deliver(0, keep=False)
        states = [self.nodes[n].replicas for n in IDS]
        for other in states[1:]:
            assert other["s"] == states[0]["s"] and other["g"] == states[0]["g"]
        assert states[0]["g"].value == self.increments
        assert all(self.nodes[n].pending_peers() == [] for n in IDS)


TestSyncStateful = SyncMachine.TestCase
TestSyncStateful.settings = settings(max_examples=60, stateful_step_count=40, deadline=None)
