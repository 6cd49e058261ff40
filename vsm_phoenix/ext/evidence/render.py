"""A picture of an evidence graph or a cut: a self-contained HTML page with an SVG.

Rendering lives beside the graph, not inside it (the graph is a record; this reads
it). Each event is a circle in its author's lane, placed left to right by height;
lines join it to its parents; incomplete events are hollow and the hover title shows
id, author, timestamp and payload. Every outside string is HTML-escaped.
"""

from __future__ import annotations

import html
import json
from collections.abc import Iterable

from vsm_phoenix.ext.evidence.event import short
from vsm_phoenix.ext.evidence.graph import EvidenceGraph, _jsonable

__all__ = ["render_html", "render_svg"]

_X, _Y, _R = 70, 56, 11
_PALETTE = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#17becf", "#8c564b")


def render_svg(graph: EvidenceGraph, ids: Iterable[bytes] | None = None,
               max_events: int = 5000) -> str:
    """The SVG of ``graph`` (or of the events ``ids``, e.g. a cut); at most
    ``max_events`` are drawn (the newest), so a large graph still gives a page."""
    events = graph.topological()
    if ids is not None:
        chosen = set(ids)
        events = [e for e in events if e.id in chosen]
    events = events[-max_events:]
    authors = sorted({e.author for e in events})
    lane = {a: i for i, a in enumerate(authors)}
    base = min((graph.height(e.id) for e in events), default=0)
    pos = {e.id: (40 + 120 + (graph.height(e.id) - base) * _X, 30 + lane[e.author] * _Y)
           for e in events}
    width = max((x for x, _ in pos.values()), default=0) + 60
    height = 30 + max(len(authors), 1) * _Y
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
           f'font-family="monospace" font-size="11">']
    for a, i in lane.items():
        out.append(f'<text x="8" y="{34 + i * _Y}">{html.escape(a[:16])}</text>')
    for e in events:
        x, y = pos[e.id]
        for p in e.parents:
            if p in pos:
                px, py = pos[p]
                out.append(f'<line x1="{px}" y1="{py}" x2="{x}" y2="{y}" stroke="#999"/>')
    for e in events:
        x, y = pos[e.id]
        color = _PALETTE[lane[e.author] % len(_PALETTE)]
        fill = color if graph.is_complete(e.id) else "white"
        payload = json.dumps(_jsonable(e.payload), sort_keys=True)[:200]
        title = html.escape(f"{e.id.hex()}\n{e.author} @ {e.physical_ms}.{e.logical}\n{payload}")
        out.append(f'<g><title>{title}</title><circle cx="{x}" cy="{y}" r="{_R}" '
                   f'fill="{fill}" stroke="{color}" stroke-width="2"/>'
                   f'<text x="{x - 18}" y="{y + 24}" font-size="9">{short(e.id)[:6]}</text></g>')
    out.append("</svg>")
    return "\n".join(out)


def render_html(graph: EvidenceGraph, ids: Iterable[bytes] | None = None,
                title: str = "evidence graph") -> str:
    """A standalone HTML page with :func:`render_svg` and a summary line."""
    report = graph.verify()
    chosen = None if ids is None else list(ids)
    count = len(graph) if chosen is None else len(chosen)
    summary = (f"{count} events, {len(graph.heads())} heads, {len(report.incomplete)} "
               f"incomplete, {len(report.misordered)} misordered")
    return ("<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\">"
            f"<title>{html.escape(title)}</title></head><body>"
            f"<h1>{html.escape(title)}</h1><p>{html.escape(summary)}</p>"
            f"{render_svg(graph, chosen)}</body></html>\n")
