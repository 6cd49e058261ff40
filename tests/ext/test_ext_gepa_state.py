"""EvolutionState: lattice laws, deltas, codec, conflict resolution, frontier, hostile
records."""

from __future__ import annotations

import itertools
import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from vsm_phoenix import cbor
from vsm_phoenix.crdt import decode
from vsm_phoenix.ext.gepa import (
    DecodeError,
    EvalKey,
    Evaluation,
    EvolutionState,
    InvalidArgument,
    TypeMismatch,
    candidate_id,
    decode_candidate,
    decode_evaluation,
)
from vsm_phoenix.ext.gepa.records import encode_candidate, encode_evaluation

TEXTS = ["a", "b", "c", "rule: x"]
INSTANCES = ["i0", "i1", "i2"]
NODES = ["n1", "n2", "n3"]

# One operation: ("cand", text, parent text | None) | ("eval", text, inst, score, node)
# | ("spend", node, n).
ops = st.one_of(
    st.tuples(st.just("cand"), st.sampled_from(TEXTS), st.none() | st.sampled_from(TEXTS)),
    st.tuples(st.just("eval"), st.sampled_from(TEXTS), st.sampled_from(INSTANCES),
              st.sampled_from([0.0, 0.5, 1.0]), st.sampled_from(NODES)),
    st.tuples(st.just("spend"), st.sampled_from(NODES), st.integers(0, 3)),
)


def apply(s: EvolutionState, op: tuple) -> EvolutionState:  # type: ignore[type-arg]
    if op[0] == "cand":
        parents = [] if op[2] is None else [candidate_id({"rule": op[2]})]
        return s.add_candidate({"rule": op[1]}, parents)
    if op[0] == "eval":
        key = EvalKey(candidate_id({"rule": op[1]}), op[2], "v1")
        return s.record(key, Evaluation(output=op[1] + op[2], score=op[3],
                                        trace={"feedback": f"from {op[4]}"}, by=op[4]))
    return s.spend(op[1], op[2])


@st.composite
def states(draw: st.DrawFn) -> EvolutionState:
    s = EvolutionState()
    for op in draw(st.lists(ops, max_size=8)):
        apply(s, op)
    return s


@given(states(), states())
def test_join_commutes(a: EvolutionState, b: EvolutionState) -> None:
    assert a | b == b | a
    assert (a | b).to_bytes() == (b | a).to_bytes()


@given(states(), states(), states())
def test_join_associates(a: EvolutionState, b: EvolutionState, c: EvolutionState) -> None:
    assert (a | b) | c == a | (b | c)


@given(states(), states())
def test_join_idempotent_and_upper_bound(a: EvolutionState, b: EvolutionState) -> None:
    assert a | a == a
    j = a | b
    assert a <= j and b <= j
    assert (a <= b) == (a | b == b)


@given(states(), ops)
def test_delta_is_the_mutation(s: EvolutionState, op: tuple) -> None:  # type: ignore[type-arg]
    before = s.copy()
    delta = apply(s, op)
    assert before | delta == s
    assert before <= s  # inflationary


@given(states())
def test_codec_round_trip(s: EvolutionState) -> None:
    raw = s.to_bytes()
    back = EvolutionState.from_bytes(raw)
    assert back == s and back.to_bytes() == raw
    assert decode(raw) == s
    # The indexes are rebuilt from the decoded elements.
    for key in s.evaluation_keys():
        assert back.resolved(key) == s.resolved(key)
    assert back.candidate_ids() == s.candidate_ids()


@given(st.lists(states(), min_size=2, max_size=4))
def test_frontier_is_the_same_after_any_merge_order(replicas: list[EvolutionState]) -> None:
    frontiers = set()
    for order in itertools.permutations(replicas):
        acc = EvolutionState()
        for r in order:
            acc |= r
        f = acc.frontier(INSTANCES, "v1")
        frontiers.add((tuple(sorted(f.scores.items())), f.per_instance, f.members, f.best,
                       f.best_score))
    assert len(frontiers) == 1


def test_conflicting_evaluations_resolve_to_the_lowest_score_everywhere() -> None:
    cid = candidate_id({"rule": "a"})
    key = EvalKey(cid, "i0", "v1")
    a, b = EvolutionState(), EvolutionState()
    a.record(key, Evaluation("yes", 1.0, None, "n1"))
    b.record(key, Evaluation("no", 0.0, None, "n2"))
    for j in (a | b, b | a):
        ev = j.resolved(key)
        assert ev is not None and ev.score == 0.0 and ev.output == "no" and ev.by == "n2"
        assert j.records_for(key) == 2
    # Equal scores: the smaller canonical record wins, on every replica.
    c, d = EvolutionState(), EvolutionState()
    c.record(key, Evaluation("x", 0.5, None, "n1"))
    d.record(key, Evaluation("x", 0.5, None, "n2"))
    assert (c | d).resolved(key) == (d | c).resolved(key)
    assert (c | d).resolved(key).by == "n1"  # type: ignore[union-attr]


def test_frontier_contents() -> None:
    s = EvolutionState()
    ca, cb, cc = ({"rule": t} for t in ("a", "b", "c"))
    for cand in (ca, cb, cc):
        s.add_candidate(cand)
    grid = {"a": [1.0, 0.0], "b": [0.0, 1.0], "c": [0.5, 0.5]}
    for text, row in grid.items():
        for inst, score in zip(["i0", "i1"], row, strict=True):
            s.record(EvalKey(candidate_id({"rule": text}), inst, "v1"),
                     Evaluation(None, score, None, "n1"))
    f = s.frontier(["i0", "i1"], "v1")
    ida, idb, idc = (candidate_id(c) for c in (ca, cb, cc))
    assert f.members == tuple(sorted([ida, idb]))  # c is on no instance's frontier
    assert f.per_instance == ((1.0, (ida,)), (1.0, (idb,)))
    # All means are 0.5: the smallest id wins, on every replica.
    assert f.best == min(ida, idb, idc) and f.best_score == 0.5
    # A candidate missing an instance is not in the matrix.
    s.add_candidate({"rule": "d"})
    s.record(EvalKey(candidate_id({"rule": "d"}), "i0", "v1"), Evaluation(None, 1.0, None, "n1"))
    assert candidate_id({"rule": "d"}) not in s.frontier(["i0", "i1"], "v1").scores
    with pytest.raises(InvalidArgument):
        s.frontier([], "v1")


def test_lineage_orders_parents_first_and_survives_cycles() -> None:
    s = EvolutionState()
    root = {"rule": "zzz"}
    child = {"rule": "aaa"}
    s.add_candidate(child, [candidate_id(root)])
    s.add_candidate(root)
    assert s.candidate_ids() == [candidate_id(root), candidate_id(child)]
    assert s.parents(candidate_id(child)) == {candidate_id(root)}
    # A cycle claimed by another node (both records valid) still orders deterministically.
    x, y = {"rule": "x"}, {"rule": "y"}
    s.add_candidate(x, [candidate_id(y)])
    s.add_candidate(y, [candidate_id(x)])
    ids = s.candidate_ids()
    assert sorted(ids) == sorted({candidate_id(c) for c in (root, child, x, y)})
    assert ids[-2:] == sorted([candidate_id(x), candidate_id(y)])


def test_budget_counts_per_node() -> None:
    a, b = EvolutionState(), EvolutionState()
    a.spend("n1", 3)
    b.spend("n2", 2)
    b.spend("n1", 1)
    j = a | b
    assert j.budget_spent == 5 and j.spent_by("n1") == 3 and j.spent_by("n2") == 2


def test_golden_bytes() -> None:
    s = EvolutionState()
    s.add_candidate({"rule": "a"})
    s.record(EvalKey(candidate_id({"rule": "a"}), "i0", "v1"),
             Evaluation("ok", 1.0, {"feedback": "right"}, "n1"))
    s.spend("n1", 1)
    # Regenerate (only on a deliberate format change): print(s.to_bytes().hex())
    assert s.to_bytes().hex() == GOLDEN


GOLDEN = (
    "836a676570612e7374617465018381845820c0f8c0fbf72d98b64a721f84b22b8bd68d55bfb14a74"
    "a66b5c6864d2707f08cb626930627631581a84626f6bf93c00a168666565646261636b6572696768"
    "74626e3181825820c0f8c0fbf72d98b64a721f84b22b8bd68d55bfb14a74a66b5c6864d2707f08cb"
    "4a82a16472756c65616180a1626e3101"
)


# -- argument validation -------------------------------------------------------------------

def test_bad_arguments_are_refused_and_change_nothing() -> None:
    s = EvolutionState()
    s.add_candidate({"rule": "a"})
    before = s.to_bytes()
    cid = candidate_id({"rule": "a"})
    with pytest.raises(TypeMismatch):
        Evaluation(object(), 1.0, None, "n1")
    with pytest.raises(InvalidArgument):
        Evaluation("x", math.nan, None, "n1")
    with pytest.raises(TypeMismatch):
        Evaluation("x", True, None, "n1")  # a bool is not a score
    with pytest.raises(InvalidArgument):
        Evaluation("x", 1.0, None, "")
    with pytest.raises(TypeMismatch):
        Evaluation("x", 1.0, {1: "int key"}, "n1")
    with pytest.raises(InvalidArgument):
        EvalKey(b"short", "i0", "v1")
    with pytest.raises(InvalidArgument):
        EvalKey(cid, "", "v1")
    with pytest.raises(InvalidArgument):
        s.add_candidate({})
    with pytest.raises(TypeMismatch):
        s.add_candidate({"rule": 3})  # type: ignore[dict-item]
    with pytest.raises(TypeMismatch):
        s.record(("k",), Evaluation("x", 1.0, None, "n1"))  # type: ignore[arg-type]
    with pytest.raises(InvalidArgument):
        s.add_candidate({"rule": "b"}, [b"not an id"])
    assert s.to_bytes() == before


# -- hostile bytes ---------------------------------------------------------------------

def _state_bytes(evals: list, pool: list, budget: dict) -> bytes:  # type: ignore[type-arg]
    return cbor.dumps(["gepa.state", 1, [evals, pool, budget]])


def test_hostile_states_are_decode_errors() -> None:
    cid = candidate_id({"rule": "a"})
    good_rec = encode_evaluation(Evaluation("ok", 1.0, None, "n1"))
    good_cand = encode_candidate({"rule": "a"}, frozenset())
    bad = [
        _state_bytes([[cid, "i0", "v1", b"\xff"]], [], {}),  # record not CBOR
        _state_bytes([[cid, "i0", "v1", cbor.dumps(["ok", 1, None, "n1"])]], [], {}),  # int score
        _state_bytes([[cid, "i0", "v1", cbor.dumps(["ok", 1.0, None, ""])]], [], {}),  # no node
        _state_bytes([[b"x" * 31, "i0", "v1", good_rec]], [], {}),  # short id
        _state_bytes([[cid, "", "v1", good_rec]], [], {}),  # empty instance
        _state_bytes([[cid, "i0", good_rec]], [], {}),  # wrong arity
        _state_bytes([], [[b"\x00" * 32, good_cand]], {}),  # id does not match texts
        _state_bytes([], [[cid, cbor.dumps([{"rule": "a"}, [b"p"]])]], {}),  # bad parent
        _state_bytes([], [[cid, cbor.dumps([{}, []])]], {}),  # no components
        _state_bytes([], [], {"n1": 0}),  # zero count is not canonical
        _state_bytes([], [], []),
        cbor.dumps(["gepa.state", 2, [[], [], {}]]),  # unknown version
        b"",
    ]
    for raw in bad:
        with pytest.raises(DecodeError):
            EvolutionState.from_bytes(raw)
    # A non-canonical float (single precision where half suffices) in a record.
    noncanon = bytes.fromhex("84626f6bfa3f800000f6626e31")
    with pytest.raises(DecodeError):
        decode_evaluation(noncanon)
    with pytest.raises(DecodeError):
        decode_candidate(cbor.dumps([{"rule": "a"}, [cid, cid]]))  # duplicate parent
    with pytest.raises(DecodeError):
        decode_evaluation(cbor.dumps(["ok", math.inf, None, "n1"]))
