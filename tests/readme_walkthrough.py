"""Run a README ``sh`` block as written, against the real broker (for the walkthrough
tests): the block after a marker comment is run by ``bash -e`` in a fresh directory,
with the installed ``vsm-phoenix`` first on ``PATH`` and ``$AMQP_URL`` set; nothing it
starts outlives the run, and the cluster's broker topology is deleted afterwards."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import pytest

README = Path(__file__).resolve().parent.parent / "README.md"


def sh_block(marker: str) -> str:
    """The first ``sh`` block after ``marker`` in README.md."""
    text = README.read_text(encoding="utf-8")
    assert marker in text, f"README.md lost the block after {marker}"
    found = re.search(r"```sh\n(.*?)```", text[text.index(marker):], re.S)
    assert found is not None
    return found.group(1)


def broker_or_skip() -> str:
    """The broker URL; skip (fail under ``VSM_PHOENIX_REQUIRE_AMQP=1``) without one."""
    pytest.importorskip("aio_pika")
    from vsm_phoenix.cli.base import amqp_url
    from vsm_phoenix.ext.amqp import broker_available

    url = amqp_url()
    reason = asyncio.run(broker_available(url))
    if reason is not None:
        if os.environ.get("VSM_PHOENIX_REQUIRE_AMQP") == "1":
            pytest.fail(f"VSM_PHOENIX_REQUIRE_AMQP=1 but {reason}")
        pytest.skip(reason)
    return url


def run_script(script: str, cwd: Path, node_ids: Sequence[str],
               timeout_s: float = 240) -> tuple[int, str, str]:
    """Run ``script`` in ``cwd`` (its keys in ``cwd/keys``): exit status, stdout, stderr."""
    url = broker_or_skip()
    bindir = Path(sys.executable).parent
    assert (bindir / "vsm-phoenix").exists(), "the vsm-phoenix command is not installed"
    env = {**os.environ, "PATH": f"{bindir}{os.pathsep}{os.environ.get('PATH', '')}",
           "AMQP_URL": url}
    env.pop("VSM_PHOENIX_KEYS", None)
    proc = subprocess.Popen(["bash", "-e", "-c", script], cwd=cwd, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    try:
        out, err = proc.communicate(timeout=timeout_s)
    finally:
        # the nodes run in the script's process group: nothing may outlive the test
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)
        _delete_cluster(cwd / "keys", url, node_ids)
    return proc.returncode, out, err


def _delete_cluster(keys: Path, url: str, node_ids: Sequence[str]) -> None:
    roster = keys / "roster.cbor"
    if not roster.exists():
        return
    from vsm_phoenix.crypto.identity import Roster
    from vsm_phoenix.ext.amqp import Topology, delete_topology

    cluster = Roster.from_bytes(roster.read_bytes()).cluster
    asyncio.run(delete_topology(Topology(cluster), tuple(node_ids), url))
