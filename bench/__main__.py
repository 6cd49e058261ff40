"""``python -m bench [--quick] [--only NAME ...] [--out DIR] [--no-progress]``: run the
benchmark suites (``vsm-phoenix bench`` is the same, with the same options).

Every ``bench/bench_*.py`` module exposing ``run(quick: bool) -> dict`` is a suite
(``crdt``, ``crypto``, ``sync``, ``linearizability``, ...). The suites run one after the
other in this process, each showing its progress measurement by measurement
(:mod:`bench.progress`: a bar on a terminal, a line per measurement otherwise); the
table printed at the end lists each suite's ratios and targets, and the full report
goes to ``bench/results/<timestamp>.json``. A suite that fails is reported as such and
does not stop the others.
"""

from __future__ import annotations

import argparse
import importlib
import json
import math
import platform
import sys
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
        if any(w in low for w in ("ratio", "target", "meets", "skipped", "speedup", "penalty")):
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


def _mode(no_progress: bool) -> str:
    if no_progress:
        return "quiet"
    return "bar" if sys.stderr.isatty() else "lines"


def run_suites(args: argparse.Namespace) -> int:
    """Run the suites the options ask for; print the table; write the JSON report."""
    from bench import progress

    names = discover()
    if args.only:
        unknown = [n for n in args.only if n not in names]
        if unknown:
            print(f"bench: unknown suite(s) {', '.join(unknown)} (have: {', '.join(names)})",
                  file=sys.stderr)
            return 2
        names = [n for n in names if n in args.only]

    from vsm_phoenix.crdt import BACKEND

    out_dir = args.out or RESULTS
    started = datetime.now(UTC)
    reports: dict[str, dict[str, Any]] = {}
    mode = _mode(args.no_progress)
    if mode != "bar":
        print(f"bench: {len(names)} suite(s): {', '.join(names)}"
              f"{' (quick)' if args.quick else ''}", file=sys.stderr, flush=True)
    for index, name in enumerate(names, 1):
        reporter = progress.Reporter(f"[{index}/{len(names)}] {name}", mode)
        failed = False
        with progress.reporting(reporter):
            try:
                run = _load(name)
                if run is None:
                    reporter.close()
                    continue
                reports[name] = run(args.quick)
            except Exception:  # one broken suite must not hide the others
                reports[name] = {"error": traceback.format_exc()}
                failed = True
        seconds = reporter.close(failed)
        reports[name].setdefault("seconds", round(seconds, 1))

    document = {
        "started": started.isoformat(),
        "quick": args.quick,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "crdt_backend": BACKEND,
        "suites": reports,
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{started.strftime('%Y%m%dT%H%M%SZ')}.json"
    path.write_text(json.dumps(document, indent=2, default=str) + "\n")
    print()
    print_table(reports)
    print(f"\nfull report: {path}")
    return 1 if any("error" in r for r in reports.values()) else 0


def main(argv: list[str] | None = None) -> int:
    """``python -m bench``: the options of ``vsm-phoenix bench`` (one parser)."""
    if str(HERE.parent) not in sys.path:
        sys.path.insert(0, str(HERE.parent))
    from vsm_phoenix.cli.base import ArgumentParser
    from vsm_phoenix.cli.bench import add_options

    parser = ArgumentParser(prog="python -m bench", description=__doc__.split("\n\n")[0])
    add_options(parser)
    return run_suites(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
