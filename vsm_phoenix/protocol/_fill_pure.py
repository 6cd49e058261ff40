"""Filling the slots of frozen attrs objects whose fields are already checked: the pure
backend (:mod:`vsm_phoenix.protocol._fill_native` is its Cython twin; :mod:`._fill`
selects one).

Why: a frozen slotted attrs class sets each field through ``object.__setattr__`` by
name, and its validators run after; a decoder that has checked a whole column of
fields at once, or an envelope whose fields pass one exact-type check, need neither.
These functions write the slots directly, and nothing else: they are for classes
without converters or validators, or for values that already passed them.

* :class:`Layout` names the slots of a class, in field order; it refuses a name that
  is not a slot of the class (``InvalidArgument``).
* :func:`build` makes one object from a value per slot, :func:`build_many` makes
  ``n`` objects from one column of ``n`` values per slot.
* :func:`envelope_init` is the fast path of ``Envelope.__init__``: when the ten fields
  have the exact builtin types and ranges an envelope needs, it fills them and answers
  ``True``; otherwise it changes nothing and answers ``False`` (the caller then runs
  the field-by-field checks, which say what is wrong).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Sequence
from itertools import repeat
from types import MemberDescriptorType
from typing import Any, Final

from vsm_phoenix.crdt import Timestamp
from vsm_phoenix.errors import InvalidArgument

__all__ = ["Layout", "build", "build_many", "envelope_init"]

_new: Callable[[type], Any] = object.__new__
MAX_ID_BYTES: Final = 32
MAX_NAME_CHARS: Final = 256
MAX_PHYSICAL: Final = 2**63 - 1
MAX_LOGICAL: Final = 2**32 - 1
_OPTIONAL_BYTES: Final = (bytes, type(None))
_HEAPTYPE: Final = 1 << 9  # Py_TPFLAGS_HEAPTYPE: a class made by a class statement


class Layout:
    """The slots ``names`` of ``cls`` (a class whose instances ``object.__new__``
    makes), in the order values are given."""

    __slots__ = ("cls", "names", "setters")

    def __init__(self, cls: type, names: Sequence[str]) -> None:
        setters: list[Callable[[Any, Any], None]] = []
        for name in names:
            descriptor = next((k.__dict__[name] for k in cls.__mro__ if name in k.__dict__),
                              None)
            if type(descriptor) is not MemberDescriptorType:
                raise InvalidArgument(f"{name!r} is not a slot of {cls.__name__}")
            setters.append(descriptor.__set__)
        if getattr(cls, "__new__", None) is not _new or not cls.__flags__ & _HEAPTYPE:
            raise InvalidArgument(f"{cls.__name__} is not a plain class with slots")
        self.cls = cls
        self.names = tuple(names)
        self.setters = tuple(setters)


def build(layout: Layout, values: Sequence[Any]) -> Any:
    """One object of ``layout.cls`` whose slots hold ``values`` (one per slot)."""
    if len(values) != len(layout.setters):
        raise InvalidArgument(f"{layout.cls.__name__} takes {len(layout.setters)} values")
    obj: Any = _new(layout.cls)
    for setter, value in zip(layout.setters, values, strict=True):
        setter(obj, value)
    return obj


def build_many(layout: Layout, n: int, columns: Sequence[Iterable[Any]]) -> list[Any]:
    """``n`` objects of ``layout.cls``; object ``i`` takes value ``i`` of every column
    (one column per slot, each yielding at least ``n`` values). Every slot is filled
    column by column through C-level iteration: no Python frame per object."""
    if len(columns) != len(layout.setters):
        raise InvalidArgument(f"{layout.cls.__name__} takes {len(layout.setters)} columns")
    objs: list[Any] = list(map(_new, repeat(layout.cls, n)))
    for setter, column in zip(layout.setters, columns, strict=True):
        deque(map(setter, objs, column), maxlen=0)
    return objs


def envelope_init(
    layout: Layout,
    env: Any,
    message_id: Any,
    msg_type: Any,
    sender: Any,
    recipient: Any,
    topic: Any,
    correlation_id: Any,
    timestamp: Any,
    hop_limit: Any,
    causal_context: Any,
    payload: Any,
) -> bool:
    """Fill ``env``'s ten slots (``layout``: the envelope's fields in order) when every
    field has its exact builtin type and range, and answer ``True``; else answer
    ``False`` and change nothing."""
    name = recipient if topic is None else topic
    ok = (
        type(message_id) is bytes and 0 < len(message_id) <= MAX_ID_BYTES
        and type(msg_type) is str and 0 < len(msg_type) <= MAX_NAME_CHARS
        and type(sender) is str and 0 < len(sender) <= MAX_NAME_CHARS
        and (recipient is None) != (topic is None)
        and type(name) is str and 0 < len(name) <= MAX_NAME_CHARS
        and (correlation_id is None
             or (type(correlation_id) is bytes and 0 < len(correlation_id) <= MAX_ID_BYTES))
        and type(timestamp) is Timestamp and len(timestamp) == 3
        and type(timestamp[0]) is int and 0 <= timestamp[0] <= MAX_PHYSICAL
        and type(timestamp[1]) is int and 0 <= timestamp[1] <= MAX_LOGICAL
        and type(timestamp[2]) is str and 0 < len(timestamp[2]) <= MAX_NAME_CHARS
        and type(hop_limit) is int and 0 <= hop_limit <= 255
        and type(causal_context) in _OPTIONAL_BYTES
        and type(payload) is bytes
    )
    if not ok:
        return False
    for setter, value in zip(layout.setters, (message_id, msg_type, sender, recipient, topic,
                                              correlation_id, timestamp, hop_limit,
                                              causal_context, payload), strict=True):
        setter(env, value)
    return True
