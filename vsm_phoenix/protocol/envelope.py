"""The message envelope: one canonical-CBOR frame for every protocol message.

Theory of operation
-------------------
An :class:`Envelope` is what nodes hand to the network and receive from it. It splits
into a *header* (a small map of routing and causality fields) and a *payload* (opaque
bytes that the message type's owner encodes, canonical CBOR by convention). The split
is deliberate: a secure channel seals a message as ``seal(header, payload)`` —
authenticating the header, encrypting the payload — and :meth:`Envelope.wire_parts` /
:meth:`Envelope.from_wire_parts` are exactly those two halves. Without a channel the
frame is the canonical CBOR array ``[header, payload]`` (:meth:`Envelope.to_bytes`).
Many envelopes from one sender to one address, authenticated together, travel as one
value of :mod:`vsm_phoenix.protocol.envelope_batch` instead (checked once per batch).

Header fields (short keys keep small messages small)::

    v   format version (1)             id  message id (1..32 bytes)
    t   message type, "area.verb"      s   sender node id
    r   recipient node id  -or-        tp  topic   (exactly one of r / tp)
    c   correlation id (bytes|null)    ts  HLC timestamp [physical_ms, logical, replica]
    h   hop limit (0..255)             cc  causal context (bytes|null)
    z   compression 0 none/1 zlib/2 zstd
    n   payload length before compression

Invariants
----------
* ``Envelope.from_bytes(e.to_bytes()) == e`` for every envelope, compressed or not, and
  equal envelopes encode to equal bytes (canonical CBOR, RFC 8949 §4.2).
* Decoding is total: any byte string either yields a valid envelope or raises
  :class:`~vsm_phoenix.errors.DecodeError` — never another exception, never a partial
  object. Non-canonical encodings, unknown header keys, wrong field types, oversized
  frames and payloads whose decompressed size differs from ``n`` or exceeds
  ``max_payload`` (decompression bombs) are all rejected; decompression output is
  bounded *before* it is produced, not checked after.
* A compressed payload is exactly one stream: a zlib stream, or one zstd frame whose
  header declares its content size (equal to ``n``). Trailing bytes, a second frame and
  a zstd frame without a declared size are refused.
* zstd frames are produced only when :mod:`zstandard` is importable; a zstd frame
  received where it is not importable is a ``DecodeError`` (the sender should not
  have chosen it; peers negotiate by leaving ``prefer_zstd`` off).
* Protocol CBOR (:func:`decode_cbor`: frames and every message payload) carries no
  tags at all: integers are CBOR's native ones (-2**64 .. 2**64-1), so no decoded
  number is too large to format. CRDT bytes inside a payload are byte strings, decoded
  by :mod:`vsm_phoenix.crdt.codec`, which also accepts bounded bignums.

Bound: decoding costs time and memory linear in the frame (one parse, one canonical
re-encoding), plus at most ``n <= max_payload`` bytes for the decompressed payload.
"""

from __future__ import annotations

import importlib
import zlib
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Final

import attrs

from vsm_phoenix import cbor
from vsm_phoenix.crdt import Timestamp
from vsm_phoenix.errors import DecodeError, InvalidArgument
from vsm_phoenix.protocol import _fill
from vsm_phoenix.protocol._fill_pure import MAX_ID_BYTES, MAX_NAME_CHARS, fields_ok

_zstd: Any
try:  # optional accelerator
    _zstd = importlib.import_module("zstandard")
except ImportError:  # pragma: no cover - depends on the environment
    _zstd = None

__all__ = [
    "COMPRESS_NONE",
    "COMPRESS_ZLIB",
    "COMPRESS_ZSTD",
    "DEFAULT_COMPRESS_THRESHOLD",
    "DEFAULT_MAX_MESSAGE",
    "DEFAULT_MAX_PAYLOAD",
    "ENVELOPE_VERSION",
    "Envelope",
    "HlcTuple",
    "decode_cbor",
    "encode_cbor",
    "zstd_available",
]

ENVELOPE_VERSION: Final = 1
COMPRESS_NONE: Final = 0
COMPRESS_ZLIB: Final = 1
COMPRESS_ZSTD: Final = 2
DEFAULT_COMPRESS_THRESHOLD: Final = 1024
DEFAULT_MAX_PAYLOAD: Final = 16 * 1024 * 1024
DEFAULT_MAX_MESSAGE: Final = DEFAULT_MAX_PAYLOAD + 4096

HlcTuple = tuple[int, int, str]
"""Wire form of a hybrid-logical-clock timestamp: (physical_ms, logical, replica);
:class:`vsm_phoenix.crdt.Timestamp` is such a tuple."""

_HEADER_KEYS: Final = frozenset({"v", "id", "t", "s", "r", "tp", "c", "ts", "h", "cc", "z", "n"})


def zstd_available() -> bool:
    """Whether zstd frames can be produced and read in this interpreter."""
    return _zstd is not None


def encode_cbor(value: Any) -> bytes:
    """Canonical CBOR (RFC 8949 §4.2) of ``value``; equal values give equal bytes."""
    return cbor.dumps(value)


def decode_cbor(data: bytes) -> Any:
    """Decode canonical CBOR, raising :class:`DecodeError` on *anything* else.

    Rejects trailing bytes and non-canonical encodings (by re-encoding and comparing),
    so one value has exactly one accepted byte string — what hashing and signing need.
    Every tag is rejected, bignums included: no protocol message carries an integer
    outside CBOR's native range (-2**64 .. 2**64-1). Non-bytes input is a
    ``DecodeError`` as well, since it comes off the wire. The parser is
    :func:`vsm_phoenix.cbor.loads`.
    """
    return cbor.loads(data, wire=True)


def _describe(value: object) -> str:
    """A short, always-formattable rendering of an untrusted value for an error
    message (Python refuses to format ints over 4,300 digits; containers may be huge)."""
    if isinstance(value, int) and not -(2**64) <= value < 2**64:
        return f"<int of {value.bit_length()} bits>"
    if isinstance(value, str | bytes) and len(value) <= 64:
        return repr(value)
    if isinstance(value, int | float | bool) or value is None:
        return repr(value)
    return f"<{type(value).__name__}>"


def _check_name(value: object, what: str) -> str:
    if not isinstance(value, str) or not value or len(value) > MAX_NAME_CHARS:
        raise DecodeError(f"{what} must be a non-empty string of at most {MAX_NAME_CHARS}")
    return value


def _check_id(value: object, what: str, optional: bool = False) -> bytes | None:
    if value is None and optional:
        return None
    if not isinstance(value, bytes) or not 1 <= len(value) <= MAX_ID_BYTES:
        raise DecodeError(f"{what} must be 1..{MAX_ID_BYTES} bytes")
    return value


def _check_uint(value: object, what: str, limit: int) -> int:
    if type(value) is not int or not 0 <= value <= limit:
        raise DecodeError(f"{what} must be an integer in 0..{limit}")
    return value


def _check_ts(value: object) -> Timestamp:
    if not isinstance(value, list | tuple) or len(value) != 3:
        raise DecodeError("ts must be [physical_ms, logical, replica]")
    phys = _check_uint(value[0], "ts.physical", 2**63 - 1)
    logical = _check_uint(value[1], "ts.logical", 2**32 - 1)
    replica = _check_name(value[2], "ts.replica")
    return Timestamp(phys, logical, replica)


def _valid_common(inst: Envelope) -> bool:
    """The usual envelope -- exact builtin types, every field in range -- passes in one
    expression (:func:`vsm_phoenix.protocol._fill_pure.fields_ok`); ``False`` sends the
    rest to the field-by-field checks (which give the error message, and accept what
    they accept: subclasses of str, bytes, list)."""
    return fields_ok(inst.message_id, inst.type, inst.sender, inst.recipient, inst.topic,
                     inst.correlation_id, inst.timestamp, inst.hop_limit,
                     inst.causal_context, inst.payload)


def _check_fields(inst: Envelope) -> None:
    """The field-by-field checks (``InvalidArgument`` naming the first bad field)."""
    try:
        _check_id(inst.message_id, "message_id")
        _check_name(inst.type, "type")
        _check_name(inst.sender, "sender")
        if (inst.recipient is None) == (inst.topic is None):
            raise DecodeError("exactly one of recipient and topic must be set")
        if inst.recipient is not None:
            _check_name(inst.recipient, "recipient")
        if inst.topic is not None:
            _check_name(inst.topic, "topic")
        _check_id(inst.correlation_id, "correlation_id", optional=True)
        _check_ts(inst.timestamp)
        _check_uint(inst.hop_limit, "hop_limit", 255)
        if inst.causal_context is not None and not isinstance(inst.causal_context, bytes):
            raise DecodeError("causal_context must be bytes or None")
        if not isinstance(inst.payload, bytes):
            raise DecodeError("payload must be bytes")
    except DecodeError as exc:
        raise InvalidArgument(str(exc)) from None


def _ts_converter(value: Any) -> Any:
    # Accept any (physical_ms, logical, replica) triple; store a crdt Timestamp.
    if type(value) is Timestamp:
        return value
    if isinstance(value, tuple | list) and len(value) == 3:
        return Timestamp(value[0], value[1], value[2])
    return value


@attrs.frozen(kw_only=True, init=False)
class Envelope:
    """One protocol message (see the module docstring for the wire layout).

    ``payload`` is always the *uncompressed* payload; compression is a property of the
    encoding, chosen in :meth:`wire_parts` and undone in :meth:`from_wire_parts`.
    Construction validates every field and raises :class:`InvalidArgument` on misuse;
    ``timestamp`` may be any ``(physical_ms, logical, replica)`` triple and is stored
    as a :class:`~vsm_phoenix.crdt.Timestamp`.
    """

    message_id: bytes
    type: str
    sender: str
    recipient: str | None = None
    topic: str | None = None
    correlation_id: bytes | None = None
    timestamp: Timestamp
    hop_limit: int = 8
    causal_context: bytes | None = None
    payload: bytes = b""

    def __init__(
        self,
        *,
        message_id: bytes,
        type: str,
        sender: str,
        recipient: str | None = None,
        topic: str | None = None,
        correlation_id: bytes | None = None,
        timestamp: Any,
        hop_limit: int = 8,
        causal_context: bytes | None = None,
        payload: bytes = b"",
    ) -> None:
        # The usual envelope (exact builtin types, every field in range) is checked and
        # stored by one kernel call (:mod:`vsm_phoenix.protocol._fill`); anything else
        # takes the converter and the field-by-field checks, which name what is wrong.
        if _fill.envelope_init(_LAYOUT, self, message_id, type, sender, recipient, topic,
                               correlation_id, timestamp, hop_limit, causal_context,
                               payload):
            return
        values = (message_id, type, sender, recipient, topic, correlation_id,
                  _ts_converter(timestamp), hop_limit, causal_context, payload)
        for setter, value in zip(_SETTERS, values, strict=True):
            setter(self, value)
        if not _valid_common(self):
            _check_fields(self)

    # -- the two halves a secure channel seals -------------------------------------
    def wire_parts(
        self,
        *,
        compress_threshold: int = DEFAULT_COMPRESS_THRESHOLD,
        prefer_zstd: bool = True,
    ) -> tuple[dict[str, Any], bytes]:
        """Return ``(header, wire_payload)``; the payload compressed when it is at least
        ``compress_threshold`` bytes and compression actually shrinks it."""
        method = COMPRESS_NONE
        body = self.payload
        if len(body) >= compress_threshold:
            if prefer_zstd and _zstd is not None:
                packed = _zstd.ZstdCompressor(level=3).compress(body)
                candidate = COMPRESS_ZSTD
            else:
                packed = zlib.compress(body, 6)
                candidate = COMPRESS_ZLIB
            if len(packed) < len(body):
                method, body = candidate, packed
        header: dict[str, Any] = {
            "v": ENVELOPE_VERSION,
            "id": self.message_id,
            "t": self.type,
            "s": self.sender,
            "c": self.correlation_id,
            "ts": list(self.timestamp),
            "h": self.hop_limit,
            "cc": self.causal_context,
            "z": method,
            "n": len(self.payload),
        }
        if self.recipient is not None:
            header["r"] = self.recipient
        else:
            header["tp"] = self.topic
        return header, body

    @classmethod
    def from_wire_parts(
        cls,
        header: Mapping[str, Any],
        wire_payload: bytes,
        *,
        max_payload: int = DEFAULT_MAX_PAYLOAD,
    ) -> Envelope:
        """Rebuild an envelope from a header map and wire payload (inverse of
        :meth:`wire_parts`). Raises :class:`DecodeError` on anything malformed."""
        if not isinstance(header, Mapping):
            raise DecodeError("header must be a map")
        keys = set(header.keys())
        if not keys <= _HEADER_KEYS:
            unknown = sorted(_describe(k) for k in keys - _HEADER_KEYS)
            raise DecodeError(f"unknown header keys {unknown[:8]}")
        required = _HEADER_KEYS - {"r", "tp"}
        if not required <= keys:
            raise DecodeError(f"missing header keys {sorted(required - keys)}")
        if ("r" in keys) == ("tp" in keys):
            raise DecodeError("exactly one of r and tp must be present")
        if header["v"] != ENVELOPE_VERSION or type(header["v"]) is not int:
            raise DecodeError(f"unsupported envelope version {_describe(header['v'])}")
        if not isinstance(wire_payload, bytes):
            raise DecodeError("payload must be bytes")
        size = _check_uint(header["n"], "n", max_payload)
        method = _check_uint(header["z"], "z", 2)
        cc = header["cc"]
        if cc is not None and not isinstance(cc, bytes):
            raise DecodeError("cc must be bytes or null")
        recipient = _check_name(header["r"], "r") if "r" in keys else None
        topic = _check_name(header["tp"], "tp") if "tp" in keys else None
        message_id = _check_id(header["id"], "id")
        assert message_id is not None
        msg_type = _check_name(header["t"], "t")
        sender = _check_name(header["s"], "s")
        correlation_id = _check_id(header["c"], "c", optional=True)
        timestamp = _check_ts(header["ts"])
        hop_limit = _check_uint(header["h"], "h", 255)
        payload = _decompress(method, wire_payload, size)
        return cls(
            message_id=message_id,
            type=msg_type,
            sender=sender,
            recipient=recipient,
            topic=topic,
            correlation_id=correlation_id,
            timestamp=timestamp,
            hop_limit=hop_limit,
            causal_context=cc,
            payload=payload,
        )

    # -- the plain (unsealed) frame --------------------------------------------------
    def to_bytes(
        self,
        *,
        compress_threshold: int = DEFAULT_COMPRESS_THRESHOLD,
        prefer_zstd: bool = True,
    ) -> bytes:
        """Canonical CBOR of ``[header, wire_payload]``."""
        header, body = self.wire_parts(
            compress_threshold=compress_threshold, prefer_zstd=prefer_zstd
        )
        return encode_cbor([header, body])

    @classmethod
    def from_bytes(
        cls,
        data: bytes,
        *,
        max_message: int = DEFAULT_MAX_MESSAGE,
        max_payload: int = DEFAULT_MAX_PAYLOAD,
    ) -> Envelope:
        """Decode a frame produced by :meth:`to_bytes`; :class:`DecodeError` otherwise."""
        if not isinstance(data, bytes | bytearray | memoryview):
            raise DecodeError(f"expected bytes, got {type(data).__name__}")
        if len(data) > max_message:
            raise DecodeError(f"frame of {len(data)} bytes exceeds {max_message}")
        frame = decode_cbor(bytes(data))
        if not isinstance(frame, list) or len(frame) != 2:
            raise DecodeError("frame must be [header, payload]")
        header, body = frame
        if not isinstance(header, dict):
            raise DecodeError("header must be a map")
        return cls.from_wire_parts(header, body, max_payload=max_payload)

    def reply(self, **changes: Any) -> dict[str, Any]:
        """Routing fields for an answer: to the sender, correlated with this message."""
        return {"recipient": self.sender, "correlation_id": self.message_id, **changes}


_new = object.__new__
_FIELDS: Final = tuple(f.name for f in attrs.fields(Envelope))
#: The slots of an envelope in field order, for the fill kernels.
_LAYOUT: Final = _fill.Layout(Envelope, _FIELDS)
#: The slots' own setters, in field order (a frozen class's ``__setattr__`` refuses).
_SETTERS: Final[tuple[Callable[[Envelope, Any], None], ...]] = tuple(
    Envelope.__dict__[name].__set__ for name in _FIELDS)


def _make(
    message_id: bytes,
    msg_type: str,
    sender: str,
    recipient: str | None,
    topic: str | None,
    correlation_id: bytes | None,
    timestamp: Any,
    hop_limit: int,
    causal_context: bytes | None,
    payload: bytes,
) -> Envelope:
    """``Envelope(...)`` with the fields given in field order: the same checks and
    errors, without the keyword call (for hot producers such as
    :class:`~vsm_phoenix.protocol.kit.Messenger`)."""
    env: Envelope = _new(Envelope)
    if _fill.envelope_init(_LAYOUT, env, message_id, msg_type, sender, recipient, topic,
                           correlation_id, timestamp, hop_limit, causal_context, payload):
        return env
    return Envelope(message_id=message_id, type=msg_type, sender=sender, recipient=recipient,
                    topic=topic, correlation_id=correlation_id, timestamp=timestamp,
                    hop_limit=hop_limit, causal_context=causal_context, payload=payload)


def _assemble(
    message_id: bytes,
    msg_type: str,
    sender: str,
    recipient: str | None,
    topic: str | None,
    correlation_id: bytes | None,
    timestamp: Timestamp,
    hop_limit: int,
    causal_context: bytes | None,
    payload: bytes,
) -> Envelope:
    """An envelope from fields a decoder has *already* checked one by one (exact types,
    ranges, exactly one of recipient and topic): what the constructor's validation would
    find, without running it again. Only for such decoders; everyone else calls
    ``Envelope(...)``."""
    env: Envelope = _fill.build(_LAYOUT, (message_id, msg_type, sender, recipient, topic,
                                          correlation_id, timestamp, hop_limit,
                                          causal_context, payload))
    return env


def _assemble_columns(n: int, columns: Sequence[Iterable[Any]]) -> list[Envelope]:
    """``n`` envelopes from ten columns of fields in field order (``message_id`` ..
    ``payload``), each holding ``n`` values that a decoder has already checked, as
    :func:`_assemble` requires (:mod:`vsm_phoenix.protocol.envelope_batch`)."""
    return _fill.build_many(_LAYOUT, n, columns)


def _decompress(method: int, body: bytes, size: int) -> bytes:
    """Undo compression producing exactly ``size`` bytes, never more than ``size + 1``."""
    if method == COMPRESS_NONE:
        out = body
    elif method == COMPRESS_ZLIB:
        try:
            d = zlib.decompressobj()
            out = d.decompress(body, size + 1)
            if not d.eof or d.unconsumed_tail or d.unused_data:
                raise DecodeError("zlib stream truncated, oversized or with trailing data")
        except zlib.error as exc:
            raise DecodeError(f"bad zlib stream: {exc}") from None
    elif method == COMPRESS_ZSTD:
        if _zstd is None:
            raise DecodeError("zstd-compressed payload but zstandard is not installed")
        # One frame that declares its size (our encoder always writes it): the output
        # buffer is then exactly ``size`` bytes, allocated before anything is produced,
        # and anything after the frame (garbage, a second frame) is refused.
        try:
            declared = _zstd.frame_content_size(body)
        except Exception:  # zstandard.ZstdError: not a frame header
            raise DecodeError("bad zstd frame header") from None
        if declared != size:  # -1: size not declared
            raise DecodeError("zstd frame must declare its content size, equal to n")
        try:
            out = _zstd.ZstdDecompressor().decompress(
                body, max_output_size=size + 1, read_across_frames=False,
                allow_extra_data=False,
            )
        except Exception as exc:  # zstandard.ZstdError and friends
            raise DecodeError(f"bad zstd stream: {exc}") from None
    else:  # pragma: no cover - excluded by _check_uint
        raise DecodeError(f"unknown compression {method}")
    if len(out) != size:
        raise DecodeError(f"payload is {len(out)} bytes, header says {size}")
    return out
