"""Registers: last-writer-wins (:class:`LWWRegister`) and multi-value (:class:`MVRegister`)."""

from __future__ import annotations

from typing import Any, Self

from vsm_phoenix.crdt import _backend as K
from vsm_phoenix.crdt._base import CRDT
from vsm_phoenix.crdt._domain import (
    Atom,
    atom_from_wire,
    atom_key,
    atom_to_wire,
    check_atom,
    check_replica,
    wire_count,
    wire_replica,
)
from vsm_phoenix.crdt._dots import pack, unpack
from vsm_phoenix.crdt.causal import CausalContext
from vsm_phoenix.crdt.clocks import Timestamp

__all__ = ["LWWRegister", "MVRegister"]


class LWWRegister(CRDT):
    """Last-writer-wins register over HLC :class:`Timestamp` s.

    The write with the greatest timestamp wins. Timestamps from different replicas
    never tie (the replica id is part of the order); if a caller reuses one timestamp
    for two different values, the value with the greater canonical CBOR bytes wins, so
    every replica picks the same one. Bottom holds no write: ``value`` is ``None``.
    """

    TAG = "lwwreg"
    __slots__ = ("_key", "_ts", "_value")

    def __init__(self) -> None:
        self._ts: Timestamp | None = None
        self._value: Atom = None
        self._key = b""

    @classmethod
    def _raw(cls, ts: Timestamp | None, value: Atom) -> Self:
        obj = cls.__new__(cls)
        obj._ts, obj._value = ts, value
        obj._key = atom_key(value) if ts is not None else b""
        return obj

    def assign(self, value: Atom, timestamp: Timestamp) -> LWWRegister:
        """Write ``value`` at ``timestamp``; returns the delta (that write). A write
        older than the current one changes nothing here (its delta is still valid)."""
        check_atom(value)
        Timestamp.check(timestamp)
        delta = LWWRegister._raw(timestamp, value)
        self._join_into(delta)
        return delta

    @property
    def value(self) -> Atom:
        return self._value

    @property
    def timestamp(self) -> Timestamp | None:
        """The timestamp of the winning write (``None`` at bottom)."""
        return self._ts

    def _rank(self) -> tuple[Timestamp, bytes] | None:
        return None if self._ts is None else (self._ts, self._key)

    def _join_into(self, other: Self) -> None:
        theirs = other._rank()
        if theirs is None:
            return
        mine = self._rank()
        if mine is None or theirs > mine:
            self._ts, self._value, self._key = other._ts, other._value, other._key

    def _leq(self, other: Self) -> bool:
        mine, theirs = self._rank(), other._rank()
        return mine is None or (theirs is not None and mine <= theirs)

    def _eq_state(self, other: Self) -> bool:
        return self._rank() == other._rank()

    def copy(self) -> Self:
        return self._raw(self._ts, self._value)

    def _encode_state(self) -> Any:
        if self._ts is None:
            return []
        return [self._ts.to_wire(), atom_to_wire(self._value)]

    @classmethod
    def _from_state(cls, state: Any) -> Self:
        if state == []:
            return cls()
        if not (isinstance(state, list) and len(state) == 2):
            raise ValueError("expected [] or [timestamp, value]")
        return cls._raw(Timestamp.from_wire(state[0]), atom_from_wire(state[1]))


class MVRegister(CRDT):
    """Multi-value register: keeps every concurrent maximal write.

    State: a *dot function* (dot → value) and a causal context. ``assign`` mints a
    fresh dot and supersedes every write this replica has seen; writes that did not see
    each other survive side by side until a later write sees them all. ``value`` is
    the frozenset of surviving values (empty at bottom).

    Representation: the dot function is a ``dict`` keyed by packed dots (one ``int``
    per dot, :mod:`vsm_phoenix.crdt._dots`), as the OR-Set's dot store is. Packed dots
    never leave the process: the encoding writes ``[replica, counter]`` pairs in
    canonical order, and a register pickles through its canonical bytes.

    Two states holding the same dot with different values (a replica id reused after
    losing its state) join deterministically: the value with the greater canonical
    bytes wins, on every replica.
    """

    TAG = "mvreg"
    __slots__ = ("_ctx", "_store")

    def __init__(self) -> None:
        self._store: dict[int, Atom] = {}
        self._ctx = CausalContext()

    @classmethod
    def _raw(cls, store: dict[int, Atom], ctx: CausalContext) -> Self:
        obj = cls.__new__(cls)
        obj._store, obj._ctx = store, ctx
        return obj

    def assign(self, replica: str, value: Atom) -> MVRegister:
        """Write ``value`` with a fresh dot of ``replica``; returns the delta."""
        check_replica(replica)
        check_atom(value)
        dot = self._ctx.next_dot(replica)
        d = (dot.replica, dot.counter)
        p = pack(*d)
        seen = {unpack(x) for x in self._store}
        seen.add(d)
        delta = MVRegister._raw({p: value}, CausalContext._of_dots(seen))
        self._store = {p: value}
        self._ctx._add(*d)
        return delta

    @property
    def value(self) -> frozenset[Atom]:
        return frozenset(self._store.values())

    @property
    def _writes(self) -> dict[tuple[str, int], Atom]:
        """The writes keyed by ``(replica, counter)`` tuples (a new mapping; for models
        and debugging)."""
        return {unpack(d): v for d, v in self._store.items()}

    def _join_into(self, other: Self) -> None:
        a, b = self._ctx, other._ctx
        self._store = K.dotfun_join(self._store, a.vv, a.cloud, other._store, b.vv, b.cloud)
        a._join_into(b)

    def _leq(self, other: Self) -> bool:
        if not self._ctx._leq(other._ctx):
            return False
        a, b = self._ctx, other._ctx
        joined = K.dotfun_join(self._store, a.vv, a.cloud, other._store, b.vv, b.cloud)
        return bool(joined == other._store)

    def _eq_state(self, other: Self) -> bool:
        return self._store == other._store and self._ctx._eq_state(other._ctx)

    def copy(self) -> Self:
        return self._raw(dict(self._store), self._ctx.copy())

    def __deepcopy__(self, memo: dict[int, Any]) -> Self:
        return self.copy()

    def __reduce__(self) -> tuple[Any, ...]:
        # Packed dots name replicas by their index in this process's table: a pickle
        # carries the canonical bytes instead.
        return (type(self).from_bytes, (self.to_bytes(),))

    def _encode_state(self) -> Any:
        writes = sorted((unpack(d), v) for d, v in self._store.items())
        return [[[[r, c], atom_to_wire(v)] for (r, c), v in writes], self._ctx._encode_state()]

    @classmethod
    def _from_state(cls, state: Any) -> Self:
        if not (isinstance(state, list) and len(state) == 2 and isinstance(state[0], list)):
            raise ValueError("expected [writes, context]")
        ctx = CausalContext._from_state(state[1])
        writes: dict[tuple[str, int], Atom] = {}
        for item in state[0]:
            if not (isinstance(item, list) and len(item) == 2):
                raise ValueError("expected [dot, value]")
            raw = item[0]
            if not (isinstance(raw, list) and len(raw) == 2):
                raise ValueError("a dot is [replica, counter]")
            d = (wire_replica(raw[0]), wire_count(raw[1], "dot counter", positive=True))
            if d in writes:
                raise ValueError(f"dot {d} written twice")
            if not K.ctx_contains(ctx.vv, ctx.cloud, d[0], d[1]):
                raise ValueError(f"dot {d} is outside the causal context")
            writes[d] = atom_from_wire(item[1])
        # Valid: only now are the replica ids interned (a refused input adds none).
        return cls._raw({pack(r, c): v for (r, c), v in writes.items()}, ctx)
