"""Refused arguments and mismatched joins: ``TypeError`` / ``ValueError``, and the
object is unchanged afterwards (same canonical bytes)."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from vsm_phoenix.crdt import (
    CRDT,
    CausalContext,
    GCounter,
    GSet,
    LWWElementSet,
    LWWRegister,
    MVRegister,
    ORMap,
    ORSet,
    PNCounter,
    Timestamp,
    TwoPSet,
    VectorClock,
)
from vsm_phoenix.crdt.testing import LATTICE_TYPES, states
from vsm_phoenix.errors import InvalidArgument, VsmPhoenixError

TS = Timestamp(1, 0, "r1")
DEEP: Any = 0
for _ in range(40):
    DEEP = (DEEP,)
BAD_ELEMENTS: list[Any] = [
    [1],
    {"a": 1},
    {1},
    1.5,
    float("nan"),
    True,
    (1, 1.5),
    (1, [2]),
    DEEP,
    bytearray(b"x"),
    object(),
]
BAD_REPLICAS: list[Any] = [1, None, b"r1", "", ("r1",)]
BAD_COUNTS: list[Any] = [-1, True, 1.0, "1", None]
BAD_TIMESTAMPS: list[Any] = [
    (1, 0, "r1"),
    None,
    1,
    Timestamp(-1, 0, "r1"),
    Timestamp(0, -1, "r1"),
    Timestamp(0, 0, ""),
    Timestamp(0, 0, 1),
    Timestamp(0.5, 0, "r1"),  # type: ignore[arg-type]
    Timestamp(True, 0, "r1"),
]


def bad_calls(cls: type[CRDT]) -> list[tuple[str, Callable[[Any], Any]]]:
    out: list[tuple[str, Callable[[Any], Any]]] = []

    def add(name: str, fn: Callable[[Any], Any]) -> None:
        out.append((name, fn))

    if cls in (GCounter, PNCounter):
        names = ["increment"] + (["decrement"] if cls is PNCounter else [])
        for m, r in itertools.product(names, BAD_REPLICAS):
            add(f"{m}(replica={r!r})", lambda s, m=m, r=r: getattr(s, m)(r, 1))
        for m, n in itertools.product(names, BAD_COUNTS):
            add(f"{m}(n={n!r})", lambda s, m=m, n=n: getattr(s, m)("r1", n))
    if cls in (GSet, TwoPSet):
        for m, e in itertools.product(
            ["add"] + (["remove"] if cls is TwoPSet else []), BAD_ELEMENTS
        ):
            add(f"{m}({e!r:.20})", lambda s, m=m, e=e: getattr(s, m)(e))
    if cls is LWWElementSet:
        for m in ("add", "remove"):
            for e in BAD_ELEMENTS:
                add(f"{m}({e!r:.20}, ts)", lambda s, m=m, e=e: getattr(s, m)(e, TS))
            for t in BAD_TIMESTAMPS:
                add(f"{m}('a', {t!r})", lambda s, m=m, t=t: getattr(s, m)("a", t))
    if cls is ORSet:
        for r in BAD_REPLICAS:
            add(f"add({r!r}, 'a')", lambda s, r=r: s.add(r, "a"))
        for e in BAD_ELEMENTS:
            add(f"add('r1', {e!r:.20})", lambda s, e=e: s.add("r1", e))
            add(f"remove({e!r:.20})", lambda s, e=e: s.remove(e))
    if cls is LWWRegister:
        for e in BAD_ELEMENTS:
            add(f"assign({e!r:.20}, ts)", lambda s, e=e: s.assign(e, TS))
        for t in BAD_TIMESTAMPS:
            add(f"assign('v', {t!r})", lambda s, t=t: s.assign("v", t))
    if cls is MVRegister:
        for r in BAD_REPLICAS:
            add(f"assign({r!r}, 'v')", lambda s, r=r: s.assign(r, "v"))
        for e in BAD_ELEMENTS:
            add(f"assign('r1', {e!r:.20})", lambda s, e=e: s.assign("r1", e))
    if cls is ORMap:

        def inc(c: GCounter) -> GCounter:
            return c.increment("r1")

        for r in BAD_REPLICAS:
            add(f"update({r!r}, ...)", lambda s, r=r: s.update(r, "n", GCounter, inc))
        for e in BAD_ELEMENTS:
            add(f"update(key={e!r:.20})", lambda s, e=e: s.update("r1", e, GCounter, inc))
            add(f"remove({e!r:.20})", lambda s, e=e: s.remove(e))
        for kind in (int, None, CRDT, "GCounter"):
            add(f"update(kind={kind!r})", lambda s, k=kind: s.update("r1", "zz", k, inc))
        add("mutate returns None", lambda s: s.update("r1", "zz", GCounter, lambda c: None))
        add("mutate returns other type", lambda s: s.update("r1", "zz", GCounter, lambda c: GSet()))
        add(
            "mutate fails after mutating",
            lambda s: s.update(
                "r1", "n", GCounter, lambda c: (c.increment("r1"), c.increment("r1", -1))
            ),
        )
    if cls is VectorClock:
        for r in BAD_REPLICAS:
            add(f"increment({r!r})", lambda s, r=r: s.increment(r))
    if cls is CausalContext:
        for d in [
            ("r1", 0),
            ("r1", -1),
            ("", 1),
            (1, 1),
            "r1",
            ("r1", 1, 2),
            ("r1", True),
            ("r1", 1.0),
            None,
        ]:
            add(f"add({d!r})", lambda s, d=d: s.add(d))
            add(f"contains({d!r})", lambda s, d=d: s.contains(d))
        for r in BAD_REPLICAS:
            add(f"next_dot({r!r})", lambda s, r=r: s.next_dot(r))
    return out


@pytest.mark.parametrize("cls", LATTICE_TYPES, ids=lambda c: c.__name__)
@given(data=st.data())
def test_invalid_arguments_refused_and_state_unchanged(cls: type[CRDT], data: Any) -> None:
    s = data.draw(states(cls, max_steps=6))
    before = s.to_bytes()
    calls = bad_calls(cls)
    assert calls
    for name, call in calls:
        with pytest.raises((TypeError, ValueError)) as info:
            call(s)
        assert s.to_bytes() == before, f"{name} changed the state"
        if not name.startswith(("mutate", "update(kind=<class 'vsm_phoenix.crdt._base.CRDT'>")):
            assert isinstance(info.value, VsmPhoenixError), f"{name}: {info.value!r}"
    assert s == cls.from_bytes(before)


def test_ormap_update_with_other_kind_for_existing_key() -> None:
    m = ORMap()
    m.update("r1", "k", GCounter, lambda c: c.increment("r1"))
    before = m.to_bytes()
    with pytest.raises(TypeError):
        m.update("r1", "k", GSet, lambda s: s.add(1))
    assert m.to_bytes() == before
    m.remove("k")  # the remove frees the nested value: the key may take a new type
    m.update("r1", "k", GSet, lambda s: s.add(1))
    assert m.value == {"k": frozenset({1})}


def test_mutate_exception_propagates_unchanged() -> None:
    m = ORMap()
    m.update("r1", "k", GCounter, lambda c: c.increment("r1"))
    before = m.to_bytes()

    class Boom(Exception):
        pass

    def boom(c: GCounter) -> GCounter:
        c.increment("r1", 10)
        raise Boom

    with pytest.raises(Boom):
        m.update("r1", "k", GCounter, boom)
    assert m.to_bytes() == before


def test_constructor_arguments() -> None:
    with pytest.raises(ValueError):
        LWWElementSet(bias="both")  # type: ignore[arg-type]
    for bad in ({"r1": -1}, {"": 1}, {1: 1}, {"r1": 1.0}):
        with pytest.raises((TypeError, ValueError)):
            VectorClock(bad)  # type: ignore[arg-type]
    with pytest.raises((TypeError, ValueError)):
        CausalContext([("r1", 0)])
    with pytest.raises((TypeError, ValueError)):
        GSet([1, [2]])  # type: ignore[list-item]
    with pytest.raises(TypeError):
        CausalContext.from_vector({"r1": 1})  # type: ignore[arg-type]


PAIRS = [(a, b) for a in LATTICE_TYPES for b in LATTICE_TYPES if a is not b]


@pytest.mark.parametrize(
    ("a_cls", "b_cls"), PAIRS, ids=[f"{a.__name__}-{b.__name__}" for a, b in PAIRS]
)
def test_joining_different_types_type_error(a_cls: type[CRDT], b_cls: type[CRDT]) -> None:
    a, b = a_cls(), b_cls()
    a_bytes, b_bytes = a.to_bytes(), b.to_bytes()
    for op in (
        lambda: a | b,
        lambda: a.__ior__(b),
        lambda: a <= b,
        lambda: a >= b,
        lambda: a < b,
        lambda: a > b,
        lambda: a.join(b),
    ):
        with pytest.raises(TypeError):
            op()
    assert a != b
    assert (a == b) is False
    assert a.to_bytes() == a_bytes and b.to_bytes() == b_bytes


@pytest.mark.parametrize("cls", LATTICE_TYPES, ids=lambda c: c.__name__)
def test_joining_non_crdt_type_error(cls: type[CRDT]) -> None:
    a = cls()
    for junk in (None, 1, "x", b"x", frozenset(), {}, object()):
        with pytest.raises(TypeError):
            a | junk
        with pytest.raises(TypeError):
            a |= junk
        with pytest.raises(TypeError):
            _ = a <= junk
        assert a != junk
    assert a == cls()


def test_lww_element_sets_with_different_bias_do_not_join() -> None:
    a, b = LWWElementSet("add"), LWWElementSet("remove")
    a.add("x", TS)
    b.remove("x", TS)
    a_bytes, b_bytes = a.to_bytes(), b.to_bytes()
    for op in (
        lambda: a | b,
        lambda: a.__ior__(b),
        lambda: b.__ior__(a),
        lambda: a <= b,
        lambda: b <= a,
    ):
        with pytest.raises(ValueError) as info:
            op()
        assert isinstance(info.value, InvalidArgument)
    assert a.to_bytes() == a_bytes and b.to_bytes() == b_bytes
    assert a != b
    # Nested in a map, the mismatch is caught before anything changes either.
    m1, m2 = ORMap(), ORMap()
    m1.update("r1", "k", LWWElementSet, lambda s: s.add("x", TS))
    m2.update("r2", "k", LWWElementSet, lambda s: s.add("y", Timestamp(1, 0, "r2")))
    m2.update("r2", "j", GCounter, lambda c: c.increment("r2"))
    m2_bad = ORMap()
    m2_bad.update("r2", "k", GCounter, lambda c: c.increment("r2"))
    before = m1.to_bytes()
    with pytest.raises(TypeError):
        m1 |= m2_bad
    assert m1.to_bytes() == before


def test_ormaps_with_different_nested_types_compare_unequal() -> None:
    """``==`` never raises: maps whose same key holds different types are unequal."""
    a, b = ORMap(), ORMap()
    a.update("r1", "k", GCounter, lambda c: c.increment("r1"))
    b.update("r1", "k", GSet, lambda s: s.add(1))
    assert (a == b) is False
    assert a != b
    with pytest.raises(TypeError):
        a | b


def test_membership_of_unhashable_is_false_for_every_set() -> None:
    from vsm_phoenix.crdt import GSet, LWWElementSet, ORMap, ORSet, TwoPSet

    for s in (GSet(), TwoPSet(), LWWElementSet(), ORSet(), ORMap()):
        assert [1] not in s  # type: ignore[operator]


def test_ormap_refuses_the_abstract_base_as_kind() -> None:
    from vsm_phoenix.crdt import CRDT, ORMap
    from vsm_phoenix.errors import TypeMismatch

    m = ORMap()
    with pytest.raises(TypeMismatch):
        m.update("r", "k", CRDT, lambda c: c)
    assert m == ORMap()


def test_ormap_delta_never_aliases_state_when_mutate_returns_the_working_copy() -> None:
    from vsm_phoenix.crdt import GCounter, ORMap

    m = ORMap()
    delta = m.update("r", "k", GCounter, lambda c: (c.increment("r"), c)[1])
    m.update("r", "k", GCounter, lambda c: c.increment("r", 5))
    assert delta.value == {"k": 1} and m.value == {"k": 6}
