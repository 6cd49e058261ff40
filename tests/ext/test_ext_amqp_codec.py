"""Broker-free parts of the adapter: names, batches, configuration, keyset loading."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from vsm_phoenix.crypto import KeyKind, Keyset
from vsm_phoenix.errors import DecodeError, InvalidArgument
from vsm_phoenix.ext.amqp import (
    DEFAULT_AMQP_URL,
    AmqpConfig,
    Topology,
    amqp_url,
    broker_available,
    decode_batch,
    encode_batch,
    load_keyset,
)
from vsm_phoenix.ext.runner import main as runner_main
from vsm_phoenix.ext.runner import node_parser, simulate_parser


def test_topology_names_and_escaped_routing_keys() -> None:
    t = Topology("demo")
    assert (t.exchange, t.dlx, t.dlq) == ("vsm.demo", "vsm.demo.dlx", "vsm.demo.dlq")
    assert t.node_queue("n1") == "vsm.demo.node.n1"
    assert t.direct_key("n1", "swim.ping") == "to.n1.swim%2Eping"
    assert t.direct_key("a.b#*", "x") == "to.a%2Eb%23%2A.x"
    assert t.topic_key("news", "t") == "tp.news.t"
    assert t.bindings("a.b") == ("to.a%2Eb.#", "tp.#")
    with pytest.raises(InvalidArgument):
        Topology("")


@given(st.lists(st.binary(max_size=64), min_size=1, max_size=20))
def test_batches_round_trip(frames: list[bytes]) -> None:
    assert decode_batch(encode_batch(frames)) == frames


@pytest.mark.parametrize("body", [b"", b"\xff", b"\x80", b"\x81\x01", b"\xa0", b"garbage"])
def test_bad_batches_are_decode_errors(body: bytes) -> None:
    with pytest.raises(DecodeError):
        decode_batch(body)


@given(st.binary(max_size=200))
def test_decode_batch_is_total(body: bytes) -> None:
    try:
        frames = decode_batch(body)
    except DecodeError:
        return
    assert frames and all(isinstance(f, bytes) for f in frames)


def test_config_defaults_and_validation(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AMQP_URL", raising=False)
    assert amqp_url() == DEFAULT_AMQP_URL == AmqpConfig().url
    monkeypatch.setenv("AMQP_URL", "amqp://u:p@h:1/")
    assert AmqpConfig().url == "amqp://u:p@h:1/"
    for bad in ({"window": 0}, {"batch_max_messages": 0}, {"message_ttl_ms": 0},
                {"linger_ms": -1}):
        with pytest.raises(InvalidArgument):
            AmqpConfig(**bad)  # type: ignore[arg-type]


def test_keyset_from_file_and_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ks = Keyset.generate(KeyKind.AES256_GCM)
    path = tmp_path / "ks.json"
    path.write_text(ks.to_tink_json())
    assert load_keyset(str(path)).primary_id == ks.primary_id
    monkeypatch.delenv("VSM_PHOENIX_KEYSET_FILE", raising=False)
    monkeypatch.setenv("VSM_PHOENIX_KEYSET", ks.to_tink_json())
    assert load_keyset().primary_id == ks.primary_id
    monkeypatch.delenv("VSM_PHOENIX_KEYSET")
    monkeypatch.setenv("VSM_PHOENIX_KEYSET_FILE", str(path))
    assert load_keyset().primary_id == ks.primary_id
    monkeypatch.delenv("VSM_PHOENIX_KEYSET_FILE")
    with pytest.raises(InvalidArgument):
        load_keyset()


def test_no_broker_is_reported_not_raised() -> None:
    reason = asyncio.run(broker_available("amqp://guest:guest@127.0.0.1:1/", timeout=2))
    assert reason is not None and "no AMQP broker" in reason


def test_cli_parsers() -> None:
    a = node_parser().parse_args(["--id", "n1", "--cluster", "c", "--peers", "n1,n2"])
    assert (a.id, a.cluster, a.role, a.batch_max, a.sync) == ("n1", "c", "crdt", 256, "normal")
    s = simulate_parser().parse_args(["--nodes", "5", "--kill", "--close-connections"])
    assert (s.nodes, s.kill, s.close_connections, s.scenario) == (5, True, True, "crdt")
    assert runner_main(["simulate", "--transport", "inproc"]) == 2  # usage error
    assert simulate_parser().parse_args(["--transport=amqp"]).transport == "amqp"
    assert runner_main(["node", "--help"]) == 0
    assert runner_main([]) == 2


def test_node_without_broker_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    code = runner_main(["node", "--id", "n1", "--cluster", "c", "--amqp-url",
                        "amqp://guest:guest@127.0.0.1:1/"])
    assert code == 2
    assert "no AMQP broker" in capsys.readouterr().err


def test_simulate_without_broker_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    code = runner_main(["simulate", "--transport", "amqp", "--amqp-url",
                        "amqp://guest:guest@127.0.0.1:1/", "--no-progress"])
    assert code == 2
    assert "no AMQP broker" in capsys.readouterr().err


def _outbox_run(config: AmqpConfig, frames: int, delay: float = 0.005) -> dict[str, Any]:
    from vsm_phoenix.ext.amqp import _Outbox

    seen: dict[str, Any] = {"in_flight": 0, "max_in_flight": 0, "bodies": []}

    async def publish(key: str, body: bytes, count: int) -> None:
        seen["in_flight"] += 1
        seen["max_in_flight"] = max(seen["max_in_flight"], seen["in_flight"])
        await asyncio.sleep(delay)
        seen["in_flight"] -= 1
        seen["bodies"].append((key, decode_batch(body)))

    async def main() -> None:
        stats = {"frames_confirmed": 0}
        box = _Outbox(config, publish, stats)
        for i in range(frames):
            box.add(f"k{i % 2}", b"f%d" % i)
        seen["room_after_add"] = box._room.is_set()
        assert await box.drain(timeout=10)
        seen["confirmed"] = stats["frames_confirmed"]
        seen["pending"] = box.pending

    asyncio.run(main())
    return seen


def test_outbox_bounds_the_in_flight_window() -> None:
    seen = _outbox_run(AmqpConfig(batch_max_messages=1, window=3), 40)
    assert seen["max_in_flight"] == 3
    assert len(seen["bodies"]) == 40 and seen["confirmed"] == 40 and seen["pending"] == 0


def test_outbox_batches_by_count_and_lingers_for_the_rest() -> None:
    seen = _outbox_run(AmqpConfig(batch_max_messages=8, linger_ms=1), 21)
    sizes = sorted(len(frames) for _key, frames in seen["bodies"])
    # two routing keys: 11 + 10 frames -> 8 + 3 and 8 + 2 (the remainders by linger)
    assert sizes == [2, 3, 8, 8]
    for key, frames in seen["bodies"]:  # a batch never mixes routing keys, order kept
        assert all(int(f[1:]) % 2 == int(key[1:]) for f in frames)
        assert frames == sorted(frames, key=lambda f: int(f[1:]))


def test_outbox_batches_by_bytes() -> None:
    seen = _outbox_run(AmqpConfig(batch_max_messages=1000, batch_max_bytes=10), 12)
    assert all(sum(map(len, frames)) >= 10 or len(frames) < 5
               for _k, frames in seen["bodies"])
    assert sum(len(f) for _k, f in seen["bodies"]) == 12


def test_outbox_applies_backpressure() -> None:
    seen = _outbox_run(AmqpConfig(batch_max_messages=1, max_outbox=5), 10)
    assert seen["room_after_add"] is False and seen["pending"] == 0
