"""Signed batches: many sealed frames under one signature of the sender's identity.

Theory of operation
-------------------
A transport that carries several sealed frames in one message (the AMQP adapter
publishes up to hundreds per body) authenticates the *batch* once, with the sender's
Ed25519 :class:`~vsm_phoenix.crypto.identity.Identity`, and then opens each frame with
the cluster's :class:`~vsm_phoenix.crypto.channel.SecureChannel`, requiring every
frame's sealed sender to be the batch's signer (``channel.open(frame, sender=...)``).
A frame may itself carry many messages (the AMQP adapter seals the envelopes of one
publish as one frame): then one signature and one AEAD open cover them all.

Wire format (canonical CBOR)::

    body    = [1, signer, payload, signature]
    payload = canonical CBOR array of 1..65,536 frames (byte strings)
    signed  = canonical CBOR ["vsm-phoenix/batch", 1, cluster, signer]  ||  payload

The cluster name is signed, so a batch cannot be replayed into another cluster that
trusts the same principal; the domain string keeps a batch signature from ever being
valid as a roster, a command or any other signed object.

Cost of hostile input -- :func:`open_batch` works in this order, and stops at the first
failure:

1. size check, then a strict parse of the outer array (:func:`vsm_phoenix.cbor.loads`:
   linear in the body, no tag expansion);
2. the signer must be in the roster (a dict lookup);
3. one Ed25519 verification over the body's bytes;
4. only then is the payload parsed into frames.

So a body that does not authenticate costs one parse and at most one signature check,
whatever number of frames it claims to hold: the caller dead-letters and logs it once.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

import attrs

from vsm_phoenix import cbor
from vsm_phoenix.crypto.identity import Identity, Member, Roster, check_principal
from vsm_phoenix.crypto.signature import SIGNATURE_SIZE
from vsm_phoenix.errors import DecodeError, InvalidArgument

__all__ = [
    "BATCH_VERSION",
    "MAX_BATCH_FRAMES",
    "MAX_BODY_BYTES",
    "OpenedBatch",
    "open_batch",
    "seal_batch",
]

BATCH_VERSION: Final = 1
MAX_BATCH_FRAMES: Final = 65_536
MAX_BODY_BYTES: Final = 64 * 1024 * 1024
_DOMAIN: Final = "vsm-phoenix/batch"


def _signed_bytes(cluster: str, signer: str, payload: bytes) -> bytes:
    return cbor.dumps([_DOMAIN, BATCH_VERSION, cluster, signer]) + payload


@attrs.frozen
class OpenedBatch:
    """An authenticated batch: who signed it, their roster entry, the sealed frames."""

    signer: str
    member: Member
    frames: list[bytes]


def seal_batch(identity: Identity, cluster: str, frames: Sequence[bytes]) -> bytes:
    """Sign ``frames`` (1..65,536 byte strings) as ``identity`` for ``cluster``."""
    if not 1 <= len(frames) <= MAX_BATCH_FRAMES:
        raise InvalidArgument(f"a batch holds 1..{MAX_BATCH_FRAMES} frames")
    if not all(isinstance(f, bytes) for f in frames):
        raise InvalidArgument("batch frames must be bytes")
    payload = cbor.dumps(list(frames))
    signature = identity.sign(_signed_bytes(cluster, identity.principal, payload))
    body = cbor.dumps([BATCH_VERSION, identity.principal, payload, signature])
    if len(body) > MAX_BODY_BYTES:
        raise InvalidArgument(f"batch of {len(body)} bytes exceeds {MAX_BODY_BYTES}")
    return body


def open_batch(body: object, roster: Roster) -> OpenedBatch:
    """Authenticate a body made by :func:`seal_batch` against ``roster``.

    ``DecodeError`` for malformed bytes; ``AuthenticationError`` for a signer the
    roster does not list or a signature that does not verify (see the module doc for
    the order of checks and their cost)."""
    outer = cbor.loads(body, max_size=MAX_BODY_BYTES, wire=True)
    if not (isinstance(outer, list) and len(outer) == 4):
        raise DecodeError("a batch is [version, signer, payload, signature]")
    version, signer, payload, signature = outer
    if type(version) is not int or version != BATCH_VERSION:
        raise DecodeError("unsupported batch version")
    try:
        check_principal(signer)
    except (TypeError, ValueError) as exc:
        raise DecodeError(f"batch signer: {exc}") from None
    if not isinstance(payload, bytes) or not isinstance(signature, bytes):
        raise DecodeError("batch payload and signature must be byte strings")
    if len(signature) != SIGNATURE_SIZE:
        raise DecodeError("batch signature has the wrong length")
    member = roster.member(signer)
    member.verify_key.verify(signature, _signed_bytes(roster.cluster, signer, payload))
    frames = cbor.loads(payload, max_size=MAX_BODY_BYTES, wire=True)
    if not isinstance(frames, list) or not 1 <= len(frames) <= MAX_BATCH_FRAMES:
        raise DecodeError(f"a batch holds 1..{MAX_BATCH_FRAMES} frames")
    if not all(isinstance(f, bytes) for f in frames):
        raise DecodeError("batch frames must be byte strings")
    return OpenedBatch(signer, member, frames)
