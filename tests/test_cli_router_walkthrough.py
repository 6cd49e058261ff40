"""The README's router walkthrough, run as written against the real broker
(:mod:`readme_walkthrough`): keys and a grant, two router node processes, commands
signed and submitted with ``ctl`` (accepted, replayed, under-privileged, a granted
capability), the decision log, a stop by the admin. Every command must succeed (the
refusals are followed by ``|| true``), and the answers must be what the README says.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from readme_walkthrough import run_script, sh_block

MARKER = "<!-- router walkthrough: run as written by tests/test_cli_router_walkthrough.py -->"


def test_router_walkthrough_is_complete() -> None:
    script = sh_block(MARKER)
    for step in ("keys grant", "--kind router", "--grant", "command kv.set", "--save",
                 "--wire", "decisions", "ctl all stop"):
        assert step in script, step


@pytest.mark.amqp
def test_readme_router_walkthrough_runs_as_written(tmp_path: Path) -> None:
    code, out, err = run_script(sh_block(MARKER), tmp_path, ("n1", "n2"))
    assert code == 0, f"stdout:\n{out}\nstderr:\n{err}"
    assert "Traceback" not in err, err
    lines = out.splitlines()
    assert lines.count("decision: accepted") == 3, out  # kv.set, kv.get, job.claim
    assert "result: blue" in lines and "result: n2" in lines, out
    assert "error: ReplayError" in lines and "error: PermissionDenied" in lines, out
    decided = [line for line in lines if line.startswith(("accepted ", "refused "))]
    assert [line.split(" -- ")[0].rsplit(" nonce ", 1)[0] for line in decided] == [
        "accepted kv.set from app", "accepted kv.get from viewer",
        "refused kv.set from app", "refused kv.set from viewer"], out
    assert decided[2].endswith("replayed") and "'write' role" in decided[3], out
