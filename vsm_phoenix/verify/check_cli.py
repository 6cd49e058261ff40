"""``vsm-phoenix check HISTORY``: the linearizability checker on the command line.

Exit status: 0 linearizable, 1 not linearizable, 2 bad usage or a malformed history,
3 unknown — the time or memory budget ran out. Running out is never a traceback and
never "not linearizable": a ``MemoryError`` anywhere (reading, parsing, checking)
exits 3 with a one-line explanation.

Budgets: ``--timeout SECONDS`` (default 60; ``0`` = no limit; negative, NaN or
infinite values are usage errors) and ``--max-memory SIZE`` (bytes of resident memory
for the whole process, e.g. ``1G``, ``512M``; default half of what the machine or
container allows), both measured while the search runs. ``--max-cache N`` also caps
the memo entries per partition. ``--html OUT`` draws the result as a timeline
(:func:`~vsm_phoenix.verify.render.render_html`).
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Final

from vsm_phoenix.errors import DecodeError, InvalidArgument
from vsm_phoenix.verify.budget import default_memory_limit, parse_duration, parse_size
from vsm_phoenix.verify.linearizability import (
    FORMATS,
    PartitionResult,
    Verdict,
    check_history,
    load_history,
)
from vsm_phoenix.verify.render import render_html

__all__ = ["EXIT_ILLEGAL", "EXIT_OK", "EXIT_UNKNOWN", "EXIT_USAGE", "main_check"]

EXIT_OK: Final = 0
EXIT_ILLEGAL: Final = 1
EXIT_USAGE: Final = 2
EXIT_UNKNOWN: Final = 3


def _size(text: str) -> int:
    try:
        return parse_size(text)
    except InvalidArgument as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _duration(text: str) -> float | None:
    try:
        return parse_duration(text)
    except InvalidArgument as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="vsm-phoenix check",
        description="Check a history for linearizability. Exit status: 0 linearizable, "
        "1 not linearizable, 2 bad usage or malformed history, 3 unknown (time or "
        "memory budget ran out).",
    )
    parser.add_argument("history", help="history file (use - for stdin)")
    parser.add_argument(
        "--model",
        choices=("kv", "register"),
        help="model to check against (default: the one the history format implies)",
    )
    parser.add_argument("--format", choices=FORMATS, default="auto", help="history format")
    parser.add_argument(
        "--timeout",
        type=_duration,
        default=60.0,
        help="wall-clock budget in seconds (default 60; 0 = no limit)",
    )
    parser.add_argument(
        "--max-memory",
        type=_size,
        default=None,
        metavar="SIZE",
        help="resident-memory budget for the whole process, e.g. 1G or 512M "
        "(default: half of the machine's or container's memory)",
    )
    parser.add_argument(
        "--max-cache",
        type=_positive,
        default=None,
        help="memo entries per partition before giving up on it (default: no cap)",
    )
    parser.add_argument("--html", metavar="OUT", help="write an HTML timeline to OUT")
    parser.add_argument(
        "--progress",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="report each checked partition on stderr (default: when stderr is a terminal)",
    )
    return parser


def _report_progress(started: float) -> Callable[[int, int, PartitionResult], None]:
    def report(done: int, total: int, result: PartitionResult) -> None:
        print(
            f"\r  partition {done}/{total}: {len(result.operations)} ops, "
            f"{result.verdict.name}, {result.steps} steps, "
            f"{time.monotonic() - started:.1f}s elapsed",
            end="\n" if done == total or result.verdict is not Verdict.OK else "",
            file=sys.stderr,
            flush=True,
        )

    return report


def main_check(argv: list[str]) -> int:
    """Entry point of ``vsm-phoenix check``; returns the exit status (never exits)."""
    parser = _parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse reports and exits on bad usage or --help
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    # The time budget starts now: reading and parsing the history count against it.
    deadline = None if args.timeout is None else time.monotonic() + args.timeout
    try:
        return _run(args, deadline)
    except MemoryError:
        print("UNKNOWN: out of memory (raise --max-memory or the process's memory limit)")
        return EXIT_UNKNOWN


def _run(args: argparse.Namespace, deadline: float | None) -> int:
    try:
        source = sys.stdin.buffer if args.history == "-" else None
        data = source.read() if source is not None else Path(args.history).read_bytes()
    except OSError as exc:
        print(f"vsm-phoenix check: cannot read {args.history}: {exc}", file=sys.stderr)
        return EXIT_USAGE
    try:
        history = load_history(data, args.format)
        del data
        if args.model is not None and args.model != history.model.name:
            raise InvalidArgument(
                f"this history is for the {history.model.name!r} model, not {args.model!r}"
            )
        show = sys.stderr.isatty() if args.progress is None else args.progress
        max_memory = args.max_memory if args.max_memory is not None else default_memory_limit()
        result = check_history(
            history,
            timeout=None if deadline is None else max(0.0, deadline - time.monotonic()),
            max_memory=max_memory,
            max_cache_entries=args.max_cache,
            progress=_report_progress(time.monotonic()) if show else None,
        )
    except (DecodeError, ValueError, TypeError) as exc:
        print(f"vsm-phoenix check: {args.history}: {exc}", file=sys.stderr)
        return EXIT_USAGE
    print(result.summary())
    if args.html:
        try:
            Path(args.html).write_text(render_html(result, title=f"check {args.history}"),
                                       "utf-8")
        except OSError as exc:
            print(f"vsm-phoenix check: cannot write {args.html}: {exc}", file=sys.stderr)
            return EXIT_USAGE
        print(f"timeline written to {args.html}")
    return {Verdict.OK: EXIT_OK, Verdict.ILLEGAL: EXIT_ILLEGAL, Verdict.UNKNOWN: EXIT_UNKNOWN}[
        result.verdict
    ]
