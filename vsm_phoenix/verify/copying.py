"""Copying node objects for the model checker: deep where state is mutable, shared
where it is not.

Theory of operation
-------------------
The model checker steps a copy of a node whenever a local step is not memoized yet,
so the cost of a copy is most of the cost of a new local state. ``copy.deepcopy`` is
generic: it rebuilds every object through ``__reduce_ex__``, immutable ones included
(each frozen log entry, each frozen config), and copies a ``random.Random`` by
walking its 625-word state one integer at a time.

:func:`deepcopy_node` copies the same object graph with fewer moves and the same
result for everything a node can observe:

* atoms (numbers, strings, bytes, ``None``, enum members, classes, functions) are
  shared, as in ``deepcopy``;
* lists, dicts, sets, and instances of plain classes and attrs classes are rebuilt
  with their contents copied (instances through ``cls.__new__`` and their
  ``__dict__``/slots, without pickling machinery);
* tuples, frozensets and *frozen* attrs instances whose contents all copy to
  themselves are shared — they cannot change, so the copy and the original may hold
  the same one (structural sharing);
* a ``random.Random`` is copied by state (the copy continues the same sequence);
* anything with its own copy protocol (``__deepcopy__``, ``__reduce__``,
  ``__getstate__``/``__setstate__`` other than attrs' generated ones) or a subclass of
  a built-in container goes to ``copy.deepcopy`` with the same memo, so shared
  references stay shared across both paths.

How to copy each class is decided once per class.
"""

from __future__ import annotations

import copy
import enum
import random
import types
from collections.abc import Callable
from typing import Any, Final

import attrs

__all__ = ["deepcopy_node", "fast_deepcopy"]

_ATOMIC: Final = frozenset({
    type(None), int, float, bool, complex, str, bytes, type, range, types.FunctionType,
    types.BuiltinFunctionType, types.CodeType, type(Ellipsis), type(NotImplemented),
    property,
})

_Plan = Callable[[Any, dict[int, Any]], Any]
_PLANS: dict[type, _Plan] = {}


def fast_deepcopy(value: Any, memo: dict[int, Any] | None = None) -> Any:
    """A deep copy of ``value`` (see the module docstring); ``memo`` as in ``deepcopy``."""
    return _copy(value, {} if memo is None else memo)


def deepcopy_node(node: Any) -> Any:
    """A copy of a node that behaves exactly like it: :func:`fast_deepcopy`."""
    return _copy(node, {})


def _copy(x: Any, memo: dict[int, Any]) -> Any:
    cls = x.__class__
    if cls in _ATOMIC:
        return x
    y = memo.get(id(x), memo)
    if y is not memo:
        return y
    plan = _PLANS.get(cls)
    if plan is None:
        plan = _PLANS[cls] = _plan_for(cls)
    return plan(x, memo)


def _atom(x: Any, memo: dict[int, Any]) -> Any:
    return x


def _list(x: list[Any], memo: dict[int, Any]) -> list[Any]:
    y: list[Any] = []
    memo[id(x)] = y
    atomic = _ATOMIC
    y.extend([v if v.__class__ in atomic else _copy(v, memo) for v in x])
    return y


def _dict(x: dict[Any, Any], memo: dict[int, Any]) -> dict[Any, Any]:
    y: dict[Any, Any] = {}
    memo[id(x)] = y
    atomic = _ATOMIC
    for k, v in x.items():
        y[k if k.__class__ in atomic else _copy(k, memo)] = (
            v if v.__class__ in atomic else _copy(v, memo))
    return y


def _set(x: set[Any], memo: dict[int, Any]) -> set[Any]:
    y: set[Any] = set()
    memo[id(x)] = y
    y.update([_copy(v, memo) for v in x])
    return y


def _tuple(x: tuple[Any, ...], memo: dict[int, Any]) -> tuple[Any, ...]:
    parts = [_copy(v, memo) for v in x]
    hit = memo.get(id(x), memo)  # a cycle through the tuple already copied it
    if hit is not memo:
        return hit  # type: ignore[no-any-return]
    if all(a is b for a, b in zip(parts, x, strict=True)):
        return x
    y = tuple(parts)
    memo[id(x)] = y
    return y


def _frozenset(x: frozenset[Any], memo: dict[int, Any]) -> frozenset[Any]:
    parts = [_copy(v, memo) for v in x]
    if all(a is b for a, b in zip(parts, x, strict=True)):
        return x
    y = frozenset(parts)
    memo[id(x)] = y
    return y


def _rng(x: random.Random, memo: dict[int, Any]) -> random.Random:
    # By state: the copy continues the same sequence. ``copy.copy`` would also seed a
    # fresh generator from os.urandom first, only to overwrite it.
    y = random.Random.__new__(x.__class__)
    y.setstate(x.getstate())
    memo[id(x)] = y
    return y


def _method(x: types.MethodType, memo: dict[int, Any]) -> types.MethodType:
    return types.MethodType(x.__func__, _copy(x.__self__, memo))


def _fallback(x: Any, memo: dict[int, Any]) -> Any:
    return copy.deepcopy(x, memo)


def _slot_names(cls: type) -> list[str]:
    names: list[str] = []
    for klass in cls.__mro__:
        slots = klass.__dict__.get("__slots__", ())
        if isinstance(slots, str):
            slots = (slots,)
        names.extend(s for s in slots if s not in ("__dict__", "__weakref__"))
    return names


def _instance_plan(cls: type, frozen: bool) -> _Plan:
    slots = _slot_names(cls)
    setattr_ = object.__setattr__
    new = object.__new__
    atomic = _ATOMIC

    def plan(x: Any, memo: dict[int, Any]) -> Any:
        y: Any = new(cls)
        memo[id(x)] = y
        same = True
        state = getattr(x, "__dict__", None)
        if state is not None:
            d: dict[str, Any] = {}
            for k, v in state.items():
                if v.__class__ in atomic:
                    d[k] = v
                    continue
                c = _copy(v, memo)
                same = same and c is v
                d[k] = c
            y.__dict__.update(d)
        for name in slots:
            try:
                v = getattr(x, name)
            except AttributeError:
                continue
            if v.__class__ not in atomic:
                c = _copy(v, memo)
                same = same and c is v
                v = c
            setattr_(y, name, v)
        if frozen and same:
            memo[id(x)] = x  # immutable all the way down: share it
            return x
        return y

    return plan


def _custom_protocol(cls: type, is_attrs: bool) -> bool:
    if getattr(cls, "__deepcopy__", None) is not None:
        return True
    reduce_ex: Any = cls.__reduce_ex__
    reduce: Any = cls.__reduce__
    if reduce_ex is not object.__reduce_ex__ or reduce is not object.__reduce__:
        return True
    if is_attrs:
        return False  # attrs generates __getstate__/__setstate__ for slotted classes
    getstate = getattr(cls, "__getstate__", None)
    if getstate is not None and getstate is not getattr(object, "__getstate__", None):
        return True
    return getattr(cls, "__setstate__", None) is not None


def _plan_for(cls: type) -> _Plan:
    if cls is list:
        return _list
    if cls is dict:
        return _dict
    if cls is set:
        return _set
    if cls is tuple:
        return _tuple
    if cls is frozenset:
        return _frozenset
    if cls is types.MethodType:
        return _method
    if issubclass(cls, enum.Enum):
        return _atom
    if issubclass(cls, random.Random):
        return _rng
    if issubclass(cls, list | dict | set | tuple | frozenset | bytearray | int | str | bytes):
        return _fallback
    is_attrs = attrs.has(cls)
    if _custom_protocol(cls, is_attrs) or cls.__new__ is not object.__new__:
        return _fallback
    frozen = is_attrs and _is_frozen_attrs(cls)
    return _instance_plan(cls, frozen)


def _is_frozen_attrs(cls: type) -> bool:
    try:
        params = cls.__attrs_attrs__  # type: ignore[attr-defined]
    except AttributeError:
        return False
    if not params:
        return False
    return getattr(cls.__setattr__, "__name__", "") == "_frozen_setattrs"
