"""Content-addressed records of a distributed GEPA run: candidates and evaluations.

A *candidate* is GEPA's ``dict[str, str]`` (component name -> text). Its id is the
SHA-256 of the canonical CBOR of that map, so two nodes that reach the same texts name
the same candidate without talking. An *evaluation* is what one metric call produced
for one key ``(candidate id, instance key, evaluator version)``: the output, the
score, the trace (the adapter's trajectory, where GEPA adapters keep their feedback),
the node that evaluated it (evidence of who evaluated what) and, when the adapter gives
them, the per-objective scores (GEPA's ``objective_scores``).

Outputs and traces are *plain data*: ``None``, ``bool``, ``int`` (64-bit), finite
``float``, ``str``, ``bytes``, lists and ``str``-keyed dicts of those (tuples are
stored as lists). Everything else is refused with ``TypeError``: the record must
survive canonical CBOR unchanged, because equal records must give equal bytes.

Records travel inside :class:`~vsm_phoenix.ext.gepa.state.EvolutionState` as canonical
CBOR bytes; :func:`decode_evaluation` and :func:`decode_candidate` are the strict
decoders (``DecodeError`` for anything but the one canonical encoding of a valid
record).
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping
from typing import Any

import attrs

from vsm_phoenix import cbor
from vsm_phoenix.errors import DecodeError, InvalidArgument, TypeMismatch

__all__ = [
    "CandidateId",
    "EvalKey",
    "Evaluation",
    "MAX_OBJECTIVES",
    "MAX_PLAIN_DEPTH",
    "MAX_RECORD_BYTES",
    "candidate_id",
    "check_candidate",
    "check_plain",
    "decode_candidate",
    "decode_evaluation",
    "encode_candidate",
    "encode_evaluation",
    "instance_key",
]

#: A candidate id: 32 raw bytes (SHA-256).
CandidateId = bytes

#: Deepest nesting of lists/dicts accepted in an output or a trace.
MAX_PLAIN_DEPTH = 32
#: Largest encoded record accepted (a candidate's texts, or one evaluation).
MAX_RECORD_BYTES = 1024 * 1024
_ID_LEN = 32


def check_plain(x: object, what: str = "value", _depth: int = 0) -> Any:
    """Validate plain data (see the module docstring) and return it with tuples as
    lists -- the form it decodes back to. ``TypeError`` for anything else,
    ``ValueError`` for a non-finite float or an integer wider than 64 bits."""
    if _depth > MAX_PLAIN_DEPTH:
        raise TypeMismatch(f"{what} nested deeper than {MAX_PLAIN_DEPTH}")
    if x is None or type(x) in (bool, str, bytes):
        if type(x) is str:
            try:
                x.encode("utf-8")
            except UnicodeEncodeError:
                raise InvalidArgument(f"{what}: string is not valid Unicode text") from None
        return x
    if type(x) is int:
        if not -(2**64) <= x < 2**64:
            raise InvalidArgument(f"{what}: integer wider than 64 bits")
        return x
    if type(x) is float:
        if not math.isfinite(x):
            raise InvalidArgument(f"{what}: float must be finite")
        return x
    if isinstance(x, list | tuple) and type(x) in (list, tuple):
        return [check_plain(v, what, _depth + 1) for v in x]
    if isinstance(x, dict) and type(x) is dict:
        out = {}
        for k, v in x.items():
            if type(k) is not str:
                raise TypeMismatch(f"{what}: dict keys must be str, got {type(k).__name__}")
            out[check_plain(k, what, _depth + 1)] = check_plain(v, what, _depth + 1)
        return out
    raise TypeMismatch(f"{what} must be plain data, got {type(x).__name__}")


def check_candidate(candidate: object) -> dict[str, str]:
    """A candidate is a non-empty ``dict[str, str]`` (GEPA's component map)."""
    if not isinstance(candidate, Mapping):
        raise TypeMismatch(
            f"a candidate is a dict of component texts, got {type(candidate).__name__}"
        )
    if not candidate:
        raise InvalidArgument("a candidate needs at least one component")
    out: dict[str, str] = {}
    for name, text in candidate.items():
        if type(name) is not str or type(text) is not str:
            raise TypeMismatch("candidate component names and texts must be str")
        check_plain(name, "component name")
        check_plain(text, "component text")
        out[name] = text
    return out


def _components_bytes(candidate: Mapping[str, str]) -> bytes:
    return cbor.dumps(dict(candidate))


def candidate_id(candidate: Mapping[str, str]) -> CandidateId:
    """SHA-256 of the canonical CBOR of the component map (name -> text)."""
    return hashlib.sha256(_components_bytes(check_candidate(candidate))).digest()


def instance_key(instance: object) -> str:
    """A content key for a data instance: SHA-256 (hex, 32 chars kept) of its canonical
    JSON. Instances that JSON cannot encode (``TypeError``) need an explicit key
    function (``instance_key=`` of the adapter wrapper)."""
    try:
        text = json.dumps(instance, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                          allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise TypeMismatch(f"cannot derive an instance key: {exc}") from None
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:32]


@attrs.frozen(order=True)
class EvalKey:
    """What one metric call evaluates: a candidate on an instance under an evaluator
    version (bump the version when the metric or the task model changes)."""

    candidate: CandidateId
    instance: str
    evaluator: str

    def __attrs_post_init__(self) -> None:
        if type(self.candidate) is not bytes or len(self.candidate) != _ID_LEN:
            raise InvalidArgument("candidate must be a 32-byte candidate id")
        for name in ("instance", "evaluator"):
            v = getattr(self, name)
            if type(v) is not str or not v or len(v) > 256:
                raise InvalidArgument(f"{name} must be a non-empty str of at most 256 chars")
            check_plain(v, name)

    def to_atom(self) -> tuple[bytes, str, str]:
        return (self.candidate, self.instance, self.evaluator)


#: Most objective scores one evaluation may carry.
MAX_OBJECTIVES = 64


def _objectives(value: Mapping[str, float] | None) -> tuple[tuple[str, float], ...] | None:
    """Objective scores (GEPA's ``objective_scores``: name -> score) in canonical form:
    sorted ``(name, float)`` pairs. ``None`` stays ``None``."""
    if value is None:
        return None
    if isinstance(value, tuple):  # already canonical (attrs.evolve, copies)
        value = dict(value)
    if not isinstance(value, Mapping):
        raise TypeMismatch(f"objective scores are a dict, got {type(value).__name__}")
    if len(value) > MAX_OBJECTIVES:
        raise InvalidArgument(f"more than {MAX_OBJECTIVES} objective scores")
    out: list[tuple[str, float]] = []
    for name, score in value.items():
        if type(name) is not str or not name or len(name) > 256:
            raise InvalidArgument("objective names are non-empty str of at most 256 chars")
        check_plain(name, "objective name")
        if type(score) not in (int, float) or not math.isfinite(score):
            raise InvalidArgument(f"objective {name!r}: the score must be a finite number")
        out.append((name, float(score)))
    return tuple(sorted(out))


@attrs.frozen
class Evaluation:
    """One metric call's result. ``by`` is the node that evaluated. ``objectives``:
    the adapter's per-objective scores for this instance (GEPA's ``objective_scores``,
    needed by its ``objective``, ``hybrid`` and ``cartesian`` frontiers), stored as
    sorted ``(name, score)`` pairs; :meth:`objective_scores` gives the dict."""

    output: Any
    score: float
    trace: Any
    by: str
    objectives: tuple[tuple[str, float], ...] | None = attrs.field(default=None,
                                                                    converter=_objectives)

    def objective_scores(self) -> dict[str, float] | None:
        """The objective scores as a dict (``None`` when the adapter gave none)."""
        return None if self.objectives is None else dict(self.objectives)

    def __attrs_post_init__(self) -> None:
        if type(self.score) not in (int, float):
            raise TypeMismatch(f"score must be a float, got {type(self.score).__name__}")
        if not math.isfinite(self.score):
            raise InvalidArgument("score must be finite")
        object.__setattr__(self, "score", float(self.score))
        object.__setattr__(self, "output", check_plain(self.output, "output"))
        object.__setattr__(self, "trace", check_plain(self.trace, "trace"))
        if type(self.by) is not str or not self.by:
            raise InvalidArgument("by must name the evaluating node")
        check_plain(self.by, "by")


def encode_evaluation(ev: Evaluation) -> bytes:
    """Canonical CBOR ``[output, score, trace, by]``, or ``[output, score, trace, by,
    {objective: score}]`` when the evaluation has objective scores (records without
    them keep the first form, byte for byte)."""
    fields = [ev.output, ev.score, ev.trace, ev.by]
    if ev.objectives is not None:
        fields.append(dict(ev.objectives))
    raw = cbor.dumps(fields)
    if len(raw) > MAX_RECORD_BYTES:
        raise InvalidArgument(f"evaluation record of {len(raw)} bytes exceeds {MAX_RECORD_BYTES}")
    return raw


def decode_evaluation(data: bytes) -> Evaluation:
    """Strict decoder: ``DecodeError`` unless ``data`` is the canonical encoding of a
    valid evaluation record."""
    item = cbor.loads(data, max_size=MAX_RECORD_BYTES, wire=True)
    if not (isinstance(item, list) and len(item) in (4, 5)):
        raise DecodeError("an evaluation record is [output, score, trace, by(, objectives)]")
    output, score, trace, by = item[:4]
    objectives = item[4] if len(item) == 5 else None
    if type(score) is not float:
        raise DecodeError("evaluation score must be a float")
    if objectives is not None and not (
            type(objectives) is dict and all(type(v) is float for v in objectives.values())):
        raise DecodeError("objective scores must be a map of floats")
    if len(item) == 5 and objectives is None:
        raise DecodeError("objective scores must be a map of floats")
    try:
        ev = Evaluation(output=output, score=score, trace=trace, by=by, objectives=objectives)
    except (TypeError, ValueError) as exc:
        raise DecodeError(f"invalid evaluation record: {exc}") from None
    if encode_evaluation(ev) != bytes(data):
        raise DecodeError("evaluation record is not in canonical form")
    return ev


def encode_candidate(candidate: Mapping[str, str], parents: frozenset[CandidateId]) -> bytes:
    """Canonical CBOR ``[components, sorted parent ids]``."""
    comps = check_candidate(candidate)
    for p in parents:
        if type(p) is not bytes or len(p) != _ID_LEN:
            raise InvalidArgument("parent ids must be 32-byte candidate ids")
    raw = cbor.dumps([comps, sorted(parents)])
    if len(raw) > MAX_RECORD_BYTES:
        raise InvalidArgument(f"candidate record of {len(raw)} bytes exceeds {MAX_RECORD_BYTES}")
    return raw


def decode_candidate(data: bytes) -> tuple[dict[str, str], frozenset[CandidateId]]:
    """Strict decoder of a candidate record: ``(components, parents)``."""
    item = cbor.loads(data, max_size=MAX_RECORD_BYTES, wire=True)
    if not (isinstance(item, list) and len(item) == 2 and isinstance(item[1], list)):
        raise DecodeError("a candidate record is [components, parents]")
    comps, parents = item
    try:
        checked = check_candidate(comps if isinstance(comps, dict) else None)
    except (TypeError, ValueError) as exc:
        raise DecodeError(f"invalid candidate components: {exc}") from None
    for p in parents:
        if type(p) is not bytes or len(p) != _ID_LEN:
            raise DecodeError("parent ids must be 32-byte candidate ids")
    out = frozenset(parents)
    if len(out) != len(parents) or cbor.dumps([checked, sorted(out)]) != bytes(data):
        raise DecodeError("candidate record is not in canonical form")
    return checked, out
