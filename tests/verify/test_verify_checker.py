"""Hand-made histories with known verdicts, budgets, partition order and the report."""

from __future__ import annotations

from typing import Any

import pytest

from vsm_phoenix.errors import InvalidArgument, TypeMismatch
from vsm_phoenix.verify import (
    UNKNOWN,
    HistoryRecorder,
    KVAppend,
    KVCas,
    KVDelete,
    KVGet,
    KVModel,
    KVPut,
    Operation,
    RegisterCas,
    RegisterModel,
    RegisterRead,
    RegisterWrite,
    Verdict,
    check,
    check_history,
    render_html,
)


def op(
    client: int, inp: Any, call: float, ret: float | None, out: Any = None
) -> Operation[Any, Any]:
    return Operation(client, inp, call, ret, UNKNOWN if ret is None else out)


R = RegisterRead()


def W(v: int) -> RegisterWrite:
    return RegisterWrite(v)


def verdict(model: Any, ops: list[Operation[Any, Any]]) -> Verdict:
    return check(model, ops, timeout=10).verdict


# -- register ------------------------------------------------------------------------


def test_quiz_examples_from_porcupine_readme() -> None:
    # The 6.824 quiz histories Porcupine's README uses (initial value 0).
    m = RegisterModel(initial=0)
    ok = [op(0, W(100), 0, 100), op(1, R, 25, 75, 100), op(2, R, 30, 60, 0)]
    bad = [op(0, W(200), 0, 100), op(1, R, 10, 30, 200), op(2, R, 40, 90, 0)]
    assert verdict(m, ok) is Verdict.OK
    assert verdict(m, bad) is Verdict.ILLEGAL


def test_empty_history_is_ok() -> None:
    result = check(RegisterModel(), [])
    assert result.verdict is Verdict.OK and result.partitions_total == 0
    assert "<!DOCTYPE html>" in render_html(result)


def test_touching_intervals_are_concurrent_but_disjoint_ones_are_ordered() -> None:
    m = RegisterModel()
    assert verdict(m, [op(0, W(1), 0, 5), op(1, R, 5, 6, None)]) is Verdict.OK
    assert verdict(m, [op(0, W(1), 0, 5), op(1, R, 6, 7, None)]) is Verdict.ILLEGAL


def test_stale_read_after_newer_read_is_illegal() -> None:
    m = RegisterModel()
    ops = [op(0, W(1), 0, 1), op(0, W(2), 2, 10), op(1, R, 3, 4, 2), op(2, R, 5, 6, 1)]
    assert verdict(m, ops) is Verdict.ILLEGAL
    ops[3] = op(2, R, 3.5, 6, 1)  # now concurrent with the first read: read 1 then 2
    assert verdict(m, ops) is Verdict.OK


def test_pending_write_may_take_effect_late_but_not_unhappen() -> None:
    m = RegisterModel()
    seen_late = [op(0, W(1), 0, None), op(1, R, 2, 3, None), op(1, R, 10, 11, 1)]
    assert verdict(m, seen_late) is Verdict.OK
    never_seen = [op(0, W(1), 0, None), op(1, R, 2, 3, None)]
    assert verdict(m, never_seen) is Verdict.OK
    unhappened = [op(0, W(1), 0, None), op(1, R, 10, 11, 1), op(1, R, 12, 13, None)]
    assert verdict(m, unhappened) is Verdict.ILLEGAL


def test_pending_write_cannot_take_effect_before_its_call() -> None:
    m = RegisterModel()
    ops = [op(1, R, 0, 1, 7), op(0, W(7), 2, None)]
    assert verdict(m, ops) is Verdict.ILLEGAL


def test_cas_semantics() -> None:
    m = RegisterModel()
    base = [op(0, W(1), 0, 1)]
    swapped = [*base, op(0, RegisterCas(1, 2), 2, 3, True), op(1, R, 4, 5, 2)]
    assert verdict(m, swapped) is Verdict.OK
    assert verdict(m, [*base, op(0, RegisterCas(1, 2), 2, 3, False)]) is Verdict.ILLEGAL
    mismatched = [*base, op(0, RegisterCas(3, 2), 2, 3, False), op(1, R, 4, 5, 1)]
    assert verdict(m, mismatched) is Verdict.OK
    assert verdict(m, [op(0, RegisterCas(None, 5), 0, 1, True), op(0, R, 2, 3, 5)]) is Verdict.OK
    # a pending cas takes effect if it matched when linearized, or never
    pend = [*base, op(2, RegisterCas(1, 9), 2, None), op(1, R, 5, 6, 9), op(1, R, 7, 8, 9)]
    assert verdict(m, pend) is Verdict.OK


def test_int_and_str_values_are_distinct() -> None:
    m = RegisterModel()
    assert verdict(m, [op(0, RegisterWrite("1"), 0, 1), op(0, R, 2, 3, 1)]) is Verdict.ILLEGAL


def test_recorder_fail_drops_and_info_keeps_pending() -> None:
    rec = HistoryRecorder(RegisterModel())
    rec.invoke(0, W(5), 0)
    rec.fail(0, 1)  # definitely did not happen
    rec.invoke(1, W(6), 2)
    rec.info(1, 3)  # may have happened
    rec.invoke(0, R, 4)
    rec.ok(0, 6, 5)
    rec.invoke(2, R, 6)  # still open: pending
    h = rec.history()
    assert [o.pending for o in h] == [True, False, True]
    assert check_history(h).verdict is Verdict.OK
    rec2 = HistoryRecorder(RegisterModel())
    rec2.invoke(0, W(5), 0)
    rec2.fail(0, 1)
    rec2.invoke(1, R, 2)
    rec2.ok(1, 5, 3)
    assert check_history(rec2.history()).verdict is Verdict.ILLEGAL


def test_recorder_rejects_misuse_and_stays_unchanged() -> None:
    rec = HistoryRecorder(RegisterModel())
    with pytest.raises(InvalidArgument):
        rec.ok(0, None, 1)
    rec.invoke(0, W(1), 5)
    with pytest.raises(InvalidArgument):
        rec.invoke(0, R, 6)
    with pytest.raises(InvalidArgument):
        rec.ok(0, None, 4)  # before the call
    with pytest.raises(TypeMismatch):
        rec.ok(0, 3, 6)  # a write's output is None
    with pytest.raises(TypeMismatch):
        rec.invoke(1, "read", 6)
    with pytest.raises(TypeMismatch):
        rec.invoke(1, RegisterWrite(True), 6)  # type: ignore[arg-type]
    with pytest.raises(TypeMismatch):
        rec.invoke(True, R, 6)
    with pytest.raises(InvalidArgument):
        rec.invoke(1, R, float("nan"))
    assert len(rec.history()) == 1 and rec.history().operations[0].pending
    rec.ok(0, None, 6)
    assert not rec.history().operations[0].pending


def test_operation_invariants() -> None:
    with pytest.raises(InvalidArgument):
        Operation(0, R, 2, 1, None)
    with pytest.raises(InvalidArgument):
        Operation(0, R, 0, None, 3)
    with pytest.raises(InvalidArgument):
        Operation(0, R, 0, 1, UNKNOWN)
    with pytest.raises(TypeMismatch):
        Operation(0, R, "0", 1, None)  # type: ignore[arg-type]


# -- KV ------------------------------------------------------------------------------


def test_kv_basic_ok_and_illegal() -> None:
    m = KVModel()
    ops = [
        op(0, KVPut("a", "x"), 0, 1),
        op(1, KVAppend("a", "y"), 2, 3),
        op(0, KVGet("a"), 4, 5, "xy"),
        op(1, KVGet("b"), 0, 9, None),
        op(2, KVDelete("a"), 6, 7),
        op(0, KVGet("a"), 8, 9, None),
        op(2, KVCas("b", None, "z"), 10, 11, True),
        op(2, KVCas("b", None, "w"), 12, 13, False),
        op(1, KVGet("b"), 14, 15, "z"),
    ]
    assert verdict(m, ops) is Verdict.OK
    bad = [*ops, op(3, KVGet("a"), 20, 21, "xy")]
    result = check(m, bad)
    assert result.verdict is Verdict.ILLEGAL
    assert result.failing is not None
    assert {o.input.key for o in result.failing.operations} == {"a"}


def test_kv_missing_option_for_porcupine_logs() -> None:
    ops = [
        op(0, KVGet("k"), 0, 1, ""),
        op(0, KVAppend("k", "v"), 2, 3),
        op(0, KVGet("k"), 4, 5, "v"),
    ]
    assert verdict(KVModel(missing=""), ops) is Verdict.OK
    assert verdict(KVModel(), ops) is Verdict.ILLEGAL


def test_kv_concurrent_appends_any_order() -> None:
    m = KVModel()
    ops = [op(c, KVAppend("k", str(c)), 0, 10) for c in range(4)]
    ops.append(op(9, KVGet("k"), 11, 12, "2031"))
    assert verdict(m, ops) is Verdict.OK
    ops[-1] = op(9, KVGet("k"), 11, 12, "203")
    assert verdict(m, ops) is Verdict.ILLEGAL


# -- the failing partition and its report ---------------------------------------------


def _replay(model: Any, part: Any) -> None:
    """The reported partial linearization is a legal run respecting real time."""
    state = model.init()
    for k, i in enumerate(part.linearization):
        o = part.operations[i]
        ok, state = model.step(state, o.input, o.output)
        assert ok
        assert state == part.states[k]
    done = set(part.linearization)
    for i in part.linearization:
        for j, other in enumerate(part.operations):
            if j not in done and other.ret is not None:
                assert not other.ret < part.operations[i].call


def test_illegal_report_has_a_valid_longest_prefix_and_html() -> None:
    m = KVModel()
    key = "<script>alert(1)</script>"
    ops = [
        op(0, KVPut(key, "1"), 0, 1),
        op(1, KVPut(key, "2"), 2, 3),
        op(0, KVGet(key), 4, 5, "2"),
        op(1, KVGet(key), 6, 7, "1"),
        op(2, KVPut("other", "q"), 0, None),
    ]
    result = check(m, ops)
    assert result.verdict is Verdict.ILLEGAL and result.failing is not None
    part = result.failing
    assert len(part.operations) == 4
    assert part.linearization == (0, 1, 2)
    _replay(m, part)
    page = render_html(result, title="t<1>")
    assert page.startswith("<!DOCTYPE html>")
    assert "<script>" not in page and "&lt;script&gt;" in page
    assert "ILLEGAL" in page and "t&lt;1&gt;" in page
    assert "Longest linearizable prefix: 3 of 4" in page
    assert page.count('class="op bad block"') == 1  # the get -> '1' nothing can explain


def test_ok_result_has_complete_linearization() -> None:
    m = RegisterModel()
    ops = [op(0, W(1), 0, 10), op(1, W(2), 1, 11), op(2, R, 12, 13, 1), op(3, W(3), 0, None)]
    result = check(m, ops)
    assert result.verdict is Verdict.OK
    (part,) = result.partitions
    assert sorted(part.linearization) == [0, 1, 2, 3]
    _replay(m, part)
    assert "OK" in render_html(result)


# -- budgets ---------------------------------------------------------------------------


def pathological(n: int, client0: int = 0, key: str | None = None) -> list[Operation[Any, Any]]:
    """n concurrent writes, then a read of a value nobody wrote: illegal, but proving it
    needs about n * 2**n search states."""
    if key is None:
        ops = [op(client0 + c, W(c), 0, 100) for c in range(n)]
        return [*ops, op(client0 + n, R, 200, 201, 999)]
    kv = [op(client0 + c, KVPut(key, str(c)), 0, 100) for c in range(n)]
    return [*kv, op(client0 + n, KVGet(key), 200, 201, "999")]


def test_time_budget_returns_unknown() -> None:
    result = check(RegisterModel(), pathological(40), timeout=0.2)
    assert result.verdict is Verdict.UNKNOWN
    assert result.reason == "timeout"
    assert result.elapsed < 5
    assert "UNKNOWN" in render_html(result)


def test_cache_cap_returns_unknown() -> None:
    result = check(RegisterModel(), pathological(40), max_cache_entries=500)
    assert result.verdict is Verdict.UNKNOWN and result.reason == "cache limit"
    assert result.partitions[0].cache_entries == 500


def test_small_pathological_history_is_decided() -> None:
    assert check(RegisterModel(), pathological(8)).verdict is Verdict.ILLEGAL


def test_smallest_partition_first_and_stop_at_first_violation() -> None:
    m = KVModel()
    small_bad = [op(90, KVPut("s", "1"), 0, 1), op(91, KVGet("s"), 2, 3, "0")]
    ops = pathological(40, key="big") + small_bad
    result = check(m, ops, timeout=20)
    assert result.verdict is Verdict.ILLEGAL
    assert result.partitions_total == 2 and len(result.partitions) == 1
    assert result.elapsed < 5


def test_violation_beats_unknown_partition() -> None:
    m = KVModel()
    big_bad = [op(100 + i, KVPut("z", str(i)), 2 * i, 2 * i + 1) for i in range(30)]
    big_bad.append(op(99, KVGet("z"), 100, 101, "nope"))
    ops = pathological(12, key="a") + big_bad
    result = check(m, ops, max_cache_entries=200)
    assert [p.verdict for p in result.partitions] == [Verdict.UNKNOWN, Verdict.ILLEGAL]
    assert result.verdict is Verdict.ILLEGAL and result.reason == ""


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"timeout": -1}, InvalidArgument),
        ({"timeout": "1"}, TypeMismatch),
        ({"max_cache_entries": 0}, InvalidArgument),
        ({"max_cache_entries": 1.5}, TypeMismatch),
    ],
)
def test_bad_arguments(kwargs: dict[str, Any], error: type[Exception]) -> None:
    with pytest.raises(error):
        check(RegisterModel(), [], **kwargs)


def test_bad_model_options() -> None:
    with pytest.raises(TypeMismatch):
        KVModel(missing=5)  # type: ignore[arg-type]
    with pytest.raises(TypeMismatch):
        RegisterModel(initial=True)
    with pytest.raises(TypeMismatch):
        RegisterModel(initial=1.5)  # type: ignore[arg-type]


def test_bad_operations_and_model() -> None:
    with pytest.raises(TypeMismatch):
        check(RegisterModel(), [("not", "an", "op")])  # type: ignore[list-item]
    with pytest.raises(TypeMismatch):
        check("register", [])  # type: ignore[arg-type]
    with pytest.raises(TypeMismatch):
        check_history([])  # type: ignore[arg-type]
