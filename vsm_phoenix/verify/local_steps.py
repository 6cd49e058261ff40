"""The local transition system under the model checker: interned local states and
messages, and memoized local steps.

Theory of operation
-------------------
A *local state* is one node's part of a cluster state: its key (``node_key``), its
pending timers and, when crashes are modelled, its durable store. Each distinct local
state is interned once — a small integer id and one node object standing for it —
and so is each distinct in-flight message (recipient and ``message_key``). A *local
step* is (local state, event) → (new local state, messages sent): the stand-in node
is copied (``copy_node``), the copy steps, its effects are carried out on its timers
and store, and the result is interned. Stored node objects are never mutated.

Events are coded as ints: ``4 * message id`` (deliver), ``4 * timer code + 1`` (a
timer fires), ``4 * request index + 2`` (a scripted request arrives) and
``4 * crashes so far + 3`` (crash and restart from the store). Messages sent are a
sorted tuple of message ids, or a bit mask on a set network.

:class:`LocalSteps` is the base of :class:`~vsm_phoenix.verify.model_checker.ModelChecker`;
the memo itself lives in the search, which knows when ``now`` changes.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Hashable, Sequence
from typing import Any, Final, Literal

from vsm_phoenix.errors import DecodeError, InvalidArgument, TypeMismatch
from vsm_phoenix.protocol.envelope import Envelope
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
    TimerFired,
)
from vsm_phoenix.verify.mc_values import Request, describe_payload
from vsm_phoenix.verify.symmetry import freeze

__all__ = ["LocalSteps", "Network"]

Network = Literal["multiset", "set"]


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


# A cluster state: (local ids, messages in flight — a sorted tuple of message ids, or a
# bit mask on a set network —, unsent request mask, budgets used (drops, duplicates,
# timer firings, crashes)).
_State = tuple[tuple[int, ...], Any, int, tuple[int, int, int, int]]
# An action: (kind, node position, argument) — argument: message id, timer name,
# request index or None.
_Action = tuple[int, int, Any]
# Action kinds (compact: one per stored state).
_DELIVER, _DROP, _DUP, _TIMER, _REQUEST, _CRASH = range(6)
_KIND_NAMES: Final = ("deliver", "drop", "duplicate", "timer", "request", "crash")

# A memoized local step: (new local id, messages sent) or _Raised.
_Result = tuple[int, Any] | _Raised


class LocalSteps:
    """Interning tables and local steps for one cluster (see the module docstring)."""

    def __init__(
        self,
        factory: NodeFactory,
        node_ids: tuple[str, ...],
        requests: tuple[Request, ...],
        *,
        node_key: Callable[[Node], Hashable],
        message_key: Callable[[Envelope], Hashable],
        copy_node: Callable[[Node], Node],
        network: Network,
        seed: int,
        symmetry: bool,
        track_store: bool,
    ) -> None:
        self.factory = factory
        self.node_ids = node_ids
        self._index = {nid: i for i, nid in enumerate(node_ids)}
        self.requests = requests
        self._node_key = node_key
        self._message_key = message_key
        self._copy = copy_node
        self.network: Network = network
        self.seed = seed
        self.symmetry = symmetry
        self._track_store = track_store
        self._locals: list[_Local] = []
        self._local_ids: dict[Hashable, int] = {}
        self._msgs: list[_Msg] = []
        self._msg_ids: dict[Hashable, int] = {}
        self._timer_codes: dict[str, int] = {}
        self._timer_names: list[str] = []
        self._no_sends: Any = 0 if network == "set" else ()
        self._bits: dict[int, list[int]] = {}  # set network: mask -> message ids

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

    def _join(self, net: Any, sends: Any) -> Any:
        if self.network == "set":
            return net | sends
        return tuple(sorted(net + sends)) if sends else net

    def describe_action(self, action: _Action) -> tuple[str, str, str]:
        """``(kind, node id, detail)`` of an action, as traces and prefixes show it."""
        kind, i, arg = action
        nid = self.node_ids[i]
        if kind in (_DELIVER, _DROP, _DUP):
            env = self._msgs[arg].env
            return _KIND_NAMES[kind], nid, f"{env.type} from {env.sender} {describe_payload(env)}"
        if kind == _TIMER:
            return "timer", nid, str(arg)
        if kind == _REQUEST:
            req = self.requests[arg]
            return "request", nid, f"{req.request_id} {req.payload!r}"
        return "crash", nid, "restart from its persisted state"
