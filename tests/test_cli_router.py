"""The broker-free half of the router's command line: ``keys grant`` signs what router
nodes honour; ``node --kind router`` and ``ctl NODE command`` refuse every bad argument
or file in one line with exit status 2, before any file is written or the broker is
contacted; ``--routes`` loads a user's application."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from test_cli_keys import run

from vsm_phoenix import cbor
from vsm_phoenix.cli import main
from vsm_phoenix.cli.base import UsageError
from vsm_phoenix.cli.router import router_kind
from vsm_phoenix.crypto.credentials import ClusterSecrets, Credentials
from vsm_phoenix.crypto.identity import Authority, Roster
from vsm_phoenix.ext.agents.grants import CapabilityGrant, advertisement

DEAD = "amqp://guest:guest@127.0.0.1:1/"  # nothing listens: a contact would fail


def usage(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    code, out, err = run(capsys, *argv)
    assert code == 2, (argv, out, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


@pytest.fixture
def keys(tmp_path: Path) -> Path:
    secrets = ClusterSecrets.create("rt", nodes=["n1", "n2"],
                                    clients={"ops": ["admin"], "viewer": ["read"]})
    return secrets.write(tmp_path / "keys")


def test_keys_grant_signs_with_the_authority(keys: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "keys", "grant", str(keys), "n2", "--cap", "jobs",
                         "--cap", "audit", "--ttl-s", "60", "--serial", "7")
    assert code == 0, err
    assert "n2 may use audit, jobs (serial 7, expires in 60 s)" in out
    roster = Roster.from_bytes((keys / "roster.cbor").read_bytes())
    grant = CapabilityGrant.from_bytes((keys / "n2.grant.cbor").read_bytes(), roster)
    assert grant.by_authority and grant.capabilities == {"jobs", "audit"}
    assert grant.serial == 7 and grant.expires_ms is not None
    out_file = keys.parent / "revoke.cbor"
    code, out, _ = run(capsys, "keys", "grant", str(keys), "n2", "--out", str(out_file))
    assert code == 0 and "nothing (revokes)" in out
    revoke = CapabilityGrant.from_bytes(out_file.read_bytes(), roster)
    assert revoke.capabilities == frozenset() and revoke.serial > 7  # the clock's serial
    code, out, _ = run(capsys, "keys", "show", str(keys))
    assert Authority.load(keys / "authority.json").verify_key.to_bytes().hex() in out


def test_keys_grant_refuses_bad_input_in_one_line(keys: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    assert "not in the roster" in usage(capsys, "keys", "grant", str(keys), "eve", "--cap", "x")
    assert "capability" in usage(capsys, "keys", "grant", str(keys), "n1", "--cap", "a b")
    assert "--ttl-s" in usage(capsys, "keys", "grant", str(keys), "n1", "--ttl-s", "0")
    assert "serial" in usage(capsys, "keys", "grant", str(keys), "n1", "--serial", "-1")
    bare = keys.parent / "public"
    bare.mkdir()
    (bare / "roster.cbor").write_bytes((keys / "roster.cbor").read_bytes())
    assert "authority.json does not exist" in usage(capsys, "keys", "grant", str(bare), "n1")
    other = ClusterSecrets.create("rt", nodes=["n1"]).write(keys.parent / "other")
    (other / "roster.cbor").write_bytes((keys / "roster.cbor").read_bytes())
    assert "not an authority" in usage(capsys, "keys", "grant", str(other), "n1")
    assert not list(keys.parent.glob("**/*.grant.cbor"))


def _node(keys: Path, data: Path, *extra: str) -> list[str]:
    return ["node", "--id", "n1", "--kind", "router", "--keys", str(keys), "--data-dir",
            str(data), "--amqp-url", DEAD, "--broker-wait-s", "0", *extra]


def test_node_router_options_are_checked_before_anything_happens(
        keys: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = tmp_path / "data"
    roster = Roster.from_bytes((keys / "roster.cbor").read_bytes())
    junk = tmp_path / "junk.cbor"
    junk.write_bytes(b"\xff\x00junk")
    huge = tmp_path / "huge.cbor"
    huge.write_bytes(b"\x00" * (70 * 1024))
    forged = tmp_path / "forged.cbor"
    forged.write_bytes(CapabilityGrant.issue(Authority.generate(), "rt", "n1", ["jobs"],
                                             1).to_bytes())
    by_admin = tmp_path / "admin.cbor"
    secrets = ClusterSecrets.read(keys)
    by_admin.write_bytes(CapabilityGrant.issue(secrets.identities["ops"], "rt", "n1",
                                               ["jobs"], 1).to_bytes())
    other_key = Authority.generate().verify_key.to_bytes().hex()
    cases = {
        ("--routes", "nope"): "is not module:attribute",
        ("--routes", "no_such_module_here:ROUTES"): "cannot be loaded: ModuleNotFoundError",
        ("--routes", "vsm_phoenix.ext.router_node:NOPE"): "AttributeError",
        ("--routes", "vsm_phoenix.ext.router_node:K_DATA"): "routes must be a mapping",
        ("--grant", str(tmp_path / "missing")): "No such file",
        ("--grant", str(junk)): "DecodeError",
        ("--grant", str(huge)): "larger than",
        ("--grant", str(forged)): "AuthenticationError",
        ("--grant", str(by_admin)): "not the cluster authority",
        ("--authority-key", "zz"): "64 hex digits",
        ("--authority-key", "ab" * 31): "64 hex digits",
        ("--authority-key", other_key): "not signed by a trusted authority",
        ("--max-age-ms", "-5"): "max_age_ms",
        ("--max-skew-ms", "-1"): "max_skew_ms",
    }
    for extra, expected in cases.items():
        assert expected in usage(capsys, *_node(keys, data, *extra)), extra
    for flag, value in (("--grant", str(junk)), ("--routes", "x:y"), ("--max-age-ms", "5")):
        line = usage(capsys, "node", "--id", "n1", "--kind", "crdt", "--keys", str(keys),
                     "--data-dir", str(data), flag, value)
        assert f"{flag} only with --kind router" in line
    assert "router" in usage(capsys, "node", "--id", "n1", "--kind", "nope", "--keys",
                             str(keys), "--data-dir", str(data))  # the list names it
    assert not data.exists()  # nothing created by any refusal
    # the right key passes the checks (then no broker: exit 1)
    good = Authority.load(keys / "authority.json").verify_key.to_bytes().hex()
    assert roster.signed_by.to_bytes().hex() == good
    code, _, err = run(capsys, *_node(keys, data, "--authority-key", good))
    assert code == 1 and "no AMQP broker" in err


def test_routes_and_grants_make_the_router_kind(keys: Path, tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(Path(__file__).parent / "ext"))
    secrets = ClusterSecrets.read(keys)
    grant = CapabilityGrant.issue(secrets.authority, "rt", "n1", ["jobs"], 1)
    other = CapabilityGrant.issue(secrets.authority, "rt", "n2", ["audit"], 1)
    files = []
    for g in (grant, other):
        path = tmp_path / f"{g.agent}.grant.cbor"
        path.write_bytes(g.to_bytes())
        files.append(str(path))
    args = argparse.Namespace(routes="router_app:ROUTES", grants=files, authority_key=None,
                              max_age_ms=2_000, max_skew_ms=None)
    creds = Credentials.from_dir(keys, "n1")
    kind = router_kind(args, creds)
    assert sorted(kind.routes) == ["job.claim", "note.add", "note.list"]
    assert kind.max_age_ms == 2_000 and kind.max_skew_ms == 5_000
    # n1 advertises its own capabilities and every grant it was given
    assert set(kind.capabilities["n1"]) == {"jobs", advertisement(grant), advertisement(other)}
    args.routes = "router_app:not_routes"  # a callable, returning the wrong thing
    with pytest.raises(TypeError):
        router_kind(args, creds)
    args.routes = "router_app:broken"  # a callable that raises: one line, exit 2
    with pytest.raises(UsageError, match="RuntimeError: no database"):
        router_kind(args, creds)
    if "router_app" in sys.modules:
        del sys.modules["router_app"]


def test_ctl_command_refuses_bad_input_before_sending(
        keys: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    def ctl(*argv: str) -> str:
        return usage(capsys, "ctl", "n1", "command", *argv, "--keys", str(keys),
                     "--amqp-url", DEAD, "--as", "viewer")

    big = tmp_path / "big.cmd"
    big.write_bytes(b"\x00" * (256 * 1024 + 1))
    saved = tmp_path / "saved.cmd"
    assert "command needs NAME" in ctl()
    assert "KEY=VALUE or KEY:=JSON" in ctl("kv.set", "novalue")
    assert "not JSON" in ctl("kv.set", "n:={")
    assert "command name" in ctl("bad name")
    assert "nonce" in ctl("kv.get", "--nonce", "-1")
    assert "would not parse" in ctl("kv.get", "big:=123456789012345678901234567890")
    assert "no NAME" in ctl("kv.get", "--wire", str(big))
    assert "larger than" in ctl("--wire", str(big))
    assert "No such file" in ctl("--wire", str(tmp_path / "missing"))
    assert "issuer" in ctl("kv.get", "k=a", "--session", "has space", "--save", str(saved))
    assert not saved.exists()


def test_ctl_signs_with_the_as_principal_and_saves_what_it_sends(
        keys: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """With no broker the send fails (exit 1), after the signed bytes were saved."""
    saved = tmp_path / "cmd.bin"
    code, _, err = run(capsys, "ctl", "n1", "command", "kv.set", "k=a", "n:=[1, 2]",
                       "--session", "s1", "--save", str(saved), "--keys", str(keys),
                       "--amqp-url", DEAD, "--as", "viewer", "--timeout-s", "1")
    assert code == 1 and "cannot reach the broker" in err
    version, issuer, body, _sig = cbor.loads(saved.read_bytes())
    assert version == 1 and issuer == "viewer#s1"
    _, name, args, issued_ms, nonce = cbor.loads(body)
    assert name == "kv.set" and args == {"k": "a", "n": [1, 2]} and 0 < nonce < issued_ms


def test_ctl_help_lists_the_router_operations(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["ctl", "--help"])
    out = capsys.readouterr().out
    for op in ("command", "data", "decisions"):
        assert op in out
    with pytest.raises(SystemExit):
        main(["ctl", "n1", "command", "--help"])
    out = capsys.readouterr().out
    for flag in ("--to", "--wire", "--save", "--nonce", "--session", "KEY=VALUE"):
        assert flag in out


@pytest.fixture(scope="module")
def shared_keys(tmp_path_factory: pytest.TempPathFactory) -> Path:
    secrets = ClusterSecrets.create("rt", nodes=["n1"], clients={"viewer": ["read"]})
    return secrets.write(tmp_path_factory.mktemp("router-keys") / "keys")


_WORD = st.text(st.characters(blacklist_categories=("Cs",)), max_size=24)


@settings(max_examples=80, deadline=None)
@given(name=st.one_of(st.none(), _WORD), args=st.lists(_WORD, max_size=3),
       extra=st.lists(st.sampled_from(["--nonce", "--session", "--to", "--wire", "--save",
                                       "-1", "99999999999999999999999", "x y", ""]),
                      max_size=4))
def test_hostile_command_lines_exit_2_in_one_line_or_reach_for_the_broker(
        shared_keys: Path, name: str | None, args: list[str], extra: list[str]) -> None:
    """Whatever ``ctl NODE command`` is given: a usage error (one line, exit 2, nothing
    written) or a signed command sent to the (dead) broker (exit 1) -- never a
    traceback. ``--save``/``--wire`` name files inside a scratch directory only."""
    import contextlib
    import io
    import os

    argv = ["ctl", "n1", "command", *([name] if name is not None else []), *args, *extra,
            "--keys", str(shared_keys), "--amqp-url", DEAD, "--as", "viewer",
            "--timeout-s", "1"]
    out, err = io.StringIO(), io.StringIO()
    before = sorted(os.listdir(shared_keys))
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err), \
            contextlib.chdir(shared_keys.parent):
        try:
            code = main(argv)
        except SystemExit as exc:
            code = int(exc.code or 0)
    text = err.getvalue()
    assert "Traceback" not in text
    assert code in (1, 2), (argv, code, text)
    if code == 2:
        assert len(text.strip().splitlines()) == 1, text
        assert sorted(os.listdir(shared_keys)) == before
    else:
        assert "cannot reach the broker" in text
