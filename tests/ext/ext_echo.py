"""A tiny node for the AMQP adapter tests, and its node kind (control-plane codec).

``EchoNode`` answers ``echo.ping`` with ``echo.pong`` and counts both (the counts are
persisted, so a restart recovers them); it broadcasts on a topic, arms and cancels
timers on request, and rejects ``echo.bad`` as a protocol error. Importable by node
processes as ``ext_echo:KIND`` with ``tests/ext`` on ``PYTHONPATH``.
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from typing import Any

from vsm_phoenix.crypto.identity import ROLE_READ, ROLE_WRITE
from vsm_phoenix.errors import DecodeError
from vsm_phoenix.ext.amqp.control import Operation
from vsm_phoenix.protocol.envelope import decode_cbor, encode_cbor
from vsm_phoenix.protocol.kit import Messenger
from vsm_phoenix.protocol.node import (
    CancelTimer,
    ClientRequest,
    Deliver,
    Effect,
    Event,
    LocalProtocolError,
    Node,
    Persist,
    Receive,
    RemoteProtocolError,
    Restart,
    SetTimer,
    Start,
    TimerFired,
)

COUNTERS = ("pings", "pongs", "bcasts")


class EchoNode:
    def __init__(self, node_id: str, rng: random.Random) -> None:
        self._id = node_id
        self.msg = Messenger(node_id, rng)
        self.counts = dict.fromkeys(COUNTERS, 0)
        self.timer_waiters: dict[str, str] = {}
        self.started = False
        self.booted = ""

    @property
    def node_id(self) -> str:
        return self._id

    def step(self, event: Event) -> list[Effect]:
        if isinstance(event, Start | Restart):
            self.started = True
            self.booted = type(event).__name__
            if isinstance(event, Restart):
                for name in COUNTERS:
                    raw = event.persisted.get(name)
                    if raw is not None:
                        self.counts[name] = decode_cbor(raw)
            return []
        if not self.started:
            raise LocalProtocolError("not started")
        if isinstance(event, Receive):
            return self._receive(event)
        if isinstance(event, TimerFired):
            rid = self.timer_waiters.pop(event.name, None)
            return [Deliver("echo.timer", event.name, rid)] if rid else []
        if isinstance(event, ClientRequest):
            return self._client(event)
        raise LocalProtocolError(f"unknown event {event!r}")

    def _bump(self, name: str) -> Persist:
        self.counts[name] += 1
        return Persist(name, encode_cbor(self.counts[name]))

    def _receive(self, event: Receive) -> list[Effect]:
        env = event.envelope
        self.msg.accept(event.now, env)
        if env.type == "echo.ping":
            return [self._bump("pings"),
                    self.msg.send(event.now, env.sender, "echo.pong", env.payload)]
        if env.type == "echo.pong":
            return [self._bump("pongs"), Deliver("echo.pong", env.sender)]
        if env.type == "echo.bcast":
            return [self._bump("bcasts")]
        raise RemoteProtocolError(f"echo cannot handle {env.type!r}")

    def _client(self, req: ClientRequest) -> list[Effect]:
        cmd = req.payload
        if not isinstance(cmd, dict):
            raise LocalProtocolError("echo commands are maps")
        op = cmd.get("op")
        now = req.now
        if op == "ping":
            n = int(cmd.get("n", 1))
            size = int(cmd.get("size", 8))
            out: list[Effect] = [
                self.msg.send(now, str(cmd["to"]), "echo.ping", b"p" * size) for _ in range(n)
            ]
            return [*out, Deliver("echo.sent", n, req.request_id)]
        if op == "bad":
            return [self.msg.send(now, str(cmd["to"]), "echo.bad", b""),
                    Deliver("echo.sent", 1, req.request_id)]
        if op == "broadcast":
            env = self.msg.envelope(now, "echo.bcast", b"b", topic=str(cmd.get("topic", "all")))
            from vsm_phoenix.protocol.node import Send

            return [Send(env), Deliver("echo.sent", 1, req.request_id)]
        if op == "timer":
            name = str(cmd.get("name", "t"))
            self.timer_waiters[name] = req.request_id
            return [SetTimer(name, int(cmd.get("ms", 10)))]
        if op == "cancel":
            name = str(cmd.get("name", "t"))
            self.timer_waiters.pop(name, None)
            return [CancelTimer(name), Deliver("echo.cancelled", name, req.request_id)]
        if op == "count":
            return [Deliver("echo.count", dict(self.counts), req.request_id)]
        raise LocalProtocolError(f"unknown echo op {op!r}")


class EchoKind:
    name = "echo"
    operations: Mapping[str, Operation] = {
        op.name: op for op in (
            Operation("count", ROLE_READ, "the counters"),
            *(Operation(name, ROLE_WRITE, f"echo {name}")
              for name in ("ping", "bad", "broadcast", "timer", "cancel")),
        )
    }

    def build(self, node_id: str, rng: random.Random, peers: Sequence[str]) -> Node:
        return EchoNode(node_id, rng)

    def decode_request(self, node: Node, raw: Any) -> Any:
        if not isinstance(raw, dict):
            raise DecodeError("echo requests are maps")
        return raw

    def encode_reply(self, deliver: Deliver) -> Any:
        return deliver.payload

    def status(self, node: Node) -> dict[str, Any]:
        assert isinstance(node, EchoNode)
        return {"counts": dict(node.counts), "booted": node.booted}


KIND = EchoKind()
