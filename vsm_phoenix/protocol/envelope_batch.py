"""Envelope batches: many envelopes from one sender to one address, as one CBOR value.

Theory of operation
-------------------
A transport that authenticates a batch *as a whole* (the AMQP runner seals each batch
with one :class:`~vsm_phoenix.crypto.SecureChannel` frame and signs the body once)
should not pay per envelope for what the envelopes share: the header encoding, the
canonical-form check, the sender and address checks. :func:`encode_envelopes` writes
envelopes that share a sender and an address as *columns*; :func:`decode_envelopes`
checks the whole value once and rebuilds the envelopes without per-envelope header
maps. The sender and the address are not in the bytes: the caller takes them from the
authenticated frame that carried the batch (its sealed sender and recipient), so an
envelope in a batch cannot claim another sender or address than the frame it came in.

Wire format (canonical CBOR, RFC 8949 §4.2; no maps, no floats, no tags)::

    batch = [1, ids, types, correlation_ids, ts_physical, ts_logical, ts_replicas,
             hop_limits, causal_contexts, compression, sizes, payloads]

Every column is an array of the same length ``N`` (1 .. :data:`MAX_ENVELOPES`); entry
``i`` of every column belongs to envelope ``i``. The fields mean what they mean in an
:class:`~vsm_phoenix.protocol.envelope.Envelope` header (``id``, ``t``, ``c``, ``ts``,
``h``, ``cc``, ``z``, ``n``), with the same ranges; ``payloads`` holds the wire payloads
(compressed when ``compression`` says so).

Invariants
----------
* ``decode_envelopes(encode_envelopes(es), sender=s, ...) == es`` for envelopes that
  all have sender ``s`` and the given address; equal batches encode to equal bytes.
* Decoding is total: any input either yields the envelopes or raises
  :class:`~vsm_phoenix.errors.DecodeError`, never another exception and never a part of
  the batch. It refuses what :meth:`Envelope.from_wire_parts` refuses (wrong types,
  out-of-range fields, a payload whose size differs from its ``n``, bad compression),
  non-canonical bytes, columns of unequal length, and batches whose declared payload
  sizes add up to more than ``max_total``.

Cost: one strict parse with one canonical check for the whole batch; every column is
validated by C-level passes (``set(map(type, column))``, ``min``/``max``), so the
Python work per envelope is building it. Decompression, when an envelope is
compressed, is bounded per envelope by its ``n`` and per batch by ``max_total``.
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import repeat
from typing import Final

import cbor2

from vsm_phoenix.crdt import Timestamp
from vsm_phoenix.errors import DecodeError, InvalidArgument
from vsm_phoenix.protocol import _fill
from vsm_phoenix.protocol._fill_pure import (
    _ADDRESS,
    BATCH_FORMAT,
    MAX_ENVELOPES,
    MAX_NAME_CHARS,
    batch_value,
)
from vsm_phoenix.protocol.envelope import (
    _LAYOUT,
    COMPRESS_NONE,
    DEFAULT_COMPRESS_THRESHOLD,
    DEFAULT_MAX_PAYLOAD,
    Envelope,
    _assemble_columns,
    _decompress,
)

__all__ = [
    "BATCH_FORMAT",
    "DEFAULT_MAX_TOTAL",
    "MAX_ENVELOPES",
    "decode_envelopes",
    "encode_envelopes",
]

#: Default bound on the sum of the declared (uncompressed) payload sizes of one batch.
DEFAULT_MAX_TOTAL: Final = 64 * 1024 * 1024


def encode_envelopes(
    envelopes: Sequence[Envelope],
    *,
    sender: str,
    recipient: str | None = None,
    topic: str | None = None,
    compress_threshold: int = DEFAULT_COMPRESS_THRESHOLD,
    prefer_zstd: bool = True,
) -> bytes:
    """The batch of ``envelopes`` (1 .. :data:`MAX_ENVELOPES`), which must all have
    sender ``sender`` and the one address given (``recipient`` or ``topic``):
    ``InvalidArgument`` otherwise. Payloads of at least ``compress_threshold`` bytes
    are compressed as :meth:`Envelope.wire_parts` compresses them."""
    n = len(envelopes)
    if not 1 <= n <= MAX_ENVELOPES:
        raise InvalidArgument(f"a batch holds 1..{MAX_ENVELOPES} envelopes")
    if (recipient is None) == (topic is None):
        raise InvalidArgument("give exactly one of recipient and topic")
    data = _fill.encode_batch(_LAYOUT, envelopes, sender, recipient, topic,
                              compress_threshold)
    if data is not None:  # the usual batch: encoded in one kernel call
        return data
    if set(map(type, envelopes)) != {Envelope}:
        raise InvalidArgument("a batch holds Envelope objects")
    if set(map(_ADDRESS, envelopes)) != {(sender, recipient, topic)}:
        raise InvalidArgument("every envelope of a batch has its sender and address")
    methods, wire = [COMPRESS_NONE] * n, [e.payload for e in envelopes]
    for i, e in enumerate(envelopes):
        if len(e.payload) >= compress_threshold:
            header, packed = e.wire_parts(compress_threshold=compress_threshold,
                                          prefer_zstd=prefer_zstd)
            methods[i], wire[i] = header["z"], packed
    try:
        return bytes(cbor2.dumps(batch_value(envelopes, wire, methods)))
    except Exception as exc:  # e.g. a name holding a lone surrogate (not UTF-8)
        raise InvalidArgument(f"envelopes not CBOR-encodable: {exc}") from None


def decode_envelopes(
    data: bytes,
    *,
    sender: str,
    recipient: str | None = None,
    topic: str | None = None,
    max_payload: int = DEFAULT_MAX_PAYLOAD,
    max_total: int = DEFAULT_MAX_TOTAL,
) -> list[Envelope]:
    """The envelopes of a batch made by :func:`encode_envelopes`, each with sender
    ``sender`` and the address given (exactly one of ``recipient`` and ``topic``: the
    caller's authenticated knowledge, see the module doc). ``DecodeError`` for anything
    malformed (the module doc lists what), including a sender or address that is no
    valid envelope field (they come from the wire too); ``InvalidArgument`` when both
    or neither of ``recipient`` and ``topic`` are given."""
    if (recipient is None) == (topic is None):
        raise InvalidArgument("give exactly one of recipient and topic")
    for name, value in (("sender", sender), ("recipient", recipient), ("topic", topic)):
        if value is not None and (type(value) is not str or not 0 < len(value)
                                  <= MAX_NAME_CHARS):
            raise DecodeError(f"the batch {name} must be a str of 1..{MAX_NAME_CHARS} "
                              "characters")
    # one parse with one canonical check, every column checked for its type and range
    (ids, types, cids, phys, logical, replicas, hops, ccs, methods, sizes,
     payloads) = _fill.parse_columns(data, max_payload)
    n = len(ids)
    if sum(sizes) > max_total:
        raise DecodeError(f"batch payloads add up to more than {max_total} bytes")
    if any(methods):
        payloads = [p if z == COMPRESS_NONE else _decompress(z, p, s)
                    for z, p, s in zip(methods, payloads, sizes, strict=True)]
    if list(map(len, payloads)) != sizes:
        raise DecodeError("a payload's size differs from its n")
    # Timestamp(p, l, r) without the named tuple's Python-level __new__
    stamps = map(tuple.__new__, repeat(Timestamp, n), zip(phys, logical, replicas, strict=True))
    # every field was checked above, column by column: build without re-checking,
    # column by column too (no Python frame per envelope)
    return _assemble_columns(n, (ids, types, repeat(sender, n), repeat(recipient, n),
                                 repeat(topic, n), cids, stamps, hops, ccs, payloads))
