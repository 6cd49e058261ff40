"""Raft's safety properties, checked over live nodes: :func:`check_invariants` for one
global state (the model checker's invariant) and :class:`RaftMonitor` across time (the
simulator's)."""

from __future__ import annotations

from collections.abc import Iterable

from vsm_phoenix.protocol.raft.config import Role
from vsm_phoenix.protocol.raft.log import Entry
from vsm_phoenix.protocol.raft.node import RaftNode

__all__ = ["RaftMonitor", "check_invariants"]


def _entries(node: RaftNode) -> dict[int, Entry]:
    return {node.snap_index + 1 + k: e for k, e in enumerate(node.log)}


def check_invariants(nodes: Iterable[RaftNode]) -> list[str]:
    """Raft's safety properties over one global state; returns violations (empty: ok).

    * election safety — at most one leader per term;
    * log matching — two logs holding an entry with the same index and term agree on
      every entry up to it (compared where both still hold entries);
    * leader completeness — a leader of term ``T`` holds every entry that a node whose
      term is below ``T`` knows to be committed;
    * state-machine safety — nodes agree on the entry at every index both committed;
    * log order — within each log, entry terms never decrease (from the snapshot's
      term on) and never exceed the node's current term.
    """
    live = list(nodes)
    problems: list[str] = []
    for n in live:
        last = n.snap_term
        for k, e in enumerate(n.log):
            if not last <= e.term <= n.term:
                problems.append(f"log order: {n.node_id} holds term {e.term} at "
                                f"{n.snap_index + 1 + k} after term {last} (its term {n.term})")
                break
            last = e.term
    leaders: dict[int, str] = {}
    for n in live:
        if n.role is Role.LEADER:
            other = leaders.setdefault(n.term, n.node_id)
            if other != n.node_id:
                problems.append(f"election safety: {other} and {n.node_id} lead term {n.term}")
    logs = {n.node_id: _entries(n) for n in live}
    for i, a in enumerate(live):
        la = logs[a.node_id]
        for b in live[i + 1 :]:
            lb = logs[b.node_id]
            common = sorted(set(la) & set(lb))
            agree_from: int | None = None
            for idx in reversed(common):
                if la[idx].term == lb[idx].term:
                    agree_from = idx
                    break
            if agree_from is not None:
                for idx in common:
                    if idx > agree_from:
                        break
                    if la[idx] != lb[idx]:
                        problems.append(
                            f"log matching: {a.node_id} and {b.node_id} agree at "
                            f"{agree_from} but differ at {idx}"
                        )
                        break
            upto = min(a.commit_index, b.commit_index)
            for idx in common:
                if idx > upto:
                    break
                if la[idx] != lb[idx]:
                    problems.append(
                        f"state-machine safety: {a.node_id} and {b.node_id} committed "
                        f"different entries at {idx}"
                    )
                    break
    for lead in live:
        if lead.role is not Role.LEADER:
            continue
        for n in live:
            if n.term >= lead.term:
                continue
            for idx, e in logs[n.node_id].items():
                if idx > n.commit_index:
                    break
                if idx <= lead.snap_index:
                    continue
                mine = lead.entry(idx)
                if mine != e:
                    problems.append(
                        f"leader completeness: leader {lead.node_id} (term {lead.term}) "
                        f"lacks entry {idx} committed at {n.node_id}"
                    )
                    break
    return problems


class RaftMonitor:
    """Checks Raft's safety properties *across time*: feed it the live nodes after
    every step (or periodically). It remembers the leader of every term and every
    committed entry ever observed, so violations by nodes that later crashed or were
    overwritten are still caught. ``violations`` lists them (first ones first)."""

    def __init__(self) -> None:
        self.leaders: dict[int, str] = {}
        self.committed: dict[int, Entry] = {}
        self.violations: list[str] = []
        self._checked: dict[str, tuple[int, int]] = {}  # node -> (object id, index)

    def observe(self, nodes: Iterable[RaftNode]) -> list[str]:
        live = list(nodes)
        found = check_invariants(live)
        for n in live:
            if n.role is Role.LEADER:
                prev = self.leaders.setdefault(n.term, n.node_id)
                if prev != n.node_id:
                    found.append(f"election safety: {prev} and {n.node_id} led term {n.term}")
            # Committed entries never change, so each node object is checked once per index.
            ident, done = self._checked.get(n.node_id, (0, 0))
            if ident != id(n) or done > n.commit_index:
                done = 0
            for idx in range(max(n.snap_index, done) + 1, n.commit_index + 1):
                e = n.entry(idx)
                if e is None:
                    break
                seen = self.committed.setdefault(idx, e)
                if seen.term != e.term or seen.data != e.data:
                    found.append(
                        f"state-machine safety: {n.node_id} committed term {e.term} at {idx}, "
                        f"earlier term {seen.term} was committed there"
                    )
                done = idx
            self._checked[n.node_id] = (id(n), done)
        for text in found:
            if text not in self.violations:
                self.violations.append(text)
        return found
