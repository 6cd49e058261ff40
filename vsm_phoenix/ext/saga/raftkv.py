"""An in-process async client of the Raft KV, for sagas in one process.

:class:`SimulatedRaftKV` runs a cluster of real
:class:`~vsm_phoenix.protocol.raft.RaftNode` s with the
:class:`~vsm_phoenix.protocol.kv.KVStateMachine` inside a
:class:`~vsm_phoenix.protocol.sim.Simulator` (virtual time, seeded network, faults
through :attr:`sim`) and offers the :class:`~vsm_phoenix.ext.saga.log.AsyncKV` surface
(``get``/``put``/``append``/``cas``) that :class:`~vsm_phoenix.ext.saga.log.KVSagaLog`
needs -- the same surface the AMQP runner's
:class:`~vsm_phoenix.ext.amqp.cluster.KV` offers across processes.

A call submits its command to the node it believes leads and waits for its answer
while one pump task advances virtual time in ``step_ms`` slices, one slice per turn
of the event loop while any call waits (so virtual time runs at the same pace however
many calls are in flight, and stands still when none is); it follows ``not-leader``
hints, and re-sends on timeouts and ``unknown`` answers with the *same* session and
sequence number, which the KV's client sessions make exactly-once. Each concurrent
call borrows its own session (one command outstanding per session, as the KV needs).
A call that gets no answer within ``op_timeout_ms`` of virtual time raises
:class:`TimeoutError` -- its command may or may not have taken effect, like any
timed-out call on a real network.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Sequence
from typing import Any

from vsm_phoenix.errors import VsmPhoenixError
from vsm_phoenix.protocol.kv import STALE, KVError, append, cas, get, kv_node_factory, put
from vsm_phoenix.protocol.node import Deliver
from vsm_phoenix.protocol.raft import (
    K_FAILED,
    K_NOT_LEADER,
    K_OK,
    K_UNKNOWN,
    Propose,
    RaftConfig,
    Read,
)
from vsm_phoenix.protocol.sim import NetworkConfig, Simulator

__all__ = ["KVProtocolError", "SimulatedRaftKV"]


class KVProtocolError(VsmPhoenixError):
    """The KV answered something no correct cluster answers (a bug, not a fault)."""


class SimulatedRaftKV:
    """A Raft KV cluster in a :class:`Simulator`, with an async client (see module)."""

    def __init__(
        self,
        nodes: Sequence[str] = ("kv1", "kv2", "kv3"),
        *,
        seed: int = 0,
        network: NetworkConfig | None = None,
        config: RaftConfig | None = None,
        step_ms: int = 1,
        attempt_timeout_ms: int = 400,
        op_timeout_ms: int = 20_000,
    ) -> None:
        self.nodes = list(nodes)
        cfg = config or RaftConfig(peers=tuple(self.nodes))
        self.sim = Simulator(kv_node_factory(cfg), self.nodes, seed=seed,
                             network=network or NetworkConfig(min_latency_ms=1,
                                                              max_latency_ms=3))
        self.step_ms = step_ms
        self.attempt_timeout_ms = attempt_timeout_ms
        self.op_timeout_ms = op_timeout_ms
        self.leader: str | None = None
        self.calls = 0
        self._rng = random.Random(f"{seed}/raftkv-client")
        self._free: list[tuple[str, int]] = []
        self._sessions = 0
        self._waiting: dict[tuple[str, str], tuple[int, asyncio.Future[Deliver | None]]] = {}
        self._cursor: dict[str, int] = {}
        self._pump_task: asyncio.Task[None] | None = None

    def _session(self) -> tuple[str, int]:
        if self._free:
            return self._free.pop()
        self._sessions += 1
        return f"s{self._sessions}", 0

    def _ensure_pump(self) -> None:
        if self._pump_task is None or self._pump_task.done():
            self._pump_task = asyncio.get_running_loop().create_task(self._pump())

    async def _pump(self) -> None:
        """Advance virtual time one slice per event-loop turn while calls wait, and hand
        each answer (or, past its deadline, ``None``) to its caller: virtual time runs
        at one pace however many calls are in flight."""
        sim = self.sim
        while self._waiting:
            sim.run_for(self.step_ms)
            for node in self.nodes:
                out = sim.delivered[node]
                start = self._cursor.get(node, 0)
                self._cursor[node] = len(out)
                for d in out[start:]:
                    entry = self._waiting.pop((node, d.request_id or ""), None)
                    if entry is not None and not entry[1].done():
                        entry[1].set_result(d)
            for key, (deadline, fut) in list(self._waiting.items()):
                if sim.now >= deadline or fut.done():
                    del self._waiting[key]
                    if not fut.done():
                        fut.set_result(None)
            await asyncio.sleep(0)

    async def _attempt(self, target: str, request: Propose | Read) -> Deliver | None:
        rid = self.sim.client_request(target, request)
        fut: asyncio.Future[Deliver | None] = asyncio.get_running_loop().create_future()
        self._waiting[(target, rid)] = (self.sim.now + self.attempt_timeout_ms, fut)
        self._ensure_pump()
        return await fut

    async def _call(self, request: Propose | Read) -> Any:
        self.calls += 1
        sim = self.sim
        deadline = sim.now + self.op_timeout_ms
        target = self.leader if self.leader in self.nodes else self._rng.choice(self.nodes)
        while sim.now < deadline:
            answer = await self._attempt(target, request)
            if answer is None:
                target = self._rng.choice(self.nodes)
                continue
            if answer.kind == K_OK:
                self.leader = target
                if isinstance(answer.payload, KVError) or answer.payload is STALE:
                    raise KVProtocolError(f"the KV answered {answer.payload!r}")
                return answer.payload
            if answer.kind == K_NOT_LEADER and answer.payload in self.nodes \
                    and answer.payload != target:
                target = answer.payload
            elif answer.kind in (K_NOT_LEADER, K_UNKNOWN, K_FAILED):
                self.leader = None
                target = self._rng.choice(self.nodes)
                await self._idle(20)
            else:
                raise KVProtocolError(f"unexpected answer kind {answer.kind!r}")
        raise TimeoutError("the simulated KV did not answer in time")

    async def _idle(self, ms: int) -> None:
        """Let ``ms`` of virtual time pass (the pump advances it)."""
        until = self.sim.now + ms
        while self.sim.now < until:
            fut: asyncio.Future[Deliver | None] = asyncio.get_running_loop().create_future()
            self._waiting[("", f"idle-{id(fut)}")] = (until, fut)
            self._ensure_pump()
            await fut

    async def _write(self, build: Any, *args: Any) -> Any:
        client, seq = self._session()
        seq += 1
        try:
            return await self._call(build(client, seq, *args))
        finally:
            self._free.append((client, seq))

    async def get(self, key: str, *, timeout_s: float | None = None) -> str | None:
        value = await self._call(get(key))
        if value is not None and not isinstance(value, str):
            raise KVProtocolError("get answered a non-string")
        return value

    async def put(self, key: str, value: str, *, timeout_s: float | None = None) -> None:
        await self._write(put, key, value)

    async def append(self, key: str, value: str, *, timeout_s: float | None = None) -> None:
        await self._write(append, key, value)

    async def cas(self, key: str, expected: str | None, value: str, *,
                  timeout_s: float | None = None) -> bool:
        result = await self._write(cas, key, expected, value)
        if type(result) is not bool:
            raise KVProtocolError("cas answered a non-bool")
        return result
