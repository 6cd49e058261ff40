"""The Raft member: :class:`RaftNode` (see the package docstring for the protocol)."""

from __future__ import annotations

import hashlib
import random
from collections.abc import Mapping
from typing import Any

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
from vsm_phoenix.protocol.raft.config import (
    ENTRY_OVERHEAD_BYTES,
    K_FAILED,
    K_LEADER,
    K_NOT_LEADER,
    K_OK,
    K_UNKNOWN,
    KEY_STATE,
    T_ELECTION,
    T_FLUSH,
    T_HEARTBEAT,
    T_QUORUM,
    T_TRANSFER,
    RaftConfig,
    Role,
)
from vsm_phoenix.protocol.raft.log import Entry, RaftLog, load_log
from vsm_phoenix.protocol.raft.membership import Membership, MembershipError
from vsm_phoenix.protocol.raft.messages import (
    AppendEntries,
    AppendResponse,
    InstallSnapshot,
    Message,
    RequestVote,
    SnapshotResponse,
    TimeoutNow,
    VoteResponse,
    decode_message,
    encode_message,
)
from vsm_phoenix.protocol.raft.progress import PendingRead, Progress
from vsm_phoenix.protocol.raft.quorum import JointConfig, VoteResult
from vsm_phoenix.protocol.raft.requests import Propose, Read, Reconfigure, TransferLeadership
from vsm_phoenix.protocol.raft.statemachine import RecordingStateMachine, StateMachine

__all__ = ["RaftNode"]


def _bad(mtype: str, why: str) -> RemoteProtocolError:
    return RemoteProtocolError(f"{mtype}: {why}")


def _plain(value: Any) -> Any:
    """``value`` with sets as sorted lists and tuples as lists (for canonical CBOR)."""
    if isinstance(value, frozenset | set):
        return sorted((_plain(v) for v in value), key=repr)
    if isinstance(value, tuple | list):
        return [_plain(v) for v in value]
    return value


class RaftNode:
    """One Raft member (see the package docstring). Deterministic given its constructor
    arguments and event sequence; :meth:`state_key` digests its full protocol state."""

    def __init__(
        self,
        node_id: str,
        rng: random.Random,
        config: RaftConfig,
        state_machine: StateMachine | None = None,
    ) -> None:
        if not isinstance(node_id, str) or not node_id:
            raise LocalProtocolError("node_id must be a non-empty string")
        self._id = node_id
        self._rng = rng
        self.config = config
        self._messenger = Messenger(node_id, rng, max_drift_ms=config.max_clock_drift_ms,
                                    refuse_drift=False)
        self._bootstrap = config.bootstrap
        # The configuration in force (the log's latest) and what follows from it.
        self._membership = self._bootstrap
        self._others: tuple[str, ...] = ()  # every other member (replication targets)
        self._electorate: tuple[str, ...] = ()  # every other voter (vote requests)
        self._quorum = JointConfig.of(config.peers)
        self.state_machine: StateMachine = (
            state_machine if state_machine is not None else RecordingStateMachine()
        )
        self._started = False
        self._now = 0
        # Persistent state.
        self.term = 0
        self.voted_for: str | None = None
        self._log = RaftLog(self.state_machine.snapshot(), self._bootstrap)
        # Volatile state.
        self.role = Role.FOLLOWER
        self.leader_id: str | None = None
        self.commit_index = 0
        self.last_applied = 0
        self._votes: dict[str, bool] = {}
        self._lease = False  # heard from the leader within one election timeout
        # A snapshot arriving in chunks: (index, term, the bytes so far); volatile.
        self._snap_buf: tuple[int, int, bytearray] | None = None
        # Leader state.
        self._progress: dict[str, Progress] = {}
        self._seq = 0
        self._reads_waiting: list[PendingRead] = []  # for a commit in the current term
        self._reads: list[PendingRead] = []  # for a quorum of acks of their round
        self._reads_ready: list[PendingRead] = []  # for last_applied >= index
        self._proposals: dict[int, tuple[str, int]] = {}
        self._conf_waiting: str | None = None  # request id of a change in its joint stage
        self._transfer: tuple[str, str | None] | None = None
        self._flush_pending = False
        self._round_pending = False
        # Effects of the current step.
        self._hard_dirty = False
        self._out: list[Effect] = []
        self._sync_membership(force=True)

    # -- introspection -----------------------------------------------------------------
    @property
    def node_id(self) -> str:
        return self._id

    def __repr__(self) -> str:
        return (f"RaftNode({self._id!r}, {self.role.value}, term={self.term}, "
                f"last={self.last_index}, commit={self.commit_index})")

    @property
    def log(self) -> list[Entry]:
        """The entries after the snapshot: ``log[k]`` is at ``snap_index + 1 + k``."""
        return self._log.entries

    @property
    def snap_index(self) -> int:
        return self._log.snap_index

    @property
    def snap_term(self) -> int:
        return self._log.snap_term

    @property
    def snap_data(self) -> bytes:
        return self._log.snap_data

    @property
    def last_index(self) -> int:
        return self._log.last_index

    @property
    def last_term(self) -> int:
        return self._log.last_term

    def term_at(self, index: int) -> int | None:
        """The term of the entry at ``index``; ``None`` when compacted away or absent."""
        return self._log.term_at(index)

    def entry(self, index: int) -> Entry | None:
        return self._log.entry(index)

    @property
    def is_leader(self) -> bool:
        return self.role is Role.LEADER

    @property
    def membership(self) -> Membership:
        """The configuration in force: the latest in this node's log, committed or not."""
        return self._membership

    def membership_at(self, index: int) -> Membership:
        """The configuration in force at log ``index`` (``snap_index <= index``)."""
        if not self._log.snap_index <= index:
            raise LocalProtocolError(f"index {index} is compacted away")
        return self._log.config_at(index)

    @property
    def membership_index(self) -> int:
        """The log index of :attr:`membership` (its entry, or the snapshot's index)."""
        return self._log.config_index

    def match_index(self, peer: str) -> int | None:
        """At a leader, the highest index known replicated on ``peer`` (a member);
        ``None`` elsewhere. A learner is promoted only once this is within
        ``RaftConfig.max_promotion_lag_entries`` of :attr:`last_index`."""
        pr = self._progress.get(peer) if self.role is Role.LEADER else None
        return None if pr is None else pr.match

    def state_key(self) -> tuple[Any, ...]:
        """A hashable snapshot of the whole protocol state, for model checkers: the
        persistent state, volatile state, leader bookkeeping, the state machine's
        snapshot and the leader lease (a timer, never a clock reading). Node ids
        appear only as whole ``str`` values, so a checker may rename them (symmetry
        reduction). Left out, as labels that never drive a
        decision under abstract time: the injected generator (timer delays, message
        ids) and the HLC. Equal keys, equal future behaviour."""
        log = self._log
        return (
            self.role.value, self.term, self.voted_for, self.leader_id,
            self.commit_index, self.last_applied, log.snap_index, log.snap_term,
            log.snap_data,
            tuple((e.term, e.data, None if e.config is None else e.config.key())
                  for e in log.entries),
            self.state_machine.snapshot(),
            frozenset(v for v, granted in self._votes.items() if granted),
            tuple((p, self._progress[p].key()) for p in sorted(self._progress)),
            self._seq,
            tuple((r.request_id, r.index, r.seq) for r in self._reads_waiting),
            tuple((r.request_id, r.index, r.seq) for r in self._reads),
            tuple((r.request_id, r.index, r.seq) for r in self._reads_ready),
            tuple(sorted((i, rid, t) for i, (rid, t) in self._proposals.items())),
            self._transfer, self._flush_pending, self._round_pending, self._started,
            self._in_lease(), self._lease, log.snap_config.key(), self._conf_waiting,
            None if self._snap_buf is None else (self._snap_buf[0], self._snap_buf[1],
                                                 bytes(self._snap_buf[2])),
        )

    def state_digest(self) -> bytes:
        """A 32-byte BLAKE2b digest of :meth:`state_key` (canonical CBOR), for storing
        many states compactly."""
        return hashlib.blake2b(encode_cbor(_plain(self.state_key())),
                               digest_size=32).digest()

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
        self._log.writes = {}
        self._hard_dirty = False
        self._out = []

    def _drain(self) -> list[Effect]:
        effects: list[Effect] = []
        if self._hard_dirty:
            effects.append(Persist(KEY_STATE, encode_cbor({"t": self.term, "v": self.voted_for})))
        effects.extend(Persist(k, v) for k, v in self._log.writes.items())
        effects.extend(self._out)
        self._log.writes, self._out, self._hard_dirty = {}, [], False
        return effects

    # -- validation (no state changes) --------------------------------------------------
    def _check_envelope(self, env: Envelope) -> Message:
        # Any other sender may be a member: a configuration this node has not seen yet
        # may include it (who may send at all is the transport's roster's business).
        if env.recipient != self._id:
            raise RemoteProtocolError(f"{env.type}: not addressed to {self._id!r}")
        if env.sender == self._id or not env.sender:
            raise RemoteProtocolError(f"{env.type}: bad sender {env.sender[:64]!r}")
        msg = decode_message(env.type, env.payload)
        if isinstance(msg, InstallSnapshot) and self._continues(msg):
            if msg.offset + len(msg.data) > self.config.max_snapshot_bytes:
                raise _bad(env.type, f"snapshot larger than {self.config.max_snapshot_bytes} "
                                     "bytes (max_snapshot_bytes)")
            if msg.done:
                try:
                    self.state_machine.check_snapshot(self._assembled(msg))
                except DecodeError as exc:
                    raise _bad(env.type, f"bad snapshot: {exc}") from None
        if (isinstance(msg, AppendEntries | InstallSnapshot) and self.role is Role.LEADER
                and msg.term == self.term):
            raise _bad(env.type, "a second leader in this node's term")
        if isinstance(msg, AppendResponse | SnapshotResponse) and msg.term == self.term and (
            self.role is Role.LEADER
            and (msg.ok if isinstance(msg, AppendResponse) else True)
            and msg.match > self.last_index
        ):
            raise _bad(env.type, "acknowledges entries this leader never had")
        return msg

    def _check_request(self, payload: Any) -> None:
        if isinstance(payload, Propose):
            if not isinstance(payload.command, bytes) or not payload.command:
                raise LocalProtocolError("Propose.command must be non-empty bytes")
            if len(payload.command) > self.config.max_command_bytes:
                raise LocalProtocolError(
                    f"Propose.command of {len(payload.command)} bytes exceeds "
                    f"max_command_bytes={self.config.max_command_bytes}")
        elif isinstance(payload, Read):
            if not isinstance(payload.query, bytes):
                raise LocalProtocolError("Read.query must be bytes")
        elif isinstance(payload, TransferLeadership):
            if not isinstance(payload.target, str) or not payload.target:
                raise LocalProtocolError("transfer target must be a non-empty node id")
        elif isinstance(payload, Reconfigure):
            if not isinstance(payload.joint, bool):
                raise LocalProtocolError("Reconfigure.joint must be a bool")
            try:
                Membership.of(payload.voters, payload.learners)
            except MembershipError as exc:
                raise LocalProtocolError(f"Reconfigure: {exc}") from None
        else:
            raise LocalProtocolError(f"unsupported request {type(payload).__name__}")

    def _continues(self, m: InstallSnapshot) -> bool:
        """Whether chunk ``m`` starts a snapshot or continues the one being received
        exactly where it stands (same index and term: the same snapshot, whoever
        sends it, since it holds committed state)."""
        if m.offset == 0:
            return True
        buf = self._snap_buf
        return (buf is not None and buf[0] == m.index and buf[1] == m.snap_term
                and len(buf[2]) == m.offset)

    def _assembled(self, m: InstallSnapshot) -> bytes:
        """The whole snapshot once the last chunk ``m`` arrives (``_continues(m)``)."""
        if m.offset == 0 or self._snap_buf is None:
            return m.data
        return bytes(self._snap_buf[2]) + m.data

    def _load(self, persisted: Mapping[str, bytes]) -> tuple[int, str | None, RaftLog]:
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
            log = load_log(persisted, self.state_machine.snapshot(),
                           self.state_machine.check_snapshot, self._bootstrap)
        except (DecodeError, ValueError) as exc:
            raise DecodeError(f"corrupt persisted Raft state: {exc}") from None
        return term, vote, log

    def _install_loaded(self, term: int, vote: str | None, log: RaftLog) -> None:
        self.term, self.voted_for = term, vote
        self._log = log
        self.state_machine.restore(log.snap_data)
        self.commit_index = self.last_applied = log.snap_index
        self._sync_membership()

    def _sync_membership(self, force: bool = False) -> list[str]:
        """Adopt the log's configuration (called after every change of the log): the
        quorum, who to replicate to and who to ask for votes; a leader starts or stops
        tracking members. A server being removed is still replicated to until its
        removal commits, so that it normally learns of it (and stops campaigning)."""
        conf = self._log.config
        if conf == self._membership and not force:
            return []
        self._membership = conf
        self._quorum = conf.quorum
        committed = self._log.config_at(max(self.commit_index, self._log.snap_index))
        self._others = tuple(sorted((conf.members | committed.members) - {self._id}))
        self._electorate = tuple(sorted(conf.all_voters - {self._id}))
        if self.role is not Role.LEADER:
            return []
        for p in [p for p in self._progress if p not in self._others]:
            del self._progress[p]
        added = [p for p in self._others if p not in self._progress]
        for p in added:
            self._progress[p] = Progress(next=self.last_index + 1)
        if self._transfer is not None and not conf.is_voter(self._transfer[0]):
            self._deliver(K_FAILED, "the transfer target is no longer a voter",
                          self._transfer[1])
            self._transfer = None
        return added

    # -- effect helpers -------------------------------------------------------------------
    def _send(self, to: str, msg: Message) -> None:
        mtype, body = encode_message(msg)
        self._out.append(self._messenger.send(max(self._now, 0), to, mtype, body))

    def _deliver(self, kind: str, payload: Any, request_id: str | None) -> None:
        self._out.append(Deliver(kind, payload, request_id))

    def _timer(self, name: str, delay_ms: int) -> None:
        self._out.append(SetTimer(name, delay_ms))

    def _cancel(self, name: str) -> None:
        self._out.append(CancelTimer(name))

    def _reset_election_timer(self, contact: bool = False) -> None:
        """(Re)arm the election timer. After ``contact`` with the leader under
        check-quorum the timer first measures the lease (exactly one election
        timeout, during which votes for other candidates are refused) and, when it
        fires, the random rest; otherwise it runs a random ``[T, 2T)`` at once. The
        total is the same ``[T, 2T)`` either way, and no clock reading is involved."""
        t = self.config.election_timeout_ms
        if contact and self.config.check_quorum:
            self._lease = True
            self._timer(T_ELECTION, t)
            return
        self._lease = False
        self._timer(T_ELECTION, self._rng.randrange(t, 2 * t))

    def _set_term(self, term: int) -> None:
        if term != self.term:
            self.term = term
            self.voted_for = None
            self._hard_dirty = True

    def _in_lease(self) -> bool:
        """Whether this node holds on to its leader (check-quorum): it leads, or it
        heard from its leader less than one election timeout ago, by its own timer."""
        if not self.config.check_quorum:
            return False
        if self.role is Role.LEADER:
            return True
        return self.leader_id is not None and self._lease

    # -- role changes ---------------------------------------------------------------------
    def _become_follower(self, term: int, leader: str | None, contact: bool = False) -> None:
        was_leader = self.role is Role.LEADER
        self._set_term(term)
        self.role = Role.FOLLOWER
        self.leader_id = leader
        self._votes = {}
        if was_leader:
            self._drop_leader_state()
        self._reset_election_timer(contact)

    def _drop_leader_state(self) -> None:
        hint = self.leader_id
        for index in sorted(self._proposals):
            self._deliver(K_UNKNOWN, hint, self._proposals[index][0])
        for read in self._reads_waiting + self._reads + self._reads_ready:
            self._deliver(K_NOT_LEADER, hint, read.request_id)
        if self._transfer is not None:
            self._deliver(K_UNKNOWN, hint, self._transfer[1])
        if self._conf_waiting is not None:
            self._deliver(K_UNKNOWN, hint, self._conf_waiting)
            self._conf_waiting = None
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
        self._votes = {self._id: True}
        self._reset_election_timer()
        if self._quorum.vote_result(self._votes) is VoteResult.WON:
            self._campaign(force=False)
            return
        vote = RequestVote(term=self.term + 1, last_index=self.last_index,
                           last_term=self.last_term, pre=True, force=False)
        for p in self._electorate:
            self._send(p, vote)

    def _campaign(self, force: bool) -> None:
        self._set_term(self.term + 1)
        self.voted_for = self._id
        self._hard_dirty = True
        self.role = Role.CANDIDATE
        self.leader_id = None
        self._votes = {self._id: True}
        self._reset_election_timer()
        if self._quorum.vote_result(self._votes) is VoteResult.WON:
            self._become_leader()
            return
        vote = RequestVote(term=self.term, last_index=self.last_index,
                           last_term=self.last_term, pre=False, force=force)
        for p in self._electorate:
            self._send(p, vote)

    def _become_leader(self) -> None:
        self.role = Role.LEADER
        self.leader_id = self._id
        self._votes = {}
        self._lease = False
        self._cancel(T_ELECTION)
        self._seq = 0
        self._transfer = None
        self._conf_waiting = None
        self._progress = {}
        self._sync_membership(force=True)  # tracks every member, from last_index + 1
        self._log.append(Entry(self.term, b""))
        for p in self._others:
            self._send_append(p, heartbeat=True)
        self._timer(T_HEARTBEAT, self.config.heartbeat_ms)
        if self.config.check_quorum:
            self._timer(T_QUORUM, self.config.election_timeout_ms)
        self._deliver(K_LEADER, {"term": self.term}, None)
        self._maybe_commit()

    # -- leader: replication --------------------------------------------------------------
    def _send_append(self, peer: str, heartbeat: bool) -> None:
        """Ship entries to ``peer``: one probe at a time while probing; while
        replicating, everything not yet acknowledged (at most ``max_batch`` entries,
        which bounds the window), but only when it holds something never shipped —
        or on a heartbeat, which thereby retransmits whatever was lost."""
        pr = self._progress[peer]
        log = self._log
        if not pr.probing:
            pr.next = pr.match + 1
        if pr.next <= log.snap_index:
            if (pr.snap is None or pr.snap[0] < pr.next
                    or (pr.snap_offset == 0 and pr.snap[0] < log.snap_index)):
                # A snapshot, from its first byte: the latest, unless one is under way.
                pr.snap = (log.snap_index, log.snap_term, log.snap_config, log.snap_data)
                pr.snap_index, pr.snap_offset = log.snap_index, 0
                pr.snap_in_flight = pr.snap_stalled = False
            if heartbeat and pr.snap_in_flight and not pr.snap_stalled:
                pr.snap_stalled = True  # in flight: resend at the next heartbeat if still so
                return
            if heartbeat or not pr.probe_sent:
                # One chunk in flight per follower; the next goes out when this one is
                # acknowledged, and a heartbeat interval without an acknowledgement
                # resends it. No message is ever larger than a chunk, so heartbeats
                # never wait behind a snapshot.
                pr.snap_in_flight, pr.snap_stalled = True, False
                index, term, config, data = pr.snap
                off = pr.snap_offset
                chunk = data[off : off + self.config.snapshot_chunk_bytes]
                self._send(peer, InstallSnapshot(
                    term=self.term, index=index, snap_term=term, config=config, offset=off,
                    data=chunk, done=off + len(chunk) >= len(data), seq=self._seq))
                pr.probing, pr.probe_sent = True, True
            return
        if pr.probing and pr.probe_sent and not heartbeat:
            return
        prev = pr.next - 1
        entries = self._append_entries(prev, min(log.last_index, prev + self.config.max_batch))
        hi = prev + len(entries)
        if not heartbeat and (hi == prev or (not pr.probing and hi <= pr.sent_to)):
            return
        prev_term = log.term_at(prev)
        assert prev_term is not None
        self._send(peer, AppendEntries(term=self.term, prev_index=prev, prev_term=prev_term,
                                       entries=entries, commit=self.commit_index,
                                       seq=self._seq))
        if pr.probing:
            pr.probe_sent = True
        else:
            pr.sent_to = max(pr.sent_to, hi)

    def _append_entries(self, prev: int, hi: int) -> tuple[Entry, ...]:
        """The entries an append after ``prev`` carries: up to ``hi``, and no more than
        fit in ``max_append_bytes`` -- but always one, if any."""
        entries = self._log.between(prev, hi)
        budget = self.config.max_append_bytes
        for n, entry in enumerate(entries):
            budget -= len(entry.data) + ENTRY_OVERHEAD_BYTES
            if budget < 0 and n > 0:
                return entries[:n]
        return entries

    def _replicate(self) -> None:
        """Ship new entries now, or at the next flush when batching."""
        if self.role is not Role.LEADER:
            return
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
        acked = {p: pr.match for p, pr in self._progress.items()}
        acked[self._id] = self.last_index
        n = self._quorum.committed_index(acked)
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
        if self.role is Role.LEADER and self._log.config_index <= self.commit_index:
            self._config_committed()

    def _config_committed(self) -> None:
        """The leader's configuration is committed: leave a joint one (append its
        second half), or, when this leader is no longer a voter, hand over and step
        down (thesis §4.2.2)."""
        conf = self._membership
        self._sync_membership(force=True)  # stop replicating to removed servers
        if conf.joint:
            if self.term_at(self.commit_index) != self.term:
                return  # after an election: once this leader's own no-op commits
            index = self._log.append(Entry(self.term, b"", conf.leave_joint()))
            if self._conf_waiting is not None:
                self._proposals[index] = (self._conf_waiting, self.term)
                self._conf_waiting = None
            self._sync_membership()
            self._maybe_commit()
            self._replicate()
            return
        if conf.is_voter(self._id):
            return
        # Removed (or demoted to learner): tell everyone the commit index, ask the
        # most up-to-date voter to campaign at once, and stop leading.
        self._broadcast_round()
        best = max(sorted(conf.voters), key=lambda p: self._progress[p].match
                   if p in self._progress else -1)
        if best in self._progress and self._progress[best].match == self.last_index:
            self._send(best, TimeoutNow(term=self.term))
        self._become_follower(self.term, None)

    def _apply(self) -> None:
        while self.last_applied < self.commit_index:
            index = self.last_applied + 1
            entry = self._log.entry(index)
            if entry is None:  # only possible under the broken variant's truncations
                break
            if entry.config is not None:
                result: Any = entry.config.describe()
            else:
                result = self.state_machine.apply(entry.data) if entry.data else None
            self.last_applied = index
            proposal = self._proposals.pop(index, None)
            if proposal is not None:
                rid, term = proposal
                if entry.config is not None and entry.config.joint and term == entry.term:
                    self._conf_waiting = rid  # answered when the change completes
                elif term == entry.term:
                    self._deliver(K_OK, result, rid)
                else:
                    self._deliver(K_UNKNOWN, self.leader_id, rid)
        self._serve_reads()
        self._maybe_compact()

    def _maybe_compact(self) -> None:
        if self.last_applied - self._log.snap_index < self.config.snapshot_threshold:
            return
        self._log.compact(self.last_applied, self.state_machine.snapshot())

    # -- leader: reads --------------------------------------------------------------------
    def _start_reads(self, reads: list[PendingRead]) -> None:
        self._seq += 1
        for r in reads:
            r.index, r.seq = self.commit_index, self._seq
        if self._quorum.recently_active((self._id,)):
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
            acks = [p for p, pr in self._progress.items() if pr.acked_seq >= seq]
            acks.append(self._id)
            if not self._quorum.recently_active(acks):
                break
            while self._reads and self._reads[0].seq <= seq:
                self._reads_ready.append(self._reads.pop(0))
        self._serve_reads()

    def _serve_reads(self) -> None:
        if not self._reads_ready:
            return
        keep: list[PendingRead] = []
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
            if self._lease:
                # The lease ran out: campaign after the random rest of the timeout.
                self._lease = False
                self._timer(T_ELECTION, self._rng.randrange(self.config.election_timeout_ms))
                return
            if not self._membership.is_voter(self._id):
                self._reset_election_timer()  # learners and non-members never campaign
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
            active = [p for p, pr in self._progress.items() if pr.active]
            active.append(self._id)
            for pr in self._progress.values():
                pr.active = False
            if not self._quorum.recently_active(active):
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
        if isinstance(payload, Reconfigure):
            self._on_reconfigure(rid, payload)
            return
        if isinstance(payload, Propose):
            index = self._log.append(Entry(self.term, payload.command))
            self._proposals[index] = (rid, self.term)
            self._maybe_commit()
            self._replicate()
        else:
            read = PendingRead(rid, payload.query)
            if self.term_at(self.commit_index) != self.term:
                self._reads_waiting.append(read)
            else:
                self._start_reads([read])

    def _on_reconfigure(self, rid: str, r: Reconfigure) -> None:
        cur = self._membership
        target = Membership.of(r.voters, r.learners)
        if cur.joint or self._log.config_index > self.commit_index:
            self._deliver(K_FAILED, "a configuration change is in progress", rid)
            return
        if (not self.config.unsafe_reconfigure_early
                and self.term_at(self.commit_index) != self.term):
            # Ongaro's 2015 fix: a configuration decided by an earlier leader may still
            # be uncommitted elsewhere; change nothing before this term commits.
            self._deliver(K_FAILED, "this leader has not committed an entry of its term yet",
                          rid)
            return
        if target == cur:
            self._deliver(K_OK, cur.describe(), rid)
            return
        behind = sorted(p for p in target.voters & cur.learners if not self._caught_up(p))
        if behind:
            self._deliver(K_FAILED, f"learner {behind[0][:64]!r} has not caught up "
                                    "(max_promotion_lag_entries); retry later", rid)
            return
        if target.voters == cur.voters or not r.joint:
            if len(target.voters ^ cur.voters) > 1:
                self._deliver(K_FAILED, "a change without the joint stage adds or removes "
                                        "at most one voter", rid)
                return
            new = target
        else:
            new = Membership(target.voters, cur.voters, target.learners)
        index = self._log.append(Entry(self.term, b"", new))
        self._proposals[index] = (rid, self.term)
        added = self._sync_membership()
        self._maybe_commit()
        self._replicate()
        for p in added:  # probe the newcomers now rather than at the next heartbeat
            if self.role is Role.LEADER and p in self._progress:
                self._send_append(p, heartbeat=True)

    def _caught_up(self, learner: str) -> bool:
        """Whether ``learner`` may be promoted (etcd's ``isLearnerReady``): it has
        acknowledged entries and lags this leader's log by at most
        ``max_promotion_lag_entries``."""
        pr = self._progress.get(learner)
        return (pr is not None and pr.match >= 1
                and self.last_index - pr.match <= self.config.max_promotion_lag_entries)

    def _on_transfer(self, rid: str, target: str) -> None:
        if target == self._id:
            self._deliver(K_OK, target, rid)
            return
        if not self._membership.is_voter(target):
            self._deliver(K_FAILED, f"transfer target {target[:64]!r} is not a voter", rid)
            return
        if self._transfer is not None:
            self._deliver(K_FAILED, "a leadership transfer is already in progress", rid)
            return
        self._transfer = (target, rid)
        self._timer(T_TRANSFER, self.config.election_timeout_ms)
        if self._progress[target].match == self.last_index:
            self._send(target, TimeoutNow(term=self.term))
        else:
            self._send_append(target, heartbeat=True)

    def _on_message(self, sender: str, msg: Message) -> None:
        if isinstance(msg, RequestVote):
            self._on_vote(sender, msg)
            return
        if isinstance(msg, VoteResponse):
            self._on_vote_resp(sender, msg)
            return
        if msg.term > self.term:
            from_leader = isinstance(msg, AppendEntries | InstallSnapshot | TimeoutNow)
            leader = sender if from_leader else None
            self._become_follower(msg.term, leader)
        if isinstance(msg, AppendEntries):
            self._on_append(sender, msg)
        elif isinstance(msg, InstallSnapshot):
            self._on_snapshot(sender, msg)
        elif isinstance(msg, AppendResponse | SnapshotResponse):
            self._on_append_resp(sender, msg)
        elif (msg.term == self.term and self.role is Role.FOLLOWER and self.leader_id == sender
              and self._membership.is_voter(self._id)):
            self._campaign(force=True)  # TimeoutNow from our leader

    def _on_vote(self, sender: str, m: RequestVote) -> None:
        lease = self._in_lease() and not m.force
        up = self._log.up_to_date(m.last_index, m.last_term)
        if m.pre:
            grant = m.term > self.term and not lease and up
            self._send(sender, VoteResponse(term=m.term if grant else self.term, granted=grant,
                                            pre=True))
            return
        if m.term < self.term:
            self._send(sender, VoteResponse(term=self.term, granted=False, pre=False))
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
        self._send(sender, VoteResponse(term=self.term, granted=grant, pre=False))

    def _on_vote_resp(self, sender: str, m: VoteResponse) -> None:
        if m.pre:
            if self.role is Role.PRE_CANDIDATE and m.granted and m.term == self.term + 1:
                self._votes[sender] = True
                if self._quorum.vote_result(self._votes) is VoteResult.WON:
                    self._campaign(force=False)
            elif not m.granted and m.term > self.term:
                self._become_follower(m.term, None)
            return
        if m.term > self.term:
            self._become_follower(m.term, None)
            return
        if self.role is Role.CANDIDATE and m.term == self.term and m.granted:
            self._votes[sender] = True
            if self._quorum.vote_result(self._votes) is VoteResult.WON:
                self._become_leader()

    def _follow(self, sender: str) -> None:
        """A valid message of the current term from ``sender``, the leader."""
        if self.role is not Role.FOLLOWER:
            self._become_follower(self.term, sender, contact=True)
        else:
            self._reset_election_timer(contact=True)
        self.leader_id = sender

    def _reply_append(self, to: str, m: AppendEntries, ok: bool, match: int = 0,
                      hint_index: int = 1, hint_term: int | None = None) -> None:
        self._send(to, AppendResponse(term=self.term, ok=ok, match=match,
                                      reject=0 if ok else m.prev_index, hint_index=hint_index,
                                      hint_term=hint_term, seq=m.seq))

    def _on_append(self, sender: str, m: AppendEntries) -> None:
        if m.term < self.term:
            self._reply_append(sender, m, False)
            return
        self._follow(sender)
        log = self._log
        prev, prev_term, entries = m.prev_index, m.prev_term, m.entries
        if prev < log.snap_index:
            # Entries up to snap_index are committed, hence identical to the leader's.
            skip = log.snap_index - prev
            if skip >= len(entries):
                self._reply_append(sender, m, True, match=log.snap_index)
                return
            entries = entries[skip:]
            prev, prev_term = log.snap_index, log.snap_term
        elif prev > log.last_index:
            self._reply_append(sender, m, False, hint_index=log.last_index + 1)
            return
        elif log.term_at(prev) != prev_term:
            conflict = log.term_at(prev)
            assert conflict is not None
            first = prev
            while first - 1 > log.snap_index and log.term_at(first - 1) == conflict:
                first -= 1
            self._reply_append(sender, m, False, hint_index=max(first, 1), hint_term=conflict)
            return
        for k, e in enumerate(entries):
            index = prev + 1 + k
            if index <= log.last_index:
                if log.term_at(index) == e.term:
                    continue
                log.truncate_from(index)
            for e2 in entries[k:]:
                log.append(e2)
            break
        self._sync_membership()
        new_last = prev + len(entries)
        if m.commit > self.commit_index:
            target = min(m.commit, new_last)
            if target > self.commit_index:
                self._advance_commit(target)
        self._reply_append(sender, m, True, match=new_last)

    def _on_snapshot(self, sender: str, m: InstallSnapshot) -> None:
        def answer(match: int, held: int = 0) -> None:
            self._send(sender, SnapshotResponse(term=self.term, match=match, index=m.index,
                                                offset=held, seq=m.seq))

        if m.term < self.term:
            answer(0)
            return
        self._follow(sender)
        if m.index <= self.commit_index:
            self._snap_buf = None
            answer(self.commit_index)
            return
        if not self._continues(m):
            # A lost or reordered chunk: say where this snapshot stands (0: from the top).
            buf = self._snap_buf
            same = buf is not None and (buf[0], buf[1]) == (m.index, m.snap_term)
            answer(0, len(buf[2]) if same and buf is not None else 0)
            return
        if not m.done:
            if m.offset == 0:
                self._snap_buf = (m.index, m.snap_term, bytearray(m.data))
            else:
                assert self._snap_buf is not None
                self._snap_buf[2].extend(m.data)
            answer(0, m.offset + len(m.data))
            return
        data = self._assembled(m)
        self._snap_buf = None
        self._log.install(m.index, m.snap_term, data, m.config)
        self.state_machine.restore(data)
        self.commit_index = self.last_applied = m.index
        self._sync_membership()
        answer(m.index)

    def _on_append_resp(self, sender: str, m: AppendResponse | SnapshotResponse) -> None:
        if self.role is not Role.LEADER or m.term != self.term:
            return
        pr = self._progress.get(sender)
        if pr is None:
            return  # not (or no longer) a member: a late answer
        pr.active = True
        if m.seq > pr.acked_seq:
            pr.acked_seq = m.seq
        ok = m.ok if isinstance(m, AppendResponse) else m.match > 0
        if (isinstance(m, SnapshotResponse) and not ok and pr.snap is not None
                and m.index == pr.snap[0] and pr.next <= m.index):
            # A chunk acknowledged: resume where the follower stands. The follower holds
            # at least what it acknowledged, unless it lost its chunks (a restart, or
            # another snapshot begun): then it answers 0. A smaller non-zero offset is
            # an acknowledgement overtaken by a later one.
            if m.offset > pr.snap_offset or (m.offset == 0 and pr.snap_offset > 0):
                pr.snap_offset = min(m.offset, len(pr.snap[3]))
                pr.probe_sent = pr.snap_in_flight = False
                self._send_append(sender, heartbeat=False)
        elif ok:
            if isinstance(m, SnapshotResponse):
                pr.snap, pr.snap_index, pr.snap_offset = None, 0, 0
                pr.snap_in_flight = pr.snap_stalled = False
            if m.match > pr.match:
                pr.match = m.match
            pr.next = max(pr.next, m.match + 1)
            if pr.probing:  # what was shipped before the probe proves nothing now
                pr.sent_to = pr.match
            pr.probing = pr.probe_sent = False
            self._maybe_commit()
            if self.role is not Role.LEADER:
                return  # it committed its own removal and stepped down
            if (self._transfer is not None and self._transfer[0] == sender
                    and pr.match == self.last_index):
                self._send(sender, TimeoutNow(term=self.term))
            if pr.next <= self.last_index:
                self._send_append(sender, heartbeat=False)
        elif isinstance(m, AppendResponse) and m.reject >= pr.match and (
            pr.probing or m.hint_term is not None
        ):
            # (While replicating, every append starts at ``match``; a "log too short"
            # answer then is a stale reply to an earlier probe: ignore it.)
            log = self._log
            if m.hint_term is not None:
                index = min(m.reject, log.last_index)
                while index > log.snap_index and (log.term_at(index) or 0) > m.hint_term:
                    index -= 1
                nxt = index + 1 if log.term_at(index) == m.hint_term else m.hint_index
            else:
                nxt = m.hint_index
            pr.next = max(pr.match + 1, min(nxt, log.last_index + 1))
            pr.probing, pr.probe_sent, pr.sent_to = True, False, pr.match
            self._send_append(sender, heartbeat=False)
        self._confirm_reads()
