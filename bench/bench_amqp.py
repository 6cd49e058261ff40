"""Messages per second through the AMQP adapter vs raw aio-pika, batched vs unbatched.

Setup, all in one process and one event loop against the broker at ``$AMQP_URL``:

* **raw**: aio-pika alone, the baseline, on the adapter's topology. One connection
  publishes ``N`` persistent messages with publisher confirms, at most ``WINDOW``
  unconfirmed at a time (the adapter's default window), through a topic exchange to a
  durable queue; a second connection consumes them with the adapter's prefetch and
  acks each. Bodies are as long as one sealed adapter frame.
* **adapter**: two :class:`~vsm_phoenix.ext.amqp.AmqpNode` (SQLite stores, the runner's
  default ``synchronous=NORMAL``) run a tiny node: one client request makes ``a`` emit
  ``N`` ``Send`` effects to ``b``; every envelope is sealed (AES-256-GCM), batched,
  published with confirms, opened (authenticated, replay-checked and recorded) and
  stepped by ``b``, acked after the group commit. Once with batching (defaults), once
  with ``batch_max_messages=1`` (one publish per message).

Each figure is N messages divided by the time from the first publish until the
receiver has processed the last. Targets: adapter (batched) / raw >= 0.8, batched /
unbatched >= 5. Measurements are interleaved and the best of ``repeats`` is kept (a
shared 2-core machine varies by 30 % between identical runs).

``run(quick)`` returns the figures; ``python -m bench --only amqp [--quick]`` prints
them and writes the JSON report. Nothing here asserts a time. Without a
broker, ``run`` returns ``{"skipped": reason}``.
"""

from __future__ import annotations

import asyncio
import json
import random
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import aio_pika

from bench import progress
from vsm_phoenix.cli.base import amqp_url
from vsm_phoenix.crypto import KeyKind, Keyset
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
TARGET_VS_RAW = 0.8
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


async def _adapter(url: str, n: int, batched: bool, tmp: Path) -> tuple[float, dict[str, int]]:
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
        t0 = time.perf_counter()
        await a.request(n, timeout=120)
        await asyncio.wait_for(nb.done.wait(), 300)
        elapsed = time.perf_counter() - t0
        stats = {"publishes": a.stats["publishes"], "frames": a.stats["frames_sent"],
                 "dead_lettered": b.stats["dead_lettered"]}
    finally:
        await a.stop()
        await b.stop()
        await delete_topology(Topology(cluster), ("a", "b"), url)
    return n / elapsed, stats


async def _raw(url: str, n: int, body_size: int) -> float:
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

        async def on_message(m: aio_pika.abc.AbstractIncomingMessage) -> None:
            nonlocal got
            await m.ack()
            got += 1
            if got >= n:
                done.set()

        tag = await queue.consume(on_message)
        window = asyncio.Semaphore(WINDOW)
        body = b"x" * body_size

        async def publish_one() -> None:
            async with window:
                await exchange.publish(
                    aio_pika.Message(body, delivery_mode=aio_pika.DeliveryMode.PERSISTENT),
                    "to.b.bench%2Emsg", mandatory=False,
                )

        t0 = time.perf_counter()
        tasks = [asyncio.ensure_future(publish_one()) for _ in range(n)]
        await asyncio.gather(*tasks)
        await asyncio.wait_for(done.wait(), 300)
        elapsed = time.perf_counter() - t0
        await queue.cancel(tag)
        await sub.queue_delete(queue_name)
    finally:
        await pub_conn.close()
        await sub_conn.close()
    return n / elapsed


def _frame_size() -> int:
    """Length of one sealed adapter frame for the benchmark's envelope."""
    from vsm_phoenix.crypto import SecureChannel
    from vsm_phoenix.ext.amqp import ENVELOPE
    from vsm_phoenix.storage import MemoryStorage

    env = Messenger("a", random.Random(0)).envelope(int(time.time() * 1000), "bench.msg",
                                                     b"x" * PAYLOAD, recipient="b")
    header, body = env.wire_parts()
    ch = SecureChannel(Keyset.generate(KeyKind.AES256_GCM), MemoryStorage(), identity="a")
    return len(ch.seal({"recipient": "b", "content_type": ENVELOPE, "env": header}, body))


async def _run(quick: bool) -> dict[str, Any]:
    url = amqp_url()  # the command line's reading of $AMQP_URL
    reason = await broker_available(url)
    if reason is not None:
        return {"benchmark": "amqp_throughput", "skipped": reason}
    n = 2_000 if quick else 10_000
    repeats = 1 if quick else 3
    size = _frame_size()
    best = {"raw": 0.0, "batched": 0.0, "unbatched": 0.0}
    stats: dict[str, dict[str, int]] = {}
    t_start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="bench-amqp-") as d:
        tmp = Path(d)
        progress.plan(3 * repeats)
        for r in range(repeats):
            progress.step(f"raw aio-pika, {n} messages (round {r + 1})")
            best["raw"] = max(best["raw"], await _raw(url, n, size))
            progress.step(f"adapter batched (round {r + 1})")
            rate, stats["batched"] = await _adapter(url, n, True, tmp)
            best["batched"] = max(best["batched"], rate)
            progress.step(f"adapter unbatched (round {r + 1})")
            rate, stats["unbatched"] = await _adapter(url, n, False, tmp)
            best["unbatched"] = max(best["unbatched"], rate)
    vs_raw = best["batched"] / best["raw"]
    batching = best["batched"] / best["unbatched"]
    return {
        "benchmark": "amqp_throughput",
        "messages": n,
        "repeats": repeats,
        "payload_bytes": PAYLOAD,
        "sealed_frame_bytes": size,
        "window": WINDOW,
        "prefetch": PREFETCH,
        "raw_aio_pika_msgs_per_s": round(best["raw"]),
        "adapter_batched_msgs_per_s": round(best["batched"]),
        "adapter_unbatched_msgs_per_s": round(best["unbatched"]),
        "ratio_adapter_batched_over_raw": round(vs_raw, 3),
        "ratio_adapter_unbatched_over_raw": round(best["unbatched"] / best["raw"], 3),
        "ratio_batched_over_unbatched": round(batching, 2),
        "target_adapter_over_raw": TARGET_VS_RAW,
        "target_batched_over_unbatched": TARGET_BATCHING,
        "meets_targets": vs_raw >= TARGET_VS_RAW and batching >= TARGET_BATCHING,
        "publishes": {k: v["publishes"] for k, v in stats.items()},
        "dead_lettered": sum(v["dead_lettered"] for v in stats.values()),
        "seconds": round(time.perf_counter() - t_start, 2),
    }


def run(quick: bool = False) -> dict[str, Any]:
    """Measure raw aio-pika, adapter batched and adapter unbatched messages/s."""
    return asyncio.run(_run(quick))


def test_amqp_throughput(benchmark: Any) -> None:
    """pytest-benchmark entry: one quick run, figures attached to the report."""
    result = benchmark.pedantic(run, args=(True,), rounds=1, iterations=1)
    benchmark.extra_info.update(result)
    print(json.dumps(result, indent=2))
