"""The model checker's scaling machinery, each against an answer known independently.

* Two-phase commit as nodes on a set network reproduces the specification's state
  counts (Stateright's: 288 for 3 RMs, 8,832 for 5) — and, with symmetry over the RMs,
  exactly the number of orbits, counted here by brute force over every permutation.
* Memoized local steps change nothing: the same counts and the same shortest traces
  with ``memoize=False``.
* Crashes restart a node from what it persisted: a voter that persists its vote stays
  safe; one that forgets it elects two leaders.
* Budgets end a search with a reason, never an exception; a node that breaks the
  determinism contract is caught when its trace does not replay.
* The structural node copy behaves exactly like ``copy.deepcopy`` on every node type.
"""

from __future__ import annotations

import copy
import itertools
import random
from typing import Any

import pytest
from mc_toys import IDS, TokenRing, one_holder, one_leader, vote_factory

from vsm_phoenix.crdt import ORSet
from vsm_phoenix.errors import InvalidArgument, TypeMismatch
from vsm_phoenix.protocol.envelope import decode_cbor, encode_cbor
from vsm_phoenix.protocol.kit import Messenger, decode_payload
from vsm_phoenix.protocol.node import (
    ClientRequest,
    Deliver,
    Effect,
    Event,
    Persist,
    Receive,
    Restart,
    SetTimer,
    Start,
    TimerFired,
)
from vsm_phoenix.protocol.raft import Propose, RaftConfig, RaftNode, check_invariants
from vsm_phoenix.protocol.scenario import build_demo
from vsm_phoenix.verify.copying import deepcopy_node, fast_deepcopy
from vsm_phoenix.verify.model_checker import (
    DEPTH_BOUND,
    ClusterView,
    ModelChecker,
    ReplayDivergedError,
    Request,
    check_model,
)
from vsm_phoenix.verify.twophase import (
    TM,
    ResourceManager,
    rm_ids,
    two_phase_factory,
    two_phase_invariants,
)


# -- two-phase commit: counts known from the specification -----------------------------
def two_phase(n: int, **options: Any) -> Any:
    rms = rm_ids(n)
    return check_model(two_phase_factory(rms), (TM, *rms), invariants=two_phase_invariants(),
                       max_depth=1_000, **options)


def spec_states(n: int) -> set[tuple[Any, ...]]:
    """The TLA+ TwoPhase state space, enumerated directly (no nodes, no checker)."""
    rms = range(n)
    init = (("w",) * n, "init", frozenset(), frozenset())
    seen = {init}
    todo = [init]
    while todo:
        rs, tm, prep, msgs = todo.pop()
        nxt = []
        for r in rms:
            if tm == "init" and ("P", r) in msgs:
                nxt.append((rs, tm, prep | {r}, msgs))
            if rs[r] == "w":
                nxt.append(((*rs[:r], "p", *rs[r + 1:]), tm, prep, msgs | {("P", r)}))
                nxt.append(((*rs[:r], "a", *rs[r + 1:]), tm, prep, msgs))
            if ("C",) in msgs:
                nxt.append(((*rs[:r], "c", *rs[r + 1:]), tm, prep, msgs))
            if ("A",) in msgs:
                nxt.append(((*rs[:r], "a", *rs[r + 1:]), tm, prep, msgs))
        if tm == "init" and prep == frozenset(rms):
            nxt.append((rs, "c", prep, msgs | {("C",)}))
        if tm == "init":
            nxt.append((rs, "a", prep, msgs | {("A",)}))
        for s in nxt:
            if s not in seen:
                seen.add(s)
                todo.append(s)
    return seen


def orbits(n: int) -> int:
    def renamed(s: tuple[Any, ...], p: tuple[int, ...]) -> tuple[Any, ...]:
        rs, tm, prep, msgs = s
        out = [""] * n
        for r in range(n):
            out[p[r]] = rs[r]
        return (tuple(out), tm, tuple(sorted(p[r] for r in prep)),
                tuple(sorted(m if m[0] != "P" else ("P", p[m[1]]) for m in msgs)))

    perms = list(itertools.permutations(range(n)))
    return len({min(renamed(s, p) for p in perms) for s in spec_states(n)})


@pytest.mark.parametrize(("n", "states"), [(2, 56), (3, 288), (4, 1568), (5, 8832)])
def test_two_phase_commit_has_the_specifications_state_count(n: int, states: int) -> None:
    if n <= 4:
        assert len(spec_states(n)) == states  # the independent enumeration agrees
    res = two_phase(n, network="set")
    assert res.ok and res.exhausted, res
    assert res.states == states


@pytest.mark.parametrize("n", [2, 3, 4])
def test_symmetry_over_the_rms_explores_each_orbit_once(n: int) -> None:
    res = two_phase(n, network="set", symmetry=[rm_ids(n)])
    assert res.ok and res.exhausted, res
    assert res.states == orbits(n)


class Hasty(ResourceManager):
    """Commits on its own prepare timer instead of waiting for the TM's decision."""

    def step(self, event: Event) -> list[Effect]:
        if isinstance(event, TimerFired) and event.name == "prepare" \
                and self.state == "working":
            self.state = "committed"
            return []
        return super().step(event)


@pytest.mark.parametrize("symmetry", [False, True])
def test_a_broken_rm_is_caught_with_a_real_shortest_trace(symmetry: bool) -> None:
    rms = rm_ids(3)
    base = two_phase_factory(rms)

    def factory(nid: str, rng: random.Random) -> Any:
        return Hasty(nid, rng) if nid in rms else base(nid, rng)

    res = check_model(factory, (TM, *rms), invariants=two_phase_invariants(),
                      network="set", max_depth=50, symmetry=[rms] if symmetry else False)
    cx = res.counterexample
    assert cx is not None and cx.invariant == "2pc-tm-agrees"
    assert [(s.kind, s.detail) for s in cx.steps] == [("timer", "prepare")]
    assert cx.steps[0].node in rms and "committed but the TM is init" in cx.message


def test_the_multiset_network_consumes_messages() -> None:
    # Each delivered message is gone: more states than on the set network (a message
    # still in flight is state), and every trace is still a real execution.
    res = two_phase(3)
    assert res.ok and res.exhausted and res.states == 584


def test_set_network_refuses_duplicates_and_bad_networks() -> None:
    with pytest.raises(InvalidArgument):
        two_phase(2, network="set", max_duplicates=1)
    with pytest.raises(InvalidArgument):
        two_phase(2, network="bag")


# -- memoization changes nothing -------------------------------------------------------
@pytest.mark.parametrize("case", ["vote", "token-dup", "raft"])
def test_memoized_steps_explore_exactly_what_fresh_copies_do(case: str) -> None:
    if case == "vote":
        args: tuple[Any, ...] = (vote_factory(True), IDS)
        kw: dict[str, Any] = {"invariants": {"one-leader": one_leader}, "max_depth": 10}
    elif case == "token-dup":
        args = (TokenRing, IDS)
        kw = {"invariants": {"one-holder": one_holder}, "max_depth": 30,
              "max_duplicates": 1, "max_drops": 1}
    else:
        config = RaftConfig(peers=IDS, pre_vote=True, check_quorum=True)
        args = (lambda nid, rng: RaftNode(nid, rng, config), IDS)
        kw = {"invariants": {"safe": lambda v: check_invariants(v.values())},
              "requests": [Request(Propose(b"x"))], "max_timer_fires": 2, "max_depth": 6,
              "now": lambda d: d * 1000}
    fast = check_model(*args, **kw)
    slow = check_model(*args, memoize=False, **kw)
    assert (fast.states, fast.transitions, fast.ok) == (slow.states, slow.transitions, slow.ok)
    if fast.counterexample is not None:
        assert slow.counterexample is not None
        assert fast.counterexample.render() == slow.counterexample.render()


# -- crashes ---------------------------------------------------------------------------
class DurableVoter:
    """One election round (like ``VoteNode``) whose vote survives a crash only when
    ``persist`` is set."""

    def __init__(self, node_id: str, rng: random.Random, *, persist: bool) -> None:
        self._id = node_id
        self.m = Messenger(node_id, rng)
        self.persist = persist
        self.voted_for: str | None = None
        self.votes: frozenset[str] = frozenset()
        self.leader = False

    @property
    def node_id(self) -> str:
        return self._id

    def state_key(self) -> Any:
        return (self.voted_for, self.votes, self.leader)

    def _vote(self, for_: str) -> list[Effect]:
        self.voted_for = for_
        return [Persist("vote", encode_cbor(for_))] if self.persist else []

    def step(self, event: Event) -> list[Effect]:
        if isinstance(event, Start | Restart):
            if isinstance(event, Restart) and "vote" in event.persisted:
                self.voted_for = decode_cbor(event.persisted["vote"])
            return [SetTimer("elect", 100)] if self._id != "n3" else []
        if isinstance(event, TimerFired):
            if self.voted_for is not None:
                return []
            out = self._vote(self._id)
            self.votes = frozenset({self._id})
            return out + [self.m.send(event.now, p, "vote.request", {}) for p in IDS
                          if p != self._id]
        if isinstance(event, Receive):
            env = event.envelope
            decode_payload(env)
            if env.type == "vote.request":
                if self.voted_for is not None:
                    return []
                return [*self._vote(env.sender), self.m.send(event.now, env.sender,
                                                             "vote.grant", {})]
            self.votes = self.votes | {env.sender}
            if 2 * len(self.votes) > len(IDS) and not self.leader:
                self.leader = True
                return [Deliver("vote.leader", self._id)]
        return []


@pytest.mark.parametrize("persist", [True, False])
def test_a_crash_restarts_from_what_was_persisted(persist: bool) -> None:
    res = check_model(lambda nid, rng: DurableVoter(nid, rng, persist=persist), IDS,
                      invariants={"one-leader": one_leader}, max_crashes=1, max_depth=12)
    if persist:
        assert res.ok and res.exhausted, res
        return
    cx = res.counterexample
    assert cx is not None and cx.invariant == "one-leader"
    kinds = [s.kind for s in cx.steps]
    assert kinds.count("crash") == 1  # n3 grants, forgets, grants again
    assert "crash" in cx.render() and "n3" in cx.render()


def test_crashes_cannot_be_combined_with_symmetry() -> None:
    with pytest.raises(InvalidArgument):
        ModelChecker(TokenRing, IDS, symmetry=True, max_crashes=1)


# -- symmetry groups -------------------------------------------------------------------
@pytest.mark.parametrize(("symmetry", "error"), [
    ([["n1"]], InvalidArgument),
    ([["n1", "zz"]], InvalidArgument),
    ([["n1", "n2"], ["n2", "n3"]], InvalidArgument),
    ("n1n2", TypeMismatch),
    ([5], TypeMismatch),
])
def test_bad_symmetry_groups_are_refused(symmetry: Any, error: type) -> None:
    with pytest.raises(error):
        ModelChecker(TokenRing, IDS, symmetry=symmetry)


def test_requests_must_target_whole_groups() -> None:
    with pytest.raises(InvalidArgument, match="whole groups"):
        ModelChecker(TokenRing, IDS, symmetry=[["n1", "n2"]],
                     requests=[Request("x", targets=["n1"])])
    ModelChecker(TokenRing, IDS, symmetry=[["n1", "n2"]],
                 requests=[Request("x", targets=["n1", "n2"]), Request("y", targets=["n3"])])


# -- budgets and the determinism contract ----------------------------------------------
def test_budgets_end_the_search_with_a_reason() -> None:
    config = RaftConfig(peers=IDS, pre_vote=False, check_quorum=False)
    kw: dict[str, Any] = {"requests": [Request(Propose(b"x"))], "max_timer_fires": 2,
                          "max_depth": 60, "now": lambda d: d * 1000}
    factory = lambda nid, rng: RaftNode(nid, rng, config)  # noqa: E731
    timed = check_model(factory, IDS, timeout_s=0.2, **kw)
    assert timed.ok and not timed.exhausted and timed.reason == "timeout"
    assert timed.elapsed_s < 2.0
    assert 0 < timed.depth_complete <= timed.depth
    small = check_model(factory, IDS, max_memory=1, **kw)
    assert small.ok and not small.exhausted and small.reason == "memory limit"
    bounded = check_model(factory, IDS, **{**kw, "max_depth": 3})
    assert bounded.reason == DEPTH_BOUND and bounded.depth_complete == 3
    assert "complete to depth 3" in bounded.summary()
    for bad in ({"timeout_s": 0}, {"timeout_s": -1.0}, {"timeout_s": float("nan")},
                {"max_memory": 0}, {"max_memory": 1.5}):
        with pytest.raises((InvalidArgument, TypeMismatch)):
            ModelChecker(factory, IDS, **bad)  # type: ignore[arg-type]


_TICKS = itertools.count()


class Nondeterministic:
    """Reads a process-wide counter (a stand-in for the global random module or a
    clock): replaying its trace cannot reach the state the search saw."""

    def __init__(self, node_id: str, rng: random.Random) -> None:
        self._id = node_id
        self.rolled: int | None = None

    @property
    def node_id(self) -> str:
        return self._id

    def state_key(self) -> Any:
        return self.rolled

    def step(self, event: Event) -> list[Effect]:
        if isinstance(event, Start):
            return [SetTimer("roll", 1)]
        if isinstance(event, TimerFired):
            self.rolled = next(_TICKS)
        return []


def test_a_trace_that_does_not_replay_is_an_error_not_a_counterexample() -> None:
    with pytest.raises(ReplayDivergedError) as info:
        check_model(Nondeterministic, ["a"],
                    invariants={"never-rolls": lambda v: v["a"].rolled is None})
    assert info.value.step == 1
    assert "node_key" in str(info.value)


def test_cluster_view_tells_whether_the_network_was_read() -> None:
    views: list[ClusterView] = []

    def nodes_only(view: ClusterView) -> None:
        views.append(view)
        assert all(isinstance(nid, str) for nid in view)
        assert "n1" in view and len(view) == 3 and list(view.keys()) == list(IDS)

    res = check_model(TokenRing, IDS, invariants={"n": nodes_only}, max_depth=6)
    assert res.ok and views
    assert not any(v.read_network for v in views)
    # Read only the nodes: evaluated once per combination of local states, not per state.
    assert len(views) < res.states


# -- the structural copy ---------------------------------------------------------------
def _demo_nodes() -> list[Any]:
    sim, _ = build_demo(seed=3)
    sim.run_until(25_000)
    return [n for n in (sim.node(i) for i in sim.node_ids) if n is not None]


def _raft_nodes() -> list[Any]:
    config = RaftConfig(peers=IDS, pre_vote=True, check_quorum=True)
    nodes = [RaftNode(i, random.Random(i), config) for i in IDS]
    for n in nodes:
        n.step(Start(0))
    nodes[0].step(TimerFired(1_000, "raft.election"))
    return nodes


def _events(node: Any) -> list[Event]:
    return [TimerFired(30_000, name) for name in ("swim.probe", "sync.ship", "raft.election",
                                                  "raft.heartbeat")] + [
        ClientRequest(30_001, "r1", Propose(b"y"))]


@pytest.mark.parametrize("source", ["demo", "raft"])
def test_the_structural_copy_behaves_like_deepcopy(source: str) -> None:
    nodes = _demo_nodes() if source == "demo" else _raft_nodes()
    for node in nodes:
        fast = deepcopy_node(node)
        slow = copy.deepcopy(node)
        before = copy.deepcopy(node)
        for event in _events(node):
            try:
                a = fast.step(event)
            except Exception as exc:
                a = [type(exc).__name__]  # type: ignore[list-item]
            try:
                b = slow.step(event)
            except Exception as exc:
                b = [type(exc).__name__]  # type: ignore[list-item]
            assert repr(a) == repr(b)
        # Stepping the copy left the original as it was.
        for event in _events(node):
            try:
                x = node.step(event)
            except Exception as exc:
                x = [type(exc).__name__]  # type: ignore[list-item]
            try:
                y = before.step(event)
            except Exception as exc:
                y = [type(exc).__name__]  # type: ignore[list-item]
            assert repr(x) == repr(y)


def test_the_structural_copy_shares_only_what_cannot_change() -> None:
    node = _raft_nodes()[0]
    twin = deepcopy_node(node)
    assert twin is not node
    assert twin.config is node.config  # frozen attrs, immutable all the way down
    assert twin.log is not node.log and twin._progress is not node._progress
    assert twin._rng is not node._rng and twin._messenger.rng is twin._rng  # sharing kept
    assert twin._rng.random() == node._rng.random()
    cyclic: list[Any] = [1]
    cyclic.append(cyclic)
    copied = fast_deepcopy({"a": cyclic, "b": (cyclic,), "s": {1, 2}, "f": frozenset({3})})
    assert copied["a"][1] is copied["a"] and copied["b"][0] is copied["a"]
    assert copied["f"] is not None and copied["s"] == {1, 2}
    orset = ORSet()
    orset.add("a", "x")
    assert fast_deepcopy(orset) == orset and fast_deepcopy(orset) is not orset
