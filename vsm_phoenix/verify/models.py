"""Sequential specifications the linearizability checker tests histories against.

A model is four small pieces, as in Porcupine: ``init()`` (the initial state),
``step(state, input, output) -> (ok, new_state)`` (is ``output`` a legal result of
applying ``input`` in ``state``, and what state follows), ``partition(ops)`` (split a
history into independent sub-histories, P-compositionality) and ``describe`` (how an
operation reads in a report). The codec methods turn inputs and outputs into JSON for
the ``vsm-phoenix-history`` format.

Invariants every model keeps:

- States are immutable and hashable, and equal states hash equal: the checker memoizes
  ``(linearized set, state)`` pairs.
- ``step`` is a pure function and never raises on inputs that passed ``check_input``.
- ``step(state, input, UNKNOWN)`` is always ``ok``: a pending operation may be
  linearized anywhere after its call, including after every other operation.
- ``partition`` returns sub-histories such that the whole history is linearizable iff
  each one is (true when no operation touches two partitions).

Values are ``int`` or ``str`` (register) and ``str`` (KV); ``bool`` is rejected, since
``True == 1`` would make distinct writes indistinguishable to the memo cache.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar, TypeAlias, TypeVar

import attrs

from vsm_phoenix.errors import InvalidArgument, TypeMismatch
from vsm_phoenix.verify.history import (
    UNKNOWN,
    JSONValue,
    Model,
    Operation,
    Unknown,
    model_from_name,
    register_model,
)

__all__ = [
    "KVAppend",
    "KVCas",
    "KVDelete",
    "KVGet",
    "KVInput",
    "KVModel",
    "KVPut",
    "Model",
    "RegisterCas",
    "RegisterInput",
    "RegisterModel",
    "RegisterRead",
    "RegisterValue",
    "RegisterWrite",
    "model_from_name",
]

StateT = TypeVar("StateT")
InT = TypeVar("InT")
OutT = TypeVar("OutT")


# ----------------------------------------------------------------------------------
# Register: a single cell with read, write and compare-and-set.

RegisterValue: TypeAlias = int | str | None


def _check_value(value: object, *, allow_none: bool, what: str = "value") -> Any:
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, int | str):
        kinds = "an int, a str or None" if allow_none else "an int or a str"
        raise TypeMismatch(f"{what} must be {kinds}, not {type(value).__name__}")
    return value


@attrs.frozen
class RegisterRead:
    """Read the register; output: the value (``None`` when never written)."""


@attrs.frozen
class RegisterWrite:
    """Write ``value``; output: ``None``."""

    value: int | str


@attrs.frozen
class RegisterCas:
    """Compare-and-set; output: ``True`` iff the register held ``expected``."""

    expected: RegisterValue
    new: int | str


RegisterInput: TypeAlias = RegisterRead | RegisterWrite | RegisterCas
RegisterOutput: TypeAlias = RegisterValue | bool


def _same(a: object, b: object) -> bool:
    """Equality that keeps 1 and '1' apart (they are already) and never mixes bools."""
    return type(a) is type(b) and a == b


@attrs.frozen
class RegisterModel(Model[RegisterValue, RegisterInput, RegisterOutput]):
    """A linearizable register (Jepsen's cas-register). State: its value."""

    name: ClassVar[str] = "register"
    initial: RegisterValue = None

    def __attrs_post_init__(self) -> None:
        _check_value(self.initial, allow_none=True, what="initial")

    def init(self) -> RegisterValue:
        return self.initial

    def step(
        self, state: RegisterValue, input: RegisterInput, output: RegisterOutput | Unknown
    ) -> tuple[bool, RegisterValue]:
        if isinstance(input, RegisterRead):
            return (output is UNKNOWN or _same(output, state)), state
        if isinstance(input, RegisterWrite):
            return True, input.value
        matched = _same(state, input.expected)
        ok = output is UNKNOWN or output is matched
        return ok, (input.new if matched else state)

    def describe(self, input: RegisterInput, output: RegisterOutput | Unknown) -> str:
        if isinstance(input, RegisterRead):
            shown = "?" if output is UNKNOWN else _show(output)
            return f"read() -> {shown}"
        if isinstance(input, RegisterWrite):
            return f"write({_show(input.value)})"
        result = "?" if output is UNKNOWN else ("ok" if output else "fail")
        return f"cas({_show(input.expected)}, {_show(input.new)}) -> {result}"

    def describe_state(self, state: RegisterValue) -> str:
        return _show(state)

    def check_input(self, input: object) -> RegisterInput:
        if isinstance(input, RegisterRead):
            return input
        if isinstance(input, RegisterWrite):
            _check_value(input.value, allow_none=False)
            return input
        if isinstance(input, RegisterCas):
            _check_value(input.expected, allow_none=True, what="expected")
            _check_value(input.new, allow_none=False, what="new")
            return input
        raise TypeMismatch(f"not a register input: {type(input).__name__}")

    def check_output(self, input: RegisterInput, output: object) -> RegisterOutput:
        if isinstance(input, RegisterRead):
            return _check_value(output, allow_none=True, what="read output")  # type: ignore[no-any-return]
        if isinstance(input, RegisterWrite):
            if output is not None:
                raise TypeMismatch("a write's output is None")
            return None
        if not isinstance(output, bool):
            raise TypeMismatch("a cas's output is a bool")
        return output

    def options(self) -> dict[str, JSONValue]:
        return {"initial": self.initial}

    def input_to_json(self, input: RegisterInput) -> JSONValue:
        if isinstance(input, RegisterRead):
            return {"f": "read"}
        if isinstance(input, RegisterWrite):
            return {"f": "write", "value": input.value}
        return {"f": "cas", "expected": input.expected, "new": input.new}

    def input_from_json(self, obj: object) -> RegisterInput:
        f = _fields(obj, {"read": (), "write": ("value",), "cas": ("expected", "new")})
        assert isinstance(obj, dict)
        if f == "read":
            return RegisterRead()
        if f == "write":
            return self.check_input(RegisterWrite(obj["value"]))
        return self.check_input(RegisterCas(obj["expected"], obj["new"]))


# ----------------------------------------------------------------------------------
# KV: a map from str keys to str values, partitioned by key.


@attrs.frozen
class KVGet:
    """Read ``key``; output: its value, or the model's ``missing`` when absent."""

    key: str


@attrs.frozen
class KVPut:
    """Set ``key`` to ``value``; output ``None``."""

    key: str
    value: str


@attrs.frozen
class KVAppend:
    """Append ``value`` to ``key`` (absent counts as ``""``); output ``None``."""

    key: str
    value: str


@attrs.frozen
class KVCas:
    """Set ``key`` to ``new`` iff it holds ``expected`` (``None``: absent); output: bool."""

    key: str
    expected: str | None
    new: str


@attrs.frozen
class KVDelete:
    """Remove ``key``; output ``None``."""

    key: str


KVInput: TypeAlias = KVGet | KVPut | KVAppend | KVCas | KVDelete
KVOutput: TypeAlias = str | bool | None

_KV_FIELDS: dict[str, tuple[str, ...]] = {
    "get": ("key",),
    "put": ("key", "value"),
    "append": ("key", "value"),
    "cas": ("key", "expected", "new"),
    "delete": ("key",),
}


@attrs.frozen
class KVModel(Model["str | None", KVInput, KVOutput]):
    """A linearizable key-value map, checked one key at a time.

    The state is the value of the partition's single key (``None``: absent), so
    ``step`` is only meaningful on operations of one key — which is what
    :meth:`partition` hands the checker. ``missing`` is what a get of an absent key
    returns: ``None`` for our own KV, ``""`` for Porcupine's KV logs (whose service
    cannot tell an absent key from an empty one).
    """

    name: ClassVar[str] = "kv"
    missing: str | None = None

    def __attrs_post_init__(self) -> None:
        if self.missing is not None and not isinstance(self.missing, str):
            raise TypeMismatch("missing must be a str or None")

    def init(self) -> str | None:
        return None

    def step(
        self, state: str | None, input: KVInput, output: KVOutput | Unknown
    ) -> tuple[bool, str | None]:
        if isinstance(input, KVGet):
            if output is UNKNOWN:
                return True, state
            return output == (self.missing if state is None else state), state
        if isinstance(input, KVPut):
            return True, input.value
        if isinstance(input, KVAppend):
            return True, (input.value if state is None else state + input.value)
        if isinstance(input, KVCas):
            matched = state == input.expected
            return (output is UNKNOWN or output is matched), (input.new if matched else state)
        return True, None

    def partition(self, ops: Sequence[Operation[KVInput, KVOutput]]) -> list[
        list[Operation[KVInput, KVOutput]]
    ]:
        by_key: dict[str, list[Operation[KVInput, KVOutput]]] = {}
        for op in ops:
            by_key.setdefault(op.input.key, []).append(op)
        return [by_key[k] for k in sorted(by_key)]

    def describe(self, input: KVInput, output: KVOutput | Unknown) -> str:
        k = _show(input.key)
        if isinstance(input, KVGet):
            shown = "?" if output is UNKNOWN else _show(output)
            return f"get({k}) -> {shown}"
        if isinstance(input, KVPut):
            return f"put({k}, {_show(input.value)})"
        if isinstance(input, KVAppend):
            return f"append({k}, {_show(input.value)})"
        if isinstance(input, KVCas):
            result = "?" if output is UNKNOWN else ("ok" if output else "fail")
            return f"cas({k}, {_show(input.expected)}, {_show(input.new)}) -> {result}"
        return f"delete({k})"

    def describe_state(self, state: str | None) -> str:
        return "absent" if state is None else _show(state)

    def check_input(self, input: object) -> KVInput:
        if not isinstance(input, KVGet | KVPut | KVAppend | KVCas | KVDelete):
            raise TypeMismatch(f"not a KV input: {type(input).__name__}")
        if not isinstance(input.key, str):
            raise TypeMismatch("key must be a str")
        for name in ("value", "new"):
            if hasattr(input, name) and not isinstance(getattr(input, name), str):
                raise TypeMismatch(f"{name} must be a str")
        if isinstance(input, KVCas) and not isinstance(input.expected, str | None):
            raise TypeMismatch("expected must be a str or None")
        return input

    def check_output(self, input: KVInput, output: object) -> KVOutput:
        if isinstance(input, KVGet):
            if output is None or isinstance(output, str):
                return output
            raise TypeMismatch("a get's output is a str or None")
        if isinstance(input, KVCas):
            if not isinstance(output, bool):
                raise TypeMismatch("a cas's output is a bool")
            return output
        if output is not None:
            raise TypeMismatch(f"a {type(input).__name__}'s output is None")
        return None

    def options(self) -> dict[str, JSONValue]:
        return {"missing": self.missing}

    def input_to_json(self, input: KVInput) -> JSONValue:
        f = {KVGet: "get", KVPut: "put", KVAppend: "append", KVCas: "cas", KVDelete: "delete"}[
            type(input)
        ]
        obj: dict[str, JSONValue] = {"f": f}
        for name in _KV_FIELDS[f]:
            obj[name] = getattr(input, name)
        return obj

    def input_from_json(self, obj: object) -> KVInput:
        f = _fields(obj, _KV_FIELDS)
        assert isinstance(obj, dict)
        cls = {"get": KVGet, "put": KVPut, "append": KVAppend, "cas": KVCas, "delete": KVDelete}[
            f
        ]
        args = [obj[name] for name in _KV_FIELDS[f]]
        return self.check_input(cls(*args))


def _fields(obj: object, spec: Mapping[str, tuple[str, ...]]) -> str:
    """Check that ``obj`` is ``{"f": F, <exactly spec[F]'s fields>}``; return F."""
    if not isinstance(obj, dict):
        raise TypeMismatch("an input must be a JSON object")
    f = obj.get("f")
    if not isinstance(f, str) or f not in spec:
        raise InvalidArgument(f"unknown operation {f!r}; expected one of {sorted(spec)}")
    expected = {"f", *spec[f]}
    if set(obj) != expected:
        raise InvalidArgument(f"{f} takes fields {sorted(expected)}, got {sorted(obj)}")
    return f


def _show(value: object) -> str:
    if value is None:
        return "nil"
    if isinstance(value, str):
        return repr(value)
    return str(value)


def _build_kv(options: dict[str, object]) -> Model[Any, Any, Any]:
    missing = options.pop("missing", None)
    if missing is not None and not isinstance(missing, str):
        raise TypeMismatch("kv option 'missing' must be a str or null")
    return KVModel(missing=missing)


def _build_register(options: dict[str, object]) -> Model[Any, Any, Any]:
    initial = _check_value(options.pop("initial", None), allow_none=True, what="initial")
    return RegisterModel(initial=initial)


register_model(KVModel.name, _build_kv)
register_model(RegisterModel.name, _build_register)
