"""The evidence graph: signed events, tamper detection, completeness, the CRDT laws,
queries against brute force, durability, export and sync cost."""

from __future__ import annotations

import functools
import hashlib
import json
import random
from pathlib import Path

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from vsm_phoenix import cbor
from vsm_phoenix.crypto.identity import Identity
from vsm_phoenix.crypto.signature import SigningKey
from vsm_phoenix.ext.evidence import (
    AuthenticationError,
    DecodeError,
    Event,
    EvidenceGraph,
    EvidenceSync,
    InvalidArgument,
    SyncMessage,
    TypeMismatch,
    render_html,
    sync_pair,
)
from vsm_phoenix.ext.evidence.graph import STORE_PREFIX
from vsm_phoenix.storage import MemoryStorage, SQLiteStorage

AUTHORS = ("a", "b", "c")


@functools.cache
def identities() -> dict[str, Identity]:
    return {p: Identity(p, SigningKey.from_bytes(bytes([i + 40]) * 32))
            for i, p in enumerate((*AUTHORS, "mallory"))}


def keys() -> dict[str, object]:
    return {p: i.verify_key for p, i in identities().items() if p != "mallory"}


def random_events(seed: int, n: int, *, start_ms: int = 1000) -> list[Event]:
    """A random DAG of ``n`` events by three authors, parents first."""
    rng = random.Random(seed)
    graph = EvidenceGraph(keys())
    out = []
    for k in range(n):
        heads = graph.heads()
        parents = rng.sample(heads, min(len(heads), rng.randint(1, 3)))
        if rng.random() < 0.2 and len(graph) > 0:  # also link older events
            parents.append(rng.choice(list(graph)))
        who = identities()[rng.choice(AUTHORS)]
        out.append(graph.append(who, {"k": k}, wall_ms=start_ms + rng.randint(0, 3) * k,
                                parents=parents))
    return out


def brute_ancestors(events: dict[bytes, Event], eid: bytes) -> set[bytes]:
    out: set[bytes] = set()
    stack = list(events[eid].parents)
    while stack:
        p = stack.pop()
        if p in events and p not in out:
            out.add(p)
            stack.extend(events[p].parents)
    return out


def _resign(body_doc: list[object], signer: str = "a") -> bytes:
    body = cbor.dumps(body_doc)
    return cbor.dumps([body, identities()[signer].sign(body)])


# -- events --------------------------------------------------------------------------
def test_event_round_trip_and_id_is_the_hash_of_the_canonical_bytes() -> None:
    e = Event.create(identities()["a"], {"x": [1, b"\x00"]}, physical_ms=5, logical=2)
    again = Event.from_bytes(e.raw, lambda a: identities()[a].verify_key)
    assert again == e and again.payload == {"x": [1, b"\x00"]}
    assert e.id == hashlib.sha256(e.raw).digest()
    assert (again.author, again.timestamp, again.parents) == ("a", (5, 2), ())


@pytest.mark.parametrize("payload", [object(), {1: 2}, [set()]])
def test_create_refuses_non_plain_payloads(payload: object) -> None:
    with pytest.raises(TypeMismatch):
        Event.create(identities()["a"], payload, physical_ms=1)


def test_create_refuses_bad_arguments() -> None:
    ident = identities()["a"]
    with pytest.raises(InvalidArgument):
        Event.create(ident, None, physical_ms=-1)
    with pytest.raises(InvalidArgument):
        Event.create(ident, None, physical_ms=1, parents=[b"short"])
    with pytest.raises(InvalidArgument):
        Event.create(ident, "x" * 20_000, physical_ms=1)
    with pytest.raises(InvalidArgument):
        Event.create(ident, 2**70, physical_ms=1)
    with pytest.raises(TypeMismatch):
        Event.create("a", None, physical_ms=1)  # type: ignore[arg-type]


def _doc(e: Event) -> list[object]:
    doc = cbor.loads(e.body)
    assert isinstance(doc, list)
    return doc


def test_tampering_is_detected_and_named_by_id() -> None:
    g = EvidenceGraph(keys())
    root = g.append(identities()["a"], "root", wall_ms=1)
    other = g.append(identities()["b"], "other", wall_ms=2, parents=[])
    e = g.append(identities()["a"], {"amount": 10}, wall_ms=3, parents=[root.id])
    fresh = EvidenceGraph(keys())
    # altered: the payload changed, the old signature kept
    doc = _doc(e)
    doc[5] = {"amount": 1000}
    altered_body = cbor.dumps(doc)
    altered = cbor.dumps([altered_body, e.signature])
    # re-parented: the parent swapped, the old signature kept
    doc = _doc(e)
    doc[4] = [other.id]
    reparented = cbor.dumps([cbor.dumps(doc), e.signature])
    # forged: mallory (not in the roster's keys) signs as "a"
    forged = cbor.dumps([e.body, identities()["mallory"].sign(e.body)])
    for bad in (altered, reparented, forged):
        bad_id = hashlib.sha256(bad).digest().hex()[:12]
        with pytest.raises(AuthenticationError, match=bad_id):
            fresh.add(bad)
    # reordered parents: not canonical, refused by the parser
    two = g.append(identities()["c"], "two", wall_ms=4, parents=[root.id, other.id])
    doc = _doc(two)
    doc[4] = list(reversed(doc[4]))  # type: ignore[call-overload]
    with pytest.raises(DecodeError, match="sorted"):
        fresh.add(_resign(doc, "c"))
    # an author the keys do not know
    stranger = Event.create(identities()["mallory"], "hi", physical_ms=1)
    with pytest.raises(AuthenticationError, match="mallory"):
        fresh.add(stranger.raw)
    assert len(fresh) == 0


def test_a_bad_batch_leaves_the_graph_unchanged() -> None:
    events = random_events(1, 20)
    g = EvidenceGraph(keys(), storage=MemoryStorage())
    g.add_many(events[:5])
    before = (g.digest(), g.heads(), g.missing())
    bad = cbor.dumps([events[9].body, identities()["mallory"].sign(events[9].body)])
    with pytest.raises(AuthenticationError):
        g.add_many([e.raw for e in events[5:9]] + [bad])
    with pytest.raises(DecodeError):
        g.add_many([events[6].raw, b"\xff"])
    with pytest.raises(TypeMismatch):
        g.add_many([events[6].raw, "text"])  # type: ignore[list-item]
    assert (g.digest(), g.heads(), g.missing()) == before


def test_misordered_events_are_reported() -> None:
    g = EvidenceGraph(keys())
    parent = g.append(identities()["a"], "p", wall_ms=100)
    child = Event.create(identities()["b"], "c", physical_ms=50, parents=[parent.id])
    g.add(child)
    report = g.verify()
    assert report.misordered == (child.id,) and not report.ok
    assert any(child.id.hex()[:12] in line for line in report.describe())


def test_append_stamps_after_parents_and_the_authors_last_event() -> None:
    g = EvidenceGraph(keys())
    p = g.append(identities()["a"], 1, wall_ms=500)
    q = g.append(identities()["b"], 2, wall_ms=100)  # b's clock is behind a's
    assert q.timestamp == (500, 1)
    r = g.append(identities()["b"], 3, wall_ms=100, parents=[])
    assert r.timestamp > q.timestamp
    assert g.verify().ok and p.id in g.ancestors(q.id)


# -- completeness --------------------------------------------------------------------
def test_incomplete_events_are_kept_flagged_and_complete_once_ancestors_arrive() -> None:
    events = random_events(2, 30)
    g = EvidenceGraph(keys())
    g.add_many(reversed(events[10:]))
    assert len(g) == 20
    assert g.missing() and not g.verify().complete
    assert not any(g.is_complete(e.id) for e in events[10:] if brute_ancestors(
        {e.id: e for e in events}, e.id) - set(g))
    g.add_many(events[:10])
    assert g.missing() == [] and g.verify().complete
    full = EvidenceGraph(keys())
    full.add_many(events)
    assert all(g.height(e.id) == full.height(e.id) for e in events)
    assert g.heads() == full.heads()


# -- the lattice ---------------------------------------------------------------------
@settings(max_examples=25)
@given(st.integers(0, 10_000), st.randoms(use_true_random=False))
def test_any_arrival_order_gives_the_same_graph(seed: int, rng: random.Random) -> None:
    events = random_events(seed, 25)
    reference = EvidenceGraph(keys())
    reference.add_many(events)
    shuffled = list(events)
    rng.shuffle(shuffled)
    g = EvidenceGraph(keys())
    for e in shuffled:
        g.add(e.raw)
    assert g == reference and g.digest() == reference.digest()
    assert g.heads() == reference.heads() and g.missing() == []
    assert {e: g.height(e) for e in g} == {e: reference.height(e) for e in reference}
    assert g.verify() == reference.verify()


@settings(max_examples=20)
@given(st.integers(0, 10_000), st.lists(st.integers(0, 2), min_size=30, max_size=30))
def test_join_laws(seed: int, where: list[int]) -> None:
    events = random_events(seed, 30)
    parts = [EvidenceGraph(keys()) for _ in range(3)]
    for e, w in zip(events, where, strict=True):
        parts[w].add(e)
    a, b, c = parts
    assert a | b == b | a
    assert (a | b) | c == a | (b | c)
    assert a | a == a
    assert a <= a | b and b <= a | b
    joined = a | b
    a |= b
    assert a == joined


# -- queries -------------------------------------------------------------------------
@settings(max_examples=15)
@given(st.integers(0, 10_000))
def test_queries_match_brute_force(seed: int) -> None:
    events = random_events(seed, 40)
    g = EvidenceGraph(keys())
    g.add_many(events)
    table = {e.id: e for e in events}
    anc = {i: brute_ancestors(table, i) for i in table}
    for i in table:
        assert g.ancestors(i) == anc[i]
        assert g.descendants(i) == {j for j in table if i in anc[j]}
    rng = random.Random(seed)
    for _ in range(60):
        x, y = rng.choice(events).id, rng.choice(events).id
        assert g.happened_before(x, y) == (x in anc[y])
        assert g.concurrent(x, y) == (x != y and x not in anc[y] and y not in anc[x])
    assert set(g.heads()) == set(table) - {p for e in events for p in e.parents}
    frontier = [rng.choice(events).id, rng.choice(events).id]
    assert g.cut(frontier) == set(frontier) | anc[frontier[0]] | anc[frontier[1]]
    t = events[20].physical_ms
    cut = g.cut_at(t)
    assert {i for i in table if table[i].physical_ms <= t} <= cut
    assert all(anc[i] <= cut for i in cut)  # causally closed
    assert g.by_author("a") == sorted((i for i in table if table[i].author == "a"),
                                      key=lambda i: (table[i].timestamp, i))
    lo, hi = events[5].physical_ms, events[25].physical_ms
    assert set(g.in_range(lo, hi)) == {i for i in table if lo <= table[i].physical_ms < hi}


def test_queries_refuse_bad_ids() -> None:
    g = EvidenceGraph(keys())
    with pytest.raises(InvalidArgument):
        g.ancestors(b"\x00" * 32)
    with pytest.raises(InvalidArgument):
        g.happened_before(b"\x00" * 31, b"\x00" * 32)
    with pytest.raises(TypeMismatch):
        g.descendants("00" * 32)  # type: ignore[arg-type]
    with pytest.raises(InvalidArgument):
        g.in_range(5, 1)


@settings(max_examples=20)
@given(st.integers(0, 10_000), st.integers(0, 40), st.integers(0, 3))
def test_difference_matches_brute_force(seed: int, known: int, extra: int) -> None:
    events = random_events(seed, 40)
    g = EvidenceGraph(keys())
    g.add_many(events)
    rng = random.Random(seed)
    theirs = {events[known - 1].id} if known else set()
    theirs |= {rng.choice(events).id for _ in range(extra)}
    table = {e.id: e for e in events}
    closure = set(theirs) | {a for t in theirs for a in brute_ancestors(table, t)}
    got = g.difference(theirs | {b"\x01" * 32})
    assert set(got) == set(table) - closure
    assert all(not (set(table[i].parents) & set(got[k:])) for k, i in enumerate(got))


# -- durability and export -----------------------------------------------------------
def test_sqlite_round_trip_and_tampered_records_are_named(tmp_path: Path) -> None:
    events = random_events(3, 25)
    with SQLiteStorage(tmp_path / "ev.db") as store:
        g = EvidenceGraph(keys(), storage=store)
        g.add_many(events)
    with SQLiteStorage(tmp_path / "ev.db") as store:
        again, report = EvidenceGraph.open(keys(), store)
        assert again == g and report.complete and report.checked == 25
        # an attacker with disk access: change one record and re-sign it, re-sign
        # another as mallory (both no longer hash to their ids), and plant a record
        # under its true id that mallory signed in a's name
        victim, other = events[7], events[12]
        doc = _doc(victim)
        doc[5] = {"k": -1}
        store.put(STORE_PREFIX + victim.id.hex(), _resign(doc, "a"))
        store.put(STORE_PREFIX + other.id.hex(), cbor.dumps(
            [other.body, identities()["mallory"].sign(other.body)]))
        planted = _resign([*_doc(events[3])[:5], {"k": "planted"}], "mallory")
        store.put(STORE_PREFIX + hashlib.sha256(planted).hexdigest(), planted)
    with SQLiteStorage(tmp_path / "ev.db") as store:
        damaged, report = EvidenceGraph.open(keys(), store)
    assert report.altered == tuple(sorted((victim.id, other.id)))
    assert report.forged == (hashlib.sha256(planted).digest(),)
    assert not report.ok and len(damaged) == 23
    assert victim.id in damaged.missing()


def test_json_export_and_picture() -> None:
    events = random_events(4, 12)
    g = EvidenceGraph(keys())
    g.add_many(events[1:])
    doc = json.loads(g.to_json())
    assert len(doc["events"]) == 11
    assert {e["id"] for e in doc["events"]} == {e.id.hex() for e in events[1:]}
    assert any(not e["complete"] for e in doc["events"])
    cut = g.cut([events[6].id])
    assert {e["id"] for e in json.loads(g.to_json(cut))["events"]} == {i.hex() for i in cut}
    g.append(identities()["a"], "<script>alert(1)</script>", wall_ms=10**6)
    page = render_html(g, title="<t>")
    assert "<svg" in page and "<script>" not in page and "&lt;t&gt;" in page
    assert page.count("<circle") == len(g)


# -- sync ----------------------------------------------------------------------------
def _replica(events: list[Event]) -> EvidenceGraph:
    g = EvidenceGraph(keys())
    g.add_many(events)
    return g


@settings(max_examples=20)
@given(st.integers(0, 10_000), st.integers(0, 60), st.integers(0, 60), st.booleans())
@example(59, 58, 0, True)  # a wanted parent cut by max_events was never sent again
@example(59, 58, 0, False)
def test_sync_converges(seed: int, only_a: int, only_b: int, holes: bool) -> None:
    common = random_events(seed, 40)
    a_ev = random_events(seed + 1, only_a, start_ms=10**6)
    b_ev = random_events(seed + 2, only_b, start_ms=10**6)
    a = _replica(common + a_ev)
    b = _replica(common + b_ev)
    if holes and common:  # b also holds a few of a's events, out of context
        b.add_many(a_ev[len(a_ev) // 2:])
    sync_pair(a, b, max_events=7)
    assert a == b and a.verify().complete and b.missing() == []


def test_sync_cost_follows_the_difference() -> None:
    base = random_events(5, 1500)
    extra = random_events(6, 100, start_ms=10**7)
    a, b = _replica(base + extra), _replica(base)
    stats = sync_pair(a, b)
    diff_bytes = sum(len(e.raw) for e in extra)
    assert a == b
    assert stats.messages <= 6 and stats.bytes_sent <= 3 * diff_bytes, stats
    # concurrent histories: 50 events on each side
    a2, b2 = _replica(base + extra[:50]), _replica(base + extra[50:])
    stats = sync_pair(a2, b2)
    assert a2 == b2 and stats.bytes_sent <= 3 * diff_bytes, stats
    same = sync_pair(_replica(base), _replica(base))
    assert same.events_sent == 0 and same.messages == 1


def test_sync_refuses_forged_events_and_leaves_state_unchanged() -> None:
    events = random_events(7, 10)
    a, b = _replica(events), _replica(events[:3])
    session = EvidenceSync(b)
    before = session.state_key()
    forged = cbor.dumps([events[5].body, identities()["mallory"].sign(events[5].body)])
    msg = SyncMessage(tuple(a.heads()), (), (), (events[3].raw, forged)).to_bytes()
    with pytest.raises(AuthenticationError, match=hashlib.sha256(forged).hexdigest()[:12]):
        session.receive(msg)
    for junk in (b"", b"\xa0", cbor.dumps(["vsm-phoenix/evidence-sync", 1, [b"x"], [], [], []]),
                 cbor.dumps(["vsm-phoenix/evidence-sync", 2, [], [], [], []])):
        with pytest.raises(DecodeError):
            session.receive(junk)
    assert session.state_key() == before
    with pytest.raises(InvalidArgument):
        EvidenceSync(b, max_events=0)


def test_sync_bytes_do_not_grow_with_the_graph() -> None:
    """The same 40-event difference costs about the same on a 4x larger graph."""
    extra = random_events(9, 40, start_ms=10**8)
    costs = []
    for n in (300, 1200):
        base = random_events(8, n)
        a, b = _replica(base + extra), _replica(base)
        stats = sync_pair(a, b)
        assert a == b
        costs.append(stats.bytes_sent)
    diff = sum(len(e.raw) for e in extra)
    assert costs[1] <= costs[0] + 2 * 32 * 16 and costs[1] <= 2 * diff, costs


_JSON_SCALARS = (st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1)
                 | st.floats() | st.text(max_size=8) | st.binary(max_size=8))
_PAYLOADS = st.recursive(
    _JSON_SCALARS,
    lambda inner: st.lists(inner, max_size=3)
    | st.dictionaries(st.text(alphabet="$ab", max_size=4), inner, max_size=3),
    max_leaves=12,
)


def _from_export(value: object) -> object:
    """The inverse of the export's payload encoding (what a JSON reader would do)."""
    if isinstance(value, list):
        return [_from_export(v) for v in value]
    if isinstance(value, dict):
        if len(value) == 1 and "$bytes" in value:
            return bytes.fromhex(value["$bytes"])
        if len(value) == 1 and "$float" in value:
            return float(value["$float"].lower().replace("infinity", "inf"))
        return {(k[1:] if k.startswith("$") else k): _from_export(v) for k, v in value.items()}
    return value


def _strict_loads(text: str) -> object:
    def refuse(token: str) -> object:
        raise AssertionError(f"non-standard JSON literal {token}")
    return json.loads(text, parse_constant=refuse)


@given(_PAYLOADS)
@example({"$bytes": "00", "x": [float("nan"), float("-inf"), b"\x01"], "hex": "ab"})
def test_json_export_is_strict_and_unambiguous(payload: object) -> None:
    """Any payload an event may carry exports as RFC 8259 JSON (no NaN/Infinity) and
    reads back to the same value: bytes, non-finite floats and ``$`` keys included."""
    g = EvidenceGraph(keys())
    event = g.append(identities()["a"], payload, wall_ms=5)
    doc = _strict_loads(g.to_json())
    assert isinstance(doc, dict) and doc["version"] == 2
    (exported,) = doc["events"]
    back = _from_export(exported["payload"])
    # compare through canonical CBOR, where NaN equals NaN and tuples are lists
    assert cbor.dumps(back) == cbor.dumps(event.payload)
