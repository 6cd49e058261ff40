"""The control plane: what a client may ask a node, and with which role.

A control request is a CBOR map ``{"op": <name>, <param>: <value>, ...}`` sealed in a
frame with content type :data:`CTL_REQUEST` and a request id; the node answers with a
:data:`CTL_REPLY` frame carrying the same id, a reply kind, ``ok`` and a CBOR value
(the error text when ``ok`` is false).

Every operation is described once, by an :class:`Operation` -- its parameters and the
roster role it needs -- in :data:`NODE_OPERATIONS` (the operations every node answers)
or in a node kind's ``operations`` (:mod:`vsm_phoenix.ext.amqp.kinds`). The node checks
roles from this table, the command line (``vsm-phoenix ctl``) builds its sub-commands
from it, and :func:`build_request` validates a request against it before anything is
sent.

Roles (from the roster; ``admin`` implies ``write`` implies ``read``): ``read`` for
queries, ``write`` for state changes, ``admin`` for ``stop``, ``reset-replay`` and
``roster``. A ``peer`` (a node) may ask for the queries too: it already reads all
cluster traffic, so this grants nothing new, and it lets replicas compare their states
(:meth:`vsm_phoenix.ext.amqp.cluster.Replica.wait_converged`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Final, Protocol

import attrs

from vsm_phoenix.crypto.identity import ROLE_ADMIN, ROLE_PEER, ROLE_READ, ROLE_WRITE, Member
from vsm_phoenix.errors import InvalidArgument
from vsm_phoenix.protocol.node import Deliver, Node

__all__ = [
    "ADMIN_OPS",
    "CTL_REPLY",
    "CTL_REQUEST",
    "NODE_OPERATIONS",
    "ControlCodec",
    "Operation",
    "Param",
    "build_request",
    "may_ask",
    "needed_role",
]

CTL_REQUEST: Final = "vsm/ctl-request"
CTL_REPLY: Final = "vsm/ctl-reply"


@attrs.frozen
class Param:
    """One parameter of an operation: its key in the request map, how the command line
    shows it, whether it takes several values (a list) and whether it may be omitted
    (a default value, or ``None``)."""

    key: str
    metavar: str
    help: str
    many: bool = False
    optional: bool = False
    default: Any = None


@attrs.frozen
class Operation:
    """A control operation: name, the role it needs, parameters, one line of help.
    ``session``: the request also carries the client's session id ``c`` and a
    sequence number ``s`` (KV commands, applied exactly once)."""

    name: str
    role: str
    help: str
    params: tuple[Param, ...] = ()
    session: bool = False

    def __attrs_post_init__(self) -> None:
        if self.role not in (ROLE_READ, ROLE_WRITE, ROLE_ADMIN):
            raise InvalidArgument(f"an operation needs read, write or admin, not {self.role!r}")


#: The operations every node answers, whatever its kind.
NODE_OPERATIONS: Final[Mapping[str, Operation]] = {
    op.name: op
    for op in (
        Operation("status", ROLE_READ, "the node's state, statistics and roster serial"),
        Operation("stop", ROLE_ADMIN, "stop the node process (it drains and exits 0)"),
        Operation("reset-replay", ROLE_ADMIN,
                  "forget one sender's replay window (after it lost its state)",
                  (Param("sender", "SENDER", "the sender (principal or session) to reset"),)),
        Operation("roster", ROLE_ADMIN,
                  "install a newer roster signed by a current authority",
                  (Param("roster", "FILE", "the signed roster (roster.cbor)"),)),
    )
}
#: Control operations only an ``admin`` may ask for.
ADMIN_OPS: Final = frozenset(n for n, op in NODE_OPERATIONS.items() if op.role == ROLE_ADMIN)


class ControlCodec(Protocol):
    """How the control plane talks to one kind of node.

    ``operations`` names what the kind answers beyond :data:`NODE_OPERATIONS`;
    ``decode_request`` turns a (validated) request into the node's ``ClientRequest``
    payload, ``encode_reply`` a ``Deliver`` payload back into a CBOR value, ``status``
    summarizes the node's state for ``{"op": "status"}``.
    """

    @property
    def operations(self) -> Mapping[str, Operation]: ...

    def decode_request(self, node: Node, raw: Mapping[str, Any]) -> Any:
        """The ``ClientRequest`` payload for ``raw``; ``InvalidArgument`` if it is not
        one of ``operations`` or a value is out of range."""
        ...

    def encode_reply(self, deliver: Deliver) -> Any:
        """A CBOR-encodable rendering of ``deliver.payload``."""
        ...

    def status(self, node: Node) -> dict[str, Any]:
        """A CBOR-encodable summary of the node's state."""
        ...


def needed_role(op: object, operations: Mapping[str, Operation]) -> str:
    """The role ``op`` needs: from :data:`NODE_OPERATIONS` or ``operations``; anything
    unknown needs ``write`` (and is then refused as unknown)."""
    found = NODE_OPERATIONS.get(op) if isinstance(op, str) else None
    if found is None and isinstance(op, str):
        found = operations.get(op)
    return found.role if found is not None else ROLE_WRITE


def may_ask(member: Member, role: str) -> bool:
    """Whether ``member`` may ask for an operation that needs ``role`` (module doc:
    a ``peer`` may ask for queries)."""
    return member.allows(role) or (role == ROLE_READ and member.allows(ROLE_PEER))


def build_request(op: Operation, values: Mapping[str, Any]) -> dict[str, Any]:
    """The request map for ``op`` with parameter ``values`` (by key): every required
    parameter present, no unknown key, lists for ``many`` parameters. Raises
    ``InvalidArgument`` before anything is sent."""
    unknown = set(values) - {p.key for p in op.params}
    if unknown:
        raise InvalidArgument(f"{op.name} takes no {sorted(unknown)}")
    request: dict[str, Any] = {"op": op.name}
    for param in op.params:
        if param.key not in values or values[param.key] is None:
            if not param.optional:
                raise InvalidArgument(f"{op.name} needs {param.metavar}")
            if param.default is not None:
                request[param.key] = param.default
            continue
        value = values[param.key]
        if param.many:
            if isinstance(value, str | bytes) or not isinstance(value, Sequence):
                raise InvalidArgument(f"{op.name}: {param.metavar} takes a list")
            value = list(value)
        request[param.key] = value
    return request
