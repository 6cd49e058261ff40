"""Scenario transcripts: drive a cluster of sans-IO nodes by hand, one step at a time,
and compare what each step did with text kept in a file (etcd raft's data-driven tests).

Theory of operation
-------------------
A :class:`Driver` owns a cluster of real nodes (any :class:`~vsm_phoenix.protocol.node.Node`,
built by a factory), a network of in-flight messages kept in send order, the pending
timers of every node, a durable store per node (what its ``Persist`` effects wrote)
and a clock that moves only when told. It changes nothing on its own: every event
comes from a command, and every command returns the lines that describe what
happened. Effects are carried out in order: ``Send`` puts a copy in flight for its
recipient (a topic message: one copy per other node), ``Persist`` writes the store,
``SetTimer``/``CancelTimer`` edit the pending timers, ``Deliver`` is only shown. A
node that raises is shown as ``error: ...`` (the node contract says its state is
unchanged), not as a failed test: the transcript records it.

=============================================  ==============================================
command                                        what it does
=============================================  ==============================================
``cluster ID... [seed=N] [key=value...]``      build the nodes (``key=value`` options go to
                                               the setup's ``build``); not started yet
``start [ID...]``                              ``Start`` (default: every node not yet up)
``fire ID TIMER``                              ``TimerFired``; the timer must be pending
``request ID RID WORDS...``                    ``ClientRequest`` (payload: the setup parses
                                               ``WORDS``)
``deliver [FILTER...] [limit=N]``              deliver every matching in-flight message, in
                                               send order; what they send stays in flight
``drop [FILTER...]``                           lose the matching messages
``duplicate [FILTER...]``                      put a second copy of each behind the first
``crash ID``                                   memory, timers and messages to ``ID`` gone;
                                               its store survives
``restart ID``                                 a fresh node object gets ``Restart(store)``
``settle [among=ID,ID] [rounds=N]``            deliver until nothing is in flight; messages
                                               from or to nodes outside ``among`` are lost
``advance MS``                                 move the clock (all events carry ``now``)
``state [ID...]``                              describe nodes (the setup's ``describe``)
``inflight`` / ``timers`` / ``persisted ID``   show the network, timers, a store
=============================================  ==============================================

``FILTER`` is any of ``from=ID``, ``to=ID``, ``type=MSGTYPE`` and ``has=TEXT`` (the
message's shown payload contains ``TEXT``; quote it when it has spaces). ``fire``,
``request`` and a ``deliver`` that matches one message take ``crash-after=N``: carry
out only the first ``N`` effects, then crash the node — the crash *inside* a step
that persist-before-send ordering is about. A setup may also give an ``observe``
function, called with the live nodes after every event: each problem it reports is
shown once, as a ``!! `` line, where it first appears.

File format
-----------
A transcript is a sequence of blocks; text between blocks (``#`` comments, blank
lines) is kept as written::

    # n1 campaigns
    fire n1 raft.election
    ----
    n1 persist raft/state {'t': 1, 'v': 'n1'}
    n1 → n2 raft.vote {'f': False, 'li': 0, 'lt': 0, 'p': False, 't': 1}
    n1 timer raft.election 1873ms

The line before ``----`` is the command (split like a shell line); the lines after it,
up to the next blank line, are the expected output (never empty: a step that did
nothing prints ``ok``). :func:`run_transcript` runs a file and raises
:class:`TranscriptMismatch` (an ``AssertionError`` with a diff) on the first block
whose output differs; with ``VSM_PHOENIX_REWRITE=1`` in the environment (or
``rewrite=True``) it writes the actual outputs into the file instead — the regenerate
switch. Review the diff of a rewritten file as you would review code.
"""

from __future__ import annotations

import ast
import difflib
import os
import random
import shlex
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import attrs

from vsm_phoenix.errors import DecodeError, InvalidArgument, VsmPhoenixError
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

__all__ = [
    "REWRITE_ENV",
    "Driver",
    "TranscriptError",
    "TranscriptMismatch",
    "TranscriptSetup",
    "attrs_options",
    "run_transcript",
    "transcript_files",
]

#: Environment variable that turns checking into regenerating.
REWRITE_ENV = "VSM_PHOENIX_REWRITE"

#: Longest shown payload or value; longer ones end in ``…``.
SHOW_LIMIT = 200

SEPARATOR = "----"


class TranscriptError(InvalidArgument):
    """A command the driver cannot carry out (unknown node, timer not pending, a bad
    argument). Shown as ``error: ...`` in a transcript; raised by :class:`Driver`."""


class TranscriptMismatch(AssertionError):
    """A block's actual output differs from the expected one (``path``, ``line``)."""

    def __init__(self, path: str, line: int, command: str, diff: str) -> None:
        super().__init__(f"{path}:{line}: output of {command!r} differs:\n{diff}\n"
                         f"(set {REWRITE_ENV}=1 to regenerate, then review the diff)")
        self.path = path
        self.line = line
        self.command = command


def _clip(text: str, limit: int = SHOW_LIMIT) -> str:
    text = text.replace("\n", "\\n")
    return text if len(text) <= limit else text[: limit - 1] + "…"


def show_bytes(data: bytes) -> str:
    """Decoded CBOR when ``data`` is canonical CBOR, else ``<N bytes>``."""
    try:
        return _clip(repr(decode_cbor(data)))
    except DecodeError:
        return f"<{len(data)} bytes>"


def show_envelope(env: Envelope) -> str:
    to = env.recipient if env.recipient is not None else f"topic:{env.topic}"
    return f"{env.sender} → {to} {env.type} {show_bytes(env.payload)}"


def show_effect(effect: Effect) -> str:
    """One effect as one line (without the node id)."""
    if isinstance(effect, Send):
        env = effect.envelope
        to = env.recipient if env.recipient is not None else f"topic:{env.topic}"
        return f"→ {to} {env.type} {show_bytes(env.payload)}"
    if isinstance(effect, Persist):
        if effect.value is None:
            return f"persist {effect.key} deleted"
        return f"persist {effect.key} {show_bytes(effect.value)}"
    if isinstance(effect, SetTimer):
        return f"timer {effect.name} {effect.delay_ms}ms"
    if isinstance(effect, CancelTimer):
        return f"cancel {effect.name}"
    rid = f" [{effect.request_id}]" if effect.request_id is not None else ""
    return f"deliver {effect.kind}{rid} {_clip(repr(effect.payload))}"


def _literal_request(words: Sequence[str]) -> Any:
    text = " ".join(words)
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError) as exc:
        raise TranscriptError(f"request payload {text!r} is not a Python literal") from exc


def _describe(node: Node) -> str:
    describe = getattr(node, "describe", None)
    if callable(describe):
        return str(describe())
    return repr(node)


def attrs_options(cls: type[Any], options: Mapping[str, str], **given: Any) -> Any:
    """Build the attrs class ``cls`` from ``given`` plus the ``key=value`` words of a
    ``cluster`` command: a field whose default is a bool takes ``true``/``false``, an
    int field an integer, any other field the string. Unknown keys and bad values are
    :class:`TranscriptError`. Meant for ``TranscriptSetup.build``."""
    fields = {f.name: f for f in attrs.fields(cls)}
    kwargs = dict(given)
    for key, text in options.items():
        field = fields.get(key)
        if field is None or key in given:
            raise TranscriptError(f"unknown option {key!r} for {cls.__name__}")
        default = field.default
        if isinstance(default, bool):
            if text not in ("true", "false"):
                raise TranscriptError(f"{key} must be true or false, got {text!r}")
            kwargs[key] = text == "true"
        elif isinstance(default, int):
            try:
                kwargs[key] = int(text)
            except ValueError:
                raise TranscriptError(f"{key} must be an integer, got {text!r}") from None
        else:
            kwargs[key] = text
    try:
        return cls(**kwargs)
    except (ValueError, TypeError) as exc:
        raise TranscriptError(f"bad {cls.__name__}: {exc}") from exc


@attrs.frozen
class TranscriptSetup:
    """What a test supplies to run transcripts of its nodes.

    ``build(ids, options)`` returns the node factory for the ``cluster`` command
    (``options``: its ``key=value`` words, as strings). ``parse_request(words)`` turns
    the words after ``request ID RID`` into a payload (default: one Python literal).
    ``describe(node)`` is what ``state`` shows (default: ``node.describe()`` or
    ``repr``). ``observe`` makes, per file, a checker called with the live nodes after
    every event that returns the problems it sees.
    """

    build: Callable[[tuple[str, ...], Mapping[str, str]], NodeFactory]
    parse_request: Callable[[Sequence[str]], Any] = _literal_request
    describe: Callable[[Node], str] = _describe
    observe: Callable[[], Callable[[Mapping[str, Node]], Sequence[str]]] | None = None


@attrs.define
class _InFlight:
    sender: str
    recipient: str
    envelope: Envelope


class Driver:
    """A hand-driven cluster (see the module docstring). Every method returns the
    output lines of its command and raises :class:`TranscriptError` on misuse, having
    changed nothing."""

    def __init__(
        self,
        factory: NodeFactory,
        node_ids: Sequence[str],
        *,
        seed: int = 0,
        observe: Callable[[Mapping[str, Node]], Sequence[str]] | None = None,
        describe: Callable[[Node], str] = _describe,
    ) -> None:
        if not callable(factory):
            raise TranscriptError("factory must be callable(node_id, rng) -> Node")
        ids = tuple(node_ids)
        if not ids or not all(isinstance(i, str) and i for i in ids) or len(set(ids)) != len(ids):
            raise TranscriptError(f"need distinct non-empty node ids, got {ids!r}")
        self.factory = factory
        self.node_ids = ids
        self.seed = seed
        self.now = 0
        self.nodes: dict[str, Node | None] = {}
        self.incarnation = dict.fromkeys(ids, 0)
        self.store: dict[str, dict[str, bytes]] = {i: {} for i in ids}
        self.timers: dict[str, dict[str, int]] = {i: {} for i in ids}
        self.inflight: list[_InFlight] = []
        self._observe = observe
        self._describe = describe
        self._reported: set[str] = set()
        for nid in ids:
            self.nodes[nid] = None

    # -- helpers -----------------------------------------------------------------------
    def live(self) -> dict[str, Node]:
        return {i: n for i, n in self.nodes.items() if n is not None}

    def _node(self, nid: str) -> Node:
        if nid not in self.nodes:
            raise TranscriptError(f"unknown node {nid!r}")
        node = self.nodes[nid]
        if node is None:
            raise TranscriptError(f"node {nid} is down")
        return node

    def _build(self, nid: str) -> Node:
        n = self.incarnation[nid]
        rng = random.Random(f"{self.seed}/{nid}" + (f"/{n}" if n else ""))
        node = self.factory(nid, rng)
        if not isinstance(node, Node) or node.node_id != nid:
            raise TranscriptError(f"factory did not build a node with id {nid!r}")
        return node

    def _carry_out(self, nid: str, effects: Sequence[Effect], indent: str) -> list[str]:
        out: list[str] = []
        for effect in effects:
            if isinstance(effect, Send):
                env = effect.envelope
                if env.recipient is not None:
                    targets = [env.recipient]
                else:
                    targets = [j for j in self.node_ids if j != nid]
                for t in targets:
                    self.inflight.append(_InFlight(nid, t, env))
            elif isinstance(effect, Persist):
                if effect.value is None:
                    self.store[nid].pop(effect.key, None)
                else:
                    self.store[nid][effect.key] = effect.value
            elif isinstance(effect, SetTimer):
                self.timers[nid][effect.name] = effect.delay_ms
            elif isinstance(effect, CancelTimer):
                self.timers[nid].pop(effect.name, None)
            elif not isinstance(effect, Deliver):
                out.append(f"{indent}{nid} error: unknown effect {effect!r}")
                continue
            out.append(f"{indent}{nid} {show_effect(effect)}")
        return out

    def _event(self, nid: str, event: Event, indent: str = "",
               crash_after: int | None = None) -> list[str]:
        node = self._node(nid)
        try:
            effects = node.step(event)
        except VsmPhoenixError as exc:
            return [f"{indent}{nid} error: {type(exc).__name__}: {exc}"]
        if crash_after is not None:
            out = self._carry_out(nid, effects[:crash_after], indent)
            out.append(f"{indent}{nid} crashed after {min(crash_after, len(effects))} of "
                       f"{len(effects)} effect(s)")
            self._crash(nid)
        else:
            out = self._carry_out(nid, effects, indent)
        return out + self._check(indent)

    def _check(self, indent: str) -> list[str]:
        if self._observe is None:
            return []
        out = []
        for problem in self._observe(self.live()):
            if problem not in self._reported:
                self._reported.add(problem)
                out.append(f"{indent}!! {problem}")
        return out

    def _crash(self, nid: str) -> None:
        self.nodes[nid] = None
        self.timers[nid] = {}
        self.inflight = [m for m in self.inflight if m.recipient != nid]

    @staticmethod
    def _crash_after(value: int | None) -> int | None:
        if value is not None and (type(value) is not int or value < 0):
            raise TranscriptError(f"crash-after must be an int >= 0, got {value!r}")
        return value

    # -- commands ----------------------------------------------------------------------
    def start(self, ids: Sequence[str] = ()) -> list[str]:
        todo = list(ids) or [i for i in self.node_ids if self.nodes[i] is None
                             and self.incarnation[i] == 0]
        for nid in todo:
            if nid not in self.nodes:
                raise TranscriptError(f"unknown node {nid!r}")
            if self.nodes[nid] is not None or self.incarnation[nid]:
                raise TranscriptError(f"node {nid} was started before (use restart)")
        out: list[str] = []
        for nid in todo:
            self.nodes[nid] = self._build(nid)
            self.incarnation[nid] = 1
            out += self._event(nid, Start(self.now))
        return out

    def fire(self, nid: str, timer: str, crash_after: int | None = None) -> list[str]:
        self._node(nid)
        crash_after = self._crash_after(crash_after)
        if timer not in self.timers[nid]:
            pending = ", ".join(sorted(self.timers[nid])) or "none"
            raise TranscriptError(f"timer {timer} of {nid} is not pending (pending: {pending})")
        del self.timers[nid][timer]
        return self._event(nid, TimerFired(self.now, timer), crash_after=crash_after)

    def request(self, nid: str, request_id: str, payload: Any,
                crash_after: int | None = None) -> list[str]:
        self._node(nid)
        crash_after = self._crash_after(crash_after)
        event = ClientRequest(self.now, request_id, payload)
        return self._event(nid, event, crash_after=crash_after)

    def _matching(self, src: str | None, dst: str | None, mtype: str | None,
                  has: str | None) -> list[_InFlight]:
        for nid in (src, dst):
            if nid is not None and nid not in self.nodes:
                raise TranscriptError(f"unknown node {nid!r}")
        return [m for m in self.inflight
                if src in (None, m.sender) and dst in (None, m.recipient)
                and mtype in (None, m.envelope.type)
                and (has is None or has in show_bytes(m.envelope.payload))]

    def deliver(self, src: str | None = None, dst: str | None = None,
                mtype: str | None = None, has: str | None = None,
                limit: int | None = None, crash_after: int | None = None) -> list[str]:
        crash_after = self._crash_after(crash_after)
        if limit is not None and (type(limit) is not int or limit < 1):
            raise TranscriptError(f"limit must be an int >= 1, got {limit!r}")
        batch = self._matching(src, dst, mtype, has)[:limit]
        if crash_after is not None and len(batch) != 1:
            raise TranscriptError(f"crash-after needs exactly one message, {len(batch)} match")
        if not batch:
            return ["no message matches"]
        ids = {id(m) for m in batch}
        self.inflight = [m for m in self.inflight if id(m) not in ids]
        out: list[str] = []
        for m in batch:
            env = m.envelope
            head = f"{m.recipient} ← {env.sender} {env.type} {show_bytes(env.payload)}"
            if self.nodes[m.recipient] is None:
                out.append(f"{head}: {m.recipient} is down, lost")
                continue
            out.append(head)
            out += self._event(m.recipient, Receive(self.now, m.envelope), "  ",
                               crash_after=crash_after)
        return out

    def drop(self, src: str | None = None, dst: str | None = None,
             mtype: str | None = None, has: str | None = None) -> list[str]:
        batch = self._matching(src, dst, mtype, has)
        ids = {id(m) for m in batch}
        self.inflight = [m for m in self.inflight if id(m) not in ids]
        return [f"dropped {show_envelope(m.envelope)}" for m in batch] or ["no message matches"]

    def duplicate(self, src: str | None = None, dst: str | None = None,
                  mtype: str | None = None, has: str | None = None) -> list[str]:
        batch = self._matching(src, dst, mtype, has)
        for m in batch:
            at = self.inflight.index(m)
            self.inflight.insert(at + 1, _InFlight(m.sender, m.recipient, m.envelope))
        return ([f"duplicated {show_envelope(m.envelope)}" for m in batch]
                or ["no message matches"])

    def crash(self, nid: str) -> list[str]:
        self._node(nid)
        lost = sum(1 for m in self.inflight if m.recipient == nid)
        self._crash(nid)
        return [f"{nid} crashed; {lost} message(s) to it lost"]

    def restart(self, nid: str) -> list[str]:
        if nid not in self.nodes:
            raise TranscriptError(f"unknown node {nid!r}")
        if self.nodes[nid] is not None:
            raise TranscriptError(f"node {nid} is up (crash it first)")
        if not self.incarnation[nid]:
            raise TranscriptError(f"node {nid} never started (use start)")
        self.nodes[nid] = self._build(nid)
        self.incarnation[nid] += 1
        return self._event(nid, Restart(self.now, dict(self.store[nid])))

    def settle(self, among: Sequence[str] | None = None, rounds: int = 100) -> list[str]:
        if type(rounds) is not int or rounds < 1:
            raise TranscriptError(f"rounds must be an int >= 1, got {rounds!r}")
        group = set(self.node_ids if among is None else among)
        unknown = group - set(self.node_ids)
        if unknown:
            raise TranscriptError(f"unknown nodes {sorted(unknown)!r}")
        out: list[str] = []
        for _ in range(rounds):
            for m in self.inflight:
                if m.sender not in group or m.recipient not in group:
                    out.append(f"dropped {show_envelope(m.envelope)}")
            self.inflight = [m for m in self.inflight
                             if m.sender in group and m.recipient in group]
            if not self.inflight:
                return out or ["ok"]
            out += self.deliver()
        out.append(f"not settled after {rounds} round(s): {len(self.inflight)} in flight")
        return out

    def advance(self, ms: int) -> list[str]:
        if type(ms) is not int or ms < 0:
            raise TranscriptError(f"advance needs milliseconds >= 0, got {ms!r}")
        self.now += ms
        return [f"now {self.now}ms"]

    def state(self, ids: Sequence[str] = ()) -> list[str]:
        out = []
        for nid in ids or self.node_ids:
            if nid not in self.nodes:
                raise TranscriptError(f"unknown node {nid!r}")
            node = self.nodes[nid]
            out.append(f"{nid}: down" if node is None else f"{nid}: {self._describe(node)}")
        return out

    def show_inflight(self) -> list[str]:
        return [show_envelope(m.envelope) if m.envelope.recipient is not None
                else f"{show_envelope(m.envelope)} (to {m.recipient})"
                for m in self.inflight] or ["none"]

    def show_timers(self, ids: Sequence[str] = ()) -> list[str]:
        out = []
        for nid in ids or self.node_ids:
            if nid not in self.nodes:
                raise TranscriptError(f"unknown node {nid!r}")
            names = " ".join(f"{k}({v}ms)" for k, v in sorted(self.timers[nid].items()))
            out.append(f"{nid}: {names or 'none'}")
        return out

    def show_persisted(self, nid: str) -> list[str]:
        if nid not in self.nodes:
            raise TranscriptError(f"unknown node {nid!r}")
        return [f"{k} {show_bytes(v)}" for k, v in sorted(self.store[nid].items())] or ["empty"]


# -- the file runner ---------------------------------------------------------------------
@attrs.define
class _Block:
    line: int  # 1-based line of the command
    command: str
    expected: list[str] | None  # None: no ``----`` (only acceptable when rewriting)
    before: list[str]  # text lines kept before the command


def _parse(text: str) -> tuple[list[_Block], list[str]]:
    lines = text.splitlines()
    blocks: list[_Block] = []
    pending: list[str] = []
    i = 0
    while i < len(lines):
        line = lines[i]
        if not line.strip() or line.lstrip().startswith("#"):
            pending.append(line)
            i += 1
            continue
        command, at = line, i + 1
        i += 1
        expected: list[str] | None = None
        if i < len(lines) and lines[i] == SEPARATOR:
            i += 1
            expected = []
            while i < len(lines) and lines[i].strip():
                expected.append(lines[i])
                i += 1
        blocks.append(_Block(at, command, expected, pending))
        pending = []
    return blocks, pending


def _options(words: Sequence[str]) -> tuple[list[str], dict[str, str]]:
    plain: list[str] = []
    opts: dict[str, str] = {}
    for w in words:
        key, eq, value = w.partition("=")
        if eq and key:
            if key in opts:
                raise TranscriptError(f"option {key} given twice")
            opts[key] = value
        else:
            plain.append(w)
    return plain, opts


def _int(opts: dict[str, str], key: str) -> int | None:
    if key not in opts:
        return None
    try:
        return int(opts.pop(key))
    except ValueError:
        raise TranscriptError(f"{key} must be an integer") from None


def _no_more(command: str, plain: Sequence[str], opts: Mapping[str, str]) -> None:
    if plain:
        raise TranscriptError(f"{command}: unexpected arguments {list(plain)!r}")
    if opts:
        raise TranscriptError(f"{command}: unknown options {sorted(opts)!r}")


class _Session:
    def __init__(self, setup: TranscriptSetup) -> None:
        self.setup = setup
        self.driver: Driver | None = None

    def run(self, command: str) -> list[str]:
        try:
            words = shlex.split(command)
        except ValueError as exc:
            return [f"error: {exc}"]
        try:
            lines = self._dispatch(words[0], words[1:])
        except TranscriptError as exc:
            return [f"error: {exc}"]
        return lines or ["ok"]

    def _need(self) -> Driver:
        if self.driver is None:
            raise TranscriptError("no cluster yet (the first command is `cluster ID...`)")
        return self.driver

    def _dispatch(self, cmd: str, args: list[str]) -> list[str]:
        if cmd == "request":
            return self._request(args)
        plain, opts = _options(args)
        if cmd == "cluster":
            if self.driver is not None:
                raise TranscriptError("the cluster is built once per file")
            seed = _int(opts, "seed") or 0
            ids = tuple(plain)
            factory = self.setup.build(ids, dict(opts))
            observe = self.setup.observe() if self.setup.observe is not None else None
            self.driver = Driver(factory, ids, seed=seed, observe=observe,
                                 describe=self.setup.describe)
            return []
        d = self._need()
        if cmd in ("deliver", "drop", "duplicate"):
            filters = {k: opts.pop(k, None) for k in ("from", "to", "type", "has")}
            limit = _int(opts, "limit") if cmd == "deliver" else None
            crash_after = _int(opts, "crash-after") if cmd == "deliver" else None
            _no_more(cmd, plain, opts)
            f = (filters["from"], filters["to"], filters["type"], filters["has"])
            if cmd == "deliver":
                return d.deliver(*f, limit=limit, crash_after=crash_after)
            return d.drop(*f) if cmd == "drop" else d.duplicate(*f)
        if cmd == "fire":
            crash_after = _int(opts, "crash-after")
            _no_more(cmd, plain[2:], opts)
            if len(plain) != 2:
                raise TranscriptError("usage: fire ID TIMER [crash-after=N]")
            return d.fire(plain[0], plain[1], crash_after)
        if cmd == "settle":
            among = opts.pop("among", None)
            rounds = _int(opts, "rounds")
            _no_more(cmd, plain, opts)
            return d.settle(among.split(",") if among else None,
                            100 if rounds is None else rounds)
        _no_more(cmd, (), opts)
        return self._simple(d, cmd, plain)

    def _request(self, args: list[str]) -> list[str]:
        d = self._need()
        # Payload words may contain "=": only crash-after is an option here.
        words = [w for w in args if not w.startswith("crash-after=")]
        given = [w.partition("=")[2] for w in args if w.startswith("crash-after=")]
        if len(given) > 1:
            raise TranscriptError("option crash-after given twice")
        crash_after = _int({"crash-after": given[0]}, "crash-after") if given else None
        if len(words) < 2:
            raise TranscriptError("usage: request ID RID WORDS... [crash-after=N]")
        payload = self.setup.parse_request(words[2:])
        return d.request(words[0], words[1], payload, crash_after)

    @staticmethod
    def _simple(d: Driver, cmd: str, plain: list[str]) -> list[str]:
        if cmd == "start":
            return d.start(plain)
        if cmd == "state":
            return d.state(plain)
        if cmd == "timers":
            return d.show_timers(plain)
        if cmd in ("crash", "restart", "persisted", "advance") and len(plain) != 1:
            raise TranscriptError(f"usage: {cmd} {'MS' if cmd == 'advance' else 'ID'}")
        if cmd == "crash":
            return d.crash(plain[0])
        if cmd == "restart":
            return d.restart(plain[0])
        if cmd == "persisted":
            return d.show_persisted(plain[0])
        if cmd == "advance":
            try:
                return d.advance(int(plain[0]))
            except ValueError:
                raise TranscriptError("advance needs an integer") from None
        if cmd == "inflight" and not plain:
            return d.show_inflight()
        raise TranscriptError(f"unknown command {cmd!r}")


def run_transcript(path: str | Path, setup: TranscriptSetup, *,
                   rewrite: bool | None = None) -> None:
    """Run the transcript at ``path`` and compare every block's output; raise
    :class:`TranscriptMismatch` at the first difference. With ``rewrite`` (default:
    the ``VSM_PHOENIX_REWRITE`` environment variable is set and not ``0``) write the
    actual outputs into the file instead."""
    path = Path(path)
    if rewrite is None:
        rewrite = os.environ.get(REWRITE_ENV, "0") not in ("", "0")
    blocks, tail = _parse(path.read_text(encoding="utf-8"))
    session = _Session(setup)
    out: list[str] = []
    for block in blocks:
        if out and out[-1].strip() and (not block.before or block.before[0].strip()):
            out.append("")  # a block ends at a blank line
        actual = session.run(block.command)
        if not rewrite and actual != block.expected:
            diff = "\n".join(difflib.unified_diff(
                block.expected or [], actual, "expected", "actual", lineterm=""))
            raise TranscriptMismatch(str(path), block.line, block.command, diff)
        out += [*block.before, block.command, SEPARATOR, *actual]
    if rewrite:
        text = "\n".join(out + tail).rstrip("\n") + "\n"
        path.write_text(text, encoding="utf-8")


def transcript_files(directory: str | Path) -> list[Path]:
    """The ``*.txt`` files under ``directory``, sorted (for ``pytest.mark.parametrize``)."""
    return sorted(Path(directory).glob("*.txt"))
