"""Test tooling for the replicated KV store: simulated clients, a fault scheduler and
whole randomized runs, checked for linearizability.

Theory of operation
-------------------
:class:`KVWorkload` drives simulated clients inside a
:class:`~vsm_phoenix.protocol.sim.Simulator` running
:class:`~vsm_phoenix.protocol.kv.KVStateMachine` Raft nodes: each client sends its
operation to the node it believes leads, follows ``raft.not-leader`` hints, retries on
timeouts and on ``raft.unknown`` with the same sequence number (the store's sessions
make that exactly-once), and records every operation (call and return in virtual
time) into a :class:`~vsm_phoenix.verify.history.HistoryRecorder`. The operation mix
is :func:`random_kv_op`, shared with the AMQP runner's workload. A client whose
session expired (:data:`~vsm_phoenix.protocol.kv.E_SESSION_EXPIRED`, when the store's
:class:`~vsm_phoenix.protocol.kv.KVConfig` bounds evict it, or when its first command
was abandoned unapplied) records that operation as pending — its outcome is unknown —
and goes on under a new session id, as the store asks. With ``open_sessions`` every
session starts with :func:`~vsm_phoenix.protocol.kv.open_session`, so that even a
session's first write is never applied twice.

:func:`simulate_kv` is a whole randomized run: a cluster, a workload and a nemesis
(:func:`schedule_faults`) that partitions, cuts links one way, crashes and restarts
nodes and changes the loss rate; then the network heals and outstanding operations
finish. :class:`~vsm_phoenix.protocol.raft.RaftMonitor` checks Raft's safety
properties throughout. The same seed gives the same run, byte for byte.

This module sits in ``verify`` because it is test tooling above the protocol layer:
``vsm_phoenix.protocol`` never imports ``vsm_phoenix.verify``.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping, Sequence
from functools import partial
from typing import Any

import attrs

from vsm_phoenix.errors import VsmPhoenixError
from vsm_phoenix.protocol.kv import (
    E_SESSION_EXPIRED,
    STALE,
    KVError,
    append,
    cas,
    delete,
    get,
    kv_node_factory,
    open_session,
    put,
)
from vsm_phoenix.protocol.node import Deliver, NodeFactory
from vsm_phoenix.protocol.raft import (
    K_FAILED,
    K_NOT_LEADER,
    K_OK,
    K_UNKNOWN,
    Membership,
    Propose,
    RaftConfig,
    RaftMonitor,
    RaftNode,
    Read,
)
from vsm_phoenix.protocol.sim import NetworkConfig, Simulator
from vsm_phoenix.verify.history import History, HistoryRecorder
from vsm_phoenix.verify.models import KVAppend, KVCas, KVDelete, KVGet, KVModel, KVPut
from vsm_phoenix.verify.reconfigure import MembershipDriver, default_plan

__all__ = [
    "KVClientError",
    "KVOp",
    "KVRun",
    "KVWorkload",
    "command_for",
    "random_kv_op",
    "schedule_faults",
    "simulate_kv",
]

KVOp = KVGet | KVPut | KVAppend | KVCas | KVDelete


class KVClientError(VsmPhoenixError):
    """A client got an answer that no correct cluster gives (a bug, not a fault)."""


def command_for(op: KVOp, client: str, seq: int) -> Propose | Read:
    """The Raft request for a :mod:`vsm_phoenix.verify.models` KV model input."""
    if isinstance(op, KVGet):
        return get(op.key)
    if isinstance(op, KVPut):
        return put(client, seq, op.key, op.value)
    if isinstance(op, KVAppend):
        return append(client, seq, op.key, op.value)
    if isinstance(op, KVCas):
        return cas(client, seq, op.key, op.expected, op.new)
    return delete(client, seq, op.key)


def random_kv_op(rng: random.Random, keys: Sequence[str], value: str,
                 seen: Mapping[str, Sequence[str]]) -> KVOp:
    """One operation of the random mix: 40% get, 25% put, 15% append, 15% cas
    (expecting, 80% of the time, one of the values ``seen`` recently for its key —
    so that some succeed), 5% delete, on a key drawn from ``keys``; ``value`` is what
    a write writes. Draws from ``rng`` only."""
    key = rng.choice(keys)
    r = rng.random()
    if r < 0.4:
        return KVGet(key)
    if r < 0.65:
        return KVPut(key, value)
    if r < 0.8:
        return KVAppend(key, value + ";")
    if r < 0.95:
        recent = seen.get(key, ())
        expected = rng.choice(recent) if recent and rng.random() < 0.8 else None
        return KVCas(key, expected, value)
    return KVDelete(key)


# -- simulated clients ----------------------------------------------------------------
@attrs.define
class _Client:
    client_id: str  # the history's process; ``session`` is the KV's client id
    session: str = ""
    renewals: int = 0
    opening: bool = False
    seq: int = 0
    op: KVOp | None = None
    request: Propose | Read | None = None
    op_started: int = 0
    attempt_deadline: int = 0
    retry_at: int | None = None
    target: str | None = None
    next_op_at: int = 0
    attempts: int = 0
    op_no: int = 0
    queue: list[KVOp] = attrs.field(factory=list)


class KVWorkload:
    """Clients of a simulated KV cluster, recording a history as they go.

    Every ``poll_ms`` of virtual time a scheduled action reads the nodes' new
    ``Deliver`` effects, routes replies to clients by request id and (re)sends what is
    due. A reply is recorded at the poll after it was delivered, which only widens the
    operation's interval (sound for linearizability). ``submit`` queues scripted
    operations; ``random_ops`` makes clients issue random ones until ``stop_at``.
    An operation unanswered for ``op_timeout_ms`` is abandoned as *pending* (it may
    still take effect; the next one gets a new sequence number). A command refused
    for want of a session is pending too, and the client renews its session (see the
    module docstring); ``open_sessions`` opens each session explicitly first.
    """

    def __init__(
        self,
        sim: Simulator,
        *,
        clients: int = 3,
        keys: Sequence[str] = ("a", "b"),
        seed: int = 0,
        recorder: HistoryRecorder | None = None,
        poll_ms: int = 2,
        attempt_timeout_ms: int = 250,
        op_timeout_ms: int = 3_000,
        think_ms: tuple[int, int] = (0, 20),
        nodes: Sequence[str] | None = None,
        open_sessions: bool = False,
    ) -> None:
        self.sim = sim
        self.nodes = list(nodes if nodes is not None else sim.node_ids)
        self.keys = list(keys)
        self.rng = random.Random(f"{seed}/kv-workload")
        self.recorder = recorder if recorder is not None else HistoryRecorder(KVModel())
        self.poll_ms = poll_ms
        self.attempt_timeout_ms = attempt_timeout_ms
        self.op_timeout_ms = op_timeout_ms
        self.think_ms = think_ms
        self.open_sessions = open_sessions
        self.clients = [_Client(f"c{i}", f"c{i}") for i in range(clients)]
        self.random_until: int | None = None
        self.results: dict[str, list[tuple[KVOp, Any]]] = {c.client_id: [] for c in self.clients}
        self.stats = {"ok": 0, "abandoned": 0, "retries": 0, "not_leader": 0, "unknown": 0,
                      "expired": 0}
        self._owner: dict[str, tuple[_Client, int]] = {}
        self._cursor: dict[str, int] = {n: len(sim.delivered[n]) for n in self.nodes}
        self._running_until = -1
        self._ticking = False
        self._last_values: dict[str, list[str]] = {k: [] for k in self.keys}

    # -- scripting ------------------------------------------------------------------------
    def submit(self, client: int, op: KVOp) -> None:
        """Queue ``op`` for client number ``client`` (issued after its earlier ones)."""
        self.clients[client].queue.append(op)

    def random_ops(self, stop_at: int) -> None:
        """Issue random operations on ``keys`` until virtual time ``stop_at``."""
        self.random_until = stop_at

    def run_until(self, t_ms: int) -> None:
        """Drive clients (and the simulator) up to virtual time ``t_ms``."""
        self._running_until = t_ms
        if not self._ticking:
            self._ticking = True
            self.sim.schedule(self.sim.now, self._tick)
        self.sim.run_until(t_ms)

    def history(self) -> History:
        return self.recorder.history()

    @property
    def idle(self) -> bool:
        return all(c.op is None and not c.queue for c in self.clients)

    # -- the loop -------------------------------------------------------------------------
    def _tick(self, sim: Simulator) -> None:
        now = sim.now
        for node in self.nodes:
            out = sim.delivered[node]
            start = self._cursor.get(node, 0)
            self._cursor[node] = len(out)
            for d in out[start:]:
                if d.request_id is not None and d.request_id in self._owner:
                    self._on_reply(node, d, now)
        for c in self.clients:
            if c.op is not None and now - c.op_started >= self.op_timeout_ms:
                self.recorder.info(c.client_id)
                self.stats["abandoned"] += 1
                self._finish(c, now)
            if c.op is None:
                self._maybe_start(c, now)
            elif c.retry_at is not None and now >= c.retry_at:
                self._send(c, now)
            elif c.retry_at is None and now >= c.attempt_deadline:
                self._on_timeout(c, now)
        if now + self.poll_ms <= self._running_until:
            sim.schedule(now + self.poll_ms, self._tick)
        else:
            self._ticking = False

    def _random_op(self, c: _Client) -> KVOp:
        return random_kv_op(self.rng, self.keys, f"{c.session}.{c.seq + 1}",
                            self._last_values)

    def _maybe_start(self, c: _Client, now: int) -> None:
        if now < c.next_op_at:
            return
        if c.queue:
            op = c.queue.pop(0)
        elif self.random_until is not None and now < self.random_until:
            op = self._random_op(c)
        else:
            return
        c.op = op
        c.op_no += 1
        c.attempts = 0
        if not isinstance(op, KVGet):
            c.seq += 1
        c.opening = self.open_sessions and c.seq == 1 and not isinstance(op, KVGet)
        c.request = (open_session(c.session) if c.opening
                     else command_for(op, c.session, max(c.seq, 1)))
        c.op_started = now
        self.recorder.invoke(c.client_id, op, now)
        self._send(c, now)

    def _send(self, c: _Client, now: int) -> None:
        if c.target is None or c.target not in self.nodes:
            c.target = self.rng.choice(self.nodes)
        c.attempts += 1
        if c.attempts > 1:
            self.stats["retries"] += 1
        rid = self.sim.client_request(c.target, c.request)
        self._owner[rid] = (c, c.op_no)
        c.retry_at = None
        c.attempt_deadline = now + self.attempt_timeout_ms

    def _finish(self, c: _Client, now: int) -> None:
        c.op, c.request, c.retry_at = None, None, None
        lo, hi = self.think_ms
        c.next_op_at = now + self.rng.randint(lo, hi)

    def _on_timeout(self, c: _Client, now: int) -> None:
        c.target = self.rng.choice(self.nodes)
        self._send(c, now)

    def _on_reply(self, node: str, d: Deliver, now: int) -> None:
        assert d.request_id is not None
        c, tag = self._owner.pop(d.request_id)
        if c.op is None or tag != c.op_no:
            return  # a reply to an earlier (abandoned) operation
        if d.kind == K_OK:
            result = d.payload
            op = c.op
            if c.opening and result is None:  # the session is open: now the operation
                c.opening, c.seq, c.attempts, c.target = False, 2, 0, node
                c.request = command_for(op, c.session, c.seq)
                self._send(c, now)
                return
            if isinstance(result, KVError) and result.code == E_SESSION_EXPIRED:
                self._renew(c, now)
                return
            if isinstance(result, KVError) or result is STALE:
                raise KVClientError(f"{c.client_id} got {result!r} for {op!r}")
            if isinstance(op, KVCas):
                if type(result) is not bool:
                    raise KVClientError(f"cas answered {result!r}")
                if result:
                    self._remember(op.key, op.new)
            elif isinstance(op, KVGet):
                if result is not None and not isinstance(result, str):
                    raise KVClientError(f"get answered {result!r}")
                if isinstance(result, str):
                    self._remember(op.key, result)
            elif result is not None:
                raise KVClientError(f"{op!r} answered {result!r}")
            elif isinstance(op, KVPut):
                self._remember(op.key, op.value)
            self.recorder.ok(c.client_id, result, now)
            self.results[c.client_id].append((op, result))
            self.stats["ok"] += 1
            c.target = node
            self._finish(c, now)
            return
        if c.retry_at is not None:
            return  # a retry is already scheduled
        if d.kind == K_NOT_LEADER:
            self.stats["not_leader"] += 1
            hint = d.payload if isinstance(d.payload, str) else None
            if hint is not None and hint != node:
                c.target = hint
                c.retry_at = now + 1
            else:
                c.target = self.rng.choice([n for n in self.nodes if n != node] or self.nodes)
                c.retry_at = now + 20
        elif d.kind in (K_UNKNOWN, K_FAILED):
            self.stats["unknown"] += 1
            c.target = None
            c.retry_at = now + 20

    def _renew(self, c: _Client, now: int) -> None:
        """The store refused ``c``'s command (no session): its outcome is unknown, so
        it stays pending, and the client continues under a fresh session id."""
        self.recorder.info(c.client_id)
        self.stats["expired"] += 1
        c.renewals += 1
        c.session, c.seq = f"{c.client_id}~{c.renewals}", 0
        self._finish(c, now)

    def _remember(self, key: str, value: str) -> None:
        seen = self._last_values.setdefault(key, [])
        seen.append(value)
        del seen[:-4]


# -- a whole randomized run -----------------------------------------------------------
@attrs.frozen
class KVRun:
    """What :func:`simulate_kv` produced."""

    seed: int
    history: History
    sim: Simulator
    workload: KVWorkload
    violations: tuple[str, ...]
    #: With ``reconfigure``: the configuration the run asked for last, the steps
    #: acknowledged, and what is wrong with the end state (empty: all as requested).
    membership: Membership | None = None
    membership_steps: tuple[Membership, ...] = ()
    membership_problems: tuple[str, ...] = ()


def _partition(groups: tuple[list[str], list[str]], sim: Simulator) -> None:
    sim.partition(*groups)


def _block(a: str, b: str, sim: Simulator) -> None:
    sim.block(a, b)


def _crash(node: str, sim: Simulator) -> None:
    sim.crash(node)


def _restart(node: str, sim: Simulator) -> None:
    sim.restart(node)


def _heal(sim: Simulator) -> None:
    sim.heal()


def _drop(rate: float, sim: Simulator) -> None:
    sim.set_network(drop_rate=rate)


def _skew(group: Sequence[str], skew_ms: int, sim: Simulator) -> None:
    for node in group:
        sim.set_skew(node, skew_ms)


#: Clock steps the nemesis makes (ms): NTP steps, a VM resumed after an hour or a day.
CLOCK_STEPS_MS = (-3_600_000, -180_000, -90_000, 90_000, 180_000, 3_600_000, 86_400_000)


def schedule_faults(sim: Simulator, nodes: Sequence[str], rng: random.Random, until: int,
                    crashes: bool = True, clock_steps: bool = True) -> None:
    """The nemesis: schedule random faults among ``nodes`` (partitions, one-way link
    cuts, crashes with restarts, heals, loss-rate changes and, with ``clock_steps``,
    clock steps forward or back on a random group — a majority two times in three —
    corrected after 0.1-2 s or left until the end) every 150-600 ms of virtual time up
    to ``until``; then heal everything and set every clock right. Draws from ``rng``
    only."""
    t = 0
    back_at: dict[str, int] = {}
    majority = len(nodes) // 2 + 1
    while True:
        t += rng.randint(150, 600)
        if t >= until:
            break
        r = rng.random()
        if r < 0.3:
            shuffled = list(nodes)
            rng.shuffle(shuffled)
            cut = rng.randint(1, len(nodes) - 1)
            sim.schedule(t, partial(_partition, (shuffled[:cut], shuffled[cut:])))
        elif r < 0.45:
            a, b = rng.sample(list(nodes), 2)
            sim.schedule(t, partial(_block, a, b))
        elif r < 0.65 and crashes:
            victim = rng.choice(list(nodes))
            if back_at.get(victim, -1) < t:
                back_at[victim] = t + rng.randint(50, 500)
                sim.schedule(t, partial(_crash, victim))
                sim.schedule(back_at[victim], partial(_restart, victim))
        elif r < 0.8:
            sim.schedule(t, _heal)
        elif r < 0.9 and clock_steps:
            size = rng.randint(majority, len(nodes)) if rng.random() < 2 / 3 else rng.randint(
                1, len(nodes))
            group = tuple(rng.sample(list(nodes), size))
            sim.schedule(t, partial(_skew, group, rng.choice(CLOCK_STEPS_MS)))
            if rng.random() < 0.7:
                sim.schedule(t + rng.randint(100, 2_000), partial(_skew, group, 0))
        else:
            sim.schedule(t, partial(_drop, rng.choice([0.0, 0.02, 0.1, 0.3])))
    sim.schedule(until, _heal)
    sim.schedule(until, partial(_drop, 0.0))
    if clock_steps:
        sim.schedule(until, partial(_skew, tuple(nodes), 0))


def simulate_kv(
    seed: int,
    *,
    nodes: int = 3,
    clients: int = 3,
    keys: Sequence[str] = ("a", "b"),
    duration_ms: int = 3_000,
    settle_ms: int = 2_000,
    faults: bool = True,
    crashes: bool = True,
    clock_steps: bool = True,
    config: RaftConfig | None = None,
    network: NetworkConfig | None = None,
    monitor_every_ms: int = 25,
    factory: Callable[[RaftConfig], NodeFactory] = kv_node_factory,
    reconfigure: bool = False,
    open_sessions: bool = False,
) -> KVRun:
    """One randomized KV run: ``clients`` issue random operations for ``duration_ms``
    while (with ``faults``) a nemesis partitions, blocks links, crashes and restarts
    nodes (``crashes``), steps clocks (``clock_steps``) and changes the loss rate (see
    :func:`schedule_faults`); then the network heals and the run continues for
    ``settle_ms`` so outstanding operations can finish. Safety invariants are checked
    every ``monitor_every_ms`` by a :class:`RaftMonitor`. A pure function of its
    arguments: the same seed gives the same history.

    With ``reconfigure`` two spare servers run too (not voters at first) and a
    :class:`~vsm_phoenix.verify.reconfigure.MembershipDriver` changes the membership
    during the run (:func:`~vsm_phoenix.verify.reconfigure.default_plan`: each spare is
    added as a learner, promoted, and the leader of the moment removed), under the same
    nemesis, which then strikes all servers; the run goes on after ``settle_ms`` (up
    to 5 s more) until the last step is acknowledged. ``KVRun.membership_problems``
    says whether the cluster ended in the configuration requested last.

    ``open_sessions`` is :class:`KVWorkload`'s (each session opened explicitly).
    ``factory`` makes the nodes: ``partial(kv_node_factory, kv=KVConfig(...))`` runs a
    store with other session bounds."""
    voters: list[str] = [f"n{i + 1}" for i in range(nodes)]
    spares: list[str] = [f"n{nodes + i + 1}" for i in range(2)] if reconfigure else []
    ids = voters + spares
    cfg = config or RaftConfig(peers=tuple(voters), election_timeout_ms=150,
                               heartbeat_ms=30, snapshot_threshold=64)
    net = network or NetworkConfig(min_latency_ms=1, max_latency_ms=10, drop_rate=0.02,
                                   duplicate_rate=0.05, reorder_rate=0.05,
                                   reorder_extra_ms=60)
    sim = Simulator(factory(cfg), ids, seed=seed, network=net)
    rng = random.Random(f"{seed}/nemesis")
    if faults:
        schedule_faults(sim, ids, rng, duration_ms, crashes, clock_steps)
    monitor = RaftMonitor()
    end = duration_ms + settle_ms
    watch_until = end + (5_500 if reconfigure else 0)

    def watch(s: Simulator) -> None:
        live = [n for n in (s.node(i) for i in ids) if isinstance(n, RaftNode)]
        monitor.observe(live)
        if s.now + monitor_every_ms <= watch_until:
            s.schedule(s.now + monitor_every_ms, watch)

    sim.schedule(0, watch)
    workload = KVWorkload(sim, clients=clients, keys=keys, seed=seed,
                          op_timeout_ms=max(1_000, settle_ms // 2),
                          open_sessions=open_sessions)
    workload.random_ops(duration_ms)
    if not reconfigure:
        workload.run_until(end)
        return KVRun(seed, workload.history(), sim, workload, tuple(monitor.violations))
    driver = MembershipDriver(sim, cfg.bootstrap, default_plan(spares), seed=seed)
    workload.run_until(end)
    while not driver.finished and sim.now < end + 5_000:
        workload.run_until(sim.now + 250)
    workload.run_until(sim.now + 500)  # followers learn the last commit index
    monitor.observe([n for n in (sim.node(i) for i in ids) if isinstance(n, RaftNode)])
    return KVRun(seed, workload.history(), sim, workload, tuple(monitor.violations),
                 driver.requested, tuple(driver.done), tuple(driver.check()))
