"""Node processes for multi-process runs: start, kill, restart; broker fault injection.

:class:`ProcessCluster` starts each node as ``python -m vsm_phoenix node ...`` with its
own data directory entry and log file, and the cluster's secrets directory
(:class:`~vsm_phoenix.crypto.credentials.ClusterSecrets`). :func:`close_connections`
closes broker connections with ``rabbitmqctl`` to inject reconnections.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import IO, Any

from vsm_phoenix.ext.amqp.client import AmqpClient, ControlError

__all__ = [
    "Progress",
    "ProcessCluster",
    "close_connections",
    "rabbitmqctl_path",
    "wait_ready",
]


class ProcessCluster:
    """Starts, kills and restarts node processes (``python -m vsm_phoenix node``).

    ``keys_dir`` is a directory written by
    :meth:`~vsm_phoenix.crypto.credentials.ClusterSecrets.write` that holds each node's
    identity; the cluster name comes from its roster."""

    def __init__(
        self,
        *,
        node_ids: Sequence[str],
        role: str,
        data_dir: Path,
        keys_dir: Path,
        node_args: Sequence[str] = (),
        env: dict[str, str] | None = None,
    ) -> None:
        self.node_ids = tuple(node_ids)
        self.role = role
        self.data_dir = data_dir
        self.keys_dir = keys_dir
        self.node_args = list(node_args)
        self.env = {**os.environ, **(env or {})}
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self._logs: dict[str, IO[bytes]] = {}

    def command(self, nid: str) -> list[str]:
        return [
            sys.executable, "-m", "vsm_phoenix", "node",
            "--id", nid, "--role", self.role,
            "--peers", ",".join(self.node_ids), "--data-dir", str(self.data_dir),
            "--keys", str(self.keys_dir), *self.node_args,
        ]

    def start(self, nid: str) -> None:
        """Start (or restart) ``nid``; its output goes to ``<data-dir>/<id>.log``."""
        old = self._logs.pop(nid, None)
        if old is not None:
            old.close()
        logf = open(self.data_dir / f"{nid}.log", "ab")  # noqa: SIM115 - closed in stop()
        self._logs[nid] = logf
        self.procs[nid] = subprocess.Popen(
            self.command(nid), stdout=logf, stderr=subprocess.STDOUT, env=self.env
        )

    def start_all(self) -> None:
        for nid in self.node_ids:
            self.start(nid)

    def alive(self, nid: str) -> bool:
        proc = self.procs.get(nid)
        return proc is not None and proc.poll() is None

    def kill(self, nid: str) -> None:
        """SIGKILL ``nid`` (no flush, no goodbye) and reap it."""
        proc = self.procs.get(nid)
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait(10)

    def stop_all(self, timeout: float = 10.0) -> None:
        """SIGTERM every node, SIGKILL what has not exited after ``timeout``."""
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.terminate()
        deadline = time.monotonic() + timeout
        for proc in self.procs.values():
            try:
                proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
        for logf in self._logs.values():
            logf.close()
        self._logs.clear()

    def log_tail(self, nid: str, lines: int = 20) -> str:
        path = self.data_dir / f"{nid}.log"
        if not path.exists():
            return ""
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])



def rabbitmqctl_path() -> str | None:
    """Where ``rabbitmqctl`` is (``$PATH`` or ``/usr/sbin``), or ``None``."""
    found = shutil.which("rabbitmqctl")
    if found is None and os.access("/usr/sbin/rabbitmqctl", os.X_OK):
        found = "/usr/sbin/rabbitmqctl"
    return found


def _rabbitmqctl(*args: str) -> str:
    exe = rabbitmqctl_path()
    if exe is None:
        raise RuntimeError("rabbitmqctl not found: --close-connections needs it on PATH")
    out = subprocess.run([exe, *args], capture_output=True, text=True, timeout=60, check=False)
    if out.returncode != 0:
        raise RuntimeError(f"rabbitmqctl {args[0]} failed: "
                           f"{out.stderr.strip() or out.stdout.strip()}")
    return out.stdout


def close_connections(cluster: str | None = None,
                      reason: str = "vsm-phoenix fault injection") -> int:
    """Close broker connections with ``rabbitmqctl``: those of ``cluster`` (by the
    ``connection_name`` the adapter sets), or every connection when ``None``
    (``close_all_connections``). Returns how many were closed (-1: all)."""
    if cluster is None:
        _rabbitmqctl("close_all_connections", reason)
        return -1
    listing = _rabbitmqctl("list_connections", "--no-table-headers", "pid", "client_properties")
    tag = f'{{"connection_name","vsm-phoenix {cluster} '
    closed = 0
    for line in listing.splitlines():
        pid, _, props = line.partition("\t")
        if pid.startswith("<") and tag in props:
            with contextlib.suppress(RuntimeError):  # it may have gone meanwhile
                _rabbitmqctl("close_connection", pid, reason)
                closed += 1
    return closed


async def wait_ready(client: AmqpClient, node_ids: Sequence[str], timeout: float) -> dict[
    str, dict[str, Any]
]:
    """Poll ``status`` until every node answers; returns the statuses."""
    deadline = time.monotonic() + timeout
    got: dict[str, dict[str, Any]] = {}
    while True:
        for nid in node_ids:
            if nid in got:
                continue
            with contextlib.suppress(TimeoutError, ControlError):
                got[nid] = await client.status(nid, timeout=3.0)
        if len(got) == len(node_ids):
            return got
        if time.monotonic() > deadline:
            missing = sorted(set(node_ids) - set(got))
            raise TimeoutError(f"nodes not ready after {timeout}s: {missing}")
        await asyncio.sleep(0.2)


class Progress:
    """A live status line: redrawn in place on a terminal, one line per second else."""

    def __init__(self, stream: IO[str] | None = None, enabled: bool = True) -> None:
        self.stream = stream or sys.stderr
        self.enabled = enabled
        self.tty = self.stream.isatty()
        self._last = 0.0
        self._width = 0

    def show(self, text: str, force: bool = False) -> None:
        if not self.enabled:
            return
        now = time.monotonic()
        if self.tty:
            pad = max(0, self._width - len(text))
            self.stream.write("\r" + text + " " * pad)
            self._width = len(text)
            self.stream.flush()
        elif force or now - self._last >= 1.0:
            self.stream.write(text + "\n")
            self.stream.flush()
            self._last = now

    def done(self, text: str) -> None:
        """The final line (printed even when the live display is off)."""
        if self.tty and self.enabled:
            self.show(text)
            self.stream.write("\n")
        else:
            self.stream.write(text + "\n")
        self.stream.flush()
