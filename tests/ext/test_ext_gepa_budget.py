"""The hard metric-call budget: slices leased through the Raft KV hold the cluster's
total under partitions and crashes, where the replicated counter alone overspends."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from vsm_phoenix.errors import DecodeError, InvalidArgument
from vsm_phoenix.ext.gepa.budget import (
    BUDGET_KEY,
    BudgetExhausted,
    BudgetLease,
    LeaseUnavailable,
    lease_value,
    parse_leased,
    release_value,
)
from vsm_phoenix.ext.gepa.cluster import ClusterConfig, RunReport, SimulatedCluster
from vsm_phoenix.protocol import kv


@given(st.integers(0, 10**6), st.integers(1, 10**6), st.integers(1, 10**6))
def test_a_lease_step_never_passes_the_limit(leased: int, want: int, limit: int) -> None:
    step = lease_value(None if leased == 0 else str(leased), want, limit)
    if leased >= limit:
        assert step is None
    else:
        assert step is not None
        new, grant = step
        assert 0 < grant <= want and int(new) == leased + grant <= limit


@given(st.text(max_size=30))
def test_a_value_that_is_not_a_count_is_a_decode_error(value: str) -> None:
    canonical = value.isascii() and value.isdigit() and len(value) <= 20 and (
        len(value) == 1 or value[0] != "0")
    if canonical:
        assert parse_leased(value) == int(value)
    else:
        with pytest.raises(DecodeError):
            lease_value(value, 1, 10)


def test_bad_lease_arguments_are_refused() -> None:
    for want, limit in ((0, 1), (1, 0), (True, 1), (1, 1.5)):
        with pytest.raises(InvalidArgument):
            lease_value(None, want, limit)  # type: ignore[arg-type]
    with pytest.raises(InvalidArgument):
        BudgetLease(lambda n: n, slice_calls=0)
    bad = BudgetLease(lambda n: n + 1, slice_calls=2)  # grants more than asked
    with pytest.raises(InvalidArgument):
        bad.ensure(1)
    assert bad.leased == 0


def test_a_lease_covers_every_call_and_leases_by_slices() -> None:
    pool = {"left": 10}
    asked: list[int] = []

    def acquire(want: int) -> int:
        asked.append(want)
        got = min(want, pool["left"])
        pool["left"] -= got
        return got

    lease = BudgetLease(acquire, slice_calls=4)
    assert lease.ensure(1) and lease.held == 4 and asked == [4]
    lease.use(3)
    assert lease.ensure(6) and lease.held == 6 and asked == [4, 5]
    lease.use(6)
    assert not lease.ensure(2) and lease.held == 1 and lease.exhausted
    with pytest.raises(BudgetExhausted):
        lease.use(2)
    assert lease.used == 9 and lease.leased == 10  # the refused use changed nothing
    lease.use(1)
    assert lease.held == 0


def test_an_ended_engine_gives_back_what_it_holds_and_a_crashed_one_nothing() -> None:
    pool = {"leased": 0}

    def acquire(want: int) -> int:
        step = lease_value(str(pool["leased"]) if pool["leased"] else None, want, 10)
        if step is None:
            return 0
        pool["leased"] = int(step[0])
        return step[1]

    def give_back(calls: int) -> None:
        pool["leased"] = int(release_value(str(pool["leased"]), calls))

    a = BudgetLease(acquire, slice_calls=6, give_back=give_back)
    b = BudgetLease(acquire, slice_calls=6, give_back=give_back)
    assert a.ensure(1) and b.ensure(1) and b.held == 4 and pool["leased"] == 10
    a.use(2)
    assert a.release() == 4 and a.held == 0 and a.net == 2 and pool["leased"] == 6
    assert a.release() == 0  # nothing left to give
    assert b.ensure(8) and b.held == 8 and pool["leased"] == 10  # what a gave back
    c = BudgetLease(acquire, slice_calls=6, give_back=give_back)
    assert not c.ensure(1) and c.exhausted
    b.use(3)
    b.abandon()  # b crashed: the 5 it holds stay leased, never used
    assert b.release() == 0 and pool["leased"] == 10 and b.net == 8
    assert not b.ensure(1)
    with pytest.raises(BudgetExhausted):
        b.use(1)
    # Sum over the incarnations: calls used <= what the KV counts <= the limit.
    assert a.used + b.used <= a.net + b.net == pool["leased"] <= 10


def test_a_release_cannot_give_back_more_than_is_leased() -> None:
    assert release_value("10", 4) == "6"
    for current, calls in ((None, 1), ("3", 4), ("3", 0), ("3", -1)):
        with pytest.raises(InvalidArgument):
            release_value(current, calls)
    with pytest.raises(DecodeError):
        release_value("x", 1)

    def unanswered(calls: int) -> None:
        raise LeaseUnavailable("no majority")

    lease = BudgetLease(lambda n: n, slice_calls=3, give_back=unanswered)
    assert lease.ensure(1) and lease.release() == 0 and lease.held == 3  # lost, kept here


def test_an_unanswered_lease_changes_nothing() -> None:
    def acquire(want: int) -> int:
        raise LeaseUnavailable("no majority")

    lease = BudgetLease(acquire, slice_calls=4)
    with pytest.raises(LeaseUnavailable):
        lease.ensure(1)
    assert lease.leased == lease.used == 0 and not lease.exhausted


def _calls(report: RunReport) -> int:
    return sum(n.metric_calls for n in report.nodes)


def _run_with_partitions(hard: bool, seed: int) -> tuple[SimulatedCluster, RunReport]:
    """Three nodes; a minority cut off, then every node alone (no majority anywhere),
    a crash and restart, then healed."""
    cl = SimulatedCluster(ClusterConfig(nodes=3, max_metric_calls=200, target=None,
                                        seed=seed, hard_budget=hard, lease_timeout_ms=500))
    for _ in range(6):
        cl.step()
    cl.partition(["n1"], ["n2", "n3"])
    for _ in range(25):
        cl.step()
    cl.partition(["n1"], ["n2"], ["n3"])
    for _ in range(25):
        cl.step()
    cl.crash("n2")
    for _ in range(5):
        cl.step()
    cl.restart("n2")
    for _ in range(10):
        cl.step()
    cl.heal()
    return cl, cl.run()


@pytest.mark.parametrize("seed", [0, 1])
def test_the_budget_holds_under_partitions_and_crashes(seed: int) -> None:
    cl, report = _run_with_partitions(True, seed)
    # Every metric call, of every incarnation, was covered by a lease; the KV never
    # leased more than the budget.
    assert _calls(report) == report.metric_calls <= report.leased_calls <= 200
    for n in report.nodes:
        assert n.metric_calls <= n.leased
    assert int(cl.kv_request("n1", kv.get(BUDGET_KEY))) == report.leased_calls
    assert report.frontiers_agree and report.deployed_agree
    # The minority could not lease while cut off: someone waited for the KV.
    assert sum(n.lease_waits for n in report.nodes) > 0


def test_without_leases_the_same_partitions_overspend() -> None:
    """The replicated counter alone: each side of a partition sees only its own
    spending, so the cluster spends past the budget (what the leases prevent)."""
    _, report = _run_with_partitions(False, 0)
    assert report.metric_calls > 200 and report.leased_calls == 0


def test_independent_nodes_lease_from_their_own_kv() -> None:
    report = SimulatedCluster(ClusterConfig(nodes=2, share=False, max_metric_calls=120,
                                            target=None, seed=3)).run()
    for n in report.nodes:
        assert n.metric_calls <= n.leased <= 60


def test_bad_budget_settings_are_refused() -> None:
    for kw in ({"lease_calls": 0}, {"lease_timeout_ms": -1}, {"hard_budget": 1}):
        with pytest.raises(InvalidArgument):
            ClusterConfig(**kw)  # type: ignore[arg-type]
    assert ClusterConfig(minibatch_size=3).slice_calls(16) == 22
    assert ClusterConfig(lease_calls=5).slice_calls(16) == 5
