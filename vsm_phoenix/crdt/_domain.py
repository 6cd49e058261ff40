"""Argument domains shared by all CRDTs: replica ids, elements, counts.

*Elements* (set members, map keys, register values) are **atoms**: ``None``, ``int``,
``str``, ``bytes``, and tuples of atoms. ``bool`` and ``float`` are refused with
``TypeError``: ``True == 1`` and ``-0.0 == 0.0`` / ``nan != nan`` would make two
different encodings compare equal (or one encoding unequal to itself), breaking
"equal states give equal bytes". Unhashable values (lists, dicts, sets) are refused with
``TypeError`` too. On the wire a tuple is a CBOR array and decodes back to a tuple.
"""

from __future__ import annotations

from typing import Any, TypeAlias

from vsm_phoenix._canonical import head
from vsm_phoenix.cbor import MAX_INT_BITS, int_fits
from vsm_phoenix.crdt.codec import dumps
from vsm_phoenix.errors import DecodeError, InvalidArgument, TypeMismatch

Atom: TypeAlias = "int | str | bytes | tuple[Atom, ...] | None"

#: Deepest tuple nesting accepted in an element.
MAX_ATOM_DEPTH = 32


def check_replica(replica: object) -> str:
    """A replica id is a non-empty ``str``."""
    if not isinstance(replica, str):
        raise TypeMismatch(f"replica id must be str, got {type(replica).__name__}")
    if not replica:
        raise InvalidArgument("replica id must be non-empty")
    _check_utf8(replica)
    return replica


def _check_utf8(x: str) -> None:
    """Strings must be encodable as UTF-8 (no lone surrogates): CBOR text is UTF-8."""
    if not x.isascii():
        try:
            x.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise InvalidArgument(f"string is not valid Unicode text: {exc.reason}") from None


def check_count(n: object, what: str = "count") -> int:
    """A count is a non-negative ``int`` (not ``bool``) of at most ``MAX_INT_BITS``."""
    if type(n) is not int:
        raise TypeMismatch(f"{what} must be int, got {type(n).__name__}")
    if n < 0:
        raise InvalidArgument(f"{what} must be >= 0, got {n}")
    check_int_width(n, what)
    return n


def check_int_width(n: int, what: str = "integer") -> int:
    """Integers wider than the codec decodes are refused where they enter a state."""
    if not int_fits(n):
        raise InvalidArgument(f"{what} is wider than {MAX_INT_BITS} bits")
    return n


def check_atom(x: object, _depth: int = 0) -> Atom:
    """Validate an element; raise ``TypeError`` when it is not an atom."""
    if x is None or type(x) is bytes:
        return x
    if type(x) is int:
        return check_int_width(x, "element")
    if type(x) is str:
        _check_utf8(x)
        return x
    if type(x) is tuple:
        if _depth >= MAX_ATOM_DEPTH:
            raise TypeMismatch("element nested too deeply")
        for item in x:
            check_atom(item, _depth + 1)
        return x
    raise TypeMismatch(
        f"elements must be None, int, str, bytes or tuples of those; got {type(x).__name__}"
    )


def atom_from_wire(x: Any, _depth: int = 0) -> Atom:
    """Turn a decoded CBOR item back into an atom (arrays become tuples)."""
    if x is None or type(x) in (int, str, bytes):
        return x  # type: ignore[no-any-return]
    if type(x) is list:
        if _depth >= MAX_ATOM_DEPTH:
            raise DecodeError("element nested too deeply")
        return tuple(atom_from_wire(item, _depth + 1) for item in x)
    raise DecodeError(f"not a valid element: {type(x).__name__}")


def atom_to_wire(x: Atom) -> Any:
    """The CBOR-able layout of an atom (tuples become lists, as CBOR decodes them)."""
    if type(x) is tuple:
        return [atom_to_wire(item) for item in x]
    return x


def atom_key(x: Atom) -> bytes:
    """Sort key giving the canonical order of elements: their canonical CBOR bytes.

    Strings, byte strings and 64-bit integers -- nearly every element in practice --
    are encoded inline (a CBOR head plus the payload, RFC 8949 §4.2.1), which is several
    times cheaper than a ``cbor2.dumps`` call; everything else goes through ``dumps``.
    ``tests/crdt`` checks that both paths give identical bytes.
    """
    if type(x) is str:
        raw = x.encode("utf-8")
        return head(0x60, len(raw)) + raw
    if type(x) is bytes:
        return head(0x40, len(x)) + x
    if type(x) is int:
        if 0 <= x < 0x10000000000000000:
            return head(0x00, x)
        if -0x10000000000000000 <= x < 0:
            return head(0x20, -1 - x)
    return dumps(x)


def wire_count(x: Any, what: str = "count", positive: bool = False) -> int:
    """Validate a decoded count."""
    if type(x) is not int or x < (1 if positive else 0):
        raise DecodeError(f"invalid {what}: {x!r}")
    return x


def wire_replica(x: Any) -> str:
    """Validate a decoded replica id."""
    if not isinstance(x, str) or not x:
        raise DecodeError(f"invalid replica id: {x!r}")
    return x
