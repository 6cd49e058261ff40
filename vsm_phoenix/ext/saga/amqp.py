"""``vsm-phoenix simulate --scenario saga --transport amqp``: the saga scenario over RabbitMQ.

The same scenario as :mod:`vsm_phoenix.ext.saga.scenario` (three coordinators, order
sagas under step failures, coordinator crashes and partitions, every saga checked at
the end by :func:`~vsm_phoenix.ext.saga.scenario.check_saga`), with the shared log in a
real cluster:

* three ``--kind kv`` node processes (``python -m vsm_phoenix node``) run the Raft KV
  over the broker; the saga log is :class:`~vsm_phoenix.ext.saga.log.KVSagaLog` over
  the AMQP :class:`~vsm_phoenix.ext.amqp.cluster.KV` client;
* each coordinator (``saga-n1`` .. ``saga-n3``, principals with the ``write`` role) has
  its own broker connections (``kv_sessions`` of them, :class:`KVSessions`), so its own
  KV sessions. A crashed coordinator's tasks are
  cancelled mid-flight and its connection closed; its replacement connects afresh, and
  meanwhile a peer whose recovery scan finds the expired lease takes its sagas over;
* the nemesis also SIGKILLs the KV leader's process and restarts it from its SQLite
  store (``kv_kills``): writes stall while a new leader is elected, and a coordinator
  whose write's fate is unknown learns it from the log (compare-and-append).

:func:`run_saga_amqp` makes fresh cluster secrets in a private temporary directory
(removed on every exit path unless ``keep``), shows a live progress line (sagas ended,
faults, each KV node's Raft role/term/applied index), prints the outcome counts and the
invariant verdict, and returns the exit status: ``0`` every saga ended consistently,
``1`` not, ``2`` no broker.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import shutil
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any, Final

import attrs

from vsm_phoenix.errors import InvalidArgument
from vsm_phoenix.ext.saga.log import KVSagaLog, SagaLog
from vsm_phoenix.ext.saga.scenario import SagaRun, ScenarioBackend, run_scenario_on

__all__ = ["KVSessions", "SagaAmqpSettings", "run_saga_amqp"]

NODES: Final = ("n1", "n2", "n3")
COORDINATORS: Final = ("n1", "n2", "n3")  # the scenario's coordinator names


@attrs.frozen(kw_only=True)
class SagaAmqpSettings:
    """What ``simulate --scenario saga --transport amqp`` runs. ``lease_ms`` is the
    coordinators' lease; every fault interval scales with it (a slower log needs
    longer leases than the in-process one)."""

    url: str
    sagas: int = 200
    concurrency: int = 20
    seed: int = 0
    cluster: str | None = None
    data_dir: str | None = None
    keep: bool = False
    progress: bool = True
    json: str | None = None
    node_args: tuple[str, ...] = ()
    kv_kills: bool = True
    kv_sessions: int = 4
    lease_ms: int = 6_000
    kv_timeout_s: float = 10.0

    def __attrs_post_init__(self) -> None:
        if type(self.sagas) is not int or self.sagas < 1:
            raise InvalidArgument("sagas must be a positive int")
        if type(self.concurrency) is not int or self.concurrency < 1:
            raise InvalidArgument("concurrency must be a positive int")
        if type(self.lease_ms) is not int or self.lease_ms < 100:
            raise InvalidArgument("lease_ms must be an int >= 100")
        if type(self.kv_sessions) is not int or not 1 <= self.kv_sessions <= 32:
            raise InvalidArgument("kv_sessions must be an int in 1..32")
        if not self.kv_timeout_s > 0:
            raise InvalidArgument("kv_timeout_s must be positive")


class KVSessions:
    """Several KV clients (each its own broker connection, so its own exactly-once KV
    session, which carries one write at a time) used as one
    :class:`~vsm_phoenix.ext.saga.log.AsyncKV`: each call goes to the least busy. A
    coordinator with many sagas in flight would otherwise queue every log write behind
    one session."""

    def __init__(self, kvs: Sequence[Any]) -> None:
        if not kvs:
            raise InvalidArgument("KVSessions needs at least one KV client")
        self.kvs = list(kvs)
        self._busy = [0] * len(self.kvs)

    async def _on_least_busy(self, call: Callable[[Any], Awaitable[Any]]) -> Any:
        i = min(range(len(self.kvs)), key=self._busy.__getitem__)
        self._busy[i] += 1
        try:
            return await call(self.kvs[i])
        finally:
            self._busy[i] -= 1

    async def get(self, key: str, *, timeout_s: float | None = None) -> str | None:
        value: str | None = await self._on_least_busy(
            lambda kv: kv.get(key, timeout_s=timeout_s))
        return value

    async def cas(self, key: str, expected: str | None, value: str, *,
                  timeout_s: float | None = None) -> bool:
        return bool(await self._on_least_busy(
            lambda kv: kv.cas(key, expected, value, timeout_s=timeout_s)))

    async def append(self, key: str, value: str, *, timeout_s: float | None = None) -> None:
        await self._on_least_busy(lambda kv: kv.append(key, value, timeout_s=timeout_s))


def _summary(run: SagaRun) -> str:
    o = run.outcomes
    return (f"{o['completed']} completed, {o['compensated']} compensated, {o['stuck']} stuck "
            f"(reported) of {run.sagas} in {run.elapsed_s:.1f} s; "
            f"{len(run.violations)} invariant violations; "
            + ", ".join(f"{k} {v}" for k, v in sorted(run.stats.items())))


async def run_saga_amqp(settings: SagaAmqpSettings) -> int:
    """Run the scenario (module docstring); the exit status."""
    from vsm_phoenix.ext.amqp.topology import broker_available

    reason = await broker_available(settings.url)
    if reason is not None:
        print(reason, file=sys.stderr)
        return 2
    keys = Path(tempfile.mkdtemp(prefix="vsm-keys-"))
    try:
        return await _run(settings, keys)
    finally:
        if settings.keep:
            print(f"kept the cluster's secrets (cleartext keys) in {keys}", file=sys.stderr)
        else:
            shutil.rmtree(keys, ignore_errors=True)


async def _run(settings: SagaAmqpSettings, keys: Path) -> int:
    from vsm_phoenix.crypto.credentials import ClusterSecrets
    from vsm_phoenix.ext.amqp.client import AmqpClient, ControlError
    from vsm_phoenix.ext.amqp.cluster import Cluster
    from vsm_phoenix.ext.amqp.endpoint import AmqpConfig
    from vsm_phoenix.ext.amqp.process import ProcessCluster, Progress, wait_ready
    from vsm_phoenix.ext.amqp.simulate import _cell
    from vsm_phoenix.ext.amqp.topology import Topology, delete_topology

    url = settings.url
    name = settings.cluster or f"saga-{uuid.uuid4().hex[:8]}"
    tmp = Path(settings.data_dir) if settings.data_dir else Path(
        tempfile.mkdtemp(prefix="vsm-amqp-"))
    tmp.mkdir(parents=True, exist_ok=True)
    nodes = list(NODES)
    clients: dict[str, list[str]] = {"sim": ["admin"], "saga-client": ["write"]}
    clients.update({f"saga-{c}": ["write"] for c in COORDINATORS})
    secrets = ClusterSecrets.create(name, nodes=nodes, clients=clients)
    secrets.write(keys)
    procs = ProcessCluster(node_ids=nodes, kind="kv", data_dir=tmp, keys_dir=keys,
                           node_args=[*settings.node_args, "--amqp-url", url,
                                      "--log-level", "WARNING"])
    progress = Progress(enabled=settings.progress)
    config = AmqpConfig(url=url, linger_ms=0.5)
    control = AmqpClient(credentials=secrets.credentials("sim"), config=config)
    conns: dict[str, list[Cluster]] = {}
    t0 = time.monotonic()
    ok = False
    result: dict[str, Any] = {"cluster": name, "scenario": "saga", "transport": "amqp",
                              "nodes": nodes, "sagas": settings.sagas, "seed": settings.seed}

    def stamp(text: str) -> str:
        return f"[{time.monotonic() - t0:6.1f}s] {text}"

    async def connect(principal: str) -> list[Cluster]:
        out: list[Cluster] = []
        try:
            for _ in range(settings.kv_sessions):
                out.append(await Cluster.connect(
                    url, secrets.credentials(principal), member=False, config=config,
                    timeout_s=settings.kv_timeout_s))
        except BaseException:
            for c in out:
                with contextlib.suppress(Exception):
                    await c.close()
            raise
        return out

    def log_of(pool: list[Cluster]) -> SagaLog:
        return KVSagaLog(KVSessions([c.kv(nodes) for c in pool]),
                         timeout_s=settings.kv_timeout_s)

    async def statuses() -> dict[str, dict[str, Any]]:
        async def one(nid: str) -> tuple[str, dict[str, Any] | None]:
            try:
                return nid, await control.status(nid, timeout=3.0)
            except (TimeoutError, ControlError):
                return nid, None

        return {n: s for n, s in await asyncio.gather(*(one(n) for n in nodes))
                if s is not None}

    try:
        await control.start(tuple(nodes))
        procs.start_all()
        await wait_ready(control, nodes, timeout=60.0)
        for c in COORDINATORS:
            conns[c] = await connect(f"saga-{c}")
        conns["client"] = await connect("saga-client")
        progress.done(stamp(
            f"3 KV nodes up on {name}; 3 coordinators ({settings.kv_sessions} broker "
            "connections, so KV sessions, each) run "
            f"{settings.sagas} order sagas (order -> stock | credit -> charge (pivot) -> "
            "ship -> notify) under step failures, coordinator crashes and partitions"
            + (", KV leader SIGKILLs" if settings.kv_kills else "")
            + "; cells: n1:L/t3/a120 = Leader (F follower, C candidate) in term 3, applied "
            "120, DOWN = process not running, ? = no answer"))

        def make_log(role: str) -> SagaLog:
            return log_of(conns[role if role in conns else "client"])

        async def restart(coordinator: str) -> SagaLog:
            for old in conns[coordinator]:  # a crash: whatever the old one was doing
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(old.close(), 10.0)
            conns[coordinator] = await asyncio.wait_for(connect(f"saga-{coordinator}"),
                                                        60.0)
            return log_of(conns[coordinator])

        async def kill_leader(frng: random.Random, say: Callable[[str], None]) -> None:
            st = await statuses()
            leader = next((n for n, s in st.items() if s.get("role") == "leader"), None)
            victim = leader or frng.choice(nodes)
            say(f"  SIGKILL KV node {victim}" + (" (the leader)" if leader else ""))
            procs.kill(victim)
            await asyncio.sleep(frng.uniform(0.5, 1.5))
            procs.start(victim)
            await wait_ready(control, (victim,), timeout=60.0)
            say(f"  KV node {victim} restarted from its store")

        async def health() -> str:
            st = await statuses()
            return "KV nodes " + "  ".join(
                f"{nid}:DOWN" if not procs.alive(nid) else
                f"{nid}:no answer" if nid not in st else f"{nid}:{_cell(st[nid])}"
                for nid in nodes) + " (L leader, F follower, C candidate / term / applied)"

        pace = settings.lease_ms / 400
        backend = ScenarioBackend(
            name="kv-amqp", make_log=make_log, restart=restart,
            kv_fault=kill_leader if settings.kv_kills else None, pace=pace,
            lease_ms=settings.lease_ms, step_timeout_ms=settings.lease_ms // 6,
            late_s=settings.lease_ms / 4000, final_timeout_s=max(60.0, 40 * pace),
            stall_s=max(30.0, settings.lease_ms / 100), health=health)
        latest: dict[str, Any] = {"ended": 0, "stats": {}}

        def on_progress(ended: int, total: int, stats: dict[str, int]) -> None:
            latest.update(ended=ended, stats=dict(stats))

        async def display() -> None:
            while True:
                st = await statuses()
                s = latest["stats"]
                cells = []
                for nid in nodes:
                    cells.append(f"{nid}:DOWN" if not procs.alive(nid) else
                                 f"{nid}:?" if nid not in st else f"{nid}:{_cell(st[nid])}")
                progress.show(stamp(
                    f"sagas {latest['ended']}/{settings.sagas} ended  crashes "
                    f"{s.get('crashes', 0)} partitions {s.get('partitions', 0)} kv-kills "
                    f"{s.get('kv_faults', 0)} recovered {s.get('recovered', 0)}  "
                    + "  ".join(cells)))
                await asyncio.sleep(0.5)

        shower = asyncio.create_task(display())
        try:
            run = await run_scenario_on(
                backend, seed=settings.seed, sagas=settings.sagas,
                concurrency=settings.concurrency,
                say=lambda line: progress.done(stamp(line.strip())),
                progress=on_progress, progress_every_s=0.5)
        finally:
            shower.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await shower
        ok = run.ok
        result.update(ok=ok, outcomes=run.outcomes, stats=run.stats,
                      violations=list(run.violations[:50]),
                      seconds=round(time.monotonic() - t0, 2))
        progress.done(stamp(f"{sum(run.outcomes.values())}/{run.sagas} sagas ended, "
                            "each log and its effects checked"))
        print(stamp(("OK: " if ok else "FAILED: ") + _summary(run)), flush=True)
        for line in run.violations[:20]:
            print(f"  {line}")
        print("every saga completed, compensated or stuck-and-reported; nothing applied "
              "twice; no compensation after the pivot or for a step that never ran"
              if ok else f"replay with: vsm-phoenix simulate --scenario saga --transport "
              f"amqp --seed {settings.seed} --sagas {settings.sagas}")
    finally:
        for conn in (c for pool in conns.values() for c in pool):
            with contextlib.suppress(Exception):
                await asyncio.wait_for(conn.close(), 10.0)
        procs.stop_all()
        with contextlib.suppress(Exception):
            await control.close()
        if not ok:
            for nid in nodes:
                print(f"--- {nid} log tail ---\n{procs.log_tail(nid)}", file=sys.stderr)
        if not settings.keep:
            with contextlib.suppress(Exception):
                await delete_topology(Topology(name), tuple(nodes), url)
            if not settings.data_dir:
                shutil.rmtree(tmp, ignore_errors=True)
    if settings.json:
        Path(settings.json).write_text(json.dumps(result, indent=2, sort_keys=True,
                                                  default=str))
    return 0 if ok else 1
