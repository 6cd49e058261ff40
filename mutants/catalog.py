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

from typing import NamedTuple


class Mutant(NamedTuple):
    area: str
    path: str
    find: str
    replace: str
    why: str


# The tests each area's mutants are judged by (paths relative to the repository).
AREA_TESTS: dict[str, list[str]] = {
    "raft": ["tests/protocol/test_raft.py", "tests/protocol/test_raft_quorum.py",
             "tests/protocol/test_raft_transcripts.py", "proofs/test_raft_model.py"],
    "kv": ["tests/protocol/test_kv.py"],
    "channel": ["tests/crypto"],
    "envelope": ["tests/protocol/test_protocol_envelope.py",
                 "tests/protocol/test_envelope_bounds.py"],
    "swim": ["tests/protocol/test_protocol_swim.py"],
    "crdt": ["tests/crdt", "proofs/test_lattice_laws.py", "proofs/test_lattice_models_match.py"],
}

RAFT = "vsm_phoenix/protocol/raft/node.py"
LOG = "vsm_phoenix/protocol/raft/log.py"
QUORUM = "vsm_phoenix/protocol/raft/quorum.py"
KV = "vsm_phoenix/protocol/kv.py"
CHANNEL = "vsm_phoenix/crypto/channel.py"
REPLAY = "vsm_phoenix/crypto/replay.py"
ENVELOPE = "vsm_phoenix/protocol/envelope.py"
SWIM = "vsm_phoenix/protocol/swim.py"
PURE = "vsm_phoenix/crdt/_pure.py"

MUTANTS: list[Mutant] = [
    # -- raft ---------------------------------------------------------------------------
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
    # -- kv ----------------------------------------------------------------------------
    Mutant("kv", KV, "if last is not None and seq <= last[0]:",
           "if last is not None and seq < last[0]:",
           "a retried command applied twice"),
    Mutant("kv", KV, 'self.data[key] = self.data.get(key, "") + cmd["v"]',
           'self.data[key] = cmd["v"] + self.data.get(key, "")',
           "append prepends"),
    Mutant("kv", KV, 'result = self.data.get(key) == cmd["e"]',
           'result = self.data.get(key) != cmd["e"]',
           "compare-and-set inverted"),
    Mutant("kv", KV, "return last[1] if seq == last[0] else STALE",
           "return last[1]",
           "a stale command answered with the latest result"),
    Mutant("kv", KV, "self.sessions[client] = (seq, result)", "pass",
           "sessions never recorded"),
    # -- channel (crypto) ---------------------------------------------------------------
    Mutant("channel", CHANNEL,
           "if self._max_age_ms is not None and now_ms - ts > self._max_age_ms:",
           "if self._max_age_ms is not None and now_ms - ts > 2 * self._max_age_ms:",
           "staleness bound doubled"),
    Mutant("channel", CHANNEL,
           "if self._max_skew_ms is not None and ts - now_ms > self._max_skew_ms:",
           "if False:",
           "messages from the future accepted"),
    Mutant("channel", CHANNEL,
           "if header[\"recipient\"] != (self.identity if recipient is None else recipient):",
           "if False:",
           "a frame for another recipient accepted"),
    Mutant("channel", CHANNEL,
           "if header[\"key_id\"] != key_id:",
           "if False:",
           "header may name another key than the one that authenticated it"),
    Mutant("channel", REPLAY, "if seq <= self.highest - self.size:",
           "if seq < self.highest - self.size:",
           "window one too wide: a sequence whose bit was recycled is accepted"),
    Mutant("channel", REPLAY, "if seq - self.highest > MAX_JUMP:",
           "if seq - self.highest > 2 * MAX_JUMP:",
           "jump bound doubled"),
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
    # -- crdt kernels (pure) -----------------------------------------------------------------
    Mutant("crdt", PURE, "        if n > a.get(r, 0):\n            a[r] = n",
           "        if n >= a.get(r, 0):\n            a[r] = n + 0 * n",
           "equivalent guard: kept as a control (must survive)"),
    Mutant("crdt", PURE, "        if r not in a and m > 0:\n",
           "        if r not in a and m > 1:\n",
           "clock compare misses a counter of 1 that only the other side has"),
    Mutant("crdt", PURE, "        elif n < m:\n            b_bigger = True\n",
           "        elif n < m - 1:\n            b_bigger = True\n",
           "clock compare misses a lead of one"),
    Mutant("crdt", PURE,
           "            kept = {d for d in dots if not (d[1] <= b_vv.get(d[0], 0)"
           " or d in b_cloud)}",
           "            kept = set(dots)",
           "dot-store join keeps dots the other side removed (remove lost)"),
    Mutant("crdt", PURE, "            kept = dots & other\n", "            kept = dots | other\n",
           "dot-store join resurrects removed dots"),
    Mutant("crdt", PURE,
           "                if d not in dots and not (d[1] <= a_vv.get(d[0], 0) or d in a_cloud):",
           "                if d not in dots and not d[1] <= a_vv.get(d[0], 0):",
           "dot-store join ignores the dot cloud"),
]

#: Mutants known to be equivalent (they cannot change behaviour): controls, excluded
#: from the kill rate but run, to show the runner does not kill what it should not.
EQUIVALENT = {"equivalent guard: kept as a control (must survive)"}
