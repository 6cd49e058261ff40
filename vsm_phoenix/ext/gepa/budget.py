"""A hard cluster-wide metric-call budget: slices leased through the Raft KV.

Theory of operation
-------------------
The replicated budget counter (:meth:`EvolutionState.spend
<vsm_phoenix.ext.gepa.state.EvolutionState.spend>`) tells each node what the others
have spent *so far as it has heard*: engines that stop on it overspend by whatever the
cluster spends between two syncs, and a partition lets each side spend the whole
budget. A counter that only grows cannot be a hard limit without coordination; the
limit is enforced with consensus instead, but only once per *slice*, not once per
call:

* The KV key :data:`BUDGET_KEY` holds the number of metric calls **leased** so far
  (absent: none). A node leases ``k`` more calls with a linearizable read and a
  compare-and-set from ``t`` to ``t + k``, granted only while ``t + k <= limit``
  (:func:`lease_value` computes the step; the last lease is cut down to what is left).
  The value only ever rises, by compare-and-set, and never past the limit.
* A node makes a metric call only within calls it holds (:class:`BudgetLease`):
  ``used <= leased - released`` for every incarnation of every node, checked before
  the call.
* An engine that ends on its own (target, budget, stall, stop) gives the calls it
  still holds back (:meth:`BudgetLease.release`: a compare-and-set lowering the key by
  them, :func:`release_value`), so the nodes still running can lease them. A crashed
  incarnation gives nothing back (:meth:`BudgetLease.abandon`): what it held is lost.

**The bound.** Summed over every engine that ever ran (every node, every incarnation),
metric calls made <= calls leased minus calls given back = the KV's value <=
``limit`` -- under any partition, message loss, duplication, crash and restart, with
or without disk, because the only shared step is the KV's compare-and-set, and a
release gives back only calls its incarnation holds and will never use. What the
guarantee costs: a lease is a KV round trip (one per slice, ``slice_calls`` calls);
calls held by an incarnation that crashes, or whose release the KV does not answer,
are lost (at most one slice per incarnation); near the end of the budget a node
stops when the calls left do not cover its next evaluation; and a node cut off from a
KV majority stops when its slice is used up (it waits for a lease, it never spends
without one).

The lease's transport is a callable ``acquire(want) -> granted`` (``0 <= granted <=
want``; 0: the budget is gone), which raises :class:`LeaseUnavailable` when the KV
does not answer: :class:`~vsm_phoenix.ext.gepa.cluster.SimulatedCluster` sends the
KV commands through the simulator, :mod:`~vsm_phoenix.ext.gepa.over_amqp` through
:meth:`Cluster.kv <vsm_phoenix.ext.amqp.Cluster.kv>`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Final

from vsm_phoenix.errors import DecodeError, InvalidArgument, VsmPhoenixError

__all__ = [
    "BUDGET_KEY",
    "BudgetExhausted",
    "BudgetLease",
    "LeaseUnavailable",
    "lease_value",
    "parse_leased",
    "release_value",
]

#: The KV key holding the number of metric calls leased so far (decimal text).
BUDGET_KEY: Final = "gepa/budget/leased"
_MAX_DIGITS = 20


class BudgetExhausted(VsmPhoenixError):
    """A metric call was needed that no lease covers and the budget has no more
    calls to lease (``needed``, ``held``: the calls needed and held)."""

    def __init__(self, needed: int, held: int) -> None:
        super().__init__(f"the cluster's metric-call budget is spent: {needed} calls "
                         f"needed, {held} held")
        self.needed = needed
        self.held = held


class LeaseUnavailable(VsmPhoenixError):
    """The KV did not answer a lease request (no majority reachable, or no leader
    yet); nothing was leased."""


def parse_leased(value: str | None) -> int:
    """The leased total a :data:`BUDGET_KEY` value holds (``None``: 0).
    ``DecodeError`` for anything but a decimal non-negative integer."""
    if value is None:
        return 0
    if (not isinstance(value, str) or not value.isascii() or not value.isdigit()
            or len(value) > _MAX_DIGITS or (len(value) > 1 and value[0] == "0")):
        raise DecodeError(f"{BUDGET_KEY} does not hold a leased count")
    return int(value)


def release_value(current: str | None, calls: int) -> str:
    """The value of :data:`BUDGET_KEY` once ``calls`` leased calls are given back.
    ``DecodeError`` for a value that is not a leased count, ``ValueError`` when
    ``calls`` is not positive or more than the value holds."""
    if type(calls) is not int or calls <= 0:
        raise InvalidArgument("calls must be a positive int")
    leased = parse_leased(current)
    if calls > leased:
        raise InvalidArgument(f"cannot give back {calls} calls: {leased} are leased")
    return str(leased - calls)


def lease_value(current: str | None, want: int, limit: int) -> tuple[str, int] | None:
    """One lease step over the ``current`` value of :data:`BUDGET_KEY`: the new value
    and the calls it grants (``min(want, limit - leased)``), or ``None`` when nothing
    is left. ``DecodeError`` for a value that is not a leased count (the KV holds
    something else under the key), ``ValueError`` for bad arguments."""
    for name, v in (("want", want), ("limit", limit)):
        if type(v) is not int or v <= 0:
            raise InvalidArgument(f"{name} must be a positive int")
    leased = parse_leased(current)
    grant = min(want, limit - leased)
    if grant <= 0:
        return None
    return str(leased + grant), grant


class BudgetLease:
    """The calls one engine incarnation holds (see the module docstring).

    ``acquire(want)`` leases up to ``want`` calls and returns how many it got (see the
    module docstring). :meth:`ensure` leases at least ``slice_calls`` at a time.
    ``give_back(n)`` (optional) returns ``n`` held calls to the KV for
    :meth:`release`.
    """

    def __init__(self, acquire: Callable[[int], int], *, slice_calls: int,
                 give_back: Callable[[int], None] | None = None) -> None:
        if not callable(acquire) or (give_back is not None and not callable(give_back)):
            raise InvalidArgument("acquire and give_back must be callable")
        if type(slice_calls) is not int or slice_calls <= 0:
            raise InvalidArgument("slice_calls must be a positive int")
        self._acquire = acquire
        self._give_back = give_back
        self.slice_calls = slice_calls
        self.leased = 0
        self.used = 0
        self.released = 0
        self.exhausted = False  # the KV's last answer: nothing is left
        self.abandoned = False

    @property
    def held(self) -> int:
        """Calls leased and neither used nor given back."""
        return self.leased - self.released - self.used

    @property
    def net(self) -> int:
        """Calls leased minus calls given back (what this lease counts in the KV)."""
        return self.leased - self.released

    def ensure(self, calls: int) -> bool:
        """Hold at least ``calls`` calls, leasing more (at least a slice) when needed.
        ``False`` when the budget cannot cover them now (what could be leased is
        held); :class:`LeaseUnavailable` when the KV does not answer."""
        if type(calls) is not int or calls < 0:
            raise InvalidArgument("calls must be a non-negative int")
        if self.abandoned:
            return False
        self.exhausted = False
        while self.held < calls and not self.exhausted:
            want = max(calls - self.held, self.slice_calls)
            got = self._acquire(want)
            if type(got) is not int or not 0 <= got <= want:
                raise InvalidArgument(f"acquire({want}) returned {got!r}")
            if got == 0:
                self.exhausted = True
            self.leased += got
        return self.held >= calls

    def abandon(self) -> None:
        """The incarnation crashed: what it holds is lost, never given back or used."""
        self.abandoned = True

    def release(self) -> int:
        """Give every held call back (call it once the engine has made its last call);
        how many were given back (0 without ``give_back``, after :meth:`abandon`, or
        when the KV does not answer -- then they are lost)."""
        n = self.held
        if n == 0 or self._give_back is None or self.abandoned:
            return 0
        try:
            self._give_back(n)
        except LeaseUnavailable:
            return 0
        self.released += n
        return n

    def use(self, calls: int) -> None:
        """Spend ``calls`` held calls (``BudgetExhausted`` when not held: nothing
        changes)."""
        if type(calls) is not int or calls < 0:
            raise InvalidArgument("calls must be a non-negative int")
        if calls > self.held or (self.abandoned and calls):
            raise BudgetExhausted(calls, 0 if self.abandoned else self.held)
        self.used += calls
