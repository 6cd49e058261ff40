"""Seal+open throughput of the crypto layer relative to raw ``cryptography`` AES-GCM.

For payloads of 64 B, 1 KiB and 64 KiB we time, side by side in one run and interleaved:

* ``raw``: ``os.urandom(12)`` + ``AESGCM.encrypt`` + ``AESGCM.decrypt`` -- the least a
  correct caller does (a fresh nonce per message), with 39 bytes of AAD;
* ``raw_channel_aad``: the same with as many AAD bytes as a channel frame's
  (``channel_aad_bytes``: format, length and header): the baseline of the channel;
* ``raw_fixed_nonce``: the same without nonce generation (a floor nobody may use);
* ``ours``: :meth:`KeysetAead.encrypt` + :meth:`KeysetAead.decrypt` (Tink prefix, key
  lookup, counted nonce budget with an in-memory store);
* ``channel``: :meth:`SecureChannel.seal` + :meth:`SecureChannel.open` (CBOR header as
  AAD, freshness, sequence counter and replay window made durable in an in-memory
  store);
* ``channel_sqlite``: the same with both channels over SQLite stores (WAL,
  ``synchronous=NORMAL``, as the AMQP runner opens them), outside any transaction: the
  replay windows and counters are written by lease (see ``ReplayGuard``).

The figures of merit are ``ratio = raw time / ours time`` for ``KeysetAead`` (1.0 = no
overhead; target >= 0.7 at 1 KiB) and ``channel_ratio_memory_1KiB`` /
``channel_ratio_sqlite_1KiB`` for the channel (targets >= 0.3 / >= 0.2), both against
``raw_channel_aad``. Each figure is the best of many short interleaved batches, timed
both by the wall clock and by the thread's CPU time. The channel figures and
``store_size_penalty`` are the CPU-time ones: on a shared, oversubscribed machine a
batch's wall time is mostly time spent descheduled (seen: raw AES-GCM at 18.6 us wall
for 2.15 us of CPU in the same batches), which no number of repetitions removed; the
wall-clock ratios are reported beside them (``*_wall``, ``us_per_op``). Both sides of
every ratio are timed the same way. ``profile_1KiB`` is a cProfile summary of the
channel's seal+open (shares of CPU time per function).

``store_size_penalty``: channel seal+open at 1 KiB with 100,000 unrelated keys in the
receiver's in-memory store, over the same with an empty store (target <= 1.2), each
open inside a storage transaction (the AMQP runner's group commit) so that a store
that copied itself per transaction would show it.

``run(quick)`` returns the figures; ``python -m bench --only crypto [--quick]`` prints
them and writes the JSON report; ``pytest bench/bench_crypto.py`` runs the
pytest-benchmark suite. Nothing here asserts a time.
"""

from __future__ import annotations

import cProfile
import json
import os
import pstats
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from bench import progress
from vsm_phoenix.crypto import (
    KeyKind,
    Keyset,
    KeysetAead,
    MemoryStorage,
    SecureChannel,
    SQLiteStorage,
)

SIZES = {"64B": 64, "1KiB": 1024, "64KiB": 65536}
TARGET_1KIB = 0.7
TARGET_CHANNEL_MEMORY = 0.3
TARGET_CHANNEL_SQLITE = 0.2
TARGET_STORE_PENALTY = 1.2
AAD = b"header-bytes-of-typical-size-0123456789"
HEADER = {"recipient": "bob", "content_type": "application/cbor"}


def _raw(key: bytes, aad: bytes = AAD) -> Callable[[bytes], bytes]:
    cipher = AESGCM(key)

    def step(payload: bytes) -> bytes:
        nonce = os.urandom(12)
        return cipher.decrypt(nonce, cipher.encrypt(nonce, payload, aad), aad)

    return step


def _channel_aad_size(keyset: Keyset) -> int:
    """The associated data a channel frame of the benchmark carries (format byte,
    length and canonical header), with a sequence number of the size the timed runs
    reach, so that the raw baseline authenticates as many bytes."""
    frame = SecureChannel(keyset, MemoryStorage(), identity="alice").seal(HEADER, b"")
    # (sequence 1 takes 1 byte; the timed runs reach numbers above 65,535: 5 bytes)
    return 3 + int.from_bytes(frame[1:3], "big") + 4


def _raw_fixed(key: bytes) -> Callable[[bytes], bytes]:
    cipher = AESGCM(key)
    nonce = bytes(12)

    def step(payload: bytes) -> bytes:
        return cipher.decrypt(nonce, cipher.encrypt(nonce, payload, AAD), AAD)

    return step


def _ours(keyset: Keyset) -> Callable[[bytes], bytes]:
    aead = KeysetAead(keyset, MemoryStorage())

    def step(payload: bytes) -> bytes:
        return aead.decrypt(aead.encrypt(payload, AAD), AAD)

    return step


def _channel(keyset: Keyset) -> Callable[[bytes], bytes]:
    alice = SecureChannel(keyset, MemoryStorage(), identity="alice")
    bob = SecureChannel(keyset, MemoryStorage(), identity="bob")

    def step(payload: bytes) -> bytes:
        return bob.open(alice.seal(HEADER, payload))[1]

    return step


def _channel_sqlite(keyset: Keyset, tmp: Path) -> Callable[[bytes], bytes]:
    alice = SecureChannel(keyset, SQLiteStorage(tmp / "alice.db", synchronous="NORMAL"),
                          identity="alice")
    bob = SecureChannel(keyset, SQLiteStorage(tmp / "bob.db", synchronous="NORMAL"),
                        identity="bob")

    def step(payload: bytes) -> bytes:
        return bob.open(alice.seal(HEADER, payload))[1]

    return step


def _channel_in_txn(keyset: Keyset, unrelated: int) -> Callable[[bytes], bytes]:
    alice = SecureChannel(keyset, MemoryStorage(), identity="alice")
    store = MemoryStorage()
    for i in range(unrelated):
        store.put(f"unrelated/{i}", b"v" * 16)
    bob = SecureChannel(keyset, store, identity="bob")

    def step(payload: bytes) -> bytes:
        frame = alice.seal(HEADER, payload)
        with store.transaction():
            return bob.open(frame)[1]

    return step


def _per_op(step: Callable[[bytes], bytes], payload: bytes, n: int) -> float:
    t0 = time.perf_counter()
    for _ in range(n):
        step(payload)
    return (time.perf_counter() - t0) / n


def _per_op_both(
    step: Callable[[bytes], bytes], payload: bytes, n: int
) -> tuple[float, float]:
    """Seconds per op of one batch, wall clock and this thread's CPU time."""
    c0, t0 = time.thread_time(), time.perf_counter()
    for _ in range(n):
        step(payload)
    return (time.perf_counter() - t0) / n, (time.thread_time() - c0) / n


def _profile(step: Callable[[bytes], bytes], n: int, top: int = 12) -> dict[str, Any]:
    """cProfile of ``n`` seal+open steps at 1 KiB, timed in thread CPU time: the
    functions with the most own time, as shares of the total (the profiler's overhead
    inflates every Python call, so the shares overstate Python against C: read them as
    an order, not as a budget)."""
    payload = os.urandom(1024)
    for _ in range(200):
        step(payload)
    profiler = cProfile.Profile(time.thread_time)  # (CPU time: the machine is shared)
    profiler.enable()
    for _ in range(n):
        step(payload)
    profiler.disable()
    stats = pstats.Stats(profiler).stats  # type: ignore[attr-defined]
    rows = []
    for (path, line, name), (_, calls, own, _, _) in stats.items():
        label = name if path == "~" else f"{Path(path).name}:{line}({name})"
        rows.append((own, label, calls))
    total = sum(own for own, _, _ in rows) or 1.0
    rows.sort(reverse=True)
    return {
        "calls_per_message": round(sum(calls for _, _, calls in rows) / n, 1),
        "top_own_time_share": {
            label: round(own / total, 3) for own, label, _ in rows[:top]
        },
        "aesgcm_share": round(
            sum(own for own, label, _ in rows if "AESGCM" in label) / total, 3
        ),
    }


def run(quick: bool = False) -> dict[str, Any]:
    """Measure seal+open time per message for each size; return the ratios."""
    with tempfile.TemporaryDirectory(prefix="bench-crypto-") as d:
        return _run(quick, Path(d))


def _run(quick: bool, tmp: Path) -> dict[str, Any]:
    t_start = time.perf_counter()
    keyset = Keyset.generate(KeyKind.AES256_GCM)
    key = keyset.primary.material
    assert key is not None
    channel_aad = _channel_aad_size(keyset)
    impls = {
        "raw": _raw(key),
        "raw_channel_aad": _raw(key, os.urandom(channel_aad)),
        "raw_fixed_nonce": _raw_fixed(key),
        "ours": _ours(keyset),
        "channel": _channel(keyset),
        "channel_sqlite": _channel_sqlite(keyset, tmp),
    }
    # Many short interleaved batches: on a shared machine the best of each is the
    # closest to an undisturbed run (a preempted batch only loses).
    reps = 7 if quick else 31
    budget = 0.008 if quick else 0.015  # seconds per timed batch of the raw path
    sizes: dict[str, Any] = {}
    progress.plan(len(SIZES) + 2)
    for label, size in SIZES.items():
        progress.step(f"seal+open {label}: raw, ours, channel (memory, SQLite)")
        payload = os.urandom(size)
        for step in impls.values():
            assert step(payload) == payload
        # calibrate a batch size from the raw path
        n = max(20, int(budget / max(_per_op(impls["raw"], payload, 50), 1e-9)))
        best = {name: float("inf") for name in impls}
        cpu = {name: float("inf") for name in impls}
        for _ in range(reps):
            for name, step in impls.items():
                wall, used = _per_op_both(step, payload, n)
                best[name] = min(best[name], wall)
                cpu[name] = min(cpu[name], used)
        sizes[label] = {
            "bytes": size,
            "us_per_op": {k: round(v * 1e6, 3) for k, v in best.items()},
            "cpu_us_per_op": {k: round(v * 1e6, 3) for k, v in cpu.items()},
            "channel_ratio_cpu": round(cpu["raw_channel_aad"] / cpu["channel"], 3),
            "channel_sqlite_ratio_cpu": round(
                cpu["raw_channel_aad"] / cpu["channel_sqlite"], 3
            ),
            "ratio": round(best["raw"] / best["ours"], 3),
            "ratio_vs_fixed_nonce": round(best["raw_fixed_nonce"] / best["ours"], 3),
            "channel_ratio": round(best["raw_channel_aad"] / best["channel"], 3),
            "channel_sqlite_ratio": round(best["raw_channel_aad"] / best["channel_sqlite"], 3),
        }
    progress.step("store size: seal+open with 100,000 unrelated keys vs an empty store")
    payload = os.urandom(1024)
    stores = {"empty": _channel_in_txn(keyset, 0), "100k": _channel_in_txn(keyset, 100_000)}
    n = 500 if quick else 2000
    per = {name: float("inf") for name in stores}
    per_wall = {name: float("inf") for name in stores}
    for _ in range(reps):
        for name, step in stores.items():
            wall, used = _per_op_both(step, payload, n)
            per[name] = min(per[name], used)
            per_wall[name] = min(per_wall[name], wall)
    progress.step("profile: where a channel seal+open spends its time (cProfile)")
    (tmp / "profile").mkdir()
    profile = {
        "memory": _profile(_channel(keyset), 2000 if quick else 20000),
        "sqlite": _profile(_channel_sqlite(keyset, tmp / "profile"), 2000 if quick else 20000),
    }
    one_kib = sizes["1KiB"]
    memory, sqlite = one_kib["channel_ratio_cpu"], one_kib["channel_sqlite_ratio_cpu"]
    penalty = per["100k"] / per["empty"]
    return {
        "benchmark": "crypto_seal_open_vs_raw_aesgcm",
        "quick": quick,
        "ratios": {label: s["ratio"] for label, s in sizes.items()},
        "sizes": sizes,
        "target_ratio_1KiB": TARGET_1KIB,
        "meets_target": one_kib["ratio"] >= TARGET_1KIB,
        "channel_ratio_memory_1KiB": memory,
        "channel_ratio_sqlite_1KiB": sqlite,
        "channel_ratio_memory_1KiB_wall": one_kib["channel_ratio"],
        "channel_ratio_sqlite_1KiB_wall": one_kib["channel_sqlite_ratio"],
        "timing": "channel ratios and store_size_penalty in thread CPU time; *_wall and "
        "us_per_op in wall-clock time (best of the same batches)",
        "target_channel_memory": TARGET_CHANNEL_MEMORY,
        "target_channel_sqlite": TARGET_CHANNEL_SQLITE,
        "meets_channel_targets": memory >= TARGET_CHANNEL_MEMORY
        and sqlite >= TARGET_CHANNEL_SQLITE,
        "channel_aad_bytes": channel_aad,
        "profile_1KiB": profile,
        "store_size_penalty": round(penalty, 3),
        "store_size_cpu_us_per_op": {k: round(v * 1e6, 3) for k, v in per.items()},
        "store_size_penalty_wall": round(per_wall["100k"] / per_wall["empty"], 3),
        "target_store_size_penalty": TARGET_STORE_PENALTY,
        "meets_store_size_target": penalty <= TARGET_STORE_PENALTY,
        "seconds": round(time.perf_counter() - t_start, 2),
    }


# ---------------------------------------------------------------------- pytest-benchmark

_KEYSET = Keyset.generate(KeyKind.AES256_GCM)
_KEY = _KEYSET.primary.material or b""


@pytest.mark.parametrize("size", list(SIZES.values()), ids=list(SIZES))
@pytest.mark.parametrize("impl", ["raw", "ours", "channel"])
def test_seal_open(benchmark: Any, impl: str, size: int) -> None:
    step = {"raw": _raw(_KEY), "ours": _ours(_KEYSET), "channel": _channel(_KEYSET)}[impl]
    payload = os.urandom(size)
    benchmark.group = f"seal+open {size} B"
    assert benchmark(step, payload) == payload


def test_ratios(benchmark: Any) -> None:
    """One quick ``run`` with the ratios attached to the report."""
    result = benchmark.pedantic(run, args=(True,), rounds=1, iterations=1)
    benchmark.extra_info.update(result["ratios"])
    print(json.dumps(result, indent=2))
