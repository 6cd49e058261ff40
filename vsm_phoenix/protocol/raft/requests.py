"""What an application asks a Raft node (``ClientRequest`` payloads).

Every request is answered by one ``Deliver`` with the request's id; its ``kind`` is a
reply kind of :mod:`.config`: ``raft.ok`` (payload: the result), ``raft.not-leader``
(payload: leader hint; the request had no effect), ``raft.unknown`` (payload: leader
hint; leadership was lost before the request completed — it may or may not take
effect) or ``raft.failed`` (payload: the reason).
"""

from __future__ import annotations

from collections.abc import Iterable

import attrs

from vsm_phoenix.errors import TypeMismatch

__all__ = ["Propose", "Read", "Reconfigure", "TransferLeadership"]


def _id_tuple(value: Iterable[str]) -> tuple[str, ...]:
    if isinstance(value, str | bytes):  # a str is iterable: "n1" would be ("n", "1")
        raise TypeMismatch("give node ids as a collection of str, not one str")
    try:
        return tuple(value)
    except TypeError:
        raise TypeMismatch("give node ids as a collection of str") from None


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


@attrs.frozen
class Reconfigure:
    """Change the cluster's configuration to ``voters`` (and ``learners``): add,
    remove, replace, promote or demote any number of servers in one request.

    Answered ``raft.ok`` (payload: the new configuration, as
    :meth:`Membership.describe`) once the new configuration is committed;
    ``raft.failed`` when a change is still in progress, this leader has not yet
    committed an entry of its own term, or a learner to promote has not caught up
    (``RaftConfig.max_promotion_lag_entries``) (retry later); ``raft.unknown`` when leadership
    was lost meanwhile (the change may or may not complete); ``raft.not-leader``
    elsewhere.

    With ``joint=True`` (the default) a change of voters goes through the joint
    configuration (Raft thesis §4.3); a change of learners alone is one step.
    ``joint=False`` asks for the single-server change of thesis §4.1 and is refused
    (``LocalProtocolError``) unless at most one voter is added or removed.
    """

    voters: tuple[str, ...] = attrs.field(converter=_id_tuple)
    learners: tuple[str, ...] = attrs.field(converter=_id_tuple, default=())
    joint: bool = True
