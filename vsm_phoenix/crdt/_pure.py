"""Pure-Python merge and clock kernels.

These functions are the hot paths of the CRDT catalogue: vector-clock join and
comparison, causal-context membership and compaction, and the join of dotted stores
(the "dot kernel" under ORSet, ORMap and MVRegister). ``_native.pyx`` implements the
identical function set in Cython; :mod:`vsm_phoenix.crdt._backend` picks one.

Representations (shared by both backends):

* a *version vector* is a ``dict[str, int]`` holding only positive counters;
* a *dot cloud* is a ``dict`` of replica id to that replica's cloud counters, a
  strictly ascending ``array('q')`` (a ``list`` once a counter passes 2**63 - 1);
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
from bisect import bisect_left, bisect_right
from collections.abc import Hashable
from typing import Any, TypeAlias, TypeVar

from vsm_phoenix.crdt._domain import atom_from_wire, atom_key, wire_count, wire_replica
from vsm_phoenix.crdt._dots import (
    QMAX,
    REPLICAS,
    RID_BITS,
    RID_MASK,
    Cloud,
    Dots,
    counters,
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


# -- causal contexts ------------------------------------------------------------------
#
# A causal context is ``(vv, cloud)``: ``vv`` a version vector (``dict[str, int]``,
# positive counters) and ``cloud`` the dots outside it, *per replica*: ``cloud[r]`` is
# the strictly ascending sequence of ``r``'s cloud counters -- an ``array('q')``, or a
# ``list`` when its greatest counter does not fit in 64 bits (the normal form: a list
# iff its last counter exceeds 2**63 - 1). No entry is empty. The context is *compact*
# when every ``cloud[r][0] > vv.get(r, 0) + 1`` (a dot covered by or adjacent to the
# vector is folded into it): equal sets of dots then have equal ``(vv, cloud)``.
#
# Membership is a binary search; adding a dot is a binary search and an insertion
# (a ``memmove`` of the counters after it), folding a run into the vector deletes a
# prefix. For arguments that are not in normal form the results are unspecified but
# identical on both backends (the native twin follows the same steps, or hands the call
# here).


def _holds(cs: Any, c: int) -> bool:
    """Whether the ascending sequence ``cs`` holds ``c`` (binary search)."""
    k = bisect_left(cs, c)
    return k < len(cs) and cs[k] == c


def ctx_contains(vv: dict[str, int], cloud: Cloud, r: str, c: int) -> bool:
    """Whether the dot ``(r, c)`` is in the causal context ``(vv, cloud)``."""
    if c <= vv.get(r, 0):
        return True
    cs = cloud.get(r)
    return cs is not None and _holds(cs, c)


def _fold_run(vv: dict[str, int], cloud: Cloud, r: str, c: int) -> None:
    """Set ``vv[r]`` to ``c`` extended by the run ``c+1, c+2, ...`` at the front of
    ``cloud[r]``, which leaves the cloud (a prefix deletion; each folded dot leaves
    once: amortised O(1) per dot)."""
    cs = cloud.get(r)
    if cs is not None:
        n = len(cs)
        k = 0
        while k < n and cs[k] == c + 1 + k:
            k += 1
        if k:
            c = cs[k - 1]
            if k == n:
                del cloud[r]
            else:
                del cs[:k]
    vv[r] = c


def _settle(vv: dict[str, int], cloud: Cloud, r: str) -> None:
    """Make replica ``r``'s part compact: drop the cloud counters the vector covers (a
    prefix), then fold the run that extends it."""
    cs = cloud.get(r)
    if cs is None:
        return
    have = vv.get(r, 0)
    k = bisect_right(cs, have)
    if k == len(cs):
        del cloud[r]
        return
    if k:
        del cs[:k]
    if cs[0] == have + 1:
        _fold_run(vv, cloud, r, have)


def ctx_compact(vv: dict[str, int], cloud: Cloud) -> None:
    """Fold every cloud dot that extends the version vector contiguously into it, and
    drop cloud dots the vector already covers. In place; restores compactness."""
    for r in list(cloud):
        _settle(vv, cloud, r)


def ctx_add(vv: dict[str, int], cloud: Cloud, r: str, c: int) -> None:
    """Insert the dot ``(r, c)`` into the compact context ``(vv, cloud)``, keeping it
    compact: a binary search and an insertion, or a fold when it extends the vector."""
    have = vv.get(r, 0)
    if c <= have:
        return
    if c == have + 1:
        _fold_run(vv, cloud, r, c)
        return
    cs = cloud.get(r)
    if cs is None:
        cloud[r] = counters([c])
        return
    k = bisect_left(cs, c)
    if k < len(cs) and cs[k] == c:
        return
    if c > QMAX and type(cs) is not list:
        cs = cloud[r] = list(cs)
    cs.insert(k, c)


#: A delta's cloud entry is merged by one insertion per counter when
#: ``SPARSE * len(delta entry) <= len(receiving entry)``, else by a sorted union.
SPARSE = 8


def _union_into(cloud: Cloud, r: str, cs: Any, ocs: Any) -> None:
    """``cloud[r] := cs ∪ ocs`` (both strictly ascending)."""
    if SPARSE * len(ocs) <= len(cs):
        listed = type(cs) is list
        for c in ocs:
            k = bisect_left(cs, c)
            if k < len(cs) and cs[k] == c:
                continue
            if c > QMAX and not listed:
                cs = cloud[r] = list(cs)
                listed = True
            cs.insert(k, c)
        return
    cloud[r] = counters(sorted(set(cs).union(ocs)))


def ctx_join_into(vv: dict[str, int], cloud: Cloud, o_vv: dict[str, int], o_cloud: Cloud) -> None:
    """``(vv, cloud) := (vv, cloud) ∪ (o_vv, o_cloud)``, compact, in place.

    Incremental: only the replicas ``o`` names are touched. Per replica, a vector entry
    is a comparison, a cloud entry of ``o`` is merged by binary-search insertions when
    it is small against the receiving one (O(k log n) plus the moves) and by a sorted
    union otherwise; then that replica's part is settled (a covered prefix dropped, a
    run folded). A one-dot delta costs O(log n) whatever the size of the cloud.
    """
    touched: list[str] = []
    for r, n in o_vv.items():
        have = vv.get(r, 0)
        if n > have:
            vv[r] = n
            if r in cloud:
                touched.append(r)
    for r, ocs in o_cloud.items():
        cs = cloud.get(r)
        if cs is None:
            cloud[r] = ocs[:]
        else:
            _union_into(cloud, r, cs, ocs)
        touched.append(r)
    for r in touched:
        _settle(vv, cloud, r)


def ctx_leq(vv: dict[str, int], cloud: Cloud, o_vv: dict[str, int], o_cloud: Cloud) -> bool:
    """Set inclusion of causal contexts (both compact)."""
    for r, n in vv.items():
        have = o_vv.get(r, 0)
        if n <= have:
            continue
        # A compact context with a bigger vector entry may still be covered by o's
        # cloud: it must hold have+1 .. n, a run of n - have consecutive counters.
        ocs = o_cloud.get(r)
        if ocs is None or n - have > len(ocs):
            return False
        k = bisect_left(ocs, have + 1)
        j = k + (n - have) - 1
        if j >= len(ocs) or ocs[k] != have + 1 or ocs[j] != n:
            return False
    for r, cs in cloud.items():
        have = o_vv.get(r, 0)
        k = bisect_right(cs, have)
        rest = len(cs) - k
        if not rest:
            continue
        ocs = o_cloud.get(r)
        if ocs is None or rest > len(ocs):
            return False
        if SPARSE * rest <= len(ocs):
            for i in range(k, len(cs)):
                if not _holds(ocs, cs[i]):
                    return False
        elif set(cs[k:]).difference(ocs):
            return False
    return True


def _seen(d: int, vv: dict[str, int], cloud: Cloud) -> bool:
    """Whether the context ``(vv, cloud)`` holds the packed dot ``d``."""
    r = REPLICAS[d & RID_MASK]
    c = d >> RID_BITS
    if c <= vv.get(r, 0):
        return True
    cs = cloud.get(r)
    return cs is not None and _holds(cs, c)


def _unseen(v: Dots, vv: dict[str, int], cloud: Cloud) -> Dots | None:
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
    a_cloud: Cloud,
    b_vv: dict[str, int],
    b_cloud: Cloud,
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
    a_cloud: Cloud,
    b: dict[K, Dots],
    b_vv: dict[str, int],
    b_cloud: Cloud,
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
    a_cloud: Cloud,
    b: dict[K, Dots],
    b_vv: dict[str, int],
    b_cloud: Cloud,
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
    a_cloud: Cloud,
    b: dict[K, Dots],
    b_vv: dict[str, int],
    b_cloud: Cloud,
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
    drops: list[tuple[K, str, int]] = []
    for r in b_vv.keys() | b_cloud.keys():
        held = index.get(r)
        if not held:
            continue
        n = b_vv.get(r, 0)
        extra = b_cloud.get(r, ())
        if n + len(extra) <= len(held):
            seen = [c for c in range(1, n + 1) if c in held]
            seen.extend(c for c in extra if c > n and c in held)
        else:
            seen = [c for c in held if c <= n or _holds(extra, c)]
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
    a_cloud: Cloud,
    b: dict[int, V],
    b_vv: dict[str, int],
    b_cloud: Cloud,
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


def dotstore_decode(state: Any, vv: dict[str, int], cloud: Cloud) -> dict[Any, Dots]:
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
) -> tuple[dict[Any, Dots], dict[str, int], Cloud] | None:
    """``(store, vv, cloud)`` of the canonical encoding of an ORSet-layout object, read
    straight from the bytes -- or None: "use the general decoder".

    The pure twin always answers None: here the general decoder (parse, build, re-encode
    and compare) *is* the reference. The native twin reads the common case (elements
    that are ints, strings, byte strings or null) in one pass and answers None for
    everything else; whatever it accepts, it returns what the general decoder would.
    """
    return None
