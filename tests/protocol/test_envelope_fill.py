"""The slot-filling kernels behind ``Envelope(...)``, the batch decoder, ``Messenger.send``
and the AMQP receive path: the Cython twin (``_fill_native``) against the pure one
(``_fill_pure``) -- same objects, same verdicts -- and both against the classes' own
constructors."""

from __future__ import annotations

import random
from itertools import repeat
from types import ModuleType
from typing import Any

import attrs
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vsm_phoenix.crdt import Timestamp
from vsm_phoenix.errors import InvalidArgument
from vsm_phoenix.protocol import _fill_pure
from vsm_phoenix.protocol import envelope as envelope_module
from vsm_phoenix.protocol.envelope import Envelope
from vsm_phoenix.protocol.kit import Messenger
from vsm_phoenix.protocol.node import Receive, Send

native: ModuleType | None
try:
    from vsm_phoenix.protocol import _fill_native as native
except ImportError:  # pragma: no cover - the pure-only build
    native = None

BACKENDS = [_fill_pure] + ([native] if native is not None else [])
FIELDS = tuple(f.name for f in attrs.fields(Envelope))

ints = st.one_of(st.integers(-3, 300), st.sampled_from(
    [2**32 - 1, 2**32, 2**63 - 1, 2**63, 2**64, -(2**63), True, False]))
byteses = st.one_of(st.binary(max_size=40), st.just(bytearray(b"id")))
strs = st.one_of(st.text(max_size=3), st.text(min_size=255, max_size=258), st.just("a" * 256))
anything = st.one_of(st.none(), ints, byteses, strs, st.floats(allow_nan=False),
                     st.lists(st.integers(), max_size=3))
stamps = st.one_of(
    st.builds(Timestamp, ints, ints, strs),
    st.tuples(ints, ints, strs),
    anything,
)


def _plain(**fields: Any) -> Any:
    """What the field-by-field path (the attrs-era constructor) decides."""
    env: Envelope = object.__new__(Envelope)
    try:
        for name, setter in zip(FIELDS, envelope_module._SETTERS, strict=True):
            value = fields[name]
            setter(env, envelope_module._ts_converter(value) if name == "timestamp" else value)
        if not envelope_module._valid_common(env):
            envelope_module._check_fields(env)
    except (InvalidArgument, TypeError, IndexError) as exc:
        return ("raised", type(exc))
    return ("ok", env)


def _built(**fields: Any) -> Any:
    try:
        return ("ok", Envelope(**fields))
    except (InvalidArgument, TypeError, IndexError) as exc:
        return ("raised", type(exc))


@settings(max_examples=300, deadline=None)
@given(st.fixed_dictionaries({
    "message_id": st.one_of(byteses, anything), "type": st.one_of(strs, anything),
    "sender": st.one_of(strs, anything), "recipient": st.one_of(st.none(), strs, anything),
    "topic": st.one_of(st.none(), strs), "correlation_id": st.one_of(st.none(), byteses),
    "timestamp": stamps, "hop_limit": ints, "causal_context": st.one_of(st.none(), byteses,
                                                                         anything),
    "payload": st.one_of(byteses, anything),
}))
def test_the_constructor_decides_what_the_field_by_field_checks_decide(
    fields: dict[str, Any]
) -> None:
    assert _built(**fields) == _plain(**fields)
    made = _outcome(envelope_module._make, *(fields[name] for name in FIELDS))
    assert made == _built(**fields)


def _outcome(fn: Any, *args: Any) -> Any:
    try:
        return ("ok", fn(*args))
    except (InvalidArgument, TypeError, IndexError) as exc:
        return ("raised", type(exc))


@settings(max_examples=200, deadline=None)
@given(st.tuples(byteses, strs, strs, st.one_of(st.none(), strs), st.one_of(st.none(), strs),
                 st.one_of(st.none(), byteses), stamps, ints, st.one_of(st.none(), byteses),
                 byteses))
def test_the_fast_checks_of_both_backends_agree(values: tuple[Any, ...]) -> None:
    verdicts = []
    for backend in BACKENDS:
        layout = backend.Layout(Envelope, FIELDS)
        env = object.__new__(Envelope)
        ok = backend.envelope_init(layout, env, *values)
        verdicts.append(ok)
        if ok:
            assert tuple(getattr(env, name) for name in FIELDS) == values
        else:  # nothing was written
            assert all(not hasattr(env, name) for name in FIELDS)
    assert len(set(verdicts)) == 1


@pytest.mark.parametrize("backend", BACKENDS)
def test_build_and_build_many_equal_the_constructors(backend: ModuleType) -> None:
    m = Messenger("a", random.Random(7))
    envs = [m.envelope(1000 + i, "t.x", bytes([i]), recipient="b") for i in range(50)]
    layout = backend.Layout(Envelope, FIELDS)
    copies = backend.build_many(layout, len(envs), [[getattr(e, f) for e in envs]
                                                    for f in FIELDS])
    assert copies == envs and all(type(c) is Envelope for c in copies)
    assert [backend.build(layout, [getattr(e, f) for f in FIELDS]) for e in envs] == envs
    receive = backend.Layout(Receive, ("now", "envelope"))
    events = backend.build_many(receive, len(envs), (repeat(5), envs))
    assert events == [Receive(5, e) for e in envs]
    assert backend.build(backend.Layout(Send, ("envelope",)), (envs[0],)) == Send(envs[0])
    assert backend.build_many(layout, 0, [[] for _ in FIELDS]) == []


@pytest.mark.parametrize("backend", BACKENDS)
def test_layouts_refuse_what_is_not_a_slot(backend: ModuleType) -> None:
    class Plain:
        pass

    with pytest.raises(InvalidArgument):
        backend.Layout(Envelope, ("message_id", "nope"))
    with pytest.raises(InvalidArgument):
        backend.Layout(Plain, ("__dict__",))
    with pytest.raises(InvalidArgument):
        backend.Layout(tuple, ())  # not a class statement's class
    layout = backend.Layout(Send, ("envelope",))
    with pytest.raises(InvalidArgument):
        backend.build(layout, ())
    with pytest.raises(InvalidArgument):
        backend.build_many(layout, 1, ())


def test_messenger_send_is_send_of_its_envelope() -> None:
    a, b = Messenger("a", random.Random(3)), Messenger("a", random.Random(3))
    for i in range(20):
        sent = a.send(1000, "b", "t.x", {"i": i})
        assert type(sent) is Send
        assert sent == Send(b.envelope(1000, "t.x", {"i": i}, recipient="b"))
    with pytest.raises(InvalidArgument):
        a.send(1000, "", "t.x", b"")
