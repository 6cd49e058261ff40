"""SecureChannel: the sealed-message composition the protocol layer uses.

Theory of operation
-------------------
A channel belongs to one node (``identity``). ``seal(header, payload)`` completes the
header -- ``sender`` (the identity), ``sequence`` (next number of this sender, persisted),
``timestamp`` (milliseconds of the injected clock) and ``key_id`` -- encodes it as
canonical CBOR, and protects it as associated data; the payload is encrypted (AEAD mode)
or left in clear and tagged (MAC mode). ``open(data)`` reverses it in a fixed order:

1. parse the frame (no state touched);
2. **authenticate** with the keyset (AES-256-GCM or HMAC-SHA256);
3. decode and validate the now-authentic header; it must be addressed to us and name the
   key that authenticated it;
4. check freshness (``timestamp`` within ``max_age`` in the past / ``max_skew`` in the
   future of ``now``);
5. **record** ``(sender, sequence)`` in the persisted replay window -- only now.

A rejected message therefore changes no state: the replay window advances only for
messages that authenticated and were fresh.

Cost: a seal+open is a few microseconds above the AES-GCM it wraps. The header is
written and checked canonical through :mod:`vsm_phoenix._canonical` (cbor2's plain
encoder over maps rebuilt in canonical key order), the sequence number comes from an
in-memory lease, and the replay window is kept in memory and written as
:class:`~vsm_phoenix.crypto.replay.ReplayGuard` explains (once per caller
transaction, per message on the in-memory store, by lease on SQLite).
:meth:`SecureChannel.open_many` opens the frames of an authenticated batch in one call.

Wire format::

    format (1 byte: 0xA5 AEAD v1, 0x5A MAC v1) || header length (2 bytes, big-endian)
        || header (canonical CBOR map) || body

    AEAD body = Tink AES-GCM ciphertext of the payload, associated data = everything
                before the body (format, length and header)
    MAC body  = Tink HMAC tag (0x01 || key id || tag) over everything before the body
                followed by the payload, then the payload itself

Errors of ``open``, by cause (every single-bit flip yields one of the first two):

* :class:`~vsm_phoenix.errors.DecodeError` -- input that is not a frame of this
  channel's mode: wrong Python type, unknown format byte, a frame too short to hold a
  header length; and, after authentication, a header that is not valid canonical CBOR
  of the expected shape.
* :class:`~vsm_phoenix.errors.AuthenticationError` -- truncated, tampered or forged
  frames, including a header length pointing past the end, a key id we cannot use
  (:class:`~vsm_phoenix.crypto.keyset.UnknownKeyError`), or a message addressed to
  another node.
* :class:`~vsm_phoenix.errors.KeyExpiredError` -- the key that sealed it has expired.
* :class:`~vsm_phoenix.errors.ReplayError` -- seen before, older than the window, or
  outside the freshness bound.
"""

from __future__ import annotations

import enum
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from vsm_phoenix import _canonical, cbor
from vsm_phoenix.crypto.aead import KeysetAead
from vsm_phoenix.crypto.keyset import TINK_PREFIX_SIZE, TINK_START_BYTE, KeyKind, Keyset
from vsm_phoenix.crypto.mac import KeysetMac, _digest
from vsm_phoenix.crypto.replay import DEFAULT_WINDOW, ReplayGuard
from vsm_phoenix.crypto.storage import Storage, atomic
from vsm_phoenix.errors import (
    AuthenticationError,
    DecodeError,
    InvalidArgument,
    KeyExpiredError,
    ReplayError,
    TypeMismatch,
    VsmPhoenixError,
)
from vsm_phoenix.storage import transaction_hooks

__all__ = ["AUTO_FIELDS", "DEFAULT_CONTENT_TYPE", "ChannelMode", "SecureChannel"]

DEFAULT_CONTENT_TYPE = "application/octet-stream"
AUTO_FIELDS = frozenset({"sender", "sequence", "timestamp", "key_id"})
_REQUIRED_STR = ("sender", "recipient", "content_type")
_MAX_HEADER = 0xFFFF
_MAX_SEQ = (1 << 64) - 1
_STR = frozenset((str,))
_INT_FIELDS = (("sequence", _MAX_SEQ), ("timestamp", _MAX_SEQ), ("key_id", 2**32 - 1))


class ChannelMode(enum.Enum):
    """``AEAD``: payload encrypted, header authenticated. ``MAC``: both in clear,
    both authenticated."""

    AEAD = 0xA5
    MAC = 0x5A


def _skey(*parts: str) -> str:
    """A storage key that stays unambiguous whatever the parts contain."""
    return "channel/" + "/".join(f"{len(p)}:{p}" for p in parts)


class SecureChannel:
    """Seal and open authenticated messages for node ``identity`` (see module doc).

    ``keyset`` must be AES256_GCM for ``ChannelMode.AEAD`` and HMAC_SHA256 for
    ``ChannelMode.MAC``. ``storage`` holds the sender's sequence counter, the replay
    windows and the nonce budget; a new channel over the same storage after a restart
    continues where the old one stopped. ``clock`` returns seconds. Thread-safe.
    """

    __slots__ = (
        "_aead",
        "_cheap",
        "_clock",
        "_format",
        "_guard",
        "_lock",
        "_mac",
        "_max_age_ms",
        "_max_skew_ms",
        "_next_seq",
        "_reserved_raw",
        "_reserved_seq",
        "_seq_key",
        "_seq_lease",
        "_storage",
        "identity",
        "keyset",
        "mode",
    )

    def __init__(
        self,
        keyset: Keyset,
        storage: Storage,
        *,
        identity: str,
        mode: ChannelMode = ChannelMode.AEAD,
        clock: Callable[[], float] = time.time,
        window_size: int = DEFAULT_WINDOW,
        max_age: float | None = 300.0,
        max_skew: float | None = 30.0,
        sequence_lease: int = 1024,
        aead: KeysetAead | None = None,
    ) -> None:
        if not isinstance(identity, str) or not identity:
            raise InvalidArgument("identity must be a non-empty str")
        if not isinstance(mode, ChannelMode):
            raise TypeMismatch("mode must be a ChannelMode")
        want = KeyKind.AES256_GCM if mode is ChannelMode.AEAD else KeyKind.HMAC_SHA256
        if not isinstance(keyset, Keyset) or keyset.kind is not want:
            raise InvalidArgument(f"{mode.name} mode needs a {want.value} keyset")
        if sequence_lease < 1:
            raise InvalidArgument("sequence_lease must be positive")
        self.keyset = keyset
        self.identity = identity
        self.mode = mode
        self._format = bytes((mode.value,))
        self._storage = storage
        self._clock = clock
        self._max_age_ms = None if max_age is None else int(max_age * 1000)
        self._max_skew_ms = None if max_skew is None else int(max_skew * 1000)
        self._guard = ReplayGuard(storage, size=window_size, namespace=_skey(identity, "replay"))
        self._aead: KeysetAead | None = None
        self._mac: KeysetMac | None = None
        if mode is ChannelMode.AEAD:
            self._aead = aead if aead is not None else KeysetAead(keyset, storage, clock=clock)
            if self._aead.keyset is not keyset:
                raise InvalidArgument("aead must wrap the channel's keyset")
        else:
            self._mac = KeysetMac(keyset, clock=clock)
        self._lock = threading.Lock()
        self._seq_lease = sequence_lease
        self._seq_key = _skey(identity, "seq")
        self._cheap = getattr(storage, "cheap_writes", False) is True
        self._reserved_raw: bytes | None = None
        self._next_seq: int | None = None
        self._reserved_seq = 0

    @property
    def replay_guard(self) -> ReplayGuard:
        """The per-sender replay windows of frames opened by this channel (e.g. for an
        operator's :meth:`ReplayGuard.reset`)."""
        return self._guard

    # ------------------------------------------------------------------ sequence

    def _take_sequence(self) -> int:
        """Next sequence number of this sender, leased from storage in blocks so that a
        restart never reuses one (it may skip up to ``sequence_lease``). Inside the
        lease it costs an increment; a lease write that a caller's transaction rolls
        back is noticed (a rollback hook) and written again above every number handed
        out. On a store with cheap writes (memory) the persisted lease is also read
        every time -- a dict lookup -- so that a counter written behind the channel's
        back (an operator's repair, a test) takes effect at the next seal."""
        # (read before our lock: storage first, then ours, never the other order)
        seen = self._storage.get(self._seq_key) if self._cheap else None
        with self._lock:
            seq = self._next_seq
            if seq is not None and seq < self._reserved_seq and seen == self._reserved_raw:
                self._next_seq = seq + 1
                return seq
        with atomic(self._storage), self._lock:
            raw = self._storage.get(self._seq_key)
            if raw is not None and len(raw) != 8:
                raise DecodeError("corrupt sequence counter")
            persisted = 1 if raw is None else int.from_bytes(raw, "big")
            if self._next_seq is None or persisted != self._reserved_seq:
                self._next_seq = max(self._next_seq or 1, persisted)
                self._reserved_seq = persisted
            if self._cheap:
                self._reserved_raw = raw
            seq = self._next_seq
            if seq >= _MAX_SEQ:  # (the lease, above it, must fit the stored 8 bytes)
                raise ReplayError("sequence numbers exhausted", "exhausted")
            if seq >= self._reserved_seq:
                reserved = min(seq + self._seq_lease, _MAX_SEQ)
                encoded = reserved.to_bytes(8, "big")
                self._storage.put(self._seq_key, encoded)
                self._reserved_seq = reserved
                if self._cheap:
                    self._reserved_raw = encoded
                hooks = transaction_hooks(self._storage)
                if hooks is not None:
                    hooks.rollback.append(self._lease_rolled_back)
            self._next_seq = seq + 1
            return seq

    def _lease_rolled_back(self) -> None:
        with self._lock:
            self._reserved_seq = 0  # unknown: the next call re-reads and re-leases

    # ------------------------------------------------------------------ seal

    def _header(self, header: Mapping[str, Any], key_id: int, seq: int, ts: int) -> bytes:
        full: dict[str, Any] = dict(header)
        full.setdefault("content_type", DEFAULT_CONTENT_TYPE)
        full["sender"] = self.identity
        full["sequence"] = seq
        full["timestamp"] = ts
        full["key_id"] = key_id
        try:
            encoded = _canonical.dumps(full)
        except Exception as exc:  # cbor2 raises many types for unencodable values
            raise InvalidArgument(f"header is not CBOR-encodable: {exc}") from None
        if len(encoded) > _MAX_HEADER:
            raise InvalidArgument("header too large (max 65535 bytes encoded)")
        return self._format + len(encoded).to_bytes(2, "big") + encoded

    def _validate_input_header(self, header: Mapping[str, Any]) -> None:
        if type(header) is not dict and not isinstance(header, Mapping):
            raise TypeMismatch("header must be a Mapping")
        for name in header:
            if type(name) is not str and not isinstance(name, str):
                raise TypeMismatch("header field names must be str")
        if AUTO_FIELDS.isdisjoint(header):
            given: frozenset[str] | set[str] = frozenset()
        else:
            given = AUTO_FIELDS & set(header)
        if given - {"sender"}:
            raise InvalidArgument(f"the channel sets these fields itself: {sorted(given)}")
        if "sender" in header and header["sender"] != self.identity:
            raise InvalidArgument(f"sender must be this channel's identity {self.identity!r}")
        if not isinstance(header.get("recipient"), str):
            raise InvalidArgument("header needs a str 'recipient'")
        if not isinstance(header.get("content_type", DEFAULT_CONTENT_TYPE), str):
            raise InvalidArgument("'content_type' must be a str")

    def seal(self, header: Mapping[str, Any], payload: bytes) -> bytes:
        """Complete ``header`` (sender, sequence, timestamp, key id), authenticate it and
        protect ``payload``; return the frame."""
        self._validate_input_header(header)
        if not isinstance(payload, bytes):
            raise TypeMismatch("payload must be bytes")
        ts = int(self._clock() * 1000)
        if self._aead is not None:
            prefix, cipher, nonce = self._aead._reserve()
            seq = self._take_sequence()
            aad = self._header(header, int.from_bytes(prefix[1:5], "big"), seq, ts)
            return b"".join((aad, prefix, nonce, cipher.encrypt(nonce, payload, aad)))
        key = self.keyset.primary_for_sealing(self._clock())
        seq = self._take_sequence()
        aad = self._header(header, key.key_id, seq, ts)
        return aad + key.prefix + _digest(key, aad + payload) + payload

    # ------------------------------------------------------------------ open

    def open(
        self,
        data: bytes,
        *,
        sender: str | None = None,
        recipient: str | None = None,
    ) -> tuple[dict[str, Any], bytes]:
        """Authenticate, check and record a frame; return ``(header, payload)``.
        See the module doc for the errors; after any error nothing has changed.

        ``sender``: the principal that is known, by other means, to have sent the frame
        (e.g. the signer of the batch it came in); a frame whose sealed sender is
        neither ``sender`` nor one of its sessions (``sender#...``) is an
        ``AuthenticationError`` -- checked *before* the replay window records anything,
        so a member cannot burn another's sequence numbers. ``recipient``: the address
        the frame must carry (default: this channel's identity), e.g. ``topic:x``."""
        want = self.identity if recipient is None else recipient
        return self._open(data, want, sender, int(self._clock() * 1000))

    def open_many(
        self,
        frames: Sequence[bytes],
        *,
        sender: str | None = None,
        recipient: str | None = None,
    ) -> list[tuple[dict[str, Any], bytes] | VsmPhoenixError]:
        """:meth:`open` every frame of a batch, in order, sharing what the frames share
        (one clock reading for freshness, the arguments' checks); the result for each
        frame is ``(header, payload)`` or the error :meth:`open` would have raised for
        it (``DecodeError``, ``AuthenticationError``, ``KeyExpiredError``,
        ``ReplayError``), which changed nothing. Open inside the caller's
        ``storage.transaction()`` and the replay windows are written once, at its
        commit."""
        want = self.identity if recipient is None else recipient
        now_ms = int(self._clock() * 1000)
        out: list[tuple[dict[str, Any], bytes] | VsmPhoenixError] = []
        for data in frames:
            try:
                out.append(self._open(data, want, sender, now_ms))
            except (DecodeError, AuthenticationError, KeyExpiredError, ReplayError) as exc:
                out.append(exc)
        return out

    def _open(
        self, data: bytes, want: str, sender: str | None, now_ms: int
    ) -> tuple[dict[str, Any], bytes]:
        if type(data) is not bytes:
            if not isinstance(data, bytes | bytearray | memoryview):
                raise DecodeError(f"frame must be bytes, not {type(data).__name__}")
            data = bytes(data)
        if len(data) < 3:
            raise DecodeError("frame too short")
        if data[0] != self.mode.value:
            raise DecodeError(f"not a {self.mode.name} frame (format byte {data[0]:#04x})")
        end = 3 + int.from_bytes(data[1:3], "big")
        if end > len(data):
            raise AuthenticationError("frame truncated (header length past the end)")
        aad, body = data[:end], data[end:]
        if self._aead is not None:
            payload = self._aead.decrypt(body, aad)
            key_id = int.from_bytes(body[1:5], "big")
        else:
            payload, key_id = self._verify_mac(aad, body)
        header = self._decode_header(aad[3:])
        if header["key_id"] != key_id:
            raise AuthenticationError("header names a different key than the one used")
        if header["recipient"] != want:
            raise AuthenticationError(f"message addressed to {header['recipient']!r}")
        claimed = header["sender"]
        if sender is not None and claimed.partition("#")[0] != sender:
            raise AuthenticationError(
                f"frame claims sender {claimed!r} but was sent by {sender!r}"
            )
        ts = header["timestamp"]
        if self._max_age_ms is not None and now_ms - ts > self._max_age_ms:
            raise ReplayError(f"message is stale ({now_ms - ts} ms old)", "stale")
        if self._max_skew_ms is not None and ts - now_ms > self._max_skew_ms:
            raise ReplayError(f"message is from the future ({ts - now_ms} ms ahead)", "future")
        self._guard.accept(claimed, header["sequence"], ts)
        return header, payload

    def _verify_mac(self, aad: bytes, body: bytes) -> tuple[bytes, int]:
        assert self._mac is not None
        if len(body) < TINK_PREFIX_SIZE or body[0] != TINK_START_BYTE:
            raise AuthenticationError("frame truncated or with an unknown tag prefix")
        key_id = int.from_bytes(body[1:5], "big")
        key = self.keyset.usable(key_id, self._clock())
        tag_end = TINK_PREFIX_SIZE + key.tag_size
        if len(body) < tag_end:
            raise AuthenticationError("frame truncated (tag)")
        tag, payload = body[:tag_end], body[tag_end:]
        self._mac.verify(tag, aad + payload)
        return payload, key_id

    @staticmethod
    def _decode_header(raw: bytes) -> dict[str, Any]:
        try:
            header = cbor.loads(raw, wire=True)  # canonical, tag-free, bounded
        except DecodeError as exc:
            raise DecodeError(f"header: {exc}") from None
        if type(header) is not dict or not _STR.issuperset(map(type, header)):
            raise DecodeError("header must be a map with str keys")
        for name in _REQUIRED_STR:
            if type(header.get(name)) is not str:
                raise DecodeError(f"header field {name!r} missing or not a str")
        for name, hi in _INT_FIELDS:
            value = header.get(name)
            if type(value) is not int or not 0 <= value <= hi:
                raise DecodeError(f"header field {name!r} missing or out of range")
        return header
