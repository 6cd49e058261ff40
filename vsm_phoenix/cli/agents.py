"""``vsm-phoenix simulate --scenario agents``: the agents scenario on the simulator
(:func:`vsm_phoenix.ext.agents.scenario.simulate_agents`)."""

from __future__ import annotations

from pathlib import Path

__all__ = ["simulate_agents_cli"]


def simulate_agents_cli(first: int, runs: int, agents: int, budget: float, out: Path | None,
                        quiet: bool) -> int:
    """Run ``runs`` seeds; print one summary per seed; exit status 0 when every run
    passed every check, 1 otherwise. The evidence graph of each run (JSON and HTML)
    goes to ``out`` when given, and for failed runs to ``demo-out`` otherwise."""
    from vsm_phoenix.ext.agents.scenario import simulate_agents
    from vsm_phoenix.ext.evidence import render_html

    if not quiet:
        print(f"vsm-phoenix simulate: agents scenario, {agents} agents + a 3-node Raft KV, "
              f"seeds {first}..{first + runs - 1}: joins, leaves, crashes, capability "
              "changes and partitions; roles as KV leases; placement, role grants and "
              "spawns recorded as signed evidence")
    bad = 0
    for seed in range(first, first + runs):
        run = simulate_agents(seed, agents=agents, check_timeout_s=budget,
                              say=(lambda _line: None) if quiet else print)
        ok = run.ok
        bad += not ok
        if not quiet or not ok:
            same = len(set(run.digests.values())) == 1
            print(f"seed {seed}: {run.events} evidence events on {len(run.digests)} agents, "
                  f"graphs {'identical' if same else 'DIFFER'}, "
                  f"{len(run.graph_problems)} verification problems, "
                  f"{len(run.overlaps)} double holders, KV history {run.verdict.name}, "
                  f"{len(run.audit_problems)} audit problems; " +
                  ", ".join(f"{k} {v}" for k, v in sorted(run.stats.items())))
            for line in [*run.graph_problems, *run.overlaps, *run.audit_problems][:20]:
                print(f"  {line}")
        target = out if out is not None else (None if ok else Path("demo-out"))
        if target is not None and run.agents:
            target.mkdir(parents=True, exist_ok=True)
            node = run.sim.node(run.agents[0])
            graph = getattr(node, "graph", None)
            if graph is not None:
                (target / f"agents-seed{seed}-evidence.json").write_text(
                    graph.to_json(), encoding="utf-8")
                (target / f"agents-seed{seed}-evidence.html").write_text(
                    render_html(graph, title=f"agents seed {seed}: evidence of "
                                f"{run.agents[0]}"), encoding="utf-8")
                if not quiet:
                    print(f"  evidence graph: {target}/agents-seed{seed}-evidence.html")
        if not ok:
            print(f"  replay with: vsm-phoenix simulate --scenario agents --seed {seed}")
    print(f"{runs - bad}/{runs} runs: identical verified evidence, one holder per role, "
          "linearizable KV")
    return 1 if bad else 0
