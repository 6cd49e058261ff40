"""A linearizable key-value store replicated with Raft, and clients that drive it.

Theory of operation
-------------------
:class:`KVStateMachine` is the :class:`~vsm_phoenix.protocol.raft.StateMachine` a
:class:`~vsm_phoenix.protocol.raft.RaftNode` replicates: a map from ``str`` keys to
``str`` values with ``put``, ``append``, compare-and-set (``cas``; expected ``None``
means "absent") and ``delete`` as log commands, and ``get`` as a ReadIndex query
(:class:`~vsm_phoenix.protocol.raft.Read`), so reads never grow the log.

**Exactly once.** Every command carries its client id and a per-client sequence
number; a client has at most one command outstanding and numbers them 1, 2, 3, ...
The state machine keeps, per client, the last sequence number it applied and that
command's result (the *session*). A command whose number is not above the session's
is not applied again: the same number returns the remembered result, an older one
returns :data:`STALE`. So a client may retry a command on any node, any number of
times (after a timeout, a lost reply or a leader change) and it takes effect once.
Sessions are part of the snapshot, so the guarantee survives compaction and restarts.

Commands are canonical CBOR maps ``{"c": client, "s": seq, "o": op, "k": key, ...}``
built by :func:`put`, :func:`append`, :func:`cas` and :func:`delete`; :func:`get`
builds the read. A malformed command or query is not an error for the replicated log
(whatever a leader committed must apply everywhere alike): it yields a
:class:`KVError` result and changes nothing.

Clients: :class:`KVWorkload` drives simulated clients inside a
:class:`~vsm_phoenix.protocol.sim.Simulator` — each sends its operation to the node it
believes leads, follows ``raft.not-leader`` hints, retries on timeouts and on
``raft.unknown`` with the same sequence number, and records every operation (call and
return in virtual time) into a :class:`~vsm_phoenix.verify.HistoryRecorder` for the
linearizability checker. :func:`simulate_kv` is a whole randomized run: a cluster, a
workload, and a nemesis that partitions, crashes, restarts, drops and duplicates.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from functools import partial
from typing import Any, Final

import attrs

from vsm_phoenix.errors import DecodeError, VsmPhoenixError
from vsm_phoenix.protocol.envelope import decode_cbor, encode_cbor
from vsm_phoenix.protocol.node import Deliver, LocalProtocolError, NodeFactory
from vsm_phoenix.protocol.raft import (
    K_FAILED,
    K_NOT_LEADER,
    K_OK,
    K_UNKNOWN,
    Propose,
    RaftConfig,
    RaftMonitor,
    RaftNode,
    Read,
)
from vsm_phoenix.protocol.sim import NetworkConfig, Simulator
from vsm_phoenix.verify.history import History, HistoryRecorder
from vsm_phoenix.verify.models import KVAppend, KVCas, KVDelete, KVGet, KVModel, KVPut

__all__ = [
    "STALE",
    "KVClientError",
    "KVError",
    "KVRun",
    "KVStateMachine",
    "KVWorkload",
    "append",
    "cas",
    "command_for",
    "delete",
    "get",
    "kv_node_factory",
    "put",
    "simulate_kv",
]

SNAPSHOT_VERSION: Final = 1
MAX_KEY: Final = 1024
MAX_VALUE: Final = 1 << 20
_OPS: Final[dict[str, frozenset[str]]] = {
    "put": frozenset({"c", "s", "o", "k", "v"}),
    "append": frozenset({"c", "s", "o", "k", "v"}),
    "cas": frozenset({"c", "s", "o", "k", "e", "v"}),
    "delete": frozenset({"c", "s", "o", "k"}),
}


@attrs.frozen
class KVError:
    """The result of a malformed command or query (nothing was changed)."""

    reason: str


@attrs.frozen
class _Stale:
    def __repr__(self) -> str:
        return "STALE"


#: The result of a command older than its client's latest applied one.
STALE: Final = _Stale()


class KVClientError(VsmPhoenixError):
    """A client got an answer that no correct cluster gives (a bug, not a fault)."""


# -- commands -------------------------------------------------------------------------
def _check_client(client: str, seq: int) -> None:
    if not isinstance(client, str) or not client:
        raise LocalProtocolError("client id must be a non-empty string")
    if type(seq) is not int or seq < 1:
        raise LocalProtocolError("sequence numbers start at 1")


def _check_str(value: object, what: str, limit: int) -> None:
    if not isinstance(value, str) or len(value) > limit:
        raise LocalProtocolError(f"{what} must be a string of at most {limit} characters")


def _command(client: str, seq: int, op: str, key: str, **fields: Any) -> Propose:
    _check_client(client, seq)
    _check_str(key, "key", MAX_KEY)
    return Propose(encode_cbor({"c": client, "s": seq, "o": op, "k": key, **fields}))


def put(client: str, seq: int, key: str, value: str) -> Propose:
    """Set ``key`` to ``value``; result ``None``."""
    _check_str(value, "value", MAX_VALUE)
    return _command(client, seq, "put", key, v=value)


def append(client: str, seq: int, key: str, value: str) -> Propose:
    """Append ``value`` to ``key`` (absent counts as ``""``); result ``None``."""
    _check_str(value, "value", MAX_VALUE)
    return _command(client, seq, "append", key, v=value)


def cas(client: str, seq: int, key: str, expected: str | None, new: str) -> Propose:
    """Set ``key`` to ``new`` iff it holds ``expected`` (``None``: absent); result bool."""
    if expected is not None:
        _check_str(expected, "expected", MAX_VALUE)
    _check_str(new, "new", MAX_VALUE)
    return _command(client, seq, "cas", key, e=expected, v=new)


def delete(client: str, seq: int, key: str) -> Propose:
    """Remove ``key``; result ``None``."""
    return _command(client, seq, "delete", key)


def get(key: str) -> Read:
    """Read ``key`` linearizably (ReadIndex); result: the value or ``None``."""
    _check_str(key, "key", MAX_KEY)
    return Read(encode_cbor({"o": "get", "k": key}))


def command_for(op: KVGet | KVPut | KVAppend | KVCas | KVDelete, client: str,
                seq: int) -> Propose | Read:
    """The request for a :mod:`vsm_phoenix.verify` KV model input."""
    if isinstance(op, KVGet):
        return get(op.key)
    if isinstance(op, KVPut):
        return put(client, seq, op.key, op.value)
    if isinstance(op, KVAppend):
        return append(client, seq, op.key, op.value)
    if isinstance(op, KVCas):
        return cas(client, seq, op.key, op.expected, op.new)
    return delete(client, seq, op.key)


# -- the state machine ----------------------------------------------------------------
def _decode_command(data: bytes) -> dict[str, Any]:
    obj = decode_cbor(data)
    if not isinstance(obj, dict):
        raise DecodeError("command must be a map")
    fields = _OPS.get(obj.get("o"))  # type: ignore[arg-type]
    if fields is None or set(obj) != fields:
        raise DecodeError("unknown operation or wrong fields")
    c, s, k = obj["c"], obj["s"], obj["k"]
    if not isinstance(c, str) or not c or type(s) is not int or s < 1 or not isinstance(k, str):
        raise DecodeError("bad client, sequence number or key")
    if "v" in obj and not isinstance(obj["v"], str):
        raise DecodeError("value must be a string")
    if "e" in obj and obj["e"] is not None and not isinstance(obj["e"], str):
        raise DecodeError("expected must be a string or null")
    return obj


class KVStateMachine:
    """The replicated map with client sessions (see the module docstring).

    Invariant: ``sessions[c] == (s, r)`` iff the highest-numbered command of client
    ``c`` applied so far is ``s`` and it returned ``r``; every command is applied at
    most once.
    """

    def __init__(self) -> None:
        self.data: dict[str, str] = {}
        self.sessions: dict[str, tuple[int, bool | None]] = {}
        self.applied_commands = 0  # commands that changed the session table

    def apply(self, command: bytes) -> Any:
        try:
            cmd = _decode_command(command)
        except DecodeError as exc:
            return KVError(str(exc))
        client, seq = cmd["c"], cmd["s"]
        last = self.sessions.get(client)
        if last is not None and seq <= last[0]:
            return last[1] if seq == last[0] else STALE
        op, key = cmd["o"], cmd["k"]
        result: bool | None = None
        if op == "put":
            self.data[key] = cmd["v"]
        elif op == "append":
            self.data[key] = self.data.get(key, "") + cmd["v"]
        elif op == "cas":
            result = self.data.get(key) == cmd["e"]
            if result:
                self.data[key] = cmd["v"]
        else:
            self.data.pop(key, None)
        self.sessions[client] = (seq, result)
        self.applied_commands += 1
        return result

    def query(self, query: bytes) -> Any:
        try:
            q = decode_cbor(query)
        except DecodeError as exc:
            return KVError(str(exc))
        if not isinstance(q, dict) or set(q) != {"o", "k"} or q["o"] != "get" or not isinstance(
            q["k"], str
        ):
            return KVError("query must be {o: get, k: key}")
        return self.data.get(q["k"])

    def snapshot(self) -> bytes:
        return encode_cbor({
            "v": SNAPSHOT_VERSION,
            "d": self.data,
            "s": {c: [s, r] for c, (s, r) in self.sessions.items()},
            "n": self.applied_commands,
        })

    def _parse(self, data: bytes) -> tuple[dict[str, str], dict[str, tuple[int, bool | None]],
                                            int]:
        obj = decode_cbor(data)
        if not isinstance(obj, dict) or set(obj) != {"v", "d", "s", "n"}:
            raise DecodeError("KV snapshot must be {v, d, s, n}")
        if obj["v"] != SNAPSHOT_VERSION:
            raise DecodeError(f"unsupported KV snapshot version {obj['v']!r}")
        d, s, n = obj["d"], obj["s"], obj["n"]
        if not isinstance(d, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in d.items()
        ):
            raise DecodeError("KV snapshot data must map strings to strings")
        sessions: dict[str, tuple[int, bool | None]] = {}
        if not isinstance(s, dict):
            raise DecodeError("KV snapshot sessions must be a map")
        for c, entry in s.items():
            if (not isinstance(c, str) or not isinstance(entry, list) or len(entry) != 2
                    or type(entry[0]) is not int or entry[0] < 1
                    or not (entry[1] is None or type(entry[1]) is bool)):
                raise DecodeError("KV snapshot session must be client: [seq, result]")
            sessions[c] = (entry[0], entry[1])
        if type(n) is not int or n < 0:
            raise DecodeError("KV snapshot count must be a non-negative integer")
        return dict(d), sessions, n

    def check_snapshot(self, data: bytes) -> None:
        self._parse(data)

    def restore(self, data: bytes) -> None:
        self.data, self.sessions, self.applied_commands = self._parse(data)


def kv_node_factory(config: RaftConfig) -> NodeFactory:
    """A :class:`~vsm_phoenix.protocol.node.NodeFactory` of KV Raft nodes."""

    def factory(node_id: str, rng: random.Random) -> RaftNode:
        return RaftNode(node_id, rng, config, KVStateMachine())

    return factory


# -- simulated clients ----------------------------------------------------------------
KVOp = KVGet | KVPut | KVAppend | KVCas | KVDelete


@attrs.define
class _Client:
    client_id: str
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
    still take effect; the next one gets a new sequence number).
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
        self.clients = [_Client(f"c{i}") for i in range(clients)]
        self.random_until: int | None = None
        self.results: dict[str, list[tuple[KVOp, Any]]] = {c.client_id: [] for c in self.clients}
        self.stats = {"ok": 0, "abandoned": 0, "retries": 0, "not_leader": 0, "unknown": 0}
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
        key = self.rng.choice(self.keys)
        value = f"{c.client_id}.{c.seq + 1}"
        r = self.rng.random()
        if r < 0.4:
            return KVGet(key)
        if r < 0.65:
            return KVPut(key, value)
        if r < 0.8:
            return KVAppend(key, value + ";")
        if r < 0.95:
            seen = self._last_values[key]
            expected = self.rng.choice(seen) if seen and self.rng.random() < 0.8 else None
            return KVCas(key, expected, value)
        return KVDelete(key)

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
        c.request = command_for(op, c.client_id, max(c.seq, 1))
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


def _nemesis(sim: Simulator, nodes: Sequence[str], rng: random.Random, until: int,
             crashes: bool) -> None:
    """Schedule random faults up to ``until``, then heal everything."""
    t = 0
    back_at: dict[str, int] = {}
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
        else:
            sim.schedule(t, partial(_drop, rng.choice([0.0, 0.02, 0.1, 0.3])))
    sim.schedule(until, _heal)
    sim.schedule(until, partial(_drop, 0.0))


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
    config: RaftConfig | None = None,
    network: NetworkConfig | None = None,
    monitor_every_ms: int = 25,
    factory: Callable[[RaftConfig], NodeFactory] = kv_node_factory,
) -> KVRun:
    """One randomized KV run: ``clients`` issue random operations for ``duration_ms``
    while (with ``faults``) a nemesis partitions, blocks links, crashes and restarts
    nodes and changes the loss rate; then the network heals and the run continues for
    ``settle_ms`` so outstanding operations can finish. Safety invariants are checked
    every ``monitor_every_ms`` by a :class:`RaftMonitor`. A pure function of its
    arguments: the same seed gives the same history."""
    ids: list[str] = [f"n{i + 1}" for i in range(nodes)]
    cfg = config or RaftConfig(peers=tuple(ids), election_timeout_ms=150, heartbeat_ms=30,
                               snapshot_threshold=64)
    net = network or NetworkConfig(min_latency_ms=1, max_latency_ms=10, drop_rate=0.02,
                                   duplicate_rate=0.05, reorder_rate=0.05,
                                   reorder_extra_ms=60)
    sim = Simulator(factory(cfg), ids, seed=seed, network=net)
    rng = random.Random(f"{seed}/nemesis")
    if faults:
        _nemesis(sim, ids, rng, duration_ms, crashes)
    monitor = RaftMonitor()
    end = duration_ms + settle_ms

    def watch(s: Simulator) -> None:
        live = [n for n in (s.node(i) for i in ids) if isinstance(n, RaftNode)]
        monitor.observe(live)
        if s.now + monitor_every_ms <= end:
            s.schedule(s.now + monitor_every_ms, watch)

    sim.schedule(0, watch)
    workload = KVWorkload(sim, clients=clients, keys=keys, seed=seed,
                          op_timeout_ms=max(1_000, settle_ms // 2))
    workload.random_ops(duration_ms)
    workload.run_until(end)
    return KVRun(seed, workload.history(), sim, workload, tuple(monitor.violations))
