"""Symmetry reduction over declared groups of interchangeable nodes.

Theory of operation
-------------------
Some nodes of a cluster are interchangeable: five resource managers running the same
code, no decision depending on which is which. Two cluster states that differ only by
a renaming of such nodes have the same future up to that renaming, so a model checker
needs to explore one of them. The caller declares the *groups* (e.g. the RMs; a
coordinator stays outside every group); a permutation may map a group member only to
a member of the same group.

Each state gets a *canonical key*: the state renamed by one permutation chosen from
the state itself, not the minimum over all ``n!`` permutations. The choice sorts each
group's members by a *signature* that does not depend on names:

* the member's own local state with every group id masked (``*``), and
* every place where its id occurs in the state: in which node's local state (a node
  outside the groups by name, a group member by its masked state) or in which message
  in flight (masked), and at which path inside that key (through a set, the path
  records the masked element, not a position).

The member with the k-th smallest signature is renamed to the group's k-th id. This is
**sound** whatever the signatures: the key is always a renaming of the state itself,
so two states share a key only if one is a renaming of the other. It is **canonical**
(every renaming of a state gets the same key, so each orbit is explored once) when
members with equal signatures are interchangeable in that state — true whenever the
signature tells all non-interchangeable members apart, as in two-phase commit, and
otherwise the price is exploring some orbits more than once, never missing one.
Signatures are digests of a canonical serialization (sets sorted), so runs are
reproducible whatever ``PYTHONHASHSEED`` is.

Everything per local state or message (masked digests, occurrences, renamed keys) is
computed once and memoized by the checker's interned ids; per cluster state the work
is sorting a few integers.

Requirements for soundness (checked where possible by the model checker): nodes of a
group are built by one factory whose behaviour does not depend on their ids' order or
spelling; invariants are symmetric; scripted requests target whole groups or nodes
outside them; node ids occur in keys only as whole ``str`` values (never inside bytes
or as part of a longer string), and no other string in a key equals a node id. Keys are
normalised with :func:`freeze` (lists → tuples, sets → frozensets, dicts → frozensets of
items).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Hashable, Mapping, Sequence
from typing import Any

from vsm_phoenix.errors import TypeMismatch

__all__ = ["Canonicalizer", "freeze", "rename"]

_MASK = "\x00*"


def freeze(value: Any) -> Hashable:
    """A hashable, order-free normal form: lists/tuples → tuples, sets → frozensets,
    dicts → frozensets of ``(key, value)``; atoms unchanged. Raises
    :class:`~vsm_phoenix.errors.TypeMismatch` (a ``TypeError``) for an unhashable value
    it does not know how to normalise."""
    if isinstance(value, str | bytes | int | float | type(None)):
        return value
    if isinstance(value, tuple | list):
        return tuple(freeze(v) for v in value)
    if isinstance(value, set | frozenset):
        return frozenset(freeze(v) for v in value)
    if isinstance(value, dict):
        return frozenset((freeze(k), freeze(v)) for k, v in value.items())
    try:
        hash(value)
    except TypeError:
        raise TypeMismatch(f"cannot freeze a {type(value).__name__}") from None
    return value  # type: ignore[no-any-return]


def rename(value: Any, names: Mapping[str, str]) -> Any:
    """``value`` with every ``str`` that is a key of ``names`` replaced, inside tuples
    and frozensets (the shapes :func:`freeze` produces)."""
    if isinstance(value, str):
        return names.get(value, value)
    if isinstance(value, tuple):
        return tuple(rename(v, names) for v in value)
    if isinstance(value, frozenset):
        return frozenset(rename(v, names) for v in value)
    return value


def _digest(data: bytes) -> int:
    return int.from_bytes(hashlib.blake2b(data, digest_size=8).digest(), "big")


def _ser(value: Any, mask: frozenset[str]) -> bytes:
    """A canonical serialization with the names in ``mask`` replaced by ``*``."""
    if isinstance(value, str):
        return b"*" if value in mask else b"s" + value.encode("utf-8", "surrogatepass") + b"\x00"
    if isinstance(value, bool | int):
        return b"i" + str(int(value)).encode() + (b"t" if value is True else b"") + b";"
    if isinstance(value, bytes):
        return b"b" + str(len(value)).encode() + b":" + value
    if isinstance(value, tuple):
        return b"(" + b"".join(_ser(v, mask) for v in value) + b")"
    if isinstance(value, frozenset):
        return b"{" + b"".join(sorted(_ser(v, mask) for v in value)) + b"}"
    if value is None:
        return b"N"
    return b"r" + repr(value).encode("utf-8", "surrogatepass") + b"\x00"


def _occurrences(value: Any, names: frozenset[str], mask: frozenset[str], path: bytes,
                 out: dict[str, list[bytes]]) -> None:
    if isinstance(value, str):
        if value in names:
            out.setdefault(value, []).append(path)
    elif isinstance(value, tuple):
        for k, v in enumerate(value):
            _occurrences(v, names, mask, path + b"%d." % k, out)
    elif isinstance(value, frozenset):
        for v in value:
            _occurrences(v, names, mask, path + b"{" + _ser(v, mask) + b"}.", out)


class _Profile:
    """What symmetry needs of one local state or message: the digest of its masked
    form and, per group id occurring in it, the sorted digests of the paths."""

    __slots__ = ("masked", "occurs")

    def __init__(self, masked: int, occurs: dict[str, tuple[int, ...]]) -> None:
        self.masked = masked
        self.occurs = occurs


class Canonicalizer:
    """Canonical keys of cluster states whose parts are interned ids.

    ``node_ids`` name the positions; ``groups`` are tuples of positions. The checker
    supplies ``local_part(lid) -> (position, key, extra)`` for a local-state id (``key``
    is renamed, ``extra`` — timers, store — is kept as is and hashed) and
    ``message_part(mid) -> (recipient position, key)``.
    """

    def __init__(
        self,
        node_ids: Sequence[str],
        groups: Sequence[Sequence[int]],
        local_part: Callable[[int], tuple[int, Hashable, Hashable]],
        message_part: Callable[[int], tuple[int, Hashable]],
    ) -> None:
        self.node_ids = tuple(node_ids)
        self.groups = [tuple(g) for g in groups]
        self._member = {p for g in self.groups for p in g}
        self._names = frozenset(self.node_ids[p] for p in self._member)
        self._local_part = local_part
        self._message_part = message_part
        self._local_profiles: dict[int, _Profile] = {}
        self._msg_profiles: dict[int, _Profile] = {}
        self._perm_ids: dict[tuple[int, ...], int] = {}
        self._perms: list[tuple[int, ...]] = []
        self._ren_local: dict[tuple[int, int], int] = {}
        self._ren_msg: dict[tuple[int, int], int] = {}
        self._canon_local: dict[Hashable, int] = {}
        self._canon_msg: dict[Hashable, int] = {}

    # -- per interned part, once ----------------------------------------------------
    def _profile(self, value: Any, extra: bytes) -> _Profile:
        occ: dict[str, list[bytes]] = {}
        _occurrences(value, self._names, self._names, b"", occ)
        occurs = {r: tuple(sorted(_digest(p) for p in paths)) for r, paths in occ.items()}
        return _Profile(_digest(_ser(value, self._names) + extra), occurs)

    def _local(self, lid: int) -> _Profile:
        prof = self._local_profiles.get(lid)
        if prof is None:
            _pos, key, extra = self._local_part(lid)
            prof = self._profile(key, _ser(extra, frozenset()))
            self._local_profiles[lid] = prof
        return prof

    def _message(self, mid: int) -> _Profile:
        prof = self._msg_profiles.get(mid)
        if prof is None:
            dst, key = self._message_part(mid)
            name = self.node_ids[dst]
            to = b"*" if name in self._names else name.encode()
            prof = self._profile(key, b"->" + to)
            if name in self._names:
                occurs = dict(prof.occurs)
                occurs[name] = (*occurs.get(name, ()), -1)  # -1: "addressed to it"
                prof = _Profile(prof.masked, occurs)
            self._msg_profiles[mid] = prof
        return prof

    # -- per state ---------------------------------------------------------------------
    def key(self, locals_: tuple[int, ...], net: Sequence[int]) -> tuple[Hashable, ...]:
        """The canonical key of the state ``(locals_, net)`` (see the module docstring)."""
        ids = self.node_ids
        # Where each member occurs, as sortable int tuples (no str hashing: reproducible).
        found: dict[str, list[tuple[int, ...]]] = {ids[p]: [] for p in self._member}
        profiles = [self._local(lid) for lid in locals_]
        for p, prof in enumerate(profiles):
            if not prof.occurs:
                continue
            name = ids[p]
            owner = (0, prof.masked) if name in found else (1, p)
            for r, paths in prof.occurs.items():
                found[r].append((2, *paths) if r == name else (*owner, *paths))
        for mid in net:
            prof = self._message(mid)
            for r, paths in prof.occurs.items():
                found[r].append((3, prof.masked, *paths))
        perm = list(range(len(ids)))
        for group in self.groups:
            ranked = sorted(group, key=lambda p: (profiles[p].masked,
                                                  tuple(sorted(found[ids[p]])), p))
            for target, source in zip(group, ranked, strict=True):
                perm[source] = target
        perm_t = tuple(perm)
        pid = self._perm_ids.get(perm_t)
        if pid is None:
            pid = len(self._perms)
            self._perm_ids[perm_t] = pid
            self._perms.append(perm_t)
        canon: list[int] = [0] * len(locals_)
        for p, lid in enumerate(locals_):
            canon[perm_t[p]] = self._renamed_local(lid, pid)
        msgs = sorted(self._renamed_msg(mid, pid) for mid in net)
        return (tuple(canon), tuple(msgs))

    def _names_of(self, pid: int) -> dict[str, str]:
        perm = self._perms[pid]
        ids = self.node_ids
        return {ids[p]: ids[perm[p]] for p in self._member if perm[p] != p}

    def _renamed_local(self, lid: int, pid: int) -> int:
        got = self._ren_local.get((lid, pid))
        if got is None:
            pos, key, extra = self._local_part(lid)
            names = self._names_of(pid)
            item = (self._perms[pid][pos], rename(key, names) if names else key, extra)
            got = self._canon_local.setdefault(item, len(self._canon_local))
            self._ren_local[(lid, pid)] = got
        return got

    def _renamed_msg(self, mid: int, pid: int) -> int:
        got = self._ren_msg.get((mid, pid))
        if got is None:
            dst, key = self._message_part(mid)
            names = self._names_of(pid)
            item = (self._perms[pid][dst], rename(key, names) if names else key)
            got = self._canon_msg.setdefault(item, len(self._canon_msg))
            self._ren_msg[(mid, pid)] = got
        return got
