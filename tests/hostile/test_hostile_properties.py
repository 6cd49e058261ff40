"""Properties of every registered decoder of outside bytes (``hostile_targets``):

* any bytes -- random, or a hostile mutation of a valid encoding -- give a result or
  the decoder's documented error, never another exception, and a refused input leaves
  the decoder's state (a node, a channel's replay windows) unchanged;
* the fixed hostile corpus (bombs, deep nesting, huge lengths and integers, wide
  containers, alone and inside valid encodings) is decoded or refused with peak memory
  linear in its size;
* the fuzzer itself runs (a short smoke; ``make fuzz`` runs 100,000 inputs each).

Example counts follow the suite's Hypothesis profiles (``tests/conftest.py``).
"""

from __future__ import annotations

import functools
import random

import pytest
from fuzz import fuzz_target
from hostile_inputs import Mutator, corpus
from hostile_targets import REGISTRY, Subject, is_stateful, run_one
from hypothesis import given
from hypothesis import strategies as st

KIB = 1024

#: The corpus bound: peak traced memory of one decode is at most this much plus
#: ``PER_BYTE`` per input byte (what ``make fuzz`` measures is far below: about 64
#: bytes per byte for the worst shape, one small object per input byte).
FIXED, PER_BYTE = 1024 * KIB, 512


def _targets() -> list[object]:
    out = []
    for name in sorted(REGISTRY):
        known = REGISTRY[name].known
        marks = [pytest.mark.xfail(reason=known, strict=False)] if known else []
        out.append(pytest.param(name, marks=marks, id=name))
    return out


@functools.cache
def _subject(name: str) -> Subject:
    return REGISTRY[name].subject()


def _judge(name: str, data: bytes, measure: str = "cpu") -> tuple[str, int]:
    target, subject = REGISTRY[name], _subject(name)
    subject.reset()
    outcome, detail, cost = run_one(target, subject, data, is_stateful(subject), measure)
    assert outcome != "failure", f"{name}: {detail}\n  input ({len(data)} bytes): {data.hex()}"
    return outcome, cost


@pytest.mark.parametrize("name", _targets())
@given(data=st.data())
def test_any_input_decodes_or_raises_the_documented_error(name: str, data: st.DataObject
                                                          ) -> None:
    target = REGISTRY[name]
    how = data.draw(st.sampled_from(["random", "mutated", "mutated"]), label="how")
    if how == "random":
        blob = data.draw(st.binary(max_size=300) | st.text(max_size=100).map(str.encode))
    else:
        seed = data.draw(st.integers(0, 2**32 - 1), label="mutation seed")
        blob = Mutator(target.seeds(), random.Random(seed), target.grammar)()[1]
    _judge(name, blob)


@pytest.mark.parametrize("name", _targets())
def test_the_hostile_corpus_costs_linear_memory(name: str) -> None:
    target = REGISTRY[name]
    seeds = list(target.seeds())
    inputs = [(f"seed-{i}", s) for i, s in enumerate(seeds)]
    inputs += [(label, data) for label, data in corpus(target.grammar, seeds)
               if len(data) <= 64 * KIB]  # the 100,000-item shapes run under make fuzz
    for label, data in inputs:
        _, peak = _judge(name, data, "mem")
        assert peak <= FIXED + PER_BYTE * len(data), (
            f"{name}: {label} ({len(data)} bytes) peaked at {peak} bytes")


@pytest.mark.parametrize("name", _targets())
def test_fuzzer_smoke(name: str) -> None:
    report = fuzz_target(REGISTRY[name], 60, seed=1, sample=5, keep=2, progress=False,
                         with_corpus=False)
    assert report.inputs == len(REGISTRY[name].seeds()) + 60
    assert report.failure_count == 0, report.failures[:3]
    assert report.bound("mem", 256)["per_byte"] <= PER_BYTE
