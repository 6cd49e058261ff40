"""``vsm-phoenix check HISTORY``: check a history for linearizability
(:func:`vsm_phoenix.verify.check_history`).

Exit status: 0 linearizable, 1 not linearizable, 2 bad usage or a malformed history,
3 unknown (the time budget or memo cap ran out).
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Final

from vsm_phoenix.cli.base import usage_exit
from vsm_phoenix.errors import DecodeError, InvalidArgument

__all__ = ["EXIT_ILLEGAL", "EXIT_UNKNOWN", "main_check", "register", "run"]

PROG = "vsm-phoenix check"
EXIT_ILLEGAL: Final = 1
EXIT_UNKNOWN: Final = 3


def register(sub: Any) -> None:
    from vsm_phoenix.verify.linearizability import DEFAULT_MAX_CACHE_ENTRIES, FORMATS

    p = sub.add_parser(
        "check", help="check a history for linearizability",
        description="Check a history for linearizability. Exit status: 0 linearizable, "
        "1 not linearizable, 2 bad usage or malformed history, 3 unknown (budget ran out).",
    )
    p.add_argument("history", help="history file (use - for stdin)")
    p.add_argument("--model", choices=("kv", "register"),
                   help="model to check against (default: the one the history format implies)")
    p.add_argument("--format", choices=FORMATS, default="auto", help="history format")
    p.add_argument("--timeout-s", type=float, default=60.0,
                   help="wall-clock budget in seconds (default 60; 0 = no limit)")
    p.add_argument("--max-cache", type=int, default=DEFAULT_MAX_CACHE_ENTRIES,
                   help="memo entries per partition before giving up (default %(default)s)")
    p.add_argument("--html", metavar="OUT", help="write an HTML timeline to OUT")
    p.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                   help="report each checked partition on stderr (default: when stderr is "
                        "a terminal)")
    p.set_defaults(run=run)


def main_check(argv: list[str]) -> int:
    """``vsm-phoenix check ...`` with ``argv`` (the arguments after ``check``)."""
    from vsm_phoenix.cli import main

    try:
        return main(["check", *argv])
    except SystemExit as exc:  # argparse: --help (0) or a usage error (2)
        return exc.code if isinstance(exc.code, int) else 2


def _report_progress(started: float) -> Callable[[int, int, Any], None]:
    from vsm_phoenix.verify import Verdict

    def report(done: int, total: int, result: Any) -> None:
        print(
            f"\r  partition {done}/{total}: {len(result.operations)} ops, "
            f"{result.verdict.name}, {result.steps} steps, "
            f"{time.monotonic() - started:.1f}s elapsed",
            end="\n" if done == total or result.verdict is not Verdict.OK else "",
            file=sys.stderr,
            flush=True,
        )

    return report


def run(args: argparse.Namespace) -> int:
    from vsm_phoenix.verify import Verdict, check_history
    from vsm_phoenix.verify.linearizability import load_history

    try:
        source = sys.stdin.buffer if args.history == "-" else None
        data = source.read() if source is not None else Path(args.history).read_bytes()
    except OSError as exc:
        return usage_exit(PROG, f"cannot read {args.history}: {exc}")
    try:
        history = load_history(data, args.format)
        if args.model is not None and args.model != history.model.name:
            raise InvalidArgument(
                f"this history is for the {history.model.name!r} model, not {args.model!r}"
            )
        show = sys.stderr.isatty() if args.progress is None else args.progress
        result = check_history(
            history,
            timeout=None if args.timeout_s <= 0 else args.timeout_s,
            max_cache_entries=args.max_cache,
            progress=_report_progress(time.monotonic()) if show else None,
        )
    except (DecodeError, ValueError, TypeError) as exc:
        return usage_exit(PROG, f"{args.history}: {exc}")
    print(result.summary())
    if args.html:
        try:
            Path(args.html).write_text(result.html(title=f"check {args.history}"), "utf-8")
        except OSError as exc:
            return usage_exit(PROG, f"cannot write {args.html}: {exc}")
        print(f"timeline written to {args.html}")
    return {Verdict.OK: 0, Verdict.ILLEGAL: EXIT_ILLEGAL, Verdict.UNKNOWN: EXIT_UNKNOWN}[
        result.verdict
    ]
