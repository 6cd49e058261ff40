"""The replicated state of a distributed GEPA run, as one join-semilattice.

:class:`EvolutionState` composes three lattices of the core (ARCHITECTURE.md,
"compose lattices"):

==============  =========  ============================================================
part            lattice    elements
==============  =========  ============================================================
evaluations     ``GSet``   ``(candidate id, instance key, evaluator, record)``: every
                           metric call anyone made (the shared evaluation cache, and
                           on validation instances the score matrix)
pool            ``GSet``   ``(candidate id, record)``: content-addressed candidates
                           with their parents (grow-only lineage)
budget          ``GCounter``  metric calls spent, one count per replica id (the
                           spending sync node's history, see :meth:`spend`)
==============  =========  ============================================================

The join is the join of the parts, so the lattice laws hold because they hold for
``GSet`` and ``GCounter``; the tests check them again on this type.

**Conflicting evaluations.** Two nodes that evaluate the same key concurrently (a
partition, or a nondeterministic model) both add a record; the set keeps both. The
*resolved* evaluation of a key is a deterministic function of the set: the record with
the **lowest score**, ties broken by the smaller canonical record bytes. Every replica
that holds the same records resolves the same one, and a key's resolved score can only
go down as records arrive -- a conservative reading that never deploys a prompt on a
lucky sample.

**The frontier** (:meth:`EvolutionState.frontier`) is derived, never stored: for the
candidates whose resolved scores cover every validation instance, the per-instance
Pareto frontier as GEPA computes it (the candidates with the best score on each
instance), and the best candidate by mean validation score (ties: smaller id). It is a
function of the state alone, so replicas that have merged the same updates derive the
same frontier.

Mutators apply locally and return the delta to ship (``s | delta == mutated s``).
Decoding (``from_bytes``) validates every record and every candidate id against its
texts (``DecodeError``); the indexes are rebuilt from the validated elements.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Self

import attrs

from vsm_phoenix.crdt import CRDT, GCounter, GSet
from vsm_phoenix.crdt._domain import atom_key, atom_to_wire
from vsm_phoenix.errors import DecodeError, InvalidArgument, TypeMismatch
from vsm_phoenix.ext.gepa.records import (
    CandidateId,
    EvalKey,
    Evaluation,
    candidate_id,
    check_candidate,
    decode_candidate,
    decode_evaluation,
    encode_candidate,
    encode_evaluation,
)

__all__ = ["EvolutionState", "Frontier"]

_Key = tuple[bytes, str, str]


@attrs.frozen
class Frontier:
    """What every replica derives from the same state (see the module docstring).

    ``scores``: candidate id -> per-instance resolved scores (in ``instances`` order),
    for the *complete* candidates only. ``per_instance``: for each instance, the best
    score and the ids reaching it. ``members``: the union of those ids (sorted).
    ``best``: the id with the highest mean score (``None`` when no candidate is
    complete), ``best_score`` its mean.
    """

    instances: tuple[str, ...]
    scores: Mapping[CandidateId, tuple[float, ...]]
    per_instance: tuple[tuple[float, tuple[CandidateId, ...]], ...]
    members: tuple[CandidateId, ...]
    best: CandidateId | None
    best_score: float | None

    def mean(self, cid: CandidateId) -> float:
        """Mean validation score of a complete candidate."""
        row = self.scores[cid]
        return sum(row) / len(row)


class EvolutionState(CRDT):
    """Shared evaluations, candidate pool and metric-call budget (see module doc)."""

    TAG = "gepa.state"
    __slots__ = ("_budget", "_by_key", "_cands", "_evals", "_parents", "_parsed", "_pool",
                 "_records", "_sortkey")

    def __init__(self) -> None:
        self._evals = GSet()
        self._pool = GSet()
        self._budget = GCounter()
        # Indexes over the elements (not state; rebuilt on decode). Every element is
        # parsed once per replica: joins hand the parsed record over with the element.
        self._parsed: dict[Any, Any] = {}  # element -> Evaluation | (texts, parents)
        self._sortkey: dict[Any, bytes] = {}  # element -> its canonical sort key
        self._by_key: dict[_Key, tuple[float, bytes, Evaluation]] = {}
        self._records: dict[_Key, int] = {}
        self._cands: dict[CandidateId, dict[str, str]] = {}
        self._parents: dict[CandidateId, set[CandidateId]] = {}

    @classmethod
    def _raw(cls, evals: dict[Any, Evaluation], pool: dict[Any, Any], budget: GCounter
             ) -> Self:
        """Build from validated elements with their parsed records."""
        obj = cls()
        for e, ev in evals.items():
            obj._add_eval(e, ev)
        for p, parsed in pool.items():
            obj._add_candidate(p, parsed)
        obj._budget = budget
        return obj

    # -- indexes -------------------------------------------------------------------------

    def _add_eval(self, element: Any, ev: Evaluation) -> None:
        """Insert a validated evaluation element (no-op if present)."""
        if element in self._evals:
            return
        self._evals.add(element)
        self._parsed[element] = ev
        self._sortkey[element] = atom_key(element)
        cid, inst, evaluator, raw = element
        key = (cid, inst, evaluator)
        rank = (ev.score, raw)
        self._records[key] = self._records.get(key, 0) + 1
        cur = self._by_key.get(key)
        if cur is None or rank < cur[:2]:
            self._by_key[key] = (ev.score, raw, ev)

    def _add_candidate(self, element: Any, parsed: tuple[dict[str, str], frozenset[bytes]]
                       ) -> None:
        if element in self._pool:
            return
        self._pool.add(element)
        self._parsed[element] = parsed
        self._sortkey[element] = atom_key(element)
        cid = element[0]
        comps, parents = parsed
        self._cands[cid] = comps
        self._parents.setdefault(cid, set()).update(parents)

    @staticmethod
    def _parse_eval_element(e: Any) -> Evaluation:
        if not (type(e) is tuple and len(e) == 4):
            raise DecodeError("an evaluation element is (candidate, instance, evaluator, record)")
        cid, inst, evaluator, raw = e
        if type(raw) is not bytes:
            raise DecodeError("an evaluation record is bytes")
        try:
            EvalKey(cid, inst, evaluator)
        except (TypeError, ValueError) as exc:
            raise DecodeError(f"invalid evaluation key: {exc}") from None
        return decode_evaluation(raw)

    @staticmethod
    def _parse_pool_element(e: Any) -> tuple[dict[str, str], frozenset[bytes]]:
        if not (type(e) is tuple and len(e) == 2 and type(e[0]) is bytes and type(e[1]) is bytes):
            raise DecodeError("a pool element is (candidate id, record)")
        comps, parents = decode_candidate(e[1])
        if candidate_id(comps) != e[0]:
            raise DecodeError("candidate id does not match its texts")
        return comps, parents

    # -- mutators (return the delta) -----------------------------------------------------

    def record(self, key: EvalKey, evaluation: Evaluation) -> EvolutionState:
        """Add one metric call's result under ``key``; returns the delta."""
        if not isinstance(key, EvalKey) or not isinstance(evaluation, Evaluation):
            raise TypeMismatch("record takes an EvalKey and an Evaluation")
        element = (*key.to_atom(), encode_evaluation(evaluation))
        ev = decode_evaluation(element[3])  # the record as every replica will read it
        self._add_eval(element, ev)
        return EvolutionState._raw({element: ev}, {}, GCounter())

    def add_candidate(
        self, candidate: Mapping[str, str], parents: Iterable[CandidateId] = ()
    ) -> EvolutionState:
        """Add a candidate (its texts and parents) to the pool; returns the delta."""
        comps = check_candidate(candidate)
        ps = frozenset(parents)
        element = (candidate_id(comps), encode_candidate(comps, ps))
        self._add_candidate(element, (comps, ps))
        return EvolutionState._raw({}, {element: (comps, ps)}, GCounter())

    def spend(self, replica_id: str, calls: int) -> EvolutionState:
        """Count ``calls`` metric calls against ``replica_id``; returns the delta. Pass
        the spending node's :attr:`~vsm_phoenix.protocol.sync.SyncNode.replica_id`
        (the history it names), never a bare node id: a ``GCounter`` entry only grows,
        so an incarnation restarted without its disk that counted again from zero
        under the old id would have its calls hidden by the old, higher count."""
        return EvolutionState._raw({}, {}, self._budget.increment(replica_id, calls))

    # -- queries -------------------------------------------------------------------------

    def resolved(self, key: EvalKey) -> Evaluation | None:
        """The resolved evaluation of ``key`` (lowest score, then smaller bytes)."""
        hit = self._by_key.get(key.to_atom())
        return None if hit is None else hit[2]

    def records_for(self, key: EvalKey) -> int:
        """How many distinct records ``key`` holds (more than one: it was evaluated
        more than once, or by a nondeterministic model)."""
        return self._records.get(key.to_atom(), 0)

    def evaluation_keys(self) -> list[EvalKey]:
        """Every evaluated key, sorted."""
        return sorted(EvalKey(*k) for k in self._by_key)

    @property
    def evaluation_count(self) -> int:
        """Distinct evaluation records (metric calls whose results are shared)."""
        return len(self._evals)

    @property
    def key_count(self) -> int:
        """Distinct evaluated keys."""
        return len(self._by_key)

    def candidate(self, cid: CandidateId) -> dict[str, str] | None:
        texts = self._cands.get(cid)
        return None if texts is None else dict(texts)

    def parents(self, cid: CandidateId) -> frozenset[CandidateId]:
        return frozenset(self._parents.get(cid, ()))

    def candidate_ids(self) -> list[CandidateId]:
        """Pool members, parents before children, otherwise by id. Lineage from outside
        may claim a cycle; its members come last, by id."""
        indeg = dict.fromkeys(self._cands, 0)
        children: dict[CandidateId, list[CandidateId]] = {}
        for c in self._cands:
            for p in self._parents.get(c, ()):
                if p in self._cands and p != c:
                    indeg[c] += 1
                    children.setdefault(p, []).append(c)
        ready = [c for c, n in indeg.items() if n == 0]
        heapq.heapify(ready)
        order: list[CandidateId] = []
        while ready:
            c = heapq.heappop(ready)
            order.append(c)
            for ch in children.get(c, ()):
                indeg[ch] -= 1
                if indeg[ch] == 0:
                    heapq.heappush(ready, ch)
        placed = set(order)
        return order + sorted(c for c in self._cands if c not in placed)

    @property
    def budget_spent(self) -> int:
        return self._budget.value

    def spent_by(self, replica_id: str) -> int:
        """Metric calls counted under ``replica_id`` (see :meth:`spend`)."""
        return self._budget.count_of(replica_id)

    def spenders(self) -> dict[str, int]:
        """Every replica id that spent, with its count."""
        return self._budget.counts

    def frontier(self, instances: Sequence[str], evaluator: str) -> Frontier:
        """The Pareto frontier over ``instances`` (see the module docstring)."""
        insts = tuple(instances)
        if not insts or len(set(insts)) != len(insts):
            raise InvalidArgument("instances must be non-empty and distinct")
        scores: dict[CandidateId, tuple[float, ...]] = {}
        for cid in sorted(self._cands):
            row: list[float] = []
            for inst in insts:
                hit = self._by_key.get((cid, inst, evaluator))
                if hit is None:
                    break
                row.append(hit[0])
            else:
                scores[cid] = tuple(row)
        per: list[tuple[float, tuple[CandidateId, ...]]] = []
        members: set[CandidateId] = set()
        for j in range(len(insts)):
            if not scores:
                break
            top = max(r[j] for r in scores.values())
            ids = tuple(c for c, r in scores.items() if r[j] == top)
            per.append((top, ids))
            members.update(ids)
        best: CandidateId | None = None
        best_score: float | None = None
        for cid, srow in scores.items():  # sorted by id: the first of equal means wins
            m = sum(srow) / len(srow)
            if best_score is None or m > best_score:
                best, best_score = cid, m
        return Frontier(insts, scores, tuple(per), tuple(sorted(members)), best, best_score)

    @property
    def value(self) -> dict[str, Any]:
        return {
            "evaluations": self.evaluation_count,
            "candidates": len(self._cands),
            "budget": self._budget.value,
        }

    # -- CRDT plumbing -------------------------------------------------------------------

    def _join_into(self, other: Self) -> None:
        for e in other._evals.value:
            if e not in self._evals:
                self._add_eval(e, other._parsed[e])
        for p in other._pool.value:
            if p not in self._pool:
                self._add_candidate(p, other._parsed[p])
        self._budget |= other._budget

    def _leq(self, other: Self) -> bool:
        return (self._evals <= other._evals and self._pool <= other._pool
                and self._budget <= other._budget)

    def _eq_state(self, other: Self) -> bool:
        return (self._evals == other._evals and self._pool == other._pool
                and self._budget == other._budget)

    def copy(self) -> Self:
        obj = type(self)()
        obj._evals, obj._pool = self._evals.copy(), self._pool.copy()
        obj._budget = self._budget.copy()
        obj._parsed = dict(self._parsed)
        obj._sortkey = dict(self._sortkey)
        obj._by_key = dict(self._by_key)
        obj._records = dict(self._records)
        obj._cands = dict(self._cands)
        obj._parents = {k: set(v) for k, v in self._parents.items()}
        return obj

    def _encode_state(self) -> Any:
        # Layout (format 1): [evaluations gset, pool gset, budget gcounter] -- exactly
        # the GSet layout (elements in canonical order), with the sort keys cached.
        key = self._sortkey.__getitem__
        return [[atom_to_wire(e) for e in sorted(self._evals.value, key=key)],
                [atom_to_wire(e) for e in sorted(self._pool.value, key=key)],
                self._budget._encode_state()]

    @classmethod
    def _from_state(cls, state: Any) -> Self:
        if not (isinstance(state, list) and len(state) == 3):
            raise ValueError("expected [evaluations, pool, budget]")
        evals = GSet._from_state(state[0])
        pool = GSet._from_state(state[1])
        budget = GCounter._from_state(state[2])
        parsed_evals = {e: cls._parse_eval_element(e) for e in evals.value}
        parsed_pool = {p: cls._parse_pool_element(p) for p in pool.value}
        return cls._raw(parsed_evals, parsed_pool, budget)
