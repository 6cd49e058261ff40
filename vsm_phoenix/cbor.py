"""The one CBOR parser for bytes that come from outside.

Every decoder of outside bytes in vsm-phoenix (the CRDT codec, the envelope, sealed
frames and their headers, keyset blobs, replay windows, Raft/sync/SWIM payloads,
storage records) parses through :func:`loads`. It exists because a general CBOR
library is a larger language than the project speaks, and the extra parts are where
the bombs are:

* **Tags are refused at parse time.** cbor2 decodes value-sharing (28/29) and
  string-reference (256/25) tags itself, before any ``tag_hook`` sees them, so a
  139-byte input could expand into gigabytes of shared structure. Every tag number
  (0 … 2**64-1) is refused by a semantic-decoder table that answers "refuse" for any
  tag, with one exception the caller opts into: the bignum tags 2/3, which canonical
  CBOR uses for integers beyond 64 bits and which CRDT elements and counts may be
  (``bignums=True``). Those are bounded to :data:`MAX_INT_BITS`, so a decoded
  integer always has fewer digits than Python refuses to format (4,300).
* **Indefinite-length items and duplicate map keys are refused**; map keys must be
  text or byte strings (the project's maps are all keyed by strings), which also
  keeps attacker-chosen hashes (tuples of ints collide by construction) out of the
  parser's dicts.
* **Nesting is capped** (:data:`MAX_DEPTH`) and the input length is capped by the
  caller's ``max_size`` before parsing starts.
* **Canonical form is required**: the value is re-encoded (RFC 8949 §4.2) and must
  equal the input byte for byte, which also refuses trailing bytes. One value has
  exactly one accepted byte string — what hashing, signing and AAD need. (The check
  takes cbor2's plain encoder where that gives the same bytes:
  :mod:`vsm_phoenix._canonical`.)

Bound (what the hostile-input suite measures): with tags refused, every decoded
object is built from input bytes it owns, so the work is linear in the input: at most
one Python object per input byte (a CBOR item is at least one byte), re-encoded once.
Integers are at most 64 bits wide (CBOR major types 0/1), or :data:`MAX_INT_BITS`
with ``bignums=True``, so no decoded number is too large to format in a message.

Everything that goes wrong is a :class:`~vsm_phoenix.errors.DecodeError`; input that
is not bytes-like is a :class:`~vsm_phoenix.errors.TypeMismatch` (a caller error,
not bad data) unless ``wire=True``, where it is a ``DecodeError`` too.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Iterator, Mapping
from typing import Any, Final, NoReturn

import cbor2

from vsm_phoenix import _canonical
from vsm_phoenix.errors import DecodeError, TypeMismatch

__all__ = ["DEFAULT_MAX_SIZE", "MAX_DEPTH", "MAX_INT_BITS", "dumps", "int_fits", "loads"]

#: Inputs longer than this are refused before parsing (callers usually pass less).
DEFAULT_MAX_SIZE: Final = 64 * 1024 * 1024

#: Deepest container nesting accepted. Deeper than anything the project encodes:
#: the deepest structure is a nested OR-Map, whose nesting the CRDT layer caps so
#: that whatever can be built can be decoded.
MAX_DEPTH: Final = 512

#: Widest integer accepted through the bignum tags (and so the widest a CRDT element
#: or count may be): 8,192 bits, 2,467 decimal digits.
MAX_INT_BITS: Final = 8192


def int_fits(x: int) -> bool:
    """Whether ``x`` has a CBOR encoding :func:`loads` accepts with ``bignums=True``."""
    return (x if x >= 0 else -1 - x).bit_length() <= MAX_INT_BITS


def _refuse(tag: int) -> Callable[..., NoReturn]:
    def refuse(*_args: object) -> NoReturn:
        raise DecodeError(f"CBOR tag {tag} is not accepted")

    return refuse


def _bignum(value: object, _immutable: bool = False) -> int:
    # RFC 8949 §3.4.3: tag 2 carries n as big-endian bytes (tag 3 carries -1 - n).
    if not isinstance(value, bytes) or len(value) * 8 > MAX_INT_BITS:
        raise DecodeError(f"bignum must be at most {MAX_INT_BITS // 8} bytes")
    return int.from_bytes(value, "big")


def _negative_bignum(value: object, immutable: bool = False) -> int:
    return -1 - _bignum(value, immutable)


class _RefuseEveryTag(Mapping[int, Callable[..., Any]]):
    """A semantic-decoder table that answers *refuse* for every tag number, except
    the bounded bignum decoders in ``allowed``.

    cbor2 consults this table before its built-in decoders (shared references,
    string references, bignums, dates, ...), so no other tag is ever expanded.
    """

    def __init__(self, allowed: Mapping[int, Callable[..., Any]] | None = None) -> None:
        self._allowed = dict(allowed or {})

    def __getitem__(self, tag: int) -> Callable[..., Any]:
        return self._allowed.get(tag) or _refuse(tag)

    def __contains__(self, tag: object) -> bool:
        return True

    def __iter__(self) -> Iterator[int]:
        return iter(())

    def __len__(self) -> int:
        return 0


_OPTIONS: Final[dict[str, Any]] = {
    "semantic_decoders": _RefuseEveryTag(),
    "max_depth": MAX_DEPTH,
    "allow_indefinite": False,
    "allow_duplicate_keys": False,
    "strict_hashable_types": True,
}
_BIGNUM_OPTIONS: Final[dict[str, Any]] = {
    **_OPTIONS,
    "semantic_decoders": _RefuseEveryTag({2: _bignum, 3: _negative_bignum}),
}


def dumps(obj: Any) -> bytes:
    """Canonical CBOR (RFC 8949 §4.2) of a plain value; equal values give equal bytes."""
    return bytes(cbor2.dumps(obj, canonical=True))


def loads(
    data: object,
    *,
    max_size: int = DEFAULT_MAX_SIZE,
    canonical: bool = True,
    wire: bool = False,
    bignums: bool = False,
) -> Any:
    """Parse exactly one CBOR item from ``data`` under the rules in the module docstring.

    With ``canonical=False`` the re-encoding check is skipped (the caller checks
    canonical form once over a larger object it is part of); trailing bytes are
    refused either way. ``bignums=True`` accepts integers up to :data:`MAX_INT_BITS`
    wide through tags 2/3. Arrays decode as lists, maps as dicts.
    """
    if not isinstance(data, bytes | bytearray | memoryview):
        message = f"expected bytes, got {type(data).__name__}"
        raise DecodeError(message) if wire else TypeMismatch(message)
    raw = bytes(data)
    if len(raw) > max_size:
        raise DecodeError(f"input of {len(raw)} bytes exceeds the limit of {max_size}")
    if not raw:
        raise DecodeError("empty input")
    stream = None if canonical else io.BytesIO(raw)
    options = _BIGNUM_OPTIONS if bignums else _OPTIONS
    try:
        if stream is None:  # trailing bytes fail the canonical comparison below
            obj = cbor2.loads(raw, **options)
        else:
            obj = cbor2.CBORDecoder(stream, **options).decode()
    except DecodeError:
        raise
    except Exception as exc:  # cbor2 raises many types on junk; the cause names the tag
        cause = exc.__cause__ if isinstance(exc.__cause__, DecodeError) else None
        raise DecodeError(str(cause) if cause else f"malformed CBOR: {exc}") from None
    if stream is not None and stream.tell() != len(raw):
        raise DecodeError(f"{len(raw) - stream.tell()} trailing bytes after the CBOR item")
    if canonical:
        try:
            same = _canonical.is_canonical(obj, raw)  # = (canonical re-encoding == raw)
        except Exception as exc:  # e.g. a float NaN payload that cannot round-trip
            raise DecodeError(f"malformed CBOR: {exc}") from None
        if not same:
            raise DecodeError("not canonical CBOR (or trailing bytes)")
    return obj
