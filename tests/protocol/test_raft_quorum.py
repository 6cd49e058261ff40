"""The quorum value, table-tested (as etcd's ``raft/quorum`` testdata) and checked
against brute-force definitions."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from vsm_phoenix.protocol.raft.quorum import NO_LIMIT, JointConfig, MajorityConfig, VoteResult

W, L, P = VoteResult.WON, VoteResult.LOST, VoteResult.PENDING

# -- committed index ---------------------------------------------------------------------
# (incoming voters, outgoing voters, acked index per id — absent: nothing acked, expected)
COMMITTED: list[tuple[str, str, dict[str, int], int]] = [
    # empty configurations constrain nothing
    ("", "", {}, NO_LIMIT),
    ("", "", {"a": 5}, NO_LIMIT),
    # one voter: its own index
    ("a", "", {}, 0),
    ("a", "", {"a": 12}, 12),
    ("a", "", {"b": 12}, 0),  # non-voters do not count
    # two voters: both needed
    ("ab", "", {"a": 10, "b": 12}, 10),
    ("ab", "", {"a": 10}, 0),
    # three voters: the second highest
    ("abc", "", {"a": 5, "b": 7, "c": 3}, 5),
    ("abc", "", {"a": 5, "b": 7}, 5),
    ("abc", "", {"a": 5}, 0),
    ("abc", "", {"a": 5, "b": 5, "c": 5}, 5),
    ("abc", "", {"a": 5, "b": 7, "c": 3, "d": 100, "e": 100}, 5),
    # four voters: three needed
    ("abcd", "", {"a": 5, "b": 7, "c": 3, "d": 9}, 5),
    ("abcd", "", {"a": 5, "b": 7, "d": 9}, 5),
    ("abcd", "", {"b": 7, "d": 9}, 0),
    # five voters: three needed
    ("abcde", "", {"a": 1, "b": 2, "c": 3, "d": 4, "e": 5}, 3),
    ("abcde", "", {"d": 4, "e": 5}, 0),
    # joint: the smaller of the two halves
    ("abc", "abc", {"a": 5, "b": 7, "c": 3}, 5),
    ("abc", "cde", {"a": 5, "b": 7, "c": 3, "d": 1, "e": 9}, 3),
    ("abc", "d", {"a": 5, "b": 7, "c": 3, "d": 4}, 4),
    ("abc", "d", {"a": 5, "b": 7, "c": 3}, 0),
    ("bcd", "abc", {"a": 9, "b": 2, "c": 2, "d": 9}, 2),
    # joint with an empty outgoing half is the incoming majority
    ("abc", "", {"a": 5, "b": 7, "c": 3}, 5),
    ("", "abc", {"a": 5, "b": 7, "c": 3}, 5),
    # removing the leader: it is in outgoing only
    ("bcd", "abc", {"a": 20, "b": 10, "c": 10, "d": 0}, 10),
    ("bcd", "abc", {"a": 20, "b": 10, "c": 0, "d": 0}, 0),
]


@pytest.mark.parametrize(("inc", "out", "acked", "want"), COMMITTED)
def test_committed_index_table(inc: str, out: str, acked: dict[str, int], want: int) -> None:
    cfg = JointConfig.of(inc, out)
    assert cfg.committed_index(acked) == want
    if not out:
        assert MajorityConfig(inc).committed_index(acked) == want


# -- vote result -------------------------------------------------------------------------
# votes: "y" granted, "n" refused, "_" no answer yet, per voter in sorted order
VOTES: list[tuple[str, str, dict[str, bool], VoteResult]] = [
    ("", "", {}, W),
    ("a", "", {}, P),
    ("a", "", {"a": True}, W),
    ("a", "", {"a": False}, L),
    ("ab", "", {"a": True}, P),
    ("ab", "", {"a": True, "b": True}, W),
    ("ab", "", {"a": True, "b": False}, L),
    ("abc", "", {"a": True}, P),
    ("abc", "", {"a": True, "b": True}, W),
    ("abc", "", {"a": True, "b": False}, P),
    ("abc", "", {"a": False, "b": False}, L),
    ("abc", "", {"a": True, "x": True, "y": True}, P),  # non-voters ignored
    ("abcd", "", {"a": True, "b": True}, P),
    ("abcd", "", {"a": True, "b": True, "c": True}, W),
    ("abcd", "", {"a": False, "b": False}, L),
    ("abcd", "", {"a": True, "b": False, "c": True}, P),
    # joint: both halves must win; one lost half loses
    ("abc", "abc", {"a": True, "b": True}, W),
    ("abc", "cde", {"a": True, "b": True}, P),
    ("abc", "cde", {"a": True, "b": True, "d": True}, P),
    ("abc", "cde", {"a": True, "c": True, "d": True}, W),
    ("abc", "cde", {"a": True, "b": True, "d": False, "e": False}, L),
    ("abc", "cde", {"a": False, "b": False, "d": True, "e": True}, L),
    ("abc", "d", {"a": True, "b": True}, P),
    ("abc", "d", {"a": True, "b": True, "d": False}, L),
    ("abc", "d", {"a": True, "b": True, "d": True}, W),
]


@pytest.mark.parametrize(("inc", "out", "votes", "want"), VOTES)
def test_vote_result_table(inc: str, out: str, votes: dict[str, bool], want: VoteResult) -> None:
    assert JointConfig.of(inc, out).vote_result(votes) is want


# -- recently active ---------------------------------------------------------------------
ACTIVE: list[tuple[str, str, str, bool]] = [
    ("", "", "", True),
    ("a", "", "", False),
    ("a", "", "a", True),
    ("abc", "", "a", False),
    ("abc", "", "ab", True),
    ("abc", "", "axy", False),
    ("abcd", "", "ab", False),
    ("abcd", "", "abd", True),
    ("abc", "cde", "ab", False),
    ("abc", "cde", "acd", True),
    ("bcd", "abc", "ab", False),
    ("bcd", "abc", "bc", True),
]


@pytest.mark.parametrize(("inc", "out", "active", "want"), ACTIVE)
def test_recently_active_table(inc: str, out: str, active: str, want: bool) -> None:
    assert JointConfig.of(inc, out).recently_active(set(active)) is want


def test_describe_and_shape() -> None:
    assert str(JointConfig.of("cab")) == "(a b c)"
    assert str(JointConfig.of("bcd", "abc")) == "(b c d)&&(a b c)"
    assert JointConfig.of("bcd", "abc").voters == frozenset("abcd")
    assert JointConfig.of("abc", "abc").joint and not JointConfig.of("abc").joint
    assert [MajorityConfig(ids).quorum for ids in ("", "a", "ab", "abc", "abcd", "abcde")] == [
        0, 1, 2, 2, 3, 3
    ]


# -- against brute force -----------------------------------------------------------------
IDS = "abcdefg"
ids = st.sets(st.sampled_from(IDS), max_size=7)


def _brute_committed(voters: set[str], acked: dict[str, int]) -> int:
    """The largest index held by some majority (every subset tried)."""
    if not voters:
        return NO_LIMIT
    q = len(voters) // 2 + 1
    best = 0
    for group in itertools.combinations(sorted(voters), q):
        best = max(best, min(acked.get(v, 0) for v in group))
    return best


def _brute_vote(voters: set[str], votes: dict[str, bool]) -> VoteResult:
    """WON if every completion of the missing votes wins, LOST if none does."""
    if not voters:
        return W
    q = len(voters) // 2 + 1
    missing = [v for v in voters if v not in votes]
    outcomes = set()
    for fill in itertools.product([True, False], repeat=len(missing)):
        full = {**votes, **dict(zip(missing, fill, strict=True))}
        outcomes.add(sum(1 for v in voters if full[v]) >= q)
    if outcomes == {True}:
        return W
    if outcomes == {False}:
        return L
    return P


@given(inc=ids, out=ids,
       acked=st.dictionaries(st.sampled_from(IDS), st.integers(0, 20), max_size=7))
def test_committed_index_matches_brute_force(inc: set[str], out: set[str],
                                             acked: dict[str, int]) -> None:
    want = min(_brute_committed(inc, acked), _brute_committed(out, acked))
    assert JointConfig.of(inc, out).committed_index(acked) == want


@given(inc=ids, out=ids,
       votes=st.dictionaries(st.sampled_from(IDS), st.booleans(), max_size=7))
def test_vote_result_matches_brute_force(inc: set[str], out: set[str],
                                         votes: dict[str, bool]) -> None:
    a, b = _brute_vote(inc, votes), _brute_vote(out, votes)
    want = a if a is b else (L if L in (a, b) else P)
    assert JointConfig.of(inc, out).vote_result(votes) is want
    active = {v for v, yes in votes.items() if yes}
    assert JointConfig.of(inc, out).recently_active(active) is (
        _brute_vote(inc, dict.fromkeys(active, True)) is W
        and _brute_vote(out, dict.fromkeys(active, True)) is W
    )
