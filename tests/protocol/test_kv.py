"""The replicated KV: state machine and sessions, exactly-once under retries and
duplicate deliveries, and linearizability of histories recorded under faults."""

from __future__ import annotations

import os
import random
from collections import Counter

import pytest
from hypothesis import given
from hypothesis import strategies as st

from vsm_phoenix.errors import DecodeError
from vsm_phoenix.protocol.envelope import encode_cbor
from vsm_phoenix.protocol.kv import (
    STALE,
    KVError,
    KVStateMachine,
    append,
    cas,
    delete,
    get,
    kv_node_factory,
    open_session,
    put,
)
from vsm_phoenix.protocol.node import ClientRequest, Deliver, LocalProtocolError, Start
from vsm_phoenix.protocol.raft import K_OK, Propose, RaftConfig, RaftNode
from vsm_phoenix.protocol.sim import NetworkConfig, Simulator
from vsm_phoenix.verify import (
    UNKNOWN,
    KVAppend,
    KVGet,
    KVPut,
    Operation,
    Verdict,
    check,
    check_history,
)
from vsm_phoenix.verify.kv_workload import KVWorkload, simulate_kv

SEEDS = int(os.environ.get("VSM_PHOENIX_KV_SEEDS", "200"))
CHUNK = 20


# -- the state machine --------------------------------------------------------------------
def test_operations() -> None:
    sm = KVStateMachine()
    assert sm.apply(put("c", 1, "k", "v").command) is None
    assert sm.query(get("k").query) == "v"
    assert sm.apply(cas("c", 2, "k", "x", "w").command) is False
    assert sm.apply(cas("c", 3, "k", "v", "w").command) is True
    assert sm.apply(append("c", 4, "k", "+").command) is None
    assert sm.query(get("k").query) == "w+"
    assert sm.apply(delete("c", 5, "k").command) is None
    assert sm.query(get("k").query) is None
    assert sm.apply(cas("c", 6, "k", None, "new").command) is True
    assert sm.query(get("k").query) == "new"


def test_sessions_apply_each_command_once() -> None:
    sm = KVStateMachine()
    cmd = append("c", 1, "k", "x").command
    assert sm.apply(cmd) is None
    assert sm.apply(cmd) is None  # a retry: remembered result, not applied again
    assert sm.data == {"k": "x"}
    assert sm.apply(cas("c", 2, "k", "x", "y").command) is True
    assert sm.apply(cas("c", 2, "k", "x", "y").command) is True  # cached, though now false
    assert sm.apply(cmd) is STALE  # older than the session
    assert sm.data == {"k": "y"} and sm.applied_commands == 2
    assert sm.apply(append("d", 1, "k", "z").command) is None  # other clients independent
    assert sm.data == {"k": "yz"}


def test_malformed_commands_are_results_not_errors() -> None:
    sm = KVStateMachine()
    before = sm.snapshot()
    for raw in (b"\xff", encode_cbor([1]), encode_cbor({"o": "put"}),
                encode_cbor({"c": "c", "s": 0, "o": "put", "k": "k", "v": "v"}),
                encode_cbor({"c": "c", "s": 1, "o": "drop", "k": "k"})):
        assert isinstance(sm.apply(raw), KVError)
    assert isinstance(sm.query(b"\x00\x01"), KVError)
    assert isinstance(sm.query(encode_cbor({"o": "scan", "k": "k"})), KVError)
    assert sm.snapshot() == before


def test_an_operation_that_is_no_string_is_a_result_not_a_crash() -> None:
    sm = KVStateMachine()
    for op in ([], {}, 1, None, b"put"):
        cmd = encode_cbor({"c": "c", "k": "k", "o": op, "s": 1})
        assert isinstance(sm.apply(cmd), KVError)
    assert sm.data == {} and sm.sessions == {}


def test_command_builders_validate() -> None:
    with pytest.raises(LocalProtocolError):
        put("", 1, "k", "v")
    with pytest.raises(LocalProtocolError):
        put("c", 0, "k", "v")
    with pytest.raises(LocalProtocolError):
        put("c", 1, "k", int("5"))  # type: ignore[arg-type]


def test_snapshot_round_trip_includes_sessions() -> None:
    sm = KVStateMachine()
    sm.apply(put("c", 1, "a", "1").command)
    sm.apply(open_session("d").command)
    sm.apply(cas("d", 7, "b", None, "2").command)  # numbers may skip once open
    other = KVStateMachine()
    other.restore(sm.snapshot())
    assert other.data == sm.data and other.sessions == sm.sessions
    assert other.apply(cas("d", 7, "b", None, "2").command) is True  # still deduplicated
    assert other.data == {"a": "1", "b": "2"}


@given(st.binary(max_size=64))
def test_bad_snapshots_are_decode_errors(data: bytes) -> None:
    sm = KVStateMachine()
    sm.apply(put("c", 1, "a", "1").command)
    before = sm.snapshot()
    try:
        sm.check_snapshot(data)
    except DecodeError:
        with pytest.raises(DecodeError):
            sm.restore(data)
        assert sm.snapshot() == before


def test_bad_snapshot_shapes() -> None:
    sm = KVStateMachine()
    for doc in ({"v": 3, "d": {}, "s": {}, "n": 0}, {"v": 1, "d": {"a": 1}, "s": {}, "n": 0},
                {"v": 1, "d": {}, "s": {"c": [0, None]}, "n": 0},
                {"v": 1, "d": {}, "s": {"c": [1, "x"]}, "n": 0},
                {"v": 1, "d": {}, "s": {}, "n": -1},
                {"v": 2, "d": {}, "s": {}, "n": 1},  # no drop count
                {"v": 2, "d": {}, "s": {}, "n": 1, "x": -1},
                {"v": 2, "d": {}, "s": {"c": [1, None]}, "n": 1, "x": 0},  # 3 fields in v2
                {"v": 2, "d": {}, "s": {"c": [1, None, 2]}, "n": 1, "x": 0},  # used > clock
                {"v": 2, "d": {}, "s": {"c": [1, "x", 1]}, "n": 1, "x": 0},
                {"v": 2, "d": {}, "s": {"c": [1, [2], 1]}, "n": 1, "x": 0}):  # unhashable
        with pytest.raises(DecodeError):
            sm.check_snapshot(encode_cbor(doc))


# -- exactly once over Raft ---------------------------------------------------------------
def _cluster(seed: int, network: NetworkConfig | None = None) -> Simulator:
    ids = ["n1", "n2", "n3"]
    cfg = RaftConfig(peers=tuple(ids), election_timeout_ms=150, heartbeat_ms=30,
                     snapshot_threshold=32)
    return Simulator(kv_node_factory(cfg), ids, seed=seed, network=network)


def test_duplicate_proposals_apply_once() -> None:
    sim = _cluster(1)
    sim.run_until(1_000)
    lead = next(i for i in sim.node_ids if getattr(sim.node(i), "is_leader", False))
    cmd = append("c", 1, "k", "x")
    rids = [sim.client_request(lead, cmd, delay_ms=d) for d in (0, 0, 50, 100)]
    sim.run_for(300)
    replies = [d for d in sim.delivered[lead] if d.request_id in rids]
    assert replies == [Deliver(K_OK, None, r) for r in rids]
    node = sim.node(lead)
    assert isinstance(node, RaftNode)
    assert node.state_machine.query(get("k").query) == "x"


@pytest.mark.parametrize("seed", range(6))
def test_exactly_once_under_retries_and_duplicate_deliveries(seed: int) -> None:
    net = NetworkConfig(drop_rate=0.15, duplicate_rate=0.3, reorder_rate=0.2,
                        reorder_extra_ms=80, max_latency_ms=15)
    sim = _cluster(seed, net)
    load = KVWorkload(sim, clients=3, keys=("k",), seed=seed, attempt_timeout_ms=60,
                      op_timeout_ms=4_000)
    for c in range(3):
        for i in range(15):
            load.submit(c, KVAppend("k", f"<{c}.{i}>"))
    # Crash the leader mid-run: acknowledged commands must survive, retried ones
    # (re-proposed to the next leader) must not apply twice.
    for t in (400, 900):
        sim.schedule(t, _crash_leader)
    sim.schedule(1_300, _restart_all)
    load.run_until(6_000)
    for c in range(3):
        load.submit(c, KVGet("k"))
    load.run_until(7_000)
    assert load.idle and load.stats["retries"] > 0
    final = [r for c in load.results.values() for op, r in c if isinstance(op, KVGet)]
    assert len(final) == 3 and len(set(final)) == 1
    tokens = Counter(final[0].replace("><", ">|<").split("|"))
    acknowledged = {op.value for c in load.results.values() for op, _ in c
                    if isinstance(op, KVAppend)}
    assert all(n == 1 for n in tokens.values()), tokens.most_common(3)
    assert acknowledged <= set(tokens)
    # Each client's appends appear in its own order (one outstanding command each).
    for c in range(3):
        mine = [t for t in tokens if t.startswith(f"<{c}.")]
        assert mine == sorted(mine, key=lambda t: int(t[3:-1]))


def _crash_leader(sim: Simulator) -> None:
    lead = _leader_of(sim)
    if lead is not None:
        sim.crash(lead)


def _restart_all(sim: Simulator) -> None:
    for nid in sim.node_ids:
        if not sim.is_up(nid):
            sim.restart(nid)


def _leader_of(sim: Simulator) -> str | None:
    for i in sim.node_ids:
        node = sim.node(i)
        if isinstance(node, RaftNode) and node.is_leader:
            return i
    return None


# -- linearizability ----------------------------------------------------------------------
@pytest.mark.parametrize("first", range(0, SEEDS, CHUNK))
def test_kv_histories_are_linearizable(first: int) -> None:
    """≥ 200 seeds with partitions, one-way link cuts, crashes and restarts, loss
    bursts, duplicate and reordered deliveries: every history linearizable, no safety
    invariant ever violated. A failure names the seed: ``simulate_kv(seed)`` replays it."""
    failures = []
    completed = 0
    for seed in range(first, min(first + CHUNK, SEEDS)):
        nodes = 5 if seed % 4 == 3 else 3
        run = simulate_kv(seed, nodes=nodes)
        result = check_history(run.history, timeout=60)
        completed += sum(1 for op in run.history if not op.pending)
        if run.violations or result.verdict is not Verdict.OK:
            failures.append((seed, result.summary(), run.violations[:3]))
    assert failures == []
    assert completed > 20 * min(CHUNK, SEEDS - first)  # histories are not trivial


def test_simulate_kv_is_deterministic() -> None:
    a, b = simulate_kv(5, duration_ms=800, settle_ms=500), simulate_kv(5, duration_ms=800,
                                                                       settle_ms=500)
    assert a.history.to_jsonl() == b.history.to_jsonl()
    assert a.sim.trace_json() == b.sim.trace_json()


def test_checker_catches_a_stale_read_in_a_recorded_history() -> None:
    """Guards against a vacuous check: turn one get of a recorded history into a stale
    read (a value already overwritten before the get began) and the checker objects."""
    run = simulate_kv(3, faults=False, duration_ms=1_500, settle_ms=500)
    ops = list(run.history)
    puts = [op for op in ops if isinstance(op.input, KVPut) and not op.pending]
    for i, g in enumerate(ops):
        if not isinstance(g.input, KVGet) or g.pending:
            continue
        key = g.input.key
        before = [p for p in puts if p.input.key == key and p.ret is not None
                  and p.ret < g.call]
        for p1 in before:
            if any(p2.call > (p1.ret or 0) and p2.input.value != p1.input.value
                   for p2 in before):
                stale = Operation(g.client, g.input, g.call, g.ret, p1.input.value)
                tampered = [*ops[:i], stale, *ops[i + 1 :]]
                assert check(run.history.model, ops).verdict is Verdict.OK
                assert check(run.history.model, tampered).verdict is Verdict.ILLEGAL
                return
    raise AssertionError("no get followed two ordered puts; workload too small")


def test_pending_operations_are_recorded_as_unknown() -> None:
    sim = _cluster(2)
    load = KVWorkload(sim, clients=1, keys=("k",), op_timeout_ms=200, attempt_timeout_ms=50)
    sim.partition(["n1"], ["n2"], ["n3"])  # no quorum anywhere
    load.submit(0, KVPut("k", "v"))
    load.run_until(1_000)
    (op,) = list(load.history())
    assert op.pending and op.output is UNKNOWN
    assert load.stats["abandoned"] == 1


def test_kv_node_rejects_misuse() -> None:
    node = kv_node_factory(RaftConfig(peers=("n1",)))("n1", random.Random(0))
    node.step(Start(0))
    with pytest.raises(LocalProtocolError):
        node.step(ClientRequest(1, "r", Propose(b"")))


@pytest.mark.soak
@pytest.mark.parametrize("first", range(0, 2_000, 100))
def test_kv_soak(first: int) -> None:
    for seed in range(10_000 + first, 10_000 + first + 100):
        run = simulate_kv(seed, nodes=3 + 2 * (seed % 2), clients=4, keys=("a", "b", "c"),
                          duration_ms=6_000)
        result = check_history(run.history, timeout=120)
        assert not run.violations and result.verdict is Verdict.OK, (seed, result.summary())


def test_protocol_never_imports_verify() -> None:
    """Imports point down (DESIGN.md): the KV workload lives in ``verify``."""
    import subprocess
    import sys

    code = ("import sys, vsm_phoenix.protocol, vsm_phoenix.protocol.kv, "
            "vsm_phoenix.protocol.raft; "
            "print(sorted(m for m in sys.modules if m.startswith('vsm_phoenix.verify')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "[]"
