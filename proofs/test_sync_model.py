"""Delta anti-entropy (``protocol/sync.py``) model-checked over every interleaving.

Two :class:`SyncNode` s host one ORSet ``"s"``; ``a`` adds ``"x"`` and ``b`` adds
``"y"`` (client requests, at any point). The checker explores every order of the
shipping timers (three firings), deliveries, one lost and one duplicated message, up
to 11 actions (three nodes take minutes), and checks in every
state:

* **acknowledged means delivered** — when every node has had everything it holds
  acknowledged by every peer (``pending_peers()`` empty everywhere), all replicas are
  equal. This is the safety half of convergence: the ack bookkeeping never claims a
  peer has what it has not joined.
* **no invention** — every element a replica holds was added by a submitted request.

``SyncNode`` has no ``state_key``; the node key below covers every field its
decisions read (replicas, origin, counter, vector, gaps, buffer, what it knows of
peers and when it heard them, peers, log bookkeeping).
"""

from __future__ import annotations

import random
from typing import Any

from vsm_phoenix.crdt import ORSet
from vsm_phoenix.protocol.node import Node
from vsm_phoenix.protocol.sync import Mutate, SyncConfig, SyncNode
from vsm_phoenix.verify.model_checker import ClusterView, Request, check_model

IDS = ("a", "b")


def sync_key(node: Node) -> Any:
    assert isinstance(node, SyncNode)
    return (
        tuple(sorted((n, r.to_bytes()) for n, r in node.replicas.items())),
        node.origin,
        node.counter,
        tuple(sorted(node.have.items())),
        tuple(sorted((o, tuple(g)) for o, g in node._gaps.items())),
        tuple(sorted(
            (seq, tuple(sorted(tags.items())),
             tuple(sorted((n, d.to_bytes()) for n, d in deltas.items())))
            for seq, (tags, deltas) in node.buffer.items()
        )),
        tuple(sorted((p, o, tuple(sorted(v.items()))) for p, (o, v) in node.known.items())),
        tuple(sorted(node._heard.items())),
        tuple(node.peers),
        node.started,
        len(node._log_keys),
    )


def factory(nid: str, rng: random.Random) -> SyncNode:
    return SyncNode(nid, rng, SyncConfig(peers=IDS), replicas={"s": ORSet()})


def acked_means_equal(view: ClusterView) -> str | None:
    nodes = [n for n in view.values() if isinstance(n, SyncNode)]
    if any(n.pending_peers() for n in nodes):
        return None
    values = {n.node_id: sorted(map(str, n.value("s"))) for n in nodes}
    if len({tuple(v) for v in values.values()}) > 1:
        return f"every delta acknowledged but replicas differ: {values}"
    return None


class NoInvention:
    """Replicas only hold submitted elements; also records what the explored space
    reached: both elements everywhere, and states where everything non-empty was
    acknowledged (where ``acked-means-equal`` has something to check)."""

    def __init__(self) -> None:
        self.converged_with_both = False
        self.all_acked_non_empty = False

    def __call__(self, view: ClusterView) -> str | None:
        nodes = [n for n in view.values() if isinstance(n, SyncNode)]
        held = set().union(*(n.value("s") for n in nodes))
        if not held <= {"x", "y"}:
            return f"replicas hold elements nobody added: {sorted(map(str, held))}"
        if all(n.value("s") == {"x", "y"} for n in nodes):
            self.converged_with_both = True
        if held and not any(n.pending_peers() for n in nodes):
            self.all_acked_non_empty = True
        return None


def add_x(s: ORSet) -> ORSet:
    return s.add("a", "x")


def add_y(s: ORSet) -> ORSet:
    return s.add("b", "y")


def test_sync_acknowledged_replicas_are_equal_under_loss_and_duplication() -> None:
    seen = NoInvention()
    res = check_model(
        factory,
        IDS,
        invariants={"acked-means-equal": acked_means_equal, "no-invention": seen},
        requests=[
            Request(Mutate("s", add_x), "add-x", targets=["a"]),
            Request(Mutate("s", add_y), "add-y", targets=["b"]),
        ],
        node_key=sync_key,
        max_timer_fires=3,
        max_drops=1,
        max_duplicates=1,
        max_depth=11,
    )
    assert res.ok, str(res)
    assert res.states > 1_000
    assert seen.converged_with_both and seen.all_acked_non_empty
