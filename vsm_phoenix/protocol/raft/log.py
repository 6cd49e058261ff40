"""The replicated log: entries after a snapshot, the snapshot, and their durable form.

Theory of operation
-------------------
A :class:`RaftLog` holds the snapshot (index, term and state-machine bytes of the
last compacted entry) and the entries after it: ``entries[k]`` is the entry at index
``snap_index + 1 + k``. Index 0 is the empty snapshot every log starts from.

Every change records the storage writes that make it durable in :attr:`RaftLog.writes`
(``None`` deletes a key), which the node turns into ``Persist`` effects: term and vote
are the node's (``raft/state``); each entry is ``raft/log/<index>`` (20-digit, zero
padded) holding ``[term, data]`` (a configuration entry: ``[term, data, config]``);
the snapshot is ``raft/snapshot`` holding ``{i, t, d, c}`` (``c``: the configuration
at the snapshot's index; a snapshot written before configurations could change has
none and means the bootstrap configuration). A snapshot write always precedes the
deletions of the entries it replaces, so a crash between the two loses nothing.
:func:`load_log` decodes what was persisted back into a log, strictly (corrupt storage
is a ``DecodeError``).

The log also answers which configuration is in force (:attr:`RaftLog.config`): the
latest configuration entry, committed or not, else the snapshot's (Raft thesis §4.1:
a server uses the latest configuration in its log). Truncating a configuration entry
therefore reverts to the one before it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import attrs

from vsm_phoenix.errors import DecodeError
from vsm_phoenix.protocol.envelope import decode_cbor, encode_cbor
from vsm_phoenix.protocol.raft.config import KEY_LOG_PREFIX, KEY_SNAPSHOT, log_key
from vsm_phoenix.protocol.raft.membership import Membership, MembershipError

__all__ = ["Entry", "RaftLog", "decode_entry", "load_log"]


@attrs.frozen
class Entry:
    """One log entry; ``data == b""`` is the no-op a new leader appends. An entry with
    a ``config`` is a configuration change (its ``data`` is empty); the state machine
    never sees it."""

    term: int
    data: bytes
    config: Membership | None = None

    def encode(self) -> list[Any]:
        """``[term, data]``, or ``[term, data, config]`` for a configuration entry."""
        if self.config is None:
            return [self.term, self.data]
        return [self.term, self.data, self.config.encode()]


def decode_entry(item: Any) -> Entry:
    """Strictly decode :meth:`Entry.encode`'s form (``ValueError`` names the rule)."""
    if (not isinstance(item, list) or len(item) not in (2, 3) or type(item[0]) is not int
            or not 0 <= item[0] <= 2**63 - 1 or not isinstance(item[1], bytes)):
        raise ValueError("an entry must be [term, bytes] or [term, bytes, config]")
    if len(item) == 2:
        return Entry(item[0], item[1])
    if item[1]:
        raise ValueError("a configuration entry carries no command bytes")
    try:
        return Entry(item[0], item[1], Membership.decode(item[2]))
    except MembershipError as exc:
        raise ValueError(f"bad configuration: {exc}") from None


class RaftLog:
    """Entries after a snapshot (see the module docstring)."""

    __slots__ = ("_conf_at", "entries", "snap_config", "snap_data", "snap_index",
                 "snap_term", "writes")

    def __init__(self, snap_data: bytes, snap_config: Membership) -> None:
        self.entries: list[Entry] = []
        self.snap_index = 0
        self.snap_term = 0
        self.snap_data = snap_data
        self.snap_config = snap_config
        self.writes: dict[str, bytes | None] = {}
        self._conf_at: list[int] = []  # indexes of configuration entries, ascending

    # -- configuration -----------------------------------------------------------------
    @property
    def config(self) -> Membership:
        """The configuration in force: the latest in the log, committed or not."""
        return self.config_at(self.last_index)

    @property
    def config_index(self) -> int:
        """The index of the latest configuration entry (``snap_index`` when the
        snapshot's configuration is in force)."""
        return self._conf_at[-1] if self._conf_at else self.snap_index

    def config_at(self, index: int) -> Membership:
        """The configuration in force at ``index`` (``index >= snap_index``)."""
        for i in reversed(self._conf_at):
            if i <= index:
                conf = self.entries[i - self.snap_index - 1].config
                assert conf is not None
                return conf
        return self.snap_config

    def _reindex(self) -> None:
        self._conf_at = [self.snap_index + 1 + k for k, e in enumerate(self.entries)
                         if e.config is not None]

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
        if entry.config is not None:
            self._conf_at.append(index)
        self.writes[log_key(index)] = encode_cbor(entry.encode())
        return index

    def truncate_from(self, index: int) -> None:
        """Drop the entries at ``index`` and after (``index > snap_index``)."""
        for i in range(index, self.last_index + 1):
            self.writes[log_key(i)] = None
        del self.entries[index - self.snap_index - 1 :]
        while self._conf_at and self._conf_at[-1] >= index:
            self._conf_at.pop()

    def compact(self, index: int, data: bytes) -> None:
        """Make ``data`` (the state machine at ``index``, an index in the log) the
        snapshot and drop the entries up to ``index``."""
        term = self.term_at(index)
        assert term is not None
        config = self.config_at(index)
        for i in range(self.snap_index + 1, index + 1):
            self.writes[log_key(i)] = None
        self.entries = self.entries[index - self.snap_index :]
        self.snap_index, self.snap_term, self.snap_data = index, term, data
        self.snap_config = config
        self._reindex()
        self._write_snapshot()

    def install(self, index: int, term: int, data: bytes, config: Membership) -> None:
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
        self.snap_config = config
        self._reindex()
        self._write_snapshot()

    def _write_snapshot(self) -> None:
        # Insert the snapshot before the deletions it makes safe.
        writes: dict[str, bytes | None] = {
            KEY_SNAPSHOT: encode_cbor({"i": self.snap_index, "t": self.snap_term,
                                       "d": self.snap_data, "c": self.snap_config.encode()})
        }
        writes.update((k, v) for k, v in self.writes.items() if k != KEY_SNAPSHOT)
        self.writes = writes


def _entry(key: str, raw: bytes) -> Entry:
    try:
        return decode_entry(decode_cbor(raw))
    except ValueError as exc:
        raise DecodeError(f"{key}: {exc}") from None


def load_log(
    persisted: Mapping[str, bytes], empty_snapshot: bytes, check_snapshot: Callable[[bytes], None],
    bootstrap: Membership,
) -> RaftLog:
    """The log that ``persisted`` describes (a ``DecodeError`` when it is corrupt).
    ``check_snapshot`` validates the state machine's snapshot bytes; ``bootstrap`` is
    the configuration of a log whose snapshot names none."""
    log = RaftLog(empty_snapshot, bootstrap)
    if KEY_SNAPSHOT in persisted:
        snap = decode_cbor(persisted[KEY_SNAPSHOT])
        if not isinstance(snap, dict) or set(snap) not in ({"i", "t", "d"}, {"i", "t", "d", "c"}):
            raise DecodeError("raft/snapshot must be {i, t, d, c}")
        index, term, data = snap["i"], snap["t"], snap["d"]
        if type(index) is not int or type(term) is not int or not isinstance(data, bytes):
            raise DecodeError("raft/snapshot has bad types")
        check_snapshot(data)
        if "c" in snap:
            try:
                log.snap_config = Membership.decode(snap["c"])
            except MembershipError as exc:
                raise DecodeError(f"raft/snapshot: bad configuration: {exc}") from None
        log.snap_index, log.snap_term, log.snap_data = index, term, data
    by_index: dict[int, Entry] = {}
    for key in persisted:
        if key.startswith(KEY_LOG_PREFIX):
            by_index[int(key[len(KEY_LOG_PREFIX):])] = _entry(key, persisted[key])
    index = log.snap_index + 1
    while index in by_index:
        log.entries.append(by_index[index])
        index += 1
    log._reindex()
    return log
