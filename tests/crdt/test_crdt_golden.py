"""Golden byte vectors: fixed states of every type and their exact canonical bytes.

A failure here means the wire/storage format changed. If that is intended, bump the
type's ``VERSION``, keep decoding the old one, and regenerate with
``python tests/crdt/test_crdt_golden.py`` (then review the diff of the JSON file).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

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
    decode,
)

GOLDEN = Path(__file__).parent / "golden" / "vectors.json"
T1, T2 = Timestamp(1700000000000, 0, "r1"), Timestamp(1700000000000, 1, "r2")


def _gcounter() -> GCounter:
    c = GCounter()
    c.increment("r1", 3)
    c.increment("r2", 2**40)
    return c


def _pncounter() -> PNCounter:
    c = PNCounter()
    c.increment("r1", 5)
    c.decrement("r2", 7)
    return c


def _gset() -> GSet:
    return GSet([1, -1, "a", b"\x00", None, ("t", (1, b"x")), 2**70])


def _twopset() -> TwoPSet:
    s = TwoPSet()
    for e in ("a", "b", 3):
        s.add(e)
    s.remove("b")
    s.remove("never-added")
    return s


def _lwwset(bias: str) -> Callable[[], LWWElementSet]:
    def build() -> LWWElementSet:
        s = LWWElementSet(bias)  # type: ignore[arg-type]
        s.add("a", T1)
        s.add("b", T1)
        s.remove("b", T1)
        s.remove("c", T2)
        return s

    return build


def _orset() -> ORSet:
    a, b = ORSet(), ORSet()
    a.add("r1", "x")
    a.add("r1", "y")
    b |= a
    b.remove("x")
    b.add("r2", ("t", 1))
    a.add("r1", "x")
    a |= b
    return a


def _lwwreg() -> LWWRegister:
    r = LWWRegister()
    r.assign("old", T1)
    r.assign(("new", 1), T2)
    return r


def _mvreg() -> MVRegister:
    a, b = MVRegister(), MVRegister()
    a.assign("r1", "x")
    b.assign("r2", "y")
    a |= b
    return a


def _ormap() -> ORMap:
    m = ORMap()
    m.update("r1", "count", GCounter, lambda c: c.increment("r1", 2))
    m.update("r1", "set", ORSet, lambda s: s.add("r1", "e"))
    m.update("r1", "gone", MVRegister, lambda r: r.assign("r1", 7))
    m.remove("gone")
    m.update(
        "r2",
        "inner",
        ORMap,
        lambda n: n.update("r2", "k", LWWRegister, lambda r: r.assign("v", T2)),
    )
    return m


def _vclock() -> VectorClock:
    return VectorClock({"r1": 2, "r2": 1})


def _cctx() -> CausalContext:
    return CausalContext([("r1", 1), ("r1", 2), ("r1", 5), ("r2", 3)])


BUILDERS: dict[str, Callable[[], CRDT]] = {
    "gcounter-empty": GCounter,
    "gcounter": _gcounter,
    "pncounter": _pncounter,
    "gset-empty": GSet,
    "gset": _gset,
    "2pset": _twopset,
    "lwwset-add-bias": _lwwset("add"),
    "lwwset-remove-bias": _lwwset("remove"),
    "orset-empty": ORSet,
    "orset": _orset,
    "lwwreg-empty": LWWRegister,
    "lwwreg": _lwwreg,
    "mvreg": _mvreg,
    "ormap-empty": ORMap,
    "ormap": _ormap,
    "vclock": _vclock,
    "cctx": _cctx,
}


def _vectors() -> dict[str, str]:
    return json.loads(GOLDEN.read_text())["vectors"]  # type: ignore[no-any-return]


def test_every_type_has_golden_vectors() -> None:
    from vsm_phoenix.crdt.testing import LATTICE_TYPES

    covered = {type(b()) for b in BUILDERS.values()}
    assert covered == set(LATTICE_TYPES)
    assert set(_vectors()) == set(BUILDERS)


@pytest.mark.parametrize("name", sorted(BUILDERS))
def test_encoding_matches_golden_bytes(name: str) -> None:
    state = BUILDERS[name]()
    assert state.to_bytes().hex() == _vectors()[name]


@pytest.mark.parametrize("name", sorted(BUILDERS))
def test_golden_bytes_decode_back(name: str) -> None:
    raw = bytes.fromhex(_vectors()[name])
    obj = decode(raw)
    assert obj == BUILDERS[name]()
    assert type(obj).from_bytes(raw) == obj
    assert obj.to_bytes() == raw


def regenerate() -> None:
    GOLDEN.parent.mkdir(exist_ok=True)
    doc = {
        "comment": "Canonical CBOR of fixed states (tests/crdt/test_crdt_golden.py). "
        "Do not edit by hand; a change here is a wire-format change.",
        "format_versions": {type(b()).TAG: type(b()).VERSION for b in BUILDERS.values()},
        "vectors": {name: b().to_bytes().hex() for name, b in sorted(BUILDERS.items())},
    }
    GOLDEN.write_text(json.dumps(doc, indent=2, sort_keys=True) + "\n")


if __name__ == "__main__":
    regenerate()
    sys.stdout.write(f"wrote {GOLDEN}\n")
