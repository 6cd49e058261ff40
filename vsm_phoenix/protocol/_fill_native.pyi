"""Type stub of the Cython slot-filling kernels: the signatures of
:mod:`vsm_phoenix.protocol._fill_pure`."""

from collections.abc import Iterable, Sequence
from typing import Any

class Layout:
    cls: type
    names: tuple[str, ...]
    def __init__(self, cls: type, names: Sequence[str]) -> None: ...

def build(layout: Layout, values: Sequence[Any]) -> Any: ...
def build_many(layout: Layout, n: int, columns: Sequence[Iterable[Any]]) -> list[Any]: ...
def envelope_init(
    layout: Layout, env: Any, message_id: Any, msg_type: Any, sender: Any, recipient: Any,
    topic: Any, correlation_id: Any, timestamp: Any, hop_limit: Any, causal_context: Any,
    payload: Any,
) -> bool: ...
def parse_columns(data: object, max_payload: int) -> list[list[Any]]: ...
def encode_batch(
    layout: Layout, envelopes: Sequence[Any], sender: Any, recipient: Any, topic: Any,
    threshold: int,
) -> bytes | None: ...
