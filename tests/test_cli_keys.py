"""``vsm-phoenix keys`` and the broker-free half of ``vsm-phoenix ctl``: safe files, no
secrets on stdout unless asked, two-phase keyset rotation, roster reissue, and every
bad argument refused in one line before anything is written or sent."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest

from vsm_phoenix.cli import main
from vsm_phoenix.crypto.credentials import ClusterSecrets, Credentials
from vsm_phoenix.crypto.identity import Roster
from vsm_phoenix.crypto.keyset import Keyset, KeyStatus


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    try:
        code = main(list(argv))
    except SystemExit as exc:
        code = int(exc.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


def secrets_in(text: str, keys: Path) -> list[str]:
    """Base64 key material of the directory's secret files found in ``text``."""
    found = []
    for path in keys.glob("*.json"):
        doc = json.loads(path.read_text())
        for value in [doc.get("private_key")] + [k.get("keyData", {}).get("value")
                                                 for k in doc.get("key", [])]:
            if value and value in text:
                found.append(path.name)
    return found


@pytest.fixture
def keys(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Path:
    d = tmp_path / "keys"
    code, out, err = run(capsys, "keys", "new", str(d), "--nodes", "n1,n2,n3",
                         "--client", "ops=admin", "--client", "app=write,read")
    assert code == 0, err
    assert "cluster vsm-" in out and not secrets_in(out + err, d)
    return d


def test_new_writes_safe_files_that_fit_together(keys: Path) -> None:
    assert stat.S_IMODE(keys.stat().st_mode) == 0o700
    for name in ("keyset.json", "authority.json", "n1.identity.json", "ops.identity.json"):
        assert stat.S_IMODE((keys / name).stat().st_mode) == 0o600, name
    assert stat.S_IMODE((keys / "roster.cbor").stat().st_mode) == 0o644
    creds = Credentials.from_dir(keys, "n2")
    assert creds.roster.members["n2"].roles == {"peer"}
    assert creds.roster.members["app"].roles == {"write", "read"}
    assert not list(keys.glob(".*.tmp"))  # atomic writes leave nothing behind


def test_new_refuses_existing_keys_and_bad_roles(
    keys: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    before = {p.name: p.read_bytes() for p in keys.iterdir()}
    code, _, err = run(capsys, "keys", "new", str(keys), "--nodes", "n1")
    assert code == 2 and "already holds keys" in err and len(err.splitlines()) == 1
    assert {p.name: p.read_bytes() for p in keys.iterdir()} == before
    for argv in (["--client", "x=boss"], ["--client", "novalue"], ["--nodes", ","]):
        other = tmp_path / "other"
        args = ["keys", "new", str(other), "--nodes", "n1", *argv]
        code, _, err = run(capsys, *args)
        assert code == 2 and len(err.strip().splitlines()) == 1, err
        assert not other.exists()


def test_show_prints_public_facts_only(keys: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "keys", "show", str(keys))
    assert code == 0 and "serial 1" in out and "n3" in out and "admin" in out
    assert not secrets_in(out, keys)
    code, out, _ = run(capsys, "keys", "show", str(keys), "--json")
    doc = json.loads(out)
    assert doc["principals"]["ops"]["roles"] == ["admin"] and doc["warnings"] == []
    (keys / "keyset.json").chmod(0o644)
    code, out, _ = run(capsys, "keys", "show", str(keys))
    assert "WARNING: keyset.json is readable by others" in out


def test_export_secrets_only_when_asked(
    keys: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    target = tmp_path / "n2-keys"
    code, out, _ = run(capsys, "keys", "export", str(keys), "--principal", "n2",
                       "--out", str(target))
    assert code == 0 and not secrets_in(out, keys)
    assert sorted(p.name for p in target.iterdir()) == [
        "keyset.json", "n2.identity.json", "roster.cbor"]  # never the authority
    assert Credentials.from_dir(target, "n2").principal == "n2"
    code, out, _ = run(capsys, "keys", "export", str(keys), "--keyset", "--out", "-")
    assert code == 0 and Keyset.from_tink_json(out).primary_id  # Tink JSON, as asked
    code, _, err = run(capsys, "keys", "export", str(keys), "--keyset")
    assert code == 2 and "--out" in err
    code, _, err = run(capsys, "keys", "export", str(keys), "--principal", "nobody",
                       "--out", str(tmp_path / "x"))
    assert code == 2 and not (tmp_path / "x").exists()


def test_two_phase_keyset_rotation(keys: Path, capsys: pytest.CaptureFixture[str]) -> None:
    old = Keyset.from_tink_json((keys / "keyset.json").read_text()).primary_id
    code, out, _ = run(capsys, "keys", "rotate", str(keys), "--stage-key")
    assert code == 0 and "--promote-key" in out
    staged = Keyset.from_tink_json((keys / "keyset.json").read_text())
    assert staged.primary_id == old and len(staged.keys) == 2  # opens with it, seals with old
    new = next(k.key_id for k in staged.keys if k.key_id != old)
    code, out, _ = run(capsys, "keys", "rotate", str(keys), "--promote-key")
    promoted = Keyset.from_tink_json((keys / "keyset.json").read_text())
    assert code == 0 and promoted.primary_id == new
    assert promoted.key(old).status is KeyStatus.ENABLED  # old frames still open
    code, _, _ = run(capsys, "keys", "rotate", str(keys), "--retire-key", str(old))
    retired = Keyset.from_tink_json((keys / "keyset.json").read_text())
    assert code == 0 and retired.primary_id == new
    assert all(k.status is not KeyStatus.ENABLED for k in retired.keys if k.key_id == old)
    code, _, err = run(capsys, "keys", "rotate", str(keys), "--retire-key", str(new))
    assert code == 2 and "primary" in err  # the primary cannot be retired
    code, _, err = run(capsys, "keys", "rotate", str(keys), "--stage-key", "--promote-key")
    assert code == 2 and "one keyset step" in err


def test_roster_reissue_rekey_add_remove_roles(
    keys: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    before = ClusterSecrets.read(keys)
    code, out, _ = run(capsys, "keys", "rotate", str(keys), "--rekey", "n2", "--add",
                       "auditor=read", "--remove", "app", "--set-roles", "ops=write")
    assert code == 0 and "serial 2" in out and "ctl all roster" in out
    after = ClusterSecrets.read(keys)
    roster = Roster.from_bytes((keys / "roster.cbor").read_bytes())
    assert roster.serial == 2 and roster.signed_by == before.authority.verify_key
    assert roster.members["n2"].verify_key != before.roster.members["n2"].verify_key
    assert roster.members["n1"].verify_key == before.roster.members["n1"].verify_key
    assert "app" not in roster.members and not (keys / "app.identity.json").exists()
    assert roster.members["auditor"].roles == {"read"}
    assert roster.members["ops"].roles == {"write"}
    assert Credentials.from_dir(keys, "n2").identity.verify_key == roster.members[
        "n2"].verify_key
    assert after.identities["auditor"].principal == "auditor"
    snapshot = {p.name: p.read_bytes() for p in keys.iterdir()}
    for argv in (["--rekey", "ghost"], ["--add", "n1=read"], ["--set-roles", "x=read"], []):
        code, _, err = run(capsys, "keys", "rotate", str(keys), *argv)
        assert code == 2 and len(err.strip().splitlines()) == 1, (argv, err)
    assert {p.name: p.read_bytes() for p in keys.iterdir()} == snapshot


def test_ctl_refuses_before_contacting_the_broker(
    keys: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    dead = "amqp://guest:pw5555@127.0.0.1:1/"  # never contacted: every case fails first
    cases = {
        ("n1", "stop", "--as", "app"): "needs the 'admin' role",
        ("n1", "add", "milk"): "say who you are with --as",
        ("n9", "status", "--as", "ops"): "not in the roster: n9",
        ("n1", "status", "--as", "ghost"): "ghost.identity.json",
        ("n1", "status", "--as", "ops", "--timeout-s", "0"): "--timeout-s",
        ("n1", "roster", "/no/such/file", "--as", "ops"): "No such file",
    }
    for argv, expected in cases.items():
        code, _, err = run(capsys, "ctl", *argv, "--keys", str(keys), "--amqp-url", dead)
        assert code == 2 and expected in err, (argv, err)
        assert len(err.strip().splitlines()) == 1 and "pw5555" not in err
    code, _, err = run(capsys, "ctl", "n1", "status", "--as", "ops", "--keys", str(keys),
                       "--amqp-url", dead)
    assert code == 1 and "cannot reach the broker" in err and "pw5555" not in err
    assert len(err.strip().splitlines()) == 1
