"""The model checker on tiny hand-written protocols whose answers are known
(``mc_toys``: a one-round election, correct and buggy, and a token ring)."""

from __future__ import annotations

import io
import random
from typing import Any

import pytest
from mc_toys import IDS, TokenRing, VoteNode, one_holder, one_leader, vote_factory

from vsm_phoenix.errors import DecodeError
from vsm_phoenix.protocol.node import (
    ClientRequest,
    Deliver,
    Effect,
    Event,
)
from vsm_phoenix.verify.model_checker import (
    ClusterView,
    ModelChecker,
    Request,
    check_model,
    freeze,
)


# -- finding bugs --------------------------------------------------------------------
@pytest.mark.parametrize("symmetry", [False, True])
def test_buggy_election_gives_the_shortest_counterexample(symmetry: bool) -> None:
    res = check_model(
        vote_factory(buggy=True), IDS, invariants={"one-leader": one_leader},
        max_depth=10, symmetry=symmetry,
    )
    assert not res.ok
    cx = res.counterexample
    assert cx is not None
    assert cx.invariant == "one-leader"
    assert len(cx.steps) == 6
    assert [s.kind for s in cx.steps].count("timer") == 2
    assert [s.kind for s in cx.steps].count("deliver") == 4
    text = str(res)
    assert "VIOLATION of 'one-leader'" in text
    assert "two leaders" in text
    assert "vote.grant from" in text
    assert "→ deliver vote.leader" in text
    assert "final state:" in text


@pytest.mark.parametrize("symmetry", [False, True])
def test_correct_election_exhausts_the_space(symmetry: bool) -> None:
    res = check_model(
        vote_factory(buggy=False), IDS, invariants={"one-leader": one_leader},
        max_depth=50, symmetry=symmetry,
    )
    assert res.ok and res.exhausted, res
    assert res.counterexample is None
    assert res.states > 20
    assert "ok:" in str(res) and "exhausted" in str(res)


def test_symmetry_reduction_explores_fewer_states() -> None:
    kw: dict[str, Any] = {"invariants": {"one-leader": one_leader}, "max_depth": 50}
    full = check_model(vote_factory(False), IDS, **kw)
    reduced = check_model(vote_factory(False), IDS, symmetry=True, **kw)
    assert reduced.exhausted and full.exhausted
    # Every orbit of the symmetric group has at most 3! members.
    assert full.states / 6 <= reduced.states < full.states


def test_faults_are_explored_within_budgets() -> None:
    kw: dict[str, Any] = {"invariants": {"one-holder": one_holder}, "max_depth": 30}
    clean = check_model(TokenRing, IDS, **kw)
    assert clean.ok and clean.exhausted
    dup = check_model(TokenRing, IDS, max_duplicates=1, **kw)
    assert not dup.ok
    assert dup.counterexample is not None
    steps = dup.counterexample.steps
    assert len(steps) == 6
    assert [s.kind for s in steps].count("duplicate") == 1
    # Drops lose the token but never duplicate it.
    lossy = check_model(TokenRing, IDS, max_drops=2, **kw)
    assert lossy.ok and lossy.exhausted
    assert lossy.states > clean.states


def test_depth_bound_and_state_bound_are_not_exhaustive() -> None:
    kw: dict[str, Any] = {"invariants": {"one-leader": one_leader}}
    shallow = check_model(vote_factory(False), IDS, max_depth=3, **kw)
    assert shallow.ok and not shallow.exhausted and shallow.depth == 3
    capped = check_model(vote_factory(False), IDS, max_states=10, max_depth=50, **kw)
    assert capped.ok and not capped.exhausted and capped.states == 10
    # The bug lies at depth 6: a bound of 5 misses it, 6 finds it.
    assert check_model(vote_factory(True), IDS, max_depth=5, **kw).ok
    assert not check_model(vote_factory(True), IDS, max_depth=6, **kw).ok


def test_timer_budget_limits_firings() -> None:
    res = check_model(
        vote_factory(True), IDS, invariants={"one-leader": one_leader}, max_depth=20,
        max_timer_fires=1,
    )
    assert res.ok and res.exhausted


def test_progress_goes_to_the_given_stream() -> None:
    out = io.StringIO()
    check_model(
        vote_factory(False), IDS, invariants={"one-leader": one_leader}, max_depth=50,
        progress=out, progress_interval_s=1e-9,
    )
    text = out.getvalue()
    assert "states/s" in text and "frontier" in text and "depth" in text


# -- requests, rejections, crashes of node code ---------------------------------------
class Echo:
    """Answers each client request; raises on the payload "boom"."""

    def __init__(self, node_id: str, rng: random.Random) -> None:
        self._id = node_id
        self.seen: tuple[str, ...] = ()

    @property
    def node_id(self) -> str:
        return self._id

    def state_key(self) -> Any:
        return self.seen

    def step(self, event: Event) -> list[Effect]:
        if isinstance(event, ClientRequest):
            if event.payload == "boom":
                raise RuntimeError("kaboom")
            if event.payload == "bad":
                raise DecodeError("refused")
            self.seen += (event.payload,)
            return [Deliver("echo", event.payload, event.request_id)]
        return []


def test_requests_are_submitted_once_each_to_any_node() -> None:
    res = check_model(
        Echo, ("a", "b"), requests=[Request("x"), Request("y")],
        invariants={"no-two-on-one": lambda v: all(len(n.seen) < 2 for n in v.values())},
    )
    assert not res.ok
    assert res.counterexample is not None
    assert [s.kind for s in res.counterexample.steps] == ["request", "request"]
    targeted = check_model(
        Echo, ("a", "b"), requests=[Request("x", targets=["a"]), Request("y", targets=["b"])],
        invariants={"no-two-on-one": lambda v: all(len(n.seen) < 2 for n in v.values())},
    )
    assert targeted.ok and targeted.exhausted and targeted.states == 4


def test_a_node_exception_is_a_violation_with_its_trace() -> None:
    res = check_model(Echo, ("a",), requests=[Request("x"), Request("boom")])
    assert res.counterexample is not None
    assert res.counterexample.invariant == "node-raised"
    assert "kaboom" in res.counterexample.message
    assert len(res.counterexample.steps) == 1


def test_decode_errors_reject_the_input_and_keep_the_state() -> None:
    res = check_model(Echo, ("a",), requests=[Request("bad")],
                      invariants={"empty": lambda v: v["a"].seen == ()})
    assert res.ok and res.exhausted and res.states == 2


def test_invariant_forms() -> None:
    for inv, bad in [
        (lambda v: None, False), (lambda v: True, False), (lambda v: "", False),
        (lambda v: [], False), (lambda v: False, True), (lambda v: "no", True),
        (lambda v: ["x", "y"], True), (lambda v: 42, True),
    ]:
        res = check_model(Echo, ("a",), invariants={"i": inv})
        assert res.ok is not bad
        assert (res.counterexample is not None and res.counterexample.steps == ()) is bad

    def asserting(view: ClusterView) -> None:
        assert view["a"].seen == (), "saw something"  # type: ignore[attr-defined]

    res = check_model(Echo, ("a",), requests=[Request("x")], invariants={"a": asserting})
    assert res.counterexample is not None and res.counterexample.message.startswith("saw something")


def test_quiescent_invariants_only_when_nothing_is_in_flight() -> None:
    seen: list[bool] = []

    def record(view: ClusterView) -> None:
        seen.append(view.quiescent)

    check_model(TokenRing, IDS, quiescent_invariants={"q": record}, max_depth=6)
    assert seen and all(seen)


def test_freeze_normalises_containers() -> None:
    assert freeze({"a": [1, {2}], "b": None}) == freeze({"b": None, "a": (1, frozenset({2}))})
    with pytest.raises(TypeError):
        freeze(bytearray(b"x"))


# -- hostile configurations ------------------------------------------------------------
@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"node_ids": []}, ValueError),
        ({"node_ids": "abc"}, TypeError),
        ({"node_ids": ["a", "a"]}, ValueError),
        ({"node_ids": ["a", ""]}, ValueError),
        ({"node_ids": ["a", 1]}, TypeError),
        ({"max_depth": -1}, ValueError),
        ({"max_depth": 2.5}, TypeError),
        ({"max_depth": True}, TypeError),
        ({"max_states": 0}, ValueError),
        ({"max_drops": -1}, ValueError),
        ({"max_duplicates": "1"}, TypeError),
        ({"max_timer_fires": -2}, ValueError),
        ({"invariants": [lambda v: None]}, TypeError),
        ({"invariants": {"x": 3}}, TypeError),
        ({"invariants": {"": lambda v: None}}, TypeError),
        ({"requests": ["x"]}, TypeError),
        ({"requests": [Request("x", targets=["zz"])]}, ValueError),
        ({"requests": [Request("x", "r"), Request("y", "r")]}, ValueError),
        ({"requests": [Request("x", targets=["a"])], "symmetry": True}, ValueError),
        ({"symmetry": 1}, TypeError),
        ({"node_key": 5}, TypeError),
        ({"now": -1}, ValueError),
        ({"now": "0"}, TypeError),
        ({"seed": "s"}, TypeError),
        ({"progress": 3}, TypeError),
        ({"progress_interval_s": 0}, ValueError),
    ],
)
def test_invalid_configurations_are_refused(kwargs: dict[str, Any], error: type) -> None:
    args: dict[str, Any] = {"node_ids": ["a", "b"]}
    args.update(kwargs)
    with pytest.raises(error):
        ModelChecker(Echo, **args)


def test_factory_must_build_matching_nodes() -> None:
    with pytest.raises(TypeError):
        ModelChecker(42, ["a"])  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        check_model(lambda nid, rng: object(), ["a"])
    with pytest.raises(ValueError):
        check_model(lambda nid, rng: Echo("other", rng), ["a"])

    class Keyless(Echo):
        state_key = None  # type: ignore[assignment]

    with pytest.raises(TypeError):
        check_model(Keyless, ["a"])
    assert check_model(Keyless, ["a"], node_key=lambda n: n.seen).ok  # type: ignore[attr-defined]


# -- guided search and node copies ----------------------------------------------------
def test_a_prefix_scripts_the_first_actions() -> None:
    prefix = [("timer", "n1", "elect"), ("deliver", "n2", "vote.request from n1")]
    res = check_model(
        vote_factory(True), IDS, invariants={"one-leader": one_leader}, max_depth=4,
        prefix=prefix,
    )
    assert res.counterexample is not None
    steps = res.counterexample.steps
    # The prefix is part of the trace; the search after it is still shortest (4 more).
    assert [(s.kind, s.node) for s in steps[:2]] == [("timer", "n1"), ("deliver", "n2")]
    assert len(steps) == 6
    # Budgets are not charged for the prefix: a timer budget of 1 still allows n2's.
    res = check_model(
        vote_factory(True), IDS, invariants={"one-leader": one_leader}, max_depth=10,
        prefix=prefix, max_timer_fires=1,
    )
    assert not res.ok


def test_a_prefix_that_matches_nothing_is_refused() -> None:
    with pytest.raises(ValueError, match="prefix step 1"):
        check_model(vote_factory(False), IDS, prefix=[("deliver", "n1", "nothing")])
    with pytest.raises(TypeError):
        ModelChecker(Echo, ["a"], prefix=[("deliver", "a")])  # type: ignore[list-item]
    with pytest.raises(TypeError):
        ModelChecker(Echo, ["a"], prefix="deliver")  # type: ignore[arg-type]


def test_deepcopy_node_continues_the_random_sequence_independently() -> None:
    from vsm_phoenix.verify.model_checker import deepcopy_node

    node = VoteNode("n1", random.Random(7))
    twin = deepcopy_node(node)
    assert isinstance(twin, VoteNode)
    assert twin.messenger.rng is not node.messenger.rng
    assert twin.messenger.rng.random() == node.messenger.rng.random()
    twin.votes.add("x")
    assert node.votes == set()
