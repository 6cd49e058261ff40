"""Pure-Python merge and clock kernels.

These functions are the hot paths of the CRDT catalogue: vector-clock join and
comparison, causal-context membership and compaction, and the join of dotted stores
(the "dot kernel" under ORSet, ORMap and MVRegister). ``_native.pyx`` implements the
identical function set in Cython; :mod:`vsm_phoenix.crdt._backend` picks one.

Representations (shared by both backends):

* a *version vector* is a ``dict[str, int]`` holding only positive counters;
* a *dot cloud* is a ``set[tuple[str, int]]``;
* a causal context is the pair ``(vv, cloud)``, kept *compact*: no cloud dot
  ``(r, c)`` has ``c <= vv.get(r, 0) + 1`` (such a dot is folded into ``vv``);
* a *dot store* maps a key to the ``set`` of dots that support it (ORSet, ORMap keys),
  and a *dot fun* maps a dot to a value (MVRegister).

Kernels never raise on well-formed input; callers validate first, so a kernel cannot
leave a half-applied state behind.
"""

from __future__ import annotations

from collections.abc import Hashable
from typing import Any, TypeVar

from vsm_phoenix.crdt._domain import atom_from_wire, wire_count, wire_replica

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")

Dot = tuple[str, int]

#: ``vc_compare`` results.
EQUAL = 0
BEFORE = -1
AFTER = 1
CONCURRENT = 2


def vc_join_into(a: dict[str, int], b: dict[str, int]) -> None:
    """``a := a ⊔ b`` (pointwise maximum), in place."""
    for r, n in b.items():
        if n > a.get(r, 0):
            a[r] = n


def vc_leq(a: dict[str, int], b: dict[str, int]) -> bool:
    """``a ⊑ b``: every counter of ``a`` is at most the one in ``b``."""
    if len(a) > len(b):
        return False
    for r, n in a.items():  # noqa: SIM110 - explicit loop: faster than all() here
        if n > b.get(r, 0):
            return False
    return True


def vc_compare(a: dict[str, int], b: dict[str, int]) -> int:
    """Causal order of two version vectors: EQUAL, BEFORE, AFTER or CONCURRENT."""
    a_bigger = False
    b_bigger = False
    for r, n in a.items():
        m = b.get(r, 0)
        if n > m:
            a_bigger = True
        elif n < m:
            b_bigger = True
        if a_bigger and b_bigger:
            return CONCURRENT
    for r, m in b.items():
        if r not in a and m > 0:
            b_bigger = True
            break
    if a_bigger:
        return CONCURRENT if b_bigger else AFTER
    return BEFORE if b_bigger else EQUAL


def ctx_contains(vv: dict[str, int], cloud: set[Dot], r: str, c: int) -> bool:
    """Whether the dot ``(r, c)`` is in the causal context ``(vv, cloud)``."""
    return c <= vv.get(r, 0) or (r, c) in cloud


def ctx_compact(vv: dict[str, int], cloud: set[Dot]) -> None:
    """Fold every cloud dot that extends the version vector contiguously into it, and
    drop cloud dots the vector already covers. In place; restores compactness."""
    if not cloud:
        return
    # Ascending (replica, counter) order: one pass absorbs every contiguous run.
    for dot in sorted(cloud):
        r, c = dot
        have = vv.get(r, 0)
        if c <= have:
            cloud.discard(dot)
        elif c == have + 1:
            vv[r] = c
            cloud.discard(dot)


def ctx_join_into(
    vv: dict[str, int], cloud: set[Dot], o_vv: dict[str, int], o_cloud: set[Dot]
) -> None:
    """``(vv, cloud) := (vv, cloud) ∪ (o_vv, o_cloud)``, compact, in place."""
    vc_join_into(vv, o_vv)
    cloud.update(o_cloud)
    ctx_compact(vv, cloud)


def ctx_leq(vv: dict[str, int], cloud: set[Dot], o_vv: dict[str, int], o_cloud: set[Dot]) -> bool:
    """Set inclusion of causal contexts (both compact)."""
    if not vc_leq(vv, o_vv):
        # A compact context with a bigger vv entry may still be covered by o's cloud.
        for r, n in vv.items():
            have = o_vv.get(r, 0)
            if n - have > len(o_cloud):
                return False
            for c in range(have + 1, n + 1):
                if (r, c) not in o_cloud:
                    return False
    for r, c in cloud:  # noqa: SIM110 - explicit loop: faster than all() here
        if not (c <= o_vv.get(r, 0) or (r, c) in o_cloud):
            return False
    return True


def dotstore_join(
    a: dict[K, set[Dot]],
    a_vv: dict[str, int],
    a_cloud: set[Dot],
    b: dict[K, set[Dot]],
    b_vv: dict[str, int],
    b_cloud: set[Dot],
) -> dict[K, set[Dot]]:
    """Join of two dot stores under their causal contexts (add-wins).

    For each key, a dot survives when both sides have it, or when one side has it and
    the other side has never seen it (it is not in the other's context). Keys left with
    no dot are dropped. Returns a new mapping; the inputs are not modified.
    """
    out: dict[K, set[Dot]] = {}
    for key, dots in a.items():
        other = b.get(key)
        if other is None:
            kept = {d for d in dots if not (d[1] <= b_vv.get(d[0], 0) or d in b_cloud)}
        else:
            kept = dots & other
            for d in dots:
                if d not in other and not (d[1] <= b_vv.get(d[0], 0) or d in b_cloud):
                    kept.add(d)
            for d in other:
                if d not in dots and not (d[1] <= a_vv.get(d[0], 0) or d in a_cloud):
                    kept.add(d)
        if kept:
            out[key] = kept
    for key, dots in b.items():
        if key in a:
            continue
        kept = {d for d in dots if not (d[1] <= a_vv.get(d[0], 0) or d in a_cloud)}
        if kept:
            out[key] = kept
    return out


def dotstore_join_into(
    a: dict[K, set[Dot]],
    a_vv: dict[str, int],
    a_cloud: set[Dot],
    b: dict[K, set[Dot]],
    b_vv: dict[str, int],
    b_cloud: set[Dot],
) -> None:
    """``a := dotstore_join(a, a_vv, a_cloud, b, b_vv, b_cloud)``, in place.

    The sets of ``b`` are never shared with ``a``; a set of ``a`` may be replaced by a
    new one (callers own the sets of their store). On an exception ``a`` is unchanged.
    """
    joined = dotstore_join(a, a_vv, a_cloud, b, b_vv, b_cloud)
    a.clear()
    a.update(joined)


def dotstore_copy(entries: dict[K, set[Dot]]) -> dict[K, set[Dot]]:
    """An independent copy of a dot store: a new mapping of new sets."""
    return {key: set(dots) for key, dots in entries.items()}


def dotfun_join(
    a: dict[Dot, V],
    a_vv: dict[str, int],
    a_cloud: set[Dot],
    b: dict[Dot, V],
    b_vv: dict[str, int],
    b_cloud: set[Dot],
) -> dict[Dot, V]:
    """Join of two dot functions (dot → value) under their causal contexts.

    A dot survives when both sides hold it (the value is the same: a dot is written
    once), or when one side holds it and the other has not seen it.
    """
    out: dict[Dot, V] = {}
    for d, v in a.items():
        if d in b or not (d[1] <= b_vv.get(d[0], 0) or d in b_cloud):
            out[d] = v
    for d, v in b.items():
        if d not in a and not (d[1] <= a_vv.get(d[0], 0) or d in a_cloud):
            out[d] = v
    return out


def dotstore_decode(state: Any, vv: dict[str, int], cloud: set[Dot]) -> dict[Any, set[Dot]]:
    """Decode a dot store's wire layout ``[[element, [[replica, counter], ...]], ...]``
    and check it against the causal context ``(vv, cloud)``.

    Raises ``ValueError`` (or ``DecodeError``) for a malformed layout, an empty dot
    list, a dot that appears twice or a dot outside the context.
    """
    if not isinstance(state, list):
        raise ValueError("expected an array of [key, dots]")
    out: dict[Any, set[Dot]] = {}
    seen: set[Dot] = set()
    for item in state:
        if not (isinstance(item, list) and len(item) == 2 and isinstance(item[1], list)):
            raise ValueError("expected [key, [dot, ...]]")
        key = atom_from_wire(item[0])
        if not item[1]:
            raise ValueError("a present key needs at least one dot")
        dots: set[Dot] = set()
        for raw in item[1]:
            if not (isinstance(raw, list) and len(raw) == 2):
                raise ValueError("a dot is [replica, counter]")
            d = (wire_replica(raw[0]), wire_count(raw[1], "dot counter", positive=True))
            if d in seen or d in dots:
                raise ValueError(f"dot {d} appears twice")
            if not ctx_contains(vv, cloud, d[0], d[1]):
                raise ValueError(f"dot {d} is outside the causal context")
            dots.add(d)
        seen |= dots
        out[key] = dots
    return out
