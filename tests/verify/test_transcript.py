"""The transcript harness on a tiny node whose every effect is known.

``Tally`` counts requests: ``inc`` persists the new count, tells every peer (a topic
message) and arms a timer; a peer that hears it delivers ``tally.heard``; the timer
sends a direct ``tally.ping`` to the next node. ``Restart`` recovers the count.
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest

from vsm_phoenix.errors import DecodeError, InvalidArgument
from vsm_phoenix.protocol.envelope import decode_cbor, encode_cbor
from vsm_phoenix.protocol.kit import Messenger, decode_payload
from vsm_phoenix.protocol.node import (
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
from vsm_phoenix.verify.transcript import (
    REWRITE_ENV,
    Driver,
    TranscriptError,
    TranscriptMismatch,
    TranscriptSetup,
    _InFlight,
    attrs_options,
    run_transcript,
    transcript_files,
)

IDS = ("a", "b", "c")


class Tally:
    def __init__(self, node_id: str, rng: random.Random, peers: Sequence[str] = IDS) -> None:
        self._id = node_id
        self.peers = tuple(peers)
        self.m = Messenger(node_id, rng)
        self.count = 0

    @property
    def node_id(self) -> str:
        return self._id

    def describe(self) -> str:
        return f"count={self.count}"

    def step(self, event: Event) -> list[Effect]:
        if isinstance(event, Start):
            return []
        if isinstance(event, Restart):
            self.count = decode_cbor(event.persisted["count"]) if event.persisted else 0
            return []
        if isinstance(event, ClientRequest):
            if event.payload != "inc":
                raise InvalidArgument(f"unknown request {event.payload!r}")
            self.count += 1
            return [Persist("count", encode_cbor(self.count)),
                    Send(self.m.envelope(event.now, "tally.inc", {"n": self.count},
                                         topic="tally")),
                    SetTimer("ping", 10),
                    Deliver("tally.ok", self.count, event.request_id)]
        if isinstance(event, TimerFired):
            nxt = self.peers[(self.peers.index(self._id) + 1) % len(self.peers)]
            return [self.m.send(event.now, nxt, "tally.ping", {"n": self.count})]
        if isinstance(event, Receive):
            body = decode_payload(event.envelope)
            if event.envelope.type == "tally.bad":
                raise DecodeError("tally.bad is never valid")
            return [Deliver("tally.heard", (event.envelope.sender, body["n"]))]
        return []


def _tally_factory(nid: str, rng: random.Random) -> Node:
    return Tally(nid, rng)


def build(ids: tuple[str, ...], options: Mapping[str, str]) -> NodeFactory:
    if options:
        raise TranscriptError(f"no options, got {sorted(options)}")
    return lambda nid, rng: Tally(nid, rng, ids)


def observe() -> Any:
    def check(nodes: Mapping[str, Node]) -> list[str]:
        return [f"{nid} counted past 2" for nid, n in nodes.items()
                if isinstance(n, Tally) and n.count > 2]
    return check


SETUP = TranscriptSetup(build=build, observe=observe, parse_request=" ".join)


def _run(tmp_path: Path, text: str, rewrite: bool = True) -> str:
    path = tmp_path / "t.txt"
    path.write_text(text)
    run_transcript(path, SETUP, rewrite=rewrite)
    return path.read_text()


def _outputs(text: str) -> dict[str, list[str]]:
    """command -> output lines, from a rewritten transcript; a command given again is
    keyed ``command#2``, ``command#3``..."""
    out: dict[str, list[str]] = {}
    blocks = text.split("\n\n")
    for b in blocks:
        lines = [x for x in b.splitlines() if not x.startswith("#")]
        if len(lines) >= 2 and lines[1] == "----":
            key, n = lines[0], 1
            while key in out:
                n += 1
                key = f"{lines[0]}#{n}"
            out[key] = lines[2:]
    return out


SCRIPT = """\
# a comment that stays
cluster a b c

start

request a r1 inc

inflight

timers

deliver to=b

drop to=c

fire a ping

deliver type=tally.ping

persisted a

state
"""


def test_every_command_prints_its_effects(tmp_path: Path) -> None:
    text = _run(tmp_path, SCRIPT)
    assert text.startswith("# a comment that stays\ncluster a b c\n----\nok\n")
    out = _outputs(text)
    assert out["start"] == ["ok"]
    assert out["request a r1 inc"] == [
        "a persist count 1",
        "a → topic:tally tally.inc {'n': 1}",
        "a timer ping 10ms",
        "a deliver tally.ok [r1] 1",
    ]
    assert out["inflight"] == ["a → topic:tally tally.inc {'n': 1} (to b)",
                               "a → topic:tally tally.inc {'n': 1} (to c)"]
    assert out["timers"] == ["a: ping(10ms)", "b: none", "c: none"]
    assert out["deliver to=b"] == ["b ← a tally.inc {'n': 1}",
                                   "  b deliver tally.heard ('a', 1)"]
    assert out["drop to=c"] == ["dropped a → topic:tally tally.inc {'n': 1}"]
    assert out["fire a ping"] == ["a → b tally.ping {'n': 1}"]
    assert out["deliver type=tally.ping"] == ["b ← a tally.ping {'n': 1}",
                                              "  b deliver tally.heard ('a', 1)"]
    assert out["persisted a"] == ["count 1"]
    assert out["state"] == ["a: count=1", "b: count=0", "c: count=0"]
    # Checking the rewritten file passes; the rewrite is stable.
    run_transcript(tmp_path / "t.txt", SETUP, rewrite=False)
    assert _run(tmp_path, text) == text


def test_a_changed_output_is_a_mismatch_with_a_diff(tmp_path: Path) -> None:
    text = _run(tmp_path, SCRIPT).replace("b deliver tally.heard ('a', 1)",
                                          "b deliver tally.heard ('a', 2)", 1)
    path = tmp_path / "t.txt"
    path.write_text(text)
    with pytest.raises(TranscriptMismatch) as info:
        run_transcript(path, SETUP, rewrite=False)
    assert info.value.command == "deliver to=b"
    assert info.value.line == text.splitlines().index("deliver to=b") + 1
    assert "-  b deliver tally.heard ('a', 2)" in str(info.value)
    assert "+  b deliver tally.heard ('a', 1)" in str(info.value)
    assert path.read_text() == text  # checking never writes


def test_a_block_without_expected_output_fails_unless_rewriting(tmp_path: Path) -> None:
    path = tmp_path / "t.txt"
    path.write_text("cluster a b\nstart\n")
    with pytest.raises(TranscriptMismatch):
        run_transcript(path, SETUP, rewrite=False)
    run_transcript(path, SETUP, rewrite=True)
    assert path.read_text() == "cluster a b\n----\nok\n\nstart\n----\nok\n"


def test_the_environment_switch_rewrites(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "t.txt"
    path.write_text("cluster a b\n----\nwrong\n")
    monkeypatch.setenv(REWRITE_ENV, "1")
    run_transcript(path, SETUP)
    assert path.read_text() == "cluster a b\n----\nok\n"
    monkeypatch.setenv(REWRITE_ENV, "0")
    path.write_text("cluster a b\n----\nwrong\n")
    with pytest.raises(TranscriptMismatch):
        run_transcript(path, SETUP)


def test_crash_restart_and_crash_inside_a_step(tmp_path: Path) -> None:
    out = _outputs(_run(tmp_path, """\
cluster a b

start

request a r1 inc crash-after=1

state

restart a

state

request a r2 inc

crash b

inflight

restart b
"""))
    assert out["request a r1 inc crash-after=1"] == [
        "a persist count 1", "a crashed after 1 of 4 effect(s)"]
    assert out["state"] == ["a: down", "b: count=0"]
    assert out["restart a"] == ["ok"]
    assert out["state#2"] == ["a: count=1", "b: count=0"]  # the count was on disk
    assert out["request a r2 inc"][-1] == "a deliver tally.ok [r2] 2"  # count recovered
    assert out["crash b"] == ["b crashed; 1 message(s) to it lost"]
    assert out["inflight"] == ["none"]


def test_duplicate_settle_advance_and_the_observer(tmp_path: Path) -> None:
    out = _outputs(_run(tmp_path, """\
cluster a b

start

request a r1 inc

duplicate from=a

settle

request a r2 inc

request a r3 inc

settle among=a

advance 25

fire a ping
"""))
    assert out["duplicate from=a"] == ["duplicated a → topic:tally tally.inc {'n': 1}"]
    assert out["settle"] == ["b ← a tally.inc {'n': 1}", "  b deliver tally.heard ('a', 1)",
                             "b ← a tally.inc {'n': 1}", "  b deliver tally.heard ('a', 1)"]
    assert out["request a r3 inc"][-1] == "!! a counted past 2"
    assert out["settle among=a"] == ["dropped a → topic:tally tally.inc {'n': 2}",
                                     "dropped a → topic:tally tally.inc {'n': 3}"]
    assert out["advance 25"] == ["now 25ms"]
    assert out["fire a ping"] == ["a → b tally.ping {'n': 3}"]  # reported once only


@pytest.mark.parametrize(("command", "error"), [
    ("start", "no cluster yet"),
    ("bogus", "no cluster yet"),
])
def test_commands_before_the_cluster_are_errors(tmp_path: Path, command: str,
                                                error: str) -> None:
    out = _outputs(_run(tmp_path, f"{command}\n"))
    assert out[command][0].startswith("error: ") and error in out[command][0]


@pytest.mark.parametrize(("command", "error"), [
    ("cluster a", "built once"),
    ("bogus", "unknown command"),
    ("fire a ping", "not pending"),
    ("fire a", "usage: fire"),
    ("fire z ping", "unknown node"),
    ("fire a ping crash-after=x", "crash-after must be an integer"),
    ("request a", "usage: request"),
    ("request a r9 dec", "a error: InvalidArgument: unknown request"),
    ("deliver to=z", "unknown node"),
    ("deliver limit=0", "limit must be"),
    ("deliver nope", "unexpected arguments"),
    ("deliver crash-after=1", "exactly one message"),
    ("drop color=red", "unknown options"),
    ("settle rounds=0", "rounds must be"),
    ("settle among=a,z", "unknown nodes"),
    ("advance -5", "advance needs"),
    ("advance soon", "integer"),
    ("crash", "usage: crash"),
    ("crash z", "unknown node"),
    ("restart a", "is up"),
    ("start a", "started before"),
    ("state z", "unknown node"),
    ("timers z", "unknown node"),
    ("persisted z", "unknown node"),
    ("inflight a", "unknown command"),
    ("deliver has='unclosed", "quotation"),
    ("deliver from=a from=b", "given twice"),
])
def test_bad_commands_are_error_lines_and_change_nothing(tmp_path: Path, command: str,
                                                         error: str) -> None:
    text = _run(tmp_path, f"cluster a b\n\nstart\n\n{command}\n\nstate\n\ninflight\n\ntimers\n")
    out = _outputs(text)
    assert len(out[command]) == 1 and "error: " in out[command][0], out[command]
    assert error in out[command][0], out[command]
    assert out["state"] == ["a: count=0", "b: count=0"]
    assert out["inflight"] == ["none"]
    assert out["timers"] == ["a: none", "b: none"]


def test_a_peer_error_is_shown_and_the_message_consumed() -> None:
    d = Driver(_tally_factory, IDS)
    d.start()
    env = Tally("a", random.Random(0)).m.send(0, "b", "tally.bad", {"n": 1}).envelope
    d.inflight.append(_InFlight("a", "b", env))
    assert d.deliver() == ["b ← a tally.bad {'n': 1}",
                           "  b error: DecodeError: tally.bad is never valid"]
    assert d.inflight == []


def test_the_default_request_parser_takes_one_python_literal(tmp_path: Path) -> None:
    path = tmp_path / "t.txt"
    path.write_text("cluster a\n\nstart\n\nrequest a r1 \"'inc'\"\n\nrequest a r2 [oops\n")
    run_transcript(path, TranscriptSetup(build=build), rewrite=True)
    out = _outputs(path.read_text())
    assert out["request a r1 \"'inc'\""][-1] == "a deliver tally.ok [r1] 1"
    assert out["request a r2 [oops"] == ["error: request payload '[oops' is not a Python literal"]


def test_driver_misuse_raises() -> None:
    with pytest.raises(TranscriptError):
        Driver(_tally_factory, ())
    with pytest.raises(TranscriptError):
        Driver(_tally_factory, ("a", "a"))
    with pytest.raises(TranscriptError):
        Driver("not callable", ("a",))  # type: ignore[arg-type]
    d = Driver(lambda nid, rng: Tally("x", rng), ("a",))
    with pytest.raises(TranscriptError, match="factory did not build"):
        d.start()
    d = Driver(_tally_factory, ("a",))
    with pytest.raises(TranscriptError, match="never started"):
        d.restart("a")
    d.start()
    with pytest.raises(TranscriptError, match="crash-after"):
        d.fire("a", "ping", crash_after=-1)


def test_attrs_options_converts_by_default_type() -> None:
    from vsm_phoenix.protocol.raft import RaftConfig
    cfg = attrs_options(RaftConfig, {"pre_vote": "false", "max_batch": "2"}, peers=("a",))
    assert cfg.pre_vote is False and cfg.max_batch == 2
    for bad in ({"pre_vote": "no"}, {"max_batch": "two"}, {"colour": "red"},
                {"peers": "x"}, {"max_batch": "0"}):
        with pytest.raises(TranscriptError):
            attrs_options(RaftConfig, bad, peers=("a",))


def test_transcript_files_lists_txt_sorted(tmp_path: Path) -> None:
    for name in ("b.txt", "a.txt", "c.md"):
        (tmp_path / name).write_text("")
    assert [p.name for p in transcript_files(tmp_path)] == ["a.txt", "b.txt"]
