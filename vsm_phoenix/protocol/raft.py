"""Raft consensus as a sans-IO node (Ongaro & Ousterhout 2014; Ongaro's thesis 2014).

Theory of operation
-------------------
A :class:`RaftNode` is one member of a fixed cluster (``RaftConfig.peers``). It replicates
a log of opaque commands and applies committed ones, in log order, to a
:class:`StateMachine` (for example :class:`~vsm_phoenix.protocol.kv.KVStateMachine`).
Everything enters through :meth:`RaftNode.step` (events of :mod:`.node`); everything
leaves as effects. Roles and transitions::

    follower --election timeout--> pre-candidate --pre-vote quorum--> candidate
    candidate --vote quorum--> leader          (appends a no-op of its term at once)
    any role --message of a higher term--> follower
    leader --check-quorum fails (no majority heard for one election timeout)--> follower
    follower --TimeoutNow from its leader--> candidate (skips pre-vote; "force" vote)

* **Elections.** Election timeouts are drawn uniformly from
  ``[election_timeout_ms, 2 * election_timeout_ms)`` with the injected ``random.Random``.
  With ``pre_vote`` a node first asks ``raft.vote(pre=True)`` for term ``t + 1``
  without changing its own term or vote; only a pre-vote quorum lets it campaign. So a
  node rejoining from a partition cannot disrupt a working leader by inflating terms.
* **Leader stickiness / check-quorum.** With ``check_quorum`` a node that heard from a
  leader less than one election timeout ago ignores (pre-)votes for a higher term
  unless they carry ``force`` (leadership transfer); a leader that did not hear from a
  majority during an election timeout steps down.
* **Replication.** The leader keeps per follower ``match`` (highest index known
  replicated) and ``next`` (next index to send). A follower *probing* (after a
  rejection, or right after the election) gets one ``raft.append`` at a time; a
  follower *replicating* gets, with every append, all entries it has not acknowledged
  (at most ``max_batch``: the window), sent when new entries arrive and on every
  heartbeat — so a lost or reordered message never leaves a gap that needs a round
  trip to discover, and a heartbeat retransmits whatever was lost. Rejections carry a hint (the
  conflicting term and the first index the follower holds of it, or its log length),
  so the leader skips a whole term per round trip (fast back-off, thesis §5.3).
* **Commit.** The leader commits index ``N`` once a majority holds it *and* the entry
  at ``N`` is of the leader's current term (Figure 8 of the paper); earlier entries
  commit with it. ``RaftConfig.unsafe_commit_old_terms`` removes the term condition —
  a deliberately broken variant kept as a test target.
* **Durability.** Term and vote (``raft/state``), every log entry
  (``raft/log/<index>``, 20-digit zero padded) and the snapshot (``raft/snapshot``) are
  written with :class:`Persist` effects. All persist effects of a step come first in
  its effect list, so they are durable before any message that depends on them leaves.
* **Compaction.** When ``snapshot_threshold`` entries have been applied since the last
  snapshot, the node snapshots its state machine and drops the log prefix. A follower
  whose ``next`` falls into the compacted prefix gets ``raft.snapshot``
  (InstallSnapshot, in one message).
* **Transfer.** ``TransferLeadership(target)`` makes the leader stop taking proposals,
  bring ``target`` up to date and send it ``raft.timeout-now``.
* **Reads (ReadIndex, thesis §6.4).** ``Read(query)`` at the leader records the commit
  index, starts a heartbeat round tagged with a fresh sequence number and answers once
  a majority acknowledged that round and the state machine applied up to the recorded
  index. A leader that has not yet committed an entry of its own term defers reads
  until it has.
* **Clients.** Requests to a non-leader are answered ``raft.not-leader`` with the
  leader id when known. Replies are ``Deliver`` effects with the request's id and kind
  ``raft.ok`` (payload: the result), ``raft.not-leader`` (payload: leader hint; the
  request had no effect), ``raft.unknown`` (payload: leader hint; leadership was lost
  before the proposal committed — it may or may not take effect) or ``raft.failed``
  (payload: reason). A node that becomes leader delivers ``raft.leader`` (no request id).

Messages are :class:`Envelope` payloads in canonical CBOR with short keys; a payload
that does not decode to exactly the expected shape raises :class:`RemoteProtocolError`
before any state changes. Invariant checks for tests and the model checker:
:func:`check_invariants` (one global state) and :class:`RaftMonitor` (across time).
"""

from __future__ import annotations

import enum
import hashlib
import random
from collections.abc import Iterable, Mapping
from typing import Any, Final, Protocol

import attrs

from vsm_phoenix.errors import DecodeError
from vsm_phoenix.protocol.envelope import Envelope, decode_cbor, encode_cbor
from vsm_phoenix.protocol.kit import Messenger
from vsm_phoenix.protocol.node import (
    CancelTimer,
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

__all__ = [
    "Entry",
    "Propose",
    "RaftConfig",
    "RaftMonitor",
    "RaftNode",
    "Read",
    "RecordingStateMachine",
    "Role",
    "StateMachine",
    "TransferLeadership",
    "check_invariants",
]

# Timer names.
T_ELECTION: Final = "raft.election"
T_HEARTBEAT: Final = "raft.heartbeat"
T_QUORUM: Final = "raft.check-quorum"
T_FLUSH: Final = "raft.flush"
T_TRANSFER: Final = "raft.transfer"

# Message types.
M_APPEND: Final = "raft.append"
M_APPEND_RESP: Final = "raft.append-resp"
M_VOTE: Final = "raft.vote"
M_VOTE_RESP: Final = "raft.vote-resp"
M_SNAP: Final = "raft.snapshot"
M_SNAP_RESP: Final = "raft.snapshot-resp"
M_TIMEOUT_NOW: Final = "raft.timeout-now"

# Reply kinds.
K_OK: Final = "raft.ok"
K_NOT_LEADER: Final = "raft.not-leader"
K_UNKNOWN: Final = "raft.unknown"
K_FAILED: Final = "raft.failed"
K_LEADER: Final = "raft.leader"

# Storage keys.
KEY_STATE: Final = "raft/state"
KEY_SNAPSHOT: Final = "raft/snapshot"
KEY_LOG_PREFIX: Final = "raft/log/"

MAX_U63: Final = 2**63 - 1
MAX_ENTRIES_PER_MESSAGE: Final = 65_536


def log_key(index: int) -> str:
    """The storage key of the log entry at ``index``."""
    return f"{KEY_LOG_PREFIX}{index:020d}"


def _peer_tuple(value: Iterable[str]) -> tuple[str, ...]:
    return tuple(value)


class Role(enum.Enum):
    FOLLOWER = "follower"
    PRE_CANDIDATE = "pre-candidate"
    CANDIDATE = "candidate"
    LEADER = "leader"


@attrs.frozen
class RaftConfig:
    """Cluster membership and protocol parameters (times in ms of the node's clock).

    ``batch_delay_ms = 0`` sends every proposal at once (one ``raft.append`` per
    proposal per follower when the pipeline is idle); ``> 0`` collects proposals and
    reads for that long and ships them together, at most ``max_batch`` entries per
    message.
    """

    peers: tuple[str, ...] = attrs.field(converter=_peer_tuple)
    election_timeout_ms: int = 300
    heartbeat_ms: int = 50
    pre_vote: bool = True
    check_quorum: bool = True
    max_batch: int = 64
    batch_delay_ms: int = 0
    snapshot_threshold: int = 512
    unsafe_commit_old_terms: bool = False

    def __attrs_post_init__(self) -> None:
        if not self.peers or len(set(self.peers)) != len(self.peers):
            raise LocalProtocolError("peers must be a non-empty tuple of distinct ids")
        if any(not isinstance(p, str) or not p for p in self.peers):
            raise LocalProtocolError("peer ids must be non-empty strings")
        if not 0 < self.heartbeat_ms < self.election_timeout_ms:
            raise LocalProtocolError("need 0 < heartbeat_ms < election_timeout_ms")
        if self.max_batch < 1 or self.batch_delay_ms < 0 or self.snapshot_threshold < 1:
            raise LocalProtocolError("max_batch >= 1, batch_delay_ms >= 0, snapshot_threshold >= 1")

    @property
    def quorum(self) -> int:
        return len(self.peers) // 2 + 1


# -- client requests (ClientRequest payloads) ---------------------------------------------
@attrs.frozen
class Propose:
    """Append ``command`` (non-empty bytes, interpreted by the state machine) to the log;
    answered ``raft.ok`` with the state machine's result once applied."""

    command: bytes


@attrs.frozen
class Read:
    """A linearizable read (ReadIndex): answered ``raft.ok`` with
    ``state_machine.query(query)`` evaluated at a state that includes every write
    acknowledged before the read was received."""

    query: bytes


@attrs.frozen
class TransferLeadership:
    """Hand leadership to ``target``: ``raft.ok`` (payload ``target``) at once when the
    target is this leader; ``raft.unknown`` (payload: leader hint) when this leader
    stepped down meanwhile, normally because the target won; ``raft.failed`` when the
    transfer timed out after one election timeout."""

    target: str


# -- the log and the state machine --------------------------------------------------------
@attrs.frozen
class Entry:
    """One log entry; ``data == b""`` is the no-op a new leader appends."""

    term: int
    data: bytes


class StateMachine(Protocol):
    """What Raft replicates. All methods are deterministic; ``apply`` and ``query`` are
    total (a malformed command yields an error *result*, never an exception)."""

    def apply(self, command: bytes) -> Any: ...

    def query(self, query: bytes) -> Any: ...

    def snapshot(self) -> bytes: ...

    def check_snapshot(self, data: bytes) -> None:
        """Raise :class:`DecodeError` unless ``restore(data)`` would succeed."""
        ...

    def restore(self, data: bytes) -> None: ...


class RecordingStateMachine:
    """A minimal state machine: the list of applied commands. ``query`` returns how many
    there are. Useful for tests and the model checker."""

    def __init__(self) -> None:
        self.applied: list[bytes] = []

    def apply(self, command: bytes) -> Any:
        self.applied.append(command)
        return len(self.applied)

    def query(self, query: bytes) -> Any:
        return len(self.applied)

    def snapshot(self) -> bytes:
        return encode_cbor(self.applied)

    def check_snapshot(self, data: bytes) -> None:
        value = decode_cbor(data)
        if not isinstance(value, list) or not all(isinstance(c, bytes) for c in value):
            raise DecodeError("recording snapshot must be a list of byte strings")

    def restore(self, data: bytes) -> None:
        self.check_snapshot(data)
        self.applied = list(decode_cbor(data))


# -- wire messages ------------------------------------------------------------------------
@attrs.frozen
class _Append:
    term: int
    prev_index: int
    prev_term: int
    entries: tuple[Entry, ...]
    commit: int
    seq: int


@attrs.frozen
class _AppendResp:
    term: int
    ok: bool
    match: int  # ok: highest index known to match the leader
    reject: int  # not ok: the prev_index that was rejected
    hint_index: int
    hint_term: int | None
    seq: int


@attrs.frozen
class _Vote:
    term: int
    last_index: int
    last_term: int
    pre: bool
    force: bool


@attrs.frozen
class _VoteResp:
    term: int
    granted: bool
    pre: bool


@attrs.frozen
class _Snap:
    term: int
    index: int
    snap_term: int
    data: bytes
    seq: int


@attrs.frozen
class _SnapResp:
    term: int
    match: int
    seq: int


@attrs.frozen
class _TimeoutNow:
    term: int


_Message = _Append | _AppendResp | _Vote | _VoteResp | _Snap | _SnapResp | _TimeoutNow


def _bad(mtype: str, why: str) -> RemoteProtocolError:
    return RemoteProtocolError(f"{mtype}: {why}")


def _u(obj: Mapping[Any, Any], key: str, mtype: str) -> int:
    v = obj[key]
    if type(v) is not int or not 0 <= v <= MAX_U63:
        raise _bad(mtype, f"{key} must be an integer in 0..2**63-1")
    return v


def _b(obj: Mapping[Any, Any], key: str, mtype: str) -> bool:
    v = obj[key]
    if type(v) is not bool:
        raise _bad(mtype, f"{key} must be a boolean")
    return v


_FIELDS: Final[dict[str, frozenset[str]]] = {
    M_APPEND: frozenset({"t", "pi", "pt", "e", "c", "s"}),
    M_APPEND_RESP: frozenset({"t", "ok", "m", "ri", "hi", "ht", "s"}),
    M_VOTE: frozenset({"t", "li", "lt", "pre", "f"}),
    M_VOTE_RESP: frozenset({"t", "g", "pre"}),
    M_SNAP: frozenset({"t", "i", "st", "d", "s"}),
    M_SNAP_RESP: frozenset({"t", "m", "s"}),
    M_TIMEOUT_NOW: frozenset({"t"}),
}


def _decode_message(mtype: str, payload: bytes) -> _Message:
    """Strictly decode a Raft payload; :class:`RemoteProtocolError` on any deviation."""
    fields = _FIELDS.get(mtype)
    if fields is None:
        raise _bad(mtype, "unknown message type")
    try:
        obj = decode_cbor(payload)
    except DecodeError as exc:
        raise _bad(mtype, str(exc)) from None
    if not isinstance(obj, dict) or set(obj) != fields:
        raise _bad(mtype, f"payload must be a map with keys {sorted(fields)}")
    t = _u(obj, "t", mtype)
    if mtype == M_APPEND:
        raw = obj["e"]
        if not isinstance(raw, list) or len(raw) > MAX_ENTRIES_PER_MESSAGE:
            raise _bad(mtype, "e must be a list of at most 65536 entries")
        entries: list[Entry] = []
        prev_term = _u(obj, "pt", mtype)
        last = prev_term
        for item in raw:
            if (
                not isinstance(item, list)
                or len(item) != 2
                or type(item[0]) is not int
                or not isinstance(item[1], bytes)
            ):
                raise _bad(mtype, "each entry must be [term, bytes]")
            if not last <= item[0] <= t:
                raise _bad(mtype, "entry terms must be non-decreasing and <= the message term")
            last = item[0]
            entries.append(Entry(item[0], item[1]))
        prev_index = _u(obj, "pi", mtype)
        if prev_term > t or (prev_index == 0) != (prev_term == 0):
            raise _bad(mtype, "inconsistent prev_index/prev_term")
        if prev_index + len(entries) > MAX_U63:
            raise _bad(mtype, "log index overflow")
        return _Append(t, prev_index, prev_term, tuple(entries), _u(obj, "c", mtype),
                       _u(obj, "s", mtype))
    if mtype == M_APPEND_RESP:
        ht = obj["ht"]
        if ht is not None and (type(ht) is not int or not 0 <= ht <= MAX_U63):
            raise _bad(mtype, "ht must be null or a term")
        hi = _u(obj, "hi", mtype)
        if hi < 1:
            raise _bad(mtype, "hi must be >= 1")
        return _AppendResp(t, _b(obj, "ok", mtype), _u(obj, "m", mtype), _u(obj, "ri", mtype),
                           hi, ht, _u(obj, "s", mtype))
    if mtype == M_VOTE:
        li, lt = _u(obj, "li", mtype), _u(obj, "lt", mtype)
        if lt > t or t == 0:
            raise _bad(mtype, "last_term must be <= term, term >= 1")
        return _Vote(t, li, lt, _b(obj, "pre", mtype), _b(obj, "f", mtype))
    if mtype == M_VOTE_RESP:
        return _VoteResp(t, _b(obj, "g", mtype), _b(obj, "pre", mtype))
    if mtype == M_SNAP:
        data = obj["d"]
        if not isinstance(data, bytes):
            raise _bad(mtype, "d must be bytes")
        i, st = _u(obj, "i", mtype), _u(obj, "st", mtype)
        if i < 1 or st < 1 or st > t:
            raise _bad(mtype, "snapshot index and term must be >= 1, term <= message term")
        return _Snap(t, i, st, data, _u(obj, "s", mtype))
    if mtype == M_SNAP_RESP:
        return _SnapResp(t, _u(obj, "m", mtype), _u(obj, "s", mtype))
    return _TimeoutNow(t)


def _encode_message(msg: _Message) -> tuple[str, dict[str, Any]]:
    if isinstance(msg, _Append):
        return M_APPEND, {"t": msg.term, "pi": msg.prev_index, "pt": msg.prev_term,
                          "e": [[e.term, e.data] for e in msg.entries], "c": msg.commit,
                          "s": msg.seq}
    if isinstance(msg, _AppendResp):
        return M_APPEND_RESP, {"t": msg.term, "ok": msg.ok, "m": msg.match, "ri": msg.reject,
                               "hi": msg.hint_index, "ht": msg.hint_term, "s": msg.seq}
    if isinstance(msg, _Vote):
        return M_VOTE, {"t": msg.term, "li": msg.last_index, "lt": msg.last_term,
                        "pre": msg.pre, "f": msg.force}
    if isinstance(msg, _VoteResp):
        return M_VOTE_RESP, {"t": msg.term, "g": msg.granted, "pre": msg.pre}
    if isinstance(msg, _Snap):
        return M_SNAP, {"t": msg.term, "i": msg.index, "st": msg.snap_term, "d": msg.data,
                        "s": msg.seq}
    if isinstance(msg, _SnapResp):
        return M_SNAP_RESP, {"t": msg.term, "m": msg.match, "s": msg.seq}
    return M_TIMEOUT_NOW, {"t": msg.term}


# -- leader bookkeeping -------------------------------------------------------------------
@attrs.define
class _Progress:
    match: int = 0
    next: int = 1
    probing: bool = True
    probe_sent: bool = False
    sent_to: int = 0  # replicating: highest index shipped so far
    active: bool = False  # heard from in the current check-quorum window
    acked_seq: int = 0

    def key(self) -> list[Any]:
        return [self.match, self.next, self.probing, self.probe_sent, self.sent_to,
                self.active, self.acked_seq]


@attrs.define
class _PendingRead:
    request_id: str
    query: bytes
    index: int = 0
    seq: int = 0


# -- the node -----------------------------------------------------------------------------
class RaftNode:
    """One Raft member (see the module docstring). Deterministic given its constructor
    arguments and event sequence; :meth:`state_key` digests its full protocol state."""

    def __init__(
        self,
        node_id: str,
        rng: random.Random,
        config: RaftConfig,
        state_machine: StateMachine | None = None,
    ) -> None:
        if node_id not in config.peers:
            raise LocalProtocolError(f"{node_id!r} is not in peers {config.peers!r}")
        self._id = node_id
        self._rng = rng
        self.config = config
        self._messenger = Messenger(node_id, rng)
        self._others: tuple[str, ...] = tuple(sorted(p for p in config.peers if p != node_id))
        self._quorum = config.quorum
        self.state_machine: StateMachine = (
            state_machine if state_machine is not None else RecordingStateMachine()
        )
        self._started = False
        self._now = 0
        # Persistent state.
        self.term = 0
        self.voted_for: str | None = None
        self.log: list[Entry] = []  # log[k] is the entry at snap_index + 1 + k
        self.snap_index = 0
        self.snap_term = 0
        self.snap_data: bytes = self.state_machine.snapshot()
        # Volatile state.
        self.role = Role.FOLLOWER
        self.leader_id: str | None = None
        self.commit_index = 0
        self.last_applied = 0
        self._votes: list[str] = []
        self._contact_at: int | None = None
        # Leader state.
        self._progress: dict[str, _Progress] = {}
        self._seq = 0
        self._reads_waiting: list[_PendingRead] = []  # for a commit in the current term
        self._reads: list[_PendingRead] = []  # for a quorum of acks of their round
        self._reads_ready: list[_PendingRead] = []  # for last_applied >= index
        self._proposals: dict[int, tuple[str, int]] = {}
        self._transfer: tuple[str, str | None] | None = None
        self._flush_pending = False
        self._round_pending = False
        # Effects of the current step.
        self._writes: dict[str, bytes | None] = {}
        self._hard_dirty = False
        self._out: list[Effect] = []

    # -- introspection -----------------------------------------------------------------
    @property
    def node_id(self) -> str:
        return self._id

    def __repr__(self) -> str:
        return (f"RaftNode({self._id!r}, {self.role.value}, term={self.term}, "
                f"last={self.last_index}, commit={self.commit_index})")

    @property
    def last_index(self) -> int:
        return self.snap_index + len(self.log)

    @property
    def last_term(self) -> int:
        return self.log[-1].term if self.log else self.snap_term

    def term_at(self, index: int) -> int | None:
        """The term of the entry at ``index``; ``None`` when compacted away or absent."""
        if index == self.snap_index:
            return self.snap_term
        if self.snap_index < index <= self.last_index:
            return self.log[index - self.snap_index - 1].term
        return None

    def entry(self, index: int) -> Entry | None:
        if self.snap_index < index <= self.last_index:
            return self.log[index - self.snap_index - 1]
        return None

    @property
    def is_leader(self) -> bool:
        return self.role is Role.LEADER

    def state_key(self) -> tuple[Any, ...]:
        """A hashable snapshot of the whole protocol state, for model checkers: the
        persistent state, volatile state, leader bookkeeping, the state machine's
        snapshot and whether this node is inside a leader lease (judged at the last
        event's time). Node ids appear only as whole ``str`` values, so a checker may
        rename them (symmetry reduction). Left out, as labels that never drive a
        decision under abstract time: the injected generator (timer delays, message
        ids) and the HLC. Equal keys, equal future behaviour."""
        return (
            self.role.value, self.term, self.voted_for, self.leader_id,
            self.commit_index, self.last_applied, self.snap_index, self.snap_term,
            self.snap_data, tuple((e.term, e.data) for e in self.log),
            self.state_machine.snapshot(), frozenset(self._votes),
            tuple((p, tuple(self._progress[p].key())) for p in sorted(self._progress)),
            self._seq,
            tuple((r.request_id, r.index, r.seq) for r in self._reads_waiting),
            tuple((r.request_id, r.index, r.seq) for r in self._reads),
            tuple((r.request_id, r.index, r.seq) for r in self._reads_ready),
            tuple(sorted((i, rid, t) for i, (rid, t) in self._proposals.items())),
            self._transfer, self._flush_pending, self._round_pending, self._started,
            self._in_lease(),
        )

    def state_digest(self) -> bytes:
        """A 32-byte BLAKE2b digest of :meth:`state_key` (canonical CBOR), for storing
        many states compactly."""
        key = self.state_key()
        doc = [list(key[:11]), sorted(key[11]), list(key[12:])]
        return hashlib.blake2b(encode_cbor(doc), digest_size=32).digest()

    # -- the entry point ----------------------------------------------------------------
    def step(self, event: Event) -> list[Effect]:
        """Apply one event; return the effects (all ``Persist`` effects first)."""
        if isinstance(event, Start | Restart):
            if self._started:
                raise LocalProtocolError("node already started")
            loaded = self._load(event.persisted) if isinstance(event, Restart) else None
            self._begin(event.now)
            self._started = True
            if loaded is not None:
                self._install_loaded(*loaded)
            self._reset_election_timer()
            return self._drain()
        if not self._started:
            raise LocalProtocolError("event before Start/Restart")
        if isinstance(event, Receive):
            env = event.envelope
            msg = self._check_envelope(env)
            self._messenger.accept(max(event.now, 0), env)  # validates before mutating
            self._begin(event.now)
            self._on_message(env.sender, msg)
        elif isinstance(event, TimerFired):
            self._begin(event.now)
            self._on_timer(event.name)
        elif isinstance(event, ClientRequest):
            self._check_request(event.payload)
            self._begin(event.now)
            self._on_request(event.request_id, event.payload)
        else:
            raise LocalProtocolError(f"unknown event {type(event).__name__}")
        return self._drain()

    def _begin(self, now: int) -> None:
        self._now = now
        self._writes = {}
        self._hard_dirty = False
        self._out = []

    def _drain(self) -> list[Effect]:
        effects: list[Effect] = []
        if self._hard_dirty:
            effects.append(Persist(KEY_STATE, encode_cbor({"t": self.term, "v": self.voted_for})))
        effects.extend(Persist(k, v) for k, v in self._writes.items())
        effects.extend(self._out)
        self._writes, self._out, self._hard_dirty = {}, [], False
        return effects

    # -- validation (no state changes) --------------------------------------------------
    def _check_envelope(self, env: Envelope) -> _Message:
        if env.recipient != self._id:
            raise RemoteProtocolError(f"{env.type}: not addressed to {self._id!r}")
        if env.sender not in self._others:
            raise RemoteProtocolError(f"{env.type}: sender {env.sender!r} is not a peer")
        msg = _decode_message(env.type, env.payload)
        if isinstance(msg, _Snap):
            try:
                self.state_machine.check_snapshot(msg.data)
            except DecodeError as exc:
                raise _bad(env.type, f"bad snapshot: {exc}") from None
        if isinstance(msg, _Append | _Snap) and self.role is Role.LEADER and msg.term == self.term:
            raise _bad(env.type, "a second leader in this node's term")
        if isinstance(msg, _AppendResp | _SnapResp) and msg.term == self.term and (
            self.role is Role.LEADER
            and (msg.ok if isinstance(msg, _AppendResp) else True)
            and msg.match > self.last_index
        ):
            raise _bad(env.type, "acknowledges entries this leader never had")
        return msg

    def _check_request(self, payload: Any) -> None:
        if isinstance(payload, Propose):
            if not isinstance(payload.command, bytes) or not payload.command:
                raise LocalProtocolError("Propose.command must be non-empty bytes")
        elif isinstance(payload, Read):
            if not isinstance(payload.query, bytes):
                raise LocalProtocolError("Read.query must be bytes")
        elif isinstance(payload, TransferLeadership):
            if payload.target not in self.config.peers:
                raise LocalProtocolError(f"transfer target {payload.target!r} is not a peer")
        else:
            raise LocalProtocolError(f"unsupported request {type(payload).__name__}")

    def _load(
        self, persisted: Mapping[str, bytes]
    ) -> tuple[int, str | None, int, int, bytes, list[Entry]]:
        """Decode everything persisted, without touching the node."""
        term, vote = 0, None
        try:
            if KEY_STATE in persisted:
                hard = decode_cbor(persisted[KEY_STATE])
                if not isinstance(hard, dict) or set(hard) != {"t", "v"}:
                    raise DecodeError("raft/state must be {t, v}")
                term, vote = hard["t"], hard["v"]
                if type(term) is not int or term < 0 or not (vote is None or isinstance(vote, str)):
                    raise DecodeError("raft/state has bad types")
            snap_index, snap_term, snap_data = 0, 0, self.state_machine.snapshot()
            if KEY_SNAPSHOT in persisted:
                snap = decode_cbor(persisted[KEY_SNAPSHOT])
                if not isinstance(snap, dict) or set(snap) != {"i", "t", "d"}:
                    raise DecodeError("raft/snapshot must be {i, t, d}")
                snap_index, snap_term, snap_data = snap["i"], snap["t"], snap["d"]
                if type(snap_index) is not int or type(snap_term) is not int or not isinstance(
                    snap_data, bytes
                ):
                    raise DecodeError("raft/snapshot has bad types")
                self.state_machine.check_snapshot(snap_data)
            by_index: dict[int, Entry] = {}
            for key in persisted:
                if key.startswith(KEY_LOG_PREFIX):
                    index = int(key[len(KEY_LOG_PREFIX):])
                    item = decode_cbor(persisted[key])
                    if (not isinstance(item, list) or len(item) != 2 or type(item[0]) is not int
                            or not isinstance(item[1], bytes)):
                        raise DecodeError(f"{key} must be [term, bytes]")
                    by_index[index] = Entry(item[0], item[1])
        except (DecodeError, ValueError) as exc:
            raise DecodeError(f"corrupt persisted Raft state: {exc}") from None
        log: list[Entry] = []
        index = snap_index + 1
        while index in by_index:
            log.append(by_index[index])
            index += 1
        return term, vote, snap_index, snap_term, snap_data, log

    def _install_loaded(
        self, term: int, vote: str | None, snap_index: int, snap_term: int, snap_data: bytes,
        log: list[Entry],
    ) -> None:
        self.term, self.voted_for = term, vote
        self.snap_index, self.snap_term, self.snap_data = snap_index, snap_term, snap_data
        self.state_machine.restore(snap_data)
        self.log = log
        self.commit_index = self.last_applied = snap_index

    # -- effect helpers -------------------------------------------------------------------
    def _send(self, to: str, msg: _Message) -> None:
        mtype, body = _encode_message(msg)
        self._out.append(self._messenger.send(max(self._now, 0), to, mtype, body))

    def _deliver(self, kind: str, payload: Any, request_id: str | None) -> None:
        self._out.append(Deliver(kind, payload, request_id))

    def _timer(self, name: str, delay_ms: int) -> None:
        self._out.append(SetTimer(name, delay_ms))

    def _cancel(self, name: str) -> None:
        self._out.append(CancelTimer(name))

    def _reset_election_timer(self) -> None:
        t = self.config.election_timeout_ms
        self._timer(T_ELECTION, self._rng.randrange(t, 2 * t))

    def _set_term(self, term: int) -> None:
        if term != self.term:
            self.term = term
            self.voted_for = None
            self._hard_dirty = True

    def _write_entry(self, index: int, entry: Entry) -> None:
        self._writes[log_key(index)] = encode_cbor([entry.term, entry.data])

    def _in_lease(self) -> bool:
        if not self.config.check_quorum:
            return False
        if self.role is Role.LEADER:
            return True
        return (
            self.leader_id is not None
            and self._contact_at is not None
            and self._now - self._contact_at < self.config.election_timeout_ms
        )

    def _up_to_date(self, last_index: int, last_term: int) -> bool:
        return (last_term, last_index) >= (self.last_term, self.last_index)

    # -- role changes ---------------------------------------------------------------------
    def _become_follower(self, term: int, leader: str | None) -> None:
        was_leader = self.role is Role.LEADER
        self._set_term(term)
        self.role = Role.FOLLOWER
        self.leader_id = leader
        self._votes = []
        if was_leader:
            self._drop_leader_state()
        self._reset_election_timer()

    def _drop_leader_state(self) -> None:
        hint = self.leader_id
        for index in sorted(self._proposals):
            self._deliver(K_UNKNOWN, hint, self._proposals[index][0])
        for read in self._reads_waiting + self._reads + self._reads_ready:
            self._deliver(K_NOT_LEADER, hint, read.request_id)
        if self._transfer is not None:
            self._deliver(K_UNKNOWN, hint, self._transfer[1])
        self._proposals = {}
        self._reads_waiting, self._reads, self._reads_ready = [], [], []
        self._transfer = None
        self._progress = {}
        self._flush_pending = self._round_pending = False
        for name in (T_HEARTBEAT, T_QUORUM, T_FLUSH, T_TRANSFER):
            self._cancel(name)

    def _pre_campaign(self) -> None:
        self.role = Role.PRE_CANDIDATE
        self.leader_id = None
        self._votes = [self._id]
        self._reset_election_timer()
        if self._quorum == 1:
            self._campaign(force=False)
            return
        for p in self._others:
            self._send(p, _Vote(self.term + 1, self.last_index, self.last_term, True, False))

    def _campaign(self, force: bool) -> None:
        self._set_term(self.term + 1)
        self.voted_for = self._id
        self._hard_dirty = True
        self.role = Role.CANDIDATE
        self.leader_id = None
        self._votes = [self._id]
        self._reset_election_timer()
        if self._quorum == 1:
            self._become_leader()
            return
        for p in self._others:
            self._send(p, _Vote(self.term, self.last_index, self.last_term, False, force))

    def _become_leader(self) -> None:
        self.role = Role.LEADER
        self.leader_id = self._id
        self._votes = []
        self._cancel(T_ELECTION)
        self._progress = {p: _Progress(next=self.last_index + 1) for p in self._others}
        self._seq = 0
        self._transfer = None
        self._append_local(Entry(self.term, b""))
        for p in self._others:
            self._send_append(p, heartbeat=True)
        self._timer(T_HEARTBEAT, self.config.heartbeat_ms)
        if self.config.check_quorum:
            self._timer(T_QUORUM, self.config.election_timeout_ms)
        self._deliver(K_LEADER, {"term": self.term}, None)
        self._maybe_commit()

    # -- leader: replication --------------------------------------------------------------
    def _append_local(self, entry: Entry) -> int:
        self.log.append(entry)
        index = self.last_index
        self._write_entry(index, entry)
        return index

    def _send_append(self, peer: str, heartbeat: bool) -> None:
        """Ship entries to ``peer``: one probe at a time while probing; while
        replicating, everything not yet acknowledged (at most ``max_batch`` entries,
        which bounds the window), but only when it holds something never shipped —
        or on a heartbeat, which thereby retransmits whatever was lost."""
        pr = self._progress[peer]
        if not pr.probing:
            pr.next = pr.match + 1
        if pr.next <= self.snap_index:
            if heartbeat or not pr.probe_sent:
                self._send(peer, _Snap(self.term, self.snap_index, self.snap_term,
                                       self.snap_data, self._seq))
                pr.probing, pr.probe_sent = True, True
            return
        if pr.probing and pr.probe_sent and not heartbeat:
            return
        prev = pr.next - 1
        hi = min(self.last_index, prev + self.config.max_batch)
        if not heartbeat and (hi == prev or (not pr.probing and hi <= pr.sent_to)):
            return
        entries = tuple(self.log[prev - self.snap_index : hi - self.snap_index])
        prev_term = self.term_at(prev)
        assert prev_term is not None
        self._send(peer, _Append(self.term, prev, prev_term, entries, self.commit_index,
                                 self._seq))
        if pr.probing:
            pr.probe_sent = True
        else:
            pr.sent_to = max(pr.sent_to, hi)

    def _replicate(self) -> None:
        """Ship new entries now, or at the next flush when batching."""
        if self.config.batch_delay_ms > 0:
            self._schedule_flush()
            return
        for p in self._others:
            self._send_append(p, heartbeat=False)

    def _schedule_flush(self) -> None:
        if not self._flush_pending:
            self._flush_pending = True
            self._timer(T_FLUSH, self.config.batch_delay_ms)

    def _broadcast_round(self) -> None:
        for p in self._others:
            self._send_append(p, heartbeat=True)

    def _maybe_commit(self) -> None:
        matches = sorted([self.last_index] + [pr.match for pr in self._progress.values()],
                         reverse=True)
        n = matches[self._quorum - 1]
        if n <= self.commit_index:
            return
        if not self.config.unsafe_commit_old_terms and self.term_at(n) != self.term:
            return
        self._advance_commit(n)

    def _advance_commit(self, index: int) -> None:
        first_in_term = self.role is Role.LEADER and self.term_at(self.commit_index) != self.term
        self.commit_index = index
        if first_in_term and self.term_at(index) == self.term and self._reads_waiting:
            waiting, self._reads_waiting = self._reads_waiting, []
            self._start_reads(waiting)
        self._apply()

    def _apply(self) -> None:
        while self.last_applied < self.commit_index:
            index = self.last_applied + 1
            entry = self.entry(index)
            if entry is None:  # only possible under the broken variant's truncations
                break
            result = self.state_machine.apply(entry.data) if entry.data else None
            self.last_applied = index
            proposal = self._proposals.pop(index, None)
            if proposal is not None:
                rid, term = proposal
                if term == entry.term:
                    self._deliver(K_OK, result, rid)
                else:
                    self._deliver(K_UNKNOWN, self.leader_id, rid)
        self._serve_reads()
        self._maybe_compact()

    def _maybe_compact(self) -> None:
        if self.last_applied - self.snap_index < self.config.snapshot_threshold:
            return
        index = self.last_applied
        term = self.term_at(index)
        assert term is not None
        for i in range(self.snap_index + 1, index + 1):
            self._writes[log_key(i)] = None
        self.log = self.log[index - self.snap_index :]
        self.snap_index, self.snap_term = index, term
        self.snap_data = self.state_machine.snapshot()
        self._write_snapshot()

    def _write_snapshot(self) -> None:
        # Insert the snapshot before the deletions it makes safe.
        writes: dict[str, bytes | None] = {
            KEY_SNAPSHOT: encode_cbor({"i": self.snap_index, "t": self.snap_term,
                                       "d": self.snap_data})
        }
        writes.update((k, v) for k, v in self._writes.items() if k != KEY_SNAPSHOT)
        self._writes = writes

    # -- leader: reads --------------------------------------------------------------------
    def _start_reads(self, reads: list[_PendingRead]) -> None:
        self._seq += 1
        for r in reads:
            r.index, r.seq = self.commit_index, self._seq
        if self._quorum == 1:
            self._reads_ready.extend(reads)
            self._serve_reads()
            return
        self._reads.extend(reads)
        if self.config.batch_delay_ms > 0:
            self._round_pending = True
            self._schedule_flush()
        else:
            self._broadcast_round()

    def _confirm_reads(self) -> None:
        while self._reads:
            seq = self._reads[0].seq
            acks = 1 + sum(1 for pr in self._progress.values() if pr.acked_seq >= seq)
            if acks < self._quorum:
                break
            while self._reads and self._reads[0].seq <= seq:
                self._reads_ready.append(self._reads.pop(0))
        self._serve_reads()

    def _serve_reads(self) -> None:
        if not self._reads_ready:
            return
        keep: list[_PendingRead] = []
        for r in self._reads_ready:
            if r.index <= self.last_applied:
                self._deliver(K_OK, self.state_machine.query(r.query), r.request_id)
            else:
                keep.append(r)
        self._reads_ready = keep

    # -- events ---------------------------------------------------------------------------
    def _on_timer(self, name: str) -> None:
        if name == T_ELECTION:
            if self.role is Role.LEADER:
                return
            if self.config.pre_vote:
                self._pre_campaign()
            else:
                self._campaign(force=False)
        elif name == T_HEARTBEAT:
            if self.role is not Role.LEADER:
                return
            for p in self._others:
                self._progress[p].probe_sent = False
            self._round_pending = False
            self._broadcast_round()
            self._timer(T_HEARTBEAT, self.config.heartbeat_ms)
        elif name == T_QUORUM:
            if self.role is not Role.LEADER:
                return
            active = 1 + sum(1 for pr in self._progress.values() if pr.active)
            for pr in self._progress.values():
                pr.active = False
            if active < self._quorum:
                self._become_follower(self.term, None)
            else:
                self._timer(T_QUORUM, self.config.election_timeout_ms)
        elif name == T_FLUSH:
            self._flush_pending = False
            if self.role is not Role.LEADER:
                return
            if self._round_pending:
                self._round_pending = False
                self._broadcast_round()
            else:
                for p in self._others:
                    self._send_append(p, heartbeat=False)
        elif name == T_TRANSFER and self.role is Role.LEADER and self._transfer is not None:
            self._deliver(K_FAILED, "leadership transfer timed out", self._transfer[1])
            self._transfer = None
        # Unknown timer names are stale timers of an earlier role: ignore them.

    def _on_request(self, rid: str, payload: Any) -> None:
        if self.role is not Role.LEADER:
            self._deliver(K_NOT_LEADER, self.leader_id, rid)
            return
        if isinstance(payload, TransferLeadership):
            self._on_transfer(rid, payload.target)
            return
        if self._transfer is not None:
            self._deliver(K_NOT_LEADER, self._transfer[0], rid)
            return
        if isinstance(payload, Propose):
            index = self._append_local(Entry(self.term, payload.command))
            self._proposals[index] = (rid, self.term)
            self._maybe_commit()
            self._replicate()
        else:
            read = _PendingRead(rid, payload.query)
            if self.term_at(self.commit_index) != self.term:
                self._reads_waiting.append(read)
            else:
                self._start_reads([read])

    def _on_transfer(self, rid: str, target: str) -> None:
        if target == self._id:
            self._deliver(K_OK, target, rid)
            return
        if self._transfer is not None:
            self._deliver(K_FAILED, "a leadership transfer is already in progress", rid)
            return
        self._transfer = (target, rid)
        self._timer(T_TRANSFER, self.config.election_timeout_ms)
        if self._progress[target].match == self.last_index:
            self._send(target, _TimeoutNow(self.term))
        else:
            self._send_append(target, heartbeat=True)

    def _on_message(self, sender: str, msg: _Message) -> None:
        if isinstance(msg, _Vote):
            self._on_vote(sender, msg)
            return
        if isinstance(msg, _VoteResp):
            self._on_vote_resp(sender, msg)
            return
        if msg.term > self.term:
            leader = sender if isinstance(msg, _Append | _Snap | _TimeoutNow) else None
            self._become_follower(msg.term, leader)
        if isinstance(msg, _Append):
            self._on_append(sender, msg)
        elif isinstance(msg, _Snap):
            self._on_snapshot(sender, msg)
        elif isinstance(msg, _AppendResp | _SnapResp):
            self._on_append_resp(sender, msg)
        elif msg.term == self.term and self.role is Role.FOLLOWER and self.leader_id == sender:
            self._campaign(force=True)  # TimeoutNow from our leader

    def _on_vote(self, sender: str, m: _Vote) -> None:
        lease = self._in_lease() and not m.force
        up = self._up_to_date(m.last_index, m.last_term)
        if m.pre:
            grant = m.term > self.term and not lease and up
            self._send(sender, _VoteResp(m.term if grant else self.term, grant, True))
            return
        if m.term < self.term:
            self._send(sender, _VoteResp(self.term, False, False))
            return
        if m.term > self.term:
            if lease:
                return  # leader stickiness: ignore, do not adopt the term
            self._become_follower(m.term, None)
        grant = self.voted_for in (None, sender) and up
        if grant:
            self.voted_for = sender
            self._hard_dirty = True
            self._reset_election_timer()
        self._send(sender, _VoteResp(self.term, grant, False))

    def _on_vote_resp(self, sender: str, m: _VoteResp) -> None:
        if m.pre:
            if self.role is Role.PRE_CANDIDATE and m.granted and m.term == self.term + 1:
                if sender not in self._votes:
                    self._votes.append(sender)
                if len(self._votes) >= self._quorum:
                    self._campaign(force=False)
            elif not m.granted and m.term > self.term:
                self._become_follower(m.term, None)
            return
        if m.term > self.term:
            self._become_follower(m.term, None)
            return
        if self.role is Role.CANDIDATE and m.term == self.term and m.granted:
            if sender not in self._votes:
                self._votes.append(sender)
            if len(self._votes) >= self._quorum:
                self._become_leader()

    def _follow(self, sender: str) -> None:
        """A valid message of the current term from ``sender``, the leader."""
        if self.role is not Role.FOLLOWER:
            self._become_follower(self.term, sender)
        else:
            self._reset_election_timer()
        self.leader_id = sender
        self._contact_at = self._now

    def _on_append(self, sender: str, m: _Append) -> None:
        if m.term < self.term:
            self._send(sender, _AppendResp(self.term, False, 0, m.prev_index, 1, None, m.seq))
            return
        self._follow(sender)
        prev, prev_term, entries = m.prev_index, m.prev_term, m.entries
        if prev < self.snap_index:
            # Entries up to snap_index are committed, hence identical to the leader's.
            skip = self.snap_index - prev
            if skip >= len(entries):
                self._send(sender, _AppendResp(self.term, True, self.snap_index, 0, 1, None,
                                               m.seq))
                return
            entries = entries[skip:]
            prev, prev_term = self.snap_index, self.snap_term
        elif prev > self.last_index:
            self._send(sender, _AppendResp(self.term, False, 0, prev, self.last_index + 1,
                                           None, m.seq))
            return
        elif self.term_at(prev) != prev_term:
            conflict = self.term_at(prev)
            assert conflict is not None
            first = prev
            while first - 1 > self.snap_index and self.term_at(first - 1) == conflict:
                first -= 1
            self._send(sender, _AppendResp(self.term, False, 0, prev, max(first, 1), conflict,
                                           m.seq))
            return
        for k, e in enumerate(entries):
            index = prev + 1 + k
            if index <= self.last_index:
                if self.term_at(index) == e.term:
                    continue
                for i in range(index, self.last_index + 1):
                    self._writes[log_key(i)] = None
                del self.log[index - self.snap_index - 1 :]
            for j, e2 in enumerate(entries[k:]):
                self.log.append(e2)
                self._write_entry(index + j, e2)
            break
        new_last = prev + len(entries)
        if m.commit > self.commit_index:
            target = min(m.commit, new_last)
            if target > self.commit_index:
                self._advance_commit(target)
        self._send(sender, _AppendResp(self.term, True, new_last, 0, 1, None, m.seq))

    def _on_snapshot(self, sender: str, m: _Snap) -> None:
        if m.term < self.term:
            self._send(sender, _SnapResp(self.term, 0, m.seq))
            return
        self._follow(sender)
        if m.index <= self.commit_index:
            self._send(sender, _SnapResp(self.term, self.commit_index, m.seq))
            return
        keep_from = self.last_index + 1
        if self.term_at(m.index) == m.snap_term:
            self.log = self.log[m.index - self.snap_index :]
            keep_from = m.index + 1
        else:
            self.log = []
        for i in range(self.snap_index + 1, keep_from):
            self._writes[log_key(i)] = None
        self.snap_index, self.snap_term, self.snap_data = m.index, m.snap_term, m.data
        self.state_machine.restore(m.data)
        self.commit_index = self.last_applied = m.index
        self._write_snapshot()
        self._send(sender, _SnapResp(self.term, m.index, m.seq))

    def _on_append_resp(self, sender: str, m: _AppendResp | _SnapResp) -> None:
        if self.role is not Role.LEADER or m.term != self.term:
            return
        pr = self._progress[sender]
        pr.active = True
        if m.seq > pr.acked_seq:
            pr.acked_seq = m.seq
        ok = m.ok if isinstance(m, _AppendResp) else m.match > 0
        if ok:
            if m.match > pr.match:
                pr.match = m.match
            pr.next = max(pr.next, m.match + 1)
            pr.probing = pr.probe_sent = False
            self._maybe_commit()
            if (self._transfer is not None and self._transfer[0] == sender
                    and pr.match == self.last_index):
                self._send(sender, _TimeoutNow(self.term))
            if pr.next <= self.last_index:
                self._send_append(sender, heartbeat=False)
        elif isinstance(m, _AppendResp) and m.reject >= pr.match and (
            pr.probing or m.hint_term is not None
        ):
            # (While replicating, every append starts at ``match``; a "log too short"
            # answer then is a stale reply to an earlier probe: ignore it.)
            if m.hint_term is not None:
                index = min(m.reject, self.last_index)
                while index > self.snap_index and (self.term_at(index) or 0) > m.hint_term:
                    index -= 1
                nxt = index + 1 if self.term_at(index) == m.hint_term else m.hint_index
            else:
                nxt = m.hint_index
            pr.next = max(pr.match + 1, min(nxt, self.last_index + 1))
            pr.probing, pr.probe_sent, pr.sent_to = True, False, pr.match
            self._send_append(sender, heartbeat=False)
        self._confirm_reads()


# -- invariants ---------------------------------------------------------------------------
def _entries(node: RaftNode) -> dict[int, Entry]:
    return {node.snap_index + 1 + k: e for k, e in enumerate(node.log)}


def check_invariants(nodes: Iterable[RaftNode]) -> list[str]:
    """Raft's safety properties over one global state; returns violations (empty: ok).

    * election safety — at most one leader per term;
    * log matching — two logs holding an entry with the same index and term agree on
      every entry up to it (compared where both still hold entries);
    * leader completeness — a leader of term ``T`` holds every entry that a node whose
      term is below ``T`` knows to be committed;
    * state-machine safety — nodes agree on the entry at every index both committed.
    """
    live = list(nodes)
    problems: list[str] = []
    leaders: dict[int, str] = {}
    for n in live:
        if n.role is Role.LEADER:
            other = leaders.setdefault(n.term, n.node_id)
            if other != n.node_id:
                problems.append(f"election safety: {other} and {n.node_id} lead term {n.term}")
    logs = {n.node_id: _entries(n) for n in live}
    for i, a in enumerate(live):
        la = logs[a.node_id]
        for b in live[i + 1 :]:
            lb = logs[b.node_id]
            common = sorted(set(la) & set(lb))
            agree_from: int | None = None
            for idx in reversed(common):
                if la[idx].term == lb[idx].term:
                    agree_from = idx
                    break
            if agree_from is not None:
                for idx in common:
                    if idx > agree_from:
                        break
                    if la[idx] != lb[idx]:
                        problems.append(
                            f"log matching: {a.node_id} and {b.node_id} agree at "
                            f"{agree_from} but differ at {idx}"
                        )
                        break
            upto = min(a.commit_index, b.commit_index)
            for idx in common:
                if idx > upto:
                    break
                if la[idx] != lb[idx]:
                    problems.append(
                        f"state-machine safety: {a.node_id} and {b.node_id} committed "
                        f"different entries at {idx}"
                    )
                    break
    for lead in live:
        if lead.role is not Role.LEADER:
            continue
        for n in live:
            if n.term >= lead.term:
                continue
            for idx, e in logs[n.node_id].items():
                if idx > n.commit_index:
                    break
                if idx <= lead.snap_index:
                    continue
                mine = lead.entry(idx)
                if mine != e:
                    problems.append(
                        f"leader completeness: leader {lead.node_id} (term {lead.term}) "
                        f"lacks entry {idx} committed at {n.node_id}"
                    )
                    break
    return problems


class RaftMonitor:
    """Checks Raft's safety properties *across time*: feed it the live nodes after
    every step (or periodically). It remembers the leader of every term and every
    committed entry ever observed, so violations by nodes that later crashed or were
    overwritten are still caught. ``violations`` lists them (first ones first)."""

    def __init__(self) -> None:
        self.leaders: dict[int, str] = {}
        self.committed: dict[int, Entry] = {}
        self.violations: list[str] = []
        self._checked: dict[str, tuple[int, int]] = {}  # node -> (object id, index)

    def observe(self, nodes: Iterable[RaftNode]) -> list[str]:
        live = list(nodes)
        found = check_invariants(live)
        for n in live:
            if n.role is Role.LEADER:
                prev = self.leaders.setdefault(n.term, n.node_id)
                if prev != n.node_id:
                    found.append(f"election safety: {prev} and {n.node_id} led term {n.term}")
            # Committed entries never change, so each node object is checked once per index.
            ident, done = self._checked.get(n.node_id, (0, 0))
            if ident != id(n) or done > n.commit_index:
                done = 0
            for idx in range(max(n.snap_index, done) + 1, n.commit_index + 1):
                e = n.entry(idx)
                if e is None:
                    break
                seen = self.committed.setdefault(idx, e)
                if seen.term != e.term or seen.data != e.data:
                    found.append(
                        f"state-machine safety: {n.node_id} committed term {e.term} at {idx}, "
                        f"earlier term {seen.term} was committed there"
                    )
                done = idx
            self._checked[n.node_id] = (id(n), done)
        for text in found:
            if text not in self.violations:
                self.violations.append(text)
        return found
