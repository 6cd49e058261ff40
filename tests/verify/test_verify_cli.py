"""`vsm-phoenix check` through main_check(argv): exit statuses, --model, --html."""

from __future__ import annotations

from pathlib import Path

import pytest

from vsm_phoenix.cli.check import main_check
from vsm_phoenix.verify import HistoryRecorder, RegisterModel, RegisterRead, RegisterWrite
from vsm_phoenix.verify.budget import parse_size, rss_bytes

DATA = Path(__file__).parent / "data"


def test_ok_history_exits_0(capsys: pytest.CaptureFixture[str]) -> None:
    assert main_check([str(DATA / "c01-ok.txt")]) == 0
    assert capsys.readouterr().out.startswith("OK:")


def test_illegal_history_exits_1_and_writes_html(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "t.html"
    code = main_check([str(DATA / "etcd_000.log"), "--format", "jepsen-etcd", "--html", str(out)])
    assert code == 1
    assert capsys.readouterr().out.startswith("ILLEGAL:")
    page = out.read_text("utf-8")
    assert page.startswith("<!DOCTYPE html>") and "Failing partition" in page


def test_unknown_exits_3(tmp_path: Path) -> None:
    rec = HistoryRecorder(RegisterModel())
    for c in range(40):
        rec.invoke(c, RegisterWrite(c), 0)
    for c in range(40):
        rec.ok(c, None, 100)
    rec.invoke(99, RegisterRead(), 200)
    rec.ok(99, 999, 201)
    path = tmp_path / "h.jsonl"
    path.write_text(rec.to_jsonl())
    assert main_check([str(path), "--model", "register", "--timeout", "0.2"]) == 3
    assert main_check([str(path), "--max-cache", "100"]) == 3


def test_usage_and_decode_errors_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.log"
    bad.write_text("INFO  jepsen.util - 0\t:invoke\t:write\tnil\n")
    assert main_check([str(bad)]) == 2
    assert "line 1" in capsys.readouterr().err
    assert main_check([str(DATA / "c01-ok.txt"), "--model", "register"]) == 2
    assert main_check([str(tmp_path / "missing.txt")]) == 2
    assert main_check([str(DATA / "c01-ok.txt"), "--format", "edn"]) == 2
    assert main_check([]) == 2
    assert main_check(["--help"]) == 0


def test_progress_reports_every_partition_on_stderr(capsys: pytest.CaptureFixture[str]) -> None:
    assert main_check([str(DATA / "c01-ok.txt"), "--progress"]) == 0
    err = capsys.readouterr().err
    assert "partition 10/10" in err and "OK" in err
    assert main_check([str(DATA / "c01-ok.txt"), "--no-progress"]) == 0
    assert capsys.readouterr().err == ""


def test_progress_callback_sees_each_partition_once() -> None:
    from vsm_phoenix.verify import check_history, load_history

    seen: list[tuple[int, int]] = []
    history = load_history((DATA / "c01-ok.txt").read_bytes(), "auto")
    result = check_history(history, progress=lambda d, t, _r: seen.append((d, t)))
    assert seen == [(i, 10) for i in range(1, 11)]
    assert result.verdict.name == "OK"
    with pytest.raises(TypeError):
        check_history(history, progress=42)  # type: ignore[arg-type]


# -- budgets: out of time or memory is UNKNOWN (exit 3), never a traceback --------------
def append_bomb(clients: int = 10, size: int = 200_000) -> str:
    """``clients`` concurrent appends of ``size`` characters each, then a read that no
    order explains: the search must try every order, and every state is a string of
    up to ``clients * size`` characters (~330 MB/s of new states here)."""
    from vsm_phoenix.verify import KVAppend, KVGet, KVModel

    rec = HistoryRecorder(KVModel())
    for c in range(clients):
        rec.invoke(c, KVAppend("k", chr(ord("a") + c) * size), 0)
    for c in range(clients):
        rec.ok(c, None, 10)
    rec.invoke(clients, KVGet("k"), 20)
    rec.ok(clients, "none of the orders", 30)
    return rec.history().to_jsonl()


_CHILD = (
    "import resource, sys\n"
    "from vsm_phoenix.cli.check import main_check\n"
    "code = main_check(sys.argv[1:])\n"
    "print('PEAK-KB', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)\n"
    "sys.exit(code)\n"
)


def _run_cli(args: list[str], address_space: int | None = None) -> tuple[int, str, str, int]:
    """Run ``vsm-phoenix check ARGS`` in a child process (optionally under a hard
    address-space limit); (exit code, stdout, stderr, the child's peak RSS in bytes)."""
    import resource
    import subprocess
    import sys

    def limit() -> None:
        if address_space is not None:
            resource.setrlimit(resource.RLIMIT_AS, (address_space, address_space))

    proc = subprocess.run([sys.executable, "-c", _CHILD, *args], capture_output=True,
                          text=True, preexec_fn=limit, timeout=300, check=False)
    peak = [int(line.split()[1]) * 1024 for line in proc.stdout.splitlines()
            if line.startswith("PEAK-KB")]
    return proc.returncode, proc.stdout, proc.stderr, peak[0] if peak else 0


def test_the_append_bomb_stays_within_its_memory_budget(tmp_path: Path) -> None:
    path = tmp_path / "bomb.jsonl"
    path.write_text(append_bomb())
    budget = 300 << 20
    code, out, err, peak = _run_cli([str(path), "--max-memory", "300M", "--timeout", "120"])
    assert code == 3, (out, err)
    assert out.startswith("UNKNOWN:") and "(memory limit)" in out
    assert "Traceback" not in err
    assert 0 < peak <= 1.1 * budget, peak


def test_a_memory_error_anyway_is_unknown_not_a_traceback(tmp_path: Path) -> None:
    path = tmp_path / "bomb.jsonl"
    path.write_text(append_bomb())
    # A hard limit below the budget: the allocator fails before the budget is reached.
    code, out, err, _ = _run_cli([str(path), "--max-memory", "8G", "--timeout", "120"],
                                 address_space=1_200 << 20)
    assert code == 3, (out, err)
    assert out.startswith("UNKNOWN") and "memory" in out
    assert "Traceback" not in err and "MemoryError" not in err


def test_the_deadline_is_kept_when_single_steps_are_slow() -> None:
    from vsm_phoenix.verify import check_history, load_history

    history = load_history(append_bomb())
    result = check_history(history, timeout=3.0, max_memory=None)
    assert result.verdict.name == "UNKNOWN" and result.reason == "timeout"
    assert result.elapsed <= 3.3, result.elapsed  # within 10 %


@pytest.mark.parametrize("timeout", ["-1", "nan", "inf", "soon", "-0.5"])
def test_a_bad_timeout_is_a_usage_error(timeout: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main_check([str(DATA / "c01-ok.txt"), f"--timeout={timeout}"]) == 2
    assert "--timeout" in capsys.readouterr().err


@pytest.mark.parametrize("size", ["0", "-5", "lots", "1.5X", ""])
def test_a_bad_memory_size_is_a_usage_error(size: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main_check([str(DATA / "c01-ok.txt"), f"--max-memory={size}"]) == 2
    assert "--max-memory" in capsys.readouterr().err


def test_sizes_and_zero_timeout_are_accepted(capsys: pytest.CaptureFixture[str]) -> None:
    assert [parse_size(t) for t in ("1G", "512M", "1.5GiB", "200000000")] == [
        2**30, 512 * 2**20, 3 * 2**29, 200_000_000]
    # The budget is this process's RSS: a pytest worker that already loaded z3, gepa
    # and the rest may hold hundreds of MB, so each run gets at least 200 MB above it.
    floor = rss_bytes() + 200_000_000
    sizes = [t if parse_size(t) >= floor else str(floor) for t in ("1G", "512M", "1.5GiB")]
    for size in (*sizes, str(floor)):
        assert main_check([str(DATA / "c01-ok.txt"), f"--max-memory={size}",
                           "--timeout=0"]) == 0
    assert capsys.readouterr().out.count("OK:") == 4
