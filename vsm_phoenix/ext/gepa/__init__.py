"""Distributed GEPA prompt evolution on CRDTs, on the upstream ``gepa`` engine.

* :mod:`~vsm_phoenix.ext.gepa.records` -- content-addressed candidates and evaluation
  records, with their strict decoders;
* :mod:`~vsm_phoenix.ext.gepa.state` -- :class:`EvolutionState`, the one replicated
  lattice (shared evaluations, candidate pool with lineage, metric-call budget) and
  the :class:`Frontier` every replica derives from it.

Those two need nothing beyond the core. The modules that run the upstream engine
import ``gepa`` (the ``gepa`` extra: ``pip install 'vsm-phoenix[gepa]'``) and are
imported by name:

* :mod:`~vsm_phoenix.ext.gepa.shared` -- the hooks plugged into ``gepa.optimize``
  (adapter wrapper, replica-backed evaluation cache, cluster budget stop, migration);
* :mod:`~vsm_phoenix.ext.gepa.cluster` -- :class:`SimulatedCluster`: N engines on the
  deterministic simulator, synced by delta anti-entropy;
* :mod:`~vsm_phoenix.ext.gepa.budget` -- the hard metric-call budget: slices leased
  through the Raft KV (no call without a lease; given back when an engine ends);
* :mod:`~vsm_phoenix.ext.gepa.deploy` -- the deployed prompt, committed through the
  Raft KV, and signed evidence of a candidate's scores;
* :mod:`~vsm_phoenix.ext.gepa.over_amqp` -- engines whose state syncs over RabbitMQ
  (Cluster members, KV members for the budget and the deployed prompt);
* :mod:`~vsm_phoenix.ext.gepa.processes` -- the same with one OS process per member;
* :mod:`~vsm_phoenix.ext.gepa.models` -- model calls behind the circuit breaker, and
  an OpenAI-compatible client;
* :mod:`~vsm_phoenix.ext.gepa.task` -- the shipped deterministic task.
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
