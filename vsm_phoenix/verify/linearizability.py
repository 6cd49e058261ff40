"""Linearizability checking: Wing-Gong/Lowe search with P-compositionality and memoization.

Theory of operation
-------------------
A history is *linearizable* against a sequential model when every operation can be
given an instant between its call and its return such that, taken in the order of
those instants, the operations are a legal run of the model (Herlihy & Wing 1990).

1. **Partition** (P-compositionality, Horn & Kroening 2015). The model splits the
   history into independent sub-histories (the KV model: one per key). The history is
   linearizable iff every partition is, so partitions are checked one at a time,
   **smallest first**, and checking stops at the first one that is not: on Porcupine's
   ``c50-bad`` some single keys are intractable while a small one fails quickly.
2. **Entries.** Each operation becomes a call entry and a return entry, sorted by time
   (calls before returns at equal times: touching intervals are concurrent; pending
   operations return after everything). They form a doubly linked list.
3. **Search** (Wing & Gong 1993, Lowe 2017). Walk the list from its head. At a call
   entry, try to linearize that operation next: if the model accepts it *and* the pair
   (set of linearized operations, model state) has not been seen before, push it, lift
   the call and its return out of the list and restart from the head. At a return
   entry, some operation that had to take effect before this return has not: pop the
   last choice, put its entries back (unlift) and try the entry after it. An empty list
   means every operation is linearized (OK); a return entry with an empty stack means
   no order works (ILLEGAL).
4. **Memoization.** The pair (linearized bitset, state) determines the rest of the
   search, so a pair seen once never needs exploring again. States must be hashable.

Bounds: the search is exponential in the worst case. A wall-clock ``timeout`` and a
memory budget in bytes (``max_memory``), both shared by all partitions and measured as
the search runs (:mod:`vsm_phoenix.verify.budget`: the deadline is kept within about
1 %, the memory limit within a few percent), turn an intractable search into
``Verdict.UNKNOWN`` with a reason — never an endless run, an out-of-memory kill or a
traceback: out of memory is not a verdict. An ILLEGAL found in one partition is
definitive even when another ran out of budget.

The checker returns data. For a violation the result carries the failing partition
and the longest partial linearization the search reached in it (with the model state
after each step); :func:`vsm_phoenix.verify.render.render_html` draws it as a
timeline, and :mod:`vsm_phoenix.cli.check` is the command line.
"""

from __future__ import annotations

import enum
import math
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any, Final, Literal

import attrs

from vsm_phoenix.errors import DecodeError, InvalidArgument, TypeMismatch
from vsm_phoenix.verify import porcupine_formats
from vsm_phoenix.verify.budget import MEMORY, Budget, default_memory_limit
from vsm_phoenix.verify.history import History, Model, Operation, history_from_jsonl

__all__ = [
    "CACHE_LIMIT",
    "FORMATS",
    "CheckResult",
    "PartitionResult",
    "Verdict",
    "check",
    "check_history",
    "detect_format",
    "load_history",
]

#: Reason of an UNKNOWN when a partition hit ``max_cache_entries``.
CACHE_LIMIT: Final = "cache limit"

#: Every ``format`` accepted by :func:`load_history`.
FORMATS: Final = ("auto", "json", "porcupine-kv", "jepsen-etcd")



class Verdict(enum.Enum):
    """The checker's answer. UNKNOWN means the budget ran out before an answer."""

    OK = "ok"
    ILLEGAL = "illegal"
    UNKNOWN = "unknown"


@attrs.frozen
class PartitionResult:
    """The outcome for one partition.

    ``linearization`` lists indices into ``operations``: for OK a complete linearization,
    otherwise the longest partial one the search reached; ``states[k]`` is the model
    state after ``operations[linearization[k]]``.
    """

    verdict: Verdict
    operations: tuple[Operation[Any, Any], ...]
    linearization: tuple[int, ...]
    states: tuple[Any, ...]
    reason: str = ""
    elapsed: float = 0.0
    cache_entries: int = 0
    steps: int = 0


@attrs.frozen
class CheckResult:
    """The verdict for a whole history.

    ``partitions`` are the partition results in the order they were checked (smallest
    first; later ones are absent when the check stopped early), ``failing`` the first
    ILLEGAL one. ``reason`` explains an UNKNOWN ("timeout", "memory limit", "cache
    limit"); ``peak_rss`` is the largest resident size the budget measured (bytes).
    """

    verdict: Verdict
    model: Model[Any, Any, Any]
    partitions: tuple[PartitionResult, ...]
    partitions_total: int
    failing: PartitionResult | None = None
    reason: str = ""
    elapsed: float = 0.0
    peak_rss: int = 0

    @property
    def ok(self) -> bool:
        return self.verdict is Verdict.OK

    def summary(self) -> str:
        checked = len(self.partitions)
        ops = sum(len(p.operations) for p in self.partitions)
        text = (
            f"{self.verdict.value.upper()}: {checked}/{self.partitions_total} partitions, "
            f"{ops} operations checked in {self.elapsed:.3f} s"
        )
        if self.reason:
            text += f" ({self.reason})"
        if self.failing is not None:
            f = self.failing
            text += (
                f"; failing partition has {len(f.operations)} operations, longest "
                f"linearizable prefix {len(f.linearization)}"
            )
        return text


def _check_partition(
    model: Model[Any, Any, Any],
    ops: Sequence[Operation[Any, Any]],
    budget: Budget,
    max_cache_entries: int | None,
) -> PartitionResult:
    """Lowe's search over one partition (see the module docstring).

    Layout: entries are numbered 1..m in time order, so an entry's number is its
    position. Completed operations put a call and a return entry in the *main* list
    (head 0, tail m+1). Pending operations never return, so they only put a call entry
    in a separate *pending* list (head m+2, tail m+3). Candidates at a node are the
    calls before the first return entry of the main list: completed ones are tried
    first, pending ones after (any order is complete; deferring pending operations
    finds linearizations of OK histories without enumerating their subsets). Pending
    operations with equal inputs are tried only in call order (once both are called,
    either can stand for the other). Once the main list is empty the remaining pending
    operations can all go last: OK.
    """
    started = time.monotonic()
    n = len(ops)
    events: list[tuple[float, int, int]] = []
    for i, op in enumerate(ops):
        events.append((op.call, 0, i))
        if op.ret is not None:
            events.append((op.ret, 1, i))
    events.sort()
    m = len(events)
    head, tail, phead, ptail = 0, m + 1, m + 2, m + 3
    size = m + 4
    nxt = [0] * size
    prv = [0] * size
    is_call = [False] * size
    is_pending = [False] * size
    op_of = [0] * size
    match = [0] * size
    call_at = [0] * n
    last_main, last_pending = head, phead
    for pos, (_, kind, i) in enumerate(events, start=1):
        op_of[pos] = i
        if kind == 0:
            is_call[pos] = True
            call_at[i] = pos
            if ops[i].ret is None:
                is_pending[pos] = True
                nxt[last_pending], prv[pos] = pos, last_pending
                last_pending = pos
                continue
        else:
            match[call_at[i]] = pos
        nxt[last_main], prv[pos] = pos, last_main
        last_main = pos
    nxt[last_main], prv[tail] = tail, last_main
    nxt[last_pending], prv[ptail] = ptail, last_pending
    inputs = [op.input for op in ops]
    # twin[e]: the previous pending call entry with an equal input (0: none).
    twin = [0] * size
    lifted = [False] * size
    last_twin: dict[Any, int] = {}
    e = nxt[phead]
    while e != ptail:
        inp = inputs[op_of[e]]
        try:
            twin[e] = last_twin.get(inp, 0)
            last_twin[inp] = e
        except TypeError:  # unhashable input: no symmetry reduction for it
            pass
        e = nxt[e]
    outputs = [op.output for op in ops]

    step = model.step
    state = model.init()
    linearized = 0
    cache: set[tuple[int, Any]] = set()
    # The current partial linearization: (call entry, state before, state after, limit).
    stack: list[tuple[int, Any, Any, int]] = []
    best: list[tuple[int, Any, Any, int]] = []
    agree = 0  # stack[:agree] == best[:agree]
    entry = nxt[head]
    in_pending = False  # scanning the pending list for calls before `limit`
    limit = 0
    steps = 0
    verdict = Verdict.OK
    reason = ""
    cap = -1 if max_cache_entries is None else max_cache_entries
    left = 1  # steps until the budget next measures time and memory
    try:
        while nxt[head] != tail:
            steps += 1
            left -= 1
            if not left:
                stop = budget.check_now()
                if stop is not None:
                    verdict, reason = Verdict.UNKNOWN, stop
                    break
                left = budget.interval
            if in_pending:
                if entry > limit:  # no candidate left at this node (ptail > every limit)
                    entry = -1
                elif twin[entry] and not lifted[twin[entry]]:
                    # Symmetry: pending operations with equal inputs are interchangeable
                    # once both are called, so they are linearized in call order only.
                    entry = nxt[entry]
                    continue
            elif not is_call[entry]:  # first return of the main list: now the pending calls
                in_pending = True
                limit = entry
                entry = nxt[phead]
                continue
            if entry >= 0:
                i = op_of[entry]
                ok, new_state = step(state, inputs[i], outputs[i])
                if ok:
                    new_linearized = linearized | (1 << i)
                    key = (new_linearized, new_state)
                    if key not in cache:
                        if len(cache) == cap:
                            verdict, reason = Verdict.UNKNOWN, CACHE_LIMIT
                            break
                        cache.add(key)
                        stack.append((entry, state, new_state, limit))
                        if len(stack) > len(best):
                            best[agree:] = stack[agree:]
                            agree = len(stack)
                        state = new_state
                        linearized = new_linearized
                        # lift the call (and a completed operation's return) out of its list
                        p, q = prv[entry], nxt[entry]
                        nxt[p] = q
                        prv[q] = p
                        if in_pending:
                            lifted[entry] = True
                        else:
                            r = match[entry]
                            p, q = prv[r], nxt[r]
                            nxt[p] = q
                            prv[q] = p
                        entry = nxt[head]
                        in_pending = False
                        continue
                entry = nxt[entry]
                continue
            # backtrack
            if not stack:
                verdict = Verdict.ILLEGAL
                break
            entry, state, _, limit = stack.pop()
            if agree > len(stack):
                agree = len(stack)
            linearized ^= 1 << op_of[entry]
            in_pending = is_pending[entry]
            if in_pending:
                lifted[entry] = False
            else:  # unlift: the return first, then the call
                r = match[entry]
                nxt[prv[r]] = r
                prv[nxt[r]] = r
            nxt[prv[entry]] = entry
            prv[nxt[entry]] = entry
            entry = nxt[entry]
    except MemoryError:
        cache.clear()  # what the search held: enough is left to report the answer
        verdict, reason = Verdict.UNKNOWN, MEMORY
    entries = len(cache)
    if verdict is Verdict.UNKNOWN and reason != CACHE_LIMIT:
        _discard_later(cache)  # freeing gigabytes takes time the deadline did not budget
    chosen = stack if verdict is Verdict.OK else best
    order = [op_of[e] for e, _, _, _ in chosen]
    states = [after for _, _, after, _ in chosen]
    if verdict is Verdict.OK:  # the pending operations left over go last
        e = nxt[phead]
        while e != ptail:
            i = op_of[e]
            state = step(state, inputs[i], outputs[i])[1]
            order.append(i)
            states.append(state)
            e = nxt[e]
    return PartitionResult(
        verdict=verdict,
        operations=tuple(ops),
        linearization=tuple(order),
        states=tuple(states),
        reason=reason,
        elapsed=time.monotonic() - started,
        cache_entries=entries,
        steps=steps,
    )


def _discard_later(cache: set[tuple[int, Any]]) -> None:
    """Free a memo cache in a daemon thread, a few entries at a time with pauses, so a
    check that ran out of budget answers at once: freeing a gigabyte of states in one
    go took 0.1-0.4 s here, time the deadline did not budget. The pauses release the
    interpreter lock to the caller; if the process exits first, the operating system
    takes the memory back at no cost."""
    doomed: list[tuple[int, Any]] = list(cache)
    cache.clear()  # only references go: the entries live on in ``doomed``

    def drop() -> None:
        while doomed:
            del doomed[-16:]
            time.sleep(0.001)

    try:
        threading.Thread(target=drop, name="vsm-phoenix-free", daemon=True).start()
    except RuntimeError:  # no memory left for a thread's stack: free them here
        doomed.clear()


def check(
    model: Model[Any, Any, Any],
    operations: Iterable[Operation[Any, Any]],
    *,
    timeout: float | None = None,
    max_memory: int | Literal["auto"] | None = "auto",
    max_cache_entries: int | None = None,
    progress: Callable[[int, int, PartitionResult], None] | None = None,
) -> CheckResult:
    """Check ``operations`` against ``model``.

    The budget: ``timeout`` seconds of wall clock (``None`` = unbounded) and
    ``max_memory`` bytes of resident memory for the whole process (``"auto"``: half
    of what this machine or container allows, :func:`~.budget.default_memory_limit`;
    ``None`` = unbounded), both measured as the search runs (see
    :mod:`vsm_phoenix.verify.budget`). Running out of either ends the check with
    ``UNKNOWN`` and the reason ``"timeout"`` or ``"memory limit"`` (a ``MemoryError``
    raised anyway is caught and reported the same way), unless a partition already
    proved the history ILLEGAL. ``max_cache_entries`` additionally caps the memo
    entries per partition (reason ``"cache limit"``; the next partitions are still
    checked). ``progress``, when given, is called after each partition with
    (partitions done, partitions in all, its result).
    """
    started = time.monotonic()
    if not isinstance(model, Model):
        raise TypeMismatch(f"model must be a Model, not {type(model).__name__}")
    if timeout is not None:
        if isinstance(timeout, bool) or not isinstance(timeout, int | float):
            raise TypeMismatch("timeout must be a number of seconds or None")
        if not timeout >= 0:
            raise InvalidArgument(f"timeout must be >= 0, got {timeout!r}")
    if max_memory == "auto":
        max_memory = default_memory_limit()
    elif max_memory is not None and (isinstance(max_memory, bool)
                                     or not isinstance(max_memory, int)):
        raise TypeMismatch("max_memory must be a number of bytes, 'auto' or None")
    elif max_memory is not None and max_memory < 1:
        raise InvalidArgument(f"max_memory must be >= 1 byte, got {max_memory!r}")
    if max_cache_entries is not None:
        if isinstance(max_cache_entries, bool) or not isinstance(max_cache_entries, int):
            raise TypeMismatch("max_cache_entries must be an int or None")
        if max_cache_entries < 1:
            raise InvalidArgument("max_cache_entries must be >= 1")
    if progress is not None and not callable(progress):
        raise TypeMismatch("progress must be callable or None")
    ops = list(operations)
    for op in ops:
        if not isinstance(op, Operation):
            raise TypeMismatch(f"expected Operation, got {type(op).__name__}")
    deadline = None if timeout is None or math.isinf(timeout) else started + timeout
    budget = Budget(deadline, max_memory)
    parts = sorted(model.partition(ops), key=len)
    done: list[PartitionResult] = []
    unknown_reason = ""
    failing: PartitionResult | None = None
    for part in parts:
        stop = budget.check_now()
        if stop is not None:
            unknown_reason = unknown_reason or stop
            break
        result = _check_partition(model, part, budget, max_cache_entries)
        done.append(result)
        if progress is not None:
            progress(len(done), len(parts), result)
        if result.verdict is Verdict.ILLEGAL:
            failing = result
            break
        if result.verdict is Verdict.UNKNOWN:
            unknown_reason = unknown_reason or result.reason
            if result.reason != CACHE_LIMIT:  # time and memory are spent for everyone
                break
    if failing is not None:
        verdict, reason = Verdict.ILLEGAL, ""
    elif unknown_reason:
        verdict, reason = Verdict.UNKNOWN, unknown_reason
    else:
        verdict, reason = Verdict.OK, ""
    return CheckResult(
        verdict=verdict,
        model=model,
        partitions=tuple(done),
        partitions_total=len(parts),
        failing=failing,
        reason=reason,
        elapsed=time.monotonic() - started,
        peak_rss=budget.peak_rss,
    )


def check_history(
    history: History,
    *,
    timeout: float | None = None,
    max_memory: int | Literal["auto"] | None = "auto",
    max_cache_entries: int | None = None,
    progress: Callable[[int, int, PartitionResult], None] | None = None,
) -> CheckResult:
    """:func:`check` a :class:`History` against its own model."""
    if not isinstance(history, History):
        raise TypeMismatch(f"expected History, got {type(history).__name__}")
    return check(
        history.model,
        history.operations,
        timeout=timeout,
        max_memory=max_memory,
        max_cache_entries=max_cache_entries,
        progress=progress,
    )


# ----------------------------------------------------------------------------------
# Loading histories in any supported format.


def detect_format(data: bytes | str) -> str:
    """Guess the format from the first non-blank line (``DecodeError`` if none fits)."""
    if isinstance(data, bytes | bytearray | memoryview):
        head = bytes(data[:4096]).decode("utf-8", errors="replace")
    elif isinstance(data, str):
        head = data[:4096]
    else:
        raise TypeMismatch(f"history data must be bytes or str, not {type(data).__name__}")
    head = head.lstrip("\ufeff")
    for lineno, line in enumerate(head.splitlines(), start=1):
        stripped = line.strip()
        if not stripped:
            continue
        if stripped.startswith('{"') or stripped.startswith("{ "):
            return "json"
        if stripped.startswith("{:"):
            return "porcupine-kv"
        if stripped.startswith("INFO"):
            return "jepsen-etcd"
        raise DecodeError(f"line {lineno}: cannot tell the history format from this line")
    raise DecodeError("line 1: empty history")


def load_history(data: bytes | str, format: str = "auto") -> History:
    """Decode a history in one of :data:`FORMATS`; malformed data raises DecodeError.

    ``json`` is our ``vsm-phoenix-history`` JSON Lines format; ``porcupine-kv`` gives a
    :class:`KVModel` with ``missing=""``; ``jepsen-etcd`` a :class:`RegisterModel`.
    """
    if format not in FORMATS:
        raise InvalidArgument(f"unknown format {format!r}; expected one of {FORMATS}")
    if format == "auto":
        format = detect_format(data)
    if format == "json":
        return history_from_jsonl(data)
    if format == "porcupine-kv":
        return porcupine_formats.parse_porcupine_kv(data)
    return porcupine_formats.parse_jepsen_etcd(data)
