"""AES-256-GCM over a keyset, in Tink's wire format, with a counted nonce budget.

Ciphertext layout (identical to Tink's AES-GCM with the TINK output prefix, so Tink opens
what we seal and the reverse)::

    0x01 || key_id (4 bytes, big-endian) || nonce (12) || ciphertext || tag (16)

Opening reads the key id from the prefix and uses that key if it is enabled and not
expired; the associated data is authenticated but not included.

Nonce scheme
------------
Nonces are 96 random bits from ``os.urandom`` (NIST SP 800-38D §8.2.2, "RBG-based
construction"). The OS generator is read 4 KiB at a time into a per-sealer buffer whose
bytes are each handed out exactly once, under the lock that already counts invocations:
this saves a system call and a lock per message. A forked child discards the buffer it
inherited (``os.register_at_fork``), so parent and child never share a nonce. Random
nonces need no coordination between threads, processes or machines that share a key,
but §8.3 caps the number of invocations of the encryption function under one key at
2**32, which keeps the probability of any nonce collision
below 2**-32. We count invocations per key:

* The count lives in :class:`~vsm_phoenix.crypto.storage.Storage` under
  ``aead/usage/<key id>``. To avoid a write per message the sealer *leases* blocks
  (``lease``, default 4096): before using invocation ``n`` it makes sure the persisted
  value is ``> n``, writing ``n + lease`` when it is not. After a restart counting
  resumes from the persisted value, so invocations are never under-counted (at most one
  unused lease per restart is over-counted).
* When the next invocation would reach ``soft_limit`` (default 2**30) the sealer
  rotates the keyset (:meth:`Keyset.rotate`) and seals under the new primary; the hook
  ``on_rotate`` tells the owner to persist and distribute the new keyset.
  ``hard_limit`` (2**32) is never crossed: a key that reached it raises
  :class:`~vsm_phoenix.errors.CapacityError` instead of sealing (only possible when the
  primary is not ours to rotate, i.e. ``auto_rotate=False``). A sealer whose keys are
  shared by a cluster must not rotate on its own -- a key only it holds would make every
  peer refuse what it seals -- so it runs with ``auto_rotate=False`` and a
  ``hard_limit`` of its budget: it stops sealing with ``CapacityError`` at the limit,
  and ``on_warn(key_id, used, limit)`` (called once per key, when a lease first
  reaches ``warn_at``) is the alarm that tells the operator to rotate the cluster's
  keyset before that happens.
* All counting happens under one lock; the encryption itself runs outside it. A lease
  write happens inside ``storage.transaction()`` when the storage has one, taken before
  our lock. If a *caller's* enclosing transaction rolls that write back and the process
  then crashes, up to one lease of invocations goes uncounted -- a bounded error against
  a limit we already keep a factor of 4 below (2**30 of 2**32).
* Several sealers sharing one key each count only their own invocations: give each its
  own budget (``soft_limit <= 2**32 / number of sealers``).
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from vsm_phoenix.crypto.keyset import (
    TINK_PREFIX_SIZE,
    TINK_START_BYTE,
    Key,
    KeyKind,
    Keyset,
)
from vsm_phoenix.crypto.storage import MemoryStorage, Storage, atomic
from vsm_phoenix.errors import (
    AuthenticationError,
    CapacityError,
    DecodeError,
    InvalidArgument,
    KeyExpiredError,
    TypeMismatch,
)

__all__ = [
    "DEFAULT_SOFT_LIMIT",
    "NIST_INVOCATION_LIMIT",
    "NONCE_SIZE",
    "OVERHEAD",
    "TAG_SIZE",
    "KeysetAead",
]

NONCE_SIZE = 12
_POOL_BYTES = 4096
TAG_SIZE = 16
OVERHEAD = TINK_PREFIX_SIZE + NONCE_SIZE + TAG_SIZE
NIST_INVOCATION_LIMIT = 2**32
DEFAULT_SOFT_LIMIT = 2**30


#: Bumped in a forked child: nonce buffers filled before the fork are thrown away.
_fork_epoch = 0


def _after_fork_in_child() -> None:
    global _fork_epoch
    _fork_epoch += 1


os.register_at_fork(after_in_child=_after_fork_in_child)
_USAGE_KEY = "aead/usage/{:08x}"


class KeysetAead:
    """Seal and open with the keyset's AES-256-GCM keys (see module doc for the nonce
    budget). Thread-safe."""

    __slots__ = (
        "_auto_rotate",
        "_clock",
        "_hard",
        "_hot_cipher",
        "_hot_expires",
        "_hot_id",
        "_hot_limit",
        "_hot_next",
        "_hot_prefix",
        "_lease",
        "_lock",
        "_next",
        "_nonce_buf",
        "_nonce_epoch",
        "_nonce_pos",
        "_on_rotate",
        "_on_warn",
        "_reserved",
        "_soft",
        "_storage",
        "_warn_at",
        "_warned",
        "keyset",
    )

    def __init__(
        self,
        keyset: Keyset,
        storage: Storage | None = None,
        *,
        clock: Callable[[], float] = time.time,
        soft_limit: int = DEFAULT_SOFT_LIMIT,
        hard_limit: int = NIST_INVOCATION_LIMIT,
        lease: int = 4096,
        auto_rotate: bool = True,
        on_rotate: Callable[[Keyset, int], None] | None = None,
        warn_at: int | None = None,
        on_warn: Callable[[int, int, int], None] | None = None,
    ) -> None:
        if not isinstance(keyset, Keyset):
            raise TypeMismatch("keyset must be a Keyset")
        if keyset.kind is not KeyKind.AES256_GCM:
            raise InvalidArgument("KeysetAead needs an AES256_GCM keyset")
        if not 0 < soft_limit <= hard_limit <= NIST_INVOCATION_LIMIT:
            raise InvalidArgument("need 0 < soft_limit <= hard_limit <= 2**32")
        if lease < 1:
            raise InvalidArgument("lease must be positive")
        if warn_at is not None and not 0 < warn_at <= hard_limit:
            raise InvalidArgument("need 0 < warn_at <= hard_limit")
        self.keyset = keyset
        self._storage: Storage = MemoryStorage() if storage is None else storage
        self._clock = clock
        self._soft = soft_limit
        self._hard = hard_limit
        self._lease = lease
        self._auto_rotate = auto_rotate
        self._on_rotate = on_rotate
        self._warn_at = warn_at
        self._on_warn = on_warn
        self._warned: set[int] = set()
        self._lock = threading.Lock()
        self._nonce_buf = b""
        self._nonce_pos = _POOL_BYTES  # (empty: the first nonce fills the buffer)
        self._nonce_epoch = _fork_epoch
        self._next: dict[int, int] = {}
        self._reserved: dict[int, int] = {}
        # Fast path (see ``encrypt``): the primary's id, prefix and cipher, and the count
        # below which sealing under it needs no storage write, rotation or expiry check.
        self._hot_id = -1
        self._hot_expires: float | None = None
        self._hot_next = 0
        self._hot_limit = 0
        self._hot_prefix = b""
        self._hot_cipher: AESGCM | None = None

    # ------------------------------------------------------------------ nonce budget

    def _persisted(self, key_id: int) -> int:
        raw = self._storage.get(_USAGE_KEY.format(key_id))
        if raw is None:
            return 0
        if len(raw) != 8:
            raise DecodeError(f"corrupt usage counter for key {key_id:#010x}")
        return int.from_bytes(raw, "big")

    def _charge(self, key_id: int) -> int:
        """Count one invocation under ``key_id`` (lock held); return the count before."""
        n = self._next.get(key_id)
        if n is None:
            n = self._reserved[key_id] = self._persisted(key_id)
        if n >= self._hard:
            raise CapacityError(f"key {key_id:#010x} reached its invocation limit")
        if n >= self._reserved[key_id]:
            reserved = min(n + self._lease, self._hard)
            self._storage.put(_USAGE_KEY.format(key_id), reserved.to_bytes(8, "big"))
            self._reserved[key_id] = reserved
            if (
                self._warn_at is not None
                and reserved >= self._warn_at
                and key_id not in self._warned
            ):
                self._warned.add(key_id)
                if self._on_warn is not None:
                    self._on_warn(key_id, n, self._hard)
        self._next[key_id] = n + 1
        return n

    def _flush_hot(self) -> None:
        """Write the fast path's counter back to ``_next`` and leave the fast path."""
        if self._hot_id != -1:
            self._next[self._hot_id] = self._hot_next
            self._hot_id = -1

    def _sealing_key_locked(self) -> Key:
        """Choose the sealing key (rotating if due) and charge one invocation to it."""
        self._flush_hot()
        now = self._clock()
        key = self.keyset.primary_for_sealing(now)
        if self._auto_rotate and self._count(key.key_id) >= self._soft:
            new_id = self.keyset.rotate(now=now, expires_at=key.expires_at)
            if self._on_rotate is not None:
                self._on_rotate(self.keyset, new_id)
            key = self.keyset.primary_for_sealing(now)
        self._charge(key.key_id)
        return key

    def _count(self, key_id: int) -> int:
        n = self._next.get(key_id)
        return self._persisted(key_id) if n is None else n

    def usage(self, key_id: int) -> int:
        """Invocations charged to ``key_id`` so far (including leased-but-unused ones
        from earlier incarnations)."""
        with self._lock:
            if key_id == self._hot_id:  # (counted on the fast path: keep it)
                return self._hot_next
        with atomic(self._storage), self._lock:
            self._flush_hot()
            return self._count(key_id)

    # ------------------------------------------------------------------ AEAD

    def encrypt(self, plaintext: bytes, associated_data: bytes = b"") -> bytes:
        """Seal under the primary key: ``prefix || nonce || ciphertext || tag``."""
        prefix, cipher, nonce = self._reserve()
        return prefix + nonce + cipher.encrypt(nonce, plaintext, associated_data)

    def _nonce_locked(self) -> bytes:
        """The next unused 12 bytes of the nonce buffer (caller holds ``_lock``)."""
        pos = self._nonce_pos
        if pos > _POOL_BYTES - NONCE_SIZE or self._nonce_epoch != _fork_epoch:
            self._nonce_buf, self._nonce_epoch, pos = os.urandom(_POOL_BYTES), _fork_epoch, 0
        self._nonce_pos = pos + NONCE_SIZE
        return self._nonce_buf[pos : pos + NONCE_SIZE]

    def _hot_room_locked(self) -> int:
        """How many invocations the fast path may still count (caller holds ``_lock``):
        ``0`` unless the primary is the cached one and not expired; otherwise what is
        left of the persisted lease below the rotation threshold or the limit."""
        if self._hot_id != self.keyset._primary or (
            self._hot_expires is not None and self._clock() >= self._hot_expires
        ):
            return 0
        return self._hot_limit - self._hot_next

    def charge(self, uses: int) -> None:
        """Count ``uses`` invocations of the sealing key without encrypting anything: a
        sealer that counts a use per *message* charges the other messages of a frame
        it seals as one (the seal counts the frame's own). Within the persisted lease
        this is one addition; where the lease, the rotation threshold or the limit
        ends it takes the slow path for one use, exactly as the next seal would (it
        may write the next lease, rotate when ``auto_rotate`` is set, or raise
        ``CapacityError`` with the uses before the limit counted), and goes on."""
        if type(uses) is not int or uses < 0:
            raise InvalidArgument("uses must be an int >= 0")
        while uses:
            with self._lock:
                room = self._hot_room_locked()
                if room > 0:  # the fast path's increments, added up
                    step = min(room, uses)
                    self._hot_next += step
                    uses -= step
                    continue
            self._reserve()  # the slow path: a lease, a rotation, the limit
            uses -= 1

    def _reserve(self) -> tuple[bytes, AESGCM, bytes]:
        """Charge one invocation to the sealing key; return its prefix, its cipher and a
        fresh nonce."""
        with self._lock:
            if self._hot_room_locked() > 0:
                # Fast path: same primary, not expired, inside the persisted lease and
                # below the rotation threshold -- counting is one increment, no storage.
                self._hot_next += 1
                assert self._hot_cipher is not None
                return self._hot_prefix, self._hot_cipher, self._nonce_locked()
        # Slow path: may write storage, so take its transaction before our lock.
        with atomic(self._storage), self._lock:
            key = self._sealing_key_locked()
            prefix, cipher = key.prefix, self.keyset._aesgcm(key)
            limit = self._soft if self._auto_rotate else self._hard
            self._hot_id, self._hot_next = key.key_id, self._next[key.key_id]
            self._hot_limit = min(self._reserved[key.key_id], limit)
            self._hot_prefix, self._hot_cipher = prefix, cipher
            self._hot_expires = key.expires_at
            return prefix, cipher, self._nonce_locked()

    def decrypt(self, ciphertext: bytes, associated_data: bytes = b"") -> bytes:
        """Open what any enabled, unexpired key of the keyset sealed.

        Truncated, tampered or forged -> ``AuthenticationError`` (``UnknownKeyError``
        when the prefix names a key we cannot use); expired key -> ``KeyExpiredError``.
        """
        if not isinstance(ciphertext, bytes):
            if not isinstance(ciphertext, bytearray | memoryview):
                raise TypeMismatch("ciphertext must be bytes")
            ciphertext = bytes(ciphertext)
        if len(ciphertext) < OVERHEAD:
            raise AuthenticationError("ciphertext truncated")
        hot = self.keyset._openers.get(ciphertext[:TINK_PREFIX_SIZE])
        if hot is None:
            if ciphertext[0] != TINK_START_BYTE:
                raise AuthenticationError("ciphertext has an unknown output prefix")
            key_id = int.from_bytes(ciphertext[1:5], "big")
            cipher = self.keyset._aesgcm(self.keyset.usable(key_id, self._clock()))
        else:
            cipher, expires_at = hot
            if expires_at is not None and self._clock() >= expires_at:
                raise KeyExpiredError(f"key {ciphertext[1:5].hex()} expired")
        try:  # (bytes slices: measured faster than memoryview slices here)
            return cipher.decrypt(ciphertext[5:17], ciphertext[17:], associated_data)
        except InvalidTag:
            raise AuthenticationError("ciphertext failed authentication") from None

    def decrypt_tail(self, data: bytes, start: int) -> bytes:
        """``decrypt(data[start:], data[:start])`` without copying the ciphertext out
        first: a sealed frame whose associated data is everything before its ciphertext
        (the channel's). ``data`` must be ``bytes`` and ``0 <= start <= len(data)``."""
        if len(data) - start < OVERHEAD:
            raise AuthenticationError("ciphertext truncated")
        hot = self.keyset._openers.get(data[start : start + TINK_PREFIX_SIZE])
        if hot is None:
            if data[start] != TINK_START_BYTE:
                raise AuthenticationError("ciphertext has an unknown output prefix")
            key_id = int.from_bytes(data[start + 1 : start + 5], "big")
            cipher = self.keyset._aesgcm(self.keyset.usable(key_id, self._clock()))
        else:
            cipher, expires_at = hot
            if expires_at is not None and self._clock() >= expires_at:
                raise KeyExpiredError(f"key {data[start + 1 : start + 5].hex()} expired")
        try:
            return cipher.decrypt(
                data[start + 5 : start + 17], data[start + 17 :], data[:start]
            )
        except InvalidTag:
            raise AuthenticationError("ciphertext failed authentication") from None

    @staticmethod
    def key_id_of(ciphertext: bytes) -> int:
        """The key id in a ciphertext's prefix (unauthenticated; ``DecodeError`` when the
        bytes do not start with a TINK prefix)."""
        if len(ciphertext) < TINK_PREFIX_SIZE or ciphertext[0] != TINK_START_BYTE:
            raise DecodeError("no TINK output prefix")
        return int.from_bytes(ciphertext[1:5], "big")
