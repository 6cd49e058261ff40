"""Spawning a sub-agent: a proposal decided by quorum through the linearizable KV.

A proposal is one KV key, ``spawn/<proposal id>``. The proposer creates it with
``cas(None -> header)``, where the header line is the canonical JSON of
:class:`SpawnProposal` (who proposes, the child, why, the voters and the quorum).
Each voter appends one :class:`Vote` line (approve or reject, with its reason). The
log of the consensus layer orders the appends, so every reader of the key sees the same
sequence, and :func:`decide` -- a pure function of that sequence -- gives everyone the
same :class:`SpawnDecision`: approved once ``quorum`` distinct voters approved,
rejected once so many rejected that the quorum is out of reach; only the first vote of
each voter counts and lines from non-voters are ignored.
"""

from __future__ import annotations

import json
from typing import Any, Final

import attrs

from vsm_phoenix.errors import DecodeError, InvalidArgument

__all__ = ["SPAWN_PREFIX", "SpawnDecision", "SpawnProposal", "Vote", "decide"]

SPAWN_PREFIX: Final = "spawn/"
_MAX_LINE: Final = 4096


def _line(doc: Any) -> str:
    return json.dumps(doc, sort_keys=True, separators=(",", ":")) + "\n"


@attrs.frozen
class SpawnProposal:
    """The header of a proposal (see the module doc)."""

    proposal: str
    proposer: str
    child: str
    reason: str
    voters: tuple[str, ...]
    quorum: int

    def __attrs_post_init__(self) -> None:
        if not self.voters or not 1 <= self.quorum <= len(self.voters):
            raise InvalidArgument("need 1 <= quorum <= number of voters")
        if len(set(self.voters)) != len(self.voters):
            raise InvalidArgument("voters must be distinct")

    @property
    def key(self) -> str:
        return SPAWN_PREFIX + self.proposal

    def encode(self) -> str:
        return _line({"proposal": self.proposal, "proposer": self.proposer,
                      "child": self.child, "reason": self.reason,
                      "voters": list(self.voters), "quorum": self.quorum})


@attrs.frozen
class Vote:
    """One voter's answer to one proposal."""

    voter: str
    approve: bool
    reason: str

    def encode(self) -> str:
        return _line({"voter": self.voter, "approve": self.approve, "reason": self.reason})


@attrs.frozen
class SpawnDecision:
    """The outcome: approved or not, by whom, and every counted vote's reason."""

    proposal: SpawnProposal
    approved: bool
    votes: tuple[Vote, ...]

    @property
    def approvals(self) -> tuple[str, ...]:
        return tuple(v.voter for v in self.votes if v.approve)

    def to_payload(self) -> dict[str, Any]:
        """The decision as plain data (for the evidence graph)."""
        return {"type": "spawn-decided", "proposal": self.proposal.proposal,
                "child": self.proposal.child, "approved": self.approved,
                "quorum": self.proposal.quorum, "reason": self.proposal.reason,
                "votes": [[v.voter, v.approve, v.reason] for v in self.votes]}


def _parse_header(line: str) -> SpawnProposal:
    try:
        doc = json.loads(line)
    except (ValueError, RecursionError) as exc:
        raise DecodeError(f"spawn proposal header: {type(exc).__name__}") from None
    fields = ("proposal", "proposer", "child", "reason")
    if not (isinstance(doc, dict) and all(isinstance(doc.get(f), str) for f in fields)
            and isinstance(doc.get("voters"), list)
            and all(isinstance(v, str) for v in doc["voters"])
            and type(doc.get("quorum")) is int):
        raise DecodeError("spawn proposal header has the wrong fields")
    try:
        return SpawnProposal(doc["proposal"], doc["proposer"], doc["child"], doc["reason"],
                             tuple(doc["voters"]), doc["quorum"])
    except InvalidArgument as exc:
        raise DecodeError(f"spawn proposal header: {exc}") from None


def read_proposal(value: str | None) -> tuple[SpawnProposal, list[Vote]] | None:
    """Parse the KV value of a proposal key (``None`` when absent). Malformed vote
    lines are skipped (anyone with write access could append junk); a malformed header
    is a ``DecodeError``."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise DecodeError("a proposal is a string")
    lines = value.split("\n")
    header = _parse_header(lines[0][:_MAX_LINE])
    votes = []
    for line in lines[1:]:
        if not line or len(line) > _MAX_LINE:
            continue
        try:
            doc = json.loads(line)
            vote = Vote(doc["voter"], doc["approve"], doc["reason"])
        except (ValueError, KeyError, TypeError, RecursionError):
            continue
        if isinstance(vote.voter, str) and type(vote.approve) is bool and isinstance(
                vote.reason, str):
            votes.append(vote)
    return header, votes


def decide(value: str | None) -> SpawnDecision | None:
    """The decision the KV value of a proposal key implies, or ``None`` while open."""
    parsed = read_proposal(value)
    if parsed is None:
        return None
    header, votes = parsed
    counted: list[Vote] = []
    seen: set[str] = set()
    for vote in votes:
        if vote.voter in header.voters and vote.voter not in seen:
            seen.add(vote.voter)
            counted.append(vote)
            yes = sum(v.approve for v in counted)
            no = len(counted) - yes
            if yes >= header.quorum:
                return SpawnDecision(header, True, tuple(counted))
            if no > len(header.voters) - header.quorum:
                return SpawnDecision(header, False, tuple(counted))
    return None
