"""Member reports cross the process boundary as JSON: the round trip is exact, and
anything else is a DecodeError (no broker needed here; the runs over processes are in
test_ext_gepa_amqp.py)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from vsm_phoenix.errors import DecodeError
from vsm_phoenix.ext.gepa.cluster import ClusterConfig, SimulatedCluster
from vsm_phoenix.ext.gepa.deploy import Decision
from vsm_phoenix.ext.gepa.over_amqp import MemberReport
from vsm_phoenix.ext.gepa.processes import member_command, report_from_json, report_to_json


def _report() -> MemberReport:
    cl = SimulatedCluster(ClusterConfig(nodes=1, max_metric_calls=60, target=None))
    r = cl.run()
    assert r.frontier is not None and r.deployed is not None
    return MemberReport(node="n1", metric_calls=r.metric_calls, hits=3, migrated=0,
                        published=2, stop_reason="budget spent", frontier=r.frontier,
                        state_digest=b"\x01" * 32, deployed=r.deployed, leased=60)


def test_a_report_survives_json() -> None:
    rep = _report()
    back = report_from_json(json.loads(json.dumps(report_to_json(rep))))
    assert back == rep
    empty = MemberReport(node="n2", metric_calls=0, hits=0, migrated=0, published=0,
                         stop_reason=None, frontier=rep.frontier, state_digest=b"",
                         deployed=None)
    assert report_from_json(json.loads(json.dumps(report_to_json(empty)))) == empty


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda kids: st.lists(kids, max_size=4) | st.dictionaries(st.text(max_size=8), kids,
                                                              max_size=4),
    max_leaves=20)


@given(json_values)
def test_anything_else_is_a_decode_error(value: Any) -> None:
    with pytest.raises(DecodeError):
        report_from_json(value)


def test_a_damaged_report_is_a_decode_error() -> None:
    good = report_to_json(_report())
    for key, bad in (("frontier", {}), ("state_digest", "zz"), ("metric_calls", "x"),
                     ("deployed", "{}")):
        with pytest.raises(DecodeError):
            report_from_json({**good, key: bad})
    assert Decision.from_json(good["deployed"]).version == 1


def test_the_member_command_carries_the_config() -> None:
    from pathlib import Path

    cfg = ClusterConfig(nodes=2, max_metric_calls=90, seed=4, lease_calls=7)
    cmd = member_command("n2", keys_dir=Path("k"), members=["n1", "n2"], kv_nodes=["kv1"],
                         config=cfg, url="amqp://h/", report_dir=Path("r"), timeout_s=9.0)
    assert cmd[1:3] == ["-m", "vsm_phoenix.ext.gepa.processes"]
    assert ClusterConfig(**json.loads(cmd[cmd.index("--config") + 1])) == cfg
