"""Raft's wire messages and their codec.

Theory of operation
-------------------
Each message is a keyword-only frozen class; :data:`WIRE` is the one table that maps
it to its envelope type (``M_*``) and each attribute to its short wire key and field
codec. :func:`encode_message` and :func:`decode_message` are driven by that table
alone: the payload is a canonical-CBOR map with exactly the table's keys.

Decoding is strict and total: bytes that are not exactly such a map, a field of the
wrong type or out of range, or a message that contradicts itself (an entry of a later
term than the message, ``prev_index`` 0 with a non-zero ``prev_term``, ...) raise
:class:`~vsm_phoenix.protocol.node.RemoteProtocolError` naming the message type and
the field, before any node state is touched.

=====================  ==================  ==========================================
class                  type                purpose
=====================  ==================  ==========================================
:class:`AppendEntries` ``raft.append``     replicate entries; heartbeat; commit index
:class:`AppendResponse`  ``raft.append-resp`` match index, or a rejection with a hint
:class:`RequestVote`   ``raft.vote``       (pre-)vote request with the last log entry
:class:`VoteResponse`  ``raft.vote-resp``  granted or refused
:class:`InstallSnapshot` ``raft.snapshot`` one chunk of the leader's snapshot (bytes
                                           ``offset ..`` of it; ``done`` on the last)
                                           and the configuration at its index, for a
                                           follower whose next entry was compacted away
:class:`SnapshotResponse` ``raft.snapshot-resp`` the index now matched, or how many
                                           bytes of snapshot ``index`` it holds
:class:`TimeoutNow`    ``raft.timeout-now`` leadership transfer: campaign at once
=====================  ==================  ==========================================

``seq`` (appends, snapshots and their responses) tags the leader's heartbeat round:
ReadIndex counts a response towards a read only when its ``seq`` is at least the
read's round.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Final

import attrs

from vsm_phoenix.errors import DecodeError
from vsm_phoenix.protocol.envelope import decode_cbor
from vsm_phoenix.protocol.node import RemoteProtocolError
from vsm_phoenix.protocol.raft.config import MAX_ENTRIES_PER_MESSAGE, MAX_U63
from vsm_phoenix.protocol.raft.log import Entry, decode_entry
from vsm_phoenix.protocol.raft.membership import Membership, MembershipError

__all__ = [
    "M_APPEND",
    "M_APPEND_RESP",
    "M_SNAP",
    "M_SNAP_RESP",
    "M_TIMEOUT_NOW",
    "M_VOTE",
    "M_VOTE_RESP",
    "WIRE",
    "AppendEntries",
    "AppendResponse",
    "InstallSnapshot",
    "Message",
    "RequestVote",
    "SnapshotResponse",
    "TimeoutNow",
    "VoteResponse",
    "decode_message",
    "encode_message",
]

M_APPEND: Final = "raft.append"
M_APPEND_RESP: Final = "raft.append-resp"
M_VOTE: Final = "raft.vote"
M_VOTE_RESP: Final = "raft.vote-resp"
M_SNAP: Final = "raft.snapshot"
M_SNAP_RESP: Final = "raft.snapshot-resp"
M_TIMEOUT_NOW: Final = "raft.timeout-now"


@attrs.frozen(kw_only=True)
class AppendEntries:
    term: int
    prev_index: int
    prev_term: int
    entries: tuple[Entry, ...]
    commit: int
    seq: int


@attrs.frozen(kw_only=True)
class AppendResponse:
    term: int
    ok: bool
    match: int  # ok: highest index known to match the leader
    reject: int  # not ok: the prev_index that was rejected
    hint_index: int  # not ok: first index of hint_term held, or the log length + 1
    hint_term: int | None
    seq: int


@attrs.frozen(kw_only=True)
class RequestVote:
    term: int
    last_index: int
    last_term: int
    pre: bool
    force: bool


@attrs.frozen(kw_only=True)
class VoteResponse:
    term: int
    granted: bool
    pre: bool


@attrs.frozen(kw_only=True)
class InstallSnapshot:
    term: int
    index: int
    snap_term: int
    config: Membership  # the configuration at ``index``
    offset: int  # where ``data`` starts in the snapshot's bytes
    data: bytes  # one chunk
    done: bool  # the last chunk
    seq: int


@attrs.frozen(kw_only=True)
class SnapshotResponse:
    term: int
    match: int  # > 0: the snapshot is installed and the log matches up to here
    index: int  # the snapshot the follower is receiving (0: none)
    offset: int  # how many bytes of it the follower holds: where to resume
    seq: int


@attrs.frozen(kw_only=True)
class TimeoutNow:
    term: int


Message = (
    AppendEntries | AppendResponse | RequestVote | VoteResponse | InstallSnapshot
    | SnapshotResponse | TimeoutNow
)


# -- field codecs ----------------------------------------------------------------------
class _Bad(Exception):
    """A field value failed its codec; carries the reason (turned into the error)."""


def _u63(v: Any) -> int:
    if type(v) is not int or not 0 <= v <= MAX_U63:
        raise _Bad("must be an integer in 0..2**63-1")
    return v


def _opt_u63(v: Any) -> int | None:
    if v is None:
        return None
    if type(v) is not int or not 0 <= v <= MAX_U63:
        raise _Bad("must be null or an integer in 0..2**63-1")
    return v


def _bool(v: Any) -> bool:
    if type(v) is not bool:
        raise _Bad("must be a boolean")
    return v


def _bytes(v: Any) -> bytes:
    if not isinstance(v, bytes):
        raise _Bad("must be bytes")
    return v


def _entries(v: Any) -> tuple[Entry, ...]:
    if not isinstance(v, list) or len(v) > MAX_ENTRIES_PER_MESSAGE:
        raise _Bad(f"must be a list of at most {MAX_ENTRIES_PER_MESSAGE} entries")
    out: list[Entry] = []
    for item in v:
        try:
            out.append(decode_entry(item))
        except ValueError as exc:
            raise _Bad(f"each entry must be [term, bytes] or [term, b'', config]: {exc}") from None
    return tuple(out)


def _encode_entries(entries: tuple[Entry, ...]) -> list[list[Any]]:
    return [e.encode() for e in entries]


def _membership(v: Any) -> Membership:
    try:
        return Membership.decode(v)
    except MembershipError as exc:
        raise _Bad(str(exc)) from None


def _encode_membership(m: Membership) -> dict[str, list[str]]:
    return m.encode()


def _same(v: Any) -> Any:
    return v


@attrs.frozen
class _Field:
    attr: str
    key: str
    decode: Callable[[Any], Any]
    encode: Callable[[Any], Any] = _same


def _f(attr: str, key: str, decode: Callable[[Any], Any],
       encode: Callable[[Any], Any] = _same) -> _Field:
    return _Field(attr, key, decode, encode)


#: The one table of wire names: message class -> (envelope type, fields).
WIRE: Final[dict[type[Any], tuple[str, tuple[_Field, ...]]]] = {
    AppendEntries: (M_APPEND, (
        _f("term", "t", _u63), _f("prev_index", "pi", _u63), _f("prev_term", "pt", _u63),
        _f("entries", "e", _entries, _encode_entries), _f("commit", "c", _u63),
        _f("seq", "s", _u63),
    )),
    AppendResponse: (M_APPEND_RESP, (
        _f("term", "t", _u63), _f("ok", "ok", _bool), _f("match", "m", _u63),
        _f("reject", "ri", _u63), _f("hint_index", "hi", _u63),
        _f("hint_term", "ht", _opt_u63), _f("seq", "s", _u63),
    )),
    RequestVote: (M_VOTE, (
        _f("term", "t", _u63), _f("last_index", "li", _u63), _f("last_term", "lt", _u63),
        _f("pre", "pre", _bool), _f("force", "f", _bool),
    )),
    VoteResponse: (M_VOTE_RESP, (
        _f("term", "t", _u63), _f("granted", "g", _bool), _f("pre", "pre", _bool),
    )),
    InstallSnapshot: (M_SNAP, (
        _f("term", "t", _u63), _f("index", "i", _u63), _f("snap_term", "st", _u63),
        _f("config", "c", _membership, _encode_membership), _f("offset", "o", _u63),
        _f("data", "d", _bytes), _f("done", "z", _bool), _f("seq", "s", _u63),
    )),
    SnapshotResponse: (M_SNAP_RESP, (
        _f("term", "t", _u63), _f("match", "m", _u63), _f("index", "i", _u63),
        _f("offset", "o", _u63), _f("seq", "s", _u63),
    )),
    TimeoutNow: (M_TIMEOUT_NOW, (_f("term", "t", _u63),)),
}

_BY_TYPE: Final = {mtype: (cls, fields) for cls, (mtype, fields) in WIRE.items()}
_KEYS: Final = {mtype: frozenset(f.key for f in fields) for cls, (mtype, fields) in WIRE.items()}


def _bad(mtype: str, why: str) -> RemoteProtocolError:
    return RemoteProtocolError(f"{mtype}: {why}")


# -- per-message consistency (after every field decoded) -------------------------------
def _check_append(m: AppendEntries) -> str | None:
    last = m.prev_term
    for e in m.entries:
        if not last <= e.term <= m.term:
            return "entries: terms must be non-decreasing, from prev_term up to the message term"
        last = e.term
    if m.prev_term > m.term or (m.prev_index == 0) != (m.prev_term == 0):
        return "prev_term: inconsistent with prev_index or the message term"
    if m.prev_index + len(m.entries) > MAX_U63:
        return "entries: log index overflow"
    return None


def _check_append_resp(m: AppendResponse) -> str | None:
    return "hint_index: must be >= 1" if m.hint_index < 1 else None


def _check_vote(m: RequestVote) -> str | None:
    if m.term == 0:
        return "term: must be >= 1"
    return "last_term: must be <= the message term" if m.last_term > m.term else None


def _check_snapshot(m: InstallSnapshot) -> str | None:
    if m.index < 1:
        return "index: must be >= 1"
    if not 1 <= m.snap_term <= m.term:
        return "snap_term: must be in 1..term"
    if m.offset + len(m.data) > MAX_U63:
        return "offset: overflow"
    return None


_CHECKS: Final[dict[type[Any], Callable[[Any], str | None]]] = {
    AppendEntries: _check_append,
    AppendResponse: _check_append_resp,
    RequestVote: _check_vote,
    InstallSnapshot: _check_snapshot,
}


def decode_message(mtype: str, payload: bytes) -> Message:
    """Strictly decode the payload of a ``mtype`` envelope (see the module docstring)."""
    spec = _BY_TYPE.get(mtype)
    if spec is None:
        raise _bad(mtype, "unknown message type")
    cls, fields = spec
    try:
        obj = decode_cbor(payload)
    except DecodeError as exc:
        raise _bad(mtype, str(exc)) from None
    if not isinstance(obj, dict):
        raise _bad(mtype, "payload must be a map")
    keys = _KEYS[mtype]
    if obj.keys() != keys:
        missing = sorted(keys - obj.keys())
        raise _bad(mtype, f"payload keys must be {sorted(keys)} (missing {missing}, "
                          f"{len(obj.keys() - keys)} unexpected)")
    values: dict[str, Any] = {}
    for f in fields:
        try:
            values[f.attr] = f.decode(obj[f.key])
        except _Bad as exc:
            raise _bad(mtype, f"{f.attr} ({f.key!r}) {exc}") from None
    msg = cls(**values)
    check = _CHECKS.get(cls)
    if check is not None and (why := check(msg)) is not None:
        raise _bad(mtype, why)
    return msg  # type: ignore[no-any-return]


def encode_message(msg: Message) -> tuple[str, dict[str, Any]]:
    """The envelope type and payload map of ``msg``."""
    mtype, fields = WIRE[type(msg)]
    return mtype, {f.key: f.encode(getattr(msg, f.attr)) for f in fields}
