"""Canonical CBOR at the price of plain CBOR (for :mod:`vsm_phoenix.cbor` and the
sealed-frame headers of :mod:`vsm_phoenix.crypto.channel`).

cbor2 writes canonical CBOR (RFC 8949 §4.2, length-first key order as cbor2 sorts)
about five times slower than plain CBOR: it encodes every map key apart and sorts
them. A frame header is written once per seal and *checked* canonical once per open
(every strict decode re-encodes its value), so that cost was paid twice per message.
The two functions here give the same answers as the slow path
(``tests/test_canonical.py`` checks them against it) and use cbor2's plain encoder:

* :func:`dumps` rebuilds every map in canonical key order and encodes it plainly.
  cbor2's plain encoder already writes every head at its shortest and only definite
  lengths; what canonical mode adds is the key order and the shortest float, so a
  value holding a float takes the slow path.
* :func:`is_canonical` decides whether ``raw`` is the canonical encoding of ``obj``
  (``obj`` decoded from ``raw``): when ``raw`` holds no ``0xfb`` byte (so ``obj`` has
  no float: plain CBOR writes every float as ``0xfb`` + 8 bytes), every map's keys are
  in canonical order and the plain encoding of ``obj`` equals ``raw``, it is; in every
  other case the slow check decides.
"""

from __future__ import annotations

from typing import Any

import cbor2

__all__ = ["dumps", "head", "is_canonical", "key_order"]

_KEYS: dict[str, bytes] = {}
_ORDERS: dict[tuple[Any, ...], tuple[Any, ...] | None] = {}
_CACHE_MAX = 4096


def head(major: int, n: int) -> bytes:
    """A CBOR initial byte plus argument in preferred (shortest) serialization."""
    if n < 24:
        return bytes((major | n,))
    if n < 0x100:
        return bytes((major | 24, n))
    if n < 0x10000:
        return bytes((major | 25,)) + n.to_bytes(2, "big")
    if n < 0x100000000:
        return bytes((major | 26,)) + n.to_bytes(4, "big")
    return bytes((major | 27,)) + n.to_bytes(8, "big")


class _Slow(Exception):
    """The value holds something the fast path does not handle (a float, a key that is
    neither str nor bytes)."""


def _sort_key(k: object) -> tuple[int, bytes]:
    """cbor2's canonical order of map keys: the encoded key, shorter first."""
    if type(k) is str:
        enc = _KEYS.get(k)
        if enc is None:
            raw = k.encode("utf-8", "surrogatepass")
            enc = head(0x60, len(raw)) + raw
            if len(_KEYS) < _CACHE_MAX:
                _KEYS[k] = enc
    elif type(k) is bytes:
        enc = head(0x40, len(k)) + k
    else:
        raise _Slow
    return len(enc), enc


def _order(keys: tuple[Any, ...]) -> tuple[Any, ...] | None:
    """``keys`` in canonical order (``None`` when a key is neither str nor bytes),
    cached per key tuple: the headers of one sender share a handful of key sets."""
    order = _ORDERS.get(keys)
    if order is None and keys not in _ORDERS:
        try:
            order = tuple(sorted(keys, key=_sort_key))
        except _Slow:
            order = None
        if len(_ORDERS) < _CACHE_MAX:
            _ORDERS[keys] = order
    return order


def key_order(keys: tuple[Any, ...]) -> tuple[Any, ...] | None:
    """``keys`` (str or bytes map keys) in the order a canonical map writes them;
    ``None`` when one is neither str nor bytes."""
    return _order(keys)


_CONTAINERS = frozenset((dict, list))
_SCALARS = frozenset((str, int, bytes, bool, type(None)))
_PLAIN = _SCALARS | _CONTAINERS


def _sorted_copy(obj: Any) -> Any:
    """``obj`` with every map rebuilt in canonical key order; ``_Slow`` for anything
    but maps, lists and the scalars that plain CBOR writes canonically."""
    t = type(obj)
    if t in _SCALARS:
        return obj
    if t is dict:
        order = _order(tuple(obj))
        if order is None:
            raise _Slow
        types = set(map(type, obj.values()))
        if types <= _SCALARS:
            return dict(zip(order, map(obj.__getitem__, order), strict=True))
        if not types <= _PLAIN:
            raise _Slow
        return {
            k: v if type(v) in _SCALARS else _sorted_copy(v)
            for k, v in zip(order, map(obj.__getitem__, order), strict=True)
        }
    if t is list:
        types = set(map(type, obj))
        if types <= _SCALARS:
            return obj
        return [v if type(v) in _SCALARS else _sorted_copy(v) for v in obj]
    raise _Slow


def dumps(obj: Any) -> bytes:
    """``cbor2.dumps(obj, canonical=True)``, faster for maps, lists and scalars."""
    try:
        fast = _sorted_copy(obj)
    except _Slow:
        return bytes(cbor2.dumps(obj, canonical=True))
    return bytes(cbor2.dumps(fast))


def _maps_sorted(obj: Any) -> bool:
    """Every map in ``obj`` (a dict or list) has str/bytes keys in canonical order."""
    if type(obj) is dict:
        keys = tuple(obj)
        if _order(keys) != keys:
            return False
        values: Any = obj.values()
    else:
        values = obj
    if _CONTAINERS.isdisjoint(map(type, values)):
        return True
    for v in values:  # noqa: SIM110 (a loop: no generator frame per map)
        if type(v) in _CONTAINERS and not _maps_sorted(v):
            return False
    return True


def is_canonical(obj: Any, raw: bytes) -> bool:
    """Whether ``raw`` is the canonical CBOR encoding of ``obj`` (see the module doc);
    raises what ``cbor2.dumps(obj, canonical=True)`` raises for a value it cannot
    encode."""
    if (
        b"\xfb" not in raw
        and (type(obj) not in _CONTAINERS or _maps_sorted(obj))
        and cbor2.dumps(obj) == raw
    ):
        return True
    return bool(cbor2.dumps(obj, canonical=True) == raw)
