"""Bounded KV sessions (Raft dissertation §6.3): hostile clients cannot grow the
replicas, expiry is a function of the committed log alone, and a client whose session
expired is refused rather than applied twice."""

from __future__ import annotations

import random
from functools import partial
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vsm_phoenix.errors import DecodeError
from vsm_phoenix.protocol.envelope import encode_cbor
from vsm_phoenix.protocol.kv import (
    E_MALFORMED,
    E_QUOTA,
    E_SESSION_EXPIRED,
    E_TOO_LARGE,
    KEY_OVERHEAD_CHARS,
    MAX_CLIENT_ID,
    MAX_KEY,
    MAX_VALUE,
    STALE,
    KVConfig,
    KVError,
    KVStateMachine,
    append,
    cas,
    delete,
    get,
    open_session,
    put,
)
from vsm_phoenix.protocol.node import LocalProtocolError, NodeFactory
from vsm_phoenix.protocol.raft import RaftConfig, RaftNode
from vsm_phoenix.verify import Verdict, check_history
from vsm_phoenix.verify.kv_workload import simulate_kv


def _code(result: Any) -> str | None:
    return result.code if isinstance(result, KVError) else None


def _check_invariants(sm: KVStateMachine) -> None:
    cfg = sm.config
    rows = list(sm.sessions.items())
    assert len(rows) <= cfg.max_sessions
    assert [(s.used, c) for c, s in rows] == sorted((s.used, c) for c, s in rows)
    assert all(0 <= sm.applied_commands - s.used <= cfg.session_ttl_commands
               for _, s in rows)
    assert sm.data_chars == sum(len(k) + len(v) + KEY_OVERHEAD_CHARS
                                for k, v in sm.data.items()) <= cfg.max_data_chars
    sm.check_snapshot(sm.snapshot())  # what a replica holds, a replica accepts


# -- a plain reference: the specification, written without the fast paths -------------
class _Reference:
    """Sessions as a plain dict, LRU and TTL recomputed from scratch after each command."""

    def __init__(self, cfg: KVConfig) -> None:
        self.cfg = cfg
        self.data: dict[str, str] = {}
        self.sessions: dict[str, tuple[int, Any, int]] = {}
        self.clock = 0
        self.dropped = 0

    def size(self) -> int:
        return sum(len(k) + len(v) + KEY_OVERHEAD_CHARS for k, v in self.data.items())

    def apply(self, cmd: dict[str, Any]) -> Any:
        client, seq = cmd["c"], cmd["s"]
        if client not in self.sessions:
            if seq != 1 and self.dropped:
                return E_SESSION_EXPIRED
        elif seq < self.sessions[client][0]:
            return STALE
        elif seq == self.sessions[client][0]:
            return self.sessions[client][1]
        result = self._execute(cmd)
        self.clock += 1
        self.sessions[client] = (seq, result, self.clock)
        held = len(self.sessions)
        while len(self.sessions) > self.cfg.max_sessions:
            del self.sessions[min(self.sessions, key=lambda c: (self.sessions[c][2], c))]
        self.sessions = {c: s for c, s in self.sessions.items()
                         if self.clock - s[2] <= self.cfg.session_ttl_commands}
        self.dropped += held - len(self.sessions)
        return result

    def _execute(self, cmd: dict[str, Any]) -> Any:
        op, key = cmd["o"], cmd.get("k")
        new = dict(self.data)
        if op == "open":
            return None
        if op == "delete":
            self.data.pop(key, None)
            return None
        if op == "cas" and self.data.get(key) != cmd["e"]:
            return False
        new[key] = new.get(key, "") + cmd["v"] if op == "append" else cmd["v"]
        if len(new[key]) > MAX_VALUE:
            return E_TOO_LARGE
        grows = sum(len(k) + len(v) for k, v in new.items()) + KEY_OVERHEAD_CHARS * len(
            new) > self.size()
        if grows and sum(len(k) + len(v) + KEY_OVERHEAD_CHARS
                         for k, v in new.items()) > self.cfg.max_data_chars:
            return E_QUOTA
        self.data = new
        return True if op == "cas" else None

    def lru(self) -> list[tuple[str, tuple[int, Any, int]]]:
        return sorted(self.sessions.items(), key=lambda kv: (kv[1][2], kv[0]))


_configs = st.builds(KVConfig, max_sessions=st.integers(1, 4),
                     session_ttl_commands=st.integers(1, 8),
                     max_data_chars=st.integers(KEY_OVERHEAD_CHARS, 80))
_command = st.tuples(st.sampled_from("abcdef"), st.integers(1, 5),
                     st.sampled_from(["open", "put", "append", "cas", "delete"]),
                     st.sampled_from("xy"), st.text("pq", max_size=12),
                     st.none() | st.text("pq", max_size=4))


def _raw(t: tuple[str, int, str, str, str, str | None]) -> dict[str, Any]:
    client, seq, op, key, value, expected = t
    if op == "open":
        return {"c": client, "s": seq, "o": op}
    if op == "delete":
        return {"c": client, "s": seq, "o": op, "k": key}
    if op == "cas":
        return {"c": client, "s": seq, "o": op, "k": key, "e": expected, "v": value}
    return {"c": client, "s": seq, "o": op, "k": key, "v": value}


@settings(max_examples=300)
@given(_configs, st.lists(_command, max_size=60))
def test_the_state_machine_matches_the_plain_specification(cfg: KVConfig,
                                                           log: list[Any]) -> None:
    """Differential: results, data, sessions and their LRU order equal the reference's
    after every command, and the bounds hold throughout."""
    sm, ref = KVStateMachine(cfg), _Reference(cfg)
    for t in log:
        cmd = _raw(t)
        got = sm.apply(encode_cbor(cmd))
        want = ref.apply(cmd)
        assert (_code(got) if isinstance(got, KVError) else got) == want, (cmd, got, want)
        assert sm.data == ref.data and sm.sessions_dropped == ref.dropped
        assert [(c, tuple(s)) for c, s in sm.sessions.items()] == ref.lru()
        _check_invariants(sm)


@settings(max_examples=200)
@given(_configs, st.lists(_command, max_size=60), st.data())
def test_expiry_is_a_function_of_the_log(cfg: KVConfig, log: list[Any],
                                         data: st.DataObject) -> None:
    """Replicas applying the same log — one from the start, one restored from a snapshot
    taken at any point — hold identical sessions (in LRU order) and snapshot bytes, and
    answer every later command alike."""
    cut = data.draw(st.integers(0, len(log)), label="snapshot after")
    commands = [encode_cbor(_raw(t)) for t in log]
    whole, before = KVStateMachine(cfg), KVStateMachine(cfg)
    answers = [whole.apply(c) for c in commands]
    for c in commands[:cut]:
        before.apply(c)
    restored = KVStateMachine(cfg)
    restored.restore(before.snapshot())
    assert [restored.apply(c) for c in commands[cut:]] == answers[cut:]
    assert restored.snapshot() == whole.snapshot()
    assert list(restored.sessions.items()) == list(whole.sessions.items())
    assert restored.data_chars == whole.data_chars
    assert restored.sessions_dropped == whole.sessions_dropped


# -- hostile input ----------------------------------------------------------------------
def _loaded() -> KVStateMachine:
    sm = KVStateMachine(KVConfig(max_sessions=3))
    sm.apply(put("c", 1, "k", "v").command)
    sm.apply(open_session("d").command)
    return sm


@given(st.integers(MAX_CLIENT_ID + 1, 8 * MAX_CLIENT_ID), st.integers(1, 3),
       st.sampled_from(["open", "put", "append", "cas", "delete"]))
def test_a_long_client_id_is_refused_and_changes_nothing(length: int, seq: int,
                                                         op: str) -> None:
    sm = _loaded()
    before = sm.snapshot()
    cmd = _raw(("c" * length, seq, op, "k", "v", None))
    result = sm.apply(encode_cbor(cmd))
    assert isinstance(result, KVError) and result.code == E_TOO_LARGE
    assert sm.snapshot() == before
    with pytest.raises(LocalProtocolError):
        put("c" * length, seq, "k", "v")
    with pytest.raises(LocalProtocolError):
        open_session("c" * length)


@given(st.sampled_from(["k", "v", "e"]), st.integers(1, 3))
def test_a_key_or_value_over_its_limit_is_refused_at_apply_time(field: str,
                                                                extra: int) -> None:
    """The builders check these limits, but a committed command may come from anyone."""
    sm = _loaded()
    before = sm.snapshot()
    cmd = {"c": "c", "s": 2, "o": "cas", "k": "k", "e": None, "v": "w"}
    cmd[field] = "z" * ((MAX_KEY if field == "k" else MAX_VALUE) + extra)
    assert _code(sm.apply(encode_cbor(cmd))) == E_TOO_LARGE
    assert sm.snapshot() == before


_hostile_value = st.none() | st.booleans() | st.integers(-3, 3) | st.text(max_size=4) \
    | st.binary(max_size=4) | st.lists(st.integers(0, 2), max_size=2)


@settings(max_examples=300)
@given(st.dictionaries(st.sampled_from(["c", "s", "o", "k", "v", "e", "x"]),
                       _hostile_value | st.sampled_from(["put", "open", "cas", "delete"]),
                       max_size=7))
def test_any_command_map_is_a_result_and_a_refusal_changes_nothing(cmd: dict[str, Any]) -> None:
    sm = _loaded()
    before = sm.snapshot()
    result = sm.apply(encode_cbor(cmd))
    if isinstance(result, KVError) and result.code in (E_MALFORMED, E_TOO_LARGE,
                                                       E_SESSION_EXPIRED):
        assert sm.snapshot() == before
    _check_invariants(sm)


@settings(max_examples=30)
@given(st.integers(1, 12), st.integers(1, 400), st.integers(1, MAX_CLIENT_ID))
def test_many_fresh_ids_keep_the_sessions_and_the_snapshot_bounded(
        max_sessions: int, clients: int, id_length: int) -> None:
    """One session per fresh id, each id as long as allowed: the table never holds more
    than ``max_sessions``, and the snapshot stays within a size fixed by the bounds."""
    sm = KVStateMachine(KVConfig(max_sessions=max_sessions))
    for i in range(clients):
        client = f"{i:06d}".rjust(id_length, "x")[-id_length:] if id_length >= 6 \
            else f"{i}"[-id_length:]
        sm.apply(put(client, 1, "k", "v").command)
        assert len(sm.sessions) <= max_sessions
    _check_invariants(sm)
    per_session = MAX_CLIENT_ID + 3 + 3 * 9  # id, list header, three integers at most
    assert len(sm.snapshot()) <= 64 + max_sessions * per_session


def test_an_append_past_the_value_limit_is_refused_and_remembered() -> None:
    """The reply a client could later read back stays within ``MAX_VALUE``; the refusal
    depends on the state, so the session remembers it: a retry of the same command gets
    the same refusal, even after the value shrank."""
    sm = KVStateMachine()
    half = "h" * (MAX_VALUE // 2 + 1)
    assert sm.apply(append("c", 1, "k", half).command) is None
    result = sm.apply(append("c", 2, "k", half).command)
    assert isinstance(result, KVError) and result.code == E_TOO_LARGE
    assert sm.data == {"k": half}
    assert sm.apply(delete("d", 1, "k").command) is None
    assert sm.apply(append("c", 2, "k", half).command) == result  # a retry: not applied
    assert sm.data == {}
    assert sm.apply(append("c", 3, "k", half).command) is None
    assert sm.query(get("k").query) == half


def test_the_data_quota_refuses_growth_but_never_a_delete() -> None:
    cfg = KVConfig(max_data_chars=2 * KEY_OVERHEAD_CHARS + 10)
    sm = KVStateMachine(cfg)
    assert sm.apply(put("c", 1, "a", "12345").command) is None
    assert sm.apply(put("c", 2, "b", "123").command) is None  # exactly at the quota
    assert sm.data_chars == cfg.max_data_chars
    full = dict(sm.data)
    for seq, cmd in enumerate((put("c", 3, "b", "1234"), append("c", 4, "b", "4"),
                               cas("c", 5, "a", "12345", "123456"), put("c", 6, "n", ""))):
        result = sm.apply(cmd.command)
        assert isinstance(result, KVError) and result.code == E_QUOTA, seq
    assert sm.data == full
    assert sm.apply(cas("c", 7, "a", "12345", "1").command) is True  # shrinking is fine
    assert sm.apply(put("c", 8, "b", "1234567").command) is None  # the room it made
    assert sm.apply(delete("c", 9, "a").command) is None
    assert sm.data == {"b": "1234567"}
    _check_invariants(sm)


def test_a_snapshot_over_this_replicas_bounds_is_refused() -> None:
    big = KVStateMachine(KVConfig(max_sessions=10))
    for i in range(5):
        big.apply(put(f"c{i}", 1, f"k{i}", "v" * 10).command)
    for cfg in (KVConfig(max_sessions=4), KVConfig(session_ttl_commands=3),
                KVConfig(max_data_chars=5 * (2 + 10 + KEY_OVERHEAD_CHARS) - 1)):
        small = KVStateMachine(cfg)
        small.apply(put("x", 1, "k", "v").command)
        before = small.snapshot()
        with pytest.raises(DecodeError):
            small.check_snapshot(big.snapshot())
        with pytest.raises(DecodeError):
            small.restore(big.snapshot())
        assert small.snapshot() == before


def test_a_version_1_snapshot_is_read_with_every_session_used_at_its_clock() -> None:
    old = encode_cbor({"v": 1, "d": {"k": "v"}, "s": {"b": [2, True], "a": [1, None]},
                       "n": 3})
    sm = KVStateMachine()
    sm.restore(old)
    assert list(sm.sessions) == ["a", "b"] and sm.sessions["b"] == (2, True, 3)
    assert sm.apply(cas("b", 2, "k", "x", "y").command) is True  # still deduplicated


def test_the_config_refuses_nonsense() -> None:
    for bad in ({"max_sessions": 0}, {"session_ttl_commands": -1},
                {"max_data_chars": True}, {"max_sessions": 1.5}):
        with pytest.raises(LocalProtocolError):
            KVConfig(**bad)


# -- expiry: the error, never a second application --------------------------------------
def test_before_any_drop_a_client_may_start_above_1() -> None:
    """A client whose first commands were abandoned unapplied goes on with the next
    number: until a session has been dropped, no client without one can have had a
    command applied, so this cannot apply anything twice."""
    sm = KVStateMachine(KVConfig(max_sessions=1))
    assert sm.apply(put("c", 3, "k", "x").command) is None
    assert sm.apply(put("d", 1, "k", "y").command) is None  # evicts c
    assert sm.sessions_dropped == 1
    assert _code(sm.apply(put("e", 2, "k", "z").command)) == E_SESSION_EXPIRED
    assert sm.data == {"k": "y"}


def test_an_evicted_client_gets_the_error_not_a_second_append() -> None:
    sm = KVStateMachine(KVConfig(max_sessions=2))
    assert sm.apply(open_session("c").command) is None
    retry = append("c", 2, "k", "x").command
    assert sm.apply(retry) is None
    for other in ("d", "e"):  # two newer sessions evict c's (the least recently used)
        sm.apply(put(other, 1, "o", other).command)
    assert "c" not in sm.sessions
    before = sm.snapshot()
    for cmd in (retry, append("c", 3, "k", "y").command):
        result = sm.apply(cmd)
        assert isinstance(result, KVError) and result.code == E_SESSION_EXPIRED
    assert sm.snapshot() == before and sm.data["k"] == "x"
    assert sm.apply(append("c~2", 1, "k", "y").command) is None  # a new session works
    assert sm.data["k"] == "xy"


def test_an_idle_session_expires_after_the_ttl_counted_in_commands() -> None:
    sm = KVStateMachine(KVConfig(session_ttl_commands=3))
    sm.apply(open_session("c").command)
    assert sm.apply(append("c", 2, "k", "x").command) is None
    for seq in range(1, 4):
        sm.apply(put("d", seq, "o", str(seq)).command)
        assert "c" in sm.sessions  # idle for 1..3 commands: still there
    sm.apply(put("d", 4, "o", "4").command)
    assert "c" not in sm.sessions
    assert _code(sm.apply(append("c", 2, "k", "x").command)) == E_SESSION_EXPIRED
    assert sm.data["k"] == "x"


def test_a_retried_open_after_expiry_is_harmless_and_an_unopened_first_write_is_not() -> None:
    """Why :func:`open_session` exists: a first write retried after its session expired
    looks like a new client's first write and applies again; a retried open only opens."""
    sm = KVStateMachine(KVConfig(max_sessions=1))
    sm.apply(open_session("c").command)
    sm.apply(put("d", 1, "o", "evict c").command)
    assert sm.apply(open_session("c").command) is None  # re-opened, no data touched
    assert sm.apply(append("c", 2, "k", "x").command) is None
    assert sm.data["k"] == "x"
    first = append("e", 1, "k", "y").command  # no open: unprotected first write
    sm.apply(first)
    sm.apply(put("f", 1, "o", "evict e").command)
    sm.apply(first)
    assert sm.data["k"] == "xyy"


# -- under faults -----------------------------------------------------------------------
class _Watched(KVStateMachine):
    """A KV state machine that records the largest session table it ever held."""

    largest = 0

    def apply(self, command: bytes) -> Any:
        result = super().apply(command)
        _Watched.largest = max(_Watched.largest, len(self.sessions))
        return result


def _watched_factory(kv: KVConfig, config: RaftConfig) -> NodeFactory:
    def factory(node_id: str, rng: random.Random) -> RaftNode:
        return RaftNode(node_id, rng, config, _Watched(kv))

    return factory


def _bounded_run(seed: int) -> tuple[int, int]:
    """One randomized run of five clients on a store holding three sessions, under the
    nemesis: linearizable, Raft-safe, bounded on every replica at every apply, and
    replicas that applied the same log hold the same bytes. Returns (expired, ok)."""
    kv = KVConfig(max_sessions=3, session_ttl_commands=25)
    _Watched.largest = 0
    run = simulate_kv(seed, clients=5, keys=("a", "b", "c", "d"), duration_ms=1_500,
                      settle_ms=1_500,
                      factory=partial(_watched_factory, kv), open_sessions=True)
    assert run.violations == ()
    result = check_history(run.history, timeout=60)
    assert result.verdict is Verdict.OK, (seed, result.summary())
    assert 0 < _Watched.largest <= kv.max_sessions
    by_index: dict[int, set[bytes]] = {}
    for nid in run.sim.node_ids:
        node = run.sim.node(nid)
        if isinstance(node, RaftNode):
            assert isinstance(node.state_machine, KVStateMachine)
            _check_invariants(node.state_machine)
            by_index.setdefault(node.last_applied, set()).add(node.state_machine.snapshot())
    assert all(len(snaps) == 1 for snaps in by_index.values())
    return run.workload.stats["expired"], run.workload.stats["ok"]


def test_the_bound_holds_and_histories_stay_linearizable_under_faults() -> None:
    totals = [_bounded_run(seed) for seed in range(4)]
    assert sum(expired for expired, _ in totals) > 0  # sessions really expired
    assert all(ok > 20 for _, ok in totals)  # and the runs did work


@pytest.mark.soak
@pytest.mark.parametrize("first", range(0, 200, 50))
def test_bounded_sessions_soak(first: int) -> None:
    for seed in range(1_000 + first, 1_000 + first + 50):
        _bounded_run(seed)
