"""Raft safety by exhaustive model checking of three real :class:`RaftNode` s.

The model checker (:mod:`vsm_phoenix.verify.model_checker`) explores every order of
message deliveries and timer firings (abstract time: any pending timer may fire at any
point; ``now`` advances 1 s per step, so leases and stickiness never hide a message)
and checks :func:`~vsm_phoenix.protocol.raft.check_invariants` — election safety, log
matching, leader completeness and state-machine safety — in every state reached.

Bounds (what "every" means here): 3 nodes, one client proposal (to any node), two
election/heartbeat timer firings, no drops or duplicates, paths of at most 8 actions
— enough to elect a leader, replicate its no-op and the proposal, commit them, and
start a competing election. Node states are keyed by ``RaftNode.state_key()`` (a
digest of the full protocol state), which is why symmetry reduction is not used.

The deliberately broken variant (``unsafe_commit_old_terms``: a leader commits an
entry of an older term once a majority holds it — Figure 8 of the Raft paper) needs
18 actions to go wrong with three nodes; an exhaustive search from the initial state
to that depth takes ~10 minutes. The test therefore scripts the first 13 actions
(three elections that leave n1 leading term 3 with an old term-1 entry, and n2 holding
a conflicting term-2 entry) and lets the checker search the rest exhaustively: it finds
the shortest continuation (the old entry committed by counting, then n2 elected
without it) and reports leader completeness and state-machine safety violated. The
correct Raft explores the same continuation space without a violation.
"""

from __future__ import annotations

from typing import Any

import pytest

from vsm_phoenix.protocol.raft import (
    Propose,
    RaftConfig,
    RaftNode,
    Role,
    check_invariants,
)
from vsm_phoenix.verify.model_checker import ClusterView, ModelCheckResult, Request, check_model

IDS = ("n1", "n2", "n3")


def raft_safety(view: ClusterView) -> list[str]:
    return check_invariants(view.values())  # type: ignore[arg-type]


class Coverage:
    """Non-vacuity: what the explored states contained."""

    def __init__(self) -> None:
        self.max_commit = 0
        self.leader_terms: set[int] = set()
        self.max_term = 0

    def __call__(self, view: ClusterView) -> None:
        for node in view.values():
            assert isinstance(node, RaftNode)
            self.max_commit = max(self.max_commit, node.commit_index)
            self.max_term = max(self.max_term, node.term)
            if node.role is Role.LEADER:
                self.leader_terms.add(node.term)


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
def test_raft_is_safe_in_every_interleaving(pre_vote: bool, check_quorum: bool) -> None:
    config = RaftConfig(peers=IDS, pre_vote=pre_vote, check_quorum=check_quorum)
    res, seen = explore(
        config, requests=[Request(Propose(b"x"))], max_timer_fires=2, max_depth=8
    )
    assert res.ok, str(res)
    assert res.states > 5_000
    # The space is not trivial: leaders were elected and entries committed in it.
    assert seen.leader_terms
    assert seen.max_commit >= 1
    if not pre_vote:
        assert len(seen.leader_terms) >= 2 and seen.max_term >= 2


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
