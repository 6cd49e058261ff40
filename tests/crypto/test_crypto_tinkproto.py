"""The hand-written protobuf codec for Tink's AesGcmKey and HmacKey."""

from __future__ import annotations

import base64
import contextlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vsm_phoenix.crypto._tinkproto import (
    HASH_SHA256,
    decode_aes_gcm_key,
    decode_hmac_key,
    encode_aes_gcm_key,
    encode_hmac_key,
)
from vsm_phoenix.errors import DecodeError

# Golden values written by the tink package (1.16): AesGcmKey and HmacKey(SHA256, 32).
TINK_AES = base64.b64decode("GiBhuIzwOGEN3qX7FYaEBOkUXe7hiKJdrak00VcUYY5k6Q==")
TINK_HMAC = base64.b64decode("EgQIAxAgGiCFK8UCntDMQZkQc/s1+iBcsaruUje/lppNAyeB37j2lg==")


def test_golden_vectors_decode_and_reencode_identically() -> None:
    key = decode_aes_gcm_key(TINK_AES)
    assert len(key) == 32 and encode_aes_gcm_key(key) == TINK_AES
    hkey, hash_type, tag_size = decode_hmac_key(TINK_HMAC)
    assert (len(hkey), hash_type, tag_size) == (32, HASH_SHA256, 32)
    assert encode_hmac_key(hkey, tag_size) == TINK_HMAC


def test_explicit_zero_version_is_accepted() -> None:
    assert decode_aes_gcm_key(b"\x08\x00" + encode_aes_gcm_key(b"k" * 32)) == b"k" * 32


@settings(max_examples=100, deadline=None)
@given(st.binary(max_size=300), st.integers(0, 2**32 - 1), st.integers(1, 2**32 - 1))
def test_round_trips(key: bytes, tag_size: int, hash_type: int) -> None:
    assert decode_aes_gcm_key(encode_aes_gcm_key(key)) == key
    assert decode_hmac_key(encode_hmac_key(key, tag_size, hash_type)) == (key, hash_type, tag_size)


@pytest.mark.parametrize(
    "buf",
    [
        b"\x08\x01" + encode_aes_gcm_key(bytes(32)),  # version 1
        b"\x1a\x21" + bytes(32),  # length past the end
        b"\x1a",  # truncated length
        b"\x1a\x80",  # truncated varint
        b"\x1a\x80\x00",  # non-minimal varint
        b"\x1a" + b"\xff" * 11,  # over-long varint
        encode_aes_gcm_key(bytes(32)) * 2,  # repeated field
        b"\x12\x00",  # unknown field 2 for AesGcmKey
        b"\x18\x01",  # key_value with varint wire type
        b"\x0d\x00\x00\x00\x00",  # fixed32 wire type
        b"\x08\x80\x80\x80\x80\x10",  # version 2**32 (exceeds uint32)
    ],
)
def test_malformed_aes_gcm_key(buf: bytes) -> None:
    with pytest.raises(DecodeError):
        decode_aes_gcm_key(buf)


@pytest.mark.parametrize(
    "buf",
    [
        b"\x12\x02\x08",  # params truncated inside
        b"\x12\x02\x18\x01",  # unknown params field
        b"\x12\x06\x10\x80\x80\x80\x80\x10",  # tag_size exceeds uint32
        b"\x12\x02\x08\x03\x12\x02\x08\x03",  # params repeated
        b"\x22\x00",  # unknown field 4
    ],
)
def test_malformed_hmac_key(buf: bytes) -> None:
    with pytest.raises(DecodeError):
        decode_hmac_key(buf)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=80))
def test_hostile_bytes_only_raise_decode_error(buf: bytes) -> None:
    for decode in (decode_aes_gcm_key, decode_hmac_key):
        with contextlib.suppress(DecodeError):
            decode(buf)


def test_non_bytes_is_decode_error() -> None:
    with pytest.raises(DecodeError):
        decode_aes_gcm_key("text")  # type: ignore[arg-type]
