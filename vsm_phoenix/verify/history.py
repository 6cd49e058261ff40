"""Histories of concurrent operations: what the linearizability checker consumes.

A *history* is a finite set of operations, each issued by one client, with a call
time, a return time and an input/output pair interpreted by a :class:`~.models.Model`.

Invariants every :class:`Operation` keeps (checked on construction):

- ``call`` is a finite real number; ``ret`` is either a finite real ``>= call`` or
  ``None``.
- ``ret is None`` **iff** ``output is UNKNOWN``: the operation is *pending* (Jepsen's
  ``:info``, a request that timed out, or one still outstanding when recording stopped).
  A pending operation may have taken effect at any instant after its call, or never;
  the checker treats it as returning after every other event with an output the model
  must accept whatever the state.
- Operations that definitely did not take effect (Jepsen's ``:fail``) are not part of a
  history at all: :class:`HistoryRecorder` drops them.

Real-time order: ``a`` precedes ``b`` iff ``a.ret < b.call`` (strictly). Operations
whose intervals merely touch (``a.ret == b.call``) are concurrent, so equal timestamps
from a discrete simulator clock never produce a false violation.

On-disk format (``vsm-phoenix-history`` version 1, JSON Lines, UTF-8): the first line
is a header object, each further non-blank line one operation (wrapped here, not
in a file)::

    {"format": "vsm-phoenix-history", "version": 1, "model": "kv", "options": {}}
    {"client": 0, "call": 0, "return": 3, "output": null,
     "input": {"f": "put", "key": "a", "value": "1"}}
    {"client": 1, "call": 1, "return": null, "input": {"f": "get", "key": "a"}}

``"return": null`` marks a pending operation, which then has no ``"output"`` key.
Inputs and outputs are encoded by the model (see ``Model.input_to_json``). One line per
operation keeps decode errors pointing at a line and lets a simulator append as it runs.
"""

from __future__ import annotations

import abc
import enum
import json
import math
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any, ClassVar, Final, Generic, Literal, TypeAlias, TypeVar

import attrs

from vsm_phoenix.errors import DecodeError, InvalidArgument, TypeMismatch

__all__ = [
    "FORMAT_NAME",
    "FORMAT_VERSION",
    "UNKNOWN",
    "ClientId",
    "History",
    "HistoryRecorder",
    "JSONValue",
    "Model",
    "Operation",
    "Unknown",
    "history_from_jsonl",
    "model_from_name",
    "register_model",
]

FORMAT_NAME: Final = "vsm-phoenix-history"
FORMAT_VERSION: Final = 1

JSONValue: TypeAlias = (
    "bool | int | float | str | list[JSONValue] | dict[str, JSONValue] | None"
)
ClientId: TypeAlias = int | str

InT = TypeVar("InT")
OutT = TypeVar("OutT")
StateT = TypeVar("StateT")


class _Unknown(enum.Enum):
    UNKNOWN = "unknown"

    def __repr__(self) -> str:
        return "UNKNOWN"


#: The output of a pending operation: the model must accept it in every state.
UNKNOWN: Final = _Unknown.UNKNOWN
Unknown: TypeAlias = Literal[_Unknown.UNKNOWN]


def _check_time(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeMismatch(f"{name} must be a real number, not {type(value).__name__}")
    try:
        finite = math.isfinite(value)
    except OverflowError:  # an int beyond float range
        finite = False
    if not finite:
        raise InvalidArgument(f"{name} must be finite, got {value!r:.40}")
    return value


def _check_client(value: object) -> ClientId:
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise TypeMismatch(f"client must be an int or a str, not {type(value).__name__}")
    return value


@attrs.frozen
class Operation(Generic[InT, OutT]):
    """One operation of a history: ``client`` called ``input`` at ``call`` and got
    ``output`` back at ``ret`` (``ret is None`` and ``output is UNKNOWN``: pending)."""

    client: ClientId
    input: InT
    call: float
    ret: float | None
    output: OutT | Unknown

    def __attrs_post_init__(self) -> None:
        _check_client(self.client)
        _check_time("call", self.call)
        if self.ret is None:
            if self.output is not UNKNOWN:
                raise InvalidArgument("a pending operation (ret=None) must have output UNKNOWN")
        else:
            _check_time("ret", self.ret)
            if self.ret < self.call:
                raise InvalidArgument(f"ret {self.ret!r} is before call {self.call!r}")
            if self.output is UNKNOWN:
                raise InvalidArgument("a completed operation needs a known output")

    @property
    def pending(self) -> bool:
        """True when the operation never returned (it may or may not have happened)."""
        return self.ret is None


def _ops_tuple(ops: Iterable[Operation[Any, Any]]) -> tuple[Operation[Any, Any], ...]:
    result = tuple(ops)
    for op in result:
        if not isinstance(op, Operation):
            raise TypeMismatch(f"expected Operation, got {type(op).__name__}")
    return result


# -- models and the registry the history format decodes them from ---------------------
class Model(abc.ABC, Generic[StateT, InT, OutT]):
    """A sequential specification: see the module docstring for the invariants."""

    #: The name used by the history format and the CLI's ``--model``.
    name: ClassVar[str]

    @abc.abstractmethod
    def init(self) -> StateT:
        """The initial state."""

    @abc.abstractmethod
    def step(self, state: StateT, input: InT, output: OutT | Unknown) -> tuple[bool, StateT]:
        """Whether ``output`` is legal for ``input`` applied in ``state``, and the next
        state (meaningful only when legal)."""

    def partition(self, ops: Sequence[Operation[InT, OutT]]) -> list[list[Operation[InT, OutT]]]:
        """Independent sub-histories; by default the whole history is one."""
        return [list(ops)] if ops else []

    @abc.abstractmethod
    def describe(self, input: InT, output: OutT | Unknown) -> str:
        """A short human-readable rendering such as ``put('k', 'v')``."""

    def describe_state(self, state: StateT) -> str:
        return repr(state)

    # -- validation and codec -------------------------------------------------------

    @abc.abstractmethod
    def check_input(self, input: object) -> InT:
        """``input`` if it is a valid input of this model; else TypeMismatch/InvalidArgument."""

    @abc.abstractmethod
    def check_output(self, input: InT, output: object) -> OutT:
        """``output`` if it is a possible (typed) output of ``input``; else an error."""

    def options(self) -> dict[str, JSONValue]:
        """Constructor options, stored in the history header."""
        return {}

    @abc.abstractmethod
    def input_to_json(self, input: InT) -> JSONValue: ...

    @abc.abstractmethod
    def input_from_json(self, obj: object) -> InT:
        """Decode an input; ValueError/TypeError on malformed data."""

    def output_to_json(self, input: InT, output: OutT) -> JSONValue:
        return output  # type: ignore[return-value]  # outputs are JSON scalars

    def output_from_json(self, input: InT, obj: object) -> OutT:
        return self.check_output(input, obj)


_MODEL_BUILDERS: dict[str, Callable[[dict[str, object]], Model[Any, Any, Any]]] = {}


def register_model(name: str, build: Callable[[dict[str, object]], Model[Any, Any, Any]]
                   ) -> None:
    """Make ``model_from_name(name, options)`` call ``build(options)`` (``build`` pops
    the options it knows; any left over are an error). Concrete models register
    themselves where they are defined (:mod:`vsm_phoenix.verify.models`), so decoding
    a history needs no import of them here."""
    if not isinstance(name, str) or not name:
        raise InvalidArgument("a model name is a non-empty str")
    if not callable(build):
        raise TypeMismatch("build must be callable(options) -> Model")
    _MODEL_BUILDERS[name] = build


def model_from_name(name: object, options: Mapping[str, object] | None = None
                    ) -> Model[Any, Any, Any]:
    """Build a registered model from its history-format name and options."""
    if not isinstance(name, str) or name not in _MODEL_BUILDERS:
        raise InvalidArgument(
            f"unknown model {name!r}; expected one of {sorted(_MODEL_BUILDERS)}")
    opts = dict(options or {})
    model = _MODEL_BUILDERS[name](opts)
    if opts:
        raise InvalidArgument(f"unknown options for model {name!r}: {sorted(opts)}")
    return model


@attrs.frozen
class History:
    """A model together with the operations to check against it (in recording order)."""

    model: Model[Any, Any, Any]
    operations: tuple[Operation[Any, Any], ...] = attrs.field(converter=_ops_tuple)

    def __len__(self) -> int:
        return len(self.operations)

    def __iter__(self) -> Iterator[Operation[Any, Any]]:
        return iter(self.operations)

    def to_jsonl(self) -> str:
        """Encode as ``vsm-phoenix-history`` v1 JSON Lines (see the module docstring)."""
        model = self.model
        lines = [
            json.dumps(
                {
                    "format": FORMAT_NAME,
                    "version": FORMAT_VERSION,
                    "model": model.name,
                    "options": model.options(),
                },
                sort_keys=True,
            )
        ]
        for op in self.operations:
            record: dict[str, JSONValue] = {
                "client": op.client,
                "call": op.call,
                "return": op.ret,
                "input": model.input_to_json(op.input),
            }
            if op.output is not UNKNOWN:
                record["output"] = model.output_to_json(op.input, op.output)
            lines.append(json.dumps(record, sort_keys=True, allow_nan=False))
        return "\n".join(lines) + "\n"


class HistoryRecorder:
    """Records a history as it happens, Jepsen style, for the simulator and tests.

    Each client has at most one outstanding operation. ``invoke`` opens it; exactly one
    of ``ok`` (it happened, with this output), ``fail`` (it definitely did not happen:
    the operation is dropped) or ``info`` (outcome unknown: it stays pending for ever)
    closes it. Operations still open when :meth:`history` is called are pending.
    Times are whatever clock the caller uses (simulated or real); only their order
    matters. Errors (:class:`InvalidArgument`, :class:`TypeMismatch`) leave the
    recorder unchanged.
    """

    def __init__(self, model: Model[Any, Any, Any]) -> None:
        self._model = model
        # Slots in invocation order; None marks a dropped (failed) operation.
        self._ops: list[Operation[Any, Any] | None] = []
        self._open: dict[ClientId, int] = {}

    @property
    def model(self) -> Model[Any, Any, Any]:
        return self._model

    def invoke(self, client: ClientId, input: object, time: float) -> None:
        """``client`` calls ``input`` at ``time``."""
        _check_client(client)
        _check_time("time", time)
        checked = self._model.check_input(input)
        if client in self._open:
            raise InvalidArgument(f"client {client!r} already has an operation in flight")
        self._open[client] = len(self._ops)
        self._ops.append(Operation(client, checked, time, None, UNKNOWN))

    def _pop(self, client: ClientId, time: float | None) -> tuple[int, Operation[Any, Any]]:
        _check_client(client)
        if time is not None:
            _check_time("time", time)
        try:
            index = self._open[client]
        except KeyError:
            raise InvalidArgument(f"client {client!r} has no operation in flight") from None
        op = self._ops[index]
        assert op is not None
        if time is not None and time < op.call:
            raise InvalidArgument(f"time {time!r} is before the call at {op.call!r}")
        return index, op

    def ok(self, client: ClientId, output: object, time: float) -> None:
        """``client``'s operation returned ``output`` at ``time``."""
        index, op = self._pop(client, time)
        checked = self._model.check_output(op.input, output)
        self._ops[index] = attrs.evolve(op, ret=time, output=checked)
        del self._open[client]

    def fail(self, client: ClientId, time: float | None = None) -> None:
        """``client``'s operation definitely did not take effect: drop it."""
        index, _ = self._pop(client, time)
        self._ops[index] = None
        del self._open[client]

    def info(self, client: ClientId, time: float | None = None) -> None:
        """``client`` gave up on its operation without knowing whether it took effect;
        it stays pending to the end of the history and the client is free again."""
        self._pop(client, time)
        del self._open[client]

    def history(self) -> History:
        """The operations recorded so far (open ones as pending), in invocation order."""
        return History(self._model, [op for op in self._ops if op is not None])

    def to_jsonl(self) -> str:
        return self.history().to_jsonl()


def _lines(data: bytes | str) -> Iterable[tuple[int, str]]:
    """Split into (1-based line number, line) pairs, decoding UTF-8 strictly."""
    if isinstance(data, bytes | bytearray | memoryview):
        raw = bytes(data)
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            line = raw.count(b"\n", 0, exc.start) + 1
            raise DecodeError(f"line {line}: invalid UTF-8: {exc.reason}") from None
    elif isinstance(data, str):
        text = data
    else:
        raise TypeMismatch(f"history data must be bytes or str, not {type(data).__name__}")
    if text.startswith("\ufeff"):
        text = text[1:]
    return enumerate(text.splitlines(), start=1)


def _json_line(lineno: int, line: str) -> dict[str, Any]:
    try:
        obj = json.loads(line, parse_constant=_reject_constant)
    except (ValueError, RecursionError) as exc:
        raise DecodeError(f"line {lineno}: not JSON: {exc}") from None
    if not isinstance(obj, dict):
        raise DecodeError(f"line {lineno}: expected a JSON object")
    return obj


def _reject_constant(name: str) -> float:
    raise ValueError(f"{name} is not allowed")


def history_from_jsonl(data: bytes | str) -> History:
    """Decode a ``vsm-phoenix-history`` v1 document; :class:`DecodeError` names the line."""
    model: Model[Any, Any, Any] | None = None
    ops: list[Operation[Any, Any]] = []
    for lineno, line in _lines(data):
        if not line.strip():
            continue
        obj = _json_line(lineno, line)
        if model is None:
            if obj.get("format") != FORMAT_NAME:
                raise DecodeError(f"line {lineno}: header must have format {FORMAT_NAME!r}")
            version = obj.get("version")
            if version != FORMAT_VERSION:
                shown = repr(version) if type(version) is int and abs(version) < 2**64 else (
                    f"<{type(version).__name__}>")
                raise DecodeError(f"line {lineno}: unsupported version {shown}")
            options = obj.get("options", {})
            if not isinstance(options, dict):
                raise DecodeError(f"line {lineno}: options must be an object")
            try:
                model = model_from_name(obj.get("model"), options)
            except (ValueError, TypeError, ArithmeticError, RecursionError) as exc:
                raise DecodeError(f"line {lineno}: {exc}") from None
            continue
        try:
            ops.append(_decode_op(model, obj))
        except (ValueError, TypeError, KeyError, ArithmeticError, RecursionError) as exc:
            raise DecodeError(f"line {lineno}: {exc}") from None
    if model is None:
        raise DecodeError("line 1: empty history (no header)")
    return History(model, ops)


_OP_KEYS: Final = frozenset({"client", "call", "return", "input", "output"})


def _decode_op(model: Model[Any, Any, Any], obj: dict[str, Any]) -> Operation[Any, Any]:
    extra = set(obj) - _OP_KEYS
    if extra:
        raise ValueError(f"unknown fields {sorted(extra)}")
    for name in ("client", "call", "return", "input"):
        if name not in obj:
            raise ValueError(f"missing field {name!r}")
    inp = model.input_from_json(obj["input"])
    ret = obj["return"]
    if ret is None:
        if "output" in obj:
            raise ValueError("a pending operation (return null) has no output")
        return Operation(obj["client"], inp, obj["call"], None, UNKNOWN)
    if "output" not in obj:
        raise ValueError("missing field 'output'")
    out = model.output_from_json(inp, obj["output"])
    return Operation(obj["client"], inp, obj["call"], ret, out)


def operations_sorted_by_call(ops: Sequence[Operation[InT, OutT]]) -> list[Operation[InT, OutT]]:
    """The operations ordered by call time (stable), as timelines draw them."""
    return sorted(ops, key=lambda op: op.call)
