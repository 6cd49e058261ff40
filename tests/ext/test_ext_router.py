"""The signed command router: accepted commands reach their handler once; forged,
tampered, replayed, expired, unknown-issuer, under-privileged and uncapable commands
are refused with the documented errors, recorded, and change nothing."""

from __future__ import annotations

import asyncio
import base64
import random
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vsm_phoenix import cbor
from vsm_phoenix.crypto.identity import Authority, Identity, Roster, RosterBook
from vsm_phoenix.errors import (
    AuthenticationError,
    DecodeError,
    InvalidArgument,
    PermissionDenied,
    ReplayError,
    TypeMismatch,
)
from vsm_phoenix.ext.agents.grants import CapabilityGrant, GrantBook, advertisement
from vsm_phoenix.ext.router import (
    Command,
    CommandRouter,
    CommandSigner,
    UnknownCommand,
    sign_command,
)
from vsm_phoenix.protocol.sim import Simulator
from vsm_phoenix.protocol.swim import SwimConfig, SwimNode, UpdateMetadata
from vsm_phoenix.storage import MemoryStorage, SQLiteStorage

NOW = 1_700_000_000_000
CLUSTER = "c1"


def _people() -> tuple[Roster, dict[str, Identity], Authority]:
    authority = Authority.generate()
    ids = {p: Identity.generate(p) for p in ("ops", "viewer", "admin", "n1", "n2", "mallory")}
    roles = {"ops": ["write"], "viewer": ["read"], "admin": ["admin"], "n1": ["peer", "write"],
             "n2": ["peer", "write"]}
    roster = authority.issue(CLUSTER, {p: (ids[p].verify_key, roles[p]) for p in roles})
    return roster, ids, authority


ROSTER, IDS, AUTHORITY = _people()


def _router(**kw: Any) -> tuple[CommandRouter, list[Command]]:
    seen: list[Command] = []

    async def record(cmd: Command) -> dict[str, Any]:
        seen.append(cmd)
        return {"ok": cmd.name, "n": len(seen)}

    kw.setdefault("clock_ms", lambda: NOW)
    router = CommandRouter(kw.pop("roster", ROSTER), **kw)
    router.register("orders.cancel", record)  # write
    router.register("orders.list", record, role="read")
    router.register("node.stop", record, role="admin")
    return router, seen


def _sign(who: str, name: str, nonce: int, *, args: dict[str, Any] | None = None,
          at: int = NOW, cluster: str = CLUSTER, issuer: str | None = None) -> bytes:
    return sign_command(IDS[who], cluster, name, args or {"id": 7}, issued_ms=at,
                        nonce=nonce, issuer=issuer)


def _state(router: CommandRouter) -> Any:
    return {s: router.guard.highest(s) for s in router.guard.senders()}


def test_an_authentic_command_is_dispatched_once_and_recorded() -> None:
    router, seen = _router()

    async def main() -> None:
        answer = await router.dispatch(_sign("ops", "orders.cancel", 1, args={"id": 9}))
        assert answer == {"ok": "orders.cancel", "n": 1}
        assert seen[0].args == {"id": 9} and seen[0].issuer == "ops" and seen[0].nonce == 1
        with pytest.raises(ReplayError) as replayed:
            await router.dispatch(_sign("ops", "orders.cancel", 1, args={"id": 9}))
        assert replayed.value.reason == "duplicate"
        assert len(seen) == 1
        # nonces may arrive out of order within the window
        await router.dispatch(_sign("ops", "orders.cancel", 3))
        await router.dispatch(_sign("ops", "orders.cancel", 2))
        assert [c.nonce for c in seen] == [1, 3, 2]

    asyncio.run(main())
    d = list(router.decisions)
    assert [x.accepted for x in d] == [True, False, True, True]
    assert d[1].error == "ReplayError" and d[1].issuer == "ops" and d[1].nonce == 1
    assert router.counts == {"accepted": 3, "ReplayError": 1}


@pytest.mark.parametrize(("make", "error", "why"), [
    (lambda: _sign("mallory", "orders.cancel", 1), AuthenticationError, "not in the roster"),
    (lambda: _sign("ops", "orders.cancel", 1, cluster="other"), AuthenticationError,
     "signature"),
    (lambda: _sign("ops", "orders.cancel", 1, at=NOW - 31_000), ReplayError, "ago"),
    (lambda: _sign("ops", "orders.cancel", 1, at=NOW + 6_000), ReplayError, "future"),
    (lambda: _sign("viewer", "orders.cancel", 1), PermissionDenied, "write"),
    (lambda: _sign("ops", "node.stop", 1), PermissionDenied, "admin"),
    (lambda: _sign("ops", "orders.refund", 1), UnknownCommand, "no handler"),
    (lambda: b"\x84\x01", DecodeError, "truncated|premature|decode|CBOR|end"),
])
def test_bad_commands_are_refused_with_the_documented_error(make: Any, error: type,
                                                            why: str) -> None:
    router, seen = _router()
    before = _state(router)
    with pytest.raises(error, match=why):
        asyncio.run(router.dispatch(make()))
    assert seen == [] and _state(router) == before
    (d,) = router.decisions
    assert not d.accepted and d.error == error.__name__


def test_forged_and_tampered_commands_are_refused() -> None:
    router, seen = _router()
    good = _sign("ops", "orders.cancel", 1)
    version, issuer, body, sig = cbor.loads(good)
    # mallory signs with her own key but claims to be ops
    forged = sign_command(IDS["mallory"], CLUSTER, "orders.cancel", {"id": 7},
                          issued_ms=NOW, nonce=1)
    _, _, fbody, fsig = cbor.loads(forged)
    tampered_body = body.replace(b"\x07", b"\x08")
    for wire in (cbor.dumps([version, "ops", fbody, fsig]),
                 cbor.dumps([version, issuer, tampered_body, sig]),
                 cbor.dumps([version, "admin", body, sig]),  # someone else's name
                 cbor.dumps([version, issuer, body, bytes(64)])):
        with pytest.raises(AuthenticationError):
            router.open(wire)
    assert seen == [] and _state(router) == {}
    # the genuine command still goes through: the forgeries burnt nothing
    assert router.open(good).nonce == 1


def test_a_refused_command_does_not_burn_its_nonce() -> None:
    router, _ = _router()
    with pytest.raises(PermissionDenied):
        router.open(_sign("viewer", "orders.cancel", 1))
    assert router.open(_sign("viewer", "orders.list", 1)).nonce == 1


def test_sessions_have_their_own_nonces_and_the_principals_roles() -> None:
    router, _ = _router()
    a = CommandSigner(IDS["ops"], CLUSTER, session="run1", clock_ms=lambda: NOW)
    b = CommandSigner(IDS["ops"], CLUSTER, session="run2", clock_ms=lambda: NOW)
    assert router.open(a.sign("orders.cancel")).issuer == "ops#run1"
    assert router.open(b.sign("orders.cancel")).nonce == 1
    with pytest.raises(PermissionDenied):
        router.open(b.sign("node.stop"))
    with pytest.raises(InvalidArgument):
        sign_command(IDS["ops"], CLUSTER, "x", {}, issued_ms=NOW, nonce=1, issuer="admin#s")


def test_replay_protection_survives_a_restart_on_sqlite(tmp_path: Path) -> None:
    wire = _sign("ops", "orders.cancel", 5)
    store = SQLiteStorage(tmp_path / "router.db")
    router, _ = _router(storage=store)
    router.open(wire)
    store.close()
    again, _ = _router(storage=SQLiteStorage(tmp_path / "router.db"))
    with pytest.raises(ReplayError):
        again.open(wire)


def _swim(advertised: dict[str, tuple[str, ...]], until_ms: int = 3_000) -> Simulator:
    def factory(nid: str, rng: random.Random) -> SwimNode:
        return SwimNode(nid, rng, SwimConfig(seeds=("n1",), period_ms=200,
                                             ping_timeout_ms=50),
                        capabilities=advertised.get(nid, ()))

    sim = Simulator(factory, sorted(advertised), seed=1)
    sim.run_until(until_ms)
    return sim


def _view(sim: Simulator, nid: str = "n1") -> SwimNode:
    view = sim.node(nid)
    assert isinstance(view, SwimNode)
    return view


async def _drive(cmd: Command) -> str:
    return cmd.principal


def _grant(agent: str, caps: list[str], serial: int, **kw: Any) -> CapabilityGrant:
    return CapabilityGrant.issue(AUTHORITY, CLUSTER, agent, caps, serial=serial, **kw)


def test_capabilities_must_be_granted_and_advertised() -> None:
    grants = GrantBook(ROSTER, authority_only=True)
    grants.add(_grant("n1", ["saga.drive"], 1))
    sim = _swim({"n1": ("saga.drive",), "n2": ("saga.drive",)})  # n2 claims, ungranted
    router = CommandRouter(ROSTER, grants=grants, membership=_view(sim),
                           clock_ms=lambda: NOW)
    router.register("saga.resume", _drive, capability="saga.drive")
    assert asyncio.run(router.dispatch(_sign("n1", "saga.resume", 1))) == "n1"
    with pytest.raises(PermissionDenied, match="not granted"):
        router.open(_sign("n2", "saga.resume", 1))
    # revoking is a newer grant with fewer capabilities
    grants.add(_grant("n1", [], 2))
    with pytest.raises(PermissionDenied, match="not granted"):
        router.open(_sign("n1", "saga.resume", 2))
    # granted but not advertised
    grants.add(_grant("n2", ["saga.drive", "orders.audit"], 1))
    router.register("orders.audit", _drive, capability="orders.audit")
    with pytest.raises(PermissionDenied, match="not advertise"):
        router.open(_sign("n2", "orders.audit", 2))
    # grants alone, without a membership view
    plain = CommandRouter(ROSTER, grants=grants, clock_ms=lambda: NOW)
    plain.register("orders.audit", _drive, capability="orders.audit")
    assert plain.open(_sign("n2", "orders.audit", 1)).principal == "n2"


def test_only_the_cluster_authority_grants_capabilities() -> None:
    """An admin principal's key lives online: its grants do not reach the router."""
    with pytest.raises(InvalidArgument, match="authority"):
        CommandRouter(ROSTER, grants=GrantBook(ROSTER))
    book = GrantBook(ROSTER, authority_only=True)
    by_admin = CapabilityGrant.issue(IDS["admin"], CLUSTER, "n1", ["saga.drive"], serial=5)
    with pytest.raises(PermissionDenied, match="authority"):
        book.add(by_admin)
    other = Authority.generate()  # a key that is not the roster's authority
    with pytest.raises(AuthenticationError, match="not a cluster authority"):
        book.add(CapabilityGrant.issue(other, CLUSTER, "n1", ["saga.drive"], serial=6))
    with pytest.raises(AuthenticationError, match="another cluster"):
        book.add(CapabilityGrant.issue(AUTHORITY, "c2", "n1", ["saga.drive"], serial=6))
    # a grant's signature is valid as nothing else: an authority-signed body swapped
    # under an admin's name, or the roster's signature reused, does not verify
    good = _grant("n1", ["saga.drive"], 7)
    body, key, sig = cbor.loads(good.to_bytes())
    for forged in (cbor.dumps([body, "admin", sig]),
                   cbor.dumps([ROSTER.body, key, ROSTER.signature]),
                   cbor.dumps([body.replace(b"saga", b"sagb"), key, sig])):
        with pytest.raises((AuthenticationError, PermissionDenied, DecodeError)):
            book.add(forged)
    assert book.grant("n1") is None and book.add(good)
    assert CapabilityGrant.from_bytes(good.to_bytes(), ROSTER) == good
    assert good.by_authority and good.version == 2


def test_an_expired_grant_grants_nothing() -> None:
    grants = GrantBook(ROSTER, authority_only=True)
    grants.add(_grant("n1", ["saga.drive"], 1, expires_ms=NOW + 1_000))
    now = [NOW]
    router = CommandRouter(ROSTER, grants=grants, clock_ms=lambda: now[0])
    router.register("saga.resume", _drive, capability="saga.drive")
    assert router.open(_sign("n1", "saga.resume", 1)).nonce == 1
    now[0] = NOW + 1_000
    with pytest.raises(PermissionDenied, match="expired"):
        router.open(_sign("n1", "saga.resume", 2, at=now[0]))
    assert grants.granted("n1", now_ms=now[0]) == frozenset()
    assert router.decisions[-1].error == "PermissionDenied"
    # a renewal (newer serial, later expiry) restores it; the refused nonce is unburnt
    grants.add(_grant("n1", ["saga.drive"], 2, expires_ms=NOW + 60_000))
    assert router.open(_sign("n1", "saga.resume", 2, at=now[0])).nonce == 2


def test_grants_travel_through_membership_and_so_do_revocations() -> None:
    g1 = _grant("n2", ["saga.drive"], 1)
    sim = _swim({"n1": (), "n2": ("saga.drive", advertisement(g1)), "n3": ()})
    grants = GrantBook(ROSTER, authority_only=True)  # n1 was never handed the grant
    router = CommandRouter(ROSTER, grants=grants, membership=_view(sim),
                           clock_ms=lambda: NOW)
    router.register("saga.resume", _drive, capability="saga.drive")
    assert router.open(_sign("n2", "saga.resume", 1)).principal == "n2"
    assert grants.grant("n2") == g1
    # the operator's node (n3) spreads the revocation; n2 keeps advertising its old grant
    revoke = _grant("n2", [], 2)
    sim.client_request("n3", UpdateMetadata(add_capabilities=(advertisement(revoke),)))
    sim.run_until(6_000)
    with pytest.raises(PermissionDenied, match="not granted"):
        router.open(_sign("n2", "saga.resume", 2))
    # forged and malformed advertisements are counted and change nothing
    body, key, sig = cbor.loads(g1.to_bytes())
    forged = CapabilityGrant.issue(IDS["admin"], CLUSTER, "n3", ["saga.drive"], serial=9)
    junk = ("grant:!!!", "grant:" + "A" * 10, advertisement(forged),
            "grant:" + base64.urlsafe_b64encode(cbor.dumps([body.replace(b"n2", b"n3"),
                                                            key, sig])).decode())
    sim.client_request("n3", UpdateMetadata(add_capabilities=junk))
    sim.run_until(9_000)
    before = {a: grants.grant(a) for a in ("n1", "n2", "n3")}
    assert grants.learn(_view(sim)) == 0
    assert {a: grants.grant(a) for a in ("n1", "n2", "n3")} == before
    assert sum(grants.refused.values()) >= len(junk)


@given(st.text(max_size=200), st.binary(max_size=300))
def test_hostile_advertisements_and_grant_bytes_change_nothing(text: str,
                                                               data: bytes) -> None:
    grants = GrantBook(ROSTER, authority_only=True)
    grants.add(_grant("n1", ["saga.drive"], 3))
    with pytest.raises((DecodeError, AuthenticationError, PermissionDenied)):
        grants.add(data)
    sim_view = _HostileView({"n2": frozenset({"grant:" + text, text})})
    grants.learn(sim_view)  # type: ignore[arg-type]
    assert grants.granted("n1") == {"saga.drive"} and grants.grant("n2") is None


class _HostileView:
    """A membership view whose member advertises what the test says (duck-typed)."""

    def __init__(self, caps: dict[str, frozenset[str]]) -> None:
        self.caps = caps

    def alive_members(self) -> list[str]:
        return sorted(self.caps)

    def member(self, nid: str) -> Any:
        return _Info(self.caps[nid]) if nid in self.caps else None


class _Info:
    def __init__(self, capabilities: frozenset[str]) -> None:
        self.capabilities = capabilities


def test_a_principal_the_roster_drops_is_refused_whatever_its_grants() -> None:
    book = RosterBook(ROSTER, storage=MemoryStorage())
    grants = GrantBook(book, authority_only=True)
    grants.add(_grant("n1", ["saga.drive"], 1))
    router = CommandRouter(book, grants=grants, clock_ms=lambda: NOW)
    router.register("saga.resume", _drive, capability="saga.drive")
    assert router.open(_sign("n1", "saga.resume", 1)).principal == "n1"
    members = {p: (IDS[p].verify_key, ["write"]) for p in ("ops", "n2")}
    assert book.adopt(AUTHORITY.issue(CLUSTER, members, serial=2))
    with pytest.raises(AuthenticationError, match="roster"):
        router.open(_sign("n1", "saga.resume", 2))


def test_a_roster_book_adopts_a_newer_roster_and_the_router_follows() -> None:
    book = RosterBook(ROSTER, storage=MemoryStorage())
    router, _ = _router(roster=book)
    with pytest.raises(AuthenticationError):
        router.open(_sign("mallory", "orders.cancel", 1))
    members = {p: (IDS[p].verify_key, r) for p, r in
               {"ops": ["write"], "mallory": ["read"]}.items()}
    assert book.adopt(AUTHORITY.issue(CLUSTER, members, serial=2))
    with pytest.raises(PermissionDenied):
        router.open(_sign("mallory", "orders.cancel", 1))
    assert router.open(_sign("mallory", "orders.list", 1)).issuer == "mallory"


def test_a_failing_handler_is_recorded_and_its_error_raised() -> None:
    router = CommandRouter(ROSTER, clock_ms=lambda: NOW)

    async def boom(cmd: Command) -> None:
        raise RuntimeError("disk full")

    router.register("orders.cancel", boom)
    with pytest.raises(RuntimeError):
        asyncio.run(router.dispatch(_sign("ops", "orders.cancel", 1)))
    assert [(d.accepted, d.error) for d in router.decisions] == [
        (True, None), (True, "handler:RuntimeError")]


def test_bad_configuration_is_refused() -> None:
    async def h(cmd: Command) -> None:
        return None

    with pytest.raises(TypeMismatch):
        CommandRouter("roster")  # type: ignore[arg-type]
    router = CommandRouter(ROSTER)
    with pytest.raises(InvalidArgument):
        router.register("x", h, role="root")
    with pytest.raises(InvalidArgument):
        router.register("x", h, capability="c")  # no grants to check against
    with pytest.raises(InvalidArgument):
        router.register("bad name", h)
    with pytest.raises(InvalidArgument):
        CommandRouter(ROSTER, membership=object())  # type: ignore[arg-type]
    with pytest.raises(InvalidArgument):
        sign_command(IDS["ops"], CLUSTER, "x", {"a": object()}, issued_ms=NOW, nonce=1)
    with pytest.raises(InvalidArgument):
        sign_command(IDS["ops"], CLUSTER, "x", {}, issued_ms=NOW, nonce=-1)


@settings(max_examples=150, deadline=None)
@given(st.binary(max_size=300))
def test_random_bytes_are_refused_without_a_trace(data: bytes) -> None:
    router, seen = _router()
    with pytest.raises((DecodeError, AuthenticationError)):
        router.open(data)
    assert seen == [] and _state(router) == {}


# -- signing: what the router would refuse is never signed ---------------------------------
@pytest.mark.parametrize("args", [{"s": {1, 2}}, {"big": 2**70}, {"m": {1: "int key"}},
                                  {"o": object()}])
def test_sign_command_refuses_args_the_router_could_not_parse(args: dict[str, Any]) -> None:
    with pytest.raises(InvalidArgument):
        sign_command(IDS["ops"], CLUSTER, "orders.cancel", args, issued_ms=NOW, nonce=1)


@given(st.one_of(st.none(), st.integers(), st.binary(max_size=8), st.text(max_size=8)),
       st.one_of(st.none(), st.integers(), st.text(max_size=200), st.binary(max_size=8)),
       st.one_of(st.none(), st.integers(), st.text(max_size=8),
                 st.dictionaries(st.one_of(st.text(max_size=4), st.integers()),
                                 st.integers(), max_size=3)),
       st.one_of(st.integers(), st.floats(), st.none()),
       st.one_of(st.integers(), st.floats(), st.none(), st.text(max_size=4)))
def test_sign_command_refuses_hostile_arguments_with_the_documented_errors(
        cluster: Any, name: Any, args: Any, issued: Any, nonce: Any) -> None:
    try:
        wire = sign_command(IDS["ops"], cluster, name, args, issued_ms=issued, nonce=nonce)
    except (TypeMismatch, InvalidArgument):
        return
    # whatever it signs, a router of that cluster parses (and judges on its merits)
    router, _ = _router(roster=_people_of(cluster), clock_ms=lambda: issued)
    try:
        cmd = router.open(wire)
    except (UnknownCommand, PermissionDenied):  # judged: the name routes nowhere, or
        return  # the route needs more than ops has
    assert (cmd.name, cmd.args, cmd.issued_ms, cmd.nonce) == (name, args, issued, nonce)


def _people_of(cluster: str) -> Roster:
    return AUTHORITY.issue(cluster, {p: (m.verify_key, sorted(m.roles))
                                     for p, m in ROSTER.members.items()})


_BODY = st.deferred(lambda: st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-2**64 + 1, max_value=2**64 - 1),
    st.text(max_size=12), st.binary(max_size=12),
    st.lists(_BODY, max_size=6),
    st.dictionaries(st.text(max_size=6), _BODY, max_size=3)))


@settings(max_examples=200, deadline=None)
@given(st.one_of(
    st.lists(_BODY, max_size=7).map(lambda items: ["vsm-phoenix/command", *items[:4]]),
    _BODY))
def test_an_authentic_signer_with_a_hostile_body_changes_nothing(doc: Any) -> None:
    """The signature holds, the body is anything: DecodeError (or a judgement on the
    merits for a well-formed one), and a refusal spends no nonce and runs no handler."""
    from vsm_phoenix.ext.router import _signed_bytes

    router, seen = _router()
    body = cbor.dumps(doc)
    wire = cbor.dumps([1, "ops", body, IDS["ops"].sign(_signed_bytes(CLUSTER, "ops", body))])
    try:
        cmd = router.open(wire)
    except (DecodeError, ReplayError, UnknownCommand, PermissionDenied) as exc:
        assert _state(router) == {} and seen == []
        (d,) = router.decisions
        assert not d.accepted and d.error == type(exc).__name__
        return
    assert isinstance(cmd.name, str) and isinstance(cmd.args, dict)
    assert router.guard.highest("ops") == cmd.nonce


def test_clock_nonces_fit_the_replay_window_and_increase() -> None:
    from vsm_phoenix.crypto.replay import MAX_JUMP
    from vsm_phoenix.ext.router import NONCE_EPOCH_MS, clock_nonce

    assert clock_nonce(NONCE_EPOCH_MS) == 0
    now = NONCE_EPOCH_MS + 35 * 365 * 86_400_000  # 2059
    assert clock_nonce(now) > MAX_JUMP > clock_nonce(now - 2 * 365 * 86_400_000)
    router, _ = _router()
    start = NONCE_EPOCH_MS + 10**11
    for at in (start, start + 1):
        wire = sign_command(IDS["ops"], CLUSTER, "orders.cancel", {}, issued_ms=at,
                            nonce=clock_nonce(at))
        assert router.open(wire, now_ms=at).nonce == clock_nonce(at)
    for bad in (NONCE_EPOCH_MS - 1, "1", 1.5):
        with pytest.raises(InvalidArgument):
            clock_nonce(bad)  # type: ignore[arg-type]


def test_a_handler_failure_is_a_second_decision_and_spends_the_nonce() -> None:
    router, _ = _router()
    cmd = router.open(_sign("ops", "orders.cancel", 4))
    decision = router.handler_failed(cmd, ValueError("out of stock"), now_ms=NOW + 1)
    assert decision.accepted and decision.error == "handler:ValueError"
    assert list(router.decisions)[-1] == decision and router.counts["handler:ValueError"] == 1
    with pytest.raises(ReplayError):
        router.open(_sign("ops", "orders.cancel", 4))


def test_an_audit_hook_that_raises_changes_no_decision() -> None:
    def hook(decision: Any) -> None:
        raise OSError("disk full")

    router, _ = _router(on_decision=hook)
    cmd = router.open(_sign("ops", "orders.cancel", 1))
    assert cmd.nonce == 1 and router.guard.highest("ops") == 1
    with pytest.raises(ReplayError):
        router.open(_sign("ops", "orders.cancel", 1))
    assert router.counts == {"accepted": 1, "ReplayError": 1, "on_decision:OSError": 2}
