"""Join-semilattice replicated data types, causal clocks and the canonical codec.

Every type honours one contract (see :class:`~vsm_phoenix.crdt._base.CRDT`): ``T()``
is bottom, ``a | b`` joins, ``a |= b`` joins in place, ``a <= b`` is the lattice order,
``==`` is state equality, ``.value`` is the plain value, mutators return the delta to
ship, and ``to_bytes()`` / ``T.from_bytes()`` / :func:`decode` are canonical CBOR.

``BACKEND`` says which kernel implementation is active: ``"native"`` (Cython) when
built, ``"pure"`` otherwise or when ``VSM_PHOENIX_PURE=1``.
"""

from __future__ import annotations

from vsm_phoenix.crdt._backend import BACKEND
from vsm_phoenix.crdt._base import CRDT
from vsm_phoenix.crdt._domain import Atom
from vsm_phoenix.crdt.causal import CausalContext
from vsm_phoenix.crdt.clocks import HLC, Dot, Ordering, Timestamp, VectorClock
from vsm_phoenix.crdt.codec import decode
from vsm_phoenix.crdt.counters import GCounter, PNCounter
from vsm_phoenix.crdt.maps import ORMap
from vsm_phoenix.crdt.registers import LWWRegister, MVRegister
from vsm_phoenix.crdt.sets import GSet, LWWElementSet, ORSet, TwoPSet
from vsm_phoenix.errors import (  # the errors this package raises
    DecodeError,
    InvalidArgument,
    SizeOverflow,
    TypeMismatch,
    VsmPhoenixError,
)

__all__ = [
    "DecodeError",
    "InvalidArgument",
    "SizeOverflow",
    "TypeMismatch",
    "VsmPhoenixError",
    "BACKEND",
    "CRDT",
    "HLC",
    "Atom",
    "CausalContext",
    "Dot",
    "GCounter",
    "GSet",
    "LWWElementSet",
    "LWWRegister",
    "MVRegister",
    "ORMap",
    "ORSet",
    "Ordering",
    "PNCounter",
    "Timestamp",
    "TwoPSet",
    "VectorClock",
    "decode",
]
