"""The registry of decoders of outside bytes that the hostile-input suite attacks.

A :class:`Target` names one decoder: how to get *seed inputs* (valid encodings, built
here from the public API), how to build the *subject* that decodes (a pure function,
or a small fixture: a node, a receiving channel), the *documented errors* it may
raise, and the seed grammar the mutator understands. Everything else a decoder raises
is a failure, and so is a refused input that changed the subject's state.

To attack a new decoder, register it (``fuzz.py`` and ``test_hostile_properties.py``
pick it up)::

    register(Target(
        name="roster.from_bytes",
        seeds=lambda: [Roster.example().to_bytes()],
        subject=lambda: Subject(Roster.from_bytes),
        errors=(DecodeError,),
    ))

Harness code that shapes a fuzzed input *before* it reaches the decoder (e.g. parsing
the persisted-state map of a ``Restart``) raises :class:`Unfit` for inputs it cannot
use; the fuzzer counts those apart from inputs that reached the decoder.
"""

from __future__ import annotations

import enum
import functools
import random
import time
import traceback
import tracemalloc
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import attrs
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from vsm_phoenix import cbor
from vsm_phoenix.crdt import (
    CRDT,
    GCounter,
    GSet,
    LWWElementSet,
    LWWRegister,
    MVRegister,
    ORMap,
    ORSet,
    PNCounter,
    Timestamp,
    TwoPSet,
    VectorClock,
    decode,
)
from vsm_phoenix.crdt.causal import CausalContext
from vsm_phoenix.crypto import _tinkproto
from vsm_phoenix.crypto.batch import open_batch, seal_batch
from vsm_phoenix.crypto.channel import ChannelMode, SecureChannel
from vsm_phoenix.crypto.identity import Authority, Identity, Roster, RosterBook
from vsm_phoenix.crypto.keyset import KeyKind, Keyset
from vsm_phoenix.crypto.mac import _digest
from vsm_phoenix.crypto.replay import ReplayWindow, decode_record, encode_record
from vsm_phoenix.crypto.signature import SigningKey
from vsm_phoenix.errors import (
    AuthenticationError,
    DecodeError,
    KeyExpiredError,
    PermissionDenied,
    ReplayError,
)
from vsm_phoenix.ext.agents import (
    AgentConfig,
    AgentNode,
    CapabilityGrant,
    LeaseValue,
    Record,
    SpawnProposal,
    Vote,
    decide,
)
from vsm_phoenix.ext.evidence import Event, EvidenceGraph, EvidenceSync, key_lookup
from vsm_phoenix.ext.router import Command, CommandRouter, UnknownCommand, sign_command
from vsm_phoenix.ext.saga import records as saga_records
from vsm_phoenix.ext.saga.log import format_log_value, parse_log_value
from vsm_phoenix.protocol import kv
from vsm_phoenix.protocol.envelope import Envelope, decode_cbor, encode_cbor
from vsm_phoenix.protocol.node import ClientRequest, Node, Receive, Restart, Send, Start
from vsm_phoenix.protocol.raft import RaftConfig
from vsm_phoenix.protocol.sim import Simulator
from vsm_phoenix.protocol.swim import SwimConfig, SwimNode
from vsm_phoenix.protocol.sync import Mutate, SyncConfig, SyncNode
from vsm_phoenix.storage import MemoryStorage
from vsm_phoenix.verify import load_history
from vsm_phoenix.verify.history import HistoryRecorder, history_from_jsonl
from vsm_phoenix.verify.models import (
    KVAppend,
    KVGet,
    KVModel,
    KVPut,
    RegisterCas,
    RegisterModel,
    RegisterRead,
    RegisterWrite,
)
from vsm_phoenix.verify.porcupine_formats import parse_jepsen_etcd, parse_porcupine_kv

__all__ = [
    "REGISTRY", "Subject", "Target", "Unfit", "is_stateful", "register", "run_one", "state_of",
]

_DATA = Path(__file__).resolve().parent.parent / "verify" / "data"
_NOW_S = 1_700_000_000.0


class Unfit(DecodeError):
    """The harness could not shape this input for the decoder (it never reached it)."""


def _nothing() -> object:
    return None


def _noop() -> None:
    return None


@attrs.frozen
class Subject:
    """What a target hands the fuzzer: ``decode(data)``, a ``fingerprint()`` of the
    state a refused input must leave unchanged, and ``reset()`` (back to the initial
    state; the fuzzer calls it between inputs, outside the measurement)."""

    decode: Callable[[bytes], object]
    fingerprint: Callable[[], object] = _nothing
    reset: Callable[[], None] = _noop


@attrs.frozen
class Target:
    """One decoder under attack (see the module docstring)."""

    name: str
    seeds: Callable[[], Sequence[bytes]]
    subject: Callable[[], Subject]
    errors: tuple[type[BaseException], ...]
    grammar: str = "cbor"
    reset_every: int = 0  # call subject.reset() every this many inputs (0: never)
    known: str = ""  # a failure reported to the code's owner, not yet fixed (tests xfail)


REGISTRY: dict[str, Target] = {}


def register(target: Target) -> Target:
    if target.name in REGISTRY:
        raise ValueError(f"target {target.name!r} registered twice")
    REGISTRY[target.name] = target
    return target


def state_of(obj: Any, _seen: frozenset[int] = frozenset(), skip: frozenset[str] = frozenset(),
             ) -> Any:
    """A comparable snapshot of everything reachable from ``obj`` (CRDTs by their
    canonical bytes, random generators by their state), for "unchanged" checks;
    ``skip`` names top-level attributes left out."""
    if obj is None or isinstance(obj, bool | int | float | str | bytes):
        return obj
    if id(obj) in _seen:
        return ("<cycle>",)
    seen = _seen | {id(obj)}
    if isinstance(obj, CRDT):
        return (type(obj).__name__, obj.to_bytes())
    if isinstance(obj, random.Random):
        return ("rng", obj.getstate())
    if isinstance(obj, enum.Enum):
        return (type(obj).__name__, obj.name)
    if isinstance(obj, list | tuple):
        return (type(obj).__name__, *(state_of(v, seen) for v in obj))
    if isinstance(obj, set | frozenset):
        return (type(obj).__name__, *sorted((state_of(v, seen) for v in obj), key=repr))
    if isinstance(obj, Mapping):
        return ("map", *((state_of(k, seen), state_of(v, seen)) for k, v in obj.items()))
    if callable(obj) and not hasattr(obj, "__dict__") and not hasattr(obj, "__slots__"):
        return ("callable", id(obj))
    fields: dict[str, Any] = {}
    for cls in type(obj).__mro__:
        for name in getattr(cls, "__slots__", ()):
            if hasattr(obj, name):
                fields[name] = getattr(obj, name)
    fields.update(getattr(obj, "__dict__", {}))
    return (type(obj).__name__, *((k, state_of(v, seen)) for k, v in sorted(fields.items())
                                  if k not in skip))


def run_one(target: Target, subject: Any, data: bytes, stateful: bool,
             measure: str = "cpu") -> tuple[str, str, int]:
    """Decode ``data`` once and judge it; return ``(outcome, detail, cost)``.

    ``outcome`` is ``accepted``, ``refused:<Error>`` (a documented error), ``unfit``
    or ``failure`` (another exception, or a refused input that changed the state;
    ``detail`` says which). ``cost`` is the CPU ns (``measure="cpu"``) or the peak
    traced bytes (``"mem"``) of the decode call alone, without the fingerprints."""
    before = subject.fingerprint() if stateful else None
    error: BaseException | None = None
    if measure == "mem":
        tracemalloc.start()
        tracemalloc.reset_peak()
        base = tracemalloc.get_traced_memory()[0]
    t0 = time.process_time_ns()
    try:
        subject.decode(data)
    except KeyboardInterrupt:
        raise
    except BaseException as exc:
        error = exc
    cost = time.process_time_ns() - t0
    if measure == "mem":
        cost = tracemalloc.get_traced_memory()[1] - base
        tracemalloc.stop()
    if error is None:
        return "accepted", "", cost
    if isinstance(error, Unfit):
        return "unfit", "", cost
    if isinstance(error, target.errors):
        if stateful and subject.fingerprint() != before:
            return "failure", (f"state changed by a refused input "
                               f"({type(error).__name__}: {error})"), cost
        return f"refused:{type(error).__name__}", "", cost
    tb = traceback.extract_tb(error.__traceback__)[-1]
    where = f"{Path(tb.filename).name}:{tb.lineno}"
    return "failure", f"{type(error).__name__} at {where}: {str(error)[:300]}", cost


def is_stateful(subject: Subject) -> bool:
    """Whether ``subject`` has state that refused inputs must leave unchanged."""
    return subject.fingerprint is not _nothing


# -- plain CBOR ------------------------------------------------------------------------
@functools.cache
def _cbor_seeds() -> list[bytes]:
    values: list[Any] = [
        0, 2**64 - 1, -(2**64), 1.5, "text", b"bytes", None, True, [], {},
        [1, [2, [3, {"a": b"x"}]]], {"k": [1, 2], "l": {"m": None}}, 2**70, -(2**70),
    ]
    return [cbor.dumps(v) for v in values] + [_envelope_seeds()[0]]


register(Target("cbor.loads", _cbor_seeds, lambda: Subject(
    lambda d: cbor.loads(d, wire=True)), (DecodeError,)))
register(Target("cbor.loads.bignums", _cbor_seeds, lambda: Subject(
    lambda d: cbor.loads(d, wire=True, bignums=True)), (DecodeError,)))
register(Target("protocol.decode_cbor", _cbor_seeds, lambda: Subject(decode_cbor),
                (DecodeError,)))


# -- CRDTs -----------------------------------------------------------------------------
T1, T2 = Timestamp(1700000000000, 0, "r1"), Timestamp(1700000000000, 1, "r2")


@functools.cache
def _crdt_states() -> list[CRDT]:
    g = GCounter()
    g.increment("r1", 3)
    g.increment("r2", 2**40)
    g2 = GCounter()
    g2.increment("r3", 2**100)
    pn = PNCounter()
    pn.increment("r1", 5)
    pn.decrement("r2", 7)
    gs = GSet([1, -1, "a", b"\x00", None, ("t", (1, b"x")), 2**70])
    tp = TwoPSet()
    for e in ("a", "b", 3):
        tp.add(e)
    tp.remove("b")
    os_ = ORSet()
    os_.add("r1", "a")
    os_.add("r2", "b")
    os_.add("r1", ("tuple", 2))
    os_.remove("a")
    lw = LWWRegister()
    lw.assign("old", T1)
    lw.assign(("new", 1), T2)
    mv, mv2 = MVRegister(), MVRegister()
    mv.assign("r1", "x")
    mv2.assign("r2", "y")
    mv |= mv2
    ls = LWWElementSet("remove")
    ls.add("a", T1)
    ls.remove("a", T2)
    ls.add(7, T1)
    om = ORMap()
    om.update("r1", "count", GCounter, lambda c: c.increment("r1", 2))
    om.update("r1", "set", ORSet, lambda s: s.add("r1", "e"))
    om.update("r1", "gone", MVRegister, lambda r: r.assign("r1", 7))
    om.remove("gone")
    om.update("r2", "inner", ORMap,
              lambda n: n.update("r2", "k", LWWRegister, lambda r: r.assign("v", T2)))
    vc = VectorClock({"r1": 2, "r2": 1, "r3": 2**64})
    cc = CausalContext([("r1", 1), ("r1", 2), ("r1", 5), ("r2", 3)])
    bottoms = [cls() for cls in (GCounter, PNCounter, GSet, TwoPSet, ORSet, LWWRegister,
                                 MVRegister, LWWElementSet, ORMap, VectorClock, CausalContext)]
    return [g, g2, pn, gs, tp, os_, lw, mv, ls, om, vc, cc, *bottoms]


def _crdt_seeds() -> list[bytes]:
    return [s.to_bytes() for s in _crdt_states()]


register(Target("crdt.decode", _crdt_seeds, lambda: Subject(decode), (DecodeError,)))


def _register_from_bytes(cls: type[CRDT]) -> None:
    def seeds() -> list[bytes]:
        own = [s.to_bytes() for s in _crdt_states() if type(s) is cls]
        return own + [s.to_bytes() for s in _crdt_states()[:3]]

    register(Target(f"crdt.{cls.__name__}.from_bytes", seeds,
                    lambda: Subject(cls.from_bytes), (DecodeError,)))


for _cls in (GCounter, PNCounter, GSet, TwoPSet, ORSet, LWWRegister, MVRegister,
             LWWElementSet, ORMap, VectorClock, CausalContext):
    _register_from_bytes(_cls)


# -- the envelope ----------------------------------------------------------------------
def _envelope(i: int, payload: bytes, **fields: Any) -> Envelope:
    base: dict[str, Any] = {
        "message_id": i.to_bytes(8, "big"), "type": "raft.append", "sender": "n2",
        "recipient": "n1", "timestamp": (1_700_000_000_000 + i, i, "n2"), "payload": payload,
    }
    base.update(fields)
    return Envelope(**base)


@functools.cache
def _envelope_seeds() -> list[bytes]:
    big = b"".join(i.to_bytes(2, "big") for i in range(2000))
    return [
        _envelope(1, encode_cbor({"t": 1})).to_bytes(),
        _envelope(2, b"", recipient=None, topic="swim", correlation_id=b"c" * 8,
                  causal_context=b"\x80", hop_limit=0).to_bytes(),
        _envelope(3, big).to_bytes(prefer_zstd=True),
        _envelope(4, big).to_bytes(prefer_zstd=False),
        _envelope(5, b"x" * 5000).to_bytes(prefer_zstd=True),
    ]


def _from_wire_parts(data: bytes) -> Envelope:
    try:
        frame = cbor.loads(data, canonical=False, wire=True)
    except DecodeError as exc:
        raise Unfit(str(exc)) from None
    if not (isinstance(frame, list) and len(frame) == 2):
        raise Unfit("not [header, payload]")
    return Envelope.from_wire_parts(frame[0], frame[1])


register(Target("envelope.from_bytes", _envelope_seeds,
                lambda: Subject(Envelope.from_bytes), (DecodeError,)))
register(Target("envelope.from_wire_parts", _envelope_seeds,
                lambda: Subject(_from_wire_parts), (DecodeError,)))


@functools.cache
def _envelope_batch_seeds() -> list[bytes]:
    from vsm_phoenix.protocol.envelope_batch import encode_envelopes

    big = b"".join(i.to_bytes(2, "big") for i in range(2000))
    direct = [_envelope(i, encode_cbor({"t": i})) for i in range(1, 4)]
    topic = [_envelope(i, b"", recipient=None, topic="swim", correlation_id=b"c" * 8,
                       causal_context=b"\x80", hop_limit=0) for i in range(2)]
    return [
        encode_envelopes(direct, sender="n2", recipient="n1"),
        encode_envelopes(topic, sender="n2", topic="swim"),
        encode_envelopes([_envelope(5, big), _envelope(6, b"x" * 5000)], sender="n2",
                         recipient="n1", prefer_zstd=False),
    ]


def _decode_envelope_batch(data: bytes) -> list[Envelope]:
    from vsm_phoenix.protocol.envelope_batch import decode_envelopes

    return decode_envelopes(data, sender="n2", recipient="n1")


register(Target("envelope_batch.decode_envelopes", _envelope_batch_seeds,
                lambda: Subject(_decode_envelope_batch), (DecodeError,)))


# -- the secure channel ----------------------------------------------------------------
@functools.cache
def _keysets() -> dict[ChannelMode, Keyset]:
    aead = Keyset.generate(KeyKind.AES256_GCM)
    aead.rotate(now=0)
    mac = Keyset.generate(KeyKind.HMAC_SHA256, tag_size=16)
    return {ChannelMode.AEAD: aead, ChannelMode.MAC: mac}


def _channel(mode: ChannelMode, identity: str) -> SecureChannel:
    return SecureChannel(_keysets()[mode], MemoryStorage(), identity=identity, mode=mode,
                         clock=lambda: _NOW_S)


@functools.cache
def _frames(mode: ChannelMode) -> list[bytes]:
    sender = _channel(mode, "a")
    frames = [sender.seal({"recipient": "b"}, b"payload %d" % i) for i in range(6)]
    frames.append(sender.seal({"recipient": "b", "content_type": "x/y", "rid": "r1"}, b""))
    frames.append(sender.seal({"recipient": "b", "n": [1, {"k": b"v"}]}, bytes(3000)))
    return frames


class _Receiver:
    """A receiving channel ``b`` whose storage (replay windows) is the checked state."""

    def __init__(self, mode: ChannelMode) -> None:
        self.mode = mode
        self.reset()

    def reset(self) -> None:
        self.storage = MemoryStorage()
        self.channel = SecureChannel(_keysets()[self.mode], self.storage, identity="b",
                                     mode=self.mode, clock=lambda: _NOW_S)

    def fingerprint(self) -> object:
        return tuple(self.storage.items())

    def subject(self, decode: Callable[[bytes], object]) -> Subject:
        return Subject(decode, self.fingerprint, self.reset)


def _open_subject(mode: ChannelMode) -> Subject:
    r = _Receiver(mode)
    return r.subject(lambda d: r.channel.open(d))


def _open_many_subject(mode: ChannelMode) -> Subject:
    """``open_many`` of a batch holding the input twice: the first copy's verdict is
    the result (raised when refused), the second must then be a duplicate or refused
    the same way -- never accepted twice."""
    r = _Receiver(mode)

    def decode(data: bytes) -> object:
        first, second = r.channel.open_many([data, data])
        if isinstance(first, Exception):
            if type(second) is not type(first):
                raise AssertionError(f"second copy: {second!r} after {first!r}")
            raise first
        if not (isinstance(second, ReplayError) and second.reason == "duplicate"):
            raise AssertionError(f"a frame was accepted twice in one batch: {second!r}")
        return first

    return r.subject(decode)


def _member_subject(mode: ChannelMode) -> Subject:
    """A member of the cluster (it holds the keyset) seals an arbitrary header: the
    input is the header's CBOR, which reaches the parser behind authentication."""
    r = _Receiver(mode)
    sender = _channel(mode, "a")

    def decode(header: bytes) -> object:
        header = header[:0xFFFF]
        aad = bytes([mode.value]) + len(header).to_bytes(2, "big") + header
        if mode is ChannelMode.AEAD:
            assert sender._aead is not None
            prefix, cipher, nonce = sender._aead._reserve()
            frame = aad + prefix + nonce + cipher.encrypt(nonce, b"p", aad)
        else:
            key = _keysets()[mode].primary_for_sealing(_NOW_S)
            frame = aad + key.prefix + _digest(key, aad + b"p") + b"p"
        return r.channel.open(frame)

    return r.subject(decode)


def _headers(mode: ChannelMode) -> list[bytes]:
    return [f[3: 3 + int.from_bytes(f[1:3], "big")] for f in _frames(mode)]


_CHANNEL_ERRORS = (DecodeError, AuthenticationError, KeyExpiredError, ReplayError)
for _mode in ChannelMode:
    _m = _mode.name.lower()
    register(Target(f"channel.open.{_m}", functools.partial(_frames, _mode),
                    functools.partial(_open_subject, _mode), _CHANNEL_ERRORS,
                    grammar="bytes", reset_every=50))
    register(Target(f"channel.open_many.{_m}", functools.partial(_frames, _mode),
                    functools.partial(_open_many_subject, _mode), _CHANNEL_ERRORS,
                    grammar="bytes", reset_every=50))
    register(Target(f"channel.open.{_m}.member-header", functools.partial(_headers, _mode),
                    functools.partial(_member_subject, _mode), _CHANNEL_ERRORS,
                    reset_every=50))


# -- keysets ---------------------------------------------------------------------------
_MASTER = bytes(range(32))


@functools.cache
def _tink_json_seeds() -> list[bytes]:
    aead = Keyset.generate(KeyKind.AES256_GCM)
    aead.rotate(now=0)
    aead.disable(aead.keys[0].key_id)
    return [aead.to_tink_json().encode(), _keysets()[ChannelMode.MAC].to_tink_json().encode()]


@functools.cache
def _blob_seeds() -> list[bytes]:
    aead = Keyset.generate(KeyKind.AES256_GCM, expires_at=2e9)
    aead.rotate(now=0)
    aead.destroy(aead.keys[0].key_id)
    return [aead.to_encrypted(_MASTER), _keysets()[ChannelMode.MAC].to_encrypted(_MASTER)]


def _blob_plaintexts() -> list[bytes]:
    return [AESGCM(_MASTER).decrypt(b[4:16], b[16:], b"VKS1") for b in _blob_seeds()]


def _blob_from_plaintext(plain: bytes) -> Keyset:
    nonce = bytes(12)
    blob = b"VKS1" + nonce + AESGCM(_MASTER).encrypt(nonce, plain, b"VKS1")
    return Keyset.from_encrypted(blob, _MASTER)


register(Target("keyset.from_tink_json", _tink_json_seeds,
                lambda: Subject(Keyset.from_tink_json), (DecodeError,), grammar="json"))
register(Target("keyset.from_encrypted", _blob_seeds,
                lambda: Subject(lambda d: Keyset.from_encrypted(d, _MASTER)),
                (DecodeError, AuthenticationError), grammar="bytes"))
register(Target("keyset.from_encrypted.plaintext", _blob_plaintexts,
                lambda: Subject(_blob_from_plaintext), (DecodeError,)))


def _tink_key_seeds() -> list[bytes]:
    return [_tinkproto.encode_aes_gcm_key(bytes(32)),
            _tinkproto.encode_hmac_key(bytes(32), 16)]


register(Target("tinkproto.decode_aes_gcm_key", _tink_key_seeds,
                lambda: Subject(_tinkproto.decode_aes_gcm_key), (DecodeError,), grammar="bytes"))
register(Target("tinkproto.decode_hmac_key", _tink_key_seeds,
                lambda: Subject(_tinkproto.decode_hmac_key), (DecodeError,), grammar="bytes"))


# -- replay windows --------------------------------------------------------------------
@functools.cache
def _window_seeds() -> list[bytes]:
    out = [ReplayWindow().to_bytes(), ReplayWindow(64).to_bytes()]
    w = ReplayWindow(128)
    for seq in (0, 1, 5, 70, 130, 129, 2**39):
        w.record(seq)
        out.append(w.to_bytes())
    big = ReplayWindow(65536)
    big.record(2**40 - 1)
    out.append(big.to_bytes())
    return out


register(Target("replay.from_bytes", _window_seeds, lambda: Subject(ReplayWindow.from_bytes),
                (DecodeError,)))


@functools.cache
def _record_seeds() -> list[bytes]:
    out = []
    for raw in _window_seeds():
        window = ReplayWindow.from_bytes(raw)
        out.append(encode_record(window))
        out.append(encode_record(window, window.highest + 1025, 2**40))
    return out


register(Target("replay.decode_record", _record_seeds, lambda: Subject(decode_record),
                (DecodeError,), grammar="bytes"))


# -- identities, rosters and signed batches -------------------------------------------
@functools.cache
def _authority() -> Authority:
    return Authority(SigningKey.from_bytes(bytes(range(1, 33))))


@functools.cache
def _identities() -> dict[str, Identity]:
    return {p: Identity(p, SigningKey.from_bytes(bytes([i]) * 32))
            for i, p in enumerate(("a", "b", "ops"), start=7)}


@functools.cache
def _roster() -> Roster:
    ids = _identities()
    return _authority().issue("hostile", {
        "a": (ids["a"].verify_key, ["peer"]), "b": (ids["b"].verify_key, ["peer"]),
        "ops": (ids["ops"].verify_key, ["read", "write", "admin"]),
    }, serial=3, issued_ms=1_700_000_000_000)


def _roster_seeds() -> list[bytes]:
    ids = _identities()
    other = _authority().issue("hostile", {"a": (ids["a"].verify_key, ["peer"])},
                               serial=4, issued_ms=1, authorities=[
                                   _authority().verify_key, ids["ops"].verify_key])
    return [_roster().to_bytes(), other.to_bytes()]


def _signed_roster(body: bytes) -> Roster:
    """The authority signs arbitrary body bytes: the body parser behind the signature."""
    auth = _authority()
    return Roster.from_bytes(cbor.dumps([body, auth.verify_key.to_bytes(),
                                         auth.signing_key.sign(body)]))


def _roster_bodies() -> list[bytes]:
    return [cbor.loads(raw, wire=True)[0] for raw in _roster_seeds()]


class _BookHarness:
    """A node's roster book (serial 3); adopting hostile rosters must not change it."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.book = RosterBook(_roster(), storage=MemoryStorage())

    def fingerprint(self) -> object:
        return self.book.roster.to_bytes()

    def subject(self) -> Subject:
        return Subject(lambda d: self.book.adopt(d), self.fingerprint, self.reset)


@functools.cache
def _batch_seeds() -> list[bytes]:
    frames = _frames(ChannelMode.AEAD)
    ids = _identities()
    return [seal_batch(ids["a"], "hostile", frames[:1]),
            seal_batch(ids["b"], "hostile", frames),
            seal_batch(ids["ops"], "hostile", [b"\x00"])]


def _signed_batch(payload: bytes) -> object:
    """Member ``a`` signs an arbitrary payload: the frames parser behind the signature."""
    ident = _identities()["a"]
    signed = cbor.dumps(["vsm-phoenix/batch", 1, "hostile", "a"]) + payload
    body = cbor.dumps([1, "a", payload, ident.sign(signed)])
    return open_batch(body, _roster())


def _batch_payloads() -> list[bytes]:
    return [cbor.loads(b, wire=True)[2] for b in _batch_seeds()]


def _json_seeds(*docs: str) -> list[bytes]:
    return [d.encode() for d in docs]


_SIGNED_ERRORS = (DecodeError, AuthenticationError)
register(Target("roster.from_bytes", _roster_seeds, lambda: Subject(Roster.from_bytes),
                _SIGNED_ERRORS))
register(Target("roster.from_bytes.authority-body", _roster_bodies,
                lambda: Subject(_signed_roster), (DecodeError,)))
register(Target("roster.book.adopt", _roster_seeds, lambda: _BookHarness().subject(),
                _SIGNED_ERRORS, reset_every=20))
register(Target("batch.open_batch", _batch_seeds,
                lambda: Subject(lambda d: open_batch(d, _roster())), _SIGNED_ERRORS))
register(Target("batch.open_batch.member-payload", _batch_payloads,
                lambda: Subject(_signed_batch), (DecodeError,)))
register(Target("identity.from_json",
                lambda: _json_seeds(_identities()["a"].to_json(), _identities()["ops"].to_json()),
                lambda: Subject(Identity.from_json), (DecodeError,), grammar="json"))
register(Target("authority.from_json", lambda: _json_seeds(_authority().to_json()),
                lambda: Subject(Authority.from_json), (DecodeError,), grammar="json"))


# -- protocol nodes: received messages and persisted state ----------------------------
class _Recorder:
    """Wraps a node in a simulation to keep every envelope it sends, as bytes."""

    def __init__(self, node: Node, sink: list[Envelope]) -> None:
        self.inner = node
        self.sink = sink

    @property
    def node_id(self) -> str:
        return self.inner.node_id

    def step(self, event: Any) -> list[Any]:
        effects = self.inner.step(event)
        self.sink.extend(e.envelope for e in effects if isinstance(e, Send))
        return effects

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


_IDS = ("n1", "n2", "n3")
_RAFT = RaftConfig(peers=_IDS, election_timeout_ms=150, heartbeat_ms=30, snapshot_threshold=8)
_SYNC = SyncConfig(interval_ms=50, peers=_IDS, max_buffer=4)
#: Every delta over 64 bytes travels as ``sync.part`` messages, so the seeds hold parts.
_SYNC_PARTS = SyncConfig(interval_ms=50, peers=_IDS, max_buffer=4, part_bytes=64,
                         max_message_bytes=1 << 16, max_assembly_bytes=1 << 17)
_SWIM = SwimConfig(seeds=("n1",), period_ms=100, ping_timeout_ms=30, join_retry_ms=100)


def _raft_node(nid: str, rng: random.Random) -> Node:
    return kv.kv_node_factory(_RAFT)(nid, rng)


def _sync_replicas() -> dict[str, CRDT]:
    return {"s": ORSet(), "g": GCounter(), "m": ORMap()}


def _sync_node(nid: str, rng: random.Random) -> Node:
    return SyncNode(nid, rng, _SYNC, replicas=_sync_replicas())


def _sync_parts_node(nid: str, rng: random.Random) -> Node:
    return SyncNode(nid, rng, _SYNC_PARTS, replicas=_sync_replicas())


def _swim_node(nid: str, rng: random.Random) -> Node:
    caps = {"n1": ["gpu"], "n2": ["cpu", "gpu"], "n3": []}[nid]
    return SwimNode(nid, rng, _SWIM, capabilities=caps, load=0.5)


_FACTORIES: dict[str, Callable[[str, random.Random], Node]] = {
    "raft": _raft_node, "sync": _sync_node, "sync-parts": _sync_parts_node,
    "swim": _swim_node,
}


def _drive(kind: str, sim: Simulator) -> None:
    if kind == "raft":
        for i in range(12):
            for nid in _IDS:
                sim.client_request(nid, kv.put(f"c{nid}", i + 1, f"k{i % 3}", "v" * i),
                                   delay_ms=300 + 40 * i)
        sim.client_request("n2", kv.get("k1"), delay_ms=900)
        sim.run_until(1_500)
        sim.crash("n3")
        sim.run_for(300)
        sim.restart("n3")
        sim.run_for(700)
    elif kind in ("sync", "sync-parts"):
        for i in range(10):
            nid = _IDS[i % 3]
            sim.client_request(nid, Mutate("s", lambda s, n=nid, i=i: s.add(n, f"e{i}")),
                               delay_ms=20 * i)
            sim.client_request(nid, Mutate("g", lambda g, n=nid: g.increment(n, 2**40)),
                               delay_ms=20 * i + 5)
            sim.client_request(nid, Mutate("m", lambda m, n=nid, i=i: m.update(
                n, f"k{i % 2}", ORSet, lambda s: s.add(n, i))), delay_ms=20 * i + 7)
        sim.run_until(600)
        sim.crash("n3")
        sim.run_for(200)
        sim.restart("n3")
        sim.run_for(400)
    else:
        sim.run_until(800)
        sim.crash("n3")
        sim.run_for(1_500)
        sim.restart("n3")
        sim.run_for(800)


@functools.cache
def _traffic(kind: str) -> tuple[list[bytes], dict[str, bytes]]:
    """Envelopes sent to (or broadcast past) ``n1`` in a small run with a crash, and
    ``n1``'s persisted state at the end."""
    sent: list[Envelope] = []
    factory = _FACTORIES[kind]
    sim = Simulator(lambda nid, rng: _Recorder(factory(nid, rng), sent), _IDS, seed=7)
    _drive(kind, sim)
    to_n1: dict[bytes, bytes] = {}
    for env in sent:
        if env.sender != "n1" and env.recipient in ("n1", None):
            to_n1.setdefault(env.message_id, env.to_bytes())
    by_type: dict[str, list[bytes]] = {}
    for raw in to_n1.values():
        by_type.setdefault(Envelope.from_bytes(raw).type, []).append(raw)
    seeds = [raw for group in by_type.values() for raw in group[:12]]
    return seeds, dict(sim.store["n1"])


#: Attributes a refused input may change, per node kind (none: SwimNode now reads an
#: event's time only once the event is validated).
_VOLATILE: dict[str, frozenset[str]] = {}


class _NodeHarness:
    """A fresh node of ``kind`` named ``n1`` (started unless ``boot`` is false: a
    restart target boots it with the fuzzed state); its full state is checked."""

    def __init__(self, kind: str, boot: bool = True) -> None:
        self.kind = kind
        self.boot = boot
        self.reset()

    def reset(self) -> None:
        self.node = _FACTORIES[self.kind]("n1", random.Random(1))
        if self.boot:
            self.node.step(Start(0))

    def fingerprint(self) -> object:
        return state_of(self.node, skip=_VOLATILE.get(self.kind, frozenset()))

    def receive(self, data: bytes) -> object:
        return self.node.step(Receive(10_000, Envelope.from_bytes(data)))

    def restart(self, data: bytes) -> object:
        try:
            persisted = cbor.loads(data, wire=True)
        except DecodeError as exc:
            raise Unfit(str(exc)) from None
        if not isinstance(persisted, dict) or not all(
                isinstance(k, str) and isinstance(v, bytes) for k, v in persisted.items()):
            raise Unfit("persisted state must map str to bytes")
        return self.node.step(Restart(10_000, persisted))


def _receive_subject(kind: str) -> Subject:
    h = _NodeHarness(kind)
    return Subject(h.receive, h.fingerprint, h.reset)


def _restart_subject(kind: str) -> Subject:
    h = _NodeHarness(kind, boot=False)
    return Subject(h.restart, h.fingerprint, h.reset)


def _restart_seeds(kind: str) -> list[bytes]:
    store = _traffic(kind)[1]
    seeds = [encode_cbor(store)]
    for key in sorted(store):  # one seed per key, so edits concentrate on each blob
        seeds.append(encode_cbor({key: store[key]}))
    return seeds


for _kind in _FACTORIES:
    register(Target(f"{_kind}.receive", functools.partial(lambda k: _traffic(k)[0], _kind),
                    functools.partial(_receive_subject, _kind), (DecodeError,),
                    reset_every=25))
    register(Target(f"{_kind}.restart", functools.partial(_restart_seeds, _kind),
                    functools.partial(_restart_subject, _kind), (DecodeError,),
                    reset_every=1))


# -- the KV state machine (commands come out of the replicated log) ------------------
def _kv_commands() -> list[bytes]:
    return [kv.put("c", 1, "k", "v").command, kv.append("c", 2, "k", "w").command,
            kv.cas("c", 3, "k", None, "x").command, kv.delete("c", 4, "k").command,
            kv.get("k").query]


class _KVHarness:
    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.sm = kv.KVStateMachine()
        self.sm.apply(kv.put("c0", 1, "k", "v").command)

    def fingerprint(self) -> object:
        return state_of(self.sm)

    def apply_and_query(self, data: bytes) -> object:
        return self.sm.apply(data), self.sm.query(data)

    def restore(self, data: bytes) -> object:
        self.sm.restore(data)
        return None


def _kv_snapshots() -> list[bytes]:
    sm = kv.KVStateMachine()
    for i, cmd in enumerate(_kv_commands()[:4]):
        sm.apply(cmd)
        sm.apply(kv.put(f"c{i}", 1, f"k{i}", "v").command)
    return [sm.snapshot(), kv.KVStateMachine().snapshot()]


def _kv_subject(restore: bool) -> Subject:
    h = _KVHarness()
    return Subject(h.restore if restore else h.apply_and_query, h.fingerprint, h.reset)


# apply/query are total: a malformed command is an error *result*, never an exception.
register(Target(
    "kv.apply", _kv_commands, functools.partial(_kv_subject, False), (), reset_every=100))
register(Target("kv.restore", _kv_snapshots, functools.partial(_kv_subject, True),
                (DecodeError,)))


# -- histories -------------------------------------------------------------------------
@functools.cache
def _jsonl_seeds() -> list[bytes]:
    rec = HistoryRecorder(KVModel())
    rec.invoke(0, KVPut("a", "1"), 0)
    rec.invoke(1, KVGet("a"), 1)
    rec.ok(0, None, 2)
    rec.ok(1, "1", 3)
    rec.invoke(2, KVAppend("a", "2"), 4)
    reg = HistoryRecorder(RegisterModel())
    reg.invoke(0, RegisterWrite(3), 0)
    reg.invoke(1, RegisterCas(3, 4), 0.5)
    reg.ok(0, None, 1)
    reg.invoke(2, RegisterRead(), 1.5)
    reg.ok(2, 3, 2.0)
    return [rec.to_jsonl().encode(), reg.to_jsonl().encode()]


def _file_seeds(*names: str) -> list[bytes]:
    out = []
    for name in names:
        lines = (_DATA / name).read_bytes().splitlines(keepends=True)
        out.append(b"".join(lines[:40]))
    return out


register(Target("verify.history_from_jsonl", _jsonl_seeds,
                lambda: Subject(history_from_jsonl), (DecodeError,), grammar="json"))
register(Target("verify.parse_porcupine_kv",
                functools.partial(_file_seeds, "c01-ok.txt", "c01-bad.txt"),
                lambda: Subject(parse_porcupine_kv), (DecodeError,), grammar="text"))
register(Target("verify.parse_jepsen_etcd",
                functools.partial(_file_seeds, "etcd_000.log", "etcd_002.log"),
                lambda: Subject(parse_jepsen_etcd), (DecodeError,), grammar="text"))
register(Target("verify.load_history",
                lambda: [*_jsonl_seeds(), *_file_seeds("c01-ok.txt", "etcd_000.log")],
                lambda: Subject(load_history), (DecodeError,), grammar="text"))



# -- saga logs (issue 15) --------------------------------------------------------------
def _saga_records() -> list[saga_records.Record]:
    mk = functools.partial(saga_records.Record, at=5, by="n1", epoch=1)
    r = saga_records
    return [
        mk(r.R_STARTED, fields={"saga": "order", "ctx": {"id": 7, "items": ["a"]},
                                "timeout_ms": 60_000}),
        mk(r.R_CLAIMED, fields={"until": 10_005}),
        mk(r.R_STEP_STARTED, fields={"step": "charge", "n": 1}),
        mk(r.R_STEP_COMPLETED, fields={"step": "charge", "n": 1, "result": {"tx": "t-1"}}),
        mk(r.R_STEP_FAILED, fields={"step": "ship", "n": 2, "error": "down", "f": "timeout"}),
        mk(r.R_STUCK, fields={"reason": "compensation of a failed"}),
    ]


def _saga_log_value(data: bytes) -> object:
    try:
        text = data.decode("ascii")
    except UnicodeDecodeError:
        raise Unfit("a KV saga log value is ASCII text") from None
    return parse_log_value(text)


register(Target("saga.decode_record",
                lambda: [saga_records.encode_record(r) for r in _saga_records()],
                lambda: Subject(saga_records.decode_record), (DecodeError,)))
register(Target("saga.parse_log_value",
                lambda: [format_log_value(_saga_records()).encode("ascii"),
                         format_log_value(_saga_records()[:2]).encode("ascii")],
                lambda: Subject(_saga_log_value), (DecodeError,), grammar="text"))
# -- the evidence graph (vsm_phoenix.ext.evidence) -------------------------------------
@functools.cache
def _evidence_events() -> list[Event]:
    ids = _identities()
    graph = EvidenceGraph({p: i.verify_key for p, i in ids.items()})
    for k in range(6):
        graph.append(ids["ab"[k % 2]], {"k": k, "note": "x" * k, "raw": bytes([k])},
                     wall_ms=1_700_000_000_000 + k)
    return graph.topological()


def _evidence_graph(upto: int) -> EvidenceGraph:
    graph = EvidenceGraph(_roster(), storage=MemoryStorage())
    graph.add_many(_evidence_events()[:upto])
    return graph


def _signed_event_body(body: bytes) -> Event:
    """Member ``a`` signs arbitrary body bytes: the event parser behind the signature."""
    return Event.from_bytes(cbor.dumps([body, _identities()["a"].sign(body)]),
                            key_lookup(_roster()))


@functools.cache
def _evidence_sync_seeds() -> list[bytes]:
    left, right = EvidenceSync(_evidence_graph(6)), EvidenceSync(_evidence_graph(2))
    out = [left.start(), right.start()]
    answer = right.receive(out[0])
    assert answer is not None
    out.append(answer)
    reply = left.receive(answer)
    assert reply is not None
    out.append(reply)
    return out


class _EvidenceHarness:
    """A replica holding 2 of the 6 seed events; refused inputs must not change it."""

    def __init__(self, sync: bool) -> None:
        self.sync = sync
        self.reset()

    def reset(self) -> None:
        self.graph = _evidence_graph(2)
        self.session = EvidenceSync(self.graph, max_events=4)

    def fingerprint(self) -> object:
        return (self.session.state_key(), self.graph.heads(), self.graph.missing(),
                self.graph.verify())

    def decode(self, data: bytes) -> object:
        return self.session.receive(data) if self.sync else self.graph.add(data)

    def subject(self) -> Subject:
        return Subject(self.decode, self.fingerprint, self.reset)


register(Target("evidence.event.from_bytes", lambda: [e.raw for e in _evidence_events()],
                lambda: Subject(lambda d: Event.from_bytes(d, key_lookup(_roster()))),
                _SIGNED_ERRORS))
register(Target("evidence.event.signed-body", lambda: [e.body for e in _evidence_events()],
                lambda: Subject(_signed_event_body), _SIGNED_ERRORS))
register(Target("evidence.graph.add", lambda: [e.raw for e in _evidence_events()],
                lambda: _EvidenceHarness(sync=False).subject(), _SIGNED_ERRORS,
                reset_every=20))
register(Target("evidence.sync.receive", _evidence_sync_seeds,
                lambda: _EvidenceHarness(sync=True).subject(), _SIGNED_ERRORS,
                reset_every=20))


# -- agents (vsm_phoenix.ext.agents) ---------------------------------------------------
@functools.cache
def _agents_roster() -> Roster:
    ids = _identities()
    return _authority().issue("hostile", {
        "a": (ids["a"].verify_key, ["peer"]), "b": (ids["b"].verify_key, ["peer"]),
        "ops": (ids["ops"].verify_key, ["admin"]),
    }, serial=3, issued_ms=1_700_000_000_000)


@functools.cache
def _grant_seeds() -> list[bytes]:
    ops = _identities()["ops"]
    return [CapabilityGrant.issue(ops, "hostile", "a", ["cpu", "gpu"], serial=1).to_bytes(),
            CapabilityGrant.issue(ops, "hostile", "b", [], serial=7).to_bytes()]


def _signed_grant_body(body: bytes) -> CapabilityGrant:
    """The admin signs arbitrary body bytes: the grant parser behind the signature."""
    ops = _identities()["ops"]
    return CapabilityGrant.from_bytes(cbor.dumps([body, "ops", ops.sign(body)]),
                                      _agents_roster())


def _text(decode: Callable[[str], object]) -> Callable[[bytes], object]:
    def run(data: bytes) -> object:
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise Unfit(str(exc)) from None
        return decode(text)

    return run


def _spawn_seeds() -> list[bytes]:
    header = SpawnProposal("p1", "a", "s1", "backlog of 3", ("a", "b", "c"), 2).encode()
    return [header.encode(), (header + Vote("b", True, "room").encode()
                              + Vote("c", False, "full").encode()).encode()]


register(Target("agents.grant.from_bytes", _grant_seeds,
                lambda: Subject(lambda d: CapabilityGrant.from_bytes(d, _agents_roster())),
                (DecodeError, AuthenticationError, PermissionDenied)))
register(Target("agents.grant.signed-body",
                lambda: [cbor.loads(g)[0] for g in _grant_seeds()],
                lambda: Subject(_signed_grant_body), (DecodeError, AuthenticationError)))
register(Target("agents.lease-value.decode",
                lambda: [LeaseValue("a", 3, 17).encode().encode(), b'["ops#1",1,0]'],
                lambda: Subject(_text(LeaseValue.decode)), (DecodeError,), grammar="text"))
register(Target("agents.spawn.decide", _spawn_seeds, lambda: Subject(_text(decide)),
                (DecodeError,), grammar="text"))


@functools.cache
def _agent_traffic() -> list[bytes]:
    """Envelopes sent to agent ``a`` (SWIM and evidence sync) in a small run."""
    sent: list[Envelope] = []
    roster = _agents_roster()
    ids = _identities()
    cfg = AgentConfig(swim=SwimConfig(seeds=("a",), period_ms=200, ping_timeout_ms=50),
                      sync_interval_ms=100)
    sim = Simulator(lambda nid, rng: _Recorder(AgentNode(ids[nid], rng, roster, cfg), sent),
                    ["a", "b"], seed=7)
    sim.run_until(300)
    for k in range(4):
        sim.client_request("ab"[k % 2], Record({"k": k}))
        sim.run_for(150)
    by_type: dict[str, list[bytes]] = {}
    for env in sent:
        if env.recipient == "a":
            by_type.setdefault(env.type, []).append(env.to_bytes())
    return [raw for group in by_type.values() for raw in group[:12]]


class _AgentHarness:
    """Agent ``a`` holding two events; a refused envelope must not change it."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        ids = _identities()
        self.node = AgentNode(ids["a"], random.Random(1), _agents_roster())
        self.node.step(Start(0))
        for k in range(2):
            self.node.step(ClientRequest(10 + k, f"r{k}", Record({"k": k})))

    def fingerprint(self) -> object:
        return (state_of(self.node.swim, skip=frozenset({"_now"})), self.node.state_key(),
                self.node.graph.heads(), self.node.msg.clock.last)

    def receive(self, data: bytes) -> object:
        return self.node.step(Receive(10_000, Envelope.from_bytes(data)))

    def subject(self) -> Subject:
        return Subject(self.receive, self.fingerprint, self.reset)


register(Target("agents.node.receive", _agent_traffic, lambda: _AgentHarness().subject(),
                (DecodeError, AuthenticationError), reset_every=20))


# -- distributed GEPA (ext.gepa): the replicated state and its records ------------------
def _gepa_seeds() -> list[bytes]:
    from vsm_phoenix.ext.gepa import EvalKey, Evaluation, EvolutionState, candidate_id

    s = EvolutionState()
    seed, child = {"rule": "a"}, {"rule": "a, b", "note": "x"}
    s.add_candidate(seed)
    s.add_candidate(child, [candidate_id(seed)])
    s.record(EvalKey(candidate_id(seed), "i0", "v1"),
             Evaluation("ok", 1.0, {"feedback": "right", "n": [1, 2.5, None]}, "n1"))
    s.record(EvalKey(candidate_id(child), "i0", "v1"), Evaluation(None, 0.0, None, "n2"))
    s.spend("n1", 2)
    return [s.to_bytes(), EvolutionState().to_bytes()]


def _gepa_record_seeds() -> list[bytes]:
    from vsm_phoenix.ext.gepa.records import Evaluation, encode_candidate, encode_evaluation

    return [encode_evaluation(Evaluation("ok", 0.5, {"feedback": "f", "k": [1, None]}, "n1")),
            encode_evaluation(Evaluation("ok", 0.5, None, "n1",
                                         objectives={"exact": 1.0, "brevity": 0.25})),
            encode_candidate({"rule": "a", "b": "c"}, frozenset({b"\x01" * 32}))]


def _gepa_state_decoder() -> Subject:
    from vsm_phoenix.ext.gepa import EvolutionState

    return Subject(EvolutionState.from_bytes)


def _gepa_evaluation_decoder() -> Subject:
    from vsm_phoenix.ext.gepa import decode_evaluation

    return Subject(decode_evaluation)


def _gepa_candidate_decoder() -> Subject:
    from vsm_phoenix.ext.gepa import decode_candidate

    return Subject(decode_candidate)


register(Target("gepa.EvolutionState.from_bytes", _gepa_seeds, _gepa_state_decoder,
                (DecodeError,)))
register(Target("gepa.decode_evaluation", _gepa_record_seeds, _gepa_evaluation_decoder,
                (DecodeError,)))
register(Target("gepa.decode_candidate", _gepa_record_seeds, _gepa_candidate_decoder,
                (DecodeError,)))


def _gepa_deployed_seeds() -> list[bytes]:
    from vsm_phoenix.ext.gepa.deploy import Decision

    d = Decision(b"\x01" * 32, {"rules": "a: b"}, 0.75, (b"\x01" * 32, b"\x02" * 32), 3)
    return [d.to_json().encode()]


def _gepa_deployed_decoder() -> Subject:
    from vsm_phoenix.ext.gepa.deploy import Decision

    def decode(data: bytes) -> object:
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            raise Unfit("not UTF-8") from None
        return Decision.from_json(text)

    return Subject(decode)


register(Target("gepa.Decision.from_json", _gepa_deployed_seeds, _gepa_deployed_decoder,
                (DecodeError,), grammar="json"))


# -- the signed command router (issue 15) -------------------------------------------------
@functools.cache
def _router_people() -> tuple[Roster, dict[str, Identity]]:
    authority = Authority.generate()
    ids = {p: Identity.generate(p) for p in ("ops", "viewer")}
    roster = authority.issue("c1", {"ops": (ids["ops"].verify_key, ["write"]),
                                    "viewer": (ids["viewer"].verify_key, ["read"])})
    return roster, ids


def _router_seeds() -> list[bytes]:
    _, ids = _router_people()
    return [sign_command(ids["ops"], "c1", "orders.cancel", {"id": 7, "why": ["late"]},
                         issued_ms=int(_NOW_S * 1000), nonce=1),
            sign_command(ids["viewer"], "c1", "orders.list", {}, issued_ms=int(_NOW_S * 1000),
                         nonce=9, issuer="viewer#s1")]


class _RouterHarness:
    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        async def handler(cmd: Command) -> None:
            return None

        self.router = CommandRouter(_router_people()[0], clock_ms=lambda: int(_NOW_S * 1000))
        self.router.register("orders.cancel", handler)
        self.router.register("orders.list", handler, role="read")

    def open(self, data: bytes) -> object:
        return self.router.open(data)

    def fingerprint(self) -> object:
        g = self.router.guard
        return {s: g.highest(s) for s in g.senders()}


def _router_subject() -> Subject:
    h = _RouterHarness()
    return Subject(h.open, h.fingerprint, h.reset)


register(Target("router.open", _router_seeds, _router_subject,
                (DecodeError, AuthenticationError, ReplayError, PermissionDenied,
                 UnknownCommand), reset_every=50))
