"""Roles: how to build one kind of node and how the control plane talks to it.

Built-in roles: ``crdt`` (SWIM discovery + delta anti-entropy of an ORSet, the
:class:`~vsm_phoenix.protocol.cluster.ClusterNode`), ``swim`` (membership only), ``kv``
(Raft + the replicated KV); or any ``module:attribute`` naming a :class:`Role`.

Each role names its ``read_ops``: the control operations a ``read`` principal may ask
for; every other operation of the role needs ``write`` (see
:mod:`vsm_phoenix.ext.amqp.node` for the ``admin`` operations).
"""

from __future__ import annotations

import hashlib
import importlib
import json
import random
from collections.abc import Callable, Sequence
from typing import Any, Protocol

from vsm_phoenix.crdt import CRDT, ORSet
from vsm_phoenix.errors import InvalidArgument
from vsm_phoenix.protocol.node import Deliver, Node

__all__ = ["CrdtRole", "KvRole", "Role", "SwimRole", "load_role", "plain"]


class Role(Protocol):
    """How to build one kind of node and talk to it over the control plane."""

    name: str
    read_ops: frozenset[str]

    def build(self, node_id: str, rng: random.Random, peers: Sequence[str]) -> Node:
        """A fresh node (empty memory) for ``node_id`` in a cluster of ``peers``."""
        ...

    def decode_request(self, node: Node, raw: Any) -> Any:
        """The ``ClientRequest`` payload for control request ``raw``."""
        ...

    def encode_reply(self, deliver: Deliver) -> Any:
        """A CBOR-encodable rendering of a reply."""
        ...

    def status(self, node: Node) -> dict[str, Any]:
        """A CBOR-encodable summary of the node's state."""
        ...


def plain(value: Any) -> Any:
    """A CBOR-encodable rendering of a reply payload (CRDTs by their sorted value)."""
    if value is None or isinstance(value, str | int | float | bool | bytes):
        return value
    if isinstance(value, CRDT):
        return plain(value.value)
    if isinstance(value, frozenset | set):
        return sorted((plain(v) for v in value), key=repr)
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    return repr(value)


def _request_op(raw: Any) -> tuple[str, dict[str, Any]]:
    if not isinstance(raw, dict) or not isinstance(raw.get("op"), str):
        raise InvalidArgument("a control request is a map with a str 'op'")
    return raw["op"], raw


class SwimRole:
    """SWIM membership only. Requests: ``{"op": "match", "required": [...]}``."""

    name = "swim"
    read_ops = frozenset({"match"})

    def __init__(self, period_ms: int = 500) -> None:
        self.period_ms = period_ms

    def _config(self, peers: Sequence[str]) -> Any:
        from vsm_phoenix.protocol.swim import SwimConfig

        return SwimConfig(seeds=tuple(peers), period_ms=self.period_ms,
                          ping_timeout_ms=max(1, self.period_ms // 3),
                          join_retry_ms=self.period_ms, reconnect_interval_ms=4 * self.period_ms)

    def build(self, node_id: str, rng: random.Random, peers: Sequence[str]) -> Node:
        from vsm_phoenix.protocol.swim import SwimNode

        return SwimNode(node_id, rng, self._config(peers))

    def decode_request(self, node: Node, raw: Any) -> Any:
        from vsm_phoenix.protocol.swim import Match

        op, req = _request_op(raw)
        if op == "match":
            return Match(tuple(str(c) for c in req.get("required", ())))
        raise InvalidArgument(f"unknown swim op {op!r}")

    def encode_reply(self, deliver: Deliver) -> Any:
        return plain(deliver.payload)

    def status(self, node: Node) -> dict[str, Any]:
        from vsm_phoenix.protocol.swim import SwimNode

        assert isinstance(node, SwimNode)
        return {"members": node.alive_members()}


class CrdtRole(SwimRole):
    """SWIM + delta sync of one ORSet named ``set`` (a ClusterNode).

    Requests: ``{"op": "add", "elem": e}``, ``{"op": "remove", "elem": e}``,
    ``{"op": "read"}`` (the sorted elements). Status: members, set size and a digest of
    the replica's canonical bytes (equal digests = equal states)."""

    name = "crdt"
    read_ops = frozenset({"read"})

    def __init__(self, period_ms: int = 500, interval_ms: int = 300) -> None:
        super().__init__(period_ms)
        self.interval_ms = interval_ms

    def build(self, node_id: str, rng: random.Random, peers: Sequence[str]) -> Node:
        from vsm_phoenix.protocol.cluster import ClusterNode
        from vsm_phoenix.protocol.sync import SyncConfig

        return ClusterNode(
            node_id, rng, swim=self._config(peers),
            sync=SyncConfig(interval_ms=self.interval_ms), replicas={"set": ORSet()},
        )

    def decode_request(self, node: Node, raw: Any) -> Any:
        from vsm_phoenix.protocol.sync import Mutate, Read

        op, req = _request_op(raw)
        nid = node.node_id
        if op == "add":
            elem = req.get("elem")
            if not isinstance(elem, str | int):
                raise InvalidArgument("add needs a str or int 'elem'")
            return Mutate("set", lambda s: s.add(nid, elem))
        if op == "remove":
            elem = req.get("elem")
            if not isinstance(elem, str | int):
                raise InvalidArgument("remove needs a str or int 'elem'")
            return Mutate("set", lambda s: s.remove(elem))
        if op == "read":
            return Read("set")
        raise InvalidArgument(f"unknown crdt op {op!r}")

    def status(self, node: Node) -> dict[str, Any]:
        from vsm_phoenix.protocol.cluster import ClusterNode

        assert isinstance(node, ClusterNode)
        replica = node.sync.replicas["set"]
        return {
            "members": node.swim.alive_members(),
            "size": len(replica.value),
            "digest": hashlib.sha256(replica.to_bytes()).hexdigest()[:16],
        }


_BUILTIN_ROLES: dict[str, Callable[[], Role]] = {"swim": SwimRole, "crdt": CrdtRole}


def load_role(spec: str) -> Role:
    """A built-in role by name (``crdt``, ``swim``, ``kv``) or ``module:attribute``
    naming a role object or a zero-argument callable returning one.
    ``InvalidArgument`` for anything else (an unknown name, a module or attribute that
    cannot be imported)."""
    if spec in _BUILTIN_ROLES:
        return _BUILTIN_ROLES[spec]()
    if spec == "kv":
        return _kv_role()
    if ":" not in spec:
        raise InvalidArgument(f"unknown role {spec!r} (crdt, swim, kv or module:attribute)")
    module, _, attr = spec.partition(":")
    try:
        obj = getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError, ValueError) as exc:
        raise InvalidArgument(f"role {spec!r} cannot be loaded: {exc}") from None
    if callable(obj) and not hasattr(obj, "build"):
        obj = obj()
    role: Role = obj
    return role


def _kv_role() -> Role:
    return KvRole()


class KvRole:
    """Raft + the replicated KV (:mod:`vsm_phoenix.protocol.kv`).

    Requests (maps): ``{"op": "put"|"append", "c": client, "s": seq, "k": key, "v":
    value}``, ``{"op": "cas", "c", "s", "k", "e": expected-or-null, "v"}``,
    ``{"op": "delete", "c", "s", "k"}``, ``{"op": "get", "k": key}``. Reply kinds are
    Raft's (``raft.ok``, ``raft.not-leader`` with the leader hint, ``raft.unknown``,
    ``raft.failed``). Status: role, term, leader, commit/applied indexes and a digest
    of the applied data."""

    name = "kv"
    read_ops = frozenset({"get"})

    def __init__(self, election_timeout_ms: int = 1000, heartbeat_ms: int = 100) -> None:
        self.election_timeout_ms = election_timeout_ms
        self.heartbeat_ms = heartbeat_ms

    def build(self, node_id: str, rng: random.Random, peers: Sequence[str]) -> Node:
        from vsm_phoenix.protocol.kv import KVStateMachine
        from vsm_phoenix.protocol.raft import RaftConfig, RaftNode

        config = RaftConfig(peers=tuple(sorted({*peers, node_id})),
                            election_timeout_ms=self.election_timeout_ms,
                            heartbeat_ms=self.heartbeat_ms, batch_delay_ms=2)
        return RaftNode(node_id, rng, config, KVStateMachine())

    def decode_request(self, node: Node, raw: Any) -> Any:
        from vsm_phoenix.protocol import kv

        op, req = _request_op(raw)
        try:
            if op == "get":
                return kv.get(req["k"])
            client, seq, key = req["c"], req["s"], req["k"]
            if op == "put":
                return kv.put(client, seq, key, req["v"])
            if op == "append":
                return kv.append(client, seq, key, req["v"])
            if op == "cas":
                return kv.cas(client, seq, key, req["e"], req["v"])
            if op == "delete":
                return kv.delete(client, seq, key)
        except KeyError as exc:
            raise InvalidArgument(f"{op} request lacks {exc}") from None
        raise InvalidArgument(f"unknown kv op {op!r}")

    def encode_reply(self, deliver: Deliver) -> Any:
        from vsm_phoenix.protocol.kv import STALE, KVError

        value = deliver.payload
        if isinstance(value, KVError):
            return {"error": value.reason}
        if value is STALE:
            return {"error": "stale"}
        return plain(value)

    def status(self, node: Node) -> dict[str, Any]:
        from vsm_phoenix.protocol.kv import KVStateMachine
        from vsm_phoenix.protocol.raft import RaftNode

        assert isinstance(node, RaftNode)
        sm = node.state_machine
        data = dict(sm.data) if isinstance(sm, KVStateMachine) else {}
        digest = hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]
        return {
            "role": node.role.value, "term": node.term, "leader": node.leader_id,
            "commit": node.commit_index, "applied": node.last_applied, "digest": digest,
            "summary": f"{node.role.value[:1]}/t{node.term}/a{node.last_applied}",
        }
