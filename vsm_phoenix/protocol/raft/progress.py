"""The leader's bookkeeping: what it knows of each follower, and reads in flight.

A :class:`Progress` per follower holds ``match`` (highest index known replicated there)
and ``next`` (next index to send). A follower is *probing* (one ``raft.append`` at a
time, after a rejection or right after the election) or *replicating* (every append
carries everything not yet acknowledged, up to ``max_batch`` entries — the window —
and ``sent_to`` is the highest index shipped). ``active`` says the follower answered
during the current check-quorum window; ``acked_seq`` is the latest heartbeat round it
answered (ReadIndex). While a follower gets a snapshot, ``snap_index`` names it and
``snap_offset`` is where the next chunk starts (what the follower acknowledged); the
snapshot itself stays pinned in ``snap`` until the follower installed it, so that a
leader compacting again does not restart a long transfer from its first byte.
Majority decisions over these are the quorum's (:mod:`.quorum`).
"""

from __future__ import annotations

from typing import Any

import attrs

from vsm_phoenix.protocol.raft.membership import Membership

__all__ = ["PendingRead", "Progress"]


@attrs.define
class Progress:
    match: int = 0
    next: int = 1
    probing: bool = True
    probe_sent: bool = False
    sent_to: int = 0  # replicating: highest index shipped so far
    active: bool = False  # heard from in the current check-quorum window
    acked_seq: int = 0
    snap_index: int = 0  # the snapshot being sent (0: none)
    snap_offset: int = 0  # how many of its bytes the follower acknowledged
    # The snapshot being sent, kept until it is installed even when the leader
    # compacts again meanwhile: (index, term, configuration, bytes).
    snap: tuple[int, int, Membership, bytes] | None = None
    snap_in_flight: bool = False  # a chunk is sent and not yet acknowledged
    snap_stalled: bool = False  # ... and a heartbeat passed since

    def key(self) -> tuple[Any, ...]:
        return (self.match, self.next, self.probing, self.probe_sent, self.sent_to,
                self.active, self.acked_seq, self.snap_index, self.snap_offset,
                self.snap_in_flight, self.snap_stalled)


@attrs.define
class PendingRead:
    """A ReadIndex read: answered once the round ``seq`` is acknowledged by a quorum
    and the state machine applied ``index``."""

    request_id: str
    query: bytes
    index: int = 0
    seq: int = 0
