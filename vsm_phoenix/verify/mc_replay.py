"""Rebuilding a model-checker trace by replaying it on fresh nodes.

The search stores one parent link and one action per state. For a counterexample the
path of actions is replayed from the initial state on fresh node objects — no memo,
no interning — so every step shown is a real execution with the effects it had. The
replay ends by comparing the local states it reached with the explored ones: if a
node's key or timers differ, or the messages in flight do, the node key leaves out
something the node's behaviour depends on, and :class:`ReplayDivergedError` says so
instead of a trace nobody could stand behind.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence

from vsm_phoenix.errors import DecodeError
from vsm_phoenix.protocol.envelope import Envelope
from vsm_phoenix.protocol.node import (
    ClientRequest,
    Event,
    Node,
    Receive,
    Restart,
    Start,
    TimerFired,
)
from vsm_phoenix.verify.local_steps import (
    _DELIVER,
    _DROP,
    _DUP,
    _REQUEST,
    _TIMER,
    LocalSteps,
    _Action,
    _State,
)
from vsm_phoenix.verify.mc_values import ReplayDivergedError, Step, describe_effect
from vsm_phoenix.verify.symmetry import freeze

__all__ = ["replay"]


def replay(steps: LocalSteps, path: Sequence[_Action], final: _State, raised: bool,
           start: int, now: Sequence[int]) -> list[Step]:
    """The steps of ``path`` replayed from the initial state (nodes started at time
    ``start``; ``now[k]`` is the time of the k-th action); checks that the replay ends
    in ``final`` unless the last action ``raised``."""
    return _Replay(steps, start).run(path, final, raised, now)


class _Replay:
    """Re-executes a path of actions on fresh nodes (no memo, no interning), describing
    each step, and checks that it reaches the explored local states."""

    def __init__(self, mc: LocalSteps, start: int) -> None:
        self.mc = mc
        n = len(mc.node_ids)
        now = start
        self.nodes: list[Node] = []
        self.timers: list[set[str]] = []
        self.stores: list[dict[str, bytes] | None] = []
        self.crashes = 0
        self.net: list[tuple[int, Hashable, Envelope]] = []  # (dst, key, env), send order
        for i in range(n):
            node = mc._build(i)
            timers: set[str] = set()
            store: dict[str, bytes] | None = {} if mc._track_store else None
            sends = mc._carry_out(i, node.step(Start(now)), timers, store)
            self.nodes.append(node)
            self.timers.append(timers)
            self.stores.append(store)
            self._send(sends)

    def _send(self, sends: list[tuple[int, Envelope]]) -> None:
        mc = self.mc
        for j, env in sends:
            key = mc._message_key(env)
            key = freeze(key) if mc.symmetry else key
            if mc.network == "set" and any(d == j and k == key for d, k, _ in self.net):
                continue
            self.net.append((j, key, env))

    def _take(self, m: int, remove: bool) -> Envelope:
        msg = self.mc._msgs[m]
        for at, (d, k, env) in enumerate(self.net):
            if d == msg.dst and k == msg.key:
                if remove:
                    del self.net[at]
                return env
        raise ReplayDivergedError(0, f"message {msg.env.type} to {msg.dst} not in flight")

    def run(self, path: Sequence[_Action], final: _State, raised: bool,
            times: Sequence[int]) -> list[Step]:
        mc = self.mc
        steps: list[Step] = []
        for n, action in enumerate(path):
            kind, i, arg = action
            now = times[n]
            label = mc.describe_action(action)
            if kind in (_DROP, _DUP):
                env = self._take(arg, remove=kind == _DROP)
                if kind == _DUP:
                    msg = mc._msgs[arg]
                    self.net.append((msg.dst, msg.key, env))
                steps.append(Step(*label))
                continue
            node = self.nodes[i]
            timers = self.timers[i]
            store = self.stores[i]
            if kind == _DELIVER:
                env = self._take(arg, remove=mc.network != "set")
                event: Event = Receive(now, env)
            elif kind == _TIMER:
                timers.discard(arg)
                event = TimerFired(now, arg)
            elif kind == _REQUEST:
                req = mc.requests[arg]
                assert req.request_id is not None
                event = ClientRequest(now, req.request_id, req.payload)
            else:
                self.crashes += 1
                node = mc._build(i, self.crashes)
                timers.clear()
                event = Restart(now, dict(store or {}))
            try:
                effects = node.step(event)
            except DecodeError as exc:
                steps.append(Step(*label, effects=(f"rejected: {exc}",)))
                continue
            except Exception as exc:
                if raised and n == len(path) - 1:
                    steps.append(Step(*label, effects=(f"raised {type(exc).__name__}: {exc}",)))
                    return steps
                raise ReplayDivergedError(n + 1, f"{label[1]} raised {exc!r}") from exc
            self.nodes[i] = node
            sends = mc._carry_out(i, effects, timers, store)
            self._send(sends)
            described = tuple(t for t in map(describe_effect, effects) if t is not None)
            steps.append(Step(*label, effects=described))
        if not raised:
            self._compare(final, len(path))
        return steps

    def _compare(self, final: _State, n: int) -> None:
        mc = self.mc
        for i, lid in enumerate(final[0]):
            loc = mc._locals[lid]
            key = mc._nkey(self.nodes[i])
            if key != loc.key or frozenset(self.timers[i]) != loc.timers:
                raise ReplayDivergedError(n, f"node {mc.node_ids[i]} replays to another state")
        replayed = sorted((d, repr(k)) for d, k, _ in self.net)
        explored = sorted((mc._msgs[m].dst, repr(mc._msgs[m].key))
                          for m in mc._net_ids(final[1]))
        if replayed != explored:
            raise ReplayDivergedError(n, "the messages in flight differ")
