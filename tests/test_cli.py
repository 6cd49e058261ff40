"""The command line: ``vsm-phoenix demo`` converges and reports it; ``check`` is wired."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from vsm_phoenix.cli import main
from vsm_phoenix.crdt import demo


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_crdt_demo_converges_every_type(seed: int) -> None:
    out = io.StringIO()
    assert demo.run(seed=seed, out=out)
    text = out.getvalue()
    assert "DIVERGED" not in text
    for name in demo.TYPES:
        assert f"  {name} " in text


def test_demo_replicas_really_exchanged_updates() -> None:
    # Guard against a vacuous "converged": replicas must hold non-bottom state.
    for kind, op in demo.TYPES.values():
        replicas, stats = demo.converge(kind, op, seed=5)
        assert stats["ops"] > 0 and stats["delivered"] >= stats["sent"]
        assert replicas[0] != kind()


def test_cli_demo_exit_code(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert main(["demo", "--seed", "3", "--quiet", "--out-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "all replicas converged" in out and "CONVERGED" in out
    assert (tmp_path / "spacetime.html").stat().st_size > 0


def test_cli_rejects_unknown_command(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["frobnicate"])
    assert exc.value.code == 2


def test_cli_check_dispatches_to_the_checker(capsys: pytest.CaptureFixture[str]) -> None:
    data = Path(__file__).parent / "verify" / "data"
    assert main(["check", str(data / "c01-ok.txt")]) == 0
    assert main(["check", str(data / "etcd_000.log")]) == 1
    assert "ILLEGAL" in capsys.readouterr().out


def test_cli_simulate_kv_runs_and_checks_linearizability(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    assert main(["simulate", "--scenario", "kv", "--runs", "2", "--seed", "11",
                 "--out-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "seed 11:" in out and "OK" in out
    assert "2/2 runs linearizable" in out


def test_cli_simulate_crdt_on_the_simulator(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    assert main(["simulate", "--quiet", "--out-dir", str(tmp_path)]) == 0
    assert "CONVERGED" in capsys.readouterr().out
