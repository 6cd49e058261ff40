"""The adapter's batch path without a broker: the envelopes of one publish are sealed as
one frame, checked once, and stepped in order; what the batch shares is not paid per
envelope, and nothing about authentication, identity or replay got weaker.

Bodies are made by a sending :class:`Endpoint` and handed to a receiving
:class:`AmqpNode`'s ``_handle`` (what its consumer does with each delivery, inside the
group transaction), so every check runs as in production, minus the broker.
"""

from __future__ import annotations

import random
import time
from pathlib import Path
from typing import Any

import pytest
from ext_echo import EchoNode
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from vsm_phoenix.crypto import SecureChannel
from vsm_phoenix.crypto.batch import open_batch, seal_batch
from vsm_phoenix.crypto.credentials import ClusterSecrets
from vsm_phoenix.crypto.identity import Identity
from vsm_phoenix.ext.amqp import AmqpConfig, AmqpNode
from vsm_phoenix.ext.amqp import endpoint as endpoint_module
from vsm_phoenix.ext.amqp import node as node_module
from vsm_phoenix.ext.amqp.endpoint import ENVELOPES, Endpoint, SealedBody
from vsm_phoenix.protocol.envelope import Envelope
from vsm_phoenix.protocol.envelope_batch import decode_envelopes, encode_envelopes
from vsm_phoenix.protocol.kit import Messenger
from vsm_phoenix.protocol.node import Start
from vsm_phoenix.storage import MemoryStorage, SQLiteStorage

SECRETS = ClusterSecrets.create("batch-seal", nodes=["a", "b", "c"],
                                clients={"ops": ["admin"]})
KEY = "to.b.echo%2Eping"


class Delivery:
    """What ``AmqpNode._handle`` reads of an AMQP delivery."""

    def __init__(self, body: bytes, routing_key: str = KEY) -> None:
        self.body = body
        self.routing_key = routing_key


def sender(principal: str = "a", **config: Any) -> Endpoint:
    return Endpoint(SECRETS.credentials(principal), storage=MemoryStorage(),
                    config=AmqpConfig(**config), clock=time.time,
                    session=None if principal != "ops" else "s1")


def receiver(node_id: str = "b") -> AmqpNode:
    node = AmqpNode(EchoNode(node_id, random.Random(0)), credentials=SECRETS.credentials(node_id),
                    storage=MemoryStorage())
    node.node.step(Start(0))
    return node


def pings(n: int, frm: str = "a", to: str = "b", kind: str = "echo.ping") -> list[Envelope]:
    msg = Messenger(frm, random.Random(n))
    now = int(time.time() * 1000)
    return [msg.envelope(now, kind, b"p%d" % i, recipient=to) for i in range(n)]


def body_of(ep: Endpoint, items: list[Any]) -> bytes:
    sealed = ep.seal_body(items)
    assert isinstance(sealed, SealedBody) and sealed.body is not None
    return sealed.body


def handle(node: AmqpNode, body: bytes, routing_key: str = KEY) -> Any:
    with node._ep.txn():
        return node._handle(Delivery(body, routing_key))  # type: ignore[arg-type]


def counts(node: AmqpNode) -> dict[str, int]:
    assert isinstance(node.node, EchoNode)
    return dict(node.node.counts)


def test_a_publish_of_envelopes_is_one_sealed_frame_and_one_sequence_number() -> None:
    a, b = sender(), receiver()
    envs = pings(300)
    body = body_of(a, envs)
    batch = open_batch(body, SECRETS.roster)
    assert batch.signer == "a" and len(batch.frames) == 1  # one frame for 300 envelopes
    header, payload = b._ep.channel.open(batch.frames[0], sender="a")
    assert header["content_type"] == ENVELOPES and header["recipient"] == "b"
    assert decode_envelopes(payload, sender="a", recipient="b") == envs
    assert b._ep.channel.replay_guard.highest("a") == header["sequence"]
    second = SecureChannel(SECRETS.keyset, MemoryStorage(), identity="b")
    first_seq = second.open(open_batch(body_of(a, pings(5)), SECRETS.roster).frames[0],
                            sender="a")[0]["sequence"]
    assert first_seq == header["sequence"] + 1  # the next publish: the next number
    assert a.stats["frames_sent"] == 305


def test_the_receiver_steps_every_envelope_once() -> None:
    a, b = sender(), receiver()
    body = body_of(a, pings(50))
    res = handle(b, body)
    assert res.dead is None and counts(b)["pings"] == 50
    assert len([e for e in res.effects if type(e).__name__ == "Send"]) == 50  # the pongs
    assert b.stats["frames_received"] == 50
    # a redelivery is one duplicate, dropped: nothing is stepped twice
    again = handle(b, body)
    assert again.dead is None and counts(b)["pings"] == 50
    assert b.stats["duplicates"] == 1


def test_a_tampered_batch_changes_nothing() -> None:
    a, b = sender(), receiver()
    body = bytearray(body_of(a, pings(20)))
    body[-80] ^= 0x04  # inside the signed payload (the sealed frame)
    before = (counts(b), b.storage.get("channel/1:b/6:replay"))
    res = handle(b, bytes(body))
    assert res.dead is not None and res.dead[0] == "authentication"
    assert (counts(b), b.storage.get("channel/1:b/6:replay")) == before
    assert b._ep.channel.replay_guard.highest("a") == -1


def test_a_member_cannot_send_a_batch_in_another_members_name() -> None:
    """c holds the cluster keyset and seals an ENVELOPES frame as "a", then signs the
    body as itself: refused before anything is recorded, and a's real batches pass."""
    b = receiver()
    as_a = SecureChannel(SECRETS.keyset, MemoryStorage(), identity="a")
    frame = as_a.seal({"recipient": "b", "content_type": ENVELOPES},
                      encode_envelopes(pings(3), sender="a", recipient="b"))
    forged = seal_batch(SECRETS.identities["c"], SECRETS.roster.cluster, [frame])
    res = handle(b, forged)
    assert res.dead is not None and res.dead[0] == "authentication"
    assert "claims sender 'a' but was sent by 'c'" in res.dead[1]
    assert counts(b)["pings"] == 0 and b._ep.channel.replay_guard.highest("a") == -1
    assert handle(b, body_of(sender(), pings(3))).dead is None
    assert counts(b)["pings"] == 3


def test_envelopes_take_the_sealed_sender_and_address() -> None:
    """An envelope in a batch cannot name another sender or address than its frame."""
    b = receiver()
    res = handle(b, body_of(sender("c"), pings(2, frm="c")))
    assert res.dead is None
    sent = [e for e in res.effects if type(e).__name__ == "Send"]
    assert [s.envelope.recipient for s in sent] == ["c", "c"]  # pongs to the true sender
    # an envelope naming another sender is not batched: sealed alone, refused as before
    a = sender()
    a.outbox = endpoint_module.Outbox(a.config, None, a.seal_body, a.stats)  # type: ignore[arg-type]
    queued: list[Any] = []
    a.outbox.add = lambda key, item: queued.append(item)  # type: ignore[method-assign]
    a.send_envelope(KEY, pings(1, frm="c")[0])
    assert len(queued) == 1 and type(queued[0]) is bytes
    res = handle(b, body_of(a, queued))
    assert res.dead is not None and res.dead[0] == "authentication"


def test_a_client_without_the_peer_role_cannot_send_envelopes() -> None:
    b = receiver()
    ops = sender("ops")
    frame = ops.channel.seal({"recipient": "b", "content_type": ENVELOPES},
                             encode_envelopes(pings(2, frm="ops#s1"), sender="ops#s1",
                                              recipient="b"))
    res = handle(b, ops.sign([frame]))
    assert res.dead is not None and res.dead[0] == "permission"
    assert counts(b)["pings"] == 0


def test_an_envelope_the_node_refuses_fails_alone() -> None:
    a, b = sender(), receiver()
    envs = pings(3)
    envs.insert(1, pings(1, kind="echo.bad")[0])
    res = handle(b, body_of(a, envs))
    assert res.dead is not None and res.dead[0] == "protocol" and res.dead[2] == 1
    assert counts(b)["pings"] == 3


def test_a_batch_for_a_topic_reaches_the_topic_and_skips_its_sender() -> None:
    a, b = sender(), receiver()
    msg = Messenger("a", random.Random(1))
    now = int(time.time() * 1000)
    envs = [msg.envelope(now, "echo.bcast", b"b", topic="all") for _ in range(4)]
    key = "tp.all.echo%2Ebcast"
    res = handle(b, body_of(a, envs), routing_key=key)
    assert res.dead is None and counts(b)["bcasts"] == 4
    # the same batch under a routing key of another topic: refused (wrong address)
    res = handle(b, body_of(a, envs), routing_key="tp.other.echo%2Ebcast")
    assert res.dead is not None and res.dead[0] == "authentication"
    # a node gets its own broadcasts back from the broker: skipped, not stepped
    own = receiver("a")
    assert handle(own, body_of(a, envs), routing_key=key).dead is None
    assert counts(own)["bcasts"] == 0


def test_an_unauthenticated_batch_costs_one_signature_check(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """An outsider's body claiming 65,536 envelopes: refused at the signature, before
    any frame is opened or any envelope decoded."""
    calls = {"decode": 0, "open": 0}
    real_decode = node_module.decode_envelopes

    def counting_decode(*args: Any, **kw: Any) -> list[Envelope]:
        calls["decode"] += 1
        return real_decode(*args, **kw)

    monkeypatch.setattr(node_module, "decode_envelopes", counting_decode)
    b = receiver()
    real_open_many = SecureChannel.open_many

    def counting_open_many(self: SecureChannel, *args: Any, **kw: Any) -> Any:
        calls["open"] += 1
        return real_open_many(self, *args, **kw)

    monkeypatch.setattr(SecureChannel, "open_many", counting_open_many)
    as_a = SecureChannel(SECRETS.keyset, MemoryStorage(), identity="a")
    many = pings(1)[0]
    frame = as_a.seal({"recipient": "b", "content_type": ENVELOPES},
                      encode_envelopes([many] * 65_536, sender="a", recipient="b"))
    outsider = seal_batch(Identity.generate("a"), SECRETS.roster.cluster, [frame])
    res = handle(b, outsider)
    assert res.dead is not None and res.dead[0] == "authentication"
    assert calls == {"decode": 0, "open": 0} and counts(b)["pings"] == 0
    assert b.stats["dead_lettered"] == 0  # (dead-lettering happens once, in _process)


def test_the_key_budget_counts_messages_not_batches() -> None:
    """``key_usage_limit`` is a number of messages whatever the batching: with 10 uses
    left, a publish of 30 envelopes seals the first 10 and counts 20 as unsealed."""
    limit = 2**20
    a = sender(key_usage_limit=limit, key_usage_warn=limit - 100)
    key_id = SECRETS.keyset.primary_id
    a.storage.put(f"aead/usage/{key_id:08x}", (limit - 10).to_bytes(8, "big"))
    envs = pings(30)
    sealed = a.seal_body(envs)
    assert isinstance(sealed, SealedBody) and sealed.count == 10 and sealed.body is not None
    assert a.stats["unsealed"] == 20 and a.sealing_error is not None
    assert a.aead.usage(key_id) == limit
    opener = SecureChannel(SECRETS.keyset, MemoryStorage(), identity="b")
    _header, payload = opener.open(open_batch(sealed.body, SECRETS.roster).frames[0],
                                   sender="a")
    assert decode_envelopes(payload, sender="a", recipient="b") == envs[:10]  # the first
    b = receiver()
    assert handle(b, sealed.body).dead is None and counts(b)["pings"] == 10
    nothing = a.seal_body(pings(5))
    assert isinstance(nothing, SealedBody) and nothing.body is None and nothing.count == 0
    assert a.stats["unsealed"] == 25


def test_a_batch_is_charged_one_use_per_message() -> None:
    a = sender()
    key_id = SECRETS.keyset.primary_id
    before = a.aead.usage(key_id)
    a.seal_body(pings(40))
    a.seal_body(pings(1))
    assert a.aead.usage(key_id) - before == 41


def test_mixed_items_keep_their_order_and_runs() -> None:
    """Sealed frames and envelopes in one publish: each run of envelopes to one address
    is one frame, in queue order."""
    a, b = sender(), receiver()
    ctl = a.channel.seal({"recipient": "b", "content_type": "vsm/ctl-request", "rid": "r"},
                         b"\xa1bopfstatus")
    envs = pings(4)
    body = body_of(a, [envs[0], envs[1], ctl, envs[2], envs[3]])
    frames = open_batch(body, SECRETS.roster).frames
    assert len(frames) == 3
    res = handle(b, body)
    assert counts(b)["pings"] == 4 and res.dead is None


@settings(max_examples=60, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=400))
def test_any_payload_from_a_peer_is_stepped_or_refused_whole(payload: bytes) -> None:
    """Whatever an authentic peer puts in an ENVELOPES frame: the node either steps
    every envelope it holds, or refuses the frame as ``decode`` and steps none."""
    a, b = sender(), receiver()
    frame = a.channel.seal({"recipient": "b", "content_type": ENVELOPES}, payload)
    before = counts(b)
    res = handle(b, a.sign([frame]))
    if res.dead is not None:
        assert res.dead[0] in ("decode", "protocol")
        if res.dead[0] == "decode":
            assert counts(b) == before


@settings(max_examples=40, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(1, 40), st.data())
def test_any_bit_flip_in_a_body_is_refused_and_changes_nothing(n: int,
                                                               data: st.DataObject) -> None:
    a, b = sender(), receiver()
    body = bytearray(body_of(a, pings(n)))
    at = data.draw(st.integers(0, len(body) - 1))
    body[at] ^= 1 << data.draw(st.integers(0, 7))
    res = handle(b, bytes(body))
    assert res.dead is not None and res.dead[0] in ("decode", "authentication")
    assert counts(b)["pings"] == 0 and b._ep.channel.replay_guard.highest("a") == -1


def test_a_publish_larger_than_a_batch_frame_is_split(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(endpoint_module, "MAX_ENVELOPES", 7)
    a, b = sender(), receiver()
    sealed = a.seal_body(pings(20))
    assert isinstance(sealed, SealedBody) and sealed.count == 20 and sealed.body is not None
    assert len(open_batch(sealed.body, SECRETS.roster).frames) == 3  # 7 + 7 + 6
    assert handle(b, sealed.body).dead is None and counts(b)["pings"] == 20


def test_batches_are_replay_checked_across_restarts_of_both_ends(tmp_path: Path) -> None:
    """Over SQLite: a receiver that restarts (without closing: a crash) still refuses a
    batch it committed, and a sender that restarts never reuses a sequence number, so
    its new batches are accepted."""
    def a_at() -> Endpoint:
        return Endpoint(SECRETS.credentials("a"), storage=SQLiteStorage(tmp_path / "a.db"),
                        config=AmqpConfig(), clock=time.time)

    def b_at() -> AmqpNode:
        node = AmqpNode(EchoNode("b", random.Random(0)), credentials=SECRETS.credentials("b"),
                        storage=SQLiteStorage(tmp_path / "b.db"))
        node.node.step(Start(0))
        return node

    a, b = a_at(), b_at()
    first, second = body_of(a, pings(3)), body_of(a, pings(4))
    assert handle(b, first).dead is None and counts(b)["pings"] == 3
    b = b_at()  # the receiver crashed after its commit and came back
    assert handle(b, first).dead is None and counts(b)["pings"] == 0
    assert b.stats["duplicates"] == 1  # the redelivered batch: refused, not stepped
    assert handle(b, second).dead is None and counts(b)["pings"] == 4
    a = a_at()  # the sender crashed and came back: fresh sequence numbers
    assert handle(b, body_of(a, pings(5))).dead is None and counts(b)["pings"] == 9
