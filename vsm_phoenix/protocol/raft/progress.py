"""The leader's bookkeeping: what it knows of each follower, and reads in flight.

A :class:`Progress` per follower holds ``match`` (highest index known replicated there)
and ``next`` (next index to send). A follower is *probing* (one ``raft.append`` at a
time, after a rejection or right after the election) or *replicating* (every append
carries everything not yet acknowledged, up to ``max_batch`` entries — the window —
and ``sent_to`` is the highest index shipped). ``active`` says the follower answered
during the current check-quorum window; ``acked_seq`` is the latest heartbeat round it
answered (ReadIndex). Majority decisions over these are the quorum's (:mod:`.quorum`).
"""

from __future__ import annotations

from typing import Any

import attrs

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

    def key(self) -> tuple[Any, ...]:
        return (self.match, self.next, self.probing, self.probe_sent, self.sent_to,
                self.active, self.acked_seq)


@attrs.define
class PendingRead:
    """A ReadIndex read: answered once the round ``seq`` is acknowledged by a quorum
    and the state machine applied ``index``."""

    request_id: str
    query: bytes
    index: int = 0
    seq: int = 0
