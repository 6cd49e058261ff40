"""Hand-written protobuf encoding for the two Tink key messages we exchange.

Tink stores a key's material as a serialized protobuf inside ``keyData.value``. We need
exactly two messages (``proto/aes_gcm.proto`` and ``proto/hmac.proto`` in Tink)::

    message AesGcmKey { uint32 version = 1; bytes key_value = 3; }
    message HmacParams { HashType hash = 1; uint32 tag_size = 2; }
    message HmacKey { uint32 version = 1; HmacParams params = 2; bytes key_value = 3; }

(``HashType.SHA256 == 3``). This is serialization, not cryptography. The decoder is
deliberately stricter than protobuf: unknown fields, repeated fields, wrong wire types,
over-long varints, ``version != 0`` or a truncated message all raise
:class:`~vsm_phoenix.errors.DecodeError`. The encoder writes exactly what Tink writes
(fields in number order, ``version`` omitted because proto3 omits zero).
"""

from __future__ import annotations

from vsm_phoenix.errors import DecodeError

__all__ = [
    "HASH_SHA256",
    "decode_aes_gcm_key",
    "decode_hmac_key",
    "encode_aes_gcm_key",
    "encode_hmac_key",
]

HASH_SHA256 = 3
_VARINT = 0
_LEN = 2
_MAX_U32 = 2**32 - 1


def _varint(value: int) -> bytes:
    if value < 0:
        raise ValueError("varint must be non-negative")
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _read_varint(buf: bytes, pos: int) -> tuple[int, int]:
    result = 0
    for shift in range(0, 70, 7):
        if pos >= len(buf):
            raise DecodeError("protobuf: truncated varint")
        byte = buf[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            if byte == 0 and shift:
                raise DecodeError("protobuf: non-minimal varint")
            if result >= 2**64:
                raise DecodeError("protobuf: varint exceeds 64 bits")
            return result, pos
    raise DecodeError("protobuf: varint longer than 10 bytes")


def _fields(buf: bytes, allowed: dict[int, int]) -> dict[int, int | bytes]:
    """Parse ``buf`` into ``{field number: value}``; ``allowed`` maps each permitted
    field number to its wire type."""
    if not isinstance(buf, bytes):
        raise DecodeError(f"protobuf: expected bytes, got {type(buf).__name__}")
    out: dict[int, int | bytes] = {}
    pos = 0
    while pos < len(buf):
        tag, pos = _read_varint(buf, pos)
        number, wire = tag >> 3, tag & 7
        if number not in allowed:
            raise DecodeError(f"protobuf: unexpected field {number}")
        if wire != allowed[number]:
            raise DecodeError(f"protobuf: field {number} has wire type {wire}")
        if number in out:
            raise DecodeError(f"protobuf: field {number} repeated")
        if wire == _VARINT:
            out[number], pos = _read_varint(buf, pos)
        else:
            length, pos = _read_varint(buf, pos)
            if length > len(buf) - pos:
                raise DecodeError("protobuf: truncated length-delimited field")
            out[number] = buf[pos : pos + length]
            pos += length
    return out


def _u32(value: int | bytes, what: str) -> int:
    assert isinstance(value, int)
    if value > _MAX_U32:
        raise DecodeError(f"protobuf: {what} exceeds uint32")
    return value


def _check_version(fields: dict[int, int | bytes]) -> None:
    if _u32(fields.get(1, 0), "version") != 0:
        raise DecodeError("Tink key: unsupported version")


def encode_aes_gcm_key(key_value: bytes) -> bytes:
    """Serialize ``AesGcmKey{version=0, key_value}``."""
    return bytes([(3 << 3) | _LEN]) + _varint(len(key_value)) + key_value


def decode_aes_gcm_key(buf: bytes) -> bytes:
    """Parse an ``AesGcmKey`` and return its key bytes (not yet length-checked)."""
    fields = _fields(buf, {1: _VARINT, 3: _LEN})
    _check_version(fields)
    key = fields.get(3, b"")
    assert isinstance(key, bytes)
    return key


def encode_hmac_key(key_value: bytes, tag_size: int, hash_type: int = HASH_SHA256) -> bytes:
    """Serialize ``HmacKey{version=0, params={hash, tag_size}, key_value}``."""
    params = b""
    if hash_type:
        params += bytes([(1 << 3) | _VARINT]) + _varint(hash_type)
    if tag_size:
        params += bytes([(2 << 3) | _VARINT]) + _varint(tag_size)
    return (
        bytes([(2 << 3) | _LEN])
        + _varint(len(params))
        + params
        + bytes([(3 << 3) | _LEN])
        + _varint(len(key_value))
        + key_value
    )


def decode_hmac_key(buf: bytes) -> tuple[bytes, int, int]:
    """Parse an ``HmacKey``; return ``(key_value, hash_type, tag_size)`` (not yet
    range-checked)."""
    fields = _fields(buf, {1: _VARINT, 2: _LEN, 3: _LEN})
    _check_version(fields)
    raw_params = fields.get(2, b"")
    assert isinstance(raw_params, bytes)
    params = _fields(raw_params, {1: _VARINT, 2: _VARINT})
    hash_type = _u32(params.get(1, 0), "hash")
    tag_size = _u32(params.get(2, 0), "tag_size")
    key = fields.get(3, b"")
    assert isinstance(key, bytes)
    return key, hash_type, tag_size
