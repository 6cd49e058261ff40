"""OR-Map: keys mapped to nested CRDTs, observed-remove keys, ever-merging values."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any, Self, TypeVar

from vsm_phoenix.crdt import codec
from vsm_phoenix.crdt._base import CRDT
from vsm_phoenix.crdt._domain import (
    Atom,
    atom_from_wire,
    atom_key,
    atom_to_wire,
    check_atom,
    check_replica,
)
from vsm_phoenix.crdt.sets import ORSet
from vsm_phoenix.errors import InvalidArgument, TypeMismatch

__all__ = ["MAX_NESTING", "ORMap"]

C = TypeVar("C", bound=CRDT)

#: Deepest chain of ORMaps inside ORMaps that ``update`` builds. Each level costs four
#: CBOR containers and a leaf at most about 40 (32-deep tuple elements), so the deepest
#: map (100 levels, 32-deep tuple keys at every level, the deepest leaf state inside)
#: stays under the parser's depth cap (``vsm_phoenix.cbor.MAX_DEPTH``, 512):
#: whatever can be built can be decoded.
MAX_NESTING = 100


def nesting(value: CRDT) -> int:
    """How many ORMaps deep ``value`` is (0 for any other CRDT)."""
    if not isinstance(value, ORMap):
        return 0
    return 1 + max((nesting(v) for v in value._values.values()), default=0)


class ORMap(CRDT):
    """A map from atom keys to nested CRDTs of any type.

    *Presence* is an add-wins observed-remove set of keys (an :class:`ORSet`):
    every ``update`` mints a dot for its key; ``remove(key)`` cancels the dots it has
    observed, so an update concurrent with a remove keeps the key (add-wins).

    *Values* always merge: each key's nested CRDT is joined with every state it meets,
    whether or not the key is present. ``remove`` hides a key; it does not reset the
    nested value, so a later ``update`` of that key revives the accumulated value
    joined with the new changes. (Riak-style reset-remove would need per-dot nested
    state; this map keeps the simpler, always-convergent rule.)

    A key holds one CRDT type for its whole life: updating or joining a key with a
    different type raises ``TypeError`` and changes nothing.

    ``value`` is ``{key: nested.value}`` over the present keys.
    """

    TAG = "ormap"
    __slots__ = ("_presence", "_values")

    def __init__(self) -> None:
        self._presence = ORSet()
        self._values: dict[Atom, CRDT] = {}

    @classmethod
    def _raw(cls, presence: ORSet, values: dict[Atom, CRDT]) -> Self:
        obj = cls.__new__(cls)
        obj._presence, obj._values = presence, values
        return obj

    def update(
        self,
        replica: str,
        key: Atom,
        kind: type[C],
        mutate: Callable[[C], C],
    ) -> ORMap:
        """Apply ``mutate`` to the value under ``key`` (a ``kind()`` if new) and mark
        the key present with a fresh dot of ``replica``; returns the delta.

        A chain of maps nested more than :data:`MAX_NESTING` levels deep is refused
        with ``ValueError`` (``InvalidArgument``), the map unchanged: it could be
        encoded but not decoded.

        ``mutate`` receives a working copy of the nested CRDT and must return the delta
        of the mutation it applied (what the nested mutator returned), e.g.
        ``m.update("r1", "likes", GCounter, lambda c: c.increment("r1"))``. If
        ``mutate`` raises, the map is unchanged and the exception propagates.
        """
        check_replica(replica)
        check_atom(key)
        if not (isinstance(kind, type) and issubclass(kind, CRDT)) or inspect.isabstract(kind):
            raise TypeMismatch(f"kind must be a concrete CRDT class, got {kind!r}")
        current = self._values.get(key)
        if current is not None and type(current) is not kind:
            raise TypeMismatch(
                f"key {key!r} holds a {type(current).__name__}, not a {kind.__name__}"
            )
        work: C = current.copy() if current is not None else kind()
        child_delta = mutate(work)
        if type(child_delta) is not kind:
            raise TypeMismatch(
                f"mutate must return the {kind.__name__} delta, got {type(child_delta).__name__}"
            )
        if isinstance(work, ORMap) and nesting(work) >= MAX_NESTING:
            raise InvalidArgument(
                f"maps nested deeper than {MAX_NESTING} levels could not be decoded; "
                f"the map is unchanged"
            )
        if child_delta is work:
            # mutate returned its working copy rather than a delta: ship a snapshot so the
            # delta never aliases the stored state.
            child_delta = work.copy()
        # Commit: nothing below can fail (the arguments were checked above).
        presence_delta = self._presence.add(replica, key)
        self._values[key] = work
        return ORMap._raw(presence_delta, {key: child_delta})

    def remove(self, key: Atom) -> ORMap:
        """Hide ``key`` as observed here; returns the delta (bottom if absent)."""
        return ORMap._raw(self._presence.remove(key), {})

    def get(self, key: Atom) -> CRDT | None:
        """A copy of the nested CRDT under a present ``key`` (``None`` if absent)."""
        if key not in self._presence:
            return None
        return self._values[key].copy()

    def __contains__(self, key: object) -> bool:
        return key in self._presence

    def __len__(self) -> int:
        return len(self._presence)

    def keys(self) -> frozenset[Atom]:
        """The present keys."""
        return self._presence.value

    @property
    def value(self) -> dict[Atom, Any]:
        return {k: self._values[k].value for k in self._presence._store}

    # -- CRDT plumbing ---------------------------------------------------------------

    def _check_compatible(self, other: Self) -> None:
        for k, v in other._values.items():
            mine = self._values.get(k)
            if mine is None:
                continue
            if type(mine) is not type(v):
                raise TypeMismatch(
                    f"key {k!r}: cannot join {type(mine).__name__} with {type(v).__name__}"
                )
            mine._check_compatible(v)

    def _join_into(self, other: Self) -> None:
        self._presence._join_into(other._presence)
        for k, v in other._values.items():
            mine = self._values.get(k)
            if mine is None:
                self._values[k] = v.copy()
            else:
                mine._join_into(v)

    def _leq(self, other: Self) -> bool:
        if not self._presence._leq(other._presence):
            return False
        for k, v in self._values.items():
            theirs = other._values.get(k)
            if theirs is None or not v._leq(theirs):
                return False
        return True

    def _eq_state(self, other: Self) -> bool:
        return (
            self._presence._eq_state(other._presence)
            and self._values.keys() == other._values.keys()
            and all(
                type(v) is type(other._values[k]) and v._eq_state(other._values[k])
                for k, v in self._values.items()
            )
        )

    def copy(self) -> Self:
        return self._raw(self._presence.copy(), {k: v.copy() for k, v in self._values.items()})

    def _encode_state(self) -> Any:
        # Layout (format 1): [presence dot store, presence context, values].
        values = [
            [atom_to_wire(k), [v.TAG, v.VERSION, v._encode_state()]]
            for k, v in sorted(self._values.items(), key=lambda kv: atom_key(kv[0]))
        ]
        return [*self._presence._encode_state(), values]

    @classmethod
    def _from_state(cls, state: Any) -> Self:
        if not (isinstance(state, list) and len(state) == 3 and isinstance(state[2], list)):
            raise ValueError("expected [keys, context, values]")
        presence = ORSet._from_state(state[:2])
        values: dict[Atom, CRDT] = {}
        for item in state[2]:
            if not (isinstance(item, list) and len(item) == 2):
                raise ValueError("expected [key, nested]")
            k = atom_from_wire(item[0])
            nested = item[1]
            if not (isinstance(nested, list) and len(nested) == 3):
                raise ValueError("nested value must be [tag, version, state]")
            tag, version, inner = nested
            if not isinstance(tag, str) or type(version) is not int:
                raise ValueError("bad nested tag or version")
            values[k] = codec.class_for(tag)._decode_state(version, inner)
        missing = [k for k in presence._store if k not in values]
        if missing:
            raise ValueError(f"present keys without a value: {missing[:3]!r}")
        return cls._raw(presence, values)
