"""The AMQP (RabbitMQ) runner: any sans-IO node as a process on a broker (asyncio,
aio-pika).

Modules, one concept each:

* :mod:`~vsm_phoenix.ext.amqp.topology` -- exchange, queue and routing-key names; the
  bounded dead-letter queue; broker reachability; URL redaction.
* :mod:`~vsm_phoenix.ext.amqp.endpoint` -- :class:`AmqpConfig`, the connection, sealing
  and signing, the batching outbox with publisher confirms, dead-lettering.
* :mod:`~vsm_phoenix.ext.amqp.node` -- :class:`AmqpNode`, the node runner: effects,
  group commit, roles and the control operations, fencing.
* :mod:`~vsm_phoenix.ext.amqp.client` -- :class:`AmqpClient`, the control-plane client.
* :mod:`~vsm_phoenix.ext.amqp.roles` -- how to build each kind of node and talk to it.
* :mod:`~vsm_phoenix.ext.amqp.process` / :mod:`~vsm_phoenix.ext.amqp.simulate` --
  node processes and the multi-process ``simulate --transport amqp`` scenario.

Security, in one paragraph (README, "Threat model", has the whole story): every frame
is sealed with the cluster keyset (AES-256-GCM, header authenticated) and every AMQP
body is a batch signed by its sender's own Ed25519 identity, checked against the
authority-signed roster before anything in it is parsed; a frame must be sealed in its
signer's name, so a member cannot speak for another; the replay window records a frame
only after all of that. An unauthenticated body costs one parse, at most one signature
check, one dead letter and (rate-limited) one log line.
"""

from __future__ import annotations

from vsm_phoenix.ext.amqp.client import AmqpClient, ControlError
from vsm_phoenix.ext.amqp.endpoint import BATCH_CONTENT_TYPE, AmqpConfig
from vsm_phoenix.ext.amqp.node import (
    ADMIN_OPS,
    CTL_REPLY,
    CTL_REQUEST,
    ENVELOPE,
    AmqpNode,
    ControlCodec,
    NodeFenced,
)
from vsm_phoenix.ext.amqp.roles import CrdtRole, KvRole, Role, SwimRole, load_role
from vsm_phoenix.ext.amqp.topology import (
    DEFAULT_AMQP_URL,
    Topology,
    amqp_url,
    broker_available,
    declare_topology,
    delete_topology,
    redact,
)

__all__ = [
    "ADMIN_OPS",
    "BATCH_CONTENT_TYPE",
    "CTL_REPLY",
    "CTL_REQUEST",
    "DEFAULT_AMQP_URL",
    "ENVELOPE",
    "AmqpClient",
    "AmqpConfig",
    "AmqpNode",
    "ControlCodec",
    "ControlError",
    "CrdtRole",
    "KvRole",
    "NodeFenced",
    "Role",
    "SwimRole",
    "Topology",
    "amqp_url",
    "broker_available",
    "declare_topology",
    "delete_topology",
    "load_role",
    "redact",
]
