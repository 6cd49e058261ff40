"""Roles held through compare-and-set leases on the linearizable KV, with fencing.

Theory of operation
-------------------
A role ("leader/pool-0", "coordinator/task-7") is one KV key, ``role/<name>``, whose
value is the canonical JSON ``[holder, token, beat]``. The KV has no clock, so a lease
is kept by *renewal* and expires by *observation*, measured on each agent's own clock:

* **Acquire.** An absent key is taken with ``cas(None -> [me, 1, 0])``. A present value
  ``V`` is taken over only by an agent that has seen ``V`` unchanged for
  ``lease_ms + margin_ms`` of its own time: ``cas(V -> [me, token(V) + 1, 0])``.
* **Hold.** The holder renews every ``renew_ms`` with ``cas(V -> [me, token, beat + 1])``.
  Every renewal changes the value, so "unchanged for a lease" means "not renewed for a
  lease". The holder believes it holds the role until ``lease_ms - margin_ms`` after it
  *sent* its last successful renewal (or acquisition); a failed renewal ends the belief
  at once, an unanswered one does not extend it.
* **Why never two holders.** The value a contender observes was written by a cas the
  holder sent before the contender's read returned, so the contender's wait starts no
  earlier than the holder's belief, and lasts ``2 * margin_ms`` longer. Clocks may be
  offset and drift by less than ``margin_ms`` per lease; a clock *stepped* backwards on
  a holder during its lease is outside the model. The cas makes the take-over itself
  atomic, and the KV history is checked for linearizability (``simulate_agents``).
* **Fencing.** Each acquisition increments the token; every action a holder takes
  carries it. A resource keeps a :class:`Fence` and refuses any token lower than the
  highest it has seen (:class:`StaleToken`), so a deposed holder that wakes up late
  cannot act even if it still believes in its lease.

:class:`RoleLease` is sans-IO: :meth:`RoleLease.next_op` says which KV operation to
send (``KVGet`` / ``KVCas`` of :mod:`vsm_phoenix.verify.models`), the caller reports
the answer with :meth:`on_result` (or :meth:`on_unanswered`), and :meth:`token` says
whether it holds the role now. Times are the agent's local milliseconds.
"""

from __future__ import annotations

import itertools
import json
from typing import Final

import attrs

from vsm_phoenix.errors import DecodeError, InvalidArgument, PermissionDenied
from vsm_phoenix.verify.models import KVCas, KVGet

__all__ = [
    "ROLE_PREFIX",
    "Fence",
    "HolderInterval",
    "LeaseValue",
    "RoleLease",
    "StaleToken",
    "overlaps",
]

ROLE_PREFIX: Final = "role/"
_MAX_VALUE: Final = 512


class StaleToken(PermissionDenied):
    """An action carried a fencing token older than one the resource has seen."""

    def __init__(self, resource: str, token: int, highest: int) -> None:
        super().__init__(f"{resource}: fencing token {token} is older than {highest}")
        self.resource = resource
        self.token = token
        self.highest = highest


@attrs.frozen
class LeaseValue:
    """The KV value of a role: who holds it, its fencing token, its renewal count."""

    holder: str
    token: int
    beat: int

    def encode(self) -> str:
        return json.dumps([self.holder, self.token, self.beat], separators=(",", ":"))

    @classmethod
    def decode(cls, text: object) -> LeaseValue:
        """``DecodeError`` for anything but ``[str, int >= 1, int >= 0]`` JSON."""
        if not isinstance(text, str) or len(text) > _MAX_VALUE:
            raise DecodeError("lease value must be a short string")
        try:
            doc = json.loads(text)
        except (ValueError, RecursionError):
            raise DecodeError("lease value is not JSON") from None
        if not (isinstance(doc, list) and len(doc) == 3 and isinstance(doc[0], str)
                and type(doc[1]) is int and type(doc[2]) is int
                and 1 <= doc[1] < 2**63 and 0 <= doc[2] < 2**63):
            raise DecodeError("lease value must be [holder, token >= 1, beat >= 0]")
        value = cls(doc[0], doc[1], doc[2])
        if value.encode() != text:
            raise DecodeError("lease value is not in canonical form")
        return value


class Fence:
    """A resource's fencing check: tokens never go backwards (see module doc)."""

    __slots__ = ("highest", "name", "refused")

    def __init__(self, name: str) -> None:
        self.name = name
        self.highest = 0
        self.refused = 0

    def admit(self, token: int) -> None:
        """Accept an action carrying ``token``, or raise :class:`StaleToken`."""
        if type(token) is not int or token < 1:
            raise InvalidArgument("a fencing token is an int >= 1")
        if token < self.highest:
            self.refused += 1
            raise StaleToken(self.name, token, self.highest)
        self.highest = token


@attrs.frozen
class HolderInterval:
    """When an agent believed it held a role (global time, for the monitor)."""

    role: str
    holder: str
    token: int
    start: int
    end: int


def overlaps(intervals: list[HolderInterval]) -> list[str]:
    """Pairs of beliefs of one role by different tokens that overlap in time."""
    out = []
    by_role: dict[str, list[HolderInterval]] = {}
    for iv in intervals:
        by_role.setdefault(iv.role, []).append(iv)
    for role, ivs in sorted(by_role.items()):
        ivs.sort(key=lambda i: (i.start, i.token))
        for a, b in itertools.pairwise(ivs):
            if a.token != b.token and b.start < a.end:
                out.append(f"{role}: {a.holder} (token {a.token}, until {a.end}) and "
                           f"{b.holder} (token {b.token}, from {b.start})")
    return out


class RoleLease:
    """One agent's lease state machine for one role (sans-IO; see the module doc)."""

    __slots__ = (
        "_last_renew",
        "_observed",
        "_pending",
        "_read_after",
        "_sent_at",
        "_since",
        "_token",
        "_valid_until",
        "_value",
        "acquisitions",
        "agent",
        "lease_ms",
        "margin_ms",
        "renew_ms",
        "role",
    )

    def __init__(self, agent: str, role: str, *, lease_ms: int = 2000, renew_ms: int = 500,
                 margin_ms: int = 200) -> None:
        if not isinstance(agent, str) or not agent or not isinstance(role, str) or not role:
            raise InvalidArgument("agent and role must be non-empty strings")
        if not (renew_ms > 0 and margin_ms >= 0 and renew_ms + 2 * margin_ms < lease_ms):
            raise InvalidArgument("need 0 < renew_ms, 0 <= margin_ms and "
                                  "renew_ms + 2 * margin_ms < lease_ms")
        self.agent = agent
        self.role = role
        self.lease_ms = lease_ms
        self.renew_ms = renew_ms
        self.margin_ms = margin_ms
        self._value: str | None = None
        self._observed = False
        self._since = 0
        self._token: int | None = None
        self._valid_until = 0
        self._last_renew = 0
        self._pending: KVGet | KVCas | None = None
        self._sent_at = 0
        self._read_after = 0
        self.acquisitions = 0

    @property
    def key(self) -> str:
        return ROLE_PREFIX + self.role

    def token(self, now: int) -> int | None:
        """The fencing token while this agent holds the role at local time ``now``."""
        if self._token is not None and now < self._valid_until:
            return self._token
        return None

    @property
    def valid_until(self) -> int:
        return self._valid_until

    def next_op(self, now: int) -> KVGet | KVCas | None:
        """The KV operation to send now, if any (one outstanding at a time)."""
        if self._pending is not None:
            return None
        op: KVGet | KVCas | None = None
        if self._token is not None:
            if now >= self._valid_until:
                self._release()
            elif now - self._last_renew >= self.renew_ms:
                assert self._value is not None
                held = LeaseValue.decode(self._value)
                op = KVCas(self.key, self._value,
                           LeaseValue(self.agent, held.token, held.beat + 1).encode())
        if self._token is None and op is None:
            if not self._observed:
                op = KVGet(self.key) if now >= self._read_after else None
            elif self._value is None:
                op = KVCas(self.key, None, LeaseValue(self.agent, 1, 0).encode())
            elif now - self._since >= self.lease_ms + self.margin_ms:
                token = _token_of(self._value)
                op = KVCas(self.key, self._value, LeaseValue(self.agent, token + 1, 0).encode())
            elif now - max(self._since, self._read_after) >= self.renew_ms:
                op = KVGet(self.key)  # look again now and then: renewed, or gone?
        if op is not None:
            self._pending = op
            self._sent_at = now
        return op

    def on_result(self, result: object, now: int) -> str | None:
        """The answer to the outstanding operation. Returns ``"acquired"``,
        ``"renewed"`` or ``"lost"`` when the role changed hands here, else ``None``."""
        op, sent = self._pending, self._sent_at
        if op is None:
            raise InvalidArgument("no operation outstanding")
        self._pending = None
        if isinstance(op, KVGet):
            if result is not None and not isinstance(result, str):
                raise InvalidArgument("a get answers a string or None")
            self._read_after = now
            if not self._observed or result != self._value:
                self._value, self._since, self._observed = result, now, True
            return None
        if type(result) is not bool:
            raise InvalidArgument("a cas answers a bool")
        renewing = self._token is not None
        if result:
            self._value = op.new
            self._last_renew = sent
            self._valid_until = sent + self.lease_ms - self.margin_ms
            if not renewing:
                self._token = LeaseValue.decode(op.new).token
                self.acquisitions += 1
                return "acquired"
            return "renewed"
        self._observed = False
        if renewing:
            self._release()
            return "lost"
        return None

    def on_unanswered(self, now: int) -> None:
        """The outstanding operation got no answer (it may still take effect)."""
        if self._pending is None:
            raise InvalidArgument("no operation outstanding")
        op, self._pending = self._pending, None
        # An unanswered read tells nothing: the observation so far still stands. An
        # unanswered cas may have changed the value: observe it afresh, a little later.
        if self._token is None and isinstance(op, KVCas):
            self._observed = False
            self._read_after = now + self.renew_ms

    def _release(self) -> None:
        self._token = None
        self._observed = False

    def give_up(self) -> None:
        """Forget the role at once (crash, leave); the lease then runs out."""
        self._token = None
        self._observed = False
        self._pending = None


def _token_of(value: str) -> int:
    try:
        return LeaseValue.decode(value).token
    except DecodeError:
        return 0  # a value that is no lease: the next token is 1
