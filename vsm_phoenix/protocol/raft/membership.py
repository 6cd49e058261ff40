"""Cluster membership as a value: who votes, who only listens, and the joint stage.

Theory of operation
-------------------
A :class:`Membership` is one configuration of the cluster (Raft thesis §4):

* ``voters`` — the servers whose majority decides (elections, commits, check-quorum,
  ReadIndex). Never empty.
* ``outgoing`` — empty, except during a joint-consensus change (thesis §4.3, etcd's
  ``ConfChangeV2``): then the configuration being left, and every decision needs a
  majority of ``voters`` *and* a majority of ``outgoing`` (:meth:`quorum`).
* ``learners`` — servers that receive the log but neither vote nor count towards any
  majority: a new server catches up as a learner before it is promoted. A learner may
  also be a voter of ``outgoing`` (a voter being demoted, during the joint stage);
  it is never a voter of ``voters``.

Configurations live in the log, as entries of their own (``Entry.config``); the one a
server uses is the latest in its log — committed or not — or, with none after the
snapshot, the snapshot's (:attr:`RaftLog.config`). ``RaftConfig.peers`` is the
bootstrap configuration every log starts from.

A change from ``C_old`` to ``C_new`` that changes the voters goes through the joint
configuration ``C_old,new = Membership(voters=new, outgoing=old)``; once that entry
commits the leader appends ``C_new`` (:meth:`leave_joint`). A change of learners alone
needs no joint stage: no quorum changes.

The wire and storage form is a CBOR map ``{"v": [...], "o": [...], "l": [...]}`` of
sorted id lists (:meth:`encode`), decoded strictly by :meth:`decode`.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Final

import attrs

from vsm_phoenix.protocol.raft.quorum import JointConfig, MajorityConfig

__all__ = ["MAX_MEMBERS", "Membership", "MembershipError"]

#: The largest configuration the codec accepts (voters, outgoing and learners together).
MAX_MEMBERS: Final = 1024
MAX_ID_LENGTH: Final = 256


class MembershipError(ValueError):
    """A configuration that is not well formed (the text says which rule it breaks)."""


def _ids(value: Iterable[str]) -> frozenset[str]:
    return frozenset(value)


@attrs.frozen
class Membership:
    """One configuration (see the module docstring). Build it with :meth:`of`, which
    checks the rules; the constructor alone checks nothing."""

    voters: frozenset[str] = attrs.field(converter=_ids)
    outgoing: frozenset[str] = attrs.field(converter=_ids, factory=frozenset)
    learners: frozenset[str] = attrs.field(converter=_ids, factory=frozenset)

    @classmethod
    def of(cls, voters: Iterable[str], learners: Iterable[str] = (),
           outgoing: Iterable[str] = ()) -> Membership:
        """A checked configuration; :class:`MembershipError` names the broken rule."""
        vs, ls, os_ = list(voters), list(learners), list(outgoing)
        for group in (vs, ls, os_):
            if any(not isinstance(i, str) or not i or len(i) > MAX_ID_LENGTH for i in group):
                raise MembershipError(f"member ids must be non-empty strings of at most "
                                      f"{MAX_ID_LENGTH} characters")
            if len(set(group)) != len(group):
                raise MembershipError("member ids must be distinct")
        m = cls(vs, os_, ls)
        if not m.voters:
            raise MembershipError("a configuration needs at least one voter")
        if m.voters & m.learners:
            raise MembershipError("a server cannot be both a voter and a learner")
        if len(m.members) > MAX_MEMBERS:
            raise MembershipError(f"at most {MAX_MEMBERS} members")
        return m

    def __str__(self) -> str:
        text = " ".join(sorted(self.voters))
        if self.outgoing:
            text += " && " + " ".join(sorted(self.outgoing))
        if self.learners:
            text += " learners " + " ".join(sorted(self.learners))
        return f"({text})"

    @property
    def joint(self) -> bool:
        """Whether this is the joint configuration of a change in progress."""
        return bool(self.outgoing)

    @property
    def quorum(self) -> JointConfig:
        """The voting configuration: majorities of ``voters`` and of ``outgoing``."""
        return JointConfig(MajorityConfig(self.voters), MajorityConfig(self.outgoing))

    @property
    def all_voters(self) -> frozenset[str]:
        return self.voters | self.outgoing

    @property
    def members(self) -> frozenset[str]:
        """Everyone the leader replicates to (voters of both halves and learners)."""
        return self.voters | self.outgoing | self.learners

    def is_voter(self, node_id: str) -> bool:
        return node_id in self.voters or node_id in self.outgoing

    def leave_joint(self) -> Membership:
        """The configuration a joint one leads to (itself when not joint)."""
        return Membership(self.voters, (), self.learners)

    def key(self) -> tuple[frozenset[str], frozenset[str], frozenset[str]]:
        """A hashable form whose ids are whole strings (for ``state_key``)."""
        return (self.voters, self.outgoing, self.learners)

    def describe(self) -> dict[str, list[str]]:
        """Sorted id lists, for replies and logs: ``{"voters", "outgoing", "learners"}``."""
        return {"voters": sorted(self.voters), "outgoing": sorted(self.outgoing),
                "learners": sorted(self.learners)}

    def encode(self) -> dict[str, list[str]]:
        """The wire/storage form (a CBOR map of sorted lists)."""
        return {"v": sorted(self.voters), "o": sorted(self.outgoing),
                "l": sorted(self.learners)}

    @classmethod
    def decode(cls, obj: Any) -> Membership:
        """Strictly decode :meth:`encode`'s form; :class:`MembershipError` otherwise."""
        if not isinstance(obj, dict) or set(obj) != {"v", "o", "l"}:
            raise MembershipError("a configuration must be a map with keys v, o, l")
        lists = [obj["v"], obj["o"], obj["l"]]
        for value in lists:
            if not isinstance(value, list) or len(value) > MAX_MEMBERS:
                raise MembershipError(f"v, o and l must be lists of at most {MAX_MEMBERS} ids")
            if value != sorted(value, key=str) or not all(isinstance(i, str) for i in value):
                raise MembershipError("v, o and l must be sorted lists of strings")
        return cls.of(lists[0], lists[2], lists[1])
