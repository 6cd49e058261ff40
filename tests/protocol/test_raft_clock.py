"""Raft needs no wall clock: clock steps of any size, forwards or back, on any number of
nodes, never stop the cluster (the HLC drift bound only decides what is merged into a
node's HLC), and Raft's decisions are the same whatever the clocks read."""

from __future__ import annotations

import random
from functools import partial
from typing import Any

import pytest

from vsm_phoenix.protocol.envelope import Envelope
from vsm_phoenix.protocol.kit import Messenger
from vsm_phoenix.protocol.kv import get, kv_node_factory, put
from vsm_phoenix.protocol.node import LocalProtocolError, RemoteProtocolError
from vsm_phoenix.protocol.raft import K_NOT_LEADER, K_OK, RaftConfig, RaftNode
from vsm_phoenix.protocol.sim import NetworkConfig, Simulator

IDS = ["n1", "n2", "n3"]


def _leader(sim: Simulator) -> str | None:
    for i in sim.node_ids:
        node = sim.node(i)
        if isinstance(node, RaftNode) and node.is_leader:
            return i
    return None


def _write(sim: Simulator, client: str, seq: int, deadline_ms: int) -> int | None:
    """Put ``k=seq`` as ``client``, following leader hints and retrying every 100 ms
    until acknowledged; the virtual time of the acknowledgement, or ``None``."""
    target = _leader(sim) or IDS[0]
    while sim.now < deadline_ms:
        rid = sim.client_request(target, put(client, seq, "k", str(seq)))
        until = min(sim.now + 100, deadline_ms)
        while sim.now < until:
            sim.run_for(1)
            for d in sim.delivered[target]:
                if d.request_id == rid:
                    if d.kind == K_OK:
                        return sim.now
                    if d.kind == K_NOT_LEADER and isinstance(d.payload, str):
                        target = d.payload
                    until = sim.now
        if _leader(sim) is not None:
            target = _leader(sim) or target
    return None


def _skew(group: tuple[str, ...], ms: int, sim: Simulator) -> None:
    for n in group:
        sim.set_skew(n, ms)


@pytest.mark.parametrize("step_ms", [180_000, -180_000])
@pytest.mark.parametrize("pair", [("leader", "follower"), ("follower", "follower")])
def test_clock_step_on_two_of_three_nodes(step_ms: int, pair: tuple[str, str]) -> None:
    """2 of 3 nodes step their clocks by 180 s at t=2 s and are corrected at t=4 s: a
    write issued at the correction is acknowledged within 2 s, and writes go through
    while the clocks are wrong. (With the drift bound refusing Raft traffic, the
    forward step was an outage of about 120 s after the correction.)"""
    cfg = RaftConfig(peers=tuple(IDS))
    sim = Simulator(kv_node_factory(cfg), IDS, seed=1,
                    network=NetworkConfig(min_latency_ms=1, max_latency_ms=10))
    sim.run_until(1_500)
    lead = _leader(sim)
    assert lead is not None
    followers = [i for i in IDS if i != lead]
    group = (lead, followers[0]) if pair[0] == "leader" else tuple(followers)
    sim.schedule(2_000, partial(_skew, group, step_ms))
    sim.schedule(4_000, partial(_skew, group, 0))
    sim.run_until(2_500)
    during = _write(sim, "c", 1, 4_000)
    assert during is not None and during < 3_000
    sim.run_until(4_000)
    acked = _write(sim, "c", 2, 6_000)
    assert acked is not None and acked - 4_000 <= 2_000
    # Stamps from beyond the drift bound arrived and were left unmerged, not refused.
    if step_ms > 0:
        nodes = [n for n in map(sim.node, IDS) if isinstance(n, RaftNode)]
        ignored = sum(n._messenger.drift_ignored for n in nodes)
        assert ignored > 0
    assert sim.stats["rejected"] == 0


def test_a_step_that_is_never_corrected_costs_nothing() -> None:
    cfg = RaftConfig(peers=tuple(IDS))
    sim = Simulator(kv_node_factory(cfg), IDS, seed=2)
    sim.run_until(1_000)
    _skew(("n1", "n2"), 86_400_000, sim)
    _skew(("n3",), -3_600_000, sim)
    for seq in range(1, 11):
        start = sim.now
        acked = _write(sim, "c", seq, sim.now + 2_000)
        assert acked is not None and acked - start < 200
    node = sim.node(_leader(sim) or "n1")
    assert isinstance(node, RaftNode)
    assert node.state_machine.query(get("k").query) == "10"


def _decisions(trace: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The trace without clock readings' only traces: envelope sizes (the HLC stamp is
    in the envelope) and the skew changes themselves."""
    return [{k: v for k, v in e.items() if k != "bytes"} for e in trace if e["k"] != "skew"]


def test_raft_decisions_do_not_depend_on_the_clock() -> None:
    """The same seeded run with steady clocks and with every clock jumping by up to a
    day, forwards and back, every 100 ms: the same elections, messages, commits and
    replies, event for event. Only HLC stamps (hence envelope sizes) differ."""

    def run(jumps: bool) -> Simulator:
        cfg = RaftConfig(peers=tuple(IDS), election_timeout_ms=150, heartbeat_ms=30,
                         snapshot_threshold=16)
        net = NetworkConfig(drop_rate=0.05, duplicate_rate=0.05, reorder_rate=0.1)
        sim = Simulator(kv_node_factory(cfg), IDS, seed=3, network=net)
        rng = random.Random(9)
        if jumps:
            for t in range(0, 4_000, 100):
                for n in IDS:
                    sim.schedule(t, partial(_skew, (n,), rng.randint(-86_400_000, 86_400_000)))
        for i in range(60):
            target = IDS[i % 3]
            sim.client_request(target, put("c", i + 1, "k", str(i)), delay_ms=300 + 50 * i)
        sim.schedule(1_200, lambda s: s.partition(["n1"], ["n2", "n3"]))
        sim.schedule(2_000, lambda s: s.crash("n2"))
        sim.schedule(2_400, lambda s: s.restart("n2"))
        sim.schedule(2_800, Simulator.heal)
        sim.run_until(4_500)
        return sim

    steady, jumpy = run(False), run(True)
    assert _decisions(jumpy.trace) == _decisions(steady.trace)
    assert jumpy.delivered == steady.delivered
    assert any(e["k"] == "skew" for e in jumpy.trace)
    oks = sum(1 for n in IDS for d in steady.delivered[n] if d.kind == K_OK)
    assert oks > 10  # not vacuous: writes were served despite the faults


# -- the messenger's drift policy ---------------------------------------------------------
def _stamped(physical_ms: int) -> Envelope:
    return Envelope(message_id=b"m" * 16, type="x.y", sender="peer", recipient="me",
                    timestamp=(physical_ms, 0, "peer"), payload=b"")


def test_messenger_refuses_or_ignores_far_ahead_stamps() -> None:
    strict = Messenger("me", random.Random(0), max_drift_ms=1_000)
    with pytest.raises(RemoteProtocolError):
        strict.accept(5_000, _stamped(7_000))
    assert strict.clock.last.physical_ms == 0  # unchanged
    lenient = Messenger("me", random.Random(0), max_drift_ms=1_000, refuse_drift=False)
    stamp = lenient.accept(5_000, _stamped(7_000))
    assert stamp.physical_ms == 5_000 and lenient.drift_ignored == 1  # not merged
    stamp = lenient.accept(5_000, _stamped(5_900))  # within the bound: merged
    assert stamp.physical_ms == 5_900 and lenient.drift_ignored == 1
    after = lenient.envelope(5_000, "x.y", b"", recipient="peer")
    assert after.timestamp[0] == 5_900  # still monotonic


def test_drift_bound_is_configurable_and_checked() -> None:
    node = RaftNode("n1", random.Random(0), RaftConfig(peers=tuple(IDS), max_clock_drift_ms=5))
    assert node._messenger.clock.max_drift_ms == 5
    assert not node._messenger.refuse_drift
    with pytest.raises(LocalProtocolError):
        RaftConfig(peers=tuple(IDS), max_clock_drift_ms=-1)
