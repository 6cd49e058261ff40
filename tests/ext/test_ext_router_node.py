"""Signed commands end to end: a client hands the bytes to one node, which relays them
to the node that runs them; only that node verifies and runs them. On the simulator
(with a relay that tampers, a restart, grants learnt through membership) and over real
RabbitMQ (RouterKind nodes, a read-only client carrying a writer's command)."""

from __future__ import annotations

import asyncio
import contextlib
import random
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from vsm_phoenix.crypto.identity import Authority, Identity
from vsm_phoenix.errors import AuthenticationError as AuthenticationErrorType
from vsm_phoenix.ext.agents.grants import CapabilityGrant, advertisement
from vsm_phoenix.ext.router import sign_command
from vsm_phoenix.ext.router_node import (
    K_ACCEPTED,
    K_REFUSED,
    M_COMMAND,
    M_RESULT,
    ReadData,
    ReadDecisions,
    RouteCommand,
    RouterNode,
)
from vsm_phoenix.protocol.envelope import Envelope, encode_cbor
from vsm_phoenix.protocol.node import (
    ClientRequest,
    Deliver,
    Receive,
    RemoteProtocolError,
    Start,
)
from vsm_phoenix.protocol.sim import Simulator
from vsm_phoenix.protocol.swim import SwimConfig

CLUSTER = "rt"
AUTHORITY = Authority.generate()
IDS = {p: Identity.generate(p) for p in ("n1", "n2", "n3", "ops", "viewer")}
ROSTER = AUTHORITY.issue(CLUSTER, {
    **{n: (IDS[n].verify_key, ["peer"]) for n in ("n1", "n2", "n3")},
    "ops": (IDS["ops"].verify_key, ["write"]), "viewer": (IDS["viewer"].verify_key, ["read"]),
})
JOBS = CapabilityGrant.issue(AUTHORITY, CLUSTER, "n3", ["jobs"], serial=1)


def _sim(seed: int = 1) -> Simulator:
    caps = {"n1": ("jobs",), "n2": (), "n3": ("jobs", advertisement(JOBS))}  # n1: no grant

    def factory(nid: str, rng: random.Random) -> RouterNode:
        return RouterNode(nid, rng, ROSTER, capabilities=caps[nid],
                          swim=SwimConfig(seeds=("n1",), period_ms=200, ping_timeout_ms=50))

    sim = Simulator(factory, ["n1", "n2", "n3"], seed=seed)
    sim.run_until(3_000)
    return sim


def _wire(sim: Simulator, who: str, name: str, nonce: int, **args: Any) -> bytes:
    return sign_command(IDS[who], CLUSTER, name, args, issued_ms=sim.now, nonce=nonce)


def _ask(sim: Simulator, at: str, wire: bytes, to: str | None = None) -> Deliver:
    rid = sim.client_request(at, RouteCommand(wire, to))
    sim.run_for(500)
    (answer,) = [d for d in sim.delivered[at] if d.request_id == rid]
    return answer


def _node(sim: Simulator, nid: str) -> RouterNode:
    node = sim.node(nid)
    assert isinstance(node, RouterNode)
    return node


def test_a_command_relayed_through_another_node_runs_once_where_it_is_sent() -> None:
    sim = _sim()
    wire = _wire(sim, "ops", "kv.set", 1, k="colour", v="blue")
    answer = _ask(sim, "n1", wire, to="n2")
    assert answer.kind == K_ACCEPTED and answer.payload["at"] == "n2"
    assert answer.payload["issuer"] == "ops" and answer.payload["nonce"] == 1
    assert _node(sim, "n2").data == {"colour": "blue"} and _node(sim, "n1").data == {}
    # the same bytes again, through another relay: a replay, refused where it would run
    again = _ask(sim, "n3", wire, to="n2")
    assert again.kind == K_REFUSED and again.payload["error"] == "ReplayError"
    # read through the router, and the roster role checked at the target
    got = _ask(sim, "n3", _wire(sim, "viewer", "kv.get", 1, k="colour"), to="n2")
    assert got.kind == K_ACCEPTED and got.payload["result"] == "blue"
    denied = _ask(sim, "n1", _wire(sim, "viewer", "kv.set", 2, k="colour", v="red"), to="n2")
    assert denied.payload["error"] == "PermissionDenied"
    assert _node(sim, "n2").data == {"colour": "blue"}
    counts = _node(sim, "n2").router.counts
    assert counts["accepted"] == 2 and counts["ReplayError"] == 1


def test_a_relay_cannot_alter_a_command() -> None:
    sim = _sim()
    wire = _wire(sim, "ops", "kv.set", 1, k="colour", v="blue")
    tampered = wire.replace(b"blue", b"blux")
    answer = _ask(sim, "n1", tampered, to="n2")
    assert answer.kind == K_REFUSED and answer.payload["error"] == "AuthenticationError"
    assert _node(sim, "n2").data == {}
    # the forgery burnt nothing: the genuine command still runs
    assert _ask(sim, "n1", wire, to="n2").kind == K_ACCEPTED


def test_capabilities_are_learnt_through_membership() -> None:
    """n3 advertises its authority-signed grant; n1 advertises 'jobs' with none."""
    sim = _sim()
    ok = _ask(sim, "n1", _wire(sim, "n3", "job.claim", 1, job="j1"), to="n2")
    assert ok.kind == K_ACCEPTED and ok.payload["result"] == "n3"
    no = _ask(sim, "n3", _wire(sim, "n1", "job.claim", 1, job="j2"), to="n2")
    assert no.payload["error"] == "PermissionDenied" and "not granted" in no.payload["reason"]
    # the operator's revocation, advertised by n1, reaches n2 through membership
    from vsm_phoenix.protocol.swim import UpdateMetadata

    revoke = CapabilityGrant.issue(AUTHORITY, CLUSTER, "n3", [], serial=2)
    sim.client_request("n1", UpdateMetadata(add_capabilities=(advertisement(revoke),)))
    sim.run_for(3_000)
    late = _ask(sim, "n1", _wire(sim, "n3", "job.claim", 2, job="j3"), to="n2")
    assert late.payload["error"] == "PermissionDenied"
    assert _node(sim, "n2").data == {"job/j1": "n3"}


def test_a_restarted_node_keeps_its_data_and_refuses_old_nonces() -> None:
    sim = _sim()
    wire = _wire(sim, "ops", "kv.set", 1, k="a", v="1")
    assert _ask(sim, "n2", wire).kind == K_ACCEPTED
    sim.crash("n2")
    sim.restart("n2")
    sim.run_for(1_000)
    assert _node(sim, "n2").data == {"a": "1"}
    assert _ask(sim, "n2", wire).payload["error"] == "ReplayError"
    assert _ask(sim, "n2", _wire(sim, "ops", "kv.set", 2, k="a", v="2")).kind == K_ACCEPTED
    rid = sim.client_request("n2", ReadData())
    sim.run_for(10)
    assert [d.payload for d in sim.delivered["n2"] if d.request_id == rid] == [{"a": "2"}]


def test_an_unknown_target_and_a_stale_command_are_refused() -> None:
    sim = _sim()
    wire = _wire(sim, "ops", "kv.set", 1, k="a", v="1")
    assert _ask(sim, "n1", wire, to="n9").payload["error"] == "Unreachable"
    sim.run_for(40_000)
    assert _ask(sim, "n1", wire, to="n2").payload["error"] == "ReplayError"  # stale


def _lone() -> RouterNode:
    node = RouterNode("n2", random.Random(1), ROSTER)
    node.step(Start(0))
    return node


@given(st.sampled_from([M_COMMAND, M_RESULT]),
       st.one_of(st.binary(max_size=200),
                 st.dictionaries(st.sampled_from(["t", "w", "k", "a", "x"]),
                                 st.one_of(st.integers(), st.binary(max_size=40),
                                           st.text(max_size=20), st.none()),
                                 max_size=4).map(encode_cbor)))
def test_hostile_router_messages_change_nothing(kind: str, payload: bytes) -> None:
    node = _lone()
    before = node.state_key()
    env = Envelope(message_id=b"\x01" * 16, sender="n1", recipient="n2", type=kind,
                   timestamp=(1, 0, "n1"), payload=payload)
    try:
        out = node.step(Receive(10, env))
    except RemoteProtocolError:
        out = []
    assert node.state_key() == before
    # a command that arrives malformed or unsigned is answered refused, never run
    for effect in out:
        assert not isinstance(effect, Deliver)


# -- over RabbitMQ -------------------------------------------------------------------------
@pytest.mark.amqp
def test_signed_commands_over_rabbitmq(clusters: Any, broker_url: str) -> None:
    pytest.importorskip("aio_pika")
    from vsm_phoenix.ext.amqp import Cluster
    from vsm_phoenix.ext.amqp.client import AmqpClient
    from vsm_phoenix.ext.router_node import RouterKind

    ids = ("n1", "n2", "n3")
    secrets = clusters.secrets(*ids)
    roster, authority = secrets.roster, secrets.authority
    name = roster.cluster
    jobs = CapabilityGrant.issue(authority, name, "n3", ["jobs"], serial=1)
    kind = RouterKind(roster, capabilities={"n1": ("jobs",), "n3": ("jobs", advertisement(jobs))},
                      period_ms=200)

    def wire(who: str, cmd: str, nonce: int, **args: Any) -> bytes:
        import time

        return sign_command(secrets.identities[who], name, cmd, args,
                            issued_ms=int(time.time() * 1000), nonce=nonce)

    async def main() -> None:
        async with contextlib.AsyncExitStack() as stack:
            for n in ids:
                await stack.enter_async_context(
                    Cluster.connect(broker_url, secrets.credentials(n), kind=kind))
            # a read-only client carries the commands: the signatures say who asks
            client = AmqpClient(credentials=secrets.credentials("reader"))
            await client.start(ids)
            stack.push_async_callback(client.close)

            async def ask(at: str, w: bytes, to: str) -> tuple[str, Any]:
                return await client.request(at, {"op": "command", "w": w, "to": to}, 10.0)

            set_wire = wire("writer", "kv.set", 1, k="colour", v="blue")
            kind1, ok = await ask("n1", set_wire, "n2")
            assert kind1 == K_ACCEPTED and ok["at"] == "n2" and ok["issuer"] == "writer"
            kind2, again = await ask("n3", set_wire, "n2")
            assert kind2 == K_REFUSED and again["error"] == "ReplayError"
            _, forged = await ask("n1", set_wire.replace(b"blue", b"bluf"), "n2")
            assert forged["error"] == "AuthenticationError"
            _, denied = await ask("n1", wire("reader", "kv.set", 1, k="c", v="x"), "n2")
            assert denied["error"] == "PermissionDenied"
            # capabilities: n3's grant is learnt from its SWIM advertisement
            for _ in range(100):
                _, claim = await ask("n1", wire("n3", "job.claim", 1, job="j1"), "n2")
                if claim.get("result") == "n3":
                    break
                assert claim["error"] == "PermissionDenied"  # n3 not yet seen by n2
                await asyncio.sleep(0.2)
            assert claim.get("result") == "n3", claim
            _, ungranted = await ask("n3", wire("n1", "job.claim", 1, job="j2"), "n2")
            assert ungranted["error"] == "PermissionDenied"
            _, data = await client.request("n2", {"op": "data"}, 10.0)
            assert data == {"colour": "blue", "job/j1": "n3"}
            status = await client.status("n2", timeout=10.0)
            assert status["decisions"]["accepted"] >= 2

    asyncio.run(main())


@pytest.mark.amqp
def test_a_roster_installed_live_reaches_the_routers(clusters: Any, broker_url: str) -> None:
    """`ctl roster` (the runner's roster book) is what the router checks: a writer the
    new roster removes is refused at once, on every node, without a restart."""
    pytest.importorskip("aio_pika")
    import time

    from vsm_phoenix.ext.amqp import AmqpConfig, Cluster
    from vsm_phoenix.ext.amqp.client import AmqpClient
    from vsm_phoenix.ext.router_node import RouterKind

    ids = ("n1", "n2")
    secrets = clusters.secrets(*ids)
    name = secrets.roster.cluster
    writer = secrets.identities["writer"]
    kind = RouterKind(secrets.roster, period_ms=200)

    def wire(nonce: int) -> bytes:
        return sign_command(writer, name, "kv.set", {"k": "a", "v": str(nonce)},
                            issued_ms=int(time.time() * 1000), nonce=nonce)

    async def main() -> None:
        async with contextlib.AsyncExitStack() as stack:
            for n in ids:
                await stack.enter_async_context(
                    Cluster.connect(broker_url, secrets.credentials(n), kind=kind))
            client = AmqpClient(credentials=secrets.credentials("ops"),
                                config=AmqpConfig(url=broker_url))
            await client.start(ids)
            stack.push_async_callback(client.close)
            kind1, ok = await client.request("n1", {"op": "command", "w": wire(1)}, 10.0)
            assert kind1 == K_ACCEPTED, ok
            secrets.reissue(remove=["writer"])
            for n in ids:
                _, adopted = await client.request(
                    n, {"op": "roster", "roster": secrets.roster.to_bytes()}, 10.0)
                assert adopted == {"serial": 2, "adopted": True}
            for n in ids:
                kind2, refused = await client.request(n, {"op": "command", "w": wire(2)}, 10.0)
                assert kind2 == K_REFUSED and refused["error"] == "AuthenticationError"
                assert "'writer' is not in the roster" in refused["reason"]
            _, data = await client.request("n1", {"op": "data"}, 10.0)
            assert data == {"a": "1"}

    asyncio.run(main())


@given(st.dictionaries(st.sampled_from(["op", "w", "to", "limit", "x"]),
                       st.one_of(st.sampled_from(["command", "data", "decisions", "stop"]),
                                 st.integers(),
                                 st.binary(max_size=40), st.text(max_size=10), st.none()),
                       max_size=4))
def test_hostile_control_requests_are_refused_or_routed(raw: dict[str, Any]) -> None:
    from vsm_phoenix.errors import InvalidArgument
    from vsm_phoenix.ext.router_node import RouterKind

    kind = RouterKind(ROSTER)
    node = _lone()
    before = node.state_key()
    try:
        request = kind.decode_request(node, raw)
    except InvalidArgument:
        return
    assert isinstance(request, RouteCommand | ReadData | ReadDecisions)
    out = node.step(ClientRequest(10, "r1", request))
    assert node.state_key() == before  # nothing here is signed: refused, nothing changed
    assert all(d.kind in ("router.refused", "router.data", "router.decisions") for d in out
               if isinstance(d, Deliver))


# -- applications: routes, failing handlers, the decision log -------------------------------
def _failing(data: dict[str, str], cmd: Any) -> None:
    data["half"] = "written"
    raise ValueError("out of stock")


def _leaves_bytes(data: dict[str, Any], cmd: Any) -> None:
    data["k"] = b"not a str"


def _answers_object(data: dict[str, str], cmd: Any) -> object:
    return object()


def _app_node() -> RouterNode:
    from vsm_phoenix.ext.router_node import DEFAULT_ROUTES, RouteSpec

    routes = {**DEFAULT_ROUTES, "fail": RouteSpec(_failing), "bytes": RouteSpec(_leaves_bytes),
              "object": RouteSpec(_answers_object)}
    node = RouterNode("n2", random.Random(1), ROSTER, routes=routes)
    node.step(Start(0))
    return node


def _run(node: RouterNode, name: str, nonce: int, **args: Any) -> Deliver:
    wire = sign_command(IDS["ops"], CLUSTER, name, args, issued_ms=100, nonce=nonce)
    out = node.step(ClientRequest(100, f"r{nonce}", RouteCommand(wire)))
    (answer,) = [e for e in out if isinstance(e, Deliver)]
    return answer


@pytest.mark.parametrize("name", ["fail", "bytes", "object"])
def test_a_failing_handler_changes_no_data_spends_its_nonce_and_is_recorded(name: str) -> None:
    from vsm_phoenix.protocol.node import Persist

    node = _app_node()
    assert _run(node, "kv.set", 1, k="a", v="1").kind == K_ACCEPTED
    wire = sign_command(IDS["ops"], CLUSTER, name, {}, issued_ms=100, nonce=2)
    out = node.step(ClientRequest(100, "r2", RouteCommand(wire)))
    (answer,) = [e for e in out if isinstance(e, Deliver)]
    assert answer.kind == K_REFUSED and answer.payload["error"].startswith("handler:")
    assert node.data == {"a": "1"}
    # the nonce is spent, durably: only the replay window is persisted
    assert [e.key for e in out if isinstance(e, Persist)] == ["router/replay/ops"]
    assert _run(node, name, 2).payload["error"] == "ReplayError"
    decisions = [(d.command, d.accepted, d.error) for d in node.router.decisions]
    assert decisions[1:3] == [(name, True, None), (name, True, answer.payload["error"])]
    assert node.router.counts[answer.payload["error"]] == 1


def test_the_decision_log_is_read_newest_last_and_bounded() -> None:
    from vsm_phoenix.ext.router_node import K_DECISIONS, ReadDecisions
    from vsm_phoenix.protocol.node import LocalProtocolError

    node = _app_node()
    _run(node, "kv.set", 1, k="a", v="1")
    _run(node, "kv.set", 1, k="a", v="2")  # replayed
    node.step(ClientRequest(100, "x", RouteCommand(b"\x00junk")))
    (d,) = node.step(ClientRequest(100, "d", ReadDecisions(2)))
    assert isinstance(d, Deliver) and d.kind == K_DECISIONS
    assert [(r["accepted"], r["error"]) for r in d.payload] == [
        (False, "ReplayError"), (False, "DecodeError")]
    assert d.payload[0]["issuer"] == "ops" and d.payload[1]["issuer"] is None
    encode_cbor(d.payload)  # travels as it is
    for bad in (0, 10_000, "5", True):
        with pytest.raises(LocalProtocolError):
            node.step(ClientRequest(100, "d", ReadDecisions(bad)))  # type: ignore[arg-type]


def test_routes_are_checked_before_a_node_is_built() -> None:
    from vsm_phoenix.errors import InvalidArgument, TypeMismatch
    from vsm_phoenix.ext.router_node import DEFAULT_ROUTES, RouterKind, RouteSpec

    async def coroutine(data: dict[str, str], cmd: Any) -> None:
        return None

    class AsyncCallable:
        async def __call__(self, data: dict[str, str], cmd: Any) -> None:
            return None

    with pytest.raises(InvalidArgument):
        RouteSpec(coroutine)
    with pytest.raises(InvalidArgument):
        RouteSpec(AsyncCallable())
    with pytest.raises(TypeMismatch):
        RouteSpec("not callable")  # type: ignore[arg-type]
    with pytest.raises(InvalidArgument):
        RouteSpec(_failing, role="root")
    with pytest.raises(InvalidArgument):
        RouteSpec(_failing, capability="has space")
    for routes, error in (({}, InvalidArgument), ({"bad name": RouteSpec(_failing)},
                                                  InvalidArgument),
                          ({"x": _failing}, TypeMismatch), (["x"], TypeMismatch)):
        with pytest.raises(error):
            RouterKind(ROSTER, routes=routes)  # type: ignore[arg-type]
        with pytest.raises(error):
            RouterNode("n2", random.Random(1), ROSTER, routes=routes)  # type: ignore[arg-type]
    with pytest.raises(InvalidArgument):
        RouterKind(ROSTER, max_age_ms=-1)
    other = Authority.generate()
    with pytest.raises(AuthenticationErrorType):
        RouterKind(ROSTER, grants=[CapabilityGrant.issue(other, CLUSTER, "n3", ["jobs"], 1)])
    assert RouterKind(ROSTER, routes=DEFAULT_ROUTES, grants=[JOBS.to_bytes()]).grants


def test_router_replies_say_accepted_or_refused() -> None:
    from vsm_phoenix.ext.router_node import RouterKind

    kind = RouterKind(ROSTER)
    assert kind.encode_reply(Deliver(K_ACCEPTED, {"result": None}))["decision"] == "accepted"
    assert kind.encode_reply(Deliver(K_REFUSED, {"error": "X"}))["decision"] == "refused"
    assert kind.encode_reply(Deliver("router.data", {"a": "b"})) == {"a": "b"}
    node = _lone()
    assert kind.decode_request(node, {"op": "decisions", "limit": "7"}).limit == 7
    assert kind.decode_request(node, {"op": "decisions"}).limit == 20


def test_bind_roster_takes_only_a_book_of_the_same_cluster() -> None:
    from vsm_phoenix.crypto.identity import RosterBook
    from vsm_phoenix.errors import InvalidArgument, TypeMismatch

    node = _lone()
    with pytest.raises(TypeMismatch):
        node.bind_roster(ROSTER)  # type: ignore[arg-type]
    other = AUTHORITY.issue("elsewhere", {"n1": (IDS["n1"].verify_key, ["peer"])})
    with pytest.raises(InvalidArgument):
        node.bind_roster(RosterBook(other))
    assert node.router.roster is ROSTER
    book = RosterBook(ROSTER)
    node.bind_roster(book)
    assert node.router.roster is book and node.grants.roster is book
