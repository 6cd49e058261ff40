"""Replicated sets.

=================  ==========================================================
``GSet``           grow-only: add.
``TwoPSet``        add and remove; a removed element can never come back.
``LWWElementSet``  add and remove stamped with HLC timestamps; the later wins.
``ORSet``          observed-remove, add-wins, dotted with a causal context
                   (no tombstones: a remove only ships the dots it observed).
=================  ==========================================================

Elements are atoms (see :mod:`vsm_phoenix.crdt._domain`): ``None``, ``int``, ``str``,
``bytes`` and tuples of those. ``value`` is a ``frozenset``.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, ClassVar, Literal, Self

from vsm_phoenix.crdt import _backend as K
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
from vsm_phoenix.crdt._dots import REPLICAS as _REPLICAS
from vsm_phoenix.crdt._dots import RID_BITS, RID_MASK, Dots, dots_of, pack, unpack
from vsm_phoenix.crdt.causal import CausalContext
from vsm_phoenix.crdt.clocks import Dot, Timestamp
from vsm_phoenix.errors import InvalidArgument

__all__ = ["GSet", "LWWElementSet", "ORSet", "TwoPSet"]


def _encode_atoms(items: Iterable[Atom]) -> list[Any]:
    return [atom_to_wire(x) for x in sorted(items, key=atom_key)]


def _decode_atoms(state: Any) -> set[Atom]:
    if not isinstance(state, list):
        raise ValueError("expected an array of elements")
    return {atom_from_wire(x) for x in state}


class GSet(CRDT):
    """A grow-only set; the join is union."""

    TAG = "gset"
    __slots__ = ("_items",)

    def __init__(self, elements: Iterable[Atom] = ()) -> None:
        self._items: set[Atom] = {check_atom(e) for e in elements}

    @classmethod
    def _raw(cls, items: set[Atom]) -> Self:
        obj = cls.__new__(cls)
        obj._items = items
        return obj

    def add(self, element: Atom) -> GSet:
        """Insert ``element``; returns the delta ``{element}``."""
        check_atom(element)
        self._items.add(element)
        return GSet._raw({element})

    def __contains__(self, element: object) -> bool:
        try:
            return element in self._items
        except TypeError:  # unhashable: never an element
            return False

    def __len__(self) -> int:
        return len(self._items)

    @property
    def value(self) -> frozenset[Atom]:
        return frozenset(self._items)

    def _join_into(self, other: Self) -> None:
        self._items |= other._items

    def _leq(self, other: Self) -> bool:
        return self._items <= other._items

    def _eq_state(self, other: Self) -> bool:
        return self._items == other._items

    def copy(self) -> Self:
        return self._raw(set(self._items))

    def _encode_state(self) -> Any:
        return _encode_atoms(self._items)

    @classmethod
    def _from_state(cls, state: Any) -> Self:
        return cls._raw(_decode_atoms(state))


class TwoPSet(CRDT):
    """Two-phase set: a G-Set of additions and a G-Set of removals (tombstones).

    ``value`` is additions minus removals. A removal is permanent: once an element has
    been removed anywhere it is absent everywhere, for good, even if re-added.
    Removing an element that was never added is allowed and pre-empts it.
    """

    TAG = "2pset"
    __slots__ = ("_adds", "_removes")

    def __init__(self) -> None:
        self._adds: set[Atom] = set()
        self._removes: set[Atom] = set()

    @classmethod
    def _raw(cls, adds: set[Atom], removes: set[Atom]) -> Self:
        obj = cls.__new__(cls)
        obj._adds, obj._removes = adds, removes
        return obj

    def add(self, element: Atom) -> TwoPSet:
        """Insert ``element`` (no effect if it was ever removed); returns the delta."""
        check_atom(element)
        self._adds.add(element)
        return TwoPSet._raw({element}, set())

    def remove(self, element: Atom) -> TwoPSet:
        """Remove ``element`` forever; returns the delta."""
        check_atom(element)
        self._removes.add(element)
        return TwoPSet._raw(set(), {element})

    def __contains__(self, element: object) -> bool:
        try:
            return element in self._adds and element not in self._removes
        except TypeError:  # unhashable: never an element
            return False

    @property
    def value(self) -> frozenset[Atom]:
        return frozenset(self._adds - self._removes)

    def _join_into(self, other: Self) -> None:
        self._adds |= other._adds
        self._removes |= other._removes

    def _leq(self, other: Self) -> bool:
        return self._adds <= other._adds and self._removes <= other._removes

    def _eq_state(self, other: Self) -> bool:
        return self._adds == other._adds and self._removes == other._removes

    def copy(self) -> Self:
        return self._raw(set(self._adds), set(self._removes))

    def _encode_state(self) -> Any:
        return [_encode_atoms(self._adds), _encode_atoms(self._removes)]

    @classmethod
    def _from_state(cls, state: Any) -> Self:
        if not (isinstance(state, list) and len(state) == 2):
            raise ValueError("expected [adds, removes]")
        return cls._raw(_decode_atoms(state[0]), _decode_atoms(state[1]))


Bias = Literal["add", "remove"]


class LWWElementSet(CRDT):
    """Last-writer-wins element set over HLC :class:`Timestamp` s.

    Each element keeps the greatest add timestamp and the greatest remove timestamp
    it has seen. It is present when its add timestamp is greater than its remove
    timestamp. *Bias* settles exact ties (same physical time, logical counter **and**
    replica -- only possible when a caller reuses a timestamp): ``"add"`` (default)
    keeps the element, ``"remove"`` drops it. Timestamps from different replicas never
    tie, since the replica id is the last component of the total order.

    The bias is part of the state: joining sets with different biases raises
    ``ValueError``.
    """

    TAG = "lwwset"
    __slots__ = ("_adds", "_removes", "bias")

    def __init__(self, bias: Bias = "add") -> None:
        if bias not in ("add", "remove"):
            raise InvalidArgument(f"bias must be 'add' or 'remove', got {bias!r}")
        self.bias: Bias = bias
        self._adds: dict[Atom, Timestamp] = {}
        self._removes: dict[Atom, Timestamp] = {}

    @classmethod
    def _raw(cls, bias: Bias, adds: dict[Atom, Timestamp], removes: dict[Atom, Timestamp]) -> Self:
        obj = cls.__new__(cls)
        obj.bias, obj._adds, obj._removes = bias, adds, removes
        return obj

    def add(self, element: Atom, timestamp: Timestamp) -> LWWElementSet:
        """Record an add of ``element`` at ``timestamp``; returns the delta."""
        check_atom(element)
        Timestamp.check(timestamp)
        _max_into(self._adds, element, timestamp)
        return LWWElementSet._raw(self.bias, {element: timestamp}, {})

    def remove(self, element: Atom, timestamp: Timestamp) -> LWWElementSet:
        """Record a remove of ``element`` at ``timestamp``; returns the delta."""
        check_atom(element)
        Timestamp.check(timestamp)
        _max_into(self._removes, element, timestamp)
        return LWWElementSet._raw(self.bias, {}, {element: timestamp})

    def _present(self, element: Atom) -> bool:
        added = self._adds.get(element)
        if added is None:
            return False
        removed = self._removes.get(element)
        if removed is None or added > removed:
            return True
        return added == removed and self.bias == "add"

    def __contains__(self, element: object) -> bool:
        try:
            return self._present(element)  # type: ignore[arg-type]
        except TypeError:
            return False

    @property
    def value(self) -> frozenset[Atom]:
        return frozenset(e for e in self._adds if self._present(e))

    def _check_compatible(self, other: Self) -> None:
        if other.bias != self.bias:
            raise InvalidArgument(
                f"cannot join LWWElementSets with biases {self.bias!r} and {other.bias!r}"
            )

    def _join_into(self, other: Self) -> None:
        for e, ts in other._adds.items():
            _max_into(self._adds, e, ts)
        for e, ts in other._removes.items():
            _max_into(self._removes, e, ts)

    def _leq(self, other: Self) -> bool:
        return _dominated(self._adds, other._adds) and _dominated(self._removes, other._removes)

    def _eq_state(self, other: Self) -> bool:
        return (
            self.bias == other.bias
            and self._adds == other._adds
            and self._removes == other._removes
        )

    def copy(self) -> Self:
        return self._raw(self.bias, dict(self._adds), dict(self._removes))

    def _encode_state(self) -> Any:
        return [self.bias, _encode_stamped(self._adds), _encode_stamped(self._removes)]

    @classmethod
    def _from_state(cls, state: Any) -> Self:
        if not (isinstance(state, list) and len(state) == 3):
            raise ValueError("expected [bias, adds, removes]")
        bias, adds, removes = state
        if bias not in ("add", "remove"):
            raise ValueError(f"bad bias {bias!r}")
        return cls._raw(bias, _decode_stamped(adds), _decode_stamped(removes))


def _max_into(d: dict[Atom, Timestamp], e: Atom, ts: Timestamp) -> None:
    cur = d.get(e)
    if cur is None or ts > cur:
        d[e] = ts


def _dominated(a: dict[Atom, Timestamp], b: dict[Atom, Timestamp]) -> bool:
    for e, ts in a.items():
        other = b.get(e)
        if other is None or ts > other:
            return False
    return True


def _encode_stamped(d: dict[Atom, Timestamp]) -> list[Any]:
    return [[atom_to_wire(e), d[e].to_wire()] for e in sorted(d, key=atom_key)]


def _decode_stamped(state: Any) -> dict[Atom, Timestamp]:
    if not isinstance(state, list):
        raise ValueError("expected an array of [element, timestamp]")
    out: dict[Atom, Timestamp] = {}
    for item in state:
        if not (isinstance(item, list) and len(item) == 2):
            raise ValueError("expected [element, timestamp]")
        out[atom_from_wire(item[0])] = Timestamp.from_wire(item[1])
    return out


class ORSet(CRDT):
    """Observed-remove set, add-wins, without tombstones (Almeida et al. 2018, §7).

    State: a *dot store* mapping each present element to the dots of the adds that
    support it, and a causal context of every dot ever seen. ``add`` mints a fresh dot;
    ``remove`` drops the element's dots while the context keeps them, so the join
    discards those dots everywhere. A remove only cancels the adds it observed: an add
    concurrent with a remove survives (add-wins). Removed elements leave nothing behind
    but their dots in the (compact) context.

    Invariants (checked on decode): every stored dot is in the context; no element
    has an empty dot set; no dot supports two elements.

    Representation (:mod:`vsm_phoenix.crdt._dots`): the store is a ``dict`` from
    element to its dots, each dot packed into one ``int`` (counter in the high bits,
    the replica's index in a per-process id table in the low 32). An element's only
    dot -- the common case -- is stored bare; two or more concurrent adds are an
    ascending ``tuple``. Every value is immutable, so ``copy`` copies one dict, and
    no element costs a ``set`` or a tuple per dot.

    Joining a small delta costs what the delta is: the first such join builds a *dot
    index* (replica → counter → element) that later joins walk instead of the whole
    store, so a one-dot delta costs O(1) into a set of any size. A join with a state
    of comparable size runs the plain kernel and drops the index (it is rebuilt on the
    next small delta). The index is a cache, never part of the state.
    """

    TAG = "orset"
    __slots__ = ("_ctx", "_index", "_store")

    #: A delta goes the indexed way when ``DELTA_RATIO * its size <= len(self)``.
    #: Tuned per kernel backend at the measured crossover, where the indexed join and
    #: the plain kernel cost the same (``python -m bench --only crdt`` reports it as
    #: ``targets.delta_ratio``: plain/indexed time for deltas of k elements into a
    #: 10k-element set). The native plain kernel is ~10x faster than the pure one while
    #: the indexed walk is the same Python on both, so the crossover differs: about
    #: n/k = 20-25 native, about 2 pure (the indexed walk beat the pure kernel 2x even
    #: at k = n/2.5). A wrong ratio only costs time: both paths give the same state.
    DELTA_RATIO: ClassVar[int] = 20 if K.BACKEND == "native" else 2

    def __init__(self) -> None:
        self._store: dict[Atom, Dots] = {}
        self._ctx = CausalContext()
        self._index: dict[str, dict[int, Atom]] | None = None

    @classmethod
    def _raw(cls, entries: dict[Atom, Dots], ctx: CausalContext) -> Self:
        obj = cls.__new__(cls)
        obj._store, obj._ctx, obj._index = entries, ctx, None
        return obj

    def add(self, replica: str, element: Atom) -> ORSet:
        """Add ``element`` with a fresh dot of ``replica``; returns the delta.

        The delta holds the new dot under ``element`` and, in its context, the new dot
        plus the element's previous dots (which the add supersedes).
        """
        check_replica(replica)
        check_atom(element)
        dot = self._ctx.next_dot(replica)
        r, c = dot.replica, dot.counter
        p = pack(r, c)
        held = self._store.get(element)
        old = set() if held is None else {unpack(x) for x in dots_of(held)}
        delta = ORSet._raw({element: p}, CausalContext._of_dots(old | {(r, c)}))
        self._store[element] = p
        self._ctx._add(r, c)
        index = self._index
        if index is not None:
            for o_r, o_c in old:
                del index[o_r][o_c]
            index.setdefault(r, {})[c] = element
        return delta

    def remove(self, element: Atom) -> ORSet:
        """Remove ``element`` as observed here; returns the delta (the observed dots in
        the context, nothing in the store). Removing an absent element is a no-op whose
        delta is bottom."""
        check_atom(element)
        held = self._store.pop(element, None)
        if held is None:
            return ORSet()
        old = {unpack(x) for x in dots_of(held)}
        if self._index is not None:
            for r, c in old:
                del self._index[r][c]
        return ORSet._raw({}, CausalContext._of_dots(old))

    def __contains__(self, element: object) -> bool:
        try:
            return element in self._store
        except TypeError:
            return False

    def __len__(self) -> int:
        return len(self._store)

    @property
    def value(self) -> frozenset[Atom]:
        return frozenset(self._store)

    @property
    def context(self) -> CausalContext:
        """A copy of the causal context (every dot this replica has seen)."""
        return self._ctx.copy()

    def dots_of(self, element: Atom) -> frozenset[Dot]:
        """The dots of the adds that currently support ``element``."""
        try:
            held = self._store.get(element)
        except TypeError:  # unhashable: never an element
            return frozenset()
        if held is None:
            return frozenset()
        return frozenset(Dot(*unpack(d)) for d in dots_of(held))

    @property
    def _entries(self) -> dict[Atom, set[tuple[str, int]]]:
        """The store with every element's dots as a set of ``(replica, counter)``
        tuples (a new mapping; for models and debugging)."""
        return {e: {unpack(d) for d in dots_of(v)} for e, v in self._store.items()}

    def _delta_size(self) -> int:
        """What joining this state costs the indexed way, in dots (the vector entries
        count once: the join enumerates at most what the receiver holds of them)."""
        return len(self._store) + self._ctx.cloud_size + len(self._ctx.vv)

    def _join_into(self, other: Self) -> None:
        if not self._store and not self._ctx.vv and not self._ctx.cloud:
            # Bottom joined with anything is that thing: a copy of the store, no per-dot
            # work (a fresh replica taking a snapshot, a decoded state joined into an
            # empty one). The context object is kept (joined in place): a container may
            # share it with this set.
            self._store = K.dotstore_copy(other._store)
            self._ctx._join_into(other._ctx)
            self._index = None
            return
        if self.DELTA_RATIO * other._delta_size() <= len(self._store):
            self._join_indexed(other)
            return
        a, b = self._ctx, other._ctx
        self._index = None
        K.dotstore_join_into(self._store, a.vv, a.cloud, other._store, b.vv, b.cloud)
        a._join_into(b)

    def _join_indexed(self, other: Self) -> None:
        """The join walking ``other`` through the dot index (same result as the plain
        join; a differential test checks it)."""
        a, b = self._ctx, other._ctx
        if self._index is None:
            self._index = K.dotstore_index(self._store)
        K.dotstore_join_delta(
            self._store, self._index, a.vv, a.cloud, other._store, b.vv, b.cloud
        )
        a._join_into(b)

    def _leq(self, other: Self) -> bool:
        if not self._ctx._leq(other._ctx):
            return False
        a, b = self._ctx, other._ctx
        # self ⊑ other iff every dot other dropped was seen by other (it is, since the
        # contexts are ordered) and every dot other keeps that self has seen is kept by
        # self: i.e. the join yields other's store.
        joined = K.dotstore_join(self._store, a.vv, a.cloud, other._store, b.vv, b.cloud)
        return bool(joined == other._store)

    def _eq_state(self, other: Self) -> bool:
        return self._store == other._store and self._ctx._eq_state(other._ctx)

    def copy(self) -> Self:
        return self._raw(K.dotstore_copy(self._store), self._ctx.copy())

    def __deepcopy__(self, memo: dict[int, Any]) -> Self:
        return self.copy()

    def __reduce__(self) -> tuple[Any, ...]:
        # Packed dots name replicas by their index in this process's table: a pickle
        # carries the canonical bytes instead.
        return (type(self).from_bytes, (self.to_bytes(),))

    def _encode_state(self) -> Any:
        return [_encode_dotstore(self._store), self._ctx._encode_state()]

    @classmethod
    def from_bytes(cls, data: bytes, max_size: int = codec.MAX_DECODE_BYTES) -> Self:
        """Decode bytes produced by :meth:`to_bytes` (``DecodeError`` for anything else).

        The common case is read straight from the bytes by the ``dotstore_parse``
        kernel, which checks canonical form as it reads instead of re-encoding the
        state to compare; whatever that shortcut does not take, the general decoder
        decides, with the same result.
        """
        fast = K.dotstore_parse(data, max_size, cls.TAG.encode())
        if fast is not None:
            store, vv, cloud = fast
            return cls._raw(store, CausalContext._raw(vv, cloud))
        return super().from_bytes(data, max_size)

    @classmethod
    def _from_state(cls, state: Any) -> Self:
        if not (isinstance(state, list) and len(state) == 2):
            raise ValueError("expected [entries, context]")
        ctx = CausalContext._from_state(state[1])
        entries = _decode_dotstore(state[0], ctx)
        return cls._raw(entries, ctx)


def _encode_dotstore(entries: dict[Atom, Dots]) -> list[Any]:
    out = []
    replicas = _REPLICAS
    for e in sorted(entries, key=atom_key):
        v = entries[e]
        if type(v) is int:
            dots = [[replicas[v & RID_MASK], v >> RID_BITS]]
        else:
            dots = [[r, c] for r, c in sorted(unpack(d) for d in dots_of(v))]
        out.append([atom_to_wire(e), dots])
    return out


def _decode_dotstore(state: Any, ctx: CausalContext) -> dict[Atom, Dots]:
    """Decode ``[[element, [dot, ...]], ...]`` and check it against ``ctx``."""
    decoded: dict[Atom, Dots] = K.dotstore_decode(state, ctx.vv, ctx.cloud)
    return decoded
