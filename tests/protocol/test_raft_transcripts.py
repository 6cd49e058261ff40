"""Raft scenarios as transcripts (``testdata/raft/*.txt``, etcd raft's data-driven style).

Each file is a script of steps over real :class:`RaftNode` s and the effects each step
had; see :mod:`vsm_phoenix.verify.transcript` for the commands and the format. The
cluster line takes :class:`RaftConfig` fields as options
(``cluster s1 s2 s3 pre_vote=false max_batch=1``). Requests: ``propose TEXT``,
``read TEXT``, ``transfer ID``. ``state`` shows role, term, vote, commit and the log's
terms. After every event :class:`RaftMonitor` checks election safety, log matching,
leader completeness and state-machine safety across time; a violation appears as a
``!!`` line where it first happens.

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
    config = attrs_options(RaftConfig, options, peers=ids)
    return lambda nid, rng: RaftNode(nid, rng, config)


def parse_request(words: Sequence[str]) -> Any:
    if len(words) == 2 and words[0] == "propose":
        return Propose(words[1].encode())
    if len(words) == 2 and words[0] == "read":
        return Read(words[1].encode())
    if len(words) == 2 and words[0] == "transfer":
        return TransferLeadership(words[1])
    raise TranscriptError(f"requests are: propose TEXT | read TEXT | transfer ID; got {words!r}")


def describe(node: Node) -> str:
    assert isinstance(node, RaftNode)
    terms = ",".join(str(node.term_at(i)) for i in range(node.snap_index + 1,
                                                          node.last_index + 1))
    return (f"{node.role.value} term={node.term} vote={node.voted_for} "
            f"commit={node.commit_index} applied={node.last_applied} log=[{terms}]")


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
    assert {"figure8_unsafe", "figure8_safe", "persist_before_send"} <= names
