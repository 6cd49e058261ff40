"""The deliberately broken variant (``unsafe_commit_old_terms``: a leader commits an
entry of an earlier term by counting replicas) is caught — Figure 8 of the Raft paper,
scripted message by message, and checked by :class:`RaftMonitor` after every step.
The same schedule on the correct node commits nothing unsafe."""

from __future__ import annotations

import random
from collections.abc import Callable

import pytest

from vsm_phoenix.protocol.envelope import Envelope
from vsm_phoenix.protocol.node import ClientRequest, Effect, Receive, Send, Start, TimerFired
from vsm_phoenix.protocol.raft import (
    M_APPEND,
    M_APPEND_RESP,
    M_VOTE,
    M_VOTE_RESP,
    T_ELECTION,
    T_HEARTBEAT,
    Propose,
    RaftConfig,
    RaftMonitor,
    RaftNode,
    Role,
)

# -- a hand-driven network: the test decides which message arrives when ---------
Match = Callable[[str, str, Envelope], bool]


class Net:
    def __init__(self, ids: list[str], config: RaftConfig) -> None:
        self.nodes = {i: RaftNode(i, random.Random(i), config) for i in ids}
        self.now = 0
        self.inflight: list[tuple[str, str, Envelope]] = []
        self.monitor = RaftMonitor()
        self.effects: dict[str, list[Effect]] = {i: [] for i in ids}
        for i in ids:
            self._step(i, Start(0))

    def _step(self, nid: str, event: object) -> list[Effect]:
        self.now += 1
        effects = self.nodes[nid].step(event)  # type: ignore[arg-type]
        self.effects[nid].extend(effects)
        for e in effects:
            if isinstance(e, Send):
                assert e.envelope.recipient is not None
                self.inflight.append((nid, e.envelope.recipient, e.envelope))
        self.monitor.observe(self.nodes.values())
        return effects

    def fire(self, nid: str, timer: str = T_ELECTION) -> list[Effect]:
        return self._step(nid, TimerFired(self.now, timer))

    def request(self, nid: str, rid: str, payload: object) -> list[Effect]:
        return self._step(nid, ClientRequest(self.now, rid, payload))

    @staticmethod
    def _matcher(src: str | None, dst: str | None, mtype: str | None) -> Match:
        def match(s: str, d: str, env: Envelope) -> bool:
            return (src in (None, s)) and (dst in (None, d)) and (
                mtype is None or env.type == mtype
            )

        return match

    def deliver(self, src: str | None = None, dst: str | None = None,
                mtype: str | None = None) -> int:
        """Deliver (in send order) every in-flight message that matches; returns how many.
        Messages sent while delivering stay in flight."""
        match = self._matcher(src, dst, mtype)
        batch = [m for m in self.inflight if match(*m)]
        self.inflight = [m for m in self.inflight if not match(*m)]
        for _src, d, env in batch:
            self._step(d, Receive(self.now, env))
        return len(batch)

    def drop(self, src: str | None = None, dst: str | None = None,
             mtype: str | None = None) -> int:
        match = self._matcher(src, dst, mtype)
        before = len(self.inflight)
        self.inflight = [m for m in self.inflight if not match(*m)]
        return before - len(self.inflight)

    def settle(self, among: set[str], rounds: int = 50) -> None:
        """Deliver messages between ``among`` until quiet; drop all others."""
        for _ in range(rounds):
            self.inflight = [m for m in self.inflight if m[0] in among and m[1] in among]
            if not self.inflight:
                return
            self.deliver()


IDS = ["s1", "s2", "s3", "s4", "s5"]


def figure8(unsafe: bool) -> Net:
    cfg = RaftConfig(peers=tuple(IDS), pre_vote=False, check_quorum=False, max_batch=1,
                     unsafe_commit_old_terms=unsafe)
    net = Net(IDS, cfg)
    s1, s2, s3, s4, s5 = (net.nodes[i] for i in IDS)
    # Term 1: s1 leads; its no-op (index 1) commits everywhere.
    net.fire("s1")
    net.settle(set(IDS))
    net.fire("s1", T_HEARTBEAT)
    net.settle(set(IDS))
    assert s1.role is Role.LEADER and s1.term == 1
    assert all(n.commit_index == 1 for n in net.nodes.values())
    # s1 appends A at index 2 (term 1); only s2 receives it, and s1 never hears back.
    net.request("s1", "A", Propose(b"A"))
    net.deliver("s1", "s2", M_APPEND)
    net.drop()
    assert s2.term_at(2) == 1 and s3.last_index == 1
    # Term 2: s5 is elected by s3 and s4 (and s5); it appends its no-op at index 2.
    net.fire("s5")
    net.deliver("s5", None, M_VOTE)
    net.deliver(None, "s5", M_VOTE_RESP)
    net.drop()
    assert s5.role is Role.LEADER and s5.term == 2 and s5.term_at(2) == 2
    assert net.nodes["s1"].role is Role.FOLLOWER and s1.term == 2
    # Term 3: s1 is elected by s2, s3, s4; it appends its no-op at index 3 and, probing,
    # replicates index 2 (term 1) to s3 and s4 — but not yet its index 3.
    net.fire("s1")
    net.deliver("s1", None, M_VOTE)
    net.deliver(None, "s1", M_VOTE_RESP)
    assert s1.role is Role.LEADER and s1.term == 3 and s1.last_index == 3
    net.drop(dst="s2")
    net.drop(dst="s5")
    net.deliver("s1", None, M_APPEND)  # prev=2: s3, s4 reject (too short)
    net.deliver(None, "s1", M_APPEND_RESP)  # s1 backs off to next=2
    net.deliver("s1", None, M_APPEND)  # entry 2 (term 1) to s3 and s4
    net.deliver(None, "s1", M_APPEND_RESP)
    net.drop()
    assert s3.term_at(2) == 1 and s4.term_at(2) == 1
    # A majority (s1, s3, s4) holds index 2, but it is of term 1, not 3.
    assert s1.commit_index == (2 if unsafe else 1)
    # s1 crashes. s5 wins term 4 with votes from s2, s3, s4 (its last term 2 > 1) and
    # overwrites index 2 everywhere.
    net.fire("s5")  # term 3: everybody already voted for s1
    net.settle({"s2", "s3", "s4", "s5"})
    net.fire("s5")  # term 4
    net.settle({"s2", "s3", "s4", "s5"})
    assert s5.role is Role.LEADER and s5.term == 4
    net.fire("s5", T_HEARTBEAT)
    net.settle({"s2", "s3", "s4", "s5"})
    assert s5.commit_index == 3 and all(net.nodes[i].term_at(2) == 2 for i in IDS[1:])
    return net


def test_figure8_broken_variant_is_caught() -> None:
    net = figure8(unsafe=True)
    assert any("state-machine safety" in v for v in net.monitor.violations), (
        net.monitor.violations
    )


def test_figure8_schedule_is_safe_on_the_correct_node() -> None:
    net = figure8(unsafe=False)
    assert net.monitor.violations == []


@pytest.mark.parametrize("unsafe", [False, True])
def test_figure8_applied_state_diverges_only_when_broken(unsafe: bool) -> None:
    net = figure8(unsafe=unsafe)
    applied = net.nodes["s1"].state_machine.applied  # type: ignore[attr-defined]
    assert (b"A" in applied) is unsafe
