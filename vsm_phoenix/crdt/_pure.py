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
* a *dot store* maps a key to the dots that support it (ORSet, ORMap keys), each dot
  packed into one ``int`` (:mod:`vsm_phoenix.crdt._dots`): the bare packed dot when
  there is one (the common case), an ascending ``tuple`` of two or more otherwise.
  Kernels return stores in that normal form;
* a *dot fun* maps a packed dot to a value (MVRegister).

Kernels never raise on well-formed input; callers validate first, so a kernel cannot
leave a half-applied state behind.
"""

from __future__ import annotations

from array import array
from bisect import bisect_left
from collections.abc import Hashable
from typing import Any, TypeAlias, TypeVar

from vsm_phoenix.crdt._domain import atom_from_wire, atom_key, wire_count, wire_replica
from vsm_phoenix.crdt._dots import (
    REPLICAS,
    RID_BITS,
    RID_MASK,
    Dots,
    dots_of,
    normal,
    pack,
)
from vsm_phoenix.crdt._intern import lookup

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")

Dot = tuple[str, int]
#: The counters of an array clock: 64-bit when they all fit, else a list.
Counts: TypeAlias = "array[int] | list[int]"

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


# -- array-backed vector clocks ------------------------------------------------------
#
# A clock is two parallel sequences: ``ids``, the interned replica ids (``_intern``) in
# strictly ascending order, an ``array('q')``; and ``ns``, their counters (all >= 1), an
# ``array('q')`` -- or a ``list`` when some counter does not fit in 64 bits (the
# normal form: ``ns`` is a list iff a counter exceeds 2**63 - 1). The kernels below
# take two clocks ``(ai, an)`` and ``(bi, bn)``; for ids that are not strictly
# ascending their results are unspecified but identical on both backends (the native
# twin follows the same steps).


def _check_clock(ids: Any, ns: Any) -> None:
    if len(ids) != len(ns):
        raise ValueError("a clock needs one counter per replica id")


def _merged(ai: Any, an: Counts, bi: Any, bn: Counts) -> tuple[array[int], Counts]:
    """The pointwise maximum of two clocks as new sequences (a sorted-merge walk)."""
    la, lb = len(ai), len(bi)
    ids: list[int] = []
    ns: list[int] = []
    i = j = 0
    while i < la and j < lb:
        x, y = ai[i], bi[j]
        if x == y:
            m, n = an[i], bn[j]
            ids.append(x)
            ns.append(m if m >= n else n)
            i += 1
            j += 1
        elif x < y:
            ids.append(x)
            ns.append(an[i])
            i += 1
        else:
            ids.append(y)
            ns.append(bn[j])
            j += 1
    if i < la:
        ids.extend(ai[i:])
        ns.extend(an[i:])
    if j < lb:
        ids.extend(bi[j:])
        ns.extend(bn[j:])
    if type(an) is list or type(bn) is list:
        return array("q", ids), ns
    return array("q", ids), array("q", ns)


def _positions(ai: Any, bi: Any) -> list[int] | None:
    """Where each id of ``bi`` sits in ``ai`` (binary search), or None if one is absent."""
    la = len(ai)
    out: list[int] = []
    for x in bi:
        k = bisect_left(ai, x)
        if k == la or ai[k] != x:
            return None
        out.append(k)
    return out


def vc_join_arrays(ai: Any, an: Counts, bi: Any, bn: Counts) -> tuple[array[int], Counts]:
    """``a ⊔ b`` (pointwise maximum) of two array clocks; returns ``(ids, ns)``.

    When ``ai`` already holds every id of ``bi`` the join is done in place: ``an`` is
    updated and ``(ai, an)`` returned (same replicas: one lockstep pass; a ``b`` at most
    a quarter the size of ``a``: a binary search per entry of ``b``, so a small delta
    costs O(|b| log |a|)). Otherwise -- or when ``an`` is an ``array`` and ``bn`` a
    ``list`` (wider counters) -- new sequences are returned and ``an`` is untouched.
    """
    _check_clock(ai, an)
    _check_clock(bi, bn)
    widen = type(bn) is list and type(an) is not list
    if ai == bi:
        if widen:
            an = list(an)
        for k, (m, n) in enumerate(zip(an, bn, strict=True)):
            if n > m:
                an[k] = n
        return ai, an
    if len(bi) * 4 <= len(ai):
        where = _positions(ai, bi)
        if where is not None:
            if widen:
                an = list(an)
            for k, n in zip(where, bn, strict=True):
                if n > an[k]:
                    an[k] = n
            return ai, an
    return _merged(ai, an, bi, bn)


def vc_leq_arrays(ai: Any, an: Counts, bi: Any, bn: Counts) -> bool:
    """``a ⊑ b`` for two array clocks: every counter of ``a`` is at most ``b``'s (a
    replica absent from a clock counts 0)."""
    _check_clock(ai, an)
    _check_clock(bi, bn)
    if ai == bi:
        for m, n in zip(an, bn, strict=True):  # noqa: SIM110 - faster than all()
            if m > n:
                return False
        return True
    la, lb = len(ai), len(bi)
    i = j = 0
    while i < la:
        x = ai[i]
        while j < lb and bi[j] < x:
            j += 1
        n = bn[j] if j < lb and bi[j] == x else 0
        if an[i] > n:
            return False
        i += 1
    return True


def vc_compare_arrays(ai: Any, an: Counts, bi: Any, bn: Counts) -> int:
    """Causal order of two array clocks: EQUAL, BEFORE, AFTER or CONCURRENT."""
    _check_clock(ai, an)
    _check_clock(bi, bn)
    a_bigger = b_bigger = False
    if ai == bi:
        for m, n in zip(an, bn, strict=True):
            if m > n:
                if b_bigger:
                    return CONCURRENT
                a_bigger = True
            elif m < n:
                if a_bigger:
                    return CONCURRENT
                b_bigger = True
    else:
        la, lb = len(ai), len(bi)
        i = j = 0
        while i < la or j < lb:
            if j == lb or (i < la and ai[i] < bi[j]):
                m, n = an[i], 0
                i += 1
            elif i == la or bi[j] < ai[i]:
                m, n = 0, bn[j]
                j += 1
            else:
                m, n = an[i], bn[j]
                i += 1
                j += 1
            if m > n:
                if b_bigger:
                    return CONCURRENT
                a_bigger = True
            elif m < n:
                if a_bigger:
                    return CONCURRENT
                b_bigger = True
    if a_bigger:
        return AFTER
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


def _fold_run(vv: dict[str, int], cloud: set[Dot], r: str, c: int) -> None:
    """Set ``vv[r] = c`` and fold the cloud dots ``(r, c+1), (r, c+2), ...`` that now
    extend the vector contiguously (each folded dot leaves the cloud: amortised O(1))."""
    if cloud:
        nxt = (r, c + 1)
        while nxt in cloud:
            cloud.discard(nxt)
            c += 1
            nxt = (r, c + 1)
    vv[r] = c


def ctx_add(vv: dict[str, int], cloud: set[Dot], r: str, c: int) -> None:
    """Insert the dot ``(r, c)`` into the compact context ``(vv, cloud)``, keeping it
    compact. Costs O(1) plus the dots it folds -- never a pass over the cloud."""
    have = vv.get(r, 0)
    if c <= have:
        return
    if c == have + 1:
        _fold_run(vv, cloud, r, c)
    else:
        cloud.add((r, c))


def ctx_join_into(
    vv: dict[str, int], cloud: set[Dot], o_vv: dict[str, int], o_cloud: set[Dot]
) -> None:
    """``(vv, cloud) := (vv, cloud) ∪ (o_vv, o_cloud)``, compact, in place.

    Both inputs must be compact. Incremental: only the replicas ``o`` names are
    touched, so the cost is O(|o_vv| + |o_cloud|) plus, per replica whose vector entry
    grows from ``m`` to ``n``, ``min(n - m, |cloud|)`` -- never a sort of the receiving
    cloud (the plain ``vc_join_into`` + ``update`` + ``ctx_compact`` gives the same
    state; a differential test checks it).
    """
    grown: list[tuple[str, int, int]] = []
    for r, n in o_vv.items():
        have = vv.get(r, 0)
        if n > have:
            vv[r] = n
            grown.append((r, have, n))
    if cloud and grown:
        # Cloud dots the grown entries now cover leave the cloud: by probing the newly
        # covered counters when there are few, by one pass over the cloud otherwise.
        wide: dict[str, int] = {}
        for r, have, n in grown:
            if n - have - 1 <= len(cloud):
                for c in range(have + 2, n + 1):
                    cloud.discard((r, c))
            else:
                wide[r] = n
        if wide:
            _drop_covered(cloud, wide)
        for r, _, n in grown:
            _fold_run(vv, cloud, r, n)
    for d in o_cloud:
        r, c = d
        have = vv.get(r, 0)
        if c <= have:
            continue
        if c == have + 1:
            _fold_run(vv, cloud, r, c)
        else:
            cloud.add(d)


def _drop_covered(cloud: set[Dot], wide: dict[str, int]) -> None:
    """Drop from ``cloud`` every dot ``(r, c)`` with ``c <= wide.get(r, 0)`` (one pass;
    the native twin calls it when a dot of the cloud is not clean)."""
    for d in [d for d in cloud if d[1] <= wide.get(d[0], 0)]:
        cloud.discard(d)


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


def _seen(d: int, vv: dict[str, int], cloud: set[Dot]) -> bool:
    """Whether the context ``(vv, cloud)`` holds the packed dot ``d``."""
    r = REPLICAS[d & RID_MASK]
    c = d >> RID_BITS
    if c <= vv.get(r, 0):
        return True
    return (r, c) in cloud


def _unseen(v: Dots, vv: dict[str, int], cloud: set[Dot]) -> Dots | None:
    """The dots of ``v`` the context ``(vv, cloud)`` has not seen, in normal form."""
    if type(v) is int:
        return None if _seen(v, vv, cloud) else v
    kept = [d for d in v if not _seen(d, vv, cloud)]  # type: ignore[union-attr]
    if len(kept) == len(v):  # type: ignore[arg-type]
        return v
    return normal(kept)


def _join_values(
    v: Dots,
    o: Dots,
    a_vv: dict[str, int],
    a_cloud: set[Dot],
    b_vv: dict[str, int],
    b_cloud: set[Dot],
) -> Dots | None:
    """The per-key rule when both stores hold the key: a dot survives when both hold it,
    or when one holds it and the other's context has not seen it."""
    if v == o:
        return v
    mine, theirs = dots_of(v), dots_of(o)
    kept = [d for d in mine if d in theirs or not _seen(d, b_vv, b_cloud)]
    kept += [d for d in theirs if d not in mine and not _seen(d, a_vv, a_cloud)]
    return normal(kept)


def dotstore_join(
    a: dict[K, Dots],
    a_vv: dict[str, int],
    a_cloud: set[Dot],
    b: dict[K, Dots],
    b_vv: dict[str, int],
    b_cloud: set[Dot],
) -> dict[K, Dots]:
    """Join of two dot stores under their causal contexts (add-wins).

    For each key, a dot survives when both sides have it, or when one side has it and
    the other side has never seen it (it is not in the other's context). Keys left with
    no dot are dropped. Returns a new mapping in normal form (values are immutable and
    may be shared with the inputs); the inputs are not modified.
    """
    out: dict[K, Dots] = {}
    for key, value in a.items():
        theirs = b.get(key)
        if theirs is None:
            kept = _unseen(value, b_vv, b_cloud)
        else:
            kept = _join_values(value, theirs, a_vv, a_cloud, b_vv, b_cloud)
        if kept is not None:
            out[key] = kept
    for key, value in b.items():
        if key in a:
            continue
        kept = _unseen(value, a_vv, a_cloud)
        if kept is not None:
            out[key] = kept
    return out


def dotstore_join_into(
    a: dict[K, Dots],
    a_vv: dict[str, int],
    a_cloud: set[Dot],
    b: dict[K, Dots],
    b_vv: dict[str, int],
    b_cloud: set[Dot],
) -> None:
    """``a := dotstore_join(a, a_vv, a_cloud, b, b_vv, b_cloud)``, in place (keys keep
    their order; new keys follow). On an exception ``a`` is unchanged."""
    joined = dotstore_join(a, a_vv, a_cloud, b, b_vv, b_cloud)
    a.clear()
    a.update(joined)


def dotstore_index(entries: dict[K, Dots]) -> dict[str, dict[int, K]]:
    """The dot index of a dot store: replica → counter → the key that dot supports."""
    index: dict[str, dict[int, K]] = {}
    for key, value in entries.items():
        for d in dots_of(value):
            r = REPLICAS[d & RID_MASK]
            by_counter = index.get(r)
            if by_counter is None:
                by_counter = index[r] = {}
            by_counter[d >> RID_BITS] = key
    return index


def dotstore_join_delta(
    a: dict[K, Dots],
    index: dict[str, dict[int, K]],
    a_vv: dict[str, int],
    a_cloud: set[Dot],
    b: dict[K, Dots],
    b_vv: dict[str, int],
    b_cloud: set[Dot],
) -> None:
    """``a := dotstore_join(a, a_vv, a_cloud, b, b_vv, b_cloud)`` in place, walking
    ``b`` rather than ``a``; ``index`` (``dotstore_index(a)``) is kept up to date.

    The dots ``a`` loses are the ones ``b``'s context has seen and ``b``'s store does
    not hold under the same key; the index finds them per replica, enumerating
    whichever is smaller: the counters ``b``'s context holds for that replica, or the
    counters ``a`` holds. The dots ``a`` gains are ``b``'s dots that ``a``'s context
    has not seen. Cost: O(|b| + Σ_r min(|ctx_b ∩ r|, |a ∩ r|)) -- a one-dot delta
    costs O(1) whatever the size of ``a``. On an exception ``a`` and ``index`` are
    unchanged (phase 1 reads only).
    """
    cloud_by_r: dict[str, set[int]] = {}
    for r, c in b_cloud:
        cs = cloud_by_r.get(r)
        if cs is None:
            cs = cloud_by_r[r] = set()
        cs.add(c)
    drops: list[tuple[K, str, int]] = []
    for r in b_vv.keys() | cloud_by_r.keys():
        held = index.get(r)
        if not held:
            continue
        n = b_vv.get(r, 0)
        extra = cloud_by_r.get(r, set())
        if n + len(extra) <= len(held):
            seen = [c for c in range(1, n + 1) if c in held]
            seen.extend(c for c in extra if c > n and c in held)
        else:
            seen = [c for c in held if c <= n or c in extra]
        rid = lookup(r)  # interned: a dot of ``a`` names it
        for c in seen:
            key = held[c]
            theirs = b.get(key)
            if theirs is None or (c << RID_BITS | rid) not in dots_of(theirs):
                drops.append((key, r, c))
    gains: list[tuple[K, int]] = []
    for key, value in b.items():
        for d in dots_of(value):
            if not _seen(d, a_vv, a_cloud):
                gains.append((key, d))
    # Phase 2: apply (cannot fail short of MemoryError), keeping the normal form.
    for key, r, c in drops:
        d = c << RID_BITS | lookup(r)
        a_value = a[key]
        if a_value == d:
            del a[key]
        else:
            a[key] = normal(x for x in dots_of(a_value) if x != d)  # type: ignore[assignment]
        del index[r][c]
    for key, d in gains:
        have = a.get(key)
        if have is None:
            a[key] = d
        else:
            a[key] = normal((*dots_of(have), d))  # type: ignore[assignment]
        r = REPLICAS[d & RID_MASK]
        by_counter = index.get(r)
        if by_counter is None:
            by_counter = index[r] = {}
        by_counter[d >> RID_BITS] = key


def dotstore_copy(entries: dict[K, Dots]) -> dict[K, Dots]:
    """An independent copy of a dot store: a new mapping (the values are immutable)."""
    return dict(entries)


def dotfun_join(
    a: dict[int, V],
    a_vv: dict[str, int],
    a_cloud: set[Dot],
    b: dict[int, V],
    b_vv: dict[str, int],
    b_cloud: set[Dot],
) -> dict[int, V]:
    """Join of two dot functions (packed dot → value) under their causal contexts.

    A dot survives when both sides hold it, or when one side holds it and the other
    has not seen it. A dot is written once, so both sides normally hold the same value
    under it; when they do not (a replica id reused after losing its state), the value
    with the greater canonical bytes (``atom_key``) wins on every replica, so the join
    stays commutative and replicas converge.
    """
    out: dict[int, V] = {}
    for d, v in a.items():
        if d in b:
            w = b[d]
            if w is not v and w != v and atom_key(w) > atom_key(v):  # type: ignore[arg-type]
                v = w
            out[d] = v
        elif not _seen(d, b_vv, b_cloud):
            out[d] = v
    for d, v in b.items():
        if d not in a and not _seen(d, a_vv, a_cloud):
            out[d] = v
    return out


def dotstore_decode(state: Any, vv: dict[str, int], cloud: set[Dot]) -> dict[Any, Dots]:
    """Decode a dot store's wire layout ``[[element, [[replica, counter], ...]], ...]``
    and check it against the causal context ``(vv, cloud)``.

    Raises ``ValueError`` (or ``DecodeError``) for a malformed layout, an empty dot
    list, a dot that appears twice or a dot outside the context.
    """
    if not isinstance(state, list):
        raise ValueError("expected an array of [key, dots]")
    checked: list[tuple[Any, list[Dot]]] = []
    seen: set[Dot] = set()
    for item in state:
        if not (isinstance(item, list) and len(item) == 2 and isinstance(item[1], list)):
            raise ValueError("expected [key, [dot, ...]]")
        key = atom_from_wire(item[0])
        if not item[1]:
            raise ValueError("a present key needs at least one dot")
        dots: list[Dot] = []
        for raw in item[1]:
            if not (isinstance(raw, list) and len(raw) == 2):
                raise ValueError("a dot is [replica, counter]")
            d = (wire_replica(raw[0]), wire_count(raw[1], "dot counter", positive=True))
            if d in seen:
                raise ValueError(f"dot {d} appears twice")
            if not ctx_contains(vv, cloud, d[0], d[1]):
                raise ValueError(f"dot {d} is outside the causal context")
            seen.add(d)
            dots.append(d)
        checked.append((key, dots))
    # Valid: only now are the replica ids interned (a refused input adds none).
    out: dict[Any, Dots] = {}
    for key, dots in checked:
        out[key] = normal(pack(r, c) for r, c in dots)  # type: ignore[assignment]
    return out


def dotstore_parse(
    data: object, max_size: int, tag: bytes
) -> tuple[dict[Any, Dots], dict[str, int], set[Dot]] | None:
    """``(store, vv, cloud)`` of the canonical encoding of an ORSet-layout object, read
    straight from the bytes -- or None: "use the general decoder".

    The pure twin always answers None: here the general decoder (parse, build, re-encode
    and compare) *is* the reference. The native twin reads the common case (elements
    that are ints, strings, byte strings or null) in one pass and answers None for
    everything else; whatever it accepts, it returns what the general decoder would.
    """
    return None
