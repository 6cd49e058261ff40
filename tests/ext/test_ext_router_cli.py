"""Router nodes as processes: ``vsm-phoenix node --kind router`` against RabbitMQ, an
application loaded with ``--routes``, a grant signed with ``keys grant`` and learnt
through membership, and commands signed and submitted with ``vsm-phoenix ctl``: the
authentic one accepted, forged, replayed, expired and under-privileged ones refused
with the documented errors, every decision readable with ``ctl decisions``."""

from __future__ import annotations

import asyncio
import json
import os
import time
from pathlib import Path
from typing import Any

import pytest

from vsm_phoenix.cli import main

HERE = Path(__file__).parent


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, Any, str]:
    """Run the CLI in process: exit status, stdout as JSON (text when it is not), stderr."""
    try:
        code = main(list(argv))
    except SystemExit as exc:
        code = int(exc.code or 0)
    out, err = capsys.readouterr()
    try:
        doc: Any = json.loads(out)
    except ValueError:
        doc = out
    return code, doc, err


@pytest.mark.amqp
def test_router_node_processes_run_signed_commands_from_the_command_line(
    clusters: Any, broker_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pytest.importorskip("aio_pika")
    from vsm_phoenix.ext.amqp import AmqpClient, AmqpConfig
    from vsm_phoenix.ext.amqp.process import ProcessCluster, wait_ready
    from vsm_phoenix.ext.router import clock_nonce, sign_command

    ids = ("n1", "n2")
    secrets = clusters.secrets(*ids)  # clients: ops (admin), writer, reader
    keys = secrets.write(tmp_path / "keys")
    code, _, err = _run(capsys, "keys", "grant", str(keys), "n2", "--cap", "jobs")
    assert code == 0, err
    grant = keys / "n2.grant.cbor"

    def command(nid: str) -> list[str]:
        import sys

        extra = ["--grant", str(grant)] if nid == "n2" else []  # n1 learns it from n2
        return [sys.executable, "-m", "vsm_phoenix", "node", "--id", nid, "--kind", "router",
                "--routes", "router_app:ROUTES", "--data-dir", str(tmp_path),
                "--keys", str(keys), "--amqp-url", broker_url, "--log-level", "INFO", *extra]

    env = {"PYTHONPATH": os.pathsep.join(filter(None, [str(HERE),
                                                       os.environ.get("PYTHONPATH")]))}
    procs = ProcessCluster(node_ids=ids, kind="router", data_dir=tmp_path, keys_dir=keys,
                           env=env, command=command)

    def ctl(*argv: str) -> tuple[int, Any]:
        code, doc, err = _run(capsys, "ctl", *argv, "--keys", str(keys), "--json",
                              "--amqp-url", broker_url, "--timeout-s", "20")
        assert "Traceback" not in err
        return code, doc

    async def ready() -> None:
        client = AmqpClient(credentials=secrets.credentials("reader"),
                            config=AmqpConfig(url=broker_url))
        await client.start(ids)
        try:
            await wait_ready(client, ids, timeout=30)
        finally:
            await client.close()

    procs.start_all()
    try:
        asyncio.run(ready())
        # accepted: signed by the writer, answered by n1 -- and saved
        saved = tmp_path / "note.cmd"
        code, ok = ctl("n1", "command", "note.add", "text=hello", "--as", "writer",
                       "--save", str(saved))
        assert code == 0 and ok["decision"] == "accepted", ok
        assert ok["result"] == 1 and ok["issuer"] == "writer" and ok["at"] == "n1"
        # replayed: the same bytes again, carried by a read-only client
        code, replay = ctl("n1", "command", "--wire", str(saved), "--as", "reader")
        assert code == 1 and replay["decision"] == "refused"
        assert replay["error"] == "ReplayError" and "replayed" in replay["reason"]
        # forged: one byte of the argument changed, relayed through n1 to n2
        forged = tmp_path / "forged.cmd"
        forged.write_bytes(saved.read_bytes().replace(b"hello", b"hellp"))
        code, bad = ctl("n1", "command", "--wire", str(forged), "--to", "n2", "--as", "reader")
        assert code == 1 and bad["error"] == "AuthenticationError" and bad["at"] == "n2"
        # expired: signed 40 s ago (the router takes 30 s)
        old_ms = int(time.time() * 1000) - 40_000
        stale = tmp_path / "stale.cmd"
        stale.write_bytes(sign_command(secrets.identities["writer"], secrets.roster.cluster,
                                       "note.add", {"text": "late"}, issued_ms=old_ms,
                                       nonce=clock_nonce(old_ms)))
        code, late = ctl("n1", "command", "--wire", str(stale), "--as", "reader")
        assert code == 1 and late["error"] == "ReplayError" and "ago" in late["reason"]
        # under-privileged: the reader may carry commands, not sign writes
        code, denied = ctl("n1", "command", "note.add", "text=mine", "--as", "reader")
        assert code == 1 and denied["error"] == "PermissionDenied"
        assert "'write' role" in denied["reason"]
        # a capability: n2's authority grant reaches n1 through membership ...
        for _ in range(60):
            code, claim = ctl("n1", "command", "job.claim", "job=j1", "--as", "n2")
            if claim.get("decision") == "accepted":
                break
            assert claim["error"] == "PermissionDenied", claim  # not learnt yet
            time.sleep(0.5)
        assert code == 0 and claim["result"] == "n2", claim
        # ... and n1, which advertises no grant, is refused at n2
        code, ungranted = ctl("n2", "command", "job.claim", "job=j2", "--as", "n1")
        assert code == 1 and ungranted["error"] == "PermissionDenied"
        assert "not granted capability 'jobs'" in ungranted["reason"]
        # nothing refused changed anything
        code, data = ctl("n1", "data", "--as", "reader")
        assert code == 0 and data == {"note/1": "writer: hello", "job/j1": "n2"}
        code, data2 = ctl("n2", "data", "--as", "reader")
        assert code == 0 and data2 == {}
        # every decision is recorded, oldest first, with its reason
        code, log = ctl("n1", "decisions", "--limit", "100", "--as", "reader")
        assert code == 0
        outcomes = [(d["command"], d["accepted"], d["error"]) for d in log]
        assert outcomes[0] == ("note.add", True, None)
        assert outcomes[1:4] == [("note.add", False, "ReplayError"),
                                 ("note.add", False, "ReplayError"),
                                 ("note.add", False, "PermissionDenied")]
        assert outcomes[-1] == ("job.claim", True, None)
        assert {d["issuer"] for d in log} == {"writer", "reader", "n2"}
        code, status = ctl("n2", "status", "--as", "reader")
        assert status["kind"] == "router" and status["decisions"] == {
            "AuthenticationError": 1, "PermissionDenied": 1}
        code, _ = ctl("all", "stop", "--as", "ops")
        assert code == 0
        deadline = time.monotonic() + 20
        while any(procs.alive(n) for n in ids) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert [procs.exit_code(n) for n in ids] == [0, 0]
        log_text = (tmp_path / "n1.log").read_text()
        assert "decision: accepted note.add from writer" in log_text
        assert "decision: refused note.add from reader" in log_text
    finally:
        procs.stop_all()
