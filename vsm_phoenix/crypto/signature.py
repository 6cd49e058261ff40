"""Ed25519 signatures (RFC 8032) for capability proofs and evidence records.

Thin, typed wrappers over ``cryptography``'s Ed25519 that speak the project's errors:
a bad signature -> :class:`~vsm_phoenix.errors.AuthenticationError`; key bytes of the
wrong shape -> :class:`~vsm_phoenix.errors.DecodeError`. Keys serialize as the raw
32-byte RFC 8032 encodings.
"""

from __future__ import annotations

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)

from vsm_phoenix.errors import AuthenticationError, DecodeError, TypeMismatch

__all__ = ["SIGNATURE_SIZE", "SigningKey", "VerifyKey"]

SIGNATURE_SIZE = 64
_RAW = serialization.Encoding.Raw


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
