"""SWIM membership at scale, in the simulator with the default settings.

Each measurement is one scenario of issue 14, run side by side where there is a
baseline to compare:

* ``heal``: 20 members split 10/10 for 90 s, then healed; healthy members of the same
  side declared dead by each other after the heal (and the suspicions, refuted, that
  replace those verdicts) over three seeds.
* ``boot``: ``n`` members started at once through one seed: time until every member
  lists every other as alive (50/100/200 members; 50/100 with ``--quick``).
* ``slow_node``: 8 members, one of which sends every message 2 s late, for 300 s:
  suspicions that member raises, and deaths anyone declares, with local health
  awareness off (``health_max=0``) and on (the default).
* ``capabilities_after_restart``: an owner restarts with other capabilities (and after
  removing one, and adding around a restart), with and without its disk: do all
  observers agree with the owner within the detection bound?
* ``reaping``: two of six members crash; after ``reap_after_ms`` the survivors' tables
  hold four rows; a table limit refuses explicitly.
* ``cluster_heal``: 20 :class:`~vsm_phoenix.protocol.cluster.ClusterNode` members
  (SWIM + delta sync) split 10/10 for 90 s while both sides write, healed: the
  ``sync.delta`` messages (full-state and delta) and bytes until quiet.

``python -m bench --only swim [--quick]`` prints the figures (progress per
measurement) and writes the JSON report. Nothing here asserts a time.
"""

from __future__ import annotations

import random
import time
from typing import Any

from bench import progress
from vsm_phoenix.crdt import CRDT, ORSet
from vsm_phoenix.protocol.cluster import ClusterNode
from vsm_phoenix.protocol.node import Effect, Event, Send, SetTimer, TimerFired
from vsm_phoenix.protocol.sim import Simulator
from vsm_phoenix.protocol.swim import SwimConfig, SwimNode, UpdateMetadata
from vsm_phoenix.protocol.sync import Mutate, SyncConfig


def _ids(n: int) -> list[str]:
    width = len(str(n - 1))
    return [f"n{i:0{width}d}" for i in range(n)]


def _swim(sim: Simulator, nid: str) -> SwimNode:
    node = sim.node(nid)
    inner = getattr(node, "inner", node)
    assert isinstance(inner, SwimNode)
    return inner


def _events(sim: Simulator, observer: str) -> list[dict[str, Any]]:
    return [d.payload for d in sim.delivered[observer] if d.kind == "swim.member"]


# -- heal ----------------------------------------------------------------------------
def heal(n: int, seed: int) -> dict[str, Any]:
    ids = _ids(n)
    cfg = SwimConfig(seeds=(ids[0],))
    sim = Simulator(lambda nid, rng: SwimNode(nid, rng, cfg), ids, seed=seed)
    sim.run_until(30_000)
    sides = (ids[: n // 2], ids[n // 2:])
    sim.partition(*sides)
    sim.run_until(120_000)
    sim.heal()
    sim.run_until(180_000)
    deaths = suspicions = 0
    for side in sides:
        for obs in side:
            for e in _events(sim, obs):
                if e["member"] in side and e["at"] >= 120_000:
                    deaths += e["status"] == "dead"
                    suspicions += e["status"] == "suspect"
    agreed = all(_swim(sim, i).alive_members() == sorted(ids) for i in ids)
    return {"seed": seed, "same_side_pairs": 2 * (n // 2) * (n // 2 - 1),
            "same_side_deaths": deaths, "same_side_suspicions": suspicions,
            "agreed_after_60s": agreed}


# -- boot ----------------------------------------------------------------------------
def boot(n: int, seed: int = 1, limit_ms: int = 120_000) -> dict[str, Any]:
    ids = _ids(n)
    cfg = SwimConfig(seeds=(ids[0],))
    sim = Simulator(lambda nid, rng: SwimNode(nid, rng, cfg), ids, seed=seed)
    want = sorted(ids)
    t = 0
    agreed_at = None
    while t < limit_ms:
        t += 500
        sim.run_until(t)
        if all(_swim(sim, i).alive_members() == want for i in ids):
            agreed_at = t
            break
    return {"n": n, "agreed_at_ms": agreed_at, "messages": sim.stats["sent"],
            "bytes": sim.stats["bytes"],
            "push_pulls": sum(_swim(sim, i).push_pulls for i in ids)}


# -- a node whose messages are late ----------------------------------------------------
class Delayed:
    """Wraps a node so that every message it sends leaves ``delay_ms`` late (held in
    timers of its own), e.g. an overloaded host or a congested uplink."""

    def __init__(self, inner: SwimNode, delay_ms: int) -> None:
        self.inner = inner
        self.delay_ms = delay_ms
        self._held: dict[str, Send] = {}
        self._n = 0

    @property
    def node_id(self) -> str:
        return self.inner.node_id

    def step(self, event: Event) -> list[Effect]:
        if isinstance(event, TimerFired) and event.name in self._held:
            return [self._held.pop(event.name)]
        out: list[Effect] = []
        for effect in self.inner.step(event):
            if isinstance(effect, Send):
                self._n += 1
                name = f"delay.{self._n}"
                self._held[name] = effect
                out.append(SetTimer(name, self.delay_ms))
            else:
                out.append(effect)
        return out


def slow_node(health_max: int, seed: int = 1, n: int = 8, delay_ms: int = 2000,
              horizon_ms: int = 300_000) -> dict[str, Any]:
    ids = _ids(n)
    slow = ids[-1]
    cfg = SwimConfig(seeds=(ids[0],), health_max=health_max)

    def factory(nid: str, rng: random.Random) -> Any:
        node = SwimNode(nid, rng, cfg)
        return Delayed(node, delay_ms) if nid == slow else node

    sim = Simulator(factory, ids, seed=seed)
    sim.run_until(10_000)
    before = _swim(sim, slow).suspicions_raised
    sim.run_until(10_000 + horizon_ms)
    deaths = sum(1 for o in ids for e in _events(sim, o)
                 if e["status"] == "dead" and e["at"] >= 10_000)
    return {"health_max": health_max, "delay_ms": delay_ms, "seconds": horizon_ms // 1000,
            "suspicions_by_slow_node": _swim(sim, slow).suspicions_raised - before,
            "deaths_declared": deaths, "slow_node_health": _swim(sim, slow).health}


# -- capabilities after a restart --------------------------------------------------------
def capabilities_after_restart(script: str, disk: bool, seed: int = 1) -> dict[str, Any]:
    caps = {"a": ["gpu"] if script != "add-restart-add" else [], "b": ["gpu"], "c": []}
    cfg = SwimConfig(seeds=("a",))
    sim = Simulator(lambda nid, rng: SwimNode(nid, rng, cfg, capabilities=caps[nid]),
                    ["a", "b", "c"], seed=seed)
    sim.run_until(5000)
    if script == "swap":
        caps["b"] = ["cpu"]
    elif script == "remove-restart":
        sim.client_request("b", UpdateMetadata(remove_capabilities=("gpu",)))
    else:
        sim.client_request("b", UpdateMetadata(add_capabilities=("x",)))
    sim.run_for(3000)
    sim.crash("b")
    sim.run_for(2000)
    if not disk:
        sim.store["b"].clear()
    sim.restart("b")
    restarted = sim.now
    if script == "add-restart-add":
        sim.client_request("b", UpdateMetadata(add_capabilities=("y",)))
    bound = cfg.detection_bound_ms(3)
    agreed_at = None
    while sim.now < restarted + bound:
        sim.run_for(250)
        own = _swim(sim, "b").member("b")
        seen = [_swim(sim, o).member("b") for o in ("a", "c")]
        if own and all(s is not None and s.capabilities == own.capabilities for s in seen):
            agreed_at = sim.now - restarted
            break
    own = _swim(sim, "b").member("b")
    return {"script": script, "disk": disk,
            "owner_advertises": sorted(own.capabilities) if own else None,
            "observers_agree": agreed_at is not None, "agreed_after_ms": agreed_at,
            "bound_ms": bound}


# -- reaping and the table limit ---------------------------------------------------------
def reaping(seed: int = 2) -> dict[str, Any]:
    ids = _ids(6)
    cfg = SwimConfig(seeds=(ids[0],), reap_after_ms=60_000)
    sim = Simulator(lambda nid, rng: SwimNode(nid, rng, cfg), ids, seed=seed)
    sim.run_until(8000)
    sim.crash(ids[4])
    sim.crash(ids[5])
    sim.run_until(8000 + cfg.detection_bound_ms(6))
    rows_dead = len(_swim(sim, ids[0]).view())
    sim.run_until(sim.now + cfg.reap_after_ms + 2 * cfg.period_ms)
    rows_after = [len(_swim(sim, i).view()) for i in ids[:4]]
    small = SwimConfig(seeds=(ids[0],), max_members=3)
    lim = Simulator(lambda nid, rng: SwimNode(nid, rng, small), ids, seed=seed)
    lim.run_until(10_000)
    refused = sum(_swim(lim, i).members_refused for i in ids)
    reports = sum(1 for i in ids for d in lim.delivered[i] if d.kind == "swim.refused")
    return {"rows_when_declared_dead": rows_dead, "rows_after_reap": rows_after,
            "limit_3_refusals_counted": refused, "limit_3_refusals_reported": reports}


# -- SWIM + sync through a heal --------------------------------------------------------------
def cluster_heal(n: int = 20, seed: int = 3) -> dict[str, Any]:
    ids = _ids(n)
    swim_cfg = SwimConfig(seeds=(ids[0],))
    sync_cfg = SyncConfig(interval_ms=5000)

    def factory(nid: str, rng: random.Random) -> ClusterNode:
        replicas: dict[str, CRDT] = {"tasks": ORSet()}
        return ClusterNode(nid, rng, swim=swim_cfg, sync=sync_cfg, replicas=replicas)

    sim = Simulator(factory, ids, seed=seed)
    sim.run_until(20_000)
    sides = (ids[: n // 2], ids[n // 2:])
    sim.partition(*sides)
    for k, nid in enumerate(ids):
        sim.client_request(nid, Mutate("tasks", lambda s, nid=nid, k=k: s.add(nid, f"t{k}")),
                           delay_ms=1000 + 100 * k)
    sim.run_until(110_000)
    def sends() -> tuple[int, int]:
        nodes = [sim.node(i) for i in ids]
        return (sum(x.sync.full_sends for x in nodes if isinstance(x, ClusterNode)),
                sum(x.sync.delta_sends for x in nodes if isinstance(x, ClusterNode)))

    full0, delta0 = sends()
    sim.heal()
    mark = len(sim.trace)
    sim.run_until(170_000)
    full1, delta1 = sends()
    sync_bytes = sum(e["bytes"] for e in sim.trace[mark:]
                     if e["k"] == "send" and e["type"].startswith("sync."))
    nodes = [sim.node(i) for i in ids]
    first = nodes[0]
    assert isinstance(first, ClusterNode)
    converged = all(isinstance(x, ClusterNode) and x.sync.replicas == first.sync.replicas
                    for x in nodes)
    deaths = sum(1 for side in sides for o in side for e in _events(sim, o)
                 if e["member"] in side and e["status"] == "dead" and e["at"] >= 110_000)
    return {"n": n, "cut_pairs": 2 * len(sides[0]) * len(sides[1]),
            "same_side_deaths_after_heal": deaths,
            "full_state_messages_after_heal": full1 - full0,
            "delta_messages_after_heal": delta1 - delta0,
            "sync_bytes_after_heal": sync_bytes,
            "converged": converged}


def run(quick: bool = False) -> dict[str, Any]:
    """All scenarios; ``quick`` boots 50 and 100 members only, and heals one seed."""
    t0 = time.perf_counter()
    heal_seeds = [0] if quick else [0, 1, 2]
    boots = [50, 100] if quick else [50, 100, 200]
    scripts = [("swap", True), ("swap", False), ("remove-restart", True),
               ("remove-restart", False), ("add-restart-add", True),
               ("add-restart-add", False)]
    progress.plan(len(heal_seeds) + len(boots) + 2 + len(scripts) + 2)
    heals = []
    for seed in heal_seeds:
        progress.step(f"heal 10/10 of 20, seed {seed}")
        heals.append(heal(20, seed))
    booted = []
    for n in boots:
        progress.step(f"boot {n} members at once")
        booted.append(boot(n))
    slow = []
    for hm in (0, 8):
        progress.step(f"one member 2 s late for 300 s, health_max={hm}")
        slow.append(slow_node(hm))
    caps = []
    for script, disk in scripts:
        progress.step(f"capabilities after restart: {script}, disk={disk}")
        caps.append(capabilities_after_restart(script, disk))
    progress.step("reaping and the table limit")
    reaped = reaping()
    progress.step("cluster (SWIM + sync) heal 10/10 of 20")
    cheal = cluster_heal()
    worst_boot = max((b["agreed_at_ms"] or 10**9) for b in booted if b["n"] == max(boots))
    return {
        "benchmark": "swim_membership_at_scale",
        "heal": heals,
        "heal_same_side_deaths_max": max(h["same_side_deaths"] for h in heals),
        "meets_target_heal_no_deaths": all(h["same_side_deaths"] == 0 for h in heals),
        "boot": booted,
        f"boot_{max(boots)}_agreed_at_ms": worst_boot,
        "meets_target_boot_200_within_15s": max(boots) == 200 and worst_boot <= 15_000,
        "slow_node": slow,
        "meets_target_slow_node_suspicions_le_100": slow[1]["suspicions_by_slow_node"] <= 100,
        "capabilities_after_restart": caps,
        "meets_target_capabilities_agree": all(c["observers_agree"] for c in caps),
        "reaping": reaped,
        "cluster_heal": cheal,
        "seconds": round(time.perf_counter() - t0, 1),
    }
