"""Durable sagas with compensation: a sans-IO coordinator core, durable logs (SQLite or
the Raft KV), and an asyncio orchestrator that runs, resumes and reports on sagas.

* :mod:`~vsm_phoenix.ext.saga.definition` -- :class:`SagaDefinition`, :class:`Step`,
  :class:`Parallel`, :class:`RetryPolicy`, :class:`StepContext`, :class:`PermanentError`.
* :mod:`~vsm_phoenix.ext.saga.records` -- the log records and their strict decoder.
* :mod:`~vsm_phoenix.ext.saga.core` -- :class:`SagaCore`: events in, effects out.
* :mod:`~vsm_phoenix.ext.saga.log` -- :class:`StorageSagaLog`, :class:`KVSagaLog`.
* :mod:`~vsm_phoenix.ext.saga.raftkv` -- :class:`SimulatedRaftKV`, an in-process Raft KV.
* :mod:`~vsm_phoenix.ext.saga.orchestrator` -- :class:`SagaOrchestrator`.
"""

from __future__ import annotations

from vsm_phoenix.errors import DecodeError, InvalidArgument, TypeMismatch
from vsm_phoenix.ext.saga.core import LeaseHeld, SagaCore, SagaView, fold
from vsm_phoenix.ext.saga.definition import (
    Parallel,
    PermanentError,
    RetryPolicy,
    SagaDefinition,
    Step,
    StepContext,
    idempotency_key,
)
from vsm_phoenix.ext.saga.log import AsyncKV, KVSagaLog, SagaLog, StorageSagaLog
from vsm_phoenix.ext.saga.orchestrator import (
    ABANDONED,
    SagaOrchestrator,
    SagaResult,
    SagaStatus,
    default_classify,
)
from vsm_phoenix.ext.saga.raftkv import KVProtocolError, SimulatedRaftKV
from vsm_phoenix.ext.saga.records import Record, decode_record, encode_record

__all__ = [
    "ABANDONED",
    "AsyncKV",
    "DecodeError",
    "InvalidArgument",
    "KVProtocolError",
    "KVSagaLog",
    "LeaseHeld",
    "Parallel",
    "PermanentError",
    "Record",
    "RetryPolicy",
    "SagaCore",
    "SagaDefinition",
    "SagaLog",
    "SagaOrchestrator",
    "SagaResult",
    "SagaStatus",
    "SagaView",
    "SimulatedRaftKV",
    "Step",
    "StepContext",
    "StorageSagaLog",
    "TypeMismatch",
    "decode_record",
    "default_classify",
    "encode_record",
    "fold",
    "idempotency_key",
]
