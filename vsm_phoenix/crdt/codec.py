"""The canonical codec: every CRDT as deterministic CBOR.

An encoded object is the CBOR array ``[tag, version, state]`` written with RFC 8949
§4.2 deterministic encoding (``cbor2.dumps(..., canonical=True)``). ``tag`` names the
type (``"orset"``, ``"gcounter"``, ...), ``version`` is the format version of that
type's ``state`` layout. Each type lays its state out so that there is exactly one
encoding per state (sets and maps sorted by the canonical bytes of their keys), hence
*equal states encode to equal bytes* -- what hashing, signing and AAD need.

Decoding is strict: input that is not bytes raises ``TypeError``; input that is
oversized, malformed, truncated, followed by trailing bytes, not in canonical form,
tagged with an unknown type or version, or semantically invalid raises
:class:`~vsm_phoenix.errors.DecodeError`. Nothing else escapes.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from vsm_phoenix import cbor
from vsm_phoenix.errors import DecodeError

if TYPE_CHECKING:
    from vsm_phoenix.crdt._base import CRDT

__all__ = [
    "MAX_DECODE_BYTES",
    "decode",
    "dumps",
    "encode_object",
    "loads_canonical",
    "parse_object",
]

#: Inputs longer than this are refused before parsing.
MAX_DECODE_BYTES = 64 * 1024 * 1024

_REGISTRY: dict[str, type[CRDT]] = {}


def register(tag: str, cls: type[CRDT]) -> None:
    """Record the class that decodes ``tag`` (called by ``CRDT.__init_subclass__``)."""
    if tag in _REGISTRY and _REGISTRY[tag] is not cls:
        raise ValueError(f"CRDT tag {tag!r} already registered by {_REGISTRY[tag].__name__}")
    _REGISTRY[tag] = cls


def dumps(obj: Any) -> bytes:
    """Canonical CBOR bytes of a plain value."""
    return cbor.dumps(obj)


def encode_object(tag: str, version: int, state: Any) -> bytes:
    """``[tag, version, state]`` as canonical CBOR."""
    return dumps([tag, version, state])


def loads_canonical(data: object, max_size: int = MAX_DECODE_BYTES) -> Any:
    """Parse ``data`` as one canonical CBOR item, refusing anything else.

    Raises ``TypeError`` when ``data`` is not bytes-like and ``DecodeError`` when it is
    too long, malformed, has trailing bytes, carries any CBOR tag or is not in
    canonical form (the rules of :func:`vsm_phoenix.cbor.loads`).
    """
    return cbor.loads(data, max_size=max_size, bignums=True)


def _parse(data: object, max_size: int) -> tuple[bytes, Any]:
    """Bytes-check and parse one CBOR item, without the canonical-form check."""
    raw = bytes(data) if isinstance(data, bytes | bytearray | memoryview) else data
    return raw, cbor.loads(raw, max_size=max_size, canonical=False, bignums=True)  # type: ignore[return-value]


def parse_object(
    data: object, max_size: int = MAX_DECODE_BYTES
) -> tuple[bytes, tuple[str, int, Any]]:
    """Parse ``[tag, version, state]``; returns the raw bytes and the three parts.

    Canonical form is *not* checked here: the CRDT decoder checks it once, on the
    whole object, by comparing ``raw`` with the re-encoding of the decoded state.
    """
    raw, obj = _parse(data, max_size)
    if not (isinstance(obj, list) and len(obj) == 3):
        raise DecodeError("expected the array [tag, version, state]")
    tag, version, state = obj
    if not isinstance(tag, str) or type(version) is not int:
        raise DecodeError("bad tag or version")
    return raw, (tag, version, state)


def class_for(tag: str) -> type[CRDT]:
    """The CRDT class registered for ``tag``; ``DecodeError`` if none."""
    try:
        return _REGISTRY[tag]
    except KeyError:
        raise DecodeError(f"unknown CRDT type tag {tag!r}") from None


def decode(data: object, max_size: int = MAX_DECODE_BYTES) -> CRDT:
    """Decode any registered CRDT from its canonical bytes."""
    raw, (tag, version, state) = parse_object(data, max_size)
    cls = class_for(tag)
    return cls._decode_checked(raw, version, state)
