"""Keyset management and its two formats (Tink JSON, encrypted blob)."""

from __future__ import annotations

import base64
import contextlib
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vsm_phoenix.crypto import KeyKind, Keyset, KeysetAead, KeyStatus
from vsm_phoenix.crypto._tinkproto import encode_aes_gcm_key, encode_hmac_key
from vsm_phoenix.crypto.keyset import AES_GCM_TYPE_URL, HMAC_TYPE_URL, Key
from vsm_phoenix.errors import (
    AuthenticationError,
    DecodeError,
    InvalidArgument,
    KeyNotFoundError,
    TypeMismatch,
)

MASTER = bytes(range(32))


def _three_state_keyset() -> Keyset:
    ks = Keyset.generate(KeyKind.AES256_GCM, expires_at=5000.0)
    a = ks.primary_id
    b = ks.rotate(now=0.0, expires_at=9000.5)
    ks.rotate(now=0.0)
    ks.disable(a)
    ks.destroy(b)
    return ks


def test_generate_and_rotate() -> None:
    ks = Keyset.generate(KeyKind.AES256_GCM)
    first = ks.primary
    assert first.status is KeyStatus.ENABLED and first.material and len(first.material) == 32
    assert first.prefix == b"\x01" + first.key_id.to_bytes(4, "big")
    second = ks.rotate(now=0.0)
    assert ks.primary_id == second and [k.key_id for k in ks.keys] == [first.key_id, second]
    ks.set_primary(first.key_id)
    assert ks.primary_id == first.key_id
    assert "material" not in repr(ks.primary) and repr(ks).startswith("Keyset(")


def test_state_rules() -> None:
    ks = Keyset.generate(KeyKind.HMAC_SHA256)
    a = ks.primary_id
    with pytest.raises(InvalidArgument):
        ks.disable(a)
    with pytest.raises(InvalidArgument):
        ks.destroy(a)
    b = ks.rotate(now=0.0)
    ks.disable(a)
    with pytest.raises(InvalidArgument):
        ks.set_primary(a)
    ks.destroy(a)
    ks.destroy(a)  # idempotent
    assert ks.key(a).material is None
    with pytest.raises(KeyNotFoundError):
        ks.key(12345)
    with pytest.raises(KeyNotFoundError):
        ks.disable(12345)
    with pytest.raises(InvalidArgument):
        ks.rotate(now=10.0, expires_at=10.0)
    assert ks.primary_id == b


def test_constructor_invariants() -> None:
    good = Key(7, KeyKind.AES256_GCM, KeyStatus.ENABLED, bytes(32))
    with pytest.raises(InvalidArgument):
        Keyset(KeyKind.AES256_GCM, [good, good], 7)
    with pytest.raises(InvalidArgument):
        Keyset(KeyKind.AES256_GCM, [good], 8)
    with pytest.raises(InvalidArgument):
        Keyset(KeyKind.HMAC_SHA256, [good], 7)
    with pytest.raises(InvalidArgument):
        Keyset(KeyKind.AES256_GCM, [Key(7, KeyKind.AES256_GCM, KeyStatus.ENABLED, bytes(16))], 7)
    with pytest.raises(InvalidArgument):
        Keyset(KeyKind.AES256_GCM, [Key(7, KeyKind.AES256_GCM, KeyStatus.DESTROYED, b"")], 7)
    with pytest.raises(TypeMismatch):
        Keyset("AES", [good], 7)  # type: ignore[arg-type]
    with pytest.raises(InvalidArgument):
        Keyset.generate(KeyKind.HMAC_SHA256, tag_size=8)


def test_encrypted_blob_round_trip_keeps_everything() -> None:
    ks = _three_state_keyset()
    blob = ks.to_encrypted(MASTER, b"node-1")
    back = Keyset.from_encrypted(blob, MASTER, b"node-1")
    assert back.keys == ks.keys and back.primary_id == ks.primary_id
    assert back.kind is KeyKind.AES256_GCM
    with pytest.raises(AuthenticationError):
        Keyset.from_encrypted(blob, bytes(32), b"node-1")
    with pytest.raises(AuthenticationError):
        Keyset.from_encrypted(blob, MASTER, b"node-2")
    with pytest.raises(InvalidArgument):
        ks.to_encrypted(b"short")
    with pytest.raises(TypeMismatch):
        ks.to_encrypted("x" * 32)  # type: ignore[arg-type]


def test_encrypted_blob_bit_flips() -> None:
    blob = Keyset.generate(KeyKind.HMAC_SHA256).to_encrypted(MASTER)
    for bit in range(len(blob) * 8):
        bad = bytearray(blob)
        bad[bit // 8] ^= 1 << (bit % 8)
        expected = DecodeError if bit < 32 else AuthenticationError  # magic vs the rest
        with pytest.raises(expected):
            Keyset.from_encrypted(bytes(bad), MASTER)
    for n in range(4, len(blob)):
        with pytest.raises(AuthenticationError):
            Keyset.from_encrypted(blob[:n], MASTER)


def test_destroyed_material_is_gone_from_every_export() -> None:
    ks = Keyset.generate(KeyKind.AES256_GCM)
    old = ks.primary
    assert old.material is not None
    secret = old.material
    ks.rotate(now=0.0)
    ks.destroy(old.key_id)
    text = ks.to_tink_json()
    assert base64.b64encode(encode_aes_gcm_key(secret)).decode() not in text
    assert str(old.key_id) not in text
    restored = Keyset.from_encrypted(ks.to_encrypted(MASTER), MASTER)
    assert restored.key(old.key_id).material is None
    assert all(k.material != secret for k in restored.keys)
    assert old.prefix not in ks._openers


@pytest.mark.parametrize("kind", list(KeyKind))
def test_tink_json_round_trip(kind: KeyKind) -> None:
    ks = Keyset.generate(kind, tag_size=16)
    a = ks.primary_id
    ks.rotate(now=0.0)
    ks.disable(a)
    back = Keyset.from_tink_json(ks.to_tink_json())
    assert back.keys == ks.keys and back.primary_id == ks.primary_id
    doc = json.loads(ks.to_tink_json())
    assert doc["key"][0]["keyData"]["typeUrl"] == kind.type_url
    assert doc["key"][0]["outputPrefixType"] == "TINK"


def _doc(entries: list[dict[str, object]], primary: int = 1) -> str:
    return json.dumps({"primaryKeyId": primary, "key": entries})


def _entry(
    value: bytes,
    *,
    url: str = AES_GCM_TYPE_URL,
    key_id: object = 1,
    status: str = "ENABLED",
    prefix: str = "TINK",
) -> dict[str, object]:
    return {
        "keyData": {
            "typeUrl": url,
            "value": base64.b64encode(value).decode(),
            "keyMaterialType": "SYMMETRIC",
        },
        "status": status,
        "keyId": key_id,
        "outputPrefixType": prefix,
    }


AES_VALUE = encode_aes_gcm_key(bytes(32))


@pytest.mark.parametrize(
    "text",
    [
        "",
        "[]",
        "{",
        '{"primaryKeyId": 1}',
        _doc([]),
        _doc([_entry(AES_VALUE)], primary=2),
        _doc([_entry(AES_VALUE)], primary=-1),
        _doc([_entry(AES_VALUE), _entry(AES_VALUE)]),
        _doc([_entry(AES_VALUE, prefix="RAW")]),
        _doc([_entry(AES_VALUE, prefix="LEGACY")]),
        _doc([_entry(AES_VALUE, status="DESTROYED")]),
        _doc([_entry(AES_VALUE, status="UNKNOWN")]),
        _doc([_entry(AES_VALUE, status="DISABLED")]),
        _doc([_entry(AES_VALUE, key_id="1")]),
        _doc([_entry(AES_VALUE, key_id=2**32)]),
        _doc([_entry(AES_VALUE, key_id=True)]),
        _doc([_entry(encode_aes_gcm_key(bytes(16)))]),
        _doc([_entry(AES_VALUE, url="type.googleapis.com/google.crypto.tink.AesEaxKey")]),
        _doc([_entry(encode_hmac_key(bytes(32), 32, hash_type=4), url=HMAC_TYPE_URL)]),
        _doc([_entry(encode_hmac_key(bytes(32), 8), url=HMAC_TYPE_URL)]),
        _doc([_entry(encode_hmac_key(bytes(8), 32), url=HMAC_TYPE_URL)]),
        _doc(
            [_entry(AES_VALUE), _entry(encode_hmac_key(bytes(32), 32), url=HMAC_TYPE_URL, key_id=2)]
        ),
        _doc([_entry(AES_VALUE, url=HMAC_TYPE_URL)]),
        '{"primaryKeyId": 1, "primaryKeyId": 1, "key": []}',
        _doc(
            [
                {
                    "keyData": {"typeUrl": AES_GCM_TYPE_URL, "value": "!!"},
                    "status": "ENABLED",
                    "keyId": 1,
                    "outputPrefixType": "TINK",
                }
            ]
        ),
    ],
)
def test_malformed_tink_json_is_decode_error(text: str) -> None:
    with pytest.raises(DecodeError):
        Keyset.from_tink_json(text)


def test_minimal_valid_tink_json() -> None:
    ks = Keyset.from_tink_json(_doc([_entry(AES_VALUE)]))
    assert ks.primary.material == bytes(32)
    assert KeysetAead(ks).decrypt(KeysetAead(ks).encrypt(b"x")) == b"x"


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(
            st.sampled_from(
                [
                    "primaryKeyId",
                    "key",
                    "keyData",
                    "keyId",
                    "status",
                    "value",
                    "typeUrl",
                    "outputPrefixType",
                    "x",
                ]
            ),
            inner,
            max_size=5,
        )
    ),
    max_leaves=20,
)


@settings(max_examples=200, deadline=None)
@given(json_values)
def test_hostile_tink_json_only_raises_decode_error(doc: object) -> None:
    with contextlib.suppress(DecodeError):
        Keyset.from_tink_json(json.dumps(doc))


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=200))
def test_hostile_blob_only_raises_documented_errors(blob: bytes) -> None:
    with pytest.raises((DecodeError, AuthenticationError)):
        Keyset.from_encrypted(blob, MASTER)
    with pytest.raises((DecodeError, AuthenticationError)):
        Keyset.from_encrypted(b"VKS1" + blob, MASTER)


def test_authentic_but_malformed_blob_is_decode_error() -> None:
    import os

    import cbor2
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    for plain in [
        b"\xff",
        cbor2.dumps([2, "AES256_GCM", 1, []]),
        cbor2.dumps([1, "NOPE", 1, []]),
        cbor2.dumps([1, "AES256_GCM", 1, [[1, "ENABLED", bytes(32), None]]]),
        cbor2.dumps([1, "AES256_GCM", 1, [[1, "LOST", bytes(32), None, 0]]]),
        cbor2.dumps([1, "AES256_GCM", 2, [[1, "ENABLED", bytes(32), None, 0]]]),
        cbor2.dumps([1, "AES256_GCM", 1, [[1, "ENABLED", bytes(31), None, 0]]]),
        cbor2.dumps([1, "AES256_GCM", 1, [[1, "ENABLED", bytes(32), float("nan"), 0]]]),
    ]:
        nonce = os.urandom(12)
        blob = b"VKS1" + nonce + AESGCM(MASTER).encrypt(nonce, plain, b"VKS1")
        with pytest.raises(DecodeError):
            Keyset.from_encrypted(blob, MASTER)
