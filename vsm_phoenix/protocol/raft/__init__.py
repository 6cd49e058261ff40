"""Raft consensus as a sans-IO node (Ongaro & Ousterhout 2014; Ongaro's thesis 2014).

Theory of operation
-------------------
A :class:`RaftNode` is one member of a cluster whose configuration lives in its log
(``RaftConfig.peers`` is only the bootstrap configuration; see *Membership* below).
It replicates a log of opaque commands and applies committed ones, in log order, to a
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
  majority during an election timeout steps down. "Less than one election timeout
  ago" is measured by the node's own election timer (it first runs exactly one
  timeout — the lease — then the random rest), never by comparing clock readings.
* **No wall clock.** Raft takes no decision from ``now``: every duration is a timer
  the runtime fires. ``now`` only stamps envelopes with the node's hybrid logical
  clock, and a peer's stamp further ahead than ``max_clock_drift_ms`` is left
  unmerged rather than refused. So clock steps of any size, forwards or back, on any
  number of nodes, neither stop nor change the protocol.
* **Replication.** The leader keeps per follower ``match`` (highest index known
  replicated) and ``next`` (next index to send). A follower *probing* (after a
  rejection, or right after the election) gets one ``raft.append`` at a time; a
  follower *replicating* gets, with every append, all entries it has not acknowledged
  (at most ``max_batch`` entries and ``max_append_bytes`` of them, but always one: the
  window), sent when new entries arrive and on every
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
  (InstallSnapshot) in chunks of at most ``snapshot_chunk_bytes``: one chunk in flight
  per follower, the next sent when the follower acknowledges how many bytes it holds,
  the current one resent after a heartbeat interval without progress. A lost or
  reordered chunk costs one chunk, not the transfer (resumable offsets); the leader
  keeps the snapshot it began until it is installed; chunks are volatile at the
  follower (a restart begins again at byte 0). No message is larger than a chunk, so
  heartbeats to other followers — and the chunks themselves, which count as contact
  — never wait behind a snapshot.
* **Membership** (:mod:`.membership`, Raft thesis §4). ``Reconfigure(voters,
  learners)`` at the leader appends a configuration entry; a change of voters goes
  through the joint configuration ``new && old`` (decisions need majorities of both;
  the leader appends ``new`` once the joint entry commits), and ``joint=False`` is the
  single-server change. A configuration is in force from the moment it is appended
  (committed or not) and reverts when its entry is truncated. One change at a time,
  and none before the leader has committed an entry of its term (Ongaro's 2015 fix;
  ``unsafe_reconfigure_early`` is the broken variant). Learners get the log but never
  vote or campaign; a leader that removed itself steps down once the change commits,
  after sending ``raft.timeout-now`` to the most up-to-date voter.
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

Modules (one concept each)
--------------------------
* :mod:`.config` — :class:`RaftConfig`, :class:`Role`, timer names, reply kinds,
  storage keys.
* :mod:`.requests` — what clients ask: :class:`Propose`, :class:`Read`,
  :class:`TransferLeadership`.
* :mod:`.statemachine` — the :class:`StateMachine` interface.
* :mod:`.quorum` — majority and joint configurations: committed index, vote result,
  recently active. Every majority decision of the node is one of these questions.
* :mod:`.membership` — :class:`Membership`: voters, the outgoing half of a joint
  configuration, learners; its codec.
* :mod:`.log` — :class:`Entry` and the log with its snapshot and storage writes.
* :mod:`.messages` — the keyword-only wire messages, their one table of wire names and
  their strict codec.
* :mod:`.progress` — the leader's per-follower bookkeeping and pending reads.
* :mod:`.node` — :class:`RaftNode`, the state machine that ties them together.
* :mod:`.invariants` — :func:`check_invariants` and :class:`RaftMonitor`.
"""

from __future__ import annotations

from vsm_phoenix.protocol.raft.config import (
    ENTRY_OVERHEAD_BYTES,
    K_FAILED,
    K_LEADER,
    K_NOT_LEADER,
    K_OK,
    K_UNKNOWN,
    KEY_LOG_PREFIX,
    KEY_SNAPSHOT,
    KEY_STATE,
    MAX_ENTRIES_PER_MESSAGE,
    MAX_MESSAGE_BODY_BYTES,
    MAX_U63,
    T_ELECTION,
    T_FLUSH,
    T_HEARTBEAT,
    T_QUORUM,
    T_TRANSFER,
    RaftConfig,
    Role,
    log_key,
)
from vsm_phoenix.protocol.raft.invariants import RaftMonitor, check_invariants
from vsm_phoenix.protocol.raft.log import Entry
from vsm_phoenix.protocol.raft.membership import Membership, MembershipError
from vsm_phoenix.protocol.raft.messages import (
    M_APPEND,
    M_APPEND_RESP,
    M_SNAP,
    M_SNAP_RESP,
    M_TIMEOUT_NOW,
    M_VOTE,
    M_VOTE_RESP,
    WIRE,
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
from vsm_phoenix.protocol.raft.node import RaftNode
from vsm_phoenix.protocol.raft.quorum import JointConfig, MajorityConfig, VoteResult
from vsm_phoenix.protocol.raft.requests import (
    Propose,
    Read,
    Reconfigure,
    TransferLeadership,
)
from vsm_phoenix.protocol.raft.statemachine import RecordingStateMachine, StateMachine

__all__ = [
    "KEY_LOG_PREFIX",
    "KEY_SNAPSHOT",
    "KEY_STATE",
    "K_FAILED",
    "K_LEADER",
    "K_NOT_LEADER",
    "K_OK",
    "K_UNKNOWN",
    "ENTRY_OVERHEAD_BYTES",
    "MAX_ENTRIES_PER_MESSAGE",
    "MAX_MESSAGE_BODY_BYTES",
    "MAX_U63",
    "M_APPEND",
    "M_APPEND_RESP",
    "M_SNAP",
    "M_SNAP_RESP",
    "M_TIMEOUT_NOW",
    "M_VOTE",
    "M_VOTE_RESP",
    "T_ELECTION",
    "T_FLUSH",
    "T_HEARTBEAT",
    "T_QUORUM",
    "T_TRANSFER",
    "WIRE",
    "AppendEntries",
    "AppendResponse",
    "Entry",
    "InstallSnapshot",
    "JointConfig",
    "MajorityConfig",
    "Membership",
    "MembershipError",
    "Message",
    "Propose",
    "RaftConfig",
    "RaftMonitor",
    "RaftNode",
    "Read",
    "Reconfigure",
    "RecordingStateMachine",
    "RequestVote",
    "Role",
    "SnapshotResponse",
    "StateMachine",
    "TimeoutNow",
    "TransferLeadership",
    "VoteResponse",
    "VoteResult",
    "check_invariants",
    "decode_message",
    "encode_message",
    "log_key",
]
