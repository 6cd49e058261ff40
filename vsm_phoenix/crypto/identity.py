"""Who is who: per-principal identity keys and the signed cluster roster.

Theory of operation
-------------------
A cluster's symmetric keyset says *that* a frame comes from inside the cluster; it
cannot say *who* sent it, because every member holds the same key. Identities fix that:

* Every principal -- a node (``n1``) or a control client (``ops``) -- has its own
  Ed25519 signing key, an :class:`Identity`, kept in a file only it can read.
* The cluster **authority** (an :class:`Authority`, an offline Ed25519 key held by the
  operator) signs a :class:`Roster`: for one cluster, a serial number and, per
  principal id, its public key and its roles. The roster is public: it is distributed
  to every node and client like a certificate list.
* A :class:`RosterBook` is a node's trust store: the roster it currently believes, and
  the rule for replacing it. A new roster is adopted only when it is for the same
  cluster, has a higher serial, and is signed by one of the current roster's
  ``authorities`` -- so rotating a member key, adding or removing a member, and even
  handing authority to a new key are all one signed, versioned act. The adopted roster
  is persisted, so an older roster can never be reinstated (rollback protection).

Roles say what a principal may ask for: ``peer`` (protocol traffic between nodes),
``read`` (queries and status), ``write`` (read, plus state changes), ``admin`` (write,
plus stopping a node, resetting a sender's replay window, installing a roster). A
client that may write state is not thereby allowed to stop a node.

Principal ids are 1..128 printable characters without whitespace and without ``#``.
A principal may speak in several *sessions* -- ``ops#3f2a…`` -- each with its own
sequence numbers (a command-line client has no durable sequence counter, so each run
is a new session); the session's key and roles are those of the principal before the
``#``.

Errors: malformed bytes -> :class:`~vsm_phoenix.errors.DecodeError`; a bad signature,
an unknown principal, a roster signed by someone without authority or for another
cluster -> :class:`~vsm_phoenix.errors.AuthenticationError`; a known principal asking
for what its roles do not allow -> :class:`~vsm_phoenix.errors.PermissionDenied`.
"""

from __future__ import annotations

import base64
import json
import os
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Final

import attrs

from vsm_phoenix import cbor
from vsm_phoenix.crypto.signature import SIGNATURE_SIZE, SigningKey, VerifyKey
from vsm_phoenix.crypto.storage import Storage, atomic
from vsm_phoenix.errors import (
    AuthenticationError,
    DecodeError,
    InvalidArgument,
    PermissionDenied,
    TypeMismatch,
)

__all__ = [
    "ROLES",
    "ROLE_ADMIN",
    "ROLE_PEER",
    "ROLE_READ",
    "ROLE_WRITE",
    "Authority",
    "Identity",
    "Member",
    "Roster",
    "RosterBook",
    "check_principal",
    "principal_of",
]

ROLE_PEER: Final = "peer"
ROLE_READ: Final = "read"
ROLE_WRITE: Final = "write"
ROLE_ADMIN: Final = "admin"
ROLES: Final = frozenset({ROLE_PEER, ROLE_READ, ROLE_WRITE, ROLE_ADMIN})
_IMPLIED: Final[Mapping[str, frozenset[str]]] = {
    ROLE_PEER: frozenset({ROLE_PEER}),
    ROLE_READ: frozenset({ROLE_READ}),
    ROLE_WRITE: frozenset({ROLE_WRITE, ROLE_READ}),
    ROLE_ADMIN: frozenset({ROLE_ADMIN, ROLE_WRITE, ROLE_READ}),
}
MAX_PRINCIPAL: Final = 128
MAX_MEMBERS: Final = 10_000
MAX_ROSTER_BYTES: Final = 4 * 1024 * 1024
_ROSTER_TAG: Final = "vsm-phoenix/roster"
_ROSTER_VERSION: Final = 1
_IDENTITY_TYPE: Final = "vsm-phoenix/identity"
_AUTHORITY_TYPE: Final = "vsm-phoenix/authority"
_STORE_KEY: Final = "identity/roster"


def check_principal(name: object) -> str:
    """A principal id: 1..128 printable characters, no whitespace, no ``#``."""
    if not isinstance(name, str):
        raise TypeMismatch(f"principal id must be a str, not {type(name).__name__}")
    if not 1 <= len(name) <= MAX_PRINCIPAL or not name.isprintable():
        raise InvalidArgument(f"principal id must be 1..{MAX_PRINCIPAL} printable characters")
    if "#" in name or any(c.isspace() for c in name):
        raise InvalidArgument("principal id must not contain '#' or whitespace")
    return name


def principal_of(sender: str) -> str:
    """The principal a sender name speaks for: ``ops#3f2a`` -> ``ops``."""
    return sender.partition("#")[0]


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _unb64(text: object, what: str) -> bytes:
    if not isinstance(text, str) or len(text) > 100:
        raise DecodeError(f"{what} must be a short base64 string")
    try:
        return base64.b64decode(text, validate=True)
    except ValueError:
        raise DecodeError(f"{what} is not valid base64") from None


def _write_secret(path: str | os.PathLike[str], text: str) -> None:
    """Write ``text`` to a new file readable by its owner only (mode 0600)."""
    target = Path(path)
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(text)
    os.chmod(target, 0o600)  # O_CREAT's mode does not apply to an existing file


def _read_json(text: str | bytes, kind: str) -> dict[str, Any]:
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError:
            raise DecodeError(f"{kind} file is not UTF-8") from None
    if len(text) > 64 * 1024:
        raise DecodeError(f"{kind} file is too large")
    try:
        doc = json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise DecodeError(f"{kind} file is not JSON: {type(exc).__name__}") from None
    if not isinstance(doc, dict) or doc.get("type") != f"vsm-phoenix/{kind}":
        raise DecodeError(f"not a vsm-phoenix {kind} file")
    if doc.get("version") != 1:
        raise DecodeError(f"unsupported {kind} file version")
    return doc


@attrs.frozen(repr=False)
class Identity:
    """A principal's id and its Ed25519 signing key (secret; ``repr`` hides it)."""

    principal: str = attrs.field(validator=lambda _i, _a, v: check_principal(v))
    signing_key: SigningKey = attrs.field(
        validator=attrs.validators.instance_of(SigningKey)
    )

    @classmethod
    def generate(cls, principal: str) -> Identity:
        return cls(principal, SigningKey.generate())

    @property
    def verify_key(self) -> VerifyKey:
        return self.signing_key.verify_key

    def sign(self, data: bytes) -> bytes:
        return self.signing_key.sign(data)

    def to_json(self) -> str:
        """The identity file's text (contains the secret key)."""
        return json.dumps(
            {
                "type": _IDENTITY_TYPE,
                "version": 1,
                "principal": self.principal,
                "public_key": _b64(self.verify_key.to_bytes()),
                "private_key": _b64(self.signing_key.to_bytes()),
            },
            indent=2,
        )

    @classmethod
    def from_json(cls, text: str | bytes) -> Identity:
        doc = _read_json(text, "identity")
        try:
            principal = check_principal(doc.get("principal"))
        except (TypeError, ValueError) as exc:
            raise DecodeError(f"identity file: {exc}") from None
        key = SigningKey.from_bytes(_unb64(doc.get("private_key"), "private_key"))
        public = doc.get("public_key")
        if public is not None and _unb64(public, "public_key") != key.verify_key.to_bytes():
            raise DecodeError("identity file: public key does not match the private key")
        return cls(principal, key)

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the identity file with mode 0600."""
        _write_secret(path, self.to_json() + "\n")

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Identity:
        with open(path, "rb") as fh:
            return cls.from_json(fh.read(64 * 1024 + 1))

    def __repr__(self) -> str:
        return f"Identity({self.principal!r}, public={self.verify_key.to_bytes().hex()[:16]}…)"


@attrs.frozen
class Member:
    """One principal's entry in a roster."""

    verify_key: VerifyKey
    roles: frozenset[str]

    def allows(self, role: str) -> bool:
        """Whether this member's roles grant ``role`` (admin ⊇ write ⊇ read)."""
        return any(role in _IMPLIED[r] for r in self.roles)


def _check_roles(roles: Iterable[object]) -> frozenset[str]:
    out = frozenset(roles)
    if not out or not out <= ROLES:
        raise InvalidArgument(f"roles must be a non-empty subset of {sorted(ROLES)}")
    return out  # type: ignore[return-value]


@attrs.frozen(eq=False)
class Roster:
    """The authority-signed list of principals of one cluster (see module doc).

    ``signed_by`` is the authority key that produced ``signature`` over the roster's
    body; constructing or decoding a roster checks that the signature verifies under
    ``signed_by``. Whether ``signed_by`` is *trusted* is the :class:`RosterBook`'s
    decision, not the roster's.
    """

    cluster: str
    serial: int
    issued_ms: int
    members: Mapping[str, Member]
    authorities: tuple[VerifyKey, ...]
    signed_by: VerifyKey
    signature: bytes

    @staticmethod
    def _body(
        cluster: str,
        serial: int,
        issued_ms: int,
        members: Mapping[str, Member],
        authorities: Iterable[VerifyKey],
    ) -> bytes:
        return cbor.dumps(
            [
                _ROSTER_TAG,
                _ROSTER_VERSION,
                cluster,
                serial,
                issued_ms,
                {p: [m.verify_key.to_bytes(), sorted(m.roles)] for p, m in members.items()},
                sorted(a.to_bytes() for a in authorities),
            ]
        )

    @property
    def body(self) -> bytes:
        """The signed bytes (canonical CBOR of everything but the signature)."""
        return self._body(self.cluster, self.serial, self.issued_ms, self.members,
                          self.authorities)

    def to_bytes(self) -> bytes:
        """``[body, signed_by, signature]`` as canonical CBOR."""
        return cbor.dumps([self.body, self.signed_by.to_bytes(), self.signature])

    @classmethod
    def from_bytes(cls, data: object) -> Roster:
        """Decode and check the signature under the roster's own ``signed_by``.

        ``DecodeError`` for malformed bytes, ``AuthenticationError`` when the signature
        does not verify. Trust in ``signed_by`` is decided by :class:`RosterBook`."""
        outer = cbor.loads(data, max_size=MAX_ROSTER_BYTES, wire=True)
        if not (isinstance(outer, list) and len(outer) == 3):
            raise DecodeError("roster must be [body, signed_by, signature]")
        body, signer_raw, signature = outer
        if not isinstance(body, bytes) or not isinstance(signature, bytes):
            raise DecodeError("roster body and signature must be byte strings")
        if len(signature) != SIGNATURE_SIZE:
            raise DecodeError("roster signature has the wrong length")
        signed_by = VerifyKey.from_bytes(_key_bytes(signer_raw))
        signed_by.verify(signature, body)  # before looking inside the body
        doc = cbor.loads(body, max_size=MAX_ROSTER_BYTES, wire=True)
        if not (isinstance(doc, list) and len(doc) == 7):
            raise DecodeError("roster body must be a 7-item array")
        tag, version, cluster, serial, issued_ms, members_raw, auth_raw = doc
        if tag != _ROSTER_TAG or type(version) is not int or version != _ROSTER_VERSION:
            raise DecodeError("not a version-1 vsm-phoenix roster")
        if not isinstance(cluster, str) or not 1 <= len(cluster) <= 100:
            raise DecodeError("roster cluster must be a 1..100 character string")
        for value, what in ((serial, "serial"), (issued_ms, "issued_ms")):
            if type(value) is not int or not 0 <= value < 2**63:
                raise DecodeError(f"roster {what} must be an integer in 0..2**63-1")
        if not isinstance(members_raw, dict) or len(members_raw) > MAX_MEMBERS:
            raise DecodeError(f"roster members must be a map of at most {MAX_MEMBERS}")
        members: dict[str, Member] = {}
        for principal, entry in members_raw.items():
            try:
                check_principal(principal)
            except (TypeError, ValueError) as exc:
                raise DecodeError(f"roster: {exc}") from None
            if not (isinstance(entry, list) and len(entry) == 2 and isinstance(entry[1], list)):
                raise DecodeError("roster member must be [public_key, roles]")
            if not all(isinstance(r, str) for r in entry[1]) or entry[1] != sorted(
                set(entry[1])
            ):
                raise DecodeError("roster roles must be sorted distinct strings")
            try:
                roles = _check_roles(entry[1])
            except InvalidArgument as exc:
                raise DecodeError(f"roster: {exc}") from None
            members[principal] = Member(VerifyKey.from_bytes(_key_bytes(entry[0])), roles)
        if not isinstance(auth_raw, list) or not 1 <= len(auth_raw) <= 16:
            raise DecodeError("roster must name 1..16 authority keys")
        authorities = tuple(VerifyKey.from_bytes(_key_bytes(a)) for a in auth_raw)
        if sorted(a.to_bytes() for a in authorities) != auth_raw or len(set(authorities)) != len(
            authorities
        ):
            raise DecodeError("roster authorities must be sorted and distinct")
        roster = cls(cluster, serial, issued_ms, members, authorities, signed_by, signature)
        if roster.body != body:  # pragma: no cover - canonical parse makes this unreachable
            raise DecodeError("roster body is not in canonical form")
        return roster

    # -- lookups -------------------------------------------------------------------------
    def member(self, sender: str) -> Member:
        """The entry of the principal ``sender`` speaks for (``AuthenticationError``
        when the roster does not list it)."""
        entry = self.members.get(principal_of(sender)) if isinstance(sender, str) else None
        if entry is None:
            raise AuthenticationError(f"{sender!r} is not in the roster of {self.cluster!r}")
        return entry

    def require(self, sender: str, role: str) -> Member:
        """The member ``sender`` speaks for, if its roles grant ``role``."""
        entry = self.member(sender)
        if not entry.allows(role):
            raise PermissionDenied(
                f"{principal_of(sender)!r} lacks the {role!r} role "
                f"(has {', '.join(sorted(entry.roles))})"
            )
        return entry

    def principals(self, role: str | None = None) -> list[str]:
        """The listed principals (those granted ``role`` when given), sorted."""
        return sorted(p for p, m in self.members.items() if role is None or m.allows(role))

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Roster):
            return NotImplemented
        return self.to_bytes() == other.to_bytes()

    def __hash__(self) -> int:
        return hash(self.to_bytes())


def _key_bytes(raw: object) -> bytes:
    if not isinstance(raw, bytes):
        raise DecodeError("a public key must be a byte string")
    return raw


@attrs.frozen(repr=False)
class Authority:
    """The cluster authority: the signing key that issues rosters (keep it offline)."""

    signing_key: SigningKey

    @classmethod
    def generate(cls) -> Authority:
        return cls(SigningKey.generate())

    @property
    def verify_key(self) -> VerifyKey:
        return self.signing_key.verify_key

    def issue(
        self,
        cluster: str,
        members: Mapping[str, tuple[VerifyKey, Iterable[str]]],
        *,
        serial: int = 1,
        authorities: Iterable[VerifyKey] | None = None,
        issued_ms: int | None = None,
    ) -> Roster:
        """Sign a roster. ``members`` maps principal -> (public key, roles);
        ``authorities`` (default: this authority) may sign the next serial."""
        if not isinstance(cluster, str) or not 1 <= len(cluster) <= 100:
            raise InvalidArgument("cluster name must be 1..100 characters")
        if type(serial) is not int or not 0 <= serial < 2**63:
            raise InvalidArgument("serial must be an integer in 0..2**63-1")
        if len(members) > MAX_MEMBERS:
            raise InvalidArgument(f"a roster lists at most {MAX_MEMBERS} principals")
        entries: dict[str, Member] = {}
        for principal, (key, roles) in members.items():
            check_principal(principal)
            if not isinstance(key, VerifyKey):
                raise TypeMismatch("member keys must be VerifyKey")
            entries[principal] = Member(key, _check_roles(roles))
        auth = tuple(authorities) if authorities is not None else (self.verify_key,)
        if not 1 <= len(set(auth)) == len(auth) <= 16:
            raise InvalidArgument("a roster names 1..16 distinct authority keys")
        issued = int(time.time() * 1000) if issued_ms is None else issued_ms
        body = Roster._body(cluster, serial, issued, entries, auth)
        return Roster(cluster, serial, issued, entries, auth, self.verify_key,
                      self.signing_key.sign(body))

    def to_json(self) -> str:
        return json.dumps(
            {
                "type": _AUTHORITY_TYPE,
                "version": 1,
                "public_key": _b64(self.verify_key.to_bytes()),
                "private_key": _b64(self.signing_key.to_bytes()),
            },
            indent=2,
        )

    @classmethod
    def from_json(cls, text: str | bytes) -> Authority:
        doc = _read_json(text, "authority")
        return cls(SigningKey.from_bytes(_unb64(doc.get("private_key"), "private_key")))

    def save(self, path: str | os.PathLike[str]) -> None:
        _write_secret(path, self.to_json() + "\n")

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Authority:
        with open(path, "rb") as fh:
            return cls.from_json(fh.read(64 * 1024 + 1))

    def __repr__(self) -> str:
        return f"Authority(public={self.verify_key.to_bytes().hex()[:16]}…)"


class RosterBook:
    """A principal's trust store: the roster it believes and how it may change.

    ``initial`` is the roster the operator gave (a file): it must be signed by one of
    its own authorities, or by one of ``pinned`` when authority keys are pinned. With a
    ``storage``, the adopted roster is persisted under ``identity/roster``; on start a
    persisted roster of the same cluster with a higher serial wins over ``initial``, so
    restarting a node with an old roster file cannot roll its trust back.
    """

    def __init__(
        self,
        initial: Roster,
        *,
        storage: Storage | None = None,
        pinned: Iterable[VerifyKey] | None = None,
    ) -> None:
        if not isinstance(initial, Roster):
            raise TypeMismatch("initial must be a Roster")
        anchors = tuple(pinned) if pinned is not None else initial.authorities
        if initial.signed_by not in anchors:
            raise AuthenticationError("the roster is not signed by a trusted authority")
        self._storage = storage
        current = initial
        if storage is not None:
            raw = storage.get(_STORE_KEY)
            if raw is not None:
                stored = Roster.from_bytes(raw)
                if stored.cluster == initial.cluster and stored.serial > initial.serial:
                    current = stored
                elif stored.serial == initial.serial and stored != initial:
                    raise AuthenticationError(
                        f"roster serial {initial.serial} differs from the one adopted before"
                    )
        self._current = current
        self._persist()

    @property
    def roster(self) -> Roster:
        return self._current

    @property
    def cluster(self) -> str:
        return self._current.cluster

    def _persist(self) -> None:
        if self._storage is not None:
            with atomic(self._storage):
                raw = self._current.to_bytes()
                if self._storage.get(_STORE_KEY) != raw:
                    self._storage.put(_STORE_KEY, raw)

    def adopt(self, candidate: Roster | bytes) -> bool:
        """Replace the roster by ``candidate`` if it is a valid successor; returns
        ``False`` when it is the roster already held. ``AuthenticationError`` (and no
        change) for another cluster, an older or conflicting serial, or a signer that is
        not among the current roster's authorities."""
        new = candidate if isinstance(candidate, Roster) else Roster.from_bytes(candidate)
        cur = self._current
        if new.cluster != cur.cluster:
            raise AuthenticationError(f"roster is for cluster {new.cluster!r}")
        if new.serial == cur.serial:
            if new == cur:
                return False
            raise AuthenticationError(f"a different roster with serial {new.serial}")
        if new.serial < cur.serial:
            raise AuthenticationError(f"roster serial {new.serial} is older than {cur.serial}")
        if new.signed_by not in cur.authorities:
            raise AuthenticationError("the new roster is not signed by a current authority")
        self._current = new
        self._persist()
        return True

    def member(self, sender: str) -> Member:
        return self._current.member(sender)

    def require(self, sender: str, role: str) -> Member:
        return self._current.require(sender, role)
