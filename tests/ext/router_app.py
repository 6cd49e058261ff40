"""A router application for the command-line tests: what ``--routes router_app:ROUTES``
loads (with ``tests/ext`` on ``PYTHONPATH``), written as a user would write one."""

from __future__ import annotations

from vsm_phoenix.ext.router import Command
from vsm_phoenix.ext.router_node import RouteSpec


def add_note(data: dict[str, str], cmd: Command) -> int:
    """Append ``text`` as the next note; the answer is its number."""
    text = cmd.args.get("text")
    if not isinstance(text, str) or not text:
        raise ValueError("note.add needs a non-empty 'text'")
    n = sum(1 for k in data if k.startswith("note/")) + 1
    data[f"note/{n}"] = f"{cmd.principal}: {text}"
    return n


def list_notes(data: dict[str, str], cmd: Command) -> list[str]:
    return [data[k] for k in sorted(data) if k.startswith("note/")]


def claim(data: dict[str, str], cmd: Command) -> str:
    job = cmd.args.get("job")
    if not isinstance(job, str) or not job:
        raise ValueError("job.claim needs a 'job'")
    return data.setdefault(f"job/{job}", cmd.principal)


ROUTES = {
    "note.add": RouteSpec(add_note, "write"),
    "note.list": RouteSpec(list_notes, "read"),
    "job.claim": RouteSpec(claim, "peer", "jobs"),
}


def not_routes() -> list[str]:
    return ["note.add"]


def broken() -> dict[str, RouteSpec]:
    raise RuntimeError("no database")
