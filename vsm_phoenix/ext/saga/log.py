"""Durable saga logs: where a :class:`~vsm_phoenix.ext.saga.core.SagaCore`'s records go.

A :class:`SagaLog` keeps, per saga id, a sequence of records and offers one write: a
**compare-and-append** (``append(saga_id, expected, records)`` appends iff the log holds
exactly ``expected`` records, atomically). That single primitive is what fences a
deposed coordinator (see :mod:`vsm_phoenix.ext.saga.core`). Two implementations:

* :class:`StorageSagaLog` over any :class:`~vsm_phoenix.storage.TransactionalStorage`
  -- :class:`~vsm_phoenix.storage.SQLiteStorage` by default (several processes may share
  one file: a transaction is ``BEGIN IMMEDIATE``), or
  :class:`~vsm_phoenix.storage.MemoryStorage` in simulations. One key per record plus a
  small meta record (count, finished), written in one transaction.
* :class:`KVSagaLog` over the Raft-replicated linearizable KV (anything with the async
  ``get`` / ``cas`` / ``append`` of :class:`AsyncKV`: the AMQP
  :class:`~vsm_phoenix.ext.amqp.cluster.KV` across processes, or the in-process
  :class:`~vsm_phoenix.ext.saga.raftkv.SimulatedRaftKV`). A saga's log is one KV value
  (its records, base64, one per line) replaced by ``cas`` -- compare-and-set on the
  whole value *is* compare-and-append, linearizably, on every node. An index key lists
  the saga ids (appended before a saga's log is created, so a crash cannot hide a
  saga from recovery) and a second one the finished ones.

Records read back are decoded with the strict decoder
(:func:`~vsm_phoenix.ext.saga.records.decode_record`): a log that does not decode is a
:class:`~vsm_phoenix.errors.DecodeError`, never a half-read saga.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Sequence
from typing import Any, Protocol, runtime_checkable

from vsm_phoenix import cbor
from vsm_phoenix.errors import DecodeError, InvalidArgument, TypeMismatch
from vsm_phoenix.ext.saga.records import TERMINAL, Record, check_name, decode_record, encode_record
from vsm_phoenix.storage import TransactionalStorage

__all__ = ["AsyncKV", "KVSagaLog", "SagaLog", "StorageSagaLog", "format_log_value",
           "parse_log_value"]


@runtime_checkable
class SagaLog(Protocol):
    """Per-saga record sequences with compare-and-append (see the module docstring)."""

    async def load(self, saga_id: str) -> list[Record] | None:
        """The saga's records in order, or ``None`` if the log has no such saga."""
        ...

    async def append(self, saga_id: str, expected: int, records: Sequence[Record]) -> bool:
        """Append ``records`` iff the log holds exactly ``expected`` records; whether it
        did. An exception means the outcome is unknown."""
        ...

    async def saga_ids(self, *, active_only: bool = False) -> list[str]:
        """Every saga id in the log (only the unfinished ones with ``active_only``)."""
        ...


class StorageSagaLog:
    """A :class:`SagaLog` in a :class:`~vsm_phoenix.storage.TransactionalStorage`."""

    def __init__(self, storage: TransactionalStorage, *, prefix: str = "saga/") -> None:
        if not isinstance(storage, TransactionalStorage):
            raise TypeMismatch("the saga log needs a storage with transaction()")
        if not isinstance(prefix, str):
            raise TypeMismatch("prefix must be a str")
        self.storage = storage
        self.prefix = prefix

    def _meta_key(self, saga_id: str) -> str:
        return f"{self.prefix}meta/{saga_id}"

    def _meta(self, saga_id: str) -> tuple[int, bool]:
        raw = self.storage.get(self._meta_key(saga_id))
        if raw is None:
            return 0, False
        obj = cbor.loads(raw, max_size=64, wire=True)
        if (not isinstance(obj, dict) or set(obj) != {"n", "done"} or type(obj["n"]) is not int
                or obj["n"] < 0 or type(obj["done"]) is not bool):
            raise DecodeError("saga meta record must be {n, done}")
        return obj["n"], obj["done"]

    async def load(self, saga_id: str) -> list[Record] | None:
        check_name(saga_id, "saga id")
        n, _ = self._meta(saga_id)
        if n == 0:
            return None
        rows = self.storage.items(f"{self.prefix}log/{saga_id}/")
        if len(rows) != n:
            raise DecodeError(f"saga {saga_id}: {len(rows)} records stored, meta says {n}")
        return [decode_record(v) for _, v in rows]

    async def append(self, saga_id: str, expected: int, records: Sequence[Record]) -> bool:
        check_name(saga_id, "saga id")
        encoded = [encode_record(r) for r in records]
        with self.storage.transaction():
            n, done = self._meta(saga_id)
            if n != expected:
                return False
            for i, data in enumerate(encoded):
                self.storage.put(f"{self.prefix}log/{saga_id}/{n + i:08d}", data)
            done = done or any(r.kind in TERMINAL for r in records)
            self.storage.put(self._meta_key(saga_id),
                             cbor.dumps({"n": n + len(encoded), "done": done}))
        return True

    async def saga_ids(self, *, active_only: bool = False) -> list[str]:
        out = []
        for key, _ in self.storage.items(f"{self.prefix}meta/"):
            saga_id = key[len(self.prefix) + 5:]
            if not active_only or not self._meta(saga_id)[1]:
                out.append(saga_id)
        return out


@runtime_checkable
class AsyncKV(Protocol):
    """The async client surface :class:`KVSagaLog` needs from a linearizable KV."""

    async def get(self, key: str, *, timeout_s: float | None = None) -> str | None: ...

    async def cas(self, key: str, expected: str | None, value: str, *,
                  timeout_s: float | None = None) -> bool: ...

    async def append(self, key: str, value: str, *, timeout_s: float | None = None) -> None: ...


def parse_log_value(value: str) -> list[Record]:
    """The records of a :class:`KVSagaLog` value (base64 records, one per line);
    :class:`DecodeError` for anything else."""
    if not isinstance(value, str):
        raise TypeMismatch("a saga log value is a str")
    out = []
    for line in value.split("\n"):
        try:
            raw = base64.b64decode(line.encode("ascii"), validate=True)
        except (binascii.Error, UnicodeEncodeError):
            raise DecodeError("saga log line is not base64") from None
        out.append(decode_record(raw))
    return out


def _line(record: Record) -> str:
    return base64.b64encode(encode_record(record)).decode("ascii")


def format_log_value(records: Sequence[Record]) -> str:
    """The :class:`KVSagaLog` value of ``records`` (inverse of :func:`parse_log_value`)."""
    return "\n".join(_line(r) for r in records)


class KVSagaLog:
    """A :class:`SagaLog` in a linearizable KV (see the module docstring).

    The client remembers the value it last wrote per saga, so an append by the owner
    is one ``cas`` (a second round trip, a ``get``, only after a failed one)."""

    def __init__(self, kv: Any, *, prefix: str = "saga", timeout_s: float | None = None) -> None:
        if not isinstance(kv, AsyncKV):
            raise TypeMismatch("kv must offer async get, cas and append")
        check_name(prefix, "prefix")
        self.kv = kv
        self.prefix = prefix
        self.timeout_s = timeout_s
        self._known: dict[str, tuple[str, int]] = {}

    def _key(self, saga_id: str) -> str:
        return f"{self.prefix}/log/{saga_id}"

    async def _current(self, saga_id: str) -> tuple[str | None, int]:
        value = await self.kv.get(self._key(saga_id), timeout_s=self.timeout_s)
        if value is None:
            return None, 0
        return value, len(parse_log_value(value))

    async def load(self, saga_id: str) -> list[Record] | None:
        check_name(saga_id, "saga id")
        value = await self.kv.get(self._key(saga_id), timeout_s=self.timeout_s)
        return None if value is None else parse_log_value(value)

    async def append(self, saga_id: str, expected: int, records: Sequence[Record]) -> bool:
        check_name(saga_id, "saga id")
        if not records:
            raise InvalidArgument("append at least one record")
        lines = format_log_value(records)
        current: str | None
        if expected == 0:
            current, n = None, 0
            await self.kv.append(f"{self.prefix}/index", saga_id + "\n",
                                 timeout_s=self.timeout_s)
        elif saga_id in self._known and self._known[saga_id][1] == expected:
            current, n = self._known[saga_id]
        else:
            current, n = await self._current(saga_id)
        if n != expected:
            return False
        new = lines if current is None else current + "\n" + lines
        self._known.pop(saga_id, None)
        if not await self.kv.cas(self._key(saga_id), current, new, timeout_s=self.timeout_s):
            return False  # the log moved: another coordinator wrote it (or our lost write)
        self._known[saga_id] = (new, expected + len(records))
        if any(r.kind in TERMINAL for r in records):
            self._known.pop(saga_id, None)
            await self.kv.append(f"{self.prefix}/done", saga_id + "\n", timeout_s=self.timeout_s)
        return True

    async def _listed(self, key: str) -> list[str]:
        value = await self.kv.get(key, timeout_s=self.timeout_s)
        seen: dict[str, None] = {}
        for line in (value or "").split("\n"):
            if line:
                seen.setdefault(line, None)
        return list(seen)

    async def saga_ids(self, *, active_only: bool = False) -> list[str]:
        ids = await self._listed(f"{self.prefix}/index")
        if active_only:
            done = set(await self._listed(f"{self.prefix}/done"))
            ids = [i for i in ids if i not in done]
        return ids
