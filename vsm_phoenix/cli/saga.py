"""``vsm-phoenix simulate --scenario saga``: three saga coordinators under faults
(:func:`vsm_phoenix.ext.saga.scenario.run_saga_scenario`), every saga checked."""

from __future__ import annotations

__all__ = ["simulate_saga_cli"]


def simulate_saga_cli(first: int, runs: int, log: str, sagas: int, quiet: bool) -> int:
    """Run ``runs`` seeds; one summary line per seed; exit status 0 when every saga of
    every run ended consistently, 1 otherwise."""
    from vsm_phoenix.ext.saga.scenario import run_saga_scenario

    where = {"kv": "a 3-node Raft KV (in-process)", "sqlite": "one SQLite file",
             "memory": "one in-memory store"}[log]
    if not quiet:
        print(f"vsm-phoenix simulate: saga scenario, 3 coordinators sharing {where}, "
              f"{sagas} order sagas per seed (order -> stock | credit -> charge (pivot) -> "
              "ship -> notify) under step failures, coordinator crashes and partitions"
              + (", KV leader crashes" if log == "kv" else "")
              + f"; seeds {first}..{first + runs - 1}")
    bad = 0
    for seed in range(first, first + runs):
        run = run_saga_scenario(log=log, seed=seed, sagas=sagas,
                                say=(lambda _line: None) if quiet else print)
        bad += not run.ok
        if not quiet or not run.ok:
            o = run.outcomes
            print(f"seed {seed}: {o['completed']} completed, {o['compensated']} compensated, "
                  f"{o['stuck']} stuck (reported) of {run.sagas} in {run.elapsed_s:.1f} s; "
                  f"{len(run.violations)} invariant violations; "
                  + ", ".join(f"{k} {v}" for k, v in sorted(run.stats.items())))
            for line in run.violations[:20]:
                print(f"  {line}")
        if not run.ok:
            print(f"  replay with: vsm-phoenix simulate --scenario saga --saga-log {log} "
                  f"--seed {seed}")
    print(f"{runs - bad}/{runs} runs: every saga completed, compensated or stuck-and-reported; "
          "nothing applied twice; no compensation after the pivot or for a step that never "
          "ran")
    return 1 if bad else 0
