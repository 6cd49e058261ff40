"""A learner is promoted to voter only once it has caught up (etcd's learner readiness
check): ``RaftConfig.max_promotion_lag_entries``."""

from __future__ import annotations

import pytest
from test_raft_membership import IDS3, ask, cluster, conf, raft, reply, settle, wait_leader

from vsm_phoenix.protocol.node import LocalProtocolError
from vsm_phoenix.protocol.raft import K_FAILED, K_OK, Propose, RaftConfig, Reconfigure


def test_a_lagging_learner_is_refused_promotion_until_it_catches_up() -> None:
    sim, _, monitor = cluster(IDS3, seed=8, max_promotion_lag_entries=4)
    sim.add_node("n4")
    sim.partition(["n4"])  # cut off from the start: it acknowledges nothing
    ask(sim, Reconfigure(voters=IDS3, learners=["n4"]))  # commits without it
    for i in range(10):
        ask(sim, Propose(b"%d" % i))
    lead = wait_leader(sim)
    assert raft(sim, lead).match_index("n4") == 0
    rid = sim.client_request(lead, Reconfigure(voters=[*IDS3, "n4"]))
    settle(sim, 100)
    answer = reply(sim, lead, rid)
    assert answer is not None and answer.kind == K_FAILED
    assert "has not caught up" in answer.payload
    learner = conf(*IDS3, learners=("n4",))
    assert all(raft(sim, n).membership == learner for n in IDS3)
    # Healed, it catches up and the same request is accepted.
    sim.heal()
    settle(sim)
    lead = wait_leader(sim)
    assert raft(sim, lead).last_index - (raft(sim, lead).match_index("n4") or 0) <= 4
    assert ask(sim, Reconfigure(voters=[*IDS3, "n4"])).kind == K_OK
    settle(sim)
    assert all(raft(sim, n).membership == conf(*IDS3, "n4") for n in [*IDS3, "n4"])
    assert monitor.violations == []


def test_a_learner_behind_by_more_than_the_bound_is_refused_and_within_it_accepted() -> None:
    """The bound itself: cut the caught-up learner off, grow the log one entry at a time
    and ask for the promotion only when its lag is exactly the bound, then past it."""
    sim, _, monitor = cluster(IDS3, seed=3, max_promotion_lag_entries=3)
    sim.add_node("n4")
    ask(sim, Reconfigure(voters=IDS3, learners=["n4"]))
    settle(sim)
    sim.partition(["n4"])
    lead = wait_leader(sim)
    node = raft(sim, lead)

    def lag() -> int:
        return node.last_index - (node.match_index("n4") or 0)

    while lag() < 4:
        ask(sim, Propose(b"x"))
    assert lag() == 4 and wait_leader(sim) == lead
    rid = sim.client_request(lead, Reconfigure(voters=[*IDS3, "n4"]))
    settle(sim, 100)
    answer = reply(sim, lead, rid)
    assert answer is not None and answer.kind == K_FAILED
    sim.heal()
    settle(sim)
    sim.partition(["n4"])
    while lag() < 3:
        ask(sim, Propose(b"y"))
    assert lag() == 3
    rid = sim.client_request(lead, Reconfigure(voters=[*IDS3, "n4"]))
    sim.heal()
    settle(sim)
    answer = reply(sim, lead, rid)
    assert answer is not None and answer.kind == K_OK
    assert monitor.violations == []


def test_a_learner_that_never_answered_is_not_promoted_even_on_a_short_log() -> None:
    """Within the lag bound but silent (down or unreachable since it was added): a voter
    that may never answer is no voter to add."""
    sim, _, monitor = cluster(IDS3, seed=5, max_promotion_lag_entries=1_000)
    sim.add_node("n4")
    sim.partition(["n4"])
    ask(sim, Reconfigure(voters=IDS3, learners=["n4"]))
    lead = wait_leader(sim)
    assert raft(sim, lead).match_index("n4") == 0 and raft(sim, lead).last_index < 1_000
    rid = sim.client_request(lead, Reconfigure(voters=[*IDS3, "n4"]))
    settle(sim, 100)
    answer = reply(sim, lead, rid)
    assert answer is not None and answer.kind == K_FAILED
    assert monitor.violations == []


@pytest.mark.parametrize("bad", [-1, 1.5, True])
def test_the_promotion_bound_is_a_non_negative_integer(bad: object) -> None:
    with pytest.raises(LocalProtocolError):
        RaftConfig(peers=("n1",), max_promotion_lag_entries=bad)  # type: ignore[arg-type]
