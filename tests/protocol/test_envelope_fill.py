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
import cbor2
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vsm_phoenix.crdt import Timestamp
from vsm_phoenix.errors import DecodeError, InvalidArgument
from vsm_phoenix.protocol import _fill_pure
from vsm_phoenix.protocol import envelope as envelope_module
from vsm_phoenix.protocol.envelope import Envelope
from vsm_phoenix.protocol.envelope_batch import encode_envelopes
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


# -- parse_columns: the batch parser of both backends --------------------------------------

def _parsed(backend: ModuleType, data: Any, max_payload: int = 1 << 24) -> Any:
    try:
        return ("ok", backend.parse_columns(data, max_payload))
    except DecodeError:
        return ("raised", DecodeError)


def _agree(data: Any, max_payload: int = 1 << 24) -> Any:
    verdicts = [_parsed(backend, data, max_payload) for backend in BACKENDS]
    assert all(v == verdicts[0] for v in verdicts), verdicts
    return verdicts[0]


names = st.text(min_size=1, max_size=12)
small_ids = st.binary(min_size=1, max_size=32)


@st.composite
def batch_bytes(draw: st.DrawFn) -> bytes:
    to_topic = draw(st.booleans())
    address = draw(names)
    envs = [
        Envelope(message_id=draw(small_ids), type=draw(st.sampled_from(["t.a", "t.b", "é.ü"])),
                 sender="s", recipient=None if to_topic else address,
                 topic=address if to_topic else None, correlation_id=draw(st.none() | small_ids),
                 timestamp=(draw(st.integers(0, 2**63 - 1)), draw(st.integers(0, 2**32 - 1)),
                            draw(st.sampled_from(["s", "r", "ß" * 256]))),
                 hop_limit=draw(st.integers(0, 255)),
                 causal_context=draw(st.none() | st.binary(max_size=30)),
                 payload=draw(st.binary(max_size=300) | st.just(b"z" * 3000)))
        for _ in range(draw(st.integers(1, 6)))
    ]
    return encode_envelopes(envs, sender="s", recipient=None if to_topic else address,
                            topic=address if to_topic else None)


@settings(max_examples=300, deadline=None)
@given(batch_bytes(), st.data())
def test_both_parsers_agree_on_batches_and_their_mutations(raw: bytes,
                                                           data: st.DataObject) -> None:
    assert _agree(raw)[0] == "ok"
    mutated = bytearray(raw)
    for _ in range(data.draw(st.integers(1, 3))):
        at = data.draw(st.integers(0, len(mutated) - 1))
        mutated[at] ^= data.draw(st.integers(1, 255))
    cut = data.draw(st.integers(0, len(mutated)))
    _agree(bytes(mutated))
    _agree(bytes(mutated[:cut]))
    _agree(raw + data.draw(st.binary(min_size=1, max_size=3)))  # trailing bytes
    _agree(raw, data.draw(st.integers(-1, 400)))  # max_payload


cbor_values = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(-(2**64), 2**64 - 1), st.binary(max_size=4),
              st.text(max_size=4), st.floats()),
    lambda inner: st.lists(inner, max_size=4), max_leaves=30)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.one_of(st.lists(cbor_values, min_size=1, max_size=3), cbor_values),
                min_size=11, max_size=11), st.sampled_from([0, 1, 2]))
def test_both_parsers_agree_on_batch_shaped_values(columns: list[Any], version: int) -> None:
    value = [version, *columns]
    _agree(cbor2.dumps(value))
    _agree(cbor2.dumps(value, canonical=True))


@pytest.mark.parametrize("data", [
    b"", b"\x8c", b"\x9f\xff", b"\x8c\x01" + b"\x9f\x41a\xff" * 11,  # indefinite columns
    bytes.fromhex("8c18010000"),  # the version in a longer head than needed
    b"\x8c\x01" + b"\x81\x41a" * 11,  # one envelope, everything a byte string
    b"\xd9\xd9\xf7" + b"\x8c\x01",  # a tag
])
def test_both_parsers_refuse_malformed_batches(data: bytes) -> None:
    assert _agree(data) == ("raised", DecodeError)


def test_non_bytes_input_goes_the_pure_way() -> None:
    good = encode_envelopes([Envelope(message_id=b"i", type="t", sender="s", recipient="r",
                                      timestamp=(1, 2, "s"))], sender="s", recipient="r")
    for backend in BACKENDS:
        assert _parsed(backend, bytearray(good)) == _parsed(_fill_pure, good)
        assert _parsed(backend, memoryview(good)) == _parsed(_fill_pure, good)
        assert _parsed(backend, "text") == ("raised", DecodeError)


# -- encode_batch: the batch encoder of both backends -------------------------------------

def _encoded(backend: ModuleType, envs: Any, sender: Any, recipient: Any, topic: Any,
             threshold: int) -> bytes | None:
    layout = backend.Layout(Envelope, FIELDS)
    out: bytes | None = backend.encode_batch(layout, envs, sender, recipient, topic,
                                             threshold)
    return out


@settings(max_examples=200, deadline=None)
@given(st.data(), st.integers(1, 6), st.booleans(), st.sampled_from([0, 5, 1024, 10**9]))
def test_both_encoders_write_the_bytes_of_the_general_path(
    data: st.DataObject, n: int, to_topic: bool, threshold: int
) -> None:
    address = data.draw(names)
    envs = [
        Envelope(message_id=data.draw(small_ids), type=data.draw(names), sender="s",
                 recipient=None if to_topic else address, topic=address if to_topic else None,
                 correlation_id=data.draw(st.none() | small_ids),
                 timestamp=(data.draw(st.integers(0, 2**63 - 1)),
                            data.draw(st.integers(0, 2**32 - 1)), data.draw(names)),
                 hop_limit=data.draw(st.integers(0, 255)),
                 causal_context=data.draw(st.none() | st.binary(max_size=30)),
                 payload=data.draw(st.binary(max_size=40)))
        for _ in range(n)
    ]
    recipient, topic = (None, address) if to_topic else (address, None)
    general = cbor2.dumps(_fill_pure.batch_value(envs))
    plain = max(len(e.payload) for e in envs) < threshold
    for backend in BACKENDS:
        got = _encoded(backend, envs, "s", recipient, topic, threshold)
        assert got == (general if plain else None)
        # another sender or address, or a stranger in the list: not the plain case
        assert _encoded(backend, envs, "t", recipient, topic, threshold) is None
        assert _encoded(backend, envs, "s", topic, recipient, threshold) is None
        assert _encoded(backend, [*envs, "x"], "s", recipient, topic, threshold) is None
    assert encode_envelopes(envs, sender="s", recipient=recipient, topic=topic,
                            compress_threshold=threshold if plain else 10**9) == general


def test_encoders_leave_unencodable_names_to_the_general_path() -> None:
    env = Envelope(message_id=b"i", type="t\ud800", sender="s", recipient="r",
                   timestamp=(1, 2, "s"))
    for backend in BACKENDS:
        assert _encoded(backend, [env], "s", "r", None, 1024) is None
    with pytest.raises(InvalidArgument):
        encode_envelopes([env], sender="s", recipient="r")
