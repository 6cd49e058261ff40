"""Regression tests for the examples of issue 10, part 1 (hostile bytes), and more of
each kind: every decoder of outside bytes refuses them with its documented error, at
a cost linear in the input (memory asserted with tracemalloc; never a timing).

The bombs are built byte by byte (``hostile_inputs``); the first test shows on a
small instance that they really are bombs for a general CBOR decoder.
"""

from __future__ import annotations

import tracemalloc
import zlib
from collections.abc import Callable
from typing import Any

import cbor2
import pytest
import zstandard
from hostile_inputs import (
    array,
    big_int_literal,
    bignum,
    bstr,
    head,
    largest_shared_ref_bomb,
    shared_ref_bomb,
    string_ref_bomb,
    text,
)
from hostile_targets import REGISTRY, _roster, _signed_batch

from vsm_phoenix import cbor
from vsm_phoenix.crdt import ORSet, codec, decode
from vsm_phoenix.crypto.batch import open_batch
from vsm_phoenix.crypto.keyset import KeyKind, Keyset
from vsm_phoenix.crypto.replay import ReplayWindow
from vsm_phoenix.errors import DecodeError
from vsm_phoenix.protocol.envelope import Envelope, decode_cbor, encode_cbor
from vsm_phoenix.verify import load_history

KIB = 1024


def refused_within(fn: Callable[..., Any], *args: Any, limit: int = 64 * KIB,
                   error: type[BaseException] = DecodeError) -> BaseException:
    """Call ``fn(*args)``: it must raise ``error``, with a formattable message, and peak
    traced memory under ``limit`` bytes."""
    tracemalloc.start()
    try:
        with pytest.raises(error) as info:
            fn(*args)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert str(info.value)  # Python can format whatever the message holds
    assert peak < limit, f"{fn.__qualname__} used {peak} bytes refusing {len(args[0])} bytes"
    return info.value


def _crdt(state: bytes, tag: str = "orset", version: bytes = b"\x01") -> bytes:
    return array([text(tag), version, state])


def _frame(header: bytes, body: bytes = b"\x40") -> bytes:
    return array([header, body])


def _env(**changes: Any) -> Envelope:
    fields: dict[str, Any] = {"message_id": b"m1", "type": "t.x", "sender": "a",
                              "recipient": "b", "timestamp": (1, 0, "a"), "payload": b""}
    fields.update(changes)
    return Envelope(**fields)


# -- the bombs are real ------------------------------------------------------------------
def test_a_shared_reference_chain_is_a_bomb_for_a_general_decoder() -> None:
    bomb = shared_ref_bomb(6, b"x" * 16, fanout=4)
    expanded = cbor2.dumps(cbor2.loads(bomb)[-1])  # what a canonical re-encoding writes
    assert len(bomb) < 120 and len(expanded) >= 4**6 * 16


def test_a_string_reference_namespace_expands_for_a_general_decoder() -> None:
    bomb = string_ref_bomb(1000, 64)
    assert len(cbor2.dumps(cbor2.loads(bomb))) >= 1000 * 64 > 20 * len(bomb)


# -- issue 10: the three shared-reference bombs -----------------------------------------
def test_139_byte_shared_reference_bomb_through_crdt_decode() -> None:
    data = _crdt(largest_shared_ref_bomb(139 - 8))
    assert len(data) <= 139
    exc = refused_within(decode, data)
    assert "tag 28" in str(exc)


@pytest.mark.parametrize("name", sorted(n for n in REGISTRY if n.startswith("crdt.")))
def test_every_crdt_decoder_refuses_the_bomb(name: str) -> None:
    tag = "orset" if name == "crdt.decode" else REGISTRY[name].seeds()[0][2:]
    data = array([tag if isinstance(tag, bytes) else text(tag), b"\x01",
                  largest_shared_ref_bomb(131)])
    refused_within(REGISTRY[name].subject().decode, data)


def test_157_byte_shared_reference_bomb_through_envelope_from_bytes() -> None:
    data = _frame(largest_shared_ref_bomb(157 - 2))
    assert len(data) <= 157
    refused_within(Envelope.from_bytes, data)


def decode_batch(body: bytes) -> object:
    """What the AMQP adapter does with a body before anything else."""
    return open_batch(body, _roster())


def test_1_kb_amqp_body_bomb_through_the_batch_decoder() -> None:
    # 1 KB leaf, fan-out 4: a general decoder would re-encode 4**levels KB.
    body = array([largest_shared_ref_bomb(1159, leaf=b"\xaa" * 1000)])
    assert 1100 <= len(body) <= 1161
    exc = refused_within(decode_batch, body)
    assert "tag 28" in str(exc)
    # and from a member who signs it: the frames parser refuses it too
    exc = refused_within(_signed_batch, body)
    assert "tag 28" in str(exc)


BOMBS = {
    "shared-ref": largest_shared_ref_bomb(200),
    "string-ref": string_ref_bomb(500, 64),
    "tag-24-embedded": head(6, 24) + bstr(largest_shared_ref_bomb(100)),
}
WIRE_DECODERS: dict[str, Callable[[bytes], object]] = {
    "decode_cbor": decode_cbor,
    "cbor.loads": lambda d: cbor.loads(d, wire=True),
    "cbor.loads(bignums)": lambda d: cbor.loads(d, wire=True, bignums=True),
    "crdt.decode": lambda d: decode(_crdt(d)),
    "ORSet.from_bytes": lambda d: ORSet.from_bytes(_crdt(d)),
    "Envelope.from_bytes": lambda d: Envelope.from_bytes(_frame(d)),
    "Envelope payload": lambda d: Envelope.from_bytes(_frame(head(5, 0), bstr(d))),
    "open_batch": lambda d: decode_batch(array([d])),
    "open_batch(signed payload)": lambda d: _signed_batch(array([d])),
    "ReplayWindow.from_bytes": lambda d: ReplayWindow.from_bytes(array([b"\x01", d])),
}


@pytest.mark.parametrize("bomb", sorted(BOMBS))
@pytest.mark.parametrize("decoder", sorted(WIRE_DECODERS))
def test_tagged_bombs_are_refused_at_parse_time(decoder: str, bomb: str) -> None:
    refused_within(WIRE_DECODERS[decoder], BOMBS[bomb])


@pytest.mark.parametrize("name", ["channel.open.aead.member-header",
                                  "channel.open.mac.member-header",
                                  "keyset.from_encrypted.plaintext",
                                  "roster.from_bytes.authority-body",
                                  "batch.open_batch.member-payload"])
def test_bombs_behind_authentication_are_refused(name: str) -> None:
    """A member that holds the key cannot bomb the header or keyset parser either."""
    subject = REGISTRY[name].subject()
    for bomb in BOMBS.values():
        refused_within(subject.decode, array([bomb]))


# -- issue 10: 10**5000 as a version or a header key -----------------------------------
def test_huge_int_as_crdt_version_or_state() -> None:
    refused_within(decode, _crdt(b"\x80", version=bignum(10**5000)))
    refused_within(decode, _crdt(array([bignum(-(10**5000))])))
    refused_within(ORSet.from_bytes, _crdt(b"\x80", version=bignum(2**8192)))


def test_huge_int_as_envelope_version_on_the_wire() -> None:
    header, body = _env().wire_parts()
    raw = bytearray(encode_cbor([header, body]))
    assert raw.count(b"\x61v\x01") == 1
    data = bytes(raw).replace(b"\x61v\x01", b"\x61v" + bignum(10**5000))
    exc = refused_within(Envelope.from_bytes, data)
    assert "tag 2" in str(exc)


@pytest.mark.parametrize("bad", [10**5000, -(10**5000), 2**64, [[[1]]], "1", 1.0, True],
                         ids=["1e5000", "-1e5000", "2**64", "list", "str", "float", "bool"])
def test_huge_or_wrong_envelope_version_from_a_mapping(bad: object) -> None:
    header, body = _env().wire_parts()
    header["v"] = bad
    exc = refused_within(Envelope.from_wire_parts, header, body)
    assert "version" in str(exc)


def test_huge_int_as_envelope_header_key() -> None:
    header, body = _env().wire_parts()
    header[10**5000] = 1  # type: ignore[index]
    exc = refused_within(Envelope.from_wire_parts, header, body)
    assert "unknown header keys" in str(exc)
    on_wire = _frame(head(5, 1) + bignum(10**5000) + b"\x01")  # CBOR map keys must be str
    refused_within(Envelope.from_bytes, on_wire)


def test_huge_int_in_a_sealed_channel_header() -> None:
    subject = REGISTRY["channel.open.aead.member-header"].subject()
    key = head(5, 1) + text("sequence") + bignum(10**5000)
    refused_within(subject.decode, key)
    refused_within(subject.decode, head(5, 1) + bignum(10**5000) + b"\x01")


@pytest.mark.parametrize("digits", [4300, 4301, 5001])
def test_huge_int_in_json_decoders(digits: int) -> None:
    lit = big_int_literal(digits)
    keyset = Keyset.generate(KeyKind.AES256_GCM).to_tink_json()
    primary = str(Keyset.from_tink_json(keyset).primary_id)
    refused_within(Keyset.from_tink_json, keyset.replace(primary, lit, 1))
    refused_within(Keyset.from_tink_json, keyset.replace(primary, lit))
    header = '{"format": "vsm-phoenix-history", "version": %s, "model": "kv", "options": {}}'
    refused_within(load_history, header % lit)
    op = ('{"client": %s, "call": %s, "return": null, "input": {"f": "get", "key": "a"}}')
    doc = header % 1 + "\n" + op % (0, lit)
    refused_within(load_history, doc)


def test_deep_json_in_history_and_keyset() -> None:
    deep = "[" * 100_000 + "]" * 100_000
    refused_within(load_history, deep, limit=2 * 1024 * KIB)
    refused_within(Keyset.from_tink_json, deep, limit=2 * 1024 * KIB)
    header = '{"format": "vsm-phoenix-history", "version": 1, "model": "kv", "options": {}}'
    for depth in (900, 985, 990, 995):
        nested = "[" * depth + "]" * depth
        op = '{"client": 0, "call": 0, "return": null, "input": ' + nested + "}"
        refused_within(load_history, header + "\n" + op, limit=1024 * KIB)


# -- issue 10: zstd accepts trailing data -------------------------------------------------
PAYLOAD = bytes(range(256)) * 20


def _compressed(method: int, body: bytes, n: int = len(PAYLOAD)) -> bytes:
    header, _ = _env(payload=PAYLOAD).wire_parts()
    header.update(z=method, n=n)
    return encode_cbor([header, body])


def _zstd(data: bytes, **kw: Any) -> bytes:
    return zstandard.ZstdCompressor(level=3, **kw).compress(data)


def test_zstd_round_trip_still_works() -> None:
    env = _env(payload=PAYLOAD)
    assert Envelope.from_bytes(env.to_bytes(prefer_zstd=True)) == env
    assert Envelope.from_bytes(_compressed(2, _zstd(PAYLOAD))) == env


@pytest.mark.parametrize("suffix", [
    b"\x00", b"garbage", _zstd(b"second frame"), _zstd(b""),
    b"\x50\x2a\x4d\x18\x04\x00\x00\x00abcd",  # a skippable frame
], ids=["nul", "garbage", "second-frame", "empty-frame", "skippable-frame"])
def test_zstd_trailing_data_or_second_frame_refused(suffix: bytes) -> None:
    exc = refused_within(Envelope.from_bytes, _compressed(2, _zstd(PAYLOAD) + suffix))
    assert "zstd" in str(exc)


def test_zlib_trailing_data_refused_as_before() -> None:
    refused_within(Envelope.from_bytes, _compressed(1, zlib.compress(PAYLOAD) + b"\x00"))
    refused_within(Envelope.from_bytes, _compressed(1, zlib.compress(PAYLOAD) * 2))


def test_zstd_frame_must_declare_its_size() -> None:
    no_size = _zstd(PAYLOAD, write_content_size=False)
    refused_within(Envelope.from_bytes, _compressed(2, no_size))
    refused_within(Envelope.from_bytes, _compressed(2, _zstd(PAYLOAD), n=len(PAYLOAD) - 1))
    skippable_only = b"\x50\x2a\x4d\x18\x04\x00\x00\x00abcd"
    refused_within(Envelope.from_bytes, _compressed(2, skippable_only, n=0))


def test_decompression_bomb_is_bounded_before_output() -> None:
    """A frame claiming 1 GiB, or 16 MiB + 1: refused before a byte is produced."""
    big = _zstd(bytes(1 << 20))  # a real 1 MiB frame, ~40 bytes
    tiny_limit = 64 * KIB
    refused_within(lambda d: Envelope.from_bytes(d, max_payload=1 << 16),
                   _compressed(2, big, n=1 << 20), limit=tiny_limit)
    refused_within(lambda d: Envelope.from_bytes(d, max_payload=1 << 16),
                   _compressed(1, zlib.compress(bytes(1 << 20)), n=1 << 20), limit=tiny_limit)
    lying = bytearray(_zstd(bytes(1000)))
    refused_within(Envelope.from_bytes, _compressed(2, bytes(lying), n=1 << 30), limit=tiny_limit)


# -- the choices the fixes made -----------------------------------------------------------
def test_protocol_cbor_carries_no_tags_but_crdt_state_may_hold_bignums() -> None:
    big = cbor.dumps(2**64)
    with pytest.raises(DecodeError, match="tag 2"):
        decode_cbor(big)
    assert codec.loads_canonical(big) == 2**64
    assert decode_cbor(cbor.dumps(2**64 - 1)) == 2**64 - 1
    assert decode_cbor(cbor.dumps(-(2**64))) == -(2**64)


def test_replay_window_size_cannot_make_the_decoder_allocate() -> None:
    """A 20-byte window claiming 65,536 entries is refused before the window (8 KiB of
    blocks) is built: the bitmap must already hold every block."""
    data = cbor.dumps([1, 65536, 5, bytes(8)])
    refused_within(ReplayWindow.from_bytes, data, limit=6 * KIB)
    refused_within(ReplayWindow.from_bytes, cbor.dumps([1, 2**63, 5, bytes(8)]), limit=6 * KIB)
    refused_within(ReplayWindow.from_bytes, array([b"\x01", bignum(10**5000), b"\x05",
                                                   bstr(bytes(8))]))
    w = ReplayWindow(65536)
    w.record(7)
    assert ReplayWindow.from_bytes(w.to_bytes()) == w


def test_deep_nesting_past_the_cap_is_refused_cheaply() -> None:
    """The parser stops at depth 512 (tags nest too: cbor2 reads a tag's content before
    it looks the tag up), whatever the claimed depth."""
    for fn in (decode_cbor, decode, Envelope.from_bytes, decode_batch):
        refused_within(fn, b"\x81" * 100_000 + b"\x00", limit=256 * KIB)
        refused_within(fn, b"\xd8\x1c" * 100_000 + b"\x00", limit=256 * KIB)


def test_huge_length_prefixes_are_refused_without_allocating() -> None:
    """A string claiming 2**63 bytes costs one read buffer (cbor2 reads long strings in
    64 KiB chunks), not the claim."""
    for major in (2, 3, 4, 5):
        data = head(major, 2**63, width=8) + bytes(8)
        for fn in (decode_cbor, decode, Envelope.from_bytes, decode_batch):
            refused_within(fn, data, limit=128 * KIB)


def test_swim_restart_contacts_only_ids_a_message_can_be_addressed_to() -> None:
    """Found by ``make fuzz`` (swim.restart): a persisted member list holding ``""``
    (or an over-long id) made the restarted node build a join envelope to it, which
    raised ``InvalidArgument``; an incarnation at 2**63 - 1 became one peers refuse."""
    import random

    from vsm_phoenix.protocol.node import Restart, Send
    from vsm_phoenix.protocol.swim import SwimNode

    node = SwimNode("n1", random.Random(1))
    effects = node.step(Restart(0, {
        "swim/members": encode_cbor(["", "x" * 257, 5, "n1", "n2"]),
        "swim/incarnation": encode_cbor(2**63 - 1),
    }))
    joins = [e.envelope.recipient for e in effects if isinstance(e, Send)]
    assert joins == ["n2"]
    assert node.incarnation < 2**63
