"""A deterministic, fault-injecting simulator for sans-IO nodes.

Theory of operation
-------------------
The simulator owns everything a node must not touch: time, the network, the disk and
randomness. It keeps one priority queue of pending *occurrences* ordered by
``(virtual_ms, sequence)`` — message arrivals, timer expiries, client requests and
scheduled actions (faults) — and processes them one at a time:

1. pop the earliest occurrence and advance virtual time to it;
2. turn it into an event (``Receive``, ``TimerFired``, ...) stamped with the target
   node's *local* clock (virtual time plus that node's skew) and call ``node.step``;
3. carry out the returned effects in order: ``Persist`` writes the in-memory store,
   ``SetTimer``/``CancelTimer`` edit the node's timer table, ``Deliver`` is recorded
   as application output, and ``Send`` encodes the envelope to bytes and hands it to
   the network model, which may drop it (loss, partition), duplicate it and delay it
   by a random latency (so messages reorder).

All randomness comes from ``random.Random`` instances derived from the seed: one for
the network, and one per node *incarnation* (``f"{seed}/{node}/{epoch}"``), handed to
the node factory. Nothing iterates a ``set`` of strings (whose order varies between
processes), so **a run is a pure function of its seed and its script**: the same seed
gives the same trace, byte for byte (:meth:`Simulator.trace_json`).

Faults
------
* ``partition(*groups)`` cuts every link between different groups (symmetric);
  ``block(src, dst)`` cuts one direction only (asymmetric); ``heal()`` restores all.
  Links are checked when a message is sent and again when it arrives.
* ``crash(node)`` discards the node object, its timers and its in-flight deliveries;
  ``restart(node)`` builds a fresh node with the factory and gives it
  ``Restart(persisted)`` — what ``Persist`` wrote survives, memory does not.
* ``set_skew(node, ms)`` offsets a node's local clock; ``NetworkConfig`` sets loss,
  duplication, latency and reordering and can be changed mid-run.

Malformed input raised by a node as ``DecodeError`` is recorded in the trace as a
rejection (the node's state is unchanged by contract); any other exception aborts
the run with :class:`SimulationError`, whose message carries the seed to replay.
"""

from __future__ import annotations

import heapq
import html
import json
import random
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import attrs

from vsm_phoenix.errors import DecodeError, InvalidArgument, VsmPhoenixError
from vsm_phoenix.protocol.envelope import Envelope
from vsm_phoenix.protocol.node import (
    CancelTimer,
    ClientRequest,
    Deliver,
    Effect,
    Event,
    Node,
    NodeFactory,
    Persist,
    Receive,
    Restart,
    Send,
    SetTimer,
    Start,
    TimerFired,
)

__all__ = ["NetworkConfig", "SimulationError", "Simulator", "render_spacetime_html"]


class SimulationError(VsmPhoenixError):
    """A node raised something other than ``DecodeError``; the message names the seed."""


@attrs.define
class NetworkConfig:
    """The network model. Probabilities are per message; latencies in virtual ms.

    ``reorder_rate`` is the probability that a message gets an extra delay of up to
    ``reorder_extra_ms`` (so later messages overtake it); plain latency jitter between
    ``min_latency_ms`` and ``max_latency_ms`` reorders messages as well.
    """

    min_latency_ms: int = 1
    max_latency_ms: int = 20
    drop_rate: float = 0.0
    duplicate_rate: float = 0.0
    reorder_rate: float = 0.0
    reorder_extra_ms: int = 200

    def __attrs_post_init__(self) -> None:
        if not 0 <= self.min_latency_ms <= self.max_latency_ms:
            raise InvalidArgument("need 0 <= min_latency_ms <= max_latency_ms")
        for p in (self.drop_rate, self.duplicate_rate, self.reorder_rate):
            if not 0.0 <= p <= 1.0:
                raise InvalidArgument("probabilities must be in [0, 1]")


@attrs.define
class _Slot:
    """What the simulator knows about one node id."""

    node: Node | None = None
    epoch: int = 0
    skew_ms: int = 0
    timers: dict[str, int] = attrs.field(factory=dict)  # name -> token
    started: bool = False


# Occurrence kinds in the queue.
_MSG, _TIMER, _CLIENT, _ACTION = 0, 1, 2, 3


class Simulator:
    """Runs a set of nodes under a seeded network and fault model.

    ``factory(node_id, rng)`` builds a node with empty memory; it is called at start
    and at every restart. Nodes listed in ``node_ids`` are started at time 0 (in
    list order) unless ``autostart`` is false.
    """

    def __init__(
        self,
        factory: NodeFactory,
        node_ids: Sequence[str],
        *,
        seed: int = 0,
        network: NetworkConfig | None = None,
        autostart: bool = True,
        trace_timers: bool = False,
    ) -> None:
        self.seed = seed
        self.factory = factory
        self.network = network or NetworkConfig()
        self.now = 0
        self.trace_timers = trace_timers
        self.trace: list[dict[str, Any]] = []
        self.store: dict[str, dict[str, bytes]] = {}
        self.delivered: dict[str, list[Deliver]] = {}
        self.stats: dict[str, int] = {
            "sent": 0, "delivered": 0, "dropped": 0, "duplicated": 0, "bytes": 0,
            "rejected": 0,
        }
        self.bytes_by_type: dict[str, int] = {}
        self._rng = random.Random(f"{seed}/network")
        self._queue: list[tuple[int, int, int, Any]] = []
        self._seq = 0
        self._slots: dict[str, _Slot] = {}
        self._blocked: set[tuple[str, str]] = set()
        self._request_counter = 0
        for nid in node_ids:
            self._slots[nid] = _Slot()
            self.store[nid] = {}
            self.delivered[nid] = []
        if autostart:
            for nid in node_ids:
                self.start(nid)

    # -- inspection --------------------------------------------------------------------
    def __repr__(self) -> str:
        return f"Simulator(seed={self.seed}, now={self.now}, nodes={sorted(self._slots)})"

    @property
    def node_ids(self) -> list[str]:
        """Every node id known to the simulator, sorted."""
        return sorted(self._slots)

    def node(self, node_id: str) -> Node | None:
        """The live node object, or ``None`` while crashed / not started."""
        return self._slots[node_id].node

    def is_up(self, node_id: str) -> bool:
        return self._slots[node_id].node is not None

    def local_time(self, node_id: str) -> int:
        """``node_id``'s clock reading: virtual time plus its skew (never negative)."""
        return max(0, self.now + self._slots[node_id].skew_ms)

    # -- lifecycle and faults ---------------------------------------------------------
    def add_node(self, node_id: str, *, start: bool = True) -> None:
        """Add a node id (e.g. a node that joins later) and optionally start it now."""
        if node_id in self._slots:
            raise InvalidArgument(f"node {node_id!r} already exists")
        self._slots[node_id] = _Slot()
        self.store[node_id] = {}
        self.delivered[node_id] = []
        if start:
            self.start(node_id)

    def _rng_for(self, node_id: str, epoch: int) -> random.Random:
        return random.Random(f"{self.seed}/{node_id}/{epoch}")

    def start(self, node_id: str) -> None:
        """First boot of ``node_id`` (``Start`` event)."""
        slot = self._slots[node_id]
        if slot.started:
            raise InvalidArgument(f"node {node_id!r} already started; use restart()")
        slot.started = True
        slot.node = self.factory(node_id, self._rng_for(node_id, slot.epoch))
        self._record("start", node_id)
        self._step(node_id, Start(self.local_time(node_id)))

    def crash(self, node_id: str) -> None:
        """Stop ``node_id`` abruptly: memory, timers and in-flight deliveries are lost."""
        slot = self._slots[node_id]
        if slot.node is None:
            return
        slot.node = None
        slot.timers.clear()
        slot.epoch += 1
        self._record("crash", node_id)

    def restart(self, node_id: str) -> None:
        """Boot a fresh node object for ``node_id`` with its persisted state."""
        slot = self._slots[node_id]
        if slot.node is not None:
            self.crash(node_id)
        slot.started = True
        slot.node = self.factory(node_id, self._rng_for(node_id, slot.epoch))
        self._record("restart", node_id, keys=len(self.store[node_id]))
        self._step(node_id, Restart(self.local_time(node_id), dict(self.store[node_id])))

    def partition(self, *groups: Iterable[str]) -> None:
        """Cut every link between nodes of different groups, both directions.
        Nodes not named in any group form one more group of their own."""
        named = [sorted(g) for g in groups]
        seen = {n for g in named for n in g}
        rest = [n for n in self.node_ids if n not in seen]
        if rest:
            named.append(rest)
        for i, g in enumerate(named):
            for h in named[i + 1 :]:
                for a in g:
                    for b in h:
                        self._blocked.add((a, b))
                        self._blocked.add((b, a))
        self._record("partition", None, groups=named)

    def block(self, src: str, dst: str) -> None:
        """Cut the link from ``src`` to ``dst`` only (an asymmetric partition)."""
        self._blocked.add((src, dst))
        self._record("block", src, to=dst)

    def unblock(self, src: str, dst: str) -> None:
        self._blocked.discard((src, dst))
        self._record("unblock", src, to=dst)

    def heal(self) -> None:
        """Restore every link."""
        self._blocked.clear()
        self._record("heal", None)

    def set_skew(self, node_id: str, skew_ms: int) -> None:
        """Offset ``node_id``'s local clock by ``skew_ms`` from virtual time."""
        self._slots[node_id].skew_ms = skew_ms
        self._record("skew", node_id, skew=skew_ms)

    def set_network(self, **changes: Any) -> None:
        """Change network parameters from now on (e.g. ``drop_rate=0.1``)."""
        self.network = attrs.evolve(self.network, **changes)
        self._record("network", None, **{k: changes[k] for k in sorted(changes)})

    def linked(self, src: str, dst: str) -> bool:
        return (src, dst) not in self._blocked

    # -- scripting ---------------------------------------------------------------------
    def client_request(self, node_id: str, payload: Any, *, delay_ms: int = 0) -> str:
        """Queue a ``ClientRequest`` for ``node_id``; returns its request id."""
        self._request_counter += 1
        rid = f"req-{self._request_counter}"
        self._push(self.now + delay_ms, _CLIENT, (node_id, rid, payload))
        return rid

    def schedule(self, at_ms: int, action: Callable[[Simulator], None]) -> None:
        """Run ``action(self)`` at virtual time ``at_ms`` (a scripted fault, say)."""
        self._push(max(at_ms, self.now), _ACTION, action)

    def run_until(self, t_ms: int) -> None:
        """Process every occurrence up to and including virtual time ``t_ms``."""
        while self._queue and self._queue[0][0] <= t_ms:
            at, _seq, kind, data = heapq.heappop(self._queue)
            self.now = at
            self._dispatch(kind, data)
        self.now = max(self.now, t_ms)

    def run_for(self, ms: int) -> None:
        self.run_until(self.now + ms)

    # -- internals ---------------------------------------------------------------------
    def _push(self, at: int, kind: int, data: Any) -> None:
        self._seq += 1
        heapq.heappush(self._queue, (at, self._seq, kind, data))

    def _record(self, what: str, node: str | None, **fields: Any) -> None:
        entry: dict[str, Any] = {"t": self.now, "k": what}
        if node is not None:
            entry["n"] = node
        entry.update(fields)
        self.trace.append(entry)

    def _dispatch(self, kind: int, data: Any) -> None:
        if kind == _MSG:
            src, dst, raw, epoch, mid, mtype = data
            slot = self._slots[dst]
            if slot.node is None or slot.epoch != epoch:
                self.stats["dropped"] += 1
                self._record("drop", src, to=dst, id=mid, type=mtype, why="down")
                return
            if not self.linked(src, dst):
                self.stats["dropped"] += 1
                self._record("drop", src, to=dst, id=mid, type=mtype, why="partition")
                return
            try:
                envelope = Envelope.from_bytes(raw)
            except DecodeError as exc:
                self.stats["rejected"] += 1
                self._record("reject", dst, id=mid, why=str(exc)[:120])
                return
            self.stats["delivered"] += 1
            self._record("recv", dst, frm=src, id=mid, type=mtype)
            self._step(dst, Receive(self.local_time(dst), envelope))
        elif kind == _TIMER:
            nid, name, token = data
            slot = self._slots[nid]
            if slot.node is None or slot.timers.get(name) != token:
                return
            del slot.timers[name]
            if self.trace_timers:
                self._record("timer", nid, name=name)
            self._step(nid, TimerFired(self.local_time(nid), name))
        elif kind == _CLIENT:
            nid, rid, payload = data
            if self._slots[nid].node is None:
                self._record("client-lost", nid, rid=rid)
                return
            self._record("client", nid, rid=rid)
            self._step(nid, ClientRequest(self.local_time(nid), rid, payload))
        else:
            data(self)

    def _step(self, node_id: str, event: Event) -> None:
        slot = self._slots[node_id]
        node = slot.node
        assert node is not None
        try:
            effects = node.step(event)
        except DecodeError as exc:
            self.stats["rejected"] += 1
            self._record("reject", node_id, why=str(exc)[:120])
            return
        except Exception as exc:
            raise SimulationError(
                f"seed={self.seed} t={self.now} node={node_id} event={type(event).__name__}: "
                f"{type(exc).__name__}: {exc}"
            ) from exc
        for effect in effects:
            self._apply(node_id, slot, effect)

    def _apply(self, node_id: str, slot: _Slot, effect: Effect) -> None:
        if isinstance(effect, Send):
            self._send(node_id, effect.envelope)
        elif isinstance(effect, SetTimer):
            self._seq += 1
            token = self._seq
            slot.timers[effect.name] = token
            self._push(self.now + effect.delay_ms, _TIMER, (node_id, effect.name, token))
        elif isinstance(effect, CancelTimer):
            slot.timers.pop(effect.name, None)
        elif isinstance(effect, Persist):
            if effect.value is None:
                self.store[node_id].pop(effect.key, None)
            else:
                self.store[node_id][effect.key] = effect.value
        elif isinstance(effect, Deliver):
            self.delivered[node_id].append(effect)
            self._record("deliver", node_id, kind=effect.kind, rid=effect.request_id)
        else:  # pragma: no cover - the Effect union is closed
            raise SimulationError(f"seed={self.seed}: unknown effect {effect!r}")

    def _send(self, src: str, envelope: Envelope) -> None:
        raw = envelope.to_bytes()
        mid = envelope.message_id.hex()[:12]
        if envelope.recipient is not None:
            targets = [envelope.recipient]
        else:
            targets = [n for n in self.node_ids if n != src]
        for dst in targets:
            self.stats["sent"] += 1
            self.stats["bytes"] += len(raw)
            self.bytes_by_type[envelope.type] = self.bytes_by_type.get(envelope.type, 0) + len(
                raw
            )
            self._record("send", src, to=dst, id=mid, type=envelope.type, bytes=len(raw))
            if dst not in self._slots:
                self.stats["dropped"] += 1
                self._record("drop", src, to=dst, id=mid, type=envelope.type, why="unknown")
                continue
            if not self.linked(src, dst):
                self.stats["dropped"] += 1
                self._record("drop", src, to=dst, id=mid, type=envelope.type, why="partition")
                continue
            net = self.network
            if self._rng.random() < net.drop_rate:
                self.stats["dropped"] += 1
                self._record("drop", src, to=dst, id=mid, type=envelope.type, why="loss")
                continue
            copies = 1
            if self._rng.random() < net.duplicate_rate:
                copies = 2
                self.stats["duplicated"] += 1
                self._record("dup", src, to=dst, id=mid, type=envelope.type)
            epoch = self._slots[dst].epoch
            for _ in range(copies):
                delay = self._rng.randint(net.min_latency_ms, net.max_latency_ms)
                if self._rng.random() < net.reorder_rate:
                    delay += self._rng.randint(1, max(1, net.reorder_extra_ms))
                self._push(self.now + delay, _MSG, (src, dst, raw, epoch, mid, envelope.type))

    # -- export ------------------------------------------------------------------------
    def trace_json(self) -> str:
        """The trace as canonical JSON (sorted keys): identical for identical seeds."""
        doc = {"seed": self.seed, "nodes": self.node_ids, "events": self.trace}
        return json.dumps(doc, sort_keys=True, separators=(",", ":"))

    def write_trace(self, path: str | Path) -> Path:
        p = Path(path)
        p.write_text(self.trace_json(), encoding="utf-8")
        return p

    def write_html(self, path: str | Path, **options: Any) -> Path:
        """Write the space-time diagram (see :func:`render_spacetime_html`)."""
        p = Path(path)
        p.write_text(
            render_spacetime_html(self.trace, self.node_ids, seed=self.seed, **options),
            encoding="utf-8",
        )
        return p


_PALETTE = ("#1f77b4", "#2ca02c", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#bcbd22",
            "#7f7f7f", "#ff7f0e")


def render_spacetime_html(
    trace: Sequence[Mapping[str, Any]],
    nodes: Sequence[str],
    *,
    seed: int | None = None,
    title: str = "vsm-phoenix simulation",
    start_ms: int = 0,
    end_ms: int | None = None,
    max_messages: int = 4000,
    px_per_second: float = 60.0,
    include_types: Callable[[str], bool] | None = None,
) -> str:
    """A self-contained HTML page with an SVG space-time (Lamport) diagram.

    One vertical line per node, time flowing down. Each delivered message is an arrow
    from its send point to its receive point, coloured by message type; a lost message
    is a red dashed stub ending in a cross; crashes, restarts, partitions and heals
    are marked. Hover any arrow for its type, id and exact times. At most
    ``max_messages`` arrows are drawn (the first ones in the window), so long runs stay
    viewable.

    The page opens with the whole run fitted to the window; the mouse wheel zooms the
    time axis around the pointer, dragging pans, ``0`` or the *fit* button shows the
    whole run again, and clicking a message type in the legend hides or shows it.
    Every arrow keeps a slope of at least a few pixels at any zoom, so direction stays
    readable even for messages much shorter than a pixel (the tooltip has the real
    times). Without scripts the SVG shows at ``px_per_second``.
    """
    events = [e for e in trace if e["t"] >= start_ms and (end_ms is None or e["t"] <= end_ms)]
    last_t = max((e["t"] for e in events), default=start_ms)
    stop = end_ms if end_ms is not None else last_t
    col = {n: 120 + i * 160 for i, n in enumerate(nodes)}
    top = 60

    def y(t: int) -> float:
        return top + (t - start_ms) * px_per_second / 1000.0

    def at(t: int, dy: float = 0.0) -> str:
        """The data attribute the page's script re-lays out from (time, offset)."""
        return f"{t},{dy:g}"

    width = 120 + 160 * max(len(nodes), 1)
    height = int(y(stop)) + 60
    sends: dict[tuple[str, str, str], list[int]] = {}
    types: dict[str, str] = {}
    parts: list[str] = []
    drawn = 0

    def colour(mtype: str) -> str:
        if mtype not in types:
            types[mtype] = _PALETTE[len(types) % len(_PALETTE)]
        return types[mtype]

    def kind(mtype: str) -> int:
        colour(mtype)
        return list(types).index(mtype)

    for e in events:
        k, t = e["k"], e["t"]
        mtype = str(e.get("type", ""))
        if include_types is not None and mtype and not include_types(mtype):
            continue
        if k == "send":
            sends.setdefault((e["n"], e["to"], e["id"]), []).append(t)
        elif k in ("recv", "drop") and drawn < max_messages:
            src = e["frm"] if k == "recv" else e["n"]
            dst = e["n"] if k == "recv" else e["to"]
            if src not in col or dst not in col:
                continue
            queue = sends.get((src, dst, e["id"]))
            t0 = queue[0] if queue else t
            if queue and (k == "drop" or len(queue) > 1):
                queue.pop(0)
            x0, x1 = col[src], col[dst]
            tip = f"{html.escape(mtype)} {e['id']} {src}→{dst} @{t0}..{t}ms"
            if k == "recv":
                y1 = max(y(t), y(t0) + 3)  # a minimum slope keeps the direction visible
                parts.append(
                    f'<line x1="{x0}" y1="{y(t0):.1f}" x2="{x1}" y2="{y1:.1f}" '
                    f'data-y1="{at(t0)}" data-y2="{at(t)}" data-from="{t0}" '
                    f'stroke="{colour(mtype)}" class="msg k{kind(mtype)}" '
                    f'marker-end="url(#arrow)"><title>{tip}</title></line>'
                )
            else:
                mx, my = x0 + (x1 - x0) * 0.4, y(t0) + 6
                parts.append(
                    f'<g class="k{kind(mtype)}"><line x1="{x0}" y1="{y(t0):.1f}" x2="{mx:.1f}" '
                    f'y2="{my:.1f}" data-y1="{at(t0)}" data-y2="{at(t0, 6)}" class="lost">'
                    f"<title>lost ({html.escape(str(e.get('why')))}): {tip}</title></line>"
                    f'<text x="{mx:.1f}" y="{my + 4:.1f}" data-y="{at(t0, 10)}" '
                    f'class="x">&#215;</text></g>'
                )
            drawn += 1
        elif k in ("crash", "restart", "start") and e.get("n") in col:
            x = col[e["n"]]
            cls = "crash" if k == "crash" else "boot"
            parts.append(
                f'<rect x="{x - 30}" y="{y(t) - 8:.1f}" data-y="{at(t, -8)}" width="60" '
                f'height="16" class="{cls}"><title>{k} @{t}ms</title></rect>'
                f'<text x="{x}" y="{y(t) + 4:.1f}" data-y="{at(t, 4)}" class="mark">{k}</text>'
            )
        elif k in ("partition", "heal", "block", "unblock", "network"):
            label = k
            if k == "partition":
                label += " " + " | ".join(",".join(g) for g in e.get("groups", []))
            elif k in ("block", "unblock"):
                label += f" {e.get('n')}→{e.get('to')}"
            elif k == "network":
                label += " " + ", ".join(f"{a}={e[a]}" for a in sorted(e) if a not in "tk")
            parts.append(
                f'<line x1="60" y1="{y(t):.1f}" x2="{width - 20}" y2="{y(t):.1f}" '
                f'data-y1="{at(t)}" data-y2="{at(t)}" class="fault"/>'
                f'<text x="{width - 20}" y="{y(t) - 3:.1f}" data-y="{at(t, -3)}" '
                f'class="faultlabel">{html.escape(label)} @{t / 1000:g}s</text>'
            )
    ticks = "".join(
        f'<text x="10" y="{y(sec * 1000) + 4:.1f}" class="tick">{sec}s</text>'
        for sec in range(start_ms // 1000, stop // 1000 + 1)
    )
    names = "".join(
        f'<line x1="{x}" y1="{top - 12}" x2="{x}" y2="{top}" class="life"/>'
        f'<text x="{x}" y="{top - 20}" class="name">{html.escape(n)}</text>'
        for n, x in col.items()
    )
    lifelines = "".join(
        f'<line x1="{x}" y1="{top}" x2="{x}" y2="100%" class="life"/>' for x in col.values()
    )
    legend = "".join(
        f'<span class="key" data-k="k{i}" style="color:{c}" title="click to hide or show">'
        f"&#9632; {html.escape(m)}</span> "
        for i, (m, c) in enumerate(types.items())
    )
    style = """
text{font-family:system-ui,sans-serif}
.life{stroke:#444;stroke-width:1.5}
.name{text-anchor:middle;font-weight:bold;font-size:14px}
.tick{font-size:10px;fill:#888}
.msg{stroke-width:1;opacity:.75}
.msg:hover{stroke-width:3;opacity:1}
.lost{stroke:#d62728;stroke-dasharray:3 2;stroke-width:1}
.x{fill:#d62728;font-size:12px;text-anchor:middle}
.crash{fill:#d62728}
.boot{fill:#2ca02c}
.mark{fill:white;font-size:10px;text-anchor:middle}
.fault{stroke:#ff7f0e;stroke-dasharray:6 3}
.faultlabel{fill:#ff7f0e;font-size:11px;text-anchor:end}
.off{display:none}
"""
    head = html.escape(title) + (f" — seed {seed}" if seed is not None else "")
    page_style = (
        "body{font-family:system-ui,sans-serif;margin:.6em 1em}h2{margin:.2em 0}"
        "#legend{margin:.3em 0;line-height:1.6}.key{cursor:pointer;margin-right:.6em;"
        "user-select:none}.key.hidden{opacity:.35;text-decoration:line-through}"
        "#st{border:1px solid #ddd;cursor:grab;touch-action:none;display:block}"
        "button{font-size:12px}"
    )
    return (
        "<!DOCTYPE html>\n<html><head><meta charset='utf-8'>"
        f"<title>{head}</title><style>{page_style}</style></head><body>"
        f"<h2>{head}</h2>"
        f"<div>time flows down, {start_ms}-{stop} ms; {drawn} messages drawn. "
        "Wheel: zoom time around the pointer; drag: pan; <button id='fit'>fit</button> "
        "(or 0) shows the whole run; hover an arrow for its times.</div>"
        f"<div id='legend'>{legend}<span style='color:#d62728'>&#215; lost message</span>; "
        "<span style='color:#d62728'>&#9632; crash</span>, "
        "<span style='color:#2ca02c'>&#9632; start/restart</span>, "
        "<span style='color:#ff7f0e'>- - partition, heal, link or network change</span>"
        "</div>"
        f'<svg id="st" xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'data-start="{start_ms}" data-stop="{stop}" data-top="{top}" '
        f'data-pps="{px_per_second:g}">'
        '<defs><marker id="arrow" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="5" '
        'markerHeight="5" orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" '
        f'fill="#555"/></marker></defs><style>{style}</style>'
        '<rect width="100%" height="100%" fill="white"/>'
        f"{lifelines}<g id='ticks'>{ticks}</g><g id='events'>"
        + "".join(parts)
        + f'</g><rect x="0" y="0" width="100%" height="{top - 4}" fill="white"/>{names}'
        + "</svg><script>" + _SPACETIME_SCRIPT + "</script></body></html>\n"
    )


#: Fit, zoom and pan for :func:`render_spacetime_html` (no libraries, no network).
_SPACETIME_SCRIPT = """
(function(){
const svg=document.getElementById('st');
const T0=+svg.dataset.start, T1=Math.max(+svg.dataset.stop, T0+1), TOP=+svg.dataset.top;
const MIN_SLOPE=4, NS=svg.namespaceURI;
const els=[...svg.querySelectorAll('[data-y],[data-y1],[data-y2]')];
let scale=0, offset=T0, dragging=null;
function view(){ return Math.max(200, svg.clientHeight||+svg.getAttribute('height')); }
function y(t){ return TOP+(t-offset)*scale; }
function place(el, attr){
  const spec=el.getAttribute('data-'+attr); if(spec===null) return;
  const [t,dy]=spec.split(',').map(Number); el.setAttribute(attr,(y(t)+dy).toFixed(1));
}
function ticks(){
  const g=document.getElementById('ticks'); g.replaceChildren();
  const steps=[1,2,5,10,20,50,100,200,500,1000,2000,5000,10000,20000,60000,120000,300000];
  const step=steps.find(s=>s*scale>=45)||steps[steps.length-1];
  const first=Math.ceil(offset/step)*step, last=offset+(view()-TOP)/scale;
  for(let t=first;t<=last;t+=step){
    const e=document.createElementNS(NS,'text');
    e.setAttribute('x',10); e.setAttribute('y',(y(t)+4).toFixed(1));
    e.setAttribute('class','tick');
    e.textContent=step>=1000?(t/1000)+'s':(t/1000).toFixed(3)+'s'; g.appendChild(e);
  }
}
function layout(){
  for(const el of els){ place(el,'y'); place(el,'y1'); place(el,'y2');
    if(el.classList.contains('msg')){
      const a=+el.getAttribute('y1'), b=+el.getAttribute('y2');
      if(b<a+MIN_SLOPE) el.setAttribute('y2',(a+MIN_SLOPE).toFixed(1)); } }
  ticks();
}
function fit(){
  svg.setAttribute('height', Math.max(300, window.innerHeight-svg.getBoundingClientRect().top-12));
  scale=(view()-TOP-30)/(T1-T0); offset=T0; layout();
}
function zoom(factor, atY){
  const t=offset+(atY-TOP)/scale; scale=Math.min(50, Math.max(1e-6, scale*factor));
  offset=t-(atY-TOP)/scale; layout();
}
svg.addEventListener('wheel',ev=>{ ev.preventDefault();
  const r=svg.getBoundingClientRect(); zoom(ev.deltaY<0?1.25:0.8, ev.clientY-r.top); },
  {passive:false});
svg.addEventListener('pointerdown',ev=>{ dragging={y:ev.clientY,offset};
  svg.setPointerCapture(ev.pointerId); svg.style.cursor='grabbing'; });
svg.addEventListener('pointermove',ev=>{ if(!dragging) return;
  offset=dragging.offset-(ev.clientY-dragging.y)/scale; layout(); });
svg.addEventListener('pointerup',()=>{ dragging=null; svg.style.cursor='grab'; });
svg.addEventListener('dblclick',fit);
document.getElementById('fit').addEventListener('click',fit);
document.addEventListener('keydown',ev=>{ if(ev.key==='0') fit();
  if(ev.key==='+'||ev.key==='=') zoom(1.25,view()/2); if(ev.key==='-') zoom(0.8,view()/2); });
for(const key of document.querySelectorAll('.key')) key.addEventListener('click',()=>{
  key.classList.toggle('hidden');
  for(const el of svg.querySelectorAll('.'+key.dataset.k)) el.classList.toggle('off'); });
window.addEventListener('resize',fit);
fit();
})();
"""
