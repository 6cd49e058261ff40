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
        node.origin,
        node.counter,
        dict(node.have),
        {o: list(g) for o, g in node._gaps.items()},
        {k: (dict(v[0]), {n: d.to_bytes() for n, d in v[1].items()})
         for k, v in node.buffer.items()},
        {p: (o, dict(v)) for p, (o, v) in node.known.items()},
        node.msg.clock.last,
    )


def delta_env(peer: Messenger, body: Any, now: int = 10, msg_type: str = "sync.delta") -> Envelope:
    return peer.envelope(now, msg_type, body if isinstance(body, bytes) else encode_cbor(body),
                         recipient="me")


TAGS = [["peer.1", 1, 1]]
HOSTILE_BODIES: list[Any] = [
    b"\xff\x00",  # not CBOR
    [1, 2],  # not a map
    {"o": "peer.1", "full": "no", "t": TAGS, "d": {}},
    {"o": "peer.1", "full": False, "t": TAGS, "d": []},
    {"o": "", "full": False, "t": TAGS, "d": {}},
    {"o": "peer.1", "full": False, "d": {}},  # names no entries
    {"o": "peer.1", "full": False, "t": [], "d": {}},
    {"o": "peer.1", "full": False, "t": [["peer.1", 0, 1]], "d": {}},
    {"o": "peer.1", "full": False, "t": [["peer.1", 3, 2]], "d": {}},
    {"o": "peer.1", "full": False, "t": [["peer.1", 1, 2**64]], "d": {}},
    {"o": "peer.1", "full": False, "t": [["peer.1", 1, 1], ["peer.1", 2, 2]], "d": {}},
    {"o": "peer.1", "full": True, "d": {}},  # full state without its vector
    {"o": "peer.1", "full": True, "v": {"x": -1}, "d": {}},
    {"o": "peer.1", "full": True, "v": {"x": 1.5}, "d": {}},
    {"o": "peer.1", "full": False, "t": TAGS, "v": {"x": -2}, "d": {}},  # a bad vector
    {"o": "peer.1", "full": False, "t": TAGS, "d": {"s": b"garbage"}},
    {"o": "peer.1", "full": False, "t": TAGS, "d": {"s": GCounter().to_bytes()}},  # wrong type
    {"o": "peer.1", "full": False, "t": TAGS, "d": {"": ORSet().to_bytes()}},
    # one good replica, one bad: nothing may be applied
    {"o": "peer.1", "full": False, "t": TAGS, "d": {"g": GCounter().to_bytes(), "s": b"\x80"}},
]


@pytest.mark.parametrize("body", HOSTILE_BODIES)
def test_hostile_delta_leaves_state_unchanged(body: Any) -> None:
    node, peer = node_with_state()
    before = snapshot(node)
    with pytest.raises(DecodeError):
        node.step(Receive(10, delta_env(peer, body)))
    assert snapshot(node) == before


def test_hostile_ack_digest_and_types_and_clock() -> None:
    node, peer = node_with_state()
    before = snapshot(node)
    for env in (
        delta_env(peer, {"seq": 1}, msg_type="sync.ack"),
        delta_env(peer, {"o": "p", "v": {"me.1": "x"}, "all": True}, msg_type="sync.ack"),
        delta_env(peer, {"o": "p", "v": {}, "all": True, "more": 2}, msg_type="sync.ack"),
        delta_env(peer, {"o": "p", "v": {}, "all": 1}, msg_type="sync.ack"),
        delta_env(peer, {"o": "p", "v": {}}, msg_type="sync.ack"),
        delta_env(peer, {"o": "p", "h": "text"}, msg_type="sync.digest"),
        delta_env(peer, {"o": "p", "h": b"x" * 65}, msg_type="sync.digest"),
        delta_env(peer, {"o": "p", "v": {}, "r": 3}, msg_type="sync.digest"),
        delta_env(peer, {"o": "p", "v": {}, "r": True}, msg_type="sync.digest"),
        delta_env(peer, {"o": 5, "v": {}, "r": 1}, msg_type="sync.digest"),
        delta_env(peer, {}, msg_type="sync.unknown"),
        delta_env(peer, {"o": "p", "full": False, "t": TAGS, "d": {}}, now=10**9),  # clock
    ):
        with pytest.raises(DecodeError):
            node.step(Receive(10, env))
        assert snapshot(node) == before
    misrouted = peer.envelope(10, "sync.ack", {"o": "p", "v": {}, "all": True},
                              recipient="someone-else")
    with pytest.raises(DecodeError):
        node.step(Receive(10, misrouted))
    assert snapshot(node) == before


@settings(max_examples=150, deadline=None)
@given(st.binary(max_size=200), st.sampled_from(["sync.delta", "sync.ack", "sync.digest"]))
def test_random_payloads_decode_error_or_accepted(payload: bytes, msg_type: str) -> None:
    node, peer = node_with_state()
    before = snapshot(node)
    replicas = {n: r.copy() for n, r in node.replicas.items()}
    try:
        node.step(Receive(10, delta_env(peer, payload, msg_type=msg_type)))
    except DecodeError:
        assert snapshot(node) == before
    else:  # accepted: receiving only joins, never loses or replaces local state
        assert node.replicas.keys() == replicas.keys()
        for name, old in replicas.items():
            assert old <= node.replicas[name], name
        assert node.origin == before[1] and node.counter == before[2]


def test_new_peer_gets_own_entries_then_only_new_ones() -> None:
    node, _peer = node_with_state()
    out = node.step(TimerFired(5000, "sync.ship"))
    sends = [e for e in out if isinstance(e, Send) and e.envelope.type == "sync.delta"]
    assert len(sends) == 1 and node.delta_sends == 1 and node.full_sends == 0
    receiver = SyncNode("peer", random.Random(3), SyncConfig(peers=("me",)),
                        replicas={"s": ORSet(), "g": GCounter()})
    receiver.step(Start(0))
    back = receiver.step(Receive(5010, sends[0].envelope))
    acks = [e for e in back if isinstance(e, Send) and e.envelope.type == "sync.ack"]
    assert receiver.value("s") == frozenset({"x"}) and receiver.value("g") == 3
    assert receiver.have[node.origin] == node.counter == 2
    assert any(isinstance(e, Deliver) and e.kind == "sync.updated" for e in back)
    node.step(Receive(5020, acks[0].envelope))
    assert node.pending_peers() == []
    idle = node.step(TimerFired(10_000, "sync.ship"))
    assert not [e for e in idle if isinstance(e, Send) and e.envelope.type == "sync.delta"]
    node.step(ClientRequest(10_001, "r3", Mutate("s", lambda s: s.add("me", "z"))))
    out = node.step(TimerFired(15_000, "sync.ship"))
    sends = [e for e in out if isinstance(e, Send) and e.envelope.type == "sync.delta"]
    assert len(sends) == 1 and node.delta_sends == 2
    receiver.step(Receive(15_010, sends[0].envelope))
    assert receiver.value("s") == frozenset({"x", "z"})
    # with the buffer trimmed past what a peer lacks, it gets full state
    small = SyncNode("me", random.Random(1), SyncConfig(peers=("peer",), max_buffer=1),
                     replicas={"s": ORSet()})
    small.step(Start(0))
    for e in "abc":
        small.step(ClientRequest(1, e, Mutate("s", lambda s, e=e: s.add("me", e))))
    out = small.step(TimerFired(5000, "sync.ship"))
    assert small.full_sends == 1 and small.delta_sends == 0


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
    assert again.counter == node.counter and again.origin == node.origin
    assert again.have == node.have
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


def mesh(n: int, seed: int, **cfg: Any) -> tuple[Simulator, list[str]]:
    ids = [f"n{i:02d}" for i in range(n)]
    config = SyncConfig(interval_ms=INTERVAL, peers=tuple(ids), **cfg)
    sim = Simulator(lambda nid, rng: SyncNode(nid, rng, config, replicas=replicas()), ids,
                    seed=seed)
    return sim, ids


def sync(sim: Simulator, nid: str) -> SyncNode:
    node = sim.node(nid)
    assert isinstance(node, SyncNode)
    return node


def delta_count(sim: Simulator) -> int:
    return sum(1 for e in sim.trace if e["k"] == "send" and e["type"] == "sync.delta")


@pytest.mark.parametrize("n", [5, 10, 20])
def test_one_update_costs_linear_messages(n: int) -> None:
    """Regression (issue 14): forwarding what one received cost (n-1)^2 deltas per
    update (361 at n = 20). Own entries are pushed once to each peer; nothing is
    forwarded; pulls find equal digests."""
    sim, ids = mesh(n, seed=n)
    sim.client_request(ids[0], Mutate("s", lambda s: s.add("n00", "warm")))
    sim.run_for(6 * INTERVAL)
    before = delta_count(sim)
    sim.client_request(ids[1], Mutate("s", lambda s: s.add("n01", "x")))
    sim.run_for(6 * INTERVAL)
    sent = delta_count(sim) - before
    assert all(sync(sim, i).value("s") == frozenset({"warm", "x"}) for i in ids)
    assert sent <= 3 * n, f"{sent} deltas for one update at n={n}"
    assert sent >= n - 1


def test_pull_repairs_what_pushes_cannot_reach() -> None:
    """a -> b is cut one way and a then dies for good after its push reached c: b
    still gets a's update, pulled from c."""
    sim, _ids = mesh(3, seed=5)
    sim.run_for(3 * INTERVAL)
    sim.block("n00", "n01")
    sim.client_request("n00", Mutate("s", lambda s: s.add("n00", "only-a")))
    sim.run_for(2 * INTERVAL)
    sim.crash("n00")
    sim.run_for(20 * INTERVAL)
    assert sync(sim, "n01").value("s") == frozenset({"only-a"})
    assert sync(sim, "n01").replicas == sync(sim, "n02").replicas


@pytest.mark.parametrize("disk", [True, False])
def test_restart_with_and_without_disk_reuses_no_history(disk: bool) -> None:
    """A replica id names a history: a node restarting without its disk takes a fresh
    origin, so its new entries are neither ignored by peers that hold its old ones nor
    hidden by stale acks; with its disk it continues its origin and counter."""
    sim, ids = mesh(3, seed=9)
    for k in range(4):
        sim.client_request("n02", Mutate("g", lambda g: g.increment("n02-old")), delay_ms=k)
    sim.run_for(6 * INTERVAL)
    old = sync(sim, "n02")
    old_origin, old_counter = old.origin, old.counter
    sim.crash("n02")
    if not disk:
        sim.store["n02"].clear()
    sim.restart("n02")
    new = sync(sim, "n02")
    assert (new.origin == old_origin) is disk
    assert new.counter == (old_counter if disk else 0)
    rid = new.replica_id
    sim.client_request("n02", Mutate("g", lambda g: g.increment(rid, 10)))
    sim.run_for(10 * INTERVAL)
    for nid in ids:
        assert sync(sim, nid).value("g") == 14, nid  # the old 4 (pulled back) + the new 10
    assert all(sync(sim, nid).pending_peers() == [] for nid in ids)


def test_persisted_counter_must_be_a_non_negative_int() -> None:
    for bad in (float("inf"), -1, 1.0, "3"):
        node = SyncNode("me", random.Random(0), SyncConfig(), replicas={"s": ORSet()})
        with pytest.raises(DecodeError):
            node.step(Restart(0, {"sync/counter": encode_cbor(bad)}))
        assert not node.started


def test_cluster_heal_sends_what_each_side_lacks_not_full_state() -> None:
    """Regression (issue 14): after a heal, false deaths dropped sync partners and
    their acks, and every pair fell back to full state (379 full-state messages after
    a 20-node heal). Now the members of each side stay alive for each other, and what
    a node knows of a peer outlives a partition: only deltas cross after the heal."""
    from vsm_phoenix.protocol.cluster import ClusterNode
    from vsm_phoenix.protocol.swim import SwimConfig

    ids = [f"n{i}" for i in range(10)]
    swim_cfg, sync_cfg = SwimConfig(seeds=("n0",)), SyncConfig(interval_ms=5000)
    sim = Simulator(lambda nid, rng: ClusterNode(nid, rng, swim=swim_cfg, sync=sync_cfg,
                                                 replicas={"s": ORSet()}), ids, seed=3)
    sim.run_until(20_000)
    sim.partition(ids[:5], ids[5:])
    for k, nid in enumerate(ids):
        sim.client_request(nid, Mutate("s", lambda s, nid=nid, k=k: s.add(nid, k)),
                           delay_ms=1000 + 100 * k)
    sim.run_until(110_000)

    def full_sends() -> int:
        return sum(n.sync.full_sends for n in map(sim.node, ids) if isinstance(n, ClusterNode))

    before = full_sends()
    sim.heal()
    sim.run_until(170_000)
    nodes = [sim.node(i) for i in ids]
    assert all(isinstance(n, ClusterNode) for n in nodes)
    assert all(n.sync.value("s") == frozenset(range(10)) for n in nodes
               if isinstance(n, ClusterNode))
    assert full_sends() == before
