"""The AMQP (RabbitMQ) runner: any sans-IO node as a process on a broker (asyncio,
aio-pika).

Modules, one concept each:

* :mod:`~vsm_phoenix.ext.amqp.topology` -- exchange, queue and routing-key names; the
  bounded dead-letter queue; broker reachability; URL redaction.
* :mod:`~vsm_phoenix.ext.amqp.endpoint` -- :class:`AmqpConfig`, the connection, sealing
  and signing, the batching outbox with publisher confirms, dead-lettering.
* :mod:`~vsm_phoenix.ext.amqp.node` -- :class:`AmqpNode`, the node runner: effects,
  group commit, role checks and the control operations, fencing.
* :mod:`~vsm_phoenix.ext.amqp.control` -- the control plane: every operation, its
  parameters and the roster role it needs, in one table.
* :mod:`~vsm_phoenix.ext.amqp.client` -- :class:`AmqpClient`, the control-plane client.
* :mod:`~vsm_phoenix.ext.amqp.kinds` -- node kinds (``crdt``, ``swim``, ``kv``): how to
  build each kind of node and talk to it.
* :mod:`~vsm_phoenix.ext.amqp.cluster` -- :class:`Cluster`, the library API: replicated
  CRDTs and the KV across processes in a few lines of asyncio.
* :mod:`~vsm_phoenix.ext.amqp.process` / :mod:`~vsm_phoenix.ext.amqp.simulate` --
  node processes and the multi-process ``simulate --transport amqp`` scenario.

The errors this package raises are importable from it (``DecodeError``,
``AuthenticationError``, ``ReplayError``, ``KeyExpiredError``, ``CapacityError``,
``PermissionDenied``, ``InvalidArgument``, ``TypeMismatch``, ``NodeFenced``,
``ControlError``; all derive from ``VsmPhoenixError``).

Security, in one paragraph (README, "Threat model", has the whole story): every frame
is sealed with the cluster keyset (AES-256-GCM, header authenticated) and every AMQP
body is a batch signed by its sender's own Ed25519 identity, checked against the
authority-signed roster before anything in it is parsed; a frame must be sealed in its
signer's name, so a member cannot speak for another; the replay window records a frame
only after all of that. An unauthenticated body costs one parse, at most one signature
check, one dead letter and (rate-limited) one log line.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the names below, imported on first use (the package loads without
    # aio-pika, so the command line can explain what to install)
    from vsm_phoenix.errors import (
        AuthenticationError,
        CapacityError,
        DecodeError,
        InvalidArgument,
        KeyExpiredError,
        PermissionDenied,
        ReplayError,
        TypeMismatch,
        VsmPhoenixError,
    )
    from vsm_phoenix.ext.amqp.client import AmqpClient, ControlError
    from vsm_phoenix.ext.amqp.cluster import KV, Cluster, Replica, lock_data_dir, start_node
    from vsm_phoenix.ext.amqp.control import (
        ADMIN_OPS,
        CTL_REPLY,
        CTL_REQUEST,
        NODE_OPERATIONS,
        ControlCodec,
        Operation,
        Param,
        build_request,
    )
    from vsm_phoenix.ext.amqp.endpoint import BATCH_CONTENT_TYPE, AmqpConfig
    from vsm_phoenix.ext.amqp.kinds import (
        BUILTIN_KINDS,
        CrdtKind,
        KVKind,
        NodeKind,
        SwimKind,
        load_kind,
    )
    from vsm_phoenix.ext.amqp.node import ENVELOPE, AmqpNode, NodeFenced
    from vsm_phoenix.ext.amqp.topology import (
        DEFAULT_AMQP_URL,
        Topology,
        broker_available,
        declare_topology,
        delete_topology,
        redact,
        wait_for_broker,
    )

#: Where each public name lives.
_HOME = {
    "ADMIN_OPS": "vsm_phoenix.ext.amqp.control",
    "AmqpClient": "vsm_phoenix.ext.amqp.client",
    "AmqpConfig": "vsm_phoenix.ext.amqp.endpoint",
    "AmqpNode": "vsm_phoenix.ext.amqp.node",
    "AuthenticationError": "vsm_phoenix.errors",
    "BATCH_CONTENT_TYPE": "vsm_phoenix.ext.amqp.endpoint",
    "BUILTIN_KINDS": "vsm_phoenix.ext.amqp.kinds",
    "CTL_REPLY": "vsm_phoenix.ext.amqp.control",
    "CTL_REQUEST": "vsm_phoenix.ext.amqp.control",
    "CapacityError": "vsm_phoenix.errors",
    "Cluster": "vsm_phoenix.ext.amqp.cluster",
    "ControlCodec": "vsm_phoenix.ext.amqp.control",
    "ControlError": "vsm_phoenix.ext.amqp.client",
    "CrdtKind": "vsm_phoenix.ext.amqp.kinds",
    "DEFAULT_AMQP_URL": "vsm_phoenix.ext.amqp.topology",
    "DecodeError": "vsm_phoenix.errors",
    "ENVELOPE": "vsm_phoenix.ext.amqp.node",
    "InvalidArgument": "vsm_phoenix.errors",
    "KV": "vsm_phoenix.ext.amqp.cluster",
    "KVKind": "vsm_phoenix.ext.amqp.kinds",
    "KeyExpiredError": "vsm_phoenix.errors",
    "NODE_OPERATIONS": "vsm_phoenix.ext.amqp.control",
    "NodeFenced": "vsm_phoenix.ext.amqp.node",
    "NodeKind": "vsm_phoenix.ext.amqp.kinds",
    "Operation": "vsm_phoenix.ext.amqp.control",
    "Param": "vsm_phoenix.ext.amqp.control",
    "PermissionDenied": "vsm_phoenix.errors",
    "ReplayError": "vsm_phoenix.errors",
    "Replica": "vsm_phoenix.ext.amqp.cluster",
    "SwimKind": "vsm_phoenix.ext.amqp.kinds",
    "Topology": "vsm_phoenix.ext.amqp.topology",
    "TypeMismatch": "vsm_phoenix.errors",
    "VsmPhoenixError": "vsm_phoenix.errors",
    "broker_available": "vsm_phoenix.ext.amqp.topology",
    "build_request": "vsm_phoenix.ext.amqp.control",
    "declare_topology": "vsm_phoenix.ext.amqp.topology",
    "delete_topology": "vsm_phoenix.ext.amqp.topology",
    "load_kind": "vsm_phoenix.ext.amqp.kinds",
    "lock_data_dir": "vsm_phoenix.ext.amqp.cluster",
    "redact": "vsm_phoenix.ext.amqp.topology",
    "start_node": "vsm_phoenix.ext.amqp.cluster",
    "wait_for_broker": "vsm_phoenix.ext.amqp.topology",
}

__all__ = [
    "ADMIN_OPS",
    "BATCH_CONTENT_TYPE",
    "BUILTIN_KINDS",
    "CTL_REPLY",
    "CTL_REQUEST",
    "DEFAULT_AMQP_URL",
    "ENVELOPE",
    "KV",
    "NODE_OPERATIONS",
    "AmqpClient",
    "AmqpConfig",
    "AmqpNode",
    "AuthenticationError",
    "CapacityError",
    "Cluster",
    "ControlCodec",
    "ControlError",
    "CrdtKind",
    "DecodeError",
    "InvalidArgument",
    "KVKind",
    "KeyExpiredError",
    "NodeFenced",
    "NodeKind",
    "Operation",
    "Param",
    "PermissionDenied",
    "Replica",
    "ReplayError",
    "SwimKind",
    "Topology",
    "TypeMismatch",
    "VsmPhoenixError",
    "broker_available",
    "build_request",
    "declare_topology",
    "delete_topology",
    "load_kind",
    "lock_data_dir",
    "redact",
    "start_node",
    "wait_for_broker",
]


def __getattr__(name: str) -> Any:
    home = _HOME.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(home), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
