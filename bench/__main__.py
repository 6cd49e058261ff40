"""``python -m bench [--quick] [--only NAME ...] [--out DIR]``: run the benchmark suites.

Every ``bench/bench_*.py`` module exposing ``run(quick: bool) -> dict`` is a suite
(``crdt``, ``crypto``, ``sync``, ``linearizability``, ...). The suites run one after the
other in this process; the table printed at the end lists each suite's ratios and
targets, and the full report goes to ``bench/results/<timestamp>.json``. A suite that
fails is reported as such and does not stop the others. ``main(argv)`` is what
``vsm-phoenix bench`` calls.
"""

from __future__ import annotations

import argparse
import importlib
import json
import math
import platform
import sys
import time
import traceback
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"

#: Suites in the order they run; any other ``bench_*.py`` with ``run`` follows.
PREFERRED = ["crdt", "sync", "crypto", "linearizability"]


def discover() -> list[str]:
    """Names of the suites present (``bench_<name>.py``)."""
    found = sorted(p.stem.removeprefix("bench_") for p in HERE.glob("bench_*.py"))
    return [n for n in PREFERRED if n in found] + [n for n in found if n not in PREFERRED]


def _load(name: str) -> Callable[[bool], dict[str, Any]] | None:
    if str(HERE.parent) not in sys.path:
        sys.path.insert(0, str(HERE.parent))
    module = importlib.import_module(f"bench.bench_{name}")
    run = getattr(module, "run", None)
    return run if callable(run) else None


def _progress(items: list[str]) -> Any:
    try:
        tqdm = importlib.import_module("tqdm").tqdm
        return tqdm(items, desc="bench", unit="suite", file=sys.stderr)
    except ImportError:  # pragma: no cover - tqdm is in the bench extra
        return items


def _flatten(prefix: str, value: Any) -> Iterable[tuple[str, Any]]:
    if isinstance(value, dict):
        for k, v in value.items():
            yield from _flatten(f"{prefix}.{k}" if prefix else str(k), v)
    else:
        yield prefix, value


def _ratio_lines(name: str, report: dict[str, Any]) -> list[tuple[str, str]]:
    """The lines of the table for one suite: its own summary when it has one, else
    every ratio, target and verdict found in its report."""
    if name == "crdt":
        from bench import bench_crdt

        return bench_crdt.summary(report)
    lines = []
    for key, value in _flatten("", report):
        low = key.lower()
        if any(w in low for w in ("ratio", "target", "meets", "skipped", "speedup")):
            if isinstance(value, float):
                value = f"{value:.3f}" if math.isfinite(value) else str(value)
            lines.append((key, str(value)))
    if not lines:
        lines = [(k, str(v)) for k, v in _flatten("", report) if not isinstance(v, list)][:12]
    return lines


def print_table(reports: dict[str, dict[str, Any]], out: Any = None) -> None:
    out = out or sys.stdout
    rows: list[tuple[str, str, str]] = []
    for name, report in reports.items():
        if "error" in report:
            rows.append((name, "ERROR", report["error"].splitlines()[-1]))
            continue
        for label, value in _ratio_lines(name, report):
            rows.append((name, label, value))
    w0 = max([len(r[0]) for r in rows] + [5])
    w1 = min(max([len(r[1]) for r in rows] + [6]), 72)
    print(f"{'suite':<{w0}}  {'metric':<{w1}}  value", file=out)
    print(f"{'-' * w0}  {'-' * w1}  {'-' * 40}", file=out)
    for suite, label, value in rows:
        print(f"{suite:<{w0}}  {label:<{w1}}  {value}", file=out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="a short pass (about a minute)")
    parser.add_argument(
        "--only",
        action="append",
        metavar="NAME",
        help=f"run only this suite (repeatable); one of: {', '.join(discover())}",
    )
    parser.add_argument("--out", type=Path, default=RESULTS, help="where the JSON goes")
    args = parser.parse_args(argv)

    names = discover()
    if args.only:
        unknown = [n for n in args.only if n not in names]
        if unknown:
            parser.error(f"unknown suite(s) {unknown}; have {names}")
        names = [n for n in names if n in args.only]

    from vsm_phoenix.crdt import BACKEND

    started = datetime.now(UTC)
    reports: dict[str, dict[str, Any]] = {}
    for name in _progress(names):
        t0 = time.perf_counter()
        try:
            run = _load(name)
            if run is None:
                continue
            reports[name] = run(args.quick)
        except Exception:  # one broken suite must not hide the others
            reports[name] = {"error": traceback.format_exc()}
        reports[name].setdefault("seconds", round(time.perf_counter() - t0, 1))

    document = {
        "started": started.isoformat(),
        "quick": args.quick,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "crdt_backend": BACKEND,
        "suites": reports,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"{started.strftime('%Y%m%dT%H%M%SZ')}.json"
    path.write_text(json.dumps(document, indent=2, default=str) + "\n")
    print_table(reports)
    print(f"\nfull report: {path}")
    return 1 if any("error" in r for r in reports.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
