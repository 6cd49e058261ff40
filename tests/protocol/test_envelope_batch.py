"""Envelope batches (columnar, checked once per batch): round trips, golden bytes, the
fast checks against the plain per-envelope ones, and hostile bytes -> DecodeError only."""

from __future__ import annotations

import zlib
from typing import Any

import cbor2
import pytest
from hypothesis import given
from hypothesis import strategies as st

from vsm_phoenix import cbor
from vsm_phoenix.crdt import Timestamp
from vsm_phoenix.errors import DecodeError, InvalidArgument
from vsm_phoenix.protocol import envelope as envelope_module
from vsm_phoenix.protocol.envelope import COMPRESS_ZLIB, Envelope
from vsm_phoenix.protocol.envelope_batch import (
    MAX_ENVELOPES,
    decode_envelopes,
    encode_envelopes,
)

names = st.text(min_size=1, max_size=12)
ids = st.binary(min_size=1, max_size=32)


@st.composite
def batches(draw: st.DrawFn) -> tuple[str, str | None, str | None, list[Envelope]]:
    """A sender, one address, and 1..8 envelopes from that sender to that address."""
    sender = draw(names)
    to_topic = draw(st.booleans())
    recipient = None if to_topic else draw(names)
    topic = draw(names) if to_topic else None
    envs = [
        Envelope(
            message_id=draw(ids), type=draw(names), sender=sender, recipient=recipient,
            topic=topic, correlation_id=draw(st.none() | ids),
            timestamp=(draw(st.integers(0, 2**63 - 1)), draw(st.integers(0, 2**32 - 1)),
                       draw(names)),
            hop_limit=draw(st.integers(0, 255)),
            causal_context=draw(st.none() | st.binary(max_size=24)),
            payload=draw(st.binary(max_size=200) | st.just(b"z" * 3000)),
        )
        for _ in range(draw(st.integers(1, 8)))
    ]
    return sender, recipient, topic, envs


@given(batches(), st.booleans())
def test_round_trip(batch: tuple[str, str | None, str | None, list[Envelope]],
                    prefer_zstd: bool) -> None:
    sender, recipient, topic, envs = batch
    data = encode_envelopes(envs, sender=sender, recipient=recipient, topic=topic,
                            prefer_zstd=prefer_zstd)
    back = decode_envelopes(data, sender=sender, recipient=recipient, topic=topic)
    assert back == envs
    assert [type(e.timestamp) for e in back] == [Timestamp] * len(envs)
    # canonical: what the strict parser accepts, and equal batches give equal bytes
    assert cbor.dumps(cbor.loads(data)) == data
    assert encode_envelopes(back, sender=sender, recipient=recipient, topic=topic,
                            prefer_zstd=prefer_zstd) == data


def _env(i: int, payload: bytes = b"p", **kw: Any) -> Envelope:
    fields: dict[str, Any] = {
        "message_id": bytes([i + 1]) * 4, "type": "t.x", "sender": "a", "recipient": "b",
        "timestamp": Timestamp(1000 + i, i, "a"), "payload": payload,
    }
    fields.update(kw)
    return Envelope(**fields)


#: Regenerate with ``python -c "import sys; sys.path.insert(0, 'tests/protocol');
#: from test_envelope_batch import golden; print(golden().hex())"`` -- and only with a
#: new format version: a change of these bytes breaks every peer still running.
GOLDEN_HEX = (
    "8c0182440101010144020202028263742e7863742e7882f64163821903e81903e982000182616161"
    "6182080382f642636382000082010082417040"
)


def golden() -> bytes:
    return encode_envelopes(
        [_env(0), _env(1, b"", correlation_id=b"c", causal_context=b"cc", hop_limit=3)],
        sender="a", recipient="b", compress_threshold=10**9)


def test_golden_bytes() -> None:
    """The format is stable: a change of encoding is a new format version."""
    assert golden().hex() == GOLDEN_HEX
    assert decode_envelopes(golden(), sender="a", recipient="b")[1].causal_context == b"cc"


def test_compressed_payloads_round_trip_and_are_bounded() -> None:
    envs = [_env(0, b"a" * 5000), _env(1, b"short")]
    data = encode_envelopes(envs, sender="a", recipient="b", prefer_zstd=False)
    value = cbor2.loads(data)
    assert value[9] == [COMPRESS_ZLIB, 0] and len(value[11][0]) < 100
    assert decode_envelopes(data, sender="a", recipient="b") == envs
    with pytest.raises(DecodeError):
        decode_envelopes(data, sender="a", recipient="b", max_payload=4999)
    with pytest.raises(DecodeError):
        decode_envelopes(data, sender="a", recipient="b", max_total=5000)


def _columns(n: int = 2) -> list[Any]:
    return list(cbor2.loads(encode_envelopes([_env(i) for i in range(n)], sender="a",
                                             recipient="b")))


def _decode(value: Any) -> list[Envelope]:
    return decode_envelopes(cbor2.dumps(value), sender="a", recipient="b")


@pytest.mark.parametrize("change", [
    lambda v: v.__setitem__(0, 2),                      # unknown format
    lambda v: v.append([]),                             # 13 items
    lambda v: v.__setitem__(1, v[1][:1]),               # columns of unequal length
    lambda v: v.__setitem__(1, [b"", b"x"]),            # empty id
    lambda v: v.__setitem__(1, [b"x" * 33, b"x"]),      # id too long
    lambda v: v.__setitem__(2, ["t", 5]),               # a type that is no str
    lambda v: v.__setitem__(2, ["", "t"]),              # empty type
    lambda v: v.__setitem__(3, [b"", None]),            # empty correlation id
    lambda v: v.__setitem__(4, [True, 1]),              # a bool is no integer
    lambda v: v.__setitem__(4, [2**63, 1]),             # physical time out of range
    lambda v: v.__setitem__(5, [-1, 0]),                # negative logical
    lambda v: v.__setitem__(6, ["a", "x" * 257]),       # replica name too long
    lambda v: v.__setitem__(7, [256, 0]),               # hop limit
    lambda v: v.__setitem__(8, ["cc", None]),           # causal context no bytes
    lambda v: v.__setitem__(9, [3, 0]),                 # unknown compression
    lambda v: v.__setitem__(10, [2, 1]),                # n differs from the payload
    lambda v: v.__setitem__(11, ["p", b"p"]),           # payload no bytes
    lambda v: v.__setitem__(9, [COMPRESS_ZLIB, 0]),     # not a zlib stream
    lambda v: v.__setitem__(1, {"a": 1}),               # a column that is a map
    lambda v: [v[i][:0] if i else v[i] for i in range(len(v))],  # no envelopes
])
def test_each_malformed_batch_is_a_decode_error(change: Any) -> None:
    value = _columns()
    changed = change(value)
    with pytest.raises(DecodeError):
        _decode(changed if changed is not None else value)


def test_a_zlib_bomb_is_refused_before_it_expands() -> None:
    value = _columns(1)
    value[9], value[10], value[11] = [COMPRESS_ZLIB], [10], [zlib.compress(b"\0" * 10**7)]
    with pytest.raises(DecodeError):
        _decode(value)


def test_non_canonical_bytes_are_refused() -> None:
    data = bytearray(encode_envelopes([_env(0)], sender="a", recipient="b"))
    assert data[1] == 0x01  # the format version, as a one-byte integer ...
    longer = bytes(data[:1]) + b"\x18\x01" + bytes(data[2:])  # ... and in two bytes
    assert cbor2.loads(longer)[0] == 1
    with pytest.raises(DecodeError, match="canonical"):
        decode_envelopes(longer, sender="a", recipient="b")


def test_the_sender_and_address_come_from_the_caller() -> None:
    data = encode_envelopes([_env(0)], sender="a", recipient="b")
    (env,) = decode_envelopes(data, sender="z", topic="news")
    assert (env.sender, env.recipient, env.topic) == ("z", None, "news")
    for bad in ({"sender": ""}, {"sender": "x" * 257}, {"recipient": ""}):
        args: dict[str, Any] = {"sender": "a", "recipient": "b", **bad}
        with pytest.raises(DecodeError):
            decode_envelopes(data, **args)
    with pytest.raises(InvalidArgument):
        decode_envelopes(data, sender="a", recipient="b", topic="t")
    with pytest.raises(InvalidArgument):
        decode_envelopes(data, sender="a")


def test_encoding_refuses_mixed_or_empty_batches() -> None:
    with pytest.raises(InvalidArgument):
        encode_envelopes([], sender="a", recipient="b")
    with pytest.raises(InvalidArgument):
        encode_envelopes([_env(0), _env(1, sender="c")], sender="a", recipient="b")
    with pytest.raises(InvalidArgument):
        encode_envelopes([_env(0), _env(1, recipient="c")], sender="a", recipient="b")
    with pytest.raises(InvalidArgument):
        encode_envelopes([_env(0)], sender="a", topic="b")
    with pytest.raises(InvalidArgument):
        encode_envelopes([b"x"], sender="a", recipient="b")  # type: ignore[list-item]
    with pytest.raises(InvalidArgument):
        encode_envelopes([_env(0)] * (MAX_ENVELOPES + 1), sender="a", recipient="b")


@given(st.binary(max_size=300))
def test_decoding_is_total(data: bytes) -> None:
    try:
        out = decode_envelopes(data, sender="a", recipient="b")
    except DecodeError:
        return
    assert out and all(type(e) is Envelope and e.recipient == "b" for e in out)


@given(batches(), st.data())
def test_mutated_batches_decode_or_raise_decode_error(
    batch: tuple[str, str | None, str | None, list[Envelope]], data: st.DataObject
) -> None:
    sender, recipient, topic, envs = batch
    raw = bytearray(encode_envelopes(envs, sender=sender, recipient=recipient, topic=topic))
    at = data.draw(st.integers(0, len(raw) - 1))
    raw[at] ^= data.draw(st.integers(1, 255))
    cut = data.draw(st.integers(0, len(raw)))
    try:
        out = decode_envelopes(bytes(raw[:cut]), sender=sender, recipient=recipient,
                               topic=topic)
    except DecodeError:
        return
    assert all(type(e) is Envelope and e.sender == sender for e in out)


# -- the column checks against the per-envelope checks ---------------------------------

#: Field values, valid and not, for the differential test.
anything = st.one_of(
    st.none(), st.booleans(), st.integers(-2, 2**64 - 1), st.text(max_size=3),
    st.binary(max_size=3), st.just("x" * 257), st.just(b"y" * 33), st.just(2**63),
    st.just(2**32), st.just(256), st.just(-1), st.lists(st.integers(0, 3), max_size=3),
)


@st.composite
def rows(draw: st.DrawFn) -> list[list[Any]]:
    """1..3 rows of the 11 per-envelope fields, each valid or drawn from anything."""
    out = []
    for _ in range(draw(st.integers(1, 3))):
        payload = draw(st.binary(max_size=4))
        valid: list[Any] = [
            draw(ids), draw(names), draw(st.none() | ids), draw(st.integers(0, 2**40)),
            draw(st.integers(0, 9)), draw(names), draw(st.integers(0, 255)),
            draw(st.none() | st.binary(max_size=3)), 0, len(payload), payload,
        ]
        for i in draw(st.sets(st.integers(0, 10), max_size=2)):
            valid[i] = draw(anything)
        out.append(valid)
    return out


@given(rows())
def test_column_checks_agree_with_the_per_envelope_checks(table: list[list[Any]]) -> None:
    """A batch is accepted exactly when every one of its envelopes would be accepted by
    ``Envelope.from_wire_parts`` (the plain path), and then gives the same envelopes."""
    plain: list[Envelope] | None = []
    for mid, kind, cid, phys, logical, replica, hop, cc, z, n, payload in table:
        header = {"v": 1, "id": mid, "t": kind, "s": "a", "r": "b", "c": cid,
                  "ts": [phys, logical, replica], "h": hop, "cc": cc, "z": z, "n": n}
        try:
            env = Envelope.from_wire_parts(header, payload)
        except DecodeError:
            plain = None
            break
        assert plain is not None
        plain.append(env)
    value = [1, *map(list, zip(*table, strict=True))]
    try:
        data = cbor.dumps(value)
    except Exception:  # e.g. an unencodable value: nothing to compare
        return
    try:
        fast: list[Envelope] | None = decode_envelopes(data, sender="a", recipient="b")
    except DecodeError:
        fast = None
    assert fast == plain


@given(rows(), st.booleans(), names)
def test_the_constructors_fast_check_never_accepts_what_the_plain_one_refuses(
    table: list[list[Any]], to_topic: bool, name: str
) -> None:
    """The one-expression check the constructor runs first: whatever it accepts, the
    field-by-field checks accept too (they decide the rest)."""
    mid, kind, cid, phys, logical, replica, hop, cc, _z, _n, payload = table[0]
    env = envelope_module._assemble(
        mid, kind, replica, None if to_topic else name, name if to_topic else None, cid,
        Timestamp(phys, logical, replica), hop, cc, payload)
    if envelope_module._valid_common(env):
        envelope_module._check_fields(env)  # must not raise
    else:
        with pytest.raises(InvalidArgument):
            envelope_module._check_fields(env)
