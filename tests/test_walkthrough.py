"""The README's three-process walkthrough, run as written against the real broker.

The ``sh`` block after the ``walkthrough`` marker is run by ``bash -e``
(:mod:`readme_walkthrough`) in a fresh directory, with the installed ``vsm-phoenix``
command first on ``PATH``: keys, three node processes, writes and reads with ``ctl``,
a node killed with SIGKILL and restarted, convergence, and a stop by the admin. Every
command must succeed, and the reads must show what the README says they show.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from readme_walkthrough import run_script, sh_block

MARKER = "<!-- walkthrough: run as written by tests/test_walkthrough.py -->"


def walkthrough() -> str:
    return sh_block(MARKER)


def test_walkthrough_is_complete() -> None:
    script = walkthrough()
    for step in ("keys new", "node --id n1", "ctl n1 add", "read", "kill -9", "wait-converged",
                 "ctl all stop"):
        assert step in script, step


@pytest.mark.amqp
def test_readme_walkthrough_runs_as_written(tmp_path: Path) -> None:
    code, out, err = run_script(walkthrough(), tmp_path, ("n1", "n2", "n3"))
    assert code == 0, f"stdout:\n{out}\nstderr:\n{err}"
    lines = out.splitlines()
    assert lines[lines.index("eggs"):lines.index("eggs") + 2] == ["eggs", "milk"], out
    assert '["eggs"]' in lines, out
    assert sum(line.startswith("READY n3") for line in lines) == 2, out  # start, restart
    assert "READY n3 restart" in lines
    assert "Traceback" not in err, err
