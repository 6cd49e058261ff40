"""KeysetMac: HMAC-SHA256 tags with Tink prefixes."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vsm_phoenix.crypto import KeyKind, Keyset, KeysetMac, UnknownKeyError
from vsm_phoenix.errors import AuthenticationError, InvalidArgument, KeyExpiredError, TypeMismatch

KEYSET = Keyset.generate(KeyKind.HMAC_SHA256)
MAC = KeysetMac(KEYSET)


@settings(max_examples=50, deadline=None)
@given(st.binary(max_size=64))
def test_tag_verifies_and_every_bit_flip_fails(data: bytes) -> None:
    tag = MAC.compute(data)
    assert len(tag) == MAC.tag_size(KEYSET.primary_id) == 37
    MAC.verify(tag, data)
    for bit in range(len(tag) * 8):
        bad = bytearray(tag)
        bad[bit // 8] ^= 1 << (bit % 8)
        with pytest.raises(AuthenticationError):
            MAC.verify(bytes(bad), data)
    for bit in range(len(data) * 8):
        changed = bytearray(data)
        changed[bit // 8] ^= 1 << (bit % 8)
        with pytest.raises(AuthenticationError):
            MAC.verify(tag, bytes(changed))
    for n in range(len(tag)):
        with pytest.raises(AuthenticationError):
            MAC.verify(tag[:n], data)


def test_rotation_disable_and_expiry() -> None:
    now = [0.0]
    ks = Keyset.generate(KeyKind.HMAC_SHA256, expires_at=100.0, tag_size=16)
    mac = KeysetMac(ks, clock=lambda: now[0])
    old_id = ks.primary_id
    old = mac.compute(b"d")
    assert len(old) == 21
    ks.rotate(now=0.0)
    new = mac.compute(b"d")
    mac.verify(old, b"d")
    mac.verify(new, b"d")
    now[0] = 100.0
    with pytest.raises(KeyExpiredError):
        mac.verify(old, b"d")
    mac.verify(new, b"d")
    ks.disable(old_id)
    with pytest.raises(UnknownKeyError):
        mac.verify(old, b"d")


def test_validation() -> None:
    with pytest.raises(InvalidArgument):
        KeysetMac(Keyset.generate(KeyKind.AES256_GCM))
    with pytest.raises(TypeMismatch):
        KeysetMac(None)  # type: ignore[arg-type]
    with pytest.raises(TypeMismatch):
        MAC.verify("tag", b"")  # type: ignore[arg-type]


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=60), st.booleans(), st.binary(max_size=20))
def test_hostile_tags_only_raise_authentication_error(tag: bytes, keyed: bool, data: bytes) -> None:
    with pytest.raises(AuthenticationError):
        MAC.verify(KEYSET.primary.prefix + tag if keyed else tag, data)
