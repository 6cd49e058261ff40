"""Hypothesis properties: generated-linearizable histories pass, and the fast checker
agrees with a brute-force permutation checker on tiny random histories."""

from __future__ import annotations

import itertools
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from vsm_phoenix.verify import (
    UNKNOWN,
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
    history_from_jsonl,
)
from vsm_phoenix.verify.history import History

# Scaled from the active profile (tests/conftest.py): dev 50 -> 150, ci 200 -> 600.
BASE = settings.default.max_examples
SETTINGS = settings(
    max_examples=3 * BASE, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)

register_inputs = st.one_of(
    st.just(RegisterRead()),
    st.builds(RegisterWrite, st.integers(1, 3)),
    st.builds(RegisterCas, st.sampled_from([None, 1, 2, 3]), st.integers(1, 3)),
)
kv_keys = st.sampled_from(["a", "b"])
kv_values = st.sampled_from(["x", "y"])
kv_inputs = st.one_of(
    st.builds(KVGet, kv_keys),
    st.builds(KVPut, kv_keys, kv_values),
    st.builds(KVAppend, kv_keys, kv_values),
    st.builds(KVCas, kv_keys, st.sampled_from([None, "x", "y", "xy"]), kv_values),
    st.builds(KVDelete, kv_keys),
)
models_and_inputs = st.sampled_from(
    [(RegisterModel(), register_inputs), (KVModel(), kv_inputs), (KVModel(missing=""), kv_inputs)]
)


def key_of(inp: Any) -> Any:
    return getattr(inp, "key", None)


@st.composite
def linearizable_histories(draw: st.DrawFn) -> tuple[Any, list[Operation[Any, Any]]]:
    """Execute random operations sequentially against the model (per key), give the
    k-th one the linearization point 10k, and an interval around it: linearizable by
    construction. Some become pending (effect kept, or never applied) or fail."""
    model, inputs = draw(models_and_inputs)
    n = draw(st.integers(0, 30))
    clients = draw(st.integers(1, 6))
    states: dict[Any, Any] = {}
    ops: list[Operation[Any, Any]] = []
    for k in range(n):
        inp = draw(inputs)
        point = 10 * k
        call = point - draw(st.integers(0, 25))
        fate = draw(st.sampled_from(["ok"] * 6 + ["pending", "never", "fail"]))
        if fate in ("never", "fail"):
            if fate == "never":  # pending, and it never took effect (later than everything)
                ops.append(Operation(draw(st.integers(0, clients)), inp, call, None, UNKNOWN))
            continue
        key = key_of(inp)
        state = states.get(key, model.init())
        out = _expected_output(model, state, inp)
        ok, states[key] = model.step(state, inp, out)
        assert ok
        client = draw(st.integers(0, clients))
        if fate == "pending":
            ops.append(Operation(client, inp, call, None, UNKNOWN))
        else:
            ops.append(Operation(client, inp, call, point + draw(st.integers(0, 25)), out))
    return model, draw(st.permutations(ops))


def _expected_output(model: Any, state: Any, inp: Any) -> Any:
    """The output a correct sequential implementation returns."""
    if isinstance(inp, RegisterRead):
        return state
    if isinstance(inp, KVGet):
        return model.missing if state is None else state
    if isinstance(inp, RegisterCas | KVCas):
        return state == inp.expected and type(state) is type(inp.expected)
    return None


@SETTINGS
@given(linearizable_histories())
def test_sequentially_generated_histories_are_linearizable(
    case: tuple[Any, list[Operation[Any, Any]]],
) -> None:
    model, ops = case
    result = check(model, ops, timeout=30)
    assert result.verdict is Verdict.OK, result.summary()
    # and they survive our history format
    again = history_from_jsonl(History(model, ops).to_jsonl())
    assert again.model == model and list(again.operations) == ops


# -- brute force ------------------------------------------------------------------------


def brute_force(model: Any, ops: list[Operation[Any, Any]]) -> bool:
    """Is there a total order of all operations that respects real time (a before b if
    a returned strictly before b was called) and is a legal run, keyed per key?"""
    n = len(ops)
    for perm in itertools.permutations(range(n)):
        placed: set[int] = set()
        states: dict[Any, Any] = {}
        legal = True
        for i in perm:
            # every op that returned before ops[i] was called must already be placed
            if any(
                j not in placed and ops[j].ret is not None and ops[j].ret < ops[i].call
                for j in range(n)
                if j != i
            ):
                legal = False
                break
            key = key_of(ops[i].input)
            ok, states[key] = model.step(
                states.get(key, model.init()), ops[i].input, ops[i].output
            )
            if not ok:
                legal = False
                break
            placed.add(i)
        if legal:
            return True
    return False


def _random_output(draw: st.DrawFn, inp: Any) -> Any:
    if isinstance(inp, RegisterRead):
        return draw(st.sampled_from([None, 1, 2, 3]))
    if isinstance(inp, KVGet):
        return draw(st.sampled_from([None, "", "x", "y", "xy", "yx"]))
    if isinstance(inp, RegisterCas | KVCas):
        return draw(st.booleans())
    return None


@st.composite
def tiny_random_histories(draw: st.DrawFn) -> tuple[Any, list[Operation[Any, Any]]]:
    model, inputs = draw(models_and_inputs)
    ops = []
    pending_odds = draw(st.sampled_from([5, 2]))  # 1 in 5, or 1 in 2 (symmetry path)
    for _ in range(draw(st.integers(0, 6))):
        inp = draw(inputs)
        call = draw(st.integers(0, 12))
        if draw(st.integers(0, pending_odds - 1)) == 0:
            ops.append(Operation(draw(st.integers(0, 3)), inp, call, None, UNKNOWN))
        else:
            ret = call + draw(st.integers(0, 6))
            out = _random_output(draw, inp)
            ops.append(Operation(draw(st.integers(0, 3)), inp, call, ret, out))
    return model, ops


@settings(max_examples=8 * BASE, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(tiny_random_histories())
def test_fast_checker_agrees_with_brute_force(case: tuple[Any, list[Operation[Any, Any]]]) -> None:
    model, ops = case
    expected = Verdict.OK if brute_force(model, ops) else Verdict.ILLEGAL
    result = check(model, ops, timeout=30)
    assert result.verdict is expected
    if result.failing is not None:
        assert len(result.failing.linearization) < len(result.failing.operations)


@SETTINGS
@given(st.sampled_from([RegisterModel(), KVModel()]), st.data())
def test_unknown_output_is_always_legal(model: Any, data: st.DataObject) -> None:
    inputs = register_inputs if isinstance(model, RegisterModel) else kv_inputs
    state = data.draw(
        st.sampled_from([None, 1, 2, "s"])
        if isinstance(model, RegisterModel)
        else st.sampled_from([None, "", "x"])
    )
    ok, _ = model.step(state, data.draw(inputs), UNKNOWN)
    assert ok
