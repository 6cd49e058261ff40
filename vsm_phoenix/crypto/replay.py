"""Replay protection: an RFC 6479 sliding-window bitmap per sender, persisted.

Theory of operation
-------------------
Each sender numbers its messages ``0, 1, 2, ...`` (gaps allowed). The receiver keeps, per
sender, the highest sequence number accepted so far and a bitmap of which of the last
``size`` numbers it has accepted:

* ``seq > highest``: new -- accepted; the window slides forward.
* ``highest - size < seq <= highest``: accepted iff its bit is clear (out-of-order
  delivery inside the window is accepted exactly once).
* ``seq <= highest - size``: too old to judge -- rejected.
* ``seq > highest + MAX_JUMP``: too far ahead -- rejected. One accepted frame with a
  sequence number near 2**64 would otherwise make every later frame of that sender a
  "replay"; the cap (2**40, more than a sender produces in a decade at a million
  messages a second) keeps the number space from being burnt in one step. It applies
  to the first frame of a sender too (``highest`` starts at -1).

The bitmap is RFC 6479's ring of 64-bit blocks: ``size / 64 + 1`` blocks, the block of
``seq`` is ``(seq >> 6) mod blocks``; sliding forward clears only the blocks skipped
over, so the cost of an update does not grow with the window.

**Check, then authenticate, then record.** :meth:`ReplayWindow.check` never changes
state; :meth:`ReplayWindow.record` is called only for a message that authenticated.
Recording first would let a forged copy with a valid-looking sequence number burn the
real message (the seed system had this bug).

:class:`ReplayGuard` keeps one window per sender and writes a window through its
:class:`~vsm_phoenix.crypto.storage.Storage` *before* the in-memory copy changes, so a
restart (a new guard over the same storage) rejects everything the old one accepted.
"""

from __future__ import annotations

import threading

import cbor2

from vsm_phoenix import cbor
from vsm_phoenix.crypto.storage import Storage, atomic
from vsm_phoenix.errors import DecodeError, InvalidArgument, ReplayError, TypeMismatch

__all__ = ["DEFAULT_WINDOW", "MAX_JUMP", "ReplayGuard", "ReplayWindow"]

DEFAULT_WINDOW = 1024
_FORMAT = 1
_MAX_WINDOW = 1 << 16
_MAX_SEQ = (1 << 64) - 1
_MASK = (1 << 64) - 1
#: Largest accepted step above the highest sequence number seen (see module doc).
MAX_JUMP = 1 << 40


def _check_seq(seq: int) -> None:
    if type(seq) is not int:
        raise TypeMismatch("sequence number must be an int")
    if not 0 <= seq <= _MAX_SEQ:
        raise InvalidArgument("sequence number must be in 0..2**64-1")


class ReplayWindow:
    """One sender's sliding window (see module doc). Not thread-safe by itself."""

    __slots__ = ("_blocks", "highest", "size")

    def __init__(self, size: int = DEFAULT_WINDOW) -> None:
        if type(size) is not int or size < 64 or size % 64 or size > _MAX_WINDOW:
            raise InvalidArgument("window size must be a multiple of 64 in 64..65536")
        self.size = size
        self.highest = -1  # nothing accepted yet
        self._blocks = [0] * (size // 64 + 1)

    def _seen(self, seq: int) -> bool:
        word = self._blocks[(seq >> 6) % len(self._blocks)]
        return bool(word >> (seq & 63) & 1)

    def check(self, seq: int) -> None:
        """Raise ``ReplayError`` if ``seq`` was accepted before or is too old; never
        changes state."""
        _check_seq(seq)
        if seq > self.highest:
            if seq - self.highest > MAX_JUMP:
                raise ReplayError(
                    f"sequence {seq} jumps more than 2**40 past {self.highest}", "jump"
                )
            return
        if seq <= self.highest - self.size:
            raise ReplayError(
                f"sequence {seq} is older than the window (highest {self.highest})", "too-old"
            )
        if self._seen(seq):
            raise ReplayError(f"sequence {seq} replayed", "duplicate")

    def record(self, seq: int) -> None:
        """Mark ``seq`` accepted (call only after the message authenticated). Raises
        ``ReplayError`` -- and changes nothing -- if ``check`` would."""
        self.check(seq)
        n = len(self._blocks)
        if seq > self.highest:
            current = self.highest >> 6 if self.highest >= 0 else -1
            target = seq >> 6
            for i in range(1, min(target - current, n) + 1):
                self._blocks[(current + i) % n] = 0
            self.highest = seq
        self._blocks[(seq >> 6) % n] |= 1 << (seq & 63)

    def accept(self, seq: int) -> None:
        """``check`` and ``record`` in one step."""
        self.record(seq)

    def copy(self) -> ReplayWindow:
        new = ReplayWindow(self.size)
        new.highest = self.highest
        new._blocks = list(self._blocks)
        return new

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ReplayWindow):
            return NotImplemented
        return self.to_bytes() == other.to_bytes()

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"ReplayWindow(size={self.size}, highest={self.highest})"

    # ------------------------------------------------------------------ codec

    def to_bytes(self) -> bytes:
        """Canonical CBOR ``[1, size, highest, bitmap]``; the bitmap is the ring of
        blocks, 8 bytes big-endian each, with stale blocks cleared so that equal windows
        encode to equal bytes."""
        words = self._normalized()
        bitmap = b"".join(w.to_bytes(8, "big") for w in words)
        return bytes(cbor2.dumps([_FORMAT, self.size, self.highest, bitmap], canonical=True))

    def _normalized(self) -> list[int]:
        """Blocks with every bit outside ``(highest - size, highest]`` cleared. Only the
        edges can hold such bits: ring slots of blocks wholly below the window, the low
        bits of the oldest block and the high bits of the newest one."""
        n = len(self._blocks)
        if self.highest < 0:
            return [0] * n
        out = list(self._blocks)
        low = max(0, self.highest - self.size + 1)
        top = self.highest >> 6
        for block in range(top - n + 1, low >> 6):
            out[block % n] = 0
        out[(low >> 6) % n] &= ~((1 << (low & 63)) - 1) & _MASK
        out[top % n] &= (1 << ((self.highest & 63) + 1)) - 1
        return out

    @classmethod
    def from_bytes(cls, data: bytes) -> ReplayWindow:
        """Inverse of :meth:`to_bytes`; anything else raises ``DecodeError``."""
        if not isinstance(data, bytes):
            raise DecodeError("replay window must be bytes")
        try:
            doc = cbor.loads(data, wire=True)
        except DecodeError as exc:
            raise DecodeError(f"replay window: {exc}") from None
        if not (isinstance(doc, list) and len(doc) == 4 and doc[0] == _FORMAT):
            raise DecodeError("replay window: unsupported format")
        _, size, highest, bitmap = doc
        if type(size) is not int or type(highest) is not int or not isinstance(bitmap, bytes):
            raise DecodeError("replay window: malformed")
        # The bitmap must hold exactly the window's blocks; checking that before building
        # the window means a decoded ``size`` never allocates more than the input carries.
        if not 64 <= size <= _MAX_WINDOW or size % 64 or len(bitmap) != 8 * (size // 64 + 1):
            raise DecodeError("replay window: bad size or bitmap length")
        if not -1 <= highest <= _MAX_SEQ:
            raise DecodeError("replay window: malformed")
        window = cls(size)
        window.highest = highest
        window._blocks = [
            int.from_bytes(bitmap[i : i + 8], "big") for i in range(0, len(bitmap), 8)
        ]
        if window._normalized() != window._blocks:
            raise DecodeError("replay window: bits outside the window")
        if highest >= 0 and not window._seen(highest):
            raise DecodeError("replay window: highest sequence not marked")
        return window


class ReplayGuard:
    """Per-sender replay windows persisted through ``storage`` under
    ``<namespace>/<sender>``. Thread-safe: concurrent ``accept`` of one sequence
    number succeeds exactly once.

    The storage is the source of truth: each call re-reads the sender's window (a cheap
    byte comparison with the cached copy decides whether to decode it again), so a write
    undone by the caller's rolled-back transaction, or made by another guard over the same
    storage, is never masked by a stale cache. ``accept`` runs inside
    ``storage.transaction()`` when there is one.
    """

    __slots__ = ("_cache", "_lock", "_namespace", "_size", "_storage")

    def __init__(
        self, storage: Storage, *, size: int = DEFAULT_WINDOW, namespace: str = "replay"
    ) -> None:
        ReplayWindow(size)  # validate
        self._storage = storage
        self._size = size
        self._namespace = namespace
        self._lock = threading.Lock()
        self._cache: dict[str, tuple[bytes | None, ReplayWindow]] = {}

    def _window(self, sender: str) -> ReplayWindow:
        """The sender's current window (lock held); a new one for an unknown sender. A
        stored window keeps its own size even when the guard's differs."""
        if not isinstance(sender, str):
            raise TypeMismatch("sender must be a str")
        raw = self._storage.get(f"{self._namespace}/{sender}")
        cached = self._cache.get(sender)
        if cached is not None and cached[0] == raw:
            return cached[1]
        window = ReplayWindow(self._size) if raw is None else ReplayWindow.from_bytes(raw)
        self._cache[sender] = (raw, window)
        return window

    def check(self, sender: str, seq: int) -> None:
        """``ReplayError`` if ``seq`` from ``sender`` would be rejected; no state change."""
        with self._lock:
            self._window(sender).check(seq)

    def accept(self, sender: str, seq: int) -> None:
        """Record an *authenticated* message: persist first, then update the cache.
        ``ReplayError`` (and no change) for a replayed or too old ``seq``."""
        with atomic(self._storage), self._lock:
            updated = self._window(sender).copy()
            updated.record(seq)
            raw = updated.to_bytes()
            self._storage.put(f"{self._namespace}/{sender}", raw)
            self._cache[sender] = (raw, updated)

    def highest(self, sender: str) -> int:
        """Highest sequence accepted from ``sender`` (-1 when none)."""
        with self._lock:
            return self._window(sender).highest

    def reset(self, sender: str) -> None:
        """Forget ``sender``'s window (an operator's repair after a sender lost its
        sequence counter, or after a bad jump): its next frame starts a new window.
        Frames accepted before can be replayed again until the freshness bound
        (``max_age``) rejects them, so reset only a sender that is known to restart."""
        if not isinstance(sender, str):
            raise TypeMismatch("sender must be a str")
        with atomic(self._storage), self._lock:
            self._storage.delete(f"{self._namespace}/{sender}")
            self._cache.pop(sender, None)

    def senders(self) -> list[str]:
        """Every sender with a stored window, sorted."""
        prefix = f"{self._namespace}/"
        return sorted(k[len(prefix):] for k, _ in self._storage.items(prefix))
