"""Mutation fuzzer for every decoder of outside bytes (``make fuzz``).

For each target in :data:`hostile_targets.REGISTRY` it decodes the seeds, a fixed
hostile corpus (:func:`hostile_inputs.corpus`: bombs, deep nesting, huge lengths and
integers, alone and spliced into the seeds) and then ``--inputs`` mutated inputs
(:class:`hostile_inputs.Mutator`), and judges each outcome:

* **accepted** (the decoder returned) or **refused** with a documented error: fine;
* **unfit**: the harness could not shape the input for the decoder (not counted as
  reaching it);
* anything else is a **failure**: another exception, or a refused input that changed
  the subject's state. Failures are printed with their bytes (hex) and written under
  ``--save``; the exit status is 1 when there is any, except in a target whose
  ``known`` note says its failure is reported and not yet fixed.

Cost is measured per input, against its size: CPU time (``time.process_time_ns``) on
every input except the sampled ones, and peak traced memory (``tracemalloc``) on every
``--sample``-th input, which runs with tracing on instead. The inputs with the highest
CPU per byte and in absolute terms are then measured again (best of three for CPU,
traced for memory). The report states, per decoder, an affine bound fitted to what
was measured: ``cost <= A + B * len(input)``, where ``A`` is the highest cost of an
input shorter than ``--small`` bytes (fixed overhead: an exception, a node step) and
``B`` the highest ``(cost - A) / len`` over the longer ones, and names the input that
sets ``B`` (the worst input found).

Usage::

    python tests/hostile/fuzz.py                     # every target, 100,000 inputs each
    python tests/hostile/fuzz.py --inputs 2000 --only envelope crdt.decode
    python tests/hostile/fuzz.py --list

Extending: register a :class:`hostile_targets.Target` (see that module).
"""

from __future__ import annotations

import argparse
import fnmatch
import heapq
import json
import os
import random
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import attrs

sys.path.insert(0, str(Path(__file__).resolve().parent))

import hostile_targets
from hostile_inputs import Mutator, corpus
from hostile_targets import REGISTRY, Target, run_one

__all__ = ["Measured", "Report", "fuzz_target", "main"]

DEFAULT_INPUTS = 100_000


@attrs.define
class Measured:
    """One measured input: its size, CPU ns and/or peak traced bytes."""

    size: int
    cpu_ns: int | None = None
    peak: int | None = None
    label: str = ""
    data: bytes = b""


@attrs.define
class Report:
    """What one target's run found."""

    name: str
    inputs: int = 0
    reached: int = 0
    outcomes: Counter[str] = attrs.field(factory=Counter)
    failures: list[dict[str, Any]] = attrs.field(factory=list)
    failure_count: int = 0
    cpu: list[Measured] = attrs.field(factory=list)
    mem: list[Measured] = attrs.field(factory=list)
    seconds: float = 0.0
    max_size: int = 0

    def bound(self, kind: str, small: int) -> dict[str, Any]:
        """``A`` (worst cost under ``small`` bytes), ``B`` (worst excess per byte over
        the rest) and the input that sets ``B``."""
        rows = [(m.size, m.cpu_ns if kind == "cpu" else m.peak, m)
                for m in (self.cpu if kind == "cpu" else self.mem)]
        rows = [(s, c, m) for s, c, m in rows if c is not None]
        fixed = max((c for s, c, _ in rows if s < small), default=0)
        big = [((c - fixed) / s, s, c, m) for s, c, m in rows if s >= small]
        slope, size, cost, m = max(big, key=lambda t: t[:3]) if big else (0.0, 0, 0, None)
        return {"fixed": fixed, "per_byte": max(0.0, slope), "worst_size": size,
                "worst_cost": cost, "worst_label": m.label if m else "",
                "worst_hex": m.data[:256].hex() if m else ""}


def _inputs(target: Target, count: int, seed: int, with_corpus: bool = True,
            ) -> Iterator[tuple[str, bytes]]:
    seeds = list(target.seeds())
    for i, s in enumerate(seeds):
        yield f"seed-{i}", s
    if with_corpus:
        yield from corpus(target.grammar, seeds)
    mutate = Mutator(seeds, random.Random(f"{seed}/{target.name}"), target.grammar)
    for _ in range(count):
        yield mutate()


def fuzz_target(target: Target, count: int, *, seed: int = 0, sample: int = 64,
                keep: int = 8, progress: bool = True, with_corpus: bool = True,
                max_failures: int = 20) -> Report:
    """Run ``count`` mutated inputs (after the seeds and, unless ``with_corpus`` is
    false, the hostile corpus) through ``target``."""
    report = Report(target.name)
    subject = target.subject()
    stateful = hostile_targets.is_stateful(subject)
    worst_ratio: list[tuple[float, int, Measured, bytes]] = []  # min-heaps: worst CPU
    worst_abs: list[tuple[int, int, Measured, bytes]] = []
    t_start = time.monotonic()
    seeds = list(target.seeds())
    for data in seeds:  # warm up: lazy imports, caches, first-call costs
        subject.reset()
        run_one(target, subject, data, stateful)
    subject.reset()
    fixed = len(seeds) + (len(corpus(target.grammar, seeds)) if with_corpus else 0)
    bar = _progress(target.name, count, progress)
    for i, (label, data) in enumerate(_inputs(target, count, seed, with_corpus)):
        if (target.reset_every and i % target.reset_every == 0) or i < fixed:
            subject.reset()
        size = len(data)
        report.max_size = max(report.max_size, size)
        if i < fixed or i % sample:
            outcome, detail, cpu = run_one(target, subject, data, stateful, "cpu")
            m = Measured(size, cpu_ns=cpu, label=label)
            report.cpu.append(m)
            _push(worst_ratio, (cpu / max(size, 1), i, m, data), keep)
            _push(worst_abs, (cpu, i, m, data), keep)
        if i < fixed or not i % sample:
            if i < fixed:
                subject.reset()
            outcome, detail, peak = run_one(target, subject, data, stateful, "mem")
            report.mem.append(Measured(size, peak=peak, label=label))
        report.inputs += 1
        report.outcomes[outcome.split(":")[0] if outcome != "failure" else outcome] += 1
        if outcome.startswith("refused"):
            report.outcomes[outcome] += 1
        if outcome != "unfit":
            report.reached += 1
        if outcome == "failure":
            report.failure_count += 1
            if len(report.failures) < max_failures:
                report.failures.append({"label": label, "detail": detail, "hex": data.hex()})
        bar.update(1, report.failure_count)
    bar.close()
    # The worst inputs again (a first measurement may include a garbage collection or
    # a cold cache): CPU becomes the best of that and three more runs, and the input
    # is traced for memory too. The subject is reset first, as before any input.
    again = {id(t[2]): t for t in worst_ratio + worst_abs}
    for _, _, m, data in again.values():
        m.data = data
        for _ in range(3):
            subject.reset()
            m.cpu_ns = min(m.cpu_ns or 0, run_one(target, subject, data, stateful)[2])
        subject.reset()
        peak = run_one(target, subject, data, stateful, "mem")[2]
        report.mem.append(Measured(m.size, peak=peak, label=m.label, data=data))
    report.seconds = time.monotonic() - t_start
    return report


def _push(heap: list[Any], item: tuple[Any, int, Measured, bytes], keep: int) -> None:
    if len(heap) < keep:
        heapq.heappush(heap, item)
    elif item[:2] > heap[0][:2]:
        heapq.heapreplace(heap, item)


class _Bar:
    """tqdm when available, else a progress line every few seconds."""

    def __init__(self, name: str, total: int, enabled: bool) -> None:
        self.name, self.total, self.enabled, self.n = name, total, enabled, 0
        self._tqdm: Any = None
        self._last = 0.0
        if enabled:
            try:
                from tqdm import tqdm

                self._tqdm = tqdm(total=total, desc=f"{name:<36}", unit="in", leave=False,
                                  mininterval=1.0, file=sys.stderr)
            except ImportError:
                pass

    def update(self, n: int, failures: int) -> None:
        self.n += n
        if not self.enabled:
            return
        if self._tqdm is not None:
            self._tqdm.update(n)
            if failures and self.n % 1000 == 0:
                self._tqdm.set_postfix(failures=failures)
            return
        now = time.monotonic()
        if now - self._last > 5:
            self._last = now
            print(f"  {self.name}: {self.n}/{self.total} inputs, {failures} failures",
                  file=sys.stderr, flush=True)

    def close(self) -> None:
        if self._tqdm is not None:
            self._tqdm.close()


def _progress(name: str, total: int, enabled: bool) -> _Bar:
    return _Bar(name, total, enabled)


def _fmt_report(r: Report, small: int) -> str:
    mem, cpu = r.bound("mem", small), r.bound("cpu", small)
    refused = sum(v for k, v in r.outcomes.items() if k.startswith("refused:"))
    return (
        f"{r.name:<38} {r.inputs:>8} {r.reached:>8} {r.outcomes['accepted']:>8} "
        f"{refused:>8} {r.failure_count:>5}  "
        f"{mem['fixed'] / 1024:>7.1f}KiB+{mem['per_byte']:>7.1f}B/B  "
        f"{cpu['fixed'] / 1e3:>7.0f}us+{cpu['per_byte'] / 1e3:>6.2f}us/B  "
        f"{r.max_size:>8}B {r.seconds:>6.0f}s"
    )


HEADER = (f"{'decoder':<38} {'inputs':>8} {'reached':>8} {'accepted':>8} {'refused':>8} "
          f"{'fail':>5}  {'memory A + B*len':>21}  {'CPU A + B*len':>21}  {'largest':>9} "
          f"{'time':>6}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--inputs", type=int, default=DEFAULT_INPUTS,
                    help="mutated inputs per decoder (default 100,000)")
    ap.add_argument("--only", nargs="*", default=[],
                    help="targets whose name contains one of these (or matches a glob)")
    ap.add_argument("--seed", type=int, default=0, help="mutation seed (runs replay exactly)")
    ap.add_argument("--sample", type=int, default=64,
                    help="trace memory on every SAMPLE-th input (default 64)")
    ap.add_argument("--small", type=int, default=256,
                    help="inputs shorter than this set the fixed cost A (default 256 bytes)")
    ap.add_argument("--json", type=Path, help="write the full report as JSON here")
    ap.add_argument("--save", type=Path, default=Path(".fuzz-failures"),
                    help="directory for failing inputs (default .fuzz-failures)")
    ap.add_argument("--quiet", action="store_true", help="no progress bars")
    ap.add_argument("--list", action="store_true", help="list the targets and exit")
    args = ap.parse_args(argv)
    names = [n for n in REGISTRY if not args.only or any(
        p in n or fnmatch.fnmatch(n, p) for p in args.only)]
    if args.list:
        for n in REGISTRY:
            t = REGISTRY[n]
            print(f"{n:<38} grammar={t.grammar:<5} errors="
                  f"{','.join(e.__name__ for e in t.errors) or '(none: total)'}")
        return 0
    if not names:
        print(f"no target matches {args.only}", file=sys.stderr)
        return 2
    print(f"fuzzing {len(names)} decoders, {args.inputs} mutated inputs each "
          f"(seed {args.seed}, memory traced on 1/{args.sample}, pid {os.getpid()})")
    print(HEADER)
    reports = []
    for name in names:
        r = fuzz_target(REGISTRY[name], args.inputs, seed=args.seed, sample=args.sample,
                        progress=not args.quiet)
        reports.append(r)
        print(_fmt_report(r, args.small), flush=True)
        for f in r.failures[:3]:
            print(f"    FAILURE [{f['label']}] {f['detail']}\n      input: {f['hex'][:400]}")
        if r.failures:
            args.save.mkdir(parents=True, exist_ok=True)
            for k, f in enumerate(r.failures):
                (args.save / f"{name}-{k}.bin").write_bytes(bytes.fromhex(f["hex"]))
    print("\nWorst input per decoder (the one that sets B):")
    for r in reports:
        mem, cpu = r.bound("mem", args.small), r.bound("cpu", args.small)
        print(f"  {r.name:<38} memory {mem['per_byte']:.1f} B/B on {mem['worst_size']} B "
              f"({mem['worst_label']}); CPU {cpu['per_byte'] / 1e3:.3f} us/B on "
              f"{cpu['worst_size']} B ({cpu['worst_label']}, {cpu['worst_cost'] / 1e6:.2f} ms)")
    total_fail = sum(r.failure_count for r in reports)
    known = {r.name: REGISTRY[r.name].known for r in reports
             if r.failure_count and REGISTRY[r.name].known}
    for name, why in known.items():
        print(f"  known failure in {name}: {why}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({
            "inputs_per_decoder": args.inputs, "seed": args.seed, "small": args.small,
            "decoders": {r.name: {
                "inputs": r.inputs, "reached": r.reached, "outcomes": dict(r.outcomes),
                "failures": r.failures, "failure_count": r.failure_count,
                "memory_bytes": r.bound("mem", args.small),
                "cpu_ns": r.bound("cpu", args.small), "seconds": r.seconds,
                "largest_input": r.max_size,
            } for r in reports},
        }, indent=2, sort_keys=True))
    print(f"\n{total_fail} failures in {sum(r.inputs for r in reports)} inputs"
          f" ({sum(r.failure_count for r in reports if r.name in known)} in targets with a"
          f" known, reported failure)")
    return 1 if any(r.failure_count for r in reports if r.name not in known) else 0


if __name__ == "__main__":
    sys.exit(main())
