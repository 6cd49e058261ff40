"""The evidence graph: what appending and verifying costs, and what sync sends.

1. **Append + verify.** ``N`` events (100 000; 5 000 with ``--quick``) by eight
   authors, signed beforehand, are added to a graph persisted in SQLite (WAL,
   ``synchronous=NORMAL``) in batches of 1 000: each event is decoded, its signature
   checked under the roster key, linked into the DAG and written. Side by side in the
   same run (batch by batch, interleaved, so both see the same machine load), the raw
   library verifies the same signatures over the same bytes with ``cryptography``'s
   Ed25519 and nothing else. Ratio = raw time / our time (goal
   >= 0.5: the signature should be the main cost). The reload from SQLite with
   re-verification and a full ``verify()`` pass are reported beside it.
2. **Reconcile.** Two replicas of those ``N`` events differ by 100 events (first: one
   side has 100 more; then: 50 new events on each side). Ratio = bytes of every sync
   message in both directions / bytes of the 100 differing events (goal <= 5).

``python -m bench --only evidence [--quick]``. Nothing here asserts a time.
"""

from __future__ import annotations

import random
import tempfile
import time
from pathlib import Path
from typing import Any

from bench import progress
from vsm_phoenix.crypto.identity import Identity
from vsm_phoenix.crypto.signature import SigningKey
from vsm_phoenix.ext.evidence import Event, EvidenceGraph, sync_pair
from vsm_phoenix.storage import SQLiteStorage

AUTHORS = 8
BATCH = 1000
VERIFY_TARGET = 0.5
SYNC_TARGET = 5.0


def make_events(n: int, identities: list[Identity], rng: random.Random, start_ms: int,
                heads: list[bytes] | None = None, last: dict[str, Event] | None = None,
                ) -> list[Event]:
    """``n`` events: each links its author's previous event and one other head."""
    heads = list(heads or [])
    last = dict(last or {})
    stamp = start_ms
    out = []
    for _ in range(n):
        who = rng.choice(identities)
        parents = {h for h in rng.sample(heads, min(2, len(heads)))}
        if who.principal in last:
            parents.add(last[who.principal].id)
        stamp += 1
        event = Event.create(who, {"op": "decide", "n": stamp, "note": "x" * 40},
                             physical_ms=stamp, parents=parents)
        heads = [h for h in heads if h not in parents] + [event.id]
        last[who.principal] = event
        out.append(event)
    return out


def run(quick: bool) -> dict[str, Any]:
    n = 5_000 if quick else 100_000
    rng = random.Random(17)
    identities = [Identity(f"agent-{i}", SigningKey.from_bytes(bytes([i + 1]) * 32))
                  for i in range(AUTHORS)]
    keys = {i.principal: i.verify_key for i in identities}
    progress.plan(6)
    progress.step(f"sign {n} events")
    events = make_events(n, identities, rng, 1_700_000_000_000)
    raws = [e.raw for e in events]
    event_bytes = sum(len(r) for r in raws) / n

    report: dict[str, Any] = {"events": n, "mean_event_bytes": round(event_bytes, 1)}
    with tempfile.TemporaryDirectory() as tmp:
        _measure(report, tmp, n, raws, events, identities, keys, rng)
    return report


def _measure(report: dict[str, Any], tmp: str, n: int, raws: list[bytes],
             events: list[Event], identities: list[Identity], keys: dict[str, Any],
             rng: random.Random) -> None:
    store = SQLiteStorage(Path(tmp) / "evidence.db", synchronous="NORMAL")
    progress.step("append + verify into SQLite, raw Ed25519 verify beside it")
    graph = EvidenceGraph(keys, storage=store)
    pub = {p: k._key for p, k in keys.items()}  # the cryptography object itself
    ours_s = raw_s = 0.0
    for k in range(0, n, BATCH):  # interleaved batch by batch: both see the same load
        t0 = time.perf_counter()
        for e in events[k:k + BATCH]:
            pub[e.author].verify(e.signature, e.body)
        t1 = time.perf_counter()
        graph.add_many(raws[k:k + BATCH])
        t2 = time.perf_counter()
        raw_s += t1 - t0
        ours_s += t2 - t1
    progress.step("verify pass")
    t0 = time.perf_counter()
    check = graph.verify()
    verify_pass_s = time.perf_counter() - t0
    progress.step("reload from SQLite")
    t0 = time.perf_counter()
    reloaded, reload_check = EvidenceGraph.open(keys, store)
    reload_s = time.perf_counter() - t0
    ratio = raw_s / ours_s
    report["append_verify"] = {
    "ours_s": round(ours_s, 3),
    "raw_ed25519_verify_s": round(raw_s, 3),
    "ours_us_per_event": round(ours_s / n * 1e6, 1),
    "raw_us_per_event": round(raw_s / n * 1e6, 1),
    "ratio_raw_over_ours": round(ratio, 3),
    "target_ratio": VERIFY_TARGET,
    "meets_target": ratio >= VERIFY_TARGET,
    "verify_pass_s": round(verify_pass_s, 3),
    "reload_with_signatures_s": round(reload_s, 3),
    "reload_ok": reload_check.complete and reloaded == graph and check.complete,
    }

    progress.step("reconcile: one side 100 ahead")
    heads = graph.heads()
    last = {e.author: e for e in events}
    extra = make_events(100, identities, rng, 1_800_000_000_000, heads, last)
    a = graph
    b = reloaded
    a.add_many(extra)
    stats = sync_pair(a, b)
    diff = sum(len(e.raw) for e in extra)
    ahead = {
    "messages": stats.messages, "bytes_sent": stats.bytes_sent,
    "events_sent": stats.events_sent, "diff_bytes": diff,
    "ratio_bytes_over_diff": round(stats.bytes_sent / diff, 3),
    "converged": a == b,
    }
    progress.step("reconcile: 50 new on each side")
    heads = a.heads()
    last.update({e.author: e for e in extra})
    left = make_events(50, identities[:4], rng, 1_900_000_000_000, heads, last)
    right = make_events(50, identities[4:], rng, 1_900_000_000_000, heads, last)
    a.add_many(left)
    b.add_many(right)
    stats = sync_pair(a, b)
    diff = sum(len(e.raw) for e in left + right)
    concurrent = {
    "messages": stats.messages, "bytes_sent": stats.bytes_sent,
    "events_sent": stats.events_sent, "diff_bytes": diff,
    "ratio_bytes_over_diff": round(stats.bytes_sent / diff, 3),
    "converged": a == b and a.verify().complete,
    }
    worst = max(ahead["ratio_bytes_over_diff"], concurrent["ratio_bytes_over_diff"])
    report["reconcile"] = {
    "one_side_ahead": ahead,
    "concurrent": concurrent,
    "target_ratio": SYNC_TARGET,
    "meets_target": worst <= SYNC_TARGET,
    }
    store.close()


if __name__ == "__main__":
    import json
    import sys

    print(json.dumps(run("--quick" in sys.argv), indent=2))
