"""A linearizable key-value store replicated with Raft, and clients that drive it.

Theory of operation
-------------------
:class:`KVStateMachine` is the :class:`~vsm_phoenix.protocol.raft.StateMachine` a
:class:`~vsm_phoenix.protocol.raft.RaftNode` replicates: a map from ``str`` keys to
``str`` values with ``put``, ``append``, compare-and-set (``cas``; expected ``None``
means "absent") and ``delete`` as log commands, and ``get`` as a ReadIndex query
(:class:`~vsm_phoenix.protocol.raft.Read`), so reads never grow the log.

**Exactly once.** Every command carries its client id and a per-client sequence
number; a client has at most one command outstanding and numbers them 1, 2, 3, ...
The state machine keeps, per client, the last sequence number it applied and that
command's result (the *session*). A command whose number is not above the session's
is not applied again: the same number returns the remembered result, an older one
returns :data:`STALE`. So a client may retry a command on any node, any number of
times (after a timeout, a lost reply or a leader change) and it takes effect once.
Sessions are part of the snapshot, so the guarantee survives compaction and restarts.

**Bounded sessions** (Raft dissertation §6.3). Every client id that ever wrote would
otherwise stay in every replica's memory and snapshot for ever, so a client minting
fresh ids (or a peer relaying them) could grow all replicas without limit. Sessions
therefore expire, and expiry is decided by the replicated log alone, never by a
replica's clock, so every replica drops the same sessions at the same command: the
*session clock* is :attr:`KVStateMachine.applied_commands`, the number of commands
that created or advanced a session. Each session remembers the clock value of its
last command (``used``). After each such command the state machine, at apply time,

* drops the least recently used sessions while there are more than
  :attr:`KVConfig.max_sessions` (LRU order is ``(used, client)``, a total order that
  the snapshot carries, so a replica restored from a snapshot evicts as one that
  applied the whole log), and
* drops every session idle for more than :attr:`KVConfig.session_ttl_commands`
  commands,

and counts the sessions it dropped (:attr:`KVStateMachine.sessions_dropped`).

A command from a client without a session opens one. Once any session has been
dropped (:attr:`KVStateMachine.sessions_dropped` > 0), only a command numbered 1 does:
a higher number from a client without a session is refused with
:data:`E_SESSION_EXPIRED` and changes nothing, since the client's session may have
been dropped, and then the store no longer knows whether an earlier attempt of this
command was applied — applying it now could apply it twice (the dissertation's rule).
The client must treat that command's outcome as unknown and continue under a **new**
client id (a new session). Before the first drop no client without a session can
have had a command applied, so a first number above 1 (a client whose first commands
were abandoned unapplied) opens the session as it always did. A
client's first command is protected the same way only if it opens the session with
:func:`open_session` (sequence number 1, changes no data; its real commands then
start at 2): a retried *open* is harmless, whereas a retried first write whose session
expired in between would look like a new client's first write and apply again.

**Bounded state.** Client ids are at most :data:`MAX_CLIENT_ID` characters, keys
:data:`MAX_KEY` and values :data:`MAX_VALUE` (checked by the builders and again at
apply time, since a committed command may come from anyone); an ``append`` that would
make a value longer than :data:`MAX_VALUE` is refused (:data:`E_TOO_LARGE`), and a
write that would take the data over :attr:`KVConfig.max_data_chars` is refused
(:data:`E_QUOTA`; deletes always go through). A session keeps only its last result —
``None``, a ``bool`` or one of those two error codes — never a value, so its size
is bounded by the client id's. A snapshot is thus at most ``max_data_chars`` of data
plus ``max_sessions`` sessions, and :meth:`KVStateMachine.check_snapshot` refuses
one beyond those bounds.

Commands are canonical CBOR maps ``{"c": client, "s": seq, "o": op, "k": key, ...}``
built by :func:`put`, :func:`append`, :func:`cas`, :func:`delete` and
:func:`open_session`; :func:`get` builds the read. A command that is malformed or over
a size limit is not an error for the replicated log (whatever a leader committed must
apply everywhere alike): it yields a :class:`KVError` result and changes nothing. A
refusal that depends on the state (:data:`E_TOO_LARGE` for an ``append``,
:data:`E_QUOTA`) is recorded in the session like any result, so that a retry of the
same command answers the same refusal instead of applying later.

Every replica of a cluster must run with the same :class:`KVConfig`, as with the same
:class:`~vsm_phoenix.protocol.raft.RaftConfig`; a snapshot over this replica's
bounds is refused (``DecodeError``).

Simulated clients, a fault scheduler and whole randomized runs checked for
linearizability are test tooling and live above this layer, in
:mod:`vsm_phoenix.verify.kv_workload` (``KVWorkload``, ``simulate_kv``).
"""

from __future__ import annotations

import random
from collections import OrderedDict
from typing import Any, Final, NamedTuple

import attrs

from vsm_phoenix.errors import DecodeError
from vsm_phoenix.protocol.envelope import decode_cbor, encode_cbor
from vsm_phoenix.protocol.node import LocalProtocolError, NodeFactory
from vsm_phoenix.protocol.raft import Propose, RaftConfig, RaftNode, Read

__all__ = [
    "E_MALFORMED",
    "E_QUOTA",
    "E_SESSION_EXPIRED",
    "E_TOO_LARGE",
    "KEY_OVERHEAD_CHARS",
    "MAX_CLIENT_ID",
    "MAX_KEY",
    "MAX_VALUE",
    "STALE",
    "KVConfig",
    "KVError",
    "KVStateMachine",
    "Session",
    "append",
    "cas",
    "delete",
    "get",
    "kv_node_factory",
    "open_session",
    "put",
]

SNAPSHOT_VERSION: Final = 2
#: The longest key, value and client id (in characters).
MAX_KEY: Final = 1024
MAX_VALUE: Final = 1 << 20
MAX_CLIENT_ID: Final = 256
#: What a key costs against :attr:`KVConfig.max_data_chars` beside its characters and
#: its value's (so that many short keys cannot dodge the quota).
KEY_OVERHEAD_CHARS: Final = 16

#: :attr:`KVError.code` values. ``E_MALFORMED``: not a command (or query) of this
#: store; ``E_TOO_LARGE``: a client id, key or value over its limit, or an append
#: that would make a value longer than :data:`MAX_VALUE`; ``E_QUOTA``: the write
#: would take the data over :attr:`KVConfig.max_data_chars`; ``E_SESSION_EXPIRED``:
#: the client has no session, the command is not numbered 1, and sessions have been
#: dropped (see the module docstring: outcome unknown, continue under a new client id).
E_MALFORMED: Final = "kv.malformed"
E_TOO_LARGE: Final = "kv.too-large"
E_QUOTA: Final = "kv.quota"
E_SESSION_EXPIRED: Final = "kv.session-expired"

_OPS: Final[dict[str, frozenset[str]]] = {
    "put": frozenset({"c", "s", "o", "k", "v"}),
    "append": frozenset({"c", "s", "o", "k", "v"}),
    "cas": frozenset({"c", "s", "o", "k", "e", "v"}),
    "delete": frozenset({"c", "s", "o", "k"}),
    "open": frozenset({"c", "s", "o"}),
}
#: The refusals a session may remember (they depend on the state, so a retry must
#: see the same answer), with their fixed reasons.
_RECORDED: Final[dict[str, str]] = {
    E_TOO_LARGE: f"the value would be longer than {MAX_VALUE} characters",
    E_QUOTA: "the store is full (KVConfig.max_data_chars)",
}


@attrs.frozen
class KVError:
    """The result of a command or query that was refused (nothing was changed but,
    for the state-dependent refusals, the session). ``code`` is one of the ``E_*``
    constants; branch on it, not on ``reason``."""

    reason: str
    code: str = E_MALFORMED


@attrs.frozen
class _Stale:
    def __repr__(self) -> str:
        return "STALE"


#: The result of a command older than its client's latest applied one.
STALE: Final = _Stale()

_EXPIRED: Final = KVError("no session for this client: it expired, or the command is not "
                          "the client's first; the outcome of this command is unknown, "
                          "continue under a new client id", E_SESSION_EXPIRED)

#: What a session remembers of its last command's result.
Result = bool | None | str


class Session(NamedTuple):
    """One client's session: its last sequence number, that command's result (``None``,
    a ``bool``, or :data:`E_TOO_LARGE` / :data:`E_QUOTA`) and the session clock
    (:attr:`KVStateMachine.applied_commands`) when it was applied."""

    seq: int
    result: Result
    used: int


def _positive_int(instance: Any, attribute: attrs.Attribute[int], value: int) -> None:
    if type(value) is not int or value < 1:
        raise LocalProtocolError(f"KVConfig.{attribute.name} must be an integer >= 1")


@attrs.frozen
class KVConfig:
    """The KV's bounds; every replica of a cluster must use the same values.

    ``max_sessions`` (default 10,000): at most this many client sessions; a new one
    evicts the least recently used. ``session_ttl_commands`` (default 1,000,000): a
    session not used for that many session-changing commands (of any client) expires.
    Both are counted in commands of the replicated log, never in time, so every replica
    expires the same sessions. ``max_data_chars`` (default 128 Mi): the quota on the
    data, counted as the characters of keys and values plus
    :data:`KEY_OVERHEAD_CHARS` per key (at most 4 UTF-8 bytes a character, so the
    default keeps a snapshot within ``RaftConfig.max_snapshot_bytes``' 1 GiB).

    With the defaults a session holds at most a :data:`MAX_CLIENT_ID`-character id and
    three small fields, so all sessions take a few MiB at most.
    """

    max_sessions: int = attrs.field(default=10_000, validator=_positive_int)
    session_ttl_commands: int = attrs.field(default=1_000_000, validator=_positive_int)
    max_data_chars: int = attrs.field(default=128 << 20, validator=_positive_int)


# -- commands -------------------------------------------------------------------------
def _check_client(client: str, seq: int) -> None:
    if not isinstance(client, str) or not 0 < len(client) <= MAX_CLIENT_ID:
        raise LocalProtocolError(
            f"client id must be a non-empty string of at most {MAX_CLIENT_ID} characters")
    if type(seq) is not int or seq < 1:
        raise LocalProtocolError("sequence numbers start at 1")


def _check_str(value: object, what: str, limit: int) -> None:
    if not isinstance(value, str) or len(value) > limit:
        raise LocalProtocolError(f"{what} must be a string of at most {limit} characters")


def _command(client: str, seq: int, op: str, key: str, **fields: Any) -> Propose:
    _check_client(client, seq)
    _check_str(key, "key", MAX_KEY)
    return Propose(encode_cbor({"c": client, "s": seq, "o": op, "k": key, **fields}))


def open_session(client: str) -> Propose:
    """Open ``client``'s session: sequence number 1, changes no data, result ``None``.
    The client's commands then start at 2, so that even its first write is refused
    (:data:`E_SESSION_EXPIRED`) rather than applied twice if the session expires
    between an attempt and its retry."""
    _check_client(client, 1)
    return Propose(encode_cbor({"c": client, "s": 1, "o": "open"}))


def put(client: str, seq: int, key: str, value: str) -> Propose:
    """Set ``key`` to ``value``; result ``None``."""
    _check_str(value, "value", MAX_VALUE)
    return _command(client, seq, "put", key, v=value)


def append(client: str, seq: int, key: str, value: str) -> Propose:
    """Append ``value`` to ``key`` (absent counts as ``""``); result ``None``, or a
    :data:`E_TOO_LARGE` :class:`KVError` if the value would exceed :data:`MAX_VALUE`."""
    _check_str(value, "value", MAX_VALUE)
    return _command(client, seq, "append", key, v=value)


def cas(client: str, seq: int, key: str, expected: str | None, new: str) -> Propose:
    """Set ``key`` to ``new`` iff it holds ``expected`` (``None``: absent); result bool."""
    if expected is not None:
        _check_str(expected, "expected", MAX_VALUE)
    _check_str(new, "new", MAX_VALUE)
    return _command(client, seq, "cas", key, e=expected, v=new)


def delete(client: str, seq: int, key: str) -> Propose:
    """Remove ``key``; result ``None``."""
    return _command(client, seq, "delete", key)


def get(key: str) -> Read:
    """Read ``key`` linearizably (ReadIndex); result: the value or ``None``."""
    _check_str(key, "key", MAX_KEY)
    return Read(encode_cbor({"o": "get", "k": key}))


# -- the state machine ----------------------------------------------------------------
def _parse_command(data: bytes) -> dict[str, Any] | KVError:
    """The command in ``data``, or the :class:`KVError` that refuses it (a function of
    the bytes alone: every attempt of these bytes is refused alike)."""
    try:
        obj = decode_cbor(data)
    except DecodeError as exc:
        return KVError(str(exc))
    if not isinstance(obj, dict):
        return KVError("command must be a map")
    op = obj.get("o")
    fields = _OPS.get(op) if isinstance(op, str) else None
    if fields is None or set(obj) != fields:
        return KVError("unknown operation or wrong fields")
    c, s, k = obj["c"], obj["s"], obj.get("k", "")
    if not isinstance(c, str) or not c or type(s) is not int or s < 1 or not isinstance(k, str):
        return KVError("bad client, sequence number or key")
    if "v" in obj and not isinstance(obj["v"], str):
        return KVError("value must be a string")
    if "e" in obj and obj["e"] is not None and not isinstance(obj["e"], str):
        return KVError("expected must be a string or null")
    if (len(c) > MAX_CLIENT_ID or len(k) > MAX_KEY or len(obj.get("v", "")) > MAX_VALUE
            or len(obj.get("e") or "") > MAX_VALUE):
        return KVError(f"client id, key or value too long (limits {MAX_CLIENT_ID}, "
                       f"{MAX_KEY}, {MAX_VALUE} characters)", E_TOO_LARGE)
    return obj


def _answer(result: Result) -> Any:
    return KVError(_RECORDED[result], result) if isinstance(result, str) else result


def _cost(key: str, value: str) -> int:
    return len(key) + len(value) + KEY_OVERHEAD_CHARS


class KVStateMachine:
    """The replicated map with bounded client sessions (see the module docstring).

    Invariants: ``sessions[c] == Session(s, r, u)`` iff client ``c`` still has a
    session, ``s`` is the highest-numbered command of ``c`` applied and ``r`` its
    result, applied when ``applied_commands`` became ``u``; every command is applied
    at most once; ``sessions`` is in LRU order ``(used, client)``, holds at most
    ``config.max_sessions`` entries, none idle for more than
    ``config.session_ttl_commands``; ``sessions_dropped`` counts the sessions that
    left it; the data's cost (:data:`KEY_OVERHEAD_CHARS`) is at most
    ``config.max_data_chars``.
    """

    def __init__(self, config: KVConfig | None = None) -> None:
        self.config = config if config is not None else KVConfig()
        self.data: dict[str, str] = {}
        self.sessions: OrderedDict[str, Session] = OrderedDict()
        #: The session clock: commands that created or advanced a session.
        self.applied_commands = 0
        #: Sessions evicted or expired so far (from then on, see the module docstring,
        #: a client without a session must start at 1).
        self.sessions_dropped = 0
        self._data_chars = 0

    @property
    def data_chars(self) -> int:
        """What the data costs against :attr:`KVConfig.max_data_chars`."""
        return self._data_chars

    def apply(self, command: bytes) -> Any:
        cmd = _parse_command(command)
        if isinstance(cmd, KVError):
            return cmd
        client, seq = cmd["c"], cmd["s"]
        last = self.sessions.get(client)
        if last is None:
            if seq != 1 and self.sessions_dropped:
                return _EXPIRED
        elif seq <= last.seq:
            return _answer(last.result) if seq == last.seq else STALE
        result = self._execute(cmd)
        self._record(client, seq, result)
        return _answer(result)

    def _execute(self, cmd: dict[str, Any]) -> Result:
        op = cmd["o"]
        if op == "open":
            return None
        key = cmd["k"]
        if op == "put":
            return self._write(key, cmd["v"])
        if op == "append":
            value = self.data.get(key, "") + cmd["v"]
            if len(value) > MAX_VALUE:
                return E_TOO_LARGE
            return self._write(key, value)
        if op == "cas":
            if self.data.get(key) != cmd["e"]:
                return False
            return self._write(key, cmd["v"]) or True
        old = self.data.pop(key, None)
        if old is not None:
            self._data_chars -= _cost(key, old)
        return None

    def _write(self, key: str, value: str) -> str | None:
        """Set ``key`` unless that takes the data over quota (then :data:`E_QUOTA`)."""
        old = self.data.get(key)
        grow = _cost(key, value) - (0 if old is None else _cost(key, old))
        if grow > 0 and self._data_chars + grow > self.config.max_data_chars:
            return E_QUOTA
        self.data[key] = value
        self._data_chars += grow
        return None

    def _record(self, client: str, seq: int, result: Result) -> None:
        """Advance the session clock, remember ``client``'s result as its most recent
        session, then evict (LRU over ``max_sessions``) and expire (idle over the TTL)."""
        self.applied_commands += 1
        now = self.applied_commands
        sessions = self.sessions
        sessions.pop(client, None)
        sessions[client] = Session(seq, result, now)
        before = len(sessions)
        while len(sessions) > self.config.max_sessions:
            sessions.popitem(last=False)
        ttl = self.config.session_ttl_commands
        while now - next(iter(sessions.values())).used > ttl:
            sessions.popitem(last=False)
        self.sessions_dropped += before - len(sessions)

    def query(self, query: bytes) -> Any:
        try:
            q = decode_cbor(query)
        except DecodeError as exc:
            return KVError(str(exc))
        if not isinstance(q, dict) or set(q) != {"o", "k"} or q["o"] != "get" or not isinstance(
            q["k"], str
        ):
            return KVError("query must be {o: get, k: key}")
        return self.data.get(q["k"])

    def snapshot(self) -> bytes:
        return encode_cbor({
            "v": SNAPSHOT_VERSION,
            "d": self.data,
            "s": {c: [s.seq, s.result, s.used] for c, s in self.sessions.items()},
            "n": self.applied_commands,
            "x": self.sessions_dropped,
        })

    def _parse(self, data: bytes) -> tuple[dict[str, str], OrderedDict[str, Session], int,
                                            int, int]:
        """Data, sessions (in LRU order), clock, drop count and data cost of a
        snapshot, checked against this replica's bounds. Version 1 (sessions without
        ``used``, no drop count) is read as if every session had been used at the
        snapshot's clock and none dropped (version 1 never dropped one)."""
        obj = decode_cbor(data)
        version = obj.get("v") if isinstance(obj, dict) else None
        fields = {"v", "d", "s", "n"} if version == 1 else {"v", "d", "s", "n", "x"}
        if not isinstance(obj, dict) or set(obj) != fields:
            raise DecodeError("KV snapshot must be {v, d, s, n, x} (version 1: {v, d, s, n})")
        if type(version) is not int or version not in (1, SNAPSHOT_VERSION):
            raise DecodeError("unsupported KV snapshot version")
        d, s, n, x = obj["d"], obj["s"], obj["n"], obj.get("x", 0)
        if type(n) is not int or n < 0 or type(x) is not int or x < 0:
            raise DecodeError("KV snapshot counts must be non-negative integers")
        cfg = self.config
        if not isinstance(d, dict):
            raise DecodeError("KV snapshot data must map strings to strings")
        cost = 0
        for k, v in d.items():
            if not (isinstance(k, str) and isinstance(v, str)):
                raise DecodeError("KV snapshot data must map strings to strings")
            if len(k) > MAX_KEY or len(v) > MAX_VALUE:
                raise DecodeError("KV snapshot key or value over its limit")
            cost += _cost(k, v)
        if cost > cfg.max_data_chars:
            raise DecodeError("KV snapshot data over KVConfig.max_data_chars")
        if not isinstance(s, dict):
            raise DecodeError("KV snapshot sessions must be a map")
        if len(s) > cfg.max_sessions:
            raise DecodeError("KV snapshot has more sessions than KVConfig.max_sessions")
        width = 2 if version == 1 else 3
        rows: list[tuple[int, str, Session]] = []
        for c, entry in s.items():
            if (not isinstance(c, str) or not 0 < len(c) <= MAX_CLIENT_ID
                    or not isinstance(entry, list) or len(entry) != width
                    or type(entry[0]) is not int or entry[0] < 1
                    or not (entry[1] is None or type(entry[1]) is bool
                            or (version > 1 and isinstance(entry[1], str)
                                 and entry[1] in _RECORDED))):
                raise DecodeError("KV snapshot session must be client: [seq, result, used]")
            used = n if version == 1 else entry[2]
            if type(used) is not int or not 0 <= n - used <= cfg.session_ttl_commands:
                raise DecodeError("KV snapshot session used outside the TTL before the clock")
            rows.append((used, c, Session(entry[0], entry[1], used)))
        rows.sort(key=lambda row: (row[0], row[1]))
        return dict(d), OrderedDict((c, session) for _, c, session in rows), n, x, cost

    def check_snapshot(self, data: bytes) -> None:
        self._parse(data)

    def restore(self, data: bytes) -> None:
        (self.data, self.sessions, self.applied_commands, self.sessions_dropped,
         self._data_chars) = self._parse(data)


def kv_node_factory(config: RaftConfig, kv: KVConfig | None = None) -> NodeFactory:
    """A :class:`~vsm_phoenix.protocol.node.NodeFactory` of KV Raft nodes, each with a
    :class:`KVStateMachine` bounded by ``kv`` (default :class:`KVConfig`)."""

    def factory(node_id: str, rng: random.Random) -> RaftNode:
        return RaftNode(node_id, rng, config, KVStateMachine(kv))

    return factory
