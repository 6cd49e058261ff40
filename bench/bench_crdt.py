"""CRDT kernel and type benchmarks: native vs pure, ours vs the Python peers.

Everything is measured side by side in one process and one run; figures are CPU time
per operation (``time.process_time``: robust to other load on the machine), the best of
several repetitions, and the report is ratios -- nothing here asserts a time.

* **Kernels** (``vsm_phoenix.crdt._pure`` vs ``_native``) on the same inputs.
* **Types** (join, in-place join, mutators, codec) with the kernels ``_backend`` hands
  to the types swapped in process, so both backends run the very same type code.
* **Targets** of issues 3 and 11: vector-clock join and compare at 1,000 replicas, ORSet
  join at 10,000 elements (native/pure, vs the best pure-Python peer, vs pycrdt). The
  vector-clock and causal-context targets time the *public* operations (``a | b``,
  ``compare``) with the same type code and the same array-backed states on both
  backends; only the kernels differ, and the pure kernels are the reference twins
  (lockstep loops over the same arrays, not a slowed-down stand-in).
* **Peers**: ``python3-crdt`` (``py3crdt``), ``crdts`` and ``pycrdt`` (Yjs/yrs), each on
  the equivalent work; a peer that is not installed is reported as skipped.
* **Memory** per element of a 100,000-element ORSet (tracemalloc), against a plain
  ``set`` of the same strings.
* **Delta cost**: a one-dot delta into a 100k-element ORSet against the same into a
  1k-element one (``one_dot_delta_100k_over_1k``).
* **Delta ratio**: plain/indexed join time for deltas of k elements into a 10k-element
  ORSet, per backend, and the crossover ``n / k`` that ``ORSet.DELTA_RATIO`` is set to.
* **Dot clouds**: ``CausalContext a | b`` of two interleaved 100k-dot clouds (native /
  pure), and after a lost delta (``lost_delta``): ``ORSet.add`` with a 100k-dot cloud
  against one without, and 100k one-dot deltas applied one by one in a shuffled order.
* **OR-Map memory** (``ormap_memory``): bytes of an ORMap empty, with 1,000 keys, and
  after removing every key, as ratios to the full and to the empty map.

``run(quick)`` returns the report (``python -m bench`` prints and saves it);
``pytest bench/bench_crdt.py`` runs the pytest-benchmark suites (sizes 10, 1k, 100k).
"""

from __future__ import annotations

import contextlib
import copy
import functools
import gc
import importlib
import itertools
import operator
import random
import time
import tracemalloc
from collections.abc import Callable, Iterator
from types import ModuleType
from typing import Any

from bench import progress
from vsm_phoenix.crdt import (
    CausalContext,
    GCounter,
    MVRegister,
    ORMap,
    ORSet,
    VectorClock,
    _backend,
    _pure,
)
from vsm_phoenix.crdt._dots import Cloud, cloud_dots, cloud_of
from vsm_phoenix.crdt.sets import _encode_dotstore

SIZES = (10, 1_000, 100_000)

KERNELS = [
    name
    for name in _backend.__all__
    if name not in ("BACKEND", "kernels") and callable(getattr(_pure, name, None))
]


def native_kernels() -> ModuleType | None:
    """The Cython kernels, or None when the extension is not built."""
    try:
        return importlib.import_module("vsm_phoenix.crdt._native")
    except ImportError:
        return None


@contextlib.contextmanager
def use_kernels(kernels: ModuleType) -> Iterator[None]:
    """Run the CRDT types on ``kernels`` (the types look kernels up in ``_backend`` at
    call time, so swapping its attributes switches the backend in process)."""
    saved = {name: getattr(_backend, name) for name in KERNELS}
    try:
        for name in KERNELS:
            setattr(_backend, name, getattr(kernels, name))
        yield
    finally:
        for name, fn in saved.items():
            setattr(_backend, name, fn)


# -- timing ----------------------------------------------------------------------------


#: Repetitions per measurement (``run(quick=True)`` lowers it).
REPEAT = 5


def per_call(
    fn: Callable[..., Any],
    make_args: Callable[[], tuple[Any, ...]],
    budget: float = 0.1,
    repeat: int = 0,
) -> float:
    """Best CPU seconds per ``fn(*make_args())``, excluding ``make_args``.

    Arguments for a batch are made before the batch is timed, so in-place operations
    get fresh inputs without their copies being counted. A batch is sized by the
    slower of the call and the making of its arguments, so inputs that are costly to
    copy (a 100k-dot cloud for a call of microseconds) keep the batch small.
    """
    repeat = repeat or REPEAT
    t0 = time.process_time()
    args = make_args()
    made = time.process_time() - t0
    t0 = time.process_time()
    fn(*args)
    one = max(time.process_time() - t0, made, 1e-7)
    n = max(1, min(20_000, int(budget / repeat / one)))
    best = float("inf")
    for _ in range(repeat):
        batch = [make_args() for _ in range(n)]
        gc.collect()
        t0 = time.process_time()
        for a in batch:
            fn(*a)
        best = min(best, (time.process_time() - t0) / n)
        del batch
    return best


def best_single(
    fn: Callable[..., Any], make_args: Callable[[], tuple[Any, ...]], repeat: int
) -> float:
    """Best CPU seconds of ``repeat`` single calls (for operations of a second or so)."""
    best = float("inf")
    for _ in range(repeat):
        args = make_args()
        gc.collect()
        t0 = time.process_time()
        fn(*args)
        best = min(best, time.process_time() - t0)
    return best


def _same(*args: Any) -> Callable[[], tuple[Any, ...]]:
    return lambda: args


# -- inputs ----------------------------------------------------------------------------


def vv_pair(n: int, seed: int = 1) -> tuple[dict[str, int], dict[str, int]]:
    """Two clocks over the same ``n`` replicas, ``a`` strictly before ``b`` (so join,
    leq and compare all scan every entry: the worst case)."""
    rnd = random.Random(seed)
    a = {f"replica-{i}": rnd.randint(1, 10_000) for i in range(n)}
    b = {r: c + (1 if rnd.random() < 0.5 else 0) for r, c in a.items()}
    b[f"replica-{n // 2}"] = a[f"replica-{n // 2}"] + 1
    return a, b


def ctx_pair(n: int, seed: int = 2) -> tuple[dict[str, int], Cloud, dict[str, int], Cloud]:
    """Two contexts over 8 replicas with ``n`` cloud dots between them (half of them
    contiguous with the other side's vector, so compaction has work to do)."""
    rnd = random.Random(seed)
    reps = [f"replica-{i}" for i in range(8)]
    vv = {r: rnd.randint(1, 50) for r in reps}
    o_vv = {r: c + rnd.randint(0, 3) for r, c in vv.items()}
    cloud = cloud_of((rnd.choice(reps), rnd.randint(60, 60 + n)) for _ in range(n // 2))
    o_cloud = cloud_of((r, c) for r in reps for c in range(o_vv[r] + 1, o_vv[r] + 1 + n // 16))
    _pure.ctx_compact(vv, cloud)
    _pure.ctx_compact(o_vv, o_cloud)
    return vv, cloud, o_vv, o_cloud


@functools.lru_cache(maxsize=2)
def cloud_pair(n: int, seed: int = 3) -> tuple[CausalContext, CausalContext]:
    """Two contexts of about ``n`` cloud dots each over 8 replicas, interleaved (each
    replica's counters drawn from the same range): a join merges the clouds entry by
    entry, the dense case."""
    rnd = random.Random(seed)
    reps = [f"replica-{i}" for i in range(8)]
    top = n // 2

    def one() -> CausalContext:
        return CausalContext._of_dots({(rnd.choice(reps), rnd.randint(2, top)) for _ in range(n)})

    return one(), one()


@functools.lru_cache(maxsize=16)
def orset_pair(n: int) -> tuple[ORSet, ORSet]:
    """Two replicas that each added ``n`` elements (half of them the same elements,
    added concurrently) and removed a tenth of what they saw -- built on the pure
    kernels so every benchmark starts from identical states."""
    with use_kernels(_pure):
        a, b = ORSet(), ORSet()
        for x in range(n):
            a.add("replica-a", x)
            b.add("replica-b", x + n // 2)
        for x in range(0, n, 10):
            a.remove(x)
            b.remove(x + n // 2 + 5)
    return a, b


@functools.lru_cache(maxsize=8)
def ormap_pair(n: int) -> tuple[ORMap, ORMap]:
    with use_kernels(_pure):
        a, b = ORMap(), ORMap()
        for x in range(n):
            a.update("replica-a", x, GCounter, functools.partial(_bump, "replica-a"))
            b.update("replica-b", x + n // 2, GCounter, functools.partial(_bump, "replica-b"))
    return a, b


def _bump(replica: str, c: GCounter) -> GCounter:
    return c.increment(replica)


@functools.lru_cache(maxsize=8)
def mvreg_pair(n: int) -> tuple[MVRegister, MVRegister]:
    """Two registers with ``n`` concurrent values between them (n writers)."""
    with use_kernels(_pure):
        regs = []
        for side in range(2):
            r = MVRegister()
            for i in range(n // 2 + 1):
                w = MVRegister()
                w.assign(f"writer-{side}-{i}", i)
                r |= w
            regs.append(r)
    return regs[0], regs[1]


def kernel_cases(n: int) -> dict[str, tuple[Callable[[], tuple[Any, ...]], str]]:
    """For each kernel: a maker of fresh arguments at size ``n``, and what it is."""
    a, b = vv_pair(n)
    ca, cb = VectorClock(a), VectorClock(b)
    vv, cloud, o_vv, o_cloud = ctx_pair(n)
    sa, sb = orset_pair(n)
    e_a, c_a, e_b, c_b = sa._store, sa._ctx, sb._store, sb._ctx
    store_args = (e_a, c_a.vv, c_a.cloud, e_b, c_b.vv, c_b.cloud)
    ra, rb = mvreg_pair(min(n, 1_000))  # n concurrent writers: built in O(n^2)
    fun_args = (ra._store, ra._ctx.vv, ra._ctx.cloud, rb._store, rb._ctx.vv, rb._ctx.cloud)
    probe = next(((r, cs[len(cs) // 2]) for r, cs in cloud.items()), ("replica-0", 1))
    union = cloud_of(cloud_dots(cloud) | cloud_dots(o_cloud))
    # ctx_add / dotstore_join_delta run on private copies, the same dot / one-dot delta
    # each call (the first call inserts, the rest walk the same path and find it there).
    add_vv, add_cloud = dict(vv), copy.deepcopy(cloud)
    add_dot = ("replica-0", add_vv.get("replica-0", 0) + 2 + n)
    delta_src = ORSet()
    with use_kernels(_pure):
        delta = delta_src.add("replica-delta", "x")
    d_store = _pure.dotstore_copy(e_a)
    d_index = _pure.dotstore_index(d_store)
    d_vv, d_cloud = dict(c_a.vv), copy.deepcopy(c_a.cloud)
    delta_args = (d_store, d_index, d_vv, d_cloud, delta._store, delta._ctx.vv, delta._ctx.cloud)
    return {
        "vc_join_into": (lambda: (dict(a), b), f"{n} replicas"),
        "vc_leq": (_same(a, b), f"{n} replicas"),
        "vc_compare": (_same(a, b), f"{n} replicas"),
        "vc_join_arrays": (
            lambda: (ca._ids, ca._ns[:], cb._ids, cb._ns),
            f"{n} replicas, array clocks",
        ),
        "vc_leq_arrays": (_same(ca._ids, ca._ns, cb._ids, cb._ns), f"{n} replicas, array clocks"),
        "vc_compare_arrays": (
            _same(ca._ids, ca._ns, cb._ids, cb._ns),
            f"{n} replicas, array clocks",
        ),
        "ctx_contains": (_same(vv, cloud, probe[0], probe[1]), f"{n}-dot cloud"),
        "ctx_compact": (
            lambda: ({**vv, **o_vv}, {r: cs[:] for r, cs in union.items()}),
            f"{sum(len(cs) for cs in union.values())}-dot cloud",
        ),
        "ctx_add": (_same(add_vv, add_cloud, *add_dot), f"one dot into a {n}-dot cloud"),
        "ctx_join_into": (
            lambda: (dict(vv), copy.deepcopy(cloud), o_vv, o_cloud),
            f"{n}-dot clouds",
        ),
        "ctx_leq": (_same(vv, cloud, *_joined_ctx(vv, cloud, o_vv, o_cloud)), f"{n}-dot clouds"),
        "dotstore_join": (_same(*store_args), f"ORSet {n} elements"),
        "dotstore_join_into": (
            lambda: (_pure.dotstore_copy(e_a), *store_args[1:]),
            f"ORSet {n} elements",
        ),
        "dotstore_copy": (_same(e_a), f"ORSet {n} elements"),
        "dotstore_index": (_same(e_a), f"ORSet {n} elements"),
        "dotstore_join_delta": (_same(*delta_args), f"one-dot delta into ORSet {n} elements"),
        "dotfun_join": (_same(*fun_args), f"MVRegister {len(ra._store)} values"),
        "dotstore_decode": (
            _same(_encode_dotstore(e_a), c_a.vv, c_a.cloud),
            f"ORSet {n} elements (wire layout)",
        ),
        "dotstore_parse": (
            _same(sa.to_bytes(), 1 << 30, b"orset"),
            f"ORSet {n} elements (canonical bytes; pure: declines)",
        ),
    }


def _joined_ctx(
    vv: dict[str, int], cloud: Cloud, o_vv: dict[str, int], o_cloud: Cloud
) -> tuple[dict[str, int], Cloud]:
    j_vv, j_cloud = dict(vv), copy.deepcopy(cloud)
    _pure.ctx_join_into(j_vv, j_cloud, o_vv, o_cloud)
    return j_vv, j_cloud


def type_cases(n: int) -> dict[str, Callable[[], tuple[Callable[..., Any], Callable[[], Any]]]]:
    """For each type operation at size ``n``: ``() -> (fn, make_args)`` (lazy: the
    states are built only for the cases that run)."""

    def vc() -> tuple[VectorClock, VectorClock]:
        a, b = vv_pair(n)
        return VectorClock(a), VectorClock(b)

    def orset_codec() -> tuple[ORSet, bytes]:
        a, _ = orset_pair(n)
        return a, a.to_bytes()

    def add_case() -> tuple[Callable[..., Any], Callable[[], tuple[Any, ...]]]:
        # Adds fresh elements to one private replica (it grows by a few thousand
        # elements at most: the state stays about size n).
        target = orset_pair(n)[0].copy()
        counter = iter(range(1, 10**12))
        return ORSet.add, lambda: (target, "replica-a", -next(counter))

    def remove_case() -> tuple[Callable[..., Any], Callable[[], tuple[Any, ...]]]:
        target = orset_pair(n)[0].copy()
        present = iter(sorted(target.value, key=repr))
        return ORSet.remove, lambda: (target, next(present, "absent"))

    return {
        "VectorClock a | b": lambda: (operator.or_, _same(*vc())),
        "VectorClock.compare": lambda: (VectorClock.compare, _same(*vc())),
        "VectorClock a <= b": lambda: (operator.le, _same(*vc())),
        "GCounter a | b": lambda: (
            operator.or_,
            _same(*(GCounter._raw(x) for x in vv_pair(n))),
        ),
        "CausalContext a | b": lambda: (
            operator.or_,
            _same(*(CausalContext._raw(v, c) for v, c in _ctx_pairs(n))),
        ),
        "ORSet a | b": lambda: (operator.or_, _same(*orset_pair(n))),
        "ORSet a |= b": lambda: (
            operator.ior,
            lambda: (orset_pair(n)[0].copy(), orset_pair(n)[1]),
        ),
        "ORSet a <= a | b": lambda: (operator.le, _same(orset_pair(n)[0], _joined(n))),
        "ORSet.add": add_case,
        "ORSet.remove": remove_case,
        "ORSet.copy": lambda: (ORSet.copy, _same(orset_pair(n)[0])),
        "ORSet.to_bytes": lambda: (ORSet.to_bytes, _same(orset_codec()[0])),
        "ORSet.from_bytes": lambda: (ORSet.from_bytes, _same(orset_codec()[1])),
        "ORMap a | b": lambda: (operator.or_, _same(*ormap_pair(min(n, 10_000)))),
        "MVRegister a | b": lambda: (operator.or_, _same(*mvreg_pair(min(n, 1_000)))),
    }


def _ctx_pairs(n: int) -> list[tuple[dict[str, int], Cloud]]:
    vv, cloud, o_vv, o_cloud = ctx_pair(n)
    return [(vv, cloud), (o_vv, o_cloud)]


@functools.lru_cache(maxsize=4)
def _joined(n: int) -> ORSet:
    a, b = orset_pair(n)
    with use_kernels(_pure):
        return a | b


# -- peers -----------------------------------------------------------------------------


def _optional(name: str) -> Any:
    try:
        return importlib.import_module(name)
    except ImportError:
        return None


def peer_py3crdt(n: int, budget: float) -> dict[str, Any]:
    """python3-crdt: ``ORSetFunctions.merge`` of the two add-tag payloads (its join).
    The same two replicas: ``n`` elements each, half shared, one unique tag per add."""
    mod = _optional("py3crdt.orset")
    if mod is None:
        return {"skipped": "python3-crdt not installed"}
    a: list[dict[str, Any]] = [{"elem": x, "tags": [f"a{x}"]} for x in range(n)]
    b: list[dict[str, Any]] = [{"elem": x, "tags": [f"b{x}"]} for x in range(n // 2, n // 2 + n)]

    def fresh() -> tuple[Any, ...]:
        return ([{"elem": i["elem"], "tags": list(i["tags"])} for i in a], b)

    # Its merge is quadratic (a linear scan of payload1 per element of payload2): one
    # run at n is enough, and can take seconds.
    t = best_single(mod.ORSetFunctions.merge, fresh, repeat=1)
    return {"seconds": t, "work": "ORSetFunctions.merge(A, R-less payloads)", "n": n}


def peer_crdts(n: int, budget: float) -> dict[str, Any]:
    """crdts (ORSet with ScalarClock): state sync is ``b.history()`` replayed into ``a``
    with ``a.update(u)`` -- its documented resynchronisation path."""
    mod = _optional("crdts")
    if mod is None:
        return {"skipped": "crdts not installed"}
    a = mod.ORSet()
    b = mod.ORSet(clock=mod.ScalarClock(uuid=a.clock.uuid))
    for x in range(n):
        a.observe(x)
        b.observe(x + n // 2)
    for x in range(0, n, 10):
        a.remove(x)
        b.remove(x + n // 2 + 5)
    packed = a.pack()

    def sync(target: Any, source: Any) -> Any:
        for u in source.history():
            target.update(u)
        return target

    t = best_single(sync, lambda: (mod.ORSet.unpack(packed), b), repeat=3)
    return {"seconds": t, "work": "for u in b.history(): a.update(u)", "n": n}


def peer_pycrdt(n: int, budget: float) -> dict[str, Any]:
    """pycrdt (yrs): apply the update of an ``n``-entry map into a fresh doc, and merge
    two diverged docs (``n`` keys each, half shared) -- the equivalent of joining a
    replica's state into an empty replica, and of ``a | b``."""
    mod = _optional("pycrdt")
    if mod is None:
        return {"skipped": "pycrdt not installed"}

    def doc_with(keys: range, client: int) -> Any:
        d = mod.Doc(client_id=client)
        m = d.get("m", type=mod.Map)
        with d.transaction():
            for x in keys:
                m[str(x)] = True
            for x in list(keys)[::10]:
                del m[str(x)]
        return d

    da = doc_with(range(n), 1)
    db = doc_with(range(n // 2, n // 2 + n), 2)
    up_a, up_b = da.get_update(), db.get_update()

    def apply(doc: Any, update: bytes) -> Any:
        doc.apply_update(update)
        return doc

    def fresh_a() -> tuple[Any, ...]:
        d = mod.Doc()
        d.apply_update(up_a)
        return (d, up_b)

    fresh = per_call(apply, lambda: (mod.Doc(), up_b), budget=budget)
    merge = per_call(apply, fresh_a, budget=budget)
    return {
        "fresh_apply_seconds": fresh,
        "merge_seconds": merge,
        "update_bytes": len(up_b),
        "n": n,
        "version": getattr(mod, "__version__", "?"),
    }


# -- memory ----------------------------------------------------------------------------


def bytes_per_element(build: Callable[[], Any], n: int) -> float:
    """Traced bytes retained by ``build()`` per element (tracemalloc)."""
    retained, _ = _traced_bytes(build)
    return retained / n


def memory(n: int) -> dict[str, Any]:
    def ours() -> ORSet:
        s = ORSet()
        for x in range(n):
            s.add("replica-a", x)
        return s

    strings = [f"element-{x}" for x in range(n)]  # built outside the measurement

    def ours_strings() -> ORSet:
        s = ORSet()
        for x in strings:
            s.add("replica-a", x)
        return s

    def ours_indexed() -> ORSet:
        s = ours_strings()
        s |= ORSet().add("replica-b", strings[0])  # a small delta builds the dot index
        return s

    plain = bytes_per_element(lambda: set(strings), n)
    mine = bytes_per_element(ours_strings, n)
    out: dict[str, Any] = {
        "n": n,
        "vsm_phoenix.ORSet": round(bytes_per_element(ours, n), 1),
        "vsm_phoenix.ORSet (strings)": round(mine, 1),
        "vsm_phoenix.ORSet (strings, dot index built)": round(
            bytes_per_element(ours_indexed, n), 1
        ),
        "plain set (same strings)": round(plain, 1),
        "orset_memory_per_element_ours_over_plain_set": round(mine / plain, 2),
    }
    crdts = _optional("crdts")
    if crdts is not None:

        def theirs() -> Any:
            s = crdts.ORSet()
            for x in range(n):
                s.observe(x)
            return s

        out["crdts.ORSet"] = round(bytes_per_element(theirs, n), 1)
    py3 = _optional("py3crdt.orset")
    if py3 is not None:

        def py3_build() -> Any:
            s = py3.ORSet("a")
            s.A = [{"elem": x, "tags": [f"a{x}"]} for x in range(n)]
            return s

        out["py3crdt.ORSet"] = round(bytes_per_element(py3_build, n), 1)
    out["pycrdt.Map"] = "n/a (state lives in the Rust heap, invisible to tracemalloc)"
    return out



def _traced_bytes(build: Callable[[], Any]) -> tuple[int, Any]:
    """Traced bytes retained by ``build()`` (tracemalloc) and the object it built."""
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        keep = build()
        gc.collect()
        after = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    return after - before, keep


def ormap_memory(n: int = 1_000) -> dict[str, Any]:
    """Bytes an ORMap keeps (tracemalloc): empty, full, and after removing every key --
    for ``n`` GCounter-valued keys (non-causal values, the issue's case) and for ``n``
    GCounter plus ``n`` ORSet-valued keys (causal values too). Removing all keys must
    give the nested state back."""

    def build(with_sets: bool, remove: bool) -> Callable[[], ORMap]:
        def go() -> ORMap:
            m = ORMap()
            for x in range(n):
                m.update("replica-a", x, GCounter, functools.partial(_bump, "replica-a"))
                if with_sets:
                    m.update(
                        "replica-a",
                        ("set", x),
                        ORSet,
                        lambda s, x=x: s.add("replica-a", f"element-{x}"),
                    )
            if remove:
                for x in range(n):
                    m.remove(x)
                    if with_sets:
                        m.remove(("set", x))
            return m

        return go

    empty, _ = _traced_bytes(ORMap)
    out: dict[str, Any] = {"n": n, "ormap_bytes_empty": empty}
    for label, with_sets in ((f"{n // 1000}k_gcounter_keys", False),
                             (f"{n // 1000}k_gcounter_and_{n // 1000}k_orset_keys", True)):
        full, _ = _traced_bytes(build(with_sets, False))
        after, kept = _traced_bytes(build(with_sets, True))
        out[f"ormap_bytes_full_{label}"] = full
        out[f"ormap_bytes_after_remove_all_{label}"] = after
        out[f"ormap_after_remove_all_over_full_{label}"] = round(after / full, 4)
        out[f"ormap_after_remove_all_over_empty_{label}"] = round(after / max(empty, 1), 2)
        out[f"ormap_encoded_bytes_after_remove_all_{label}"] = len(kept.to_bytes())
    return out


# -- the report ------------------------------------------------------------------------


class _Steps:
    """Reports each measurement to :mod:`bench.progress` (``update`` = the next one)."""

    def __init__(self, labels: list[str]) -> None:
        self.labels = labels
        self.done = 0
        progress.plan(len(labels))
        progress.step(labels[0])

    def update(self, n: int) -> None:
        self.done += n
        if self.done < len(self.labels):
            progress.step(self.labels[self.done])


def _progress(labels: list[str]) -> contextlib.AbstractContextManager[_Steps]:
    return contextlib.nullcontext(_Steps(labels))


def run(quick: bool = False) -> dict[str, Any]:
    """Measure everything; return rows (pure and native per case) and ratios."""
    global REPEAT
    started = time.perf_counter()
    nat = native_kernels()
    budget = 0.02 if quick else 0.15
    REPEAT = 3 if quick else 5
    sizes = (10, 1_000) if quick else SIZES
    report: dict[str, Any] = {
        "benchmark": "crdt",
        "quick": quick,
        "native_built": nat is not None,
        "active_backend": _backend.BACKEND,
        "clock": "process CPU time, best of repetitions",
    }
    backends: list[tuple[str, ModuleType]] = [("pure", _pure)]
    if nat is not None:
        backends.append(("native", nat))

    rows: list[dict[str, Any]] = []
    jobs: list[tuple[str, int, str]] = [("kernel", n, k) for n in sizes for k in KERNELS]
    jobs += [("type", n, t) for n in sizes for t in type_cases(n)]
    targets = [f"targets: kernels and joins, {label}" for label, _ in backends]
    targets += ["peers: python3-crdt, crdts", "peer: pycrdt", "memory per element"]
    targets += ["delta ratio crossover"]
    with _progress([f"{kind} {name} n={n}" for kind, n, name in jobs] + targets) as bar:
        for kind, n, name in jobs:
            row: dict[str, Any] = {"kind": kind, "case": name, "size": n}
            for label, kernels in backends:
                if kind == "kernel":
                    make, what = kernel_cases(n)[name]
                    row["input"] = what
                    t = per_call(getattr(kernels, name), make, budget)
                else:
                    fn, make_t = type_cases(n)[name]()
                    with use_kernels(kernels):
                        t = per_call(fn, make_t, budget)
                row[f"{label}_us"] = round(t * 1e6, 3)
            if nat is not None:
                row["native_speedup"] = round(row["pure_us"] / max(row["native_us"], 1e-9), 2)
            rows.append(row)
            if bar is not None:
                bar.update(1)
        report["rows"] = rows
        report["targets"] = _targets(backends, budget, quick, bar)
    report["seconds"] = round(time.perf_counter() - started, 1)
    return report


def _targets(
    backends: list[tuple[str, ModuleType]], budget: float, quick: bool, bar: Any
) -> dict[str, Any]:
    """The issue's targets, side by side (reported, never asserted)."""
    out: dict[str, Any] = {}
    times: dict[str, dict[str, float]] = {}

    def tick() -> None:
        if bar is not None:
            bar.update(1)

    va, vb = vv_pair(1_000)
    a10, b10 = orset_pair(10_000)
    data_b = b10.to_bytes()

    def fresh_join(src: ORSet) -> ORSet:
        dst = ORSet()
        dst |= src
        return dst

    def decode_join(blob: bytes) -> ORSet:
        dst = ORSet()
        dst |= ORSet.from_bytes(blob)
        return dst

    delta_targets = {size: _delta_target(size) for size in (1_000, 100_000)}
    ca, cb = VectorClock(va), VectorClock(vb)  # joins below never change them
    xa, xb = (CausalContext._raw(v, c) for v, c in _ctx_pairs(100_000))
    for label, kernels in backends:
        t: dict[str, float] = {}
        t["vc_join_arrays 1k (kernel)"] = per_call(
            kernels.vc_join_arrays, lambda: (ca._ids, ca._ns[:], cb._ids, cb._ns), budget
        )
        t["vc_compare_arrays 1k (kernel)"] = per_call(
            kernels.vc_compare_arrays, _same(ca._ids, ca._ns, cb._ids, cb._ns), budget
        )
        with use_kernels(kernels):
            # The public operations, the measure: the same VectorClock code and
            # arrays on both backends, only the kernels differ.
            t["VectorClock a | b 1k"] = per_call(operator.or_, _same(ca, cb), budget)
            t["VectorClock.compare 1k"] = per_call(VectorClock.compare, _same(ca, cb), budget)
            t["VectorClock a |= one-replica delta 1k"] = per_call(
                operator.ior, lambda: (ca.copy(), VectorClock({"replica-7": 10**6})), budget
            )
            t["CausalContext a | b 100k dots"] = per_call(operator.or_, _same(xa, xb), budget)
            t["CausalContext a | b 100k-dot clouds"] = per_call(
                operator.or_, _same(*cloud_pair(100_000)), budget
            )
            t["ORSet a | b 10k"] = per_call(operator.or_, _same(a10, b10), budget * 2)
            t["ORSet a |= b 10k"] = per_call(operator.ior, lambda: (a10.copy(), b10), budget * 2)
            t["ORSet empty |= b 10k"] = per_call(fresh_join, _same(b10), budget * 2)
            t["ORSet empty |= decode(b) 10k"] = per_call(decode_join, _same(data_b), budget)
            for size, (target, next_delta) in delta_targets.items():
                target |= next_delta()  # builds the dot index before the timing
                t[f"ORSet |= one-dot delta {size // 1000}k"] = per_call(
                    operator.ior, lambda target=target, nd=next_delta: (target, nd()), budget
                )
        times[label] = t
        tick()
    out["seconds"] = {label: {k: round(v, 7) for k, v in t.items()} for label, t in times.items()}
    if "native" in times:
        out["native_over_pure"] = {
            k: round(times["pure"][k] / times["native"][k], 2) for k in times["native"]
        }
    ours = times.get("native", times["pure"])
    out["ctx_join_100k_dot_clouds_native_over_pure"] = out.get("native_over_pure", {}).get(
        "CausalContext a | b 100k-dot clouds"
    )
    out["lost_delta"] = lost_delta(backends, 20_000 if quick else 100_000, budget)
    out["one_dot_delta_100k_over_1k"] = {
        label: round(t["ORSet |= one-dot delta 100k"] / t["ORSet |= one-dot delta 1k"], 2)
        for label, t in times.items()
    }

    peers = {
        "python3-crdt": peer_py3crdt(10_000, budget),
        "crdts": peer_crdts(10_000, budget),
    }
    tick()
    pycrdt = peer_pycrdt(10_000, budget)
    tick()
    out["peers"] = {**peers, "pycrdt": pycrdt}
    timed = {k: v["seconds"] for k, v in peers.items() if "seconds" in v}
    if timed:
        best = min(timed, key=lambda k: timed[k])
        out["best_pure_python_peer"] = best
        out["orset_join_10k_speedup_vs_best_pure_peer"] = round(
            timed[best] / ours["ORSet a | b 10k"], 1
        )
        out["orset_join_10k_speedup_vs_each_peer"] = {
            k: round(v / ours["ORSet a | b 10k"], 1) for k, v in timed.items()
        }
    if "fresh_apply_seconds" in pycrdt:
        out["pycrdt"] = {
            "ours_empty_join_over_pycrdt_fresh_apply": round(
                ours["ORSet empty |= b 10k"] / pycrdt["fresh_apply_seconds"], 2
            ),
            "ours_decode_join_over_pycrdt_fresh_apply": round(
                ours["ORSet empty |= decode(b) 10k"] / pycrdt["fresh_apply_seconds"], 2
            ),
            "ours_a_or_b_over_pycrdt_merge": round(
                ours["ORSet a | b 10k"] / pycrdt["merge_seconds"], 2
            ),
            "note": "time ratio ours/pycrdt: 1.0 = as fast; goal for decode + join <= 1",
        }
    out["memory_bytes_per_element"] = memory(20_000 if quick else 100_000)
    out["ormap_memory"] = ormap_memory(1_000)
    out["ormap_delta_cost"] = ormap_delta_cost(
        backends, budget, (1_000, 20_000 if quick else 100_000)
    )
    tick()
    out["delta_ratio"] = delta_ratio(
        backends, 10_000, (64, 256, 1024, 4096) if not quick else (256, 1024), budget
    )
    tick()
    out["goals"] = {
        "vc join/compare 1k native/pure >= 20": "see native_over_pure",
        "orset join 10k native/pure >= 10": "see native_over_pure['ORSet a | b 10k']",
        "orset join 10k vs best pure-Python peer >= 200": "see speedup_vs_best_pure_peer",
        "orset decode + join 10k vs pycrdt fresh apply <= 1": "see pycrdt",
        "ORSet.DELTA_RATIO at the plain/indexed crossover": "see delta_ratio",
        "one-dot delta 100k / 1k <= 2": "see one_dot_delta_100k_over_1k",
        "CausalContext a | b, 100k-dot clouds, native/pure": "see "
        "ctx_join_100k_dot_clouds_native_over_pure",
        "add after a lost delta ~ add without a cloud; out-of-order deltas finish": "see "
        "lost_delta",
        "orset memory ours / plain set <= 3": "see memory_bytes_per_element",
        "ormap memory after removing every key ~ empty": "see ormap_memory",
        "ormap one-key delta big / small map ~ 1": "see ormap_delta_cost",
    }
    return out


def delta_ratio(
    backends: list[tuple[str, ModuleType]], n: int, sizes: tuple[int, ...], budget: float
) -> dict[str, Any]:
    """Where ``ORSet.DELTA_RATIO`` should sit: for a delta of ``k`` fresh elements from
    another replica into an ``n``-element set (dot index built), the time of the plain
    kernel join over the time of the indexed join; the crossover (ratio 1) is at
    ``n / k``, interpolated log-linearly between the measured sizes."""
    target = ORSet()
    for x in range(n):
        target.add("replica-a", x)
    out: dict[str, Any] = {"n": n, "ORSet.DELTA_RATIO (active backend)": ORSet.DELTA_RATIO}
    for label, kernels in backends:
        with use_kernels(kernels):
            index = _backend.dotstore_index(target._store)
            rows: list[tuple[int, float]] = []
            for k in sizes:
                src, delta = ORSet(), ORSet()
                for x in range(k):
                    delta |= src.add("replica-src", -1 - x)

                def fresh(index: dict[str, dict[int, Any]] = index) -> tuple[Any, ...]:
                    c = target.copy()
                    c._index = {r: dict(by) for r, by in index.items()}
                    return (c,)

                def plain(c: ORSet, d: ORSet = delta) -> None:
                    a, b = c._ctx, d._ctx
                    c._index = None
                    _backend.dotstore_join_into(c._store, a.vv, a.cloud, d._store, b.vv, b.cloud)
                    a._join_into(b)

                def indexed(c: ORSet, d: ORSet = delta) -> None:
                    c._join_indexed(d)

                tp = per_call(plain, fresh, budget, repeat=3)
                ti = per_call(indexed, fresh, budget, repeat=3)
                rows.append((k, tp / ti))
        crossover: float | None = None
        for (k0, r0), (k1, r1) in itertools.pairwise(rows):
            if r0 >= 1 >= r1 and r0 != r1:
                t = (r0 - 1) / (r0 - r1)
                crossover = n / (k0 * (k1 / k0) ** t)
                break
        out[label] = {
            "plain_over_indexed_by_k": {str(k): round(r, 2) for k, r in rows},
            "crossover_n_over_k": round(crossover, 1) if crossover else "beyond the sizes",
        }
    return out


def lost_delta(backends: list[tuple[str, ModuleType]], n: int, budget: float) -> dict[str, Any]:
    """A replica that lost the first of ``n`` one-dot deltas holds every later dot in its
    cloud: ``ORSet.add`` there against an ``add`` into a set of the same size with no
    cloud (per backend), and the CPU seconds to apply the same ``n`` deltas one by one
    in a shuffled order (measured once: the cloud grows and folds as they arrive)."""
    out: dict[str, Any] = {"n": n}
    src = ORSet()
    with use_kernels(_pure):
        deltas = [src.add("replica-s", i) for i in range(n + 1)]
    order = deltas[:]
    random.Random(7).shuffle(order)
    for label, kernels in backends:
        with use_kernels(kernels):
            clouded, plain = ORSet(), ORSet()
            for d in deltas[1:]:
                clouded |= d
            for i in range(n):
                plain.add("replica-s", i)
            cloud_dots_before = clouded._ctx.cloud_size
            counter = iter(range(1, 10**12))

            def adding(s: ORSet, count: Iterator[int] = counter) -> Callable[[], tuple[Any, ...]]:
                return lambda: (s, "replica-s", -next(count))

            t_cloud = per_call(ORSet.add, adding(clouded), budget)
            t_plain = per_call(ORSet.add, adding(plain), budget)
            fresh = ORSet()
            started = time.process_time()
            for d in order:
                fresh |= d
            spent = time.process_time() - started
        out[label] = {
            "cloud_dots": cloud_dots_before,
            "add_seconds_with_cloud": round(t_cloud, 8),
            "add_seconds_without_cloud": round(t_plain, 8),
            "add_with_cloud_over_without": round(t_cloud / t_plain, 2),
            "out_of_order_deltas_seconds": round(spent, 3),
        }
    return out


def _delta_target(size: int) -> tuple[ORSet, Callable[[], ORSet]]:
    """An ORSet of ``size`` elements and a maker of the next one-dot delta from another
    replica, alternately an add and the remove of that add (the set keeps its size,
    every delta is new and arrives in order)."""
    target, src = ORSet(), ORSet()
    for x in range(size):
        target.add("replica-a", x)
    count = iter(range(10**12))

    def next_delta() -> ORSet:
        i = next(count)
        return src.add("replica-src", -1 - i // 2) if i % 2 == 0 else src.remove(-1 - i // 2)

    return target, next_delta


def _ormap_delta_target(size: int) -> tuple[ORMap, Callable[[], ORMap]]:
    """An ORMap of ``size`` GCounter keys and a maker of the next one-key delta from
    another replica, alternately an update of a new key and the remove of that key."""
    target, src = ORMap(), ORMap()
    bump = functools.partial(_bump, "replica-a")
    for x in range(size):
        target.update("replica-a", x, GCounter, bump)
    count = iter(range(10**12))
    src_bump = functools.partial(_bump, "replica-src")

    def next_delta() -> ORMap:
        i = next(count)
        key = ("src", i // 2)
        return src.update("replica-src", key, GCounter, src_bump) if i % 2 == 0 else (
            src.remove(key)
        )

    return target, next_delta


def ormap_delta_cost(backends: list[tuple[str, ModuleType]], budget: float,
                     sizes: tuple[int, int]) -> dict[str, Any]:
    """Seconds per one-key delta into an ORMap of ``sizes[0]`` and of ``sizes[1]`` keys,
    and the ratio big/small per backend (a delta should cost what it is)."""
    out: dict[str, Any] = {}
    for label, kernels in backends:
        with use_kernels(kernels):
            t = {}
            for size in sizes:
                target, next_delta = _ormap_delta_target(size)
                target |= next_delta()  # builds the dot index before the timing
                t[size] = per_call(
                    operator.ior, lambda target=target, nd=next_delta: (target, nd()), budget
                )
        small, big = sizes
        out[label] = {
            f"ormap_one_key_delta_seconds_{small // 1000}k_keys": round(t[small], 8),
            f"ormap_one_key_delta_seconds_{big // 1000}k_keys": round(t[big], 8),
            f"ormap_one_key_delta_{big // 1000}k_over_{small // 1000}k": round(
                t[big] / t[small], 2
            ),
        }
    return out


def summary(report: dict[str, Any]) -> list[tuple[str, str]]:
    """(label, value) lines for the ratio table of ``python -m bench``."""
    lines: list[tuple[str, str]] = []
    for row in report.get("rows", []):
        if "native_speedup" in row:
            lines.append(
                (
                    f"{row['kind']} {row['case']} @{row['size']}",
                    f"native/pure {row['native_speedup']:>7.2f}x  "
                    f"(pure {row['pure_us']:.1f} us, native {row['native_us']:.1f} us)",
                )
            )
    t = report.get("targets", {})
    for k, v in t.get("native_over_pure", {}).items():
        lines.append((f"TARGET {k}", f"native/pure {v:.2f}x"))
    if "orset_join_10k_speedup_vs_best_pure_peer" in t:
        lines.append(
            (
                f"TARGET ORSet a | b 10k vs best pure peer ({t['best_pure_python_peer']})",
                f"{t['orset_join_10k_speedup_vs_best_pure_peer']:.1f}x faster "
                f"(each: {t['orset_join_10k_speedup_vs_each_peer']})",
            )
        )
    for k, v in t.get("pycrdt", {}).items():
        if k != "note":
            lines.append((f"TARGET pycrdt {k}", f"{v:.2f} (ours/pycrdt time)"))
    for label, row in t.get("lost_delta", {}).items():
        if isinstance(row, dict):
            lines.append(
                (
                    f"TARGET lost delta, {row['cloud_dots']}-dot cloud ({label})",
                    f"add {row['add_with_cloud_over_without']:.2f}x the cloudless add; "
                    f"{t['lost_delta']['n']} out-of-order deltas in "
                    f"{row['out_of_order_deltas_seconds']:.2f} s",
                )
            )
    for k, v in t.get("one_dot_delta_100k_over_1k", {}).items():
        lines.append((f"TARGET one-dot delta 100k / 1k ({k})", f"{v:.2f}x (goal <= 2)"))
    for k, v in t.get("memory_bytes_per_element", {}).items():
        if k != "n":
            lines.append((f"memory/element {k}", str(v)))
    for k, v in t.get("delta_ratio", {}).items():
        if isinstance(v, dict):
            lines.append(
                (
                    f"delta ratio crossover ({k})",
                    f"n/k = {v['crossover_n_over_k']} (plain/indexed by k: "
                    f"{v['plain_over_indexed_by_k']})",
                )
            )
    for k, v in t.get("ormap_memory", {}).items():
        if "_over_" in k:
            lines.append((f"ORMap memory {k}", str(v)))
    for label, row in t.get("ormap_delta_cost", {}).items():
        for k, v in row.items():
            if "_over_" in k:
                lines.append((f"ORMap {k} ({label})", f"{v:.2f}x"))
    return lines


# -- pytest-benchmark suites (``pytest bench/bench_crdt.py``) ----------------------------

try:
    import pytest
except ImportError:  # pragma: no cover - run() needs no pytest
    pytest = None  # type: ignore[assignment]

if pytest is not None:
    _BACKENDS = ["pure", "native"]

    def _kernels_for(label: str) -> ModuleType:
        if label == "pure":
            return _pure
        nat = native_kernels()
        if nat is None:
            pytest.skip("vsm_phoenix.crdt._native is not built")
        return nat

    @pytest.mark.parametrize("size", SIZES)
    @pytest.mark.parametrize("backend", _BACKENDS)
    @pytest.mark.parametrize("kernel", KERNELS)
    def test_kernel(benchmark: Any, kernel: str, backend: str, size: int) -> None:
        kernels = _kernels_for(backend)
        make, _ = kernel_cases(size)[kernel]
        fn = getattr(kernels, kernel)
        benchmark.group = f"kernel {kernel} @{size}"
        benchmark.pedantic(fn, setup=lambda: (make(), {}), rounds=20, warmup_rounds=1)

    @pytest.mark.parametrize("size", SIZES)
    @pytest.mark.parametrize("backend", _BACKENDS)
    @pytest.mark.parametrize("case", list(type_cases(10)))
    def test_type(benchmark: Any, case: str, backend: str, size: int) -> None:
        kernels = _kernels_for(backend)
        fn, make = type_cases(size)[case]()
        benchmark.group = f"type {case} @{size}"
        with use_kernels(kernels):
            benchmark.pedantic(fn, setup=lambda: (make(), {}), rounds=10, warmup_rounds=1)

    def test_fixtures_are_not_mutated() -> None:
        """Sanity: the fixtures the suites share are never mutated by a case."""
        a, b = orset_pair(10)
        before = (a.to_bytes(), b.to_bytes())
        for make_case in type_cases(10).values():
            fn, make = make_case()
            with use_kernels(_pure):
                fn(*make())
        assert (a.to_bytes(), b.to_bytes()) == before
