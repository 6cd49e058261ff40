"""The ``agents`` scenario: agents with capabilities, leased roles, placement and
spawning, on the deterministic simulator under faults, audited from the evidence graph.

Theory of operation
-------------------
The simulator runs two kinds of node: a Raft KV cluster (``k1..k3``) and agents
(:class:`~vsm_phoenix.ext.agents.node.AgentNode`: SWIM with capabilities + an evidence
replica). Each agent also has a *runtime* here, its application logic, which talks to
the KV as a client of :class:`~vsm_phoenix.verify.kv_workload.KVWorkload` (the KV
history is recorded and checked for linearizability) and records every decision as a
signed event in its own evidence replica (``Record``):

* **Pool leader.** Every agent contends for ``leader/pool`` (:class:`RoleLease`).
  The holder places new tasks: :func:`~vsm_phoenix.ext.agents.grants.place` over its
  SWIM view and the signed grants, least loaded first. The placement event names the
  task, the candidates, the choice and the leader's fencing token. The placement
  reaches the task board (a :class:`Fence`) after a random delay; one that arrives
  after a newer leader's is refused (:class:`StaleToken`) and the task waits for the
  current leader.
* **Coordinators.** The first two candidates contend for ``coordinator/<task>`` (the
  second after a delay); the holder finishes the task, fenced by its token. A
  coordinator that crashes loses the role after its lease and the backup takes over.
* **Spawning.** When the backlog grows, the leader proposes a sub-agent; the agents
  granted ``approve-spawn`` vote through the KV (:mod:`.spawn`), and the decision with
  every vote and reason is recorded; an approved child joins the simulation.
* **Faults.** Partitions (agents and KV nodes on both sides; the pool leader alone,
  so that its placements still on the way meet a newer leader's), agent crashes and
  restarts (a runtime forgets its leases), one agent leaving for good, capability
  changes, a KV node crash; then everything heals and anti-entropy runs.

After the settle time, the run goes on (at most a minute of simulated time, reported
as ``converged_after_ms``) until anti-entropy has brought every running agent to the
same graph. At the end (:class:`AgentsRun`): every running agent's evidence graph is
identical and
verifies; no role ever had two believing holders at once (each belief interval is
recorded in global time); the KV history is linearizable; and the audit from one
replica's graph finds every role acquisition with a distinct token.
"""

from __future__ import annotations

import functools
import hashlib
import random
from collections.abc import Callable
from typing import Any, Final

import attrs

from vsm_phoenix.crypto.identity import Authority, Identity, Roster
from vsm_phoenix.crypto.signature import SigningKey
from vsm_phoenix.ext.agents.grants import CapabilityGrant, GrantBook, place
from vsm_phoenix.ext.agents.node import AgentConfig, AgentNode, Record
from vsm_phoenix.ext.agents.roles import Fence, HolderInterval, RoleLease, StaleToken, overlaps
from vsm_phoenix.ext.agents.spawn import SpawnProposal, Vote, decide
from vsm_phoenix.ext.evidence import EvidenceGraph
from vsm_phoenix.protocol.kv import kv_node_factory
from vsm_phoenix.protocol.node import Node
from vsm_phoenix.protocol.raft import RaftConfig
from vsm_phoenix.protocol.sim import NetworkConfig, Simulator
from vsm_phoenix.protocol.swim import Leave, SwimConfig, UpdateMetadata
from vsm_phoenix.verify import Verdict, check_history
from vsm_phoenix.verify.history import History
from vsm_phoenix.verify.kv_workload import KVWorkload
from vsm_phoenix.verify.models import KVAppend, KVCas, KVGet

__all__ = ["AgentsRun", "simulate_agents"]

CLUSTER: Final = "agents-sim"
CAPABILITIES: Final = ("cpu", "gpu", "storage", "approve-spawn")
POOL_ROLE: Final = "leader/pool"
TICK_MS: Final = 10


def _key(seed: int, name: str) -> SigningKey:
    return SigningKey.from_bytes(hashlib.sha256(f"{seed}/{name}".encode()).digest())


@attrs.define
class _Task:
    name: str
    required: tuple[str, ...]
    created: int
    placed: bool = False
    done: bool = False


@attrs.define
class _Runtime:
    """One agent's application logic (lost on crash: a fresh one after restart)."""

    agent: str
    client: int
    leases: dict[str, RoleLease] = attrs.field(factory=dict)
    open_since: dict[str, tuple[int, int]] = attrs.field(factory=dict)  # role -> (t, token)
    pending: tuple[str, str, int] | None = None  # (kind, subject, results before)
    wants: list[tuple[str, str, Any]] = attrs.field(factory=list)  # queued KV work
    cursor: int = 0
    voted: set[str] = attrs.field(factory=set)
    rotate: int = 0
    start_after: dict[str, int] = attrs.field(factory=dict)
    proposals: list[str] = attrs.field(factory=list)
    coordinating_since: dict[str, int] = attrs.field(factory=dict)


@attrs.frozen
class AgentsRun:
    """What :func:`simulate_agents` found (``ok`` when every check passed)."""

    seed: int
    agents: tuple[str, ...]
    events: int
    digests: dict[str, str]
    graph_problems: tuple[str, ...]
    overlaps: tuple[str, ...]
    audit_problems: tuple[str, ...]
    verdict: Verdict
    history: History
    stats: dict[str, int]
    sim: Simulator

    @property
    def ok(self) -> bool:
        return (len(set(self.digests.values())) == 1 and not self.graph_problems
                and not self.overlaps and not self.audit_problems
                and self.verdict is Verdict.OK)


class _Scenario:
    def __init__(self, seed: int, agents: int, duration_ms: int, settle_ms: int,
                 say: Callable[[str], None], converge_ms: int = 60_000) -> None:
        self.seed = seed
        self.converge_ms = converge_ms
        self.rng = random.Random(f"{seed}/agents-scenario")
        self.say = say
        self.duration_ms = duration_ms
        self.end_ms = duration_ms + settle_ms
        self.kv = ["k1", "k2", "k3"]
        self.agents = [f"a{i + 1}" for i in range(agents)]
        self.children = [f"s{i + 1}" for i in range(3)]
        self.admin = Identity("admin", _key(seed, "admin"))
        self.identities = {a: Identity(a, _key(seed, a)) for a in self.agents + self.children}
        authority = Authority(_key(seed, "authority"))
        members = {a: (i.verify_key, ["peer"]) for a, i in self.identities.items()}
        members["admin"] = (self.admin.verify_key, ["admin"])
        self.roster: Roster = authority.issue(CLUSTER, members, serial=1, issued_ms=0)
        self.grants = GrantBook(self.roster)
        self.advertised: dict[str, tuple[str, ...]] = {}
        for a in self.agents + self.children:
            caps = ["cpu", "approve-spawn"] + [c for c in ("gpu", "storage")
                                               if self.rng.random() < 0.5]
            self.grants.add(CapabilityGrant.issue(self.admin, CLUSTER, a, caps, serial=1)
                            .to_bytes())
            claimed = list(caps)
            if self.rng.random() < 0.3 and "gpu" not in claimed:
                claimed.append("gpu")  # advertised without a grant: placement ignores it
            self.advertised[a] = tuple(sorted(claimed))
        swim = SwimConfig(seeds=(self.agents[0],), period_ms=300, ping_timeout_ms=100,
                          suspicion_alpha=2.0, suspicion_beta=3.0, join_retry_ms=500,
                          reconnect_interval_ms=1500)
        self.agent_config = AgentConfig(swim=swim, sync_interval_ms=400)
        raft = kv_node_factory(RaftConfig(peers=tuple(self.kv), election_timeout_ms=150,
                                          heartbeat_ms=30, snapshot_threshold=256))

        def factory(node_id: str, rng: random.Random) -> Node:
            if node_id in self.kv:
                return raft(node_id, rng)
            return AgentNode(self.identities[node_id], rng, self.roster, self.agent_config,
                             capabilities=self.advertised[node_id],
                             load=float(self.rng.randint(0, 5)))

        net = NetworkConfig(min_latency_ms=1, max_latency_ms=8, drop_rate=0.01,
                            duplicate_rate=0.02, reorder_rate=0.05, reorder_extra_ms=30)
        self.sim = Simulator(factory, self.kv + self.agents, seed=seed, network=net)
        clients = len(self.agents) + len(self.children)
        self.workload = KVWorkload(self.sim, clients=clients, keys=("unused",), seed=seed,
                                   nodes=self.kv, attempt_timeout_ms=200,
                                   op_timeout_ms=1_500, think_ms=(0, 0))
        self.client_of = {a: i for i, a in enumerate(self.agents + self.children)}
        self.runtimes: dict[str, _Runtime] = {a: _Runtime(a, self.client_of[a])
                                              for a in self.agents}
        for rt in self.runtimes.values():
            self._contend(rt, POOL_ROLE, 0)
        self.tasks: list[_Task] = []
        self.fences: dict[str, Fence] = {"task-board": Fence("task-board")}
        self.intervals: list[HolderInterval] = []
        self.left: set[str] = set()
        self.spawned: list[str] = []
        self.stats = {"placements": 0, "acquisitions": 0, "fenced": 0, "tasks_done": 0,
                      "spawn_approved": 0, "spawn_rejected": 0, "crashes": 0,
                      "partitions": 0, "capability_changes": 0, "recorded": 0}

    # -- helpers -----------------------------------------------------------------------
    def node(self, agent: str) -> AgentNode | None:
        n = self.sim.node(agent)
        return n if isinstance(n, AgentNode) else None

    def record(self, agent: str, payload: dict[str, Any]) -> None:
        self.sim.client_request(agent, Record(payload))
        self.stats["recorded"] += 1

    def reaches_kv(self, agent: str) -> bool:
        up = [k for k in self.kv if self.sim.linked(agent, k) and self.sim.linked(k, agent)]
        return len(up) * 2 > len(self.kv)

    def _contend(self, rt: _Runtime, role: str, after: int) -> None:
        rt.leases[role] = RoleLease(rt.agent, role, lease_ms=1500, renew_ms=300,
                                    margin_ms=150)
        rt.start_after[role] = after

    def _close(self, rt: _Runtime, role: str, end: int) -> None:
        start, token = rt.open_since.pop(role)
        self.intervals.append(HolderInterval(role, rt.agent, token, start, end))

    # -- the agent runtime step --------------------------------------------------------
    def step_runtime(self, rt: _Runtime) -> None:
        node = self.node(rt.agent)
        if node is None or rt.agent in self.left:
            return
        local = self.sim.local_time(rt.agent)
        client = self.workload.clients[rt.client]
        results = self.workload.results[client.client_id]
        if rt.pending is not None:
            kind, subject, before = rt.pending
            if len(results) > before:
                rt.pending = None
                self.on_answer(rt, kind, subject, results[-1][1], local)
            elif client.op is None and not client.queue:
                rt.pending = None
                if kind == "lease":
                    rt.leases[subject].on_unanswered(local)
        for role, lease in list(rt.leases.items()):  # beliefs that ran out
            if role in rt.open_since and lease.token(local) is None:
                end = self.sim.now - (local - min(local, lease.valid_until))
                self._close(rt, role, end)
        self.act(rt, node, local)
        if rt.pending is not None or client.op is not None or client.queue:
            return
        if not self.reaches_kv(rt.agent):
            return
        roles = sorted(rt.leases)
        for k in range(len(roles)):  # one KV operation at a time, roles in turn
            role = roles[(rt.rotate + k) % len(roles)]
            if local < rt.start_after.get(role, 0):
                continue
            op = rt.leases[role].next_op(local)
            if op is not None:
                rt.rotate += k + 1
                self.workload.submit(rt.client, op)
                rt.pending = ("lease", role, len(results))
                return
        if rt.wants:
            kind, subject, op = rt.wants.pop(0)
            self.workload.submit(rt.client, op)
            rt.pending = (kind, subject, len(results))

    def on_answer(self, rt: _Runtime, kind: str, subject: str, result: Any,
                  local: int) -> None:
        if kind == "lease":
            change = rt.leases[subject].on_result(result, local)
            if change == "acquired":
                token = rt.leases[subject].token(local)
                if token is not None:
                    rt.open_since[subject] = (self.sim.now, token)
                    self.stats["acquisitions"] += 1
                    self.record(rt.agent, {"type": "role-acquired", "role": subject,
                                           "token": token})
            elif change == "lost" and subject in rt.open_since:
                self._close(rt, subject, self.sim.now)
        elif kind == "decide":
            decision = decide(result)
            if decision is None:
                rt.wants.append(("decide", subject, KVGet(subject)))
                return
            approved = decision.approved
            self.stats["spawn_approved" if approved else "spawn_rejected"] += 1
            self.record(rt.agent, decision.to_payload())
            child = decision.proposal.child
            if approved and child not in self.sim.node_ids:
                self.sim.add_node(child)
                self.spawned.append(child)
                self.runtimes[child] = _Runtime(child, self.client_of[child])
                self._contend(self.runtimes[child], POOL_ROLE, 0)
        elif kind == "propose" and result is True:
            rt.wants.append(("decide", subject, KVGet(subject)))

    def act(self, rt: _Runtime, node: AgentNode, local: int) -> None:
        """What a role holder does now; and voting on proposals it has seen."""
        pool = rt.leases.get(POOL_ROLE)
        token = pool.token(local) if pool is not None else None
        if token is not None:
            for task in self.tasks:
                if task.placed:
                    continue
                candidates = place(node.swim, self.grants, task.required)
                if not candidates:
                    continue
                task.placed = True
                self.stats["placements"] += 1
                self.record(rt.agent, {"type": "placement", "task": task.name,
                                       "required": list(task.required),
                                       "candidates": candidates, "chosen": candidates[0],
                                       "role": POOL_ROLE, "token": token})
                # the placement travels to the task board, which fences it on arrival;
                # a quarter of them are held up on the way (a slow link, a retransmit)
                delay = self.rng.randint(0, 1500)
                if self.rng.random() < 0.25:
                    delay += self.rng.randint(2000, 8000)
                self.sim.schedule(self.sim.now + delay, functools.partial(
                    _deliver_placement, self, task, token, tuple(candidates[:2])))
                break
            backlog = sum(1 for t in self.tasks if not t.done)
            free = [c for c in self.children if c not in self.sim.node_ids
                    and not any(c in p for p in rt.proposals)]
            if backlog >= 3 and free and len(rt.proposals) < 2 and not rt.wants:
                pid = f"{rt.agent}-{len(rt.proposals) + 1}-{local}"
                voters = tuple(m for m in node.swim.alive_members()
                               if "approve-spawn" in self.grants.granted(m))
                if voters:
                    proposal = SpawnProposal(pid, rt.agent, free[0],
                                             f"backlog of {backlog} tasks", voters,
                                             len(voters) // 2 + 1)
                    rt.proposals.append(f"{pid}:{free[0]}")
                    self.record(rt.agent, {"type": "spawn-proposed", "proposal": pid,
                                           "child": free[0], "voters": list(voters),
                                           "quorum": proposal.quorum, "token": token,
                                           "reason": proposal.reason})
                    rt.wants.append(("propose", proposal.key,
                                     KVCas(proposal.key, None, proposal.encode())))
        for role, lease in rt.leases.items():  # coordinators finish their task
            if not role.startswith("coordinator/"):
                continue
            held = lease.token(local)
            if held is None:
                rt.coordinating_since.pop(role, None)
                continue
            since = rt.coordinating_since.setdefault(role, local)
            task = next(t for t in self.tasks if f"coordinator/{t.name}" == role)
            if not task.done and local - since >= 2500:
                try:
                    self.fences[f"task/{task.name}"].admit(held)
                except StaleToken:
                    self.stats["fenced"] += 1
                    continue
                task.done = True
                self.stats["tasks_done"] += 1
                self.record(rt.agent, {"type": "task-done", "task": task.name,
                                       "role": role, "token": held})
        self.vote(rt, node)

    def vote(self, rt: _Runtime, node: AgentNode) -> None:
        ids = list(node.graph)
        for eid in ids[rt.cursor:]:
            payload = node.graph[eid].payload
            if (isinstance(payload, dict) and payload.get("type") == "spawn-proposed"
                    and rt.agent in payload.get("voters", ())
                    and payload["proposal"] not in rt.voted):
                rt.voted.add(payload["proposal"])
                live = len(node.swim.alive_members())
                approve = live < len(self.agents) + 2
                reason = (f"{live} live agents, below the cap of {len(self.agents) + 2}"
                          if approve else f"{live} live agents: at the cap")
                key = "spawn/" + payload["proposal"]
                rt.wants.append(("vote", key,
                                 KVAppend(key, Vote(rt.agent, approve, reason).encode())))
        rt.cursor = len(ids)

    # -- faults and the script ---------------------------------------------------------
    def crash(self, agent: str) -> None:
        rt = self.runtimes.get(agent)
        if rt is None or self.node(agent) is None:
            return
        self.stats["crashes"] += 1
        for role in list(rt.open_since):
            self._close(rt, role, self.sim.now)
        self.sim.crash(agent)

    def restart(self, agent: str) -> None:
        if self.node(agent) is not None or agent in self.left:
            return
        self.sim.restart(agent)
        old = self.runtimes[agent]
        # the KV client may still have the old runtime's operation in flight: wait for it
        pending = None if old.pending is None else ("forgotten", "", old.pending[2])
        fresh = _Runtime(agent, old.client, pending=pending)
        self.runtimes[agent] = fresh
        self._contend(fresh, POOL_ROLE, self.sim.local_time(agent) + 500)

    def script(self) -> list[tuple[int, Callable[[], None]]]:
        rng = self.rng
        out: list[tuple[int, Callable[[], None]]] = []
        for k in range(max(4, self.duration_ms // 1500)):
            at = 1500 + k * 1300 + rng.randint(0, 400)
            req = tuple(sorted({"cpu", rng.choice(("cpu", "gpu", "storage"))}))
            out.append((at, functools.partial(self.add_task, f"task-{k}", req, at)))
        span = self.duration_ms
        for at in sorted(rng.sample(range(3000, span - 3000, 500), 6)):
            kind = rng.choice(["partition", "crash", "caps", "kv-crash", "isolate-leader",
                               "crash"])
            out.append((at, functools.partial(self.fault, kind)))
        out.append((span // 2, functools.partial(self.leave, self.agents[-1])))
        return sorted(out, key=lambda x: x[0])

    def board(self, task: _Task, token: int, coordinators: tuple[str, ...]) -> None:
        """A placement reaches the task board: admitted unless a newer leader's token
        got there first (then the task waits for the current leader)."""
        try:
            self.fences["task-board"].admit(token)
        except StaleToken:
            self.stats["fenced"] += 1
            task.placed = False
            return
        self.fences.setdefault(f"task/{task.name}", Fence(f"task/{task.name}"))
        for rank, who in enumerate(coordinators):
            other = self.runtimes.get(who)
            if other is not None and self.node(who) is not None:
                self._contend(other, f"coordinator/{task.name}",
                              self.sim.local_time(who) + rank * 2500)

    def add_task(self, name: str, required: tuple[str, ...], at: int) -> None:
        self.tasks.append(_Task(name, required, at))

    def fault(self, kind: str) -> None:
        rng = self.rng
        up = [a for a in self.agents + self.spawned if self.node(a) is not None
              and a not in self.left]
        if kind == "partition" and up:
            side = [*rng.sample(up, max(1, len(up) // 2)), self.kv[0]]
            self.sim.partition(side)
            self.stats["partitions"] += 1
            self.sim.schedule(self.sim.now + rng.randint(1500, 4000),
                              lambda s: s.heal())
        elif kind == "crash" and up:
            victim = rng.choice(up)
            self.crash(victim)
            self.sim.schedule(self.sim.now + rng.randint(1000, 4000),
                              functools.partial(_restart_agent, self, victim))
        elif kind == "caps" and up:
            who = rng.choice(up)
            cap = rng.choice(("gpu", "storage"))
            node = self.node(who)
            assert node is not None
            has = cap in (node.swim.member(who) or _NoInfo).capabilities
            cmd = UpdateMetadata(load=float(rng.randint(0, 9)),
                                 remove_capabilities=(cap,) if has else (),
                                 add_capabilities=() if has else (cap,))
            self.sim.client_request(who, cmd)
            self.record(who, {"type": "capabilities", "added": list(cmd.add_capabilities),
                              "removed": list(cmd.remove_capabilities),
                              "load": cmd.load})
            self.stats["capability_changes"] += 1
        elif kind == "isolate-leader":  # the pool leader alone, for a while
            leaders = [a for a in up if (lease := self.runtimes[a].leases.get(POOL_ROLE))
                       is not None and lease.token(self.sim.local_time(a)) is not None]
            if leaders:
                self.sim.partition([leaders[0]])
                self.stats["partitions"] += 1
                self.sim.schedule(self.sim.now + rng.randint(3000, 6000), lambda s: s.heal())
        elif kind == "kv-crash":
            victim = rng.choice(self.kv)
            self.sim.crash(victim)
            self.sim.schedule(self.sim.now + rng.randint(500, 2000),
                              functools.partial(_restart_kv, victim))

    def leave(self, agent: str) -> None:
        if self.node(agent) is None:
            return
        rt = self.runtimes[agent]
        for role in list(rt.open_since):
            self._close(rt, role, self.sim.now)
        self.record(agent, {"type": "leaving"})
        self.sim.client_request(agent, Leave(), delay_ms=200)
        self.left.add(agent)

    # -- the run -----------------------------------------------------------------------
    def run(self, check_timeout_s: float) -> AgentsRun:
        script = self.script()
        self.say(f"agents: {len(self.agents)} agents, KV {'/'.join(self.kv)}, "
                 f"{sum(1 for _ in script)} scripted steps over {self.duration_ms} ms, "
                 f"then {self.end_ms - self.duration_ms} ms to settle")
        t = 0
        next_report = 5000
        while t < self.end_ms:
            t += TICK_MS
            while script and script[0][0] <= t:
                script.pop(0)[1]()
            if t == self.duration_ms:
                self.sim.heal()
                for a in self.agents + self.spawned:
                    self.restart(a)
            self.workload.run_until(t)
            for agent in sorted(self.runtimes):
                self.step_runtime(self.runtimes[agent])
            if t >= next_report:
                next_report += 5000
                self.say(f"  t={t} ms: {self.stats['placements']} placements, "
                         f"{self.stats['acquisitions']} role acquisitions, "
                         f"{self.stats['recorded']} events recorded")
        # anti-entropy until every running agent holds the same graph (bounded)
        deadline = self.end_ms + self.converge_ms
        while not self.converged() and t < deadline:
            t += 100
            self.workload.run_until(t)
            for agent in sorted(self.runtimes):
                self.step_runtime(self.runtimes[agent])
        self.stats["converged_after_ms"] = t - self.end_ms
        for rt in self.runtimes.values():
            for role in list(rt.open_since):
                self._close(rt, role, self.sim.now)
        return self.verdict(check_timeout_s)

    def running(self) -> list[str]:
        return [a for a in sorted(self.runtimes) if a not in self.left
                and self.node(a) is not None]

    def converged(self) -> bool:
        digests = {node.graph.digest() for a in self.running()
                   if (node := self.node(a)) is not None}
        return len(digests) <= 1

    def verdict(self, check_timeout_s: float) -> AgentsRun:
        running = self.running()
        graphs = {a: node.graph for a in running if (node := self.node(a)) is not None}
        digests = {a: g.digest().hex()[:16] for a, g in graphs.items()}
        problems: list[str] = []
        for a, g in graphs.items():
            report = g.verify(signatures=True)
            problems += [f"{a}: {line}" for line in report.describe()]
        audit = self.audit(next(iter(graphs.values()))) if graphs else ["no agent running"]
        self.say(f"agents: checking the KV history ({len(self.workload.history().operations)}"
                 " operations) for linearizability")
        result = check_history(self.workload.history(), timeout=check_timeout_s)
        events = max((len(g) for g in graphs.values()), default=0)
        return AgentsRun(self.seed, tuple(running), events, digests, tuple(problems),
                         tuple(overlaps(self.intervals)), tuple(audit), result.verdict,
                         self.workload.history(), dict(self.stats), self.sim)

    def audit(self, graph: EvidenceGraph) -> list[str]:
        """From one replica: who decided what with which token -- each acquisition
        of a role has its own token, and every fenced action names a token that was
        acquired by the agent that acted."""
        problems = []
        acquired: dict[tuple[str, int], str] = {}
        for event in graph.topological():
            p = event.payload
            if not isinstance(p, dict):
                continue
            if p.get("type") == "role-acquired":
                key = (p["role"], p["token"])
                if key in acquired and acquired[key] != event.author:
                    problems.append(f"{p['role']} token {p['token']} acquired by both "
                                    f"{acquired[key]} and {event.author}")
                acquired[key] = event.author
        for event in graph.topological():
            p = event.payload
            if isinstance(p, dict) and p.get("type") in ("placement", "task-done"):
                who = acquired.get((p["role"], p["token"]))
                if who is not None and who != event.author:
                    problems.append(f"{p['type']} by {event.author} under token "
                                    f"{p['token']} of {who}")
        return problems


def _restart_agent(scenario: _Scenario, agent: str, _sim: Simulator) -> None:
    scenario.restart(agent)


def _deliver_placement(scenario: _Scenario, task: _Task, token: int,
                       coordinators: tuple[str, ...], _sim: Simulator) -> None:
    scenario.board(task, token, coordinators)


def _restart_kv(node: str, sim: Simulator) -> None:
    sim.restart(node)


class _NoInfo:
    capabilities: frozenset[str] = frozenset()


def simulate_agents(seed: int = 0, *, agents: int = 5, duration_ms: int = 30_000,
                    settle_ms: int = 8_000, check_timeout_s: float = 60.0,
                    say: Callable[[str], None] | None = None) -> AgentsRun:
    """Run the scenario (see the module docstring); a pure function of its arguments.
    ``say`` receives progress lines."""
    if agents < 2 or duration_ms < 10_000 or settle_ms < 1_000:
        from vsm_phoenix.errors import InvalidArgument

        raise InvalidArgument("need agents >= 2, duration_ms >= 10000, settle_ms >= 1000")
    scenario = _Scenario(seed, agents, duration_ms, settle_ms, say or (lambda _line: None))
    return scenario.run(check_timeout_s)
