"""Raft messages stay within the envelope limit every receiver enforces.

The bug these pin down: an append was bounded by entry count alone (``max_batch``),
so a follower that missed a burst of large commands was sent 64 of them in one
message -- over the 16 MiB envelope limit. Every peer refused it, the leader resent it
on every heartbeat, and the follower never caught up. One oversized ``Propose`` did the
same to every follower at once.
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vsm_phoenix.protocol.envelope import DEFAULT_MAX_PAYLOAD
from vsm_phoenix.protocol.node import ClientRequest, LocalProtocolError, Send
from vsm_phoenix.protocol.raft import (
    ENTRY_OVERHEAD_BYTES,
    M_APPEND,
    MAX_ENTRIES_PER_MESSAGE,
    MAX_MESSAGE_BODY_BYTES,
    AppendEntries,
    Propose,
    RaftConfig,
    RaftNode,
    check_invariants,
    decode_message,
)
from vsm_phoenix.protocol.sim import Simulator

IDS = ["n1", "n2", "n3"]


class _SizeRecordingRaft(RaftNode):
    """Records, for every append this node sends, (entries, command bytes carried)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.appends: list[tuple[int, int]] = []

    def step(self, event: Any) -> list[Any]:
        effects = super().step(event)
        for e in effects:
            if isinstance(e, Send) and e.envelope.type == M_APPEND:
                msg = decode_message(e.envelope.type, e.envelope.payload)
                assert isinstance(msg, AppendEntries)
                self.appends.append((len(msg.entries),
                                     sum(len(x.data) + ENTRY_OVERHEAD_BYTES
                                         for x in msg.entries)))
        return effects


def _cluster(seed: int, **cfg: Any) -> Simulator:
    config = RaftConfig(peers=tuple(IDS), **cfg)
    return Simulator(lambda nid, rng: _SizeRecordingRaft(nid, rng, config), IDS, seed=seed)


def _raft(sim: Simulator, nid: str) -> _SizeRecordingRaft:
    node = sim.node(nid)
    assert isinstance(node, _SizeRecordingRaft)
    return node


def _leader(sim: Simulator) -> str:
    for _ in range(500):
        sim.run_for(10)
        found = [n for n in IDS if sim.is_up(n) and _raft(sim, n).is_leader]
        if len(found) == 1:
            return found[0]
    raise AssertionError("no leader")


def test_a_follower_that_missed_a_burst_of_large_commands_catches_up() -> None:
    """64 commands of 300 KB (19 MB together) while a follower is down: it must catch
    up, with no message refused on the way."""
    sim = _cluster(seed=1)
    lead = _leader(sim)
    lagging = next(n for n in IDS if n != lead)
    sim.crash(lagging)
    for i in range(64):
        sim.client_request(lead, Propose(command=bytes([i]) * 300_000))
    sim.run_for(2_000)
    sim.restart(lagging)
    sim.run_for(3_000)
    assert not [ev for ev in sim.trace if ev.get("k") == "reject"]
    want = _raft(sim, lead).last_index
    assert [_raft(sim, n).commit_index for n in IDS] == [want] * 3
    check_invariants([_raft(sim, n) for n in IDS])
    sizes = [ev["bytes"] for ev in sim.trace if ev.get("k") == "send" and ev["type"] == M_APPEND]
    assert max(sizes) < 2 * (1 << 20)  # max_append_bytes (1 MiB) plus one entry, framed


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10**6),
       sizes=st.lists(st.integers(1, 6_000), min_size=1, max_size=40),
       limit=st.integers(1, 8_000))
def test_every_append_fits_the_byte_bound(seed: int, sizes: list[int], limit: int) -> None:
    """For any command sizes and any ``max_append_bytes``: every append carries at most
    ``limit`` bytes of entries, or a single entry; and a lagging follower catches up."""
    sim = _cluster(seed=seed, max_append_bytes=limit)
    lead = _leader(sim)
    lagging = next(n for n in IDS if n != lead)
    sim.crash(lagging)
    for i, size in enumerate(sizes):
        sim.client_request(lead, Propose(command=bytes([i % 256]) * size))
    sim.run_for(500)
    sim.restart(lagging)
    sim.run_for(3_000)
    node = _raft(sim, lead)
    assert node.is_leader, "the test assumes a stable leader (no faults injected)"
    assert [_raft(sim, n).commit_index for n in IDS] == [node.last_index] * 3
    for n in IDS:
        assert _raft(sim, n).log == node.log
    assert node.appends
    for entries, carried in node.appends:
        assert carried <= limit or entries == 1, (entries, carried, limit)


def test_an_oversized_command_is_refused_and_changes_nothing() -> None:
    sim = _cluster(seed=2, max_command_bytes=1_000)
    lead = _leader(sim)
    node = _raft(sim, lead)
    before = node.state_digest()
    with pytest.raises(LocalProtocolError, match="max_command_bytes"):
        node.step(ClientRequest(sim.now, "big", Propose(command=bytes(1_001))))
    assert node.state_digest() == before
    node.step(ClientRequest(sim.now, "fits", Propose(command=bytes(1_000))))
    assert node.log[-1].data == bytes(1_000)


@pytest.mark.parametrize("name", ["max_append_bytes", "max_command_bytes",
                                  "snapshot_chunk_bytes"])
@pytest.mark.parametrize("value", [0, -1, MAX_MESSAGE_BODY_BYTES + 1, 2**70, 1.5, True])
def test_size_knobs_beyond_the_envelope_limit_are_refused(name: str, value: object) -> None:
    with pytest.raises(LocalProtocolError, match=name):
        RaftConfig(peers=("a",), **{name: value})  # type: ignore[arg-type]


def test_max_batch_beyond_what_peers_decode_is_refused() -> None:
    RaftConfig(peers=("a",), max_batch=MAX_ENTRIES_PER_MESSAGE)
    with pytest.raises(LocalProtocolError, match="max_batch"):
        RaftConfig(peers=("a",), max_batch=MAX_ENTRIES_PER_MESSAGE + 1)


def test_the_body_bound_leaves_room_in_the_envelope() -> None:
    assert MAX_MESSAGE_BODY_BYTES + 64 * 1024 == DEFAULT_MAX_PAYLOAD
    assert ENTRY_OVERHEAD_BYTES > 0
