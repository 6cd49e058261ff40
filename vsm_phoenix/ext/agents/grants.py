"""Capability grants: which capabilities an agent may advertise, signed by an admin.

An agent advertises capabilities in its SWIM metadata (an OR-Set that merges by join,
:class:`~vsm_phoenix.protocol.swim.Metadata`). Advertising is cheap and any member can
claim anything, so placement trusts an advertised capability only when a
:class:`CapabilityGrant` covers it: ``[body, signer, signature]`` in canonical CBOR,
``body`` = ``["vsm-phoenix/capability-grant", 1, cluster, agent, capabilities, serial]``,
signed by a roster principal with the ``admin`` role. A :class:`GrantBook` keeps the
highest-serial grant per agent; a grant with a lower or equal serial is ignored, so
revoking is issuing a new grant with fewer capabilities.

:func:`place` is task placement: the alive members that advertise *and* are granted
every required capability, least loaded first -- the membership layer's ``match()``
filtered by the grants.

Errors: malformed bytes -> ``DecodeError``; a bad signature, an unknown signer or
another cluster -> ``AuthenticationError``; a signer without ``admin`` ->
``PermissionDenied``; bad arguments -> ``InvalidArgument`` / ``TypeMismatch``.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Final

import attrs

from vsm_phoenix import cbor
from vsm_phoenix.crypto.identity import ROLE_ADMIN, Identity, Roster, RosterBook, check_principal
from vsm_phoenix.crypto.signature import SIGNATURE_SIZE
from vsm_phoenix.errors import (
    AuthenticationError,
    DecodeError,
    InvalidArgument,
    TypeMismatch,
)
from vsm_phoenix.protocol.swim import SwimNode

__all__ = ["CapabilityGrant", "GrantBook", "check_capability", "place"]

GRANT_TAG: Final = "vsm-phoenix/capability-grant"
MAX_CAPABILITIES: Final = 256
MAX_CAPABILITY: Final = 64
MAX_GRANT_BYTES: Final = 64 * 1024


def check_capability(name: object) -> str:
    """A capability name: 1..64 printable characters without whitespace."""
    if not isinstance(name, str):
        raise TypeMismatch("a capability is a str")
    if not 1 <= len(name) <= MAX_CAPABILITY or not name.isprintable() or any(
            c.isspace() for c in name):
        raise InvalidArgument(f"a capability is 1..{MAX_CAPABILITY} printable characters "
                              "without whitespace")
    return name


@attrs.frozen
class CapabilityGrant:
    """An admin's signed statement: ``agent`` may advertise ``capabilities``."""

    cluster: str
    agent: str
    capabilities: frozenset[str]
    serial: int
    signer: str
    signature: bytes

    @staticmethod
    def _body(cluster: str, agent: str, capabilities: Iterable[str], serial: int) -> bytes:
        return cbor.dumps([GRANT_TAG, 1, cluster, agent, sorted(capabilities), serial])

    @classmethod
    def issue(cls, signer: Identity, cluster: str, agent: str, capabilities: Iterable[str],
              serial: int) -> CapabilityGrant:
        """Sign a grant as ``signer`` (who needs ``admin`` in the verifier's roster)."""
        if not isinstance(signer, Identity):
            raise TypeMismatch("signer must be an Identity")
        check_principal(agent)
        caps = frozenset(check_capability(c) for c in capabilities)
        if len(caps) > MAX_CAPABILITIES:
            raise InvalidArgument(f"a grant names at most {MAX_CAPABILITIES} capabilities")
        if type(serial) is not int or not 0 <= serial < 2**63:
            raise InvalidArgument("serial must be in 0..2**63-1")
        if not isinstance(cluster, str) or not 1 <= len(cluster) <= 100:
            raise InvalidArgument("cluster must be 1..100 characters")
        body = cls._body(cluster, agent, caps, serial)
        return cls(cluster, agent, caps, serial, signer.principal, signer.sign(body))

    def to_bytes(self) -> bytes:
        body = self._body(self.cluster, self.agent, self.capabilities, self.serial)
        return cbor.dumps([body, self.signer, self.signature])

    @classmethod
    def from_bytes(cls, data: object, roster: Roster | RosterBook) -> CapabilityGrant:
        """Decode and verify against ``roster`` (see the module doc for the errors)."""
        outer = cbor.loads(data, max_size=MAX_GRANT_BYTES, wire=True)
        if not (isinstance(outer, list) and len(outer) == 3):
            raise DecodeError("grant must be [body, signer, signature]")
        body, signer, signature = outer
        if not isinstance(body, bytes) or not isinstance(signature, bytes):
            raise DecodeError("grant body and signature must be byte strings")
        if len(signature) != SIGNATURE_SIZE:
            raise DecodeError("grant signature has the wrong length")
        try:
            check_principal(signer)
        except (TypeError, ValueError) as exc:
            raise DecodeError(f"grant signer: {exc}") from None
        member = roster.require(signer, ROLE_ADMIN)  # AuthenticationError/PermissionDenied
        member.verify_key.verify(signature, body)  # before looking inside the body
        doc = cbor.loads(body, max_size=MAX_GRANT_BYTES, wire=True)
        if not (isinstance(doc, list) and len(doc) == 6):
            raise DecodeError("grant body must be a 6-item array")
        tag, version, cluster, agent, caps, serial = doc
        if tag != GRANT_TAG or type(version) is not int or version != 1:
            raise DecodeError("not a version-1 capability grant")
        if cluster != roster.cluster:
            raise AuthenticationError("grant is for another cluster")
        if type(serial) is not int or not 0 <= serial < 2**63:
            raise DecodeError("grant serial must be in 0..2**63-1")
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
        return cls(cluster, agent, frozenset(names), serial, signer, signature)


class GrantBook:
    """The newest grant per agent, checked against a roster."""

    __slots__ = ("_grants", "roster")

    def __init__(self, roster: Roster | RosterBook) -> None:
        self.roster = roster
        self._grants: dict[str, CapabilityGrant] = {}

    def add(self, grant: CapabilityGrant | bytes) -> bool:
        """Adopt a grant (bytes are verified first); ``True`` when it is newer."""
        if isinstance(grant, CapabilityGrant):
            grant = CapabilityGrant.from_bytes(grant.to_bytes(), self.roster)
        else:
            grant = CapabilityGrant.from_bytes(grant, self.roster)
        held = self._grants.get(grant.agent)
        if held is not None and held.serial >= grant.serial:
            return False
        self._grants[grant.agent] = grant
        return True

    def granted(self, agent: str) -> frozenset[str]:
        grant = self._grants.get(agent)
        return grant.capabilities if grant is not None else frozenset()

    def effective(self, swim: SwimNode, agent: str) -> frozenset[str]:
        """What ``agent`` advertises in ``swim``'s view and is granted."""
        info = swim.member(agent)
        return frozenset() if info is None else info.capabilities & self.granted(agent)


def place(swim: SwimNode, grants: GrantBook, required: Iterable[str]) -> list[str]:
    """Alive members advertising and granted every capability in ``required``, least
    loaded first (ties by id): ``swim.match(required)`` filtered by ``grants``."""
    need = frozenset(check_capability(c) for c in required)
    return [m for m in swim.match(need) if need <= grants.granted(m)]
