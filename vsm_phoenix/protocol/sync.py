"""Delta-state anti-entropy: keep named CRDT replicas equal across peers.

Theory of operation
-------------------
A :class:`SyncNode` hosts named replicas ``X`` (``name -> CRDT``) and keeps them equal
with its peers by shipping *deltas* (Almeida, Shoker and Baquero, *Delta state
replicated data types*, 2018), disseminated so that one update costs ``O(n)``
messages in the cluster — not the ``(n-1)^2`` of "forward what you received":

* **Origins and tags.** Every change a node makes itself (``Mutate``, ``Merge``, and
  at a first boot its constructor state) is an *own entry* tagged ``(origin, s)``:
  ``origin`` names this node's history (``"<node id>.<8 hex>"``, drawn afresh
  whenever the node boots without persisted state) and ``s = 1, 2, ...`` counts its
  own entries (``counter``, persisted write-ahead). Each node keeps a *have-vector*
  ``V: origin -> s`` — it holds every entry of ``origin`` up to ``V[origin]`` (a
  contiguous prefix; out-of-order entries are joined but not yet claimed) — and, per
  peer, what it knows of that peer's vector (from the peer's acks and digests).
* **Push (own entries only).** Every ``interval_ms`` the node sends each peer the
  join of its own entries the peer is not known to hold (``sync.delta``), again every
  interval until acknowledged (``sync.ack`` carries the receiver's vector entry for
  that origin). If some of those entries were trimmed from the buffer
  (``max_buffer``), it sends its full state ``X`` with ``V``. Received deltas are
  *not* forwarded: in a quiet cluster an update costs ``n - 1`` deltas and ``n - 1``
  acks.
* **Pull (anti-entropy for everything else).** Every interval the node also sends
  one random peer it did not just push to a ``sync.digest`` holding ``V`` (or, beyond
  ``SMALL_VECTOR`` origins, a hash of it: equal hashes end the exchange, as equal
  vectors mean equal states; otherwise the peer answers with its vector). Each side
  then ships the other, from its buffer, the entries of any origin it lacks (or full
  state when they are gone). While ``V`` is small, pushes and acks carry it whole, so
  two peers that just exchanged a push compare there (an ack showing that the acker
  lacks entries the pusher holds is answered with them) and skip the digest. This
  repairs what pushes cannot reach (asymmetric links, an origin that crashed before
  every peer acknowledged, a peer that restarted empty) in ``O(log n)`` rounds, as
  push-pull gossip does.
* **Large states.** A ``sync.delta`` larger than ``part_bytes`` (1 MiB) travels as
  ``sync.part`` messages, each checked by its Merkle inclusion proof before it is
  kept; the receiver reassembles them and then handles the whole as the delta
  (:mod:`vsm_phoenix.protocol.parts`); without this, a state over the envelope's
  16 MiB limit was refused by every peer on every interval and never converged.
  Parts are repeated with the delta until it is acknowledged, and a receiver keeps
  the parts it has, so a lossy link still completes.
* Joins are commutative, associative and idempotent, so lost, duplicated and
  reordered messages are harmless: **once every message between connected replicas
  eventually gets through, they converge**, and a node stops shipping once every peer
  acknowledged its own entries (:meth:`SyncNode.pending_peers` is empty).

A replica id names a history
----------------------------
Dots and counters must never be reused with other contents. Sync's own counters are
safe by construction: a restart with its disk continues ``counter`` (written ahead of
every change), and a restart without it takes a fresh ``origin``, so peers holding the
old history neither ignore the new entries nor mistake stale acks for new ones. An
application's CRDT mutators take a replica id of their own: use
:attr:`SyncNode.replica_id` (the origin) rather than the bare node id, so a node that
restarts without its disk never re-issues a dot others hold.

Durability (crash-restart): every change of ``X`` is written ahead as a small log
record ``sync/log/<n>`` (the fresh deltas and the vector entries they advance) in the
same step, *before* the ack that acknowledges it; ``sync/counter`` and
``sync/origin`` are kept current; at each shipping interval the log is folded into
``sync/snapshot``. ``Restart`` rebuilds ``X`` and ``V`` from the snapshot plus the log;
the buffer and the knowledge of peers start empty.

Invariants
----------
* ``X`` only grows: every handler joins, none overwrites (join-only).
* ``V`` never claims more than ``X`` holds: an entry range is claimed only together
  with the deltas it names, a full state only with its sender's vector.
* A hostile or malformed ``sync.*`` message raises ``RemoteProtocolError`` and leaves
  every replica, buffer, vector and counter unchanged (all deltas are decoded and
  checked against the local replicas' types before any join).
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import attrs

from vsm_phoenix import cbor
from vsm_phoenix.crdt import CRDT, decode
from vsm_phoenix.errors import DecodeError, VsmPhoenixError
from vsm_phoenix.protocol.envelope import Envelope, decode_cbor, encode_cbor
from vsm_phoenix.protocol.kit import Messenger, decode_payload, encode_payload
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
from vsm_phoenix.protocol.parts import MAX_PART_BYTES, MAX_PARTS, Reassembler, split

__all__ = ["Merge", "Mutate", "Read", "SyncConfig", "SyncNode"]

T_SHIP = "sync.ship"
M_PART = "sync.part"
MAX_REPLICAS = 1024
MAX_ORIGINS = 4096  # origins in a vector, peers remembered
MAX_ID = 300  # characters in an origin id
MAX_GAPS = 64  # out-of-order ranges remembered per origin (dropping one only under-claims)
SMALL_VECTOR = 8  # a pull opens with the vector itself up to this many origins, else a hash
_SEQ_LIMIT = 2**63

#: ``origin -> s``: every entry of ``origin`` up to ``s`` is held.
Vector = dict[str, int]
#: ``origin -> (first, last)``: the entries (inclusive) a delta carries.
Tags = dict[str, tuple[int, int]]


@attrs.frozen
class SyncConfig:
    """``interval_ms``: shipping period. ``max_buffer``: entries kept to answer pushes
    and pulls (a peer needing a trimmed one gets full state). ``full_state_only``:
    always ship ``X`` (the baseline the benchmark compares). ``adopt_unknown``: accept
    replicas this node does not host yet (created from the peer's state); otherwise
    deltas for unknown names are rejected. ``pull``: run the digest exchange with one
    random peer per interval (off only to measure what it costs).

    ``part_bytes``: a ``sync.delta`` whose payload is larger goes as ``sync.part``
    messages of at most this many bytes (:mod:`vsm_phoenix.protocol.parts`), so a state
    larger than the envelope's 16 MiB limit still gets through. ``max_message_bytes``:
    the largest payload sent or reassembled (a state that encodes larger is not sent:
    :attr:`SyncNode.oversized` counts it and ``Deliver("sync.oversized")`` reports it).
    ``max_assembly_bytes``: what all senders' transfers in progress may hold together."""

    interval_ms: int = 5000
    max_buffer: int = 256
    peers: tuple[str, ...] = ()
    full_state_only: bool = False
    adopt_unknown: bool = True
    pull: bool = True
    part_bytes: int = 1 << 20
    max_message_bytes: int = cbor.DEFAULT_MAX_SIZE
    max_assembly_bytes: int = 2 * cbor.DEFAULT_MAX_SIZE

    def __attrs_post_init__(self) -> None:
        if self.interval_ms <= 0 or self.max_buffer <= 0:
            raise LocalProtocolError("interval_ms and max_buffer must be positive")
        sizes = (self.part_bytes, self.max_message_bytes, self.max_assembly_bytes)
        if any(type(v) is not int for v in sizes) or not (
                1 <= self.part_bytes <= MAX_PART_BYTES
                and 2 <= self.max_message_bytes <= cbor.DEFAULT_MAX_SIZE
                and self.max_message_bytes <= self.max_assembly_bytes):
            raise LocalProtocolError(
                f"need 1 <= part_bytes <= {MAX_PART_BYTES}, 2 <= max_message_bytes <= "
                f"{cbor.DEFAULT_MAX_SIZE} and max_message_bytes <= max_assembly_bytes")
        if -(-self.max_message_bytes // self.part_bytes) > MAX_PARTS:
            raise LocalProtocolError(f"max_message_bytes / part_bytes exceeds {MAX_PARTS} "
                                     "parts: raise part_bytes")


# -- application commands --------------------------------------------------------------
@attrs.frozen
class Mutate:
    """Apply ``op`` to replica ``name``: it must mutate the replica in place and return
    the delta (any CRDT mutator does), e.g.
    ``Mutate("s", lambda s: s.add(node.replica_id, 1))``."""

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
    if type(value) is not int or not 0 <= value < _SEQ_LIMIT:
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


def _origin(raw: object) -> str:
    if not isinstance(raw, str) or not 0 < len(raw) <= MAX_ID:
        raise RemoteProtocolError("an origin must be a short non-empty string")
    return raw


def _vector(raw: object) -> Vector:
    if not isinstance(raw, dict) or len(raw) > MAX_ORIGINS:
        raise RemoteProtocolError("a vector must be a bounded map origin -> count")
    out: Vector = {}
    for o, s in raw.items():
        if type(s) is not int or not 0 <= s < _SEQ_LIMIT:
            raise RemoteProtocolError("a vector count must be a non-negative int")
        out[_origin(o)] = s
    return out


def _tags(raw: object) -> Tags:
    if not isinstance(raw, list) or not 0 < len(raw) <= MAX_ORIGINS:
        raise RemoteProtocolError("a delta names its entries: a list of [origin, first, last]")
    out: Tags = {}
    for t in raw:
        if not (isinstance(t, list) and len(t) == 3):
            raise RemoteProtocolError("a tag is [origin, first, last]")
        o, lo, hi = _origin(t[0]), t[1], t[2]
        if type(lo) is not int or type(hi) is not int or not 1 <= lo <= hi < _SEQ_LIMIT:
            raise RemoteProtocolError("a tag needs 1 <= first <= last")
        if o in out:
            raise RemoteProtocolError("an origin tagged twice")
        out[o] = (lo, hi)
    return out


def _digest(vector: Vector) -> bytes:
    canonical = encode_cbor(sorted([o, s] for o, s in vector.items() if s))
    return hashlib.blake2b(canonical, digest_size=12).digest()


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
        self.origin = node_id  # replaced at boot (see replica_id)
        self.counter = 0  # own entries issued under ``origin``
        self.have: Vector = {}
        self._gaps: dict[str, list[tuple[int, int]]] = {}
        self.buffer: dict[int, tuple[Tags, dict[str, CRDT]]] = {}
        self._buffer_seq = 0
        self.known: dict[str, tuple[str, Vector]] = {}  # peer -> (its origin, its vector)
        self._heard: dict[str, int] = {}  # peer -> when we last had its whole vector
        self.peers: list[str] = sorted(p for p in self.config.peers if p != node_id)
        self._ever: dict[str, None] = dict.fromkeys(self.peers)  # every peer we have had
        self.started = False
        self._log_seq = 0
        self._log_keys: list[str] = []
        self.full_sends = 0
        self.delta_sends = 0
        self.digest_sends = 0
        #: ``sync.delta`` payloads sent as parts, and those too large to send at all.
        self.part_sends = 0
        self.oversized = 0
        self.parts = Reassembler(max_message_bytes=self.config.max_message_bytes,
                                 max_assembly_bytes=self.config.max_assembly_bytes,
                                 stale_ms=3 * self.config.interval_ms)

    @property
    def node_id(self) -> str:
        return self._id

    @property
    def replica_id(self) -> str:
        """The id naming this node's history (its origin): use it as the replica id of
        CRDT mutators, so that a restart without disk never reuses a dot."""
        return self.origin

    def set_peers(self, peers: Iterable[str]) -> None:
        """Replace the peer set (e.g. with SWIM's alive members). What this node knows
        of a peer's vector is kept when the peer leaves the set, so a peer that comes
        back is sent only what it lacks (if it restarted without disk, its new origin
        shows it and its knowledge is replaced)."""
        self.peers = sorted({p for p in peers if p != self._id})
        for p in self.peers:
            if p not in self._ever and len(self._ever) < MAX_ORIGINS:
                self._ever[p] = None

    def pending_peers(self) -> list[str]:
        """Peers not known to hold every own entry of this node (sorted)."""
        if not self.counter:
            return []
        return [p for p in self.peers
                if self._known_vector(p).get(self.origin, 0) < self.counter]

    def value(self, name: str) -> Any:
        return self.replicas[name].value

    # -- the state machine -------------------------------------------------------------
    def step(self, event: Event) -> list[Effect]:
        if isinstance(event, Start | Restart):
            if self.started:
                raise LocalProtocolError("node already started")
            recovered = False
            if isinstance(event, Restart):
                recovered = self._recover(event.persisted)  # DecodeError on corrupt storage
            out: list[Effect] = []
            if not recovered:
                # a history of our own: nobody may hold entries of this origin yet
                self.origin = f"{self._id}.{self.rng.getrandbits(32):08x}"
                self.counter = 0
                out.append(Persist("sync/origin", encode_cbor(self.origin)))
                held = {n: r.copy() for n, r in sorted(self.replicas.items()) if r != type(r)()}
                if held:  # constructor (or orphaned) state becomes our first entry
                    out += self._record_own(held)
            self.started = True
            jitter = self.rng.randint(1, self.config.interval_ms)
            return [*out, SetTimer(T_SHIP, jitter)]
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
        pushed: set[str] = set()
        for peer in self.peers:
            sends = self._push(now, peer)
            if sends:
                pushed.add(peer)
                out += sends
        # a push, or a vector heard within the interval, already compared the two sides
        recent = now - self.config.interval_ms
        quiet = [p for p in self.peers
                 if p not in pushed and self._heard.get(p, recent - 1) < recent]
        if self.config.pull and quiet:
            peer = self.rng.choice(quiet)
            self.digest_sends += 1
            body: dict[str, Any] = (
                {"o": self.origin, "v": dict(self.have), "r": 1}
                if len(self.have) <= SMALL_VECTOR  # cheaper than a hash round trip
                else {"o": self.origin, "h": _digest(self.have)}
            )
            out.append(self.msg.send(now, peer, "sync.digest", body))
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
            out = self._record_own({cmd.name: delta})
            return [*out, Deliver("sync.mutated", cmd.name, req.request_id)]
        if isinstance(cmd, Merge):
            current = self.replicas.get(cmd.name)
            if current is not None and type(current) is not type(cmd.delta):
                raise LocalProtocolError(f"replica {cmd.name!r} is a {type(current).__name__}")
            if current is None:
                self.replicas[cmd.name] = type(cmd.delta)()
            self.replicas[cmd.name] |= cmd.delta
            out = self._record_own({cmd.name: cmd.delta})
            return [*out, Deliver("sync.merged", cmd.name, req.request_id)]
        raise LocalProtocolError(f"unknown sync command {cmd!r}")

    def _record_own(self, deltas: dict[str, CRDT]) -> list[Effect]:
        """Tag ``deltas`` (already joined into X) as our next own entry, buffer it and
        write it ahead."""
        self.counter += 1
        self.have[self.origin] = self.counter
        self._buffer({self.origin: (self.counter, self.counter)}, deltas)
        return [*self._log(deltas, {self.origin: self.counter}),
                Persist("sync/counter", encode_cbor(self.counter))]

    def _buffer(self, tags: Tags, deltas: dict[str, CRDT]) -> None:
        self._buffer_seq += 1
        self.buffer[self._buffer_seq] = (tags, deltas)
        while len(self.buffer) > self.config.max_buffer:
            del self.buffer[next(iter(self.buffer))]

    def _log(self, deltas: dict[str, CRDT], claims: Vector) -> list[Effect]:
        self._log_seq += 1
        key = f"sync/log/{self._log_seq:012d}"
        self._log_keys.append(key)
        record = encode_cbor({"d": {n: d.to_bytes() for n, d in sorted(deltas.items())},
                              "v": claims})
        return [Persist(key, record)]

    def _claim(self, origin: str, lo: int, hi: int) -> bool:
        """Record that X holds entries ``lo..hi`` of ``origin``; True if V advanced."""
        cur = self.have.get(origin, 0)
        if hi <= cur:
            return False
        if origin not in self.have and len(self.have) >= MAX_ORIGINS:
            return False  # under-claiming is safe: the entries will be offered again
        if lo > cur + 1:  # a gap: joined, not yet claimable
            gaps = self._gaps.setdefault(origin, [])
            gaps.append((lo, hi))
            gaps.sort()
            del gaps[MAX_GAPS:]
            return False
        new = hi
        gaps = self._gaps.get(origin, [])
        while gaps and gaps[0][0] <= new + 1:
            new = max(new, gaps.pop(0)[1])
        if not gaps:
            self._gaps.pop(origin, None)
        self.have[origin] = new
        return True

    # -- what peers hold ---------------------------------------------------------------
    def _known_vector(self, peer: str) -> Vector:
        known = self.known.get(peer)
        return known[1] if known is not None else {}

    def _learn(self, peer: str, origin: str, vector: Vector) -> None:
        known = self.known.get(peer)
        if known is None or known[0] != origin:  # new, or restarted without its disk
            if known is None and len(self.known) >= MAX_ORIGINS:
                stale = next((p for p in self.known if p not in self.peers), None)
                if stale is None:
                    return
                del self.known[stale]
                self._heard.pop(stale, None)
            self.known[peer] = (origin, dict(vector))
            return
        have = known[1]
        for o, s in vector.items():
            if s > have.get(o, 0) and (o in have or len(have) < MAX_ORIGINS):
                have[o] = s

    def _lacking(self, vector: Vector) -> Tags:
        """The entries we hold that a holder of ``vector`` lacks."""
        return {o: (vector.get(o, 0) + 1, s) for o, s in sorted(self.have.items())
                if s > vector.get(o, 0)}

    # -- shipping ----------------------------------------------------------------------
    def _push(self, now: int, peer: str) -> list[Effect]:
        theirs = self._known_vector(peer).get(self.origin, 0)
        if theirs >= self.counter:
            return []
        return self._ship(now, peer, {self.origin: (theirs + 1, self.counter)})

    def _ship(self, now: int, peer: str, need: Tags) -> list[Effect]:
        """A ``sync.delta`` carrying at least the entries ``need``: joined from the
        buffer, or the full state when some are gone (or ``full_state_only``); as
        ``sync.part`` messages when it is larger than ``part_bytes``."""
        found = None if self.config.full_state_only else self._collect(need)
        if found is None:
            self.full_sends += 1
            body: dict[str, Any] = {
                "o": self.origin, "full": True, "v": dict(self.have),
                "d": {n: r.to_bytes() for n, r in sorted(self.replicas.items())},
            }
        else:
            tags, deltas = found
            self.delta_sends += 1
            body = {
                "o": self.origin, "full": False,
                "t": [[o, lo, hi] for o, (lo, hi) in sorted(tags.items())],
                "d": {n: d.to_bytes() for n, d in sorted(deltas.items())},
            }
            if len(self.have) <= SMALL_VECTOR:  # lets the peer compare: no pull needed
                body["v"] = dict(self.have)
        payload = encode_payload(body)
        if len(payload) <= self.config.part_bytes:
            return [self.msg.send(now, peer, "sync.delta", payload)]
        if len(payload) > self.config.max_message_bytes:
            self.oversized += 1
            return [Deliver("sync.oversized", {"peer": peer, "bytes": len(payload)})]
        self.part_sends += 1
        return [self.msg.send(now, peer, M_PART, part)
                for part in split(payload, self.config.part_bytes)]

    def _collect(self, need: Tags) -> tuple[Tags, dict[str, CRDT]] | None:
        """Join the buffered entries covering ``need``, or None if some are gone."""
        picked: list[tuple[Tags, dict[str, CRDT]]] = []
        for tags, deltas in self.buffer.values():
            if any(o in need and hi >= need[o][0] and lo <= need[o][1]
                   for o, (lo, hi) in tags.items()):
                picked.append((tags, deltas))
        for o, (lo, hi) in need.items():
            reach = lo - 1
            for a, b in sorted(t[o] for t, _ in picked if o in t):
                if a > reach + 1:
                    break
                reach = max(reach, b)
            if reach < hi:
                return None
        ranges: dict[str, list[tuple[int, int]]] = {}
        joined: dict[str, CRDT] = {}
        for tags, deltas in picked:
            for o, r in tags.items():
                ranges.setdefault(o, []).append(r)
            for name, d in deltas.items():
                joined[name] = joined[name] | d if name in joined else d
        tags_out: Tags = {}
        for o, rs in ranges.items():
            # one tag per origin: the contiguous run covering what was needed (or the
            # highest run); naming less than the delta holds only under-claims
            runs: list[tuple[int, int]] = []
            for a, b in sorted(rs):
                if runs and a <= runs[-1][1] + 1:
                    runs[-1] = (runs[-1][0], max(runs[-1][1], b))
                else:
                    runs.append((a, b))
            want = need.get(o)
            tags_out[o] = next((r for r in runs if want and r[0] <= want[0] and r[1] >= want[1]),
                               runs[-1])
        return tags_out, joined

    def _gc(self) -> None:
        """Drop buffered entries that every peer — current, or ever had (a member cut
        off by a partition comes back) — is known to hold; ``max_buffer`` bounds what
        the others pin."""
        if not self.peers:
            return
        vectors = [self._known_vector(p)
                   for p in sorted(set(self.peers) | set(self.known) | set(self._ever))]
        for key, (tags, _) in list(self.buffer.items()):
            if all(v.get(o, 0) >= hi for v in vectors for o, (_, hi) in tags.items()):
                del self.buffer[key]

    def _checkpoint(self) -> list[Effect]:
        if not self._log_keys:
            return []
        snap = encode_cbor({
            "origin": self.origin,
            "counter": self.counter,
            "v": dict(self.have),
            "replicas": {n: r.to_bytes() for n, r in sorted(self.replicas.items())},
        })
        out: list[Effect] = [Persist("sync/snapshot", snap)]
        out += [Persist(k, None) for k in self._log_keys]
        self._log_keys = []
        return out

    def _recover(self, persisted: Mapping[str, bytes]) -> bool:
        """Rebuild X, V, the origin and its counter from snapshot + write-ahead log
        (join-only, order-free). True when the origin was recovered (else the node
        takes a fresh one). On corrupt storage raises ``DecodeError`` and leaves the
        node as constructed."""
        saved = ({n: r.copy() for n, r in self.replicas.items()}, self.counter,
                 dict(self.have), self._log_seq, list(self._log_keys))
        origin: str | None = None
        try:
            if "sync/snapshot" in persisted:
                snap = decode_cbor(persisted["sync/snapshot"])
                for name, raw in snap["replicas"].items():
                    self._adopt(_replica_name(name), decode(raw))
                self.counter = max(self.counter, _count(snap["counter"]))
                for o, s in _vector(snap.get("v", {})).items():
                    self.have[o] = max(self.have.get(o, 0), s)
                if "origin" in snap:
                    origin = _origin(snap["origin"])
            for key in sorted(k for k in persisted if k.startswith("sync/log/")):
                index = _log_index(key)
                record = decode_cbor(persisted[key])
                for name, raw in record["d"].items():
                    self._adopt(_replica_name(name), decode(raw))
                for o, s in _vector(record["v"]).items():
                    self.have[o] = max(self.have.get(o, 0), s)
                self._log_keys.append(key)
                self._log_seq = max(self._log_seq, index)
            if "sync/counter" in persisted:
                self.counter = max(self.counter, _count(decode_cbor(persisted["sync/counter"])))
            if "sync/origin" in persisted:
                origin = _origin(decode_cbor(persisted["sync/origin"]))
        except (DecodeError, KeyError, TypeError, ValueError, AttributeError) as exc:
            self.replicas, self.counter, self.have, self._log_seq, self._log_keys = saved
            raise DecodeError(f"corrupt persisted sync state: {exc}") from None
        if origin is None:
            return False
        self.origin = origin
        self.counter = max(self.counter, self.have.get(origin, 0))
        if self.counter:
            self.have[origin] = self.counter
        return True

    def _adopt(self, name: str, state: CRDT) -> None:
        if name in self.replicas:
            self.replicas[name] |= state
        else:
            self.replicas[name] = state

    # -- receiving ---------------------------------------------------------------------
    def receive(self, now: int, env: Envelope) -> list[Effect]:
        if env.type == "sync.ack":
            body = decode_payload(env)
            if set(body) != {"o", "v", "all"} or type(body["all"]) is not bool:
                raise RemoteProtocolError("sync.ack is {o, v, all}")
            their_origin, their_vector = _origin(body["o"]), _vector(body["v"])
            self.msg.accept(now, env)
            self._learn(env.sender, their_origin, their_vector)
            if not body["all"]:
                return []
            # the whole vector: ship at once what the peer lacks beyond our own entries
            # (those go with the next push), as a pull would
            self._heard[env.sender] = now
            lacking = {o: r for o, r in self._lacking(their_vector).items() if o != self.origin}
            return self._ship(now, env.sender, lacking) if lacking else []
        if env.type == "sync.digest":
            return self._on_digest(now, env)
        if env.type == M_PART:
            return self._on_part(now, env)
        if env.type != "sync.delta":
            raise RemoteProtocolError(f"sync node got {env.type!r}")
        return self._on_delta(now, env, decode_payload(env))

    def _on_part(self, now: int, env: Envelope) -> list[Effect]:
        """A part of a ``sync.delta`` too large for one envelope: kept until the
        transfer is whole, then handled as that delta (see :mod:`.parts`)."""
        part = self.parts.parse(env.sender, decode_payload(env), now)
        whole = self.parts.assembled(env.sender, part)
        if whole is None:
            self.msg.accept(now, env)
            self.parts.store(env.sender, part, now)
            return []
        try:
            body = decode_cbor(whole)
        except DecodeError as exc:
            raise RemoteProtocolError(f"sync.part from {env.sender}: {exc}") from None
        if not isinstance(body, dict):
            raise RemoteProtocolError(f"sync.part from {env.sender}: bad payload shape")
        out = self._on_delta(now, env, body)
        self.parts.finish(env.sender)
        return out

    def _on_delta(self, now: int, env: Envelope, body: dict[str, Any]) -> list[Effect]:
        full, raw = body.get("full"), body.get("d")
        if type(full) is not bool or not isinstance(raw, dict):
            raise RemoteProtocolError("sync.delta needs o, full and d")
        origin = _origin(body.get("o"))
        vector: Vector = _vector(body.get("v")) if full or "v" in body else {}
        tags: Tags = {} if full else _tags(body.get("t"))
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
        claims = ({o: (1, s) for o, s in vector.items() if s} if full else tags)
        advanced: Vector = {}
        for o, (lo, hi) in sorted(claims.items()):
            if o != self.origin and self._claim(o, lo, hi):  # our own history is ours
                advanced[o] = self.have[o]
        out: list[Effect] = []
        if fresh or advanced:
            if not full:
                self._buffer(tags, incoming)
            out += self._log(fresh, advanced)
        if fresh:
            out.append(Deliver("sync.updated", sorted(fresh)))
        if full or "v" in body:
            self._learn(env.sender, origin, vector)
            self._heard[env.sender] = now
        elif origin in tags:
            self._learn(env.sender, origin, {origin: tags[origin][1]})
        whole = full or len(self.have) <= SMALL_VECTOR
        answer = dict(self.have) if whole else {o: self.have.get(o, 0) for o in sorted(tags)}
        out.append(self.msg.send(now, env.sender, "sync.ack",
                                 {"o": self.origin, "v": answer, "all": whole},
                                 correlation_id=env.message_id))
        return out

    def _on_digest(self, now: int, env: Envelope) -> list[Effect]:
        """Pull: ``{o, h}`` opens (equal hashes: nothing to do); ``{o, v, r}`` answers
        with a vector (``r`` = 1 for the first answer, 2 for the last): each side ships
        what the other lacks, and the first answer asks back for what it lacks itself."""
        body = decode_payload(env)
        origin = _origin(body.get("o"))
        if set(body) == {"o", "h"}:
            h = body["h"]
            if not isinstance(h, bytes) or len(h) > 64:
                raise RemoteProtocolError("a digest hash is a short byte string")
            self.msg.accept(now, env)
            if h == _digest(self.have):
                self._learn(env.sender, origin, self.have)
                self._heard[env.sender] = now
                return []
            return [self.msg.send(now, env.sender, "sync.digest",
                                  {"o": self.origin, "v": dict(self.have), "r": 1})]
        if set(body) != {"o", "v", "r"} or body["r"] not in (1, 2) or type(body["r"]) is not int:
            raise RemoteProtocolError("sync.digest is {o, h} or {o, v, r}")
        vector = _vector(body["v"])
        self.msg.accept(now, env)
        self._learn(env.sender, origin, vector)
        self._heard[env.sender] = now
        out: list[Effect] = []
        lacking = self._lacking(vector)
        if lacking:
            out += self._ship(now, env.sender, lacking)
        if body["r"] == 1 and any(s > self.have.get(o, 0) for o, s in vector.items()):
            out.append(self.msg.send(now, env.sender, "sync.digest",
                                     {"o": self.origin, "v": dict(self.have), "r": 2}))
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
