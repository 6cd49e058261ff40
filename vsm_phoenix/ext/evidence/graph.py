"""The evidence graph: a grow-only, signed Merkle-DAG of events (a CRDT).

Theory of operation
-------------------
The graph is a set of :class:`~vsm_phoenix.ext.evidence.event.Event` s keyed by id.
Each event names its parents by id (the hash of their bytes), so the graph is a
Merkle-DAG as in Merkle-CRDTs (Sanjuán et al. 2020): an id pins down the event and,
transitively, every ancestor. Adding is the only mutation and the join is set union, so
replicas that hold the same events are equal whatever order they received them in.

* **Admission.** :meth:`EvidenceGraph.add` decodes and checks the signature under the
  author's key before anything changes; a forged or altered event is refused with
  ``AuthenticationError`` naming its id. :meth:`add_many` checks a whole batch first
  and refuses it all if one event is bad (state unchanged).
* **Completeness.** An event may arrive before its ancestors. It is kept, but it is
  *incomplete* until every ancestor is present; :meth:`missing` lists the ids that
  present events reference but the graph lacks (what sync fetches next).
* **Causal order.** An event's HLC timestamp must be later than each parent's. The
  check needs both ends present, and refusing on arrival would make the graph depend
  on arrival order, so :meth:`verify` reports such events as *misordered* instead.
* **Heights.** Each event has a height, one more than its highest present parent
  (0 without). Heights strictly decrease along parent links, which lets ancestry
  walks stop early (:meth:`happened_before`) and lets sync compute "what I have
  that you lack" by walking only the difference (:mod:`.sync`).
* **Durability.** With a ``storage`` (SQLite or in-memory, :mod:`vsm_phoenix.storage`)
  each event is written under ``evidence/<id hex>`` as it is added, in one transaction
  per batch; :meth:`open` reloads and re-verifies them, naming tampered records.

Queries return ids (32-byte ``bytes``): :meth:`ancestors`, :meth:`descendants`,
:meth:`happened_before`, :meth:`heads`, :meth:`cut`, :meth:`cut_at`,
:meth:`by_author`, :meth:`in_range`; :meth:`to_json` exports a graph or a cut and
:func:`~vsm_phoenix.ext.evidence.render.render_html` draws one.
"""

from __future__ import annotations

import hashlib
import heapq
import json
import math
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any, Final

import attrs

from vsm_phoenix.crypto.identity import Identity
from vsm_phoenix.crypto.signature import VerifyKey
from vsm_phoenix.errors import (
    AuthenticationError,
    DecodeError,
    InvalidArgument,
    TypeMismatch,
)
from vsm_phoenix.ext.evidence.event import (
    ID_SIZE,
    MAX_PARENTS,
    Event,
    KeySource,
    key_lookup,
    short,
)
from vsm_phoenix.storage import Storage

__all__ = ["STORE_PREFIX", "EvidenceGraph", "Verification"]

STORE_PREFIX: Final = "evidence/"


@attrs.frozen
class Verification:
    """What :meth:`EvidenceGraph.verify` found; every list holds event ids.

    ``forged``: the stored signature does not verify (or the author is unknown);
    ``altered``: a stored record whose bytes do not hash to its id; ``misordered``:
    an event not later than one of its parents; ``incomplete``: events with an ancestor
    absent; ``missing``: ids referenced but absent. ``ok`` when the first three are
    empty (incomplete events are legitimate while sync is fetching their ancestors)."""

    checked: int
    forged: tuple[bytes, ...] = ()
    altered: tuple[bytes, ...] = ()
    misordered: tuple[bytes, ...] = ()
    incomplete: tuple[bytes, ...] = ()
    missing: tuple[bytes, ...] = ()

    @property
    def ok(self) -> bool:
        return not (self.forged or self.altered or self.misordered)

    @property
    def complete(self) -> bool:
        return self.ok and not self.incomplete

    def describe(self) -> list[str]:
        """One line per finding, naming each event by its short id."""
        lines: list[str] = []
        for what, ids in (("forged", self.forged), ("altered", self.altered),
                          ("misordered", self.misordered), ("incomplete", self.incomplete),
                          ("missing", self.missing)):
            lines.extend(f"{what}: {short(i)}" for i in ids)
        return lines


def _check_query_id(event_id: object) -> bytes:
    if not isinstance(event_id, bytes):
        raise TypeMismatch(f"event id must be bytes, not {type(event_id).__name__}")
    if len(event_id) != ID_SIZE:
        raise InvalidArgument(f"event id must be {ID_SIZE} bytes")
    return event_id


class EvidenceGraph:
    """A replica of the evidence graph (see the module docstring).

    ``keys`` says who may author events (a roster, a roster book, a principal -> key
    map or a function). ``storage``, when given, receives every added event.
    """

    __slots__ = ("_at_height", "_by_author", "_children", "_events", "_heads", "_height",
                 "_incomplete", "_keys", "_last", "_missing", "_storage")

    def __init__(self, keys: KeySource, storage: Storage | None = None) -> None:
        self._keys = key_lookup(keys)
        self._storage = storage
        self._events: dict[bytes, Event] = {}
        self._children: dict[bytes, list[bytes]] = {}
        self._height: dict[bytes, int] = {}
        self._at_height: dict[int, set[bytes]] = {}
        self._heads: set[bytes] = set()
        self._missing: set[bytes] = set()
        self._incomplete: set[bytes] = set()
        self._by_author: dict[str, list[bytes]] = {}
        self._last: dict[str, tuple[int, int]] = {}

    @property
    def keys(self) -> Callable[[str], VerifyKey]:
        return self._keys

    # -- admission ---------------------------------------------------------------------
    def _decode(self, item: Event | bytes) -> Event:
        if isinstance(item, Event):
            if self._events.get(item.id) is not None:
                return self._events[item.id]  # held: verified on admission
            item.verify(self._keys)
            return item
        if not isinstance(item, bytes | bytearray | memoryview):
            raise TypeMismatch(f"expected an Event or bytes, not {type(item).__name__}")
        held = self._events.get(hashlib.sha256(item).digest())
        if held is not None:  # the same bytes: verified on admission
            return held
        event = Event.from_bytes(item)
        event.verify(self._keys)
        return event

    def add(self, item: Event | bytes) -> bool:
        """Verify and add one event; ``True`` when it was new."""
        return bool(self.add_many([item]))

    def add_many(self, items: Iterable[Event | bytes]) -> list[bytes]:
        """Verify a batch, then add every new event (all or nothing); returns the ids
        added, oldest stamp first. ``DecodeError`` / ``AuthenticationError`` name the bad event."""
        events = [self._decode(item) for item in items]  # validate everything first
        added: list[bytes] = []
        fresh: list[Event] = []
        seen: set[bytes] = set()
        for event in events:
            if event.id in self._events or event.id in seen:
                continue
            seen.add(event.id)
            fresh.append(event)
        # Parents before children (a parent's stamp is earlier), so that a batch in any
        # order does not raise heights again and again (quadratic on a long chain).
        fresh.sort(key=lambda e: (e.timestamp, e.id))
        if self._storage is not None and fresh:
            self._store(fresh)
        for event in fresh:
            self._insert(event)
            added.append(event.id)
        return added

    def _store(self, events: Sequence[Event]) -> None:
        storage = self._storage
        assert storage is not None
        transaction = getattr(storage, "transaction", None)
        if transaction is None:
            for event in events:
                storage.put(STORE_PREFIX + event.id.hex(), event.raw)
            return
        with transaction():
            for event in events:
                storage.put(STORE_PREFIX + event.id.hex(), event.raw)

    def _insert(self, event: Event) -> None:
        eid = event.id
        self._events[eid] = event
        self._missing.discard(eid)
        height = 0
        incomplete = False
        for p in event.parents:
            self._children.setdefault(p, []).append(eid)
            if p in self._events:
                height = max(height, self._height[p] + 1)
                self._heads.discard(p)
                if p in self._incomplete:
                    incomplete = True
            else:
                self._missing.add(p)
                incomplete = True
        self._height[eid] = height
        self._at_height.setdefault(height, set()).add(eid)
        if not any(c in self._events for c in self._children.get(eid, ())):
            self._heads.add(eid)
        self._by_author.setdefault(event.author, []).append(eid)
        if event.timestamp > self._last.get(event.author, (-1, -1)):
            self._last[event.author] = event.timestamp
        if incomplete:
            self._incomplete.add(eid)
        children = [c for c in self._children.get(eid, ()) if c in self._events]
        if children:
            self._raise_heights(children, height)
            if not incomplete:
                self._recheck_complete(children)

    def _raise_heights(self, children: list[bytes], parent_height: int) -> None:
        """A parent arrived after its children: keep heights decreasing along links."""
        stack = [(c, parent_height + 1) for c in children]
        while stack:
            node, floor = stack.pop()
            old = self._height[node]
            if old >= floor:
                continue
            self._at_height[old].discard(node)
            self._at_height.setdefault(floor, set()).add(node)
            self._height[node] = floor
            stack.extend((c, floor + 1) for c in self._children.get(node, ())
                         if c in self._events)

    def _recheck_complete(self, children: list[bytes]) -> None:
        stack = [c for c in children if c in self._incomplete]
        while stack:
            node = stack.pop()
            if node not in self._incomplete:
                continue
            parents = self._events[node].parents
            if all(p in self._events and p not in self._incomplete for p in parents):
                self._incomplete.discard(node)
                stack.extend(c for c in self._children.get(node, ()) if c in self._incomplete)

    def append(self, identity: Identity, payload: Any, *, wall_ms: int,
               parents: Iterable[bytes] | None = None) -> Event:
        """Sign and add a new event by ``identity``.

        ``parents`` defaults to the current heads (the newest at most
        :data:`MAX_PARENTS`). The timestamp is the author's hybrid logical clock:
        ``wall_ms`` if that is later than the author's last event and every parent,
        else the latest of those with the logical counter advanced."""
        if not isinstance(identity, Identity):
            raise TypeMismatch("identity must be an Identity")
        if type(wall_ms) is not int or wall_ms < 0:
            raise InvalidArgument("wall_ms must be a non-negative int")
        if parents is None:
            chosen = sorted(self._heads, key=lambda h: (self._height[h], h))[-MAX_PARENTS:]
        else:
            chosen = [_check_query_id(p) for p in parents]
        floor = self._last.get(identity.principal, (-1, -1))
        for p in chosen:
            if p in self._events:
                floor = max(floor, self._events[p].timestamp)
        stamp = (wall_ms, 0) if wall_ms > floor[0] else (floor[0], floor[1] + 1)
        event = Event.create(identity, payload, physical_ms=stamp[0], logical=stamp[1],
                             parents=chosen)
        self.add_many([event])
        return event

    # -- durability --------------------------------------------------------------------
    @classmethod
    def open(cls, keys: KeySource, storage: Storage) -> tuple[EvidenceGraph, Verification]:
        """Reload a graph from ``storage``, re-verifying every record.

        Records whose bytes do not decode or hash to their key are *altered*, those
        whose signature fails are *forged*; both are left out of the graph and named
        in the returned :class:`Verification`."""
        graph = cls(keys)
        altered: list[bytes] = []
        forged: list[bytes] = []
        good: list[Event] = []
        for key, raw in storage.items(STORE_PREFIX):
            try:
                claimed = bytes.fromhex(key[len(STORE_PREFIX):])
            except ValueError:
                claimed = hashlib.sha256(key.encode()).digest()
            try:
                event = Event.from_bytes(raw)
            except DecodeError:
                altered.append(claimed)
                continue
            if event.id != claimed:
                altered.append(claimed)
                continue
            try:
                event.verify(graph._keys)
            except AuthenticationError:
                forged.append(claimed)
                continue
            good.append(event)
        # Parents first (a parent's stamp is earlier): inserting children first would
        # raise their heights again for every late parent, quadratic on a long chain.
        good.sort(key=lambda e: (e.timestamp, e.id))
        for event in good:
            graph._insert(event)
        graph._storage = storage
        report = graph.verify()
        return graph, attrs.evolve(report, forged=tuple(sorted(forged)),
                                   altered=tuple(sorted(altered)))

    # -- verification ------------------------------------------------------------------
    def verify(self, *, signatures: bool = False) -> Verification:
        """Check every parent link's causal order, completeness and (with
        ``signatures=True``) every signature again."""
        forged = []
        misordered = []
        for eid, event in self._events.items():
            if signatures:
                try:
                    event.verify(self._keys)
                except AuthenticationError:
                    forged.append(eid)
            for p in event.parents:
                parent = self._events.get(p)
                if parent is not None and not parent.timestamp < event.timestamp:
                    misordered.append(eid)
                    break
        return Verification(
            checked=len(self._events),
            forged=tuple(sorted(forged)),
            misordered=tuple(sorted(misordered)),
            incomplete=tuple(sorted(self._incomplete)),
            missing=tuple(sorted(self._missing)),
        )

    # -- the lattice -------------------------------------------------------------------
    def merge(self, other: EvidenceGraph) -> list[bytes]:
        """Join ``other`` into this graph (events re-verified under this graph's keys)."""
        if not isinstance(other, EvidenceGraph):
            raise TypeMismatch(f"cannot merge an EvidenceGraph with {type(other).__name__}")
        return self.add_many(other.topological())

    def __ior__(self, other: EvidenceGraph) -> EvidenceGraph:
        self.merge(other)
        return self

    def __or__(self, other: EvidenceGraph) -> EvidenceGraph:
        out = EvidenceGraph(self._keys)
        out.merge(self)
        out.merge(other)
        return out

    def __le__(self, other: EvidenceGraph) -> bool:
        if not isinstance(other, EvidenceGraph):
            return NotImplemented
        return self._events.keys() <= other._events.keys()

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, EvidenceGraph):
            return NotImplemented
        return self._events.keys() == other._events.keys()

    __hash__ = None  # type: ignore[assignment]  # mutable

    def digest(self) -> bytes:
        """SHA-256 over the sorted ids: equal graphs have equal digests."""
        h = hashlib.sha256()
        for eid in sorted(self._events):
            h.update(eid)
        return h.digest()

    # -- lookups -----------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self._events)

    def __contains__(self, event_id: object) -> bool:
        return event_id in self._events

    def __iter__(self) -> Iterator[bytes]:
        return iter(self._events)

    def __getitem__(self, event_id: bytes) -> Event:
        return self._events[event_id]

    def get(self, event_id: bytes) -> Event | None:
        return self._events.get(event_id)

    def height(self, event_id: bytes) -> int:
        return self._height[_check_query_id(event_id)]

    def heads(self) -> list[bytes]:
        """Events no present event names as a parent, sorted."""
        return sorted(self._heads)

    def missing(self) -> list[bytes]:
        """Ids that present events name as parents but the graph lacks, sorted."""
        return sorted(self._missing)

    def is_complete(self, event_id: bytes) -> bool:
        """Whether every ancestor of the event is present."""
        return self._need(event_id) not in self._incomplete

    def _need(self, event_id: object) -> bytes:
        eid = _check_query_id(event_id)
        if eid not in self._events:
            raise InvalidArgument(f"no event {short(eid)} in the graph")
        return eid

    def topological(self) -> list[Event]:
        """Every event, parents before children (by height, then id)."""
        return [self._events[i] for i in sorted(self._events,
                                                key=lambda i: (self._height[i], i))]

    # -- queries -----------------------------------------------------------------------
    def ancestors(self, event_id: bytes) -> set[bytes]:
        """Ids of the present events that happened before ``event_id``."""
        out: set[bytes] = set()
        stack = list(self._events[self._need(event_id)].parents)
        while stack:
            node = stack.pop()
            if node in out or node not in self._events:
                continue
            out.add(node)
            stack.extend(self._events[node].parents)
        return out

    def descendants(self, event_id: bytes) -> set[bytes]:
        """Ids of the present events that ``event_id`` happened before."""
        out: set[bytes] = set()
        stack = list(self._children.get(self._need(event_id), ()))
        while stack:
            node = stack.pop()
            if node in out or node not in self._events:
                continue
            out.add(node)
            stack.extend(self._children.get(node, ()))
        return out

    def happened_before(self, a: bytes, b: bytes) -> bool:
        """Whether ``a`` is an ancestor of ``b`` (walks only events higher than ``a``)."""
        a, b = self._need(a), self._need(b)
        floor = self._height[a]
        seen: set[bytes] = set()
        stack = [b]
        while stack:
            node = stack.pop()
            for p in self._events[node].parents:
                if p == a:
                    return True
                if p in self._events and p not in seen and self._height[p] > floor:
                    seen.add(p)
                    stack.append(p)
        return False

    def concurrent(self, a: bytes, b: bytes) -> bool:
        """Neither happened before the other (and they differ)."""
        return a != b and not self.happened_before(a, b) and not self.happened_before(b, a)

    def cut(self, frontier: Iterable[bytes]) -> set[bytes]:
        """The causal cut below ``frontier``: those events and all their ancestors."""
        out: set[bytes] = set()
        for eid in frontier:
            out.add(self._need(eid))
            out |= self.ancestors(eid)
        return out

    def cut_at(self, physical_ms: int) -> set[bytes]:
        """The causal cut at a time: events stamped at or before ``physical_ms``,
        closed under ancestry (so the cut is consistent even with misordered events)."""
        if type(physical_ms) is not int:
            raise TypeMismatch("physical_ms must be an int")
        return self.cut(i for i, e in self._events.items() if e.physical_ms <= physical_ms)

    def by_author(self, author: str) -> list[bytes]:
        """The author's events, oldest first (by timestamp, then id)."""
        if not isinstance(author, str):
            raise TypeMismatch("author must be a str")
        ids = self._by_author.get(author, [])
        return sorted(ids, key=lambda i: (self._events[i].timestamp, i))

    def in_range(self, start_ms: int, end_ms: int) -> list[bytes]:
        """Events with ``start_ms <= physical_ms < end_ms``, oldest first."""
        if type(start_ms) is not int or type(end_ms) is not int:
            raise TypeMismatch("start_ms and end_ms must be ints")
        if end_ms < start_ms:
            raise InvalidArgument("end_ms must not be before start_ms")
        hits = [i for i, e in self._events.items() if start_ms <= e.physical_ms < end_ms]
        return sorted(hits, key=lambda i: (self._events[i].timestamp, i))

    # -- sync support ------------------------------------------------------------------
    def difference(self, theirs: Iterable[bytes], limit: int | None = None) -> list[bytes]:
        """Ids of events here that are not ancestors-or-self of ``theirs`` (ids a peer
        is known to hold; unknown ones are ignored), parents first.

        Walks from the heads and from ``theirs`` together in decreasing height, as
        ``git rev-list HEADS ^THEIRS`` does: the walk stops as soon as every queued
        event is known to the peer, so its cost follows the difference, not the graph.
        """
        mine_flag, theirs_flag = 1, 2
        flags: dict[bytes, int] = {}
        heap: list[tuple[int, bytes]] = []
        pending = 0  # queued events flagged "mine" only
        for h in self._heads:
            flags[h] = mine_flag
            heap.append((-self._height[h], h))
            pending += 1
        for t in theirs:
            if t not in self._events:
                continue
            old = flags.get(t, 0)
            if old == mine_flag:
                pending -= 1
            if old == 0:
                heap.append((-self._height[t], t))
            flags[t] = old | theirs_flag
        heapq.heapify(heap)
        out: list[bytes] = []
        while heap and pending > 0:
            _, node = heapq.heappop(heap)
            f = flags[node]
            push = theirs_flag if f & theirs_flag else mine_flag
            if f == mine_flag:
                pending -= 1
                out.append(node)
            for p in self._events[node].parents:
                if p not in self._events:
                    continue
                had = flags.get(p)
                if had is None:
                    flags[p] = push
                    heapq.heappush(heap, (-self._height[p], p))
                    if push == mine_flag:
                        pending += 1
                elif had | push != had:
                    if had == mine_flag:  # queued, mine only; now known to them
                        pending -= 1
                    flags[p] = had | push
        out.sort(key=lambda i: (self._height[i], i))
        return out if limit is None else out[:limit]

    def sample(self, limit: int = 64) -> list[bytes]:
        """Ids that tell a peer what this replica holds, in O(log n) ids: one complete
        event at each of the heights ``top - 1, top - 2, top - 4, ...``."""
        if not self._events:
            return []
        top = max(self._height[h] for h in self._heads)
        out: list[bytes] = []
        step = 1
        while top - step >= 0 and len(out) < limit:
            level = self._at_height.get(top - step, set())
            done = [i for i in level if i not in self._incomplete]
            if done:
                out.append(min(done))
            step *= 2
        if top > 0 and len(out) < limit:
            done = [i for i in self._at_height.get(0, set()) if i not in self._incomplete]
            if done and min(done) not in out:
                out.append(min(done))
        return out

    # -- export ------------------------------------------------------------------------
    def to_json(self, ids: Iterable[bytes] | None = None) -> str:
        """The graph (or the events ``ids``, e.g. a :meth:`cut`) as strict JSON
        (RFC 8259: no ``NaN``/``Infinity`` literals): events parents first, ids in hex.

        Payload values that JSON cannot hold are written as one-key objects whose key
        starts with ``$``: bytes as ``{"$bytes": "<hex>"}``, non-finite floats as
        ``{"$float": "NaN" | "Infinity" | "-Infinity"}``. A payload map key that itself
        starts with ``$`` gets one more ``$`` in front, so every ``$`` object is
        unambiguous (format version 2)."""
        chosen = set(self._events) if ids is None else {self._need(i) for i in ids}
        events = [e for e in self.topological() if e.id in chosen]
        doc = {
            "type": "vsm-phoenix/evidence-graph",
            "version": 2,
            "heads": [h.hex() for h in sorted(self._heads) if h in chosen],
            "events": [
                {
                    "id": e.id.hex(),
                    "author": e.author,
                    "timestamp": [e.physical_ms, e.logical],
                    "height": self._height[e.id],
                    "parents": [p.hex() for p in e.parents],
                    "payload": _jsonable(e.payload),
                    "signature": e.signature.hex(),
                    "complete": e.id not in self._incomplete,
                }
                for e in events
            ],
        }
        return json.dumps(doc, indent=1, sort_keys=True, allow_nan=False)

    def __repr__(self) -> str:
        return (f"EvidenceGraph({len(self._events)} events, {len(self._heads)} heads, "
                f"{len(self._missing)} missing)")


def _jsonable(value: Any) -> Any:
    """A payload value as strict JSON data (see :meth:`EvidenceGraph.to_json`)."""
    if isinstance(value, bytes):
        return {"$bytes": value.hex()}
    if isinstance(value, float) and not math.isfinite(value):
        return {"$float": "NaN" if math.isnan(value) else
                ("Infinity" if value > 0 else "-Infinity")}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {("$" + k if k.startswith("$") else k): _jsonable(v)
                for k, v in value.items()}
    return value
