"""Delta anti-entropy: convergence under faults across many seeds, durability,
full-state fallback, and hostile messages leaving state unchanged."""

from __future__ import annotations

import random
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vsm_phoenix.crdt import CRDT, GCounter, GSet, ORSet, PNCounter
from vsm_phoenix.errors import DecodeError
from vsm_phoenix.protocol.envelope import Envelope, encode_cbor
from vsm_phoenix.protocol.kit import Messenger
from vsm_phoenix.protocol.node import (
    ClientRequest,
    Deliver,
    LocalProtocolError,
    Persist,
    Receive,
    Restart,
    Send,
    Start,
    TimerFired,
)
from vsm_phoenix.protocol.sim import NetworkConfig, Simulator
from vsm_phoenix.protocol.sync import Merge, Mutate, Read, SyncConfig, SyncNode

INTERVAL = 200


def replicas() -> dict[str, CRDT]:
    return {"s": ORSet(), "g": GCounter(), "p": PNCounter()}


def build(seed: int, big: bool = False) -> tuple[Simulator, list[str], dict[str, Any]]:
    """A random small cluster, workload and fault script for ``seed`` (``big``: up to 6
    nodes and 80 operations, for soaks)."""
    r = random.Random(seed)
    ids = [f"n{i}" for i in range(r.randint(2, 6 if big else 4))]
    cfg = SyncConfig(interval_ms=INTERVAL, peers=tuple(ids), max_buffer=r.choice([2, 8, 64]))
    net = NetworkConfig(
        drop_rate=r.choice([0.0, 0.1, 0.3]), duplicate_rate=r.choice([0.0, 0.2]),
        reorder_rate=r.choice([0.0, 0.3]), max_latency_ms=r.choice([5, 50]),
    )
    sim = Simulator(lambda nid, rng: SyncNode(nid, rng, cfg, replicas=replicas()), ids,
                    seed=seed, network=net)
    ops: dict[str, Any] = {"g": {}}  # request id -> (node, op) for increments
    for _ in range(r.randint(4, 80 if big else 14)):
        n, at, e = r.choice(ids), r.randint(0, 2500), r.randint(0, 6)
        kind = r.random()
        if kind < 0.5:
            sim.client_request(n, Mutate("s", lambda s, n=n, e=e: s.add(n, e)), delay_ms=at)
        elif kind < 0.7:
            sim.client_request(n, Mutate("s", lambda s, e=e: s.remove(e)), delay_ms=at)
        elif kind < 0.85:
            rid = sim.client_request(n, Mutate("g", lambda g, n=n: g.increment(n)), delay_ms=at)
            ops["g"][rid] = n
        else:
            sim.client_request(n, Mutate("p", lambda p, n=n: p.decrement(n)), delay_ms=at)
    if r.random() < 0.7:
        cut = r.randint(1, len(ids) - 1)
        sim.schedule(r.randint(0, 1500), lambda s: s.partition(ids[:cut], ids[cut:]))
    if r.random() < 0.3:
        a, b = r.sample(ids, 2)
        sim.schedule(r.randint(0, 1500), lambda s: s.block(a, b))
    if r.random() < 0.6:
        victim, down = r.choice(ids), r.randint(0, 2000)
        sim.schedule(down, lambda s: s.crash(victim))
        sim.schedule(down + r.randint(50, 800), lambda s: s.restart(victim))
    if r.random() < 0.3:
        sim.schedule(0, lambda s: s.set_skew(r.choice(ids), r.randint(-500, 5000)))
    return sim, ids, ops


def settle(sim: Simulator) -> None:
    sim.run_until(3000)
    sim.heal()
    sim.set_network(drop_rate=0.0)
    for nid in sim.node_ids:
        if not sim.is_up(nid):
            sim.restart(nid)
    sim.run_until(3000 + 12 * INTERVAL)


def check_converged(sim: Simulator, ids: list[str], ops: dict[str, Any]) -> None:
    seed = sim.seed
    nodes = [sim.node(n) for n in ids]
    assert all(isinstance(n, SyncNode) for n in nodes), f"seed={seed}"
    first = nodes[0]
    assert isinstance(first, SyncNode)
    for node in nodes[1:]:
        assert isinstance(node, SyncNode)
        for name in ("s", "g", "p"):
            assert node.replicas[name] == first.replicas[name], (
                f"seed={seed}: {node.node_id}.{name} differs from {first.node_id}.{name}"
            )
    # every increment the application saw acknowledged survives crashes and faults
    acked = {d.request_id for n in ids for d in sim.delivered[n] if d.kind == "sync.mutated"}
    expected = sum(1 for rid in ops["g"] if rid in acked)
    assert first.replicas["g"].value == expected, f"seed={seed}: lost increments"
    # quiescence: nobody has anything left to ship
    for node in nodes:
        assert isinstance(node, SyncNode)
        assert node.pending_peers() == [], f"seed={seed}: {node.node_id} not quiescent"


@pytest.mark.parametrize("seed", range(200))
def test_convergence_under_faults(seed: int) -> None:
    sim, ids, ops = build(seed)
    settle(sim)
    check_converged(sim, ids, ops)


@pytest.mark.soak
@pytest.mark.parametrize("seed", range(200, 2200))
def test_convergence_soak(seed: int) -> None:
    sim, ids, ops = build(seed, big=True)
    settle(sim)
    check_converged(sim, ids, ops)


def test_add_wins_against_concurrent_remove() -> None:
    """ORSet semantics survive sync: a remove only cancels the adds it observed."""
    cfg = SyncConfig(interval_ms=INTERVAL, peers=("a", "b"))
    sim = Simulator(lambda nid, rng: SyncNode(nid, rng, cfg, replicas=replicas()), ["a", "b"],
                    seed=3)
    sim.client_request("a", Mutate("s", lambda s: s.add("a", "x")))
    sim.run_for(5 * INTERVAL)
    sim.partition(["a"], ["b"])
    sim.client_request("a", Mutate("s", lambda s: s.remove("x")))
    sim.client_request("b", Mutate("s", lambda s: s.add("b", "x")))  # concurrent re-add
    sim.client_request("b", Mutate("s", lambda s: s.add("b", "y")))
    sim.client_request("a", Mutate("s", lambda s: s.remove("y")))  # y unseen at a: no-op
    sim.run_for(5 * INTERVAL)
    sim.heal()
    sim.run_for(10 * INTERVAL)
    for n in ("a", "b"):
        node = sim.node(n)
        assert isinstance(node, SyncNode) and node.value("s") == frozenset({"x", "y"})


def node_with_state() -> tuple[SyncNode, Messenger]:
    node = SyncNode("me", random.Random(1), SyncConfig(peers=("peer",)),
                    replicas={"s": ORSet(), "g": GCounter()})
    node.step(Start(0))
    node.step(ClientRequest(1, "r1", Mutate("s", lambda s: s.add("me", "x"))))
    node.step(ClientRequest(2, "r2", Mutate("g", lambda g: g.increment("me", 3))))
    return node, Messenger("peer", random.Random(2))


def snapshot(node: SyncNode) -> tuple[Any, ...]:
    return (
        {n: r.to_bytes() for n, r in node.replicas.items()},
        node.counter,
        {k: ({n: d.to_bytes() for n, d in v[0].items()}, v[1]) for k, v in node.buffer.items()},
        dict(node.acked),
        node.msg.clock.last,
    )


def delta_env(peer: Messenger, body: Any, now: int = 10, msg_type: str = "sync.delta") -> Envelope:
    return peer.envelope(now, msg_type, body if isinstance(body, bytes) else encode_cbor(body),
                         recipient="me")


HOSTILE_BODIES: list[Any] = [
    b"\xff\x00",  # not CBOR
    [1, 2],  # not a map
    {"seq": -1, "full": False, "d": {}},
    {"seq": 1, "full": "no", "d": {}},
    {"seq": 1, "full": False, "d": []},
    {"seq": 1, "full": False, "d": {"s": b"garbage"}},
    {"seq": 1, "full": False, "d": {"s": GCounter().to_bytes()}},  # wrong type for s
    {"seq": 1, "full": False, "d": {"": ORSet().to_bytes()}},
    {"seq": 1, "full": False, "d": {"g": GCounter().to_bytes(), "s": b"\x80"}},  # 1 ok, 1 bad
]


@pytest.mark.parametrize("body", HOSTILE_BODIES)
def test_hostile_delta_leaves_state_unchanged(body: Any) -> None:
    node, peer = node_with_state()
    before = snapshot(node)
    with pytest.raises(DecodeError):
        node.step(Receive(10, delta_env(peer, body)))
    assert snapshot(node) == before


def test_hostile_ack_and_types_and_clock() -> None:
    node, peer = node_with_state()
    before = snapshot(node)
    for env in (
        delta_env(peer, {"seq": "x"}, msg_type="sync.ack"),
        delta_env(peer, {"seq": 1, "more": 2}, msg_type="sync.ack"),
        delta_env(peer, {}, msg_type="sync.unknown"),
        delta_env(peer, {"seq": 1, "full": False, "d": {}}, now=10**9),  # clock far ahead
    ):
        with pytest.raises(DecodeError):
            node.step(Receive(10, env))
        assert snapshot(node) == before
    misrouted = peer.envelope(10, "sync.ack", {"seq": 1}, recipient="someone-else")
    with pytest.raises(DecodeError):
        node.step(Receive(10, misrouted))
    assert snapshot(node) == before


@settings(max_examples=150, deadline=None)
@given(st.binary(max_size=200), st.sampled_from(["sync.delta", "sync.ack"]))
def test_random_payloads_decode_error_or_accepted(payload: bytes, msg_type: str) -> None:
    node, peer = node_with_state()
    before = snapshot(node)
    try:
        node.step(Receive(10, delta_env(peer, payload, msg_type=msg_type)))
    except DecodeError:
        assert snapshot(node) == before


def test_full_state_for_new_peer_then_deltas() -> None:
    node, _peer = node_with_state()
    out = node.step(TimerFired(5000, "sync.ship"))
    sends = [e for e in out if isinstance(e, Send)]
    assert len(sends) == 1 and node.full_sends == 1
    receiver = SyncNode("peer", random.Random(3), SyncConfig(peers=("me",)),
                        replicas={"s": ORSet(), "g": GCounter()})
    receiver.step(Start(0))
    back = receiver.step(Receive(5010, sends[0].envelope))
    acks = [e for e in back if isinstance(e, Send) and e.envelope.type == "sync.ack"]
    assert receiver.value("s") == frozenset({"x"}) and receiver.value("g") == 3
    assert any(isinstance(e, Deliver) and e.kind == "sync.updated" for e in back)
    node.step(Receive(5020, acks[0].envelope))
    assert node.pending_peers() == []
    idle = node.step(TimerFired(10_000, "sync.ship"))
    assert not [e for e in idle if isinstance(e, Send)]  # nothing new to ship
    node.step(ClientRequest(10_001, "r3", Mutate("s", lambda s: s.add("me", "z"))))
    out = node.step(TimerFired(15_000, "sync.ship"))
    sends = [e for e in out if isinstance(e, Send)]
    assert len(sends) == 1 and node.delta_sends == 1
    receiver.step(Receive(15_010, sends[0].envelope))
    assert receiver.value("s") == frozenset({"x", "z"})


def test_client_commands_and_misuse() -> None:
    node, _ = node_with_state()
    (read,) = node.step(ClientRequest(3, "r", Read("g")))
    assert isinstance(read, Deliver) and read.payload.value == 3 and read.request_id == "r"
    node.step(ClientRequest(4, "m", Merge("new", GSet({1, 2}))))
    assert node.value("new") == frozenset({1, 2})
    with pytest.raises(LocalProtocolError):
        node.step(ClientRequest(5, "x", Mutate("missing", lambda s: s)))
    with pytest.raises(LocalProtocolError):
        node.step(ClientRequest(5, "x", Mutate("g", lambda g: ORSet())))
    with pytest.raises(LocalProtocolError):
        node.step(ClientRequest(5, "x", Merge("g", ORSet())))
    with pytest.raises(LocalProtocolError):
        node.step(ClientRequest(5, "x", "nonsense"))
    with pytest.raises(LocalProtocolError):
        node.step(Start(6))
    fresh = SyncNode("z", random.Random(0))
    with pytest.raises(LocalProtocolError):
        fresh.step(TimerFired(0, "sync.ship"))


def test_restart_recovers_snapshot_and_log_and_rejects_corruption() -> None:
    node, _ = node_with_state()
    effects = node.step(TimerFired(5000, "sync.ship"))  # folds the log into a snapshot
    store: dict[str, bytes] = {}
    for e in [*effects, *node.step(ClientRequest(5001, "r4",
                                                 Mutate("s", lambda s: s.add("me", "y"))))]:
        if isinstance(e, Persist):
            if e.value is None:
                store.pop(e.key, None)
            else:
                store[e.key] = e.value
    assert "sync/snapshot" in store and any(k.startswith("sync/log/") for k in store)
    again = SyncNode("me", random.Random(9), SyncConfig(peers=("peer",)),
                     replicas={"s": ORSet(), "g": GCounter()})
    again.step(Restart(6000, store))
    assert again.value("s") == frozenset({"x", "y"}) and again.value("g") == 3
    assert again.counter == node.counter
    broken = SyncNode("me", random.Random(9), SyncConfig(), replicas={"s": ORSet()})
    with pytest.raises(DecodeError):
        broken.step(Restart(0, {"sync/snapshot": b"\x00junk"}))
    assert not broken.started and broken.value("s") == frozenset()


@pytest.mark.parametrize("persisted", [
    {"sync/counter": bytes.fromhex("f97c00")},  # float infinity: int() raised OverflowError
    {"sync/counter": bytes.fromhex("f93e00")},  # 1.5: int() silently truncated it
    {"sync/counter": bytes.fromhex("20")},  # -1
    {"sync/counter": bytes.fromhex("6131")},  # the text "1": int() parsed it
    {"sync/log/00000000000x": encode_cbor({})},
    {"sync/log/\u0661": encode_cbor({})},  # an Arabic-Indic digit: int() accepted it
    {"sync/log/000000000001": encode_cbor({1: encode_cbor(None)})},  # a non-str name
    {"sync/snapshot": encode_cbor({"replicas": {}, "counter": 2.0})},
])
def test_restart_refuses_counters_and_keys_that_are_not_what_it_wrote(
        persisted: dict[str, bytes]) -> None:
    node = SyncNode("me", random.Random(9), SyncConfig(), replicas={"s": ORSet()})
    with pytest.raises(DecodeError):
        node.step(Restart(0, persisted))
    assert not node.started and node.counter == 0 and node.value("s") == frozenset()
