"""The replicated log: entries after a snapshot, the snapshot, and their durable form.

Theory of operation
-------------------
A :class:`RaftLog` holds the snapshot (index, term and state-machine bytes of the
last compacted entry) and the entries after it: ``entries[k]`` is the entry at index
``snap_index + 1 + k``. Index 0 is the empty snapshot every log starts from.

Every change records the storage writes that make it durable in :attr:`RaftLog.writes`
(``None`` deletes a key), which the node turns into ``Persist`` effects: term and vote
are the node's (``raft/state``); each entry is ``raft/log/<index>`` (20-digit, zero
padded) holding ``[term, data]``; the snapshot is ``raft/snapshot`` holding
``{i, t, d}``. A snapshot write always precedes the deletions of the entries it
replaces, so a crash between the two loses nothing. :func:`load_log` decodes what was
persisted back into a log, strictly (corrupt storage is a ``DecodeError``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import attrs

from vsm_phoenix.errors import DecodeError
from vsm_phoenix.protocol.envelope import decode_cbor, encode_cbor
from vsm_phoenix.protocol.raft.config import KEY_LOG_PREFIX, KEY_SNAPSHOT, log_key

__all__ = ["Entry", "RaftLog", "load_log"]


@attrs.frozen
class Entry:
    """One log entry; ``data == b""`` is the no-op a new leader appends."""

    term: int
    data: bytes


class RaftLog:
    """Entries after a snapshot (see the module docstring)."""

    __slots__ = ("entries", "snap_data", "snap_index", "snap_term", "writes")

    def __init__(self, snap_data: bytes) -> None:
        self.entries: list[Entry] = []
        self.snap_index = 0
        self.snap_term = 0
        self.snap_data = snap_data
        self.writes: dict[str, bytes | None] = {}

    # -- reading -----------------------------------------------------------------------
    @property
    def last_index(self) -> int:
        return self.snap_index + len(self.entries)

    @property
    def last_term(self) -> int:
        return self.entries[-1].term if self.entries else self.snap_term

    def term_at(self, index: int) -> int | None:
        """The term of the entry at ``index``; ``None`` when compacted away or absent."""
        if index == self.snap_index:
            return self.snap_term
        if self.snap_index < index <= self.snap_index + len(self.entries):
            return self.entries[index - self.snap_index - 1].term
        return None

    def entry(self, index: int) -> Entry | None:
        if self.snap_index < index <= self.snap_index + len(self.entries):
            return self.entries[index - self.snap_index - 1]
        return None

    def between(self, after: int, upto: int) -> tuple[Entry, ...]:
        """The entries at indexes ``after + 1 .. upto`` (all present in the log)."""
        return tuple(self.entries[after - self.snap_index : upto - self.snap_index])

    def up_to_date(self, last_index: int, last_term: int) -> bool:
        """Whether a log ending at (``last_index``, ``last_term``) is at least as
        up to date as this one (Raft §5.4.1: last term first, then length)."""
        return (last_term, last_index) >= (self.last_term, self.last_index)

    # -- changing ----------------------------------------------------------------------
    def append(self, entry: Entry) -> int:
        self.entries.append(entry)
        index = self.snap_index + len(self.entries)
        self.writes[log_key(index)] = encode_cbor([entry.term, entry.data])
        return index

    def truncate_from(self, index: int) -> None:
        """Drop the entries at ``index`` and after (``index > snap_index``)."""
        for i in range(index, self.last_index + 1):
            self.writes[log_key(i)] = None
        del self.entries[index - self.snap_index - 1 :]

    def compact(self, index: int, data: bytes) -> None:
        """Make ``data`` (the state machine at ``index``, an index in the log) the
        snapshot and drop the entries up to ``index``."""
        term = self.term_at(index)
        assert term is not None
        for i in range(self.snap_index + 1, index + 1):
            self.writes[log_key(i)] = None
        self.entries = self.entries[index - self.snap_index :]
        self.snap_index, self.snap_term, self.snap_data = index, term, data
        self._write_snapshot()

    def install(self, index: int, term: int, data: bytes) -> None:
        """Replace the log by a snapshot received from the leader. Entries after it
        are kept only when the log holds the snapshot's last entry (same index and
        term): then, by log matching, everything before it agrees too. Otherwise the
        whole log is dropped — a suffix that conflicts with the snapshot must never
        survive it."""
        keep_from = self.last_index + 1
        if self.term_at(index) == term:
            self.entries = self.entries[index - self.snap_index :]
            keep_from = index + 1
        else:
            self.entries = []
        for i in range(self.snap_index + 1, keep_from):
            self.writes[log_key(i)] = None
        self.snap_index, self.snap_term, self.snap_data = index, term, data
        self._write_snapshot()

    def _write_snapshot(self) -> None:
        # Insert the snapshot before the deletions it makes safe.
        writes: dict[str, bytes | None] = {
            KEY_SNAPSHOT: encode_cbor({"i": self.snap_index, "t": self.snap_term,
                                       "d": self.snap_data})
        }
        writes.update((k, v) for k, v in self.writes.items() if k != KEY_SNAPSHOT)
        self.writes = writes


def _entry(key: str, raw: bytes) -> Entry:
    item = decode_cbor(raw)
    if (not isinstance(item, list) or len(item) != 2 or type(item[0]) is not int
            or not isinstance(item[1], bytes)):
        raise DecodeError(f"{key} must be [term, bytes]")
    return Entry(item[0], item[1])


def load_log(
    persisted: Mapping[str, bytes], empty_snapshot: bytes, check_snapshot: Callable[[bytes], None]
) -> RaftLog:
    """The log that ``persisted`` describes (a ``DecodeError`` when it is corrupt).
    ``check_snapshot`` validates the state machine's snapshot bytes."""
    log = RaftLog(empty_snapshot)
    if KEY_SNAPSHOT in persisted:
        snap = decode_cbor(persisted[KEY_SNAPSHOT])
        if not isinstance(snap, dict) or set(snap) != {"i", "t", "d"}:
            raise DecodeError("raft/snapshot must be {i, t, d}")
        index, term, data = snap["i"], snap["t"], snap["d"]
        if type(index) is not int or type(term) is not int or not isinstance(data, bytes):
            raise DecodeError("raft/snapshot has bad types")
        check_snapshot(data)
        log.snap_index, log.snap_term, log.snap_data = index, term, data
    by_index: dict[int, Entry] = {}
    for key in persisted:
        if key.startswith(KEY_LOG_PREFIX):
            by_index[int(key[len(KEY_LOG_PREFIX):])] = _entry(key, persisted[key])
    index = log.snap_index + 1
    while index in by_index:
        log.entries.append(by_index[index])
        index += 1
    return log
