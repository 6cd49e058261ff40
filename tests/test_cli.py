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


# -- one parser tree, one-line errors ----------------------------------------------------
def _usage(capsys: pytest.CaptureFixture[str], argv: list[str]) -> str:
    """Run ``argv``, expecting exit status 2 and exactly one line on stderr."""
    try:
        code = main(argv)
    except SystemExit as exc:
        code = int(exc.code or 0)
    captured = capsys.readouterr()
    assert code == 2, (argv, captured)
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1, (argv, captured.err)
    assert "Traceback" not in captured.err
    return lines[0]


def test_every_usage_error_is_one_line_with_exit_2(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    assert _usage(capsys, ["frobnicate"]).startswith("vsm-phoenix: ")
    assert "--only" in _usage(capsys, ["simulate", "--only", "x"])
    assert "--kill only with --transport amqp" in _usage(capsys, ["simulate", "--kill"])
    assert "--runs" in _usage(capsys, ["simulate", "--transport", "amqp", "--runs", "3"])
    assert "--id" in _usage(capsys, ["node"])
    assert "unknown node kind" in _usage(
        capsys, ["node", "--id", "n1", "--kind", "nope", "--data-dir", str(tmp_path / "d")])
    assert "no keyset" in _usage(
        capsys, ["node", "--id", "n1", "--data-dir", str(tmp_path / "d")])
    assert "unknown log level" in _usage(
        capsys, ["node", "--id", "n1", "--log-level", "LOUD", "--keys", str(tmp_path)])
    assert not (tmp_path / "d").exists()  # nothing created before the checks
    assert "cannot read" in _usage(capsys, ["check", str(tmp_path / "missing.txt")])


def test_bench_explains_where_the_suites_are(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    line = _usage(capsys, ["bench"])
    assert "ship with the source tree" in line and "--suites" in line
    assert "is not the benchmark suites" in _usage(capsys, ["bench", "--suites", str(tmp_path)])
    with pytest.raises(SystemExit) as exc:
        main(["bench", "--help"])
    assert exc.value.code == 0 and "--no-progress" in capsys.readouterr().out


def test_bench_progress_reports_every_measurement() -> None:
    import bench.progress as progress

    out = io.StringIO()
    reporter = progress.Reporter("crdt", "lines", out)
    with progress.reporting(reporter):
        for item in progress.track(["join", "meet"], lambda s: f"{s} n=10"):
            assert item in ("join", "meet")
    progress.step("outside a run: ignored")
    reporter.close()
    lines = out.getvalue().splitlines()
    assert lines[:3] == ["crdt: started", "crdt [1/2] join n=10", "crdt [2/2] meet n=10"]
    assert lines[3].startswith("crdt: done after") and lines[3].endswith("(2 measurements)")
    quiet = io.StringIO()
    reporter = progress.Reporter("sync", "quiet", quiet)
    with progress.reporting(reporter):
        progress.plan(1)
        progress.step("delta")
    reporter.close(failed=True)
    lines = quiet.getvalue().splitlines()
    assert lines[0] == "sync: started" and lines[1].startswith("sync: FAILED after")
    assert "(1 measurements)" in lines[1]
