"""The simulator: determinism, faults, persistence, skew, trace export and diagram."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from vsm_phoenix.errors import DecodeError, InvalidArgument
from vsm_phoenix.protocol.envelope import decode_cbor, encode_cbor
from vsm_phoenix.protocol.kit import Messenger
from vsm_phoenix.protocol.node import (
    ClientRequest,
    Deliver,
    Effect,
    Event,
    Node,
    Persist,
    Receive,
    Restart,
    SetTimer,
    Start,
    TimerFired,
)
from vsm_phoenix.protocol.sim import NetworkConfig, SimulationError, Simulator

PEERS = ["a", "b", "c"]


class Chatter:
    """A tiny test node: every 100 ms pings a random peer; counts what it receives
    (persisted), records the local time of each event and can be told to crash."""

    def __init__(self, node_id: str, rng: random.Random) -> None:
        self._id = node_id
        self.rng = rng
        self.msg = Messenger(node_id, rng)
        self.received: list[tuple[str, int]] = []
        self.total = 0
        self.times: list[int] = []
        self.booted_with: dict[str, bytes] | None = None

    @property
    def node_id(self) -> str:
        return self._id

    def step(self, event: Event) -> list[Effect]:
        self.times.append(event.now)
        if isinstance(event, Start | Restart):
            if isinstance(event, Restart):
                self.booted_with = dict(event.persisted)
                self.total = decode_cbor(event.persisted.get("total", encode_cbor(0)))
            return [SetTimer("tick", 100)]
        if isinstance(event, TimerFired):
            peer = self.rng.choice([p for p in PEERS if p != self._id])
            n = self.rng.randint(0, 1000)
            return [SetTimer("tick", 100), self.msg.send(event.now, peer, "test.ping", {"n": n})]
        if isinstance(event, Receive):
            if event.envelope.type == "test.bad":
                raise DecodeError("refused")
            self.msg.accept(event.now, event.envelope)
            self.received.append((event.envelope.sender, decode_cbor(event.envelope.payload)["n"]))
            self.total += 1
            return [Persist("total", encode_cbor(self.total))]
        if isinstance(event, ClientRequest):
            if event.payload == "boom":
                raise RuntimeError("bug")
            return [Deliver("echo", event.payload, event.request_id)]
        return []


def chatter(node_id: str, rng: random.Random) -> Node:
    return Chatter(node_id, rng)


def scripted_run(seed: int) -> Simulator:
    sim = Simulator(chatter, PEERS, seed=seed, network=NetworkConfig(
        drop_rate=0.1, duplicate_rate=0.1, reorder_rate=0.2))
    sim.schedule(500, lambda s: s.partition(["a"], ["b", "c"]))
    sim.schedule(900, lambda s: s.block("b", "c"))
    sim.schedule(1200, lambda s: s.crash("c"))
    sim.schedule(1500, lambda s: s.heal())
    sim.schedule(1700, lambda s: s.restart("c"))
    sim.schedule(1800, lambda s: s.set_skew("b", 250))
    sim.client_request("a", {"hello": 1}, delay_ms=300)
    sim.run_until(3000)
    return sim


def test_same_seed_same_trace() -> None:
    one, two = scripted_run(7), scripted_run(7)
    assert one.trace_json() == two.trace_json(), "seed=7 did not replay exactly"
    assert scripted_run(8).trace_json() != one.trace_json()
    doc = json.loads(one.trace_json())
    assert doc["seed"] == 7 and doc["nodes"] == PEERS
    kinds = {e["k"] for e in doc["events"]}
    assert {"send", "recv", "drop", "dup", "crash", "restart", "partition", "heal",
            "block", "skew", "client", "deliver"} <= kinds


def test_partitions_block_links() -> None:
    sim = Simulator(chatter, PEERS, seed=1)
    sim.partition(["a"], ["b", "c"])
    sim.run_until(2000)
    a = sim.node("a")
    assert isinstance(a, Chatter) and a.received == []
    b = sim.node("b")
    assert isinstance(b, Chatter) and b.received and {s for s, _ in b.received} == {"c"}
    sim.heal()
    sim.block("c", "a")  # asymmetric: a still hears b, never c
    sim.run_until(5000)
    assert {s for s, _ in a.received} == {"b"}
    c = sim.node("c")
    assert isinstance(c, Chatter) and "a" in {s for s, _ in c.received[-50:]}


def test_crash_restart_keeps_only_persisted_state() -> None:
    sim = Simulator(chatter, PEERS, seed=2)
    sim.run_until(1000)
    before = sim.node("b")
    assert isinstance(before, Chatter) and before.total > 0
    total = before.total
    sim.crash("b")
    assert sim.node("b") is None and not sim.is_up("b")
    sim.run_until(1500)  # messages to b are lost while it is down
    sim.restart("b")
    after = sim.node("b")
    assert isinstance(after, Chatter) and after is not before
    assert after.received == []  # memory is gone ...
    assert after.total == total  # ... persisted state is not
    assert after.booted_with == {"total": encode_cbor(total)}
    assert any(e["k"] == "drop" and e.get("why") == "down" for e in sim.trace)


def test_skew_shifts_local_time_only() -> None:
    sim = Simulator(chatter, ["a", "b"], seed=3, autostart=False)
    sim.set_skew("b", 5000)
    sim.start("a")
    sim.start("b")
    sim.run_until(1000)
    a, b = sim.node("a"), sim.node("b")
    assert isinstance(a, Chatter) and isinstance(b, Chatter)
    assert max(a.times) <= 1000 < min(t for t in b.times if t > 0)
    assert sim.local_time("b") == sim.now + 5000


def test_rejections_are_recorded_and_bugs_carry_the_seed() -> None:
    sim = Simulator(chatter, ["a", "b"], seed=11)
    node = sim.node("a")
    assert isinstance(node, Chatter)
    sim._send("b", node.msg.envelope(0, "test.bad", {}, recipient="a"))
    sim.run_until(100)
    assert sim.stats["rejected"] == 1
    sim.client_request("a", "boom")
    with pytest.raises(SimulationError, match="seed=11"):
        sim.run_until(200)


def test_network_validation_and_add_node() -> None:
    with pytest.raises(InvalidArgument):
        NetworkConfig(drop_rate=1.5)
    with pytest.raises(InvalidArgument):
        NetworkConfig(min_latency_ms=5, max_latency_ms=1)
    sim = Simulator(chatter, ["a", "b"], seed=4)
    sim.add_node("c")
    with pytest.raises(InvalidArgument):
        sim.add_node("c")
    with pytest.raises(InvalidArgument):
        sim.start("c")
    sim.set_network(drop_rate=1.0)
    sim.run_until(1000)
    assert sim.stats["delivered"] == 0 and sim.stats["dropped"] > 0


def test_html_diagram(tmp_path: Path) -> None:
    sim = scripted_run(5)
    out = sim.write_html(tmp_path / "run.html", end_ms=2000)
    text = out.read_text(encoding="utf-8")
    assert text.startswith("<!DOCTYPE html>") and "<svg" in text and "seed 5" in text
    assert "test.ping" in text and "crash" in text and "partition" in text
    assert "http" not in text.replace('xmlns="http://www.w3.org/2000/svg"', "")  # offline
    trace = sim.write_trace(tmp_path / "trace.json")
    assert json.loads(trace.read_text())["seed"] == 5
