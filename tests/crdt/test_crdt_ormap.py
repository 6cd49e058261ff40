"""OR-Map format 2: a remove frees the nested state it observed (issue 11).

Causal values (ORSet, MVRegister, ORMap) follow the delta-CRDT paper's map: one causal
context for the whole map, a remove cancels exactly the dots it observed, an update
concurrent with it survives with its own effects. Non-causal values (counters, LWW,
G-/2P-sets) live under the update dots that wrote them: an update concurrent with a
remove survives with the whole value its replica held. Checked here on both kernel
backends: those exact behaviours, the lattice laws under reused replica ids
(conflicting dots), delta correctness, the hostile decoder, format 1 still read.
"""

from __future__ import annotations

import contextlib
import json
import random
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import cbor2
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vsm_phoenix.crdt import (
    GCounter,
    GSet,
    LWWRegister,
    MVRegister,
    ORMap,
    ORSet,
    PNCounter,
    Timestamp,
    _backend,
    _pure,
    decode,
)
from vsm_phoenix.crdt.testing import corruptions, ops, related_states
from vsm_phoenix.errors import DecodeError

BACKENDS: list[ModuleType] = [_pure] + ([_backend.kernels] if _backend.kernels is not _pure else [])
KERNELS = [n for n in _backend.__all__ if n not in ("BACKEND", "kernels")]
BACKEND_IDS = [m.__name__.rsplit(".", 1)[-1] for m in BACKENDS]
LEGACY = Path(__file__).parent / "golden" / "ormap_v1.json"


@contextlib.contextmanager
def kernels_of(mod: ModuleType) -> Iterator[None]:
    saved = {n: getattr(_backend, n) for n in KERNELS}
    try:
        for n in KERNELS:
            setattr(_backend, n, getattr(mod, n))
        yield
    finally:
        for n, fn in saved.items():
            setattr(_backend, n, fn)


@pytest.fixture(params=BACKENDS, ids=BACKEND_IDS)
def kernels(request: pytest.FixtureRequest) -> Iterator[ModuleType]:
    with kernels_of(request.param):
        yield request.param


def inc(replica: str, n: int = 1) -> Callable[[GCounter], GCounter]:
    return lambda c: c.increment(replica, n)


def canon(x: Any) -> bytes:
    return cbor2.dumps(x, canonical=True)


# -- memory: a removed key leaves nothing but its dots in the context --------------------


def test_removing_every_key_leaves_only_the_context(kernels: ModuleType) -> None:
    m = ORMap()
    for x in range(300):
        m.update("a", x, GCounter, inc("a"))
        m.update("a", ("s", x), ORSet, lambda s, x=x: s.add("a", f"e{x}"))
        m.update("a", ("m", x), ORMap, lambda n: n.update("a", "v", MVRegister,
                                                          lambda r: r.assign("a", 1)))
    full = len(m.to_bytes())
    for x in range(300):
        m.remove(x)
        m.remove(("s", x))
        m.remove(("m", x))
    assert m.value == {} and len(m) == 0
    # 6 dots per x (presence + nested dots), contiguous: one version-vector entry.
    assert m.context.value == ({"a": 1800}, frozenset())
    assert m.to_bytes() == canon(["ormap", 2, [[], [{"a": 1800}, []]]])
    assert len(m.to_bytes()) * 100 < full


def test_remove_delta_frees_the_key_at_other_replicas(kernels: ModuleType) -> None:
    a, b = ORMap(), ORMap()
    for x in range(50):
        b |= a.update("a", x, ORSet, lambda s, x=x: s.add("a", x))
    removes = [a.remove(x) for x in range(50)]
    for d in removes:
        b |= d
    assert b == a and b.value == {} and len(b.to_bytes()) < 30


# -- causal values: the paper's map --------------------------------------------------------


def test_concurrent_update_survives_with_its_own_effects_orset(kernels: ModuleType) -> None:
    a, b = ORMap(), ORMap()
    b |= a.update("a", "k", ORSet, lambda s: s.add("a", "x"))
    rem = a.remove("k")  # observed x
    up = b.update("b", "k", ORSet, lambda s: s.add("b", "y"))  # concurrent: adds y
    for x, y in ((a, up), (b, rem)):
        x |= y
    assert a == b
    assert a.value == {"k": frozenset({"y"})}  # x was observed by the remove; y was not


def test_concurrent_readd_of_an_observed_element_survives(kernels: ModuleType) -> None:
    a, b = ORMap(), ORMap()
    b |= a.update("a", "k", ORSet, lambda s: s.add("a", "x"))
    rem = a.remove("k")
    up = b.update("b", "k", ORSet, lambda s: s.add("b", "x"))  # a fresh dot for x
    assert (a | up) == (b | rem) and (a | up).value == {"k": frozenset({"x"})}


def test_concurrent_nested_remove_keeps_the_key_present_but_empty(kernels: ModuleType) -> None:
    a, b = ORMap(), ORMap()
    b |= a.update("a", "k", ORSet, lambda s: s.add("a", "x"))
    rem = a.remove("k")
    up = b.update("b", "k", ORSet, lambda s: s.remove("x"))  # no nested dot, but presence
    assert (a | up) == (b | rem)
    assert (a | up).value == {"k": frozenset()}


def test_concurrent_update_survives_with_its_own_effects_mvregister(kernels: ModuleType) -> None:
    a, b, c = ORMap(), ORMap(), ORMap()
    d1 = a.update("a", "k", MVRegister, lambda r: r.assign("a", "old"))
    b |= d1
    c |= d1
    rem = a.remove("k")
    up_b = b.update("b", "k", MVRegister, lambda r: r.assign("b", "new"))
    up_c = c.update("c", "k", MVRegister, lambda r: r.assign("c", "other"))
    for s in (a, b, c):
        for d in (rem, up_b, up_c):
            s |= d
    assert a == b == c
    assert a.value == {"k": frozenset({"new", "other"})}


def test_nested_map_remove_cancels_what_it_observed_at_every_depth(kernels: ModuleType) -> None:
    a, b = ORMap(), ORMap()
    b |= a.update("a", "outer", ORMap, lambda n: n.update("a", "i", ORSet,
                                                          lambda s: s.add("a", 1)))
    b |= a.update("a", "outer", ORMap, lambda n: n.update("a", "j", GCounter, inc("a", 5)))
    rem = a.remove("outer")
    up = b.update("b", "outer", ORMap, lambda n: n.update("b", "i", ORSet,
                                                          lambda s: s.add("b", 2)))
    a |= up
    b |= rem
    assert a == b
    assert a.value == {"outer": {"i": frozenset({2})}}  # j and element 1 were observed


def test_remove_that_arrives_before_the_update_it_observed(kernels: ModuleType) -> None:
    a, b, c = ORMap(), ORMap(), ORMap()
    up = a.update("a", "k", ORSet, lambda s: s.add("a", "x"))
    b |= up
    rem = b.remove("k")
    c |= rem
    c |= up
    assert c.value == {} and c == b


def test_update_after_remove_starts_from_bottom(kernels: ModuleType) -> None:
    m = ORMap()
    m.update("a", "k", ORSet, lambda s: s.add("a", "x"))
    m.update("a", "n", GCounter, inc("a", 7))
    m.remove("k")
    m.remove("n")
    m.update("a", "k", ORSet, lambda s: s.add("a", "y"))
    m.update("a", "n", GCounter, inc("a", 1))
    assert m.value == {"k": frozenset({"y"}), "n": 1}


# -- non-causal values: exactly what a concurrent remove does ------------------------------


def test_counter_update_concurrent_with_remove_keeps_what_its_replica_held(
    kernels: ModuleType,
) -> None:
    """A counter cannot tell its increments apart, so the update's dot carries the
    whole count its replica held: it comes back as that replica saw it."""
    a, b = ORMap(), ORMap()
    b |= a.update("a", "n", GCounter, inc("a", 5))
    a.update("a", "n", GCounter, inc("a", 2))  # b never sees this one
    rem = a.remove("n")  # observed both of a's updates
    up = b.update("b", "n", GCounter, inc("b", 1))  # b held a's 5; adds 1
    a |= up
    b |= rem
    assert a == b
    assert a.value == {"n": 6}  # a's first 5 (as b held it) + b's 1; a's later +2 is gone


def test_concurrent_counter_updates_without_remove_add_up(kernels: ModuleType) -> None:
    a, b = ORMap(), ORMap()
    b |= a.update("a", "n", PNCounter, lambda c: c.increment("a", 5))
    da = a.update("a", "n", PNCounter, lambda c: c.decrement("a", 2))
    db = b.update("b", "n", PNCounter, lambda c: c.increment("b", 10))
    a |= db
    b |= da
    assert a == b and a.value == {"n": 13}
    a.update("a", "n", PNCounter, lambda c: c.increment("a", 1))  # folds both dots into one
    assert a.value == {"n": 14} and len(a._slots["n"].states or {}) == 1


def test_lww_update_concurrent_with_remove_keeps_its_register(kernels: ModuleType) -> None:
    t1, t2, t3 = (Timestamp(1000 + i, 0, "a") for i in range(3))
    a, b = ORMap(), ORMap()
    b |= a.update("a", "w", LWWRegister, lambda r: r.assign("first", t1))
    a.update("a", "w", LWWRegister, lambda r: r.assign("later", t3))
    rem = a.remove("w")
    up = b.update("b", "w", LWWRegister, lambda r: r.assign("second", t2))
    a |= up
    b |= rem
    # The surviving register is b's: "second" (t2); a's "later" (t3) was removed.
    assert a == b and a.value == {"w": "second"}


def test_sequential_remove_then_update_of_counter(kernels: ModuleType) -> None:
    a, b = ORMap(), ORMap()
    b |= a.update("a", "n", GCounter, inc("a", 5))
    b |= a.remove("n")
    b |= a.update("a", "n", GCounter, inc("a", 1))
    assert a == b and a.value == {"n": 1}


# -- types under one key ---------------------------------------------------------------------


def test_retyped_key_joins_once_the_old_type_is_cancelled(kernels: ModuleType) -> None:
    a, b = ORMap(), ORMap()
    b |= a.update("a", "k", GCounter, inc("a"))
    rem = a.remove("k")
    retype = a.update("a", "k", ORSet, lambda s: s.add("a", "x"))
    b |= rem
    b |= retype
    assert b == a and b.value == {"k": frozenset({"x"})}


def test_race_between_retype_and_old_type_update_is_refused_unchanged(
    kernels: ModuleType,
) -> None:
    a, b = ORMap(), ORMap()
    b |= a.update("a", "k", GCounter, inc("a"))
    a.remove("k")
    a.update("a", "k", ORSet, lambda s: s.add("a", "x"))
    b.update("b", "k", GCounter, inc("b"))  # concurrent with the remove
    before_a, before_b = a.to_bytes(), b.to_bytes()
    with pytest.raises(TypeError):
        a |= b
    with pytest.raises(TypeError):
        b | a
    assert a.to_bytes() == before_a and b.to_bytes() == before_b


def test_same_dot_under_two_kinds_is_refused_both_ways(kernels: ModuleType) -> None:
    a, b = ORMap(), ORMap()
    a.update("r", "k", GCounter, inc("r"))
    b.update("r", "k", GSet, lambda s: s.add(1))  # "r" reused: the same dot (r, 1)
    before_a, before_b = a.to_bytes(), b.to_bytes()
    for x, y in ((a, b), (b, a)):
        with pytest.raises(TypeError):
            x | y
        with pytest.raises(TypeError):
            assert x <= y
    assert a.to_bytes() == before_a and b.to_bytes() == before_b


# -- conflicting dots (a replica id reused after losing its state) --------------------------


def _incarnations(seed: int, n: int = 3) -> list[ORMap]:
    """States of replicas that restart from scratch with the same ids: their dots
    collide with different contents."""
    rnd = random.Random(seed)
    kinds: list[tuple[str, Any]] = [
        ("n", lambda r: (GCounter, inc(r, rnd.randrange(1, 4)))),
        ("s", lambda r: (ORSet, lambda s: s.add(r, rnd.choice("xyz")))),
        ("t", lambda r: (ORSet, lambda s: s.remove(rnd.choice("xyz")))),
        ("v", lambda r: (MVRegister, lambda x: x.assign(r, rnd.choice([1, 2, "u"])))),
        ("w", lambda r: (LWWRegister, lambda x: x.assign(rnd.choice("pq"),
                                                        Timestamp(rnd.randrange(3), 0, r)))),
        ("m", lambda r: (ORMap, lambda x: x.update(r, rnd.choice("ab"), GCounter, inc(r)))),
    ]
    out = []
    for _ in range(n):
        m = ORMap()
        for _ in range(rnd.randrange(1, 7)):
            r = rnd.choice("ab")
            name, make = rnd.choice(kinds)
            key = "s" if name == "t" else name
            if rnd.random() < 0.2:
                m.remove(key)
            else:
                kind, mutate = make(r)
                m.update(r, key, kind, mutate)
        out.append(m)
    return out


@settings(max_examples=80, deadline=None)
@given(st.integers(0, 2**32))
def test_laws_hold_under_conflicting_dots(seed: int) -> None:
    for mod in BACKENDS:
        with kernels_of(mod):
            a, b, c = _incarnations(seed)
            assert (a | b).to_bytes() == (b | a).to_bytes()
            assert ((a | b) | c).to_bytes() == (a | (b | c)).to_bytes()
            assert (a | a) == a
            assert a <= a | b and b <= a | b
            x = a.copy()
            x |= b
            assert x == a | b
            assert decode((a | b).to_bytes()) == a | b


def test_same_dot_different_values_joins_deterministically(kernels: ModuleType) -> None:
    good, evil = ORMap(), ORMap()
    good.update("r", "k", MVRegister, lambda x: x.assign("r", "good"))
    evil.update("r", "k", MVRegister, lambda x: x.assign("r", "evil"))
    assert (good | evil).to_bytes() == (evil | good).to_bytes()
    c1, c2 = ORMap(), ORMap()
    c1.update("r", "n", GCounter, inc("r", 1))
    c2.update("r", "n", GCounter, inc("r", 9))  # the same dot carries two counts: joined
    assert (c1 | c2) == (c2 | c1) and (c1 | c2).value == {"n": 9}
    l1, l2 = ORMap(), ORMap()
    ts = Timestamp(5, 0, "r")
    l1.update("r", "w", LWWRegister, lambda x: x.assign("a", ts))
    l2.update("r", "w", LWWRegister, lambda x: x.assign("b", ts))
    assert (l1 | l2).to_bytes() == (l2 | l1).to_bytes() and (l1 | l2).value == {"w": "b"}


# -- deltas ------------------------------------------------------------------------------------


@settings(deadline=None)
@given(data=st.data())
def test_delta_is_correct_locally_and_remotely(data: Any) -> None:
    for mod in BACKENDS:
        with kernels_of(mod):
            s, other = data.draw(related_states(ORMap, 2))
            op = data.draw(ops(ORMap))
            before, other_before = s.copy(), other.copy()
            delta = op.apply(s)
            assert before | delta == s  # s | m_delta(s) == m(s)
            assert before <= s  # inflationary
            assert (other_before | delta) | before == other_before | s


def test_mutate_joining_a_state_built_elsewhere(kernels: ModuleType) -> None:
    """A state built outside the map joins the nested value when its dots are new to
    the map; the presence dot is minted after them, so it never collides."""
    inner = ORSet()
    inner.add("a", "x")  # (a, 1), minted outside any map
    m, peer = ORMap(), ORMap()

    def join_inner(s: ORSet) -> ORSet:
        s |= inner
        return inner.copy()

    peer |= m.update("a", "k", ORSet, join_inner)
    assert m.value == {"k": frozenset({"x"})} and peer == m
    assert m.context.value == ({"a": 2}, frozenset())  # (a, 1) the element, (a, 2) presence


def test_mutate_that_joins_a_colliding_foreign_state_is_refused(kernels: ModuleType) -> None:
    """A causal value's dots are the map's: a state built outside the map whose dot
    the map already holds for something else (here (a, 1), a presence dot) cannot be
    taken; returning it as the delta is refused, the map unchanged."""
    foreign = ORSet()
    foreign.add("a", "x")
    m = ORMap()
    m.update("a", "k", ORSet, lambda s: s.add("a", "y"))
    before = m.to_bytes()

    def join_foreign(s: ORSet) -> ORSet:
        s |= foreign
        return foreign.copy()

    with pytest.raises(TypeError, match="delta of the mutation"):
        m.update("a", "k", ORSet, join_foreign)
    assert m.to_bytes() == before


def test_mutate_returning_its_working_copy_ships_a_valid_delta(kernels: ModuleType) -> None:
    a, b = ORMap(), ORMap()
    b |= a.update("a", "other", ORSet, lambda s: s.add("a", "o"))
    d = a.update("a", "k", ORSet, lambda s: (s.add("a", "x"), s)[1])
    b |= d
    assert b == a and b.value == {"other": frozenset({"o"}), "k": frozenset({"x"})}


def test_get_and_copies_are_independent(kernels: ModuleType) -> None:
    m = ORMap()
    m.update("a", "k", ORSet, lambda s: s.add("a", "x"))
    got = m.get("k")
    assert isinstance(got, ORSet) and got.value == {"x"}
    got.add("zz", "y")
    c = m.copy()
    c.update("a", "k", ORSet, lambda s: s.add("a", "z"))
    assert m.value == {"k": frozenset({"x"})}
    assert m.get("nope") is None and m.get([1]) is None  # type: ignore[arg-type]


# -- the decoder ---------------------------------------------------------------------------------

CTX = [{"r": 3}, []]
GC = ["gcounter", 1]
VALID_V2: list[Any] = [
    [[["k", *GC, [[["r", 1], {"r": 1}]]]], [{"r": 1}, []]],
    [[["k", "orset", 1, [[["r", 1]], [["x", [["r", 2]]]]]]], [{"r": 2}, []]],
    [[["k", "mvreg", 1, [[], [[["r", 1], "v"]]]]], [{"r": 1}, []]],
    [[["k", "ormap", 2, [[["r", 1]], [["j", *GC, [[["r", 2], {"r": 5}]]]]]]], [{"r": 2}, []]],
    [[], CTX],
]
INVALID_V2: list[tuple[str, Any]] = [
    ("dot outside context", [[["k", *GC, [[["r", 4], {"r": 1}]]]], CTX]),
    ("empty slot", [[["k", *GC, []]], CTX]),
    ("empty causal slot", [[["k", "orset", 1, [[], []]]], CTX]),
    ("dot in two keys", [[["j", *GC, [[["r", 1], {}]]], ["k", *GC, [[["r", 1], {}]]]], CTX]),
    ("dot in presence and store",
     [[["k", "orset", 1, [[["r", 1]], [["x", [["r", 1]]]]]]], CTX]),
    ("store dot outside context", [[["k", "orset", 1, [[["r", 1]], [["x", [["r", 9]]]]]]], CTX]),
    ("unknown tag", [[["k", "nosuch", 1, [[["r", 1], {}]]]], CTX]),
    ("nested format-1 map", [[["k", "ormap", 1, [[["r", 1]], []]]], CTX]),
    ("nested bad version", [[["k", "gcounter", 7, [[["r", 1], {}]]]], CTX]),
    ("nested invalid", [[["k", *GC, [[["r", 1], {"r": -1}]]]], CTX]),
    ("slot too short", [[["k", *GC]], CTX]),
    ("causal body short", [[["k", "orset", 1, [[["r", 1]]]]], CTX]),
    ("unsorted keys", [[["k", *GC, [[["r", 1], {}]]], ["a", *GC, [[["r", 2], {}]]]], CTX]),
    ("duplicate key", [[["k", *GC, [[["r", 1], {}]]], ["k", *GC, [[["r", 2], {}]]]], CTX]),
    ("unsorted dots", [[["k", *GC, [[["r", 2], {}], [["r", 1], {}]]]], CTX]),
    ("zero dot", [[["k", *GC, [[["r", 0], {}]]]], CTX]),
    ("float key", [[[1.5, *GC, [[["r", 1], {}]]]], CTX]),
    ("bad context", [[], [{"r": 0}, []]]),
    ("three parts", [[], CTX, []]),
]


@pytest.mark.parametrize("state", VALID_V2)
def test_handmade_format_2_layouts_decode(state: Any) -> None:
    raw = canon(["ormap", 2, state])
    m = ORMap.from_bytes(raw)
    assert m.to_bytes() == raw and decode(raw) == m


@pytest.mark.parametrize(("why", "state"), INVALID_V2, ids=[w for w, _ in INVALID_V2])
def test_invalid_format_2_layouts_are_decode_errors(why: str, state: Any) -> None:
    with pytest.raises(DecodeError):
        ORMap.from_bytes(canon(["ormap", 2, state]))
    with pytest.raises(DecodeError):
        decode(canon(["ormap", 2, state]))


def test_deep_format_2_nesting_decodes_or_decode_error() -> None:
    state: Any = [[["k", *GC, [[["r", 1], {"r": 1}]]]], [{"r": 1}, []]]
    slots = state[0]
    for i in range(2, 200):
        slots = [["k", "ormap", 2, [[["r", i]], slots]]]
    raw = canon(["ormap", 2, [slots, [{"r": 199}, []]]])
    try:
        m = decode(raw)
    except DecodeError:
        return
    assert m.to_bytes() == raw


@settings(deadline=None)
@given(data=st.data())
def test_corrupted_bytes_decode_error_or_valid_and_join_leaves_state_unchanged(
    data: Any,
) -> None:
    a, b = data.draw(related_states(ORMap, 2))
    raw = data.draw(corruptions(b.to_bytes()))
    before = a.to_bytes()
    try:
        got = ORMap.from_bytes(raw)
    except DecodeError:
        assert a.to_bytes() == before
        return
    assert got.to_bytes() == raw
    try:
        a |= got
    except TypeError:  # a forged state may put another type under a key: refused whole
        assert a.to_bytes() == before


# -- format 1 is still read ------------------------------------------------------------------------


def _legacy() -> dict[str, str]:
    return json.loads(LEGACY.read_text())["vectors"]  # type: ignore[no-any-return]


def test_format_1_golden_vectors_still_decode() -> None:
    v = _legacy()
    empty = decode(bytes.fromhex(v["ormap-empty-v1"]))
    assert empty == ORMap()
    m = ORMap.from_bytes(bytes.fromhex(v["ormap-v1"]))
    # "gone" was removed: format 1 kept its value; format 2 drops it.
    assert m.value == {"count": 2, "set": frozenset({"e"}), "inner": {"k": "v"}}
    assert m.to_bytes().hex() == v["ormap-v1-as-v2"]
    assert decode(m.to_bytes()) == m
    # The converted map goes on working: its renamed nested dots never collide.
    m.update("r1", "set", ORSet, lambda s: s.add("r1", "f"))
    m.update("r2", "inner", ORMap, lambda n: n.update("r2", "j", GCounter, inc("r2")))
    assert m.value["set"] == {"e", "f"} and m.value["inner"] == {"k": "v", "j": 1}
    m.remove("set")
    assert "set" not in m and decode(m.to_bytes()) == m


def test_format_1_non_canonical_or_invalid_is_refused() -> None:
    v1 = cbor2.loads(bytes.fromhex(_legacy()["ormap-v1"]))
    tag, version, state = v1
    values = state[2]
    swapped = [tag, version, [state[0], state[1], list(reversed(values))]]
    with pytest.raises(DecodeError):
        decode(canon(swapped))
    bad_nested = [tag, version, [state[0], state[1], [[values[0][0], ["gset", 1, [2, 1]]]]]]
    with pytest.raises(DecodeError):
        decode(canon(bad_nested))


def test_format_1_states_of_two_replicas_join_after_reading() -> None:
    """Replicas that read their old states agree on the renamed dots, so the joins
    still behave as the old nested joins did."""
    raw_a = canon(["ormap", 1, [[["k", [["a", 1]]]], [{"a": 1}, []],
                                [["k", ["orset", 1, [[["x", [["a", 1]]]], [{"a": 1}, []]]]]]]])
    raw_b = canon(["ormap", 1, [[["k", [["a", 1]]]], [{"a": 1}, []],
                                [["k", ["orset", 1, [[["x", [["a", 1]]], ["y", [["b", 1]]]],
                                                     [{"a": 1, "b": 1}, []]]]]]]])
    a, b = decode(raw_a), decode(raw_b)
    assert (a | b) == (b | a) and (a | b).value == {"k": frozenset({"x", "y"})}


# -- the indexed (delta) join agrees with the plain one ------------------------------------


@contextlib.contextmanager
def delta_ratio(ratio: int) -> Iterator[None]:
    saved = ORMap.DELTA_RATIO
    ORMap.DELTA_RATIO = ratio
    try:
        yield
    finally:
        ORMap.DELTA_RATIO = saved


@settings(deadline=None)
@given(data=st.data())
def test_indexed_join_matches_plain_join_and_keeps_its_index(data: Any) -> None:
    """Two mirrors of one replica receive the same ops and deltas: one always joins
    through the dot index, the other never; they stay equal, and the index stays the
    index of the state it serves (updates and removes maintain it too)."""
    for mod in BACKENDS:
        with kernels_of(mod):
            peers = [ORMap(), ORMap()]
            indexed, plain = ORMap(), ORMap()
            shipped: list[ORMap] = []

            def join(d: ORMap) -> None:
                nonlocal indexed, plain
                with delta_ratio(0):  # every join indexed
                    indexed |= d
                with delta_ratio(10**9):  # never
                    plain |= d

            for _ in range(data.draw(st.integers(1, 25))):
                step = data.draw(st.sampled_from(["peer", "peer", "local", "deliver", "state"]))
                if step == "peer":
                    i = data.draw(st.integers(0, 1))
                    shipped.append(data.draw(ops(ORMap, [("p", "q")[i]])).apply(peers[i]))
                elif step == "local":
                    op = data.draw(ops(ORMap, ["me"]))
                    d1 = op.apply(indexed)
                    d2 = op.apply(plain)
                    assert d1 == d2
                elif step == "deliver" and shipped:
                    join(shipped[data.draw(st.integers(0, len(shipped) - 1))])
                elif step == "state":
                    join(peers[data.draw(st.integers(0, 1))])
                assert indexed == plain
                if indexed._index is not None:
                    rebuilt = {d: k for k, s in indexed._slots.items() for d in s.dots()}
                    assert indexed._index == rebuilt


def test_one_dot_delta_touches_only_its_keys() -> None:
    """A delta into a big map walks the delta, not the map: the keys it neither names
    nor cancels are never visited (checked by counting dot enumerations)."""
    m = ORMap()
    for x in range(2_000):
        m.update("a", x, GCounter, inc("a"))
    other = ORMap()
    m |= other.update("b", "warm", GCounter, inc("b"))  # builds the index
    calls = 0
    original = m._slots[0].__class__.dots

    def counting(self: Any) -> Any:
        nonlocal calls
        calls += 1
        return original(self)

    cls = m._slots[0].__class__
    cls.dots = counting  # type: ignore[method-assign]
    try:
        m |= other.update("b", "new", GCounter, inc("b"))
        m |= other.remove("new")
    finally:
        cls.dots = original  # type: ignore[method-assign]
    assert calls < 20 and "new" not in m and len(m) == 2_001


def test_earlier_format_2_golden_state_still_decodes_unchanged() -> None:
    """The golden state's format-2 bytes from when the presence dot was minted before
    the nested dots: a valid state, read and re-encoded byte for byte."""
    raw = bytes.fromhex(_legacy()["ormap-v2-presence-dot-first"])
    m = ORMap.from_bytes(raw)
    assert m.to_bytes() == raw
    assert m.value == {"count": 2, "set": frozenset({"e"}), "inner": {"k": "v"}}
