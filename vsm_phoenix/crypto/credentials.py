"""What a principal needs to take part in a cluster, and how a cluster's secrets are made.

:class:`Credentials` is one principal's bundle: the cluster keyset (confidentiality
and "from inside the cluster"), its own :class:`~vsm_phoenix.crypto.identity.Identity`
("from whom") and the authority-signed
:class:`~vsm_phoenix.crypto.identity.Roster` ("who may claim which id, with which
roles").

:class:`ClusterSecrets` is the operator's side: it creates the authority, the keyset,
one identity per principal and the roster, and writes them as files::

    <dir>/keyset.json                 cluster keyset, Tink JSON         (mode 0600)
    <dir>/authority.json              the roster signing key            (0600; keep offline)
    <dir>/roster.cbor                 the signed roster                 (public)
    <dir>/<principal>.identity.json   one per node or client            (0600; give each
                                                                         principal only
                                                                         its own)
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterable, Mapping
from pathlib import Path

import attrs

from vsm_phoenix.crypto.identity import (
    ROLE_PEER,
    Authority,
    Identity,
    Roster,
    check_principal,
)
from vsm_phoenix.crypto.keyset import KeyKind, Keyset, KeyStatus
from vsm_phoenix.errors import DecodeError, InvalidArgument

__all__ = [
    "AUTHORITY_FILE",
    "KEYSET_FILE",
    "ROSTER_FILE",
    "ClusterSecrets",
    "Credentials",
    "identity_file",
    "write_atomically",
]

KEYSET_FILE = "keyset.json"
AUTHORITY_FILE = "authority.json"
ROSTER_FILE = "roster.cbor"
MAX_ROSTER_FILE = 4 * 1024 * 1024


def identity_file(principal: str) -> str:
    return f"{check_principal(principal)}.identity.json"


def _read_limited(path: str | os.PathLike[str], limit: int) -> bytes:
    with open(path, "rb") as fh:
        data = fh.read(limit + 1)
    if len(data) > limit:
        raise DecodeError(f"{path}: larger than {limit} bytes")
    return data


@attrs.frozen
class Credentials:
    """One principal's keyset, identity and roster; checked to fit together."""

    keyset: Keyset
    identity: Identity
    roster: Roster

    def __attrs_post_init__(self) -> None:
        if self.keyset.kind is not KeyKind.AES256_GCM:
            raise InvalidArgument("the cluster keyset must be AES256_GCM")
        member = self.roster.members.get(self.identity.principal)
        if member is None:
            raise InvalidArgument(
                f"{self.identity.principal!r} is not in the roster of {self.roster.cluster!r}"
            )
        if member.verify_key != self.identity.verify_key:
            raise InvalidArgument(
                f"the roster lists another public key for {self.identity.principal!r}"
            )

    @property
    def cluster(self) -> str:
        return self.roster.cluster

    @property
    def principal(self) -> str:
        return self.identity.principal

    @classmethod
    def load(
        cls,
        *,
        keyset: str | os.PathLike[str],
        identity: str | os.PathLike[str],
        roster: str | os.PathLike[str],
    ) -> Credentials:
        """Read the three files. ``OSError`` when one is missing or unreadable;
        ``DecodeError`` / ``AuthenticationError`` / ``InvalidArgument`` when one is
        malformed, forged or does not fit the others."""
        ks = Keyset.from_tink_json(_read_limited(keyset, 1024 * 1024))
        ident = Identity.load(identity)
        ros = Roster.from_bytes(_read_limited(roster, MAX_ROSTER_FILE))
        if ros.signed_by not in ros.authorities:
            raise DecodeError(f"{roster}: not signed by one of its own authorities")
        return cls(ks, ident, ros)

    @classmethod
    def from_dir(cls, directory: str | os.PathLike[str], principal: str) -> Credentials:
        """The credentials of ``principal`` from a directory written by
        :meth:`ClusterSecrets.write`."""
        d = Path(directory)
        return cls.load(keyset=d / KEYSET_FILE, identity=d / identity_file(principal),
                        roster=d / ROSTER_FILE)


@attrs.define
class ClusterSecrets:
    """The operator's view of a cluster: authority, keyset, identities and roster."""

    authority: Authority
    keyset: Keyset
    identities: dict[str, Identity]
    roster: Roster

    @classmethod
    def create(
        cls,
        cluster: str,
        *,
        nodes: Iterable[str],
        clients: Mapping[str, Iterable[str]] | None = None,
    ) -> ClusterSecrets:
        """New secrets for ``cluster``: every node gets the ``peer`` role; ``clients``
        maps a client principal to its roles (``read``, ``write`` or ``admin``)."""
        authority = Authority.generate()
        roles: dict[str, tuple[str, ...]] = {n: (ROLE_PEER,) for n in nodes}
        for name, client_roles in (clients or {}).items():
            if name in roles:
                raise InvalidArgument(f"{name!r} is both a node and a client")
            roles[name] = tuple(client_roles)
        identities = {p: Identity.generate(p) for p in roles}
        roster = authority.issue(
            cluster, {p: (identities[p].verify_key, r) for p, r in roles.items()}
        )
        return cls(authority, Keyset.generate(KeyKind.AES256_GCM), identities, roster)

    def credentials(self, principal: str) -> Credentials:
        return Credentials(self.keyset, self.identities[principal], self.roster)

    def reissue(
        self,
        *,
        add: Mapping[str, Iterable[str]] | None = None,
        remove: Iterable[str] = (),
        rekey: Iterable[str] = (),
        roles: Mapping[str, Iterable[str]] | None = None,
    ) -> Roster:
        """The next roster (serial + 1): add principals with roles (new identities),
        remove some, give some a new identity key, change some one's ``roles``. Updates
        ``self`` and returns it."""
        members = {p: (m.verify_key, m.roles) for p, m in self.roster.members.items()}
        for name, new_roles in (roles or {}).items():
            if name not in members:
                raise InvalidArgument(f"{name!r} is not in the roster")
            members[name] = (members[name][0], frozenset(new_roles))
        for name in remove:
            members.pop(name, None)
            self.identities.pop(name, None)
        for name in rekey:
            if name not in members:
                raise InvalidArgument(f"{name!r} is not in the roster")
            self.identities[name] = Identity.generate(name)
            members[name] = (self.identities[name].verify_key, members[name][1])
        for name, added_roles in (add or {}).items():
            self.identities[name] = Identity.generate(name)
            members[name] = (self.identities[name].verify_key, frozenset(added_roles))
        self.roster = self.authority.issue(self.roster.cluster, members,
                                           serial=self.roster.serial + 1)
        return self.roster

    @classmethod
    def read(cls, directory: str | os.PathLike[str]) -> ClusterSecrets:
        """Read a directory written by :meth:`write`: the authority, the keyset, the
        roster (which must be signed by that authority) and the identity file of every
        roster member present there (members exported elsewhere may be missing).
        ``OSError`` for a missing file; ``DecodeError`` / ``InvalidArgument`` for one
        that is malformed or does not fit the others."""
        d = Path(directory)
        authority = Authority.load(d / AUTHORITY_FILE)
        keyset = Keyset.from_tink_json(_read_limited(d / KEYSET_FILE, 1024 * 1024))
        roster = Roster.from_bytes(_read_limited(d / ROSTER_FILE, MAX_ROSTER_FILE))
        if roster.signed_by != authority.verify_key:
            raise InvalidArgument(f"{d / ROSTER_FILE} is not signed by {d / AUTHORITY_FILE}")
        identities: dict[str, Identity] = {}
        for principal, member in roster.members.items():
            path = d / identity_file(principal)
            if path.exists():
                ident = Identity.load(path)
                if ident.principal != principal or ident.verify_key != member.verify_key:
                    raise InvalidArgument(f"{path} does not match the roster")
                identities[principal] = ident
        return cls(authority, keyset, identities, roster)

    # -- two-phase keyset rotation -------------------------------------------------------
    def stage_key(self) -> int:
        """Phase 1 of a keyset rotation: add a fresh key that every node can open with
        but none seals with yet (not primary); returns its id. Restart every node with
        the new keyset, then :meth:`promote_key`."""
        old = self.keyset.primary_id
        new = self.keyset.rotate(now=time.time())
        self.keyset.set_primary(old)
        return new

    def promote_key(self, key_id: int | None = None) -> int:
        """Phase 2: make ``key_id`` (default: the newest enabled key) the primary, so
        nodes seal with it once restarted with this keyset; returns its id. The old key
        stays enabled so frames sealed before the switch still open."""
        if key_id is None:
            enabled = [k.key_id for k in self.keyset.keys if k.status is KeyStatus.ENABLED]
            key_id = enabled[-1]
        self.keyset.set_primary(key_id)
        return key_id

    def retire_key(self, key_id: int) -> None:
        """Phase 3 (once no frame sealed under ``key_id`` can still be in flight): stop
        the key from opening anything. The primary cannot be retired."""
        self.keyset.disable(key_id)

    def write(self, directory: str | os.PathLike[str]) -> Path:
        """Write every file (see the module doc), each replaced atomically; returns the
        directory (created with mode 0700 when new)."""
        d = Path(directory)
        d.mkdir(mode=0o700, parents=True, exist_ok=True)
        write_atomically(d / KEYSET_FILE, self.keyset.to_tink_json().encode(), 0o600)
        write_atomically(d / AUTHORITY_FILE, (self.authority.to_json() + "\n").encode(), 0o600)
        write_atomically(d / ROSTER_FILE, self.roster.to_bytes(), 0o644)
        for principal, ident in self.identities.items():
            write_atomically(d / identity_file(principal), (ident.to_json() + "\n").encode(), 0o600)
        return d


def write_atomically(path: str | os.PathLike[str], data: bytes, mode: int) -> None:
    """Write ``data`` to ``path`` atomically (a new file with ``mode``, then a rename):
    a crash leaves the old file or the new one, never half of one."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
