"""Raft membership changes by exhaustive model checking of four real :class:`RaftNode` s.

The cluster boots with voters ``n1 n2 n3``; ``n4`` runs from the start with the same
bootstrap configuration (no voter there). The model checker (abstract time, every
interleaving of deliveries and timer firings; see ``test_raft_model.py``) checks
:func:`~vsm_phoenix.protocol.raft.check_invariants` — election safety, log matching,
leader completeness, state-machine safety (configuration entries are entries: two
servers never commit different configurations at one index) and log order — plus two
membership properties of its own (:func:`membership_safety`) in every state:

* a node's configuration is the latest one in its log (or its snapshot's), and
* every leader is a voter of the configuration it was elected in, or one that it
  appended itself (a leader removing itself keeps leading until that commits).

What "every" means here, exactly (each asserted by the tests, not assumed):

* **3 → 4** — from the steady state (n1 leads term 1, its no-op committed
  everywhere), the request adding n4 may arrive at n1 at any point; one election
  timer firing anywhere; every state within 12 actions. The new configuration is
  committed in some explored state (non-vacuity).
* **4 → 3, removing the leader** — from the state after the 3 → 4 change completed
  (n1 leads the voters n1..n4), the request removing n1 may arrive at any point; one
  election timer firing; every state within 12 actions. Some explored state has the
  configuration without n1 committed and a new leader elected (via ``timeout-now``).

In ``make soak``: both with two timer firings, and the removal with a drop, to 12.

**The 2015 single-server change bug** (five nodes, voters ``s1..s4``, ``s5`` joining;
the scenario of ``tests/protocol/testdata/raft/single_server_change_bug_*.txt``). A
guided prefix: s1 leads term 1 and adds s5 without a joint stage (the entry reaches
s5 only); s2 wins term 2 with s3 and s4 and is asked to remove s1, and s3 acknowledges
s2's first append. From there the checker searches exhaustively. On the broken variant
(``unsafe_reconfigure_early``: s2 switched to ``s2 s3 s4`` before committing anything
of its term) it finds the shortest continuation — s1 is elected by s4 and s5, a
majority of its own configuration, without the entry s2 and s3 committed — and
reports leader completeness violated. The correct node refused the change, and every
state within 12 actions of the same prefix is safe.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest

from vsm_phoenix.protocol.raft import (
    Membership,
    RaftConfig,
    RaftNode,
    Reconfigure,
    check_invariants,
)
from vsm_phoenix.verify.model_checker import (
    DEPTH_BOUND,
    ClusterView,
    ModelCheckResult,
    Request,
    check_model,
)

IDS = ("n1", "n2", "n3", "n4")
CONFIG = RaftConfig(peers=("n1", "n2", "n3"), pre_vote=False, check_quorum=False)
ADD = Request(Reconfigure(voters=["n1", "n2", "n3", "n4"]), request_id="add",
              targets=("n1",))
REMOVE = Request(Reconfigure(voters=["n2", "n3", "n4"]), request_id="remove",
                 targets=("n1",))
FOUR = Membership.of(["n1", "n2", "n3", "n4"])
THREE = Membership.of(["n2", "n3", "n4"])


def membership_safety(view: ClusterView) -> list[str]:
    problems = []
    for node in view.values():
        assert isinstance(node, RaftNode)
        latest = next((e.config for e in reversed(node.log) if e.config is not None),
                      node.membership_at(node.snap_index))
        if node.membership != latest:
            problems.append(f"{node.node_id} uses {node.membership}, its log says {latest}")
        if node.is_leader:
            # The configuration it was elected in: in force before its term's entries.
            first_own = next(node.snap_index + 1 + k for k, e in enumerate(node.log)
                             if e.term == node.term)
            base = node.membership_at(first_own - 1)
            own = [e for e in node.log if e.config is not None and e.term == node.term]
            if not base.is_voter(node.node_id) and not own:
                problems.append(f"{node.node_id} leads term {node.term} but is no voter "
                                f"of {base}")
    return problems


def raft_safety(view: ClusterView) -> list[str]:
    return check_invariants(view.values())  # type: ignore[arg-type]


class Coverage:
    """Non-vacuity: which configurations got committed, who led."""

    def __init__(self) -> None:
        self.committed: set[Membership] = set()
        self.leaders: set[tuple[str, int]] = set()

    def __call__(self, view: ClusterView) -> None:
        for node in view.values():
            assert isinstance(node, RaftNode)
            if node.commit_index >= node.membership_index:
                self.committed.add(node.membership)
            if node.is_leader:
                self.leaders.add((node.node_id, node.term))


def _deliver_all(prefix: list[tuple[str, str, str]],
                 messages: Sequence[tuple[str, str]]) -> list[tuple[str, str, str]]:
    return prefix + [("deliver", to, text) for to, text in messages]


# n1 wins term 1 and its no-op commits on n2 and n3.
STEADY = _deliver_all([("timer", "n1", "raft.election")], [
    ("n2", "raft.vote from n1"), ("n3", "raft.vote from n1"),
    ("n1", "raft.vote-resp from n2"), ("n1", "raft.vote-resp from n3"),
    ("n2", "raft.append from n1"), ("n3", "raft.append from n1"),
    ("n1", "raft.append-resp from n2"), ("n1", "raft.append-resp from n3"),
])
# ... then the joint configuration n1..n4 && n1..n3 commits, n1 appends n1..n4 by
# itself, n4 is probed back to index 1 and caught up, and n1..n4 commits.
FOUR_NODES = _deliver_all([*STEADY, ("request", "n1", "add")], [
    ("n2", "raft.append from n1"), ("n3", "raft.append from n1"),
    ("n4", "raft.append from n1"),
    ("n1", "raft.append-resp from n2"), ("n1", "raft.append-resp from n3"),
    ("n1", "raft.append-resp from n4"),
    ("n2", "raft.append from n1"), ("n3", "raft.append from n1"),
    ("n4", "raft.append from n1"),
    ("n1", "raft.append-resp from n2"), ("n1", "raft.append-resp from n3"),
    ("n1", "raft.append-resp from n4"),
])


def explore(prefix: Sequence[tuple[str, str, str]], requests: Sequence[Request],
            **options: Any) -> tuple[ModelCheckResult, Coverage]:
    seen = Coverage()
    res = check_model(
        lambda nid, rng: RaftNode(nid, rng, CONFIG),
        IDS,
        invariants={"raft-safety": raft_safety, "membership": membership_safety,
                    "coverage": seen},
        requests=requests,
        prefix=prefix,
        now=lambda depth: depth * 1000,
        **options,
    )
    return res, seen


def test_the_prefixes_reach_the_intended_states() -> None:
    _, seen = explore(FOUR_NODES, [ADD, REMOVE], max_depth=0, max_timer_fires=0)
    assert FOUR in seen.committed and seen.leaders == {("n1", 1)}


def test_adding_a_voter_is_safe_in_every_state_within_12_actions() -> None:
    res, seen = explore(STEADY, [ADD], max_timer_fires=1, max_depth=12)
    assert res.ok, str(res)
    assert res.depth_complete == 12 and res.reason == DEPTH_BOUND, res.summary()
    assert FOUR in seen.committed, "no explored state has n1..n4 committed"
    assert any(term > 1 for _, term in seen.leaders)  # elections happen in the space too


def test_removing_the_leader_is_safe_in_every_state_within_12_actions() -> None:
    res, seen = explore(FOUR_NODES, [ADD, REMOVE], max_timer_fires=1, max_depth=12)
    assert res.ok, str(res)
    assert res.depth_complete == 12 and res.reason == DEPTH_BOUND, res.summary()
    assert res.states > 10_000
    assert THREE in seen.committed, "no explored state has n2 n3 n4 committed"
    assert any(nid != "n1" for nid, _ in seen.leaders), "no new leader in the space"


BUG_IDS = ("s1", "s2", "s3", "s4", "s5")
BUG_REQUESTS = [
    Request(Reconfigure(voters=BUG_IDS, joint=False), request_id="r1", targets=("s1",)),
    Request(Reconfigure(voters=["s2", "s3", "s4"], joint=False), request_id="r2",
            targets=("s2",)),
]
BUG_PREFIX = [
    ("timer", "s1", "raft.election"),
    ("deliver", "s2", "raft.vote from s1"), ("deliver", "s3", "raft.vote from s1"),
    ("deliver", "s4", "raft.vote from s1"),
    ("deliver", "s1", "raft.vote-resp from s2"), ("deliver", "s1", "raft.vote-resp from s3"),
    ("deliver", "s1", "raft.vote-resp from s4"),
    ("deliver", "s2", "raft.append from s1"), ("deliver", "s3", "raft.append from s1"),
    ("deliver", "s4", "raft.append from s1"),
    ("deliver", "s1", "raft.append-resp from s2"),
    ("deliver", "s1", "raft.append-resp from s3"),
    ("deliver", "s1", "raft.append-resp from s4"),
    # s1 adds s5 (one entry, in force at once); only s5 gets it.
    ("request", "s1", "r1"),
    ("drop", "s2", "raft.append from s1"), ("drop", "s3", "raft.append from s1"),
    ("drop", "s4", "raft.append from s1"),
    ("deliver", "s5", "raft.append from s1"), ("deliver", "s1", "raft.append-resp from s5"),
    ("deliver", "s5", "raft.append from s1"), ("deliver", "s1", "raft.append-resp from s5"),
    # s2 wins term 2 with s3 and s4 (s1 learns the term and steps down) ...
    ("timer", "s2", "raft.election"),
    ("deliver", "s3", "raft.vote from s2"), ("deliver", "s4", "raft.vote from s2"),
    ("deliver", "s1", "raft.vote from s2"),
    ("deliver", "s2", "raft.vote-resp from s3"), ("deliver", "s2", "raft.vote-resp from s4"),
    # ... is asked to remove s1, and only s3 hears from it.
    ("request", "s2", "r2"),
    ("drop", "s1", "raft.append from s2"), ("drop", "s4", "raft.append from s2"),
    ("deliver", "s3", "raft.append from s2"), ("deliver", "s2", "raft.append-resp from s3"),
]


def _single_server_bug(unsafe: bool) -> ModelCheckResult:
    config = RaftConfig(peers=BUG_IDS[:4], pre_vote=False, check_quorum=False,
                        unsafe_reconfigure_early=unsafe)
    return check_model(
        lambda nid, rng: RaftNode(nid, rng, config), BUG_IDS,
        invariants={"raft-safety": raft_safety, "membership": membership_safety},
        requests=BUG_REQUESTS, prefix=BUG_PREFIX, now=lambda depth: depth * 1000,
        max_timer_fires=1, max_depth=12,
    )


def test_the_2015_single_server_change_bug_is_caught() -> None:
    res = _single_server_bug(unsafe=True)
    assert not res.ok
    cx = res.counterexample
    assert cx is not None and cx.invariant == "raft-safety"
    assert "leader completeness: leader s1 (term 3)" in cx.message
    # Shortest continuation: s1's timer, s4's and s5's votes, and their answers.
    assert len(cx.steps) == len(BUG_PREFIX) + 5
    text = cx.render()
    assert "raft.failed" not in text and "raft.leader" in text


def test_the_fixed_node_survives_the_same_scenario() -> None:
    res = _single_server_bug(unsafe=False)
    assert res.ok, str(res)
    assert res.depth_complete == 12 and res.reason == DEPTH_BOUND, res.summary()


@pytest.mark.soak
@pytest.mark.parametrize("prefix", ["steady", "four"])
def test_membership_changes_with_two_timer_firings(prefix: str) -> None:
    start = STEADY if prefix == "steady" else FOUR_NODES
    res, _ = explore(start, [ADD, REMOVE], max_timer_fires=2, max_depth=12,
                        timeout_s=3_600)
    assert res.ok, str(res)
    assert res.depth_complete == 12, res.summary()


@pytest.mark.soak
def test_removing_the_leader_with_a_drop() -> None:
    res, seen = explore(FOUR_NODES, [ADD, REMOVE], max_timer_fires=1, max_drops=1,
                        max_depth=12, timeout_s=3_600)
    assert res.ok, str(res)
    assert res.depth_complete == 12, res.summary()
    assert THREE in seen.committed
