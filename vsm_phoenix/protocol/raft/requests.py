"""What an application asks a Raft node (``ClientRequest`` payloads).

Every request is answered by one ``Deliver`` with the request's id; its ``kind`` is a
reply kind of :mod:`.config`: ``raft.ok`` (payload: the result), ``raft.not-leader``
(payload: leader hint; the request had no effect), ``raft.unknown`` (payload: leader
hint; leadership was lost before the request completed — it may or may not take
effect) or ``raft.failed`` (payload: the reason).
"""

from __future__ import annotations

import attrs

__all__ = ["Propose", "Read", "TransferLeadership"]


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
