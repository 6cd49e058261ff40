"""Sans-IO protocol state machines: the node kit, the simulator, sync and membership.

Every protocol node is a pure state machine (ARCHITECTURE.md, principle 2 and "The node
contract"): one entry point,
``node.step(event) -> list[effect]``. Events in: :class:`Start`, :class:`Restart`
(with persisted state), :class:`Receive` (an :class:`Envelope`), :class:`TimerFired`,
:class:`ClientRequest`; each carries ``now``, the node's local clock in ms. Effects out:
:class:`Send`, :class:`SetTimer`, :class:`CancelTimer`, :class:`Persist`,
:class:`Deliver`. Nodes get randomness only from an injected ``random.Random`` and never
read clocks, sockets or files, so the same node runs under the deterministic
:class:`Simulator`, a model checker and a network runner.

Modules (one concept each):

* :mod:`~vsm_phoenix.protocol.envelope` — :class:`Envelope`, canonical-CBOR frames with
  bounded compression; ``wire_parts``/``from_wire_parts`` are the (header, payload)
  halves a secure channel seals.
* :mod:`~vsm_phoenix.protocol.node` — the event and effect classes and :class:`Node`.
* :mod:`~vsm_phoenix.protocol.kit` — :class:`Messenger`: HLC stamping and message ids.
* :mod:`~vsm_phoenix.protocol.sim` — :class:`Simulator`, :class:`NetworkConfig`,
  JSON traces and space-time diagrams.
* :mod:`~vsm_phoenix.protocol.sync` — :class:`SyncNode`: delta-interval anti-entropy.
* :mod:`~vsm_phoenix.protocol.swim` — :class:`SwimNode`: SWIM + Lifeguard membership
  with capability matching.
* :mod:`~vsm_phoenix.protocol.cluster` — :class:`ClusterNode`: SWIM and sync together.
* :mod:`~vsm_phoenix.protocol.scenario` — the demo (``run_demo``).
* :mod:`~vsm_phoenix.protocol.raft` — :class:`RaftNode`: Raft with pre-vote,
  check-quorum, snapshots, leadership transfer and ReadIndex reads.
* :mod:`~vsm_phoenix.protocol.kv` — :class:`KVStateMachine`: the linearizable KV on
  Raft, with exactly-once client sessions. (Its simulated clients and randomized
  runs, ``KVWorkload`` and ``simulate_kv``, are test tooling in
  :mod:`vsm_phoenix.verify.kv_workload`: this package never imports ``verify``.)

Errors name the culprit: :class:`RemoteProtocolError` (a ``DecodeError``: distrust the
peer) and :class:`LocalProtocolError` (an ``InvalidArgument``: fix the caller); either
way the node's state is unchanged.

Two modules have a ``Read`` command: ``Read`` here is sync's (read a replica);
Raft's linearizable read is exported as ``RaftRead``.
"""

from __future__ import annotations

from vsm_phoenix.errors import (  # the errors this package raises
    DecodeError,
    InvalidArgument,
    VsmPhoenixError,
)
from vsm_phoenix.protocol.cluster import ClusterNode
from vsm_phoenix.protocol.envelope import Envelope, decode_cbor, encode_cbor
from vsm_phoenix.protocol.kit import Messenger, decode_payload, encode_payload
from vsm_phoenix.protocol.kv import STALE, KVConfig, KVError, KVStateMachine, kv_node_factory
from vsm_phoenix.protocol.node import (
    CancelTimer,
    ClientRequest,
    Deliver,
    Effect,
    Event,
    LocalProtocolError,
    Node,
    NodeFactory,
    Persist,
    Receive,
    RemoteProtocolError,
    Restart,
    Send,
    SetTimer,
    Start,
    TimerFired,
)
from vsm_phoenix.protocol.raft import (
    Entry,
    Propose,
    RaftConfig,
    RaftMonitor,
    RaftNode,
    RecordingStateMachine,
    Role,
    StateMachine,
    TransferLeadership,
    check_invariants,
)
from vsm_phoenix.protocol.raft import Read as RaftRead
from vsm_phoenix.protocol.sim import (
    NetworkConfig,
    SimulationError,
    Simulator,
    render_spacetime_html,
)
from vsm_phoenix.protocol.swim import (
    Leave,
    Match,
    MemberInfo,
    Metadata,
    Status,
    SwimConfig,
    SwimNode,
    UpdateMetadata,
)
from vsm_phoenix.protocol.sync import Merge, Mutate, Read, SyncConfig, SyncNode

__all__ = [
    "DecodeError",
    "InvalidArgument",
    "VsmPhoenixError",
    "STALE",
    "Entry",
    "KVConfig",
    "KVError",
    "KVStateMachine",
    "Propose",
    "RaftConfig",
    "RaftMonitor",
    "RaftNode",
    "RaftRead",
    "RecordingStateMachine",
    "Role",
    "StateMachine",
    "TransferLeadership",
    "check_invariants",
    "kv_node_factory",
    "CancelTimer",
    "ClientRequest",
    "ClusterNode",
    "Deliver",
    "Effect",
    "Envelope",
    "Event",
    "Leave",
    "LocalProtocolError",
    "Match",
    "MemberInfo",
    "Merge",
    "Messenger",
    "Metadata",
    "Mutate",
    "NetworkConfig",
    "Node",
    "NodeFactory",
    "Persist",
    "Read",
    "Receive",
    "RemoteProtocolError",
    "Restart",
    "Send",
    "SetTimer",
    "SimulationError",
    "Simulator",
    "Start",
    "Status",
    "SwimConfig",
    "SwimNode",
    "SyncConfig",
    "SyncNode",
    "TimerFired",
    "UpdateMetadata",
    "decode_cbor",
    "decode_payload",
    "encode_cbor",
    "encode_payload",
    "render_spacetime_html",
]
