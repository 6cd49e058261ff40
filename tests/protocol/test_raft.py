"""Raft under the deterministic simulator: elections, replication, recovery, partitions,
snapshots, leadership transfer, ReadIndex, batching, hostile input."""

from __future__ import annotations

import random
from functools import partial
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from vsm_phoenix.errors import DecodeError
from vsm_phoenix.protocol.envelope import Envelope, decode_cbor, encode_cbor
from vsm_phoenix.protocol.node import (
    ClientRequest,
    Deliver,
    LocalProtocolError,
    Receive,
    RemoteProtocolError,
    Restart,
    Send,
    Start,
    TimerFired,
)
from vsm_phoenix.protocol.raft import (
    K_LEADER,
    K_NOT_LEADER,
    K_OK,
    K_UNKNOWN,
    KEY_STATE,
    M_APPEND,
    M_APPEND_RESP,
    M_SNAP,
    M_SNAP_RESP,
    M_TIMEOUT_NOW,
    M_VOTE,
    M_VOTE_RESP,
    T_ELECTION,
    WIRE,
    AppendEntries,
    AppendResponse,
    Entry,
    InstallSnapshot,
    Membership,
    Propose,
    RaftConfig,
    RaftMonitor,
    RaftNode,
    Read,
    Reconfigure,
    RecordingStateMachine,
    RequestVote,
    Role,
    SnapshotResponse,
    TimeoutNow,
    TransferLeadership,
    VoteResponse,
    check_invariants,
    decode_message,
    encode_message,
)
from vsm_phoenix.protocol.sim import NetworkConfig, Simulator

IDS3 = ["n1", "n2", "n3"]
IDS5 = ["n1", "n2", "n3", "n4", "n5"]


def cluster(ids: list[str], seed: int = 0, network: NetworkConfig | None = None,
            **cfg: Any) -> tuple[Simulator, RaftConfig]:
    config = RaftConfig(peers=tuple(ids), **cfg)
    sim = Simulator(lambda nid, rng: RaftNode(nid, rng, config), ids, seed=seed,
                    network=network)
    return sim, config


def raft(sim: Simulator, nid: str) -> RaftNode:
    node = sim.node(nid)
    assert isinstance(node, RaftNode)
    return node


def live(sim: Simulator) -> list[RaftNode]:
    return [n for n in (sim.node(i) for i in sim.node_ids) if isinstance(n, RaftNode)]


def leaders(sim: Simulator, among: list[str] | None = None) -> list[str]:
    ids = among if among is not None else sim.node_ids
    return [i for i in ids if sim.is_up(i) and raft(sim, i).is_leader]


def watch(sim: Simulator, monitor: RaftMonitor, every: int = 5) -> None:
    def tick(s: Simulator) -> None:
        monitor.observe(live(s))
        s.schedule(s.now + every, tick)

    sim.schedule(sim.now, tick)


def wait_leader(sim: Simulator, among: list[str] | None = None, limit: int = 5_000) -> str:
    end = sim.now + limit
    while sim.now < end:
        sim.run_for(10)
        found = leaders(sim, among)
        if len(found) == 1:
            sim.run_for(100)  # let followers hear from it and the no-op commit
            if leaders(sim, among) == found:
                return found[0]
    raise AssertionError(f"no single leader by t={sim.now}: {leaders(sim, among)}")


def reply(sim: Simulator, nid: str, rid: str) -> Deliver | None:
    for d in sim.delivered[nid]:
        if d.request_id == rid:
            return d
    return None


def applied(sim: Simulator, nid: str) -> list[bytes]:
    sm = raft(sim, nid).state_machine
    assert isinstance(sm, RecordingStateMachine)
    return sm.applied


# -- elections -----------------------------------------------------------------------------
@pytest.mark.parametrize("seed", range(12))
def test_one_leader_per_term_under_faults(seed: int) -> None:
    net = NetworkConfig(drop_rate=0.1, duplicate_rate=0.1, reorder_rate=0.2)
    sim, _ = cluster(IDS5, seed=seed, network=net, election_timeout_ms=100, heartbeat_ms=20)
    monitor = RaftMonitor()
    watch(sim, monitor, every=2)
    rng = random.Random(seed)
    for t in range(200, 3_000, 300):
        victim = rng.choice(IDS5)
        sim.schedule(t, partial(Simulator.crash, node_id=victim))
        sim.schedule(t + rng.randint(20, 250), partial(Simulator.restart, node_id=victim))
        if rng.random() < 0.5:
            sim.schedule(t + 50, partial(_cut_off, rng.sample(IDS5, 2)))
            sim.schedule(t + 250, Simulator.heal)
    sim.run_until(3_500)
    sim.heal()
    sim.set_network(drop_rate=0.0)
    wait_leader(sim)
    assert monitor.violations == []
    assert len(monitor.leaders) >= 2  # several terms had a leader, never two


def _cut_off(group: list[str], sim: Simulator) -> None:
    sim.partition(group)


def test_election_and_leader_notification() -> None:
    sim, _ = cluster(IDS3, seed=3)
    lead = wait_leader(sim)
    node = raft(sim, lead)
    assert node.term >= 1 and node.commit_index >= 1  # its no-op committed
    assert any(d.kind == K_LEADER for d in sim.delivered[lead])
    for other in IDS3:
        assert raft(sim, other).leader_id == lead


def test_randomized_timeouts_come_from_the_injected_rng() -> None:
    a = RaftNode("n1", random.Random(7), RaftConfig(peers=tuple(IDS3)))
    b = RaftNode("n1", random.Random(7), RaftConfig(peers=tuple(IDS3)))
    assert a.step(Start(0)) == b.step(Start(0))
    delays = {
        RaftNode("n1", random.Random(s), RaftConfig(peers=tuple(IDS3))).step(Start(0))[0]
        .delay_ms  # type: ignore[union-attr]
        for s in range(20)
    }
    assert len(delays) > 5 and all(300 <= d < 600 for d in delays)


def test_same_seed_same_trace() -> None:
    def run() -> str:
        net = NetworkConfig(drop_rate=0.05, duplicate_rate=0.05)
        sim, _ = cluster(IDS3, seed=11, network=net)
        sim.run_until(500)
        for i in range(5):
            sim.client_request("n1", Propose(b"x%d" % i))
        sim.run_until(1_500)
        return sim.trace_json()

    assert run() == run()


# -- replication and commit ---------------------------------------------------------------
def test_replication_and_commit() -> None:
    sim, _ = cluster(IDS5, seed=1)
    lead = wait_leader(sim)
    rids = [sim.client_request(lead, Propose(b"cmd-%03d" % i)) for i in range(50)]
    sim.run_for(1_000)
    results = [reply(sim, lead, r) for r in rids]
    assert all(d is not None and d.kind == K_OK for d in results)
    assert [d.payload for d in results if d] == list(range(1, 51))
    expected = [b"cmd-%03d" % i for i in range(50)]
    for nid in IDS5:
        assert applied(sim, nid) == expected
        assert raft(sim, nid).commit_index == raft(sim, lead).last_index
    assert check_invariants(live(sim)) == []


def test_follower_answers_not_leader_with_hint() -> None:
    sim, _ = cluster(IDS3, seed=2)
    lead = wait_leader(sim)
    follower = next(i for i in IDS3 if i != lead)
    rid = sim.client_request(follower, Propose(b"x"))
    rid2 = sim.client_request(follower, Read(b""))
    sim.run_for(10)
    assert reply(sim, follower, rid) == Deliver(K_NOT_LEADER, lead, rid)
    assert reply(sim, follower, rid2) == Deliver(K_NOT_LEADER, lead, rid2)


# -- crash and restart --------------------------------------------------------------------
def test_crash_restart_recovers_persisted_state() -> None:
    sim, _ = cluster(IDS3, seed=4, snapshot_threshold=10_000)
    lead = wait_leader(sim)
    for k in range(20):
        sim.client_request(lead, Propose(b"v%d" % k))
    sim.run_for(500)
    before = {i: (raft(sim, i).term, raft(sim, i).voted_for, list(raft(sim, i).log))
              for i in IDS3}
    for i in IDS3:
        sim.crash(i)
    for i in IDS3:
        sim.restart(i)
        node = raft(sim, i)
        assert (node.term, node.voted_for, node.log) == before[i]
        assert node.role is Role.FOLLOWER and node.commit_index == 0
    lead2 = wait_leader(sim)
    sim.run_for(300)
    assert raft(sim, lead2).term > before[lead][0]
    expected = [b"v%d" % k for k in range(20)]
    for i in IDS3:
        assert applied(sim, i) == expected  # re-applied from the persisted log
    rid = sim.client_request(lead2, Propose(b"after"))
    sim.run_for(300)
    assert reply(sim, lead2, rid) == Deliver(K_OK, 21, rid)


def test_restart_with_corrupt_storage_is_a_decode_error() -> None:
    node = RaftNode("n1", random.Random(0), RaftConfig(peers=tuple(IDS3)))
    with pytest.raises(DecodeError):
        node.step(Restart(0, {KEY_STATE: b"\xff"}))
    key = node.state_key()
    node.step(Restart(0, {KEY_STATE: encode_cbor({"t": 3, "v": "n2"})}))
    assert node.term == 3 and node.voted_for == "n2" and node.state_key() != key


# -- partitions ---------------------------------------------------------------------------
def test_minority_leader_cannot_commit_and_heals() -> None:
    sim, _ = cluster(IDS5, seed=5)
    monitor = RaftMonitor()
    watch(sim, monitor)
    old = wait_leader(sim)
    minority = [old, next(i for i in IDS5 if i != old)]
    majority = [i for i in IDS5 if i not in minority]
    sim.partition(minority, majority)
    commit_before = raft(sim, old).commit_index
    rid = sim.client_request(old, Propose(b"lost"))
    sim.run_for(1_500)
    assert raft(sim, old).commit_index == commit_before
    assert not raft(sim, old).is_leader  # check-quorum: it stepped down
    assert reply(sim, old, rid) == Deliver(K_UNKNOWN, None, rid)
    new = wait_leader(sim, majority)
    rid2 = sim.client_request(new, Propose(b"kept"))
    sim.run_for(500)
    assert reply(sim, new, rid2) is not None
    sim.heal()
    sim.run_for(1_000)
    for i in IDS5:
        assert applied(sim, i) == [b"kept"]
    assert monitor.violations == []


def test_check_quorum_isolated_leader_steps_down() -> None:
    sim, cfg = cluster(IDS3, seed=6)
    lead = wait_leader(sim)
    sim.partition([lead])
    t0 = sim.now
    while raft(sim, lead).is_leader:
        sim.run_for(5)
    assert sim.now - t0 <= 2 * cfg.election_timeout_ms + cfg.heartbeat_ms


def test_without_check_quorum_isolated_leader_keeps_leading() -> None:
    sim, _ = cluster(IDS3, seed=6, check_quorum=False)
    lead = wait_leader(sim)
    sim.partition([lead])
    sim.run_for(2_000)
    assert raft(sim, lead).is_leader


def test_pre_vote_keeps_a_rejoining_node_from_disrupting() -> None:
    sim, _ = cluster(IDS3, seed=7)
    lead = wait_leader(sim)
    term = raft(sim, lead).term
    loner = next(i for i in IDS3 if i != lead)
    sim.partition([loner])
    sim.run_for(3_000)
    assert raft(sim, loner).term == term  # pre-votes failed; term never inflated
    sim.heal()
    sim.run_for(1_000)
    assert leaders(sim) == [lead] and raft(sim, lead).term == term


def test_without_pre_vote_a_rejoining_node_inflates_terms() -> None:
    sim, _ = cluster(IDS3, seed=7, pre_vote=False, check_quorum=False)
    lead = wait_leader(sim)
    term = raft(sim, lead).term
    loner = next(i for i in IDS3 if i != lead)
    sim.partition([loner])
    sim.run_for(3_000)
    assert raft(sim, loner).term > term + 3


def test_a_leader_answered_with_a_higher_term_steps_down() -> None:
    """Figure 2 again, at the leader: a rejoining node that inflated its term (no
    pre-vote) refuses the leader's appends with its term. A leader that ignored those
    answers kept leading in its old term, and under check-quorum its followers ignore
    the loner's vote requests (leader stickiness): the loner stayed out for good."""
    sim, _ = cluster(IDS3, seed=7, pre_vote=False, check_quorum=True)
    lead = wait_leader(sim)
    loner = next(i for i in IDS3 if i != lead)
    sim.partition([loner])
    sim.run_for(3_000)
    inflated = raft(sim, loner).term
    assert inflated > raft(sim, lead).term
    sim.heal()
    sim.run_for(2_000)
    now_leading = wait_leader(sim)
    assert raft(sim, now_leading).term >= inflated
    rid = sim.client_request(now_leading, Propose(b"after the heal"))
    sim.run_for(1_000)
    d = reply(sim, now_leading, rid)
    assert d is not None and d.kind == K_OK
    assert all(b"after the heal" in applied(sim, n) for n in IDS3)


class _CountingRaft(RaftNode):
    """Counts the ``raft.append`` rejections this node sends."""

    rejections = 0

    def step(self, event: Any) -> list[Any]:
        effects = super().step(event)
        for e in effects:
            if (isinstance(e, Send) and e.envelope.type == M_APPEND_RESP
                    and not decode_cbor(e.envelope.payload)["ok"]):
                self.rejections += 1
        return effects


def test_fast_backoff_skips_whole_terms() -> None:
    config = RaftConfig(peers=tuple(IDS5), max_batch=8, snapshot_threshold=10_000)
    sim = Simulator(lambda nid, rng: _CountingRaft(nid, rng, config), IDS5, seed=8)
    old = wait_leader(sim)
    sim.partition([old])
    for i in range(60):  # uncommitted entries of the old term
        sim.client_request(old, Propose(b"old-%d" % i))
    sim.run_for(50)
    majority = [i for i in IDS5 if i != old]
    new = wait_leader(sim, majority)
    for i in range(60):
        sim.client_request(new, Propose(b"new-%d" % i))
    sim.run_for(500)
    # A third leader starts probing the old one at the end of its log (index 63, term
    # 2 or 3), far past the divergence at index 2.
    sim.crash(new)
    wait_leader(sim, [i for i in majority if i != new])
    sim.restart(new)
    node = raft(sim, old)
    assert isinstance(node, _CountingRaft)
    before = node.rejections
    sim.heal()
    sim.run_for(1_000)
    assert applied(sim, old) == [b"new-%d" % i for i in range(60)]
    # 60 conflicting entries of one term are skipped in a round trip or two, not 60.
    assert 2 <= node.rejections - before <= 3


# -- snapshots ----------------------------------------------------------------------------
def test_snapshot_install_for_a_lagging_follower() -> None:
    sim, _ = cluster(IDS3, seed=9, snapshot_threshold=16)
    monitor = RaftMonitor()
    watch(sim, monitor)
    lead = wait_leader(sim)
    lagger = next(i for i in IDS3 if i != lead)
    sim.crash(lagger)
    for i in range(100):
        sim.client_request(lead, Propose(b"e%d" % i))
    sim.run_for(1_000)
    node = raft(sim, lead)
    assert node.snap_index >= 64 and len(node.log) < 32  # compacted
    assert not any(k.startswith("raft/log/") and int(k[9:]) <= node.snap_index
                   for k in sim.store[lead])
    sim.restart(lagger)
    sim.run_for(1_000)
    assert sim.bytes_by_type.get(M_SNAP, 0) > 0
    assert applied(sim, lagger) == applied(sim, lead) == [b"e%d" % i for i in range(100)]
    assert raft(sim, lagger).snap_index >= 64
    # The installed snapshot survives another crash.
    sim.crash(lagger)
    sim.restart(lagger)
    assert raft(sim, lagger).snap_index >= 64
    sim.run_for(500)
    assert applied(sim, lagger) == applied(sim, lead)
    assert monitor.violations == []


# -- leadership transfer ------------------------------------------------------------------
def test_leadership_transfer() -> None:
    sim, _ = cluster(IDS5, seed=10)
    lead = wait_leader(sim)
    term = raft(sim, lead).term
    target = sorted(i for i in IDS5 if i != lead)[-1]
    for i in range(10):
        sim.client_request(lead, Propose(b"t%d" % i))
    rid = sim.client_request(lead, TransferLeadership(target))
    sim.run_for(500)
    assert leaders(sim) == [target]
    assert raft(sim, target).term == term + 1
    assert reply(sim, lead, rid) == Deliver(K_UNKNOWN, target, rid) or reply(
        sim, lead, rid
    ) == Deliver(K_UNKNOWN, None, rid)
    assert sim.bytes_by_type.get(M_TIMEOUT_NOW, 0) > 0
    sim.run_for(300)
    assert all(len(applied(sim, i)) == 10 for i in IDS5)


def test_transfer_to_self_and_proposals_during_transfer() -> None:
    sim, _ = cluster(IDS3, seed=12)
    lead = wait_leader(sim)
    rid = sim.client_request(lead, TransferLeadership(lead))
    sim.run_for(5)
    assert reply(sim, lead, rid) == Deliver(K_OK, lead, rid)
    target = next(i for i in IDS3 if i != lead)
    sim.partition([target])  # the transfer cannot complete
    rid = sim.client_request(lead, TransferLeadership(target))
    rid2 = sim.client_request(lead, Propose(b"x"), delay_ms=1)
    sim.run_for(100)
    assert reply(sim, lead, rid2) == Deliver(K_NOT_LEADER, target, rid2)
    sim.run_for(600)
    d = reply(sim, lead, rid)
    assert d is not None and d.kind == "raft.failed"


# -- ReadIndex ----------------------------------------------------------------------------
def test_read_index_sees_acknowledged_writes() -> None:
    sim, _ = cluster(IDS3, seed=13)
    lead = wait_leader(sim)
    for i in range(5):
        sim.client_request(lead, Propose(b"w%d" % i))
    sim.run_for(200)
    rid = sim.client_request(lead, Read(b""))
    sim.run_for(100)
    assert reply(sim, lead, rid) == Deliver(K_OK, 5, rid)
    # The read waited for a heartbeat round: acks from a majority.
    node = raft(sim, lead)
    assert node._seq >= 1


def test_read_at_a_deposed_leader_never_returns_stale_data() -> None:
    sim, _ = cluster(IDS3, seed=14, check_quorum=False)
    old = wait_leader(sim)
    sim.partition([old])
    new = wait_leader(sim, [i for i in IDS3 if i != old])
    wrid = sim.client_request(new, Propose(b"fresh"))
    sim.run_for(200)
    assert reply(sim, new, wrid) is not None
    assert raft(sim, old).is_leader  # no check-quorum: it still believes it leads
    rid = sim.client_request(old, Read(b""))
    sim.run_for(500)
    assert reply(sim, old, rid) is None  # cannot confirm leadership: no answer
    sim.heal()
    sim.run_for(500)
    assert reply(sim, old, rid) == Deliver(K_NOT_LEADER, None, rid) or reply(
        sim, old, rid
    ) == Deliver(K_NOT_LEADER, new, rid)


def test_read_waits_for_a_commit_in_the_leaders_term() -> None:
    cfg = RaftConfig(peers=("n1",))
    node = RaftNode("n1", random.Random(0), cfg)
    node.step(Start(0))
    node.step(TimerFired(500, T_ELECTION))
    assert node.is_leader  # a single node commits its no-op at once
    out = node.step(ClientRequest(501, "r", Read(b"")))
    assert Deliver(K_OK, 0, "r") in out


# -- batching -----------------------------------------------------------------------------
def test_batching_packs_commands_into_fewer_messages() -> None:
    def messages(batch_delay_ms: int) -> tuple[int, int]:
        sim, _ = cluster(IDS3, seed=15, batch_delay_ms=batch_delay_ms)
        lead = wait_leader(sim)
        sent = sim.stats["sent"]
        rids = [sim.client_request(lead, Propose(b"b%d" % i), delay_ms=i // 10)
                for i in range(200)]
        sim.run_for(1_000)
        ok = sum(1 for r in rids if (d := reply(sim, lead, r)) and d.kind == K_OK)
        return ok, sim.stats["sent"] - sent

    ok_unbatched, sent_unbatched = messages(0)
    ok_batched, sent_batched = messages(2)
    assert ok_unbatched == ok_batched == 200
    assert sent_batched * 3 < sent_unbatched


# -- hostile input ------------------------------------------------------------------------
def _follower() -> RaftNode:
    node = RaftNode("n1", random.Random(0), RaftConfig(peers=tuple(IDS3)))
    node.step(Start(0))
    return node


def _envelope(mtype: str, payload: bytes, sender: str = "n2") -> Envelope:
    return Envelope(message_id=b"m" * 16, type=mtype, sender=sender, recipient="n1",
                    timestamp=(1, 0, sender), payload=payload)


MTYPES = [M_APPEND, M_APPEND_RESP, M_VOTE, M_VOTE_RESP, M_SNAP, M_SNAP_RESP, M_TIMEOUT_NOW]

cbor_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**64), 2**64) | st.binary(max_size=8)
    | st.text(max_size=4),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner,
                                                                  max_size=4),
    max_leaves=12,
)
field_names = st.sampled_from(["t", "pi", "pt", "e", "c", "s", "ok", "m", "ri", "hi", "ht",
                               "li", "lt", "pre", "f", "g", "i", "st", "d", "o", "z", "v",
                               "l"])


@given(mtype=st.sampled_from([*MTYPES, "raft.bogus"]), payload=st.binary(max_size=64))
def test_fuzzed_bytes_are_rejected_without_state_change(mtype: str, payload: bytes) -> None:
    node = _follower()
    key = node.state_key()
    try:
        node.step(Receive(5, _envelope(mtype, payload)))
    except DecodeError:
        assert node.state_key() == key


@given(mtype=st.sampled_from(MTYPES),
       fields=st.dictionaries(field_names, cbor_values, max_size=8))
def test_fuzzed_maps_are_rejected_without_state_change(mtype: str,
                                                       fields: dict[str, Any]) -> None:
    for node in (_follower(), _leader()):
        key = node.state_key()
        try:
            node.step(Receive(5, _envelope(mtype, encode_cbor(fields))))
        except DecodeError:
            assert node.state_key() == key


@given(term=st.integers(0, 5), prev=st.integers(0, 4), prev_term=st.integers(0, 5),
       entries=st.lists(st.tuples(st.integers(0, 6), st.binary(max_size=3)), max_size=4),
       commit=st.integers(0, 8))
def test_structured_appends_never_crash(term: int, prev: int, prev_term: int,
                                        entries: list[tuple[int, bytes]], commit: int) -> None:
    node = _follower()
    payload = encode_cbor({"t": term, "pi": prev, "pt": prev_term,
                           "e": [[t, d] for t, d in entries], "c": commit, "s": 0})
    key = node.state_key()
    try:
        out = node.step(Receive(5, _envelope(M_APPEND, payload)))
    except DecodeError:
        assert node.state_key() == key
        return
    assert any(isinstance(e, Send) for e in out) or term < node.term


def _leader() -> RaftNode:
    cfg = RaftConfig(peers=tuple(IDS3), pre_vote=False)
    node = RaftNode("n1", random.Random(0), cfg)
    node.step(Start(0))
    node.step(TimerFired(600, T_ELECTION))
    node.step(Receive(601, _envelope(M_VOTE_RESP, encode_cbor({"t": 1, "g": True,
                                                                "pre": False}))))
    assert node.is_leader
    return node


def test_semantic_violations_are_remote_protocol_errors() -> None:
    node = _leader()
    key = node.state_key()
    bad = [
        # a second leader in the same term
        (M_APPEND, {"t": 1, "pi": 0, "pt": 0, "e": [], "c": 0, "s": 0}),
        # acknowledging entries the leader never had
        (M_APPEND_RESP, {"t": 1, "ok": True, "m": 99, "ri": 0, "hi": 1, "ht": None, "s": 0}),
        # entry terms above the message term
        (M_APPEND, {"t": 2, "pi": 0, "pt": 0, "e": [[3, b""]], "c": 0, "s": 0}),
        # a snapshot the state machine cannot read
        (M_SNAP, {"t": 2, "i": 5, "st": 1, "c": {"v": ["n1"], "o": [], "l": []}, "o": 0,
                  "d": b"\x01", "z": True, "s": 0}),
        # a snapshot whose configuration has no voter
        (M_SNAP, {"t": 2, "i": 5, "st": 1, "c": {"v": [], "o": [], "l": []}, "o": 0,
                  "d": encode_cbor([]), "z": True, "s": 0}),
    ]
    for mtype, body in bad:
        with pytest.raises(DecodeError):
            node.step(Receive(700, _envelope(mtype, encode_cbor(body))))
        assert node.state_key() == key
    snap_resp = encode_cbor({"t": 1, "m": 0, "i": 0, "o": 0, "s": 0})
    with pytest.raises(DecodeError):  # from this node itself
        node.step(Receive(700, _envelope(M_SNAP_RESP, snap_resp, sender="n1")))
    assert node.state_key() == key
    # A sender outside the configuration may belong to one this node has not seen yet:
    # its answer is decoded, checked and, having no progress to update, ignored.
    assert node.step(Receive(700, _envelope(M_SNAP_RESP, snap_resp, sender="intruder"))) == []
    assert node.state_key() == key


def test_local_protocol_errors() -> None:
    with pytest.raises(LocalProtocolError):
        RaftNode("", random.Random(0), RaftConfig(peers=tuple(IDS3)))
    with pytest.raises(LocalProtocolError):
        RaftConfig(peers=("a", "b" * 300))
    with pytest.raises(LocalProtocolError):
        RaftConfig(peers=("a", "a"))
    with pytest.raises(LocalProtocolError):
        RaftConfig(peers=("a",), heartbeat_ms=500, election_timeout_ms=300)
    node = RaftNode("n1", random.Random(0), RaftConfig(peers=tuple(IDS3)))
    with pytest.raises(LocalProtocolError):
        node.step(TimerFired(0, T_ELECTION))
    node.step(Start(0))
    with pytest.raises(LocalProtocolError):
        node.step(Start(0))
    key = node.state_key()
    for payload in (Propose(b""), "nonsense", TransferLeadership(""),
                    Reconfigure(voters=()), Reconfigure(voters=("n1", "n1")),
                    Reconfigure(voters=("n1",), learners=("n1",)),
                    Reconfigure(voters=("n1", 7)),  # type: ignore[arg-type]
                    Reconfigure(voters=("n1",), joint="no")):  # type: ignore[arg-type]
        with pytest.raises(LocalProtocolError):
            node.step(ClientRequest(1, "r", payload))
    assert node.state_key() == key


def test_state_key_tracks_protocol_state() -> None:
    a, b = _follower(), _follower()
    assert a.state_key() == b.state_key()
    assert _leader().state_key() != a.state_key()
    assert hash(a.state_key()) == hash(b.state_key())
    assert len(a.state_digest()) == 32 and a.state_digest() == b.state_digest()
    assert _leader().state_digest() != a.state_digest()
    # Node ids appear as whole strings (renamable by a symmetry-reducing checker).
    assert "n1" in _leader().state_key()


# -- the wire codec -----------------------------------------------------------------------
u63 = st.integers(0, 2**63 - 1)
member_ids = st.sampled_from(["a", "b", "c", "d", "e"])


@st.composite
def memberships(draw: st.DrawFn) -> Membership:
    voters = draw(st.frozensets(member_ids, min_size=1))
    learners = draw(st.frozensets(member_ids)) - voters
    outgoing = draw(st.frozensets(member_ids))
    return Membership.of(voters, learners, outgoing)


entries_strategy = st.one_of(
    st.builds(Entry, st.just(5), st.binary(max_size=4)),
    st.builds(Entry, st.just(5), st.just(b""), memberships()),
)
messages = st.one_of(
    st.builds(AppendEntries, term=st.integers(5, 9), prev_index=st.integers(1, 9),
              prev_term=st.integers(1, 5),
              entries=st.lists(entries_strategy, max_size=3).map(tuple),
              commit=u63, seq=u63),
    st.builds(AppendResponse, term=u63, ok=st.booleans(), match=u63, reject=u63,
              hint_index=st.integers(1, 2**63 - 1), hint_term=st.none() | u63, seq=u63),
    st.builds(RequestVote, term=st.integers(3, 9), last_index=u63, last_term=st.integers(0, 3),
              pre=st.booleans(), force=st.booleans()),
    st.builds(VoteResponse, term=u63, granted=st.booleans(), pre=st.booleans()),
    st.builds(InstallSnapshot, term=st.integers(3, 9), index=st.integers(1, 99),
              snap_term=st.integers(1, 3), config=memberships(), offset=st.integers(0, 2**40),
              data=st.binary(max_size=8), done=st.booleans(), seq=u63),
    st.builds(SnapshotResponse, term=u63, match=u63, index=u63, offset=u63, seq=u63),
    st.builds(TimeoutNow, term=u63),
)


@given(messages)
def test_messages_round_trip_through_the_wire_table(msg: Any) -> None:
    mtype, body = encode_message(msg)
    assert mtype == WIRE[type(msg)][0]
    assert decode_message(mtype, encode_cbor(body)) == msg


def test_messages_are_keyword_only() -> None:
    with pytest.raises(TypeError):
        TimeoutNow(3)  # type: ignore[misc]
    assert TimeoutNow(term=3).term == 3


def test_decode_errors_name_the_field() -> None:
    good = {"t": 2, "pi": 1, "pt": 1, "e": [[2, b"x"]], "c": 0, "s": 0}
    cases = [
        ({**good, "pi": -1}, r"prev_index \('pi'\)"),
        ({**good, "c": "0"}, r"commit \('c'\)"),
        ({**good, "e": [[3, b"x"]]}, "entries: terms"),
        ({**good, "pt": 0}, "prev_term"),
    ]
    for body, pattern in cases:
        with pytest.raises(RemoteProtocolError, match=pattern):
            decode_message(M_APPEND, encode_cbor(body))
    with pytest.raises(RemoteProtocolError, match=r"missing \['s'\]"):
        decode_message(M_APPEND, encode_cbor({k: v for k, v in good.items() if k != "s"}))
    with pytest.raises(RemoteProtocolError, match=r"hint_term \('ht'\)"):
        decode_message(M_APPEND_RESP, encode_cbor({"t": 1, "ok": False, "m": 0, "ri": 1,
                                                   "hi": 1, "ht": "x", "s": 0}))
