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

import random
import sys
import time
from collections import deque
from collections.abc import (
    Callable,
    Hashable,
    ItemsView,
    Iterator,
    KeysView,
    Mapping,
    Sequence,
    ValuesView,
)
from typing import Any, Final, Literal, TextIO

import attrs

from vsm_phoenix.errors import DecodeError, InvalidArgument, TypeMismatch, VsmPhoenixError
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
    Restart,
    Send,
    SetTimer,
    Start,
    TimerFired,
)
from vsm_phoenix.verify.budget import Budget
from vsm_phoenix.verify.copying import deepcopy_node
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

#: An invariant sees the cluster and returns ``None``/``True`` (holds), ``False`` or a
#: non-empty message / list of messages (violated); raising ``AssertionError`` also
#: reports a violation.
Invariant = Callable[["ClusterView"], Any]

Network = Literal["multiset", "set"]

#: Reasons a search ends without exhausting the space.
DEPTH_BOUND: Final = "depth bound"
STATE_BOUND: Final = "state bound"

# Action kinds (compact: one per stored state).
_DELIVER, _DROP, _DUP, _TIMER, _REQUEST, _CRASH = range(6)
_KIND_NAMES: Final = ("deliver", "drop", "duplicate", "timer", "request", "crash")
_K: Final = 1 << 40  # memo key: local id * _K + event code


class ModelCheckerError(VsmPhoenixError):
    """The model checker cannot carry on (not a property violation)."""


class ReplayDivergedError(ModelCheckerError):
    """Replaying a trace on fresh nodes did not reach the explored states: a node key
    leaves out state the node's behaviour depends on. ``step`` is the first step (1-based)
    after which the replayed and explored local states differ."""

    def __init__(self, step: int, detail: str) -> None:
        super().__init__(f"replay diverged after step {step}: {detail}; node_key must "
                         "cover everything that influences a node's future behaviour")
        self.step = step


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

    ``kind`` is ``"deliver"``, ``"drop"``, ``"duplicate"``, ``"timer"``, ``"request"``
    or ``"crash"``; ``node`` is the node that acted (the recipient, for network actions).
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
    """What a run found. ``exhausted`` means every reachable state (within the fault
    budgets) was explored: the invariants hold in all of them, not just up to
    ``max_depth``. Otherwise ``reason`` says what cut the search (``"depth bound"``,
    ``"state bound"``, ``"timeout"``, ``"memory limit"``; empty after a violation) and
    ``depth_complete`` up to which depth every reachable state was checked."""

    counterexample: Counterexample | None
    states: int
    transitions: int
    depth: int
    exhausted: bool
    elapsed_s: float
    reason: str = ""
    depth_complete: int = 0

    @property
    def ok(self) -> bool:
        return self.counterexample is None

    @property
    def states_per_second(self) -> float:
        return self.states / self.elapsed_s if self.elapsed_s > 0 else float(self.states)

    def summary(self) -> str:
        verdict = "ok" if self.ok else f"VIOLATION of {self.counterexample.invariant!r}"  # type: ignore[union-attr]
        if self.exhausted:
            scope = "exhausted"
        else:
            scope = f"{self.reason or 'stopped'} at depth {self.depth}, " \
                    f"complete to depth {self.depth_complete}"
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
    to its pending timer names. Invariants must not modify the nodes. ``read_network``
    tells whether ``in_flight``, ``timers`` or ``quiescent`` was read (the checker
    reuses the verdict of an invariant that read only the nodes, see
    :class:`ModelChecker`).
    """

    __slots__ = ("_flight", "_in_flight", "_nodes", "_timers", "_timers_fn", "read_network")

    def __init__(
        self,
        nodes: dict[str, Node],
        in_flight: list[tuple[str, Envelope, int]] | Callable[[], list[tuple[str, Envelope, int]]],
        timers: dict[str, frozenset[str]] | Callable[[], dict[str, frozenset[str]]],
    ) -> None:
        self._nodes = nodes
        self._flight = in_flight if callable(in_flight) else None
        self._in_flight = None if callable(in_flight) else in_flight
        self._timers_fn = timers if callable(timers) else None
        self._timers = None if callable(timers) else timers
        self.read_network = False

    def __getitem__(self, key: str) -> Node:
        return self._nodes[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._nodes)

    def __len__(self) -> int:
        return len(self._nodes)

    def __contains__(self, key: object) -> bool:
        return key in self._nodes

    def keys(self) -> KeysView[str]:
        return self._nodes.keys()

    def values(self) -> ValuesView[Node]:
        return self._nodes.values()

    def items(self) -> ItemsView[str, Node]:
        return self._nodes.items()

    @property
    def in_flight(self) -> list[tuple[str, Envelope, int]]:
        self.read_network = True
        if self._in_flight is None:
            assert self._flight is not None
            self._in_flight = self._flight()
        return self._in_flight

    @property
    def timers(self) -> dict[str, frozenset[str]]:
        self.read_network = True
        if self._timers is None:
            assert self._timers_fn is not None
            self._timers = self._timers_fn()
        return self._timers

    @property
    def quiescent(self) -> bool:
        """No message in flight."""
        return not self.in_flight


# -- keys and copies -------------------------------------------------------------------
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


def _node_state_key(node: Node) -> Hashable:
    method = getattr(node, "state_key", None)
    if method is None or not callable(method):
        raise TypeMismatch(
            f"{type(node).__name__} has no state_key() method; pass node_key=... to say "
            "what of a node's state matters"
        )
    return method()  # type: ignore[no-any-return]


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


# -- interned parts ---------------------------------------------------------------------
class _Local:
    """One distinct local state: node position, key, pending timers, store (or
    ``None`` when crashes are not modelled) and the node object standing for it."""

    __slots__ = ("index", "key", "node", "store", "timers")

    def __init__(self, index: int, key: Hashable, node: Node, timers: frozenset[str],
                 store: frozenset[tuple[str, bytes]] | None) -> None:
        self.index = index
        self.key = key
        self.node = node
        self.timers = timers
        self.store = store


class _Msg:
    __slots__ = ("dst", "env", "key")

    def __init__(self, dst: int, key: Hashable, env: Envelope) -> None:
        self.dst = dst
        self.key = key
        self.env = env


class _Raised:
    """A local step that raised (memoized like any other result)."""

    __slots__ = ("exc",)

    def __init__(self, exc: BaseException) -> None:
        self.exc = exc


# A memoized local step: (new local id, messages sent) or _Raised.
_Result = tuple[int, Any] | _Raised
# A cluster state: (local ids, messages in flight — a sorted tuple of message ids, or a
# bit mask on a set network —, unsent request mask, budgets used (drops, duplicates,
# timer firings, crashes)).
_State = tuple[tuple[int, ...], Any, int, tuple[int, int, int, int]]
# An action: (kind, node position, argument) — argument: message id, timer name,
# request index or None.
_Action = tuple[int, int, Any]


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


class ModelChecker:
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
        self.network: Network = network
        self.groups = self._check_symmetry(symmetry)
        self.symmetry = bool(self.groups)
        for name, fn in (("node_key", node_key), ("message_key", message_key),
                         ("copy_node", copy_node)):
            if fn is not None and not callable(fn):
                raise TypeMismatch(f"{name} must be callable")
        self._node_key = node_key or _node_state_key
        self._message_key = message_key or default_message_key
        self._copy: Callable[[Node], Node] = copy_node or deepcopy_node
        if isinstance(now, bool) or not (isinstance(now, int) or callable(now)):
            raise TypeMismatch("now must be an int or callable(depth) -> int")
        if isinstance(now, int) and now < 0:
            raise InvalidArgument("now must be >= 0")
        self._now = now
        if type(seed) is not int:
            raise TypeMismatch("seed must be an int")
        self.seed = seed
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
        self.factory = factory
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
        self._track_store = self.max_crashes > 0
        self._root_prefix: list[_Action] = []
        if self.symmetry and self._track_store:
            raise InvalidArgument("symmetry reduction cannot be combined with crashes")
        # Interned parts and the memo of local steps.
        self._locals: list[_Local] = []
        self._local_ids: dict[Hashable, int] = {}
        self._msgs: list[_Msg] = []
        self._msg_ids: dict[Hashable, int] = {}
        self._memo: dict[int, _Result] = {}
        self._memo_now: int | None = None
        self._timer_codes: dict[str, int] = {}
        self._timer_names: list[str] = []
        self._no_sends: Any = 0 if network == "set" else ()
        self._bits: dict[int, list[int]] = {}  # set network: mask -> message ids
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

    # -- interning -------------------------------------------------------------------
    def _nkey(self, node: Node) -> Hashable:
        key = self._node_key(node)
        return freeze(key) if self.symmetry else key

    def _intern_local(self, index: int, key: Hashable, node: Node, timers: frozenset[str],
                      store: frozenset[tuple[str, bytes]] | None) -> int:
        item = (index, key, timers, store)
        lid = self._local_ids.get(item)
        if lid is None:
            lid = len(self._locals)
            self._local_ids[item] = lid
            self._locals.append(_Local(index, key, node, timers, store))
        return lid

    def _intern_msg(self, dst: int, env: Envelope) -> int:
        key = self._message_key(env)
        if self.symmetry:
            key = freeze(key)
        item = (dst, key)
        mid = self._msg_ids.get(item)
        if mid is None:
            mid = len(self._msgs)
            self._msg_ids[item] = mid
            self._msgs.append(_Msg(dst, key, env))
        return mid

    def _local_part(self, lid: int) -> tuple[int, Hashable, Hashable]:
        loc = self._locals[lid]
        return loc.index, loc.key, (loc.timers, loc.store)

    def _message_part(self, mid: int) -> tuple[int, Hashable]:
        msg = self._msgs[mid]
        return msg.dst, msg.key

    def _build(self, i: int, incarnation: int = 0) -> Node:
        nid = self.node_ids[i]
        rng = random.Random(f"{self.seed}/{nid}" + (f"/{incarnation}" if incarnation else ""))
        node = self.factory(nid, rng)
        if not isinstance(node, Node):
            raise TypeMismatch(f"factory returned {type(node).__name__}, not a Node")
        if node.node_id != nid:
            raise InvalidArgument(f"factory built node {node.node_id!r} for id {nid!r}")
        return node

    # -- local steps -----------------------------------------------------------------
    # An event is coded as an int: 4 * message id (deliver), 4 * timer code + 1 (fire),
    # 4 * request index + 2 (submit), 4 * crashes so far + 3 (crash and restart).
    def _timer_code(self, name: str) -> int:
        code = self._timer_codes.get(name)
        if code is None:
            code = self._timer_codes[name] = 4 * len(self._timer_names) + 1
            self._timer_names.append(name)
        return code

    def _event(self, code: int, now: int, loc: _Local) -> tuple[Node, Event, set[str]]:
        """The node to step (a copy, or a fresh one for a crash), the event, and the
        timers it starts from."""
        kind, arg = code & 3, code >> 2
        if kind == 3:
            store = dict(loc.store or ())
            return self._build(loc.index, arg + 1), Restart(now, store), set()
        node = self._copy(loc.node)
        timers = set(loc.timers)
        if kind == 0:
            return node, Receive(now, self._msgs[arg].env), timers
        if kind == 1:
            name = self._timer_names[arg]
            timers.discard(name)
            return node, TimerFired(now, name), timers
        req = self.requests[arg]
        assert req.request_id is not None
        return node, ClientRequest(now, req.request_id, req.payload), timers

    def _carry_out(self, i: int, effects: Sequence[Effect], timers: set[str],
                   store: dict[str, bytes] | None) -> list[tuple[int, Envelope]]:
        """Apply ``effects`` of node ``i`` to its timers and store; the sends, as
        (recipient position, envelope). Raises TypeMismatch on an unknown effect."""
        sends: list[tuple[int, Envelope]] = []
        for effect in effects:
            if isinstance(effect, Send):
                env = effect.envelope
                if env.recipient is not None:
                    j = self._index.get(env.recipient)
                    if j is not None:
                        sends.append((j, env))
                else:
                    sends.extend((j, env) for j in range(len(self.node_ids)) if j != i)
            elif isinstance(effect, SetTimer):
                timers.add(effect.name)
            elif isinstance(effect, CancelTimer):
                timers.discard(effect.name)
            elif isinstance(effect, Persist):
                if store is not None:
                    if effect.value is None:
                        store.pop(effect.key, None)
                    else:
                        store[effect.key] = effect.value
            elif not isinstance(effect, Deliver):
                raise TypeMismatch(f"unknown effect {effect!r}")
        return sends

    def _local_step(self, lid: int, code: int, now: int) -> _Result:
        """Compute one local step: (new local id, messages sent) or _Raised. The sends
        are a sorted tuple of message ids, or a bit mask on a set network."""
        loc = self._locals[lid]
        i = loc.index
        node, event, timers = self._event(code, now, loc)
        store = dict(loc.store) if loc.store is not None else None
        try:
            effects = node.step(event)
        except DecodeError:
            if code & 3 == 3:
                return _Raised(DecodeError("cannot restart from its own persisted state"))
            # Rejected input: the node is unchanged (a fired timer is no longer pending).
            return (self._intern_local(i, loc.key, loc.node, frozenset(timers), loc.store),
                    self._no_sends)
        except Exception as exc:
            return _Raised(exc)
        try:
            sends = self._carry_out(i, effects, timers, store)
        except TypeMismatch as exc:
            return _Raised(exc)
        frozen_store = frozenset(store.items()) if store is not None else None
        new = self._intern_local(i, self._nkey(node), node, frozenset(timers), frozen_store)
        mids = [self._intern_msg(j, env) for j, env in sends]
        if self.network == "set":
            mask = 0
            for m in mids:
                mask |= 1 << m
            return new, mask
        return new, tuple(sorted(mids))

    # -- transitions -----------------------------------------------------------------
    def _time(self, depth: int) -> int:
        return self._now(depth) if callable(self._now) else self._now

    def _net_ids(self, net: Any) -> list[int]:
        """The message ids in flight, sorted, with repeats (a bit mask: each once)."""
        if isinstance(net, tuple):
            return list(net)
        out = self._bits.get(net)
        if out is None:
            out = []
            rest = net
            while rest:
                low = rest & -rest
                out.append(low.bit_length() - 1)
                rest ^= low
            self._bits[net] = out
        return out

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

    def _join(self, net: Any, sends: Any) -> Any:
        if self.network == "set":
            return net | sends
        return tuple(sorted(net + sends)) if sends else net

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

    def _label(self, action: _Action) -> tuple[str, str, str]:
        kind, i, arg = action
        nid = self.node_ids[i]
        if kind in (_DELIVER, _DROP, _DUP):
            env = self._msgs[arg].env
            return _KIND_NAMES[kind], nid, f"{env.type} from {env.sender} {_describe_payload(env)}"
        if kind == _TIMER:
            return "timer", nid, str(arg)
        if kind == _REQUEST:
            req = self.requests[arg]
            return "request", nid, f"{req.request_id} {req.payload!r}"
        return "crash", nid, "restart from its persisted state"

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
                    k, nid, detail = self._label(action)
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
        steps = _Replay(self).run(path, final, raised)
        return Counterexample(bad[0], bad[1], tuple(steps), self._final_state(final))


class _Replay:
    """Re-executes a path of actions on fresh nodes (no memo, no interning), describing
    each step, and checks that it reaches the explored local states."""

    def __init__(self, mc: ModelChecker) -> None:
        self.mc = mc
        n = len(mc.node_ids)
        now = mc._time(0)
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

    def run(self, path: list[_Action], final: _State, raised: bool) -> list[Step]:
        mc = self.mc
        steps: list[Step] = []
        for n, action in enumerate(path):
            kind, i, arg = action
            depth = n - len(mc._root_prefix) if n >= len(mc._root_prefix) else n
            now = mc._time(max(depth, 0))
            label = mc._label(action)
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
            described = tuple(t for t in map(_describe_effect, effects) if t is not None)
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


def check_model(factory: NodeFactory, node_ids: Sequence[str], **options: Any) -> ModelCheckResult:
    """``ModelChecker(factory, node_ids, **options).run()``."""
    return ModelChecker(factory, node_ids, **options).run()
