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

:class:`ReplayGuard` keeps one window per sender in memory and makes it durable
without a write per message: once per caller's transaction, per message on a store
whose writes are cheap, or by lease ahead on a disk store (see its doc), so that a
restart (a new guard over the same storage) rejects everything the old one accepted.
"""

from __future__ import annotations

import struct
import threading
from collections.abc import Callable

import cbor2

from vsm_phoenix import cbor
from vsm_phoenix.crypto._frames import slide_mark
from vsm_phoenix.crypto.storage import MemoryStorage, Storage, atomic
from vsm_phoenix.errors import DecodeError, InvalidArgument, ReplayError, TypeMismatch
from vsm_phoenix.storage import TransactionHooks

__all__ = [
    "DEFAULT_WINDOW",
    "MAX_JUMP",
    "ReplayGuard",
    "ReplayWindow",
    "decode_record",
    "encode_record",
]

DEFAULT_WINDOW = 1024
_FORMAT = 1
_MAX_WINDOW = 1 << 16
_MAX_SEQ = (1 << 64) - 1
_MASK = (1 << 64) - 1
#: Largest accepted step above the highest sequence number seen (see module doc).
MAX_JUMP = 1 << 40


def _check_ts(timestamp: int | None) -> int:
    """A frame's timestamp for the zone test; ``None`` (unknown) counts as the oldest."""
    if timestamp is None:
        return -1
    if type(timestamp) is not int:
        raise TypeMismatch("timestamp must be an int")
    if not 0 <= timestamp <= _MAX_SEQ:
        raise InvalidArgument("timestamp must be in 0..2**64-1")
    return timestamp


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
        self._judge(seq)

    def _judge(self, seq: int) -> None:
        """``check`` for a ``seq`` already known to be an int in range."""
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
        self._mark(seq)

    def _mark(self, seq: int) -> None:
        """``record`` for a ``seq`` that ``check`` has just accepted."""
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
        new = ReplayWindow.__new__(ReplayWindow)
        new.size = self.size
        new.highest = self.highest
        new._blocks = self._blocks.copy()
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


_RECORD_V2 = 2
#: ``timestamp`` bound of a lease taken for an ``accept`` without a timestamp: every
#: timestamp is below it (timestamps are at most 2**64-1).
_TS_ALL = 1 << 70
_MAX_LEASE = 1 << 32


def _check_lease(value: int, name: str) -> None:
    if type(value) is not int or not 1 <= value <= _MAX_LEASE:
        raise InvalidArgument(f"{name} must be an int in 1..2**32")


_BLOCKS: dict[int, struct.Struct] = {}
_RECORDS: dict[int, struct.Struct] = {}


def _blocks_struct(n: int) -> struct.Struct:
    packer = _BLOCKS.get(n)
    if packer is None:
        packer = _BLOCKS[n] = struct.Struct(f">{n}Q")
    return packer


def _record_struct(n: int) -> struct.Struct:
    """The whole format-2 record of a ring of ``n`` blocks as one struct: each 9-byte
    number is a high byte and a 64-bit word."""
    packer = _RECORDS.get(n)
    if packer is None:
        packer = _RECORDS[n] = struct.Struct(f">BIBQBQBQ{n}Q")
    return packer


def encode_record(window: ReplayWindow, zone_seq: int = 0, zone_ts: int = 0) -> bytes:
    """A sender's stored record: the window, and the *zone* of frames that may have
    been accepted after the window was written -- every ``(seq, ts)`` with
    ``seq < zone_seq`` and ``ts < zone_ts`` (see :class:`ReplayGuard`)::

        0x02 || size (4) || highest + 1 (9) || zone_seq (9) || zone_ts (9) || blocks

    big-endian; ``blocks`` is the ring of ``size / 64 + 1`` 64-bit words, with the bits
    outside the window cleared (equal windows, equal records)."""
    blocks = window._normalized()
    top = window.highest + 1
    return _record_struct(len(blocks)).pack(
        _RECORD_V2, window.size, top >> 64, top & _MASK, zone_seq >> 64, zone_seq & _MASK,
        zone_ts >> 64, zone_ts & _MASK, *blocks,
    )


def decode_record(data: bytes) -> tuple[ReplayWindow, int, int]:
    """Inverse of :func:`encode_record` -> ``(window, zone_seq, zone_ts)``; also reads
    the format-1 record (a bare :meth:`ReplayWindow.to_bytes`, zone empty). Anything
    else raises ``DecodeError``; the length is checked before anything is allocated."""
    if not isinstance(data, bytes):
        raise DecodeError("replay record must be bytes")
    if not data or data[0] != _RECORD_V2:
        return ReplayWindow.from_bytes(data), 0, 0
    if len(data) < 32:
        raise DecodeError("replay record: truncated")
    size = int.from_bytes(data[1:5], "big")
    if not 64 <= size <= _MAX_WINDOW or size % 64 or len(data) != 32 + 8 * (size // 64 + 1):
        raise DecodeError("replay record: bad size or length")
    highest = int.from_bytes(data[5:14], "big") - 1
    zone_seq = int.from_bytes(data[14:23], "big")
    zone_ts = int.from_bytes(data[23:32], "big")
    if highest > _MAX_SEQ or zone_seq > _MAX_SEQ + 1 + _MAX_LEASE or zone_ts > _TS_ALL:
        raise DecodeError("replay record: number out of range")
    window = ReplayWindow(size)
    window.highest = highest
    window._blocks = list(_blocks_struct(size // 64 + 1).unpack(data[32:]))
    # The ring in memory keeps the bits of numbers that slid out of the window in its
    # oldest block (judged "too old" before any bit is read). Records are written with
    # them cleared, but records written before that still hold them -- and refusing
    # them made every restart after ``size`` + 64 messages of one sender fail to load
    # its window: clear them here too.
    window._blocks = window._normalized()
    if highest >= 0 and not window._seen(highest):
        raise DecodeError("replay record: highest sequence not marked")
    return window, zone_seq, zone_ts


class _Sender:
    """One sender's state in memory: the window, the inherited zone (frames that an
    earlier incarnation may have accepted), and the zone the stored record covers."""

    __slots__ = ("lease_seq", "lease_ts", "render", "window", "zone_seq", "zone_ts")

    def __init__(self, window: ReplayWindow, zone_seq: int, zone_ts: int) -> None:
        self.window = window
        self.zone_seq = zone_seq
        self.zone_ts = zone_ts
        self.lease_seq = zone_seq
        self.lease_ts = zone_ts
        self.render: Callable[[], bytes] | None = None  # ``record``, once written behind

    def record(self) -> bytes:
        """The exact stored record of this state (window and inherited zone)."""
        return encode_record(self.window, self.zone_seq, self.zone_ts)

    def copy(self) -> _Sender:
        new = _Sender(self.window.copy(), self.zone_seq, self.zone_ts)
        new.lease_seq, new.lease_ts = self.lease_seq, self.lease_ts
        return new

    def check(self, seq: int, ts: int) -> None:
        self.window._judge(seq)
        if seq < self.zone_seq and ts < self.zone_ts:
            raise ReplayError(
                f"sequence {seq} may have been accepted before a restart", "duplicate"
            )


class ReplayGuard:
    """Per-sender replay windows, kept in memory and made durable through ``storage``
    under ``<namespace>/<sender>``. Thread-safe: concurrent ``accept`` of one sequence
    number succeeds exactly once.

    Durability
    ----------
    Writing the window on every message is what made a replay-checked message cost a
    third of a millisecond over SQLite. The guard writes a sender's record (its window
    and a *zone*, :func:`encode_record`) only when it must, in one of three ways:

    * **Inside a caller's transaction** (a storage with
      :func:`~vsm_phoenix.storage.transaction_hooks`, e.g. the AMQP runner's group
      commit): the windows change in memory and every sender touched is written
      exactly, once, just before the transaction commits; a rollback restores the
      windows as they were (a rolled-back message is accepted when redelivered).
    * **On a store with cheap writes** (``storage.cheap_writes``: the in-memory store):
      the exact record is written on every ``accept``.
    * **Otherwise** (SQLite outside a transaction) by **lease**, as the nonce counter
      does: a frame ``(seq, ts)`` is recorded in memory only when the stored zone
      already covers it (``seq < zone_seq`` and ``ts < zone_ts``); else the guard
      first writes the exact window with a new zone ``lease`` sequence numbers and
      ``lease_ms`` milliseconds ahead. ``flush()`` -- and closing an SQLite store --
      writes the exact windows (zone: only what was inherited).

    Restart invariant: *every frame ever accepted is either marked in the stored
    window or inside the stored zone*. A new guard therefore rejects (reason
    ``duplicate``) a frame whose bit is clear but which lies in the zone: after a crash
    in lease mode, frames sealed less than ``lease_ms`` after the last recorded one,
    with sequence numbers below the lease, are refused -- a bounded loss, never a
    replay. ``accept`` without a timestamp takes zones valid for every timestamp.
    ``tests/crypto/test_crypto_replay_crash.py`` crashes the store at every write and
    checks the invariant.
    """

    __slots__ = (
        "__weakref__",
        "_behind",
        "_cheap",
        "_dirty",
        "_hooks_of",
        "_lease",
        "_lease_ms",
        "_lock",
        "_namespace",
        "_size",
        "_states",
        "_storage",
        "_txn",
    )

    def __init__(
        self,
        storage: Storage,
        *,
        size: int = DEFAULT_WINDOW,
        namespace: str = "replay",
        lease: int = 1024,
        lease_ms: int = 1000,
    ) -> None:
        ReplayWindow(size)  # validate
        _check_lease(lease, "lease")
        _check_lease(lease_ms, "lease_ms")
        self._storage = storage
        self._size = size
        self._namespace = namespace
        self._lease = lease
        self._lease_ms = lease_ms
        self._cheap = getattr(storage, "cheap_writes", False) is True
        hooks_of = getattr(storage, "transaction_hooks", None)
        self._hooks_of: Callable[[], TransactionHooks | None] | None = (
            hooks_of if callable(hooks_of) else None
        )
        # On the memory store our lock is the store's (reentrant) lock: an exact write
        # per accept then needs no transaction, and a caller's transaction (which holds
        # that lock throughout) can never wait for us while we wait for it.
        self._lock: threading.Lock | threading.RLock = (
            storage.lock if isinstance(storage, MemoryStorage) else threading.Lock()
        )
        # The plain memory store takes the exact record per accept as a write behind
        # (``MemoryStorage.put_behind``): readers see what a write per accept would
        # have left, and the record is encoded only when someone reads it. A subclass
        # (which may count, fail or crash on writes) gets a real write per accept.
        self._behind = type(storage) is MemoryStorage
        self._states: dict[str, _Sender] = {}
        self._dirty: set[str] = set()  # senders whose stored record is not exact
        self._txn: dict[str, _Sender] = {}  # senders touched in the current transaction
        on_close = getattr(storage, "on_close", None)
        if callable(on_close):
            on_close(self.flush)

    # ------------------------------------------------------------------ state

    def _load(self, sender: str) -> None:
        """Read ``sender``'s record into memory unless it is there (storage first,
        then our lock: never the other order)."""
        if not isinstance(sender, str):
            raise TypeMismatch("sender must be a str")
        if sender in self._states:
            return
        raw = self._storage.get(f"{self._namespace}/{sender}")
        if raw is None:
            state = _Sender(ReplayWindow(self._size), 0, 0)
        else:
            state = _Sender(*decode_record(raw))
        with self._lock:
            self._states.setdefault(sender, state)

    def _state(self, sender: str) -> _Sender:
        """The sender's state (our lock held); a fresh one if it was reset meanwhile."""
        state = self._states.get(sender)
        if state is None:
            state = self._states[sender] = _Sender(ReplayWindow(self._size), 0, 0)
        return state

    def _write(self, sender: str, state: _Sender, zone_seq: int, zone_ts: int) -> None:
        self._storage.put(
            f"{self._namespace}/{sender}", encode_record(state.window, zone_seq, zone_ts)
        )

    # ------------------------------------------------------------------ API

    def check(self, sender: str, seq: int, timestamp: int | None = None) -> None:
        """``ReplayError`` if ``seq`` from ``sender`` would be rejected; no state change."""
        _check_seq(seq)
        ts = _check_ts(timestamp)
        self._load(sender)
        with self._lock:
            self._state(sender).check(seq, ts)

    def accept(self, sender: str, seq: int, timestamp: int | None = None) -> None:
        """Record an *authenticated* frame (``timestamp``: its sealed milliseconds).
        ``ReplayError`` (and no change) for a replayed, too old or too far ahead
        ``seq``. See the class doc for when this writes to storage."""
        if type(seq) is not int or not 0 <= seq <= _MAX_SEQ:
            _check_seq(seq)
        if type(timestamp) is int and 0 <= timestamp <= _MAX_SEQ:
            ts = timestamp
        else:
            ts = _check_ts(timestamp)
        if type(sender) is not str:
            raise TypeMismatch("sender must be a str")
        self._accept_authentic(sender, seq, ts, timestamp is None)

    def _accept_authentic(self, sender: str, seq: int, ts: int, no_ts: bool = False) -> None:
        """``accept`` for arguments known good (a ``str`` sender, numbers in range: a
        decoded, authenticated header); ``no_ts`` when the caller gave no timestamp."""
        if self._behind and not self._storage._depth:  # type: ignore[attr-defined]
            # (no transaction of ours: ``_depth`` is 0 whenever this thread is in none)
            self._accept_behind(sender, seq, ts)
            return
        if sender not in self._states:
            self._load(sender)
        hooks = None if self._hooks_of is None else self._hooks_of()
        if hooks is not None:  # the caller's transaction: write once, at its commit
            with self._lock:
                state = self._state(sender)
                state.check(seq, ts)
                if sender not in self._txn:
                    if not self._txn:
                        hooks.commit.append(self._commit_txn)
                        hooks.rollback.append(self._rollback_txn)
                    self._txn[sender] = state.copy()
                state.window._mark(seq)
            return
        if self._behind:
            self._accept_behind(sender, seq, ts)
            return
        if self._cheap:
            self._accept_exact(sender, seq, ts)
            return
        with self._lock:
            state = self._state(sender)
            state.check(seq, ts)
            cover_ts = _TS_ALL - 1 if no_ts else ts
            if not self._txn and seq < state.lease_seq and cover_ts < state.lease_ts:
                state.window._mark(seq)  # the stored zone covers it
                self._dirty.add(sender)
                return
        with atomic(self._storage), self._lock:
            state = self._state(sender)
            state.check(seq, ts)
            window = state.window.copy()
            window._mark(seq)
            zone_seq = max(state.lease_seq, min(seq, _MAX_SEQ) + self._lease)
            lease_ts = _TS_ALL if no_ts else ts + self._lease_ms
            zone_ts = max(state.lease_ts, lease_ts)
            self._storage.put(
                f"{self._namespace}/{sender}", encode_record(window, zone_seq, zone_ts)
            )
            state.window = window
            state.lease_seq, state.lease_ts = zone_seq, zone_ts
            self._dirty.add(sender)

    def _accept_behind(self, sender: str, seq: int, ts: int) -> None:
        """``accept`` on the plain memory store: mark the window and leave the exact
        record to be written behind (see ``__init__``). The common case -- a new
        highest number -- is written out here rather than through ``check``/``_mark``,
        because it runs once per message."""
        with self._lock:  # (the memory store's own lock: reading it here is fine)
            state = self._states.get(sender)
            if state is None:
                self._load(sender)
                state = self._state(sender)
            window = state.window
            highest = window.highest
            if seq <= highest or seq - highest > MAX_JUMP or (
                seq < state.zone_seq and ts < state.zone_ts
            ):
                state.check(seq, ts)  # raises, or accepts a number inside the window
                window._mark(seq)
            else:  # slide forward to ``seq``, clearing the blocks passed over
                slide_mark(window._blocks, highest, seq)
                window.highest = seq
            render = state.render
            if render is None:
                render = state.render = state.record
            self._storage.put_behind(self._namespace + "/" + sender, render)  # type: ignore[attr-defined]

    def _accept_exact(self, sender: str, seq: int, ts: int) -> None:
        """``accept`` on another store with cheap writes: the exact record is written
        before the window in memory changes (a failed write changes nothing)."""
        with atomic(self._storage), self._lock:
            state = self._state(sender)
            state.check(seq, ts)
            window = state.window.copy()
            window._mark(seq)
            self._storage.put(
                self._namespace + "/" + sender,
                encode_record(window, state.zone_seq, state.zone_ts),
            )
            state.window = window
            state.lease_seq, state.lease_ts = state.zone_seq, state.zone_ts

    def flush(self) -> None:
        """Write the exact window of every sender recorded only under a lease (a clean
        shutdown; an SQLite store calls this when it closes)."""
        with atomic(self._storage), self._lock:
            for sender in sorted(self._dirty):
                state = self._states.get(sender)
                if state is not None:
                    self._write(sender, state, state.zone_seq, state.zone_ts)
                    state.lease_seq, state.lease_ts = state.zone_seq, state.zone_ts
            self._dirty.clear()

    def _commit_txn(self) -> None:
        """Commit hook: write every sender the transaction touched, exactly."""
        with self._lock:
            for sender in self._txn:
                state = self._states.get(sender)
                if state is not None:
                    self._write(sender, state, state.zone_seq, state.zone_ts)
                    state.lease_seq, state.lease_ts = state.zone_seq, state.zone_ts
                    self._dirty.discard(sender)
            self._txn.clear()

    def _rollback_txn(self) -> None:
        """Rollback hook: the storage forgot the transaction; so do the windows."""
        with self._lock:
            self._states.update(self._txn)
            self._txn.clear()

    def highest(self, sender: str) -> int:
        """Highest sequence accepted from ``sender`` (-1 when none)."""
        self._load(sender)
        with self._lock:
            return self._state(sender).window.highest

    def reset(self, sender: str) -> None:
        """Forget ``sender``'s window (an operator's repair after a sender lost its
        sequence counter, or after a bad jump): its next frame starts a new window.
        Frames accepted before can be replayed again until the freshness bound
        (``max_age``) rejects them, so reset only a sender that is known to restart."""
        if not isinstance(sender, str):
            raise TypeMismatch("sender must be a str")
        with atomic(self._storage), self._lock:
            self._storage.delete(f"{self._namespace}/{sender}")
            self._states.pop(sender, None)
            self._dirty.discard(sender)

    def senders(self) -> list[str]:
        """Every sender with a stored window, sorted."""
        prefix = f"{self._namespace}/"
        return sorted(k[len(prefix):] for k, _ in self._storage.items(prefix))
