"""Authenticated encryption and message integrity.

AES-256-GCM sealing with Tink-compatible keysets (rotation, expiry), HMAC-SHA256, safe
nonce management, replay windows, Ed25519 signatures and the :class:`SecureChannel` the
protocol layer seals its envelopes with. Every primitive comes from ``cryptography``;
what this package adds is key management, wire formats and the order of checks.

Modules (one concept each):

* :mod:`~vsm_phoenix.crypto.keyset` -- :class:`Keyset`, :class:`Key`, rotation and
  expiry; Tink JSON and encrypted-at-rest formats.
* :mod:`~vsm_phoenix.crypto.aead` -- :class:`KeysetAead`: AES-256-GCM in Tink's wire
  format with a persisted per-key nonce budget (NIST SP 800-38D).
* :mod:`~vsm_phoenix.crypto.mac` -- :class:`KeysetMac`: HMAC-SHA256, Tink-compatible tags.
* :mod:`~vsm_phoenix.crypto.replay` -- :class:`ReplayWindow` (RFC 6479 bitmap) and the
  persisted per-sender :class:`ReplayGuard`.
* :mod:`~vsm_phoenix.crypto.signature` -- Ed25519 :class:`SigningKey` / :class:`VerifyKey`.
* :mod:`~vsm_phoenix.crypto.channel` -- :class:`SecureChannel`, sealed or MAC-only frames.
* :mod:`~vsm_phoenix.crypto.storage` -- the :class:`Storage` protocol, in memory and SQLite.

Errors: malformed -> ``DecodeError``; tampered, truncated or forged ->
``AuthenticationError``; unusable key id in a message -> :class:`UnknownKeyError` (both a
``KeyNotFoundError`` and an ``AuthenticationError``); expired key -> ``KeyExpiredError``;
replayed or stale -> ``ReplayError``; nonce budget exhausted -> ``CapacityError``.
"""

from __future__ import annotations

from vsm_phoenix.crypto.aead import (
    DEFAULT_SOFT_LIMIT,
    NIST_INVOCATION_LIMIT,
    KeysetAead,
)
from vsm_phoenix.crypto.channel import ChannelMode, SecureChannel
from vsm_phoenix.crypto.keyset import Key, KeyKind, Keyset, KeyStatus, UnknownKeyError
from vsm_phoenix.crypto.mac import KeysetMac
from vsm_phoenix.crypto.replay import DEFAULT_WINDOW, ReplayGuard, ReplayWindow
from vsm_phoenix.crypto.signature import SigningKey, VerifyKey
from vsm_phoenix.crypto.storage import MemoryStorage, SQLiteStorage, Storage
from vsm_phoenix.errors import (  # the errors this package raises
    AuthenticationError,
    CapacityError,
    DecodeError,
    InvalidArgument,
    KeyExpiredError,
    KeyNotFoundError,
    PermissionDenied,
    ReplayError,
    TypeMismatch,
    VsmPhoenixError,
)

__all__ = [
    "AuthenticationError",
    "CapacityError",
    "DecodeError",
    "InvalidArgument",
    "KeyExpiredError",
    "KeyNotFoundError",
    "PermissionDenied",
    "ReplayError",
    "TypeMismatch",
    "VsmPhoenixError",
    "DEFAULT_SOFT_LIMIT",
    "DEFAULT_WINDOW",
    "NIST_INVOCATION_LIMIT",
    "ChannelMode",
    "Key",
    "KeyKind",
    "KeyStatus",
    "Keyset",
    "KeysetAead",
    "KeysetMac",
    "MemoryStorage",
    "ReplayGuard",
    "ReplayWindow",
    "SQLiteStorage",
    "SecureChannel",
    "SigningKey",
    "Storage",
    "UnknownKeyError",
    "VerifyKey",
]
