"""Raft scenarios as transcripts (``testdata/raft/*.txt``, etcd raft's data-driven style).

Each file is a script of steps over real :class:`RaftNode` s and the effects each step
had; see :mod:`vsm_phoenix.verify.transcript` for the commands and the format. The
cluster line takes :class:`RaftConfig` fields as options
(``cluster s1 s2 s3 pre_vote=false max_batch=1``); ``voters=s1,s2,s3`` makes only those
the bootstrap voters (the other nodes join later). Requests: ``propose TEXT``,
``read TEXT``, ``transfer ID``, ``reconfigure VOTER,... [learners=ID,...] [joint=false]``.
``state`` shows role, term, vote, commit, the log's terms (``c`` marks a configuration
entry) and the configuration in force. After every event :class:`RaftMonitor` checks
election safety, log matching, leader completeness and state-machine safety across
time; a violation appears as a ``!!`` line where it first happens.

Add a scenario by writing the commands (with ``----`` and nothing under it) and run
``VSM_PHOENIX_REWRITE=1 .venv/bin/python -m pytest tests/protocol/test_raft_transcripts.py``;
then read the written output as the story it tells, and keep it only if it is right.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest

from vsm_phoenix.protocol.node import Node, NodeFactory
from vsm_phoenix.protocol.raft import (
    Propose,
    RaftConfig,
    RaftMonitor,
    RaftNode,
    Read,
    Reconfigure,
    TransferLeadership,
)
from vsm_phoenix.verify.transcript import (
    TranscriptError,
    TranscriptSetup,
    attrs_options,
    run_transcript,
    transcript_files,
)

TESTDATA = Path(__file__).parent / "testdata" / "raft"


def build(ids: tuple[str, ...], options: Mapping[str, str]) -> NodeFactory:
    opts = dict(options)
    voters = tuple(opts.pop("voters").split(",")) if "voters" in opts else ids
    config = attrs_options(RaftConfig, opts, peers=voters)
    return lambda nid, rng: RaftNode(nid, rng, config)


def _ids(text: str) -> list[str]:
    return [i for i in text.split(",") if i]


def parse_request(words: Sequence[str]) -> Any:
    if len(words) == 2 and words[0] == "propose":
        return Propose(words[1].encode())
    if len(words) == 2 and words[0] == "read":
        return Read(words[1].encode())
    if len(words) == 2 and words[0] == "transfer":
        return TransferLeadership(words[1])
    if len(words) >= 2 and words[0] == "reconfigure":
        opts = dict(w.partition("=")[::2] for w in words[2:])
        if not set(opts) <= {"learners", "joint"} or opts.get("joint", "true") not in (
                "true", "false"):
            raise TranscriptError(f"reconfigure takes learners=IDS and joint=true|false, "
                                  f"got {words[2:]!r}")
        return Reconfigure(_ids(words[1]), _ids(opts.get("learners", "")),
                           joint=opts.get("joint", "true") == "true")
    raise TranscriptError("requests are: propose TEXT | read TEXT | transfer ID | "
                          f"reconfigure IDS [learners=IDS] [joint=false]; got {words!r}")


def describe(node: Node) -> str:
    assert isinstance(node, RaftNode)
    terms = ",".join(f"{node.term_at(i)}{'c' if (e := node.entry(i)) and e.config else ''}"
                     for i in range(node.snap_index + 1, node.last_index + 1))
    return (f"{node.role.value} term={node.term} vote={node.voted_for} "
            f"commit={node.commit_index} applied={node.last_applied} log=[{terms}] "
            f"conf={node.membership}")


def observe() -> Callable[[Mapping[str, Node]], Sequence[str]]:
    monitor = RaftMonitor()
    return lambda nodes: monitor.observe(n for n in nodes.values() if isinstance(n, RaftNode))


SETUP = TranscriptSetup(build=build, parse_request=parse_request, describe=describe,
                        observe=observe)


@pytest.mark.parametrize("path", transcript_files(TESTDATA), ids=lambda p: p.stem)
def test_raft_transcript(path: Path) -> None:
    run_transcript(path, SETUP)


def test_the_testdata_is_there() -> None:
    names = {p.stem for p in transcript_files(TESTDATA)}
    assert {"figure8_unsafe", "figure8_safe", "persist_before_send", "learner_promotion",
            "joint_change_removes_the_leader", "single_server_change_bug_safe",
            "single_server_change_bug_unsafe", "snapshot_in_chunks"} <= names


def test_the_2015_single_server_change_bug_is_caught_and_fixed() -> None:
    """The regression pair: the broken variant loses a committed entry (the monitor's
    ``!!`` lines are part of its expected output); the correct node refuses the early
    change and no ``!!`` line appears."""
    unsafe = (TESTDATA / "single_server_change_bug_unsafe.txt").read_text()
    safe = (TESTDATA / "single_server_change_bug_safe.txt").read_text()
    assert "!! state-machine safety" in unsafe and "!! leader completeness" in unsafe
    assert "!!" not in safe
    assert "raft.failed [r2] 'this leader has not committed an entry of its term yet'" in safe
    for name in ("joint_change_removes_the_leader", "learner_promotion", "snapshot_in_chunks"):
        assert "!!" not in (TESTDATA / f"{name}.txt").read_text(), name
