"""SWIM tests written against the mutants of ``mutants/catalog.py`` that survived the
cluster tests (``make mutate MUTATE_ARGS='--area swim'``). Each drives one node with
hand-made messages from its peers, so the precedence or timing rule under test is the
one that decides; each names the bug it catches.
"""

from __future__ import annotations

import math
import random
from typing import Any

from vsm_phoenix.crdt import ORSet
from vsm_phoenix.protocol.envelope import decode_cbor, encode_cbor
from vsm_phoenix.protocol.kit import Messenger
from vsm_phoenix.protocol.node import (
    ClientRequest,
    Persist,
    Receive,
    Restart,
    Send,
    SetTimer,
    Start,
    TimerFired,
)
from vsm_phoenix.protocol.swim import (
    T_PERIOD,
    T_SUSPECT,
    Status,
    SwimConfig,
    SwimNode,
    UpdateMetadata,
)

CFG = SwimConfig(seeds=("n0",))


def alive(nid: str, inc: int, load: float = 0.0) -> list[Any]:
    return ["alive", nid, inc, [ORSet().to_bytes(), load]]


class Peers:
    """Hand-made messages to node ``n0`` from any peer, with fresh ids and a clock."""

    def __init__(self) -> None:
        self._messengers: dict[str, Messenger] = {}

    def send(self, node: SwimNode, now: int, sender: str, mtype: str,
             body: dict[str, Any]) -> list[Any]:
        m = self._messengers.setdefault(sender, Messenger(sender, random.Random(sender)))
        return node.step(Receive(now, m.envelope(now, mtype, body, recipient=node.node_id)))

    def gossip(self, node: SwimNode, now: int, *updates: list[Any],
               sender: str = "n9") -> list[Any]:
        return self.send(node, now, sender, "swim.gossip", {"g": list(updates)})


def started(config: SwimConfig = CFG, members: tuple[str, ...] = ("n1", "n2")) -> tuple[
        SwimNode, Peers]:
    node = SwimNode("n0", random.Random(0), config)
    node.step(Start(0))
    peers = Peers()
    peers.send(node, 1, members[0], "swim.join", {"members": [alive(m, 0) for m in members]})
    return node, peers


def status(node: SwimNode, nid: str) -> tuple[Status, int]:
    info = node.member(nid)
    assert info is not None
    return info.status, info.incarnation


def suspicion_timers(effects: list[Any], nid: str) -> list[int]:
    return [e.delay_ms for e in effects
            if isinstance(e, SetTimer) and e.name == T_SUSPECT + nid]


def sent(effects: list[Any], mtype: str | None = None) -> list[Any]:
    return [e.envelope for e in effects
            if isinstance(e, Send) and (mtype is None or e.envelope.type == mtype)]


# -- precedence of updates --------------------------------------------------------------------
def test_an_alive_of_the_same_incarnation_does_not_clear_a_suspicion() -> None:
    """alive(i) loses to suspect(i): only the member itself, by raising its incarnation,
    can refute. An old alive(i) still circulating must not cancel the suspicion."""
    node, peers = started()
    peers.gossip(node, 10, ["suspect", "n1", 0, "n2"])
    assert status(node, "n1") == (Status.SUSPECT, 0)
    peers.gossip(node, 11, alive("n1", 0))
    assert status(node, "n1") == (Status.SUSPECT, 0)
    peers.gossip(node, 12, alive("n1", 1))
    assert status(node, "n1") == (Status.ALIVE, 1)


def test_a_suspicion_at_the_members_incarnation_is_taken() -> None:
    node, peers = started()
    effects = peers.gossip(node, 10, ["suspect", "n1", 0, "n2"])
    assert status(node, "n1") == (Status.SUSPECT, 0) and suspicion_timers(effects, "n1")


def test_dead_at_the_suspected_incarnation_is_taken() -> None:
    node, peers = started()
    peers.gossip(node, 10, ["suspect", "n1", 0, "n2"])
    peers.gossip(node, 11, ["dead", "n1", 0, "n2"])
    assert status(node, "n1") == (Status.DEAD, 0)
    assert "n1" not in node.alive_members()


def test_rumours_of_an_incarnation_the_member_refuted_change_nothing() -> None:
    """n1 refuted a suspicion by raising its incarnation to 1. Suspect and dead rumours
    about incarnation 0 still circulate: they speak of a life n1 has left behind and
    must neither re-suspect nor kill it (only news of incarnation >= 1 may)."""
    node, peers = started()
    peers.gossip(node, 10, ["suspect", "n1", 0, "n2"])
    peers.gossip(node, 11, alive("n1", 1))
    assert status(node, "n1") == (Status.ALIVE, 1)
    effects = peers.gossip(node, 12, ["suspect", "n1", 0, "n2"])
    assert status(node, "n1") == (Status.ALIVE, 1) and not suspicion_timers(effects, "n1")
    peers.gossip(node, 13, ["dead", "n1", 0, "n2"])
    assert status(node, "n1") == (Status.ALIVE, 1) and "n1" in node.alive_members()
    peers.gossip(node, 14, ["suspect", "n1", 1, "n2"])
    assert status(node, "n1") == (Status.SUSPECT, 1)
    peers.gossip(node, 15, ["dead", "n1", 0, "n2"])  # still older than the suspicion
    assert status(node, "n1") == (Status.SUSPECT, 1)


def test_an_alive_rumour_one_above_our_incarnation_is_outbid() -> None:
    """Someone spreads alive(n0, 1) while n0 is at 0 (a stale rumour of an earlier life,
    say): n0 must move *above* it, to 2, or its own alive(0) would lose everywhere."""
    node, peers = started()
    effects = peers.gossip(node, 10, alive("n0", 1))
    assert node.incarnation == 2
    assert Persist("swim/incarnation", encode_cbor(2)) in effects


# -- Lifeguard suspicion ----------------------------------------------------------------------
def test_a_repeated_suspicion_from_the_same_member_is_no_confirmation() -> None:
    node, peers = started(members=("n1", "n2", "n3"))
    first = suspicion_timers(peers.gossip(node, 10, ["suspect", "n1", 0, "n2"]), "n1")
    assert first == [CFG.suspicion_timeout_ms(4, 0)]
    again = peers.gossip(node, 20, ["suspect", "n1", 0, "n2"], sender="n3")
    assert suspicion_timers(again, "n1") == []  # same suspecter: the timer stands
    other = peers.gossip(node, 30, ["suspect", "n1", 0, "n3"], sender="n3")
    expected = CFG.suspicion_timeout_ms(4, 1) - 20  # from the start of the suspicion
    assert suspicion_timers(other, "n1") == [expected]


def test_the_suspicion_timeout_never_drops_below_its_minimum() -> None:
    for n in (2, 5, 40):
        lo = CFG.suspicion_min_ms(n)
        timeouts = [CFG.suspicion_timeout_ms(n, c) for c in range(12)]
        assert timeouts == sorted(timeouts, reverse=True)
        assert min(timeouts) >= lo and timeouts[-1] == math.ceil(lo)
        assert timeouts[0] == math.ceil(CFG.suspicion_beta * lo)


# -- probes -------------------------------------------------------------------------------------
def test_a_late_ack_of_an_earlier_probe_does_not_save_the_current_target() -> None:
    """Period 1 probes X (seq 1): no answer, X becomes suspect; period 2 probes Y
    (seq 2). X's late ack of seq 1 arrives. It says nothing about Y: if Y does not
    answer either, period 3 must suspect Y."""
    cfg = SwimConfig(seeds=("n0",), indirect_probes=0)
    node, peers = started(cfg)
    (ping1,) = sent(node.step(TimerFired(1000, T_PERIOD)), "swim.ping")
    x = ping1.recipient
    (ping2,) = sent(node.step(TimerFired(2000, T_PERIOD)), "swim.ping")
    y = ping2.recipient
    assert {x, y} == {"n1", "n2"} and status(node, x)[0] is Status.SUSPECT
    seq1 = decode_cbor(ping1.payload)["seq"]
    assert seq1 != decode_cbor(ping2.payload)["seq"]
    peers.send(node, 2100, x, "swim.ack", {"seq": seq1, "g": []})
    node.step(TimerFired(3000, T_PERIOD))
    assert status(node, y)[0] is Status.SUSPECT


def test_a_suspected_member_hears_of_it_in_every_message_to_it() -> None:
    """Even when the suspicion has dropped out of the gossip queue (here: newer updates
    fill the one piggyback slot), a message to the suspect carries the suspicion, so
    it can refute at once."""
    cfg = SwimConfig(seeds=("n0",), max_piggyback=1)
    node, peers = started(cfg)
    peers.gossip(node, 10, ["suspect", "n1", 0, "n2"])
    peers.gossip(node, 11, alive("a1", 0))  # ranks before n1's suspicion in the queue
    effects = peers.send(node, 12, "n1", "swim.ping", {"seq": 7, "g": []})
    (ack,) = sent(effects, "swim.ack")
    assert ack.recipient == "n1"
    assert ["suspect", "n1", 0, "n2"] in decode_cbor(ack.payload)["g"]


# -- incarnations of our own ---------------------------------------------------------------------
def test_a_restart_comes_back_above_the_persisted_incarnation() -> None:
    node = SwimNode("n0", random.Random(0), CFG)
    effects = node.step(Restart(0, {"swim/incarnation": encode_cbor(2),
                                    "swim/members": encode_cbor(["n1"])}))
    assert node.incarnation == 3
    assert Persist("swim/incarnation", encode_cbor(3)) in effects
    (join,) = sent(effects, "swim.join")
    assert alive("n0", 3)[:3] in [u[:3] for u in decode_cbor(join.payload)["members"]]


def test_a_metadata_change_takes_a_new_incarnation_that_peers_adopt() -> None:
    node, _ = started()
    effects = node.step(ClientRequest(5, "m", UpdateMetadata(load=0.75)))
    assert node.incarnation == 1
    assert Persist("swim/incarnation", encode_cbor(1)) in effects
    # a peer that knew n0 at incarnation 0 takes the new load from the gossip
    peer, peers = SwimNode("n1", random.Random(1), CFG), Peers()
    peer.step(Start(0))
    peers.send(peer, 1, "n0", "swim.join", {"members": [alive("n0", 0, 0.25)]})
    (ping,) = sent(node.step(TimerFired(1000, T_PERIOD)), "swim.ping")
    gossip = [u for u in decode_cbor(ping.payload)["g"] if u[1] == "n0"]
    peers.gossip(peer, 10, *gossip)
    info = peer.member("n0")
    assert info is not None and (info.incarnation, info.load) == (1, 0.75)


# -- dissemination ------------------------------------------------------------------------------
def test_each_update_is_piggybacked_exactly_retransmit_limit_times() -> None:
    """Infection-style dissemination: an update rides on ``lambda * ceil(log10(n + 1))``
    messages and then leaves the queue; without the limit every message would carry
    every update ever heard."""
    node, peers = started()
    peers.gossip(node, 10, alive("a1", 0))
    limit = CFG.retransmit_limit(node.group_size())
    carried = 0
    for i in range(3 * limit):
        (ack,) = sent(peers.send(node, 20 + i, "n1", "swim.ping", {"seq": i, "g": []}),
                      "swim.ack")
        carried += any(u[1] == "a1" for u in decode_cbor(ack.payload)["g"])
    assert carried == limit
