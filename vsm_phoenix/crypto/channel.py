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

Cost
----
A seal+open of 1 KiB costs a few microseconds above the AES-GCM it wraps (figures:
``python -m bench --only crypto``). Per message, the channel does no storage call
inside the sequence lease and none for the replay window on SQLite (lease) -- one dict
assignment on the in-memory store -- and it encodes and checks each *shape* of header
once, not each frame:

* **seal** remembers, per header items (a ``dict`` whose values are ``str`` or
  ``bytes``) and key, the canonical encoding cut around the two numbers that change
  (:func:`_segments`): a later seal with the same items is neither validated nor
  encoded again, only the sequence number and the timestamp are written in.
* **open** remembers, per header shape seen in an *authenticated* frame, the bytes up
  to the sequence number, between it and the timestamp, and after it. A frame whose
  header is those bytes with a canonical unsigned integer in each slot is, by
  construction, the canonical encoding of that header with these two numbers (key
  order does not depend on values): it is matched, not decoded and re-encoded. Any
  other header is decoded and checked in full, as before, and its shape remembered.
  Matching runs only after authentication, so unauthenticated input still costs O(1)
  work and never reaches the caches; both caches are bounded.

So the frames of a batch from one sender pay the canonical-form check once (the
first frame of each shape), and :meth:`SecureChannel.open_many` shares one clock
reading among them. The replay window is kept in memory and written as
:class:`~vsm_phoenix.crypto.replay.ReplayGuard` explains (once per caller transaction,
per message on the in-memory store, by lease on SQLite).

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

from cryptography.exceptions import InvalidTag

from vsm_phoenix import _canonical, cbor
from vsm_phoenix.crypto._frames import match_header, seal_header
from vsm_phoenix.crypto._frames_pure import Shape
from vsm_phoenix.crypto._frames_pure import uint as _uint
from vsm_phoenix.crypto.aead import OVERHEAD as _AEAD_OVERHEAD
from vsm_phoenix.crypto.aead import KeysetAead
from vsm_phoenix.crypto.keyset import TINK_PREFIX_SIZE, TINK_START_BYTE, KeyKind, Keyset
from vsm_phoenix.crypto.mac import KeysetMac, _digest
from vsm_phoenix.crypto.replay import DEFAULT_WINDOW, ReplayGuard
from vsm_phoenix.crypto.storage import MemoryStorage, Storage, atomic
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
#: Value types of the headers whose shapes are remembered (see "Cost" in the module doc).
_FLAT = frozenset((str, bytes))
_FLAT_OR_INT = frozenset((str, bytes, int))


#: Bound of the per-channel caches of header shapes (seal templates, open skeletons).
_SHAPES_MAX = 512
_SHAPE_LENGTHS_MAX = 16


def _segments(full: Mapping[str, Any]) -> tuple[bytes, bytes, bytes] | None:
    """The canonical CBOR of the complete header ``full`` cut around its two values
    that change from frame to frame: ``head || seq || middle || ts || tail`` with
    ``seq`` and ``ts`` the encodings of ``sequence`` and ``timestamp``. Canonical key
    order depends on the keys alone, so every header with these keys and the other
    values encodes to the same three pieces. ``None`` for a shape this does not cover
    (a key that is not str)."""
    order = _canonical.key_order(tuple(full))
    if order is None:
        return None
    parts: list[bytes] = [_canonical.head(0xA0, len(order))]
    cuts: list[bytes] = []
    for name in order:
        parts.append(_canonical.dumps(name))
        if name == "sequence" or name == "timestamp":
            cuts.append(b"".join(parts))
            parts = []
        else:
            parts.append(_canonical.dumps(full[name]))
    if len(cuts) != 2:
        return None
    return cuts[0], cuts[1], b"".join(parts)


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
        "_clock",
        "_format",
        "_guard",
        "_lock",
        "_mac",
        "_max_age_ms",
        "_max_skew_ms",
        "_next_seq",
        "_openers",
        "_peek",
        "_reserved_raw",
        "_reserved_seq",
        "_seq_key",
        "_seq_lease",
        "_shape_lengths",
        "_skeletons",
        "_storage",
        "_templates",
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
        self._openers = keyset._openers  # (the keyset's cache of AES-GCM objects)
        self._lock = threading.Lock()
        self._seq_lease = sequence_lease
        self._seq_key = _skey(identity, "seq")
        self._next_seq: int | None = None
        self._reserved_seq = 0
        # On a store with cheap writes the persisted lease is read at every seal (a
        # dict lookup), so that a counter written behind the channel's back -- an
        # operator's repair, a test -- takes effect at the next seal.
        self._peek: Callable[[str], bytes | None] | None = None
        if getattr(storage, "cheap_writes", False) is True:
            self._peek = storage.peek if isinstance(storage, MemoryStorage) else storage.get
        self._reserved_raw: bytes | None = None
        # Header shapes seen (see "Cost" in the module doc): for seal, the caller's
        # header items -> (key prefix, head, middle, tail); for open, the bytes of a
        # header up to its sequence number -> (middle, tail, decoded header, key id,
        # principal), with the lengths of those keys.
        self._templates: dict[tuple[Any, ...], tuple[bytes, bytes, bytes, bytes]] = {}
        self._skeletons: dict[bytes, Shape] = {}
        self._shape_lengths: tuple[int, ...] = ()

    @property
    def replay_guard(self) -> ReplayGuard:
        """The per-sender replay windows of frames opened by this channel (e.g. for an
        operator's :meth:`ReplayGuard.reset`)."""
        return self._guard

    # ------------------------------------------------------------------ sequence

    def _take_sequence(self) -> int:
        """Next sequence number of this sender, leased from storage in blocks so that a
        restart never reuses one (it may skip up to ``sequence_lease``). Inside the
        lease it costs an increment under our lock (and, on a store with cheap writes,
        a lookup of the persisted lease: see ``__init__``); a lease write that a
        caller's transaction rolls back is noticed (a rollback hook) and written again
        above every number handed out."""
        seen = None if self._peek is None else self._peek(self._seq_key)
        with self._lock:  # (storage first, then our lock: never the other order)
            seq = self._next_seq
            if seq is not None and seq < self._reserved_seq and seen == self._reserved_raw:
                self._next_seq = seq + 1
                return seq
        # (storage first, then our lock: never the other order)
        with atomic(self._storage), self._lock:
            raw = self._storage.get(self._seq_key)
            if raw is not None and len(raw) != 8:
                raise DecodeError("corrupt sequence counter")
            persisted = 1 if raw is None else int.from_bytes(raw, "big")
            if self._next_seq is None or persisted != self._reserved_seq:
                self._next_seq = max(self._next_seq or 1, persisted)
                self._reserved_seq = persisted
            if self._peek is not None:
                self._reserved_raw = raw
            seq = self._next_seq
            if seq >= _MAX_SEQ:  # (the lease, above it, must fit the stored 8 bytes)
                raise ReplayError("sequence numbers exhausted", "exhausted")
            if seq >= self._reserved_seq:
                reserved = min(seq + self._seq_lease, _MAX_SEQ)
                encoded = reserved.to_bytes(8, "big")
                self._storage.put(self._seq_key, encoded)
                self._reserved_seq = reserved
                if self._peek is not None:
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

    def _header(self, header: Mapping[str, Any], prefix: bytes, seq: int, ts: int) -> bytes:
        """The frame's first part (format, length, canonical header) for a validated
        ``header``; learns the header's shape for the next seal when it may."""
        full: dict[str, Any] = dict(header)
        full.setdefault("content_type", DEFAULT_CONTENT_TYPE)
        full["sender"] = self.identity
        full["sequence"] = seq
        full["timestamp"] = ts
        full["key_id"] = int.from_bytes(prefix[1:5], "big")
        try:
            encoded = _canonical.dumps(full)
        except Exception as exc:  # cbor2 raises many types for unencodable values
            raise InvalidArgument(f"header is not CBOR-encodable: {exc}") from None
        if len(encoded) > _MAX_HEADER:
            raise InvalidArgument("header too large (max 65535 bytes encoded)")
        if type(header) is dict and _FLAT.issuperset(map(type, header.values())):
            self._learn_template(header, full, prefix, encoded, seq, ts)
        return self._format + len(encoded).to_bytes(2, "big") + encoded

    def _learn_template(
        self,
        header: dict[str, Any],
        full: dict[str, Any],
        prefix: bytes,
        encoded: bytes,
        seq: int,
        ts: int,
    ) -> None:
        """Remember how headers with ``header``'s items encode under the key of
        ``prefix``: the three pieces around the sequence number and the timestamp
        (:func:`_segments`), kept only when they rebuild ``encoded`` exactly. Only
        headers whose values are str or bytes (types whose equality is exact, so that
        equal items always mean equal encodings)."""
        segments = _segments(full)
        if segments is None:
            return
        head, middle, tail = segments
        if head + _uint(seq) + middle + _uint(ts) + tail != encoded:
            return
        if len(head) + len(middle) + len(tail) + 18 > _MAX_HEADER:
            return  # (the two numbers may grow to 9 bytes each)
        templates = self._templates
        if len(templates) >= _SHAPES_MAX:
            templates.clear()
        templates[tuple(header.items())] = (prefix, head, middle, tail)

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
        protect ``payload``; return the frame.

        A header with the same items as an earlier one (a dict whose values are str or
        bytes) is neither validated nor encoded again: its encoding around the sequence
        number and timestamp is remembered (see "Cost" in the module doc)."""
        template = None
        if type(header) is dict:
            try:  # noqa: SIM105 (per message: no context manager)
                template = self._templates.get(tuple(header.items()))
            except TypeError:  # an unhashable value: never remembered
                pass
        if template is None:
            self._validate_input_header(header)
        if type(payload) is not bytes and not isinstance(payload, bytes):
            raise TypeMismatch("payload must be bytes")
        ts = int(self._clock() * 1000)
        if self._aead is not None:
            prefix, cipher, nonce = self._aead._reserve()
            seq = self._take_sequence()
            if template is not None and template[0] == prefix:
                aad = seal_header(self._format, template[1], template[2], template[3], seq, ts)
            else:
                aad = self._header(header, prefix, seq, ts)
            return b"".join((aad, prefix, nonce, cipher.encrypt(nonce, payload, aad)))
        key = self.keyset.primary_for_sealing(self._clock())
        seq = self._take_sequence()
        prefix = key.prefix
        if template is not None and template[0] == prefix:
            aad = seal_header(self._format, template[1], template[2], template[3], seq, ts)
        else:
            aad = self._header(header, prefix, seq, ts)
        return aad + prefix + _digest(key, aad + payload) + payload

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
        now_ms = int(self._clock() * 1000)  # (the bounds of ``_fresh_bounds``, inline)
        return self._open(
            data,
            self.identity if recipient is None else recipient,
            sender,
            -1 if self._max_age_ms is None else now_ms - self._max_age_ms,
            _MAX_SEQ + 1 if self._max_skew_ms is None else now_ms + self._max_skew_ms,
        )

    def open_many(
        self,
        frames: Sequence[bytes],
        *,
        sender: str | None = None,
        recipient: str | None = None,
    ) -> list[tuple[dict[str, Any], bytes] | VsmPhoenixError]:
        """:meth:`open` every frame of a batch, in order, sharing what the frames share
        (one clock reading for freshness, the arguments' checks, the header shapes:
        the canonical-form check runs once per shape, not per frame); the result for
        each frame is ``(header, payload)`` or the error :meth:`open` would have raised
        for it (``DecodeError``, ``AuthenticationError``, ``KeyExpiredError``,
        ``ReplayError``), which changed nothing. Open inside the caller's
        ``storage.transaction()`` and the replay windows are written once, at its
        commit."""
        want = self.identity if recipient is None else recipient
        oldest, newest = self._fresh_bounds()
        out: list[tuple[dict[str, Any], bytes] | VsmPhoenixError] = []
        for data in frames:
            try:
                out.append(self._open(data, want, sender, oldest, newest))
            except (DecodeError, AuthenticationError, KeyExpiredError, ReplayError) as exc:
                out.append(exc)
        return out

    def _fresh_bounds(self) -> tuple[int, int]:
        """The oldest and newest timestamp (ms) fresh now: ``max_age`` in the past and
        ``max_skew`` in the future of one clock reading (open bounds when ``None``)."""
        now_ms = int(self._clock() * 1000)
        oldest = -1 if self._max_age_ms is None else now_ms - self._max_age_ms
        newest = _MAX_SEQ + 1 if self._max_skew_ms is None else now_ms + self._max_skew_ms
        return oldest, newest

    def _stale(self, ts: int, oldest: int, newest: int) -> ReplayError:
        if ts < oldest:
            assert self._max_age_ms is not None
            return ReplayError(
                f"message is stale ({oldest + self._max_age_ms - ts} ms old)", "stale"
            )
        assert self._max_skew_ms is not None
        return ReplayError(
            f"message is from the future ({ts - newest + self._max_skew_ms} ms ahead)", "future"
        )

    def _open(
        self, data: bytes, want: str, sender: str | None, oldest: int, newest: int
    ) -> tuple[dict[str, Any], bytes]:
        # 1. parse the frame: no state touched
        if type(data) is not bytes:
            if not isinstance(data, bytes | bytearray | memoryview):
                raise DecodeError(f"frame must be bytes, not {type(data).__name__}")
            data = bytes(data)
        size = len(data)
        if size < 3:
            raise DecodeError("frame too short")
        if data[0] != self._format[0]:
            raise DecodeError(f"not a {self.mode.name} frame (format byte {data[0]:#04x})")
        end = 3 + (data[1] << 8 | data[2])
        if end > size:
            raise AuthenticationError("frame truncated (header length past the end)")
        # 2. authenticate: nothing before this line reads the header
        if self._aead is not None:
            hot = self._openers.get(data[end : end + 5])
            if hot is None or hot[1] is not None or size - end < _AEAD_OVERHEAD:
                payload = self._aead.decrypt_tail(data, end)  # (expiry, unknown keys)
            else:
                try:
                    payload = hot[0].decrypt(data[end + 5 : end + 17], data[end + 17 :],
                                             data[:end])
                except InvalidTag:
                    raise AuthenticationError("ciphertext failed authentication") from None
        else:
            payload = self._verify_mac(data[:end], data[end:])
        # 3. the now-authentic header: a shape seen before (module doc, "Cost") whose
        # two number slots hold canonical numbers, or else decoded and checked in full
        found = match_header(data, end, self._skeletons, self._shape_lengths)
        if found is None:
            header = self._decode_header(data[3:end])
            self._learn_skeleton(header, data, end)
            seq, ts, claimed = header["sequence"], header["timestamp"], header["sender"]
            if header["key_id"] != int.from_bytes(data[end + 1 : end + 5], "big"):
                raise AuthenticationError("header names a different key than the one used")
            addressee = header["recipient"]
        else:
            shape, seq, ts = found
            _, _, base, key_prefix, claimed = shape
            if not data.startswith(key_prefix, end):
                raise AuthenticationError("header names a different key than the one used")
            addressee = base["recipient"]
        if addressee != want:
            raise AuthenticationError(f"message addressed to {addressee!r}")
        if sender is not None and claimed.partition("#")[0] != sender:
            raise AuthenticationError(
                f"frame claims sender {claimed!r} but was sent by {sender!r}"
            )
        # 4. freshness, 5. record -- only now
        if not oldest <= ts <= newest:
            raise self._stale(ts, oldest, newest)
        self._guard._accept_authentic(claimed, seq, ts)
        if found is not None:
            header = base.copy()
            header["sequence"] = seq
            header["timestamp"] = ts
        return header, payload

    def _learn_skeleton(self, header: dict[str, Any], data: bytes, end: int) -> None:
        """Remember the shape of an authentic, decoded and checked header (flat: str,
        bytes and int values) so that the next frame of that shape is matched, not
        decoded; kept only when its pieces rebuild the header's bytes exactly."""
        if not _FLAT_OR_INT.issuperset(map(type, header.values())):
            return
        segments = _segments(header)
        if segments is None:
            return
        head, middle, tail = segments
        raw = data[3:end]
        if head + _uint(header["sequence"]) + middle + _uint(header["timestamp"]) + tail != raw:
            return
        skeletons = self._skeletons
        lengths = self._shape_lengths
        if len(head) not in lengths:
            if len(lengths) >= _SHAPE_LENGTHS_MAX:
                return
            lengths = self._shape_lengths = (*lengths, len(head))
        if len(skeletons) >= _SHAPES_MAX:
            skeletons.clear()
        key_prefix = bytes((TINK_START_BYTE,)) + header["key_id"].to_bytes(4, "big")
        skeletons[head] = (middle, tail, dict(header), key_prefix, header["sender"])

    def _verify_mac(self, aad: bytes, body: bytes) -> bytes:
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
        return payload

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
