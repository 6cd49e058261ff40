"""`vsm-phoenix check` through main_check(argv): exit statuses, --model, --html."""

from __future__ import annotations

from pathlib import Path

import pytest

from vsm_phoenix.cli.check import main_check
from vsm_phoenix.verify import HistoryRecorder, RegisterModel, RegisterRead, RegisterWrite

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
