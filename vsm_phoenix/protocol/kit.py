"""Shared plumbing for nodes: stamping, addressing and decoding messages.

A :class:`Messenger` belongs to one node. It owns the node's hybrid logical clock and
draws message ids from the node's injected ``random.Random``, so two runs with the same
seed produce byte-identical envelopes. It is deliberately small: nodes compose it, they
do not inherit from it.

Invariants
----------
* Every outgoing envelope carries an HLC timestamp strictly greater than every
  timestamp this messenger stamped or merged before.
* :meth:`Messenger.accept` validates *before* it touches the clock: a rejected
  envelope (clock too far ahead, wrong recipient) leaves the messenger unchanged.

Clock drift
-----------
``max_drift_ms`` bounds how far a peer's stamp may run ahead of this node's wall clock
before it is merged: merging it would drag this clock (and, through it, everyone's)
into the future. What happens to such an envelope depends on the protocol:

* ``refuse_drift=True`` (the default): :meth:`Messenger.accept` raises
  :class:`RemoteProtocolError`. Right for protocols whose *data* carries the stamps
  (CRDT sync orders writes by them).
* ``refuse_drift=False``: the envelope is accepted, but its stamp is **not** merged —
  the receive is stamped from this node's own clock and counted in
  :attr:`Messenger.drift_ignored`. Right for protocols that need no wall clock
  (Raft): a clock step on some nodes then costs nothing but the HLC's causality
  across that gap, never an outage.
"""

from __future__ import annotations

import random
from typing import Any

from vsm_phoenix.crdt import HLC, Timestamp
from vsm_phoenix.errors import DecodeError
from vsm_phoenix.protocol import _fill
from vsm_phoenix.protocol.envelope import Envelope, _make, decode_cbor, encode_cbor
from vsm_phoenix.protocol.node import RemoteProtocolError, Send

__all__ = ["Messenger", "decode_payload", "encode_payload"]

_SEND = _fill.Layout(Send, ("envelope",))


def encode_payload(value: Any) -> bytes:
    """Canonical CBOR for a message payload."""
    return encode_cbor(value)


def decode_payload(envelope: Envelope, expected: type | tuple[type, ...] = dict) -> Any:
    """Decode ``envelope.payload`` as canonical CBOR of the ``expected`` Python type.

    Raises :class:`RemoteProtocolError` (a ``DecodeError``) naming the message type.
    """
    try:
        value = decode_cbor(envelope.payload)
    except DecodeError as exc:
        raise RemoteProtocolError(f"{envelope.type} from {envelope.sender}: {exc}") from None
    if not isinstance(value, expected):
        raise RemoteProtocolError(f"{envelope.type} from {envelope.sender}: bad payload shape")
    return value


class Messenger:
    """Builds envelopes for one node and accepts incoming ones into its clock."""

    __slots__ = ("clock", "drift_ignored", "node_id", "refuse_drift", "rng")

    def __init__(self, node_id: str, rng: random.Random, *, max_drift_ms: int = 60_000,
                 refuse_drift: bool = True) -> None:
        self.node_id = node_id
        self.rng = rng
        self.clock = HLC(node_id, max_drift_ms=max_drift_ms)
        self.refuse_drift = refuse_drift
        #: Envelopes accepted without merging their stamp (``refuse_drift=False``).
        self.drift_ignored = 0

    def new_id(self) -> bytes:
        """A fresh 16-byte message id from the injected generator."""
        return self.rng.getrandbits(128).to_bytes(16, "big")

    def envelope(
        self,
        now: int,
        msg_type: str,
        payload: Any,
        *,
        recipient: str | None = None,
        topic: str | None = None,
        correlation_id: bytes | None = None,
        causal_context: bytes | None = None,
        hop_limit: int = 8,
    ) -> Envelope:
        """An envelope stamped now; ``payload`` is CBOR-encoded unless already bytes."""
        body = payload if isinstance(payload, bytes) else encode_payload(payload)
        return _make(self.new_id(), msg_type, self.node_id,
                     recipient, topic, correlation_id,
                     self.clock.now(now if now > 0 else 0), hop_limit, causal_context, body)

    def send(self, now: int, to: str, msg_type: str, payload: Any, **kw: Any) -> Send:
        """Shorthand: a :class:`Send` effect of a fresh envelope addressed to ``to``."""
        env = self.envelope(now, msg_type, payload, recipient=to, **kw)
        # Send(env), without attrs' keyword __init__ (Send has no converter or validator)
        send: Send = _fill.build(_SEND, (env,))
        return send

    def accept(self, now: int, envelope: Envelope) -> Timestamp:
        """Check that ``envelope`` is for this node and merge its timestamp into the
        clock; return the receive timestamp. Raises :class:`RemoteProtocolError`
        (clock unchanged) when it is not addressed here, or when its clock runs
        further ahead than ``max_drift_ms`` and ``refuse_drift`` is set (otherwise
        such a stamp is left unmerged: see the module docstring)."""
        if envelope.recipient is not None and envelope.recipient != self.node_id:
            raise RemoteProtocolError(
                f"envelope for {envelope.recipient!r} delivered to {self.node_id!r}"
            )
        if envelope.sender == self.node_id:
            raise RemoteProtocolError("envelope claims to come from this node")
        wall = max(now, 0)
        try:
            stamp = Timestamp(*envelope.timestamp)
            if not self.refuse_drift and stamp.physical_ms > wall + self.clock.max_drift_ms:
                Timestamp.check(stamp)
                self.drift_ignored += 1
                return self.clock.now(wall)
            return self.clock.update(stamp, wall)
        except ValueError as exc:  # InvalidArgument: clock too far ahead or bad stamp
            raise RemoteProtocolError(str(exc)) from None
