"""Verification tools used by the tests and the proofs.

Linearizability checker (here now): Wing-Gong/Lowe search with P-compositional
partitioning (partitions checked smallest first, stopping at the first violation) and
memoization of (linearized set, model state), Porcupine-style; bounded by a time budget
and a memo-size cap, either of which yields ``Verdict.UNKNOWN`` instead of running for
ever. Models: :class:`RegisterModel` (read/write/cas) and :class:`KVModel`
(get/put/append/cas/delete, partitioned by key). Histories come from
:class:`HistoryRecorder` (what the simulator records into), our JSON Lines format, or
Porcupine's KV and Jepsen etcd logs (:func:`load_history`). A violation renders as a
self-contained HTML timeline (:func:`render_html`).

    >>> from vsm_phoenix.verify import HistoryRecorder, RegisterModel, RegisterWrite, \\
    ...     RegisterRead, check_history
    >>> rec = HistoryRecorder(RegisterModel())
    >>> rec.invoke(0, RegisterWrite(1), 0); rec.ok(0, None, 1)
    >>> rec.invoke(1, RegisterRead(), 2); rec.ok(1, None, 3)
    >>> check_history(rec.history()).verdict
    <Verdict.ILLEGAL: 'illegal'>

The model checker (exhaustive exploration of message deliveries and timer firings over
the real sans-IO nodes) lives in this package too: :mod:`vsm_phoenix.verify.model_checker`,
and so does the transcript harness (scenarios driven step by step with their expected
effects kept in files): :mod:`vsm_phoenix.verify.transcript`.
"""

from vsm_phoenix.errors import (  # the errors this package raises
    DecodeError,
    InvalidArgument,
    VsmPhoenixError,
)
from vsm_phoenix.verify.history import (
    UNKNOWN,
    History,
    HistoryRecorder,
    Operation,
    history_from_jsonl,
)
from vsm_phoenix.verify.linearizability import (
    CACHE_LIMIT,
    FORMATS,
    CheckResult,
    PartitionResult,
    Verdict,
    check,
    check_history,
    detect_format,
    load_history,
)
from vsm_phoenix.verify.model_checker import (
    ClusterView,
    Counterexample,
    Invariant,
    ModelChecker,
    ModelCheckResult,
    Request,
    Step,
    check_model,
    deepcopy_node,
    default_message_key,
    freeze,
)
from vsm_phoenix.verify.models import (
    KVAppend,
    KVCas,
    KVDelete,
    KVGet,
    KVModel,
    KVPut,
    Model,
    RegisterCas,
    RegisterModel,
    RegisterRead,
    RegisterWrite,
    model_from_name,
)
from vsm_phoenix.verify.porcupine_formats import parse_jepsen_etcd, parse_porcupine_kv
from vsm_phoenix.verify.render import render_html

__all__ = [
    "DecodeError",
    "InvalidArgument",
    "VsmPhoenixError",
    "ClusterView",
    "Counterexample",
    "Invariant",
    "ModelCheckResult",
    "ModelChecker",
    "Request",
    "Step",
    "check_model",
    "deepcopy_node",
    "default_message_key",
    "freeze",
    "CACHE_LIMIT",
    "FORMATS",
    "UNKNOWN",
    "CheckResult",
    "History",
    "HistoryRecorder",
    "KVAppend",
    "KVCas",
    "KVDelete",
    "KVGet",
    "KVModel",
    "KVPut",
    "Model",
    "Operation",
    "PartitionResult",
    "RegisterCas",
    "RegisterModel",
    "RegisterRead",
    "RegisterWrite",
    "Verdict",
    "check",
    "check_history",
    "detect_format",
    "history_from_jsonl",
    "load_history",
    "model_from_name",
    "parse_jepsen_etcd",
    "parse_porcupine_kv",
    "render_html",
]
