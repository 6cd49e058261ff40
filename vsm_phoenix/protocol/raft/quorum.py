"""Quorum arithmetic as a value (after etcd's ``raft/quorum`` package).

Theory of operation
-------------------
Every majority decision of Raft is one of three questions put to the *voting
configuration*:

* **committed index** — given, per voter, the highest log index known to be stored
  there (``acked``), the highest index stored on a quorum;
* **vote result** — given the votes received so far (``True`` granted, ``False``
  refused, absent: no answer yet), whether the election is won, lost or pending;
* **recently active** — given the voters heard from during the last election
  timeout, whether they form a quorum (check-quorum; ReadIndex rounds ask the same
  question of the voters that acknowledged the round).

A :class:`MajorityConfig` answers them for one set of voters (a quorum is any
``len(voters) // 2 + 1`` of them). A :class:`JointConfig` answers them for joint
consensus (Raft thesis §4.3): two majority configurations, *incoming* and
*outgoing*, and a decision needs a majority of **both** — its committed index is the
smaller of the two, its vote is won only when both are won and lost when either is
lost. An empty majority configuration constrains nothing (committed index
:data:`NO_LIMIT`, vote won, always active), so a non-joint configuration is simply a
joint one whose outgoing half is empty; callers always hold a :class:`JointConfig`.

Ids that are not voters (learners, the leader itself once it removed itself, or
nodes from another configuration) may appear in the inputs: they are ignored.
"""

from __future__ import annotations

import enum
from collections.abc import Collection, Iterable, Mapping
from typing import Final

import attrs

__all__ = ["NO_LIMIT", "JointConfig", "MajorityConfig", "VoteResult"]

#: The committed index of an empty configuration: it never holds anything back.
NO_LIMIT: Final = 2**63 - 1


class VoteResult(enum.Enum):
    PENDING = "pending"
    LOST = "lost"
    WON = "won"


def _ids(value: Iterable[str]) -> frozenset[str]:
    return frozenset(value)


@attrs.frozen
class MajorityConfig:
    """A set of voters deciding by simple majority."""

    voters: frozenset[str] = attrs.field(converter=_ids, factory=frozenset)

    def __str__(self) -> str:
        return "(" + " ".join(sorted(self.voters)) + ")"

    def __len__(self) -> int:
        return len(self.voters)

    @property
    def quorum(self) -> int:
        """How many voters form a majority (0 for the empty configuration)."""
        return len(self.voters) // 2 + 1 if self.voters else 0

    def committed_index(self, acked: Mapping[str, int]) -> int:
        """The highest index that a majority of voters hold; a voter missing from
        ``acked`` holds nothing (index 0). :data:`NO_LIMIT` when there are no voters."""
        if not self.voters:
            return NO_LIMIT
        held = sorted((acked.get(v, 0) for v in self.voters), reverse=True)
        return held[len(held) // 2]

    def vote_result(self, votes: Mapping[str, bool]) -> VoteResult:
        """WON once a majority granted, LOST once a majority can no longer grant,
        PENDING otherwise. The empty configuration wins every election."""
        if not self.voters:
            return VoteResult.WON
        granted = missing = 0
        for v in self.voters:
            vote = votes.get(v)
            if vote is None:
                missing += 1
            elif vote:
                granted += 1
        q = self.quorum
        if granted >= q:
            return VoteResult.WON
        if granted + missing >= q:
            return VoteResult.PENDING
        return VoteResult.LOST

    def recently_active(self, active: Collection[str]) -> bool:
        """Whether the voters in ``active`` form a majority (the empty configuration:
        always)."""
        if not self.voters:
            return True
        return sum(1 for v in self.voters if v in active) >= self.quorum


_EMPTY: Final = MajorityConfig()


@attrs.frozen
class JointConfig:
    """Two majority configurations deciding together (both must agree). With an
    empty ``outgoing`` it is the plain majority configuration ``incoming``."""

    incoming: MajorityConfig
    outgoing: MajorityConfig = _EMPTY

    @classmethod
    def of(cls, incoming: Iterable[str], outgoing: Iterable[str] = ()) -> JointConfig:
        return cls(MajorityConfig(incoming), MajorityConfig(outgoing))

    def __str__(self) -> str:
        if not self.outgoing.voters:
            return str(self.incoming)
        return f"{self.incoming}&&{self.outgoing}"

    @property
    def joint(self) -> bool:
        return bool(self.outgoing.voters)

    @property
    def voters(self) -> frozenset[str]:
        """Every id that votes in either half."""
        return self.incoming.voters | self.outgoing.voters

    def committed_index(self, acked: Mapping[str, int]) -> int:
        return min(self.incoming.committed_index(acked), self.outgoing.committed_index(acked))

    def vote_result(self, votes: Mapping[str, bool]) -> VoteResult:
        a = self.incoming.vote_result(votes)
        b = self.outgoing.vote_result(votes)
        if a is b:
            return a
        if VoteResult.LOST in (a, b):
            return VoteResult.LOST
        return VoteResult.PENDING

    def recently_active(self, active: Collection[str]) -> bool:
        return self.incoming.recently_active(active) and self.outgoing.recently_active(active)
