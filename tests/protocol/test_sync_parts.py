"""Sync states larger than one envelope: split into ``sync.part`` messages, reassembled
within bounds, and refused without a trace when hostile.

The bug this pins down: a replica whose state encoded over the envelope's 16 MiB
limit was sent whole on every interval and refused by every receiver, so replicas
never converged (a 170k-element ``GSet`` of 100-byte strings: 60 refusals, 0
elements synced).
"""

from __future__ import annotations

import hashlib
import random
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vsm_phoenix.crdt import GCounter, GSet, ORSet
from vsm_phoenix.errors import DecodeError
from vsm_phoenix.protocol.envelope import DEFAULT_MAX_PAYLOAD, encode_cbor
from vsm_phoenix.protocol.kit import Messenger
from vsm_phoenix.protocol.node import (
    ClientRequest,
    Deliver,
    LocalProtocolError,
    Receive,
    RemoteProtocolError,
    Send,
    Start,
    TimerFired,
)
from vsm_phoenix.protocol.parts import MAX_ASSEMBLIES, MAX_PART_BYTES, Reassembler, split
from vsm_phoenix.protocol.sim import NetworkConfig, Simulator
from vsm_phoenix.protocol.sync import M_PART, T_SHIP, Mutate, SyncConfig, SyncNode

INTERVAL = 100


# -- the splitter and the reassembler --------------------------------------------------
def _reassembler(**kw: int) -> Reassembler:
    opts = {"max_message_bytes": 10_000, "max_assembly_bytes": 20_000, "stale_ms": 300}
    opts.update(kw)
    return Reassembler(**opts)


def _feed(r: Reassembler, sender: str, body: dict[str, Any], now: int = 0) -> bytes | None:
    part = r.parse(sender, body, now)
    whole = r.assembled(sender, part)
    if whole is None:
        r.store(sender, part, now)
    else:
        r.finish(sender)
    return whole


@settings(max_examples=60, deadline=None)
@given(payload=st.binary(min_size=2, max_size=3_000), part_bytes=st.integers(1, 700),
       seed=st.integers(0, 2**32))
def test_parts_in_any_order_with_repeats_give_back_the_payload(
        payload: bytes, part_bytes: int, seed: int) -> None:
    if len(payload) <= part_bytes:
        with pytest.raises(ValueError, match="fits in one part"):
            split(payload, part_bytes)
        return
    bodies = split(payload, part_bytes)
    assert all(len(b["b"]) <= part_bytes for b in bodies)
    assert b"".join(b["b"] for b in bodies) == payload
    rng = random.Random(seed)
    order = bodies + rng.sample(bodies, k=min(len(bodies), 5))  # some twice
    rng.shuffle(order)
    r = _reassembler()
    got = [w for w in (_feed(r, "a", b) for b in order) if w is not None]
    assert got[0] == payload and len(r) <= 1


def test_a_corrupt_part_is_refused_on_arrival_and_the_clean_one_completes() -> None:
    """A part is checked by its proof before it is kept: a corrupted one can never sit
    in a transfer and spoil it (the old whole-payload digest could only discard the
    whole transfer when it completed)."""
    payload = bytes(range(256)) * 8
    bodies = split(payload, 500)
    r = _reassembler()
    assert _feed(r, "a", bodies[0]) is None
    before = r.snapshot()
    bad = dict(bodies[1], b=b"\x00" * len(bodies[1]["b"]))
    with pytest.raises(RemoteProtocolError, match="proof"):
        _feed(r, "a", bad)
    assert r.snapshot() == before
    assert [w for w in (_feed(r, "a", b) for b in bodies[1:]) if w] == [payload]


@settings(max_examples=60, deadline=None)
@given(payload=st.binary(min_size=2, max_size=3_000), part_bytes=st.integers(1, 400),
       data=st.data())
def test_a_part_passes_only_with_the_true_piece_at_its_place(
        payload: bytes, part_bytes: int, data: st.DataObject) -> None:
    """Every proof in a split verifies; a part whose bytes, proof or root changed is
    refused, and one whose index or count changed passes only when it still holds the
    true piece at that index: the proof binds a piece to its place."""
    if len(payload) <= part_bytes:
        return
    bodies = split(payload, part_bytes)
    for body in bodies:
        _reassembler().parse("a", body, 0)
    body = data.draw(st.sampled_from(bodies))
    field = data.draw(st.sampled_from("bmhin"))
    forged = dict(body)
    if field == "b":
        pos = data.draw(st.integers(0, len(body["b"]) - 1))
        forged["b"] = body["b"][:pos] + bytes([body["b"][pos] ^ 1]) + body["b"][pos + 1:]
    elif field == "m":
        if not body["m"]:
            return
        k = data.draw(st.integers(0, len(body["m"]) - 1))
        forged["m"] = [*body["m"][:k], hashlib.sha256(body["m"][k]).digest(),
                       *body["m"][k + 1:]]
    elif field == "h":
        forged["h"] = hashlib.sha256(body["h"]).digest()
    elif field == "i":
        forged["i"] = data.draw(st.integers(0, body["n"] - 1).filter(lambda i: i != body["i"]))
    else:
        forged["n"] = data.draw(st.integers(2, min(len(payload), 2 * body["n"] + 2))
                                .filter(lambda n: n != body["n"] and n > body["i"]))
    try:
        part = _reassembler().parse("a", forged, 0)
    except RemoteProtocolError:
        return
    # equal pieces (a payload of zeros) may trade places, and the left edge of a tree
    # does not tell some counts apart: what passes still holds the true piece there
    assert field in "in" and part.data == bodies[part.index]["b"]


def _y(which: int, **changes: Any) -> dict[str, Any]:
    """Part ``which`` of a 9-byte transfer in two parts, with ``changes``."""
    return {**split(b"abcdefghi", 5)[which], **changes}


HOSTILE_PARTS: list[Any] = [
    [1, 2],
    {"h": b"x" * 32, "i": 0, "n": 2, "z": 4, "b": b"ab"},  # the proof missing
    {"h": b"x" * 31, "i": 0, "n": 2, "z": 4, "b": b"ab", "m": []},
    {"h": "x" * 32, "i": 0, "n": 2, "z": 4, "b": b"ab", "m": []},
    {"h": b"x" * 32, "i": 2, "n": 2, "z": 4, "b": b"ab", "m": []},  # index out of range
    {"h": b"x" * 32, "i": -1, "n": 2, "z": 4, "b": b"ab", "m": []},
    {"h": b"x" * 32, "i": 0, "n": 1, "z": 4, "b": b"ab", "m": []},  # one part is no transfer
    {"h": b"x" * 32, "i": 0, "n": 5, "z": 4, "b": b"a", "m": []},  # more parts than bytes
    {"h": b"x" * 32, "i": 0, "n": 2, "z": 10_001, "b": b"ab", "m": []},  # over max_message
    {"h": b"x" * 32, "i": 0, "n": 2, "z": 4, "b": b"", "m": []},
    {"h": b"x" * 32, "i": 0, "n": 2, "z": 4, "b": b"abcde", "m": []},  # longer than whole
    {"h": b"x" * 32, "i": True, "n": 2, "z": 4, "b": b"ab", "m": []},
    {"h": b"x" * 32, "i": 0, "n": 2, "z": 2**70, "b": b"ab", "m": []},
    {"h": b"x" * 32, "i": 0, "n": 2, "z": 4, "b": b"ab", "m": [b"x" * 32]},  # no proof
    _y(1, b=b"fghI"),  # a tampered piece
    _y(1, m=[b"\x00" * 32]),  # a wrong sibling
    _y(1, m=_y(1)["m"] * 2),  # a proof too long for its tree
    _y(1, m="x"), _y(1, m=[b"x" * 31]), _y(1, m=[b"x" * 32] * 40),
    _y(1, z=10),  # disagrees with its transfer's size
    _y(1, i=0),  # the other piece's place
]


def test_parts_that_do_not_add_up_to_their_size_are_refused() -> None:
    r = _reassembler()
    _feed(r, "a", _y(0, z=10))  # the root does not bind z: the sum is checked
    before = r.snapshot()
    with pytest.raises(RemoteProtocolError, match="add up"):
        _feed(r, "a", _y(1, z=10))
    assert r.snapshot() == before


@pytest.mark.parametrize("body", HOSTILE_PARTS)
def test_hostile_parts_are_refused_and_change_nothing(body: Any) -> None:
    r = _reassembler()
    _feed(r, "a", _y(0))
    before = r.snapshot()
    with pytest.raises(RemoteProtocolError):
        _feed(r, "a", body)
    assert r.snapshot() == before


def _first(size: int, fill: int = 0) -> dict[str, Any]:
    """The first part of a two-part transfer of ``size`` bytes."""
    return split(bytes([fill]) * size, -(-size // 2))[0]


def test_transfers_in_progress_are_bounded_by_bytes_count_and_idleness() -> None:
    r = _reassembler(max_message_bytes=10_000, max_assembly_bytes=20_000, stale_ms=300)
    _feed(r, "a", _first(10_000, 1), now=0)
    _feed(r, "b", _first(10_000, 2), now=100)
    with pytest.raises(RemoteProtocolError, match="no room"):
        _feed(r, "c", _first(2, 3), now=200)
    # a's transfer has been idle for stale_ms: it makes room
    _feed(r, "c", _first(2, 3), now=300)
    assert len(r) == 2 and r.held_bytes() == 5_001
    many = Reassembler(max_message_bytes=10, max_assembly_bytes=10**6, stale_ms=10**6)
    for k in range(MAX_ASSEMBLIES):
        _feed(many, f"s{k}", _first(2, k))
    with pytest.raises(RemoteProtocolError, match="no room"):
        _feed(many, "late", _first(2, 200))
    # a sender's new transfer replaces its own, so it always has room for that
    _feed(many, "s0", _first(2, 201))
    assert len(many) == MAX_ASSEMBLIES


def test_split_refuses_bad_arguments() -> None:
    with pytest.raises(ValueError):
        split(b"abc", 0)
    with pytest.raises(ValueError):
        split(b"abc", MAX_PART_BYTES + 1)
    with pytest.raises(ValueError):
        split(b"ab", 2)
    assert MAX_PART_BYTES < DEFAULT_MAX_PAYLOAD


# -- sync over parts -------------------------------------------------------------------
def _node(sim: Simulator, nid: str) -> SyncNode:
    node = sim.node(nid)
    assert isinstance(node, SyncNode)
    return node


@settings(max_examples=8, deadline=None)
@given(seed=st.integers(0, 10**6), part_bytes=st.integers(24, 200),
       drop=st.sampled_from([0.0, 0.2]), dup=st.sampled_from([0.0, 0.2]),
       reorder=st.sampled_from([0.0, 0.3]))
def test_replicas_converge_when_every_delta_travels_in_parts(
        seed: int, part_bytes: int, drop: float, dup: float, reorder: float) -> None:
    ids = ["a", "b", "c"]
    cfg = SyncConfig(interval_ms=INTERVAL, peers=tuple(ids), part_bytes=part_bytes,
                     max_message_bytes=1 << 20, max_buffer=4)
    net = NetworkConfig(drop_rate=drop, duplicate_rate=dup, reorder_rate=reorder,
                        max_latency_ms=20)
    sim = Simulator(lambda nid, rng: SyncNode(nid, rng, cfg,
                                              replicas={"s": ORSet(), "g": GCounter()}),
                    ids, seed=seed, network=net)
    r = random.Random(seed)
    added: set[str] = set()
    for k in range(r.randint(3, 12)):
        n, element = r.choice(ids), f"e{k}-" + "x" * r.randint(200, 400)
        added.add(element)
        sim.client_request(n, Mutate("s", lambda s, n=n, e=element: s.add(n, e)),
                           delay_ms=r.randint(0, 800))
        sim.client_request(n, Mutate("g", lambda g, n=n: g.increment(n)),
                           delay_ms=r.randint(0, 800))
    sim.run_for(1_000)
    sim.set_network(drop_rate=0.0, duplicate_rate=0.0, reorder_rate=0.0)
    sim.run_for(40 * INTERVAL)
    states = [_node(sim, n).replicas for n in ids]
    assert all(s == states[0] for s in states)
    assert states[0]["s"].value == frozenset(added)
    assert sum(_node(sim, n).part_sends for n in ids) > 0


def test_a_state_over_the_envelope_limit_converges() -> None:
    """The regression at full size: 17 MB of GSet, over the 16 MiB envelope limit."""
    cfg = SyncConfig(interval_ms=INTERVAL, peers=("a", "b"))
    sim = Simulator(lambda nid, rng: SyncNode(nid, rng, cfg, replicas={"s": GSet()}),
                    ["a", "b"], seed=1)
    big = GSet(f"{i:0100d}" for i in range(170_000))

    def fill(s: GSet) -> GSet:
        s |= big
        return big

    sim.client_request("a", Mutate("s", fill))
    sim.run_for(20 * INTERVAL)
    assert not [ev for ev in sim.trace if ev.get("k") == "reject"]
    assert _node(sim, "b").replicas["s"] == big
    assert _node(sim, "a").part_sends > 0 and _node(sim, "a").pending_peers() == []


def test_a_state_over_max_message_bytes_is_reported_not_sent() -> None:
    cfg = SyncConfig(interval_ms=INTERVAL, peers=("me", "peer"), part_bytes=100,
                     max_message_bytes=1_000)
    node = SyncNode("me", random.Random(1), cfg, replicas={"s": GSet()})
    node.step(Start(0))
    node.step(ClientRequest(1, "r", Mutate("s", lambda s: s.add("x" * 2_000))))
    out = node.step(TimerFired(INTERVAL * 2, T_SHIP))
    assert not [e for e in out if isinstance(e, Send) and e.envelope.type != "sync.digest"]
    reports = [e for e in out if isinstance(e, Deliver) and e.kind == "sync.oversized"]
    assert reports and reports[0].payload["peer"] == "peer" and node.oversized == 1


def _receiver() -> tuple[SyncNode, Messenger]:
    node = SyncNode("me", random.Random(1),
                    SyncConfig(peers=("peer",), part_bytes=64, max_message_bytes=4_096),
                    replicas={"s": ORSet(), "g": GCounter()})
    node.step(Start(0))
    node.step(ClientRequest(1, "r1", Mutate("s", lambda s: s.add("me", "x"))))
    return node, Messenger("peer", random.Random(2))


def _picture(node: SyncNode) -> tuple[Any, ...]:
    return ({n: r.to_bytes() for n, r in node.replicas.items()}, dict(node.have),
            node.parts.snapshot(), node.msg.clock.last)


def _part_env(peer: Messenger, body: Any) -> Any:
    return peer.envelope(10, M_PART, body if isinstance(body, bytes) else encode_cbor(body),
                         recipient="me")


@settings(max_examples=80, deadline=None)
@given(st.one_of(st.binary(max_size=120),
                 st.fixed_dictionaries({"h": st.binary(min_size=32, max_size=32),
                                        "i": st.integers(-2, 5), "n": st.integers(0, 6),
                                        "z": st.integers(0, 5_000),
                                        "b": st.binary(max_size=80),
                                        "m": st.lists(st.binary(min_size=32, max_size=32),
                                                      max_size=3)}),
                 st.builds(lambda p, k, i: split(p, k)[i % 2], st.binary(min_size=3),
                           st.integers(1, 2), st.integers(0, 1))))
def test_hostile_part_messages_leave_the_node_unchanged(body: Any) -> None:
    node, peer = _receiver()
    before = _picture(node)
    try:
        node.step(Receive(10, _part_env(peer, body)))
    except DecodeError:
        assert _picture(node) == before
    else:  # a well-formed first part is kept; replicas and vectors never change
        assert _picture(node)[:2] == before[:2]


def test_parts_whose_whole_is_not_a_delta_are_refused_and_join_nothing() -> None:
    node, peer = _receiver()
    junk = encode_cbor({"o": "peer.1", "full": False, "t": [["peer.1", 1, 1]],
                        "d": {"s": b"\x80" * 150}})
    bodies = split(junk, 64)
    for body in bodies[:-1]:
        node.step(Receive(10, _part_env(peer, body)))
    before = _picture(node)
    with pytest.raises(DecodeError):
        node.step(Receive(10, _part_env(peer, bodies[-1])))
    assert _picture(node) == before


@pytest.mark.parametrize("kw", [{"part_bytes": 0}, {"part_bytes": MAX_PART_BYTES + 1},
                                {"max_message_bytes": 1}, {"max_message_bytes": 1 << 40},
                                {"max_assembly_bytes": 10},
                                {"part_bytes": 1, "max_message_bytes": 10**6},
                                {"part_bytes": 1.5}])
def test_size_settings_are_checked(kw: dict[str, Any]) -> None:
    with pytest.raises(LocalProtocolError):
        SyncConfig(**kw)
