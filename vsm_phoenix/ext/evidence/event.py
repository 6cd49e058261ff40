"""One signed evidence event: its canonical bytes, its id, its signature.

An event is ``(author, timestamp, parents, payload)`` signed by the author's identity
key. On the wire (and on disk) it is canonical CBOR ``[body, signature]``, where
``body`` is the byte string of canonical CBOR
``["vsm-phoenix/event", 1, author, [physical_ms, logical], parents, payload]``:
the signature covers exactly the body bytes, and the event's **id** is the SHA-256 of
the whole ``[body, signature]`` encoding. Canonical CBOR gives one accepted byte string
per event, so an id names one event, and any change to it -- payload, author, time,
parent list (``parents`` must be sorted and distinct: a reordered list is not
canonical) -- changes the id and breaks the signature.

The timestamp is a hybrid logical clock reading of the author (``physical_ms``,
``logical``): an event's timestamp must be later than each of its parents', which the
graph checks once the parents are present (:meth:`EvidenceGraph.verify`).

``payload`` is plain data: ``None``, booleans, integers (64-bit), floats, text, bytes,
lists and maps with text keys, at most :data:`MAX_PAYLOAD_BYTES` encoded.

Errors: malformed bytes -> ``DecodeError``; a signature that does not verify under the
author's key, or an author the key source does not know -> ``AuthenticationError``
(naming the event id); bad arguments -> ``InvalidArgument`` / ``TypeMismatch``.
"""

from __future__ import annotations

import hashlib
import itertools
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Final, Protocol

import attrs

from vsm_phoenix import cbor
from vsm_phoenix.crypto.identity import Identity, check_principal
from vsm_phoenix.crypto.signature import SIGNATURE_SIZE, VerifyKey
from vsm_phoenix.errors import (
    AuthenticationError,
    DecodeError,
    InvalidArgument,
    TypeMismatch,
)

__all__ = [
    "EVENT_TAG",
    "ID_SIZE",
    "MAX_EVENT_BYTES",
    "MAX_PARENTS",
    "MAX_PAYLOAD_BYTES",
    "Event",
    "KeySource",
    "key_lookup",
    "short",
]

EVENT_TAG: Final = "vsm-phoenix/event"
EVENT_VERSION: Final = 1
ID_SIZE: Final = 32
MAX_PARENTS: Final = 64
MAX_PAYLOAD_BYTES: Final = 16 * 1024
#: Largest encoded event: payload, parents, author and signature with their framing.
MAX_EVENT_BYTES: Final = MAX_PAYLOAD_BYTES + MAX_PARENTS * (ID_SIZE + 2) + 512
_MAX_U64: Final = 2**64 - 1


class _HasMember(Protocol):
    def member(self, sender: str) -> Any: ...


#: Where author keys come from: a roster (or roster book), or a principal -> key map.
KeySource = _HasMember | Mapping[str, VerifyKey] | Callable[[str], VerifyKey]


def key_lookup(source: KeySource) -> Callable[[str], VerifyKey]:
    """A function author -> verify key (``AuthenticationError`` for an unknown author)."""
    if isinstance(source, Mapping):
        keys = source

        def from_map(author: str) -> VerifyKey:
            key = keys.get(author)
            if key is None:
                raise AuthenticationError(f"unknown author {author[:40]!r}")
            return key

        return from_map
    member = getattr(source, "member", None)
    if member is not None:
        def from_roster(author: str) -> VerifyKey:
            key = member(author).verify_key
            assert isinstance(key, VerifyKey)
            return key

        return from_roster
    if callable(source):
        return source
    raise TypeMismatch(f"key source must be a roster, a map or a function, not "
                       f"{type(source).__name__}")


def short(event_id: bytes) -> str:
    """The first 12 hex digits of an id (how messages and pictures name an event)."""
    return event_id.hex()[:12]


def _check_id(value: object, what: str) -> bytes:
    if not isinstance(value, bytes) or len(value) != ID_SIZE:
        raise DecodeError(f"{what} must be a {ID_SIZE}-byte id")
    return value


def _check_payload(payload: object, depth: int = 0) -> None:
    """Plain data only (see the module docstring); raises ``TypeMismatch``."""
    if depth > 32:
        raise InvalidArgument("payload is nested more than 32 levels")
    if payload is None or isinstance(payload, bool | str | bytes | float):
        return
    if isinstance(payload, int):
        if not -(2**63) <= payload <= _MAX_U64:
            raise InvalidArgument("payload integers must fit in 64 bits")
        return
    if isinstance(payload, list | tuple):
        for item in payload:
            _check_payload(item, depth + 1)
        return
    if isinstance(payload, dict):
        for key, item in payload.items():
            if not isinstance(key, str):
                raise TypeMismatch("payload map keys must be str")
            _check_payload(item, depth + 1)
        return
    raise TypeMismatch(f"payload may not contain {type(payload).__name__}")


def _body(author: str, physical_ms: int, logical: int, parents: tuple[bytes, ...],
          payload: Any) -> bytes:
    return cbor.dumps([EVENT_TAG, EVENT_VERSION, author, [physical_ms, logical],
                       list(parents), payload])


@attrs.frozen(eq=False, repr=False)
class Event:
    """A decoded, signature-checked event (build one with :meth:`create` or
    :meth:`from_bytes`). Equality and hashing are by :attr:`id`."""

    author: str
    physical_ms: int
    logical: int
    parents: tuple[bytes, ...]
    payload: Any
    signature: bytes
    body: bytes
    raw: bytes
    id: bytes

    @property
    def timestamp(self) -> tuple[int, int]:
        """``(physical_ms, logical)``: the HLC reading, ordered as a tuple."""
        return (self.physical_ms, self.logical)

    @classmethod
    def create(cls, identity: Identity, payload: Any, *, physical_ms: int, logical: int = 0,
               parents: Iterable[bytes] = ()) -> Event:
        """Sign a new event as ``identity`` (arguments checked: ``InvalidArgument`` /
        ``TypeMismatch``)."""
        if not isinstance(identity, Identity):
            raise TypeMismatch("identity must be an Identity")
        for value, what in ((physical_ms, "physical_ms"), (logical, "logical")):
            if type(value) is not int:
                raise TypeMismatch(f"{what} must be an int")
            if not 0 <= value <= _MAX_U64:
                raise InvalidArgument(f"{what} must be in 0..2**64-1")
        parent_set = set()
        for p in parents:
            if not isinstance(p, bytes) or len(p) != ID_SIZE:
                raise InvalidArgument(f"parents must be {ID_SIZE}-byte event ids")
            parent_set.add(p)
        if len(parent_set) > MAX_PARENTS:
            raise InvalidArgument(f"an event has at most {MAX_PARENTS} parents")
        _check_payload(payload)
        ordered = tuple(sorted(parent_set))
        body = _body(identity.principal, physical_ms, logical, ordered, payload)
        if len(body) > MAX_EVENT_BYTES - SIGNATURE_SIZE - 8:
            raise InvalidArgument(f"payload is larger than {MAX_PAYLOAD_BYTES} bytes encoded")
        signature = identity.sign(body)
        raw = cbor.dumps([body, signature])
        # Round-trip the payload so the object holds what a decoder would (tuples
        # become lists): an event created here equals the same event decoded.
        decoded = cbor.loads(body)[5]
        return cls(identity.principal, physical_ms, logical, ordered, decoded, signature,
                   body, raw, hashlib.sha256(raw).digest())

    @classmethod
    def from_bytes(cls, data: object, keys: Callable[[str], VerifyKey] | None = None) -> Event:
        """Decode an event; with ``keys``, also check its signature.

        ``DecodeError`` for malformed bytes; ``AuthenticationError`` (naming the id)
        when the author is unknown or the signature does not verify."""
        if not isinstance(data, bytes | bytearray | memoryview):
            raise DecodeError(f"expected event bytes, got {type(data).__name__}")
        raw = bytes(data)
        outer = cbor.loads(raw, max_size=MAX_EVENT_BYTES, wire=True)
        if not (isinstance(outer, list) and len(outer) == 2):
            raise DecodeError("event must be [body, signature]")
        body, signature = outer
        if not isinstance(body, bytes) or not isinstance(signature, bytes):
            raise DecodeError("event body and signature must be byte strings")
        if len(signature) != SIGNATURE_SIZE:
            raise DecodeError("event signature has the wrong length")
        event_id = hashlib.sha256(raw).digest()
        doc = cbor.loads(body, max_size=MAX_EVENT_BYTES, wire=True)
        if not (isinstance(doc, list) and len(doc) == 6):
            raise DecodeError("event body must be a 6-item array")
        tag, version, author, stamp, parents_raw, payload = doc
        if tag != EVENT_TAG or type(version) is not int or version != EVENT_VERSION:
            raise DecodeError("not a version-1 vsm-phoenix event")
        try:
            check_principal(author)
        except (TypeError, ValueError) as exc:
            raise DecodeError(f"event author: {exc}") from None
        if not (isinstance(stamp, list) and len(stamp) == 2
                and all(type(x) is int and 0 <= x <= _MAX_U64 for x in stamp)):
            raise DecodeError("event timestamp must be [physical_ms, logical], 64-bit")
        if not isinstance(parents_raw, list) or len(parents_raw) > MAX_PARENTS:
            raise DecodeError(f"event parents must be a list of at most {MAX_PARENTS} ids")
        parents = tuple(_check_id(p, "parent") for p in parents_raw)
        if any(a >= b for a, b in itertools.pairwise(parents)):
            raise DecodeError("event parents must be sorted and distinct")
        try:
            _check_payload(payload)
        except (TypeError, ValueError) as exc:
            raise DecodeError(f"event payload: {exc}") from None
        if keys is not None:
            key = keys(author)
            try:
                key.verify(signature, body)
            except AuthenticationError:
                raise AuthenticationError(
                    f"event {short(event_id)} by {author!r}: signature does not verify "
                    "(forged or altered)") from None
        return cls(author, stamp[0], stamp[1], parents, payload, signature, body, raw,
                   event_id)

    def verify(self, keys: Callable[[str], VerifyKey]) -> None:
        """Check the signature again (``AuthenticationError`` naming the id)."""
        try:
            keys(self.author).verify(self.signature, self.body)
        except AuthenticationError as exc:
            raise AuthenticationError(f"event {short(self.id)} by {self.author!r}: {exc}"
                                      ) from None

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Event):
            return NotImplemented
        return self.id == other.id

    def __hash__(self) -> int:
        return hash(self.id)

    def __repr__(self) -> str:
        return (f"Event({short(self.id)}, author={self.author!r}, "
                f"ts={self.physical_ms}.{self.logical}, parents={len(self.parents)})")
