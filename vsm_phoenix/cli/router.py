"""The command line of the signed command router: ``node --kind router`` options,
``ctl NODE command`` (sign and submit a command) and ``keys grant`` (a capability grant
signed by the cluster authority).

A router node (:class:`~vsm_phoenix.ext.router_node.RouterKind`) runs an application: a
table of routes, each a command name with its handler, the roster role and the
capability it needs (:class:`~vsm_phoenix.ext.router_node.RouteSpec`). The table is
``--routes module:attribute``, naming a mapping of command name to ``RouteSpec`` (or a
zero-argument callable returning one); without it the node runs the demo application
(:data:`~vsm_phoenix.ext.router_node.DEFAULT_ROUTES`: ``kv.set``, ``kv.delete``,
``kv.get``, ``job.claim``). A handler is a plain function ``handler(data, command)`` of
the node's data (a ``dict[str, str]`` it may change) and the authenticated
:class:`~vsm_phoenix.ext.router.Command`; it returns the answer.

Capabilities come from grants signed by the cluster authority (``keys grant``). A node
started with ``--grant FILE`` verifies the grant (exit 2 when it is forged, for another
cluster or signed by anyone but the authority) and advertises it through membership,
so every router node learns it; a grant for the node itself also makes it advertise the
granted capability names, which commands it signs may then use. ``--authority-key HEX``
pins the authority: the node refuses a roster its key did not sign.

``ctl NODE command NAME [KEY=VALUE | KEY:=JSON ...]`` signs the command with the
``--as`` principal's identity (issued now; nonce: :func:`~vsm_phoenix.ext.router.
clock_nonce`, the ms since 2024-01-01, unless ``--nonce``; issuer ``principal#SESSION``
with ``--session``) and hands it to ``NODE``, which runs it
or relays it to ``--to``. ``--save FILE`` keeps the signed bytes; ``--wire FILE`` sends
bytes signed before (by anyone: the signature says who asks) instead of signing.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

from vsm_phoenix.cli.base import UsageError

__all__ = [
    "add_command_arguments",
    "add_grant_parser",
    "add_node_options",
    "check_node_options",
    "command_request",
    "describe_decision",
    "router_kind",
]

#: Node options that mean something only with ``--kind router`` (dest -> flag).
_ROUTER_ONLY = {"routes": "--routes", "grants": "--grant", "authority_key": "--authority-key",
                "max_age_ms": "--max-age-ms", "max_skew_ms": "--max-skew-ms"}


# -- vsm-phoenix node --kind router ----------------------------------------------------------
def add_node_options(p: argparse.ArgumentParser) -> None:
    """The ``--kind router`` options of ``vsm-phoenix node``."""
    g = p.add_argument_group("router nodes (--kind router)")
    g.add_argument("--routes", default=None, metavar="MODULE:ATTR",
                   help="the application: a mapping of command name to RouteSpec, or a "
                        "zero-argument callable returning one (default: the demo routes "
                        "kv.set, kv.delete, kv.get, job.claim)")
    g.add_argument("--grant", dest="grants", action="append", default=None, metavar="FILE",
                   help="a capability grant signed by the cluster authority (`vsm-phoenix "
                        "keys grant`), verified and advertised through membership "
                        "(repeatable)")
    g.add_argument("--authority-key", default=None, metavar="HEX",
                   help="pin the cluster authority's public key (64 hex digits, `keys "
                        "show`): refuse a roster it did not sign")
    g.add_argument("--max-age-ms", type=int, default=None,
                   help="refuse commands issued longer ago than this (default 30000)")
    g.add_argument("--max-skew-ms", type=int, default=None,
                   help="refuse commands issued further ahead than this (default 5000)")


def _read_small(path: str, limit: int, what: str) -> bytes:
    """A file of at most ``limit`` bytes (``UsageError`` / ``OSError`` otherwise)."""
    with open(path, "rb") as fh:
        data = fh.read(limit + 1)
    if len(data) > limit:
        raise UsageError(f"{path}: larger than {limit} bytes: not {what}")
    return data


def _routes(spec: str) -> Any:
    from vsm_phoenix.ext.amqp.kinds import load_attribute

    obj = load_attribute(spec, "--routes")
    if callable(obj):
        try:
            obj = obj()
        except Exception as exc:
            raise UsageError(f"--routes {spec}(): {type(exc).__name__}: {exc}") from None
    return obj


def router_kind(args: argparse.Namespace, credentials: Any, log: Any = None) -> Any:
    """The :class:`RouterKind` the ``node`` options describe, every file and value
    checked (``UsageError``, ``OSError`` or a ``VsmPhoenixError``). ``log``: a
    :class:`logging.Logger` that gets every router decision at INFO."""
    from vsm_phoenix.crypto.identity import RosterBook
    from vsm_phoenix.crypto.signature import VerifyKey
    from vsm_phoenix.ext.agents.grants import (
        MAX_GRANT_BYTES,
        CapabilityGrant,
        advertisement,
    )
    from vsm_phoenix.ext.router_node import RouterKind, decision_record

    roster: Any = credentials.roster
    if args.authority_key is not None:
        try:
            raw = bytes.fromhex(args.authority_key)
            key = VerifyKey.from_bytes(raw)
        except ValueError:
            raise UsageError("--authority-key: 64 hex digits, the authority's public key "
                             "(`vsm-phoenix keys show`)") from None
        roster = RosterBook(credentials.roster, pinned=[key])  # AuthenticationError
    grants = []
    for path in args.grants or ():
        data = _read_small(path, MAX_GRANT_BYTES, "a grant")
        try:
            grants.append(CapabilityGrant.from_bytes(data, roster))
        except Exception as exc:
            raise UsageError(f"{path}: {type(exc).__name__}: {exc}") from None
        if not grants[-1].by_authority:
            raise UsageError(f"{path}: signed by {grants[-1].signer!r}, not the cluster "
                             "authority: a router honours only authority grants")
    mine = max((g for g in grants if g.agent == credentials.principal),
               key=lambda g: g.serial, default=None)
    advertised = sorted(mine.capabilities if mine is not None else ()) + [
        advertisement(g) for g in grants]
    routes = _routes(args.routes) if args.routes is not None else None
    options: dict[str, Any] = {}
    for name in ("max_age_ms", "max_skew_ms"):
        if getattr(args, name) is not None:
            options[name] = getattr(args, name)

    def on_decision(d: Any) -> None:
        if log is not None:
            log.info("decision: %s", describe_decision(decision_record(d)))

    return RouterKind(roster, grants=grants, routes=routes,
                      capabilities={credentials.principal: advertised},
                      on_decision=on_decision, **options)


def check_node_options(args: argparse.Namespace) -> None:
    """``UsageError`` when a router option comes with another kind."""
    if args.kind == "router":
        return
    given = [flag for dest, flag in _ROUTER_ONLY.items() if getattr(args, dest) is not None]
    if given:
        raise UsageError(f"{', '.join(given)} only with --kind router")


def describe_decision(record: Any) -> str:
    """One line for a decision record (the node's log and ``ctl decisions``):
    ``accepted kv.set from ops nonce 7`` or ``refused ... -- Error: reason``."""
    if not isinstance(record, dict):
        return str(record)
    head = (f"{'accepted' if record.get('accepted') else 'refused'} "
            f"{record.get('command') or '?'} from {record.get('issuer') or '?'} "
            f"nonce {record.get('nonce')}")
    return f"{head} -- {record['error']}: {record.get('reason')}" if record.get(
        "error") else head


# -- vsm-phoenix ctl NODE command ------------------------------------------------------------
def add_command_arguments(q: argparse.ArgumentParser) -> None:
    """The arguments of ``ctl NODE command``."""
    q.description = ("Sign command NAME with the --as principal's identity (or send the "
                     "bytes of --wire) and hand it to NODE, which runs it or relays it to "
                     "--to. Carrying a command needs only the 'read' role: the signature "
                     "says who asks, and the router checks that issuer's roles and "
                     "capabilities. Prints the decision; exit 1 when it is refused.")
    q.add_argument("name", metavar="NAME", nargs="?", default=None,
                   help="the command (e.g. kv.set); omit it with --wire")
    q.add_argument("args", metavar="KEY=VALUE", nargs="*", default=[],
                   help="an argument: KEY=VALUE for a string, KEY:=JSON for any JSON value")
    q.add_argument("--to", default=None, metavar="NODE",
                   help="the node that runs it (default: NODE itself)")
    q.add_argument("--wire", default=None, metavar="FILE",
                   help="send the signed command in FILE (e.g. from --save) instead of "
                        "signing one")
    q.add_argument("--save", default=None, metavar="FILE",
                   help="also write the signed command's bytes to FILE")
    q.add_argument("--nonce", type=int, default=None,
                   help="the nonce (default: ms since 2024-01-01; one issuer's nonces "
                        "must not repeat)")
    q.add_argument("--session", default=None,
                   help="sign as PRINCIPAL#SESSION: a session has its own nonces")


def _arguments(specs: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for spec in specs:
        key, sep, value = spec.partition("=")
        if not sep or not key.rstrip(":"):
            raise UsageError(f"{spec!r}: an argument is KEY=VALUE or KEY:=JSON")
        if key.endswith(":"):
            key = key[:-1]
            try:
                out[key] = json.loads(value)
            except ValueError as exc:
                raise UsageError(f"{spec!r}: not JSON ({exc})") from None
        else:
            out[key] = value
    return out


def command_request(args: argparse.Namespace, credentials: Any) -> dict[str, Any]:
    """The ``command`` control request ``ctl`` sends: the bytes of ``--wire``, or a
    command signed now by ``credentials``' identity (written to ``--save`` too)."""
    from vsm_phoenix.ext.router import MAX_COMMAND_BYTES, clock_nonce, sign_command

    if args.wire is not None:
        if args.name is not None or args.args or args.nonce is not None or args.session:
            raise UsageError("--wire sends bytes signed before: no NAME, arguments, "
                             "--nonce or --session with it")
        wire = _read_small(args.wire, MAX_COMMAND_BYTES, "a signed command")
    else:
        if args.name is None:
            raise UsageError("command needs NAME (or --wire FILE)")
        now_ms = int(time.time() * 1000)
        issuer = (None if args.session is None
                  else f"{credentials.principal}#{args.session}")
        wire = sign_command(credentials.identity, credentials.cluster, args.name,
                            _arguments(args.args), issued_ms=now_ms,
                            nonce=clock_nonce(now_ms) if args.nonce is None else args.nonce,
                            issuer=issuer)
    if args.save is not None:
        from vsm_phoenix.crypto.credentials import write_atomically

        write_atomically(args.save, wire, 0o600)
    request: dict[str, Any] = {"op": "command", "w": wire}
    if args.to is not None:
        request["to"] = args.to
    return request


# -- vsm-phoenix keys grant --------------------------------------------------------------------
def add_grant_parser(keys: Any, guard: Any) -> None:
    """``keys grant DIR AGENT --cap C ...``."""
    q = keys.add_parser(
        "grant", help="sign a capability grant with the cluster authority",
        description="Sign, with DIR/authority.json, a grant of capabilities to AGENT (a "
                    "principal of DIR/roster.cbor) that router nodes honour: start the "
                    "agent's node with `--grant FILE`. A grant replaces any with a lower "
                    "serial, so a grant without --cap revokes.")
    q.add_argument("dir", metavar="DIR")
    q.add_argument("agent", metavar="AGENT", help="the principal granted the capabilities")
    q.add_argument("--cap", action="append", default=[], metavar="CAPABILITY",
                   help="a capability (repeatable; none: revoke every capability)")
    q.add_argument("--serial", type=int, default=None,
                   help="the grant's serial (default: the time in ms, so a later grant "
                        "replaces an earlier one)")
    q.add_argument("--ttl-s", type=float, default=None,
                   help="the grant expires this many seconds from now (default: never)")
    q.add_argument("--out", default=None, metavar="FILE",
                   help="where to write it (default DIR/AGENT.grant.cbor)")
    q.set_defaults(run=guard(_grant))


def _grant(args: argparse.Namespace) -> int:
    from vsm_phoenix.crypto.credentials import AUTHORITY_FILE, ROSTER_FILE, write_atomically
    from vsm_phoenix.crypto.identity import Authority, Roster
    from vsm_phoenix.ext.agents.grants import CapabilityGrant

    d = Path(args.dir)
    roster = Roster.from_bytes((d / ROSTER_FILE).read_bytes())
    if not (d / AUTHORITY_FILE).exists():
        raise UsageError(f"{d / AUTHORITY_FILE} does not exist: grants are signed by the "
                         "cluster authority")
    authority = Authority.load(d / AUTHORITY_FILE)
    if authority.verify_key not in roster.authorities:
        raise UsageError(f"{AUTHORITY_FILE} is not an authority of {ROSTER_FILE}")
    if args.agent not in roster.members:
        raise UsageError(f"{args.agent!r} is not in the roster")
    if args.ttl_s is not None and not 0 < args.ttl_s < 10 * 365 * 86400:
        raise UsageError("--ttl-s must be positive (and under ten years)")
    now_ms = int(time.time() * 1000)
    serial = now_ms if args.serial is None else args.serial
    expires = None if args.ttl_s is None else now_ms + int(args.ttl_s * 1000)
    grant = CapabilityGrant.issue(authority, roster.cluster, args.agent, args.cap, serial,
                                  expires_ms=expires)
    out = Path(args.out) if args.out else d / f"{args.agent}.grant.cbor"
    write_atomically(out, grant.to_bytes(), 0o644)
    caps = ", ".join(sorted(grant.capabilities)) or "nothing (revokes)"
    until = "never expires" if expires is None else f"expires in {args.ttl_s:g} s"
    print(f"wrote {out}: {args.agent} may use {caps} (serial {serial}, {until}); start "
          f"{args.agent}'s router node with --grant {out}")
    return 0
