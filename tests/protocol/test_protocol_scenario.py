"""The demo scenario converges, writes its diagram, and replays across processes."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from xml.etree import ElementTree

import pytest

from vsm_phoenix.protocol.scenario import demo_trace_digest, run_demo

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_demo_converges_and_writes_diagram(seed: int, tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    assert run_demo(seed, str(tmp_path), progress=seed == 0) == 0, f"seed={seed}"
    printed = capsys.readouterr().out
    assert "CONVERGED" in printed
    html = (tmp_path / "spacetime.html").read_text(encoding="utf-8")
    assert "<svg" in html and "swim.ping" in html and "sync.delta" in html
    svg = html[html.index("<svg"): html.index("</svg>") + len("</svg>")]
    ElementTree.fromstring(svg)  # well-formed SVG
    assert (tmp_path / "trace.json").stat().st_size > 0


def test_same_seed_same_trace_across_processes() -> None:
    """Set iteration order changes with PYTHONHASHSEED; the trace must not."""
    code = "from vsm_phoenix.protocol.scenario import demo_trace_digest as d; print(d(4, 40000))"
    digests = set()
    for hash_seed in ("1", "2"):
        env = {**os.environ, "PYTHONHASHSEED": hash_seed,
               "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
        done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                              text=True, check=True, cwd=ROOT)
        digests.add(done.stdout.strip())
    digests.add(demo_trace_digest(4, 40000))
    assert len(digests) == 1, f"seed=4 trace differs between processes: {digests}"


@pytest.mark.soak
@pytest.mark.parametrize("seed", range(3, 40))
def test_demo_soak(seed: int, tmp_path: Path) -> None:
    assert run_demo(seed, str(tmp_path), progress=False) == 0, f"seed={seed}"


def test_the_scenario_mutates_under_replica_ids_not_bare_node_ids() -> None:
    """Counter entries and dots name a node's history (its sync origin), so an
    incarnation without its disk could never re-issue them."""
    from vsm_phoenix.protocol.cluster import ClusterNode
    from vsm_phoenix.protocol.scenario import NODES, build_demo

    sim, _ = build_demo(seed=0)
    sim.run_until(25_000)
    nodes = [n for n in (sim.node(i) for i in NODES) if isinstance(n, ClusterNode)]
    origins = {n.sync.replica_id for n in nodes}
    assert origins.isdisjoint(NODES)  # origins are '<id>.<random>', never the bare id
    seen_ids: set[str] = set()
    for n in nodes:
        seen_ids |= set(n.sync.replicas["events"].counts)
        tasks = n.sync.replicas["tasks"]
        for element in tasks.value:
            seen_ids |= {d.replica for d in tasks.dots_of(element)}
    assert seen_ids and seen_ids <= origins and seen_ids.isdisjoint(NODES)
