"""``make mutate``: run the hand-written mutants of ``mutants/catalog.py``.

First each chosen area's tests run on the unmutated code and must pass. Then, for
each mutant: check the file is clean in git, replace the text, run the area's
tests (``pytest -x -q``, the CRDT area with ``VSM_PHOENIX_PURE=1``), restore the file
(always, also on Ctrl-C), and record *killed* (the tests failed), *survived* or
*stale* (the text is gone from the file). Prints one line per mutant and a table of
kill rates per area; ``--json PATH`` also writes the results. Run it on a clean tree:
it edits files in place, one at a time, and restores each.

    python -m mutants.run [--area raft] [--only 'vote'] [--json results.json] [--timeout 900]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from mutants.catalog import AREA_TESTS, EQUIVALENT, MUTANTS, Mutant

ROOT = Path(__file__).resolve().parent.parent


def _clean(path: str) -> bool:
    out = subprocess.run(["git", "status", "--porcelain", "--", path], cwd=ROOT,
                         capture_output=True, text=True, check=False)
    return out.returncode == 0 and not out.stdout.strip()


def _command(area: str) -> tuple[list[str], dict[str, str]]:
    env = dict(os.environ, HYPOTHESIS_PROFILE="dev")
    if area == "crdt":
        env["VSM_PHOENIX_PURE"] = "1"
    cmd = [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider",
           "-m", "not soak", *AREA_TESTS[area]]
    return cmd, env


def baseline(area: str, timeout: float) -> str | None:
    """Run the area's tests on the unmutated code: ``None`` when they pass, else why not
    (a mutant can only be judged by tests that pass without it)."""
    cmd, env = _command(area)
    missing = [p for p in AREA_TESTS[area] if not (ROOT / p).exists()]
    if missing:
        return f"missing test paths {missing}"
    try:
        proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True,
                              timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        return "the unmutated tests timed out"
    if proc.returncode != 0:
        return "the unmutated tests fail:\n" + (proc.stdout + proc.stderr)[-2000:]
    return None


def run_one(m: Mutant, timeout: float) -> dict[str, Any]:
    target = ROOT / m.path
    original = target.read_text(encoding="utf-8")
    row: dict[str, Any] = {"area": m.area, "path": m.path, "why": m.why}
    if m.find not in original:
        return {**row, "outcome": "stale"}
    cmd, env = _command(m.area)
    started = time.perf_counter()
    try:
        target.write_text(original.replace(m.find, m.replace, 1), encoding="utf-8")
        try:
            proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True,
                                  timeout=timeout, check=False)
            outcome = "survived" if proc.returncode == 0 else "killed"
            if proc.returncode not in (0, 1):  # collection or internal error
                outcome = "killed" if "Error" in proc.stdout + proc.stderr else outcome
        except subprocess.TimeoutExpired:
            outcome = "killed"  # a mutant that makes the tests hang is caught by CI's timeout
    finally:
        target.write_text(original, encoding="utf-8")
    return {**row, "outcome": outcome, "seconds": round(time.perf_counter() - started, 1)}


def summarise(rows: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    table: dict[str, dict[str, Any]] = {}
    for r in rows:
        t = table.setdefault(r["area"], {"killed": 0, "survived": 0, "stale": 0,
                                         "controls_survived": 0})
        if r["why"] in EQUIVALENT:
            t["controls_survived"] += r["outcome"] == "survived"
            continue
        t[r["outcome"]] += 1
    for t in table.values():
        counted = t["killed"] + t["survived"]
        t["kill_rate"] = round(t["killed"] / counted, 3) if counted else None
    return table


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mutants.run", description=__doc__)
    parser.add_argument("--area", action="append", help="only these areas (repeatable)")
    parser.add_argument("--only", action="append",
                        help="only mutants whose description contains this (repeatable)")
    parser.add_argument("--json", type=Path, help="write the results here")
    parser.add_argument("--timeout", type=float, default=900.0, help="seconds per mutant")
    args = parser.parse_args(argv)
    chosen = [m for m in MUTANTS if (not args.area or m.area in args.area)
              and (not args.only or any(o in m.why for o in args.only))]
    dirty = sorted({m.path for m in chosen if not _clean(m.path)})
    if dirty:
        print(f"mutate: refusing to edit files with uncommitted changes: {dirty}",
              file=sys.stderr)
        return 2
    for area in sorted({m.area for m in chosen}):
        broken = baseline(area, args.timeout)
        if broken is not None:
            print(f"mutate: area {area}: {broken}", file=sys.stderr)
            return 2
        print(f"baseline  {area:<9} the unmutated tests pass", flush=True)
    rows = []
    for m in chosen:
        row = run_one(m, args.timeout)
        rows.append(row)
        print(f"{row['outcome']:<9} {m.area:<9} {m.why}", flush=True)
    table = summarise(rows)
    print(f"\n{'area':<10} killed  survived  stale  kill rate")
    for area, t in table.items():
        rate = "n/a" if t["kill_rate"] is None else f"{100 * t['kill_rate']:.0f}%"
        print(f"{area:<10} {t['killed']:>6}  {t['survived']:>8}  {t['stale']:>5}  {rate}")
    if args.json:
        args.json.write_text(json.dumps({"mutants": rows, "areas": table}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
