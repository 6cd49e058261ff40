"""The README's Python examples run as written (docs must match the code).

A block whose first line is ``# needs RabbitMQ at $AMQP_URL`` talks to the broker: it is
skipped with the reason when none answers, unless ``VSM_PHOENIX_REQUIRE_AMQP=1`` (CI),
where that is a failure.
"""

from __future__ import annotations

import asyncio
import os
import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parent.parent / "README.md"
BLOCKS = re.findall(r"```python\n(.*?)```", README.read_text(encoding="utf-8"), re.S)
NEEDS_BROKER = "# needs RabbitMQ"


def test_readme_has_examples() -> None:
    assert BLOCKS, "README.md lost its Python examples"
    assert any(b.startswith(NEEDS_BROKER) for b in BLOCKS), "the Cluster example is gone"


def _require_broker() -> None:
    pytest.importorskip("aio_pika")
    from vsm_phoenix.cli.base import amqp_url
    from vsm_phoenix.ext.amqp import broker_available

    reason = asyncio.run(broker_available(amqp_url()))
    if reason is not None:
        if os.environ.get("VSM_PHOENIX_REQUIRE_AMQP") == "1":
            pytest.fail(f"VSM_PHOENIX_REQUIRE_AMQP=1 but {reason}")
        pytest.skip(reason)


@pytest.mark.parametrize("index", range(len(BLOCKS)))
def test_readme_example_runs(index: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    if BLOCKS[index].startswith(NEEDS_BROKER):
        _require_broker()
    monkeypatch.chdir(tmp_path)  # examples write files (keys/...): never into the checkout
    exec(compile(BLOCKS[index], f"README.md[python block {index}]", "exec"), {})
