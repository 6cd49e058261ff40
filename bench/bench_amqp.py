"""Messages per second through the AMQP adapter vs raw aio-pika, with equal batching.

Setup, all in one process and one event loop against the broker at ``$AMQP_URL``:

* **raw, equal batching** (the fair baseline): aio-pika alone does what the adapter's
  transport does, without the adapter. One connection publishes bodies of
  ``BATCH`` frames each (the adapter's ``batch_max_messages``; every frame as long as
  the adapter's body takes per message, so both move the same bytes:
  ``body_bytes_per_message_batched``; framed as a CBOR array), persistent,
  with publisher confirms and at most ``WINDOW`` unconfirmed publishes; a second
  connection consumes with the adapter's prefetch, parses each body into its frames,
  and acks each group of deliveries with one cumulative ack, as the adapter does. It
  counts frames, not bodies.
* **raw, unbatched**: one persistent, confirmed publish per frame, as long as the
  adapter's body of one message (``body_bytes_unbatched``) (the old baseline:
  the "batched over raw" figure against it compares batching with no batching and is
  reported only beside the fair one).
* **adapter**: two :class:`~vsm_phoenix.ext.amqp.AmqpNode` (SQLite stores, the runner's
  default ``synchronous=NORMAL``) run a tiny node: one client request makes ``a`` emit
  ``N`` ``Send`` effects to ``b``; the envelopes of each publish are sealed together
  (one AES-256-GCM frame), signed (Ed25519), published with confirms, verified, opened
  (authenticated, replay-checked and recorded), decoded and stepped by ``b``, acked
  after the group commit. Once with batching (defaults), once with
  ``batch_max_messages=1``.

Each rate is N frames divided by the time from the first publish until the receiver
has processed the last. ``ratio_batched_over_raw_equal_batching`` is the figure of
merit (target >= 0.1). ``cpu_us_per_message`` is the process CPU time (both ends: they
share the process) per frame, for the adapter and for raw aio-pika.
``cpu_us_per_message_by_side`` splits the adapter's CPU between its two ends without
the broker: the sending end (the node's step making N ``Send`` effects, queueing them,
and sealing and signing each publish's body) and the receiving end (authenticating each
body, opening its frame, checking and decoding its envelopes and stepping the node, in
one storage transaction per body); raw aio-pika's two ends do a CBOR encode and decode
of the same bodies there. With ``profile`` set (the default for a full run) one more
batched adapter run is profiled: ``profile_top`` lists the functions with the most own
time, ``profile_areas`` sums own time by area (the event loop's wait in ``epoll`` is
idle time, not work). Measurements are interleaved and the best of ``repeats`` is kept
(a shared 2-core machine varies by 30 % between identical runs).

``run(quick)`` returns the figures; ``python -m bench --only amqp [--quick]`` prints
them and writes the JSON report. Nothing here asserts a time. Without a broker, ``run``
returns ``{"skipped": reason}``.
"""

from __future__ import annotations

import asyncio
import cProfile
import json
import pstats
import random
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import aio_pika
import cbor2

from bench import progress
from vsm_phoenix.cli.base import amqp_url
from vsm_phoenix.crypto.credentials import ClusterSecrets
from vsm_phoenix.ext.amqp import (
    AmqpConfig,
    AmqpNode,
    Topology,
    broker_available,
    delete_topology,
)
from vsm_phoenix.protocol.kit import Messenger
from vsm_phoenix.protocol.node import (
    ClientRequest,
    Deliver,
    Effect,
    Event,
    Receive,
    Restart,
    Start,
)
from vsm_phoenix.storage import SQLiteStorage

PAYLOAD = 16
WINDOW = AmqpConfig().window
PREFETCH = AmqpConfig().prefetch
BATCH = AmqpConfig().batch_max_messages
TARGET_EQUAL_BATCHING = 0.1
TARGET_BATCHING = 5.0


class BlastNode:
    """``ClientRequest(n)`` sends ``n`` small ``bench.msg`` envelopes to the peer; received
    ones are counted."""

    def __init__(self, node_id: str, peer: str) -> None:
        self._id = node_id
        self.peer = peer
        self.msg = Messenger(node_id, random.Random(node_id))
        self.received = 0
        self.done = asyncio.Event()
        self.expect = 0

    @property
    def node_id(self) -> str:
        return self._id

    def step(self, event: Event) -> list[Effect]:
        if isinstance(event, Start | Restart):
            return []
        if isinstance(event, Receive):
            self.received += 1
            if self.received >= self.expect:
                self.done.set()
            return []
        if isinstance(event, ClientRequest):
            n = int(event.payload)
            out: list[Effect] = [
                self.msg.send(event.now, self.peer, "bench.msg", b"x" * PAYLOAD)
                for _ in range(n)
            ]
            return [*out, Deliver("bench.sent", n, event.request_id)]
        return []


async def _adapter(url: str, n: int, batched: bool, tmp: Path,
                   profiler: cProfile.Profile | None = None) -> tuple[float, dict[str, Any]]:
    cluster = f"bench-{uuid.uuid4().hex[:8]}"
    secrets = ClusterSecrets.create(cluster, nodes=["a", "b"])
    config = AmqpConfig(url=url, batch_max_messages=256 if batched else 1)
    na, nb = BlastNode("a", "b"), BlastNode("b", "a")
    nb.expect = n
    a = AmqpNode(na, credentials=secrets.credentials("a"), config=config,
                 storage=SQLiteStorage(tmp / f"{cluster}-a.sqlite", synchronous="NORMAL"))
    b = AmqpNode(nb, credentials=secrets.credentials("b"), config=config,
                 storage=SQLiteStorage(tmp / f"{cluster}-b.sqlite", synchronous="NORMAL"))
    await a.start()
    await b.start()
    try:
        if profiler is not None:  # the measured part only: not the setup
            profiler.enable()
        t0, c0 = time.perf_counter(), time.process_time()
        await a.request(n, timeout=120)
        await asyncio.wait_for(nb.done.wait(), 300)
        elapsed, cpu = time.perf_counter() - t0, time.process_time() - c0
        if profiler is not None:
            profiler.disable()
        stats = {"publishes": a.stats["publishes"], "frames": a.stats["frames_sent"],
                 "dead_lettered": b.stats["dead_lettered"],
                 "cpu_us_per_message": round(cpu / n * 1e6, 2)}
    finally:
        await a.stop()
        await b.stop()
        await delete_topology(Topology(cluster), ("a", "b"), url)
    return n / elapsed, stats


async def _raw(url: str, n: int, frame_size: int, batch: int) -> tuple[float, float]:
    """Raw aio-pika moving ``n`` frames of ``frame_size`` bytes, ``batch`` per body
    (see the module doc); returns (frames per second, CPU microseconds per frame)."""
    queue_name = f"bench-raw-{uuid.uuid4().hex[:8]}"
    pub_conn = await aio_pika.connect(url)
    sub_conn = await aio_pika.connect(url)
    try:
        pub = await pub_conn.channel(publisher_confirms=True)
        sub = await sub_conn.channel()
        await sub.set_qos(prefetch_count=PREFETCH)
        queue = await sub.declare_queue(queue_name, durable=True)
        exchange = await pub.declare_exchange(queue_name, aio_pika.ExchangeType.TOPIC,
                                              auto_delete=True)
        await queue.bind(exchange, routing_key="to.b.#")
        got = 0
        done = asyncio.Event()
        inbox: asyncio.Queue[aio_pika.abc.AbstractIncomingMessage] = asyncio.Queue()

        async def on_message(m: aio_pika.abc.AbstractIncomingMessage) -> None:
            inbox.put_nowait(m)

        async def process() -> None:
            # the adapter's receive loop without the adapter: take what has arrived,
            # split every body into its frames, one cumulative ack for the group
            nonlocal got
            while got < n:
                group = [await inbox.get()]
                while not inbox.empty():
                    group.append(inbox.get_nowait())
                for m in group:
                    got += len(cbor2.loads(m.body)) if batch > 1 else 1
                await group[-1].ack(multiple=True)
            done.set()

        tag = await queue.consume(on_message)
        worker = asyncio.ensure_future(process())
        window = asyncio.Semaphore(WINDOW)
        frame = b"x" * frame_size
        body = cbor2.dumps([frame] * batch) if batch > 1 else frame

        async def publish_one() -> None:
            async with window:
                await exchange.publish(
                    aio_pika.Message(body, delivery_mode=aio_pika.DeliveryMode.PERSISTENT),
                    "to.b.bench%2Emsg", mandatory=False,
                )

        bodies = -(-n // batch)
        t0, c0 = time.perf_counter(), time.process_time()
        await asyncio.gather(*(publish_one() for _ in range(bodies)))
        await asyncio.wait_for(done.wait(), 300)
        elapsed, cpu = time.perf_counter() - t0, time.process_time() - c0
        await worker
        await queue.cancel(tag)
        await sub.queue_delete(queue_name)
    finally:
        await pub_conn.close()
        await sub_conn.close()
    frames = bodies * batch
    return frames / elapsed, cpu / frames * 1e6


#: Where a function's own time goes in ``profile_areas``: the first rule whose pattern
#: occurs in ``file:function`` names the area.
_AREAS: tuple[tuple[str, str], ...] = (
    ("select.epoll", "event loop: waiting for I/O (idle)"),
    ("_socket.socket", "socket send/receive"),
    ("sqlite3", "storage (SQLite)"),
    ("vsm_phoenix/storage", "storage (SQLite)"),
    ("ed25519", "batch signature (Ed25519)"),
    ("vsm_phoenix/crypto/batch", "batch signature (Ed25519)"),
    ("AESGCM", "AES-GCM"),
    ("vsm_phoenix/crypto", "sealed channel, replay, key budget"),
    ("cbor.py:int_fits", "node: envelopes made by the node (Messenger, HLC)"),  # HLC check
    ("vsm_phoenix/_canonical", "CBOR (parse, encode, canonical check)"),
    ("vsm_phoenix/cbor", "CBOR (parse, encode, canonical check)"),
    ("cbor2", "CBOR (parse, encode, canonical check)"),
    ("vsm_phoenix/protocol/envelope", "envelopes: build, batch encode/decode"),
    ("vsm_phoenix/protocol", "node: envelopes made by the node (Messenger, HLC)"),
    ("vsm_phoenix/crdt", "node: envelopes made by the node (Messenger, HLC)"),
    ("bench_amqp", "node: the benchmark's node"),
    ("vsm_phoenix/ext/amqp", "adapter: outbox, dispatch, effects"),
    ("vsm_phoenix/ext/breaker", "adapter: outbox, dispatch, effects"),
    ("<attrs generated", "events and effects (attrs classes)"),
    ("aio_pika", "aio-pika / aiormq / pamqp (AMQP framing)"),
    ("aiormq", "aio-pika / aiormq / pamqp (AMQP framing)"),
    ("pamqp", "aio-pika / aiormq / pamqp (AMQP framing)"),
    ("asyncio", "asyncio (tasks, events, callbacks)"),
    ("~:", "builtins called from the above (len, isinstance, list and dict methods)"),
)


def _area(file: str, name: str) -> str:
    where = f"{file.replace(chr(92), '/')}:{name}"
    for pattern, area in _AREAS:
        if pattern in where:
            return area
    return "other"


async def _profile(url: str, n: int, tmp: Path) -> tuple[list[dict[str, Any]],
                                                          dict[str, float]]:
    """Where a batched adapter run spends its time: the functions with the most own
    time, as shares of the profiled total, and the shares summed by area."""
    profiler = cProfile.Profile()
    try:
        await _adapter(url, n, True, tmp, profiler)
    finally:
        profiler.disable()
    stats = pstats.Stats(profiler)
    entries = stats.stats  # type: ignore[attr-defined]
    total = sum(v[2] for v in entries.values()) or 1.0
    top = sorted(entries.items(), key=lambda kv: kv[1][2], reverse=True)[:15]
    areas: dict[str, float] = {}
    for (file, _line, name), v in entries.items():
        area = _area(file, name)
        areas[area] = areas.get(area, 0.0) + v[2] / total
    summary = {k: round(v, 3) for k, v in sorted(areas.items(), key=lambda kv: -kv[1])}
    return [
        {"function": f"{Path(file).name}:{line}({name})", "own_share": round(v[2] / total, 3),
         "calls_per_message": round(v[1] / n, 2)}
        for (file, line, name), v in top
    ], summary


class _Captured:
    """What the receiving end needs of an incoming AMQP message."""

    def __init__(self, body: bytes, routing_key: str) -> None:
        self.body = body
        self.routing_key = routing_key
        self.channel = None


class _CaptureOutbox:
    """Stands in for the outbox when no broker is involved: keeps the queued items."""

    def __init__(self) -> None:
        self.items: dict[str, list[Any]] = {}

    def add(self, routing_key: str, item: Any) -> None:
        self.items.setdefault(routing_key, []).append(item)


def _sides(n: int, tmp: Path) -> dict[str, float]:
    """CPU microseconds per message at each end of the adapter, without the broker
    (see the module doc), beside raw aio-pika's CBOR work on the same bodies."""
    from vsm_phoenix.ext.amqp.endpoint import SealedBody

    cluster = f"bench-{uuid.uuid4().hex[:8]}"
    secrets = ClusterSecrets.create(cluster, nodes=["a", "b"])
    na, nb = BlastNode("a", "b"), BlastNode("b", "a")
    nb.expect = n
    a = AmqpNode(na, credentials=secrets.credentials("a"),
                 storage=SQLiteStorage(tmp / f"{cluster}-a.sqlite", synchronous="NORMAL"))
    b = AmqpNode(nb, credentials=secrets.credentials("b"),
                 storage=SQLiteStorage(tmp / f"{cluster}-b.sqlite", synchronous="NORMAL"))
    outbox = _CaptureOutbox()
    a._ep.outbox = outbox  # type: ignore[assignment]
    c0 = time.process_time()
    with a._ep.txn():
        effects = a._step_persist(ClientRequest(a.now(), "bench", n))
    a._carry_out(effects)
    bodies: list[_Captured] = []
    for key, items in outbox.items.items():
        for i in range(0, len(items), BATCH):
            sealed = a._ep.seal_body(items[i:i + BATCH])
            assert isinstance(sealed, SealedBody) and sealed.body is not None
            bodies.append(_Captured(sealed.body, key))
    c1 = time.process_time()
    for message in bodies:
        with b._ep.txn():
            b._handle(message)  # type: ignore[arg-type]
    c2 = time.process_time()
    if nb.received != n:
        raise RuntimeError(f"the receiving end stepped {nb.received} of {n} envelopes")
    frame = b"x" * _message_bytes(BATCH)
    r0 = time.process_time()
    raw = [cbor2.dumps([frame] * BATCH) for _ in range(len(bodies))]
    r1 = time.process_time()
    for body in raw:
        cbor2.loads(body)
    r2 = time.process_time()
    frames = len(raw) * BATCH
    return {
        "adapter_send": round((c1 - c0) / n * 1e6, 2),
        "adapter_receive": round((c2 - c1) / n * 1e6, 2),
        "raw_send": round((r1 - r0) / frames * 1e6, 3),
        "raw_receive": round((r2 - r1) / frames * 1e6, 3),
    }


def _message_bytes(batch: int) -> int:
    """Bytes per message in an adapter body of ``batch`` of the benchmark's envelopes
    (sealed, batched, signed): what raw aio-pika moves per frame, so both move the
    same bytes."""
    from vsm_phoenix.ext.amqp.endpoint import SealedBody

    secrets = ClusterSecrets.create("bench-size", nodes=["a", "b"])
    a = AmqpNode(BlastNode("a", "b"), credentials=secrets.credentials("a"))
    now = int(time.time() * 1000)
    envs = [a.node.msg.envelope(now, "bench.msg", b"x" * PAYLOAD, recipient="b")  # type: ignore[attr-defined]
            for _ in range(batch)]
    sealed = a._ep.seal_body(envs)
    assert isinstance(sealed, SealedBody) and sealed.body is not None
    return -(-len(sealed.body) // batch)


async def _run(quick: bool, profile: bool) -> dict[str, Any]:
    url = amqp_url()  # the command line's reading of $AMQP_URL
    reason = await broker_available(url)
    if reason is not None:
        return {"benchmark": "amqp_throughput", "skipped": reason}
    n = 2_048 if quick else 10_240
    repeats = 1 if quick else 3
    size, size_one = _message_bytes(BATCH), _message_bytes(1)
    best = {"raw_batched": 0.0, "raw_unbatched": 0.0, "batched": 0.0, "unbatched": 0.0}
    cpu: dict[str, float] = {}
    stats: dict[str, dict[str, Any]] = {}
    t_start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="bench-amqp-") as d:
        tmp = Path(d)
        progress.plan(4 * repeats + 1 + (1 if profile else 0))

        def keep(name: str, rate: float, us: float) -> None:
            if rate > best[name]:
                best[name], cpu[name] = rate, us

        for r in range(repeats):
            progress.step(f"raw aio-pika, {BATCH} frames a body (round {r + 1})")
            keep("raw_batched", *await _raw(url, n, size, BATCH))
            progress.step(f"adapter batched (round {r + 1})")
            rate, stats["batched"] = await _adapter(url, n, True, tmp)
            keep("batched", rate, stats["batched"]["cpu_us_per_message"])
            progress.step(f"raw aio-pika, one frame a publish (round {r + 1})")
            keep("raw_unbatched", *await _raw(url, n, size_one, 1))
            progress.step(f"adapter unbatched (round {r + 1})")
            rate, stats["unbatched"] = await _adapter(url, n, False, tmp)
            keep("unbatched", rate, stats["unbatched"]["cpu_us_per_message"])
        progress.step("each end's CPU per message, without the broker")
        sides = min((_sides(n, tmp) for _ in range(repeats)),
                    key=lambda d: d["adapter_send"] + d["adapter_receive"])
        top = areas = None
        if profile:
            progress.step("adapter batched under cProfile")
            top, areas = await _profile(url, n, tmp)
    fair = best["batched"] / best["raw_batched"]
    batching = best["batched"] / best["unbatched"]
    report: dict[str, Any] = {
        "benchmark": "amqp_throughput",
        "messages": n,
        "repeats": repeats,
        "payload_bytes": PAYLOAD,
        "body_bytes_per_message_batched": size,
        "body_bytes_unbatched": size_one,
        "batch": BATCH,
        "window": WINDOW,
        "prefetch": PREFETCH,
        "raw_aio_pika_batched_msgs_per_s": round(best["raw_batched"]),
        "raw_aio_pika_unbatched_msgs_per_s": round(best["raw_unbatched"]),
        "adapter_batched_msgs_per_s": round(best["batched"]),
        "adapter_unbatched_msgs_per_s": round(best["unbatched"]),
        "ratio_batched_over_raw_equal_batching": round(fair, 4),
        "ratio_unbatched_over_raw_unbatched": round(
            best["unbatched"] / best["raw_unbatched"], 4),
        "ratio_batched_over_raw_unbatched_unfair": round(
            best["batched"] / best["raw_unbatched"], 3),
        "ratio_batched_over_unbatched": round(batching, 2),
        "cpu_us_per_message": {k: round(v, 2) for k, v in cpu.items()},
        "cpu_us_per_message_by_side": sides,
        "target_equal_batching": TARGET_EQUAL_BATCHING,
        "target_batched_over_unbatched": TARGET_BATCHING,
        "meets_targets": fair >= TARGET_EQUAL_BATCHING and batching >= TARGET_BATCHING,
        "publishes": {k: v["publishes"] for k, v in stats.items()},
        "dead_lettered": sum(v["dead_lettered"] for v in stats.values()),
        "seconds": round(time.perf_counter() - t_start, 2),
    }
    if top is not None:
        report["profile_top"] = top
        report["profile_areas"] = areas
    return report


def run(quick: bool = False, profile: bool | None = None) -> dict[str, Any]:
    """Measure raw aio-pika (batched like the adapter, and unbatched) and the adapter
    (batched and unbatched); profile one batched run unless ``quick``."""
    return asyncio.run(_run(quick, not quick if profile is None else profile))


def test_amqp_throughput(benchmark: Any) -> None:
    """pytest-benchmark entry: one quick run, figures attached to the report."""
    result = benchmark.pedantic(run, args=(True,), rounds=1, iterations=1)
    benchmark.extra_info.update(result)
    print(json.dumps(result, indent=2))
