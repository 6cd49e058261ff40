"""A tamper-evident causal evidence graph: signed events in a grow-only Merkle-DAG.

* :mod:`.event` -- one event: canonical bytes, id (SHA-256), Ed25519 signature.
* :mod:`.graph` -- :class:`EvidenceGraph`: admission, completeness, causal-order
  checks, queries, JSON export, durability in any :class:`~vsm_phoenix.storage.Storage`.
* :mod:`.sync` -- :class:`EvidenceSync`: reconcile two replicas by what differs.
* :mod:`.render` -- an HTML/SVG picture of a graph or a cut.

Errors: ``DecodeError`` (malformed bytes), ``AuthenticationError`` (forged or altered
events, unknown authors), ``InvalidArgument`` / ``TypeMismatch`` (bad arguments).
"""

from vsm_phoenix.errors import (
    AuthenticationError,
    DecodeError,
    InvalidArgument,
    TypeMismatch,
)
from vsm_phoenix.ext.evidence.event import Event, key_lookup, short
from vsm_phoenix.ext.evidence.graph import EvidenceGraph, Verification
from vsm_phoenix.ext.evidence.render import render_html, render_svg
from vsm_phoenix.ext.evidence.sync import EvidenceSync, SyncMessage, SyncStats, sync_pair

__all__ = [
    "AuthenticationError",
    "DecodeError",
    "Event",
    "EvidenceGraph",
    "EvidenceSync",
    "InvalidArgument",
    "SyncMessage",
    "SyncStats",
    "TypeMismatch",
    "Verification",
    "key_lookup",
    "render_html",
    "render_svg",
    "short",
    "sync_pair",
]
