"""``vsm-phoenix simulate --transport amqp``: a scenario as separate node processes.

:func:`run_simulation` makes fresh cluster secrets (keyset, authority, roster, one
identity per node and an ``admin`` client for itself) in a private temporary directory,
declares the topology, starts ``--nodes`` processes, drives a client workload through
the control plane with a live progress line, optionally kills and restarts a node
(``--kill``) and closes every broker connection of the cluster (``--close-connections``,
via ``rabbitmqctl``) mid-run, then checks the outcome -- replicas converge and hold every
acknowledged update (``crdt``), or the recorded history is linearizable (``kv``). It
returns ``0`` on success, ``1`` on divergence or a violation, ``2`` when no broker
answers. The secrets directory (cleartext keys) is removed on every exit path, including
SIGTERM and Ctrl-C, unless ``--keep`` asks to keep everything.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import shutil
import signal
import sys
import tempfile
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Final

import attrs

from vsm_phoenix.crypto.credentials import ClusterSecrets
from vsm_phoenix.errors import InvalidArgument
from vsm_phoenix.ext.amqp.client import AmqpClient, ControlError
from vsm_phoenix.ext.amqp.endpoint import AmqpConfig
from vsm_phoenix.ext.amqp.process import (
    BrokerAdmin,
    ProcessCluster,
    Progress,
    wait_ready,
)
from vsm_phoenix.ext.amqp.topology import Topology, broker_available, delete_topology

__all__ = ["LEGENDS", "SimulationSettings", "run_simulation"]

#: What the per-node cells of the progress line mean, per scenario (printed first).
LEGENDS: Final = {
    "crdt": "cells: n1:42 = elements in n1's replica of the set, DOWN = process not running, "
            "? = no answer; dlq = dead-lettered bodies",
    "kv": "cells: n1:L/t3/a120 = n1 is Leader (F follower, C candidate, P pre-candidate) "
          "in Raft term 3 and has applied log entry 120; DOWN = process not running, "
          "? = no answer; dlq = dead-lettered bodies",
}


@attrs.frozen(kw_only=True)
class SimulationSettings:
    """What ``vsm-phoenix simulate --transport amqp`` runs (each field is the option of
    the same name); time settings carry their unit."""

    url: str
    scenario: str = "crdt"
    nodes: int = 3
    ops: int = 200
    concurrency: int = 8
    seed: int = 0
    cluster: str | None = None
    data_dir: str | None = None
    kill: bool = False
    close_connections: bool = False
    converge_timeout_s: float = 90.0
    keep: bool = False
    progress: bool = True
    json: str | None = None
    node_args: tuple[str, ...] = ()

    def __attrs_post_init__(self) -> None:
        if self.scenario not in LEGENDS:
            raise InvalidArgument(f"unknown scenario {self.scenario!r}")
        if self.nodes < 1 or self.concurrency < 1 or self.ops < 0:
            raise InvalidArgument("nodes and concurrency must be positive, ops >= 0")
        if self.converge_timeout_s <= 0:
            raise InvalidArgument("the convergence timeout must be positive")


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


def _cell(status: dict[str, Any]) -> str:
    """One node's progress cell (see :data:`LEGENDS`)."""
    if status.get("kind") == "kv":
        role = str(status.get("role", "?"))
        letter = "P" if role == "pre-candidate" else role[:1].upper()
        return f"{letter}/t{status.get('term', '?')}/a{status.get('applied', '?')}"
    return str(status.get("size", "up"))


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
            parts.append(f"{nid}:{_cell(s)}")
    dead = sum(int(s.get("stats", {}).get("dead_lettered", 0)) for s in st.values())
    parts.append(f"dlq {dead}")
    return "  ".join(parts)


async def run_simulation(args: SimulationSettings, admin: BrokerAdmin | None = None) -> int:
    """Run the scenario ``args`` describes; returns the exit status. ``admin`` closes
    the broker connections when ``args.close_connections`` (required then)."""
    if args.close_connections and admin is None:
        raise InvalidArgument("close_connections needs a BrokerAdmin")
    url = args.url
    reason = await broker_available(url)
    if reason is not None:
        print(reason, file=sys.stderr)
        return 2
    main_task = asyncio.current_task()
    loop = asyncio.get_running_loop()
    if main_task is not None:  # SIGTERM unwinds through every finally below
        loop.add_signal_handler(signal.SIGTERM, main_task.cancel)
    keys = Path(tempfile.mkdtemp(prefix="vsm-keys-"))
    try:
        return await _simulate(args, url, keys, admin)
    finally:
        if args.keep:
            print(f"kept the cluster's secrets (cleartext keys) in {keys}", file=sys.stderr)
        else:
            shutil.rmtree(keys, ignore_errors=True)
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.remove_signal_handler(signal.SIGTERM)


async def _simulate(args: SimulationSettings, url: str, keys: Path,
                    admin: BrokerAdmin | None) -> int:
    cluster_name = args.cluster or f"sim-{uuid.uuid4().hex[:8]}"
    tmp = Path(args.data_dir) if args.data_dir else Path(tempfile.mkdtemp(prefix="vsm-amqp-"))
    tmp.mkdir(parents=True, exist_ok=True)
    node_ids = [f"n{i + 1}" for i in range(args.nodes)]
    secrets = ClusterSecrets.create(cluster_name, nodes=node_ids, clients={"sim": ["admin"]})
    secrets.write(keys)
    node_args = [*args.node_args, "--amqp-url", url, "--log-level", "WARNING"]
    procs = ProcessCluster(node_ids=node_ids, kind=args.scenario, data_dir=tmp,
                           keys_dir=keys, node_args=node_args)
    topology = Topology(cluster_name)
    progress = Progress(enabled=args.progress)
    config = AmqpConfig(url=url, linger_ms=0.5)
    result: dict[str, Any] = {"cluster": cluster_name, "scenario": args.scenario,
                              "nodes": node_ids, "ops": args.ops}
    t0 = time.monotonic()
    ok = False
    client = AmqpClient(credentials=secrets.credentials("sim"), config=config)
    try:
        await client.start(tuple(node_ids))
        procs.start_all()
        await wait_ready(client, node_ids, timeout=60.0)
        progress.done(f"[{time.monotonic() - t0:5.1f}s] {args.nodes} nodes up; "
                      f"{LEGENDS[args.scenario]}")
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
                assert admin is not None
                n = await asyncio.to_thread(admin.close_connections, cluster_name)
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
        deadline = time.monotonic() + args.converge_timeout_s
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
        if not ok:
            for nid in node_ids:
                print(f"--- {nid} log tail ---\n{procs.log_tail(nid)}", file=sys.stderr)
        if not args.keep:
            with contextlib.suppress(Exception):
                await delete_topology(topology, tuple(node_ids), url)
            if not args.data_dir:
                shutil.rmtree(tmp, ignore_errors=True)
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2, sort_keys=True, default=str))
    return 0 if ok else 1
