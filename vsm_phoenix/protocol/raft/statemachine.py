"""What Raft replicates: the :class:`StateMachine` interface and a recording one."""

from __future__ import annotations

from typing import Any, Protocol

from vsm_phoenix.errors import DecodeError
from vsm_phoenix.protocol.envelope import decode_cbor, encode_cbor

__all__ = ["RecordingStateMachine", "StateMachine"]


class StateMachine(Protocol):
    """What Raft replicates. All methods are deterministic; ``apply`` and ``query`` are
    total (a malformed command yields an error *result*, never an exception)."""

    def apply(self, command: bytes) -> Any: ...

    def query(self, query: bytes) -> Any: ...

    def snapshot(self) -> bytes: ...

    def check_snapshot(self, data: bytes) -> None:
        """Raise :class:`DecodeError` unless ``restore(data)`` would succeed."""
        ...

    def restore(self, data: bytes) -> None: ...


class RecordingStateMachine:
    """A minimal state machine: the list of applied commands. ``query`` returns how many
    there are. Useful for tests and the model checker."""

    def __init__(self) -> None:
        self.applied: list[bytes] = []

    def apply(self, command: bytes) -> Any:
        self.applied.append(command)
        return len(self.applied)

    def query(self, query: bytes) -> Any:
        return len(self.applied)

    def snapshot(self) -> bytes:
        return encode_cbor(self.applied)

    def check_snapshot(self, data: bytes) -> None:
        value = decode_cbor(data)
        if not isinstance(value, list) or not all(isinstance(c, bytes) for c in value):
            raise DecodeError("recording snapshot must be a list of byte strings")

    def restore(self, data: bytes) -> None:
        self.check_snapshot(data)
        self.applied = list(decode_cbor(data))
