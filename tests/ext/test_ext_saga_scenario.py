"""The saga scenario (``vsm-phoenix simulate --scenario saga``) on each log: every saga
ends and passes every check; the checker itself flags broken logs."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from vsm_phoenix.cli import main
from vsm_phoenix.ext.saga import Record, StorageSagaLog
from vsm_phoenix.ext.saga.scenario import (
    Resources,
    ScenarioBackend,
    check_saga,
    run_saga_scenario,
    run_scenario_on,
)
from vsm_phoenix.storage import MemoryStorage


@pytest.mark.parametrize("log", ["memory", "sqlite", "kv"])
def test_the_scenario_ends_every_saga_consistently(log: str) -> None:
    run = run_saga_scenario(log=log, seed=1, sagas=30, concurrency=10)
    assert run.violations == ()
    assert sum(run.outcomes.values()) == 30 and run.ok
    assert run.outcomes["completed"] > 0


class _StuckLog(StorageSagaLog):
    """A log that refuses every write to one saga once it has begun: that saga can
    never end (its coordinator retries the write for ever)."""

    def __init__(self, storage: MemoryStorage, victim: str) -> None:
        super().__init__(storage)
        self.victim = victim

    async def append(self, saga_id: str, expected: int, records: Sequence[Record]) -> bool:
        if saga_id == self.victim and expected > 0:
            raise ConnectionError("the disk is full")
        return await super().append(saga_id, expected, records)


def test_a_run_whose_sagas_stop_ending_fails_and_names_them() -> None:
    """The scenario never waits silently: once no saga has ended for ``stall_s`` it
    stops, and its violations say which sagas are unfinished and why."""
    store = MemoryStorage()
    backend = ScenarioBackend(name="stuck", make_log=lambda _role: _StuckLog(store, "s4-0002"),
                              stall_s=1.0)
    lines: list[str] = []
    run = asyncio.run(run_scenario_on(backend, seed=4, sagas=6, concurrency=6, faults=False,
                                      say=lines.append))
    assert not run.ok
    assert run.violations[0].startswith("stalled: no saga ended for")
    assert "1 sagas unfinished" in run.violations[0]
    (why,) = [v for v in run.violations if v.lstrip().startswith("s4-0002: running")]
    assert "listed for recovery" in why and "client: run by n" in why
    assert run.outcomes["completed"] == 5
    assert any(line.startswith("stalled:") for line in lines)


class _NeverSettledLog(StorageSagaLog):
    """A log that keeps listing one saga as unfinished whatever happens to it."""

    async def saga_ids(self, *, active_only: bool = False) -> list[str]:
        ids = await super().saga_ids(active_only=active_only)
        return ids if "s5-0001" in ids else [*ids, "s5-0001"]


def test_an_ended_saga_left_listed_as_unfinished_is_a_violation() -> None:
    store = MemoryStorage()
    backend = ScenarioBackend(name="unsettled", make_log=lambda _role: _NeverSettledLog(store))
    run = asyncio.run(run_scenario_on(backend, seed=5, sagas=4, concurrency=4, faults=False))
    assert run.violations == (
        "the log still lists 1 ended sagas as unfinished: ['s5-0001']",)
    assert sum(run.outcomes.values()) == 4


@pytest.mark.soak
@pytest.mark.parametrize("log", ["memory", "sqlite", "kv"])
def test_the_full_scenario(log: str) -> None:
    for seed in range(3):
        run = run_saga_scenario(log=log, seed=seed, sagas=200)
        assert run.ok, run.violations[:10]


def _rec(kind: str, epoch: int = 1, by: str = "n1", **fields: object) -> Record:
    return Record(kind, 0, by, epoch, dict(fields))


def test_the_checker_flags_what_it_promises() -> None:
    start = _rec("started", saga="order", ctx={}, timeout_ms=5)
    res = Resources()
    assert check_saga("s", None, res) == ["s: no log"]
    assert "did not end" in check_saga("s", [start], res)[0]
    interleaved = [start, _rec("claimed", 2, "n2", until=9), _rec("claimed", 1, until=9),
                   _rec("completed", 2, "n2")]
    problems = check_saga("s", interleaved, res)
    assert any("interleaved" in p for p in problems)
    after_pivot = [start, _rec("step-started", step="charge", n=1),
                   _rec("step-completed", step="charge", n=1, result=None),
                   _rec("comp-started", step="order", n=1), _rec("stuck", reason="x")]
    problems = check_saga("s", after_pivot, res)
    assert any("after the pivot" in p for p in problems)
    assert any("never started" in p for p in problems)
    res.state["s/order"] = "applied"
    res.effects[("do", "s/order")] = 2
    problems = check_saga("s", [start, _rec("compensated", reason="r")], res)
    assert any("applied 2 times" in p for p in problems)
    assert any("compensated but" in p for p in problems)


def test_the_cli_runs_the_scenario_and_refuses_bad_usage(
        capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["simulate", "--scenario", "saga", "--saga-log", "memory", "--sagas", "12",
                 "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "1/1 runs" in out
    assert main(["simulate", "--scenario", "saga", "--sagas", "0"]) == 2
    assert main(["simulate", "--scenario", "kv", "--saga-log", "kv"]) == 2
    # over RabbitMQ the log is the KV, and the simulator-only options are refused
    assert main(["simulate", "--scenario", "saga", "--transport", "amqp",
                 "--saga-log", "sqlite"]) == 2
    assert main(["simulate", "--scenario", "saga", "--transport", "amqp", "--runs", "2"]) == 2
    assert main(["simulate", "--scenario", "saga", "--transport", "amqp", "--nodes", "5"]) == 2
    assert main(["simulate", "--scenario", "saga", "--transport", "amqp", "--sagas", "0"]) == 2
    err = capsys.readouterr().err
    assert "vsm-phoenix simulate:" in err
