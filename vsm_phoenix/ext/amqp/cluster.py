"""Replicated state across processes in a few lines of asyncio: :class:`Cluster`.

::

    async with Cluster.connect(url, Credentials.from_dir("keys", "n1")) as cluster:
        cart = await cluster.replica("cart", ORSet)
        await cart.add("milk")                 # applied here at once, shipped as a delta
        await cart.wait_converged()            # every member now holds the same cart
        print(cart.value)
        kv = cluster.kv()                      # the linearizable KV of `--kind kv` nodes
        await kv.put("owner", "alice")

Theory of operation
-------------------
A :class:`Cluster` is one principal of the cluster's roster on the broker:

* When the principal has the ``peer`` role it is a **member**: the process runs a
  node of its own -- SWIM discovery and delta anti-entropy
  (:class:`~vsm_phoenix.protocol.cluster.ClusterNode`, the ``crdt`` node kind) --
  through an :class:`~vsm_phoenix.ext.amqp.node.AmqpNode`. :meth:`Cluster.replica`
  creates or opens a named replica there; mutations apply locally at once and are
  shipped as deltas to the other members (``vsm-phoenix node --kind crdt`` processes
  or other :class:`Cluster` members), which adopt the replica on first sight.
  Reading is local. :meth:`Replica.wait_converged` asks each member for the digest of
  its copy (a ``status`` query) until all equal this one's.
* Every principal is also a control **client** (a fresh session ``<principal>#<id>``):
  :meth:`Cluster.kv` talks to the KV of ``--kind kv`` nodes (``write`` role for
  changes, ``read`` for gets), :meth:`Cluster.request` asks any node any operation
  the control table allows (:mod:`vsm_phoenix.ext.amqp.control`).

Durability: with ``data_dir`` the member keeps its replicas, sequence numbers and
replay windows in ``<data_dir>/<principal>.sqlite`` (locked: one process per
principal) and restarts from them. Without it everything lives in memory -- for tests
and demos: a member restarted without its state must come back under a fresh identity
(or have its peers ``reset-replay`` it), since its old sequence numbers are burnt.

Errors: :class:`~vsm_phoenix.errors.PermissionDenied` when the roster does not give
the principal the role an operation needs (checked before anything is sent),
:class:`~vsm_phoenix.ext.amqp.client.ControlError` when a node refuses a request,
:class:`TimeoutError` when no answer (or no convergence) comes in time,
:class:`~vsm_phoenix.errors.TypeMismatch` for a replica opened with another type, or
a mutator the type does not have.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import random
from collections.abc import Awaitable, Callable, Generator, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import IO, Any, Final, Generic, TypeVar

from vsm_phoenix.crdt import CRDT, ORSet
from vsm_phoenix.crypto.credentials import Credentials
from vsm_phoenix.crypto.identity import ROLE_PEER, ROLE_READ, ROLE_WRITE
from vsm_phoenix.errors import (
    InvalidArgument,
    PermissionDenied,
    TypeMismatch,
    VsmPhoenixError,
)
from vsm_phoenix.ext.amqp.client import AmqpClient, ControlError
from vsm_phoenix.ext.amqp.control import NODE_OPERATIONS, Operation, build_request, may_ask
from vsm_phoenix.ext.amqp.endpoint import AmqpConfig
from vsm_phoenix.ext.amqp.kinds import KVKind, NodeKind, load_kind, replica_digest
from vsm_phoenix.ext.amqp.node import AmqpNode, NodeFenced
from vsm_phoenix.ext.amqp.topology import DEFAULT_AMQP_URL
from vsm_phoenix.storage import MemoryStorage, SQLiteStorage, Storage

__all__ = ["KV", "Cluster", "Replica", "lock_data_dir", "start_node"]

T = TypeVar("T", bound=CRDT)
_BOOT_KEY: Final = "runner/boots"


# -- running a node (shared with `vsm-phoenix node`) --------------------------------------
def lock_data_dir(data_dir: Path, node_id: str) -> IO[str]:
    """An exclusive lock on ``<data_dir>/<node_id>.lock`` (holding the pid), held
    until the returned file is closed. :class:`NodeFenced` when another process holds
    it."""
    data_dir.mkdir(parents=True, exist_ok=True)
    fh = open(data_dir / f"{node_id}.lock", "a+", encoding="utf-8")  # noqa: SIM115 - held
    try:
        fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        fh.seek(0)
        holder = fh.read().strip() or "?"
        fh.close()
        raise NodeFenced(
            f"node {node_id!r} already runs on data dir {data_dir} (pid {holder})"
        ) from None
    fh.seek(0)
    fh.truncate()
    fh.write(str(os.getpid()))
    fh.flush()
    return fh


async def start_node(
    kind: NodeKind,
    credentials: Credentials,
    *,
    storage: Storage,
    config: AmqpConfig,
    peers: Sequence[str],
    seed: int | None = None,
) -> AmqpNode:
    """Build a node of ``kind`` for ``credentials.principal`` and start it on the
    broker (:meth:`AmqpNode.start`). Its random source is seeded from ``seed`` (fresh
    entropy when ``None``), the node id and the boot count in ``storage``, so a
    restarted node does not repeat its previous run's choices."""
    node_id = credentials.principal
    boots = storage.get(_BOOT_KEY)
    base = seed if seed is not None else int.from_bytes(os.urandom(8), "big")
    rng = random.Random(f"{base}/{node_id}/{int.from_bytes(boots or b'', 'big')}")
    node = kind.build(node_id, rng, [p for p in peers if p != node_id])
    runner = AmqpNode(node, credentials=credentials, storage=storage, config=config,
                      codec=kind)
    try:
        await runner.start()
    except BaseException:
        with contextlib.suppress(Exception):
            await runner.stop(drain_timeout=0.5)
        raise
    return runner


def _replicas(member: AmqpNode) -> dict[str, CRDT]:
    """The replicas of a member's ClusterNode."""
    from vsm_phoenix.protocol.cluster import ClusterNode

    node = member.node
    if not isinstance(node, ClusterNode):
        raise InvalidArgument(f"{member.node_id} runs a {type(node).__name__}; replicas need "
                              "a member of kind 'crdt'")
    return node.sync.replicas


def roster_peers(credentials: Credentials) -> list[str]:
    """The principals the roster gives the ``peer`` role (sorted)."""
    return sorted(p for p, m in credentials.roster.members.items() if m.allows(ROLE_PEER))


# -- the library API ----------------------------------------------------------------------
class Replica(Generic[T]):
    """A named CRDT replica hosted by this process (obtained from
    :meth:`Cluster.replica`). Mutators apply here at once and return the delta they
    ship; :attr:`value` reads the local copy."""

    def __init__(self, cluster: Cluster, name: str, kind: type[T]) -> None:
        self.cluster = cluster
        self.name = name
        self.kind = kind

    def _state(self) -> T:
        state = _replicas(self.cluster._member())[self.name]
        assert isinstance(state, self.kind)
        return state

    @property
    def state(self) -> T:
        """A copy of the local state."""
        return self._state().copy()

    @property
    def value(self) -> Any:
        """The local copy's plain value (``frozenset`` for sets, ``int`` for counters...)."""
        return self._state().value

    @property
    def replica_id(self) -> str:
        """This member's id in the replica's clocks, dots and counter entries -- what
        :meth:`update` passes to ``mutate``: its sync node's
        :attr:`~vsm_phoenix.protocol.sync.SyncNode.replica_id` (fresh after a restart
        without disk)."""
        from vsm_phoenix.protocol.cluster import ClusterNode

        member = self.cluster._member()
        node = member.node
        return node.sync.replica_id if isinstance(node, ClusterNode) else member.node_id

    @property
    def digest(self) -> str:
        """A digest of the local state (equal digests, equal states)."""
        return replica_digest(self._state())

    async def update(self, mutate: Callable[[T, str], T]) -> T:
        """Apply ``mutate(state, replica_id)`` -- it must change ``state`` in place and
        return the delta, as every CRDT mutator does -- and ship the delta; returns it.
        ``replica_id`` is this member's id in the replica's clocks and dots: its sync
        node's :attr:`~vsm_phoenix.protocol.sync.SyncNode.replica_id`, which names the
        node's history (fresh after a restart without disk, so no dot is reused)."""
        from vsm_phoenix.protocol.cluster import ClusterNode
        from vsm_phoenix.protocol.sync import Mutate

        member = self.cluster._member()
        deltas: list[T] = []

        def op(state: Any) -> CRDT:
            node = member.node
            rid = node.sync.replica_id if isinstance(node, ClusterNode) else member.node_id
            delta = mutate(state, rid)
            deltas.append(delta)
            return delta

        await member.request(Mutate(self.name, op), timeout=self.cluster.timeout_s)
        return deltas[0]

    def _need(self, method: str) -> None:
        if not callable(getattr(self.kind, method, None)):
            raise TypeMismatch(f"a {self.kind.__name__} has no {method}(); use update()")

    async def add(self, element: Any) -> T:
        """Add ``element`` (sets: ``ORSet``, ``GSet``, ``TwoPSet``...)."""
        self._need("add")
        if issubclass(self.kind, ORSet):
            return await self.update(lambda s, rid: s.add(rid, element))  # type: ignore[attr-defined]
        return await self.update(lambda s, _rid: s.add(element))  # type: ignore[attr-defined]

    async def remove(self, element: Any) -> T:
        """Remove ``element`` (sets that support removal)."""
        self._need("remove")
        return await self.update(lambda s, _rid: s.remove(element))  # type: ignore[attr-defined]

    async def increment(self, n: int = 1) -> T:
        """Add ``n`` (``GCounter``, ``PNCounter``)."""
        self._need("increment")
        return await self.update(lambda s, rid: s.increment(rid, n))  # type: ignore[attr-defined]

    async def decrement(self, n: int = 1) -> T:
        """Subtract ``n`` (``PNCounter``)."""
        self._need("decrement")
        return await self.update(lambda s, rid: s.decrement(rid, n))  # type: ignore[attr-defined]

    async def wait_converged(
        self, timeout_s: float | None = None, members: Sequence[str] | None = None
    ) -> None:
        """Wait until every member (default: every ``peer`` of the roster) holds a copy
        of this replica equal to the local one. :class:`TimeoutError` names the members
        that differ or do not answer."""
        cluster = self.cluster
        deadline = asyncio.get_running_loop().time() + (timeout_s or cluster.timeout_s)
        others = [m for m in (members or cluster.peers) if m != cluster.principal]
        while True:
            mine = self.digest
            differ: list[str] = []
            for member in others:
                try:
                    status = await cluster.status(member, timeout_s=2.0)
                except (TimeoutError, ControlError) as exc:
                    differ.append(f"{member} ({type(exc).__name__})")
                    continue
                theirs = status.get("replicas", {}).get(self.name, {}).get("digest")
                if theirs != mine:
                    differ.append(member)
            if not differ:
                return
            if asyncio.get_running_loop().time() > deadline:
                raise TimeoutError(f"replica {self.name!r} not converged: {', '.join(differ)}")
            await asyncio.sleep(0.2)


class KV:
    """A client of the linearizable KV run by ``--kind kv`` nodes (obtained from
    :meth:`Cluster.kv`). Requests go to the leader (followers' hints are followed);
    a write is retried with the same session and sequence number until it is answered,
    so it takes effect exactly once. The session is the :class:`Cluster`'s: one write
    at a time per cluster connection, whatever the number of :class:`KV` objects."""

    def __init__(self, cluster: Cluster, nodes: Sequence[str], first: str | None = None) -> None:
        if not nodes:
            raise InvalidArgument("the KV needs at least one node")
        self.cluster = cluster
        self.nodes = list(nodes)
        self.leader: str | None = first
        self._rng = random.Random()

    async def _call(self, request: dict[str, Any], timeout_s: float | None) -> Any:
        from vsm_phoenix.protocol.raft import K_NOT_LEADER, K_OK

        loop = asyncio.get_running_loop()
        deadline = loop.time() + (timeout_s or self.cluster.timeout_s)
        target = self.leader or self._rng.choice(self.nodes)
        last = "no answer"
        while loop.time() < deadline:
            try:
                kind, payload = await self.cluster._client().request(target, request, 2.0)
            except TimeoutError:
                last = f"{target} did not answer"
                target = self._rng.choice([n for n in self.nodes if n != target] or self.nodes)
                continue
            if kind == K_OK:
                self.leader = target
                if isinstance(payload, dict) and "error" in payload:
                    raise ControlError(f"the KV refused {request['op']}: {payload['error']}")
                return payload
            hint = payload if kind == K_NOT_LEADER and payload in self.nodes else None
            last = f"{target} answered {kind}"
            self.leader = None
            if hint is not None and hint != target:
                target = hint
            else:
                await asyncio.sleep(0.1)
                target = self._rng.choice(self.nodes)
        raise TimeoutError(f"KV {request['op']} not answered in time ({last})")

    async def command(self, request: Mapping[str, Any], *,
                      timeout_s: float | None = None) -> Any:
        """Send a KV write (a request :func:`~vsm_phoenix.ext.amqp.control.build_request`
        made from :attr:`KVKind.operations`) with this client's session id and next
        sequence number; the answer's value."""
        cluster = self.cluster
        cluster._require(ROLE_WRITE, f"KV {request.get('op')}")
        async with cluster._kv_lock:  # one command at a time per session (exactly once)
            cluster._kv_seq += 1
            full = {**request, "c": cluster._client().client_id, "s": cluster._kv_seq}
            return await self._call(full, timeout_s)

    async def _write(self, op: str, timeout_s: float | None, **values: Any) -> Any:
        return await self.command(build_request(KVKind.operations[op], values),
                                  timeout_s=timeout_s)

    async def get(self, key: str, *, timeout_s: float | None = None) -> str | None:
        """The value of ``key`` (``None`` when absent): a linearizable read."""
        self.cluster._require(ROLE_READ, "KV get")
        value = await self._call(build_request(KVKind.operations["get"], {"k": key}),
                                 timeout_s)
        return None if value is None else str(value)

    async def put(self, key: str, value: str, *, timeout_s: float | None = None) -> None:
        await self._write("put", timeout_s, k=key, v=value)

    async def append(self, key: str, value: str, *, timeout_s: float | None = None) -> None:
        await self._write("append", timeout_s, k=key, v=value)

    async def cas(self, key: str, expected: str | None, value: str, *,
                  timeout_s: float | None = None) -> bool:
        """Set ``key`` to ``value`` if it holds ``expected`` (``None``: absent);
        whether it was set."""
        return bool(await self._write("cas", timeout_s, k=key, e=expected, v=value))

    async def delete(self, key: str, *, timeout_s: float | None = None) -> None:
        await self._write("delete", timeout_s, k=key)


class _Connect:
    """What :meth:`Cluster.connect` returns: await it, or use it with ``async with``."""

    def __init__(self, factory: Callable[[], Awaitable[Cluster]]) -> None:
        self._factory = factory
        self._cluster: Cluster | None = None

    def __await__(self) -> Generator[Any, None, Cluster]:
        return self._factory().__await__()

    async def __aenter__(self) -> Cluster:
        self._cluster = await self._factory()
        return self._cluster

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:
        if self._cluster is not None:
            await self._cluster.close()


class Cluster:
    """One principal of a cluster on the broker: member (replicas) and client (KV,
    control requests). See the module docstring; make one with :meth:`connect`."""

    def __init__(
        self,
        url: str,
        credentials: Credentials,
        *,
        data_dir: str | os.PathLike[str] | None = None,
        peers: Sequence[str] | None = None,
        config: AmqpConfig | None = None,
        timeout_s: float = 30.0,
        member: bool | None = None,
        kind: str | NodeKind = "crdt",
    ) -> None:
        self.url = url
        self.kind = load_kind(kind) if isinstance(kind, str) else kind
        self.credentials = credentials
        self.principal = credentials.principal
        self.data_dir = None if data_dir is None else Path(data_dir)
        self.peers = list(peers) if peers is not None else roster_peers(credentials)
        self.config = config or AmqpConfig(url=url, linger_ms=0.5)
        if self.config.url != url:
            raise InvalidArgument("config.url differs from url")
        self.timeout_s = timeout_s
        is_peer = credentials.roster.members[self.principal].allows(ROLE_PEER)
        if member and not is_peer:
            raise PermissionDenied(f"{self.principal!r} cannot be a member: the roster does "
                                   "not give it the peer role")
        self.member = is_peer if member is None else member
        self._node: AmqpNode | None = None
        self._ctl: AmqpClient | None = None
        self._storage: Storage | None = None
        self._lock: IO[str] | None = None
        self._kv_seq = 0  # the KV session's sequence number (see KV.command)
        self._kv_lock = asyncio.Lock()

    @classmethod
    def connect(
        cls,
        url: str = DEFAULT_AMQP_URL,
        credentials: Credentials | None = None,
        *,
        data_dir: str | os.PathLike[str] | None = None,
        peers: Sequence[str] | None = None,
        config: AmqpConfig | None = None,
        timeout_s: float = 30.0,
        member: bool | None = None,
        kind: str | NodeKind = "crdt",
    ) -> _Connect:
        """Join the cluster at ``url`` as ``credentials.principal``: ``async with
        Cluster.connect(url, creds) as c: ...`` (or ``c = await Cluster.connect(...)``
        and ``await c.close()``). ``peers``: the members to sync with and compare
        against (default: every ``peer`` of the roster); ``timeout_s``: the default
        for each call that waits; ``member``: run a member node here (default: when the
        roster gives the principal the ``peer`` role; ``False`` for a client only, e.g.
        an operator's tool speaking as a node's principal); ``kind``: the member's node
        kind (``crdt`` for replicas, ``kv`` to be one of the KV's Raft members, or a
        :class:`NodeKind`)."""
        if credentials is None:
            raise InvalidArgument("Cluster.connect needs the principal's credentials")

        async def start() -> Cluster:
            cluster = cls(url, credentials, data_dir=data_dir, peers=peers, config=config,
                          timeout_s=timeout_s, member=member, kind=kind)
            await cluster.start()
            return cluster

        return _Connect(start)

    async def start(self) -> None:
        """Connect; as a member, lock the data dir and start the node first."""
        try:
            if self.member:
                if self.data_dir is not None:
                    self._lock = lock_data_dir(self.data_dir, self.principal)
                    self._storage = SQLiteStorage(self.data_dir / f"{self.principal}.sqlite",
                                                  synchronous="NORMAL")
                else:
                    self._storage = MemoryStorage()
                self._node = await start_node(self.kind, self.credentials,
                                              storage=self._storage, config=self.config,
                                              peers=self.peers)
            self._ctl = AmqpClient(credentials=self.credentials, config=self.config)
            await self._ctl.start()
        except BaseException:
            await self.close()
            raise

    async def close(self) -> None:
        """Stop the node (flushing what it has to send) and the client; idempotent."""
        node, ctl, self._node, self._ctl = self._node, self._ctl, None, None
        if ctl is not None:
            with contextlib.suppress(Exception):
                await ctl.close()
        if node is not None:
            await node.stop()
        if self._storage is not None:
            if isinstance(self._storage, SQLiteStorage):
                self._storage.close()
            self._storage = None
        if self._lock is not None:
            self._lock.close()
            self._lock = None

    def _member(self) -> AmqpNode:
        if self._node is None:
            raise PermissionDenied(
                f"{self.principal!r} is not a member (the roster does not give it the peer "
                "role), or the cluster is closed"
            )
        return self._node

    def _client(self) -> AmqpClient:
        if self._ctl is None:
            raise VsmPhoenixError("the cluster is closed")
        return self._ctl

    def _require(self, role: str, what: str) -> None:
        if not may_ask(self.credentials.roster.members[self.principal], role):
            raise PermissionDenied(f"{what} needs the {role!r} role; {self.principal!r} "
                                   "does not have it")

    async def replica(self, name: str, kind: type[T]) -> Replica[T]:
        """The replica ``name`` of type ``kind`` hosted here, created (at bottom) when
        new; it reaches the other members with the next shipping round."""
        from vsm_phoenix.protocol.sync import Merge

        if not isinstance(name, str) or not name:
            raise InvalidArgument("a replica name is a non-empty string")
        if not (isinstance(kind, type) and issubclass(kind, CRDT)):
            raise TypeMismatch(f"{kind!r} is not a CRDT type")
        node = self._member()
        current = _replicas(node).get(name)
        if current is not None and type(current) is not kind:
            raise TypeMismatch(f"replica {name!r} is a {type(current).__name__}, "
                               f"not a {kind.__name__}")
        if current is None:
            await node.request(Merge(name, kind()), timeout=self.timeout_s)
        return Replica(self, name, kind)

    def kv(self, nodes: Sequence[str] | None = None, *, first: str | None = None) -> KV:
        """The KV run by ``nodes`` (default: every ``peer`` of the roster); requests go
        to ``first`` until a leader is known."""
        return KV(self, nodes or self.peers, first)

    async def declare(self, nodes: Sequence[str]) -> None:
        """Declare the queues of ``nodes`` on the broker, so that requests to a node
        that is still starting wait for it instead of being dropped."""
        await self._client().declare_nodes(nodes)

    async def ask(self, node: str, request: Mapping[str, Any], *,
                  timeout_s: float | None = None) -> Any:
        """Send a prepared request (see :func:`~vsm_phoenix.ext.amqp.control.
        build_request`) to ``node``; the reply's value."""
        _kind, value = await self._client().request(node, dict(request),
                                                    timeout_s or self.timeout_s)
        return value

    async def request(self, node: str, op: str, *, timeout_s: float | None = None,
                      operations: Mapping[str, Operation] | None = None,
                      **values: Any) -> Any:
        """Ask ``node`` for control operation ``op`` with parameter ``values`` (found
        in :data:`~vsm_phoenix.ext.amqp.control.NODE_OPERATIONS` or ``operations``);
        returns the reply's value. The role is checked here first."""
        table = {**NODE_OPERATIONS, **(operations or {})}
        if op not in table:
            raise InvalidArgument(f"unknown operation {op!r} (have: {', '.join(table)})")
        self._require(table[op].role, op)
        request = build_request(table[op], values)
        _kind, value = await self._client().request(node, request,
                                                    timeout_s or self.timeout_s)
        return value

    async def status(self, node: str, *, timeout_s: float | None = None) -> dict[str, Any]:
        """``node``'s status (a ``read`` query; members may ask too)."""
        _kind, value = await self._client().request(node, {"op": "status"},
                                                    timeout_s or self.timeout_s)
        if not isinstance(value, dict):
            raise ControlError(f"the status of {node} is not a map")
        return value
