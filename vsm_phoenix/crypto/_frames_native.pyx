# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
# cython: infer_types=False, embedsignature=True
"""Cython twin of :mod:`vsm_phoenix.crypto._frames_pure`: the same functions, signatures,
results and exceptions.

Each function first checks that its arguments have the exact builtin types and ranges
its fast path assumes (``bytes``, ``dict``, ``tuple``, ``list``, ``int`` values that fit
64 bits); anything else is handed to the pure function, which therefore defines the
result and the exception for it. ``slide_mark`` validates every block it will read
before it changes one, so a fallback never sees a half-changed ring.
"""

from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from cpython.list cimport PyList_GET_ITEM, PyList_GET_SIZE
from cpython.object cimport PyObject
from cpython.tuple cimport PyTuple_GET_ITEM, PyTuple_GET_SIZE
from libc.string cimport memcmp, memcpy

from vsm_phoenix.crypto import _frames_pure

cdef extern from "Python.h":
    PyObject* PyDict_GetItemWithError(object p, object key) except? NULL

Shape = _frames_pure.Shape
uint = _frames_pure.uint
read_uint = _frames_pure.read_uint

cdef unsigned long long _U64_MAX = 0xFFFFFFFFFFFFFFFFULL


cdef inline Py_ssize_t _read(const unsigned char* d, Py_ssize_t p, Py_ssize_t end,
                             unsigned long long* out) noexcept:
    """C ``read_uint``: the offset after the number, or -1."""
    cdef unsigned char b
    cdef int width, i
    cdef unsigned long long n = 0, least
    if p >= end:
        return -1
    b = d[p]
    if b < 24:
        out[0] = b
        return p + 1
    if b == 0x18:
        width, least = 1, 24
    elif b == 0x19:
        width, least = 2, 0x100
    elif b == 0x1A:
        width, least = 4, 0x10000
    elif b == 0x1B:
        width, least = 8, 0x100000000ULL
    else:
        return -1
    if p + 1 + width > end:
        return -1
    for i in range(width):
        n = (n << 8) | d[p + 1 + i]
    if n < least:
        return -1
    out[0] = n
    return p + 1 + width


def match_header(data, end, shapes, lengths):
    cdef Py_ssize_t e, p, size, n, i, length, lm, lt
    cdef const unsigned char* d
    cdef unsigned long long seq = 0, ts = 0
    cdef PyObject* found = NULL
    cdef object shape, middle, tail, key
    if (type(data) is not bytes or type(end) is not int or type(shapes) is not dict
            or type(lengths) is not tuple):
        return _frames_pure.match_header(data, end, shapes, lengths)
    size = PyBytes_GET_SIZE(data)
    if not 0 <= end <= size:
        return _frames_pure.match_header(data, end, shapes, lengths)
    e = end
    d = <const unsigned char*>PyBytes_AS_STRING(data)
    n = PyTuple_GET_SIZE(lengths)
    for i in range(n):
        item = <object>PyTuple_GET_ITEM(lengths, i)
        if type(item) is not int or not 0 <= item < size:
            return _frames_pure.match_header(data, end, shapes, lengths)
        length = item
        p = 3 + length
        if p < e:
            key = PyBytes_FromStringAndSize(<const char*>d + 3, length)
            found = PyDict_GetItemWithError(shapes, key)
            if found != NULL:
                break
    if found == NULL:
        return None
    shape = <object>found
    if type(shape) is not tuple or PyTuple_GET_SIZE(shape) < 2:
        return _frames_pure.match_header(data, end, shapes, lengths)
    middle = <object>PyTuple_GET_ITEM(shape, 0)
    tail = <object>PyTuple_GET_ITEM(shape, 1)
    if type(middle) is not bytes or type(tail) is not bytes:
        return _frames_pure.match_header(data, end, shapes, lengths)
    lm = PyBytes_GET_SIZE(middle)
    lt = PyBytes_GET_SIZE(tail)
    p = _read(d, p, e, &seq)
    if p < 0 or p + lm > e or memcmp(d + p, PyBytes_AS_STRING(middle), lm) != 0:
        return None
    p = _read(d, p + lm, e, &ts)
    if p < 0 or p + lt != e or memcmp(d + p, PyBytes_AS_STRING(tail), lt) != 0:
        return None
    return shape, seq, ts


cdef inline Py_ssize_t _width(unsigned long long n) noexcept:
    if n < 24:
        return 1
    if n < 0x100:
        return 2
    if n < 0x10000:
        return 3
    if n < 0x100000000ULL:
        return 5
    return 9


cdef inline void _write(unsigned char* out, unsigned long long n, Py_ssize_t width) noexcept:
    cdef Py_ssize_t i
    if width == 1:
        out[0] = <unsigned char>n
        return
    out[0] = 0x18 if width == 2 else 0x19 if width == 3 else 0x1A if width == 5 else 0x1B
    for i in range(width - 1):
        out[width - 1 - i] = <unsigned char>(n & 0xFF)
        n >>= 8


def seal_header(fmt, head, middle, tail, seq, ts):
    cdef unsigned long long s, t
    cdef Py_ssize_t ws, wt, lf, lh, lm, lt, size, total, p
    cdef unsigned char* out
    if (type(fmt) is not bytes or type(head) is not bytes or type(middle) is not bytes
            or type(tail) is not bytes or type(seq) is not int or type(ts) is not int
            or not 0 <= seq <= _U64_MAX or not 0 <= ts <= _U64_MAX):
        return _frames_pure.seal_header(fmt, head, middle, tail, seq, ts)
    s = seq
    t = ts
    ws, wt = _width(s), _width(t)
    lf, lh = PyBytes_GET_SIZE(fmt), PyBytes_GET_SIZE(head)
    lm, lt = PyBytes_GET_SIZE(middle), PyBytes_GET_SIZE(tail)
    size = lh + ws + lm + wt + lt
    if size > 0xFFFF:
        return _frames_pure.seal_header(fmt, head, middle, tail, seq, ts)
    total = lf + 2 + size
    result = PyBytes_FromStringAndSize(NULL, total)
    out = <unsigned char*>PyBytes_AS_STRING(result)
    memcpy(out, PyBytes_AS_STRING(fmt), lf)
    p = lf
    out[p] = <unsigned char>(size >> 8)
    out[p + 1] = <unsigned char>(size & 0xFF)
    p += 2
    memcpy(out + p, PyBytes_AS_STRING(head), lh)
    p += lh
    _write(out + p, s, ws)
    p += ws
    memcpy(out + p, PyBytes_AS_STRING(middle), lm)
    p += lm
    _write(out + p, t, wt)
    p += wt
    memcpy(out + p, PyBytes_AS_STRING(tail), lt)
    return result


def slide_mark(blocks, highest, seq):
    cdef Py_ssize_t n, i, k
    cdef long long target, current, passed
    cdef unsigned long long s, word
    cdef object item
    if (type(blocks) is not list or type(highest) is not int or type(seq) is not int
            or not -1 <= highest < seq <= _U64_MAX):
        return _frames_pure.slide_mark(blocks, highest, seq)
    n = PyList_GET_SIZE(blocks)
    if n == 0:
        return _frames_pure.slide_mark(blocks, highest, seq)
    s = seq
    target = <long long>(s >> 6)
    current = -1 if highest < 0 else <long long>(<unsigned long long>highest >> 6)
    k = <Py_ssize_t>(<unsigned long long>target % <unsigned long long>n)
    item = <object>PyList_GET_ITEM(blocks, k)
    if type(item) is not int or not 0 <= item <= _U64_MAX:
        return _frames_pure.slide_mark(blocks, highest, seq)
    word = item
    if target != current:
        passed = target - current
        if passed > n:
            passed = n
        for i in range(1, passed + 1):
            blocks[<Py_ssize_t>((current + i) % n)] = 0
        word = 0  # (the target block is the last one passed over)
    word |= (<unsigned long long>1) << (s & 63)
    blocks[k] = word
