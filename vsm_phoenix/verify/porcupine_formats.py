"""Parsers for the two public history formats Porcupine's test suite uses.

**Porcupine KV logs** (Jepsen/Knossos style, one EDN map per line)::

    {:process 0, :type :invoke, :f :append, :key "0", :value "x 0 0 y"}
    {:process 0, :type :ok, :f :get, :key "0", :value "x 0 0 y"}

``:f`` is ``:get`` / ``:put`` / ``:append``; a get's invoke has ``:value nil``. Checked
with ``KVModel(missing="")``: that service returns ``""`` for absent keys.

**Jepsen etcd logs** (a cas-register, fields separated by tabs or spaces)::

    INFO  jepsen.util - 3	:invoke	:cas	[3 0]
    INFO  jepsen.util - 3	:ok	:read	nil

Checked with ``RegisterModel()`` (initial value nil).

Event semantics, shared by both (Jepsen's): ``:invoke`` opens the process's operation;
``:ok`` completes it; ``:info`` means indeterminate, so the operation stays pending to
the end of the history (it may or may not have taken effect; Jepsen then retires the
process); ``:fail`` means it did not take effect, so it is dropped — except an etcd
``:fail :cas``, which is a definite "compare failed" answer and is kept with output
``False`` (as Porcupine does; its published verdicts for these logs rely on it).
Operations still open at the end are pending. Times are line numbers.

Hostile input: every line must parse (blank lines, other loggers' lines and nemesis
lines in etcd logs are skipped); anything else raises ``DecodeError`` naming the line.
"""

from __future__ import annotations

import re
from typing import Any, Final

from vsm_phoenix.errors import DecodeError
from vsm_phoenix.verify.history import UNKNOWN, History, Operation, _lines
from vsm_phoenix.verify.models import (
    KVAppend,
    KVGet,
    KVInput,
    KVModel,
    KVPut,
    RegisterCas,
    RegisterInput,
    RegisterModel,
    RegisterRead,
    RegisterWrite,
)

__all__ = ["parse_jepsen_etcd", "parse_porcupine_kv"]

_MAX_LINE: Final = 1 << 20


class _Pending:
    """Open operations per process, and the operation slots in invocation order."""

    def __init__(self) -> None:
        self.slots: list[Operation[Any, Any] | None] = []
        self.open: dict[int, tuple[int, str, int]] = {}  # process -> (slot, f, line)

    def invoke(self, lineno: int, process: int, f: str, op: Operation[Any, Any]) -> None:
        if process in self.open:
            raise DecodeError(
                f"line {lineno}: process {process} invokes while its operation from line "
                f"{self.open[process][2]} is still open"
            )
        self.open[process] = (len(self.slots), f, lineno)
        self.slots.append(op)

    def close(self, lineno: int, process: int, f: str) -> tuple[int, Operation[Any, Any]]:
        try:
            slot, open_f, _ = self.open.pop(process)
        except KeyError:
            raise DecodeError(f"line {lineno}: process {process} has no open operation") from None
        if open_f != f:
            raise DecodeError(f"line {lineno}: process {process} completes :{f}, invoked :{open_f}")
        op = self.slots[slot]
        assert op is not None
        return slot, op

    def operations(self) -> list[Operation[Any, Any]]:
        return [op for op in self.slots if op is not None]


# -- Porcupine KV ------------------------------------------------------------------

_TOKEN = re.compile(
    r"""\s*(?:
        (?P<close>\})
      | (?P<kw>:[A-Za-z_][A-Za-z0-9_\-?!.*+/]*)
      | "(?P<str>(?:[^"\\]|\\.)*)"
      | (?P<int>-?\d{1,30})(?![\w.])
      | (?P<nil>nil)(?!\w)
    )\s*,?""",
    re.VERBOSE | re.DOTALL,
)
_ESCAPES: Final = {"n": "\n", "t": "\t", "r": "\r", '"': '"', "\\": "\\"}
_ESCAPE_RE = re.compile(r"\\(.)", re.DOTALL)


def _unescape(lineno: int, text: str) -> str:
    def repl(m: re.Match[str]) -> str:
        ch = m.group(1)
        if ch not in _ESCAPES:
            raise DecodeError(f"line {lineno}: unsupported string escape \\{ch}")
        return _ESCAPES[ch]

    return _ESCAPE_RE.sub(repl, text)


class _Kw(str):
    """A keyword value (``:foo`` parses to ``_Kw("foo")``)."""


def _edn_map(lineno: int, line: str) -> dict[str, object]:
    """Parse a flat EDN map of keyword keys to keyword/string/int/nil values."""
    text = line.strip()
    if not text.startswith("{"):
        raise DecodeError(f"line {lineno}: expected an EDN map starting with '{{'")
    pos = 1
    result: dict[str, object] = {}
    while True:
        m = _TOKEN.match(text, pos)
        if m is None:
            raise DecodeError(f"line {lineno}, column {pos + 1}: unexpected text")
        pos = m.end()
        if m.group("close") is not None:
            break
        key = m.group("kw")
        if key is None:
            raise DecodeError(f"line {lineno}, column {m.start() + 1}: expected a :keyword key")
        m = _TOKEN.match(text, pos)
        if m is None or m.group("close") is not None:
            raise DecodeError(f"line {lineno}, column {pos + 1}: missing value for {key}")
        pos = m.end()
        value: object
        if m.group("kw") is not None:
            value = _Kw(m.group("kw")[1:])
        elif m.group("str") is not None:
            value = _unescape(lineno, m.group("str"))
        elif m.group("int") is not None:
            value = int(m.group("int"))
        else:
            value = None
        if key[1:] in result:
            raise DecodeError(f"line {lineno}: duplicate key {key}")
        result[key[1:]] = value
    if pos != len(text):
        raise DecodeError(f"line {lineno}, column {pos + 1}: text after the closing brace")
    return result


def _field(lineno: int, record: dict[str, object], name: str, kind: type) -> Any:
    if name not in record:
        raise DecodeError(f"line {lineno}: missing :{name}")
    value = record[name]
    if kind is _Kw:
        if not isinstance(value, _Kw):
            raise DecodeError(f"line {lineno}: :{name} must be a keyword")
    elif kind is int:
        if not isinstance(value, int):
            raise DecodeError(f"line {lineno}: :{name} must be an integer")
    elif kind is str and (not isinstance(value, str) or isinstance(value, _Kw)):
        raise DecodeError(f"line {lineno}: :{name} must be a string")
    return value


def parse_porcupine_kv(data: bytes | str) -> History:
    """Parse a Porcupine KV log (see the module docstring) into a KV history."""
    model = KVModel(missing="")
    pending = _Pending()
    for lineno, line in _lines(data):
        if not line.strip():
            continue
        if len(line) > _MAX_LINE:
            raise DecodeError(f"line {lineno}: line too long")
        record = _edn_map(lineno, line)
        extra = set(record) - {"process", "type", "f", "key", "value", "time", "index"}
        if extra:
            raise DecodeError(f"line {lineno}: unknown keys {sorted(extra)}")
        process = _field(lineno, record, "process", int)
        kind = str(_field(lineno, record, "type", _Kw))
        f = str(_field(lineno, record, "f", _Kw))
        key = _field(lineno, record, "key", str)
        if f not in ("get", "put", "append"):
            raise DecodeError(f"line {lineno}: unknown :f :{f}")
        value = record.get("value")
        if kind == "invoke":
            inp: KVInput
            if f == "get":
                if value is not None:
                    raise DecodeError(f"line {lineno}: a get's invoke has :value nil")
                inp = KVGet(key)
            else:
                value = _field(lineno, record, "value", str)
                inp = KVPut(key, value) if f == "put" else KVAppend(key, value)
            pending.invoke(lineno, process, f, Operation(process, inp, lineno, None, UNKNOWN))
        elif kind in ("ok", "fail", "info"):
            slot, op = pending.close(lineno, process, f)
            if op.input.key != key:
                raise DecodeError(f"line {lineno}: key {key!r} differs from the invoke's")
            if kind == "ok":
                output: str | None = None
                if f == "get":
                    output = _field(lineno, record, "value", str)
                pending.slots[slot] = Operation(process, op.input, op.call, lineno, output)
            elif kind == "fail":
                pending.slots[slot] = None
            # info: stays pending
        else:
            raise DecodeError(f"line {lineno}: unknown :type :{kind}")
    return History(model, pending.operations())


# -- Jepsen etcd -------------------------------------------------------------------

_LOG_LINE = re.compile(r"^\s*(?:TRACE|DEBUG|INFO|WARN|ERROR)\s+(\S+)\s+-\s*(.*?)\s*$")
_ETCD_OP = re.compile(r"^(\d{1,18})\s+:(\w[\w-]*)\s+:(\w[\w-]*)(?:\s+(.*?))?$")
_NEMESIS = re.compile(r"^:nemesis\s")
_VALUE_INT = re.compile(r"^-?\d{1,18}$")
_VALUE_PAIR = re.compile(r"^\[\s*(nil|-?\d{1,18})\s+(-?\d{1,18})\s*\]$")


def _etcd_scalar(lineno: int, text: str | None) -> int | None:
    if text is None or text == "nil":
        return None
    if _VALUE_INT.match(text):
        return int(text)
    raise DecodeError(f"line {lineno}: expected an integer or nil, got {text!r}")


def parse_jepsen_etcd(data: bytes | str) -> History:
    """Parse a Jepsen etcd log (see the module docstring) into a register history."""
    model = RegisterModel()
    pending = _Pending()
    for lineno, line in _lines(data):
        if not line.strip():
            continue
        if len(line) > _MAX_LINE:
            raise DecodeError(f"line {lineno}: line too long")
        log = _LOG_LINE.match(line)
        if log is None:
            raise DecodeError(f"line {lineno}: not a Jepsen log line")
        if log.group(1) != "jepsen.util" or _NEMESIS.match(log.group(2)):
            continue  # other loggers and the nemesis do not operate on the register
        m = _ETCD_OP.match(log.group(2))
        if m is None:
            raise DecodeError(f"line {lineno}: expected '<process> :<type> :<f> <value>'")
        process, kind, f, raw = int(m.group(1)), m.group(2), m.group(3), m.group(4)
        if f not in ("read", "write", "cas"):
            raise DecodeError(f"line {lineno}: unknown operation :{f}")
        if kind == "invoke":
            inp: RegisterInput
            if f == "read":
                if raw not in (None, "nil"):
                    raise DecodeError(f"line {lineno}: a read's invoke has value nil")
                inp = RegisterRead()
            elif f == "write":
                value = _etcd_scalar(lineno, raw)
                if value is None:
                    raise DecodeError(f"line {lineno}: a write needs an integer value")
                inp = RegisterWrite(value)
            else:
                pair = _VALUE_PAIR.match(raw or "")
                if pair is None:
                    raise DecodeError(f"line {lineno}: a cas needs a value [old new]")
                inp = RegisterCas(_etcd_scalar(lineno, pair.group(1)), int(pair.group(2)))
            pending.invoke(lineno, process, f, Operation(process, inp, lineno, None, UNKNOWN))
        elif kind == "ok":
            slot, op = pending.close(lineno, process, f)
            output: int | bool | None = None
            if f == "read":
                output = _etcd_scalar(lineno, raw)
            elif f == "cas":
                output = True
            pending.slots[slot] = Operation(process, op.input, op.call, lineno, output)
        elif kind == "fail":
            slot, op = pending.close(lineno, process, f)
            if f == "cas" and raw is not None and _VALUE_PAIR.match(raw):
                pending.slots[slot] = Operation(process, op.input, op.call, lineno, False)
            else:
                pending.slots[slot] = None  # e.g. ':fail :read :timed-out': did not happen
        elif kind == "info":
            pending.close(lineno, process, f)  # indeterminate: pending to the end
        else:
            raise DecodeError(f"line {lineno}: unknown type :{kind}")
    return History(model, pending.operations())
