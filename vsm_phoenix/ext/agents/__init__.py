"""Capability-aware agents with consensus-backed roles, audited in the evidence graph.

* :mod:`.grants` -- signed capability grants and task placement (``place``).
* :mod:`.roles` -- roles as compare-and-set leases on the Raft KV, with fencing tokens.
* :mod:`.spawn` -- spawning a sub-agent: a proposal decided by quorum through the KV.
* :mod:`.node` -- :class:`AgentNode`: SWIM membership + an evidence-graph replica.
* :mod:`.scenario` -- ``simulate_agents``: the whole scenario on the simulator.

Errors: ``DecodeError`` (malformed grants, lease values, proposal headers),
``AuthenticationError`` (a grant with a bad signature, unknown signer, other cluster),
``PermissionDenied`` (a grant signer without ``admin``; :class:`StaleToken`, a fenced
action), ``InvalidArgument`` / ``TypeMismatch`` (bad arguments).
"""

from vsm_phoenix.errors import (
    AuthenticationError,
    DecodeError,
    InvalidArgument,
    PermissionDenied,
    TypeMismatch,
)
from vsm_phoenix.ext.agents.grants import CapabilityGrant, GrantBook, place
from vsm_phoenix.ext.agents.node import AgentConfig, AgentNode, Record
from vsm_phoenix.ext.agents.roles import (
    Fence,
    HolderInterval,
    LeaseValue,
    RoleLease,
    StaleToken,
    overlaps,
)
from vsm_phoenix.ext.agents.spawn import SpawnDecision, SpawnProposal, Vote, decide

__all__ = [
    "AgentConfig",
    "AgentNode",
    "AuthenticationError",
    "CapabilityGrant",
    "DecodeError",
    "Fence",
    "GrantBook",
    "HolderInterval",
    "InvalidArgument",
    "LeaseValue",
    "PermissionDenied",
    "Record",
    "RoleLease",
    "SpawnDecision",
    "SpawnProposal",
    "StaleToken",
    "TypeMismatch",
    "Vote",
    "decide",
    "overlaps",
    "place",
]
