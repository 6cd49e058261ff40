"""Delta-state anti-entropy: keep named CRDT replicas equal across peers.

Theory of operation
-------------------
A :class:`SyncNode` hosts named replicas (``name -> CRDT``) and runs the
delta-interval anti-entropy algorithm of Almeida, Shoker and Baquero (*Delta state
replicated data types*, 2018, Algorithm 2), per peer:

* state ``X`` (the replicas), a durable sequence counter ``c``, a volatile *delta
  buffer* ``D: seq -> (deltas by name, origin)`` and a volatile ack map
  ``A: peer -> seq`` ("peer has every buffered delta below seq");
* a local mutation (``ClientRequest(Mutate(...))``) joins its delta into ``X`` and
  buffers it as ``D[c]``, ``c += 1``;
* every ``interval_ms`` (default 5 s) the node sends each peer ``j`` with
  ``A[j] < c`` one ``sync.delta`` message: the join of ``D[A[j]] .. D[c-1]`` — or the
  **full state** ``X`` when ``j`` is new (no ``A[j]``) or too far behind (the buffer
  was trimmed past ``A[j]``). Unacknowledged intervals are simply sent again next
  time: retransmission until acknowledged;
* on ``sync.delta(d, n)`` from ``i``: if ``d`` is not already below ``X`` it is joined
  and buffered (so it is forwarded to peers ``i`` cannot reach), then
  ``sync.ack(n)`` goes back; on ``sync.ack(n)`` from ``j``: ``A[j] = max(A[j], n)``;
* buffer entries below ``min(A)`` are dropped, and the buffer never holds more than
  ``max_buffer`` intervals (older ones are dropped; the peers that needed them get
  full state instead).

Deltas are not sent back to the peer they came from (the "back-propagation"
optimisation of Enes et al. 2019). Because joins are commutative, associative and
idempotent, lost, duplicated and reordered messages are harmless: **once every
message between two connected replicas eventually gets through, they converge**.

Durability (crash-restart): every change of ``X`` is written ahead as a small log
record ``sync/log/<n>`` in the same step, *before* the ack that acknowledges it, and
``sync/counter`` is kept current; at each shipping interval the log is folded into
``sync/snapshot``. ``Restart`` rebuilds ``X`` from the snapshot plus the log; ``D``
and ``A`` start empty, so the first round after a restart ships full state.

Invariants
----------
* ``X`` only grows: every handler joins, none overwrites (join-only).
* A hostile or malformed ``sync.*`` message raises ``RemoteProtocolError`` and leaves
  every replica, buffer and counter unchanged (all deltas are decoded and checked
  against the local replicas' types before any join).
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import attrs

from vsm_phoenix.crdt import CRDT, decode
from vsm_phoenix.errors import DecodeError, VsmPhoenixError
from vsm_phoenix.protocol.envelope import Envelope, decode_cbor, encode_cbor
from vsm_phoenix.protocol.kit import Messenger, decode_payload
from vsm_phoenix.protocol.node import (
    ClientRequest,
    Deliver,
    Effect,
    Event,
    LocalProtocolError,
    Persist,
    Receive,
    RemoteProtocolError,
    Restart,
    SetTimer,
    Start,
    TimerFired,
)

__all__ = ["Merge", "Mutate", "Read", "SyncConfig", "SyncNode"]

T_SHIP = "sync.ship"
MAX_REPLICAS = 1024


@attrs.frozen
class SyncConfig:
    """``interval_ms``: shipping period. ``max_buffer``: delta intervals kept.
    ``full_state_only``: always ship ``X`` (the baseline the benchmark compares).
    ``adopt_unknown``: accept replicas this node does not host yet (created from
    the peer's state); otherwise deltas for unknown names are rejected."""

    interval_ms: int = 5000
    max_buffer: int = 256
    peers: tuple[str, ...] = ()
    full_state_only: bool = False
    adopt_unknown: bool = True

    def __attrs_post_init__(self) -> None:
        if self.interval_ms <= 0 or self.max_buffer <= 0:
            raise LocalProtocolError("interval_ms and max_buffer must be positive")


# -- application commands --------------------------------------------------------------
@attrs.frozen
class Mutate:
    """Apply ``op`` to replica ``name``: it must mutate the replica in place and return
    the delta (any CRDT mutator does), e.g. ``Mutate("s", lambda s: s.add("a", 1))``."""

    name: str
    op: Callable[[Any], CRDT]


@attrs.frozen
class Merge:
    """Join an application-supplied state or delta into replica ``name``."""

    name: str
    delta: CRDT


@attrs.frozen
class Read:
    """Answer with a copy of replica ``name``."""

    name: str



def _count(value: object) -> int:
    """A persisted counter: a non-negative int, nothing else (not a float, not a str)."""
    if type(value) is not int or value < 0:
        raise DecodeError("a persisted counter must be a non-negative integer")
    return value


def _log_index(key: str) -> int:
    suffix = key.rsplit("/", 1)[1]
    if not (suffix.isascii() and suffix.isdigit()) or len(suffix) > 20:
        raise DecodeError("a log key must end in a decimal index")
    return int(suffix)


def _replica_name(name: object) -> str:
    if not isinstance(name, str):
        raise DecodeError("a replica name must be a string")
    return name

class SyncNode:
    """Hosts named CRDT replicas and keeps them in sync with its peers (sans-IO)."""

    def __init__(
        self,
        node_id: str,
        rng: random.Random,
        config: SyncConfig | None = None,
        *,
        replicas: Mapping[str, CRDT] | None = None,
        messenger: Messenger | None = None,
    ) -> None:
        self._id = node_id
        self.rng = rng
        self.config = config or SyncConfig()
        self.msg = messenger or Messenger(node_id, rng)
        self.replicas: dict[str, CRDT] = {n: r.copy() for n, r in (replicas or {}).items()}
        self.counter = 0
        self.buffer: dict[int, tuple[dict[str, CRDT], str]] = {}
        self.acked: dict[str, int] = {}
        self.peers: list[str] = sorted(p for p in self.config.peers if p != node_id)
        self.started = False
        self._log_seq = 0
        self._log_keys: list[str] = []
        self.bytes_sent = 0
        self.full_sends = 0
        self.delta_sends = 0

    @property
    def node_id(self) -> str:
        return self._id

    def set_peers(self, peers: Iterable[str]) -> None:
        """Replace the peer set (e.g. with SWIM's alive members). A peer that leaves the
        set forgets its acks, so it gets full state if it comes back."""
        new = sorted({p for p in peers if p != self._id})
        for gone in set(self.acked) - set(new):
            del self.acked[gone]
        self.peers = new

    def pending_peers(self) -> list[str]:
        """Peers that have not acknowledged everything this node has (sorted)."""
        return [p for p in self.peers if self.acked.get(p, -1) < self.counter]

    def value(self, name: str) -> Any:
        return self.replicas[name].value

    # -- the state machine -------------------------------------------------------------
    def step(self, event: Event) -> list[Effect]:
        if isinstance(event, Start | Restart):
            if self.started:
                raise LocalProtocolError("node already started")
            if isinstance(event, Restart):
                self._recover(event.persisted)  # DecodeError on corrupt storage
            self.started = True
            jitter = self.rng.randint(1, self.config.interval_ms)
            return [SetTimer(T_SHIP, jitter)]
        if not self.started:
            raise LocalProtocolError(f"{type(event).__name__} before Start/Restart")
        if isinstance(event, Receive):
            return self.receive(event.now, event.envelope)
        if isinstance(event, TimerFired):
            return self.timer(event.now, event.name)
        if isinstance(event, ClientRequest):
            return self.client(event)
        raise LocalProtocolError(f"unknown event {event!r}")  # pragma: no cover

    def timer(self, now: int, name: str) -> list[Effect]:
        if name != T_SHIP:
            return []
        out: list[Effect] = [SetTimer(T_SHIP, self.config.interval_ms)]
        out += self._checkpoint()
        out += self._ship(now)
        self._gc()
        return out

    # -- local updates -----------------------------------------------------------------
    def client(self, req: ClientRequest) -> list[Effect]:
        cmd = req.payload
        if isinstance(cmd, Read):
            r = self.replicas.get(cmd.name)
            return [Deliver("sync.read", None if r is None else r.copy(), req.request_id)]
        if isinstance(cmd, Mutate):
            if cmd.name not in self.replicas:
                raise LocalProtocolError(f"no replica named {cmd.name!r}")
            replica = self.replicas[cmd.name]
            delta = cmd.op(replica)
            if type(delta) is not type(replica):
                raise LocalProtocolError("a Mutate op must return a delta of the replica's type")
            out = self._record({cmd.name: delta}, origin=self._id)
            return [*out, Deliver("sync.mutated", cmd.name, req.request_id)]
        if isinstance(cmd, Merge):
            current = self.replicas.get(cmd.name)
            if current is not None and type(current) is not type(cmd.delta):
                raise LocalProtocolError(f"replica {cmd.name!r} is a {type(current).__name__}")
            if current is None:
                self.replicas[cmd.name] = type(cmd.delta)()
            self.replicas[cmd.name] |= cmd.delta
            out = self._record({cmd.name: cmd.delta}, origin=self._id)
            return [*out, Deliver("sync.merged", cmd.name, req.request_id)]
        raise LocalProtocolError(f"unknown sync command {cmd!r}")

    def _record(self, deltas: dict[str, CRDT], origin: str) -> list[Effect]:
        """Buffer ``deltas`` (already joined into X) and write them ahead."""
        self.buffer[self.counter] = (deltas, origin)
        self.counter += 1
        if len(self.buffer) > self.config.max_buffer:
            del self.buffer[min(self.buffer)]
        self._log_seq += 1
        key = f"sync/log/{self._log_seq:012d}"
        self._log_keys.append(key)
        record = encode_cbor({n: d.to_bytes() for n, d in sorted(deltas.items())})
        return [Persist(key, record), Persist("sync/counter", encode_cbor(self.counter))]

    # -- shipping ----------------------------------------------------------------------
    def _interval(self, peer: str) -> tuple[dict[str, CRDT], bool] | None:
        """What ``peer`` is missing: (deltas by name, is_full_state), or None."""
        a = self.acked.get(peer)
        if a is not None and a >= self.counter:
            return None
        if self.config.full_state_only or a is None or not self.buffer or min(self.buffer) > a:
            return dict(self.replicas), True
        joined: dict[str, CRDT] = {}
        for seq in range(a, self.counter):
            entry = self.buffer.get(seq)
            if entry is None or entry[1] == peer:
                continue  # never echo a delta to the peer it came from
            for name, d in entry[0].items():
                if name in joined:
                    joined[name] = joined[name] | d
                else:
                    joined[name] = d
        if not joined:
            self.acked[peer] = self.counter  # everything it lacks came from it
            return None
        return joined, False

    def _ship(self, now: int) -> list[Effect]:
        out: list[Effect] = []
        for peer in self.peers:
            todo = self._interval(peer)
            if todo is None:
                continue
            deltas, full = todo
            body = {
                "seq": self.counter,
                "full": full,
                "d": {n: d.to_bytes() for n, d in sorted(deltas.items())},
            }
            send = self.msg.send(now, peer, "sync.delta", body)
            if full:
                self.full_sends += 1
            else:
                self.delta_sends += 1
            out.append(send)
        return out

    def _gc(self) -> None:
        if not self.buffer:
            return
        floor = min((self.acked.get(p, 0) for p in self.peers), default=self.counter)
        for seq in [s for s in self.buffer if s < floor]:
            del self.buffer[seq]

    def _checkpoint(self) -> list[Effect]:
        if not self._log_keys:
            return []
        snap = encode_cbor({
            "counter": self.counter,
            "replicas": {n: r.to_bytes() for n, r in sorted(self.replicas.items())},
        })
        out: list[Effect] = [Persist("sync/snapshot", snap)]
        out += [Persist(k, None) for k in self._log_keys]
        self._log_keys = []
        return out

    def _recover(self, persisted: Mapping[str, bytes]) -> None:
        """Rebuild X and c from snapshot + write-ahead log (join-only, order-free).
        On corrupt storage raises ``DecodeError`` and leaves the node as constructed."""
        saved = ({n: r.copy() for n, r in self.replicas.items()}, self.counter,
                 self._log_seq, list(self._log_keys))
        try:
            if "sync/snapshot" in persisted:
                snap = decode_cbor(persisted["sync/snapshot"])
                for name, raw in snap["replicas"].items():
                    self._adopt(_replica_name(name), decode(raw))
                self.counter = max(self.counter, _count(snap["counter"]))
            for key in sorted(k for k in persisted if k.startswith("sync/log/")):
                for name, raw in decode_cbor(persisted[key]).items():
                    self._adopt(_replica_name(name), decode(raw))
                self._log_keys.append(key)
                self._log_seq = max(self._log_seq, _log_index(key))
            if "sync/counter" in persisted:
                self.counter = max(self.counter, _count(decode_cbor(persisted["sync/counter"])))
        except (DecodeError, KeyError, TypeError, ValueError, AttributeError) as exc:
            self.replicas, self.counter, self._log_seq, self._log_keys = saved
            raise DecodeError(f"corrupt persisted sync state: {exc}") from None

    def _adopt(self, name: str, state: CRDT) -> None:
        if name in self.replicas:
            self.replicas[name] |= state
        else:
            self.replicas[name] = state

    # -- receiving ---------------------------------------------------------------------
    def receive(self, now: int, env: Envelope) -> list[Effect]:
        if env.type == "sync.ack":
            body = decode_payload(env)
            seq = body.get("seq")
            if type(seq) is not int or seq < 0 or set(body) != {"seq"}:
                raise RemoteProtocolError("sync.ack needs a non-negative seq")
            self.msg.accept(now, env)
            if env.sender in self.peers:
                self.acked[env.sender] = max(self.acked.get(env.sender, 0), seq)
            return []
        if env.type != "sync.delta":
            raise RemoteProtocolError(f"sync node got {env.type!r}")
        body = decode_payload(env)
        seq, full, raw = body.get("seq"), body.get("full"), body.get("d")
        if type(seq) is not int or seq < 0 or type(full) is not bool or not isinstance(raw, dict):
            raise RemoteProtocolError("sync.delta needs seq, full and d")
        incoming = self._validate(raw)
        self.msg.accept(now, env)
        # -- validated: from here on we mutate --
        fresh: dict[str, CRDT] = {}
        for name, d in incoming.items():
            local = self.replicas.get(name)
            if local is None:
                self.replicas[name] = d.copy()
                fresh[name] = d
            elif not d <= local:
                local |= d
                fresh[name] = d
        out: list[Effect] = []
        if fresh:
            out += self._record(fresh, origin=env.sender)
            out.append(Deliver("sync.updated", sorted(fresh)))
        out.append(self.msg.send(now, env.sender, "sync.ack", {"seq": seq},
                                 correlation_id=env.message_id))
        return out

    def _validate(self, raw: dict[Any, Any]) -> dict[str, CRDT]:
        if len(raw) > MAX_REPLICAS:
            raise RemoteProtocolError("too many replicas in one message")
        out: dict[str, CRDT] = {}
        for name in sorted(raw, key=str):
            blob = raw[name]
            if not isinstance(name, str) or not name or not isinstance(blob, bytes):
                raise RemoteProtocolError("d must map replica names to CRDT bytes")
            try:
                d = decode(blob)
            except DecodeError as exc:
                raise RemoteProtocolError(f"replica {name!r}: {exc}") from None
            local = self.replicas.get(name)
            if local is None:
                if not self.config.adopt_unknown:
                    raise RemoteProtocolError(f"unknown replica {name!r}")
                if len(self.replicas) + len(out) >= MAX_REPLICAS:
                    raise RemoteProtocolError("too many replicas")
            else:
                if type(d) is not type(local):
                    raise RemoteProtocolError(
                        f"replica {name!r} is {type(local).__name__}, got {type(d).__name__}"
                    )
                try:
                    _ = d <= local  # runs the type's compatibility check, mutates nothing
                except (VsmPhoenixError, TypeError, ValueError) as exc:
                    raise RemoteProtocolError(f"replica {name!r}: {exc}") from None
            out[name] = d
        return out
