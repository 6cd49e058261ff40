"""Render a check result as a self-contained HTML timeline (no scripts, no network).

One row per client (extra lanes when a client's operations overlap, e.g. after a
pending one), one bar per operation from its call to its return. The x axis is the
*rank* of each distinct timestamp, not the raw time, so bursts stay readable; pending
operations run to the right edge with a dashed border. Operations in the longest
linearizable prefix the search found are green and numbered in linearization order;
for an ILLEGAL partition the rest are red. Hovering a bar shows its description, its
times and the model state after it. A table below lists the linearization.

Every string from the history passes through :func:`html.escape`.
"""

from __future__ import annotations

import html
from typing import Any, Final

from vsm_phoenix.verify.linearizability import CheckResult, PartitionResult

__all__ = ["render_html", "render_partition"]

MAX_RENDERED_OPS: Final = 3000

_CSS: Final = """
body{font:13px/1.4 system-ui,sans-serif;margin:16px;color:#222}
h1{font-size:18px} .verdict-ok{color:#1b7a3a} .verdict-illegal{color:#b3261e}
.verdict-unknown{color:#8a6d00}
.tl{position:relative;overflow-x:auto;border:1px solid #ccc;padding:4px 0;background:#fafafa}
.row{position:relative;height:26px;border-bottom:1px dotted #e0e0e0}
.lbl{position:sticky;left:0;z-index:2;display:inline-block;width:90px;background:#fafafa;
 padding:4px;font-weight:600;white-space:nowrap;overflow:hidden}
.op{position:absolute;top:3px;height:18px;border:1px solid #666;border-radius:3px;
 font-size:11px;line-height:18px;padding:0 3px;white-space:nowrap;overflow:hidden;
 text-overflow:ellipsis;box-sizing:border-box}
.lin{background:#b7e4c7;border-color:#2d6a4f}
.bad{background:#f4c2c2;border-color:#b3261e}
.rest{background:#e4e4e4;border-color:#999}
.pending{border-style:dashed}
.block{border-width:3px;font-weight:700}
.ord{font-weight:700;margin-right:3px}
table{border-collapse:collapse;margin-top:12px} td,th{border:1px solid #ccc;padding:2px 6px;
 text-align:left;font-family:ui-monospace,monospace;font-size:12px}
"""


def _fmt_time(t: float | None) -> str:
    if t is None:
        return "pending"
    return str(int(t)) if float(t).is_integer() else repr(t)


def render_partition(
    model: Any,
    part: PartitionResult,
    *,
    title: str,
    heading: str,
) -> str:
    """The HTML fragment (timeline and table) for one partition."""
    ops = part.operations
    order = {op_index: k for k, op_index in enumerate(part.linearization)}
    # The operation whose return the search could not get past: the earliest-returning
    # completed operation left out of the longest prefix.
    blocking = min(
        (i for i, o in enumerate(ops) if i not in order and o.ret is not None),
        key=lambda i: (ops[i].ret, i),
        default=None,
    )
    truncated = len(ops) > MAX_RENDERED_OPS
    shown = list(range(len(ops)))
    if truncated:
        keep = set(part.linearization[-MAX_RENDERED_OPS // 2 :])
        keep.update(i for i in range(len(ops)) if i not in order)
        shown = sorted(keep)[:MAX_RENDERED_OPS]
    stamps = {ops[i].call for i in shown}
    stamps.update(r for i in shown if (r := ops[i].ret) is not None)
    times = sorted(stamps)
    rank = {t: r for r, t in enumerate(times)}
    end = len(times) + 1
    unit = max(8, min(48, 1800 // max(1, end)))
    label_w = 96

    # lanes per client, so overlapping operations of one client do not hide each other
    lanes: dict[Any, list[float]] = {}
    placed: list[tuple[Any, int, int]] = []  # (client, lane, op index)
    for i in sorted(shown, key=lambda j: (ops[j].call, j)):
        op = ops[i]
        free = lanes.setdefault(op.client, [])
        stop = rank[op.ret] if op.ret is not None else end
        for lane, busy_until in enumerate(free):
            if busy_until < rank[op.call]:
                free[lane] = stop
                break
        else:
            lane = len(free)
            free.append(stop)
        placed.append((op.client, lane, i))

    def client_key(c: Any) -> tuple[int, Any]:
        return (0, c) if isinstance(c, int) else (1, str(c))

    rows: dict[tuple[Any, int], list[str]] = {}
    for client, lane, i in placed:
        op = ops[i]
        start = rank[op.call]
        stop = rank[op.ret] if op.ret is not None else end
        left = label_w + start * unit
        width = max(unit // 2, (stop - start) * unit + unit // 2)
        desc = model.describe(op.input, op.output)
        if i in order:
            k = order[i]
            cls = "lin"
            text = f'<span class="ord">#{k + 1}</span>{html.escape(desc)}'
            tip = f"{desc}\ncall {_fmt_time(op.call)}, return {_fmt_time(op.ret)}\n"
            tip += f"linearized #{k + 1}; state after: {model.describe_state(part.states[k])}"
        else:
            cls = "bad" if part.verdict.value == "illegal" else "rest"
            text = html.escape(desc)
            tip = f"{desc}\ncall {_fmt_time(op.call)}, return {_fmt_time(op.ret)}\nnot linearized"
            if i == blocking and part.verdict.value == "illegal":
                cls += " block"
                tip += " (no legal order reaches past this return)"
        if op.ret is None:
            cls += " pending"
        rows.setdefault((client, lane), []).append(
            f'<div class="op {cls}" style="left:{left}px;width:{width}px" '
            f'title="{html.escape(tip)}">{text}</div>'
        )
    width_px = label_w + (end + 2) * unit
    body = [f'<div class="tl"><div style="width:{width_px}px">']
    for client, lane in sorted(rows, key=lambda cl: (client_key(cl[0]), cl[1])):
        label = html.escape(f"client {client}" + (f" ·{lane + 1}" if lane else ""))
        body.append(f'<div class="row"><span class="lbl">{label}</span>')
        body.extend(rows[(client, lane)])
        body.append("</div>")
    body.append("</div></div>")

    table = ["<table><tr><th>#</th><th>client</th><th>operation</th><th>state after</th></tr>"]
    for k, i in enumerate(part.linearization[:MAX_RENDERED_OPS]):
        op = ops[i]
        table.append(
            f"<tr><td>{k + 1}</td><td>{html.escape(str(op.client))}</td>"
            f"<td>{html.escape(model.describe(op.input, op.output))}</td>"
            f"<td>{html.escape(model.describe_state(part.states[k]))}</td></tr>"
        )
    table.append("</table>")
    note = ""
    if truncated:
        note = f"<p>Showing {len(shown)} of {len(ops)} operations.</p>"
    return (
        f"<h2>{html.escape(heading)}</h2>{note}"
        + "".join(body)
        + f"<p>Longest linearizable prefix: {len(part.linearization)} of {len(ops)} operations.</p>"
        + "".join(table)
    )


def render_html(result: CheckResult, *, title: str = "linearizability check") -> str:
    """A complete HTML page for ``result``: the failing partition if there is one, else
    the largest partition checked."""
    verdict = result.verdict.value
    parts = result.partitions
    part = result.failing
    if part is None and parts:
        part = max(parts, key=lambda p: len(p.operations))
    header = (
        f"<h1>{html.escape(title)}</h1>"
        f'<p class="verdict-{verdict}">{html.escape(result.summary())}</p>'
        "<p>Green: the longest linearizable prefix found, numbered in order. "
        "Red: left out (thick border: the return no legal order gets past). "
        "Dashed: pending (never returned). Hover a bar for details.</p>"
    )
    if part is None:
        content = "<p>No operations.</p>"
    else:
        which = "Failing partition" if result.failing is not None else "Largest partition"
        content = render_partition(
            result.model,
            part,
            title=title,
            heading=f"{which} ({len(part.operations)} operations, {part.verdict.value})",
        )
    return (
        "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\">"
        f"<title>{html.escape(title)}</title><style>{_CSS}</style></head><body>"
        f"{header}{content}</body></html>\n"
    )
