"""History formats: Porcupine's two public formats, our JSON Lines, and hostile input."""

from __future__ import annotations

import random
import re
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from vsm_phoenix.errors import DecodeError, InvalidArgument
from vsm_phoenix.verify import (
    UNKNOWN,
    HistoryRecorder,
    KVGet,
    KVModel,
    KVPut,
    RegisterCas,
    RegisterModel,
    RegisterRead,
    RegisterWrite,
    Verdict,
    check_history,
    detect_format,
    history_from_jsonl,
    load_history,
    parse_jepsen_etcd,
    parse_porcupine_kv,
)

DATA = Path(__file__).parent / "data"
VENDORED = {
    "c01-ok.txt": ("porcupine-kv", Verdict.OK),
    "c01-bad.txt": ("porcupine-kv", Verdict.ILLEGAL),
    "etcd_000.log": ("jepsen-etcd", Verdict.ILLEGAL),
    "etcd_002.log": ("jepsen-etcd", Verdict.OK),
}


@pytest.mark.parametrize("name", sorted(VENDORED))
def test_vendored_histories_get_porcupines_verdicts(name: str) -> None:
    fmt, expected = VENDORED[name]
    data = (DATA / name).read_bytes()
    assert detect_format(data) == fmt
    history = load_history(data)
    assert load_history(data, fmt) == history
    result = check_history(history, timeout=30)
    assert result.verdict is expected, result.summary()


def test_etcd_000_parse_details() -> None:
    history = parse_jepsen_etcd((DATA / "etcd_000.log").read_text())
    assert isinstance(history.model, RegisterModel)
    ops = history.operations
    assert len(ops) == 85
    text = (DATA / "etcd_000.log").read_text()
    invokes = text.count(":invoke")
    fails_dropped = len(re.findall(r":fail\t:(read|write)", text))
    assert len(ops) == invokes - fails_dropped
    assert sum(o.pending for o in ops) == text.count(":info")
    first = ops[0]
    assert first.input == RegisterRead() and first.output is None and first.call == 1
    cas_fail = [o for o in ops if isinstance(o.input, RegisterCas) and o.output is False]
    assert cas_fail and all(not o.pending for o in cas_fail)


def test_etcd_spaces_instead_of_tabs() -> None:
    text = (DATA / "etcd_000.log").read_text()
    spaced = text.replace("\t", "   ")
    assert "\t" not in spaced
    assert parse_jepsen_etcd(spaced) == parse_jepsen_etcd(text)
    mixed = "\n".join(
        line.replace("\t", " ", 1) if k % 2 else line for k, line in enumerate(text.splitlines())
    )
    assert parse_jepsen_etcd(mixed) == parse_jepsen_etcd(text)


def test_etcd_timed_out_stays_pending_and_failed_read_is_dropped() -> None:
    log = "\n".join(
        [
            "INFO  jepsen.core - Worker 0 starting",
            "INFO  jepsen.util - 0\t:invoke\t:write\t1",
            "INFO  jepsen.util - 0\t:info\t:write\t:timed-out",
            "INFO  jepsen.util - :nemesis\t:info\t:start\tnil",
            "INFO  jepsen.util - 1\t:invoke\t:read\tnil",
            "INFO  jepsen.util - 1\t:fail\t:read\t:timed-out",
            "INFO  jepsen.util - 2\t:invoke\t:read\tnil",
            "INFO  jepsen.util - 2\t:ok\t:read\t1",
            "INFO  jepsen.util - 3\t:invoke\t:cas\t[nil 4]",
            "",
        ]
    )
    history = parse_jepsen_etcd(log)
    ops = history.operations
    assert [o.input for o in ops] == [RegisterWrite(1), RegisterRead(), RegisterCas(None, 4)]
    assert ops[0].pending and ops[0].call == 2
    assert ops[1].output == 1 and (ops[1].call, ops[1].ret) == (7, 8)
    assert ops[2].pending  # still open at the end
    assert check_history(history).verdict is Verdict.OK
    # the timed-out write is pending to the end: a later read may not un-see it
    later = log + "INFO  jepsen.util - 2\t:invoke\t:read\tnil\n"
    later += "INFO  jepsen.util - 2\t:ok\t:read\tnil\n"
    assert check_history(parse_jepsen_etcd(later)).verdict is Verdict.ILLEGAL


def test_porcupine_kv_info_is_pending_and_fail_is_dropped() -> None:
    log = "\n".join(
        [
            '{:process 0, :type :invoke, :f :put, :key "k", :value "a"}',
            '{:process 0, :type :info, :f :put, :key "k", :value "a"}',
            '{:process 1, :type :invoke, :f :append, :key "k", :value "b"}',
            '{:process 1, :type :fail, :f :append, :key "k", :value "b"}',
            '{:process 2, :type :invoke, :f :get, :key "k", :value nil}',
            '{:process 2, :type :ok, :f :get, :key "k", :value "a"}',
            '{:process 3, :type :invoke, :f :get, :key "k\\"q", :value nil}',
        ]
    )
    history = parse_porcupine_kv(log)
    assert isinstance(history.model, KVModel) and history.model.missing == ""
    ops = history.operations
    assert [o.input for o in ops] == [KVPut("k", "a"), KVGet("k"), KVGet('k"q')]
    assert ops[0].pending and ops[1].output == "a" and ops[2].pending
    assert check_history(history).verdict is Verdict.OK
    seen_b = log.replace(':value "a"}\n{:process 3', ':value "ab"}\n{:process 3')
    assert check_history(parse_porcupine_kv(seen_b)).verdict is Verdict.ILLEGAL


MALFORMED = [
    ("porcupine-kv", '{:process 0, :type :invoke, :f :get, :key "k", :value nil}\n{:process 0', 2),
    ("porcupine-kv", '\n\n{:process 0, :type :ok, :f :get, :key "k", :value "v"}', 3),
    ("porcupine-kv", '{:process 0, :type :invoke, :f :cas, :key "k", :value "v"}', 1),
    ("porcupine-kv", '{:process "0", :type :invoke, :f :get, :key "k", :value nil}', 1),
    ("porcupine-kv", '{:process 0, :type :invoke, :f :get, :key "k", :value nil} x', 1),
    (
        "porcupine-kv",
        '{:process 0, :type :invoke, :f :get, :key "k", :value nil}\n'
        '{:process 0, :type :invoke, :f :get, :key "k", :value nil}',
        2,
    ),
    (
        "porcupine-kv",
        '{:process 0, :type :invoke, :f :get, :key "k", :value nil}\n'
        '{:process 0, :type :ok, :f :put, :key "k", :value "v"}',
        2,
    ),
    ("jepsen-etcd", "INFO  jepsen.util - 0\t:invoke\t:write\tnil", 1),
    ("jepsen-etcd", "INFO jepsen.util - 0 :invoke :read nil\nINFO jepsen.util - 0 :ok :write 1", 2),
    ("jepsen-etcd", "INFO  jepsen.util - 0\t:invoke\t:cas\t[1]", 1),
    ("jepsen-etcd", "INFO  jepsen.util - 0\t:ok\t:read\t1", 1),
    ("jepsen-etcd", "INFO  jepsen.util - 0\t:invoke\t:append\t1", 1),
    ("jepsen-etcd", "\n\ngarbage", 3),
    ("json", '{"format": "vsm-phoenix-history", "version": 2, "model": "kv"}', 1),
    ("json", '{"format": "vsm-phoenix-history", "version": 1, "model": "set"}', 1),
    ("json", '{"format": "other", "version": 1, "model": "kv"}', 1),
    (
        "json",
        '{"format": "vsm-phoenix-history", "version": 1, "model": "kv"}\n'
        '{"client": 0, "call": 5, "return": 1, "input": {"f": "get", "key": "a"}, "output": null}',
        2,
    ),
    (
        "json",
        '{"format": "vsm-phoenix-history", "version": 1, "model": "kv"}\n\n'
        '{"client": 0, "call": NaN, "return": 1, "input": {"f": "get", "key": "a"}, '
        '"output": null}',
        3,
    ),
    (
        "json",
        '{"format": "vsm-phoenix-history", "version": 1, "model": "register"}\n'
        '{"client": 0, "call": 0, "return": 1, "input": {"f": "write", "value": true}, '
        '"output": null}',
        2,
    ),
    (
        "json",
        '{"format": "vsm-phoenix-history", "version": 1, "model": "register"}\n'
        '{"client": 0, "call": 0, "return": null, "input": {"f": "read"}, "output": 1}',
        2,
    ),
    (
        "json",
        '{"format": "vsm-phoenix-history", "version": 1, "model": "kv"}\n'
        '{"client": 0, "call": 0, "return": 1, "input": {"f": "get", "key": "a", "x": 1}, '
        '"output": null}',
        2,
    ),
    ("json", '{"format": "vsm-phoenix-history", "version": 1, "model": "kv"}\n[1, 2]', 2),
    (
        "json",
        '{"format": "vsm-phoenix-history", "version": 1, "model": "kv"}\n'
        '{"client": 0, "call": 1' + "0" * 400 + ', "return": null, '
        '"input": {"f": "get", "key": "a"}}',
        2,
    ),
    ("json", '{"format": "vsm-phoenix-history", "version": 1, "model": "kv"}\n{"client": 0', 2),
]


@pytest.mark.parametrize(("fmt", "text", "line"), MALFORMED)
def test_malformed_input_names_the_line(fmt: str, text: str, line: int) -> None:
    with pytest.raises(DecodeError, match=rf"^line {line}\b"):
        load_history(text, fmt)


def test_invalid_utf8_names_the_line() -> None:
    data = b'{"format": "vsm-phoenix-history", "version": 1, "model": "kv"}\n\xff\n'
    with pytest.raises(DecodeError, match=r"^line 2: invalid UTF-8"):
        load_history(data, "json")


def test_format_detection_and_bad_arguments() -> None:
    with pytest.raises(DecodeError, match="line 1"):
        load_history("")
    with pytest.raises(DecodeError, match="line 2"):
        detect_format("\nhello")
    with pytest.raises(InvalidArgument):
        load_history("x", "edn")
    with pytest.raises(TypeError):
        load_history(123)  # type: ignore[arg-type]


def test_jsonl_roundtrip_from_recorder() -> None:
    rec = HistoryRecorder(KVModel())
    rec.invoke("c1", KVPut("k", "v"), 0.5)
    rec.invoke(2, KVGet("k"), 1)
    rec.ok("c1", None, 2)
    rec.ok(2, "v", 3)
    rec.invoke(3, KVGet("z"), 4)
    text = rec.to_jsonl()
    assert text.splitlines()[0].startswith('{"format": "vsm-phoenix-history"')
    again = history_from_jsonl(text)
    assert again == rec.history()
    assert again.operations[2].output is UNKNOWN
    assert detect_format(text) == "json" and load_history(text.encode()) == again
    reg = HistoryRecorder(RegisterModel(initial=0))
    reg.invoke(0, RegisterCas(0, 1), 0)
    reg.ok(0, True, 1)
    assert history_from_jsonl(reg.to_jsonl()) == reg.history()


# -- fuzzing: only DecodeError may escape ------------------------------------------------

FUZZ = settings(
    max_examples=4 * settings.default.max_examples,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
SEEDS = [(DATA / n).read_bytes()[:1500] for n in sorted(VENDORED)] + [
    HistoryRecorder(KVModel()).to_jsonl().encode()
    + b'{"client": 0, "call": 0, "return": 1, "input": {"f": "put", "key": "a", "value": "1"}, '
    b'"output": null}\n'
]


def _load_all_ways(data: bytes) -> None:
    for fmt in ("auto", "json", "porcupine-kv", "jepsen-etcd"):
        try:
            history = load_history(data, fmt)
        except DecodeError:
            continue
        check_history(history, timeout=2)


@FUZZ
@given(st.binary(max_size=300))
def test_fuzzed_bytes_raise_only_decode_error(data: bytes) -> None:
    _load_all_ways(data)


@FUZZ
@given(st.sampled_from(SEEDS), st.integers(0, 2**32 - 1), st.integers(1, 8))
def test_mutated_valid_files_raise_only_decode_error(
    seed: bytes, rng_seed: int, edits: int
) -> None:
    rng = random.Random(rng_seed)
    data = bytearray(seed)
    alphabet = b' \t\n{}[]:,"\\-0123456789nilokfailinvoke\xff\x00'
    for _ in range(edits):
        kind = rng.randrange(4)
        pos = rng.randrange(len(data) + 1)
        if kind == 0 and data:
            del data[min(pos, len(data) - 1)]
        elif kind == 1:
            data.insert(pos, rng.choice(alphabet))
        elif kind == 2 and data:
            data[min(pos, len(data) - 1)] = rng.choice(alphabet)
        else:
            del data[pos:]
    _load_all_ways(bytes(data))
