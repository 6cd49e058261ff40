"""Raft safety by exhaustive model checking of three real :class:`RaftNode` s.

The model checker (:mod:`vsm_phoenix.verify.model_checker`) explores every order of
message deliveries, timer firings and client submissions (abstract time: any pending
timer may fire at any point; ``now`` advances 1 s per step, so leases and stickiness
never hide a message) and checks :func:`~vsm_phoenix.protocol.raft.check_invariants`
— election safety, log matching, leader completeness and state-machine safety — in
every state reached.

What "every" means here, exactly: 3 nodes; one client proposal (``x``, to any node,
at any point); at most two election/heartbeat timer firings per path; no drops,
duplicates or crashes; **every state reachable in at most 12 actions** — asserted
(``depth_complete``), not assumed. The test also asserts that this space is not
vacuous: in both variants some explored state has the proposal committed and
applied (so a leader was elected, replicated and committed within the bound), and
without pre-vote two leaders of different terms appear. With pre-vote and
check-quorum an election takes more messages, which is why the bound is 12: at 8 no
proposal commits in that variant.

Deeper and with faults, in ``make soak``: the plain variant exhausted completely
(every reachable state, no depth bound: the timer budget makes the space finite),
and both variants with one drop, one duplicate and one crash-and-restart from the
persisted state to a depth bound.

The deliberately broken variant (``unsafe_commit_old_terms``: a leader commits an
entry of an older term once a majority holds it — Figure 8 of the Raft paper) needs
18 actions to go wrong with three nodes. The guided test scripts the first 13
actions (three elections that leave n1 leading term 3 with an old term-1 entry, and
n2 holding a conflicting term-2 entry) and lets the checker search the rest
exhaustively to depth 5: it finds the shortest continuation (the old entry committed
by counting, then n2 elected without it) and reports leader completeness and
state-machine safety violated. The correct Raft explores the same continuation space
without a violation.
"""

from __future__ import annotations

from typing import Any

import pytest

from vsm_phoenix.protocol.raft import (
    Propose,
    RaftConfig,
    RaftNode,
    RecordingStateMachine,
    Role,
    check_invariants,
)
from vsm_phoenix.verify.model_checker import (
    DEPTH_BOUND,
    ClusterView,
    ModelCheckResult,
    Request,
    check_model,
)

IDS = ("n1", "n2", "n3")
PROPOSAL = b"x"
DEPTH = 12


def raft_safety(view: ClusterView) -> list[str]:
    return check_invariants(view.values())  # type: ignore[arg-type]


class Coverage:
    """Non-vacuity: what the explored states contained."""

    def __init__(self) -> None:
        self.max_commit = 0
        self.leader_terms: set[int] = set()
        self.max_term = 0
        self.proposal_applied = False

    def __call__(self, view: ClusterView) -> None:
        for node in view.values():
            assert isinstance(node, RaftNode)
            self.max_commit = max(self.max_commit, node.commit_index)
            self.max_term = max(self.max_term, node.term)
            if node.role is Role.LEADER:
                self.leader_terms.add(node.term)
            machine = node.state_machine
            if isinstance(machine, RecordingStateMachine) and PROPOSAL in machine.applied:
                self.proposal_applied = True


def explore(config: RaftConfig, **options: Any) -> tuple[ModelCheckResult, Coverage]:
    seen = Coverage()
    res = check_model(
        lambda nid, rng: RaftNode(nid, rng, config),
        IDS,
        invariants={"raft-safety": raft_safety, "coverage": seen},
        now=lambda depth: depth * 1000,
        **options,
    )
    return res, seen


@pytest.mark.parametrize(
    ("pre_vote", "check_quorum"), [(False, False), (True, True)], ids=["plain", "prevote-cq"]
)
def test_raft_is_safe_in_every_state_within_12_actions(pre_vote: bool,
                                                       check_quorum: bool) -> None:
    config = RaftConfig(peers=IDS, pre_vote=pre_vote, check_quorum=check_quorum)
    res, seen = explore(
        config, requests=[Request(Propose(PROPOSAL))], max_timer_fires=2, max_depth=DEPTH
    )
    assert res.ok, str(res)
    # Every state within DEPTH actions was checked (the bound, not a budget, cut it).
    assert res.depth_complete == DEPTH and res.reason == DEPTH_BOUND, res.summary()
    assert res.states > 100_000
    # The space is not trivial: a leader was elected and the proposal committed in it.
    assert seen.leader_terms
    assert seen.proposal_applied, "no explored state has the proposal committed"
    if not pre_vote:
        assert len(seen.leader_terms) >= 2 and seen.max_term >= 2


@pytest.mark.soak
def test_plain_raft_is_safe_in_every_reachable_state() -> None:
    """No depth bound: two timer firings make the space finite (~815k states)."""
    config = RaftConfig(peers=IDS, pre_vote=False, check_quorum=False)
    res, seen = explore(config, requests=[Request(Propose(PROPOSAL))], max_timer_fires=2,
                        max_depth=1_000)
    assert res.ok, str(res)
    assert res.exhausted, res.summary()
    assert seen.proposal_applied and len(seen.leader_terms) >= 2


@pytest.mark.soak
@pytest.mark.parametrize(
    ("pre_vote", "check_quorum"), [(False, False), (True, True)], ids=["plain", "prevote-cq"]
)
def test_raft_is_safe_with_loss_duplication_and_a_crash(pre_vote: bool,
                                                        check_quorum: bool) -> None:
    """One drop, one duplicate and one crash-and-restart (from the persisted term,
    vote and log) anywhere on a path, every state within 10 actions."""
    config = RaftConfig(peers=IDS, pre_vote=pre_vote, check_quorum=check_quorum)
    res, seen = explore(
        config, requests=[Request(Propose(PROPOSAL))], max_timer_fires=2, max_depth=10,
        max_drops=1, max_duplicates=1, max_crashes=1,
    )
    assert res.ok, str(res)
    assert res.depth_complete == 10, res.summary()
    assert seen.leader_terms


# Three elections: n1 leads term 1 (no-op at index 1 reaches nobody), n2 leads term 2
# (its own no-op at index 1), n1 leads term 3 with n3's vote; then n1 probes n3, learns
# n3's log is empty and sends it the term-1 entry alone (max_batch=1).
FIGURE_8_PREFIX = [
    ("timer", "n1", "raft.election"),
    ("deliver", "n2", "raft.vote from n1"),
    ("deliver", "n1", "raft.vote-resp"),
    ("timer", "n2", "raft.election"),
    ("deliver", "n3", "raft.vote from n2"),
    ("deliver", "n2", "raft.vote-resp from n3"),
    ("deliver", "n1", "raft.vote from n2"),
    ("timer", "n1", "raft.election"),
    ("deliver", "n3", "raft.vote from n1 {'f': False, 't': 3"),
    ("deliver", "n1", "raft.vote-resp from n3 {'g': True, 't': 3"),
    ("deliver", "n3", "raft.append from n1 {'c': 0, 'e': [[3, b'']]"),
    ("deliver", "n1", "raft.append-resp from n3"),
    ("deliver", "n3", "'t': 3, 'pi': 0"),
]


def _figure_8(unsafe: bool) -> ModelCheckResult:
    config = RaftConfig(
        peers=IDS, pre_vote=False, check_quorum=False, max_batch=1,
        unsafe_commit_old_terms=unsafe,
    )
    res, _ = explore(config, prefix=FIGURE_8_PREFIX, max_timer_fires=1, max_depth=5)
    return res


def test_broken_raft_commit_of_an_old_term_is_caught() -> None:
    res = _figure_8(unsafe=True)
    assert not res.ok
    cx = res.counterexample
    assert cx is not None and cx.invariant == "raft-safety"
    assert "leader completeness" in cx.message or "state-machine safety" in cx.message
    # Shortest continuation: n1 counts n3's ack and commits the term-1 entry; n2 steps
    # up to term 3, times out, and wins term 4 with n3's vote without that entry.
    assert len(cx.steps) == len(FIGURE_8_PREFIX) + 5
    assert "n2" in cx.message and "term 4" in cx.message
    text = cx.render()
    assert "raft.append-resp from n3" in text and "raft.leader" in text


def test_correct_raft_survives_the_same_scenario() -> None:
    res = _figure_8(unsafe=False)
    assert res.ok, str(res)
    assert res.depth_complete == 5
