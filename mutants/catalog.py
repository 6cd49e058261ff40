"""Hand-written mutants: the bugs a developer would really make, one per entry.

Each mutant names its area, the file, an exact piece of text and its replacement. The
runner (``mutants/run.py``, ``make mutate``) applies one at a time, runs the area's
tests and counts the mutant *killed* when they fail. A mutant whose text no longer
appears in the file is reported *stale* (the code moved on; rewrite the mutant), not
counted. Keep each mutant small, plausible and behaviour-changing: a mutant that
cannot change behaviour (an equivalent mutant) measures nothing.

The CRDT kernel mutants change the pure-Python kernels; the runner tests them with
``VSM_PHOENIX_PURE=1`` so that the mutated code is the code that runs.
"""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

ROOT = Path(__file__).resolve().parent.parent


class Mutant(NamedTuple):
    area: str
    path: str
    find: str
    replace: str
    why: str


def _files(folder: str, *first: str, pattern: str = "test_*.py") -> list[str]:
    """Every test file of ``folder`` matching ``pattern``, the ``first`` ones first: with
    ``-x`` a mutant that the targeted tests kill stops there, in seconds, instead of
    after the slow suites."""
    names = sorted(p.name for p in (ROOT / folder).glob(pattern))
    return [f"{folder}/{n}" for n in first] + [f"{folder}/{n}" for n in names
                                                if n not in first]


# The tests each area's mutants are judged by (paths relative to the repository; the
# targeted files first, for speed only: every listed test runs for a survivor).
AREA_TESTS: dict[str, list[str]] = {
    "raft": [*_files("tests/protocol", "test_raft_mutants.py", "test_raft_bugs.py",
                     "test_raft_message_size.py",
                     "test_raft_quorum.py", pattern="test_raft*.py"),
             "proofs/test_raft_model.py"],
    "kv": ["tests/protocol/test_kv_mutants.py", "tests/protocol/test_kv_sessions.py",
           "tests/protocol/test_kv.py"],
    "channel": _files("tests/crypto", "test_channel_mutants.py"),
    "envelope": ["tests/protocol/test_envelope_mutants.py",
                 "tests/protocol/test_envelope_bounds.py",
                 "tests/protocol/test_protocol_envelope.py"],
    "swim": ["tests/protocol/test_swim_mutants.py", "tests/protocol/test_protocol_swim.py"],
    "sync": ["tests/protocol/test_sync_mutants.py", "tests/protocol/test_sync_parts.py",
             "tests/protocol/test_protocol_sync.py",
             "tests/protocol/test_protocol_sync_stateful.py"],
    "crdt": [*_files("tests/crdt", "test_crdt_mutants.py"), "proofs/test_lattice_laws.py",
             "proofs/test_lattice_models_match.py"],
}

RAFT = "vsm_phoenix/protocol/raft/node.py"
LOG = "vsm_phoenix/protocol/raft/log.py"
QUORUM = "vsm_phoenix/protocol/raft/quorum.py"
KV = "vsm_phoenix/protocol/kv.py"
SYNC = "vsm_phoenix/protocol/sync.py"
PARTS = "vsm_phoenix/protocol/parts.py"
CHANNEL = "vsm_phoenix/crypto/channel.py"
REPLAY = "vsm_phoenix/crypto/replay.py"
ENVELOPE = "vsm_phoenix/protocol/envelope.py"
SWIM = "vsm_phoenix/protocol/swim.py"
PURE = "vsm_phoenix/crdt/_pure.py"
REGISTERS = "vsm_phoenix/crdt/registers.py"
COUNTERS = "vsm_phoenix/crdt/counters.py"

MUTANTS: list[Mutant] = [
    # -- raft ---------------------------------------------------------------------------
    Mutant("raft", RAFT,
           "entries = self._append_entries(prev, min(",
           "entries = log.between(prev, min(",
           "appends bounded by entry count only: a lagging follower is sent more than "
           "the envelope limit and never catches up"),
    Mutant("raft", RAFT,
           "            if budget < 0 and n > 0:",
           "            if budget < 0:",
           "the byte bound drops the one entry an append must always carry: an entry "
           "larger than max_append_bytes is never shipped"),
    Mutant("raft", LOG,
           "return (last_term, last_index) >= (self.last_term, self.last_index)",
           "return last_index >= self.last_index",
           "vote granted on log length alone (§5.4.1 election restriction ignored)"),
    Mutant("raft", LOG,
           "return (last_term, last_index) >= (self.last_term, self.last_index)",
           "return last_term >= self.last_term",
           "up-to-date check ignores the length within the last term"),
    Mutant("raft", RAFT,
           "grant = m.term > self.term and not lease and up",
           "grant = m.term > self.term and up",
           "pre-vote granted inside a leader lease"),
    Mutant("raft", RAFT,
           "grant = m.term > self.term and not lease and up",
           "grant = m.term > self.term and not lease",
           "pre-vote granted without the up-to-date check"),
    Mutant("raft", RAFT,
           "grant = self.voted_for in (None, sender) and up",
           "grant = up",
           "a second vote in the same term"),
    Mutant("raft", RAFT,
           "if not self.config.unsafe_commit_old_terms and self.term_at(n) != self.term:",
           "if False:",
           "commit an entry of an older term by counting replicas (Figure 8)"),
    Mutant("raft", QUORUM,
           "return held[len(held) // 2]",
           "return held[len(held) // 2 - 1]",
           "committed index from a minority"),
    Mutant("raft", RAFT,
           "            self._hard_dirty = True\n            self._reset_election_timer()\n"
           "        self._send(sender, VoteResponse(term=self.term, granted=grant, pre=False))",
           "            self._reset_election_timer()\n"
           "        self._send(sender, VoteResponse(term=self.term, granted=grant, pre=False))",
           "vote not persisted before it is granted"),
    Mutant("raft", RAFT,
           "acks = [p for p, pr in self._progress.items() if pr.acked_seq >= seq]",
           "acks = [p for p, pr in self._progress.items() if pr.acked_seq > 0]",
           "ReadIndex counts any acknowledgement, not those of the read's own round"),
    Mutant("raft", LOG,
           "        if self.term_at(index) == term:\n            self.entries = "
           "self.entries[index - self.snap_index :]",
           "        if index <= self.last_index:\n            self.entries = "
           "self.entries[index - self.snap_index :]",
           "InstallSnapshot keeps a log suffix that conflicts with the snapshot"),
    Mutant("raft", RAFT,
           "                if log.term_at(index) == e.term:\n                    continue\n",
           "                if False:\n                    continue\n",
           "a follower truncates matching entries on a stale AppendEntries (loses a suffix)"),
    Mutant("raft", RAFT, "            target = min(m.commit, new_last)\n",
           "            target = min(m.commit, log.last_index)\n",
           "a follower commits past the entries the leader's append verified"),
    Mutant("raft", RAFT, "        elif log.term_at(prev) != prev_term:\n",
           "        elif log.term_at(prev) is None:\n",
           "AppendEntries consistency check ignores prev_term (log matching broken)"),
    Mutant("raft", RAFT,
           "if self.role is Role.CANDIDATE and m.term == self.term and m.granted:",
           "if self.role is Role.CANDIDATE and m.granted:",
           "a vote granted in an earlier term counted in this election"),
    Mutant("raft", RAFT,
           "if self.role is Role.PRE_CANDIDATE and m.granted and m.term == self.term + 1:",
           "if self.role is Role.PRE_CANDIDATE and m.granted:",
           "a pre-vote granted for an earlier pre-campaign counted"),
    Mutant("raft", RAFT,
           "        if self.role is not Role.LEADER or m.term != self.term:\n            return\n"
           "        pr = self._progress.get(sender)",
           "        if self.role is not Role.LEADER:\n            return\n"
           "        pr = self._progress.get(sender)",
           "a leader counts append responses of an earlier term"),
    Mutant("raft", RAFT, "        self._log.append(Entry(self.term, b\"\"))\n", "",
           "a new leader appends no no-op entry (reads and old entries wait for a client)"),
    Mutant("raft", RAFT, "            for pr in self._progress.values():\n"
           "                pr.active = False\n", "",
           "check-quorum never forgets a peer once heard (a cut-off leader keeps leading)"),
    Mutant("raft", RAFT, "            self.term = term\n            self.voted_for = None\n",
           "            self.term = term\n",
           "the vote of an old term kept in a new term"),
    Mutant("raft", RAFT,
           "            if lease:\n"
           "                return  # leader stickiness: ignore, do not adopt the term\n",
           "",
           "check-quorum without leader stickiness: a vote request in the lease adopts its term"),
    Mutant("raft", RAFT,
           "        if m.index <= self.commit_index:\n            self._snap_buf = None\n",
           "        if m.index <= self.snap_index:\n            self._snap_buf = None\n",
           "a snapshot older than the commit index (but newer than our snapshot) rolls the "
           "state machine back"),
    Mutant("raft", QUORUM,
           "        return sum(1 for v in self.voters if v in active) >= self.quorum",
           "        return sum(1 for v in self.voters if v in active) >= self.quorum - 1",
           "recently-active quorum one short (ReadIndex and check-quorum on a minority)"),
    Mutant("raft", QUORUM, "        if granted + missing >= q:\n",
           "        if granted + missing > q:\n",
           "an election declared lost while it can still be won"),
    Mutant("raft", RAFT,
           "        if m.term < self.term:\n            self._reply_append(sender, m, False)\n",
           "        if m.term < self.term - 1:\n            self._reply_append(sender, m, False)\n",
           "a follower takes appends from the leader of the previous term"),
    Mutant("raft", RAFT, "        acked[self._id] = self.last_index\n", "",
           "the leader does not count its own log towards the commit quorum"),
    Mutant("raft", RAFT, "            grant = m.term > self.term and not lease and up",
           "            grant = m.term >= self.term and not lease and up",
           "a pre-vote granted for the voter's own term"),
    Mutant("raft", RAFT, "        lease = self._in_lease() and not m.force\n",
           "        lease = self._in_lease()\n",
           "a forced campaign (leadership transfer) refused by the lease"),
    Mutant("raft", RAFT,
           "        if m.term < self.term:\n            answer(0)\n",
           "        if m.term < self.term - 1:\n            answer(0)\n",
           "a follower installs a snapshot from the leader of the previous term"),
    Mutant("raft", RAFT,
           "        if m.term > self.term:\n            self._become_follower(m.term, None)\n"
           "            return\n        if self.role is Role.CANDIDATE",
           "        if m.term > self.term:\n            return\n"
           "        if self.role is Role.CANDIDATE",
           "a candidate refused with a higher term keeps campaigning in its own"),
    Mutant("raft", RAFT,
           "            elif not m.granted and m.term > self.term:\n"
           "                self._become_follower(m.term, None)\n",
           "            elif not m.granted and m.term > self.term:\n"
           "                pass\n",
           "a pre-candidate refused with a higher term keeps its own term"),
    Mutant("raft", RAFT,
           "if len(target.voters ^ cur.voters) > 1:",
           "if len(target.voters ^ cur.voters) > 2:",
           "a change without the joint stage may swap a voter (or add or remove two): "
           "an old and a new majority can be disjoint"),
    Mutant("raft", RAFT,
           "        if msg.term > self.term:\n            from_leader",
           "        if msg.term > self.term and not isinstance(msg, AppendResponse):\n"
           "            from_leader",
           "a leader ignores a higher term in an append response (under check-quorum "
           "without pre-vote a rejoining node stays out for good)"),
    Mutant("raft", RAFT,
           "behind = sorted(p for p in target.voters & cur.learners if not self._caught_up(p))",
           "behind: list[str] = []",
           "a learner promoted to voter before it caught up"),
    Mutant("raft", RAFT, "return (pr is not None and pr.match >= 1\n",
           "return (pr is not None\n",
           "a learner that never acknowledged anything counts as caught up on a short log"),
    # -- sync --------------------------------------------------------------------------
    Mutant("sync", SYNC, "        if lo > cur + 1:  # a gap", "        if lo > hi + 1:  # a gap",
           "a delta that leaves a gap is claimed whole: the entries in the gap are never "
           "asked for again"),
    Mutant("sync", SYNC, "            elif not d <= local:\n", "            elif not local <= d:\n",
           "a received delta is joined only when it covers the local state"),
    Mutant("sync", SYNC,
           'self.origin = f"{self._id}.{self.rng.getrandbits(32):08x}"',
           'self.origin = f"{self._id}.{0:08x}"',
           "a node restarted without its disk reuses its old origin (and so its dots)"),
    Mutant("sync", SYNC,
           "for p in sorted(set(self.peers) | set(self.known) | set(self._ever))]",
           "for p in sorted(self.peers)]",
           "buffered entries are dropped once the current peers hold them, though a "
           "member cut off by a partition still needs them"),
    Mutant("sync", PARTS, "        if fn & 1 or fn == sn:\n", "        if fn & 1:\n",
           "an inclusion proof on the right edge of an unbalanced tree is refused"),
    Mutant("sync", PARTS,
           "        if _root_from_proof(index, count, _leaf(data), proof) != root:\n",
           "        if _root_from_proof(index, count, _leaf(data), proof) is None:\n",
           "a part is kept when its proof fits the tree shape, whatever root it leads to"),
    Mutant("sync", PARTS, "                if held > size or (last and held != size):\n",
           "                if held > size:\n",
           "a transfer completes with fewer bytes than it declared"),
    # -- kv ----------------------------------------------------------------------------
    Mutant("kv", KV, "elif seq <= last.seq:", "elif seq < last.seq:",
           "a retried command applied twice"),
    Mutant("kv", KV, 'value = self.data.get(key, "") + cmd["v"]',
           'value = cmd["v"] + self.data.get(key, "")',
           "append prepends"),
    Mutant("kv", KV, 'if self.data.get(key) != cmd["e"]:', 'if self.data.get(key) == cmd["e"]:',
           "compare-and-set inverted"),
    Mutant("kv", KV, "return _answer(last.result) if seq == last.seq else STALE",
           "return _answer(last.result)",
           "a stale command answered with the latest result"),
    Mutant("kv", KV, "sessions[client] = Session(seq, result, now)",
           "sessions[client] = Session(seq, None, now)",
           "a session forgets its result (a retried cas answers None)"),
    Mutant("kv", KV, "        self._record(client, seq, result)\n", "",
           "sessions never recorded"),
    Mutant("kv", KV, '"s": {c: [s.seq, s.result, s.used] for c, s in self.sessions.items()},',
           '"s": {},',
           "sessions left out of the snapshot (a retry after compaction applies twice)"),
    Mutant("kv", KV, 'if self.data.get(key) != cmd["e"]:',
           'if self.data.get(key, "") != cmd["e"]:',
           "compare-and-set treats an absent key as the empty string"),
    Mutant("kv", KV, "        old = self.data.pop(key, None)\n",
           '        old = self.data.get(key)\n        self.data[key] = ""\n',
           "delete leaves an empty value instead of removing the key"),
    Mutant("kv", KV, '        return self.data.get(q["k"])\n',
           '        return self.data.get(q["k"], "")\n',
           "a read of an absent key answers the empty string"),
    Mutant("kv", KV, "            rows.append((used, c, Session(entry[0], entry[1], used)))\n",
           "", "restoring a snapshot drops the sessions it carries"),
    Mutant("kv", KV, "            return self._write(key, cmd[\"v\"]) or True\n",
           "            self._write(key, cmd[\"v\"])\n            return False\n",
           "a successful compare-and-set answers False"),
    Mutant("kv", KV, "version not in (1, SNAPSHOT_VERSION)", "version > SNAPSHOT_VERSION",
           "snapshot of an unknown (older) version accepted"),
    # Bounded sessions: eviction, expiry and the refusal of an expired client.
    Mutant("kv", KV, "if seq != 1 and self.sessions_dropped:", "if False:",
           "an expired client's retry applied again"),
    Mutant("kv", KV, "while len(sessions) > self.config.max_sessions:",
           "while len(sessions) > self.config.max_sessions + 1:",
           "one session over the bound"),
    Mutant("kv", KV, "while now - next(iter(sessions.values())).used > ttl:",
           "while now - next(iter(sessions.values())).used > ttl + 1:",
           "sessions outlive their TTL by one command"),
    Mutant("kv", KV, "        sessions.pop(client, None)\n", "",
           "a used session is not moved to the end: eviction is FIFO, not LRU"),
    Mutant("kv", KV, "rows.sort(key=lambda row: (row[0], row[1]))",
           "rows.sort(key=lambda row: row[1])",
           "a restored replica evicts in another order than one that applied the log"),
    Mutant("kv", KV, "        self.sessions_dropped += before - len(sessions)\n", "",
           "drops never counted: expired clients are let in again"),
    Mutant("kv", KV, "if grow > 0 and self._data_chars + grow > self.config.max_data_chars:",
           "if self._data_chars + grow > self.config.max_data_chars + 1:",
           "the data quota is exceeded by one and shrinking writes are refused"),
    Mutant("kv", KV, "            if len(value) > MAX_VALUE:\n", "            if False:\n",
           "an append grows a value past MAX_VALUE"),
    Mutant("kv", KV, "len(c) > MAX_CLIENT_ID or ", "",
           "client ids of any length admitted at apply time"),
    # -- channel (crypto) ---------------------------------------------------------------
    Mutant("channel", CHANNEL,
           "        oldest = -1 if self._max_age_ms is None else now_ms - self._max_age_ms\n",
           "        oldest = -1 if self._max_age_ms is None else now_ms - 2 * self._max_age_ms\n",
           "staleness bound doubled"),
    Mutant("channel", CHANNEL, "        if not oldest <= ts <= newest:\n",
           "        if not oldest <= ts:\n",
           "messages from the future accepted"),
    Mutant("channel", CHANNEL, "        if addressee != want:\n", "        if False:\n",
           "a frame for another recipient accepted"),
    Mutant("channel", CHANNEL,
           '            if header["key_id"] != int.from_bytes(data[end + 1 : end + 5], "big"):\n',
           "            if False:\n",
           "header may name another key than the one that authenticated it"),
    Mutant("channel", CHANNEL, "            if not data.startswith(key_prefix, end):\n",
           "            if False:\n",
           "a header of a known shape may name another key than the one that authenticated "
           "it (the cached-shape path)"),
    Mutant("channel", REPLAY, "if seq <= self.highest - self.size:",
           "if seq < self.highest - self.size:",
           "window one too wide: a sequence whose bit was recycled is accepted"),
    Mutant("channel", REPLAY, "if seq - self.highest > MAX_JUMP:",
           "if seq - self.highest > 2 * MAX_JUMP:",
           "jump bound doubled"),
    Mutant("channel", CHANNEL, 'claimed.partition("#")[0] != sender',
           'not claimed.startswith(sender)',
           "sender check by prefix: 'n1' may send as 'n10'"),
    Mutant("channel", CHANNEL, "            if seq >= self._reserved_seq:\n",
           "            if seq > self._reserved_seq:\n",
           "sequence at the lease boundary handed out unreserved (reused after a restart)"),
    Mutant("channel", CHANNEL,
           "        if not oldest <= ts <= newest:\n"
           "            raise self._stale(ts, oldest, newest)\n"
           "        self._guard._accept_authentic(claimed, seq, ts)\n",
           "        self._guard._accept_authentic(claimed, seq, ts)\n"
           "        if not oldest <= ts <= newest:\n"
           "            raise self._stale(ts, oldest, newest)\n",
           "replay window records a stale frame before the freshness check refuses it"),
    Mutant("channel", CHANNEL,
           "        oldest = -1 if self._max_age_ms is None else now_ms - self._max_age_ms\n",
           "        oldest = -1 if self._max_age_ms is None else "
           "now_ms - self._max_age_ms - 1000\n",
           "staleness bound a second too lenient"),
    Mutant("channel", REPLAY, "            for i in range(1, min(target - current, n) + 1):\n",
           "            for i in range(1, min(target - current, n)):\n",
           "window slide leaves the newest block's old bits set (genuine frames refused)"),
    Mutant("channel", REPLAY, "        self._blocks[(seq >> 6) % n] |= 1 << (seq & 63)\n",
           "        self._blocks[(seq >> 6) % n] = 1 << (seq & 63)\n",
           "recording a sequence clears the other bits of its block (replays accepted)"),
    Mutant("channel", REPLAY,
           "            window = state.window.copy()\n            window._mark(seq)\n"
           "            zone_seq",
           "            window = state.window\n            window._mark(seq)\n"
           "            zone_seq",
           "guard updates its cached window before the write is durable"),
    Mutant("channel", REPLAY,
           "            window = state.window.copy()\n            window._mark(seq)\n"
           "            self._storage.put(",
           "            window = state.window\n            window._mark(seq)\n"
           "            self._storage.put(",
           "guard (exact-write store) updates its cached window before the write is durable"),
    Mutant("channel", CHANNEL, 'claimed.partition("#")[0] != sender',
           'claimed != sender',
           "frames of a principal's sessions (sender#session) refused"),
    Mutant("channel", REPLAY, "        if window._normalized() != window._blocks:\n",
           "        if False:\n",
           "a stored window with bits outside it accepted (non-canonical bytes)"),
    Mutant("channel", REPLAY, "        if highest >= 0 and not window._seen(highest):\n",
           "        if False:\n",
           "a stored window whose highest sequence is not marked accepted"),
    # -- envelope ------------------------------------------------------------------------
    Mutant("envelope", ENVELOPE, "out = d.decompress(body, size + 1)",
           "out = d.decompress(body)",
           "decompression output unbounded (a zip bomb inflates fully before the size check)"),
    Mutant("envelope", ENVELOPE, "        if declared != size:  # -1: size not declared",
           "        if declared < -1:",
           "a zstd frame whose declared size differs from the header's accepted"),
    Mutant("envelope", ENVELOPE,
           "if not d.eof or d.unconsumed_tail or d.unused_data:",
           "if not d.eof or d.unconsumed_tail:",
           "trailing data after a zlib stream accepted"),
    Mutant("envelope", ENVELOPE, "if len(packed) < len(body):",
           "if len(packed) <= len(body) + 64:",
           "compression kept when it does not shrink the payload"),
    Mutant("envelope", ENVELOPE, "    if len(out) != size:\n", "    if len(out) > size:\n",
           "a payload shorter than its declared size accepted"),
    Mutant("envelope", ENVELOPE, 'size = _check_uint(header["n"], "n", max_payload)',
           'size = _check_uint(header["n"], "n", 2**63)',
           "max_payload not enforced on the declared size"),
    Mutant("envelope", ENVELOPE, '        if ("r" in keys) == ("tp" in keys):\n',
           '        if "r" not in keys and "tp" not in keys:\n',
           "a header with both recipient and topic gets past the decoder's check"),
    Mutant("envelope", ENVELOPE,
           'if header["v"] != ENVELOPE_VERSION or type(header["v"]) is not int:',
           'if header["v"] != ENVELOPE_VERSION:',
           "version true (== 1 in Python) accepted"),
    Mutant("envelope", ENVELOPE, "        if len(body) >= compress_threshold:\n",
           "        if len(body) > compress_threshold:\n",
           "payload of exactly the threshold left uncompressed"),
    Mutant("envelope", ENVELOPE,
           "    if not isinstance(value, bytes) or not 1 <= len(value) <= MAX_ID_BYTES:",
           "    if not isinstance(value, bytes) or len(value) > MAX_ID_BYTES:",
           "an empty message id accepted"),
    Mutant("envelope", ENVELOPE, "        if len(data) > max_message:\n",
           "        if len(data) > max_message + 1:\n",
           "frame limit off by one"),
    # -- swim ------------------------------------------------------------------------------
    Mutant("swim", SWIM,
           'if kind in ("suspect", "dead") and inc >= me.incarnation and not self.left:',
           'if kind in ("suspect", "dead") and inc > me.incarnation and not self.left:',
           "no refutation of a suspicion at our own incarnation"),
    Mutant("swim", SWIM, "            if inc <= m.incarnation:\n",
           "            if inc < m.incarnation:\n",
           "an alive of the same incarnation overrides a suspicion"),
    Mutant("swim", SWIM, "                inc > me.incarnation\n                or (inc ==",
           "                inc > me.incarnation + 1\n                or (inc ==",
           "a higher alive rumour about us not answered"),
    Mutant("swim", SWIM, "                and extra not in m.suspecters\n", "",
           "the same suspecter counted again as an independent confirmation"),
    Mutant("swim", SWIM, "        return math.ceil(max(lo, hi - (hi - lo) * frac))",
           "        return math.ceil(hi - (hi - lo) * frac)",
           "suspicion timeout shrinks below the minimum with many confirmations"),
    Mutant("swim", SWIM, "            elif seq == self._probe_seq and not self._probe_acked:\n",
           "            elif not self._probe_acked:\n",
           "a late ack of an earlier probe counts for the current one"),
    Mutant("swim", SWIM, "                self.members[self._id].incarnation = inc + 1\n",
           "                self.members[self._id].incarnation = inc\n",
           "a restarted node keeps its incarnation (its alive cannot override dead)"),
    Mutant("swim", SWIM, "        if (m.status in _LIVE and inc >= m.incarnation) or (\n",
           "        if (m.status in _LIVE and inc > m.incarnation) or (\n",
           "dead at the suspected incarnation ignored"),
    Mutant("swim", SWIM,
           "        if kind == \"suspect\":\n            n = self.group_size()\n"
           "            if (m.status is Status.ALIVE and inc >= m.incarnation) or (\n",
           "        if kind == \"suspect\":\n            n = self.group_size()\n"
           "            if (m.status is Status.ALIVE and inc > m.incarnation) or (\n",
           "suspicion at the member's own incarnation ignored"),
    Mutant("swim", SWIM,
           "            me.incarnation += 1\n"
           "            self._enqueue(self._alive_update(self._id))\n            return [Persist",
           "            self._enqueue(self._alive_update(self._id))\n            return [Persist",
           "metadata change without a new incarnation (peers ignore the new load)"),
    Mutant("swim", SWIM,
           "        if m is not None and m.status is Status.SUSPECT"
           " and all(nid != to for nid, _ in chosen):",
           "        if False:",
           "a suspected member is not told of the suspicion directly"),
    Mutant("swim", SWIM, "                requester, their_seq = self._relays.pop(seq)\n"
           "                out.append(self.msg.send(now, requester, \"swim.ack\",\n"
           "                                         {\"seq\": their_seq,",
           "                requester, their_seq = self._relays.pop(seq)\n"
           "                out.append(self.msg.send(now, requester, \"swim.ack\",\n"
           "                                         {\"seq\": seq,",
           "an indirect ack forwarded with the relay's sequence, not the requester's"),
    Mutant("swim", SWIM, "            if sent + 1 >= limit:\n", "            if False:\n",
           "gossip retransmitted forever (no retransmit limit)"),
    Mutant("swim", SWIM, 'if rumour and kind == "dead" and nid != self._id:',
           'if rumour and kind == "dead" and nid == self._id:',
           "dead rows of an exchanged table applied as verdicts (no mergeState)"),
    Mutant("swim", SWIM, "if tomb is not None and inc <= tomb[0]:",
           "if tomb is not None and inc < tomb[0]:",
           "a stale rumour at the reaped incarnation resurrects the member"),
    Mutant("swim", SWIM, "probe less often, wait longer\n                self._adjust_health(+1)",
           "probe less often, wait longer\n                self._adjust_health(0)",
           "late answers do not degrade local health (no LHA-Probe)"),
    Mutant("swim", SWIM, "        growing = now - self._grew_at <= 2 * self.config.period_ms\n",
           "        growing = False\n",
           "no push-pull while the table grows (only every push_pull_ms)"),
    Mutant("swim", SWIM,
           "        target = self._order[self._order_idx]\n        self._order_idx += 1\n",
           "        target = self._order[self._order_idx]\n",
           "the round-robin probe order never advances (one member probed for ever)"),
    Mutant("swim", SWIM,
           "        if (m.status in _LIVE and inc >= m.incarnation) or (\n"
           "            m.status is Status.DEAD and kind == \"left\"",
           "        if (m.status in _LIVE) or (\n"
           "            m.status is Status.DEAD and kind == \"left\"",
           "a dead rumour of an older incarnation kills a member that refuted it"),
    Mutant("swim", SWIM,
           "            if (m.status is Status.ALIVE and inc >= m.incarnation) or (\n"
           "                m.status is Status.SUSPECT and inc > m.incarnation\n"
           "            ):\n                m.status, m.incarnation = Status.SUSPECT, inc\n"
           "                m.suspect_start, m.suspecters = now, [extra]",
           "            if (m.status is Status.ALIVE) or (\n"
           "                m.status is Status.SUSPECT and inc > m.incarnation\n"
           "            ):\n                m.status, m.incarnation = Status.SUSPECT, inc\n"
           "                m.suspect_start, m.suspecters = now, [extra]",
           "a suspicion of an older incarnation re-suspects a member that refuted it"),
    # -- crdt kernels (pure) -----------------------------------------------------------------
    Mutant("crdt", PURE, "        if n > a.get(r, 0):\n            a[r] = n",
           "        if a.get(r, 0) < n:\n            a[r] = n",
           "equivalent guard: kept as a control (must survive)"),
    Mutant("crdt", PURE, "        if r not in a and m > 0:\n",
           "        if r not in a and m > 1:\n",
           "clock compare misses a counter of 1 that only the other side has"),
    Mutant("crdt", PURE, "        elif n < m:\n            b_bigger = True\n",
           "        elif n < m - 1:\n            b_bigger = True\n",
           "clock compare misses a lead of one"),
    Mutant("crdt", PURE,
           "        return None if _seen(v, vv, cloud) else v\n",
           "        return v\n",
           "dot-store join keeps dots the other side removed (remove lost)"),
    Mutant("crdt", PURE,
           "    kept += [d for d in theirs if d not in mine and not _seen(d, a_vv, a_cloud)]",
           "    kept += [d for d in theirs if d not in mine]",
           "dot-store join resurrects removed dots"),
    Mutant("crdt", PURE,
           "    if c <= vv.get(r, 0):\n        return True\n    return (r, c) in cloud\n",
           "    return c <= vv.get(r, 0)\n",
           "dot-store join ignores the dot cloud"),
    Mutant("crdt", PURE, "        if n > b.get(r, 0):\n            return False\n    return True",
           "        if n > b.get(r, n):\n            return False\n    return True",
           "clock order treats a counter the other side lacks as covered"),
    Mutant("crdt", PURE, "    return c <= vv.get(r, 0) or (r, c) in cloud",
           "    return c < vv.get(r, 0) or (r, c) in cloud",
           "context membership misses the vector's last dot"),
    Mutant("crdt", PURE, "        elif c == have + 1:\n", "        elif c > have:\n",
           "compaction folds a dot across a gap (the context claims unseen dots)"),
    Mutant("crdt", PURE, "    for dot in sorted(cloud):\n", "    for dot in list(cloud):\n",
           "compaction in set order (contiguous runs left in the cloud)"),
    Mutant("crdt", PURE,
           "        if c == have + 1:\n            _fold_run(vv, cloud, r, c)\n        else:\n"
           "            cloud.add(d)\n",
           "        cloud.add(d)\n",
           "context join leaves the result uncompacted (equal contexts, unequal states)"),
    Mutant("crdt", PURE, "            for c in range(have + 1, n + 1):\n",
           "            for c in range(have + 1, n):\n",
           "context order does not check the last dot of a vector run"),
    Mutant("crdt", PURE,
           "        kept = _unseen(value, a_vv, a_cloud)\n",
           "        kept = value\n",
           "dot-store join keeps the other side's keys that this side removed"),
    Mutant("crdt", PURE,
           "        elif not (d[1] <= b_vv.get(d[0], 0) or d in b_cloud):\n",
           "        elif not d[1] <= b_vv.get(d[0], 0):\n",
           "register (dot-fun) join ignores the other side's dot cloud"),
    Mutant("crdt", PURE, "            if d in seen:\n", "            if d in dots:\n",
           "decoder accepts one dot supporting two keys"),
    Mutant("crdt", PURE, "            if not ctx_contains(vv, cloud, d[0], d[1]):\n"
           "                raise ValueError",
           "            if False:\n                raise ValueError",
           "decoder accepts a dot outside the causal context"),
    Mutant("crdt", PURE, "        if n > a.get(r, 0):\n            a[r] = n\n\n\ndef vc_leq",
           "        a[r] = n\n\n\ndef vc_leq",
           "clock join takes the other side's counter even when smaller"),
    # -- crdt types over the kernels ------------------------------------------------------------
    Mutant("crdt", REGISTERS, "        if mine is None or theirs > mine:\n",
           "        if mine is None or theirs[0] > mine[0]:\n",
           "LWW join compares timestamps only (equal stamps: the join depends on order)"),
    Mutant("crdt", REGISTERS,
           "CausalContext._of_dots(set(self._writes) | {d}))",
           "CausalContext._of_dots({d}))",
           "MV-register write delta does not cover the overwritten dots"),
    Mutant("crdt", COUNTERS,
           "        return self._p._leq(other._p) and self._n._leq(other._n)",
           "        return self._p._leq(other._p) or self._n._leq(other._n)",
           "PN-counter order needs only one half ordered"),
]

#: Mutants known to be equivalent (they cannot change behaviour): controls, excluded
#: from the kill rate but run, to show the runner does not kill what it should not.
EQUIVALENT = {"equivalent guard: kept as a control (must survive)"}
