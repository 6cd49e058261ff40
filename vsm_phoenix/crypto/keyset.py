"""Keysets: keys with ids, one primary, rotation, expiry, and their two storage formats.

Theory of operation
-------------------
A :class:`Keyset` holds keys of one :class:`KeyKind` (AES-256-GCM *or* HMAC-SHA256, as in
Tink, where a keyset serves one primitive). Each :class:`Key` has a random 32-bit id
(the id travels in the 5-byte Tink output prefix ``0x01 || key_id`` of every ciphertext
and tag), a :class:`KeyStatus` and an optional expiry time.

* Exactly one key is the *primary*: new messages are sealed under it. The primary is
  always ``ENABLED``.
* ``rotate(now=...)`` adds a fresh key and makes it primary; older enabled keys still
  open (verify) what they sealed (tagged) until they are disabled, destroyed or expire.
* ``disable`` keeps the material (``enable`` brings the key back); ``destroy`` drops the
  material for good and keeps only the id (so the id is never reused).
* A key with ``expires_at <= now`` opens nothing and seals nothing
  (:class:`~vsm_phoenix.errors.KeyExpiredError`). Time is whatever clock the caller
  passes as ``now`` (seconds); the keyset never reads a clock itself.

A keyset is mutable and thread-safe (one lock). Formats:

* Tink's cleartext JSON keyset (``to_tink_json`` / ``from_tink_json``), TINK output
  prefix only, for tests and local development. Tink has no expiry field, so expiry is
  not exported there, and destroyed keys are omitted.
* An encrypted-at-rest blob (``to_encrypted`` / ``from_encrypted``): the keyset as
  canonical CBOR, sealed with AES-256-GCM under a 32-byte master key. Layout::

      b"VKS1" || nonce (12) || AES-GCM(master, nonce, cbor, aad=b"VKS1" || caller aad)

Errors: malformed input -> :class:`~vsm_phoenix.errors.DecodeError`; a wrong master key or
a tampered blob -> :class:`~vsm_phoenix.errors.AuthenticationError`; unknown, disabled or
destroyed id -> :class:`~vsm_phoenix.errors.KeyNotFoundError` (when the id came out of a
message, the subclass :class:`UnknownKeyError`, which is also an
:class:`~vsm_phoenix.errors.AuthenticationError`: an id we do not hold is
indistinguishable from a forged one).
"""

from __future__ import annotations

import base64
import binascii
import enum
import json
import os
import secrets
import threading
from collections.abc import Iterable
from typing import Any

import attrs
import cbor2
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from vsm_phoenix import cbor
from vsm_phoenix.crypto import _tinkproto
from vsm_phoenix.errors import (
    AuthenticationError,
    DecodeError,
    InvalidArgument,
    KeyExpiredError,
    KeyNotFoundError,
    TypeMismatch,
)

__all__ = [
    "AES_GCM_TYPE_URL",
    "HMAC_TYPE_URL",
    "TINK_PREFIX_SIZE",
    "TINK_START_BYTE",
    "Key",
    "KeyKind",
    "KeyStatus",
    "Keyset",
    "UnknownKeyError",
]

AES_GCM_TYPE_URL = "type.googleapis.com/google.crypto.tink.AesGcmKey"
HMAC_TYPE_URL = "type.googleapis.com/google.crypto.tink.HmacKey"
TINK_START_BYTE = 0x01
TINK_PREFIX_SIZE = 5
_BLOB_MAGIC = b"VKS1"
_BLOB_FORMAT = 1
_MAX_KEYS = 4096
_MIN_HMAC_KEY = 16
_MIN_TAG, _MAX_TAG = 10, 32


class UnknownKeyError(KeyNotFoundError, AuthenticationError):
    """A message names a key id this keyset cannot use (unknown, disabled or destroyed).

    Both a :class:`KeyNotFoundError` (what happened) and an :class:`AuthenticationError`
    (what it means for a message: it cannot be authenticated, and a forged or bit-flipped
    id looks exactly like this)."""


class KeyKind(enum.Enum):
    """The primitive a key serves."""

    AES256_GCM = "AES256_GCM"
    HMAC_SHA256 = "HMAC_SHA256"

    @property
    def type_url(self) -> str:
        return AES_GCM_TYPE_URL if self is KeyKind.AES256_GCM else HMAC_TYPE_URL


class KeyStatus(enum.Enum):
    """Tink's key states. Only ``ENABLED`` keys seal, open, tag or verify."""

    ENABLED = "ENABLED"
    DISABLED = "DISABLED"
    DESTROYED = "DESTROYED"


def _check_material(kind: KeyKind, material: bytes, tag_size: int) -> None:
    if kind is KeyKind.AES256_GCM:
        if len(material) != 32:
            raise DecodeError(f"AES-256-GCM key must be 32 bytes, got {len(material)}")
    else:
        if len(material) < _MIN_HMAC_KEY:
            raise DecodeError(f"HMAC key must be at least {_MIN_HMAC_KEY} bytes")
        if not _MIN_TAG <= tag_size <= _MAX_TAG:
            raise DecodeError(f"HMAC-SHA256 tag size must be {_MIN_TAG}..{_MAX_TAG}")


@attrs.frozen
class Key:
    """One key. ``material`` is ``None`` once destroyed; ``tag_size`` is the HMAC tag
    length in bytes (0 for AEAD keys). ``expires_at`` is in the caller's clock, seconds."""

    key_id: int
    kind: KeyKind
    status: KeyStatus
    material: bytes | None = attrs.field(repr=False)
    expires_at: float | None = None
    tag_size: int = 0

    def expired(self, now: float) -> bool:
        return self.expires_at is not None and now >= self.expires_at

    @property
    def prefix(self) -> bytes:
        """The Tink output prefix ``0x01 || key_id (4 bytes, big-endian)``."""
        return bytes([TINK_START_BYTE]) + self.key_id.to_bytes(4, "big")


class Keyset:
    """A mutable, thread-safe set of keys of one kind with one primary (see module doc)."""

    __slots__ = ("_keys", "_lock", "_openers", "_primary", "kind")

    def __init__(self, kind: KeyKind, keys: Iterable[Key], primary_id: int) -> None:
        if not isinstance(kind, KeyKind):
            raise TypeMismatch("kind must be a KeyKind")
        self.kind = kind
        self._lock = threading.RLock()
        self._keys: dict[int, Key] = {}
        # Hot path for opening: ``Tink prefix -> (cipher, expires_at)`` for ENABLED keys
        # only; entries are dropped (under the lock) whenever a key leaves ENABLED.
        self._openers: dict[bytes, tuple[AESGCM, float | None]] = {}
        for key in keys:
            if key.kind is not kind:
                raise InvalidArgument(f"key {key.key_id} is {key.kind.value}, not {kind.value}")
            if key.key_id in self._keys:
                raise InvalidArgument(f"duplicate key id {key.key_id}")
            if not 0 <= key.key_id <= 0xFFFFFFFF:
                raise InvalidArgument(f"key id out of uint32 range: {key.key_id}")
            if (key.material is None) != (key.status is KeyStatus.DESTROYED):
                raise InvalidArgument("exactly the destroyed keys have no material")
            if key.material is not None:
                try:
                    _check_material(kind, key.material, key.tag_size)
                except DecodeError as exc:
                    raise InvalidArgument(str(exc)) from None
            self._keys[key.key_id] = key
        if len(self._keys) > _MAX_KEYS:
            raise InvalidArgument(f"at most {_MAX_KEYS} keys per keyset")
        primary = self._keys.get(primary_id)
        if primary is None or primary.status is not KeyStatus.ENABLED:
            raise InvalidArgument("the primary must be an enabled key of the keyset")
        self._primary = primary_id

    # ------------------------------------------------------------------ creation

    @classmethod
    def generate(
        cls, kind: KeyKind, *, expires_at: float | None = None, tag_size: int = 32
    ) -> Keyset:
        """A new keyset with one fresh primary key."""
        key = _new_key(kind, set(), expires_at, tag_size)
        return cls(kind, [key], key.key_id)

    def rotate(self, *, now: float, expires_at: float | None = None) -> int:
        """Add a fresh key, make it primary, return its id. Old keys stay as they are.
        ``expires_at`` must lie after ``now``."""
        if expires_at is not None and expires_at <= now:
            raise InvalidArgument("a new key must not be born expired")
        with self._lock:
            if len(self._keys) >= _MAX_KEYS:
                raise InvalidArgument(f"at most {_MAX_KEYS} keys per keyset")
            tag_size = self._keys[self._primary].tag_size or 32
            key = _new_key(self.kind, set(self._keys), expires_at, tag_size)
            self._keys[key.key_id] = key
            self._primary = key.key_id
            return key.key_id

    # ------------------------------------------------------------------ state changes

    def set_primary(self, key_id: int) -> None:
        """Make an enabled key the primary."""
        with self._lock:
            key = self._get(key_id)
            if key.status is not KeyStatus.ENABLED:
                raise InvalidArgument(f"key {key_id} is {key.status.value}, not ENABLED")
            self._primary = key_id

    def enable(self, key_id: int) -> None:
        """Re-enable a disabled key (a destroyed key cannot come back)."""
        with self._lock:
            key = self._get(key_id)
            if key.status is KeyStatus.DESTROYED:
                raise InvalidArgument(f"key {key_id} is destroyed")
            self._keys[key_id] = attrs.evolve(key, status=KeyStatus.ENABLED)

    def disable(self, key_id: int) -> None:
        """Stop a key from opening anything; its material is kept."""
        self._demote(key_id, KeyStatus.DISABLED)

    def destroy(self, key_id: int) -> None:
        """Drop a key's material for good (the id stays reserved)."""
        self._demote(key_id, KeyStatus.DESTROYED)

    def _demote(self, key_id: int, status: KeyStatus) -> None:
        with self._lock:
            key = self._get(key_id)
            if key_id == self._primary:
                raise InvalidArgument("cannot disable or destroy the primary; rotate first")
            if key.status is KeyStatus.DESTROYED:
                return
            material = None if status is KeyStatus.DESTROYED else key.material
            self._keys[key_id] = attrs.evolve(key, status=status, material=material)
            self._openers.pop(key.prefix, None)

    # ------------------------------------------------------------------ queries

    @property
    def primary(self) -> Key:
        with self._lock:
            return self._keys[self._primary]

    @property
    def primary_id(self) -> int:
        return self._primary

    @property
    def keys(self) -> tuple[Key, ...]:
        """Every key, in insertion order."""
        with self._lock:
            return tuple(self._keys.values())

    def key(self, key_id: int) -> Key:
        """The key with this id, whatever its status (KeyNotFoundError when absent)."""
        with self._lock:
            return self._get(key_id)

    def _get(self, key_id: int) -> Key:
        try:
            return self._keys[key_id]
        except (KeyError, TypeError):
            raise KeyNotFoundError(f"no key with id {key_id!r}") from None

    def usable(self, key_id: int, now: float) -> Key:
        """The key a message names, if it may be used now. ``UnknownKeyError`` when it is
        absent, disabled or destroyed; ``KeyExpiredError`` when past expiry."""
        key = self._keys.get(key_id)
        if key is None or key.status is not KeyStatus.ENABLED:
            raise UnknownKeyError(f"no enabled key with id {key_id:#010x}")
        if key.expired(now):
            raise KeyExpiredError(f"key {key_id:#010x} expired")
        return key

    def primary_for_sealing(self, now: float) -> Key:
        """The primary key, or ``KeyExpiredError`` when it has expired (rotate first)."""
        key = self.primary
        if key.expired(now):
            raise KeyExpiredError(f"primary key {key.key_id:#010x} expired; rotate")
        return key

    def _aesgcm(self, key: Key) -> AESGCM:
        """The cached AES-GCM object of an ENABLED key (checked again under the lock, so
        a concurrent ``disable`` cannot leave a stale entry behind)."""
        hot = self._openers.get(key.prefix)
        if hot is not None:
            return hot[0]
        with self._lock:
            current = self._keys.get(key.key_id)
            if current is None or current.status is not KeyStatus.ENABLED:
                raise UnknownKeyError(f"no enabled key with id {key.key_id:#010x}")
            assert current.material is not None
            cipher = AESGCM(current.material)
            self._openers[key.prefix] = (cipher, current.expires_at)
            return cipher

    def __repr__(self) -> str:
        return (
            f"Keyset(kind={self.kind.value}, primary={self._primary:#010x}, "
            f"keys={[(k.key_id, k.status.value) for k in self.keys]})"
        )

    # ------------------------------------------------------------------ Tink JSON

    def to_tink_json(self) -> str:
        """Tink's cleartext JSON keyset (no expiry; destroyed keys omitted)."""
        entries = []
        for key in self.keys:
            if key.material is None:
                continue
            if self.kind is KeyKind.AES256_GCM:
                value = _tinkproto.encode_aes_gcm_key(key.material)
            else:
                value = _tinkproto.encode_hmac_key(key.material, key.tag_size)
            entries.append(
                {
                    "keyData": {
                        "typeUrl": self.kind.type_url,
                        "value": base64.b64encode(value).decode("ascii"),
                        "keyMaterialType": "SYMMETRIC",
                    },
                    "status": key.status.value,
                    "keyId": key.key_id,
                    "outputPrefixType": "TINK",
                }
            )
        return json.dumps({"primaryKeyId": self._primary, "key": entries}, indent=2)

    @classmethod
    def from_tink_json(cls, text: str | bytes) -> Keyset:
        """Parse Tink's cleartext JSON keyset (AesGcmKey or HmacKey, SHA256, TINK prefix).
        Anything else, or anything malformed, raises ``DecodeError``."""
        try:
            doc = json.loads(text, object_pairs_hook=_no_duplicates)
        except (ValueError, TypeError, RecursionError) as exc:
            raise DecodeError(f"keyset JSON: {exc}") from None
        if not isinstance(doc, dict) or not isinstance(doc.get("key"), list):
            raise DecodeError("keyset JSON: expected an object with a 'key' list")
        primary = doc.get("primaryKeyId")
        if not _is_u32(primary):
            raise DecodeError("keyset JSON: primaryKeyId must be a uint32")
        entries = doc["key"]
        if not entries or len(entries) > _MAX_KEYS:
            raise DecodeError("keyset JSON: 1..4096 keys required")
        keys = [_parse_tink_entry(entry) for entry in entries]
        kinds = {k.kind for k in keys}
        if len(kinds) != 1:
            raise DecodeError("keyset JSON: keys of mixed types")
        assert isinstance(primary, int)
        try:
            return cls(kinds.pop(), keys, primary)
        except InvalidArgument as exc:
            raise DecodeError(f"keyset JSON: {exc}") from None

    # ------------------------------------------------------------------ encrypted blob

    def to_encrypted(self, master_key: bytes, associated_data: bytes = b"") -> bytes:
        """The whole keyset (statuses and expiry included) sealed under ``master_key``."""
        master = _master(master_key)
        entries = [
            [k.key_id, k.status.value, k.material, k.expires_at, k.tag_size] for k in self.keys
        ]
        plain = cbor2.dumps([_BLOB_FORMAT, self.kind.value, self._primary, entries], canonical=True)
        nonce = os.urandom(12)
        return _BLOB_MAGIC + nonce + master.encrypt(nonce, plain, _BLOB_MAGIC + associated_data)

    @classmethod
    def from_encrypted(cls, blob: bytes, master_key: bytes, associated_data: bytes = b"") -> Keyset:
        """Inverse of :meth:`to_encrypted`. Wrong master key or tampering ->
        ``AuthenticationError``; not a keyset blob -> ``DecodeError``."""
        master = _master(master_key)
        if not isinstance(blob, bytes | bytearray | memoryview):
            raise DecodeError("keyset blob must be bytes")
        blob = bytes(blob)
        if blob[:4] != _BLOB_MAGIC:
            raise DecodeError("not an encrypted keyset blob (bad magic)")
        if len(blob) < 4 + 12 + 16:
            raise AuthenticationError("keyset blob truncated")
        try:
            plain = master.decrypt(blob[4:16], blob[16:], _BLOB_MAGIC + associated_data)
        except InvalidTag:
            raise AuthenticationError("keyset blob: wrong master key or tampered") from None
        return cls._from_cbor(plain)

    @classmethod
    def _from_cbor(cls, plain: bytes) -> Keyset:
        try:
            doc = cbor.loads(plain, wire=True)
        except DecodeError as exc:
            raise DecodeError(f"keyset blob: {exc}") from None
        if not (isinstance(doc, list) and len(doc) == 4 and doc[0] == _BLOB_FORMAT):
            raise DecodeError("keyset blob: unsupported format")
        _, kind_name, primary, entries = doc
        try:
            kind = KeyKind(kind_name)
        except (ValueError, TypeError):
            raise DecodeError("keyset blob: unknown key kind") from None
        if not isinstance(entries, list) or not _is_u32(primary):
            raise DecodeError("keyset blob: malformed")
        keys = []
        for entry in entries:
            if not (isinstance(entry, list) and len(entry) == 5):
                raise DecodeError("keyset blob: malformed key entry")
            key_id, status, material, expires_at, tag_size = entry
            if not (
                _is_u32(key_id)
                and isinstance(status, str)
                and (material is None or isinstance(material, bytes))
                and (expires_at is None or _is_number(expires_at))
                and type(tag_size) is int
            ):
                raise DecodeError("keyset blob: malformed key entry")
            try:
                st = KeyStatus(status)
            except ValueError:
                raise DecodeError("keyset blob: unknown key status") from None
            keys.append(Key(key_id, kind, st, material, expires_at, tag_size))
        try:
            return cls(kind, keys, primary)
        except InvalidArgument as exc:
            raise DecodeError(f"keyset blob: {exc}") from None


# ---------------------------------------------------------------------- helpers


def _new_key(kind: KeyKind, taken: set[int], expires_at: float | None, tag_size: int) -> Key:
    if kind is KeyKind.HMAC_SHA256 and not _MIN_TAG <= tag_size <= _MAX_TAG:
        raise InvalidArgument(f"tag_size must be {_MIN_TAG}..{_MAX_TAG}")
    while True:
        key_id = secrets.randbits(32)
        if key_id and key_id not in taken:
            break
    return Key(
        key_id=key_id,
        kind=kind,
        status=KeyStatus.ENABLED,
        material=os.urandom(32),
        expires_at=expires_at,
        tag_size=tag_size if kind is KeyKind.HMAC_SHA256 else 0,
    )


def _master(master_key: bytes) -> AESGCM:
    if not isinstance(master_key, bytes):
        raise TypeMismatch("master_key must be bytes")
    if len(master_key) != 32:
        raise InvalidArgument("master_key must be 32 bytes (AES-256)")
    return AESGCM(master_key)


def _is_u32(value: object) -> bool:
    return type(value) is int and 0 <= value <= 0xFFFFFFFF


def _is_number(value: object) -> bool:
    return type(value) in (int, float) and value == value  # excludes NaN


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, value in pairs:
        if name in out:
            raise ValueError(f"duplicate member {name!r}")
        out[name] = value
    return out


def _short(value: object) -> str:
    """An untrusted JSON value for an error message: short strings verbatim, anything
    else by type (a deep or huge value must not cost more than the parse did)."""
    if isinstance(value, str) and len(value) <= 100:
        return repr(value)
    return f"<{type(value).__name__}>"


def _parse_tink_entry(entry: object) -> Key:
    if not isinstance(entry, dict):
        raise DecodeError("keyset JSON: key entry must be an object")
    data = entry.get("keyData")
    key_id = entry.get("keyId")
    status = entry.get("status")
    if not isinstance(data, dict) or not _is_u32(key_id) or not isinstance(status, str):
        raise DecodeError("keyset JSON: key entry needs keyData, keyId and status")
    if entry.get("outputPrefixType") != "TINK":
        raise DecodeError("keyset JSON: only outputPrefixType TINK is supported")
    if data.get("keyMaterialType", "SYMMETRIC") != "SYMMETRIC":
        raise DecodeError("keyset JSON: keyMaterialType must be SYMMETRIC")
    try:
        st = KeyStatus(status)
    except ValueError:
        raise DecodeError(f"keyset JSON: unknown status {_short(status)}") from None
    if st is KeyStatus.DESTROYED:
        raise DecodeError("keyset JSON: destroyed keys are not importable")
    value = data.get("value")
    if not isinstance(value, str):
        raise DecodeError("keyset JSON: keyData.value must be a base64 string")
    try:
        raw = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise DecodeError("keyset JSON: keyData.value is not base64") from None
    url = data.get("typeUrl")
    if url == AES_GCM_TYPE_URL:
        material = _tinkproto.decode_aes_gcm_key(raw)
        kind, tag_size = KeyKind.AES256_GCM, 0
    elif url == HMAC_TYPE_URL:
        material, hash_type, tag_size = _tinkproto.decode_hmac_key(raw)
        if hash_type != _tinkproto.HASH_SHA256:
            raise DecodeError("keyset JSON: only HMAC with SHA256 is supported")
        kind = KeyKind.HMAC_SHA256
    else:
        raise DecodeError(f"keyset JSON: unsupported typeUrl {_short(url)}")
    _check_material(kind, material, tag_size)
    assert isinstance(key_id, int)
    return Key(key_id, kind, st, material, None, tag_size)
