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
  whole value *is* compare-and-append, linearizably, on every node. One more key, the
  **index**, lists the sagas a recovery scan must see (see :class:`KVSagaLog`): every
  unfinished saga and every stuck one, and no other, so it stays as small as the work
  in flight plus what waits for an operator.

A saga that ends leaves the log's list of unfinished sagas: :meth:`SagaLog.settle`.
A storage transaction does that with the terminal record; the KV needs a second write,
which a crash can prevent, so the coordinator that sees a saga ended settles it again
(:class:`~vsm_phoenix.ext.saga.orchestrator.SagaOrchestrator` does after every end it
did not write itself, and for every listed saga its recovery scan finds ended).

Records read back are decoded with the strict decoder
(:func:`~vsm_phoenix.ext.saga.records.decode_record`): a log that does not decode is a
:class:`~vsm_phoenix.errors.DecodeError`, never a half-read saga.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
from collections.abc import Mapping, Sequence
from typing import Any, Final, Protocol, runtime_checkable

from vsm_phoenix import cbor
from vsm_phoenix.errors import DecodeError, InvalidArgument, TypeMismatch
from vsm_phoenix.ext.saga.records import (
    R_STUCK,
    TERMINAL,
    Record,
    check_name,
    decode_record,
    encode_record,
)
from vsm_phoenix.storage import TransactionalStorage

__all__ = ["AsyncKV", "KVSagaLog", "SagaLog", "StorageSagaLog", "format_index",
           "format_log_value", "parse_index", "parse_log_value"]

#: The mark of a stuck saga's line in a :class:`KVSagaLog` index (a saga id never
#: starts with it).
STUCK_MARK: Final = "!"


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
        """The sagas the log lists: at least every unfinished and every stuck saga (a
        log may list ended ones too: :class:`StorageSagaLog` lists every saga it holds,
        :class:`KVSagaLog` no completed or compensated one). With ``active_only``, the
        unfinished ones -- which may include an ended saga whose :meth:`settle` has not
        happened yet (a crash between its last two writes)."""
        ...

    async def settle(self, saga_id: str) -> None:
        """The saga has ended (its terminal record is durable): take it off the list of
        unfinished sagas (a stuck saga stays listed, as stuck). Idempotent; does
        nothing for a saga that has not ended or does not exist. An exception means it
        may not have happened (calling it again is always safe)."""
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

    async def settle(self, saga_id: str) -> None:
        """Nothing to do: the terminal record's transaction marked the saga done."""
        check_name(saga_id, "saga id")


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


def parse_index(value: str | None) -> tuple[list[str], list[str]]:
    """The unfinished and the stuck saga ids of a :class:`KVSagaLog` index value (each
    in first-listed order, without repeats; a saga listed stuck is not unfinished);
    :class:`DecodeError` for a value that is not lines of saga ids."""
    if value is None:
        return [], []
    if not isinstance(value, str):
        raise TypeMismatch("a saga index value is a str")
    listed: dict[str, None] = {}
    stuck: dict[str, None] = {}
    for line in value.split("\n"):
        if not line:
            continue
        is_stuck = line.startswith(STUCK_MARK)
        saga_id = line[len(STUCK_MARK):] if is_stuck else line
        try:
            check_name(saga_id, "saga id")
        except (InvalidArgument, TypeMismatch):
            raise DecodeError(f"saga index line is not a saga id: {line[:40]!r}") from None
        (stuck if is_stuck else listed).setdefault(saga_id, None)
    return [i for i in listed if i not in stuck], list(stuck)


def format_index(unfinished: Sequence[str], stuck: Sequence[str]) -> str:
    """The :class:`KVSagaLog` index value listing ``unfinished`` and ``stuck``."""
    return "".join(f"{i}\n" for i in unfinished) + "".join(
        f"{STUCK_MARK}{i}\n" for i in stuck)


class KVSagaLog:
    """A :class:`SagaLog` in a linearizable KV (see the module docstring).

    Keys under ``prefix``: ``log/<saga id>`` per saga, and ``index``, a line per
    listed saga: ``<saga id>`` while it is unfinished, ``!<saga id>`` once it is stuck.

    * A saga enters the index by a KV ``append`` **before** its log is created (so a
      crash cannot leave a log no recovery scan sees); appends never conflict.
    * It leaves (or turns stuck) by a read-modify-write of the index with ``cas``,
      only once its terminal record is durable: the coordinator that wrote that record
      does it at once, and :meth:`settle` does it for anyone who finds an ended saga
      still listed. A ``cas`` that loses to a concurrent append or removal re-reads and
      retries (up to ``settle_attempts`` times, then :class:`TimeoutError`, and the
      saga stays listed until the next settle): no entry another coordinator wrote
      meanwhile can be lost, and no unfinished saga ever leaves the index. The
      removals one client has pending go in one write (a group commit), so many sagas
      ending at once do not each lose their ``cas`` to the others.

    So the index holds the unfinished sagas, the stuck ones (listable for an operator
    until someone removes them), and, briefly, ended ones whose removal a crash or a
    timeout interrupted -- never the completed and compensated sagas of the past. Their
    logs stay (``load``, so a status query, still answers for them; deleting a
    ``log/<saga id>`` key is an operator's choice, after which the saga is unknown).
    A timed-out index append that lands late can list an ended saga again: the next
    recovery scan settles it.

    The client remembers the value it last wrote per saga, so an append by the owner
    is one ``cas`` (a second round trip, a ``get``, only after a failed one)."""

    def __init__(self, kv: Any, *, prefix: str = "saga", timeout_s: float | None = None,
                 settle_attempts: int = 32) -> None:
        if not isinstance(kv, AsyncKV):
            raise TypeMismatch("kv must offer async get, cas and append")
        check_name(prefix, "prefix")
        if type(settle_attempts) is not int or settle_attempts < 1:
            raise InvalidArgument("settle_attempts must be a positive int")
        self.kv = kv
        self.prefix = prefix
        self.timeout_s = timeout_s
        self.settle_attempts = settle_attempts
        self._known: dict[str, tuple[str, int]] = {}
        self._index_lock = asyncio.Lock()
        self._pending: dict[str, tuple[bool, asyncio.Future[None]]] = {}

    def _key(self, saga_id: str) -> str:
        return f"{self.prefix}/log/{saga_id}"

    @property
    def index_key(self) -> str:
        """The KV key of the index (see the class docstring)."""
        return f"{self.prefix}/index"

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
            await self.kv.append(self.index_key, saga_id + "\n", timeout_s=self.timeout_s)
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
        ended = [r.kind for r in records if r.kind in TERMINAL]
        if not ended:
            self._known[saga_id] = (new, expected + len(records))
            return True
        # An exception from here on leaves the append applied and the saga listed: the
        # caller sees the outcome as unknown, finds its records in the log, and settles.
        await self._unlist(saga_id, stuck=ended[0] == R_STUCK)
        return True

    async def settle(self, saga_id: str) -> None:
        check_name(saga_id, "saga id")
        if saga_id not in parse_index(await self._index())[0]:
            return
        log = await self.load(saga_id)
        if log is None or log[-1].kind not in TERMINAL:
            return  # not ended (or not created yet): it must stay listed
        await self._unlist(saga_id, stuck=log[-1].kind == R_STUCK)

    async def _index(self) -> str | None:
        value: str | None = await self.kv.get(self.index_key, timeout_s=self.timeout_s)
        return value

    async def _unlist(self, saga_id: str, *, stuck: bool) -> None:
        """Take the ended ``saga_id`` off the unfinished list (listing it as stuck if
        ``stuck``).

        Group commit: the sagas this client ends meanwhile wait on one lock, and whoever
        holds it writes every removal pending so far in one read-modify-write -- with
        many sagas ending at once, one write for all instead of one per saga, each
        losing its ``cas`` to the others."""
        done = asyncio.get_running_loop().create_future()
        self._pending[saga_id] = (stuck, done)
        try:
            async with self._index_lock:
                if done.done():
                    return  # an earlier holder's batch took it
                batch, self._pending = self._pending, {}
                try:
                    await self._write_removals({i: st for i, (st, _) in batch.items()})
                except BaseException:
                    for other, item in batch.items():  # their own turns retry them
                        if other != saga_id:
                            self._pending.setdefault(other, item)
                    raise
                for _, fut in batch.values():
                    if not fut.done():
                        fut.set_result(None)
        finally:
            if self._pending.get(saga_id, (False, None))[1] is done:
                del self._pending[saga_id]

    async def _write_removals(self, removals: Mapping[str, bool]) -> None:
        """One compare-and-set of the index that removes ``removals`` (saga id ->
        whether it is stuck) from the unfinished list; re-read after each lost race."""
        for _ in range(self.settle_attempts):
            value = await self._index()
            unfinished, stuck_ids = parse_index(value)
            listed = set(unfinished)
            marked = set(stuck_ids)
            if not any(i in listed or (st and i not in marked) for i, st in removals.items()):
                return
            new = format_index([i for i in unfinished if i not in removals],
                               [*stuck_ids, *(i for i, st in removals.items()
                                              if st and i not in marked)])
            if await self.kv.cas(self.index_key, value, new, timeout_s=self.timeout_s):
                return
        raise TimeoutError(f"{len(removals)} ended sagas: the index kept changing; they "
                           "stay listed until the next settle")

    async def saga_ids(self, *, active_only: bool = False) -> list[str]:
        unfinished, stuck = parse_index(await self._index())
        return unfinished if active_only else [*unfinished, *stuck]
