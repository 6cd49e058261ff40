"""Node processes over RabbitMQ, and the multi-process ``simulate --transport amqp``.

Theory of operation
-------------------
:func:`main_node` is one node process: it builds a node for its *role*, opens its
SQLite store (``<data-dir>/<id>.sqlite``), and runs it under an
:class:`~vsm_phoenix.ext.amqp.AmqpNode` until SIGTERM/SIGINT or a ``{"op": "stop"}``
control request. Killed and started again over the same store, it boots with
``Restart(persisted)``.

A *role* (:class:`Role`) says how to build the node and how the control plane talks to
it: ``crdt`` (SWIM discovery + delta anti-entropy of an ORSet, the
:class:`~vsm_phoenix.protocol.cluster.ClusterNode`), ``swim`` (membership only), ``kv``
(Raft + the replicated KV, once :mod:`vsm_phoenix.protocol.kv` exists), or any
``module:attribute`` naming a :class:`Role` (tests use this for an echo node).

:func:`main_simulate_amqp` runs a scenario as separate node processes: it writes a
fresh cluster keyset, declares the topology, starts ``--nodes`` processes, drives a
client workload through the control plane with a live progress line, optionally kills
and restarts a node (``--kill``) and closes every broker connection
(``--close-connections``: every connection of the cluster, via
``rabbitmqctl close_connection``) mid-run, then checks the outcome --
replicas converge and hold every acknowledged update (``crdt``), or the recorded
history is linearizable (``kv``) -- and exits ``0`` on success, ``1`` on divergence or a
violation, ``2`` when no broker answers.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import importlib
import json
import logging
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import IO, Any, Protocol

from vsm_phoenix.crdt import CRDT, ORSet
from vsm_phoenix.crypto import KeyKind, Keyset
from vsm_phoenix.errors import InvalidArgument
from vsm_phoenix.ext.amqp import (
    AmqpClient,
    AmqpConfig,
    AmqpNode,
    ControlError,
    Topology,
    amqp_url,
    broker_available,
    delete_topology,
    load_keyset,
)
from vsm_phoenix.protocol.node import Deliver, Node
from vsm_phoenix.storage import SQLiteStorage

__all__ = [
    "CrdtRole",
    "KvRole",
    "ProcessCluster",
    "Role",
    "SwimRole",
    "load_role",
    "main",
    "main_node",
    "main_simulate_amqp",
    "node_parser",
    "simulate_parser",
]

log = logging.getLogger("vsm_phoenix.ext.runner")


# -- roles --------------------------------------------------------------------------------
class Role(Protocol):
    """How to build one kind of node and talk to it over the control plane."""

    name: str

    def build(self, node_id: str, rng: random.Random, peers: Sequence[str]) -> Node:
        """A fresh node (empty memory) for ``node_id`` in a cluster of ``peers``."""
        ...

    def decode_request(self, node: Node, raw: Any) -> Any:
        """The ``ClientRequest`` payload for control request ``raw``."""
        ...

    def encode_reply(self, deliver: Deliver) -> Any:
        """A CBOR-encodable rendering of a reply."""
        ...

    def status(self, node: Node) -> dict[str, Any]:
        """A CBOR-encodable summary of the node's state."""
        ...


def plain(value: Any) -> Any:
    """A CBOR-encodable rendering of a reply payload (CRDTs by their sorted value)."""
    if value is None or isinstance(value, str | int | float | bool | bytes):
        return value
    if isinstance(value, CRDT):
        return plain(value.value)
    if isinstance(value, frozenset | set):
        return sorted((plain(v) for v in value), key=repr)
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    return repr(value)


def _request_op(raw: Any) -> tuple[str, dict[str, Any]]:
    if not isinstance(raw, dict) or not isinstance(raw.get("op"), str):
        raise InvalidArgument("a control request is a map with a str 'op'")
    return raw["op"], raw


class SwimRole:
    """SWIM membership only. Requests: ``{"op": "match", "required": [...]}``."""

    name = "swim"

    def __init__(self, period_ms: int = 500) -> None:
        self.period_ms = period_ms

    def _config(self, peers: Sequence[str]) -> Any:
        from vsm_phoenix.protocol.swim import SwimConfig

        return SwimConfig(seeds=tuple(peers), period_ms=self.period_ms,
                          ping_timeout_ms=max(1, self.period_ms // 3),
                          join_retry_ms=self.period_ms, reconnect_interval_ms=4 * self.period_ms)

    def build(self, node_id: str, rng: random.Random, peers: Sequence[str]) -> Node:
        from vsm_phoenix.protocol.swim import SwimNode

        return SwimNode(node_id, rng, self._config(peers))

    def decode_request(self, node: Node, raw: Any) -> Any:
        from vsm_phoenix.protocol.swim import Match

        op, req = _request_op(raw)
        if op == "match":
            return Match(tuple(str(c) for c in req.get("required", ())))
        raise InvalidArgument(f"unknown swim op {op!r}")

    def encode_reply(self, deliver: Deliver) -> Any:
        return plain(deliver.payload)

    def status(self, node: Node) -> dict[str, Any]:
        from vsm_phoenix.protocol.swim import SwimNode

        assert isinstance(node, SwimNode)
        return {"members": node.alive_members()}


class CrdtRole(SwimRole):
    """SWIM + delta sync of one ORSet named ``set`` (a ClusterNode).

    Requests: ``{"op": "add", "elem": e}``, ``{"op": "remove", "elem": e}``,
    ``{"op": "read"}`` (the sorted elements). Status: members, set size and a digest of
    the replica's canonical bytes (equal digests = equal states)."""

    name = "crdt"

    def __init__(self, period_ms: int = 500, interval_ms: int = 300) -> None:
        super().__init__(period_ms)
        self.interval_ms = interval_ms

    def build(self, node_id: str, rng: random.Random, peers: Sequence[str]) -> Node:
        from vsm_phoenix.protocol.cluster import ClusterNode
        from vsm_phoenix.protocol.sync import SyncConfig

        return ClusterNode(
            node_id, rng, swim=self._config(peers),
            sync=SyncConfig(interval_ms=self.interval_ms), replicas={"set": ORSet()},
        )

    def decode_request(self, node: Node, raw: Any) -> Any:
        from vsm_phoenix.protocol.sync import Mutate, Read

        op, req = _request_op(raw)
        nid = node.node_id
        if op == "add":
            elem = req.get("elem")
            if not isinstance(elem, str | int):
                raise InvalidArgument("add needs a str or int 'elem'")
            return Mutate("set", lambda s: s.add(nid, elem))
        if op == "remove":
            elem = req.get("elem")
            if not isinstance(elem, str | int):
                raise InvalidArgument("remove needs a str or int 'elem'")
            return Mutate("set", lambda s: s.remove(elem))
        if op == "read":
            return Read("set")
        raise InvalidArgument(f"unknown crdt op {op!r}")

    def status(self, node: Node) -> dict[str, Any]:
        from vsm_phoenix.protocol.cluster import ClusterNode

        assert isinstance(node, ClusterNode)
        replica = node.sync.replicas["set"]
        return {
            "members": node.swim.alive_members(),
            "size": len(replica.value),
            "digest": hashlib.sha256(replica.to_bytes()).hexdigest()[:16],
        }


_BUILTIN_ROLES: dict[str, Callable[[], Role]] = {"swim": SwimRole, "crdt": CrdtRole}


def load_role(spec: str) -> Role:
    """A built-in role by name (``crdt``, ``swim``, ``kv``) or ``module:attribute``
    naming a role object or a zero-argument callable returning one."""
    if spec in _BUILTIN_ROLES:
        return _BUILTIN_ROLES[spec]()
    if spec == "kv":
        return _kv_role()
    if ":" not in spec:
        raise InvalidArgument(f"unknown role {spec!r} (crdt, swim, kv or module:attribute)")
    module, _, attr = spec.partition(":")
    obj = getattr(importlib.import_module(module), attr)
    if callable(obj) and not hasattr(obj, "build"):
        obj = obj()
    role: Role = obj
    return role


def _kv_role() -> Role:
    return KvRole()


class KvRole:
    """Raft + the replicated KV (:mod:`vsm_phoenix.protocol.kv`).

    Requests (maps): ``{"op": "put"|"append", "c": client, "s": seq, "k": key, "v":
    value}``, ``{"op": "cas", "c", "s", "k", "e": expected-or-null, "v"}``,
    ``{"op": "delete", "c", "s", "k"}``, ``{"op": "get", "k": key}``. Reply kinds are
    Raft's (``raft.ok``, ``raft.not-leader`` with the leader hint, ``raft.unknown``,
    ``raft.failed``). Status: role, term, leader, commit/applied indexes and a digest
    of the applied data."""

    name = "kv"

    def __init__(self, election_timeout_ms: int = 1000, heartbeat_ms: int = 100) -> None:
        self.election_timeout_ms = election_timeout_ms
        self.heartbeat_ms = heartbeat_ms

    def build(self, node_id: str, rng: random.Random, peers: Sequence[str]) -> Node:
        from vsm_phoenix.protocol.kv import KVStateMachine
        from vsm_phoenix.protocol.raft import RaftConfig, RaftNode

        config = RaftConfig(peers=tuple(sorted({*peers, node_id})),
                            election_timeout_ms=self.election_timeout_ms,
                            heartbeat_ms=self.heartbeat_ms, batch_delay_ms=2)
        return RaftNode(node_id, rng, config, KVStateMachine())

    def decode_request(self, node: Node, raw: Any) -> Any:
        from vsm_phoenix.protocol import kv

        op, req = _request_op(raw)
        try:
            if op == "get":
                return kv.get(req["k"])
            client, seq, key = req["c"], req["s"], req["k"]
            if op == "put":
                return kv.put(client, seq, key, req["v"])
            if op == "append":
                return kv.append(client, seq, key, req["v"])
            if op == "cas":
                return kv.cas(client, seq, key, req["e"], req["v"])
            if op == "delete":
                return kv.delete(client, seq, key)
        except KeyError as exc:
            raise InvalidArgument(f"{op} request lacks {exc}") from None
        raise InvalidArgument(f"unknown kv op {op!r}")

    def encode_reply(self, deliver: Deliver) -> Any:
        from vsm_phoenix.protocol.kv import STALE, KVError

        value = deliver.payload
        if isinstance(value, KVError):
            return {"error": value.reason}
        if value is STALE:
            return {"error": "stale"}
        return plain(value)

    def status(self, node: Node) -> dict[str, Any]:
        from vsm_phoenix.protocol.kv import KVStateMachine
        from vsm_phoenix.protocol.raft import RaftNode

        assert isinstance(node, RaftNode)
        sm = node.state_machine
        data = dict(sm.data) if isinstance(sm, KVStateMachine) else {}
        digest = hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]
        return {
            "role": node.role.value, "term": node.term, "leader": node.leader_id,
            "commit": node.commit_index, "applied": node.last_applied, "digest": digest,
            "summary": f"{node.role.value[:1]}/t{node.term}/a{node.last_applied}",
        }


class _KvWorkload:
    """Sequential clients issuing random KV operations to the leader, recording a
    history (wall-clock seconds) for the linearizability checker."""

    def __init__(self, client: AmqpClient, node_ids: Sequence[str], procs: ProcessCluster,
                 ops: int, seed: int, out_dir: Path) -> None:
        from vsm_phoenix.verify import HistoryRecorder, KVModel

        self.client = client
        self.node_ids = list(node_ids)
        self.procs = procs
        self.ops = ops
        self.out_dir = out_dir
        self.rng = random.Random(f"{seed}/kv-amqp")
        self.recorder = HistoryRecorder(KVModel())
        self.started = 0
        self.done = 0
        self.abandoned = 0
        self.retries = 0
        self.leader: str | None = None
        self.leaders_seen: set[str] = set()
        self.run_id = uuid.uuid4().hex[:6]
        self.keys = ("a", "b", "c")
        self.last_values: dict[str, list[str]] = {k: [] for k in self.keys}

    def progress(self) -> str:
        return (f"ops {self.done}/{self.ops} pending {self.abandoned} retries {self.retries} "
                f"leader {self.leader or '?'}")

    async def victim(self) -> str:
        """The node to kill: the current leader (the interesting case)."""
        return self.leader or self.node_ids[-1]

    def _random_op(self, cid: str, seq: int) -> tuple[Any, dict[str, Any]]:
        from vsm_phoenix.verify import KVAppend, KVCas, KVDelete, KVGet, KVPut

        key = self.rng.choice(self.keys)
        value = f"{cid}.{seq}"
        r = self.rng.random()
        if r < 0.4:
            return KVGet(key), {"op": "get", "k": key}
        if r < 0.65:
            return KVPut(key, value), {"op": "put", "k": key, "v": value}
        if r < 0.8:
            return KVAppend(key, value + ";"), {"op": "append", "k": key, "v": value + ";"}
        if r < 0.95:
            seen = self.last_values[key]
            expected = self.rng.choice(seen) if seen and self.rng.random() < 0.8 else None
            return KVCas(key, expected, value), {"op": "cas", "k": key, "e": expected,
                                                  "v": value}
        return KVDelete(key), {"op": "delete", "k": key}

    async def client_loop(self, index: int) -> None:
        cid = f"c{index}-{self.run_id}"
        seq = 0
        while self.started < self.ops:
            self.started += 1
            seq += 1
            op, req = self._random_op(cid, seq)
            if req["op"] != "get":
                req.update(c=cid, s=seq)
            self.recorder.invoke(cid, op, time.monotonic())
            result = await self._attempt(req)
            if result is _PENDING:
                self.recorder.info(cid)
                self.abandoned += 1
                continue
            self.recorder.ok(cid, result, time.monotonic())
            self.done += 1
            if isinstance(result, str):
                self._remember(req["k"], result)
            elif result is True or (req["op"] == "put" and result is None):
                self._remember(req["k"], req["v"])

    def _remember(self, key: str, value: str) -> None:
        seen = self.last_values[key]
        seen.append(value)
        del seen[:-4]

    async def _attempt(self, req: dict[str, Any], budget: float = 8.0) -> Any:
        deadline = time.monotonic() + budget
        target = self.leader or self.rng.choice(self.node_ids)
        while time.monotonic() < deadline:
            if not self.procs.alive(target):
                target = self.rng.choice(self.node_ids)
                await asyncio.sleep(0.05)
                continue
            try:
                kind, payload = await self.client.request(target, req, timeout=2.0)
            except (TimeoutError, ControlError):
                self.retries += 1
                target = self.rng.choice([n for n in self.node_ids if n != target])
                continue
            if kind == "raft.ok":
                if isinstance(payload, dict) and "error" in payload:
                    raise RuntimeError(f"KV answered {payload!r} to {req!r}")
                self.leader = target
                self.leaders_seen.add(target)
                return payload
            self.retries += 1
            hint = payload if isinstance(payload, str) and payload in self.node_ids else None
            if hint is not None and hint != target:
                target = hint
            else:
                await asyncio.sleep(0.1)
                target = self.rng.choice(self.node_ids)
            self.leader = hint
        return _PENDING

    async def check(self, st: dict[str, dict[str, Any]]) -> tuple[bool, dict[str, Any]]:
        """A leader exists, every node applied the same data, the history is
        linearizable."""
        from vsm_phoenix.verify import check_history, render_html

        leaders = [n for n, s in st.items() if s.get("role") == "leader"]
        applied = {s.get("applied") for s in st.values()}
        digests = {s.get("digest") for s in st.values()}
        if len(st) != len(self.node_ids) or len(leaders) != 1 or len(digests) != 1 or len(
            applied
        ) != 1:
            return False, {}
        history = self.recorder.history()
        verdict = check_history(history, timeout=60.0)
        (self.out_dir / "history.jsonl").write_text(history.to_jsonl())
        info: dict[str, Any] = {
            "leader": leaders[0], "leaders_seen": sorted(self.leaders_seen),
            "linearizable": verdict.verdict.value, "operations": len(history),
            "completed": self.done, "pending": self.abandoned, "retries": self.retries,
        }
        if not verdict.ok:
            page = self.out_dir / "violation.html"
            page.write_text(render_html(verdict))
            info["timeline"] = str(page)
        return verdict.ok, info

    def summary(self, ok: bool, info: dict[str, Any]) -> str:
        lin = info.get("linearizable", "not checked")
        return (f"{'OK' if ok else 'FAILED'}: leader {info.get('leader', '?')}, "
                f"{self.done}/{self.ops} operations completed, {self.abandoned} pending, "
                f"history {lin}")


_PENDING: Any = object()


# -- one node process -----------------------------------------------------------------------
def _add_transport_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--amqp-url", default=None,
                   help="broker URL (default $AMQP_URL or amqp://guest:guest@127.0.0.1:5672/)")
    p.add_argument("--keyset", default=None,
                   help="cluster keyset, Tink JSON (node default: $VSM_PHOENIX_KEYSET(_FILE); "
                        "simulate default: a fresh one)")
    p.add_argument("--batch-max", type=int, default=256,
                   help="frames per publish; 1 disables batching (default 256)")
    p.add_argument("--linger-ms", type=float, default=2.0,
                   help="how long a partial batch waits for company (default 2)")
    p.add_argument("--window", type=int, default=64,
                   help="unconfirmed publishes in flight (default 64)")
    p.add_argument("--ttl-ms", type=int, default=60_000,
                   help="per-message TTL in the broker (default 60000)")
    p.add_argument("--sync", choices=("full", "normal"), default="normal",
                   help="SQLite synchronous mode: full survives power loss, normal "
                        "survives process crashes (default normal)")


def node_parser() -> argparse.ArgumentParser:
    """The options of ``vsm-phoenix node``."""
    p = argparse.ArgumentParser(prog="vsm-phoenix node",
                                description="run one protocol node against RabbitMQ")
    p.add_argument("--id", required=True, help="node id (also its queue name)")
    p.add_argument("--cluster", required=True, help="cluster name (exchange vsm.<cluster>)")
    p.add_argument("--role", default="crdt",
                   help="crdt (default), swim, kv, or module:attribute")
    p.add_argument("--peers", default="", help="comma-separated ids of the other nodes")
    p.add_argument("--data-dir", default="vsm-data",
                   help="directory of the node's SQLite store (default ./vsm-data)")
    p.add_argument("--seed", type=int, default=None, help="seed of the node's random source")
    p.add_argument("--log-level", default="WARNING", help="logging level (default WARNING)")
    _add_transport_options(p)
    return p


def _config_from(args: argparse.Namespace) -> AmqpConfig:
    return AmqpConfig(
        url=args.amqp_url or amqp_url(),
        batch_max_messages=args.batch_max,
        linger_ms=args.linger_ms,
        window=args.window,
        message_ttl_ms=args.ttl_ms,
    )


async def _run_node(args: argparse.Namespace) -> int:
    role = load_role(args.role)
    reason = await broker_available(args.amqp_url or amqp_url())
    if reason is not None:
        print(reason, file=sys.stderr)
        return 2
    peers = [p for p in args.peers.split(",") if p and p != args.id]
    data = Path(args.data_dir)
    data.mkdir(parents=True, exist_ok=True)
    storage = SQLiteStorage(data / f"{args.id}.sqlite", synchronous=args.sync.upper())
    boots = storage.get("runner/boots")
    seed = args.seed if args.seed is not None else int.from_bytes(os.urandom(8), "big")
    rng = random.Random(f"{seed}/{args.id}/{int.from_bytes(boots or b'', 'big')}")
    node = role.build(args.id, rng, peers)
    runner = AmqpNode(node, cluster=args.cluster, keyset=load_keyset(args.keyset),
                      storage=storage, config=_config_from(args), codec=role)
    await runner.start()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, runner.request_stop)
    print(f"READY {args.id} {runner.booted_with}", flush=True)
    await runner.wait_stopped()
    storage.close()
    return 0


def main_node(argv: list[str]) -> int:
    """``vsm-phoenix node ...``: run one node until SIGTERM; returns the exit status."""
    try:
        args = node_parser().parse_args(argv)
    except SystemExit as exc:  # argparse: --help (0) or a usage error (2)
        return int(exc.code or 0)
    logging.basicConfig(level=args.log_level.upper(),
                        format=f"%(asctime)s {args.id} %(levelname)s %(name)s: %(message)s")
    try:
        return asyncio.run(_run_node(args))
    except KeyboardInterrupt:
        return 130


# -- a cluster of node processes ----------------------------------------------------------
class ProcessCluster:
    """Starts, kills and restarts node processes (``python -m vsm_phoenix.ext.runner``)."""

    def __init__(
        self,
        *,
        cluster: str,
        node_ids: Sequence[str],
        role: str,
        data_dir: Path,
        keyset_path: Path,
        node_args: Sequence[str] = (),
        env: dict[str, str] | None = None,
    ) -> None:
        self.cluster = cluster
        self.node_ids = tuple(node_ids)
        self.role = role
        self.data_dir = data_dir
        self.keyset_path = keyset_path
        self.node_args = list(node_args)
        self.env = {**os.environ, **(env or {})}
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self._logs: dict[str, IO[bytes]] = {}

    def command(self, nid: str) -> list[str]:
        return [
            sys.executable, "-m", "vsm_phoenix.ext.runner", "node",
            "--id", nid, "--cluster", self.cluster, "--role", self.role,
            "--peers", ",".join(self.node_ids), "--data-dir", str(self.data_dir),
            "--keyset", str(self.keyset_path), *self.node_args,
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


def write_keyset(path: Path) -> Keyset:
    """Generate a fresh AES-256-GCM cluster keyset and write it (Tink JSON, 0600)."""
    ks = Keyset.generate(KeyKind.AES256_GCM)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(ks.to_tink_json())
    return ks


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


# -- the simulate scenario -----------------------------------------------------------------
def simulate_parser() -> argparse.ArgumentParser:
    """The options of ``vsm-phoenix simulate --transport amqp``."""
    p = argparse.ArgumentParser(
        prog="vsm-phoenix simulate --transport amqp",
        description="run the scenario as separate node processes over RabbitMQ",
    )
    p.add_argument("--transport", choices=("amqp",), default="amqp",
                   help="accepted so that `simulate` argv can be passed through as is")
    p.add_argument("--nodes", type=int, default=3, help="number of node processes (default 3)")
    p.add_argument("--scenario", choices=("crdt", "kv"), default="crdt",
                   help="crdt: ORSet replicas converge; kv: Raft KV is linearizable")
    p.add_argument("--ops", type=int, default=200, help="client operations (default 200)")
    p.add_argument("--concurrency", type=int, default=8,
                   help="client operations in flight (default 8)")
    p.add_argument("--cluster", default=None, help="cluster name (default: a fresh one)")
    p.add_argument("--data-dir", default=None,
                   help="directory for stores, keyset and logs (default: a temp dir)")
    p.add_argument("--kill", action="store_true",
                   help="SIGKILL one node mid-run and restart it from its SQLite store")
    p.add_argument("--close-connections", action="store_true",
                   help="close the cluster's broker connections mid-run (rabbitmqctl)")
    p.add_argument("--timeout", type=float, default=90.0,
                   help="seconds to wait for convergence (default 90)")
    p.add_argument("--keep", action="store_true",
                   help="keep the data dir and the broker queues/exchanges")
    p.add_argument("--no-progress", action="store_true", help="no live progress display")
    p.add_argument("--json", default=None, help="write the result summary to this file")
    p.add_argument("--seed", type=int, default=0, help="workload seed (default 0)")
    _add_transport_options(p)
    return p


class _CrdtWorkload:
    """ORSet adds with retries on other nodes; what was acknowledged, and by whom."""

    def __init__(self, client: AmqpClient, node_ids: Sequence[str], procs: ProcessCluster,
                 ops: int) -> None:
        self.client = client
        self.node_ids = list(node_ids)
        self.procs = procs
        self.ops = ops
        self.acked: dict[str, str] = {}  # element -> node that acknowledged it
        self.failed: list[str] = []
        self.retries = 0
        self.started = 0

    def progress(self) -> str:
        return f"acked {len(self.acked)}/{self.ops} retries {self.retries}"

    async def one(self, i: int) -> None:
        elem = f"e{i:05d}"
        self.started += 1
        for attempt in range(12):
            nid = self.node_ids[(i + attempt) % len(self.node_ids)]
            if not self.procs.alive(nid):
                continue
            try:
                await self.client.request(nid, {"op": "add", "elem": elem}, timeout=5.0)
            except (TimeoutError, ControlError):
                self.retries += 1
                await asyncio.sleep(0.2)
                continue
            self.acked[elem] = nid
            return
        self.failed.append(elem)

    async def check(self, st: dict[str, dict[str, Any]]) -> tuple[bool, dict[str, Any]]:
        """Converged: every node answers, equal digests, every acked update present."""
        digests = {s.get("digest") for s in st.values()}
        if len(st) != len(self.node_ids) or len(digests) != 1:
            return False, {}
        reads: dict[str, list[Any]] = {}
        for nid in self.node_ids:
            with contextlib.suppress(TimeoutError, ControlError):
                reads[nid] = (await self.client.request(nid, {"op": "read"}, 3.0))[1]
        if len(reads) != len(self.node_ids):
            return False, {}
        lost = sorted(set(self.acked) - set.intersection(*(set(r) for r in reads.values())))
        info = {"acked": len(self.acked), "failed": len(self.failed), "lost": lost[:20],
                "retries": self.retries}
        return not lost, info

    def summary(self, ok: bool, info: dict[str, Any]) -> str:
        verdict = "CONVERGED" if ok else "DIVERGED"
        return (f"{verdict}: {len(self.acked)}/{self.ops} updates acknowledged, "
                f"{len(info.get('lost', []))} lost")


async def _statuses(client: AmqpClient, node_ids: Sequence[str]) -> dict[str, dict[str, Any]]:
    async def one(nid: str) -> tuple[str, dict[str, Any] | None]:
        try:
            return nid, await client.status(nid, timeout=5.0)
        except (TimeoutError, ControlError):
            return nid, None

    pairs = await asyncio.gather(*(one(n) for n in node_ids))
    return {nid: st for nid, st in pairs if st is not None}


async def _until_reconnected(client: AmqpClient, node_ids: Sequence[str],
                             before: dict[str, dict[str, Any]], timeout: float) -> None:
    """Wait until every node reports one more reconnection than in ``before``."""
    def count(s: dict[str, Any] | None) -> int:
        return int((s or {}).get("stats", {}).get("reconnects", 0))

    deadline = time.monotonic() + timeout
    while True:
        now = await _statuses(client, node_ids)
        if all(count(now.get(n)) > count(before.get(n)) for n in node_ids):
            return
        if time.monotonic() > deadline:
            raise TimeoutError("nodes did not report a reconnection")
        await asyncio.sleep(0.2)


def _line(phase: str, t0: float, work: _CrdtWorkload | _KvWorkload,
          st: dict[str, dict[str, Any]], procs: ProcessCluster) -> str:
    parts = [f"[{time.monotonic() - t0:5.1f}s] {phase}", work.progress()]
    for nid in procs.node_ids:
        s = st.get(nid)
        if not procs.alive(nid):
            parts.append(f"{nid}:DOWN")
        elif s is None:
            parts.append(f"{nid}:?")
        else:
            parts.append(f"{nid}:{s.get('size', s.get('summary', 'up'))}")
    dead = sum(int(s.get("stats", {}).get("dead_lettered", 0)) for s in st.values())
    parts.append(f"dlq {dead}")
    return "  ".join(parts)


async def _simulate(args: argparse.Namespace) -> int:
    url = args.amqp_url or amqp_url()
    reason = await broker_available(url)
    if reason is not None:
        print(reason, file=sys.stderr)
        return 2
    cluster_name = args.cluster or f"sim-{uuid.uuid4().hex[:8]}"
    tmp = Path(args.data_dir) if args.data_dir else Path(tempfile.mkdtemp(prefix="vsm-amqp-"))
    tmp.mkdir(parents=True, exist_ok=True)
    if args.keyset:
        keyset_path = Path(args.keyset).resolve()
        keyset = load_keyset(str(keyset_path))
    else:
        keyset_path = tmp / "keyset.json"
        keyset = write_keyset(keyset_path)
    node_ids = [f"n{i + 1}" for i in range(args.nodes)]
    node_args = ["--batch-max", str(args.batch_max), "--linger-ms", str(args.linger_ms),
                 "--window", str(args.window), "--ttl-ms", str(args.ttl_ms),
                 "--sync", args.sync, "--amqp-url", url, "--log-level", "WARNING"]
    procs = ProcessCluster(cluster=cluster_name, node_ids=node_ids, role=args.scenario,
                           data_dir=tmp, keyset_path=keyset_path, node_args=node_args)
    topology = Topology(cluster_name)
    progress = Progress(enabled=not args.no_progress)
    config = AmqpConfig(url=url, linger_ms=0.5)
    result: dict[str, Any] = {"cluster": cluster_name, "scenario": args.scenario,
                              "nodes": node_ids, "ops": args.ops}
    t0 = time.monotonic()
    ok = False
    client = AmqpClient(cluster=cluster_name, keyset=keyset, config=config, name="sim")
    try:
        await client.start(tuple(node_ids))
        procs.start_all()
        await wait_ready(client, node_ids, timeout=60.0)
        progress.show(f"[{time.monotonic() - t0:5.1f}s] {args.nodes} nodes up", force=True)
        work: _CrdtWorkload | _KvWorkload
        if args.scenario == "kv":
            work = _KvWorkload(client, node_ids, procs, args.ops, args.seed, tmp)
            jobs = [work.client_loop(c) for c in range(args.concurrency)]
        else:
            crdt = _CrdtWorkload(client, node_ids, procs, args.ops)
            sem = asyncio.Semaphore(args.concurrency)

            async def one(i: int) -> None:
                async with sem:
                    await crdt.one(i)

            work = crdt
            jobs = [one(i) for i in range(args.ops)]
        faults: list[str] = []

        async def inject() -> None:
            if args.kill:
                while work.started < args.ops // 3:
                    await asyncio.sleep(0.05)
                victim = await work.victim() if isinstance(work, _KvWorkload) else node_ids[-1]
                procs.kill(victim)
                faults.append(f"killed {victim}")
                await asyncio.sleep(1.0)
                procs.start(victim)
                faults.append(f"restarted {victim}")
                await wait_ready(client, (victim,), timeout=60.0)
            if args.close_connections:
                while work.started < 2 * args.ops // 3:
                    await asyncio.sleep(0.05)
                before = await _statuses(client, node_ids)
                n = await asyncio.to_thread(close_connections, cluster_name)
                faults.append(f"closed {n} broker connections")
                await _until_reconnected(client, node_ids, before, timeout=60.0)
                faults.append("every node reconnected")

        async def display() -> None:
            while True:
                st = await _statuses(client, node_ids)
                progress.show(_line("running", t0, work, st, procs))
                await asyncio.sleep(0.5)

        shower = asyncio.create_task(display())
        try:
            await asyncio.gather(inject(), *jobs)
        finally:
            shower.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await shower
        deadline = time.monotonic() + args.timeout
        st: dict[str, dict[str, Any]] = {}
        info: dict[str, Any] = {}
        while time.monotonic() < deadline:
            st = await _statuses(client, node_ids)
            progress.show(_line("checking", t0, work, st, procs))
            ok, info = await work.check(st)
            if ok:
                break
            await asyncio.sleep(0.5)
        result.update(
            ok=ok, converged=ok, faults=faults, seconds=round(time.monotonic() - t0, 2),
            statuses={n: {k: v for k, v in s.items() if k != "members"} for n, s in st.items()},
            **info,
        )
        progress.done(f"[{time.monotonic() - t0:5.1f}s] {work.summary(ok, info)}; "
                      f"faults: {', '.join(faults) or 'none'}")
    finally:
        procs.stop_all()
        await client.close()
        if not args.keep:
            await delete_topology(topology, tuple(node_ids), url)
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2, sort_keys=True, default=str))
    if not ok:
        for nid in node_ids:
            print(f"--- {nid} log tail ---\n{procs.log_tail(nid)}", file=sys.stderr)
    if not args.keep and not args.data_dir:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0 if ok else 1


def main_simulate_amqp(argv: list[str]) -> int:
    """``vsm-phoenix simulate --transport amqp ...``; returns the exit status (argv may
    include ``--transport amqp``)."""
    try:
        args = simulate_parser().parse_args(argv)
    except SystemExit as exc:  # argparse: --help (0) or a usage error (2)
        return int(exc.code or 0)
    logging.basicConfig(level=logging.ERROR)
    # Reconnections are expected here (--close-connections); keep the display clean.
    for name in ("aiormq", "aio_pika"):
        logging.getLogger(name).setLevel(logging.CRITICAL)
    try:
        return asyncio.run(_simulate(args))
    except KeyboardInterrupt:
        return 130
    except (TimeoutError, RuntimeError, OSError) as exc:
        print(f"simulate failed: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m vsm_phoenix.ext.runner node|simulate ...``."""
    args = list(sys.argv[1:] if argv is None else argv)
    if args and args[0] == "node":
        return main_node(args[1:])
    if args and args[0] == "simulate":
        return main_simulate_amqp(args[1:])
    print("usage: python -m vsm_phoenix.ext.runner node|simulate [options]", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
