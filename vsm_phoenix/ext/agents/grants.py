"""Capability grants: which capabilities an agent may use, signed by the cluster authority.

An agent advertises capabilities in its SWIM metadata (an OR-Set that merges by join,
:class:`~vsm_phoenix.protocol.swim.Metadata`). Advertising is cheap and any member can
claim anything, so placement and the command router trust an advertised capability
only when a :class:`CapabilityGrant` covers it. A grant is ``[body, signer, signature]``
in canonical CBOR, in one of two versions:

=======  ===================================================  ===========================
version  body                                                 ``signer``
=======  ===================================================  ===========================
1        ``[TAG, 1, cluster, agent, capabilities, serial]``   an ``admin`` principal (str)
2        ``[TAG, 2, cluster, agent, capabilities, serial,     the cluster **authority**'s
         expires_ms]`` (``expires_ms``: int or null)          key (32 bytes), or an admin
=======  ===================================================  ===========================

``TAG`` is ``"vsm-phoenix/capability-grant"``: no other object the authority or an
admin signs (a roster, a command) starts with it, so a grant signature is valid as
nothing else. An authority-signed grant verifies against one of the roster's
``authorities`` -- the offline key that also signs the roster -- so an admin
principal's key, which lives on an online machine, cannot mint one.
:meth:`CapabilityGrant.issue` writes version 1 for an admin without expiry (the bytes
earlier releases wrote) and version 2 otherwise.

A :class:`GrantBook` keeps the highest-serial grant per agent; a grant with a lower or
equal serial is ignored, so **revoking** is issuing a new grant with fewer (or no)
capabilities, and an **expired** grant (``expires_ms`` at or before the caller's
``now_ms``) grants nothing. ``GrantBook(roster, authority_only=True)`` -- what the
command router requires -- refuses admin-signed grants.

Grants travel **through membership**: :func:`advertisement` turns a grant into one
capability string (``grant:`` + base64url of its bytes) that a member adds to its SWIM
metadata (``UpdateMetadata(add_capabilities=...)``); :meth:`GrantBook.learn` reads the
grants every live member advertises -- its own, or someone else's, e.g. an operator's
node spreading a revocation -- verifies each once, and keeps the newest per agent.

:func:`place` is task placement: the alive members that advertise *and* are granted
every required capability, least loaded first -- the membership layer's ``match()``
filtered by the grants.

Errors: malformed bytes -> ``DecodeError``; a bad signature, an unknown signer, a key
that is not one of the roster's authorities or another cluster ->
``AuthenticationError``; a signer without ``admin``, or an admin's grant offered to an
``authority_only`` book -> ``PermissionDenied``; bad arguments -> ``InvalidArgument`` /
``TypeMismatch``. A refused grant changes nothing.
"""

from __future__ import annotations

import base64
import binascii
import collections
from collections.abc import Iterable
from typing import Final

import attrs

from vsm_phoenix import cbor
from vsm_phoenix.crypto.identity import (
    ROLE_ADMIN,
    Authority,
    Identity,
    Roster,
    RosterBook,
    check_principal,
)
from vsm_phoenix.crypto.signature import SIGNATURE_SIZE, VerifyKey
from vsm_phoenix.errors import (
    AuthenticationError,
    DecodeError,
    InvalidArgument,
    PermissionDenied,
    TypeMismatch,
    VsmPhoenixError,
)
from vsm_phoenix.protocol.swim import SwimNode

__all__ = ["ADVERTISEMENT_PREFIX", "CapabilityGrant", "GrantBook", "advertisement",
           "check_capability", "place"]

GRANT_TAG: Final = "vsm-phoenix/capability-grant"
MAX_CAPABILITIES: Final = 256
MAX_CAPABILITY: Final = 64
MAX_GRANT_BYTES: Final = 64 * 1024
#: The prefix of a capability string that carries a grant (see :func:`advertisement`).
ADVERTISEMENT_PREFIX: Final = "grant:"
_MAX_MS: Final = 2**63 - 1
_KEY_SIZE: Final = 32


def check_capability(name: object) -> str:
    """A capability name: 1..64 printable characters without whitespace."""
    if not isinstance(name, str):
        raise TypeMismatch("a capability is a str")
    if not 1 <= len(name) <= MAX_CAPABILITY or not name.isprintable() or any(
            c.isspace() for c in name):
        raise InvalidArgument(f"a capability is 1..{MAX_CAPABILITY} printable characters "
                              "without whitespace")
    return name


def _authorities(roster: Roster | RosterBook) -> tuple[VerifyKey, ...]:
    return (roster.roster if isinstance(roster, RosterBook) else roster).authorities


@attrs.frozen
class CapabilityGrant:
    """A signed statement: ``agent`` may use ``capabilities`` (until ``expires_ms``).

    ``signer`` is the admin principal that signed it, or the authority's raw public
    key (32 bytes) for an authority-signed grant (:attr:`by_authority`)."""

    cluster: str
    agent: str
    capabilities: frozenset[str]
    serial: int
    signer: str | bytes
    signature: bytes
    expires_ms: int | None = None

    @property
    def by_authority(self) -> bool:
        return isinstance(self.signer, bytes)

    @property
    def version(self) -> int:
        return 1 if not self.by_authority and self.expires_ms is None else 2

    def expired(self, now_ms: int) -> bool:
        return self.expires_ms is not None and now_ms >= self.expires_ms

    @staticmethod
    def _body(version: int, cluster: str, agent: str, capabilities: Iterable[str],
              serial: int, expires_ms: int | None) -> bytes:
        doc: list[object] = [GRANT_TAG, version, cluster, agent, sorted(capabilities), serial]
        if version == 2:
            doc.append(expires_ms)
        return cbor.dumps(doc)

    @classmethod
    def issue(cls, signer: Identity | Authority, cluster: str, agent: str,
              capabilities: Iterable[str], serial: int, *,
              expires_ms: int | None = None) -> CapabilityGrant:
        """Sign a grant as ``signer``: the cluster :class:`Authority` (its key must be
        one of the verifier's roster ``authorities``), or an :class:`Identity` with
        ``admin`` in the verifier's roster. ``expires_ms``: when it stops granting."""
        if not isinstance(signer, Identity | Authority):
            raise TypeMismatch("signer must be an Identity or the cluster Authority")
        check_principal(agent)
        caps = frozenset(check_capability(c) for c in capabilities)
        if len(caps) > MAX_CAPABILITIES:
            raise InvalidArgument(f"a grant names at most {MAX_CAPABILITIES} capabilities")
        if type(serial) is not int or not 0 <= serial < 2**63:
            raise InvalidArgument("serial must be in 0..2**63-1")
        if expires_ms is not None and (type(expires_ms) is not int
                                       or not 0 <= expires_ms <= _MAX_MS):
            raise InvalidArgument("expires_ms must be None or an int in 0..2**63-1")
        if not isinstance(cluster, str) or not 1 <= len(cluster) <= 100:
            raise InvalidArgument("cluster must be 1..100 characters")
        who: str | bytes
        if isinstance(signer, Authority):
            who, sign = signer.verify_key.to_bytes(), signer.signing_key.sign
        else:
            who, sign = signer.principal, signer.sign
        version = 1 if isinstance(who, str) and expires_ms is None else 2
        body = cls._body(version, cluster, agent, caps, serial, expires_ms)
        return cls(cluster, agent, caps, serial, who, sign(body), expires_ms)

    def to_bytes(self) -> bytes:
        body = self._body(self.version, self.cluster, self.agent, self.capabilities,
                          self.serial, self.expires_ms)
        return cbor.dumps([body, self.signer, self.signature])

    @classmethod
    def from_bytes(cls, data: object, roster: Roster | RosterBook) -> CapabilityGrant:
        """Decode and verify against ``roster`` (see the module doc for the errors):
        the signature is checked before anything inside the body is looked at."""
        outer = cbor.loads(data, max_size=MAX_GRANT_BYTES, wire=True)
        if not (isinstance(outer, list) and len(outer) == 3):
            raise DecodeError("grant must be [body, signer, signature]")
        body, signer, signature = outer
        if not isinstance(body, bytes) or not isinstance(signature, bytes):
            raise DecodeError("grant body and signature must be byte strings")
        if len(signature) != SIGNATURE_SIZE:
            raise DecodeError("grant signature has the wrong length")
        if isinstance(signer, bytes):
            if len(signer) != _KEY_SIZE:
                raise DecodeError("grant signer key must be 32 bytes")
            key = next((a for a in _authorities(roster) if a.to_bytes() == signer), None)
            if key is None:
                raise AuthenticationError("grant signed by a key that is not a cluster "
                                          "authority")
        else:
            try:
                check_principal(signer)
            except (TypeError, ValueError) as exc:
                raise DecodeError(f"grant signer: {exc}") from None
            # AuthenticationError (unknown) / PermissionDenied (not an admin)
            key = roster.require(signer, ROLE_ADMIN).verify_key
        key.verify(signature, body)  # before looking inside the body
        doc = cbor.loads(body, max_size=MAX_GRANT_BYTES, wire=True)
        if not (isinstance(doc, list) and len(doc) in (6, 7)):
            raise DecodeError("grant body must be a 6- or 7-item array")
        tag, version = doc[0], doc[1]
        if tag != GRANT_TAG or type(version) is not int or version not in (1, 2) or len(
                doc) != 5 + version:
            raise DecodeError("not a version-1 or version-2 capability grant")
        if version == 1 and isinstance(signer, bytes):
            raise DecodeError("a version-1 grant is signed by an admin principal")
        cluster, agent, caps, serial = doc[2:6]
        expires = doc[6] if version == 2 else None
        if cluster != roster.cluster:
            raise AuthenticationError("grant is for another cluster")
        if type(serial) is not int or not 0 <= serial < 2**63:
            raise DecodeError("grant serial must be in 0..2**63-1")
        if expires is not None and (type(expires) is not int or not 0 <= expires <= _MAX_MS):
            raise DecodeError("grant expires_ms must be null or an int in 0..2**63-1")
        if not isinstance(caps, list) or len(caps) > MAX_CAPABILITIES:
            raise DecodeError(f"grant capabilities must be a list of at most "
                              f"{MAX_CAPABILITIES}")
        try:
            check_principal(agent)
            names = [check_capability(c) for c in caps]
        except (TypeError, ValueError) as exc:
            raise DecodeError(f"grant: {exc}") from None
        if names != sorted(set(names)):
            raise DecodeError("grant capabilities must be sorted and distinct")
        return cls(cluster, agent, frozenset(names), serial, signer, signature, expires)


def advertisement(grant: CapabilityGrant) -> str:
    """The capability string that carries ``grant`` through SWIM metadata."""
    if not isinstance(grant, CapabilityGrant):
        raise TypeMismatch("grant must be a CapabilityGrant")
    text = base64.urlsafe_b64encode(grant.to_bytes()).decode("ascii").rstrip("=")
    return ADVERTISEMENT_PREFIX + text


def _from_advertisement(text: str) -> bytes:
    raw = text[len(ADVERTISEMENT_PREFIX):]
    if len(raw) > (MAX_GRANT_BYTES * 4) // 3 + 4:
        raise DecodeError("grant advertisement too long")
    try:
        return base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4))
    except (binascii.Error, ValueError):
        raise DecodeError("grant advertisement is not base64url") from None


class GrantBook:
    """The newest grant per agent, checked against a roster (see the module doc)."""

    __slots__ = ("_grants", "_seen", "authority_only", "refused", "roster")

    def __init__(self, roster: Roster | RosterBook, *, authority_only: bool = False) -> None:
        if not isinstance(roster, Roster | RosterBook):
            raise TypeMismatch("roster must be a Roster or RosterBook")
        self.roster = roster
        self.authority_only = bool(authority_only)
        self._grants: dict[str, CapabilityGrant] = {}
        #: advertisement strings already judged (bounded), so learning is O(new)
        self._seen: collections.OrderedDict[str, None] = collections.OrderedDict()
        #: advertised grants refused by :meth:`learn`, by error class
        self.refused: dict[str, int] = {}

    def add(self, grant: CapabilityGrant | bytes) -> bool:
        """Adopt a grant (verified first, bytes or object); ``True`` when it is newer
        than the one held for its agent. Raises (and changes nothing) when it does not
        verify."""
        data = grant.to_bytes() if isinstance(grant, CapabilityGrant) else grant
        checked = CapabilityGrant.from_bytes(data, self.roster)
        if self.authority_only and not checked.by_authority:
            raise PermissionDenied("this grant book honours only grants signed by the "
                                   "cluster authority")
        held = self._grants.get(checked.agent)
        if held is not None and held.serial >= checked.serial:
            return False
        self._grants[checked.agent] = checked
        return True

    def grant(self, agent: str) -> CapabilityGrant | None:
        """The newest grant held for ``agent`` (expired or not)."""
        return self._grants.get(agent)

    def granted(self, agent: str, *, now_ms: int | None = None) -> frozenset[str]:
        """``agent``'s granted capabilities; none when its grant expired by ``now_ms``."""
        grant = self._grants.get(agent)
        if grant is None or (now_ms is not None and grant.expired(now_ms)):
            return frozenset()
        return grant.capabilities

    def effective(self, swim: SwimNode, agent: str, *,
                  now_ms: int | None = None) -> frozenset[str]:
        """What ``agent`` advertises in ``swim``'s view and is granted."""
        info = swim.member(agent)
        if info is None:
            return frozenset()
        return info.capabilities & self.granted(agent, now_ms=now_ms)

    def learn(self, swim: SwimNode, *, limit: int = 4096) -> int:
        """Adopt the grants advertised by ``swim``'s live members (see the module doc);
        how many were newer. A malformed or forged advertisement is counted in
        :attr:`refused` and otherwise ignored; each distinct string is judged once
        (the ``limit`` most recent are remembered)."""
        newer = 0
        for member in swim.alive_members():
            info = swim.member(member)
            if info is None:
                continue
            for cap in info.capabilities:
                if not cap.startswith(ADVERTISEMENT_PREFIX) or cap in self._seen:
                    continue
                self._seen[cap] = None
                if len(self._seen) > limit:
                    self._seen.popitem(last=False)
                try:
                    newer += self.add(_from_advertisement(cap))
                except VsmPhoenixError as exc:
                    name = type(exc).__name__
                    self.refused[name] = self.refused.get(name, 0) + 1
        return newer


def place(swim: SwimNode, grants: GrantBook, required: Iterable[str]) -> list[str]:
    """Alive members advertising and granted every capability in ``required``, least
    loaded first (ties by id): ``swim.match(required)`` filtered by ``grants``."""
    need = frozenset(check_capability(c) for c in required)
    return [m for m in swim.match(need) if need <= grants.granted(m)]
