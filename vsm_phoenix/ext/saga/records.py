"""The saga log's records: what each transition writes, and its one strict decoder.

Every transition of a saga is written to its log *before* its effect (ARCHITECTURE.md,
principle 6): a step is invoked only once its ``step-started`` record is durable, and a
saga is reported finished only once ``completed`` / ``compensated`` / ``stuck`` is.
A record is a canonical-CBOR map ``{"t": kind, "at": ms, "by": owner, "e": epoch, ...}``
with the kind's own fields (:data:`FIELDS`); ``at`` is the writer's clock reading,
``by`` and ``e`` name the coordinator and the ownership epoch that wrote it.

Logs come back from storage or from the replicated KV, so :func:`decode_record` treats
them as outside bytes: one parse through :func:`vsm_phoenix.cbor.loads`, every field
type- and range-checked, :class:`~vsm_phoenix.errors.DecodeError` naming the bad field.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, Final

import attrs

from vsm_phoenix import cbor
from vsm_phoenix.errors import DecodeError, InvalidArgument, TypeMismatch

__all__ = [
    "FIELDS",
    "MAX_RECORD",
    "R_CLAIMED",
    "R_COMPENSATED",
    "R_COMPENSATING",
    "R_COMP_COMPLETED",
    "R_COMP_FAILED",
    "R_COMP_STARTED",
    "R_COMPLETED",
    "R_STARTED",
    "R_STEP_COMPLETED",
    "R_STEP_FAILED",
    "R_STEP_STARTED",
    "R_STUCK",
    "TERMINAL",
    "F_FATAL",
    "F_RETRYABLE",
    "F_TIMEOUT",
    "Record",
    "check_name",
    "decode_record",
    "encode_record",
]

R_STARTED: Final = "started"  #: saga, ctx (the context), timeout_ms
R_CLAIMED: Final = "claimed"  #: until: the owner's lease ends at this reading of its clock
R_STEP_STARTED: Final = "step-started"  #: step, n (attempt, from 1)
R_STEP_COMPLETED: Final = "step-completed"  #: step, n, result
R_STEP_FAILED: Final = "step-failed"  #: step, n, error, f (F_RETRYABLE/F_FATAL/F_TIMEOUT)
R_COMPENSATING: Final = "compensating"  #: reason: the durable decision to roll back
R_COMP_STARTED: Final = "comp-started"  #: step, n
R_COMP_COMPLETED: Final = "comp-completed"  #: step, n
R_COMP_FAILED: Final = "comp-failed"  #: step, n, error
R_COMPLETED: Final = "completed"
R_COMPENSATED: Final = "compensated"  #: reason (why it rolled back)
R_STUCK: Final = "stuck"  #: reason

#: How a failed attempt ended: an error the classifier calls retryable, one it calls
#: permanent (fatal), or no answer within the step's timeout (outcome unknown).
F_RETRYABLE: Final = "retryable"
F_FATAL: Final = "fatal"
F_TIMEOUT: Final = "timeout"

#: The kinds that end a saga.
TERMINAL: Final = frozenset({R_COMPLETED, R_COMPENSATED, R_STUCK})

#: kind -> the fields it carries besides t, at, by, e.
FIELDS: Final[Mapping[str, frozenset[str]]] = {
    R_STARTED: frozenset({"saga", "ctx", "timeout_ms"}),
    R_CLAIMED: frozenset({"until"}),
    R_STEP_STARTED: frozenset({"step", "n"}),
    R_STEP_COMPLETED: frozenset({"step", "n", "result"}),
    R_STEP_FAILED: frozenset({"step", "n", "error", "f"}),
    R_COMPENSATING: frozenset({"reason"}),
    R_COMP_STARTED: frozenset({"step", "n"}),
    R_COMP_COMPLETED: frozenset({"step", "n"}),
    R_COMP_FAILED: frozenset({"step", "n", "error"}),
    R_COMPLETED: frozenset(),
    R_COMPENSATED: frozenset({"reason"}),
    R_STUCK: frozenset({"reason"}),
}

#: Largest encoded record accepted (results and contexts are small values).
MAX_RECORD: Final = 256 * 1024
MAX_TEXT: Final = 4096
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
_MAX_MS: Final = 1 << 62


def check_name(value: object, what: str) -> str:
    """``value`` if it is a valid saga, step or owner name (1-128 of ``[A-Za-z0-9._-]``,
    not starting with punctuation); :class:`InvalidArgument` / :class:`TypeMismatch`."""
    if not isinstance(value, str):
        raise TypeMismatch(f"{what} must be a str, not {type(value).__name__}")
    if not _NAME.fullmatch(value):
        raise InvalidArgument(f"{what} must be 1-128 characters of [A-Za-z0-9._-]: "
                              f"{value[:40]!r}")
    return value


@attrs.frozen
class Record:
    """One log record (see the module docstring); ``fields`` holds the kind's fields."""

    kind: str
    at: int
    by: str
    epoch: int
    fields: Mapping[str, Any] = attrs.field(factory=dict)

    def get(self, name: str) -> Any:
        return self.fields[name]


def encode_record(record: Record) -> bytes:
    """Canonical CBOR of ``record``; :class:`InvalidArgument` when a field is missing,
    extra, or the value is not encodable or too large."""
    want = FIELDS.get(record.kind)
    if want is None:
        raise InvalidArgument(f"unknown record kind {record.kind!r}")
    if set(record.fields) != want:
        raise InvalidArgument(f"record {record.kind} needs fields {sorted(want)}")
    obj = {"t": record.kind, "at": record.at, "by": record.by, "e": record.epoch,
           **record.fields}
    try:
        data = cbor.dumps(obj)
    except Exception as exc:  # cbor2 raises several types for unencodable values
        raise InvalidArgument(f"record {record.kind} is not CBOR-encodable: "
                              f"{type(exc).__name__}") from None
    if len(data) > MAX_RECORD:
        raise InvalidArgument(f"record {record.kind} is {len(data)} bytes, over {MAX_RECORD}")
    return data


def _ms(obj: dict[str, Any], name: str) -> int:
    v = obj[name]
    if type(v) is not int or not 0 <= v < _MAX_MS:
        raise DecodeError(f"saga record field {name!r} must be a non-negative integer")
    return v


def _text(obj: dict[str, Any], name: str) -> str:
    v = obj[name]
    if not isinstance(v, str) or len(v) > MAX_TEXT:
        raise DecodeError(f"saga record field {name!r} must be a string of at most "
                          f"{MAX_TEXT} characters")
    return v


def _named(obj: dict[str, Any], name: str) -> str:
    v = obj[name]
    if not isinstance(v, str) or not _NAME.fullmatch(v):
        raise DecodeError(f"saga record field {name!r} must be a name")
    return v


def decode_record(data: object) -> Record:
    """The :class:`Record` in ``data``; :class:`DecodeError` for anything else."""
    obj = cbor.loads(data, max_size=MAX_RECORD, wire=True)
    if not isinstance(obj, dict):
        raise DecodeError("saga record must be a map")
    kind = obj.get("t")
    want = FIELDS.get(kind) if isinstance(kind, str) else None
    if want is None or not isinstance(kind, str):
        raise DecodeError("saga record has an unknown kind")
    if set(obj) != want | {"t", "at", "by", "e"}:
        raise DecodeError(f"saga record {kind} has wrong fields")
    at, epoch, by = _ms(obj, "at"), _ms(obj, "e"), _named(obj, "by")
    fields: dict[str, Any] = {}
    for name in sorted(want):
        if name in ("step", "saga"):
            fields[name] = _named(obj, name)
        elif name in ("n", "until", "timeout_ms"):
            fields[name] = _ms(obj, name)
            if name == "n" and fields[name] < 1:
                raise DecodeError("saga record attempt numbers start at 1")
        elif name in ("error", "reason"):
            fields[name] = _text(obj, name)
        elif name == "f":
            if obj["f"] not in (F_RETRYABLE, F_FATAL, F_TIMEOUT):
                raise DecodeError("saga record failure kind must be retryable, fatal or "
                                  "timeout")
            fields[name] = obj["f"]
        elif name == "ctx":
            if not isinstance(obj["ctx"], dict):
                raise DecodeError("saga record context must be a map")
            fields[name] = obj["ctx"]
        else:  # result: any value the codec accepted
            fields[name] = obj[name]
    return Record(kind, at, by, epoch, fields)
