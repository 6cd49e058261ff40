"""Ed25519 signing keys and verify keys."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vsm_phoenix.crypto import SigningKey, VerifyKey
from vsm_phoenix.errors import AuthenticationError, DecodeError, TypeMismatch

SK = SigningKey.generate()


def test_rfc8032_test_vector_1() -> None:
    sk = SigningKey.from_bytes(
        bytes.fromhex("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60")
    )
    assert sk.verify_key.to_bytes() == bytes.fromhex(
        "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a"
    )
    sig = sk.sign(b"")
    assert sig.hex().startswith("e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065")
    sk.verify_key.verify(sig, b"")


@settings(max_examples=25, deadline=None)
@given(st.binary(max_size=40))
def test_sign_verify_and_bit_flips(data: bytes) -> None:
    sig = SK.sign(data)
    vk = VerifyKey.from_bytes(SK.verify_key.to_bytes())
    assert vk == SK.verify_key and hash(vk) == hash(SK.verify_key)
    vk.verify(sig, data)
    for bit in range(len(sig) * 8):
        bad = bytearray(sig)
        bad[bit // 8] ^= 1 << (bit % 8)
        with pytest.raises(AuthenticationError):
            vk.verify(bytes(bad), data)
    with pytest.raises(AuthenticationError):
        vk.verify(sig, data + b"x")
    with pytest.raises(AuthenticationError):
        vk.verify(sig[:-1], data)


def test_round_trip_and_repr() -> None:
    again = SigningKey.from_bytes(SK.to_bytes())
    assert again.verify_key == SK.verify_key
    assert SK.to_bytes().hex() not in repr(SK)
    assert SigningKey.generate().verify_key != SK.verify_key


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=40))
def test_hostile_key_bytes_only_raise_decode_error(data: bytes) -> None:
    for parse in (VerifyKey.from_bytes, SigningKey.from_bytes):
        with contextlib.suppress(DecodeError):
            parse(data)


def test_types() -> None:
    with pytest.raises(TypeMismatch):
        VerifyKey.from_bytes("k" * 32)  # type: ignore[arg-type]
    with pytest.raises(TypeMismatch):
        SK.sign("text")  # type: ignore[arg-type]
