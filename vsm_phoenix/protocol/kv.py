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

Commands are canonical CBOR maps ``{"c": client, "s": seq, "o": op, "k": key, ...}``
built by :func:`put`, :func:`append`, :func:`cas` and :func:`delete`; :func:`get`
builds the read. A malformed command or query is not an error for the replicated log
(whatever a leader committed must apply everywhere alike): it yields a
:class:`KVError` result and changes nothing.

Simulated clients, a fault scheduler and whole randomized runs checked for
linearizability are test tooling and live above this layer, in
:mod:`vsm_phoenix.verify.kv_workload` (``KVWorkload``, ``simulate_kv``).
"""

from __future__ import annotations

import random
from typing import Any, Final

import attrs

from vsm_phoenix.errors import DecodeError
from vsm_phoenix.protocol.envelope import decode_cbor, encode_cbor
from vsm_phoenix.protocol.node import LocalProtocolError, NodeFactory
from vsm_phoenix.protocol.raft import Propose, RaftConfig, RaftNode, Read

__all__ = [
    "STALE",
    "KVError",
    "KVStateMachine",
    "append",
    "cas",
    "delete",
    "get",
    "kv_node_factory",
    "put",
]

SNAPSHOT_VERSION: Final = 1
MAX_KEY: Final = 1024
MAX_VALUE: Final = 1 << 20
_OPS: Final[dict[str, frozenset[str]]] = {
    "put": frozenset({"c", "s", "o", "k", "v"}),
    "append": frozenset({"c", "s", "o", "k", "v"}),
    "cas": frozenset({"c", "s", "o", "k", "e", "v"}),
    "delete": frozenset({"c", "s", "o", "k"}),
}


@attrs.frozen
class KVError:
    """The result of a malformed command or query (nothing was changed)."""

    reason: str


@attrs.frozen
class _Stale:
    def __repr__(self) -> str:
        return "STALE"


#: The result of a command older than its client's latest applied one.
STALE: Final = _Stale()


# -- commands -------------------------------------------------------------------------
def _check_client(client: str, seq: int) -> None:
    if not isinstance(client, str) or not client:
        raise LocalProtocolError("client id must be a non-empty string")
    if type(seq) is not int or seq < 1:
        raise LocalProtocolError("sequence numbers start at 1")


def _check_str(value: object, what: str, limit: int) -> None:
    if not isinstance(value, str) or len(value) > limit:
        raise LocalProtocolError(f"{what} must be a string of at most {limit} characters")


def _command(client: str, seq: int, op: str, key: str, **fields: Any) -> Propose:
    _check_client(client, seq)
    _check_str(key, "key", MAX_KEY)
    return Propose(encode_cbor({"c": client, "s": seq, "o": op, "k": key, **fields}))


def put(client: str, seq: int, key: str, value: str) -> Propose:
    """Set ``key`` to ``value``; result ``None``."""
    _check_str(value, "value", MAX_VALUE)
    return _command(client, seq, "put", key, v=value)


def append(client: str, seq: int, key: str, value: str) -> Propose:
    """Append ``value`` to ``key`` (absent counts as ``""``); result ``None``."""
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
def _decode_command(data: bytes) -> dict[str, Any]:
    obj = decode_cbor(data)
    if not isinstance(obj, dict):
        raise DecodeError("command must be a map")
    op = obj.get("o")
    fields = _OPS.get(op) if isinstance(op, str) else None
    if fields is None or set(obj) != fields:
        raise DecodeError("unknown operation or wrong fields")
    c, s, k = obj["c"], obj["s"], obj["k"]
    if not isinstance(c, str) or not c or type(s) is not int or s < 1 or not isinstance(k, str):
        raise DecodeError("bad client, sequence number or key")
    if "v" in obj and not isinstance(obj["v"], str):
        raise DecodeError("value must be a string")
    if "e" in obj and obj["e"] is not None and not isinstance(obj["e"], str):
        raise DecodeError("expected must be a string or null")
    return obj


class KVStateMachine:
    """The replicated map with client sessions (see the module docstring).

    Invariant: ``sessions[c] == (s, r)`` iff the highest-numbered command of client
    ``c`` applied so far is ``s`` and it returned ``r``; every command is applied at
    most once.
    """

    def __init__(self) -> None:
        self.data: dict[str, str] = {}
        self.sessions: dict[str, tuple[int, bool | None]] = {}
        self.applied_commands = 0  # commands that changed the session table

    def apply(self, command: bytes) -> Any:
        try:
            cmd = _decode_command(command)
        except DecodeError as exc:
            return KVError(str(exc))
        client, seq = cmd["c"], cmd["s"]
        last = self.sessions.get(client)
        if last is not None and seq <= last[0]:
            return last[1] if seq == last[0] else STALE
        op, key = cmd["o"], cmd["k"]
        result: bool | None = None
        if op == "put":
            self.data[key] = cmd["v"]
        elif op == "append":
            self.data[key] = self.data.get(key, "") + cmd["v"]
        elif op == "cas":
            result = self.data.get(key) == cmd["e"]
            if result:
                self.data[key] = cmd["v"]
        else:
            self.data.pop(key, None)
        self.sessions[client] = (seq, result)
        self.applied_commands += 1
        return result

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
            "s": {c: [s, r] for c, (s, r) in self.sessions.items()},
            "n": self.applied_commands,
        })

    def _parse(self, data: bytes) -> tuple[dict[str, str], dict[str, tuple[int, bool | None]],
                                            int]:
        obj = decode_cbor(data)
        if not isinstance(obj, dict) or set(obj) != {"v", "d", "s", "n"}:
            raise DecodeError("KV snapshot must be {v, d, s, n}")
        if obj["v"] != SNAPSHOT_VERSION:
            raise DecodeError(f"unsupported KV snapshot version {obj['v']!r}")
        d, s, n = obj["d"], obj["s"], obj["n"]
        if not isinstance(d, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in d.items()
        ):
            raise DecodeError("KV snapshot data must map strings to strings")
        sessions: dict[str, tuple[int, bool | None]] = {}
        if not isinstance(s, dict):
            raise DecodeError("KV snapshot sessions must be a map")
        for c, entry in s.items():
            if (not isinstance(c, str) or not isinstance(entry, list) or len(entry) != 2
                    or type(entry[0]) is not int or entry[0] < 1
                    or not (entry[1] is None or type(entry[1]) is bool)):
                raise DecodeError("KV snapshot session must be client: [seq, result]")
            sessions[c] = (entry[0], entry[1])
        if type(n) is not int or n < 0:
            raise DecodeError("KV snapshot count must be a non-negative integer")
        return dict(d), sessions, n

    def check_snapshot(self, data: bytes) -> None:
        self._parse(data)

    def restore(self, data: bytes) -> None:
        self.data, self.sessions, self.applied_commands = self._parse(data)


def kv_node_factory(config: RaftConfig) -> NodeFactory:
    """A :class:`~vsm_phoenix.protocol.node.NodeFactory` of KV Raft nodes."""

    def factory(node_id: str, rng: random.Random) -> RaftNode:
        return RaftNode(node_id, rng, config, KVStateMachine())

    return factory
