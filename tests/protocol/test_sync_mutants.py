"""Sync tests written against the mutants of ``mutants/catalog.py`` that survived the
other sync tests (``make mutate MUTATE_ARGS='--area sync'``): each names the bug it
catches and drives one node message by message, so the rule under test decides.
"""

from __future__ import annotations

import random

from vsm_phoenix.crdt import GCounter
from vsm_phoenix.protocol.envelope import decode_cbor, encode_cbor
from vsm_phoenix.protocol.kit import Messenger
from vsm_phoenix.protocol.node import Receive, Send, Start
from vsm_phoenix.protocol.sync import SyncConfig, SyncNode


def _delta(peer: Messenger, origin: str, lo: int, hi: int, g: GCounter) -> Receive:
    body = {"o": "peer.1", "full": False, "t": [[origin, lo, hi]], "d": {"g": g.to_bytes()}}
    return Receive(10, peer.envelope(10, "sync.delta", encode_cbor(body), recipient="me"))


def _acked(effects: list[object], origin: str) -> int:
    acks = [decode_cbor(e.envelope.payload) for e in effects
            if isinstance(e, Send) and e.envelope.type == "sync.ack"]
    assert len(acks) == 1
    return int(acks[0]["v"].get(origin, 0))


def test_a_delta_past_a_gap_is_joined_but_claimed_only_once_the_gap_fills() -> None:
    """Entries 3..3 of origin ``x.1`` arrive before 1..2 (forwarded by a third node,
    say). Claiming ``x.1: 3`` at once would tell every peer this node holds 1..2 as
    well: nobody would ever send them, and the replicas would never converge."""
    node = SyncNode("me", random.Random(1), SyncConfig(peers=("peer",)),
                    replicas={"g": GCounter()})
    node.step(Start(0))
    peer = Messenger("peer", random.Random(2))
    third = GCounter()
    third.increment("x", 3)
    out = node.step(_delta(peer, "x.1", 3, 3, third))
    assert node.replicas["g"].value == 3  # joined: a join is always safe
    assert node.have.get("x.1", 0) == 0 and _acked(out, "x.1") == 0  # not claimed
    first_two = GCounter()
    first_two.increment("y", 2)
    out = node.step(_delta(peer, "x.1", 1, 2, first_two))
    assert node.have["x.1"] == 3 and _acked(out, "x.1") == 3  # the gap filled
    assert node.replicas["g"].value == 5
