"""Raft membership changes: joint consensus, single-server changes, learners.

Every test runs real :class:`RaftNode` s in the simulator (or steps one by hand) and
checks the outcome a user sees — the reply, each node's configuration, who leads,
which writes commit — with :class:`RaftMonitor` watching safety throughout.
"""

from __future__ import annotations

import random
from functools import partial
from typing import Any

import pytest

from vsm_phoenix.protocol.envelope import Envelope, encode_cbor
from vsm_phoenix.protocol.node import Deliver, Receive, Restart, Start
from vsm_phoenix.protocol.raft import (
    K_FAILED,
    K_NOT_LEADER,
    K_OK,
    M_APPEND,
    AppendEntries,
    Entry,
    Membership,
    MembershipError,
    Propose,
    RaftConfig,
    RaftMonitor,
    RaftNode,
    Reconfigure,
    RecordingStateMachine,
    Role,
    encode_message,
)
from vsm_phoenix.protocol.sim import NetworkConfig, Simulator

IDS3 = ["n1", "n2", "n3"]


def cluster(ids: list[str], seed: int = 0, network: NetworkConfig | None = None,
            **cfg: Any) -> tuple[Simulator, RaftConfig, RaftMonitor]:
    config = RaftConfig(peers=tuple(ids), election_timeout_ms=150, heartbeat_ms=30, **cfg)
    sim = Simulator(lambda nid, rng: RaftNode(nid, rng, config), ids, seed=seed,
                    network=network)
    monitor = RaftMonitor()

    def tick(s: Simulator) -> None:
        monitor.observe(live(s))
        s.schedule(s.now + 3, tick)

    sim.schedule(0, tick)
    return sim, config, monitor


def raft(sim: Simulator, nid: str) -> RaftNode:
    node = sim.node(nid)
    assert isinstance(node, RaftNode)
    return node


def live(sim: Simulator) -> list[RaftNode]:
    return [n for n in (sim.node(i) for i in sim.node_ids) if isinstance(n, RaftNode)]


def leaders(sim: Simulator) -> list[str]:
    return [i for i in sim.node_ids if sim.is_up(i) and raft(sim, i).is_leader]


def wait_leader(sim: Simulator, limit: int = 5_000) -> str:
    end = sim.now + limit
    while sim.now < end:
        sim.run_for(10)
        found = leaders(sim)
        if len(found) == 1:
            sim.run_for(100)
            if leaders(sim) == found:
                return found[0]
    raise AssertionError(f"no single leader by t={sim.now}: {leaders(sim)}")


def reply(sim: Simulator, nid: str, rid: str) -> Deliver | None:
    for d in sim.delivered[nid]:
        if d.request_id == rid:
            return d
    return None


def ask(sim: Simulator, payload: Any, limit: int = 5_000) -> Deliver:
    """Send ``payload`` to the current leader (retrying through leader changes and
    failed attempts) until it answers ``raft.ok``."""
    end = sim.now + limit
    last: Deliver | None = None
    while sim.now < end:
        lead = wait_leader(sim)
        rid = sim.client_request(lead, payload)
        for _ in range(100):
            sim.run_for(10)
            last = reply(sim, lead, rid)
            if last is not None:
                break
        if last is not None and last.kind == K_OK:
            return last
        sim.run_for(50)
    raise AssertionError(f"no raft.ok for {payload!r} by t={sim.now}; last reply {last!r}")


def applied(sim: Simulator, nid: str) -> list[bytes]:
    sm = raft(sim, nid).state_machine
    assert isinstance(sm, RecordingStateMachine)
    return sm.applied


def conf(*voters: str, learners: tuple[str, ...] = ()) -> Membership:
    return Membership.of(voters, learners)


def settle(sim: Simulator, ms: int = 500) -> None:
    sim.run_for(ms)


# -- the value -----------------------------------------------------------------------------
def test_membership_rules_and_codec() -> None:
    m = Membership.of(["b", "a"], ["c"], ["a", "d"])
    assert m.joint and m.all_voters == {"a", "b", "d"} and m.members == {"a", "b", "c", "d"}
    assert Membership.decode(m.encode()) == m
    assert m.leave_joint() == Membership.of(["a", "b"], ["c"])
    assert str(m) == "(a b && a d learners c)"
    # A voter of the outgoing half may be a learner of the incoming one (a demotion).
    assert Membership.of(["a"], ["b"], ["a", "b"]).learners == {"b"}
    for bad in ({"v": [], "o": [], "l": []}, {"v": ["a"], "o": [], "l": ["a"]},
                {"v": ["b", "a"], "o": [], "l": []}, {"v": ["a", "a"], "o": [], "l": []},
                {"v": ["a"], "o": []}, {"v": [1], "o": [], "l": []}, ["a"],
                {"v": [""], "o": [], "l": []}):
        with pytest.raises(MembershipError):
            Membership.decode(bad)


def test_one_str_is_not_a_collection_of_ids() -> None:
    from vsm_phoenix.errors import TypeMismatch

    with pytest.raises(TypeMismatch):
        Reconfigure(voters="n1")
    with pytest.raises(TypeMismatch):
        Reconfigure(voters=["n1"], learners="n2")
    with pytest.raises(TypeMismatch):
        RaftConfig(peers="n1")
    with pytest.raises(TypeMismatch):
        Reconfigure(voters=3)  # type: ignore[arg-type]


# -- joint consensus ---------------------------------------------------------------------
def test_add_a_voter_through_the_joint_configuration() -> None:
    sim, _, monitor = cluster(IDS3, seed=1)
    ask(sim, Propose(b"before"))
    sim.add_node("n4")  # started with the same RaftConfig: not a voter there
    assert raft(sim, "n4").membership == conf("n1", "n2", "n3")
    answer = ask(sim, Reconfigure(voters=["n1", "n2", "n3", "n4"]))
    assert answer.payload == {"voters": ["n1", "n2", "n3", "n4"], "outgoing": [],
                              "learners": []}
    ask(sim, Propose(b"after"))
    settle(sim)
    for nid in ["n1", "n2", "n3", "n4"]:
        node = raft(sim, nid)
        assert node.membership == conf("n1", "n2", "n3", "n4"), nid
        assert applied(sim, nid) == [b"before", b"after"], nid
    # The log went through the joint stage: old && new, then new.
    configs = [e.config for e in raft(sim, "n4").log if e.config is not None]
    assert configs == [Membership.of(["n1", "n2", "n3", "n4"], (), ["n1", "n2", "n3"]),
                       conf("n1", "n2", "n3", "n4")]
    assert monitor.violations == []


def test_remove_the_leader_it_hands_over_and_stops_leading() -> None:
    sim, _, monitor = cluster([*IDS3, "n4"], seed=2)
    lead = wait_leader(sim)
    rest = [n for n in [*IDS3, "n4"] if n != lead]
    rid = sim.client_request(lead, Reconfigure(voters=rest))
    settle(sim, 300)
    d = reply(sim, lead, rid)
    assert d is not None and d.kind == K_OK and d.payload["voters"] == rest
    new = wait_leader(sim)
    assert new in rest
    old = raft(sim, lead)
    assert old.role is Role.FOLLOWER and not old.membership.is_voter(lead)
    # The removed leader never campaigns again, whatever its timers do.
    term = old.term
    sim.partition([lead])
    settle(sim, 2_000)
    assert raft(sim, lead).role is Role.FOLLOWER and raft(sim, lead).term == term
    sim.heal()
    ask(sim, Propose(b"x"))
    assert monitor.violations == []


def test_remove_the_leader_hands_over_within_one_election_timeout() -> None:
    """The removed leader asks the most up-to-date voter to campaign at once
    (``raft.timeout-now``), so the cluster does not wait out the lease."""
    sim, config, _ = cluster([*IDS3, "n4"], seed=5)
    lead = wait_leader(sim)
    rest = [n for n in [*IDS3, "n4"] if n != lead]
    rid = sim.client_request(lead, Reconfigure(voters=rest))
    for _ in range(200):
        sim.run_for(2)
        if reply(sim, lead, rid) is not None:
            break
    committed_at = sim.now
    while not leaders(sim) or leaders(sim) == [lead]:
        sim.run_for(2)
    assert sim.now - committed_at < config.election_timeout_ms


def test_replace_a_server_and_demote_one_to_learner() -> None:
    sim, _, monitor = cluster(IDS3, seed=3)
    sim.add_node("n4")
    ask(sim, Reconfigure(voters=["n1", "n2", "n4"], learners=["n3"]))
    settle(sim)
    for nid in ["n1", "n2", "n3", "n4"]:
        assert raft(sim, nid).membership == conf("n1", "n2", "n4", learners=("n3",)), nid
    ask(sim, Propose(b"v"))
    settle(sim)
    assert applied(sim, "n3") == [b"v"]  # the learner still receives the log
    assert monitor.violations == []


def test_joint_configuration_needs_a_majority_of_both_halves() -> None:
    """Replace two servers by n4 and n5 while n4 and n5 are down: the joint entry
    cannot commit (the new half has only the leader), so nothing after it commits —
    even though the old half is all there; check-quorum then unseats the leader, and
    no one can be elected either. One server of the new half suffices."""
    sim, _, monitor = cluster(IDS3, seed=4)
    sim.add_node("n4", start=False)
    sim.add_node("n5", start=False)
    lead = wait_leader(sim)
    new = [lead, "n4", "n5"]
    rid = sim.client_request(lead, Reconfigure(voters=new))
    settle(sim, 50)
    wid = sim.client_request(lead, Propose(b"w"))
    settle(sim, 2_000)
    d = reply(sim, lead, rid)
    assert d is None or d.kind != K_OK
    assert reply(sim, lead, wid) is None or reply(sim, lead, wid).kind != K_OK  # type: ignore[union-attr]
    assert all(raft(sim, n).membership.joint for n in IDS3)
    assert all(raft(sim, n).commit_index < raft(sim, n).membership_index for n in IDS3)
    assert all(b"w" not in applied(sim, n) for n in IDS3)
    sim.start("n4")
    settle(sim, 2_000)
    for n in [lead, "n4"]:
        assert raft(sim, n).membership == conf(*new), n
    assert len(leaders(sim)) == 1 and leaders(sim)[0] in (lead, "n4")
    assert monitor.violations == []


def test_joint_configuration_needs_the_old_majority_too() -> None:
    """The mirror image: replace n2 and n3 by n4 and n5 (caught up as learners) while
    n2 and n3 are down. The new half (n1 n4 n5) holds every entry, but without a
    majority of the old half nothing commits — not the joint entry, not a write. Once
    n2 is back, the change completes."""
    sim, _, monitor = cluster(IDS3, seed=10, check_quorum=False)
    sim.add_node("n4")
    sim.add_node("n5")
    ask(sim, Reconfigure(voters=IDS3, learners=["n4", "n5"]))
    settle(sim)
    lead = wait_leader(sim)
    old = [n for n in IDS3 if n != lead]
    for n in old:
        sim.crash(n)
    rid = sim.client_request(lead, Reconfigure(voters=[lead, "n4", "n5"]))
    settle(sim, 50)
    wid = sim.client_request(lead, Propose(b"w"))
    settle(sim, 1_000)
    node = raft(sim, lead)
    assert node.membership.joint and node.commit_index < node.membership_index
    assert all(raft(sim, n).last_index == node.last_index for n in ("n4", "n5"))
    assert reply(sim, lead, rid) is None and reply(sim, lead, wid) is None
    assert b"w" not in applied(sim, lead)
    sim.restart(old[0])
    settle(sim, 1_000)
    d = reply(sim, lead, rid)
    assert d is not None and d.kind == K_OK
    assert all(raft(sim, n).membership == conf(lead, "n4", "n5") for n in (lead, "n4", "n5"))
    assert monitor.violations == []


def test_one_change_at_a_time_also_without_the_joint_stage() -> None:
    """Two single-server changes both uncommitted would let majorities of (n1 n2 n3)
    and (n1 n2 n3 n4 n5) miss each other: the second waits for the first to commit."""
    sim, _, _ = cluster(IDS3, seed=11)
    lead = wait_leader(sim)
    sim.partition([n for n in IDS3 if n != lead])
    first = sim.client_request(lead, Reconfigure(voters=[*IDS3, "n4"], joint=False))
    second = sim.client_request(lead, Reconfigure(voters=[*IDS3, "n4", "n5"], joint=False),
                                delay_ms=1)
    learner = sim.client_request(lead, Reconfigure(voters=IDS3, learners=["n6"]),
                                 delay_ms=2)
    settle(sim, 20)
    assert reply(sim, lead, first) is None  # appended, in force, not committed
    assert raft(sim, lead).membership == conf(*IDS3, "n4")
    for rid in (second, learner):
        d = reply(sim, lead, rid)
        assert d is not None and d.kind == K_FAILED and "in progress" in d.payload


@pytest.mark.parametrize("ids,voters", [
    (IDS3, ["n1", "n2", "n4"]),  # a swap: majorities {n1 n3} and {n2 n4} miss each other
    (IDS3, [*IDS3, "n4", "n5"]),  # two added: {n1 n2} and {n3 n4 n5}
    ([*IDS3, "n4", "n5"], ["n1", "n4", "n5"]),  # two removed: {n2 n3 n4}, {n1 n5}
])
def test_a_change_of_two_voters_needs_the_joint_stage(ids: list[str],
                                                      voters: list[str]) -> None:
    """Without the joint stage only one voter may change: any two changed voters
    let a majority of the old and one of the new configuration be disjoint."""
    sim, _, _ = cluster(ids, seed=5)
    lead = wait_leader(sim)
    sim.run_for(200)
    last = raft(sim, lead).last_index
    rid = sim.client_request(lead, Reconfigure(voters=voters, joint=False))
    settle(sim, 20)
    d = reply(sim, lead, rid)
    assert d is not None and d.kind == K_FAILED and "at most one voter" in d.payload
    assert raft(sim, lead).last_index == last and raft(sim, lead).membership == conf(*ids)


def test_refusals_change_nothing() -> None:
    sim, _, _ = cluster(IDS3, seed=6)
    lead = wait_leader(sim)
    follower = next(n for n in IDS3 if n != lead)
    rid = sim.client_request(follower, Reconfigure(voters=IDS3[:2]))
    settle(sim, 20)
    d = reply(sim, follower, rid)
    assert d is not None and d.kind == K_NOT_LEADER
    # More than one voter changed without the joint stage.
    rid = sim.client_request(lead, Reconfigure(voters=["n1", "x", "y"], joint=False))
    settle(sim, 20)
    d = reply(sim, lead, rid)
    assert d is not None and d.kind == K_FAILED and "at most one voter" in d.payload
    # The same configuration again: answered at once, nothing appended.
    last = raft(sim, lead).last_index
    rid = sim.client_request(lead, Reconfigure(voters=IDS3))
    settle(sim, 20)
    d = reply(sim, lead, rid)
    assert d is not None and d.kind == K_OK and raft(sim, lead).last_index == last
    # A second change while the first is still in its joint stage.
    sim.partition([n for n in IDS3 if n != lead])
    first = sim.client_request(lead, Reconfigure(voters=[*IDS3, "n4"]))
    second = sim.client_request(lead, Reconfigure(voters=IDS3[:2]), delay_ms=1)
    settle(sim, 20)
    d = reply(sim, lead, second)
    assert d is not None and d.kind == K_FAILED and "in progress" in d.payload
    assert reply(sim, lead, first) is None


def test_a_new_leader_refuses_changes_until_its_term_commits() -> None:
    """Ongaro's 2015 fix, at one node: elected, but its no-op not yet committed."""
    cfg = RaftConfig(peers=tuple(IDS3), pre_vote=False)
    node = RaftNode("n1", random.Random(0), cfg)
    node.step(Start(0))
    node.step(_timer("raft.election"))
    node.step(Receive(10, _vote_resp("n2", term=1)))
    assert node.is_leader and node.commit_index == 0
    out = node.step(_request("r", Reconfigure(voters=["n1", "n2"])))
    assert [(e.kind, e.payload) for e in out if isinstance(e, Deliver)] == [
        (K_FAILED, "this leader has not committed an entry of its term yet")]
    unsafe = RaftNode("n1", random.Random(0),
                      RaftConfig(peers=tuple(IDS3), pre_vote=False,
                                 unsafe_reconfigure_early=True))
    unsafe.step(Start(0))
    unsafe.step(_timer("raft.election"))
    unsafe.step(Receive(10, _vote_resp("n2", term=1)))
    unsafe.step(_request("r", Reconfigure(voters=["n1", "n2"], joint=False)))
    assert unsafe.membership == conf("n1", "n2")  # in force as soon as appended


# -- the configuration in force ---------------------------------------------------------
def _timer(name: str) -> Any:
    from vsm_phoenix.protocol.node import TimerFired
    return TimerFired(0, name)


def _request(rid: str, payload: Any) -> Any:
    from vsm_phoenix.protocol.node import ClientRequest
    return ClientRequest(0, rid, payload)


def _vote_resp(sender: str, term: int) -> Envelope:
    return _env(sender, "raft.vote-resp", {"t": term, "g": True, "pre": False})


def _env(sender: str, mtype: str, body: dict[str, Any], to: str = "n1") -> Envelope:
    return Envelope(message_id=b"m" * 16, type=mtype, sender=sender, recipient=to,
                    timestamp=(1, 0, sender), payload=encode_cbor(body))


def _append(sender: str, term: int, prev: int, prev_term: int, entries: list[Entry],
            commit: int = 0) -> Envelope:
    mtype, body = encode_message(AppendEntries(term=term, prev_index=prev,
                                               prev_term=prev_term, entries=tuple(entries),
                                               commit=commit, seq=0))
    assert mtype == M_APPEND
    return _env(sender, mtype, body)


def test_a_configuration_takes_effect_when_appended_and_reverts_when_truncated() -> None:
    node = RaftNode("n1", random.Random(0), RaftConfig(peers=tuple(IDS3)))
    node.step(Start(0))
    joint = Membership.of(["n1", "n2", "n4"], (), IDS3)
    node.step(Receive(1, _append("n2", 1, 0, 0, [Entry(1, b""), Entry(1, b"", joint)])))
    assert node.membership == joint and node.membership_index == 2  # not committed
    # A leader of term 2 overwrites index 2: the configuration before it is back.
    node.step(Receive(2, _append("n3", 2, 1, 1, [Entry(2, b"")])))
    assert node.membership == conf(*IDS3) and node.membership_index == 0


def test_membership_survives_restart_and_compaction() -> None:
    cfg = RaftConfig(peers=tuple(IDS3), snapshot_threshold=3, election_timeout_ms=150,
                     heartbeat_ms=30)
    sim = Simulator(lambda nid, rng: RaftNode(nid, rng, cfg), IDS3, seed=7)
    sim.add_node("n4")
    ask(sim, Reconfigure(voters=IDS3, learners=["n4"]))
    for i in range(8):  # well past the snapshot threshold: the change is compacted
        ask(sim, Propose(b"%d" % i))
    settle(sim)
    for nid in IDS3:
        node = raft(sim, nid)
        assert node.snap_index >= node.membership_index  # it comes from the snapshot
        sim.restart(nid)
        assert raft(sim, nid).membership == conf(*IDS3, learners=("n4",)), nid
    # A server that joins now is caught up by a snapshot carrying the configuration.
    sim.add_node("n5")
    ask(sim, Reconfigure(voters=IDS3, learners=["n4", "n5"]))
    settle(sim)
    assert raft(sim, "n5").membership == conf(*IDS3, learners=("n4", "n5"))
    assert applied(sim, "n5") == [b"%d" % i for i in range(8)]


def test_restart_from_an_old_snapshot_without_a_configuration() -> None:
    """Stores written before configurations could change hold ``{i, t, d}``: the
    bootstrap configuration is meant."""
    cfg = RaftConfig(peers=tuple(IDS3))
    snap = encode_cbor({"i": 2, "t": 1, "d": encode_cbor([b"a", b"b"])})
    node = RaftNode("n2", random.Random(0), cfg)
    node.step(Restart(0, {"raft/snapshot": snap}))
    assert node.membership == conf(*IDS3) and node.snap_index == 2


# -- learners ----------------------------------------------------------------------------
def test_a_learner_catches_up_never_votes_and_is_promoted() -> None:
    sim, _, monitor = cluster(IDS3, seed=8)
    for i in range(5):
        ask(sim, Propose(b"%d" % i))
    sim.add_node("n4")
    ask(sim, Reconfigure(voters=IDS3, learners=["n4"]))
    settle(sim)
    lead = wait_leader(sim)
    assert raft(sim, lead).match_index("n4") == raft(sim, lead).last_index
    assert applied(sim, "n4") == [b"%d" % i for i in range(5)]
    # Cut off from everyone, a learner never campaigns.
    term = raft(sim, "n4").term
    sim.partition(["n4"])
    settle(sim, 2_000)
    assert raft(sim, "n4").role is Role.FOLLOWER and raft(sim, "n4").term == term
    sim.heal()
    # Its acknowledgement does not count: with two voters down nothing commits.
    lead = wait_leader(sim)
    down = [n for n in IDS3 if n != lead]
    for n in down:
        sim.crash(n)
    rid = sim.client_request(lead, Propose(b"lost"))
    settle(sim, 100)
    assert reply(sim, lead, rid) is None and b"lost" not in applied(sim, "n4")
    for n in down:
        sim.restart(n)
    settle(sim, 1_000)
    # Promotion: a change of one voter, here through the joint stage.
    ask(sim, Reconfigure(voters=[*IDS3, "n4"]))
    settle(sim)
    assert all(raft(sim, n).membership == conf(*IDS3, "n4") for n in [*IDS3, "n4"])
    assert monitor.violations == []


def test_a_single_server_change_skips_the_joint_stage() -> None:
    sim, _, monitor = cluster(IDS3, seed=9)
    sim.add_node("n4")
    ask(sim, Reconfigure(voters=[*IDS3, "n4"], joint=False))
    settle(sim)
    configs = [e.config for e in raft(sim, "n4").log if e.config is not None]
    assert configs == [conf(*IDS3, "n4")]
    ask(sim, Reconfigure(voters=["n2", "n3", "n4"], joint=False))
    settle(sim)
    assert all(raft(sim, n).membership == conf("n2", "n3", "n4") for n in [*IDS3, "n4"])
    assert monitor.violations == []


# -- under faults ------------------------------------------------------------------------
@pytest.mark.parametrize("seed", range(6))
def test_membership_changes_under_loss_partitions_and_crashes(seed: int) -> None:
    net = NetworkConfig(drop_rate=0.05, duplicate_rate=0.05, reorder_rate=0.2)
    sim, _, monitor = cluster(IDS3, seed=seed, network=net)
    rng = random.Random(seed)
    everyone = [*IDS3, "n4", "n5"]
    sim.add_node("n4")
    sim.add_node("n5")
    for t in range(300, 6_000, 400):
        victim = rng.choice(everyone)
        sim.schedule(t, partial(Simulator.crash, node_id=victim))
        sim.schedule(t + rng.randint(50, 300), partial(Simulator.restart, node_id=victim))
        if rng.random() < 0.4:
            sim.schedule(t + 100, partial(_cut, rng.sample(everyone, 2)))
            sim.schedule(t + 350, Simulator.heal)
    writes = 0
    steps = [
        Reconfigure(voters=IDS3, learners=["n4", "n5"]),
        Reconfigure(voters=[*IDS3, "n4"], learners=["n5"]),
        Reconfigure(voters=["n2", "n3", "n4", "n5"]),
        Reconfigure(voters=["n1", "n3", "n5"], learners=["n2"]),
        Reconfigure(voters=["n1", "n3", "n5"]),
    ]
    for step in steps:
        ask(sim, step, limit=20_000)
        ask(sim, Propose(b"w%d" % writes), limit=20_000)
        writes += 1
    sim.run_until(max(sim.now, 6_500))
    sim.heal()
    for n in everyone:
        if not sim.is_up(n):
            sim.restart(n)
    sim.set_network(drop_rate=0.0, duplicate_rate=0.0, reorder_rate=0.0)
    ask(sim, Propose(b"last"))
    settle(sim, 1_000)
    final = conf("n1", "n3", "n5")
    for n in ["n1", "n3", "n5"]:
        assert raft(sim, n).membership == final, n
        assert applied(sim, n)[-1] == b"last"
        # (A write answered raft.unknown is retried, so it may apply twice.)
        assert list(dict.fromkeys(c for c in applied(sim, n) if c.startswith(b"w"))) == [
            b"w%d" % i for i in range(writes)]
    assert monitor.violations == []
    assert len(monitor.leaders) >= 2


def _cut(group: list[str], sim: Simulator) -> None:
    sim.partition(group)


# -- the KV under reconfiguration (vsm-phoenix simulate --scenario kv --reconfigure) --------
@pytest.mark.parametrize("seed", range(3))
def test_kv_runs_with_membership_changes_are_linearizable(seed: int) -> None:
    from vsm_phoenix.verify import Verdict, check_history
    from vsm_phoenix.verify.kv_workload import simulate_kv

    run = simulate_kv(seed, reconfigure=True)
    assert run.violations == ()
    assert check_history(run.history, timeout=60).verdict is Verdict.OK
    # Six changes: n4 learner, n4 voter, a leader out, n5 learner, n5 voter, a leader out.
    assert len(run.membership_steps) == 6 and run.membership_problems == ()
    assert run.membership is not None and len(run.membership.voters) == 3
    assert {"n4", "n5"} <= run.membership.voters
    assert run.membership == run.membership_steps[-1]
    assert run.workload.stats["ok"] > 20


def test_the_reconfigure_check_reports_a_cluster_that_is_not_as_requested() -> None:
    from vsm_phoenix.verify.reconfigure import LEADER, MembershipDriver, PlanStep

    sim, config, _ = cluster(IDS3, seed=1)
    sim.add_node("n4", start=False)  # both down: the new half has no majority
    sim.add_node("n5", start=False)
    driver = MembershipDriver(sim, config.bootstrap, [
        PlanStep(add_voters=("n4", "n5"), remove=("n2", "n3")), PlanStep(remove=(LEADER,))])
    sim.run_for(3_000)
    assert not driver.finished and driver.done == []
    assert driver.requested == conf("n1", "n4", "n5")
    problems = driver.check()
    assert problems[0].startswith("2 membership step(s) never acknowledged")
    assert "n4 is down at the end" in problems and "n5 is down at the end" in problems


def test_cli_simulate_kv_reconfigure(capsys: pytest.CaptureFixture[str]) -> None:
    from vsm_phoenix.cli import main

    assert main(["simulate", "--scenario", "kv", "--reconfigure", "--runs", "1",
                 "--seed", "3"]) == 0
    out = capsys.readouterr().out
    assert "6 changes acknowledged, as requested" in out
    assert "1/1 runs linearizable with every Raft invariant intact and the membership as " \
           "requested" in out
    assert main(["simulate", "--reconfigure"]) == 2
    assert "--reconfigure only with --scenario kv" in capsys.readouterr().err
