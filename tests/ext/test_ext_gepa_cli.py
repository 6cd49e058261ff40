"""``vsm-phoenix gepa``: runs the shipped task, prints frontier, committed prompt and
counts; bad usage is one line and exit status 2 before anything runs."""

from __future__ import annotations

import json

import pytest

from vsm_phoenix.cli import main


def test_gepa_runs_and_reports(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["gepa", "--nodes", "2", "--budget", "120", "--target", "-1",
                 "--schedule", "turns", "--json"])
    out, err = capsys.readouterr()
    assert code == 0
    data = json.loads(out)
    assert data["nodes"] == 2 and 0 < data["metric_calls"] <= 120  # a hard budget
    assert data["metric_calls"] <= data["leased_calls"] <= data["budget"] == 120
    assert data["duplicate_keys"] == 0 and data["frontiers_agree"]
    assert data["committed"] is not None and data["committed_agree"]
    assert data["committed"]["version"] == 1 and data["frontier"]
    assert "vsm-phoenix gepa: step" in err  # the progress line


def test_gepa_text_report_and_unreached_target(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["gepa", "--nodes", "1", "--budget", "60", "--target", "1.0",
                 "--no-progress"])
    out, err = capsys.readouterr()
    assert code == 1  # ran; the target was not reached
    assert "committed prompt" in out and "frontier" in out and "per node" in out
    assert err == ""


@pytest.mark.parametrize("argv", [
    ["--nodes", "0"], ["--target", "2"], ["--budget", "0"],
    ["--transport", "amqp", "--independent"], ["--transport", "amqp", "--schedule", "turns"],
    ["--amqp-url", "amqp://x"], ["--processes"], ["--kv-nodes", "2"],
    ["--transport", "amqp", "--kv-nodes", "0"],
])
def test_bad_usage_is_one_line_and_exit_2(argv: list[str],
                                          capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["gepa", *argv, "--no-progress"])
    out, err = capsys.readouterr()
    assert code == 2 and out == ""
    assert err.startswith("vsm-phoenix gepa: ") and err.count("\n") == 1
