"""Broker-free parts of the adapter: names, redaction, configuration, the outbox, the
command line."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from vsm_phoenix import cbor
from vsm_phoenix.cli import build_parser
from vsm_phoenix.cli import main as cli_main
from vsm_phoenix.cli.base import amqp_url
from vsm_phoenix.errors import InvalidArgument
from vsm_phoenix.ext.amqp import (
    DEFAULT_AMQP_URL,
    AmqpConfig,
    Topology,
    broker_available,
    redact,
)
from vsm_phoenix.ext.amqp.endpoint import LogLimiter, Outbox


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


def test_redact_hides_passwords_everywhere() -> None:
    url = "amqp://alice:pa55word@broker:5672/vh"
    text = f"cannot connect to {url}: ConnectionRefusedError; retry amqps://bob:x@h/"
    out = redact(text, url)
    assert "pa55word" not in out and ":x@" not in out
    assert "amqp://alice:***@broker:5672/vh" in out and "amqps://bob:***@h/" in out
    assert redact("the password pa55word alone", url) == "the password *** alone"
    assert redact("nothing here") == "nothing here"


def test_log_limiter_keeps_one_line_per_reason(caplog: pytest.LogCaptureFixture) -> None:
    now = [0.0]
    limiter = LogLimiter(10.0, clock=lambda: now[0])
    with caplog.at_level("WARNING", logger="vsm_phoenix.ext.amqp"):
        for _ in range(1000):
            limiter.log(30, "decode", "bad body")
        limiter.log(30, "authentication", "forged")
        now[0] = 11.0
        limiter.log(30, "decode", "bad body")
    lines = [r.getMessage() for r in caplog.records]
    assert lines == ["bad body", "forged", "bad body (999 similar suppressed)"]


def test_config_defaults_and_validation(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AMQP_URL", raising=False)
    assert amqp_url() == DEFAULT_AMQP_URL == AmqpConfig().url
    monkeypatch.setenv("AMQP_URL", "amqp://u:p@h:1/")
    # the command line reads the environment; the library takes parameters
    assert amqp_url() == "amqp://u:p@h:1/" and AmqpConfig().url == DEFAULT_AMQP_URL
    assert amqp_url("amqp://given/") == "amqp://given/"
    for bad in ({"window": 0}, {"batch_max_messages": 0}, {"message_ttl_ms": 0},
                {"linger_ms": -1}, {"dlq_max_length": 0}, {"key_usage_limit": 2**33},
                {"key_usage_warn": 2**31}):
        with pytest.raises(InvalidArgument):
            AmqpConfig(**bad)  # type: ignore[arg-type]


def test_no_broker_is_reported_not_raised() -> None:
    reason = asyncio.run(broker_available("amqp://guest:hunter22@127.0.0.1:1/", timeout=2))
    assert reason is not None and "no AMQP broker" in reason and "hunter22" not in reason


def test_cli_parsers(capsys: pytest.CaptureFixture[str]) -> None:
    parse = build_parser().parse_args
    a = parse(["node", "--id", "n1", "--cluster", "c", "--peers", "n1,n2"])
    assert (a.id, a.cluster, a.kind, a.batch_max, a.sync) == ("n1", "c", "crdt", 256, "normal")
    s = parse(["simulate", "--transport", "amqp", "--nodes", "5", "--kill",
               "--close-connections"])
    assert (s.nodes, s.kill, s.close_connections, s.scenario) == (5, True, True, "crdt")
    assert parse(["simulate", "--transport=amqp"]).transport == "amqp"
    with pytest.raises(SystemExit) as exc:
        cli_main(["node", "--help"])
    assert exc.value.code == 0
    assert cli_main(["simulate", "--transport", "amqp", "--nodes", "0"]) == 2
    assert cli_main(["simulate", "--kill"]) == 2  # an amqp option on the simulator
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1] == "vsm-phoenix simulate: --kill only with --transport amqp"


def test_node_without_broker_waits_then_gives_up_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from vsm_phoenix.crypto.credentials import ClusterSecrets

    keys = ClusterSecrets.create("c", nodes=["n1"]).write(tmp_path / "keys")
    code = cli_main(["node", "--id", "n1", "--keys", str(keys), "--data-dir",
                     str(tmp_path / "d"), "--amqp-url", "amqp://guest:pw1234@127.0.0.1:1/",
                     "--broker-wait-s", "1.2"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1 and "pw1234" not in "".join(err)
    assert len(err) == 2 and "waiting for the broker" in err[0] and "giving up" in err[1]


def test_simulate_without_broker_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    code = cli_main(["simulate", "--transport", "amqp", "--amqp-url",
                     "amqp://guest:guest@127.0.0.1:1/", "--no-progress"])
    assert code == 2
    assert "no AMQP broker" in capsys.readouterr().err


def _outbox_run(config: AmqpConfig, frames: int, delay: float = 0.005) -> dict[str, Any]:
    seen: dict[str, Any] = {"in_flight": 0, "max_in_flight": 0, "bodies": []}

    async def publish(key: str, body: bytes, count: int) -> None:
        seen["in_flight"] += 1
        seen["max_in_flight"] = max(seen["max_in_flight"], seen["in_flight"])
        await asyncio.sleep(delay)
        seen["in_flight"] -= 1
        seen["bodies"].append((key, cbor.loads(body)))

    async def main() -> None:
        stats = {"frames_confirmed": 0}
        box = Outbox(config, publish, cbor.dumps, stats)
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
