"""Reading ORMap format 1 (before issue 11): a presence OR-Set of keys plus one nested
value per key, removed keys' values included, each causal value with dots minted from
its own context. :func:`from_v1` turns such a state into the format-2 map (see
:mod:`vsm_phoenix.crdt.maps`); :func:`v1_canonical` checks that the input was the one
encoding the format-1 encoder wrote.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from vsm_phoenix.crdt import codec
from vsm_phoenix.crdt._base import CRDT
from vsm_phoenix.crdt._domain import Atom, atom_from_wire, atom_key
from vsm_phoenix.crdt.causal import CausalContext
from vsm_phoenix.crdt.maps import (
    Dot,
    ORMap,
    _claim,
    _decode_slots,
    _decode_store,
    _is_causal,
    _nested_dots,
    _point,
    _Slot,
)
from vsm_phoenix.crdt.registers import MVRegister
from vsm_phoenix.crdt.sets import ORSet

__all__ = ["from_v1", "v1_canonical"]

#: Format-1 nested causal dots are renamed into this namespace when read (their dots
#: were minted per nested value, not per map): ``f"{replica}{_V1_SEP}{key path}"``.
_V1_SEP = "\x00v1/"


def from_v1(state: Any) -> ORMap:
    """Read a format-1 map: ``[presence store, presence context, [[key, nested], ...]]``.

    Present keys keep their presence dots; removed keys' values (which format 1 kept)
    are dropped, their dots kept in the context. A format-1 causal value minted dots
    from its own context, so its dots are renamed into a replica namespace of their own
    (``replica + "\\x00v1/" + key path``): deterministic, so replicas that read the same
    old states agree, and never equal to a dot minted from now on.
    """
    if not (isinstance(state, list) and len(state) == 3 and isinstance(state[2], list)):
        raise ValueError("expected [keys, context, values]")
    presence = ORSet._from_state(state[:2])
    ctx = presence.context
    values: dict[Atom, tuple[type[CRDT], Any, int]] = {}
    for item in state[2]:
        if not (isinstance(item, list) and len(item) == 2):
            raise ValueError("expected [key, nested]")
        k = atom_from_wire(item[0])
        nested = item[1]
        if not (isinstance(nested, list) and len(nested) == 3):
            raise ValueError("nested value must be [tag, version, state]")
        tag, version, inner = nested
        if not isinstance(tag, str) or type(version) is not int:
            raise ValueError("bad nested tag or version")
        if k in values:
            raise ValueError(f"key {k!r} appears twice")
        values[k] = (codec.class_for(tag), inner, version)
    missing = [k for k in presence.value if k not in values]
    if missing:
        raise ValueError(f"present keys without a value: {missing[:3]!r}")
    slots: dict[Atom, _Slot] = {}
    renamed: list[tuple[Atom, type[CRDT], Any]] = []
    for k, (kind, inner, version) in values.items():
        dots = sorted((d.replica, d.counter) for d in presence.dots_of(k))
        if _is_causal(kind):
            # Decode first (validates the old state), then rename its dots.
            old = kind._decode_state(version, inner)
            layout = old._encode_state()
            suffix = _V1_SEP + atom_key(k).hex()
            store_wire, ctx_wire = _rename_layout(kind, layout, suffix)
            ctx._join_into(CausalContext._from_state(ctx_wire))
            if dots:
                renamed.append((k, kind, store_wire))
        elif dots:
            first = kind._decode_state(version, inner)
            slots[k] = _Slot(
                kind, states={d: (first if i == 0 else first.copy()) for i, d in enumerate(dots)}
            )
    seen: set[Dot] = set()
    for s in slots.values():
        for d in s.dots():
            _claim(d, ctx, seen)
    for k, kind, store_wire in renamed:
        value: CRDT
        if kind is ORMap:
            value = ORMap._raw(_decode_slots(store_wire, ctx, seen), ctx)
        else:
            value = _decode_store(kind, kind.VERSION, store_wire)
            for d in _nested_dots(value):
                _claim(d, ctx, seen)
            _point(value, ctx)
        presence_dots = {(d.replica, d.counter) for d in presence.dots_of(k)}
        for d in presence_dots:
            _claim(d, ctx, seen)
        slots[k] = _Slot(kind, presence_dots, value)
    return ORMap._raw(slots, ctx)


def v1_canonical(state: Any) -> bool:
    """Whether a (valid) format-1 layout is the one the format-1 encoder wrote."""
    presence = ORSet._from_state(state[:2])
    if codec.dumps(presence._encode_state()) != codec.dumps(state[:2]):
        return False
    keys = [atom_from_wire(item[0]) for item in state[2]]
    if [atom_key(k) for k in keys] != sorted({atom_key(k) for k in keys}):
        return False
    for _, (tag, version, inner) in state[2]:
        kind = codec.class_for(tag)
        if kind is ORMap and version == 1:
            if not v1_canonical(inner):
                return False
        elif codec.dumps(kind._decode_state(version, inner)._encode_state()) != codec.dumps(
            inner
        ):
            return False
    return True


def _rename_layout(kind: type[CRDT], layout: Any, suffix: str) -> tuple[Any, Any]:
    """Rename every dot ``[r, c]`` of a causal value's layout ``[store, context]`` to
    ``[r + suffix, c]``; returns the renamed ``(store, context)``."""

    def dot(d: Any) -> list[Any]:
        return [d[0] + suffix, d[1]]

    store, ctx = layout
    vv, cloud = ctx
    new_ctx = [{r + suffix: n for r, n in vv.items()}, [dot(d) for d in cloud]]
    return _rename_store(kind, store, dot), new_ctx


def _rename_store(kind: type[CRDT], store: Any, dot: Callable[[Any], list[Any]]) -> Any:
    if kind is ORSet:
        return [[e, [dot(d) for d in ds]] for e, ds in store]
    if kind is MVRegister:
        return [[dot(d), v] for d, v in store]
    out = []
    for key, tag, version, body in store:
        sub = codec.class_for(tag)
        if _is_causal(sub):
            body = [[dot(d) for d in body[0]], _rename_store(sub, body[1], dot)]
        else:
            body = [[dot(d), st] for d, st in body]
        out.append([key, tag, version, body])
    return out
