"""An explicit-state model checker for clusters of real sans-IO nodes.

Theory of operation
-------------------
A *cluster state* is: every node (the real :class:`~vsm_phoenix.protocol.node.Node`
object), the multiset of messages in flight (each addressed to one node), the set of
pending timer names per node, which scripted client requests are still unsent, and
how much of each fault budget (drops, duplicates, timer firings) the path has used.

From a state the checker enumerates every *action*:

* **deliver** one in-flight copy of a message to its recipient (``Receive``);
* **drop** one copy (while the drop budget lasts);
* **duplicate** one message, adding a copy (while the duplicate budget lasts);
* **fire** any pending timer of any node (``TimerFired``);
* **submit** an unsent scripted client request to any allowed node (``ClientRequest``).

Each action steps one node — a copy of it, so the parent state is never modified —
and carries out its effects: ``Send`` adds copies to the network (a topic message
reaches every other node), ``SetTimer``/``CancelTimer`` edit the pending set,
``Deliver`` is shown in the trace, ``Persist`` is ignored (no crashes are modelled).
A node raising ``DecodeError`` rejects the input and stays as it was (node contract);
any other exception is reported as a violation of the built-in invariant
``"node-raised"``, with the trace that led there.

The search is breadth-first, so the first violation found has a **shortest** trace
(fewest actions). Every new state is checked against every invariant; states at
``max_depth`` are checked but not expanded. The result says whether the reachable
space was *exhausted* (no unexplored state left within the bound).

Abstract time (an over-approximation)
-------------------------------------
Delays are ignored: a pending timer may fire at any point, before or after any
message delivery, and messages are delivered in any order. Every real execution is
therefore among the explored ones, but so are executions no real clock allows (a
300 ms timer firing before a 10 ms one, a heartbeat timeout while heartbeats flow).
A property proved here holds for every timing; a violation found here may need a
timing that cannot happen — read the trace. Events carry ``now`` from the ``now``
option: a constant (default 0) or a function of the depth.

State hashing and what a state *is*
-----------------------------------
Two paths reaching the same state are explored once. The state key is built from

* ``node_key(node)`` per node — by default the node's own ``state_key()`` method, which
  must return a hashable value covering everything that influences the node's future
  behaviour (nodes without one need an explicit ``node_key``);
* ``message_key(envelope)`` per in-flight copy — by default the message type, sender,
  recipient, topic, hop limit, causal context and the decoded payload, **without** the
  message id, correlation id and HLC timestamp (random or time-derived labels);
* the pending timers, unsent requests and used budgets.

Whatever a key leaves out is treated as irrelevant: merging two states that differ
only there is sound exactly when the omitted parts cannot change what the nodes do
next. Keep message ids, random draws and clocks out of keys only if the protocol uses
them as labels, not for decisions.

Copying nodes
-------------
Stored states are never mutated. Before stepping, the node is copied with
``copy_node`` — by default :func:`deepcopy_node`, a ``copy.deepcopy`` that also copies the
node's injected ``random.Random`` (so the copy continues the same random sequence;
generators are copied by state, which is much faster than deepcopy's walk); a node can
be faster to copy through a method of its own (``copy_node=lambda n: n.snapshot()``).

Symmetry reduction
------------------
With ``symmetry=True`` states that differ only by a permutation of node ids are
explored once: the key is canonicalised as the minimum over all permutations of the
renamed key (n! permutations; meant for n ≤ 5). It is **sound only when** (1) every
node runs the same code built by one factory, whose behaviour does not depend on the
identity or order of ids (no "lowest id wins" tie-breaks); (2) every invariant is
symmetric; (3) scripted requests may go to any node (no ``targets``); and (4) node
ids occur in keys only as whole ``str`` values (not inside bytes) and no other string
in a key equals a node id (renaming would change data). Keys are normalised for
renaming: lists and tuples become tuples, sets become frozensets, dicts become
frozensets of items. The explored representative states are real: the trace of a
counterexample is a concrete execution.
"""

from __future__ import annotations

import copy
import itertools
import random
import sys
import time
from collections import deque
from collections.abc import Callable, Hashable, Iterator, Mapping, Sequence
from typing import Any, TextIO

import attrs

from vsm_phoenix.errors import DecodeError
from vsm_phoenix.protocol.envelope import Envelope, decode_cbor
from vsm_phoenix.protocol.node import (
    CancelTimer,
    ClientRequest,
    Deliver,
    Effect,
    Event,
    Node,
    NodeFactory,
    Persist,
    Receive,
    Send,
    SetTimer,
    Start,
    TimerFired,
)

__all__ = [
    "ClusterView",
    "Counterexample",
    "Invariant",
    "ModelCheckResult",
    "ModelChecker",
    "Request",
    "Step",
    "check_model",
    "deepcopy_node",
    "default_message_key",
    "freeze",
]

#: An invariant sees the cluster and returns ``None``/``True`` (holds), ``False`` or a
#: non-empty message / list of messages (violated); raising ``AssertionError`` also
#: reports a violation.
Invariant = Callable[["ClusterView"], Any]

#: Most permutations symmetry reduction will try (8! = 40320).
MAX_SYMMETRY_NODES = 8


# -- public value types --------------------------------------------------------------
@attrs.frozen
class Request:
    """A scripted client request that may be submitted once, at any point.

    ``targets`` restricts which nodes may receive it (``None``: any node). The request
    id defaults to ``"req-<index>"``.
    """

    payload: Any
    request_id: str | None = None
    targets: tuple[str, ...] | None = attrs.field(
        default=None, converter=attrs.converters.optional(tuple)
    )


@attrs.frozen
class Step:
    """One action of a trace and what it caused.

    ``kind`` is ``"deliver"``, ``"drop"``, ``"duplicate"``, ``"timer"`` or ``"request"``;
    ``node`` is the node that acted (the recipient, for network actions).
    """

    kind: str
    node: str
    detail: str
    effects: tuple[str, ...] = ()

    def __str__(self) -> str:
        head = f"{self.kind:<9} {self.node:<6} {self.detail}"
        if not self.effects:
            return head
        return head + "".join(f"\n{'':16}→ {e}" for e in self.effects)


@attrs.frozen
class Counterexample:
    """A shortest path from the initial state to a state violating ``invariant``."""

    invariant: str
    message: str
    steps: tuple[Step, ...]
    final_state: tuple[str, ...] = ()

    def render(self) -> str:
        """The trace as numbered lines, readable as a story of the run."""
        lines = [
            f"invariant {self.invariant!r} violated after {len(self.steps)} step(s): "
            f"{self.message}"
        ]
        if not self.steps:
            lines.append("  (in the initial state)")
        width = len(str(len(self.steps)))
        for i, step in enumerate(self.steps, 1):
            lines.append(f"  {i:>{width}}. {step}")
        if self.final_state:
            lines.append("  final state:")
            lines.extend(f"    {s}" for s in self.final_state)
        return "\n".join(lines)

    __str__ = render


@attrs.frozen
class ModelCheckResult:
    """What a run found. ``exhausted`` means every reachable state (within the budgets)
    was explored: the invariants hold in all of them, not just up to ``max_depth``."""

    counterexample: Counterexample | None
    states: int
    transitions: int
    depth: int
    exhausted: bool
    elapsed_s: float

    @property
    def ok(self) -> bool:
        return self.counterexample is None

    @property
    def states_per_second(self) -> float:
        return self.states / self.elapsed_s if self.elapsed_s > 0 else float(self.states)

    def summary(self) -> str:
        verdict = "ok" if self.ok else f"VIOLATION of {self.counterexample.invariant!r}"  # type: ignore[union-attr]
        scope = "exhausted" if self.exhausted else f"bounded at depth {self.depth}"
        return (
            f"{verdict}: {self.states} states, {self.transitions} transitions, {scope}, "
            f"{self.elapsed_s:.2f} s ({self.states_per_second:,.0f} states/s)"
        )

    def __str__(self) -> str:
        if self.counterexample is None:
            return self.summary()
        return self.summary() + "\n" + self.counterexample.render()


class ClusterView(Mapping[str, Node]):
    """What an invariant sees: a read-only mapping ``node id -> node`` plus the network.

    ``in_flight`` lists ``(recipient, envelope, copies)``; ``timers`` maps each node id
    to its pending timer names. Invariants must not modify the nodes.
    """

    __slots__ = ("_nodes", "in_flight", "timers")

    def __init__(
        self,
        nodes: dict[str, Node],
        in_flight: list[tuple[str, Envelope, int]],
        timers: dict[str, frozenset[str]],
    ) -> None:
        self._nodes = nodes
        self.in_flight = in_flight
        self.timers = timers

    def __getitem__(self, key: str) -> Node:
        return self._nodes[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._nodes)

    def __len__(self) -> int:
        return len(self._nodes)

    @property
    def quiescent(self) -> bool:
        """No message in flight."""
        return not self.in_flight


# -- keys ----------------------------------------------------------------------------
def freeze(value: Any) -> Hashable:
    """A hashable, order-free normal form: lists/tuples → tuples, sets → frozensets,
    dicts → frozensets of ``(key, value)``; atoms unchanged. Raises ``TypeError`` for
    an unhashable value it does not know how to normalise."""
    if isinstance(value, str | bytes | int | float | type(None)):
        return value
    if isinstance(value, tuple | list):
        return tuple(freeze(v) for v in value)
    if isinstance(value, set | frozenset):
        return frozenset(freeze(v) for v in value)
    if isinstance(value, dict):
        return frozenset((freeze(k), freeze(v)) for k, v in value.items())
    hash(value)  # raises TypeError when unhashable
    return value  # type: ignore[no-any-return]


def default_message_key(envelope: Envelope) -> Hashable:
    """Everything of an envelope except its message id, correlation id and timestamp;
    the payload decoded from CBOR (so node ids in it can be renamed) when possible."""
    try:
        body: Hashable = freeze(decode_cbor(envelope.payload))
    except (DecodeError, TypeError):
        body = envelope.payload
    return (
        envelope.type,
        envelope.sender,
        envelope.recipient,
        envelope.topic,
        envelope.hop_limit,
        envelope.causal_context,
        body,
    )


def _rename(value: Any, names: Mapping[str, str]) -> Any:
    if isinstance(value, str):
        return names.get(value, value)
    if isinstance(value, tuple):
        return tuple(_rename(v, names) for v in value)
    if isinstance(value, frozenset):
        return frozenset(_rename(v, names) for v in value)
    return value


def _node_state_key(node: Node) -> Hashable:
    method = getattr(node, "state_key", None)
    if method is None or not callable(method):
        raise TypeError(
            f"{type(node).__name__} has no state_key() method; pass node_key=... to say "
            "what of a node's state matters"
        )
    return method()  # type: ignore[no-any-return]


def _attributes(obj: Any) -> Iterator[tuple[str, Any]]:
    d = getattr(obj, "__dict__", None)
    if isinstance(d, dict):
        yield from d.items()
    for cls in type(obj).__mro__:
        for name in getattr(cls, "__slots__", ()):
            if isinstance(name, str) and hasattr(obj, name):
                yield name, getattr(obj, name)


_PLAIN = (type, str, bytes, int, float, tuple, list, dict, set, frozenset, type(None))
_RNG_PATHS: dict[type, list[tuple[str, ...]]] = {}


def _rng_paths(node: Any) -> list[tuple[str, ...]]:
    """Attribute paths (depth ≤ 2) at which ``node`` holds ``random.Random`` objects;
    found once per node class."""
    paths = _RNG_PATHS.get(type(node))
    if paths is None:
        paths = []
        for name, value in _attributes(node):
            if isinstance(value, random.Random):
                paths.append((name,))
            elif not isinstance(value, _PLAIN):
                for inner, v in _attributes(value):
                    if isinstance(v, random.Random):
                        paths.append((name, inner))
        _RNG_PATHS[type(node)] = paths
    return paths


def deepcopy_node(node: Node) -> Node:
    """``copy.deepcopy`` of a node, with its ``random.Random`` generators (attributes of
    the node or of its attributes) copied by state first: a plain deepcopy walks the
    generator's 625-word state one integer at a time, which is most of the cost of
    copying a small node."""
    memo: dict[int, Any] = {}
    for path in _rng_paths(node):
        value: Any = node
        for name in path:
            value = getattr(value, name, None)
        if isinstance(value, random.Random) and id(value) not in memo:
            memo[id(value)] = copy.copy(value)  # shares the immutable state tuple
    return copy.deepcopy(node, memo)


def _describe_payload(envelope: Envelope, limit: int = 160) -> str:
    try:
        text = repr(decode_cbor(envelope.payload))
    except DecodeError:
        text = envelope.payload.hex()
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _describe_effect(effect: Effect) -> str | None:
    if isinstance(effect, Send):
        env = effect.envelope
        to = env.recipient if env.recipient is not None else f"topic {env.topic}"
        return f"send {env.type} to {to} {_describe_payload(env)}"
    if isinstance(effect, Deliver):
        rid = f" [{effect.request_id}]" if effect.request_id is not None else ""
        text = repr(effect.payload)
        if len(text) > 160:
            text = text[:159] + "…"
        return f"deliver {effect.kind}{rid} {text}"
    return None  # timers and persistence are shown in the state, not in the story


# -- internal state ------------------------------------------------------------------
class _State:
    """One cluster state. Never mutated once stored (copy on write)."""

    __slots__ = ("budget", "depth", "net", "node_keys", "nodes", "pending", "timers")

    def __init__(
        self,
        nodes: tuple[Node, ...],
        node_keys: tuple[Hashable, ...],
        timers: tuple[frozenset[str], ...],
        net: dict[tuple[int, Hashable], tuple[Envelope, int]],
        pending: frozenset[int],
        budget: tuple[int, int, int],
        depth: int,
    ) -> None:
        self.nodes = nodes
        self.node_keys = node_keys
        self.timers = timers
        self.net = net  # (recipient index, message key) -> (envelope, copies)
        self.pending = pending
        self.budget = budget  # (drops, duplicates, timer firings) used
        self.depth = depth


class _NodeRaised(Exception):
    def __init__(self, step: Step, exc: BaseException) -> None:
        super().__init__(str(exc))
        self.step = step
        self.exc = exc


def _check_budget(name: str, value: object) -> int:
    if type(value) is not int:
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if value < 0:
        raise ValueError(f"{name} must be >= 0, got {value}")
    return value


def _check_optional_budget(name: str, value: object) -> int | None:
    return None if value is None else _check_budget(name, value)


class ModelChecker:
    """Breadth-first exploration of a cluster of ``factory``-built nodes.

    ``node_ids`` name the nodes (each built with ``random.Random(f"{seed}/{id}")`` and
    started with ``Start`` in list order). ``invariants`` maps names to
    :data:`Invariant` callables checked in every state; ``quiescent_invariants`` only in
    states with no message in flight. ``requests`` are scripted client requests. The
    budgets bound faults per path: ``max_drops`` and ``max_duplicates`` (default 0),
    ``max_timer_fires`` (default ``None``: unbounded). ``max_depth`` bounds path length
    and ``max_states`` the number of distinct states (either makes ``exhausted``
    false when it cuts the search). ``progress`` (``True`` for stderr, or a stream)
    prints states/s, depth and frontier every ``progress_interval_s`` seconds.
    ``prefix`` scripts the first actions as ``(kind, node, text)`` triples (see
    :meth:`_follow_prefix`); the search, its depth bound and its budgets start after
    it (the prefix's own faults are not charged).
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
        symmetry: bool = False,
        node_key: Callable[[Node], Hashable] | None = None,
        message_key: Callable[[Envelope], Hashable] | None = None,
        copy_node: Callable[[Node], Node] | None = None,
        now: int | Callable[[int], int] = 0,
        seed: int = 0,
        progress: bool | TextIO = False,
        progress_interval_s: float = 1.0,
        prefix: Sequence[tuple[str, str, str]] = (),
    ) -> None:
        if not callable(factory):
            raise TypeError("factory must be callable(node_id, rng) -> Node")
        if isinstance(node_ids, str) or not isinstance(node_ids, Sequence):
            raise TypeError("node_ids must be a sequence of str")
        ids = list(node_ids)
        if not ids:
            raise ValueError("need at least one node")
        for nid in ids:
            if not isinstance(nid, str):
                raise TypeError(f"node ids must be str, got {type(nid).__name__}")
            if not nid:
                raise ValueError("node ids must be non-empty")
        if len(set(ids)) != len(ids):
            raise ValueError(f"duplicate node ids in {ids!r}")
        self.node_ids: tuple[str, ...] = tuple(ids)
        self.invariants = self._check_invariants(invariants, "invariants")
        self.quiescent_invariants = self._check_invariants(
            quiescent_invariants, "quiescent_invariants"
        )
        self.requests = self._check_requests(requests)
        self.max_depth = _check_budget("max_depth", max_depth)
        self.max_states = _check_optional_budget("max_states", max_states)
        if self.max_states == 0:
            raise ValueError("max_states must be positive")
        self.max_drops = _check_budget("max_drops", max_drops)
        self.max_duplicates = _check_budget("max_duplicates", max_duplicates)
        self.max_timer_fires = _check_optional_budget("max_timer_fires", max_timer_fires)
        if not isinstance(symmetry, bool):
            raise TypeError("symmetry must be a bool")
        if symmetry and any(r.targets is not None for r in self.requests):
            raise ValueError("symmetry reduction needs requests without targets")
        if symmetry and len(ids) > MAX_SYMMETRY_NODES:
            raise ValueError(f"symmetry reduction supports at most {MAX_SYMMETRY_NODES} nodes")
        self.symmetry = symmetry
        for name, fn in (("node_key", node_key), ("message_key", message_key),
                         ("copy_node", copy_node)):
            if fn is not None and not callable(fn):
                raise TypeError(f"{name} must be callable")
        self._node_key = node_key or _node_state_key
        self._message_key = message_key or default_message_key
        self._copy: Callable[[Node], Node] = copy_node or deepcopy_node
        if isinstance(now, bool) or not (isinstance(now, int) or callable(now)):
            raise TypeError("now must be an int or callable(depth) -> int")
        if isinstance(now, int) and now < 0:
            raise ValueError("now must be >= 0")
        self._now = now
        if type(seed) is not int:
            raise TypeError("seed must be an int")
        self.seed = seed
        self.factory = factory
        if progress is True:
            self._progress: TextIO | None = sys.stderr
        elif progress is False:
            self._progress = None
        elif hasattr(progress, "write"):
            self._progress = progress
        else:
            raise TypeError("progress must be a bool or a text stream")
        if not isinstance(progress_interval_s, int | float) or progress_interval_s <= 0:
            raise ValueError("progress_interval_s must be a positive number")
        self.progress_interval_s = float(progress_interval_s)
        if isinstance(prefix, str) or not isinstance(prefix, Sequence):
            raise TypeError("prefix must be a sequence of (kind, node, text) triples")
        for item in prefix:
            if not (isinstance(item, tuple) and len(item) == 3
                    and all(isinstance(x, str) for x in item)):
                raise TypeError(f"prefix step {item!r} is not a (kind, node, text) triple")
        self.prefix = tuple(prefix)
        self._index = {nid: i for i, nid in enumerate(ids)}
        self._perms: list[tuple[int, ...]] = (
            list(itertools.permutations(range(len(ids)))) if symmetry else []
        )

    # -- validation ------------------------------------------------------------------
    @staticmethod
    def _check_invariants(
        invariants: Mapping[str, Invariant] | None, what: str
    ) -> dict[str, Invariant]:
        if invariants is None:
            return {}
        if not isinstance(invariants, Mapping):
            raise TypeError(f"{what} must be a mapping name -> callable")
        out: dict[str, Invariant] = {}
        for name, fn in invariants.items():
            if not isinstance(name, str) or not name:
                raise TypeError(f"{what}: names must be non-empty str")
            if not callable(fn):
                raise TypeError(f"{what}[{name!r}] is not callable")
            out[name] = fn
        return out

    def _check_requests(self, requests: Sequence[Request]) -> tuple[Request, ...]:
        if isinstance(requests, str | bytes) or not isinstance(requests, Sequence):
            raise TypeError("requests must be a sequence of Request")
        out = []
        for i, r in enumerate(requests):
            if not isinstance(r, Request):
                raise TypeError(f"requests[{i}] is not a Request")
            if r.targets is not None:
                unknown = [t for t in r.targets if t not in self.node_ids]
                if unknown or not r.targets:
                    raise ValueError(f"requests[{i}] targets unknown nodes {unknown!r}")
            if r.request_id is None:
                r = attrs.evolve(r, request_id=f"req-{i}")
            out.append(r)
        ids = [r.request_id for r in out]
        if len(set(ids)) != len(ids):
            raise ValueError("request ids must be distinct")
        return tuple(out)

    # -- keys --------------------------------------------------------------------------
    def _nkey(self, node: Node) -> Hashable:
        key = self._node_key(node)
        if self.symmetry:
            return freeze(key)
        hash(key)
        return key

    def _mkey(self, envelope: Envelope) -> Hashable:
        key = self._message_key(envelope)
        return freeze(key) if self.symmetry else key

    def _key(self, s: _State) -> Hashable:
        net = frozenset((k, c) for k, (_env, c) in s.net.items())
        key = (s.node_keys, s.timers, net, s.pending, s.budget)
        if not self.symmetry:
            return key
        return min((self._permuted(s, p, net) for p in self._perms), key=hash)

    def _permuted(self, s: _State, p: tuple[int, ...], net: frozenset[Any]) -> Hashable:
        ids = self.node_ids
        names = {ids[i]: ids[p[i]] for i in range(len(ids))}
        n = len(ids)
        node_keys: list[Hashable] = [None] * n
        timers: list[Hashable] = [None] * n
        for i in range(n):
            node_keys[p[i]] = _rename(s.node_keys[i], names)
            timers[p[i]] = _rename(s.timers[i], names)
        pnet = frozenset(((p[dst], _rename(k, names)), c) for (dst, k), c in net)
        return (tuple(node_keys), tuple(timers), pnet, s.pending, s.budget)

    # -- transitions -----------------------------------------------------------------
    def _time(self, depth: int) -> int:
        return self._now(depth) if callable(self._now) else self._now

    def _apply(
        self,
        s: _State,
        i: int,
        event: Event,
        step: Step,
        net: dict[tuple[int, Hashable], tuple[Envelope, int]],
        pending: frozenset[int],
        budget: tuple[int, int, int],
        timers_after: frozenset[str] | None = None,
    ) -> tuple[_State, Step]:
        """Step node ``i`` with ``event`` on top of the given network; new state."""
        node = self._copy(s.nodes[i])
        timers = set(s.timers[i] if timers_after is None else timers_after)
        try:
            effects = node.step(event)
        except DecodeError as exc:
            rejected = attrs.evolve(step, effects=(f"rejected: {exc}",))
            new_timers = list(s.timers)
            new_timers[i] = frozenset(timers)
            return (
                _State(s.nodes, s.node_keys, tuple(new_timers), net, pending, budget,
                       s.depth + 1),
                rejected,
            )
        except Exception as exc:
            raise _NodeRaised(step, exc) from exc
        described: list[str] = []
        copied_net = False
        for effect in effects:
            if isinstance(effect, Send):
                env = effect.envelope
                if not copied_net:
                    net = dict(net)
                    copied_net = True
                if env.recipient is not None:
                    targets = [self._index[env.recipient]] if env.recipient in self._index else []
                else:
                    targets = [j for j in range(len(self.node_ids)) if j != i]
                mk = self._mkey(env)
                for j in targets:
                    k = (j, mk)
                    have = net.get(k)
                    net[k] = (env, 1) if have is None else (have[0], have[1] + 1)
            elif isinstance(effect, SetTimer):
                timers.add(effect.name)
            elif isinstance(effect, CancelTimer):
                timers.discard(effect.name)
            elif not isinstance(effect, Persist | Deliver):
                raise _NodeRaised(step, TypeError(f"unknown effect {effect!r}"))
            text = _describe_effect(effect)
            if text is not None:
                described.append(text)
        nodes = list(s.nodes)
        nodes[i] = node
        keys = list(s.node_keys)
        keys[i] = self._nkey(node)
        new_timers = list(s.timers)
        new_timers[i] = frozenset(timers)
        new = _State(tuple(nodes), tuple(keys), tuple(new_timers), net, pending, budget,
                     s.depth + 1)
        return new, attrs.evolve(step, effects=tuple(described))

    def _successors(self, s: _State) -> Iterator[tuple[_State, Step]]:
        ids = self.node_ids
        now = self._time(s.depth)
        drops, dups, fires = s.budget
        for k, (env, count) in s.net.items():
            dst = k[0]
            net = dict(s.net)
            if count == 1:
                del net[k]
            else:
                net[k] = (env, count - 1)
            label = f"{env.type} from {env.sender} {_describe_payload(env)}"
            yield self._apply(
                s, dst, Receive(now, env), Step("deliver", ids[dst], label), net,
                s.pending, s.budget,
            )
            if drops < self.max_drops:
                yield (
                    _State(s.nodes, s.node_keys, s.timers, net, s.pending,
                           (drops + 1, dups, fires), s.depth + 1),
                    Step("drop", ids[dst], label),
                )
            if dups < self.max_duplicates:
                more = dict(s.net)
                more[k] = (env, count + 1)
                yield (
                    _State(s.nodes, s.node_keys, s.timers, more, s.pending,
                           (drops, dups + 1, fires), s.depth + 1),
                    Step("duplicate", ids[dst], label),
                )
        if self.max_timer_fires is None or fires < self.max_timer_fires:
            # Count firings only when bounded: the count is part of the state key.
            budget = (drops, dups, fires + (self.max_timer_fires is not None))
            for i, names in enumerate(s.timers):
                for name in sorted(names):
                    yield self._apply(
                        s, i, TimerFired(now, name), Step("timer", ids[i], name), s.net,
                        s.pending, budget, timers_after=names - {name},
                    )
        for r in sorted(s.pending):
            req = self.requests[r]
            targets = req.targets if req.targets is not None else ids
            rest = s.pending - {r}
            assert req.request_id is not None
            for t in targets:
                i = self._index[t]
                yield self._apply(
                    s, i, ClientRequest(now, req.request_id, req.payload),
                    Step("request", t, f"{req.request_id} {req.payload!r}"), s.net, rest,
                    s.budget,
                )

    # -- invariants ------------------------------------------------------------------
    def _view(self, s: _State) -> ClusterView:
        return ClusterView(
            dict(zip(self.node_ids, s.nodes, strict=True)),
            [(self.node_ids[k[0]], env, c) for k, (env, c) in s.net.items()],
            dict(zip(self.node_ids, s.timers, strict=True)),
        )

    def _violation(self, s: _State) -> tuple[str, str] | None:
        view = self._view(s)
        checks = list(self.invariants.items())
        if not s.net:
            checks += list(self.quiescent_invariants.items())
        for name, fn in checks:
            try:
                verdict = fn(view)
            except AssertionError as exc:
                return name, str(exc) or "assertion failed"
            except Exception as exc:
                return name, f"invariant raised {type(exc).__name__}: {exc}"
            if verdict is None or verdict is True:
                continue
            if verdict is False:
                return name, "returned False"
            if isinstance(verdict, str):
                if verdict:
                    return name, verdict
                continue
            if isinstance(verdict, list | tuple):
                if verdict:
                    return name, "; ".join(map(str, verdict))
                continue
            return name, f"invariant returned {verdict!r} (expected None, bool, str or list)"
        return None

    def _final_state(self, s: _State) -> tuple[str, ...]:
        out = []
        for nid, node, key, timers in zip(
            self.node_ids, s.nodes, s.node_keys, s.timers, strict=True
        ):
            describe = getattr(node, "describe", None)
            if callable(describe):
                text = str(describe())
            elif type(node).__repr__ is not object.__repr__:
                text = repr(node)
            else:
                text = repr(key)
            if len(text) > 300:
                text = text[:299] + "…"
            out.append(f"{nid}: {text}  timers={sorted(timers)}")
        for k, (env, c) in s.net.items():
            times = f" ×{c}" if c > 1 else ""
            out.append(
                f"in flight to {self.node_ids[k[0]]}: {env.type} from {env.sender}{times}"
            )
        return tuple(out)

    # -- the search ------------------------------------------------------------------
    def initial_state(self) -> tuple[_State, list[str]]:
        """Build and start every node; returns the state and the start effects shown."""
        nodes: list[Node] = []
        for nid in self.node_ids:
            node = self.factory(nid, random.Random(f"{self.seed}/{nid}"))
            if not isinstance(node, Node):
                raise TypeError(f"factory returned {type(node).__name__}, not a Node")
            if node.node_id != nid:
                raise ValueError(f"factory built node {node.node_id!r} for id {nid!r}")
            nodes.append(node)
        empty: frozenset[str] = frozenset()
        s = _State(
            tuple(nodes),
            tuple(self._nkey(n) for n in nodes),
            tuple(empty for _ in nodes),
            {},
            frozenset(range(len(self.requests))),
            (0, 0, 0),
            0,
        )
        notes: list[str] = []
        for i, nid in enumerate(self.node_ids):
            s, step = self._apply(
                s, i, Start(self._time(0)), Step("start", nid, ""), s.net, s.pending, s.budget
            )
            s.depth = 0
            notes.extend(f"{nid} {e}" for e in step.effects)
        return s, notes

    def run(self) -> ModelCheckResult:
        """Explore breadth-first; stop at the first violation (shortest trace)."""
        started = time.perf_counter()
        try:
            init, _notes = self.initial_state()
        except _NodeRaised as exc:
            raise exc.exc from None
        try:
            init, prefix_steps = self._follow_prefix(init)
        except _NodeRaised as exc:
            raise exc.exc from None
        seen: dict[Hashable, int] = {self._key(init): 0}
        parents: list[tuple[int, Step | None]] = [(-1, None)]
        transitions = 0
        frontier: deque[tuple[int, _State]] = deque([(0, init)])
        depth = 0
        last_report = started
        cut = False

        def result(cx: Counterexample | None, exhausted: bool) -> ModelCheckResult:
            elapsed = time.perf_counter() - started
            res = ModelCheckResult(cx, len(seen), transitions, depth, exhausted, elapsed)
            if self._progress is not None:
                print(f"model checker: {res.summary()}", file=self._progress, flush=True)
            return res

        def trace(idx: int, last: Step | None = None) -> tuple[Step, ...]:
            steps: list[Step] = [] if last is None else [last]
            while idx > 0:
                parent, step = parents[idx]
                assert step is not None
                steps.append(step)
                idx = parent
            return prefix_steps + tuple(reversed(steps))

        bad = self._violation(init)
        if bad is not None:
            return result(
                Counterexample(bad[0], bad[1], prefix_steps, self._final_state(init)), False
            )
        while frontier:
            idx, s = frontier.popleft()
            if s.depth > depth:
                depth = s.depth
            if s.depth >= self.max_depth:
                cut = cut or self._has_successor(s)
                continue
            try:
                for succ, step in self._successors(s):
                    transitions += 1
                    key = self._key(succ)
                    if key in seen:
                        continue
                    if self.max_states is not None and len(seen) >= self.max_states:
                        cut = True
                        continue
                    new_idx = len(parents)
                    seen[key] = new_idx
                    parents.append((idx, step))
                    bad = self._violation(succ)
                    if bad is not None:
                        depth = succ.depth
                        return result(
                            Counterexample(bad[0], bad[1], trace(new_idx),
                                           self._final_state(succ)),
                            False,
                        )
                    frontier.append((new_idx, succ))
            except _NodeRaised as exc:
                depth = s.depth + 1
                message = f"{type(exc.exc).__name__}: {exc.exc}"
                return result(
                    Counterexample("node-raised", message, trace(idx, exc.step),
                                   self._final_state(s)),
                    False,
                )
            if self._progress is not None:
                now = time.perf_counter()
                if now - last_report >= self.progress_interval_s:
                    last_report = now
                    rate = len(seen) / (now - started)
                    print(
                        f"model checker: depth {s.depth}, {len(seen)} states, frontier "
                        f"{len(frontier)}, {rate:,.0f} states/s",
                        file=self._progress,
                        flush=True,
                    )
        return result(None, not cut)

    def _follow_prefix(self, s: _State) -> tuple[_State, tuple[Step, ...]]:
        """Replay the scripted ``prefix``: at each item take the first action whose kind
        and node match and whose description contains the text. The search starts from
        the state reached (depth 0 again): *guided* model checking, for bugs deeper
        than an exhaustive search from the initial state can reach."""
        steps: list[Step] = []
        budgets = (self.max_drops, self.max_duplicates, self.max_timer_fires)
        self.max_drops = self.max_duplicates = len(self.prefix)  # prefix faults are free
        self.max_timer_fires = None
        try:
            for n, (kind, node, text) in enumerate(self.prefix, 1):
                for succ, step in self._successors(s):
                    if step.kind == kind and step.node == node and text in step.detail:
                        steps.append(step)
                        s = succ
                        break
                else:
                    raise ValueError(
                        f"prefix step {n} {(kind, node, text)!r} matches no enabled action"
                    )
        finally:
            self.max_drops, self.max_duplicates, self.max_timer_fires = budgets
        s.depth = 0
        s.budget = (0, 0, 0)
        return s, tuple(steps)

    def _has_successor(self, s: _State) -> bool:
        if s.net or s.pending:
            return True
        if self.max_timer_fires is not None and s.budget[2] >= self.max_timer_fires:
            return False
        return any(s.timers)


def check_model(factory: NodeFactory, node_ids: Sequence[str], **options: Any) -> ModelCheckResult:
    """``ModelChecker(factory, node_ids, **options).run()``."""
    return ModelChecker(factory, node_ids, **options).run()
