"""Node processes for multi-process runs: start, kill, restart; broker fault injection.

:class:`ProcessCluster` starts each node as ``python -m vsm_phoenix node ...`` (or a
command of the caller's) with its own data directory entry and log file, and the
cluster's secrets directory (:class:`~vsm_phoenix.crypto.credentials.ClusterSecrets`).
:class:`BrokerAdmin` closes a cluster's broker connections (management API or
``rabbitmqctl``) on the broker of a given AMQP URL, to inject reconnections.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import IO, Any, Final

import attrs

from vsm_phoenix.ext.amqp.client import AmqpClient, ControlError
from vsm_phoenix.ext.amqp.topology import redact

__all__ = [
    "BrokerAdmin",
    "ProcessCluster",
    "Progress",
    "rabbitmqctl_path",
    "wait_ready",
]


class ProcessCluster:
    """Starts, kills and restarts node processes (``python -m vsm_phoenix node``).

    ``keys_dir`` is a directory written by
    :meth:`~vsm_phoenix.crypto.credentials.ClusterSecrets.write` that holds each node's
    identity; the cluster name comes from its roster. ``command`` (optional) builds
    another command line for a node id -- e.g. a GEPA member process
    (:mod:`vsm_phoenix.ext.gepa.processes`); the default runs ``vsm-phoenix node``
    of ``kind`` with ``node_args``."""

    def __init__(
        self,
        *,
        node_ids: Sequence[str],
        kind: str,
        data_dir: Path,
        keys_dir: Path,
        node_args: Sequence[str] = (),
        env: dict[str, str] | None = None,
        command: Callable[[str], Sequence[str]] | None = None,
    ) -> None:
        self.node_ids = tuple(node_ids)
        self.kind = kind
        self.data_dir = data_dir
        self.keys_dir = keys_dir
        self.node_args = list(node_args)
        self.env = {**os.environ, **(env or {})}
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self._logs: dict[str, IO[bytes]] = {}
        self._command = command

    def exit_code(self, nid: str) -> int | None:
        """``nid``'s exit status, or ``None`` while it runs (or was never started)."""
        proc = self.procs.get(nid)
        return None if proc is None else proc.poll()

    def command(self, nid: str) -> list[str]:
        if self._command is not None:
            return list(self._command(nid))
        return [
            sys.executable, "-m", "vsm_phoenix", "node",
            "--id", nid, "--kind", self.kind,
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
        raise RuntimeError("rabbitmqctl not found")
    out = subprocess.run([exe, *args], capture_output=True, text=True, timeout=60, check=False)
    if out.returncode != 0:
        raise RuntimeError(f"rabbitmqctl {args[0]} failed: "
                           f"{out.stderr.strip() or out.stdout.strip()}")
    return out.stdout


_LOCAL_HOSTS: Final = frozenset({"localhost", "127.0.0.1", "::1", "", socket.gethostname()})


@attrs.frozen
class BrokerAdmin:
    """How to close the connections of the broker at an AMQP URL: its management HTTP
    API (``http://<host>:<port>/api``, the URL's credentials) when that answers, else
    ``rabbitmqctl`` when the broker runs on this machine. Build one with
    :meth:`for_url`; it never talks to another broker than the URL's."""

    url: str = attrs.field(repr=False)
    vhost: str
    api: str | None  # management API base URL, or None for rabbitmqctl
    user: str
    password: str = attrs.field(repr=False)

    @classmethod
    def for_url(cls, url: str, management_port: int = 15672,
                timeout_s: float = 3.0) -> BrokerAdmin:
        """The admin route for ``url``; ``RuntimeError`` (password redacted) when
        there is none."""
        parts = urllib.parse.urlsplit(url)
        host = parts.hostname or "localhost"
        vhost = urllib.parse.unquote(parts.path[1:]) if len(parts.path) > 1 else "/"
        user = urllib.parse.unquote(parts.username or "guest")
        password = urllib.parse.unquote(parts.password or "guest")
        api = f"http://{host if ':' not in host else f'[{host}]'}:{management_port}/api"
        admin = cls(url, vhost, api, user, password)
        try:
            admin._http("GET", "/overview", timeout_s)
            return admin
        except (OSError, ValueError):
            pass
        if host in _LOCAL_HOSTS and rabbitmqctl_path() is not None:
            return cls(url, vhost, None, user, password)
        raise RuntimeError(redact(
            f"cannot close connections on the broker at {url}: no management API at "
            f"{api} and rabbitmqctl only reaches a broker on this machine", url))

    def _http(self, method: str, path: str, timeout_s: float = 10.0,
              headers: dict[str, str] | None = None) -> Any:
        assert self.api is not None
        request = urllib.request.Request(self.api + path, method=method,
                                         headers=dict(headers or {}))
        token = base64.b64encode(f"{self.user}:{self.password}".encode()).decode()
        request.add_header("Authorization", f"Basic {token}")
        with urllib.request.urlopen(request, timeout=timeout_s) as response:
            body = response.read()
        return json.loads(body) if body else None

    def close_connections(self, cluster: str | None,
                          reason: str = "vsm-phoenix fault injection") -> int:
        """Close the connections of ``cluster`` (by the ``connection_name`` the adapter
        sets) in this URL's vhost, or every connection of the vhost when ``None``.
        Returns how many were closed."""
        tag = None if cluster is None else f"vsm-phoenix {cluster} "
        closed = 0
        if self.api is not None:
            for conn in self._http("GET", "/connections") or []:
                name = str((conn.get("client_properties") or {}).get("connection_name", ""))
                if conn.get("vhost") != self.vhost or (tag and not name.startswith(tag)):
                    continue
                with contextlib.suppress(OSError, ValueError):  # it may have gone meanwhile
                    self._http("DELETE", "/connections/" + urllib.parse.quote(conn["name"],
                                                                             safe=""),
                               headers={"X-Reason": reason})
                    closed += 1
            return closed
        listing = _rabbitmqctl("list_connections", "--no-table-headers", "pid", "vhost",
                               "client_properties")
        quoted = None if tag is None else f'{{"connection_name","{tag}'
        for line in listing.splitlines():
            pid, _, rest = line.partition("\t")
            vhost, _, props = rest.partition("\t")
            if not pid.startswith("<") or vhost != self.vhost:
                continue
            if quoted is not None and quoted not in props:
                continue
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
