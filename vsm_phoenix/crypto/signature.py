"""Ed25519 signatures (RFC 8032) for capability proofs and evidence records.

Thin, typed wrappers over ``cryptography``'s Ed25519 that speak the project's errors:
a bad signature -> :class:`~vsm_phoenix.errors.AuthenticationError`; key bytes of the
wrong shape -> :class:`~vsm_phoenix.errors.DecodeError`. Keys serialize as the raw
32-byte RFC 8032 encodings.

Public keys are checked before use. OpenSSL accepts any point encoding, including the
eight points of small order: under the identity point ``01 00…00`` the signature
``R = identity, S = 0`` verifies for *every* message, so such a key in a roster would
let anyone speak for its owner. :meth:`VerifyKey.from_bytes` refuses, with
``DecodeError``, non-canonical encodings (``y >= p``) and every encoding whose ``y``
belongs to a small-order point, with either sign bit (libsodium's blocklist, the same
rule as ``crypto_sign_verify_detached``'s key check).
"""

from __future__ import annotations

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)

from vsm_phoenix.errors import AuthenticationError, DecodeError, TypeMismatch

__all__ = ["SIGNATURE_SIZE", "SigningKey", "VerifyKey", "check_public_key_bytes"]

SIGNATURE_SIZE = 64
_RAW = serialization.Encoding.Raw
_P = 2**255 - 19
#: ``y`` coordinates of the points of order 1, 2, 4 and 8 (the sign bit selects ``x``).
_SMALL_ORDER_Y = frozenset(
    {
        0,  # order 4 (both x)
        1,  # the identity, order 1 (x = 0: the sign-bit variant is non-canonical)
        _P - 1,  # order 2
        int.from_bytes(
            bytes.fromhex("26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05"),
            "little",
        ),  # order 8
        int.from_bytes(
            bytes.fromhex("c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a"),
            "little",
        ),  # order 8
    }
)


def check_public_key_bytes(data: bytes) -> None:
    """Refuse (``DecodeError``) a non-canonical or small-order Ed25519 public key."""
    y = int.from_bytes(data, "little") & ((1 << 255) - 1)
    if y >= _P:
        raise DecodeError("Ed25519 public key is not canonically encoded")
    if y in _SMALL_ORDER_Y:
        raise DecodeError("Ed25519 public key is a point of small order")


def _as_bytes(data: object, what: str) -> bytes:
    if isinstance(data, bytes):
        return data
    if isinstance(data, bytearray | memoryview):
        return bytes(data)
    raise TypeMismatch(f"{what} must be bytes, not {type(data).__name__}")


class VerifyKey:
    """An Ed25519 public key."""

    __slots__ = ("_key",)

    def __init__(self, key: Ed25519PublicKey) -> None:
        self._key = key

    @classmethod
    def from_bytes(cls, data: bytes) -> VerifyKey:
        """Parse a raw 32-byte public key (``DecodeError`` otherwise)."""
        data = _as_bytes(data, "public key")
        if len(data) != 32:
            raise DecodeError("Ed25519 public key must be 32 bytes")
        check_public_key_bytes(data)
        try:
            return cls(Ed25519PublicKey.from_public_bytes(data))
        except ValueError as exc:
            raise DecodeError(f"Ed25519 public key: {exc}") from None

    def to_bytes(self) -> bytes:
        return self._key.public_bytes(_RAW, serialization.PublicFormat.Raw)

    def verify(self, signature: bytes, data: bytes) -> None:
        """Return silently for a valid signature, else ``AuthenticationError``."""
        signature = _as_bytes(signature, "signature")
        data = _as_bytes(data, "data")
        if len(signature) != SIGNATURE_SIZE:
            raise AuthenticationError("signature has the wrong length")
        try:
            self._key.verify(signature, data)
        except InvalidSignature:
            raise AuthenticationError("signature does not verify") from None

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, VerifyKey):
            return NotImplemented
        return self.to_bytes() == other.to_bytes()

    def __hash__(self) -> int:
        return hash(self.to_bytes())

    def __repr__(self) -> str:
        return f"VerifyKey({self.to_bytes().hex()})"


class SigningKey:
    """An Ed25519 private key. ``repr`` never shows the secret."""

    __slots__ = ("_key",)

    def __init__(self, key: Ed25519PrivateKey) -> None:
        self._key = key

    @classmethod
    def generate(cls) -> SigningKey:
        return cls(Ed25519PrivateKey.generate())

    @classmethod
    def from_bytes(cls, data: bytes) -> SigningKey:
        """Parse a raw 32-byte private seed (``DecodeError`` otherwise)."""
        data = _as_bytes(data, "private key")
        if len(data) != 32:
            raise DecodeError("Ed25519 private key must be 32 bytes")
        return cls(Ed25519PrivateKey.from_private_bytes(data))

    def to_bytes(self) -> bytes:
        """The raw 32-byte seed (secret!)."""
        return self._key.private_bytes(
            _RAW, serialization.PrivateFormat.Raw, serialization.NoEncryption()
        )

    @property
    def verify_key(self) -> VerifyKey:
        return VerifyKey(self._key.public_key())

    def sign(self, data: bytes) -> bytes:
        """The 64-byte signature of ``data``."""
        return self._key.sign(_as_bytes(data, "data"))

    def __repr__(self) -> str:
        return f"SigningKey(public={self.verify_key.to_bytes().hex()})"
