"""Agents: leased roles (never two holders), fencing, signed capability grants and
placement, quorum spawning, the agent node's evidence replica, and the scenario."""

from __future__ import annotations

import functools
import json
import random
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vsm_phoenix import cbor
from vsm_phoenix.crypto.identity import Authority, Identity, Roster
from vsm_phoenix.crypto.signature import SigningKey
from vsm_phoenix.ext.agents import (
    AgentConfig,
    AgentNode,
    AuthenticationError,
    CapabilityGrant,
    DecodeError,
    Fence,
    GrantBook,
    HolderInterval,
    InvalidArgument,
    LeaseValue,
    PermissionDenied,
    Record,
    RoleLease,
    SpawnProposal,
    StaleToken,
    Vote,
    decide,
    overlaps,
    place,
)
from vsm_phoenix.ext.agents.scenario import simulate_agents
from vsm_phoenix.ext.evidence import Event
from vsm_phoenix.protocol.envelope import Envelope
from vsm_phoenix.protocol.node import Receive
from vsm_phoenix.protocol.sim import Simulator
from vsm_phoenix.protocol.swim import SwimConfig, UpdateMetadata
from vsm_phoenix.verify.models import KVAppend, KVCas, KVGet


# -- leases --------------------------------------------------------------------------
class FakeKV:
    """A linearizable single-copy KV: an operation takes effect when applied."""

    def __init__(self) -> None:
        self.data: dict[str, str] = {}

    def apply(self, op: KVGet | KVCas | KVAppend) -> object:
        if isinstance(op, KVGet):
            return self.data.get(op.key)
        if isinstance(op, KVAppend):
            self.data[op.key] = self.data.get(op.key, "") + op.value
            return None
        if self.data.get(op.key) != op.expected:
            return False
        self.data[op.key] = op.new
        return True


def test_lease_acquire_renew_and_takeover_after_silence() -> None:
    kv = FakeKV()
    a = RoleLease("a", "leader", lease_ms=1000, renew_ms=200, margin_ms=100)
    b = RoleLease("b", "leader", lease_ms=1000, renew_ms=200, margin_ms=100)
    op = a.next_op(0)
    assert op == KVGet("role/leader")
    assert a.on_result(kv.apply(op), 1) is None
    op = a.next_op(1)
    assert isinstance(op, KVCas) and op.expected is None
    assert a.on_result(kv.apply(op), 2) == "acquired"
    assert a.token(2) == 1 and a.token(1 + 900) is None  # sent at 1: until 1 + 1000 - 100
    # b sees a's value and waits; a renews, so b's wait starts again
    op = b.next_op(50)
    b.on_result(kv.apply(op), 55)
    assert b.next_op(100) is None
    op = a.next_op(250)
    assert isinstance(op, KVCas) and LeaseValue.decode(op.new).beat == 1
    assert a.on_result(kv.apply(op), 251) == "renewed" and a.token(1000) == 1
    op = b.next_op(300)  # b looks again: the value changed
    b.on_result(kv.apply(op), 301)
    # a goes silent (crashed); b takes over only lease + margin after its observation
    for t in range(302, 1401, 50):
        op = b.next_op(t)
        assert not isinstance(op, KVCas), t
        if op is not None:
            b.on_result(kv.apply(op), t)
    op = b.next_op(1402)
    assert isinstance(op, KVCas) and LeaseValue.decode(op.new).token == 2
    assert b.on_result(kv.apply(op), 1403) == "acquired" and b.token(1403) == 2
    assert a.token(1402) is None  # a's belief ended at 250 + 900 = 1150
    op = a.next_op(1160)  # a wakes up: its renewal fails
    assert op is None or isinstance(op, KVGet)


def test_a_failed_renewal_loses_the_role_at_once() -> None:
    kv = FakeKV()
    a = RoleLease("a", "r", lease_ms=1000, renew_ms=200, margin_ms=100)
    a.on_result(kv.apply(a.next_op(0)), 0)  # type: ignore[arg-type]
    a.on_result(kv.apply(a.next_op(0)), 0)  # type: ignore[arg-type]
    assert a.token(0) == 1
    kv.data["role/r"] = LeaseValue("b", 2, 0).encode()  # taken behind a's back
    op = a.next_op(300)
    assert a.on_result(kv.apply(op), 301) == "lost"  # type: ignore[arg-type]
    assert a.token(302) is None


def test_lease_arguments_and_values_are_checked() -> None:
    with pytest.raises(InvalidArgument):
        RoleLease("a", "r", lease_ms=500, renew_ms=400, margin_ms=100)
    with pytest.raises(InvalidArgument):
        RoleLease("", "r")
    lease = RoleLease("a", "r")
    with pytest.raises(InvalidArgument):
        lease.on_result(True, 0)
    for bad in ('["a",0,0]', '["a", 1, 0]', "[1,1,0]", "{}", "nope", 5, '["a",1,-1]'):
        with pytest.raises(DecodeError):
            LeaseValue.decode(bad)


@settings(max_examples=40)
@given(st.integers(0, 2**32), st.integers(2, 4), st.floats(0, 0.3))
def test_never_two_believing_holders(seed: int, agents: int, loss: float) -> None:
    """Random agents with clock offsets, random operation latencies (each operation
    takes effect at a random moment between send and answer), lost answers and
    crashes: belief intervals of different tokens never overlap in global time."""
    rng = random.Random(seed)
    kv = FakeKV()
    skew = [rng.randint(-5000, 5000) for _ in range(agents)]
    leases = [RoleLease(f"a{i}", "r", lease_ms=600, renew_ms=150, margin_ms=60)
              for i in range(agents)]
    inflight: dict[int, tuple[object, int, int, bool]] = {}  # i -> (op, apply, answer, lost)
    down_until = [0] * agents
    open_at: dict[int, tuple[int, int]] = {}
    intervals: list[HolderInterval] = []
    for now in range(0, 20_000, 5):
        for i, lease in enumerate(leases):
            local = now + skew[i]
            if i in open_at and lease.token(local) is None:
                start, token = open_at.pop(i)
                end = now - (local - min(local, lease.valid_until))
                intervals.append(HolderInterval("r", f"a{i}", token, start, end))
            if now < down_until[i]:
                continue
            if rng.random() < 0.0005:  # crash: forget everything for a while
                if i in open_at:
                    start, token = open_at.pop(i)
                    intervals.append(HolderInterval("r", f"a{i}", token, start, now))
                lease.give_up()
                inflight.pop(i, None)
                down_until[i] = now + rng.randint(100, 2000)
                continue
            if i in inflight:
                op, apply_at, answer_at, lost = inflight[i]
                if apply_at == now:
                    result = kv.apply(op)  # type: ignore[arg-type]
                    inflight[i] = (result, -1, answer_at, lost)
                if now >= answer_at and inflight[i][1] == -1:
                    result = inflight.pop(i)[0]
                    if lost:
                        lease.on_unanswered(local)
                    elif lease.on_result(result, local) == "acquired":
                        open_at[i] = (now, lease.token(local) or 0)
                continue
            op = lease.next_op(local)
            if op is not None:
                apply_at = now + rng.randint(0, 20) // 5 * 5
                inflight[i] = (op, apply_at, apply_at + rng.randint(0, 40) // 5 * 5,
                               rng.random() < loss)
                if apply_at == now:
                    inflight[i] = (kv.apply(op), -1, inflight[i][2], inflight[i][3])
    assert overlaps(intervals) == []
    assert sum(lease.acquisitions for lease in leases) >= 1


def test_overlaps_names_both_holders() -> None:
    found = overlaps([HolderInterval("r", "a", 1, 0, 100), HolderInterval("r", "b", 2, 50, 80),
                      HolderInterval("q", "a", 1, 0, 10)])
    assert len(found) == 1 and "a (token 1" in found[0] and "b (token 2" in found[0]


def test_fence_refuses_older_tokens() -> None:
    fence = Fence("board")
    fence.admit(1)
    fence.admit(3)
    fence.admit(3)
    with pytest.raises(StaleToken) as info:
        fence.admit(2)
    assert isinstance(info.value, PermissionDenied)
    assert (info.value.token, info.value.highest, fence.highest, fence.refused) == (2, 3, 3, 1)
    with pytest.raises(InvalidArgument):
        fence.admit(0)


# -- grants and placement ------------------------------------------------------------
@functools.cache
def people() -> tuple[Roster, dict[str, Identity]]:
    ids = {p: Identity(p, SigningKey.from_bytes(bytes([i + 60]) * 32))
           for i, p in enumerate(("admin", "a", "b", "c", "stranger"))}
    auth = Authority(SigningKey.from_bytes(b"\x05" * 32))
    roster = auth.issue("agents", {
        "admin": (ids["admin"].verify_key, ["admin"]),
        **{p: (ids[p].verify_key, ["peer"]) for p in "abc"},
    }, issued_ms=0)
    return roster, ids


def test_grants_verify_and_newer_serials_win() -> None:
    roster, ids = people()
    book = GrantBook(roster)
    g1 = CapabilityGrant.issue(ids["admin"], "agents", "a", ["gpu", "cpu"], serial=1)
    assert CapabilityGrant.from_bytes(g1.to_bytes(), roster) == g1
    assert book.add(g1.to_bytes()) and book.granted("a") == {"cpu", "gpu"}
    g2 = CapabilityGrant.issue(ids["admin"], "agents", "a", ["cpu"], serial=2)
    assert book.add(g2) and book.granted("a") == {"cpu"}
    assert not book.add(g1) and book.granted("a") == {"cpu"}  # an older grant: ignored
    with pytest.raises(PermissionDenied):  # a peer cannot grant
        book.add(CapabilityGrant.issue(ids["b"], "agents", "b", ["gpu"], serial=9))
    with pytest.raises(AuthenticationError):  # not in the roster
        book.add(CapabilityGrant.issue(ids["stranger"], "agents", "b", ["gpu"], serial=9))
    with pytest.raises(AuthenticationError):  # another cluster
        book.add(CapabilityGrant.issue(ids["admin"], "other", "b", ["gpu"], serial=9))
    body, signer, sig = cbor.loads(g2.to_bytes())
    tampered = cbor.dumps([body.replace(b"cpu", b"gpu"), signer, sig])
    with pytest.raises(AuthenticationError):
        book.add(tampered)
    with pytest.raises(DecodeError):
        book.add(b"\x80")
    assert book.granted("a") == {"cpu"} and book.granted("b") == frozenset()
    with pytest.raises(InvalidArgument):
        CapabilityGrant.issue(ids["admin"], "agents", "a", ["has space"], serial=1)


def test_placement_trusts_only_granted_advertisements() -> None:
    roster, ids = people()
    book = GrantBook(roster)
    for who, caps in (("a", ["cpu", "gpu"]), ("b", ["cpu"]), ("c", ["cpu", "gpu"])):
        book.add(CapabilityGrant.issue(ids["admin"], "agents", who, caps, serial=1))
    advertised = {"a": ("cpu", "gpu"), "b": ("cpu", "gpu"), "c": ("cpu", "gpu")}
    loads = {"a": 5.0, "b": 0.0, "c": 1.0}
    cfg = AgentConfig(swim=SwimConfig(seeds=("a",), period_ms=200, ping_timeout_ms=50))

    def factory(nid: str, rng: random.Random) -> AgentNode:
        return AgentNode(ids[nid], rng, roster, cfg, capabilities=advertised[nid],
                         load=loads[nid])

    sim = Simulator(factory, ["a", "b", "c"], seed=3)
    sim.run_until(3000)
    node = sim.node("a")
    assert isinstance(node, AgentNode)
    assert node.swim.match(["gpu"]) == ["b", "c", "a"]  # b claims gpu: not granted
    assert place(node.swim, book, ["gpu"]) == ["c", "a"]  # least loaded first
    assert place(node.swim, book, ["cpu"]) == ["b", "c", "a"]
    sim.client_request("c", UpdateMetadata(load=9.0))
    sim.crash("b")
    sim.run_until(20_000)
    assert place(node.swim, book, ["cpu"]) == ["a", "c"]
    assert book.effective(node.swim, "b") == {"cpu"}


# -- spawning ------------------------------------------------------------------------
def test_spawn_is_decided_by_quorum_in_log_order() -> None:
    header = SpawnProposal("p1", "a", "s1", "backlog", ("a", "b", "c"), 2)
    value = header.encode()
    assert decide(value) is None and decide(None) is None
    value += Vote("b", True, "room").encode() + Vote("b", False, "changed my mind").encode()
    value += Vote("mallory", True, "me too").encode() + "junk\n"
    assert decide(value) is None  # b counted once, mallory is not a voter
    value += Vote("c", True, "ok").encode() + Vote("a", False, "late").encode()
    decision = decide(value)
    assert decision is not None and decision.approved
    assert decision.approvals == ("b", "c")
    payload = decision.to_payload()
    assert payload["votes"] == [["b", True, "room"], ["c", True, "ok"]]
    assert json.loads(json.dumps(payload)) == payload
    rejected = decide(header.encode() + Vote("a", False, "full").encode()
                      + Vote("c", False, "full").encode())
    assert rejected is not None and not rejected.approved
    with pytest.raises(DecodeError):
        decide("not a header\n")
    with pytest.raises(InvalidArgument):
        SpawnProposal("p", "a", "s", "r", ("a",), 2)


# -- the agent node ------------------------------------------------------------------
def _agents(seed: int) -> Simulator:
    roster, ids = people()
    cfg = AgentConfig(swim=SwimConfig(seeds=("a",), period_ms=200, ping_timeout_ms=50),
                      sync_interval_ms=200)
    return Simulator(lambda nid, rng: AgentNode(ids[nid], rng, roster, cfg), ["a", "b", "c"],
                     seed=seed)


def test_agent_nodes_converge_their_evidence_and_reload_it() -> None:
    sim = _agents(1)
    sim.run_until(1000)
    for k, who in enumerate("abcabc"):
        sim.client_request(who, Record({"decision": k}))
        sim.run_for(50)
    sim.crash("c")
    sim.client_request("a", Record({"decision": "while c is down"}))
    sim.run_for(500)
    sim.restart("c")
    sim.run_for(3000)
    graphs = [n.graph for n in (sim.node(x) for x in "abc") if isinstance(n, AgentNode)]
    assert len(graphs) == 3 and len(graphs[0]) == 7
    assert graphs[0] == graphs[1] == graphs[2]
    assert all(g.verify(signatures=True).complete for g in graphs)
    recorded = [d for d in sim.delivered["a"] if d.kind == "agents.recorded"]
    assert len(recorded) == 3 and all(d.payload in graphs[0] for d in recorded)


def test_a_forged_sync_message_is_refused_without_change() -> None:
    sim = _agents(2)
    sim.run_until(1000)
    sim.client_request("a", Record("real"))
    sim.run_for(1000)
    node = sim.node("b")
    assert isinstance(node, AgentNode)
    before = node.state_key()
    _, ids = people()
    forged = Event.create(ids["stranger"], "fake", physical_ms=5)
    from vsm_phoenix.ext.evidence import SyncMessage

    data = SyncMessage((), (), (), (forged.raw,)).to_bytes()
    env = node.msg.envelope(2000, "evidence.sync", {"s": 1, "o": True, "d": data},
                            recipient="b")
    env = Envelope(message_id=env.message_id, type=env.type, sender="c", recipient="b",
                   timestamp=env.timestamp, payload=env.payload)
    with pytest.raises(DecodeError, match="stranger"):
        node.step(Receive(2000, env))
    bad = Envelope(message_id=env.message_id, type=env.type, sender="c", recipient="b",
                   timestamp=env.timestamp, payload=cbor.dumps({"s": "x"}))
    with pytest.raises(DecodeError):
        node.step(Receive(2000, bad))
    assert node.state_key() == before


# -- the whole scenario --------------------------------------------------------------
def test_agents_scenario_keeps_every_promise() -> None:
    lines: list[str] = []
    run = simulate_agents(5, agents=4, duration_ms=16_000, settle_ms=6_000,
                          check_timeout_s=120, say=lines.append)
    assert run.ok, (run.digests, run.graph_problems, run.overlaps, run.audit_problems,
                    run.verdict)
    assert run.stats["placements"] >= 3 and run.stats["acquisitions"] >= 3
    assert run.stats["crashes"] + run.stats["partitions"] >= 1
    assert len(set(run.digests.values())) == 1 and len(run.digests) >= 3
    assert lines and "linearizability" in lines[-1]


@pytest.mark.soak
@pytest.mark.parametrize("seed", range(10))
def test_agents_scenario_soak(seed: int) -> None:
    run = simulate_agents(seed, check_timeout_s=300)
    assert run.ok, (seed, run.graph_problems, run.overlaps, run.audit_problems, run.verdict)
    again = simulate_agents(seed, check_timeout_s=300)
    assert again.digests == run.digests  # a pure function of the seed


# -- the command line ----------------------------------------------------------------
def test_cli_simulate_agents(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from vsm_phoenix.cli import main

    assert main(["simulate", "--scenario", "agents", "--nodes", "3", "--seed", "2",
                 "--out-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "graphs identical" in out and "0 double holders" in out and "1/1 runs" in out
    doc = json.loads((tmp_path / "agents-seed2-evidence.json").read_text())
    assert any(e["payload"].get("type") == "placement" for e in doc["events"]
               if isinstance(e["payload"], dict))
    assert "<svg" in (tmp_path / "agents-seed2-evidence.html").read_text()


@pytest.mark.parametrize("argv", [
    ["--transport", "amqp"], ["--nodes", "1"], ["--runs", "0"], ["--check-timeout-s", "0"]])
def test_cli_simulate_agents_usage_errors(argv: list[str],
                                          capsys: pytest.CaptureFixture[str]) -> None:
    from vsm_phoenix.cli import main

    try:
        code = main(["simulate", "--scenario", "agents", *argv])
    except SystemExit as exc:
        code = int(exc.code or 0)
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and err[0].startswith("vsm-phoenix simulate:")
