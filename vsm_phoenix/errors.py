"""The errors vsm-phoenix raises.

Every error the library raises on purpose derives from :class:`VsmPhoenixError`, so a
caller can catch "anything vsm-phoenix refused" in one clause. Errors that mirror a
builtin (``TypeError``, ``ValueError``, ``OverflowError``) derive from both, so code
that expects the builtin keeps working.

The rule behind all of them (ARCHITECTURE.md, principle 5 and "Error rules"): after
an error the object that raised it is unchanged. Each package re-exports the errors it
raises (``from vsm_phoenix.crypto import ReplayError``).
"""

from __future__ import annotations

__all__ = [
    "AuthenticationError",
    "CapacityError",
    "DecodeError",
    "InvalidArgument",
    "KeyExpiredError",
    "KeyNotFoundError",
    "PermissionDenied",
    "ReplayError",
    "SizeOverflow",
    "TypeMismatch",
    "VsmPhoenixError",
]


class VsmPhoenixError(Exception):
    """Base class of every error raised by vsm-phoenix."""


class DecodeError(VsmPhoenixError, ValueError):
    """Bytes that are malformed, truncated, oversized, non-canonical or semantically
    invalid (e.g. a negative count, a dot outside its causal context)."""


class AuthenticationError(VsmPhoenixError):
    """Data that fails authentication: tampered, truncated or forged."""


class PermissionDenied(VsmPhoenixError):
    """An authenticated principal asked for something its roles do not allow (e.g. a
    client with the ``write`` role asking a node to stop)."""


class ReplayError(VsmPhoenixError):
    """A message seen before, or too old to be judged (outside the replay window or
    the freshness bound), or too far ahead of the sender's last sequence number.

    ``reason`` says which: ``"duplicate"`` (seen before: an at-least-once redelivery,
    safe to drop quietly), ``"too-old"`` (below the window), ``"stale"`` / ``"future"``
    (timestamp outside the freshness bound), ``"jump"`` (sequence too far ahead),
    ``"exhausted"`` (no sequence numbers left)."""

    def __init__(self, message: str, reason: str = "duplicate") -> None:
        super().__init__(message)
        self.reason = reason


class KeyNotFoundError(VsmPhoenixError, KeyError):
    """No enabled key with the requested id."""


class KeyExpiredError(VsmPhoenixError):
    """The key exists but is past its expiry."""


class CapacityError(VsmPhoenixError):
    """A bounded resource is exhausted (e.g. a key's safe invocation limit)."""


class InvalidArgument(VsmPhoenixError, ValueError):
    """An argument has the right type but a value outside its domain."""


class SizeOverflow(VsmPhoenixError, OverflowError):
    """A size too large for where it must go: ``len()`` of a causal context holding
    more than ``sys.maxsize`` dots (its ``.size`` is exact)."""


class TypeMismatch(VsmPhoenixError, TypeError):
    """An argument of the wrong type, including joining two different CRDT types."""
