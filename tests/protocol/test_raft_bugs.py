"""Tests aimed at the Raft bugs a developer really makes, each written so that the buggy
variant fails it (they were found surviving every other test):

* a vote granted on log length alone, ignoring the last term (the election restriction,
  Raft §5.4.1);
* ReadIndex counting any acknowledgement instead of those of the read's own heartbeat
  round — a deposed leader that a minority still acknowledges must not answer a read;
* a pre-vote granted without the lease check (a peer that still hears its leader
  refuses) or without the up-to-date check;
* InstallSnapshot keeping a log suffix that conflicts with the snapshot.

The scenarios are driven by hand, message by message
(:class:`~vsm_phoenix.verify.transcript.Driver`).
"""

from __future__ import annotations

import random
from typing import Any

import pytest

from vsm_phoenix.protocol.envelope import Envelope, decode_cbor, encode_cbor
from vsm_phoenix.protocol.node import Receive, Restart, Send, Start, TimerFired
from vsm_phoenix.protocol.raft import (
    K_OK,
    KEY_STATE,
    M_APPEND,
    M_APPEND_RESP,
    M_VOTE,
    M_VOTE_RESP,
    T_ELECTION,
    T_HEARTBEAT,
    InstallSnapshot,
    Propose,
    RaftConfig,
    RaftMonitor,
    RaftNode,
    Read,
    Role,
    check_invariants,
    encode_message,
    log_key,
)
from vsm_phoenix.protocol.sim import Simulator
from vsm_phoenix.verify.transcript import Driver


def restarted(nid: str, terms: list[int], term: int, config: RaftConfig) -> RaftNode:
    """A node rebooted from a disk holding a log with entries of ``terms``."""
    persisted = {KEY_STATE: encode_cbor({"t": term, "v": None})}
    for i, t in enumerate(terms, 1):
        persisted[log_key(i)] = encode_cbor([t, b"e%d" % i])
    node = RaftNode(nid, random.Random(nid), config)
    node.step(Restart(0, persisted))
    return node


def sent(effects: list[Any], mtype: str) -> list[Envelope]:
    return [e.envelope for e in effects if isinstance(e, Send) and e.envelope.type == mtype]


# -- the election restriction -------------------------------------------------------------
# (candidate's log terms, voter's log terms, granted?)
ELECTION_RESTRICTION = [
    ([1, 1, 1], [1, 2], False),  # longer but older last term: refused (§5.4.1)
    ([1, 2], [1, 1, 1], True),  # shorter but newer last term: granted
    ([1, 2, 2], [1, 2], True),  # same last term, longer: granted
    ([1, 2], [1, 2, 2], False),  # same last term, shorter: refused
    ([1, 2], [1, 2], True),
]


@pytest.mark.parametrize("pre_vote", [False, True], ids=["vote", "pre-vote"])
@pytest.mark.parametrize(("candidate", "voter", "granted"), ELECTION_RESTRICTION)
def test_votes_follow_the_election_restriction(candidate: list[int], voter: list[int],
                                               granted: bool, pre_vote: bool) -> None:
    cfg = RaftConfig(peers=("n1", "n2", "n3"), pre_vote=pre_vote, check_quorum=False)
    cand = restarted("n1", candidate, 2, cfg)
    other = restarted("n2", voter, 2, cfg)
    request = sent(cand.step(TimerFired(1, T_ELECTION)), M_VOTE)
    assert decode_cbor(request[0].payload)["pre"] is pre_vote
    to_n2 = next(e for e in request if e.recipient == "n2")
    reply = sent(other.step(Receive(2, to_n2)), M_VOTE_RESP)
    assert decode_cbor(reply[0].payload)["g"] is granted
    if not pre_vote:
        assert other.voted_for == ("n1" if granted else None)


# -- ReadIndex: acknowledgements of the read's own round only ----------------------------
IDS5 = ["n1", "n2", "n3", "n4", "n5"]


def _five(**options: Any) -> Driver:
    cfg = RaftConfig(peers=tuple(IDS5), **options)
    d = Driver(lambda nid, rng: RaftNode(nid, rng, cfg), IDS5,
               observe=lambda nodes: RaftMonitor().observe(
                   n for n in nodes.values() if isinstance(n, RaftNode)))
    d.start()
    return d


def _node(d: Driver, nid: str) -> RaftNode:
    node = d.nodes[nid]
    assert isinstance(node, RaftNode)
    return node


def _delivered(lines: list[str], kind: str, rid: str) -> bool:
    return any(f"deliver {kind} [{rid}]" in line for line in lines)


def test_read_at_a_deposed_leader_counts_only_acks_of_its_own_round() -> None:
    """n1 leads 5 nodes; a read's heartbeat round reaches n3-n5, whose answers are held
    up in the network. n3 is elected by n3-n5 and commits a write. A second read at
    n1, which still believes it leads (no check-quorum), starts a new round: n2 (cut
    off with n1) acknowledges it, and then the held answers of the *earlier* round
    arrive. Two acknowledgements of the new round (n1, n2) are not a majority of
    five: the second read must not be answered — it would miss the acknowledged
    write. (The first read may be: its round was acknowledged by a majority before
    the write began.)"""
    d = _five(pre_vote=False, check_quorum=False)
    d.fire("n1", T_ELECTION)
    d.settle()
    d.fire("n1", T_HEARTBEAT)
    d.settle()
    n1 = _node(d, "n1")
    assert n1.is_leader and n1.commit_index == 1
    # Read 1: its round goes out; n3..n5 answer, but the answers stay in the network.
    d.request("n1", "r1", Read(b""))
    for peer in ("n3", "n4", "n5"):
        d.deliver(src="n1", dst=peer, mtype=M_APPEND)
    d.drop(src="n1", dst="n2")
    # n3 wins term 2 with n4 and n5 and commits a write that n1 and n2 never see.
    d.fire("n3", T_ELECTION)
    for peer in ("n4", "n5"):
        d.deliver(src="n3", dst=peer, mtype=M_VOTE)
        d.deliver(src=peer, dst="n3", mtype=M_VOTE_RESP)
    d.drop(src="n3", dst="n1")
    d.drop(src="n3", dst="n2")
    n3 = _node(d, "n3")
    assert n3.is_leader and n3.term == 2
    d.request("n3", "w", Propose(b"fresh"))
    out: list[str] = []
    for _ in range(3):
        for peer in ("n4", "n5"):
            out += d.deliver(src="n3", dst=peer)
            out += d.deliver(src=peer, dst="n3")
    d.drop(src="n3")
    assert _delivered(out, K_OK, "w"), out
    # Read 2 at the deposed n1 (it still thinks it leads term 1).
    assert n1.is_leader and n1.term == 1
    out = d.request("n1", "r2", Read(b""))
    out += d.deliver(src="n1", dst="n2", mtype=M_APPEND)
    out += d.deliver(src="n2", dst="n1", mtype=M_APPEND_RESP)  # n2 acks round 2
    d.drop(src="n1", dst="n3")
    d.drop(src="n1", dst="n4")
    d.drop(src="n1", dst="n5")
    out += d.deliver(dst="n1", mtype=M_APPEND_RESP)  # the held round-1 answers
    assert not _delivered(out, K_OK, "r2"), "stale read: " + "\n".join(out)
    assert _delivered(out, K_OK, "r1")


# -- pre-vote: lease and up-to-date checks -------------------------------------------------
def _three(**options: Any) -> Driver:
    ids = ["n1", "n2", "n3"]
    cfg = RaftConfig(peers=tuple(ids), **options)
    d = Driver(lambda nid, rng: RaftNode(nid, rng, cfg), ids)
    d.start()
    d.fire("n1", T_ELECTION)
    d.settle()
    d.fire("n1", T_HEARTBEAT)
    d.settle()
    assert _node(d, "n1").is_leader
    return d


def _pre_vote_answer(d: Driver, voter: str) -> bool:
    out = d.deliver(src="n3", dst=voter, mtype=M_VOTE)
    line = next(x for x in out if M_VOTE_RESP in x)
    return "'g': True" in line


def test_a_pre_vote_is_refused_by_a_peer_that_still_hears_its_leader() -> None:
    d = _three()  # pre-vote and check-quorum on
    # n3 stops hearing n1 and campaigns: the lease, then the rest of the timeout.
    d.fire("n3", T_ELECTION)
    d.fire("n3", T_ELECTION)
    n3 = _node(d, "n3")
    assert n3.role is Role.PRE_CANDIDATE
    assert not _pre_vote_answer(d, "n2")  # n2 heard n1 within the election timeout
    assert not _pre_vote_answer(d, "n1")  # n1 leads
    assert n3.role is Role.PRE_CANDIDATE and n3.term == 1


def test_a_pre_vote_is_refused_to_a_stale_log_even_without_a_lease() -> None:
    d = _three()
    # n1 replicates an entry to n2 only.
    d.request("n1", "x", Propose(b"x"))
    d.deliver(src="n1", dst="n2")
    d.drop(src="n1", dst="n3")
    d.fire("n3", T_ELECTION)
    d.fire("n3", T_ELECTION)
    d.fire("n2", T_ELECTION)  # n2's lease ran out: only its log can refuse now
    assert _node(d, "n2").last_index > _node(d, "n3").last_index
    assert not _pre_vote_answer(d, "n2")


def test_a_rejoining_node_that_cannot_hear_the_leader_does_not_disrupt_it() -> None:
    """One-way cut: n3 no longer hears the leader, but everyone hears n3. Its pre-votes
    reach peers that still hear the leader; they refuse, so its term never grows and
    the leader keeps its term after the cut heals."""
    ids = ["n1", "n2", "n3"]
    cfg = RaftConfig(peers=tuple(ids))
    sim = Simulator(lambda nid, rng: RaftNode(nid, rng, cfg), ids, seed=5)
    sim.run_until(1_000)
    lead = next(i for i in ids if isinstance(n := sim.node(i), RaftNode) and n.is_leader)
    term = sim.node(lead).term  # type: ignore[union-attr]
    loner = next(i for i in ids if i != lead)
    sim.block(lead, loner)
    sim.run_for(3_000)
    assert sum(1 for e in sim.trace if e["k"] == "send" and e["n"] == loner
               and e["type"] == M_VOTE) > 0  # it did campaign, and was heard
    assert sim.node(loner).term == term  # type: ignore[union-attr]
    sim.heal()
    sim.run_for(1_000)
    assert sim.node(lead).is_leader and sim.node(lead).term == term  # type: ignore[union-attr]


# -- InstallSnapshot never keeps a conflicting suffix ------------------------------------
def _snapshot_to(node: RaftNode, index: int, snap_term: int, term: int = 5) -> list[Any]:
    data = encode_cbor([b"s%d" % i for i in range(1, index + 1)])
    mtype, body = encode_message(InstallSnapshot(term=term, index=index, snap_term=snap_term,
                                                 config=node.config.bootstrap, offset=0,
                                                 data=data, done=True, seq=0))
    env = Envelope(message_id=b"m" * 16, type=mtype, sender="n2", recipient=node.node_id,
                   timestamp=(1, 0, "n2"), payload=encode_cbor(body))
    return node.step(Receive(10, env))


def test_install_snapshot_drops_a_conflicting_suffix() -> None:
    cfg = RaftConfig(peers=("n1", "n2", "n3"))
    node = restarted("n1", [1, 1, 2, 2, 2], 2, cfg)
    effects = _snapshot_to(node, 3, snap_term=3)  # the leader's entry 3 is of term 3
    assert (node.snap_index, node.snap_term, node.last_index, node.log) == (3, 3, 3, [])
    deleted = {e.key for e in effects if getattr(e, "value", 0) is None}
    assert {log_key(i) for i in range(1, 6)} <= deleted
    assert check_invariants([node]) == []


def test_install_snapshot_keeps_a_matching_suffix() -> None:
    cfg = RaftConfig(peers=("n1", "n2", "n3"))
    node = restarted("n1", [1, 1, 2, 2, 2], 2, cfg)
    _snapshot_to(node, 3, snap_term=2)  # entry 3 matches: 4 and 5 agree as well
    assert (node.snap_index, node.last_index, [e.term for e in node.log]) == (3, 5, [2, 2])


def test_invariants_flag_a_log_that_goes_back_in_terms() -> None:
    cfg = RaftConfig(peers=("n1", "n2", "n3"))
    node = restarted("n1", [1, 2, 2], 2, cfg)
    assert check_invariants([node]) == []
    node._log.snap_index, node._log.snap_term = 0, 3  # as if a term-3 snapshot kept them
    assert any("log order" in v for v in check_invariants([node]))
    fresh = RaftNode("n1", random.Random(0), cfg)
    fresh.step(Start(0))
    assert check_invariants([fresh]) == []
