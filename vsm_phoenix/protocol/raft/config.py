"""Raft's names and knobs: roles, timer names, reply kinds, storage keys, limits and
:class:`RaftConfig`.

Every string another module or an application branches on is an exported constant
here, so no caller repeats a literal: timers ``T_*``, reply kinds ``K_*`` (the
``Deliver.kind`` of an answer), storage keys ``KEY_*`` and wire message types
``M_*`` (those live in :mod:`.messages`).
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from typing import Final

import attrs

from vsm_phoenix.errors import TypeMismatch
from vsm_phoenix.protocol.envelope import DEFAULT_MAX_PAYLOAD
from vsm_phoenix.protocol.node import LocalProtocolError
from vsm_phoenix.protocol.raft.membership import Membership, MembershipError

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
    "T_ELECTION",
    "T_FLUSH",
    "T_HEARTBEAT",
    "T_QUORUM",
    "T_TRANSFER",
    "RaftConfig",
    "Role",
    "log_key",
]

# Timer names.
T_ELECTION: Final = "raft.election"
T_HEARTBEAT: Final = "raft.heartbeat"
T_QUORUM: Final = "raft.check-quorum"
T_FLUSH: Final = "raft.flush"
T_TRANSFER: Final = "raft.transfer"

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
#: What one entry costs in an append beside its command bytes: term, framing, and a
#: configuration entry's member list are all counted at this flat rate (a config is
#: bounded by the membership codec and small).
ENTRY_OVERHEAD_BYTES: Final = 32
#: The largest body a Raft message may carry: the envelope's payload limit, which every
#: receiver enforces, less room for the message's own fields. Every size knob of
#: :class:`RaftConfig` must keep its messages under it, or peers refuse them forever.
MAX_MESSAGE_BODY_BYTES: Final = DEFAULT_MAX_PAYLOAD - 64 * 1024


def log_key(index: int) -> str:
    """The storage key of the log entry at ``index``."""
    return f"{KEY_LOG_PREFIX}{index:020d}"


def _peer_tuple(value: Iterable[str]) -> tuple[str, ...]:
    if isinstance(value, str | bytes):  # a str is iterable: "n1" would be ("n", "1")
        raise TypeMismatch("give node ids as a collection of str, not one str")
    try:
        return tuple(value)
    except TypeError:
        raise TypeMismatch("give node ids as a collection of str") from None


class Role(enum.Enum):
    FOLLOWER = "follower"
    PRE_CANDIDATE = "pre-candidate"
    CANDIDATE = "candidate"
    LEADER = "leader"


@attrs.frozen
class RaftConfig:
    """The bootstrap configuration and protocol parameters (times in ms of the
    node's clock).

    ``peers`` are the voters of the *bootstrap* configuration, the one every log
    starts from; changes are log entries (:class:`~.requests.Reconfigure`), so the
    configuration in force is the latest in the node's log, not this field. Every
    server of a cluster gets the same ``peers``, also one that joins later: a node
    whose id is not a voter there starts as a non-voting, non-campaigning member and
    learns its role from the leader's log.

    ``batch_delay_ms = 0`` sends every proposal at once (one ``raft.append`` per
    proposal per follower when the pipeline is idle); ``> 0`` collects proposals and
    reads for that long and ships them together, at most ``max_batch`` entries per
    message.

    ``max_append_bytes`` bounds an append by size as ``max_batch`` bounds it by count
    (etcd's ``MaxSizePerMsg``): entries are added while their command bytes (plus
    :data:`ENTRY_OVERHEAD_BYTES` each) stay within it, and at least one entry always
    goes, so the window never stalls. Without it, a follower that missed a burst of
    large commands was sent ``max_batch`` of them at once, a message every peer refuses
    (over the envelope's limit), and never caught up. ``max_command_bytes`` caps one
    ``Propose.command`` (a larger one raises :class:`LocalProtocolError` and changes
    nothing), so even a lone entry fits a message; its default (12 MiB) holds the KV's
    largest command, a ``cas`` of two 1 M-character values. Both, and
    ``snapshot_chunk_bytes``, must be at most :data:`MAX_MESSAGE_BODY_BYTES`.

    ``max_clock_drift_ms`` bounds how far ahead of this node's clock a peer's HLC
    stamp may be and still be merged into this node's HLC. It never stops Raft: a
    message stamped further ahead is processed all the same, its stamp left unmerged
    (:class:`~vsm_phoenix.protocol.kit.Messenger` with ``refuse_drift=False``). Raft
    takes no decision from a clock reading — elections, leases and check-quorum run on
    the node's own timers — so a clock step of any size, forwards or back, on any
    number of nodes changes nothing but the stamps on envelopes.

    A snapshot travels in ``raft.snapshot`` chunks of at most ``snapshot_chunk_bytes``
    bytes (so a snapshot larger than the transport's message limit still gets
    through); a follower refuses to assemble one larger than ``max_snapshot_bytes``.

    ``max_promotion_lag_entries`` (default 64, one append's worth at the default
    ``max_batch``): a :class:`~.requests.Reconfigure` that makes a learner a voter is
    answered ``raft.failed`` (retry later) unless the leader knows the learner holds
    an entry and lags its log by at most this many entries (etcd's learner readiness
    check). A voter that cannot yet follow would otherwise count in every majority at
    once: with one other voter down, nothing commits until it catches up. Servers added
    straight as voters are not checked (add them as learners first).

    ``unsafe_reconfigure_early`` lets a leader append a configuration change before
    it has committed an entry of its own term — the single-server-change bug Ongaro
    reported in 2015, kept (like ``unsafe_commit_old_terms``) only as a test target.
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
    max_clock_drift_ms: int = 60_000
    unsafe_reconfigure_early: bool = False
    snapshot_chunk_bytes: int = 1 << 20
    max_snapshot_bytes: int = 1 << 30
    max_append_bytes: int = 1 << 20
    max_command_bytes: int = 12 << 20
    max_promotion_lag_entries: int = 64

    def __attrs_post_init__(self) -> None:
        if not self.peers or len(set(self.peers)) != len(self.peers):
            raise LocalProtocolError("peers must be a non-empty tuple of distinct ids")
        if any(not isinstance(p, str) or not p for p in self.peers):
            raise LocalProtocolError("peer ids must be non-empty strings")
        try:
            Membership.of(self.peers)
        except MembershipError as exc:
            raise LocalProtocolError(f"peers: {exc}") from None
        if not 0 < self.heartbeat_ms < self.election_timeout_ms:
            raise LocalProtocolError("need 0 < heartbeat_ms < election_timeout_ms")
        if self.max_batch < 1 or self.batch_delay_ms < 0 or self.snapshot_threshold < 1:
            raise LocalProtocolError("max_batch >= 1, batch_delay_ms >= 0, snapshot_threshold >= 1")
        if self.max_batch > MAX_ENTRIES_PER_MESSAGE:
            raise LocalProtocolError(f"max_batch must be at most {MAX_ENTRIES_PER_MESSAGE}: "
                                     "peers refuse an append with more entries")
        if not 1 <= self.snapshot_chunk_bytes <= self.max_snapshot_bytes:
            raise LocalProtocolError("need 1 <= snapshot_chunk_bytes <= max_snapshot_bytes")
        for name in ("max_append_bytes", "max_command_bytes", "snapshot_chunk_bytes"):
            value = getattr(self, name)
            if type(value) is not int or not 1 <= value <= MAX_MESSAGE_BODY_BYTES:
                raise LocalProtocolError(
                    f"{name} must be an integer in 1..{MAX_MESSAGE_BODY_BYTES} (a larger "
                    "message would exceed the envelope limit every peer enforces)")
        if type(self.max_clock_drift_ms) is not int or self.max_clock_drift_ms < 0:
            raise LocalProtocolError("max_clock_drift_ms must be an integer >= 0")
        if type(self.max_promotion_lag_entries) is not int or self.max_promotion_lag_entries < 0:
            raise LocalProtocolError("max_promotion_lag_entries must be an integer >= 0")

    @property
    def bootstrap(self) -> Membership:
        """The configuration every log starts from: ``peers`` as voters."""
        return Membership.of(self.peers)

    @property
    def quorum(self) -> int:
        """The majority of the initial configuration ``peers``."""
        return len(self.peers) // 2 + 1
