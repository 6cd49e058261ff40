"""The README's three-process walkthrough, run as written against the real broker.

The ``sh`` block after the ``walkthrough`` marker is run by ``bash -e`` in a fresh
directory, with the installed ``vsm-phoenix`` command first on ``PATH``: keys, three
node processes, writes and reads with ``ctl``, a node killed with SIGKILL and
restarted, convergence, and a stop by the admin. Every command must succeed, and the
reads must show what the README says they show.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

README = Path(__file__).resolve().parent.parent / "README.md"
MARKER = "<!-- walkthrough: run as written by tests/test_walkthrough.py -->"


def walkthrough() -> str:
    text = README.read_text(encoding="utf-8")
    assert MARKER in text, "README.md lost its walkthrough"
    found = re.search(r"```sh\n(.*?)```", text[text.index(MARKER):], re.S)
    assert found is not None
    return found.group(1)


def test_walkthrough_is_complete() -> None:
    script = walkthrough()
    for step in ("keys new", "node --id n1", "ctl n1 add", "read", "kill -9", "wait-converged",
                 "ctl all stop"):
        assert step in script, step


@pytest.mark.amqp
def test_readme_walkthrough_runs_as_written(tmp_path: Path) -> None:
    pytest.importorskip("aio_pika")
    from vsm_phoenix.cli.base import amqp_url
    from vsm_phoenix.ext.amqp import broker_available

    url = amqp_url()
    reason = asyncio.run(broker_available(url))
    if reason is not None:
        if os.environ.get("VSM_PHOENIX_REQUIRE_AMQP") == "1":
            pytest.fail(f"VSM_PHOENIX_REQUIRE_AMQP=1 but {reason}")
        pytest.skip(reason)
    bindir = Path(sys.executable).parent
    assert (bindir / "vsm-phoenix").exists(), "the vsm-phoenix command is not installed"
    env = {**os.environ, "PATH": f"{bindir}{os.pathsep}{os.environ.get('PATH', '')}",
           "AMQP_URL": url}
    env.pop("VSM_PHOENIX_KEYS", None)
    proc = subprocess.Popen(["bash", "-e", "-c", walkthrough()], cwd=tmp_path, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    try:
        out, err = proc.communicate(timeout=240)
    finally:
        # the nodes run in the script's process group: nothing may outlive the test
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)
        _delete_cluster(tmp_path / "keys", url)
    assert proc.returncode == 0, f"stdout:\n{out}\nstderr:\n{err}"
    lines = out.splitlines()
    assert lines[lines.index("eggs"):lines.index("eggs") + 2] == ["eggs", "milk"], out
    assert '["eggs"]' in lines, out
    assert sum(line.startswith("READY n3") for line in lines) == 2, out  # start, restart
    assert "READY n3 restart" in lines
    assert "Traceback" not in err, err


def _delete_cluster(keys: Path, url: str) -> None:
    roster = keys / "roster.cbor"
    if not roster.exists():
        return
    from vsm_phoenix.crypto.identity import Roster
    from vsm_phoenix.ext.amqp import Topology, delete_topology

    cluster = Roster.from_bytes(roster.read_bytes()).cluster
    asyncio.run(delete_topology(Topology(cluster), ("n1", "n2", "n3"), url))
