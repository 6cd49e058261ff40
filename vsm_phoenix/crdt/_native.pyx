# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
# cython: infer_types=False, embedsignature=True
"""Cython twin of :mod:`vsm_phoenix.crdt._pure`: the same functions, signatures,
results and exceptions, on the same representations.

How the twin stays identical:

* every function first checks that its containers have the *exact* builtin types the
  representations promise (``dict``, ``array('q')`` cloud entries, ``str`` replicas,
  ``int`` counters that fit in 64 bits); anything else -- subclasses, hostile or
  malformed input -- is handed to the pure function, which therefore defines the
  result and the exception for it;
* a function that changes its arguments in place either mirrors the pure loop step
  for step with Python comparison semantics (``vc_join_into``: an exception leaves
  the same partial state; ``ctx_add`` / ``ctx_join_into``: the same binary searches
  and dict operations, a step it does not take handed to the pure step), or validates
  everything before it changes anything and delegates to the pure function when
  validation fails (``dotstore_join_into``);
* a function that only reads its arguments may abandon its fast path at any point and
  rerun the pure function from scratch.

The fast paths iterate dicts with ``PyDict_Next`` (no item tuples), walk clocks with
the same key order in lockstep, compare counters as C integers, and pause the cyclic GC
while building stores.

Dot stores hold packed dots (:mod:`vsm_phoenix.crdt._dots`: one ``int`` per dot, an
ascending ``tuple`` for a key's concurrent dots). Profile of ``ORSet a | b`` at 10,000
elements (callgrind): when every element held a ``set`` of tuple dots, about 9% of the
instructions ran in this module and the rest was CPython's dict/set/alloc/GC work for
one ``set`` per element; with packed dots a join reads each dot as a C integer (its
two 30-bit digits directly), keeps the last replica's vector entry per context (no
lookup for a run of one replica's dots), allocates only for keys whose dots change,
and ``copy`` is one ``PyDict_Copy``. The join went from ~20M to ~8M instructions;
what remains is mostly the dict lookups of the keys themselves.

``dotstore_parse`` reads an ORSet's canonical bytes straight into a dot store, checking
canonical form as it reads (shortest heads, definite lengths, ascending elements, dots
and context keys, compact context, no trailing bytes) instead of building, re-encoding
and comparing; it declines (None) whatever it does not handle, and the general decoder
runs. Its pure twin always declines: the general decoder is the reference.
"""

from cpython.object cimport PyObject, Py_EQ, Py_GT, PyObject_RichCompareBool
from cpython.set cimport PySet_Add, PySet_Contains
from cpython.list cimport PyList_Append, PyList_GET_SIZE, PyList_GET_ITEM
from cpython.tuple cimport PyTuple_GET_ITEM, PyTuple_GET_SIZE
from cpython.object cimport Py_SIZE
cimport cpython.array as carray
from libc.limits cimport LLONG_MAX
from libc.string cimport memcmp, memmove

from vsm_phoenix.crdt import _pure

cdef extern from "Python.h":
    bint PyDict_Next(object p, Py_ssize_t *ppos, PyObject **pkey, PyObject **pvalue)
    PyObject* PyDict_GetItemWithError(object p, object key) except? NULL
    int PyDict_SetItem(object p, object key, object val) except -1
    int PyDict_DelItem(object p, object key) except -1
    object PyDict_Copy(object p)
    Py_ssize_t PyDict_GET_SIZE(object p)
    int PyGC_Enable()
    int PyGC_Disable()
    long long PyLong_AsLongLongAndOverflow(object o, int *overflow)
    object PyLong_FromLongLong(long long v)
    long long PyLong_AsLongLong(object o) except? -1
    bint PyLong_CheckExact(PyObject *o)
    bint PyUnicode_CheckExact(PyObject *o)
    Py_ssize_t PyUnicode_GET_LENGTH(object o)
    int PyUnicode_Compare(object a, object b) except? -1
    bint PyTuple_CheckExact(PyObject *o)

EQUAL = 0
BEFORE = -1
AFTER = 1
CONCURRENT = 2

cdef enum:
    # Sentinel result of the helpers below: not the representation the fast path
    # handles, so the caller hands the whole call to the pure twin.
    UNCLEAN = 2


cdef extern from *:
    """
    /* An exact int as a C long long: 1 on success, 0 when it does not fit. Reads the
       digits of a compact int directly (one or zero 30-bit digits). */
    static inline int vsm_small_int(PyObject *o, long long *out) {
    #if PY_VERSION_HEX >= 0x030C0000
        if (PyUnstable_Long_IsCompact((PyLongObject *)o)) {
            *out = (long long)PyUnstable_Long_CompactValue((PyLongObject *)o);
            return 1;
        }
    #else
        Py_ssize_t size = Py_SIZE(o);
        if (size == 0) { *out = 0; return 1; }
        if (size == 1) { *out = (long long)((PyLongObject *)o)->ob_digit[0]; return 1; }
        if (size == -1) { *out = -(long long)((PyLongObject *)o)->ob_digit[0]; return 1; }
    #endif
        {
            int overflow = 0;
            long long v = PyLong_AsLongLongAndOverflow(o, &overflow);
            if (overflow) return 0;
            *out = v;
            return 1;
        }
    }
    """
    int vsm_small_int(PyObject *o, long long *out) noexcept


cdef inline int _as_count(PyObject *o, long long *out) noexcept:
    """1 and ``*out`` when ``o`` is an exact int that fits in 64 bits, else 0."""
    if not PyLong_CheckExact(o):
        return 0
    return vsm_small_int(o, out)


cdef inline int _probe(dict d, PyObject *k, Py_ssize_t *cursor, PyObject **val) except -1:
    """Find key ``k`` in ``d``: 1 and ``*val`` (borrowed) when present, else 0.

    Tries the entry under ``cursor`` first (advancing it): clocks with the same
    replica ids in the same insertion order -- copies, joins of copies, clocks decoded
    from canonical bytes (sorted keys) -- are then walked in lockstep with no hashing
    (an identical object, or an exact ``str`` of equal text). Any mismatch falls back
    to a lookup."""
    cdef PyObject *k2
    cdef PyObject *v2
    if PyDict_Next(d, cursor, &k2, &v2) and (
        k2 == k
        or (
            PyUnicode_CheckExact(k2)
            and PyUnicode_CheckExact(k)
            and PyUnicode_GET_LENGTH(<object>k2) == PyUnicode_GET_LENGTH(<object>k)
            and PyUnicode_Compare(<object>k2, <object>k) == 0
        )
    ):
        val[0] = v2
        return 1
    val[0] = PyDict_GetItemWithError(d, <object>k)
    return 1 if val[0] != NULL else 0


cdef inline int _vv_get(dict vv, object r, long long *out) except -1:
    """``vv.get(r, 0)`` as a C integer: 1 when clean, UNCLEAN otherwise."""
    cdef PyObject *v = PyDict_GetItemWithError(vv, r)
    if v == NULL:
        out[0] = 0
        return 1
    if _as_count(v, out):
        return 1
    return UNCLEAN


# -- version vectors ---------------------------------------------------------------


def vc_join_into(a, b):
    """``a := a ⊔ b`` (pointwise maximum), in place."""
    if type(a) is not dict or type(b) is not dict:
        return _pure.vc_join_into(a, b)
    cdef Py_ssize_t pos = 0, cursor = 0
    cdef PyObject *k
    cdef PyObject *v
    cdef PyObject *cur
    cdef long long n, m
    # Mirrors the pure loop exactly (same comparisons in the same order), so even an
    # exception from an exotic counter leaves ``a`` in the same partial state.
    while PyDict_Next(b, &pos, &k, &v):
        if not _probe(a, k, &cursor, &cur):
            cur = NULL
        if _as_count(v, &n) and (cur == NULL or _as_count(cur, &m)):
            if cur == NULL:
                m = 0
            if n > m:
                PyDict_SetItem(a, <object>k, <object>v)
        elif PyObject_RichCompareBool(<object>v, <object>cur if cur != NULL else 0, Py_GT):
            PyDict_SetItem(a, <object>k, <object>v)
    return None


def vc_leq(a, b):
    """``a ⊑ b``: every counter of ``a`` is at most the one in ``b``."""
    if type(a) is not dict or type(b) is not dict:
        return _pure.vc_leq(a, b)
    if PyDict_GET_SIZE(a) > PyDict_GET_SIZE(b):
        return False
    cdef Py_ssize_t pos = 0, cursor = 0
    cdef PyObject *k
    cdef PyObject *v
    cdef PyObject *w
    cdef long long n, m
    while PyDict_Next(a, &pos, &k, &v):
        if not _probe(b, k, &cursor, &w):
            m = 0
        elif not _as_count(w, &m):
            return _pure.vc_leq(a, b)
        if not _as_count(v, &n):
            return _pure.vc_leq(a, b)
        if n > m:
            return False
    return True


def vc_compare(a, b):
    """Causal order of two version vectors: EQUAL, BEFORE, AFTER or CONCURRENT."""
    if type(a) is not dict or type(b) is not dict:
        return _pure.vc_compare(a, b)
    cdef bint a_bigger = False, b_bigger = False
    cdef Py_ssize_t pos = 0, cursor = 0, found = 0
    cdef PyObject *k
    cdef PyObject *v
    cdef PyObject *w
    cdef long long n, m
    while PyDict_Next(a, &pos, &k, &v):
        if not _probe(b, k, &cursor, &w):
            m = 0
        elif not _as_count(w, &m):
            return _pure.vc_compare(a, b)
        else:
            found += 1
        if not _as_count(v, &n):
            return _pure.vc_compare(a, b)
        if n > m:
            a_bigger = True
        elif n < m:
            b_bigger = True
        if a_bigger and b_bigger:
            return CONCURRENT
    if found < PyDict_GET_SIZE(b):
        # Some replica of b is absent from a (when every key of b was met above, there
        # is none and this scan is skipped).
        pos = 0
        while PyDict_Next(b, &pos, &k, &v):
            if PyDict_GetItemWithError(a, <object>k) != NULL:
                continue
            if not _as_count(v, &m):
                return _pure.vc_compare(a, b)
            if m > 0:
                b_bigger = True
                break
    if a_bigger:
        return CONCURRENT if b_bigger else AFTER
    return BEFORE if b_bigger else EQUAL


# -- array-backed vector clocks ------------------------------------------------------
#
# ``(ids, ns)`` pairs of ``array('q')`` (see ``_pure``): the fast paths below read the
# arrays' buffers directly and follow the pure twin's steps one for one (same path
# choice, same binary search, same merge walk), so even ids that are not ascending give
# the same result on both backends. A ``list`` of wide counters, another typecode or
# any other container goes to the pure twin.


cdef inline bint _is_q(object x):
    return type(x) is carray.array and (<carray.array>x).ob_descr.typecode == c'q'


cdef inline bint _clean_clocks(ai, an, bi, bn):
    return _is_q(ai) and _is_q(an) and _is_q(bi) and _is_q(bn)


cdef inline int _check_lengths(
    carray.array ai, carray.array an, carray.array bi, carray.array bn
) except -1:
    if Py_SIZE(ai) != Py_SIZE(an) or Py_SIZE(bi) != Py_SIZE(bn):
        raise ValueError("a clock needs one counter per replica id")
    return 0


cdef inline bint _same_ids(carray.array ai, carray.array bi) noexcept:
    cdef Py_ssize_t n = Py_SIZE(ai)
    if n != Py_SIZE(bi):
        return False
    return n == 0 or memcmp(ai.data.as_longlongs, bi.data.as_longlongs, n * 8) == 0


cdef inline Py_ssize_t _bisect_left(const long long *a, Py_ssize_t n, long long x) noexcept:
    """``bisect.bisect_left`` on ``a[:n]``, step for step."""
    cdef Py_ssize_t lo = 0, hi = n, mid
    while lo < hi:
        mid = (lo + hi) // 2
        if a[mid] < x:
            lo = mid + 1
        else:
            hi = mid
    return lo


cdef inline bint _any_greater(const long long *x, const long long *y, Py_ssize_t n) noexcept:
    """Whether ``x[k] > y[k]`` for some ``k < n`` (branch-free: vectorised)."""
    cdef Py_ssize_t k
    cdef int found = 0
    for k in range(n):
        found |= x[k] > y[k]
    return found != 0


cdef object _vc_merged(carray.array ai, carray.array an, carray.array bi, carray.array bn):
    cdef Py_ssize_t la = Py_SIZE(ai), lb = Py_SIZE(bi), i = 0, j = 0, k = 0
    cdef carray.array ids = carray.clone(ai, la + lb, False)
    cdef carray.array ns = carray.clone(an, la + lb, False)
    cdef long long *pa = ai.data.as_longlongs
    cdef long long *qa = an.data.as_longlongs
    cdef long long *pb = bi.data.as_longlongs
    cdef long long *qb = bn.data.as_longlongs
    cdef long long *oi = ids.data.as_longlongs
    cdef long long *on = ns.data.as_longlongs
    cdef long long x, y
    while i < la and j < lb:
        x = pa[i]
        y = pb[j]
        if x == y:
            oi[k] = x
            on[k] = qa[i] if qa[i] >= qb[j] else qb[j]
            i += 1
            j += 1
        elif x < y:
            oi[k] = x
            on[k] = qa[i]
            i += 1
        else:
            oi[k] = y
            on[k] = qb[j]
            j += 1
        k += 1
    while i < la:
        oi[k] = pa[i]
        on[k] = qa[i]
        i += 1
        k += 1
    while j < lb:
        oi[k] = pb[j]
        on[k] = qb[j]
        j += 1
        k += 1
    carray.resize(ids, k)
    carray.resize(ns, k)
    return (ids, ns)


def vc_join_arrays(ai, an, bi, bn):
    """``a ⊔ b`` (pointwise maximum) of two array clocks; returns ``(ids, ns)``,
    updating ``an`` in place when ``ai`` holds every id of ``bi`` (see the pure twin)."""
    if not _clean_clocks(ai, an, bi, bn):
        return _pure.vc_join_arrays(ai, an, bi, bn)
    _check_lengths(ai, an, bi, bn)
    cdef Py_ssize_t la = Py_SIZE(ai), lb = Py_SIZE(bi), k, p
    cdef long long *pa = (<carray.array>ai).data.as_longlongs
    cdef long long *qa = (<carray.array>an).data.as_longlongs
    cdef long long *pb = (<carray.array>bi).data.as_longlongs
    cdef long long *qb = (<carray.array>bn).data.as_longlongs
    if _same_ids(ai, bi):
        for k in range(la):  # branch-free: the compiler vectorises it
            qa[k] = qb[k] if qb[k] > qa[k] else qa[k]
        return (ai, an)
    if lb * 4 <= la:
        for k in range(lb):
            p = _bisect_left(pa, la, pb[k])
            if p == la or pa[p] != pb[k]:
                break
        else:
            for k in range(lb):
                p = _bisect_left(pa, la, pb[k])
                if qb[k] > qa[p]:
                    qa[p] = qb[k]
            return (ai, an)
    return _vc_merged(ai, an, bi, bn)


def vc_leq_arrays(ai, an, bi, bn):
    """``a ⊑ b`` for two array clocks (a replica absent from a clock counts 0)."""
    if not _clean_clocks(ai, an, bi, bn):
        return _pure.vc_leq_arrays(ai, an, bi, bn)
    _check_lengths(ai, an, bi, bn)
    cdef Py_ssize_t la = Py_SIZE(ai), lb = Py_SIZE(bi), i = 0, j = 0
    cdef long long *pa = (<carray.array>ai).data.as_longlongs
    cdef long long *qa = (<carray.array>an).data.as_longlongs
    cdef long long *pb = (<carray.array>bi).data.as_longlongs
    cdef long long *qb = (<carray.array>bn).data.as_longlongs
    cdef long long x, n
    if _same_ids(ai, bi):
        return not _any_greater(qa, qb, la)
    while i < la:
        x = pa[i]
        while j < lb and pb[j] < x:
            j += 1
        n = qb[j] if j < lb and pb[j] == x else 0
        if qa[i] > n:
            return False
        i += 1
    return True


def vc_compare_arrays(ai, an, bi, bn):
    """Causal order of two array clocks: EQUAL, BEFORE, AFTER or CONCURRENT."""
    if not _clean_clocks(ai, an, bi, bn):
        return _pure.vc_compare_arrays(ai, an, bi, bn)
    _check_lengths(ai, an, bi, bn)
    cdef Py_ssize_t la = Py_SIZE(ai), lb = Py_SIZE(bi), i = 0, j = 0
    cdef long long *pa = (<carray.array>ai).data.as_longlongs
    cdef long long *qa = (<carray.array>an).data.as_longlongs
    cdef long long *pb = (<carray.array>bi).data.as_longlongs
    cdef long long *qb = (<carray.array>bn).data.as_longlongs
    cdef long long m, n
    cdef int gt, lt
    cdef bint a_bigger = False, b_bigger = False
    if _same_ids(ai, bi):
        # Branch-free blocks (vectorised), stopping early once both sides are bigger
        # somewhere: the same verdict as the pure twin's loop.
        while i < la and not (a_bigger and b_bigger):
            j = i + 512 if la - i > 512 else la
            gt = lt = 0
            while i < j:
                gt |= qa[i] > qb[i]
                lt |= qa[i] < qb[i]
                i += 1
            a_bigger = a_bigger or gt != 0
            b_bigger = b_bigger or lt != 0
        if a_bigger and b_bigger:
            return CONCURRENT
    else:
        while i < la or j < lb:
            if j == lb or (i < la and pa[i] < pb[j]):
                m = qa[i]
                n = 0
                i += 1
            elif i == la or pb[j] < pa[i]:
                m = 0
                n = qb[j]
                j += 1
            else:
                m = qa[i]
                n = qb[j]
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


# -- causal contexts -----------------------------------------------------------------
#
# A context is ``(vv, cloud)``: a dict of replica to counter and a dict of replica to
# its cloud counters, a strictly ascending ``array('q')`` (see the pure twin). The fast
# paths take exact dicts, exact ``str`` replicas, exact ints within 64 bits and exact
# ``array('q')`` cloud entries; they run the pure twin's steps -- the same dict
# operations in the same order, the same binary searches -- as C loops over the
# arrays' memory. A step the fast path does not take (a ``list`` entry, a counter at
# the edge of 64 bits, unsorted input on a merge) is handed to the pure twin's helper
# for that step, or, before anything changed, the whole call to the pure twin.

cdef carray.array _Q_TEMPLATE = carray.array("q")


cdef inline Py_ssize_t _bisect_right(const long long *a, Py_ssize_t n, long long x) noexcept:
    """``bisect.bisect_right`` on ``a[:n]``, step for step."""
    cdef Py_ssize_t lo = 0, hi = n, mid
    while lo < hi:
        mid = (lo + hi) // 2
        if x < a[mid]:
            hi = mid
        else:
            lo = mid + 1
    return lo


cdef object _NOT_Q = object()  # ``_entry``'s answer for an entry that is not clean


cdef inline object _entry(dict cloud, object r):
    """``cloud.get(r)``: None when absent, the entry when an exact ``array('q')``,
    ``_NOT_Q`` otherwise."""
    cdef PyObject *cs = PyDict_GetItemWithError(cloud, r)
    if cs == NULL:
        return None
    if not _is_q(<object>cs):
        return _NOT_Q
    return <object>cs


cdef inline bint _ascending(carray.array cs) noexcept:
    """Whether ``cs`` is strictly ascending."""
    cdef Py_ssize_t i, n = Py_SIZE(cs)
    cdef long long *d = cs.data.as_longlongs
    for i in range(1, n):
        if d[i - 1] >= d[i]:
            return False
    return True


cdef inline int _insert_at(carray.array cs, Py_ssize_t k, long long c) except -1:
    """``cs.insert(k, c)``: grow by one (amortised) and move the tail up."""
    cdef Py_ssize_t n = Py_SIZE(cs)
    carray.resize_smart(cs, n + 1)
    if n > k:
        memmove(cs.data.as_longlongs + k + 1, cs.data.as_longlongs + k, (n - k) * 8)
    cs.data.as_longlongs[k] = c
    return 0


cdef inline int _del_prefix(carray.array cs, Py_ssize_t k) except -1:
    """``del cs[:k]`` for ``0 < k < len(cs)``."""
    cdef Py_ssize_t n = Py_SIZE(cs)
    memmove(cs.data.as_longlongs, cs.data.as_longlongs + k, (n - k) * 8)
    carray.resize_smart(cs, n - k)
    return 0


def ctx_contains(vv, cloud, r, c):
    """Whether the dot ``(r, c)`` is in the causal context ``(vv, cloud)``."""
    cdef long long cc, have
    cdef carray.array cs
    cdef object e
    cdef Py_ssize_t k, n
    if type(vv) is not dict or type(cloud) is not dict or not _as_count(<PyObject *>c, &cc):
        return _pure.ctx_contains(vv, cloud, r, c)
    if _vv_get(<dict>vv, r, &have) != 1:
        return _pure.ctx_contains(vv, cloud, r, c)
    if cc <= have:
        return True
    e = _entry(<dict>cloud, r)
    if e is None:
        return False
    if e is _NOT_Q:
        return _pure.ctx_contains(vv, cloud, r, c)
    cs = <carray.array>e
    n = Py_SIZE(cs)
    k = _bisect_left(cs.data.as_longlongs, n, cc)
    return k < n and cs.data.as_longlongs[k] == cc


cdef int _fold_run_c(dict vv, dict cloud, object r, long long c) except -1:
    """``_pure._fold_run``: ``vv[r]`` := ``c`` extended by the run at the front of
    ``cloud[r]`` (which leaves the cloud). A ``list`` entry, or a run that could pass
    2**63 - 1, is the pure step's."""
    cdef carray.array cs
    cdef object e = _entry(cloud, r)
    cdef Py_ssize_t n, k = 0
    cdef long long *d
    if e is _NOT_Q:
        _pure._fold_run(vv, cloud, r, c)
        return 0
    if e is not None:
        cs = <carray.array>e
        n = Py_SIZE(cs)
        if c > LLONG_MAX - 1 - n:
            _pure._fold_run(vv, cloud, r, c)
            return 0
        d = cs.data.as_longlongs
        while k < n and d[k] == c + 1 + k:
            k += 1
        if k:
            c = d[k - 1]
            if k == n:
                PyDict_DelItem(cloud, r)
            else:
                _del_prefix(cs, k)
    PyDict_SetItem(vv, r, PyLong_FromLongLong(c))
    return 0


cdef int _settle_c(dict vv, dict cloud, object r) except -1:
    """``_pure._settle``: drop the covered prefix of ``cloud[r]``, fold the run."""
    cdef carray.array cs
    cdef object e = _entry(cloud, r)
    cdef long long have
    cdef Py_ssize_t k, n
    if e is None:
        return 0
    if e is _NOT_Q or _vv_get(vv, r, &have) != 1:
        _pure._settle(vv, cloud, r)
        return 0
    cs = <carray.array>e
    n = Py_SIZE(cs)
    k = _bisect_right(cs.data.as_longlongs, n, have)
    if k == n:
        PyDict_DelItem(cloud, r)
        return 0
    if k:
        _del_prefix(cs, k)
    if have < LLONG_MAX and cs.data.as_longlongs[0] == have + 1:
        _fold_run_c(vv, cloud, r, have)
    return 0


# Shared with the twin: run on construction and decoding, never on a hot path.
ctx_compact = _pure.ctx_compact


def ctx_add(vv, cloud, r, c):
    """Insert the dot ``(r, c)`` into the compact context ``(vv, cloud)``, keeping it
    compact: a binary search and an insertion, or a fold when it extends the vector."""
    cdef long long cc, have
    cdef carray.array cs
    cdef object e
    cdef Py_ssize_t k, n
    if (
        type(vv) is not dict
        or type(cloud) is not dict
        or not PyUnicode_CheckExact(<PyObject *>r)
        or not _as_count(<PyObject *>c, &cc)
        or _vv_get(<dict>vv, r, &have) != 1
    ):
        return _pure.ctx_add(vv, cloud, r, c)
    e = _entry(<dict>cloud, r)
    if e is _NOT_Q:
        return _pure.ctx_add(vv, cloud, r, c)
    if cc <= have:
        return None
    if have < LLONG_MAX and cc == have + 1:
        _fold_run_c(<dict>vv, <dict>cloud, r, cc)
        return None
    if e is None:
        cs = carray.clone(_Q_TEMPLATE, 1, False)
        cs.data.as_longlongs[0] = cc
        PyDict_SetItem(cloud, r, cs)
        return None
    cs = <carray.array>e
    n = Py_SIZE(cs)
    k = _bisect_left(cs.data.as_longlongs, n, cc)
    if k < n and cs.data.as_longlongs[k] == cc:
        return None
    _insert_at(cs, k, cc)
    return None


cdef int _union_into_c(dict cloud, object r, carray.array cs, carray.array ocs) except -1:
    """``_pure._union_into`` for two ``array('q')`` entries: insertions when ``ocs``
    is sparse against ``cs`` (the same binary searches), else a C merge of the two
    (when both are strictly ascending: the pure step's sorted union of them)."""
    cdef Py_ssize_t n = Py_SIZE(cs), m = Py_SIZE(ocs), i = 0, j = 0, k = 0, p
    cdef long long *a
    cdef long long *b
    cdef long long *o
    cdef long long x
    cdef carray.array out
    if _pure.SPARSE * m <= n:
        for j in range(m):
            x = ocs.data.as_longlongs[j]
            n = Py_SIZE(cs)
            p = _bisect_left(cs.data.as_longlongs, n, x)
            if p < n and cs.data.as_longlongs[p] == x:
                continue
            _insert_at(cs, p, x)
        return 0
    if not _ascending(cs) or not _ascending(ocs):
        _pure._union_into(cloud, r, cs, ocs)
        return 0
    out = carray.clone(_Q_TEMPLATE, n + m, False)
    a, b, o = cs.data.as_longlongs, ocs.data.as_longlongs, out.data.as_longlongs
    while i < n and j < m:
        if a[i] < b[j]:
            o[k] = a[i]
            i += 1
        elif b[j] < a[i]:
            o[k] = b[j]
            j += 1
        else:
            o[k] = a[i]
            i += 1
            j += 1
        k += 1
    while i < n:
        o[k] = a[i]
        i += 1
        k += 1
    while j < m:
        o[k] = b[j]
        j += 1
        k += 1
    carray.resize(out, k)
    PyDict_SetItem(cloud, r, out)
    return 0


cdef bint _ctx_join_clean(dict vv, dict cloud, dict o_vv, dict o_cloud) except -1:
    """Read-only first phase of ``ctx_join_into``: whether every value the join meets
    is clean -- exact ``str`` replicas, 64-bit counters, ``array('q')`` entries on
    both sides for the replicas ``o`` names. Otherwise the pure twin runs the call."""
    cdef Py_ssize_t pos = 0
    cdef PyObject *k
    cdef PyObject *v
    cdef long long n, have
    if o_vv is vv or o_cloud is cloud:
        return False  # aliased: the pure twin's loops define what happens
    while PyDict_Next(o_vv, &pos, &k, &v):
        if not PyUnicode_CheckExact(k) or not _as_count(v, &n):
            return False
        if _vv_get(vv, <object>k, &have) != 1 or _entry(cloud, <object>k) is _NOT_Q:
            return False
    pos = 0
    while PyDict_Next(o_cloud, &pos, &k, &v):
        if not PyUnicode_CheckExact(k) or not _is_q(<object>v):
            return False
        if _vv_get(vv, <object>k, &have) != 1 or _entry(cloud, <object>k) is _NOT_Q:
            return False
    return True


def ctx_join_into(vv, cloud, o_vv, o_cloud):
    """``(vv, cloud) := (vv, cloud) ∪ (o_vv, o_cloud)``, compact, in place: the pure
    twin's incremental steps -- the same dict operations in the same order, the same
    binary searches -- as C loops, once every value they meet has proved clean."""
    if (
        type(vv) is not dict
        or type(cloud) is not dict
        or type(o_vv) is not dict
        or type(o_cloud) is not dict
        or not _ctx_join_clean(vv, cloud, o_vv, o_cloud)
    ):
        return _pure.ctx_join_into(vv, cloud, o_vv, o_cloud)
    cdef dict a_vv = <dict>vv
    cdef dict a_cloud = <dict>cloud
    cdef list touched = []
    cdef Py_ssize_t pos = 0, i
    cdef PyObject *k
    cdef PyObject *v
    cdef long long n, have
    cdef object e
    while PyDict_Next(o_vv, &pos, &k, &v):
        _as_count(v, &n)
        _vv_get(a_vv, <object>k, &have)
        if n > have:
            PyDict_SetItem(a_vv, <object>k, <object>v)
            if PyDict_GetItemWithError(a_cloud, <object>k) != NULL:
                PyList_Append(touched, <object>k)
    pos = 0
    while PyDict_Next(o_cloud, &pos, &k, &v):
        e = _entry(a_cloud, <object>k)
        if e is None:
            PyDict_SetItem(a_cloud, <object>k, carray.copy(<carray.array>v))
        else:
            _union_into_c(a_cloud, <object>k, <carray.array>e, <carray.array>v)
        PyList_Append(touched, <object>k)
    for i in range(PyList_GET_SIZE(touched)):
        _settle_c(a_vv, a_cloud, <object>PyList_GET_ITEM(touched, i))
    return None


cdef inline int _holds_c(carray.array cs, long long c) noexcept:
    cdef Py_ssize_t n = Py_SIZE(cs)
    cdef Py_ssize_t k = _bisect_left(cs.data.as_longlongs, n, c)
    return k < n and cs.data.as_longlongs[k] == c


cdef int _ctx_leq_c(dict vv, dict cloud, dict o_vv, dict o_cloud) except -1:
    """``_pure.ctx_leq`` on clean input: 1 or 0; UNCLEAN at the first value that is
    not (nothing is changed: the caller reruns the pure twin)."""
    cdef Py_ssize_t pos = 0, k, j, rest, m, i
    cdef PyObject *r
    cdef PyObject *v
    cdef long long n, have
    cdef carray.array cs, ocs
    cdef object e
    cdef long long *a
    cdef long long *b
    while PyDict_Next(vv, &pos, &r, &v):
        if not _as_count(v, &n) or _vv_get(o_vv, <object>r, &have) != 1:
            return UNCLEAN
        if n <= have:
            continue
        e = _entry(o_cloud, <object>r)
        if e is _NOT_Q or have < 0:
            return UNCLEAN
        if e is None or n - have > Py_SIZE(<carray.array>e):
            return 0
        ocs = <carray.array>e
        m = Py_SIZE(ocs)
        k = _bisect_left(ocs.data.as_longlongs, m, have + 1)
        j = k + <Py_ssize_t>(n - have) - 1
        if j >= m or ocs.data.as_longlongs[k] != have + 1 or ocs.data.as_longlongs[j] != n:
            return 0
    pos = 0
    while PyDict_Next(cloud, &pos, &r, &v):
        if not _is_q(<object>v) or _vv_get(o_vv, <object>r, &have) != 1:
            return UNCLEAN
        cs = <carray.array>v
        k = _bisect_right(cs.data.as_longlongs, Py_SIZE(cs), have)
        rest = Py_SIZE(cs) - k
        if not rest:
            continue
        e = _entry(o_cloud, <object>r)
        if e is _NOT_Q:
            return UNCLEAN
        if e is None or rest > Py_SIZE(<carray.array>e):
            return 0
        ocs = <carray.array>e
        m = Py_SIZE(ocs)
        if _pure.SPARSE * rest <= m:
            for i in range(k, Py_SIZE(cs)):
                if not _holds_c(ocs, cs.data.as_longlongs[i]):
                    return 0
            continue
        if not _ascending(cs) or not _ascending(ocs):
            return UNCLEAN
        # Subset by one merge walk over both ascending arrays.
        a, b = cs.data.as_longlongs, ocs.data.as_longlongs
        j = 0
        for i in range(k, Py_SIZE(cs)):
            while j < m and b[j] < a[i]:
                j += 1
            if j == m or b[j] != a[i]:
                return 0
    return 1


def ctx_leq(vv, cloud, o_vv, o_cloud):
    """Set inclusion of causal contexts (both compact)."""
    cdef int out
    if (
        type(vv) is not dict
        or type(cloud) is not dict
        or type(o_vv) is not dict
        or type(o_cloud) is not dict
    ):
        return _pure.ctx_leq(vv, cloud, o_vv, o_cloud)
    out = _ctx_leq_c(vv, cloud, o_vv, o_cloud)
    if out == UNCLEAN:
        return _pure.ctx_leq(vv, cloud, o_vv, o_cloud)
    return out == 1


# -- dot stores ----------------------------------------------------------------------
#
# A dot store is a dict whose values are packed dots (:mod:`vsm_phoenix.crdt._dots`):
# an exact ``int`` for a key's lone dot, an ascending ``tuple`` of two or more
# otherwise. The fast paths read a packed dot as one C integer (counter in the high
# bits, the replica's index in ``_dots.REPLICAS`` in the low 32) and remember the last
# replica's vector entry per context, so a run of dots from one replica costs no dict
# lookup at all. Anything else -- counters past 2**31, unknown replica indexes, other
# value types, unsorted tuples -- goes to the pure twin.

from vsm_phoenix.crdt import _dots, _intern

cdef list _REPLICAS = _dots.REPLICAS  # the very list the pure twin reads (append-only)
cdef object _lookup = _intern.lookup    # an id, or -1; never adds one

cdef extern from *:
    """
    #define VSM_RID_MASK 0xFFFFFFFFLL          /* the replica index bits of a packed dot */
    #define VSM_COUNTER_LIMIT 0x80000000ULL    /* counters below it pack below 2**63 */
    #define VSM_U32_LIMIT 0x100000000ULL
    """
    const long long VSM_RID_MASK
    const unsigned long long VSM_COUNTER_LIMIT
    const unsigned long long VSM_U32_LIMIT

cdef extern from *:
    """
    /* A non-negative exact int below 2**60 as a C long long, reading its one or two
       30-bit digits directly (a packed dot with a counter below 2**28); 0 otherwise,
       and the caller takes the general route. */
    static inline int vsm_packed(PyObject *o, long long *out) {
    #if PY_VERSION_HEX < 0x030C0000
        Py_ssize_t size = Py_SIZE(o);
        if (size == 2) {
            digit *d = ((PyLongObject *)o)->ob_digit;
            *out = (long long)d[0] | ((long long)d[1] << PyLong_SHIFT);
            return 1;
        }
        if (size == 1) { *out = (long long)((PyLongObject *)o)->ob_digit[0]; return 1; }
        if (size == 0) { *out = 0; return 1; }
        return 0;
    #else
        return 0;
    #endif
    }
    """
    int vsm_packed(PyObject *o, long long *out) noexcept


cdef inline bint _args_clean(a, a_vv, a_cloud, b, b_vv, b_cloud):
    return (
        type(a) is dict
        and type(b) is dict
        and type(a_vv) is dict
        and type(b_vv) is dict
        and type(a_cloud) is dict
        and type(b_cloud) is dict
    )


cdef object _FALLBACK = object()   # an impl's answer: "hand the call to the pure twin"


cdef struct _Ctx:
    # A causal context being read, with a one-entry cache of the last replica looked
    # up: its vector entry and its cloud counters (NULL / 0 when it has none).
    PyObject *vv
    PyObject *cloud
    Py_ssize_t rid
    long long have
    long long *cs
    Py_ssize_t ncs


cdef inline void _ctx_init(_Ctx *x, dict vv, dict cloud) noexcept:
    x.vv = <PyObject *>vv
    x.cloud = <PyObject *>cloud
    x.rid = -1
    x.have = 0
    x.cs = NULL
    x.ncs = 0


cdef inline bint _unpack(PyObject *d, Py_ssize_t *rid, long long *c) noexcept:
    """A clean packed dot: an exact int in [0, 2**63) naming a known replica."""
    cdef long long p
    if not PyLong_CheckExact(d):
        return False
    if not vsm_packed(d, &p) and (not vsm_small_int(d, &p) or p < 0):
        return False
    rid[0] = <Py_ssize_t>(p & VSM_RID_MASK)
    c[0] = p >> 32
    return rid[0] < PyList_GET_SIZE(_REPLICAS)


cdef inline int _seen_p(PyObject *d, _Ctx *x) except -1:
    """Whether the context holds the packed dot ``d``: 1 or 0, UNCLEAN when ``d``, the
    vector entry or the cloud entry it meets is not the clean representation."""
    cdef Py_ssize_t rid, k
    cdef long long c, have
    cdef object e, r
    if not _unpack(d, &rid, &c):
        return UNCLEAN
    if rid != x.rid:
        r = <object>PyList_GET_ITEM(_REPLICAS, rid)
        if _vv_get(<dict>x.vv, r, &have) != 1:
            return UNCLEAN
        e = _entry(<dict>x.cloud, r)
        if e is _NOT_Q:
            return UNCLEAN
        x.rid = rid
        x.have = have
        if e is not None:
            x.cs = (<carray.array>e).data.as_longlongs
            x.ncs = Py_SIZE(e)
        else:
            x.cs = NULL
            x.ncs = 0
    if c <= x.have:
        return 1
    if x.ncs == 0:
        return 0
    k = _bisect_left(x.cs, x.ncs, c)
    return 1 if k < x.ncs and x.cs[k] == c else 0


cdef inline bint _is_many(object v) noexcept:
    """A clean value of two or more dots: an exact tuple, at least 2 long (its items
    are checked as they are read)."""
    return PyTuple_CheckExact(<PyObject *>v) and PyTuple_GET_SIZE(v) >= 2


cdef inline bint _item(object v, Py_ssize_t i, long long *p) noexcept:
    """Item ``i`` of a tuple value as a C integer, when it is a clean packed dot."""
    cdef PyObject *d = PyTuple_GET_ITEM(v, i)
    if not PyLong_CheckExact(d):
        return False
    return vsm_packed(d, p) or (vsm_small_int(d, p) and p[0] >= 0)


cdef object _normal(list kept):
    """Packed dots, already ascending and distinct, in normal form (None when empty)."""
    cdef Py_ssize_t n = PyList_GET_SIZE(kept)
    if n == 0:
        return None
    if n == 1:
        return <object>PyList_GET_ITEM(kept, 0)
    return tuple(kept)


cdef object _unseen_v(object v, _Ctx *x):
    """The dots of ``v`` the context has not seen, in normal form (None when none; ``v``
    itself when all), or _FALLBACK when ``v`` is not clean."""
    cdef int s
    cdef Py_ssize_t i, n
    cdef long long p, prev = -1
    cdef list kept
    if PyLong_CheckExact(<PyObject *>v):
        s = _seen_p(<PyObject *>v, x)
        if s == UNCLEAN:
            return _FALLBACK
        return None if s else v
    if not _is_many(v):
        return _FALLBACK
    n = PyTuple_GET_SIZE(v)
    kept = None
    for i in range(n):
        if not _item(v, i, &p) or p <= prev:
            return _FALLBACK
        prev = p
        s = _seen_p(PyTuple_GET_ITEM(v, i), x)
        if s == UNCLEAN:
            return _FALLBACK
        if s == 1 and kept is None:
            kept = list((<tuple>v)[:i])
        elif s == 0 and kept is not None:
            PyList_Append(kept, <object>PyTuple_GET_ITEM(v, i))
    if kept is None:
        return v
    return _normal(kept)


cdef object _join_v(object v, object o, _Ctx *a, _Ctx *b):
    """The per-key rule for a key both stores hold (a dot survives when both hold it,
    or when one holds it and the other's context has not seen it), in normal form;
    ``v`` itself when equal to ``o``; _FALLBACK when not clean."""
    cdef long long x, y, px = -1, py = -1
    cdef Py_ssize_t i = 0, j = 0, n, m
    cdef int s, t
    cdef bint one_v = PyLong_CheckExact(<PyObject *>v)
    cdef bint one_o = PyLong_CheckExact(<PyObject *>o)
    cdef bint changed = False
    cdef list kept
    if one_v and one_o:
        if not (vsm_packed(<PyObject *>v, &x) or vsm_small_int(<PyObject *>v, &x)):
            return _FALLBACK
        if not (vsm_packed(<PyObject *>o, &y) or vsm_small_int(<PyObject *>o, &y)):
            return _FALLBACK
        if x == y:
            return v
        s = _seen_p(<PyObject *>v, b)
        t = _seen_p(<PyObject *>o, a)
        if s == UNCLEAN or t == UNCLEAN:
            return _FALLBACK
        if s == 0 and t == 0:
            return (v, o) if x < y else (o, v)
        if s == 0:
            return v
        if t == 0:
            return o
        return None
    if not (one_v or _is_many(v)) or not (one_o or _is_many(o)):
        return _FALLBACK
    # Merge the two ascending sequences (a lone dot is a sequence of one).
    n = 1 if one_v else PyTuple_GET_SIZE(v)
    m = 1 if one_o else PyTuple_GET_SIZE(o)
    kept = []
    while i < n or j < m:
        if i < n:
            if one_v:
                if not vsm_small_int(<PyObject *>v, &x) or x < 0:
                    return _FALLBACK
            elif not _item(v, i, &x):
                return _FALLBACK
            if x <= px:
                return _FALLBACK
        if j < m:
            if one_o:
                if not vsm_small_int(<PyObject *>o, &y) or y < 0:
                    return _FALLBACK
            elif not _item(o, j, &y):
                return _FALLBACK
            if y <= py:
                return _FALLBACK
        if i < n and j < m and x == y:
            PyList_Append(kept, v if one_v else <object>PyTuple_GET_ITEM(v, i))
            px, py = x, y
            i += 1
            j += 1
        elif j >= m or (i < n and x < y):
            s = _seen_p(<PyObject *>v if one_v else PyTuple_GET_ITEM(v, i), b)
            if s == UNCLEAN:
                return _FALLBACK
            if s == 0:
                PyList_Append(kept, v if one_v else <object>PyTuple_GET_ITEM(v, i))
            else:
                changed = True
            px = x
            i += 1
        else:
            t = _seen_p(<PyObject *>o if one_o else PyTuple_GET_ITEM(o, j), a)
            if t == UNCLEAN:
                return _FALLBACK
            if t == 0:
                PyList_Append(kept, o if one_o else <object>PyTuple_GET_ITEM(o, j))
                changed = True
            py = y
            j += 1
    if not changed:
        return v
    return _normal(kept)


cdef object _dotstore_join(dict a, dict a_vv, dict a_cloud, dict b, dict b_vv, dict b_cloud):
    cdef _Ctx xa, xb
    cdef dict out = {}
    cdef Py_ssize_t pos = 0
    cdef PyObject *k
    cdef PyObject *v
    cdef PyObject *o
    cdef object kept
    _ctx_init(&xa, a_vv, a_cloud)
    _ctx_init(&xb, b_vv, b_cloud)
    while PyDict_Next(a, &pos, &k, &v):
        o = PyDict_GetItemWithError(b, <object>k)
        if o == NULL:
            kept = _unseen_v(<object>v, &xb)
        else:
            kept = _join_v(<object>v, <object>o, &xa, &xb)
        if kept is _FALLBACK:
            return _FALLBACK
        if kept is not None:
            PyDict_SetItem(out, <object>k, kept)
    pos = 0
    while PyDict_Next(b, &pos, &k, &v):
        if PyDict_GetItemWithError(a, <object>k) != NULL:
            continue
        kept = _unseen_v(<object>v, &xa)
        if kept is _FALLBACK:
            return _FALLBACK
        if kept is not None:
            PyDict_SetItem(out, <object>k, kept)
    return out


def dotstore_join(a, a_vv, a_cloud, b, b_vv, b_cloud):
    """Join of two dot stores under their causal contexts (add-wins).

    For each key, a dot survives when both sides have it, or when one side has it and
    the other side has never seen it (it is not in the other's context). Keys left with
    no dot are dropped. Returns a new mapping in normal form; the inputs are not
    modified.
    """
    cdef object out = _FALLBACK
    cdef int gc_was_on
    if _args_clean(a, a_vv, a_cloud, b, b_vv, b_cloud):
        # New tuples (keys with concurrent dots) are acyclic: no cyclic GC passes.
        gc_was_on = PyGC_Disable()
        try:
            out = _dotstore_join(a, a_vv, a_cloud, b, b_vv, b_cloud)
        finally:
            if gc_was_on:
                PyGC_Enable()
    if out is _FALLBACK:
        return _pure.dotstore_join(a, a_vv, a_cloud, b, b_vv, b_cloud)
    return out


cdef object _dotstore_join_into(
    dict a, dict a_vv, dict a_cloud, dict b, dict b_vv, dict b_cloud
):
    # Phase 1 (reads only): which keys change, and to what. Keys whose dots stay as
    # they are -- the common case between replicas that have synced -- cost a lookup
    # and a C comparison, no allocation.
    cdef _Ctx xa, xb
    cdef list changes = []
    cdef Py_ssize_t pos = 0, i, nchanges
    cdef PyObject *k
    cdef PyObject *v
    cdef PyObject *o
    cdef object kept
    cdef int s
    _ctx_init(&xa, a_vv, a_cloud)
    _ctx_init(&xb, b_vv, b_cloud)
    while PyDict_Next(a, &pos, &k, &v):
        o = PyDict_GetItemWithError(b, <object>k)
        if o == NULL:
            if PyLong_CheckExact(v):
                s = _seen_p(v, &xb)
                if s == UNCLEAN:
                    return _FALLBACK
                if s == 0:
                    continue
                kept = None
            else:
                kept = _unseen_v(<object>v, &xb)
        else:
            kept = _join_v(<object>v, <object>o, &xa, &xb)
        if kept is _FALLBACK:
            return _FALLBACK
        if kept is <object>v:
            continue
        PyList_Append(changes, <object>k)
        PyList_Append(changes, kept)
    pos = 0
    while PyDict_Next(b, &pos, &k, &v):
        if PyDict_GetItemWithError(a, <object>k) != NULL:
            continue
        kept = _unseen_v(<object>v, &xa)
        if kept is _FALLBACK:
            return _FALLBACK
        if kept is not None:
            PyList_Append(changes, <object>k)
            PyList_Append(changes, kept)
    # Phase 2: apply (cannot fail short of MemoryError).
    nchanges = PyList_GET_SIZE(changes)
    i = 0
    while i < nchanges:
        kept = <object>PyList_GET_ITEM(changes, i + 1)
        if kept is None:
            PyDict_DelItem(a, <object>PyList_GET_ITEM(changes, i))
        else:
            PyDict_SetItem(a, <object>PyList_GET_ITEM(changes, i), kept)
        i += 2
    return None


def dotstore_join_into(a, a_vv, a_cloud, b, b_vv, b_cloud):
    """``a := dotstore_join(a, a_vv, a_cloud, b, b_vv, b_cloud)``, in place (keys keep
    their order; new keys follow). On an exception ``a`` is unchanged."""
    cdef object out = _FALLBACK
    cdef int gc_was_on
    if _args_clean(a, a_vv, a_cloud, b, b_vv, b_cloud):
        gc_was_on = PyGC_Disable()
        try:
            out = _dotstore_join_into(a, a_vv, a_cloud, b, b_vv, b_cloud)
        finally:
            if gc_was_on:
                PyGC_Enable()
    if out is _FALLBACK:
        return _pure.dotstore_join_into(a, a_vv, a_cloud, b, b_vv, b_cloud)
    return None


# The delta join walks the delta (a few dots) through the dot index: shared with the twin.
dotstore_index = _pure.dotstore_index
dotstore_join_delta = _pure.dotstore_join_delta


def dotstore_copy(entries):
    """An independent copy of a dot store: a new mapping (the values are immutable)."""
    if type(entries) is not dict:
        return _pure.dotstore_copy(entries)
    return PyDict_Copy(entries)


def dotfun_join(a, a_vv, a_cloud, b, b_vv, b_cloud):
    """Join of two dot functions (packed dot → value) under their causal contexts.

    A dot survives when both sides hold it, or when one side holds it and the other
    has not seen it. When both sides hold a dot with different values, the value with
    the greater canonical bytes wins (the pure twin decides: the whole call goes there).
    """
    if not _args_clean(a, a_vv, a_cloud, b, b_vv, b_cloud):
        return _pure.dotfun_join(a, a_vv, a_cloud, b, b_vv, b_cloud)
    cdef _Ctx xa, xb
    cdef dict out = {}
    cdef Py_ssize_t pos = 0
    cdef PyObject *k
    cdef PyObject *v
    cdef PyObject *o
    cdef int s
    _ctx_init(&xa, <dict>a_vv, <dict>a_cloud)
    _ctx_init(&xb, <dict>b_vv, <dict>b_cloud)
    # Every key is checked clean (an exact packed int naming a known replica) before
    # it is looked up in the other store: no user code runs on the fast path.
    while PyDict_Next(a, &pos, &k, &v):
        s = _seen_p(k, &xb)
        if s == UNCLEAN:
            return _pure.dotfun_join(a, a_vv, a_cloud, b, b_vv, b_cloud)
        o = PyDict_GetItemWithError(b, <object>k)
        if o != NULL:
            if o != v and not _same_plain_atom(o, v):
                return _pure.dotfun_join(a, a_vv, a_cloud, b, b_vv, b_cloud)
            PyDict_SetItem(out, <object>k, <object>v)
        elif s == 0:
            PyDict_SetItem(out, <object>k, <object>v)
    pos = 0
    while PyDict_Next(b, &pos, &k, &v):
        s = _seen_p(k, &xa)
        if s == UNCLEAN:
            return _pure.dotfun_join(a, a_vv, a_cloud, b, b_vv, b_cloud)
        if PyDict_GetItemWithError(a, <object>k) != NULL:
            continue
        if s == 0:
            PyDict_SetItem(out, <object>k, <object>v)
    return out


cdef inline bint _same_plain_atom(PyObject *x, PyObject *y) except -1:
    """Whether ``x`` and ``y`` are equal exact ``str`` / ``int`` / ``bytes`` (no user
    code runs); anything else is left to the pure twin."""
    if (<object>x).__class__ is not (<object>y).__class__:
        return False
    if PyUnicode_CheckExact(x) or PyLong_CheckExact(x) or type(<object>x) is bytes:
        return PyObject_RichCompareBool(<object>x, <object>y, Py_EQ)
    return False


cdef object _decode_dots(list raws, dict vv, dict cloud, set seen):
    """One element's dot list, validated, as a list of ``(replica, counter)``; or
    _FALLBACK at the first irregularity (malformed, duplicate, outside the context:
    the pure twin then raises)."""
    cdef list dots = []
    cdef object raw, d
    cdef PyObject *r
    cdef PyObject *c
    cdef long long cc, have
    cdef object e
    for raw in raws:
        if type(raw) is not list or PyList_GET_SIZE(raw) != 2:
            return _FALLBACK
        r = PyList_GET_ITEM(raw, 0)
        c = PyList_GET_ITEM(raw, 1)
        if not PyUnicode_CheckExact(r) or PyUnicode_GET_LENGTH(<object>r) == 0:
            return _FALLBACK
        if not _as_count(c, &cc) or cc < 1:
            return _FALLBACK
        d = (<object>r, <object>c)
        if PySet_Contains(seen, d):
            return _FALLBACK
        if _vv_get(vv, <object>r, &have) != 1:
            return _FALLBACK
        if cc > have:
            e = _entry(cloud, <object>r)
            if e is None or e is _NOT_Q or not _holds_c(<carray.array>e, cc):
                return _FALLBACK
        PySet_Add(seen, d)
        PyList_Append(dots, d)
    return dots


cdef object _packed_dots(list dots, dict rids):
    """Validated ``(replica, counter)`` dots in normal form (interning replica ids;
    ``rids`` caches them for one call)."""
    cdef list packed = []
    cdef object d, rid
    cdef long long c
    for d in dots:
        rid = rids.get(d[0])
        if rid is None:
            rid = _dots.replica_id(d[0])
            rids[d[0]] = rid
        _as_count(<PyObject *>d[1], &c)
        if c < <long long>VSM_COUNTER_LIMIT:
            PyList_Append(packed, PyLong_FromLongLong((c << 32) | <long long>rid))
        else:
            PyList_Append(packed, (d[1] << 32) | rid)
    if PyList_GET_SIZE(packed) == 1:
        return <object>PyList_GET_ITEM(packed, 0)
    packed.sort()
    return tuple(packed)


cdef object _dotstore_decode(list state, dict vv, dict cloud):
    cdef list checked = []
    cdef dict out = {}
    cdef set seen = set()
    cdef dict rids = {}
    cdef object item, key, raws, dots
    cdef PyObject *k
    cdef Py_ssize_t i
    for item in state:
        if type(item) is not list or PyList_GET_SIZE(item) != 2:
            return _FALLBACK
        k = PyList_GET_ITEM(item, 0)
        raws = <object>PyList_GET_ITEM(item, 1)
        if type(raws) is not list or PyList_GET_SIZE(raws) == 0:
            return _FALLBACK
        if k == <PyObject *>None or PyLong_CheckExact(k) or PyUnicode_CheckExact(k) or (
            type(<object>k) is bytes
        ):
            key = <object>k
        else:
            return _FALLBACK  # tuples and junk: the pure twin converts or raises
        dots = _decode_dots(<list>raws, vv, cloud, seen)
        if dots is _FALLBACK:
            return _FALLBACK
        PyList_Append(checked, key)
        PyList_Append(checked, dots)
    # Valid: only now are replica ids interned (a refused input adds none).
    for i in range(0, PyList_GET_SIZE(checked), 2):
        PyDict_SetItem(
            out,
            <object>PyList_GET_ITEM(checked, i),
            _packed_dots(<list>PyList_GET_ITEM(checked, i + 1), rids),
        )
    return out


def dotstore_decode(state, vv, cloud):
    """Decode a dot store's wire layout ``[[element, [[replica, counter], ...]], ...]``
    and check it against the causal context ``(vv, cloud)``.

    Raises ``ValueError`` (or ``DecodeError``) for a malformed layout, an empty dot
    list, a dot that appears twice or a dot outside the context.
    """
    cdef object out = _FALLBACK
    cdef int gc_was_on
    if type(state) is list and type(vv) is dict and type(cloud) is dict:
        gc_was_on = PyGC_Disable()
        try:
            out = _dotstore_decode(state, vv, cloud)
        finally:
            if gc_was_on:
                PyGC_Enable()
    if out is _FALLBACK:
        return _pure.dotstore_decode(state, vv, cloud)
    return out


# -- decoding straight from canonical bytes -----------------------------------------------

cdef extern from "Python.h":
    object PyUnicode_DecodeUTF8(const char *s, Py_ssize_t size, const char *errors)
    object PyBytes_FromStringAndSize(const char *v, Py_ssize_t len)
    object PyLong_FromUnsignedLongLong(unsigned long long v)
    const char *PyBytes_AS_STRING(object o)
    Py_ssize_t PyBytes_GET_SIZE(object o)



cdef struct _Cursor:
    const unsigned char *p
    const unsigned char *end


cdef inline bint _head(_Cursor *cur, int *major, unsigned long long *arg) noexcept:
    """Read one CBOR head in preferred (shortest) form: its major type and argument.
    False when the input ends, the argument is not at its shortest, or the head is an
    indefinite length or reserved: none of those is canonical."""
    cdef unsigned char ib
    cdef int info, n, i
    cdef unsigned long long v = 0
    if cur.p >= cur.end:
        return False
    ib = cur.p[0]
    cur.p += 1
    major[0] = ib >> 5
    info = ib & 31
    if info < 24:
        arg[0] = info
        return True
    if info == 24:
        n = 1
    elif info == 25:
        n = 2
    elif info == 26:
        n = 4
    elif info == 27:
        n = 8
    else:
        return False
    if cur.end - cur.p < n:
        return False
    for i in range(n):
        v = (v << 8) | cur.p[i]
    cur.p += n
    if (
        (n == 1 and v < 24)
        or (n == 2 and v < 0x100)
        or (n == 4 and v < 0x10000)
        or (n == 8 and v < VSM_U32_LIMIT)
    ):
        return False
    arg[0] = v
    return True


cdef inline bint _text(_Cursor *cur, const unsigned char **start, Py_ssize_t *size) noexcept:
    """A text string's payload (not yet checked as UTF-8): False when the next item is
    not a text string or the input ends inside it."""
    cdef int major
    cdef unsigned long long n
    if not _head(cur, &major, &n) or major != 3 or n > <unsigned long long>(cur.end - cur.p):
        return False
    start[0] = cur.p
    size[0] = <Py_ssize_t>n
    cur.p += n
    return True


cdef inline int _raw_cmp(
    const unsigned char *a, Py_ssize_t na, const unsigned char *b, Py_ssize_t nb
) noexcept:
    """Bytewise order of two byte strings (a proper prefix sorts first)."""
    cdef int c = memcmp(a, b, na if na < nb else nb)
    if c != 0:
        return c
    return -1 if na < nb else (1 if na > nb else 0)


cdef class _Replicas:
    """Replica ids met in one decode, by their UTF-8 bytes: each id becomes one ``str``
    object shared by every dot that names it (no string per dot) and its id in the
    process's replica table. An id the table does not hold yet gets a provisional id
    (the next free ones, in order); :meth:`commit` interns them once the whole input
    has proved valid, so a refused input adds nothing to the table."""
    cdef dict by_raw
    cdef dict by_id
    cdef list pending
    cdef const unsigned char *last
    cdef Py_ssize_t last_size
    cdef object last_str
    cdef long long last_rid

    def __cinit__(self):
        self.by_raw = {}
        self.by_id = {}
        self.pending = []
        self.last = NULL
        self.last_size = -1

    cdef object get(self, const unsigned char *s, Py_ssize_t n, long long *rid):
        """The replica id with UTF-8 bytes ``s[:n]`` and its (possibly provisional) id;
        None when empty or not UTF-8."""
        cdef object raw, r, entry
        cdef long long i
        if n == self.last_size and memcmp(s, self.last, n) == 0:
            rid[0] = self.last_rid
            return self.last_str
        if n == 0:
            return None
        raw = PyBytes_FromStringAndSize(<const char *>s, n)
        entry = self.by_raw.get(raw)
        if entry is None:
            try:
                r = PyUnicode_DecodeUTF8(<const char *>s, n, NULL)
            except UnicodeDecodeError:
                return None
            i = _lookup(r)
            if i < 0:
                i = PyList_GET_SIZE(_REPLICAS) + PyList_GET_SIZE(self.pending)
                PyList_Append(self.pending, r)
            entry = (r, i)
            self.by_raw[raw] = entry
            self.by_id[i] = r
        self.last, self.last_size = s, n
        self.last_str, self.last_rid = entry
        rid[0] = self.last_rid
        return self.last_str

    cdef bint commit(self):
        """Intern the new replica ids; False if one did not get its provisional id (the
        table grew meanwhile: the caller then starts over the general way)."""
        cdef Py_ssize_t base = PyList_GET_SIZE(_REPLICAS), k
        cdef object r
        if not self.pending:
            return True
        for k in range(PyList_GET_SIZE(self.pending)):
            r = <object>PyList_GET_ITEM(self.pending, k)
            if self.by_raw[r.encode()][1] != _dots.replica_id(r):
                return False
        return PyList_GET_SIZE(_REPLICAS) == base + PyList_GET_SIZE(self.pending)


cdef object _parse_element(_Cursor *cur):
    """One element: an int, str, bytes or None; _FALLBACK for anything else (tuples,
    bignums, booleans, floats, malformed) -- the general decoder decides those."""
    cdef int major
    cdef unsigned long long n
    cdef const unsigned char *start
    if not _head(cur, &major, &n):
        return _FALLBACK
    if major == 0:
        return PyLong_FromUnsignedLongLong(n)
    if major == 1:
        return -1 - PyLong_FromUnsignedLongLong(n)
    if major == 2 or major == 3:
        if n > <unsigned long long>(cur.end - cur.p):
            return _FALLBACK
        start = cur.p
        cur.p += n
        if major == 2:
            return PyBytes_FromStringAndSize(<const char *>start, <Py_ssize_t>n)
        try:
            return PyUnicode_DecodeUTF8(<const char *>start, <Py_ssize_t>n, NULL)
        except UnicodeDecodeError:
            return _FALLBACK
    if major == 7 and n == 22:
        return None
    return _FALLBACK


cdef object _parse_dot(
    _Cursor *cur,
    _Replicas reps,
    const unsigned char **rs,
    Py_ssize_t *rn,
    unsigned long long *cp,
):
    """``[replica, counter]`` with 1 <= counter < 2**31, as a packed dot; ``*rs`` /
    ``*rn`` get the replica's UTF-8 bytes and ``*cp`` the counter (for ordering).
    _FALLBACK when it is anything else (larger counters go the general way)."""
    cdef int major
    cdef unsigned long long n, c
    cdef long long rid
    if not _head(cur, &major, &n) or major != 4 or n != 2:
        return _FALLBACK
    if not _text(cur, rs, rn):
        return _FALLBACK
    if reps.get(rs[0], rn[0], &rid) is None:
        return _FALLBACK
    if not _head(cur, &major, &c) or major != 0 or c == 0 or c >= VSM_COUNTER_LIMIT:
        return _FALLBACK
    cp[0] = c
    return PyLong_FromLongLong(<long long>(c << 32) | rid)


cdef inline int _dot_cmp(
    const unsigned char *ra, Py_ssize_t na, unsigned long long ca,
    const unsigned char *rb, Py_ssize_t nb, unsigned long long cb,
) noexcept:
    """The order of two dots ``(replica, counter)`` as Python orders the tuples: UTF-8
    bytes order the replicas as their code points do."""
    cdef int order = _raw_cmp(ra, na, rb, nb)
    if order != 0:
        return order
    return -1 if ca < cb else (1 if ca > cb else 0)


cdef object _parse_orset(const unsigned char *data, Py_ssize_t size, bytes tag):
    cdef _Cursor cur
    cdef _Replicas reps = _Replicas()
    cdef int major
    cdef unsigned long long n, m, i, j, c, prev_c = 0, have
    cdef const unsigned char *prev = NULL
    cdef const unsigned char *start
    cdef const unsigned char *rs
    cdef const unsigned char *prev_rs
    cdef Py_ssize_t prev_size = 0, rn, prev_rn, tag_size = PyBytes_GET_SIZE(tag)
    cdef dict store = {}
    cdef dict vv = {}
    cdef dict cloud = {}
    cdef set cloud_packed = set()
    cdef list run = None
    cdef list dots = []
    cdef object element, dot, r
    cdef list several
    cdef PyObject *got
    cdef long long rid, p, cc, last_rid = -1
    cdef unsigned long long last_have = 0
    cur.p = data
    cur.end = data + size
    # [tag, version 1, [entries, [vv, cloud]]]
    if not _head(&cur, &major, &n) or major != 4 or n != 3:
        return _FALLBACK
    if not _text(&cur, &start, &rn) or rn != tag_size:
        return _FALLBACK
    if memcmp(start, PyBytes_AS_STRING(tag), rn) != 0:
        return _FALLBACK
    if not _head(&cur, &major, &n) or major != 0 or n != 1:
        return _FALLBACK
    if not _head(&cur, &major, &n) or major != 4 or n != 2:
        return _FALLBACK
    # Entries: [[element, [dot, ...]], ...], elements strictly ascending by their
    # canonical bytes (which the input holds: the slice each element was parsed from),
    # each element's dots strictly ascending by (replica, counter).
    if not _head(&cur, &major, &n) or major != 4:
        return _FALLBACK
    for i in range(n):
        if not _head(&cur, &major, &m) or major != 4 or m != 2:
            return _FALLBACK
        start = cur.p
        element = _parse_element(&cur)
        if element is _FALLBACK:
            return _FALLBACK
        if prev != NULL and _raw_cmp(prev, prev_size, start, cur.p - start) >= 0:
            return _FALLBACK
        prev, prev_size = start, cur.p - start
        if not _head(&cur, &major, &m) or major != 4 or m == 0:
            return _FALLBACK
        dot = _parse_dot(&cur, reps, &prev_rs, &prev_rn, &prev_c)
        if dot is _FALLBACK:
            return _FALLBACK
        PyList_Append(dots, dot)
        if m == 1:
            PyDict_SetItem(store, element, dot)
            continue
        several = [dot]
        for j in range(1, m):
            dot = _parse_dot(&cur, reps, &rs, &rn, &c)
            if dot is _FALLBACK:
                return _FALLBACK
            if _dot_cmp(prev_rs, prev_rn, prev_c, rs, rn, c) >= 0:
                return _FALLBACK
            prev_rs, prev_rn, prev_c = rs, rn, c
            PyList_Append(several, dot)
            PyList_Append(dots, dot)
        several.sort()
        PyDict_SetItem(store, element, tuple(several))
    # The causal context: [{replica: counter >= 1}, [dot, ...]], keys in canonical
    # order (shorter encodings first, then bytewise), cloud dots strictly ascending and
    # compact (each beyond its replica's vector entry + 1).
    if not _head(&cur, &major, &n) or major != 4 or n != 2:
        return _FALLBACK
    if not _head(&cur, &major, &n) or major != 5:
        return _FALLBACK
    prev = NULL
    for i in range(n):
        start = cur.p
        if not _text(&cur, &rs, &rn):
            return _FALLBACK
        if prev != NULL and (
            cur.p - start < prev_size
            or (cur.p - start == prev_size and memcmp(prev, start, prev_size) >= 0)
        ):
            return _FALLBACK
        prev, prev_size = start, cur.p - start
        r = reps.get(rs, rn, &rid)
        if r is None:
            return _FALLBACK
        if not _head(&cur, &major, &c) or major != 0 or c == 0:
            return _FALLBACK
        PyDict_SetItem(vv, r, PyLong_FromUnsignedLongLong(c))
    if not _head(&cur, &major, &n) or major != 4:
        return _FALLBACK
    for i in range(n):
        dot = _parse_dot(&cur, reps, &rs, &rn, &c)
        if dot is _FALLBACK:
            return _FALLBACK
        if i > 0 and _dot_cmp(prev_rs, prev_rn, prev_c, rs, rn, c) >= 0:
            return _FALLBACK
        prev_rs, prev_rn, prev_c = rs, rn, c
        r = reps.last_str
        got = PyDict_GetItemWithError(vv, r)
        have = 0 if got == NULL else <unsigned long long>(<object>got)
        if c <= have or c - have == 1:
            return _FALLBACK  # not compact
        PySet_Add(cloud_packed, dot)
        if i == 0 or PyDict_GetItemWithError(cloud, r) == NULL:
            run = []
            PyDict_SetItem(cloud, r, run)
        PyList_Append(run, PyLong_FromUnsignedLongLong(c))
    if cur.p != cur.end:
        return _FALLBACK  # trailing bytes
    # Every stored dot is in the context, and supports one element only.
    cdef set seen = set()
    for dot in dots:
        if PySet_Contains(seen, dot):
            return _FALLBACK
        PySet_Add(seen, dot)
        p = PyLong_AsLongLong(dot)  # < 2**63 by construction
        rid = p & VSM_RID_MASK
        cc = p >> 32
        if rid != last_rid:
            r = reps.by_id[rid]
            got = PyDict_GetItemWithError(vv, r)
            last_rid = rid
            last_have = 0 if got == NULL else <unsigned long long>(<object>got)
        if <unsigned long long>cc > last_have and not PySet_Contains(cloud_packed, dot):
            return _FALLBACK
    # Valid: intern the replica ids this process had not met (their provisional ids
    # are the ones they get, unless another thread interned ids meanwhile).
    if not reps.commit():
        return _FALLBACK
    for r in list(cloud):
        PyDict_SetItem(cloud, r, carray.array("q", <list>cloud[r]))
    return (store, vv, cloud)


def dotstore_parse(data, max_size, tag):
    """``(store, vv, cloud)`` of the canonical encoding ``data`` of an ORSet-layout
    object tagged ``tag``, parsed straight from the bytes; None when this shortcut
    does not apply.

    The shortcut accepts a subset of what the general decoder accepts (exact ``bytes``
    within ``max_size``; elements that are ints, strings, byte strings or null) and
    checks every canonicality rule while it reads -- shortest heads, definite lengths,
    ascending elements, dots and context, a compact context, no trailing bytes -- with
    the invariants of the general decoder (dots in the context, each dot under one
    element). On anything else it returns None and the caller runs the general
    decoder, which raises or accepts: an answer here is always the general decoder's.
    """
    cdef object out = _FALLBACK
    cdef int gc_was_on
    if type(data) is not bytes or type(tag) is not bytes or type(max_size) is not int:
        return None
    if PyBytes_GET_SIZE(data) > max_size or PyBytes_GET_SIZE(data) == 0:
        return None
    gc_was_on = PyGC_Disable()
    try:
        out = _parse_orset(
            <const unsigned char *>PyBytes_AS_STRING(data), PyBytes_GET_SIZE(data), tag
        )
    finally:
        if gc_was_on:
            PyGC_Enable()
    return None if out is _FALLBACK else out
