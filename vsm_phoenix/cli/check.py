"""``vsm-phoenix check HISTORY``: check a history for linearizability
(:func:`vsm_phoenix.verify.check_history`).

Exit status: 0 linearizable, 1 not linearizable, 2 bad usage or a malformed history,
3 unknown — the time or memory budget ran out. Running out is never a traceback and
never "not linearizable": a ``MemoryError`` anywhere (reading, parsing, checking)
exits 3 with a one-line explanation.

Budgets: ``--timeout-s SECONDS`` (also ``--timeout``; default 60, ``0`` = no limit;
negative, NaN or infinite values are usage errors), counted from the start, reading
included; ``--max-memory SIZE`` (resident memory of the whole process, e.g. ``1G``,
``512M``; default half of what the machine or container allows), measured while the
search runs. ``--max-cache N`` also caps the memo entries per partition. ``--html
OUT`` draws the result (:func:`vsm_phoenix.verify.render_html`).
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


def _size(text: str) -> int:
    from vsm_phoenix.verify.budget import parse_size

    try:
        return parse_size(text)
    except InvalidArgument as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _duration(text: str) -> float | None:
    from vsm_phoenix.verify.budget import parse_duration

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


def register(sub: Any) -> None:
    from vsm_phoenix.verify.linearizability import FORMATS

    p = sub.add_parser(
        "check", help="check a history for linearizability",
        description="Check a history for linearizability. Exit status: 0 linearizable, "
        "1 not linearizable, 2 bad usage or malformed history, 3 unknown (time or memory "
        "budget ran out).",
    )
    p.add_argument("history", help="history file (use - for stdin)")
    p.add_argument("--model", choices=("kv", "register"),
                   help="model to check against (default: the one the history format implies)")
    p.add_argument("--format", choices=FORMATS, default="auto", help="history format")
    p.add_argument("--timeout-s", "--timeout", dest="timeout_s", type=_duration, default=60.0,
                   help="wall-clock budget in seconds (default 60; 0 = no limit)")
    p.add_argument("--max-memory", type=_size, default=None, metavar="SIZE",
                   help="resident-memory budget for the whole process, e.g. 1G or 512M "
                        "(default: half of the machine's or container's memory)")
    p.add_argument("--max-cache", type=_positive, default=None,
                   help="memo entries per partition before giving up on it (default: no cap)")
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
    # The time budget starts now: reading and parsing the history count against it.
    deadline = None if args.timeout_s is None else time.monotonic() + args.timeout_s
    try:
        return _run(args, deadline)
    except MemoryError:
        print("UNKNOWN: out of memory (raise --max-memory or the process's memory limit)")
        return EXIT_UNKNOWN


def _run(args: argparse.Namespace, deadline: float | None) -> int:
    from vsm_phoenix.verify import Verdict, check_history, render_html
    from vsm_phoenix.verify.budget import default_memory_limit
    from vsm_phoenix.verify.linearizability import load_history

    try:
        source = sys.stdin.buffer if args.history == "-" else None
        data = source.read() if source is not None else Path(args.history).read_bytes()
    except OSError as exc:
        return usage_exit(PROG, f"cannot read {args.history}: {exc}")
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
        return usage_exit(PROG, f"{args.history}: {exc}")
    print(result.summary())
    if args.html:
        try:
            Path(args.html).write_text(render_html(result, title=f"check {args.history}"),
                                       "utf-8")
        except OSError as exc:
            return usage_exit(PROG, f"cannot write {args.html}: {exc}")
        print(f"timeline written to {args.html}")
    return {Verdict.OK: 0, Verdict.ILLEGAL: EXIT_ILLEGAL, Verdict.UNKNOWN: EXIT_UNKNOWN}[
        result.verdict
    ]
