"""HMAC-SHA256 over a keyset, with Tink-compatible tags.

Tag layout (Tink's HMAC with the TINK output prefix)::

    0x01 || key_id (4 bytes, big-endian) || HMAC-SHA256(key, data)[:tag_size]

``verify`` finds the key by the prefix, recomputes the tag with ``cryptography``'s HMAC
and compares with :func:`hmac.compare_digest` (constant time). HMAC has no nonce, so no
usage budget applies.
"""

from __future__ import annotations

import hmac as _stdlib_hmac
import time
from collections.abc import Callable

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives import hmac as _hmac

from vsm_phoenix.crypto.keyset import TINK_PREFIX_SIZE, TINK_START_BYTE, Key, KeyKind, Keyset
from vsm_phoenix.errors import AuthenticationError, InvalidArgument, TypeMismatch

__all__ = ["KeysetMac"]


def _digest(key: Key, data: bytes) -> bytes:
    assert key.material is not None
    h = _hmac.HMAC(key.material, hashes.SHA256())
    h.update(data)
    return h.finalize()[: key.tag_size]


class KeysetMac:
    """Compute and verify tags with the keyset's HMAC-SHA256 keys. Thread-safe."""

    __slots__ = ("_clock", "keyset")

    def __init__(self, keyset: Keyset, *, clock: Callable[[], float] = time.time) -> None:
        if not isinstance(keyset, Keyset):
            raise TypeMismatch("keyset must be a Keyset")
        if keyset.kind is not KeyKind.HMAC_SHA256:
            raise InvalidArgument("KeysetMac needs an HMAC_SHA256 keyset")
        self.keyset = keyset
        self._clock = clock

    def compute(self, data: bytes) -> bytes:
        """``prefix || HMAC`` under the primary key."""
        key = self.keyset.primary_for_sealing(self._clock())
        return key.prefix + _digest(key, data)

    def verify(self, tag: bytes, data: bytes) -> None:
        """Return silently when ``tag`` is a valid tag of ``data`` under an enabled,
        unexpired key; otherwise ``AuthenticationError`` (``UnknownKeyError`` for an
        unusable key id) or ``KeyExpiredError``."""
        if not isinstance(tag, bytes | bytearray | memoryview):
            raise TypeMismatch("tag must be bytes")
        tag = bytes(tag)
        if len(tag) <= TINK_PREFIX_SIZE or tag[0] != TINK_START_BYTE:
            raise AuthenticationError("tag truncated or with an unknown output prefix")
        key = self.keyset.usable(int.from_bytes(tag[1:5], "big"), self._clock())
        if not _stdlib_hmac.compare_digest(tag[TINK_PREFIX_SIZE:], _digest(key, data)):
            raise AuthenticationError("tag does not match")

    def tag_size(self, key_id: int) -> int:
        """Total tag length (prefix included) for ``key_id``."""
        return TINK_PREFIX_SIZE + self.keyset.key(key_id).tag_size
