"""Chunked InstallSnapshot: snapshots larger than a message, resumable offsets, and
heartbeats that never wait behind a snapshot.

The simulator carries envelopes as bytes and decodes them with the envelope's real
limits (``DEFAULT_MAX_MESSAGE``): a message larger than that is *rejected* by the
receiving side, exactly as the AMQP runner would refuse it.
"""

from __future__ import annotations

import random
from typing import Any

import pytest

from vsm_phoenix.errors import DecodeError
from vsm_phoenix.protocol.envelope import DEFAULT_MAX_MESSAGE, Envelope, decode_cbor, encode_cbor
from vsm_phoenix.protocol.node import LocalProtocolError, Persist, Receive, Restart, Send, Start
from vsm_phoenix.protocol.raft import (
    M_SNAP,
    M_SNAP_RESP,
    InstallSnapshot,
    Propose,
    RaftConfig,
    RaftMonitor,
    RaftNode,
    SnapshotResponse,
    decode_message,
    encode_message,
)
from vsm_phoenix.protocol.sim import NetworkConfig, Simulator

IDS3 = ["n1", "n2", "n3"]


_BALLAST: dict[int, bytes] = {}


def ballast(size: int) -> bytes:
    """``size`` incompressible bytes (envelopes compress their payloads), the same
    every time."""
    if size not in _BALLAST:
        _BALLAST[size] = random.Random(size).randbytes(size)
    return _BALLAST[size]


@pytest.fixture(autouse=True, scope="module")
def _free_ballast() -> Any:
    """Give the ballast back when this module is done (pytest workers are shared, and
    some tests elsewhere budget the process's RSS)."""
    yield
    _BALLAST.clear()


class PaddedStateMachine:
    """Applied commands plus ``pad`` bytes of incompressible ballast in every
    snapshot: a state machine whose snapshot is as large as a test needs."""

    def __init__(self, pad: int) -> None:
        self.pad = pad
        self.applied: list[bytes] = []

    def apply(self, command: bytes) -> Any:
        self.applied.append(command)
        return len(self.applied)

    def query(self, query: bytes) -> Any:
        return len(self.applied)

    def snapshot(self) -> bytes:
        return encode_cbor({"a": self.applied, "p": ballast(self.pad)})

    def check_snapshot(self, data: bytes) -> None:
        doc = decode_cbor(data)
        if not isinstance(doc, dict) or set(doc) != {"a", "p"} or not isinstance(doc["a"], list):
            raise DecodeError("padded snapshot must be {a, p}")

    def restore(self, data: bytes) -> None:
        self.check_snapshot(data)
        self.applied = list(decode_cbor(data)["a"])


def padded_cluster(pad: int, seed: int = 0, network: NetworkConfig | None = None,
                   **cfg: Any) -> tuple[Simulator, RaftMonitor]:
    config = RaftConfig(peers=tuple(IDS3), election_timeout_ms=150, heartbeat_ms=30,
                        snapshot_threshold=2, **cfg)
    sim = Simulator(lambda nid, rng: RaftNode(nid, rng, config, PaddedStateMachine(pad)),
                    IDS3, seed=seed, network=network)
    monitor = RaftMonitor()

    def tick(s: Simulator) -> None:
        monitor.observe(n for n in (s.node(i) for i in IDS3) if isinstance(n, RaftNode))
        s.schedule(s.now + 5, tick)

    sim.schedule(0, tick)
    return sim, monitor


def raft(sim: Simulator, nid: str) -> RaftNode:
    node = sim.node(nid)
    assert isinstance(node, RaftNode)
    return node


def leader(sim: Simulator) -> str:
    for _ in range(300):
        found = [n for n in IDS3 if sim.is_up(n) and raft(sim, n).is_leader]
        if len(found) == 1:
            return found[0]
        sim.run_for(10)
    raise AssertionError("no leader")


def lag_one_follower(sim: Simulator, commands: int = 5) -> tuple[str, str]:
    """Cut a follower off while ``commands`` commit and get compacted away; return
    (leader, the follower). The follower then needs the snapshot."""
    lead = leader(sim)
    sim.run_for(100)
    behind = next(n for n in IDS3 if n != lead)
    sim.partition([behind])
    for i in range(commands):
        sim.client_request(lead, Propose(b"c%d" % i))
        sim.run_for(40)
    assert raft(sim, lead).snap_index > raft(sim, behind).last_index  # compacted away
    return lead, behind


def applied(sim: Simulator, nid: str) -> list[bytes]:
    sm = raft(sim, nid).state_machine
    assert isinstance(sm, PaddedStateMachine)
    return sm.applied


def test_a_snapshot_larger_than_the_message_limit_gets_through_in_chunks() -> None:
    pad = DEFAULT_MAX_MESSAGE + (1 << 20)  # every snapshot is over the envelope limit
    sim, monitor = padded_cluster(pad, seed=1)
    lead, behind = lag_one_follower(sim)
    term = raft(sim, lead).term
    sim.heal()
    sim.run_for(1_000)
    assert applied(sim, behind) == applied(sim, lead) == [b"c%d" % i for i in range(5)]
    assert raft(sim, behind).snap_index == raft(sim, lead).snap_index
    assert sim.stats["rejected"] == 0
    # 1 MiB chunks: the snapshot went as ~18 messages, each within the limit.
    assert sim.bytes_by_type[M_SNAP] >= pad
    assert raft(sim, lead).term == term  # no election while it streamed
    assert monitor.violations == []


def test_without_chunks_the_same_snapshot_never_arrives() -> None:
    """The control: one chunk as large as the snapshot is refused by the transport
    every time, so the follower stays behind (and the test above is not vacuous).

    ``RaftConfig`` now refuses a ``snapshot_chunk_bytes`` over the envelope limit, so
    the control forces the value past the check to show why the check exists."""
    with pytest.raises(LocalProtocolError, match="snapshot_chunk_bytes"):
        RaftConfig(peers=tuple(IDS3), snapshot_chunk_bytes=1 << 30)
    pad = DEFAULT_MAX_MESSAGE + (1 << 20)
    sim, _ = padded_cluster(pad, seed=1)
    for nid in IDS3:
        object.__setattr__(raft(sim, nid).config, "snapshot_chunk_bytes", 1 << 30)
    lead, behind = lag_one_follower(sim)
    sim.heal()
    sim.run_for(500)
    assert applied(sim, behind) == [] and sim.stats["rejected"] > 0
    assert raft(sim, lead).is_leader


def test_lost_chunks_are_resent_from_where_the_follower_stands() -> None:
    pad = 200_000
    chunk = 4_096
    net = NetworkConfig(drop_rate=0.2, reorder_rate=0.2, reorder_extra_ms=30)
    sim, monitor = padded_cluster(pad, seed=3, snapshot_chunk_bytes=chunk)
    lead, behind = lag_one_follower(sim)
    sim.set_network(drop_rate=net.drop_rate, reorder_rate=net.reorder_rate,
                    reorder_extra_ms=net.reorder_extra_ms)
    before = sim.bytes_by_type.get(M_SNAP, 0)
    sim.heal()
    for _ in range(200):
        sim.run_for(50)
        if applied(sim, behind) == applied(sim, lead):
            break
    assert applied(sim, behind) == [b"c%d" % i for i in range(5)]
    sent = sim.bytes_by_type[M_SNAP] - before
    # Resuming at the acknowledged offset: well under three times the snapshot, where
    # restarting from byte 0 after each of the ~10 expected losses would cost ~5x.
    assert sent < 3 * pad, sent
    assert monitor.violations == []


def test_heartbeats_go_on_while_a_snapshot_streams() -> None:
    """50 chunks take many heartbeat intervals; neither the receiving follower nor
    the other one ever times out, and proposals keep committing meanwhile."""
    sim, monitor = padded_cluster(400_000, seed=4, snapshot_chunk_bytes=8_000,
                                  check_quorum=True)
    lead, behind = lag_one_follower(sim)
    term = raft(sim, lead).term
    sim.heal()
    committed = []
    for i in range(10):
        rid = sim.client_request(lead, Propose(b"during%d" % i))
        sim.run_for(60)
        committed += [d for d in sim.delivered[lead] if d.request_id == rid]
    assert len(committed) == 10 and all(d.kind == "raft.ok" for d in committed)
    sim.run_for(3_000)
    assert all(raft(sim, n).term == term for n in IDS3)
    assert applied(sim, behind) == applied(sim, lead)
    assert monitor.violations == []


# -- the receiving side, step by step ----------------------------------------------------
def _chunk_env(data: bytes, offset: int, done: bool, index: int = 9, term: int = 2,
               sender: str = "n2") -> Envelope:
    config = RaftConfig(peers=tuple(IDS3)).bootstrap
    mtype, body = encode_message(InstallSnapshot(term=term, index=index, snap_term=1,
                                                 config=config, offset=offset, data=data,
                                                 done=done, seq=0))
    return Envelope(message_id=random.randbytes(16), type=mtype, sender=sender,
                    recipient="n1", timestamp=(1, 0, sender), payload=encode_cbor(body))


def _answers(effects: list[Any]) -> list[SnapshotResponse]:
    out = []
    for e in effects:
        if isinstance(e, Send) and e.envelope.type == M_SNAP_RESP:
            msg = decode_message(M_SNAP_RESP, e.envelope.payload)
            assert isinstance(msg, SnapshotResponse)
            out.append(msg)
    return out


def test_a_follower_assembles_chunks_and_reports_where_it_stands() -> None:
    node = RaftNode("n1", random.Random(0), RaftConfig(peers=tuple(IDS3)),
                    PaddedStateMachine(0))
    node.step(Start(0))
    snap = PaddedStateMachine(50)
    snap.applied = [b"x"] * 9
    data = snap.snapshot()
    parts = [data[i:i + 20] for i in range(0, len(data), 20)]
    [a] = _answers(node.step(Receive(1, _chunk_env(parts[0], 0, False))))
    assert (a.match, a.index, a.offset) == (0, 9, 20)
    # A chunk from further on (one was lost): "I hold 20 bytes of snapshot 9".
    [a] = _answers(node.step(Receive(2, _chunk_env(parts[2], 40, False))))
    assert (a.match, a.offset) == (0, 20)
    # A duplicate of the first: the same answer, nothing appended twice.
    [a] = _answers(node.step(Receive(3, _chunk_env(parts[0], 0, False))))
    assert a.offset == 20
    off = 20
    for k, part in enumerate(parts[1:], 1):
        [a] = _answers(node.step(Receive(4 + k, _chunk_env(part, off, k == len(parts) - 1))))
        off += len(part)
    assert a.match == 9 and node.snap_index == 9 and node.commit_index == 9
    assert node.snap_data == data


def test_a_restarted_follower_resumes_from_the_first_byte() -> None:
    config = RaftConfig(peers=tuple(IDS3))
    node = RaftNode("n1", random.Random(0), config, PaddedStateMachine(0))
    effects = node.step(Start(0))
    store = {e.key: e.value for e in effects if isinstance(e, Persist) and e.value is not None}
    node.step(Receive(1, _chunk_env(b"\xa2ab", 0, False)))
    node = RaftNode("n1", random.Random(1), config, PaddedStateMachine(0))
    node.step(Restart(2, store))
    [a] = _answers(node.step(Receive(3, _chunk_env(b"cd", 3, False))))
    assert (a.match, a.offset) == (0, 0)  # the chunks so far were volatile


def test_bad_or_oversized_snapshots_are_refused_with_state_unchanged() -> None:
    config = RaftConfig(peers=tuple(IDS3), snapshot_chunk_bytes=8, max_snapshot_bytes=64)
    node = RaftNode("n1", random.Random(0), config, PaddedStateMachine(0))
    node.step(Start(0))
    node.step(Receive(1, _chunk_env(b"\xa2", 0, False)))
    key = node.state_key()
    with pytest.raises(DecodeError, match="max_snapshot_bytes"):
        node.step(Receive(2, _chunk_env(bytes(80), 1, False)))
    assert node.state_key() == key
    with pytest.raises(DecodeError, match="bad snapshot"):  # assembled, it is no snapshot
        node.step(Receive(3, _chunk_env(b"\x00", 1, True)))
    assert node.state_key() == key
    with pytest.raises(LocalProtocolError):
        RaftConfig(peers=tuple(IDS3), snapshot_chunk_bytes=0)
