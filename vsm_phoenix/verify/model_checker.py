"""An explicit-state model checker for clusters of real sans-IO nodes.

Theory of operation
-------------------
A *cluster state* is: the local state of every node (the real
:class:`~vsm_phoenix.protocol.node.Node` object, its pending timers and — when crashes
are modelled — its durable store), the messages in flight (each addressed to one
node), which scripted client requests are still unsent, and how much of each fault
budget (drops, duplicates, timer firings, crashes) the path has used.

From a state the checker enumerates every *action*:

* **deliver** one in-flight message to its recipient (``Receive``);
* **drop** it (while the drop budget lasts);
* **duplicate** it, adding a copy (while the duplicate budget lasts);
* **fire** any pending timer of any node (``TimerFired``);
* **submit** an unsent scripted client request to any allowed node (``ClientRequest``);
* **crash** a node (while the crash budget lasts): its memory and timers are lost and
  a fresh node from the factory boots with ``Restart`` and what its ``Persist``
  effects wrote; messages in flight to it stay in flight.

Each action steps one node and carries out its effects: ``Send`` puts a message in
flight (a topic message: one per other node), ``SetTimer``/``CancelTimer`` edit the
pending set, ``Persist`` writes the store (only kept when crashes are modelled),
``Deliver`` is shown in the trace. A node raising ``DecodeError`` rejects the input and
stays as it was (node contract); any other exception is reported as a violation of the
built-in invariant ``"node-raised"``, with the trace that led there.

The network is a multiset by default (``network="multiset"``): delivering a message
consumes it. ``network="set"`` is Stateright's unordered *duplicating* network and
the message set of TLA+ specifications: a sent message stays deliverable for ever,
any number of times (every duplication at no budget), and sending it again changes
nothing. Drops remove a message; duplicates make no sense there.

The search is breadth-first, so the first violation found has a **shortest** trace
(fewest actions). Every new state is checked against every invariant; states at
``max_depth`` are checked but not expanded. The result says whether the reachable
space was *exhausted* (no unexplored state left within the bounds) and up to which
depth every state was checked (``depth_complete``). A time budget (``timeout_s``) or a
memory budget in bytes (``max_memory``, measured as the process's RSS) stops the
search early with a reason, never with an exception.

How states are stored: interning and memoized local steps
---------------------------------------------------------
The checker never copies or hashes a whole cluster. Every distinct *local* state (node
key, pending timers, store) is interned once: it gets a small integer id and one node
object that stands for it. Every distinct in-flight message (recipient and
``message_key``) is interned the same way. A cluster state is then a tuple of small
integers — one local-state id per node, the sorted ids of the messages in flight (a
multiset), the unsent requests (a bit mask) and the budgets used — so hashing it
costs a few machine words however large the nodes are, and the visited set holds
these exact tuples: no fingerprint can collide.

A step is local: (local state, event) → (new local state, messages sent). Nodes are
deterministic and a node's key determines its future behaviour (the assumption that
already lets two paths share a state), so each local step is computed once — copy
the stand-in node with ``copy_node``, step the copy, intern the result — and memoized;
the same step in every other interleaving is a dictionary lookup. With ``now``
depending on the depth, the memo holds one depth at a time. Stored node objects are
never mutated.

Traces are one parent link and one action per state, rebuilt on demand by replaying
the actions on fresh nodes from the initial state: a counterexample is a real
execution, each step with the effects it had. If the replay does not reach the same
local states — a ``node_key`` that leaves out something the node's behaviour depends
on — the checker raises :class:`ReplayDivergedError` instead of reporting a trace it
cannot stand behind.

Abstract time (an over-approximation)
-------------------------------------
Delays are ignored: a pending timer may fire at any point, before or after any
message delivery, and messages are delivered in any order. Every real execution is
therefore among the explored ones, but so are executions no real clock allows (a
300 ms timer firing before a 10 ms one, a heartbeat timeout while heartbeats flow).
A property proved here holds for every timing; a violation found here may need a
timing that cannot happen — read the trace. Events carry ``now`` from the ``now``
option: a constant (default 0) or a function of the depth.

What a state *is*
-----------------
Two paths reaching the same state are explored once. The key of a local state is
``node_key(node)`` — by default the node's own ``state_key()`` method, which must return
a hashable value covering everything that influences the node's future behaviour
(nodes without one need an explicit ``node_key``) — with its timers (and store). A
message's key is ``message_key(envelope)`` — by default the message type, sender,
recipient, topic, hop limit, causal context and the decoded payload, **without** the
message id, correlation id and HLC timestamp (random or time-derived labels).

Whatever a key leaves out is treated as irrelevant: merging two states that differ
only there is sound exactly when the omitted parts cannot change what the nodes do
next. Keep message ids, random draws and clocks out of keys only if the protocol uses
them as labels, not for decisions.

Symmetry reduction
------------------
``symmetry`` declares groups of interchangeable nodes (``True``: all nodes form one
group); see :mod:`vsm_phoenix.verify.symmetry` for the canonical keys (one
permutation per state chosen by signatures, not all ``n!``) and what makes them sound.
The explored representative states are real: a counterexample is a concrete
execution. Symmetry cannot be combined with crashes (stores are bytes, which cannot
be renamed).
"""

from __future__ import annotations

import sys
import time
from collections import deque
from collections.abc import (
    Callable,
    Hashable,
    Iterator,
    Mapping,
    Sequence,
)
from typing import Any, Final, TextIO

import attrs

from vsm_phoenix.errors import InvalidArgument, TypeMismatch
from vsm_phoenix.protocol.envelope import Envelope
from vsm_phoenix.protocol.node import (
    Node,
    NodeFactory,
    Start,
)
from vsm_phoenix.verify.budget import MEMORY, Budget
from vsm_phoenix.verify.copying import deepcopy_node
from vsm_phoenix.verify.local_steps import (
    _CRASH,
    _DELIVER,
    _DROP,
    _DUP,
    _REQUEST,
    _TIMER,
    LocalSteps,
    Network,
    _Action,
    _Raised,
    _Result,
    _State,
)
from vsm_phoenix.verify.mc_replay import replay
from vsm_phoenix.verify.mc_values import (
    DEPTH_BOUND,
    STATE_BOUND,
    ClusterView,
    Counterexample,
    Invariant,
    ModelCheckerError,
    ModelCheckResult,
    ReplayDivergedError,
    Request,
    Step,
    default_message_key,
    node_state_key,
)
from vsm_phoenix.verify.symmetry import Canonicalizer, freeze

__all__ = [
    "DEPTH_BOUND",
    "STATE_BOUND",
    "ClusterView",
    "Counterexample",
    "Invariant",
    "ModelCheckResult",
    "ModelChecker",
    "ModelCheckerError",
    "ReplayDivergedError",
    "Request",
    "Step",
    "check_model",
    "deepcopy_node",
    "default_message_key",
    "freeze",
]

_K: Final = 1 << 40  # memo key: local id * _K + event code


class _StopSearch(Exception):
    def __init__(self, idx: int, action: _Action, exc: BaseException) -> None:
        super().__init__(str(exc))
        self.idx = idx
        self.action = action
        self.exc = exc


def _check_budget(name: str, value: object) -> int:
    if type(value) is not int:
        raise TypeMismatch(f"{name} must be an int, got {type(value).__name__}")
    if value < 0:
        raise InvalidArgument(f"{name} must be >= 0, got {value}")
    return value


def _check_optional_budget(name: str, value: object) -> int | None:
    return None if value is None else _check_budget(name, value)


class ModelChecker(LocalSteps):
    """Breadth-first exploration of a cluster of ``factory``-built nodes.

    ``node_ids`` name the nodes (each built with ``random.Random(f"{seed}/{id}")`` and
    started with ``Start`` in list order). ``invariants`` maps names to
    :data:`Invariant` callables checked in every state; ``quiescent_invariants`` only in
    states with no message in flight. ``requests`` are scripted client requests. The
    budgets bound faults per path: ``max_drops``, ``max_duplicates`` and
    ``max_crashes`` (default 0), ``max_timer_fires`` (default ``None``: unbounded).
    ``max_depth`` bounds path length and ``max_states`` the number of distinct states;
    ``timeout_s`` (seconds) and ``max_memory`` (bytes of RSS) bound the run (any of
    these makes ``exhausted`` false when it cuts the search). ``network`` is
    ``"multiset"`` or ``"set"`` (see the module docstring). ``symmetry`` is ``False``,
    ``True`` (all nodes interchangeable) or a sequence of groups of node ids.
    ``progress`` (``True`` for stderr, or a stream) prints states/s, depth and frontier
    every ``progress_interval_s`` seconds. ``prefix`` scripts the first actions as
    ``(kind, node, text)`` triples (see :meth:`_follow_prefix`); the search, its depth
    bound and its budgets start after it (the prefix's own faults are not charged).
    ``memoize=False`` steps a fresh copy for every transition (for measuring what the
    memo saves, and for nodes whose key is known not to determine their behaviour).
    """

    def __init__(
        self,
        factory: NodeFactory,
        node_ids: Sequence[str],
        *,
        invariants: Mapping[str, Invariant] | None = None,
        quiescent_invariants: Mapping[str, Invariant] | None = None,
        requests: Sequence[Request] = (),
        max_depth: int = 20,
        max_states: int | None = None,
        max_drops: int = 0,
        max_duplicates: int = 0,
        max_timer_fires: int | None = None,
        max_crashes: int = 0,
        network: Network = "multiset",
        symmetry: bool | Sequence[Sequence[str]] = False,
        node_key: Callable[[Node], Hashable] | None = None,
        message_key: Callable[[Envelope], Hashable] | None = None,
        copy_node: Callable[[Node], Node] | None = None,
        now: int | Callable[[int], int] = 0,
        seed: int = 0,
        timeout_s: float | None = None,
        max_memory: int | None = None,
        memoize: bool = True,
        progress: bool | TextIO = False,
        progress_interval_s: float = 1.0,
        prefix: Sequence[tuple[str, str, str]] = (),
    ) -> None:
        if not callable(factory):
            raise TypeMismatch("factory must be callable(node_id, rng) -> Node")
        if isinstance(node_ids, str) or not isinstance(node_ids, Sequence):
            raise TypeMismatch("node_ids must be a sequence of str")
        ids = list(node_ids)
        if not ids:
            raise InvalidArgument("need at least one node")
        for nid in ids:
            if not isinstance(nid, str):
                raise TypeMismatch(f"node ids must be str, got {type(nid).__name__}")
            if not nid:
                raise InvalidArgument("node ids must be non-empty")
        if len(set(ids)) != len(ids):
            raise InvalidArgument(f"duplicate node ids in {ids!r}")
        self.node_ids: tuple[str, ...] = tuple(ids)
        self._index = {nid: i for i, nid in enumerate(ids)}
        self.invariants = self._check_invariants(invariants, "invariants")
        self.quiescent_invariants = self._check_invariants(
            quiescent_invariants, "quiescent_invariants"
        )
        # (name, invariant, verdicts by local-state ids for those that read only nodes)
        self._checks: list[tuple[str, Invariant, dict[Any, Any]]] = [
            (name, fn, {}) for name, fn in self.invariants.items()]
        self._all_checks = self._checks + [
            (name, fn, {}) for name, fn in self.quiescent_invariants.items()]
        self.requests = self._check_requests(requests)
        self.max_depth = _check_budget("max_depth", max_depth)
        self.max_states = _check_optional_budget("max_states", max_states)
        if self.max_states == 0:
            raise InvalidArgument("max_states must be positive")
        self.max_drops = _check_budget("max_drops", max_drops)
        self.max_duplicates = _check_budget("max_duplicates", max_duplicates)
        self.max_timer_fires = _check_optional_budget("max_timer_fires", max_timer_fires)
        self.max_crashes = _check_budget("max_crashes", max_crashes)
        if network not in ("multiset", "set"):
            raise InvalidArgument(f"network must be 'multiset' or 'set', got {network!r}")
        if network == "set" and self.max_duplicates:
            raise InvalidArgument("a set network duplicates every message already")
        self.groups = self._check_symmetry(symmetry)
        self.symmetry = bool(self.groups)
        for name, fn in (("node_key", node_key), ("message_key", message_key),
                         ("copy_node", copy_node)):
            if fn is not None and not callable(fn):
                raise TypeMismatch(f"{name} must be callable")
        if isinstance(now, bool) or not (isinstance(now, int) or callable(now)):
            raise TypeMismatch("now must be an int or callable(depth) -> int")
        if isinstance(now, int) and now < 0:
            raise InvalidArgument("now must be >= 0")
        self._now = now
        if type(seed) is not int:
            raise TypeMismatch("seed must be an int")
        if timeout_s is not None and (isinstance(timeout_s, bool)
                                      or not isinstance(timeout_s, int | float)):
            raise TypeMismatch("timeout_s must be a number of seconds or None")
        if timeout_s is not None and not 0 < timeout_s < float("inf"):
            raise InvalidArgument(f"timeout_s must be a finite number > 0, got {timeout_s!r}")
        self.timeout_s = timeout_s
        if max_memory is not None and (type(max_memory) is not int or max_memory < 1):
            raise InvalidArgument(f"max_memory must be a positive int (bytes), got {max_memory!r}")
        self.max_memory = max_memory
        if not isinstance(memoize, bool):
            raise TypeMismatch("memoize must be a bool")
        self.memoize = memoize
        if progress is True:
            self._progress: TextIO | None = sys.stderr
        elif progress is False:
            self._progress = None
        elif hasattr(progress, "write"):
            self._progress = progress
        else:
            raise TypeMismatch("progress must be a bool or a text stream")
        if isinstance(progress_interval_s, bool) or not isinstance(
                progress_interval_s, int | float) or not progress_interval_s > 0:
            raise InvalidArgument("progress_interval_s must be a positive number")
        self.progress_interval_s = float(progress_interval_s)
        if isinstance(prefix, str) or not isinstance(prefix, Sequence):
            raise TypeMismatch("prefix must be a sequence of (kind, node, text) triples")
        for item in prefix:
            if not (isinstance(item, tuple) and len(item) == 3
                    and all(isinstance(x, str) for x in item)):
                raise TypeMismatch(f"prefix step {item!r} is not a (kind, node, text) triple")
        self.prefix = tuple(prefix)
        track_store = self.max_crashes > 0
        if self.symmetry and track_store:
            raise InvalidArgument("symmetry reduction cannot be combined with crashes")
        LocalSteps.__init__(
            self, factory, self.node_ids, self.requests,
            node_key=node_key or node_state_key,
            message_key=message_key or default_message_key,
            copy_node=copy_node or deepcopy_node,
            network=network, seed=seed, symmetry=self.symmetry, track_store=track_store,
        )
        self._root_prefix: list[_Action] = []
        self._memo: dict[int, _Result] = {}
        self._memo_now: int | None = None
        # Canonical keys by raw (locals, net): the same raw state recurs on many paths.
        self._canon_of: dict[tuple[tuple[int, ...], Any], tuple[Hashable, ...]] = {}
        self._canon = (
            Canonicalizer(self.node_ids, [tuple(self._index[n] for n in g) for g in self.groups],
                          self._local_part, self._message_part)
            if self.symmetry else None
        )

    # -- validation ------------------------------------------------------------------
    @staticmethod
    def _check_invariants(
        invariants: Mapping[str, Invariant] | None, what: str
    ) -> dict[str, Invariant]:
        if invariants is None:
            return {}
        if not isinstance(invariants, Mapping):
            raise TypeMismatch(f"{what} must be a mapping name -> callable")
        out: dict[str, Invariant] = {}
        for name, fn in invariants.items():
            if not isinstance(name, str) or not name:
                raise TypeMismatch(f"{what}: names must be non-empty str")
            if not callable(fn):
                raise TypeMismatch(f"{what}[{name!r}] is not callable")
            out[name] = fn
        return out

    def _check_requests(self, requests: Sequence[Request]) -> tuple[Request, ...]:
        if isinstance(requests, str | bytes) or not isinstance(requests, Sequence):
            raise TypeMismatch("requests must be a sequence of Request")
        out = []
        for i, r in enumerate(requests):
            if not isinstance(r, Request):
                raise TypeMismatch(f"requests[{i}] is not a Request")
            if r.targets is not None:
                unknown = [t for t in r.targets if t not in self.node_ids]
                if unknown or not r.targets:
                    raise InvalidArgument(f"requests[{i}] targets unknown nodes {unknown!r}")
            if r.request_id is None:
                r = attrs.evolve(r, request_id=f"req-{i}")
            out.append(r)
        ids = [r.request_id for r in out]
        if len(set(ids)) != len(ids):
            raise InvalidArgument("request ids must be distinct")
        if len(out) > 62:
            raise InvalidArgument("at most 62 scripted requests")
        return tuple(out)

    def _check_symmetry(self, symmetry: object) -> list[tuple[str, ...]]:
        if symmetry is False:
            return []
        if symmetry is True:
            groups = [self.node_ids]
        elif isinstance(symmetry, str | bytes) or not isinstance(symmetry, Sequence) or any(
                isinstance(g, str | bytes) or not isinstance(g, Sequence) for g in symmetry):
            raise TypeMismatch("symmetry must be a bool or a sequence of groups of node ids")
        else:
            groups = [tuple(g) for g in symmetry]
        seen: set[str] = set()
        for g in groups:
            if len(g) < 2:
                raise InvalidArgument(f"a symmetry group needs at least two nodes: {g!r}")
            for nid in g:
                if nid not in self._index:
                    raise InvalidArgument(f"symmetry group names unknown node {nid!r}")
                if nid in seen:
                    raise InvalidArgument(f"node {nid!r} is in two symmetry groups")
                seen.add(nid)
        for i, r in enumerate(self.requests):
            if r.targets is None:
                continue
            for g in groups:
                inside = set(r.targets) & set(g)
                if inside and inside != set(g):
                    raise InvalidArgument(
                        f"requests[{i}] targets part of the symmetry group {g!r}; symmetry "
                        "reduction needs requests that target whole groups"
                    )
        return groups

    # -- transitions -----------------------------------------------------------------
    def _time(self, depth: int) -> int:
        return self._now(depth) if callable(self._now) else self._now

    def _successors(self, s: _State, now: int) -> Iterator[tuple[_State, int, int, Any]]:
        """Every action enabled in ``s``: (next state, kind, node position, argument).
        Raises _StopSearch when a node raised."""
        locals_, net, pending, budget = s
        drops, dups, fires, crashes = budget
        is_set = self.network == "set"
        msgs = self._msgs
        memo = self._memo if self.memoize else {}
        if now != self._memo_now:
            memo.clear()
            self._memo_now = now
        local_step = self._local_step
        K = _K
        for m in self._net_ids(net) if is_set else sorted(set(net)):
            dst = msgs[m].dst
            lid = locals_[dst]
            code = m << 2
            res = memo.get(lid * K + code)
            if res is None:
                res = memo[lid * K + code] = local_step(lid, code, now)
            if isinstance(res, _Raised):
                raise _StopSearch(-1, (_DELIVER, dst, m), res.exc)
            new_lid, sends = res
            if is_set:
                if new_lid == lid and not sends & ~net:
                    yield s, _DELIVER, dst, m  # a self-loop
                else:
                    yield ((*locals_[:dst], new_lid, *locals_[dst + 1:]), net | sends, pending,
                           budget), _DELIVER, dst, m
                if drops < self.max_drops:
                    yield ((locals_, net & ~(1 << m), pending,
                            (drops + 1, dups, fires, crashes)), _DROP, dst, m)
                continue
            pos = net.index(m)
            rest = net[:pos] + net[pos + 1:]
            after = tuple(sorted(rest + sends)) if sends else rest
            yield ((*locals_[:dst], new_lid, *locals_[dst + 1:]), after, pending, budget), \
                _DELIVER, dst, m
            if drops < self.max_drops:
                yield (locals_, rest, pending, (drops + 1, dups, fires, crashes)), _DROP, dst, m
            if dups < self.max_duplicates:
                yield ((locals_, (*net[:pos], m, *net[pos:]), pending,
                        (drops, dups + 1, fires, crashes)), _DUP, dst, m)
        if self.max_timer_fires is None or fires < self.max_timer_fires:
            # Count firings only when bounded: the count is part of the state.
            fired = (drops, dups, fires + (self.max_timer_fires is not None), crashes)
            for i, lid in enumerate(locals_):
                timers = self._locals[lid].timers
                if not timers:
                    continue
                for name in sorted(timers):
                    code = self._timer_code(name)
                    res = memo.get(lid * K + code)
                    if res is None:
                        res = memo[lid * K + code] = local_step(lid, code, now)
                    if isinstance(res, _Raised):
                        raise _StopSearch(-1, (_TIMER, i, name), res.exc)
                    new_lid, sends = res
                    yield ((*locals_[:i], new_lid, *locals_[i + 1:]), self._join(net, sends),
                           pending, fired), _TIMER, i, name
        if pending:
            for r, req in enumerate(self.requests):
                if not pending >> r & 1:
                    continue
                rest_pending = pending & ~(1 << r)
                targets = req.targets if req.targets is not None else self.node_ids
                code = 4 * r + 2
                for t in targets:
                    i = self._index[t]
                    lid = locals_[i]
                    res = memo.get(lid * K + code)
                    if res is None:
                        res = memo[lid * K + code] = local_step(lid, code, now)
                    if isinstance(res, _Raised):
                        raise _StopSearch(-1, (_REQUEST, i, r), res.exc)
                    new_lid, sends = res
                    yield ((*locals_[:i], new_lid, *locals_[i + 1:]), self._join(net, sends),
                           rest_pending, budget), _REQUEST, i, r
        if crashes < self.max_crashes:
            crashed = (drops, dups, fires, crashes + 1)
            code = 4 * crashes + 3
            for i, lid in enumerate(locals_):
                res = memo.get(lid * K + code)
                if res is None:
                    res = memo[lid * K + code] = local_step(lid, code, now)
                if isinstance(res, _Raised):
                    raise _StopSearch(-1, (_CRASH, i, None), res.exc)
                new_lid, sends = res
                yield ((*locals_[:i], new_lid, *locals_[i + 1:]), self._join(net, sends),
                       pending, crashed), _CRASH, i, None

    def _has_successor(self, s: _State) -> bool:
        locals_, net, pending, budget = s
        if net or pending or budget[3] < self.max_crashes:
            return True
        if self.max_timer_fires is not None and budget[2] >= self.max_timer_fires:
            return False
        return any(self._locals[lid].timers for lid in locals_)

    def _key(self, s: _State) -> Hashable:
        if self._canon is None:
            return s
        locals_, net, pending, budget = s
        raw = (locals_, net)
        key = self._canon_of.get(raw)
        if key is None:
            key = self._canon_of[raw] = self._canon.key(locals_, self._net_ids(net))
        return (*key, pending, budget)

    # -- invariants ------------------------------------------------------------------
    def _view(self, s: _State) -> ClusterView:
        locals_, net, _pending, _budget = s
        ids = self.node_ids
        nodes = {ids[i]: self._locals[lid].node for i, lid in enumerate(locals_)}

        def flight() -> list[tuple[str, Envelope, int]]:
            out: list[tuple[str, Envelope, int]] = []
            mids = self._net_ids(net)
            for m in sorted(set(mids)):
                msg = self._msgs[m]
                out.append((ids[msg.dst], msg.env, mids.count(m)))
            return out

        def timers() -> dict[str, frozenset[str]]:
            return {ids[i]: self._locals[lid].timers for i, lid in enumerate(locals_)}

        return ClusterView(nodes, flight, timers)

    def _violation(self, s: _State) -> tuple[str, str] | None:
        view: ClusterView | None = None
        locals_ = s[0]
        checks = self._checks if s[1] or not self.quiescent_invariants else self._all_checks
        for name, fn, cache in checks:
            found = cache.get(locals_, cache)
            if found is not cache:
                if found is None:
                    continue
                return found  # type: ignore[no-any-return]
            if view is None:
                view = self._view(s)
            view.read_network = False
            bad = self._judge(name, fn, view)
            if not view.read_network:
                cache[locals_] = bad
            if bad is not None:
                return bad
        return None

    @staticmethod
    def _judge(name: str, fn: Invariant, view: ClusterView) -> tuple[str, str] | None:
        try:
            verdict = fn(view)
        except AssertionError as exc:
            return name, str(exc) or "assertion failed"
        except Exception as exc:
            return name, f"invariant raised {type(exc).__name__}: {exc}"
        if verdict is None or verdict is True:
            return None
        if verdict is False:
            return name, "returned False"
        if isinstance(verdict, str):
            return (name, verdict) if verdict else None
        if isinstance(verdict, list | tuple):
            return (name, "; ".join(map(str, verdict))) if verdict else None
        return name, f"invariant returned {verdict!r} (expected None, bool, str or list)"

    def _final_state(self, s: _State) -> tuple[str, ...]:
        out = []
        locals_, net, _pending, _budget = s
        for nid, lid in zip(self.node_ids, locals_, strict=True):
            loc = self._locals[lid]
            describe = getattr(loc.node, "describe", None)
            if callable(describe):
                text = str(describe())
            elif type(loc.node).__repr__ is not object.__repr__:
                text = repr(loc.node)
            else:
                text = repr(loc.key)
            if len(text) > 300:
                text = text[:299] + "…"
            out.append(f"{nid}: {text}  timers={sorted(loc.timers)}")
        mids = self._net_ids(net)
        for m in sorted(set(mids)):
            msg = self._msgs[m]
            c = mids.count(m)
            times = f" ×{c}" if c > 1 else ""
            out.append(f"in flight to {self.node_ids[msg.dst]}: {msg.env.type} from "
                       f"{msg.env.sender}{times}")
        return tuple(out)

    # -- the initial state and the prefix --------------------------------------------
    def _initial(self) -> _State:
        now = self._time(0)
        locals_: list[int] = []
        net: Any = self._no_sends
        for i in range(len(self.node_ids)):
            node = self._build(i)
            timers: set[str] = set()
            store: dict[str, bytes] | None = {} if self._track_store else None
            try:
                effects = node.step(Start(now))
                sends = self._carry_out(i, effects, timers, store)
            except Exception as exc:
                raise ModelCheckerError(
                    f"node {self.node_ids[i]} raised at Start: {type(exc).__name__}: {exc}"
                ) from exc
            frozen = frozenset(store.items()) if store is not None else None
            locals_.append(self._intern_local(i, self._nkey(node), node, frozenset(timers),
                                              frozen))
            mids = [self._intern_msg(j, env) for j, env in sends]
            if self.network == "set":
                for m in mids:
                    net |= 1 << m
            else:
                net = tuple(sorted(net + tuple(mids)))
        return (tuple(locals_), net, (1 << len(self.requests)) - 1, (0, 0, 0, 0))


    def _follow_prefix(self, s: _State) -> tuple[_State, list[_Action]]:
        """Replay the scripted ``prefix``: at each item take the first action whose kind
        and node match and whose description contains the text. The search starts from
        the state reached (depth 0 again, budgets unused): *guided* model checking, for
        bugs deeper than an exhaustive search from the initial state can reach."""
        actions: list[_Action] = []
        budgets = (self.max_drops, self.max_duplicates, self.max_timer_fires, self.max_crashes)
        free = len(self.prefix)
        self.max_drops, self.max_timer_fires = free, None
        self.max_duplicates = 0 if self.network == "set" else free
        self.max_crashes = free if self._track_store else 0
        try:
            for n, (kind, node, text) in enumerate(self.prefix, 1):
                for succ, *act in self._successors(s, self._time(n - 1)):
                    action = (act[0], act[1], act[2])
                    k, nid, detail = self.describe_action(action)
                    if k == kind and nid == node and text in detail:
                        actions.append(action)
                        s = succ
                        break
                else:
                    raise InvalidArgument(
                        f"prefix step {n} {(kind, node, text)!r} matches no enabled action"
                    )
        except _StopSearch as exc:
            raise ModelCheckerError(f"a node raised while following the prefix: {exc.exc!r}"
                                    ) from exc.exc
        finally:
            (self.max_drops, self.max_duplicates, self.max_timer_fires,
             self.max_crashes) = budgets
        return (s[0], s[1], s[2], (0, 0, 0, 0)), actions

    # -- the search ------------------------------------------------------------------
    def run(self) -> ModelCheckResult:
        """Explore breadth-first; stop at the first violation (shortest trace)."""
        started = time.perf_counter()
        budget = Budget.of(self.timeout_s, self.max_memory)
        bounded = budget.bounded
        init, prefix = self._follow_prefix(self._initial())
        self._root_prefix = prefix
        seen: dict[Hashable, int] = {self._key(init): 0}
        parents: list[int] = [-1]
        actions: list[_Action | None] = [None]
        states: list[_State | None] = [init]
        transitions = 0
        frontier: deque[tuple[int, int]] = deque([(0, 0)])  # (state index, depth)
        depth = depth_complete = 0
        last_report = started
        cut: str = ""
        frozen = False  # depth_complete stops growing once states were skipped

        def result(cx: Counterexample | None, reason: str) -> ModelCheckResult:
            elapsed = time.perf_counter() - started
            res = ModelCheckResult(cx, len(seen), transitions, depth,
                                   cx is None and not reason, elapsed, reason, depth_complete)
            if self._progress is not None:
                print(f"model checker: {res.summary()}", file=self._progress, flush=True)
            return res

        def trace_of(idx: int) -> list[_Action]:
            path: list[_Action] = []
            while idx > 0:
                a = actions[idx]
                assert a is not None
                path.append(a)
                idx = parents[idx]
            return prefix + path[::-1]

        bad = self._violation(init)
        if bad is not None:
            return result(self._counterexample(bad, trace_of(0), init), "")
        level = 0
        while frontier:
            idx, d = frontier.popleft()
            if d > level:
                level = d
                if not frozen:
                    depth_complete = d  # every state of depth <= d is generated and checked
            if d > depth:
                depth = d
            if bounded:
                stop = budget.tick()
                if stop:
                    cut = stop
                    break
            s = states[idx]
            assert s is not None
            if d >= self.max_depth:
                if not cut and self._has_successor(s):
                    cut = DEPTH_BOUND
                continue
            now = self._time(d)
            try:
                for succ, kind, i, arg in self._successors(s, now):
                    transitions += 1
                    if succ is s:  # a self-loop (a set network's redundant delivery)
                        continue
                    key = self._key(succ)
                    if key in seen:
                        continue
                    if self.max_states is not None and len(seen) >= self.max_states:
                        cut, frozen = STATE_BOUND, True
                        continue
                    new_idx = len(states)
                    seen[key] = new_idx
                    parents.append(idx)
                    actions.append((kind, i, arg))
                    states.append(succ)
                    bad = self._violation(succ)
                    if bad is not None:
                        depth = d + 1
                        return result(self._counterexample(bad, trace_of(new_idx), succ), "")
                    frontier.append((new_idx, d + 1))
            except _StopSearch as exc:
                depth = d + 1
                path = [*trace_of(idx), exc.action]
                message = f"{type(exc.exc).__name__}: {exc.exc}"
                return result(self._counterexample(("node-raised", message), path, s,
                                                   raised=True), "")
            except MemoryError:  # the budget was set too high, or none: still no verdict
                self._memo.clear()
                frontier.clear()
                cut = MEMORY
                break
            states[idx] = None  # expanded: only its key (in seen) stays
            if self._progress is not None:
                t = time.perf_counter()
                if t - last_report >= self.progress_interval_s:
                    last_report = t
                    print(
                        f"model checker: depth {d}, {len(seen)} states, frontier "
                        f"{len(frontier)}, {len(seen) / (t - started):,.0f} states/s, "
                        f"{len(self._locals)} local states",
                        file=self._progress, flush=True,
                    )
        if not frozen:
            depth_complete = depth
        return result(None, cut)

    # -- traces ------------------------------------------------------------------------
    def _counterexample(self, bad: tuple[str, str], path: list[_Action], final: _State,
                        raised: bool = False) -> Counterexample:
        prefix = len(self._root_prefix)
        times = [self._time(n if n < prefix else n - prefix) for n in range(len(path))]
        steps = replay(self, path, final, raised, self._time(0), times)
        return Counterexample(bad[0], bad[1], tuple(steps), self._final_state(final))


def check_model(factory: NodeFactory, node_ids: Sequence[str], **options: Any) -> ModelCheckResult:
    """``ModelChecker(factory, node_ids, **options).run()``."""
    return ModelChecker(factory, node_ids, **options).run()
