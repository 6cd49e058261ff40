"""``vsm-phoenix keys new|show|rotate|export|grant``: a cluster's secrets as files.

A keys directory (:class:`~vsm_phoenix.crypto.credentials.ClusterSecrets`) holds::

    keyset.json               the cluster keyset, Tink JSON                (0600)
    authority.json            the roster signing key: keep it offline       (0600)
    roster.cbor               the signed roster: principals, keys, roles    (0644)
    <principal>.identity.json one per node or client                        (0600)

Nothing secret is printed unless asked: ``show`` prints public facts only (ids, roles,
key ids and fingerprints, the authority's public key), and ``export`` writes secrets to
stdout only for ``--out -``. ``grant`` signs a capability grant with the authority for
router nodes (:mod:`vsm_phoenix.cli.router`). Files are replaced atomically with
owner-only modes; ``new`` refuses to overwrite a directory that already holds keys.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import stat
import sys
import uuid
from pathlib import Path
from typing import Any

from vsm_phoenix.cli import router
from vsm_phoenix.cli.base import EXIT_OK, UsageError, usage_exit
from vsm_phoenix.crypto.credentials import (
    AUTHORITY_FILE,
    KEYSET_FILE,
    ROSTER_FILE,
    ClusterSecrets,
    identity_file,
    write_atomically,
)
from vsm_phoenix.crypto.identity import ROLES, Roster
from vsm_phoenix.errors import VsmPhoenixError

__all__ = ["register"]

PROG = "vsm-phoenix keys"
_SECRET_FILES = (KEYSET_FILE, AUTHORITY_FILE)


def _roles(spec: str) -> tuple[str, list[str]]:
    """``NAME=ROLE[,ROLE...]`` -> (name, roles)."""
    name, sep, roles = spec.partition("=")
    if not sep or not name or not roles:
        raise UsageError(f"{spec!r}: expected NAME=ROLE[,ROLE...] "
                         f"(roles: {', '.join(sorted(ROLES))})")
    out = [r for r in roles.split(",") if r]
    bad = [r for r in out if r not in ROLES]
    if bad:
        raise UsageError(f"{spec!r}: unknown role(s) {', '.join(bad)} "
                         f"(roles: {', '.join(sorted(ROLES))})")
    return name, out


def register(sub: Any) -> None:
    p = sub.add_parser("keys", help="make, show, rotate and export a cluster's keys; "
                                    "sign capability grants",
                       description=__doc__.split("\n\n")[1] if __doc__ else None)
    keys = p.add_subparsers(dest="keys_command", required=True, metavar="COMMAND",
                            parser_class=type(p))

    q = keys.add_parser("new", help="make a cluster's keyset, authority, identities and roster",
                        description="Make a new cluster: a keyset, an authority, one identity "
                                    "per node (role peer) and per client, and the signed roster.")
    q.add_argument("dir", metavar="DIR", help="where the files go (must hold no keys yet)")
    q.add_argument("--nodes", required=True, metavar="ID,ID,...",
                   help="the node ids (each gets the peer role)")
    q.add_argument("--client", action="append", default=[], metavar="NAME=ROLE[,ROLE]",
                   help="a client principal and its roles: read, write or admin (repeatable)")
    q.add_argument("--cluster", default=None,
                   help="cluster name (default: a fresh unique name, so that clusters on a "
                        "shared broker never collide)")
    q.set_defaults(run=_new)

    q = keys.add_parser("show", help="print the cluster, roster and keyset (no secrets)",
                        description="Print the public facts of a keys directory: cluster, "
                                    "roster serial, principals with roles and key fingerprints, "
                                    "keyset key ids; and warn about unsafe file modes.")
    q.add_argument("dir", metavar="DIR")
    q.add_argument("--json", action="store_true", help="as JSON")
    q.set_defaults(run=_show)

    q = keys.add_parser(
        "rotate", help="rotate the keyset (stage, promote, retire) or reissue the roster",
        description="Keyset rotation is cluster-wide and takes two restarts: --stage-key "
                    "adds a key every node can open with but none seals with; restart every "
                    "node; --promote-key makes it the primary; restart every node again; "
                    "later --retire-key OLD stops the old key. Roster changes (--rekey, --add, "
                    "--remove, --set-roles) issue the next roster, signed by authority.json; "
                    "install it on running nodes with `vsm-phoenix ctl all roster "
                    "DIR/roster.cbor --as <admin>`.")
    q.add_argument("dir", metavar="DIR")
    g = q.add_argument_group("keyset (one step per call)")
    g.add_argument("--stage-key", action="store_true", help="phase 1: add a non-primary key")
    g.add_argument("--promote-key", nargs="?", const=-1, type=int, default=None,
                   metavar="KEY_ID", help="phase 2: make KEY_ID (default: the newest key) "
                                          "the primary")
    g.add_argument("--retire-key", type=int, default=None, metavar="KEY_ID",
                   help="phase 3: disable an old key (once nothing sealed with it is in flight)")
    g = q.add_argument_group("roster (combinable; issues the next serial)")
    g.add_argument("--rekey", action="append", default=[], metavar="PRINCIPAL",
                   help="give PRINCIPAL a new identity key (repeatable)")
    g.add_argument("--add", action="append", default=[], metavar="NAME=ROLE[,ROLE]",
                   help="add a principal with a new identity (repeatable)")
    g.add_argument("--remove", action="append", default=[], metavar="PRINCIPAL",
                   help="remove a principal (repeatable)")
    g.add_argument("--set-roles", action="append", default=[], metavar="NAME=ROLE[,ROLE]",
                   help="change a principal's roles (repeatable)")
    q.set_defaults(run=_rotate)

    q = keys.add_parser(
        "export", help="copy one principal's files, or write the keyset or roster",
        description="--principal P --out DIR: the three files P needs (keyset, roster, its "
                    "identity; never the authority). --keyset --out FILE: the keyset as Tink "
                    "JSON. --roster --out FILE: the public roster. --out - writes to stdout "
                    "(the only way secrets reach stdout).")
    q.add_argument("dir", metavar="DIR")
    what = q.add_mutually_exclusive_group(required=True)
    what.add_argument("--principal", default=None, metavar="P")
    what.add_argument("--keyset", action="store_true")
    what.add_argument("--roster", action="store_true")
    q.add_argument("--out", required=True, metavar="PATH",
                   help="a directory (--principal) or a file; - for stdout")
    q.set_defaults(run=_export)

    router.add_grant_parser(keys, _guard)


def _guard(fn: Any) -> Any:
    """Bad input -> one line, exit 2."""

    def wrapper(args: argparse.Namespace) -> int:
        try:
            result: int = fn(args)
        except (UsageError, OSError, ValueError, TypeError, VsmPhoenixError) as exc:
            return usage_exit(f"{PROG} {args.keys_command}", exc)
        return result

    return wrapper


def _fingerprint(public: bytes) -> str:
    return hashlib.sha256(public).hexdigest()[:16]


@_guard
def _new(args: argparse.Namespace) -> int:
    d = Path(args.dir)
    nodes = [n for n in args.nodes.split(",") if n]
    if not nodes:
        raise UsageError("--nodes needs at least one node id")
    clients = dict(_roles(spec) for spec in args.client)
    present = [n for n in (KEYSET_FILE, AUTHORITY_FILE, ROSTER_FILE) if (d / n).exists()]
    if present:
        raise UsageError(f"{d} already holds keys ({', '.join(present)}); "
                         "use `keys rotate` to change them")
    if d.exists() and not d.is_dir():
        raise UsageError(f"{d} is not a directory")
    cluster = args.cluster or f"vsm-{uuid.uuid4().hex[:8]}"
    secrets = ClusterSecrets.create(cluster, nodes=nodes, clients=clients)
    secrets.write(d)
    print(f"cluster {cluster}: wrote {d}/ -- {KEYSET_FILE}, {AUTHORITY_FILE} (keep it offline), "
          f"{ROSTER_FILE}, and an identity file for each of {', '.join(secrets.identities)}")
    print(f"give each principal only its own files: vsm-phoenix keys export {d} "
          "--principal NAME --out DIR")
    return EXIT_OK


def _describe(d: Path) -> dict[str, Any]:
    from vsm_phoenix.crypto.keyset import Keyset

    roster = Roster.from_bytes((d / ROSTER_FILE).read_bytes())
    doc: dict[str, Any] = {
        "cluster": roster.cluster,
        "roster": {
            "serial": roster.serial,
            "issued_ms": roster.issued_ms,
            "signed_by": _fingerprint(roster.signed_by.to_bytes()),
            "authorities": [_fingerprint(k.to_bytes()) for k in roster.authorities],
            "authority_keys": [k.to_bytes().hex() for k in roster.authorities],
        },
        "principals": {
            p: {"roles": sorted(m.roles), "key": _fingerprint(m.verify_key.to_bytes()),
                "identity_file": (d / identity_file(p)).exists()}
            for p, m in sorted(roster.members.items())
        },
    }
    if (d / KEYSET_FILE).exists():
        keyset = Keyset.from_tink_json((d / KEYSET_FILE).read_bytes())
        doc["keyset"] = {
            "kind": keyset.kind.value,
            "primary": keyset.primary_id,
            "keys": [{"id": k.key_id, "status": k.status.value} for k in keyset.keys],
        }
    doc["authority_here"] = (d / AUTHORITY_FILE).exists()
    warnings = []
    for path in [d / KEYSET_FILE, d / AUTHORITY_FILE, *d.glob("*.identity.json")]:
        if path.exists() and stat.S_IMODE(path.stat().st_mode) & 0o077:
            warnings.append(f"{path.name} is readable by others "
                            f"(mode {stat.S_IMODE(path.stat().st_mode):o}); chmod 600 it")
    doc["warnings"] = warnings
    return doc


@_guard
def _show(args: argparse.Namespace) -> int:
    doc = _describe(Path(args.dir))
    if args.json:
        print(json.dumps(doc, indent=2, sort_keys=True))
        return EXIT_OK
    r = doc["roster"]
    print(f"cluster   {doc['cluster']}")
    print(f"roster    serial {r['serial']}, signed by {r['signed_by']}"
          f"{'' if doc['authority_here'] else ' (authority.json not here)'}")
    for key in r["authority_keys"]:
        print(f"authority {key}   (public: --authority-key of router nodes)")
    for p, m in doc["principals"].items():
        have = "" if m["identity_file"] else "  (identity file not here)"
        print(f"  {p:<16} {','.join(m['roles']):<18} key {m['key']}{have}")
    if "keyset" in doc:
        ks = doc["keyset"]
        keys = ", ".join(f"{k['id']}{'*' if k['id'] == ks['primary'] else ''} {k['status']}"
                         for k in ks["keys"])
        print(f"keyset    {ks['kind']}: {keys}   (* = primary: seals; enabled keys open)")
    for w in doc["warnings"]:
        print(f"WARNING: {w}")
    return EXIT_OK


@_guard
def _rotate(args: argparse.Namespace) -> int:
    d = Path(args.dir)
    keyset_steps = sum([args.stage_key, args.promote_key is not None, args.retire_key is not None])
    roster_change = bool(args.rekey or args.add or args.remove or args.set_roles)
    if keyset_steps > 1:
        raise UsageError("one keyset step per call: --stage-key, --promote-key or --retire-key")
    if not keyset_steps and not roster_change:
        raise UsageError("nothing to do: give a keyset step or a roster change")
    secrets = ClusterSecrets.read(d)  # every check before anything is written
    added = dict(_roles(spec) for spec in args.add)
    new_roles = dict(_roles(spec) for spec in args.set_roles)
    members = secrets.roster.members
    for name in [*args.rekey, *args.remove, *new_roles]:
        if name not in members:
            raise UsageError(f"{name!r} is not in the roster")
    taken = [n for n in added if n in members]
    if taken:
        raise UsageError(f"already in the roster: {', '.join(taken)}")
    notes: list[str] = []
    if args.stage_key:
        key_id = secrets.stage_key()
        notes.append(f"staged key {key_id} (not primary yet). Next: restart every node with "
                     f"this {KEYSET_FILE}, then `vsm-phoenix keys rotate {d} --promote-key`")
    elif args.promote_key is not None:
        key_id = secrets.promote_key(None if args.promote_key < 0 else args.promote_key)
        notes.append(f"key {key_id} is the primary. Next: restart every node with this "
                     f"{KEYSET_FILE}; once older frames are gone (max age 300 s), retire the "
                     f"old key with --retire-key")
    elif args.retire_key is not None:
        secrets.retire_key(args.retire_key)
        notes.append(f"key {args.retire_key} is disabled. Restart every node with this "
                     f"{KEYSET_FILE}")
    if roster_change:
        secrets.reissue(add=added, remove=args.remove, rekey=args.rekey, roles=new_roles)
        notes.append(f"roster serial {secrets.roster.serial} issued. Install it on running "
                     f"nodes: vsm-phoenix ctl all roster {d / ROSTER_FILE} --as <an admin>")
        if args.rekey or added:
            changed = ", ".join([*args.rekey, *added])
            notes.append(f"new identity files for {changed}: hand them out "
                         f"(keys export {d} --principal NAME --out DIR)")
    secrets.write(d)
    for name in args.remove:
        path = d / identity_file(name)
        if path.exists():
            path.unlink()
    for note in notes:
        print(note)
    return EXIT_OK


@_guard
def _export(args: argparse.Namespace) -> int:
    d = Path(args.dir)
    out = args.out
    if args.keyset:
        text = (d / KEYSET_FILE).read_text(encoding="utf-8")
        return _emit(out, text, secret=True)
    if args.roster:
        data = (d / ROSTER_FILE).read_bytes()
        Roster.from_bytes(data)  # refuse to pass on something that is not a roster
        if out == "-":
            sys.stdout.buffer.write(data)
            sys.stdout.buffer.flush()
            return EXIT_OK
        return _emit(out, data, secret=False)
    principal = args.principal
    source = d / identity_file(principal)
    if not source.exists():
        raise UsageError(f"{source} does not exist")
    from vsm_phoenix.crypto.credentials import Credentials

    Credentials.from_dir(d, principal)  # the three files fit together
    if out == "-":
        bundle = {
            "keyset": json.loads((d / KEYSET_FILE).read_text(encoding="utf-8")),
            "identity": json.loads(source.read_text(encoding="utf-8")),
            "roster": (d / ROSTER_FILE).read_bytes().hex(),
        }
        print(json.dumps(bundle, indent=2))
        return EXIT_OK
    target = Path(out)
    if target.resolve() == d.resolve():
        raise UsageError("--out must be another directory")
    target.mkdir(mode=0o700, parents=True, exist_ok=True)
    _copy(d / KEYSET_FILE, target / KEYSET_FILE, 0o600)
    _copy(d / ROSTER_FILE, target / ROSTER_FILE, 0o644)
    _copy(source, target / identity_file(principal), 0o600)
    print(f"wrote {target}/: {KEYSET_FILE}, {ROSTER_FILE}, {identity_file(principal)}")
    return EXIT_OK


def _emit(out: str, data: str | bytes, *, secret: bool) -> int:
    if out == "-":
        sys.stdout.write(data if isinstance(data, str) else data.decode())
        sys.stdout.flush()
        return EXIT_OK
    raw = data.encode() if isinstance(data, str) else data
    write_atomically(out, raw, 0o600 if secret else 0o644)
    print(f"wrote {out}")
    return EXIT_OK


def _copy(source: Path, target: Path, mode: int) -> None:
    write_atomically(target, source.read_bytes(), mode)
