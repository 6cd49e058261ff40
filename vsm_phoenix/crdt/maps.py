"""OR-Map: keys mapped to nested CRDTs; a remove frees what it observed.

Theory of operation (Almeida, Shoker, Baquero 2018, "Delta state replicated data
types", §7's map over causal values). The whole map has **one causal context**: every
dot the map (and anything nested in it) has seen. Each present key owns a *slot* of
dots, and the slot is the key's whole state:

* **Causal values** (:class:`ORSet`, :class:`MVRegister`, :class:`ORMap`) are stored as
  their *dot store* only -- elements or writes under dots -- interpreted under the map's
  context (each nested object's ``_ctx`` *is* the map's context object). Their mutators
  mint dots from the map's context, so dots are unique across the whole map. The slot
  also holds the key's *presence dots*: one fresh dot per ``update``, so an update that
  adds nothing (say, a nested remove) still makes the key present.
* **Non-causal values** (counters, LWW registers, G-/2P-/LWW-sets, clocks) cannot tell
  one update's effects from another's, so the slot is a *dot function*: each update's
  presence dot carries the whole nested state the updating replica held after the
  update (it supersedes the key's dots it saw). The key's value is the join of the
  states under its surviving dots.

``remove(key)`` drops the slot -- nested state and all -- and its delta is just the
context of the dots it observed. The join is the paper's: a dot survives when both
sides hold it in the same place, or one side holds it and the other has never seen it.
So a remove cancels exactly what it observed, everywhere; an update concurrent with it
survives with its own dots (for causal values: its own effects; for non-causal values:
the value its replica held). A key with no surviving dot is absent and costs nothing
but its dots in the (compact) context.

A key holds one type at a time. Updating a present key with another type raises
``TypeError``; once the key is removed it may take a new type. Joining two states
whose same key holds two types raises ``TypeError`` -- unless one side's slot is
wholly cancelled by the other's context (the re-typing update saw the remove), when
the join proceeds. (A remove and a re-typing update racing with an update of the old
type, or one dot under both types, are refused.)

A dot held in two places (a replica id reused after losing its state: two keys, or
presence and a nested store) survives in neither; the same dot carrying two different
non-causal states joins them (the nested join); nested causal stores settle it by their
own rule. Every join is therefore commutative, associative and idempotent.

Wire format 2: ``[[[key, tag, version, body], ...], context]`` with keys in canonical
order; ``body`` is ``[presence dots, nested dot store]`` for a causal value and
``[[dot, nested state], ...]`` for a non-causal one. Format 1 (presence OR-Set plus a
value per key, removed keys included) is still read: see :mod:`._maps_v1`.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable, Iterator
from typing import Any, ClassVar, Self, TypeVar

from vsm_phoenix.crdt import codec
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
from vsm_phoenix.crdt._dots import unpack
from vsm_phoenix.crdt.causal import CausalContext
from vsm_phoenix.crdt.registers import MVRegister
from vsm_phoenix.crdt.sets import ORSet
from vsm_phoenix.errors import DecodeError, InvalidArgument, TypeMismatch

__all__ = ["MAX_NESTING", "ORMap"]

C = TypeVar("C", bound=CRDT)
Dot = tuple[str, int]

#: Deepest chain of ORMaps inside ORMaps that ``update`` builds. Each level costs three
#: CBOR containers plus its key (at most 32-deep tuples), a leaf at most about 40, so the
#: deepest map (100 levels) stays under the parser's depth cap
#: (``vsm_phoenix.cbor.MAX_DEPTH``, 512): whatever can be built can be decoded.
MAX_NESTING = 100

def nesting(value: CRDT) -> int:
    """How many ORMaps deep ``value`` is (0 for any other CRDT)."""
    if not isinstance(value, ORMap):
        return 0
    return 1 + max(
        (nesting(s.nested) for s in value._slots.values() if s.nested is not None), default=0
    )


# -- nested causal values: their dot stores under the map's context -----------------------


def _is_causal(kind: type[CRDT]) -> bool:
    return kind is ORSet or kind is MVRegister or kind is ORMap


def _nested_dots(x: CRDT) -> Iterator[Dot]:
    """The dots held in a causal value's store (not its context)."""
    if isinstance(x, ORSet):
        for e in x.value:
            for d in x.dots_of(e):
                yield (d.replica, d.counter)
    elif isinstance(x, MVRegister):
        for p in x._store:
            yield unpack(p)
    else:
        assert isinstance(x, ORMap)
        for s in x._slots.values():
            yield from s.dots()


def _store_empty(x: CRDT) -> bool:
    if isinstance(x, ORSet):
        return len(x) == 0
    if isinstance(x, MVRegister):
        return not x._store
    assert isinstance(x, ORMap)
    return not x._slots


def _point(x: CRDT, ctx: CausalContext) -> None:
    """Make ``ctx`` the context of causal value ``x`` (and of everything nested in it)."""
    x._ctx = ctx  # type: ignore[attr-defined]
    if isinstance(x, ORMap):
        for s in x._slots.values():
            if s.nested is not None:
                _point(s.nested, ctx)


_NO_DOTS = CausalContext()


def _copy_under(x: CRDT, ctx: CausalContext) -> CRDT:
    """A copy of causal value ``x``'s store, under ``ctx`` (the context is not copied)."""
    saved = x._ctx  # type: ignore[attr-defined]
    x._ctx = _NO_DOTS  # type: ignore[attr-defined]
    try:
        out = x.copy()
    finally:
        x._ctx = saved  # type: ignore[attr-defined]
    _point(out, ctx)
    return out


def _bottom_under(kind: type[CRDT], ctx: CausalContext) -> CRDT:
    out = kind()
    _point(out, ctx)
    return out


def _join_nested(x: CRDT, ca: CausalContext, y: CRDT, cb: CausalContext) -> None:
    """``x``'s store := the join of (x's store, ``ca``) and (y's store, ``cb``); neither
    context changes. ``y`` is read only; ``x`` ends pointing at ``ca``."""
    if isinstance(x, ORMap):
        assert isinstance(y, ORMap)
        x._join_slots(ca, y._slots, cb)
        return
    assert _ctx_of(y) is cb or _ctx_of(y) == cb
    _point(x, ca.copy())  # the nested join grows its own context: give it a scratch one
    x._join_into(y)
    _point(x, ca)


# -- slots -----------------------------------------------------------------------------


class _Slot:
    """The state of one present key: its type and dots (see the module docstring).

    Causal kinds: ``presence`` holds the update dots and ``nested`` the value (a store
    under the map's context); ``states`` is ``None``. Non-causal kinds: ``states`` maps
    each update dot to the nested state it wrote; ``presence`` is empty, ``nested``
    ``None``.
    """

    __slots__ = ("_states", "kind", "nested", "presence")

    def __init__(
        self,
        kind: type[CRDT],
        presence: set[Dot] | frozenset[Dot] = frozenset(),
        nested: CRDT | None = None,
        states: dict[Dot, CRDT] | None = None,
    ) -> None:
        self.kind = kind
        self.presence: set[Dot] | frozenset[Dot] = presence
        self.nested = nested
        #: Non-causal states: a lone ``(dot, state)`` pair unboxed (the common case,
        #: no dict per key), a dict for two or more; ``None`` for a causal kind.
        self._states: dict[Dot, CRDT] | tuple[Dot, CRDT] | None = None
        if states is not None:
            self.states = states

    @property
    def noncausal(self) -> bool:
        return self._states is not None

    @property
    def states(self) -> dict[Dot, CRDT] | None:
        """The dot → state function of a non-causal slot (a new dict when a lone pair
        is stored: assign it back after changing it)."""
        st = self._states
        if type(st) is tuple:
            return {st[0]: st[1]}
        return st  # type: ignore[return-value]

    @states.setter
    def states(self, value: dict[Dot, CRDT]) -> None:
        if len(value) == 1:
            self._states = next(iter(value.items()))
        else:
            self._states = value

    def fun(self) -> dict[Dot, CRDT]:
        """:attr:`states` of a slot known to be non-causal."""
        st = self.states
        assert st is not None
        return st

    def dots(self) -> Iterator[Dot]:
        if self.noncausal:
            st = self._states
            if type(st) is tuple:
                yield st[0]
            else:
                yield from st  # type: ignore[misc]
            return
        yield from self.presence
        assert self.nested is not None
        yield from _nested_dots(self.nested)

    def empty(self) -> bool:
        if self.noncausal:
            return not self.states
        assert self.nested is not None
        return not self.presence and _store_empty(self.nested)

    def value_state(self) -> CRDT:
        """The nested CRDT this slot stands for (shared; callers copy)."""
        if not self.noncausal:
            assert self.nested is not None
            return self.nested
        it = iter(self.fun().values())
        first = next(it)
        rest = list(it)
        if not rest:
            return first
        out = first.copy()
        for s in rest:
            out._join_into(s)
        return out

    def copy_under(self, ctx: CausalContext) -> _Slot:
        if self.noncausal:
            return _Slot(self.kind, states={d: s.copy() for d, s in self.fun().items()})
        assert self.nested is not None
        return _Slot(self.kind, set(self.presence), _copy_under(self.nested, ctx))


def _filtered_copy(slot: _Slot, seen: CausalContext, ctx: CausalContext) -> _Slot:
    """``slot`` joined with nothing under context ``seen``: its dots ``seen`` has not
    seen, as a new slot under ``ctx`` (possibly empty)."""
    if slot.noncausal:
        return _Slot(
            slot.kind,
            states={d: s.copy() for d, s in slot.fun().items() if not seen.contains(d)},
        )
    assert slot.nested is not None
    out = _bottom_under(slot.kind, ctx)
    _join_nested(out, seen, slot.nested, _ctx_of(slot.nested))
    _point(out, ctx)
    return _Slot(slot.kind, {d for d in slot.presence if not seen.contains(d)}, out)


def _ctx_of(x: CRDT) -> CausalContext:
    ctx: CausalContext = x._ctx  # type: ignore[attr-defined]
    return ctx


def _filter_in_place(slot: _Slot, ca: CausalContext, cb: CausalContext) -> None:
    """Drop from ``slot`` (under ``ca``) every dot ``cb`` has seen (the other side has
    no slot for this key)."""
    if slot.noncausal:
        states = slot.states
        assert states is not None
        if any(cb.contains(d) for d in states):
            slot.states = {d: v for d, v in states.items() if not cb.contains(d)}
        return
    assert slot.nested is not None
    slot.presence = {d for d in slot.presence if not cb.contains(d)}
    if any(cb.contains(d) for d in _nested_dots(slot.nested)):
        _join_nested(slot.nested, ca, _bottom_under(slot.kind, cb), cb)


def _alive(slot: _Slot, other_ctx: CausalContext, other_slot: _Slot) -> bool:
    """Whether ``slot`` keeps a claim against the other side's slot of another type
    under the same key: one of its dots is unseen there, or held there too (a reused
    replica id)."""
    theirs = set(other_slot.dots())
    return any(d in theirs or not other_ctx.contains(d) for d in slot.dots())


class ORMap(CRDT):
    """A map from atom keys to nested CRDTs; keys are add-wins observed-remove and a
    remove frees the key's nested state (see the module docstring for the rules).

    ``value`` is ``{key: nested.value}`` over the present keys.
    """

    TAG = "ormap"
    VERSION: ClassVar[int] = 2
    __slots__ = ("_ctx", "_dropped", "_index", "_slots")

    #: A join goes the indexed way when ``DELTA_RATIO * its size <= len(self)``.
    DELTA_RATIO = 8

    def __init__(self) -> None:
        self._ctx = CausalContext()
        self._slots: dict[Atom, _Slot] = {}
        #: dot → the key whose slot holds it (at any depth): a cache built by the
        #: first small join, so that a delta touches only the keys it names or
        #: cancels. Not part of the state.
        self._index: dict[Dot, Atom] | None = None
        #: Keys dropped since the slot table was last rebuilt (a dict never shrinks).
        self._dropped = 0

    @classmethod
    def _raw(cls, slots: dict[Atom, _Slot], ctx: CausalContext) -> Self:
        obj = cls.__new__(cls)
        obj._slots, obj._ctx, obj._index, obj._dropped = slots, ctx, None, 0
        return obj

    def _note_dropped(self, n: int) -> None:
        """Give memory back once more keys were dropped than remain: Python's dicts
        keep their peak size, so a map emptied by removes would keep its table."""
        self._dropped += n
        if self._dropped > 8 and self._dropped > len(self._slots):
            self._slots = dict(self._slots)
            if self._index is not None:
                self._index = dict(self._index)
            self._dropped = 0

    def _reindex(self, key: Atom, old: Iterable[Dot]) -> None:
        """Keep the dot index (if built) right after ``key``'s slot changed from
        holding ``old``."""
        index = self._index
        if index is None:
            return
        for d in old:
            if index.get(d) == key:
                del index[d]
        slot = self._slots.get(key)
        if slot is not None:
            for d in slot.dots():
                index[d] = key

    # -- mutators -----------------------------------------------------------------------

    def update(
        self,
        replica: str,
        key: Atom,
        kind: type[C],
        mutate: Callable[[C], C],
    ) -> ORMap:
        """Apply ``mutate`` to the value under ``key`` (a ``kind()`` if absent) and mark
        the key present with a fresh dot of ``replica``; returns the delta.

        ``mutate`` receives a working copy of the nested CRDT and must return the delta
        of the mutation it applied (what the nested mutator returned), e.g.
        ``m.update("r1", "likes", GCounter, lambda c: c.increment("r1"))``. A causal
        value's copy carries the map's context, so its mutators mint dots unique in the
        whole map. A causal state built outside the map may be joined into the copy:
        its dots join the map's context, but a dot the map has already seen (minted
        here for something else) cannot be taken back -- it is dropped by the join,
        and returning a state that holds it as the delta raises ``TypeError``. The
        delta carries, for a causal value, the nested delta; for a non-causal value,
        the key's whole nested state (a counter cannot be split by update).

        ``TypeError`` if the key is present with another type, ``kind`` is not a
        concrete CRDT class or ``mutate`` returns something that is not a delta of
        it; ``ValueError`` (``InvalidArgument``) if maps would nest deeper than
        :data:`MAX_NESTING`. If ``mutate`` raises, the exception propagates. In every
        such case the map is unchanged.
        """
        check_replica(replica)
        check_atom(key)
        if not (isinstance(kind, type) and issubclass(kind, CRDT)) or inspect.isabstract(kind):
            raise TypeMismatch(f"kind must be a concrete CRDT class, got {kind!r}")
        slot = self._slots.get(key)
        if slot is not None and slot.kind is not kind:
            raise TypeMismatch(
                f"key {key!r} holds a {slot.kind.__name__}, not a {kind.__name__}"
            )
        if _is_causal(kind):
            return self._update_causal(replica, key, kind, mutate, slot)
        presence_dot = self._ctx.next_dot(replica)
        p: Dot = (presence_dot.replica, presence_dot.counter)
        work: C = slot.value_state().copy() if slot is not None else kind()  # type: ignore[assignment]
        child_delta = mutate(work)
        if type(child_delta) is not kind:
            raise TypeMismatch(
                f"mutate must return the {kind.__name__} delta, got {type(child_delta).__name__}"
            )
        # Commit: nothing below can fail.
        old = list(slot.dots()) if slot is not None else []
        delta_ctx = CausalContext([*old, p])
        self._ctx.add(p)
        self._slots[key] = _Slot(kind, states={p: work})
        self._reindex(key, old)
        return ORMap._raw({key: _Slot(kind, states={p: work.copy()})}, delta_ctx)

    def _update_causal(
        self,
        replica: str,
        key: Atom,
        kind: type[C],
        mutate: Callable[[C], C],
        slot: _Slot | None,
    ) -> ORMap:
        # The working copy sees the map's context, so the dots mutate mints are fresh
        # map-wide; the presence dot is minted after them, from everything work saw.
        scratch = self._ctx.copy()
        work: C
        if slot is None:
            work = _bottom_under(kind, scratch)  # type: ignore[assignment]
        else:
            assert slot.nested is not None
            work = _copy_under(slot.nested, scratch)  # type: ignore[assignment]
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
        before: set[Dot] = set()
        if slot is not None and slot.nested is not None:
            before = set(_nested_dots(slot.nested))
        after = set(_nested_dots(work))
        shipped = set(_nested_dots(child_delta))
        if not shipped <= after:
            raise TypeMismatch(
                "mutate must return the delta of the mutation it applied to its argument "
                "(the returned state holds dots the working copy does not)"
            )
        presence_dot = _ctx_of(work).next_dot(replica)
        p: Dot = (presence_dot.replica, presence_dot.counter)
        # The delta claims: the dots the mutation dropped or minted that the nested
        # delta's own context names, the dots it ships, the presence dots.
        delta_ctx_dots: set[Dot] = {d for d in before ^ after if _ctx_of(child_delta).contains(d)}
        delta_ctx_dots |= shipped
        old_presence = slot.presence if slot is not None else set()
        delta_ctx_dots |= old_presence
        delta_ctx_dots.add(p)
        delta_ctx = CausalContext(delta_ctx_dots)
        delta_nested = _copy_under(child_delta, delta_ctx)
        # Commit: nothing below can fail.
        self._ctx._join_into(_ctx_of(work))
        self._ctx.add(p)
        _point(work, self._ctx)
        self._slots[key] = _Slot(kind, {p}, work)
        self._reindex(key, before | old_presence)
        return ORMap._raw({key: _Slot(kind, {p}, delta_nested)}, delta_ctx)

    def remove(self, key: Atom) -> ORMap:
        """Remove ``key`` as observed here and free its nested state; returns the delta
        (the context of the dots it cancels; bottom if the key is absent)."""
        check_atom(key)
        slot = self._slots.pop(key, None)
        if slot is None:
            return ORMap()
        dots = list(slot.dots())
        self._reindex(key, dots)
        self._note_dropped(1)
        return ORMap._raw({}, CausalContext(dots))

    # -- queries ------------------------------------------------------------------------

    def get(self, key: Atom) -> CRDT | None:
        """A copy of the nested CRDT under a present ``key`` (``None`` if absent); a
        causal value comes with a copy of the map's context."""
        try:
            slot = self._slots.get(key)
        except TypeError:
            return None
        if slot is None:
            return None
        if not slot.noncausal:
            assert slot.nested is not None
            return _copy_under(slot.nested, self._ctx.copy())
        return slot.value_state().copy()

    def __contains__(self, key: object) -> bool:
        try:
            return key in self._slots
        except TypeError:
            return False

    def __len__(self) -> int:
        return len(self._slots)

    def keys(self) -> frozenset[Atom]:
        """The present keys."""
        return frozenset(self._slots)

    @property
    def value(self) -> dict[Atom, Any]:
        return {k: s.value_state().value for k, s in self._slots.items()}

    @property
    def context(self) -> CausalContext:
        """A copy of the map's causal context (every dot it has seen)."""
        return self._ctx.copy()

    # -- CRDT plumbing ------------------------------------------------------------------

    def _check_compatible(self, other: Self) -> None:
        _check_slots(self._slots, self._ctx, other._slots, other._ctx)

    def _join_into(self, other: Self) -> None:
        cb = other._ctx
        size = len(self._slots)
        if self.DELTA_RATIO * (cb.size + len(other._slots)) > size:
            self._index = None
            self._join_slots(self._ctx, other._slots, cb)
        else:
            self._join_indexed(other)
        self._ctx._join_into(cb)
        if len(self._slots) < size:
            self._note_dropped(size - len(self._slots))

    def _join_indexed(self, other: Self) -> None:
        """The join touching only the keys ``other`` names and those holding a dot its
        context has seen (found through the dot index): what a small delta costs,
        whatever the size of this map. Same result as the plain join (a differential
        test checks it)."""
        index = self._index
        if index is None:
            index = self._index = {d: k for k, s in self._slots.items() for d in s.dots()}
        touched = set(other._slots)
        for dot in other._ctx.dots():
            k = index.get((dot.replica, dot.counter))
            if k is not None:
                touched.add(k)
        old = {k: list(self._slots[k].dots()) for k in touched if k in self._slots}
        self._join_slots(self._ctx, other._slots, other._ctx, only=touched)
        for k in touched:
            self._reindex(k, old.get(k, ()))

    def _join_slots(
        self,
        ca: CausalContext,
        theirs: dict[Atom, _Slot],
        cb: CausalContext,
        only: set[Atom] | None = None,
    ) -> None:
        """The paper's join of this map's slots (under ``ca``, which stays unchanged and
        is what the nested values point at) with ``theirs`` (under ``cb``). ``only``:
        the keys of this map that can change (default: every key)."""
        slots = self._slots
        for k, sb in theirs.items():
            sa = slots.get(k)
            if sa is None or sa.kind is not sb.kind:
                if sa is not None:  # _check_slots: at most one side survives
                    _filter_in_place(sa, ca, cb)
                    if not sa.empty():
                        continue
                new = _filtered_copy(sb, ca, ca)
                if new.empty():
                    slots.pop(k, None)
                else:
                    slots[k] = new
                continue
            if sa.noncausal:
                mine, theirs_states = sa.states, sb.states
                assert mine is not None and theirs_states is not None
                for d in [d for d in mine if d not in theirs_states and cb.contains(d)]:
                    del mine[d]
                for d, v in theirs_states.items():
                    held = mine.get(d)
                    if held is not None:
                        held._join_into(v)
                    elif not ca.contains(d):
                        mine[d] = v.copy()
                sa.states = mine
            else:
                assert sa.nested is not None and sb.nested is not None
                sa.presence = (
                    (sa.presence & sb.presence)
                    | {d for d in sa.presence - sb.presence if not cb.contains(d)}
                    | {d for d in sb.presence - sa.presence if not ca.contains(d)}
                )
                _join_nested(sa.nested, ca, sb.nested, cb)
            if sa.empty():
                del slots[k]
        for k in [k for k in (slots if only is None else only) if k in slots and k not in theirs]:
            sa = slots[k]
            _filter_in_place(sa, ca, cb)
            if sa.empty():
                del slots[k]

    def _leq(self, other: Self) -> bool:
        if not self._ctx._leq(other._ctx):
            return False
        joined = self.copy()
        joined._join_into(other)
        return joined._eq_state(other)

    def _eq_state(self, other: Self) -> bool:
        if not self._ctx._eq_state(other._ctx) or self._slots.keys() != other._slots.keys():
            return False
        for k, sa in self._slots.items():
            sb = other._slots[k]
            if sa.kind is not sb.kind:
                return False
            if sa.noncausal:
                assert sb.noncausal
                fa, fb = sa.fun(), sb.fun()
                if fa.keys() != fb.keys() or not all(
                    v._eq_state(fb[d]) for d, v in fa.items()
                ):
                    return False
            else:
                assert sa.nested is not None and sb.nested is not None
                if sa.presence != sb.presence or not sa.nested._eq_state(sb.nested):
                    return False
        return True

    def copy(self) -> Self:
        ctx = self._ctx.copy()
        return self._raw({k: s.copy_under(ctx) for k, s in self._slots.items()}, ctx)

    # -- codec ----------------------------------------------------------------------------

    def _encode_slots(self) -> list[Any]:
        out = []
        for k in sorted(self._slots, key=atom_key):
            s = self._slots[k]
            if s.noncausal:
                f = s.fun()
                body: Any = [[[d[0], d[1]], f[d]._encode_state()] for d in sorted(f)]
            else:
                assert s.nested is not None
                body = [[[r, c] for r, c in sorted(s.presence)], _encode_store(s.nested)]
            out.append([atom_to_wire(k), s.kind.TAG, s.kind.VERSION, body])
        return out

    def _encode_state(self) -> Any:
        return [self._encode_slots(), self._ctx._encode_state()]

    @classmethod
    def _decode_state(cls, version: int, state: Any) -> Self:
        if version == 1:
            from vsm_phoenix.crdt._maps_v1 import from_v1

            try:
                v1 = from_v1(state)
                return cls._raw(v1._slots, v1._ctx)
            except DecodeError:
                raise
            except (TypeError, ValueError, KeyError, IndexError, AttributeError,
                    RecursionError) as exc:
                raise DecodeError(f"invalid {cls.TAG} format-1 state: {exc}") from exc
        return super()._decode_state(version, state)

    @classmethod
    def _decode_checked(cls, raw: bytes, version: int, state: Any) -> Self:
        if version != 1:
            return super()._decode_checked(raw, version, state)
        # Format 1 cannot be re-encoded (a decoded map is format 2): check that the
        # input is the canonical format-1 encoding of what it holds, part by part.
        obj = cls._decode_state(version, state)
        try:
            from vsm_phoenix.crdt._maps_v1 import v1_canonical

            canonical = codec.dumps([cls.TAG, 1, state]) == raw and v1_canonical(state)
        except (TypeError, ValueError, KeyError, IndexError, AttributeError,
                RecursionError) as exc:
            raise DecodeError(f"invalid {cls.TAG} format-1 state: {exc}") from exc
        if not canonical:
            raise DecodeError(f"{cls.TAG}: not the canonical encoding of its state")
        return obj

    @classmethod
    def _from_state(cls, state: Any) -> Self:
        if not (isinstance(state, list) and len(state) == 2 and isinstance(state[0], list)):
            raise ValueError("expected [slots, context]")
        ctx = CausalContext._from_state(state[1])
        seen: set[Dot] = set()
        slots = _decode_slots(state[0], ctx, seen)
        return cls._raw(slots, ctx)


def _encode_store(x: CRDT) -> Any:
    """The wire form of a causal value's store (its layout without the context)."""
    if isinstance(x, ORMap):
        return x._encode_slots()
    saved = _ctx_of(x)
    _point(x, _NO_DOTS)
    try:
        return x._encode_state()[0]
    finally:
        _point(x, saved)


def _wire_dot(raw: Any) -> Dot:
    if not (isinstance(raw, list) and len(raw) == 2):
        raise ValueError("a dot is [replica, counter]")
    return (wire_replica(raw[0]), wire_count(raw[1], "dot counter", positive=True))


def _claim(d: Dot, ctx: CausalContext, seen: set[Dot]) -> None:
    if d in seen:
        raise ValueError(f"dot {d} is held twice")
    if not ctx.contains(d):
        raise ValueError(f"dot {d} is outside the causal context")
    seen.add(d)


def _decode_store(kind: type[CRDT], version: int, store: Any) -> CRDT:
    """Decode an ORSet / MVRegister store layout under a context of its own dots (not
    the map's: decoding stays linear in the input; the caller checks the dots against
    the map's context)."""
    if not isinstance(store, list):
        raise ValueError("expected a dot store")
    dots: list[Any] = []
    for item in store:
        if not (isinstance(item, list) and len(item) == 2):
            raise ValueError("malformed dot store entry")
        if kind is ORSet:
            if not isinstance(item[1], list):
                raise ValueError("expected [element, [dot, ...]]")
            dots.extend(item[1])
        else:
            dots.append(item[0])
    own = sorted({_wire_dot(d) for d in dots})
    return kind._decode_state(version, [store, [{}, [[r, c] for r, c in own]]])


def _decode_slots(raw: Any, ctx: CausalContext, seen: set[Dot]) -> dict[Atom, _Slot]:
    if not isinstance(raw, list):
        raise ValueError("expected an array of slots")
    slots: dict[Atom, _Slot] = {}
    for item in raw:
        if not (isinstance(item, list) and len(item) == 4 and isinstance(item[3], list)):
            raise ValueError("a slot is [key, tag, version, body]")
        key = atom_from_wire(item[0])
        tag, version, body = item[1], item[2], item[3]
        if not isinstance(tag, str) or type(version) is not int:
            raise ValueError("bad nested tag or version")
        kind = codec.class_for(tag)
        if key in slots:
            raise ValueError(f"key {key!r} appears twice")
        if _is_causal(kind):
            if not (len(body) == 2 and isinstance(body[0], list)):
                raise ValueError("a causal slot is [presence dots, store]")
            presence = set()
            for d_raw in body[0]:
                d = _wire_dot(d_raw)
                _claim(d, ctx, seen)
                presence.add(d)
            if kind is ORMap:
                if version != ORMap.VERSION:
                    raise ValueError(f"nested ormap format {version} inside format 2")
                nested: CRDT = ORMap._raw(_decode_slots(body[1], ctx, seen), ctx)
            else:
                nested = _decode_store(kind, version, body[1])
                for d in _nested_dots(nested):
                    _claim(d, ctx, seen)
                _point(nested, ctx)
            slot = _Slot(kind, presence, nested)
        else:
            states: dict[Dot, CRDT] = {}
            for pair in body:
                if not (isinstance(pair, list) and len(pair) == 2):
                    raise ValueError("a non-causal slot is [[dot, state], ...]")
                d = _wire_dot(pair[0])
                _claim(d, ctx, seen)
                states[d] = kind._decode_state(version, pair[1])
            slot = _Slot(kind, states=states)
        if slot.empty():
            raise ValueError(f"key {key!r} has no dot")
        slots[key] = slot
    return slots


def _check_slots(
    a: dict[Atom, _Slot], ca: CausalContext, b: dict[Atom, _Slot], cb: CausalContext
) -> None:
    """Raise before any change when joining ``b`` into ``a`` would keep two types under
    one key, or a nested join would refuse."""
    for k, sb in b.items():
        sa = a.get(k)
        if sa is None:
            continue
        if sa.kind is not sb.kind:
            if _alive(sa, cb, sb) and _alive(sb, ca, sa):
                raise TypeMismatch(
                    f"key {k!r}: cannot join {sa.kind.__name__} with {sb.kind.__name__}"
                )
            continue
        if sa.noncausal:
            assert sb.noncausal
            mine = next(iter(sa.fun().values()))
            for v in sb.fun().values():
                mine._check_compatible(v)
            for v in sa.fun().values():
                v._check_compatible(next(iter(sb.fun().values())))
        elif isinstance(sa.nested, ORMap):
            assert isinstance(sb.nested, ORMap)
            _check_slots(sa.nested._slots, ca, sb.nested._slots, cb)

