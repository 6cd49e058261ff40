"""Membership changes during a simulated KV run: a client that adds, promotes and
removes servers, and the check that the cluster ends where it was asked to.

Theory of operation
-------------------
A :class:`MembershipDriver` is one more client of a
:class:`~vsm_phoenix.protocol.sim.Simulator` cluster of Raft nodes. It works through a
*plan* — :func:`default_plan`: add a spare server as a learner, promote it, remove the
server that leads at that moment, add a second spare as a learner, promote it, and
remove whoever leads then — one step at a time. Each step is a
:class:`~vsm_phoenix.protocol.raft.Reconfigure` sent to the node the driver believes
leads; it follows ``raft.not-leader`` hints and retries on ``raft.failed`` (a change
still in progress, a leader whose term has not committed), ``raft.unknown`` and
timeouts until a ``raft.ok`` arrives, then waits a little and takes the next step. A
step that names "the leader" is resolved when it is first sent — the live node that
leads the highest term at that moment (test tooling may look), else the last leader
the driver heard of — and kept for its retries.

:meth:`MembershipDriver.check` says, after the run, whether every step was
acknowledged and every voter of the last requested configuration holds that
configuration, committed. Apart from resolving "the leader" (and that final check),
the driver reads only ``Deliver`` effects, like any client.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence

import attrs

from vsm_phoenix.protocol.node import Deliver
from vsm_phoenix.protocol.raft import (
    K_FAILED,
    K_LEADER,
    K_NOT_LEADER,
    K_OK,
    Membership,
    RaftNode,
    Reconfigure,
)
from vsm_phoenix.protocol.sim import Simulator

__all__ = ["LEADER", "MembershipDriver", "PlanStep", "default_plan"]

#: Stands for "the server leading when the step is sent" in a plan step.
LEADER = "<leader>"


@attrs.frozen
class PlanStep:
    """A target configuration. ``remove`` ids (or :data:`LEADER`) leave the voters
    and learners; ``add_voters`` and ``add_learners`` join; a learner added as a voter
    is promoted."""

    add_voters: tuple[str, ...] = ()
    add_learners: tuple[str, ...] = ()
    remove: tuple[str, ...] = ()

    def apply(self, current: Membership, leader: str | None) -> Membership:
        gone = {leader if r == LEADER else r for r in self.remove} - {None}
        voters = (current.voters | set(self.add_voters)) - gone
        learners = (current.learners | set(self.add_learners)) - gone - voters
        return Membership.of(sorted(voters), sorted(learners))


def default_plan(spares: Sequence[str]) -> list[PlanStep]:
    """Add each spare as a learner, promote it, then remove the current leader."""
    plan: list[PlanStep] = []
    for spare in spares:
        plan += [PlanStep(add_learners=(spare,)), PlanStep(add_voters=(spare,)),
                 PlanStep(remove=(LEADER,))]
    return plan


class MembershipDriver:
    """Drives ``plan`` from ``start_ms`` on (see the module docstring); every
    ``poll_ms`` it reads replies and (re)sends what is due."""

    def __init__(self, sim: Simulator, bootstrap: Membership, plan: Sequence[PlanStep], *,
                 seed: int = 0, start_ms: int = 200, poll_ms: int = 5,
                 attempt_timeout_ms: int = 300, pause_ms: tuple[int, int] = (100, 300),
                 on_step: Callable[[int, Membership], None] | None = None) -> None:
        self.sim = sim
        self.plan = list(plan)
        self.current = bootstrap
        self.done: list[Membership] = []
        self.rng = random.Random(f"{seed}/reconfigure")
        self.poll_ms = poll_ms
        self.attempt_timeout_ms = attempt_timeout_ms
        self.pause_ms = pause_ms
        self.on_step = on_step
        self.stats = {"requests": 0, "not_leader": 0, "retries": 0}
        self._target: Membership | None = None
        self._leader: str | None = None
        self._rid: str | None = None
        self._node: str | None = None
        self._deadline = 0
        self._next_at = start_ms
        self._cursor = {n: len(sim.delivered[n]) for n in sim.node_ids}
        sim.schedule(start_ms, self._tick)

    @property
    def requested(self) -> Membership:
        """The last configuration asked for (the bootstrap one before any step)."""
        return self._target if self._target is not None else self.current

    @property
    def finished(self) -> bool:
        return not self.plan and self._target is None

    def _tick(self, sim: Simulator) -> None:
        now = sim.now
        for node in sim.node_ids:
            out = sim.delivered[node]
            start = self._cursor.get(node, 0)
            self._cursor[node] = len(out)
            for d in out[start:]:
                self._learn(node, d)
                if self._rid is not None and d.request_id == self._rid:
                    self._on_reply(node, d, now)
        if self._target is None and self.plan and now >= self._next_at:
            step = self.plan.pop(0)
            self._target = step.apply(self.current, self._leading(sim))
            self._send(now)
        elif self._target is not None and self._rid is None and now >= self._next_at:
            self._send(now)
        elif self._rid is not None and now >= self._deadline:
            self.stats["retries"] += 1
            self._node = None
            self._send(now)
        if not self.finished:
            sim.schedule(now + self.poll_ms, self._tick)

    def _leading(self, sim: Simulator) -> str | None:
        leaders = [(n.term, n.node_id) for n in map(sim.node, sim.node_ids)
                   if isinstance(n, RaftNode) and n.is_leader]
        return max(leaders)[1] if leaders else self._leader

    def _learn(self, node: str, d: Deliver) -> None:
        if d.kind == K_LEADER:
            self._leader = node

    def _send(self, now: int) -> None:
        assert self._target is not None
        ids = self.sim.node_ids
        if self._node is None:
            self._node = self._leader if self._leader is not None else self.rng.choice(ids)
        self.stats["requests"] += 1
        target = self._target
        self._rid = self.sim.client_request(
            self._node, Reconfigure(voters=sorted(target.voters),
                                    learners=sorted(target.learners)))
        self._deadline = now + self.attempt_timeout_ms

    def _on_reply(self, node: str, d: Deliver, now: int) -> None:
        assert self._target is not None
        self._rid = None
        if d.kind == K_OK:
            self.current = self._target
            self.done.append(self._target)
            if self.on_step is not None:
                self.on_step(now, self._target)
            self._target = None
            self._leader = node
            self._next_at = now + self.rng.randint(*self.pause_ms)
            return
        if d.kind == K_NOT_LEADER:
            self.stats["not_leader"] += 1
            hint = d.payload if isinstance(d.payload, str) else None
            self._node = hint if hint is not None and hint != node else None
            self._next_at = now + (1 if self._node is not None else 20)
        else:  # raft.failed (in progress, term not committed) or raft.unknown
            self._node = node if d.kind == K_FAILED else None
            self._next_at = now + 30

    def check(self) -> list[str]:
        """Problems with the end state: steps never acknowledged, voters of the
        requested configuration that do not hold it committed (empty: all good)."""
        problems = []
        if not self.finished:
            problems.append(f"{len(self.plan) + (self._target is not None)} membership "
                            f"step(s) never acknowledged; requested {self.requested}")
        want = self.requested
        for nid in sorted(want.voters):
            node = self.sim.node(nid)
            if not isinstance(node, RaftNode):
                problems.append(f"{nid} is down at the end")
            elif node.membership != want or node.commit_index < node.membership_index:
                problems.append(f"{nid} holds {node.membership} (committed: "
                                f"{node.commit_index >= node.membership_index}), "
                                f"requested {want}")
        return problems
