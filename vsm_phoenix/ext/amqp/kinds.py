"""Node kinds: how to build one kind of node and how the control plane talks to it.

Built-in kinds (``vsm-phoenix node --kind ...``):

=========  ==================================================================
``crdt``   SWIM discovery + delta anti-entropy of named CRDT replicas (a
           :class:`~vsm_phoenix.protocol.cluster.ClusterNode`); hosts the ORSet
           ``set`` from the start and adopts every replica a peer ships
``swim``   membership only (:class:`~vsm_phoenix.protocol.swim.SwimNode`)
``kv``     Raft + the linearizable KV (:mod:`vsm_phoenix.protocol.kv`)
``router`` SWIM + the signed command router
           (:class:`~vsm_phoenix.ext.router_node.RouterKind`); it is built from
           the cluster's roster, grants and routes, so ``vsm-phoenix node``
           builds it from its options (:mod:`vsm_phoenix.cli.router`), and
           :func:`load_kind` refuses the bare name
=========  ==================================================================

or any ``module:attribute`` naming a :class:`NodeKind` (or a zero-argument callable
returning one). Each kind lists its control operations (:class:`~vsm_phoenix.ext.amqp.
control.Operation`: parameters and the roster role each needs) beside the ones every
node answers (:data:`~vsm_phoenix.ext.amqp.control.NODE_OPERATIONS`).

("Kind", not "role": a *role* is what the roster grants a principal -- ``peer``,
``read``, ``write``, ``admin``.)
"""

from __future__ import annotations

import hashlib
import importlib
import json
import random
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Final, Protocol

from vsm_phoenix.crdt import CRDT, ORSet
from vsm_phoenix.crypto.identity import ROLE_READ, ROLE_WRITE
from vsm_phoenix.errors import InvalidArgument
from vsm_phoenix.ext.amqp.control import Operation, Param
from vsm_phoenix.protocol.node import Deliver, Node

__all__ = [
    "BUILTIN_KINDS",
    "DEFAULT_REPLICA",
    "CrdtKind",
    "KVKind",
    "NodeKind",
    "SwimKind",
    "load_attribute",
    "load_kind",
    "plain",
    "replica_digest",
]

#: The replica ``ctl add/remove/read`` address when no ``--replica`` is given.
DEFAULT_REPLICA: Final = "set"


class NodeKind(Protocol):
    """How to build one kind of node and talk to it over the control plane (a
    :class:`~vsm_phoenix.ext.amqp.control.ControlCodec` that can also build nodes)."""

    @property
    def name(self) -> str: ...

    @property
    def operations(self) -> Mapping[str, Operation]: ...

    def build(self, node_id: str, rng: random.Random, peers: Sequence[str]) -> Node:
        """A fresh node (empty memory) for ``node_id`` in a cluster of ``peers``."""
        ...

    def decode_request(self, node: Node, raw: Mapping[str, Any]) -> Any:
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


def replica_digest(state: CRDT) -> str:
    """A short digest of a replica's canonical bytes: equal digests, equal states."""
    return hashlib.sha256(state.to_bytes()).hexdigest()[:16]


def _ops(*ops: Operation) -> Mapping[str, Operation]:
    return {op.name: op for op in ops}


def _op(raw: Mapping[str, Any], operations: Mapping[str, Operation], kind: str) -> str:
    op = raw.get("op")
    if not isinstance(op, str) or op not in operations:
        raise InvalidArgument(
            f"unknown {kind} operation {str(op)[:64]!r} (have: {', '.join(operations)})"
        )
    return op


def _text(raw: Mapping[str, Any], key: str, what: str, *, optional: bool = False) -> Any:
    value = raw.get(key)
    if value is None and optional:
        return None
    if not isinstance(value, str):
        raise InvalidArgument(f"{what} must be a string")
    return value


class SwimKind:
    """SWIM membership only. Operations: ``match`` (alive members advertising every
    capability, least loaded first). Status: the alive members."""

    name = "swim"
    operations: Mapping[str, Operation] = _ops(
        Operation("match", ROLE_READ, "alive members with every capability, least loaded first",
                  (Param("required", "CAPABILITY", "required capabilities", many=True,
                         optional=True),)),
    )

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

    def decode_request(self, node: Node, raw: Mapping[str, Any]) -> Any:
        from vsm_phoenix.protocol.swim import Match

        _op(raw, self.operations, self.name)
        required = raw.get("required") or []
        if not isinstance(required, list) or not all(isinstance(c, str) for c in required):
            raise InvalidArgument("match needs a list of capability strings")
        return Match(tuple(required))

    def encode_reply(self, deliver: Deliver) -> Any:
        if deliver.kind in ("sync.mutated", "sync.merged"):
            return None  # done; the payload is only the replica's name
        return plain(deliver.payload)

    def status(self, node: Node) -> dict[str, Any]:
        from vsm_phoenix.protocol.swim import SwimNode

        assert isinstance(node, SwimNode)
        return {"members": node.alive_members()}


_REPLICA = Param("replica", "REPLICA", f"the replica (default {DEFAULT_REPLICA!r})",
                 optional=True, default=DEFAULT_REPLICA)
_ELEM = Param("elem", "ELEMENT", "the element (a string)")


class CrdtKind(SwimKind):
    """SWIM + delta sync of named CRDT replicas (a ClusterNode).

    Hosts the ORSet :data:`DEFAULT_REPLICA` from the start and adopts any replica a
    peer ships (an embedded :class:`~vsm_phoenix.ext.amqp.cluster.Cluster` member
    creates them). Operations: ``add`` / ``remove`` an element of a set replica,
    ``read`` a replica's value, and ``match``. Status: the alive members and, per
    replica, its type, size and digest (equal digests = equal states); ``size`` and
    ``digest`` at the top are those of :data:`DEFAULT_REPLICA`."""

    name = "crdt"
    operations: Mapping[str, Operation] = _ops(
        Operation("add", ROLE_WRITE, "add an element to a set replica (add wins)",
                  (_ELEM, _REPLICA)),
        Operation("remove", ROLE_WRITE, "remove an element of a set replica (observed remove)",
                  (_ELEM, _REPLICA)),
        Operation("read", ROLE_READ, "the replica's value", (_REPLICA,)),
        *SwimKind.operations.values(),
    )

    def __init__(self, period_ms: int = 500, interval_ms: int = 300) -> None:
        super().__init__(period_ms)
        self.interval_ms = interval_ms

    def build(self, node_id: str, rng: random.Random, peers: Sequence[str]) -> Node:
        from vsm_phoenix.protocol.cluster import ClusterNode
        from vsm_phoenix.protocol.sync import SyncConfig

        return ClusterNode(
            node_id, rng, swim=self._config(peers),
            sync=SyncConfig(interval_ms=self.interval_ms),
            replicas={DEFAULT_REPLICA: ORSet()},
        )

    def decode_request(self, node: Node, raw: Mapping[str, Any]) -> Any:
        from vsm_phoenix.protocol.cluster import ClusterNode
        from vsm_phoenix.protocol.sync import Mutate, Read

        op = _op(raw, self.operations, self.name)
        if op == "match":
            return super().decode_request(node, raw)
        assert isinstance(node, ClusterNode)
        name = _text(raw, "replica", "the replica name", optional=True) or DEFAULT_REPLICA
        replicas = node.sync.replicas
        if name not in replicas:
            hosted = ", ".join(sorted(replicas))
            raise InvalidArgument(f"{node.node_id} hosts no replica {name!r} (it hosts: {hosted})")
        if op == "read":
            return Read(name)
        elem = _text(raw, "elem", f"the element to {op}")
        if not hasattr(replicas[name], op):
            raise InvalidArgument(
                f"replica {name!r} is a {type(replicas[name]).__name__}: it has no {op}"
            )
        nid = node.sync.replica_id  # names this node's history: fresh after a wiped disk
        if op == "add":
            if isinstance(replicas[name], ORSet):
                return Mutate(name, lambda s: s.add(nid, elem))
            return Mutate(name, lambda s: s.add(elem))
        return Mutate(name, lambda s: s.remove(elem))

    def status(self, node: Node) -> dict[str, Any]:
        from vsm_phoenix.protocol.cluster import ClusterNode

        assert isinstance(node, ClusterNode)
        replicas = {
            name: {"type": type(state).__name__, "digest": replica_digest(state),
                   "size": _size(state)}
            for name, state in sorted(node.sync.replicas.items())
        }
        default = replicas.get(DEFAULT_REPLICA, {})
        return {
            "members": node.swim.alive_members(),
            "replicas": replicas,
            "size": default.get("size", 0),
            "digest": default.get("digest", ""),
        }


def _size(state: CRDT) -> int:
    value = state.value
    return len(value) if isinstance(value, frozenset | set | dict | list | tuple) else 1


_KEY = Param("k", "KEY", "the key")
_VALUE = Param("v", "VALUE", "the value (a string)")


class KVKind:
    """Raft + the replicated KV (:mod:`vsm_phoenix.protocol.kv`).

    Operations: ``get KEY`` (a linearizable ReadIndex read), ``put KEY VALUE``,
    ``append KEY VALUE``, ``cas KEY VALUE [--old OLD]`` (set when the current value
    is OLD, or absent when no OLD is given; answers true or false), ``delete KEY``.
    Writes carry the client's session id ``c`` and sequence number ``s`` so a retried
    command is applied once. Reply kinds are Raft's (``raft.ok``, ``raft.not-leader``
    with the leader's id as the payload, ``raft.unknown``, ``raft.failed``). Status:
    Raft role, term, leader, commit and applied indexes, a digest of the data."""

    name = "kv"
    operations: Mapping[str, Operation] = _ops(
        Operation("get", ROLE_READ, "the key's value (linearizable read)", (_KEY,)),
        Operation("put", ROLE_WRITE, "set the key", (_KEY, _VALUE), session=True),
        Operation("append", ROLE_WRITE, "append to the key's value", (_KEY, _VALUE),
                  session=True),
        Operation("cas", ROLE_WRITE, "compare and set: true when it was set",
                  (_KEY, _VALUE, Param("e", "OLD", "the expected value (default: absent)",
                                       optional=True)), session=True),
        Operation("delete", ROLE_WRITE, "remove the key", (_KEY,), session=True),
    )

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

    def decode_request(self, node: Node, raw: Mapping[str, Any]) -> Any:
        from vsm_phoenix.protocol import kv

        op = _op(raw, self.operations, self.name)
        key = _text(raw, "k", "the key")
        if op == "get":
            return kv.get(key)
        client, seq = raw.get("c"), raw.get("s")
        if not isinstance(client, str) or type(seq) is not int:
            raise InvalidArgument(f"{op} needs the client's session 'c' (str) and 's' (int)")
        if op == "delete":
            return kv.delete(client, seq, key)
        value = _text(raw, "v", "the value")
        if op == "put":
            return kv.put(client, seq, key, value)
        if op == "append":
            return kv.append(client, seq, key, value)
        return kv.cas(client, seq, key, _text(raw, "e", "the expected value", optional=True),
                      value)

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
            "commit": node.commit_index, "applied": node.last_applied,
            "keys": len(data), "digest": digest,
        }


#: The built-in kinds by name.
BUILTIN_KINDS: Final[Mapping[str, Callable[[], NodeKind]]] = {
    "crdt": CrdtKind, "swim": SwimKind, "kv": KVKind,
}


#: Kinds built from the cluster's credentials and options, not by :func:`load_kind`.
ROSTER_KINDS: Final = ("router",)


def load_attribute(spec: str, what: str) -> Any:
    """The object ``module:attribute`` names (``module.sub:attr.inner`` reaches nested
    attributes). ``InvalidArgument`` naming ``what`` when ``spec`` is not of that form,
    or the module or attribute cannot be imported (the import's own error included)."""
    module, sep, attr = spec.partition(":")
    if not sep or not module or not attr:
        raise InvalidArgument(f"{what} {spec!r} is not module:attribute")
    try:
        obj: Any = importlib.import_module(module)
        for part in attr.split("."):
            obj = getattr(obj, part)
    except Exception as exc:  # the module's own import may fail in any way
        raise InvalidArgument(f"{what} {spec!r} cannot be loaded: "
                              f"{type(exc).__name__}: {exc}") from None
    return obj


def load_kind(spec: str) -> NodeKind:
    """A built-in kind by name (``crdt``, ``swim``, ``kv``) or ``module:attribute``
    naming a kind object or a zero-argument callable returning one.
    ``InvalidArgument`` for anything else (an unknown name, one of
    :data:`ROSTER_KINDS`, a module or attribute that cannot be imported, an object
    that is not a kind)."""
    if spec in BUILTIN_KINDS:
        return BUILTIN_KINDS[spec]()
    if spec in ROSTER_KINDS:
        raise InvalidArgument(f"the {spec} kind is built from the roster: "
                              "RouterKind(roster, ...), or `vsm-phoenix node --kind router`")
    if ":" not in spec:
        raise InvalidArgument(
            f"unknown node kind {spec!r} ({', '.join([*BUILTIN_KINDS, *ROSTER_KINDS])} "
            "or module:attribute)"
        )
    obj = load_attribute(spec, "node kind")
    if callable(obj) and not hasattr(obj, "build"):
        obj = obj()
    if not all(hasattr(obj, a) for a in ("build", "operations", "decode_request", "status")):
        raise InvalidArgument(f"{spec!r} is not a node kind (build, operations, ...)")
    kind: NodeKind = obj
    return kind
