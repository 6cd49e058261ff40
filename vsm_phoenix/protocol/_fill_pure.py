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
from operator import attrgetter
from types import MemberDescriptorType
from typing import Any, Final

import cbor2

from vsm_phoenix import cbor
from vsm_phoenix.crdt import Timestamp
from vsm_phoenix.errors import DecodeError, InvalidArgument

__all__ = [
    "Layout",
    "batch_value",
    "build",
    "build_many",
    "encode_batch",
    "envelope_init",
    "fields_ok",
    "parse_columns",
]

_new: Callable[[type], Any] = object.__new__
# The envelope's field bounds (re-exported by :mod:`vsm_phoenix.protocol.envelope`) and
# the batch format's (:mod:`vsm_phoenix.protocol.envelope_batch`).
MAX_ID_BYTES: Final = 32
MAX_NAME_CHARS: Final = 256
MAX_PHYSICAL: Final = 2**63 - 1
MAX_LOGICAL: Final = 2**32 - 1
MAX_COMPRESSION: Final = 2
BATCH_FORMAT: Final = 1
MAX_ENVELOPES: Final = 65_536
BATCH_ITEMS: Final = 12
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


def fields_ok(
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
    """Whether the ten fields of an envelope, in field order, have their exact builtin
    types and ranges (the usual case, in one expression; ``False`` leaves the verdict
    to the field-by-field checks, which also accept subclasses of str and bytes)."""
    name = recipient if topic is None else topic
    return (
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
    ok = fields_ok(message_id, msg_type, sender, recipient, topic, correlation_id,
                   timestamp, hop_limit, causal_context, payload)
    if not ok:
        return False
    for setter, value in zip(layout.setters, (message_id, msg_type, sender, recipient, topic,
                                              correlation_id, timestamp, hop_limit,
                                              causal_context, payload), strict=True):
        setter(env, value)
    return True


_BYTES: Final[frozenset[type]] = frozenset((bytes,))
_STR: Final[frozenset[type]] = frozenset((str,))
_INT: Final[frozenset[type]] = frozenset((int,))
_OPT_BYTES: Final[frozenset[type]] = frozenset((bytes, type(None)))


def _types(column: list[Any], allowed: frozenset[type], what: str) -> None:
    if not allowed.issuperset(map(type, column)):
        raise DecodeError(f"batch column {what} holds a value of the wrong type")


def _names(column: list[Any], what: str) -> None:
    _types(column, _STR, what)
    lengths = list(map(len, column))
    if min(lengths) < 1 or max(lengths) > MAX_NAME_CHARS:
        raise DecodeError(f"batch column {what}: names are 1..{MAX_NAME_CHARS} characters")


def _ids(column: list[Any], what: str, optional: bool) -> None:
    _types(column, _OPT_BYTES if optional else _BYTES, what)
    present = [x for x in column if x is not None] if optional else column
    if present:
        lengths = list(map(len, present))
        if min(lengths) < 1 or max(lengths) > MAX_ID_BYTES:
            raise DecodeError(f"batch column {what}: ids are 1..{MAX_ID_BYTES} bytes")


def _uints(column: list[Any], what: str, limit: int) -> None:
    _types(column, _INT, what)  # (type() is int: bools are refused)
    if min(column) < 0 or max(column) > limit:
        raise DecodeError(f"batch column {what}: integers are in 0..{limit}")


def parse_columns(data: object, max_payload: int) -> list[list[Any]]:
    """The eleven columns of an envelope batch (:mod:`vsm_phoenix.protocol.envelope_batch`
    describes the format), every value checked for its column's type and range (sizes
    up to ``max_payload``); ``DecodeError`` for anything else: bytes that are not one
    canonical CBOR item, another shape, a value out of its column's type or range.
    The sizes are not compared with the payloads here (compressed ones are not yet
    decompressed)."""
    value = cbor.loads(data, wire=True)  # one parse, one canonical check, no tags
    if type(value) is not list or len(value) != BATCH_ITEMS:
        raise DecodeError(f"an envelope batch is an array of {BATCH_ITEMS} items")
    if type(value[0]) is not int or value[0] != BATCH_FORMAT:
        raise DecodeError("unsupported envelope batch format")
    columns: list[list[Any]] = value[1:]
    if not all(type(c) is list for c in columns):
        raise DecodeError("every batch column is an array")
    n = len(columns[0])
    if not 1 <= n <= MAX_ENVELOPES or any(len(c) != n for c in columns):
        raise DecodeError(f"batch columns hold the same number (1..{MAX_ENVELOPES}) of entries")
    ids, types, cids, phys, logical, replicas, hops, ccs, methods, sizes, payloads = columns
    _ids(ids, "ids", optional=False)
    _names(types, "types")
    _ids(cids, "correlation_ids", optional=True)
    _uints(phys, "ts_physical", MAX_PHYSICAL)
    _uints(logical, "ts_logical", MAX_LOGICAL)
    _names(replicas, "ts_replicas")
    _uints(hops, "hop_limits", 255)
    _types(ccs, _OPT_BYTES, "causal_contexts")
    _uints(methods, "compression", MAX_COMPRESSION)
    _uints(sizes, "sizes", max_payload)
    _types(payloads, _BYTES, "payloads")
    return columns


#: The per-envelope fields of a batch, in column order (sender and address excluded).
_FIELDS: Final = attrgetter("message_id", "type", "correlation_id", "timestamp", "hop_limit",
                            "causal_context", "payload")
_ADDRESS: Final = attrgetter("sender", "recipient", "topic")


def batch_value(envelopes: Sequence[Any], payloads: Sequence[bytes] | None = None,
                methods: Sequence[int] | None = None) -> list[Any]:
    """The twelve items of the batch of ``envelopes`` (their wire ``payloads`` and
    compression ``methods`` when some are compressed; the sizes are the envelopes'),
    transposed by C-level iteration (a tuple encodes as an array)."""
    ids, types, cids, stamps, hops, ccs, plain = zip(*map(_FIELDS, envelopes), strict=True)
    physical, logical, replicas = zip(*stamps, strict=True)
    return [BATCH_FORMAT, ids, types, cids, physical, logical, replicas, hops, ccs,
            (0,) * len(ids) if methods is None else methods, list(map(len, plain)),
            plain if payloads is None else payloads]


def encode_batch(layout: Layout, envelopes: Sequence[Any], sender: Any, recipient: Any,
                 topic: Any, threshold: int) -> bytes | None:
    """The batch of ``envelopes`` (1 .. :data:`MAX_ENVELOPES` of ``layout.cls``, all with
    sender ``sender`` and the one address given, no payload of ``threshold`` bytes or
    more) as canonical CBOR; ``None`` when they are not that plain case or do not
    encode (the caller's general path then decides: compression or an error)."""
    if (not 1 <= len(envelopes) <= MAX_ENVELOPES or (recipient is None) == (topic is None)
            or set(map(type, envelopes)) != {layout.cls}
            or set(map(_ADDRESS, envelopes)) != {(sender, recipient, topic)}
            or max(len(e.payload) for e in envelopes) >= threshold):
        return None
    # No maps and no floats: cbor2's plain encoding (shortest heads, definite lengths)
    # is the canonical one, which parse_columns checks.
    try:
        return bytes(cbor2.dumps(batch_value(envelopes)))
    except Exception:  # e.g. a name holding a lone surrogate (not UTF-8)
        return None
