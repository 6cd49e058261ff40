"""Distributed GEPA prompt evolution on CRDTs, on the upstream ``gepa`` engine.

* :mod:`~vsm_phoenix.ext.gepa.records` -- content-addressed candidates and evaluation
  records, with their strict decoders;
* :mod:`~vsm_phoenix.ext.gepa.state` -- :class:`EvolutionState`, the one replicated
  lattice (shared evaluations, candidate pool with lineage, metric-call budget) and
  the :class:`Frontier` every replica derives from it.
"""

from __future__ import annotations

from vsm_phoenix.errors import DecodeError, InvalidArgument, TypeMismatch
from vsm_phoenix.ext.gepa.records import (
    CandidateId,
    EvalKey,
    Evaluation,
    candidate_id,
    decode_candidate,
    decode_evaluation,
    instance_key,
)
from vsm_phoenix.ext.gepa.state import EvolutionState, Frontier

__all__ = [
    "CandidateId",
    "DecodeError",
    "EvalKey",
    "Evaluation",
    "EvolutionState",
    "Frontier",
    "InvalidArgument",
    "TypeMismatch",
    "candidate_id",
    "decode_candidate",
    "decode_evaluation",
    "instance_key",
]
