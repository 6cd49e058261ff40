"""Raft tests written against the mutants of ``mutants/catalog.py`` that survived every
other test (``make mutate MUTATE_ARGS='--area raft'``): each test names the bug it
catches. They drive single nodes or a :class:`~vsm_phoenix.verify.transcript.Driver`
cluster message by message, so the rule under test is the one that decides.
"""

from __future__ import annotations

import random
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vsm_phoenix.errors import DecodeError
from vsm_phoenix.protocol.envelope import Envelope, decode_cbor, encode_cbor
from vsm_phoenix.protocol.node import (
    CancelTimer,
    Deliver,
    Persist,
    Receive,
    Restart,
    Send,
    SetTimer,
    TimerFired,
)
from vsm_phoenix.protocol.raft import (
    KEY_STATE,
    M_APPEND,
    M_APPEND_RESP,
    M_SNAP_RESP,
    M_VOTE_RESP,
    T_ELECTION,
    AppendEntries,
    AppendResponse,
    Entry,
    InstallSnapshot,
    RaftConfig,
    RaftNode,
    RequestVote,
    Role,
    VoteResponse,
    check_invariants,
    decode_message,
    encode_message,
    log_key,
)

IDS3 = ("n1", "n2", "n3")


def restarted(nid: str, terms: list[int], term: int, config: RaftConfig,
              vote: str | None = None) -> RaftNode:
    """A node rebooted from a disk holding a log with entries of ``terms``."""
    persisted = {KEY_STATE: encode_cbor({"t": term, "v": vote})}
    for i, t in enumerate(terms, 1):
        persisted[log_key(i)] = encode_cbor([t, b"e%d" % i])
    node = RaftNode(nid, random.Random(nid), config)
    node.step(Restart(0, persisted))
    return node


_ids = iter(range(1, 1 << 30))


def envelope(msg: Any, sender: str, recipient: str, mid: bytes | None = None) -> Envelope:
    mtype, body = encode_message(msg)
    mid = mid if mid is not None else b"m%015d" % next(_ids)
    return Envelope(message_id=mid, type=mtype, sender=sender, recipient=recipient,
                    timestamp=(1, 0, sender), payload=encode_cbor(body))


def deliver(node: RaftNode, msg: Any, sender: str, now: int = 10) -> list[Any]:
    return node.step(Receive(now, envelope(msg, sender, node.node_id)))


def replies(effects: list[Any], mtype: str) -> list[dict[str, Any]]:
    return [decode_cbor(e.envelope.payload) for e in effects
            if isinstance(e, Send) and e.envelope.type == mtype]


def append(term: int, prev: int, prev_term: int, entries: list[int], commit: int,
           first_data: int | None = None) -> AppendEntries:
    """AppendEntries whose entries have the given terms and the data ``restarted``
    gives the entries at those indexes (``e<index>``)."""
    return AppendEntries(term=term, prev_index=prev, prev_term=prev_term,
                         entries=tuple(Entry(t, b"e%d" % (prev + 1 + k))
                                       for k, t in enumerate(entries)),
                         commit=commit, seq=0)


def granted(effects: list[Any]) -> bool | None:
    for e in effects:
        if isinstance(e, Send) and e.envelope.type == M_VOTE_RESP:
            return bool(decode_cbor(e.envelope.payload)["g"])
    return None


# -- the vote is durable before it is granted ---------------------------------------------
def test_a_vote_in_the_current_term_is_persisted_before_the_grant_is_sent() -> None:
    """A node that already knows term 2 (no vote yet) grants n1 its vote: the ``Persist``
    of ``{t: 2, v: n1}`` must precede the grant, or a crash right after the send
    lets it vote again, for n3, in the same term (two leaders in term 2)."""
    cfg = RaftConfig(peers=IDS3, pre_vote=False, check_quorum=False)
    node = restarted("n2", [1], 2, cfg)
    vote = RequestVote(term=2, last_index=1, last_term=1, pre=False, force=False)
    effects = node.step(Receive(5, envelope(vote, "n1", "n2")))
    assert granted(effects) is True
    states = [i for i, e in enumerate(effects) if isinstance(e, Persist) and e.key == KEY_STATE]
    send = next(i for i, e in enumerate(effects) if isinstance(e, Send))
    assert states and states[0] < send, effects
    stored = effects[states[-1]]
    assert isinstance(stored, Persist) and stored.value is not None
    assert decode_cbor(stored.value) == {"t": 2, "v": "n1"}
    # Crash, reboot from what was persisted: a vote for n3 in term 2 is refused.
    disk = {KEY_STATE: stored.value, log_key(1): encode_cbor([1, b"e1"])}
    again = RaftNode("n2", random.Random(1), cfg)
    again.step(Restart(6, disk))
    other = RequestVote(term=2, last_index=1, last_term=1, pre=False, force=False)
    assert granted(again.step(Receive(7, envelope(other, "n3", "n2", b"o" * 16)))) is False


# -- a stale AppendEntries never truncates a matching suffix ------------------------------
def test_a_delayed_short_append_keeps_the_entries_after_it() -> None:
    """A follower holding entries 1-3 of the leader's term gets a delayed copy of the
    leader's first append (entry 1 only). Every entry in it matches: the follower must
    keep 2 and 3 (they may be committed already) and delete nothing."""
    cfg = RaftConfig(peers=IDS3)
    node = restarted("n2", [1, 1, 1], 1, cfg)
    effects = deliver(node, append(1, 0, 0, [1], commit=0), "n1")
    assert [e.term for e in node.log] == [1, 1, 1] and node.last_index == 3
    assert not [e for e in effects if isinstance(e, Persist) and e.key.startswith("raft/log")]
    assert replies(effects, M_APPEND_RESP)[0]["ok"] is True


# -- a follower commits only what the leader's append verified -----------------------------
def test_a_follower_does_not_commit_its_own_unverified_suffix() -> None:
    """The follower holds [1, 1, 2]: entry 3 is a leftover of a deposed term-2 leader.
    The term-3 leader (whose entry 3 differs) ships entry 2 only (a batch limit or a
    probe) with commit index 3. The append verified entries up to 2: the follower may
    commit 2, not its own entry 3 (that would apply an entry the cluster never chose)."""
    cfg = RaftConfig(peers=IDS3)
    node = restarted("n2", [1, 1, 2], 3, cfg)
    deliver(node, append(3, 1, 1, [1], commit=3), "n1")
    assert node.commit_index == 2 and node.last_applied == 2
    assert node.term_at(3) == 2  # kept (not yet contradicted), but not committed


# -- votes of an earlier election are not counted -------------------------------------------
def test_a_late_grant_of_an_earlier_term_does_not_elect_the_candidate() -> None:
    """n1's term-2 election times out and it campaigns for term 3; n2's grant for term 2
    arrives late. Counting it would make n1 leader of term 3 with one real vote (its
    own) -- while n2 may vote for n3 in term 3: two leaders."""
    cfg = RaftConfig(peers=IDS3, pre_vote=False, check_quorum=False)
    node = restarted("n1", [1], 1, cfg)
    node.step(TimerFired(1, T_ELECTION))
    node.step(TimerFired(2, T_ELECTION))
    assert node.role is Role.CANDIDATE and node.term == 3
    deliver(node, VoteResponse(term=2, granted=True, pre=False), "n2")
    assert node.role is Role.CANDIDATE and not node.is_leader
    deliver(node, VoteResponse(term=3, granted=True, pre=False), "n2")
    assert node.is_leader and node.term == 3


def test_a_late_pre_vote_grant_of_an_earlier_pre_campaign_is_not_counted() -> None:
    """n1 pre-campaigns for term 2, then follows a term-2 leader, then pre-campaigns
    for term 3. n2's grant for the term-2 pre-vote arrives now: it says nothing about
    term 3 and must not start a real campaign (which would bump every term)."""
    cfg = RaftConfig(peers=IDS3, pre_vote=True, check_quorum=False)
    node = restarted("n1", [1], 1, cfg)
    node.step(TimerFired(1, T_ELECTION))
    assert node.role is Role.PRE_CANDIDATE and node.term == 1
    deliver(node, append(2, 1, 1, [], commit=0), "n3")
    assert node.role is Role.FOLLOWER and node.term == 2
    node.step(TimerFired(20, T_ELECTION))
    assert node.role is Role.PRE_CANDIDATE
    deliver(node, VoteResponse(term=2, granted=True, pre=True), "n2")
    assert node.role is Role.PRE_CANDIDATE and node.term == 2
    deliver(node, VoteResponse(term=3, granted=True, pre=True), "n2")
    assert node.role is Role.CANDIDATE and node.term == 3


@pytest.mark.parametrize("pre_vote", [False, True])
def test_a_refusal_carrying_a_higher_term_ends_the_campaign(pre_vote: bool) -> None:
    """Figure 2: a response with a higher term makes the receiver adopt it and follow.
    A (pre-)candidate that ignored it went on campaigning behind the cluster, one
    refused term at a time."""
    node = restarted("n1", [1], 1, RaftConfig(peers=IDS3, pre_vote=pre_vote))
    node.step(TimerFired(1, T_ELECTION))
    assert node.role is (Role.PRE_CANDIDATE if pre_vote else Role.CANDIDATE)
    effects = deliver(node, VoteResponse(term=7, granted=False, pre=pre_vote), "n2")
    assert (node.role, node.term, node.voted_for, node.leader_id) == (
        Role.FOLLOWER, 7, None, None)
    assert not [e for e in effects if isinstance(e, Send)]
    assert any(isinstance(e, Persist) and e.key == KEY_STATE for e in effects)
    node.step(TimerFired(5_000, T_ELECTION))
    assert node.term == (7 if pre_vote else 8)  # a pre-campaign asks for 8, takes nothing


# -- a leader ignores answers of an earlier term ---------------------------------------------
def _leader_of_term_3() -> RaftNode:
    cfg = RaftConfig(peers=IDS3, pre_vote=False, check_quorum=False)
    node = restarted("n1", [1, 2], 2, cfg)
    node.step(TimerFired(1, T_ELECTION))
    deliver(node, VoteResponse(term=3, granted=True, pre=False), "n2")
    assert node.is_leader and node.term == 3 and node.last_index == 3
    return node


def test_a_leader_ignores_an_append_acknowledgement_of_an_earlier_term() -> None:
    """An acknowledgement from term 2 says what n2 held *then*; counting it towards the
    term-3 no-op would commit entry 3 on one real replica (the leader's)."""
    node = _leader_of_term_3()
    ack = AppendResponse(term=2, ok=True, match=3, reject=0, hint_index=1, hint_term=None,
                         seq=0)
    effects = deliver(node, ack, "n2")
    assert node.commit_index < 3
    assert not replies(effects, M_APPEND)  # nothing new to ship because of it
    ack3 = AppendResponse(term=3, ok=True, match=3, reject=0, hint_index=1, hint_term=None,
                          seq=0)
    deliver(node, ack3, "n2")
    assert node.commit_index == 3


# -- leader stickiness under check-quorum -------------------------------------------------------
def test_a_follower_in_its_lease_ignores_a_vote_request_of_a_higher_term() -> None:
    """With check-quorum (and no pre-vote) a follower that heard its leader within the
    election timeout neither answers a higher-term vote request nor adopts its term:
    a partitioned node that comes back with a higher term cannot depose a healthy
    leader (Raft thesis §4.2.3)."""
    cfg = RaftConfig(peers=IDS3, pre_vote=False, check_quorum=True)
    node = restarted("n2", [1], 1, cfg)
    deliver(node, append(1, 1, 1, [], commit=1), "n1")
    assert node.leader_id == "n1"
    effects = deliver(node, RequestVote(term=5, last_index=1, last_term=1, pre=False,
                                        force=False), "n3")
    assert node.term == 1 and node.voted_for is None and node.leader_id == "n1"
    assert not replies(effects, M_VOTE_RESP)


# -- an old snapshot never rolls the state machine back ---------------------------------------
def test_a_snapshot_below_the_commit_index_is_ignored() -> None:
    cfg = RaftConfig(peers=IDS3)
    node = restarted("n2", [1, 1, 1, 1, 1], 1, cfg)
    deliver(node, append(1, 5, 1, [], commit=5), "n1")
    assert node.commit_index == node.last_applied == 5
    applied = node.state_machine.snapshot()
    snap = InstallSnapshot(term=1, index=3, snap_term=1, config=cfg.bootstrap, offset=0,
                           data=encode_cbor([b"e1", b"e2", b"e3"]), done=True, seq=0)
    effects = deliver(node, snap, "n1")
    assert (node.commit_index, node.last_applied, node.last_index) == (5, 5, 5)
    assert node.state_machine.snapshot() == applied
    assert replies(effects, M_SNAP_RESP)[0]["m"] == 5


# -- messages of an earlier term change nothing ---------------------------------------------------
def test_a_pre_vote_for_the_voters_own_term_is_refused() -> None:
    """A pre-vote asks "would you vote for me in term t?"; a voter already in term t
    (it voted or follows someone there) says no, and tells the asker its term."""
    cfg = RaftConfig(peers=IDS3, pre_vote=True, check_quorum=False)
    node = restarted("n2", [1], 2, cfg)
    effects = deliver(node, RequestVote(term=2, last_index=1, last_term=1, pre=True,
                                        force=False), "n1")
    (reply,) = replies(effects, M_VOTE_RESP)
    assert reply["g"] is False and reply["t"] == 2
    effects = deliver(node, RequestVote(term=3, last_index=1, last_term=1, pre=True,
                                        force=False), "n1")
    assert replies(effects, M_VOTE_RESP)[0]["g"] is True
    assert node.term == 2 and node.voted_for is None  # a pre-vote changes nothing


def test_a_snapshot_from_the_leader_of_an_earlier_term_is_refused() -> None:
    """A deposed leader's InstallSnapshot arriving late must neither be installed nor
    make its sender this follower's leader."""
    cfg = RaftConfig(peers=IDS3)
    node = restarted("n2", [1, 1], 3, cfg)
    snap = InstallSnapshot(term=2, index=4, snap_term=2, config=cfg.bootstrap, offset=0,
                           data=encode_cbor([b"s1", b"s2", b"s3", b"s4"]), done=True, seq=0)
    effects = deliver(node, snap, "n1")
    assert (node.snap_index, node.last_index, node.commit_index) == (0, 2, 0)
    assert node.leader_id is None and node.term == 3
    (reply,) = replies(effects, M_SNAP_RESP)
    assert (reply["t"], reply["m"]) == (3, 0)


# -- hostile input, judged on both outcomes ---------------------------------------------------
MTYPES = [M_APPEND, M_APPEND_RESP, "raft.vote", M_VOTE_RESP, "raft.snapshot", M_SNAP_RESP,
          "raft.timeout-now"]
_cbor = st.recursive(
    st.none() | st.booleans() | st.integers(-1, 2**64) | st.binary(max_size=4)
    | st.text(max_size=3),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner,
                                                                  max_size=4),
    max_leaves=10,
)
_fields = st.sampled_from(["t", "pi", "pt", "e", "c", "s", "ok", "m", "ri", "hi", "ht", "li",
                           "lt", "pre", "f", "g", "i", "st", "d", "o"])


@settings(max_examples=150, deadline=None)
@given(mtype=st.sampled_from(MTYPES),
       body=st.binary(max_size=48) | st.dictionaries(_fields, _cbor, max_size=7).map(encode_cbor))
def test_hostile_payloads_either_decode_or_change_nothing(mtype: str, body: bytes) -> None:
    """A refused payload leaves the node as it was; an accepted one is a message that
    decodes, and the node still satisfies every invariant (both outcomes asserted)."""
    cfg = RaftConfig(peers=IDS3)
    node = restarted("n1", [1, 1], 1, cfg)
    key = node.state_key()
    try:
        effects = node.step(Receive(5, Envelope(message_id=b"h" * 16, type=mtype, sender="n2",
                                                recipient="n1", timestamp=(1, 0, "n2"),
                                                payload=body)))
    except DecodeError:
        assert node.state_key() == key
        return
    decode_message(mtype, body)  # accepted only what decodes
    assert check_invariants([node]) == []
    assert all(isinstance(e, Persist | Send | SetTimer | CancelTimer | Deliver) for e in effects)
