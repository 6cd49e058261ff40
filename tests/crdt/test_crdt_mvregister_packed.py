"""MV-Register on packed dots: the dot function is keyed by one ``int`` per dot (as the
OR-Set's dot store), while bytes, pickles and copies stay what they were."""

from __future__ import annotations

import copy
import pickle

import pytest
from hypothesis import given
from hypothesis import strategies as st

from vsm_phoenix.crdt import MVRegister, ORMap, _intern, codec
from vsm_phoenix.crdt._dots import pack, unpack
from vsm_phoenix.errors import DecodeError


def _concurrent() -> MVRegister:
    a, b = MVRegister(), MVRegister()
    a.assign("ra", "x")
    b.assign("rb", 7)
    return a | b


def test_writes_are_keyed_by_packed_dots() -> None:
    r = _concurrent()
    assert all(type(d) is int for d in r._store)
    assert r._writes == {("ra", 1): "x", ("rb", 1): 7}
    assert {unpack(d) for d in r._store} == set(r._writes)
    assert r._store == {pack("ra", 1): "x", pack("rb", 1): 7}


def test_pickle_and_deepcopy_round_trip_through_bytes() -> None:
    r = _concurrent()
    for twin in (pickle.loads(pickle.dumps(r)), copy.deepcopy(r), copy.copy(r)):
        assert twin == r and twin.to_bytes() == r.to_bytes()
        twin.assign("rc", "later")
        assert r.value == frozenset({"x", 7})


def test_a_refused_decode_interns_no_replica_id() -> None:
    fresh = "replica-seen-only-in-refused-input-mvreg"
    assert _intern.lookup(fresh) == -1
    # The write's dot is outside the context: DecodeError, and the id stays unknown.
    bad = codec.encode_object("mvreg", 1, [[[[fresh, 2], "v"]], [{fresh: 1}, []]])
    with pytest.raises(DecodeError):
        MVRegister.from_bytes(bad)
    twice = codec.encode_object("mvreg", 1, [[[[fresh, 1], "v"], [[fresh, 1], "w"]],
                                             [{fresh: 1}, []]])
    with pytest.raises(DecodeError):
        MVRegister.from_bytes(twice)
    assert _intern.lookup(fresh) == -1


@given(st.lists(st.tuples(st.sampled_from(["a", "b", "c"]), st.integers(0, 3)), max_size=12))
def test_encoding_orders_dots_by_replica_then_counter(ops: list[tuple[str, int]]) -> None:
    # Packed order is counter-major and depends on interning order; the wire order
    # must not: decode(encode(x)) is x, and the dots appear sorted as (replica, counter).
    regs = [MVRegister() for _ in range(3)]
    for r, i in ops:
        regs[i % 3].assign(r, f"{r}{i}")
        regs[(i + 1) % 3] |= regs[i % 3]
    joined = regs[0] | regs[1] | regs[2]
    state = codec.parse_object(joined.to_bytes())[1][2]
    wire_dots = [tuple(item[0]) for item in state[0]]
    assert wire_dots == sorted(wire_dots)
    assert MVRegister.from_bytes(joined.to_bytes()) == joined


def test_ormap_embeds_packed_registers() -> None:
    m = ORMap()
    m.update("r1", "k", MVRegister, lambda reg: reg.assign("r1", "v1"))
    other = m.copy()
    other.update("r2", "k", MVRegister, lambda reg: reg.assign("r2", "v2"))
    m.update("r1", "k", MVRegister, lambda reg: reg.assign("r1", "v3"))
    joined = m | other
    assert joined.value == {"k": frozenset({"v2", "v3"})}
    assert ORMap.from_bytes(joined.to_bytes()) == joined
    removed = joined.copy()
    removed.remove("k")
    assert (removed | joined).value == {}
