# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
# cython: infer_types=False, embedsignature=True
"""Cython twin of :mod:`vsm_phoenix.protocol._fill_pure`: the same functions, signatures,
results and exceptions.

A :class:`Layout` reads the offsets of the class's slots from their member descriptors
once (and refuses anything but an object slot); :func:`build` and :func:`build_many`
then allocate each object with ``PyType_GenericAlloc`` (the ``tp_alloc`` of every class
defined by a ``class`` statement: what ``object.__new__`` calls)
and store each value at its slot's offset, holding a new reference to it, exactly what
the slot's own setter does, without a call per slot.
"""

from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from libc.stdlib cimport free, realloc
from libc.string cimport memcmp, memcpy
from cpython.object cimport PyObject, PyTypeObject
from cpython.ref cimport Py_INCREF, Py_XDECREF
from cpython.tuple cimport PyTuple_GET_ITEM, PyTuple_GET_SIZE
from cpython.unicode cimport PyUnicode_GET_LENGTH

from types import MemberDescriptorType

from vsm_phoenix.crdt import Timestamp
from vsm_phoenix.errors import DecodeError, InvalidArgument
from vsm_phoenix.protocol import _fill_pure

cdef extern from "Python.h":
    ctypedef struct PyMemberDef:
        int type
        Py_ssize_t offset
        int flags
    ctypedef struct PyMemberDescrObject:
        PyMemberDef* d_member
    long long PyLong_AsLongLongAndOverflow(object o, int* overflow) except? -1
    PyObject* PyIter_Next(object o) except? NULL
    PyObject* PyType_GenericAlloc(PyTypeObject* tp, Py_ssize_t nitems)
    object PyUnicode_DecodeUTF8(const char* s, Py_ssize_t size, const char* errors)
    const char* PyUnicode_AsUTF8AndSize(object s, Py_ssize_t* size) except NULL

cdef extern from "structmember.h":
    int T_OBJECT_EX
    int READONLY

cdef enum:
    MAX_SLOTS = 32

cdef Py_ssize_t MAX_ID_BYTES = 32
cdef Py_ssize_t MAX_NAME_CHARS = 256
cdef long long MAX_LOGICAL = 0xFFFFFFFF
cdef object _Timestamp = Timestamp
cdef unsigned long _HEAPTYPE = 1 << 9  # Py_TPFLAGS_HEAPTYPE: allocated by PyType_GenericAlloc


cdef class Layout:
    """The slots ``names`` of ``cls`` (a class whose instances ``object.__new__``
    makes), in the order values are given."""

    cdef readonly object cls
    cdef readonly tuple names
    cdef Py_ssize_t count
    cdef Py_ssize_t offsets[MAX_SLOTS]

    def __init__(self, cls, names):
        cdef PyMemberDef* member
        names = tuple(names)
        if not isinstance(cls, type) or len(names) > MAX_SLOTS:
            raise InvalidArgument(f"a layout is at most {MAX_SLOTS} slots of a class")
        for i, name in enumerate(names):
            descriptor = next((k.__dict__[name] for k in cls.__mro__ if name in k.__dict__),
                              None)
            if type(descriptor) is not MemberDescriptorType:
                raise InvalidArgument(f"{name!r} is not a slot of {cls.__name__}")
            member = (<PyMemberDescrObject*>descriptor).d_member
            if member.type != T_OBJECT_EX or member.flags & READONLY:
                raise InvalidArgument(f"{name!r} is not a writable object slot")
            self.offsets[i] = member.offset
        if cls.__new__ is not object.__new__ or not cls.__flags__ & _HEAPTYPE:
            raise InvalidArgument(f"{cls.__name__} is not a plain class with slots")
        self.cls = cls
        self.names = names
        self.count = len(names)


cdef inline void _store(object obj, Py_ssize_t offset, object value) noexcept:
    """What a slot's setter does: hold a new reference to ``value``, drop the old one."""
    cdef PyObject** slot = <PyObject**>((<char*><PyObject*>obj) + offset)
    cdef PyObject* old = slot[0]
    Py_INCREF(value)
    slot[0] = <PyObject*>value
    Py_XDECREF(old)


cdef inline object _alloc(object cls):
    cdef PyObject* p = PyType_GenericAlloc(<PyTypeObject*>cls, 0)
    if p == NULL:
        raise MemoryError()
    obj = <object>p  # (takes a reference of its own)
    Py_XDECREF(p)
    return obj


def build(Layout layout, values):
    """One object of ``layout.cls`` whose slots hold ``values`` (one per slot)."""
    cdef Py_ssize_t i
    if type(values) is not tuple:
        values = tuple(values)
    if PyTuple_GET_SIZE(values) != layout.count:
        raise InvalidArgument(f"{layout.cls.__name__} takes {layout.count} values")
    obj = _alloc(layout.cls)
    for i in range(layout.count):
        _store(obj, layout.offsets[i], <object>PyTuple_GET_ITEM(values, i))
    return obj


def build_many(Layout layout, Py_ssize_t n, columns):
    """``n`` objects of ``layout.cls``; object ``i`` takes value ``i`` of every column
    (one column per slot, each yielding at least ``n`` values)."""
    cdef Py_ssize_t i, j
    cdef PyObject* item
    cdef list objs
    columns = tuple(columns)
    if len(columns) != layout.count:
        raise InvalidArgument(f"{layout.cls.__name__} takes {layout.count} columns")
    objs = [_alloc(layout.cls) for i in range(n)]
    for j in range(layout.count):
        it = iter(columns[j])
        for i in range(n):
            item = PyIter_Next(it)
            if item == NULL:
                raise InvalidArgument("a column holds fewer values than objects")
            _store(objs[i], layout.offsets[j], <object>item)
            Py_XDECREF(item)
    return objs


cdef inline bint _id(object x) noexcept:
    return type(x) is bytes and 0 < PyBytes_GET_SIZE(x) <= MAX_ID_BYTES


cdef inline bint _name(object x) noexcept:
    return type(x) is str and 0 < PyUnicode_GET_LENGTH(x) <= MAX_NAME_CHARS


cdef inline bint _uint(object x, long long limit):
    cdef int overflow = 0
    cdef long long v
    if type(x) is not int:
        return False
    v = PyLong_AsLongLongAndOverflow(x, &overflow)
    return overflow == 0 and 0 <= v <= limit


def envelope_init(Layout layout, env, message_id, msg_type, sender, recipient, topic,
                  correlation_id, timestamp, hop_limit, causal_context, payload):
    """Fill ``env``'s ten slots (``layout``: the envelope's fields in order) when every
    field has its exact builtin type and range, and answer ``True``; else answer
    ``False`` and change nothing."""
    if not (
        layout.count == 10 and isinstance(env, layout.cls)
        and _id(message_id) and _name(msg_type) and _name(sender)
        and (recipient is None) != (topic is None)
        and _name(recipient if topic is None else topic)
        and (correlation_id is None or _id(correlation_id))
        and type(timestamp) is _Timestamp and PyTuple_GET_SIZE(timestamp) == 3
        and _uint(<object>PyTuple_GET_ITEM(timestamp, 0), 0x7FFFFFFFFFFFFFFF)
        and _uint(<object>PyTuple_GET_ITEM(timestamp, 1), MAX_LOGICAL)
        and _name(<object>PyTuple_GET_ITEM(timestamp, 2))
        and _uint(hop_limit, 255)
        and (causal_context is None or type(causal_context) is bytes)
        and type(payload) is bytes
    ):
        return False
    _store(env, layout.offsets[0], message_id)
    _store(env, layout.offsets[1], msg_type)
    _store(env, layout.offsets[2], sender)
    _store(env, layout.offsets[3], recipient)
    _store(env, layout.offsets[4], topic)
    _store(env, layout.offsets[5], correlation_id)
    _store(env, layout.offsets[6], timestamp)
    _store(env, layout.offsets[7], hop_limit)
    _store(env, layout.offsets[8], causal_context)
    _store(env, layout.offsets[9], payload)
    return True


# -- envelope batches: the eleven columns, parsed and checked in one pass -----------------

cdef Py_ssize_t _MAX_SIZE = 64 * 1024 * 1024  # vsm_phoenix.cbor.DEFAULT_MAX_SIZE
cdef Py_ssize_t _MAX_ENVELOPES = _fill_pure.MAX_ENVELOPES
cdef unsigned long long _BATCH_FORMAT = _fill_pure.BATCH_FORMAT
cdef unsigned long long _BATCH_ITEMS = _fill_pure.BATCH_ITEMS
cdef unsigned long long _MAX_COMPRESSION = _fill_pure.MAX_COMPRESSION


cdef struct _Reader:
    const unsigned char* d
    Py_ssize_t p
    Py_ssize_t end


cdef int _fail(str why) except -1:
    raise DecodeError(f"malformed envelope batch: {why}")


cdef int _head(_Reader* r, int* major, unsigned long long* value) except -1:
    """Read one head in its shortest form (RFC 8949 §4.2.1); definite lengths only."""
    cdef unsigned char b, info
    cdef unsigned long long v = 0
    cdef int width, i
    if r.p >= r.end:
        _fail("truncated")
    b = r.d[r.p]
    r.p += 1
    major[0] = b >> 5
    info = b & 31
    if info < 24:
        value[0] = info
        return 0
    if info > 27:
        _fail("not canonical CBOR (an indefinite length or a reserved head)")
    width = 1 << (info - 24)
    if r.end - r.p < width:
        _fail("truncated")
    for i in range(width):
        v = (v << 8) | r.d[r.p + i]
    r.p += width
    if (width == 1 and v < 24) or (width == 2 and v < 0x100) or (
            width == 4 and v < 0x10000) or (width == 8 and v < 0x100000000):
        _fail("not canonical CBOR (a head longer than needed)")
    value[0] = v
    return 0


cdef Py_ssize_t _array(_Reader* r) except -1:
    cdef int major
    cdef unsigned long long n
    _head(r, &major, &n)
    if major != 4:
        _fail("a column is not an array")
    if n < 1 or n > <unsigned long long>_MAX_ENVELOPES:
        _fail("a column holds 0 or too many entries")
    return <Py_ssize_t>n


cdef object _bytes(_Reader* r, Py_ssize_t lo, Py_ssize_t hi, bint optional):
    cdef int major
    cdef unsigned long long n
    if optional and r.p < r.end and r.d[r.p] == 0xf6:
        r.p += 1
        return None
    _head(r, &major, &n)
    if major != 2:
        _fail("a byte string was expected")
    if n > <unsigned long long>(r.end - r.p):
        _fail("truncated")
    if <Py_ssize_t>n < lo or (hi >= 0 and <Py_ssize_t>n > hi):
        _fail("a byte string out of its column's bounds")
    out = PyBytes_FromStringAndSize(<const char*>(r.d + r.p), <Py_ssize_t>n)
    r.p += <Py_ssize_t>n
    return out


cdef object _uints_of(_Reader* r, Py_ssize_t n, unsigned long long limit, bint limited):
    cdef int major
    cdef unsigned long long v
    cdef Py_ssize_t i
    cdef list out = [None] * n
    for i in range(n):
        _head(r, &major, &v)
        if major != 0:
            _fail("an unsigned integer was expected")
        if limited and v > limit:
            _fail("an integer out of its column's range")
        out[i] = v
    return out


cdef list _names_of(_Reader* r, Py_ssize_t n):
    """Text strings of 1..256 code points; a run of equal strings shares one object."""
    cdef int major
    cdef unsigned long long size
    cdef Py_ssize_t i, last_at = -1, last_size = -1
    cdef list out = [None] * n
    last = None
    for i in range(n):
        _head(r, &major, &size)
        if major != 3:
            _fail("a text string was expected")
        if size > <unsigned long long>(r.end - r.p):
            _fail("truncated")
        if last is not None and <Py_ssize_t>size == last_size and memcmp(
                r.d + r.p, r.d + last_at, last_size) == 0:
            out[i] = last
        else:
            try:
                text = PyUnicode_DecodeUTF8(<const char*>(r.d + r.p), <Py_ssize_t>size, NULL)
            except UnicodeDecodeError:
                _fail("a text string that is not UTF-8")
            if not 0 < PyUnicode_GET_LENGTH(text) <= MAX_NAME_CHARS:
                _fail("a name out of 1..256 characters")
            out[i] = last = text
            last_at, last_size = r.p, <Py_ssize_t>size
        r.p += <Py_ssize_t>size
    return out


cdef list _bytes_of(_Reader* r, Py_ssize_t n, Py_ssize_t lo, Py_ssize_t hi, bint optional):
    cdef Py_ssize_t i
    cdef list out = [None] * n
    for i in range(n):
        out[i] = _bytes(r, lo, hi, optional)
    return out


def parse_columns(data, max_payload):
    """The eleven columns of an envelope batch, every value checked for its column's type
    and range (sizes up to ``max_payload``); ``DecodeError`` for anything else (see the
    pure twin). Input that is not ``bytes`` goes to the pure twin."""
    cdef _Reader r
    cdef int major
    cdef unsigned long long v, limit
    cdef Py_ssize_t n
    cdef bint limited = True
    if type(data) is not bytes or type(max_payload) is not int:
        return _fill_pure.parse_columns(data, max_payload)
    if max_payload < 0:
        limited, limit = False, 0  # every size is refused below
    elif max_payload >= 0xFFFFFFFFFFFFFFFF:
        limited, limit = False, 0
    else:
        limit = max_payload
    r.d = <const unsigned char*>PyBytes_AS_STRING(data)
    r.p = 0
    r.end = PyBytes_GET_SIZE(data)
    if r.end == 0 or r.end > _MAX_SIZE:
        _fail("empty or larger than the CBOR size limit")
    _head(&r, &major, &v)
    if major != 4 or v != _BATCH_ITEMS:
        _fail("not an array of 12 items")
    _head(&r, &major, &v)
    if major != 0 or v != _BATCH_FORMAT:
        _fail("unsupported format")
    n = _array(&r)
    ids = _bytes_of(&r, n, 1, MAX_ID_BYTES, False)
    columns = [ids]
    for what in range(10):
        if _array(&r) != n:
            _fail("columns of unequal length")
        if what == 0:
            columns.append(_names_of(&r, n))
        elif what == 1:
            columns.append(_bytes_of(&r, n, 1, MAX_ID_BYTES, True))
        elif what == 2:
            columns.append(_uints_of(&r, n, 0x7FFFFFFFFFFFFFFF, True))
        elif what == 3:
            columns.append(_uints_of(&r, n, MAX_LOGICAL, True))
        elif what == 4:
            columns.append(_names_of(&r, n))
        elif what == 5:
            columns.append(_uints_of(&r, n, 255, True))
        elif what == 6:
            columns.append(_bytes_of(&r, n, 0, -1, True))
        elif what == 7:
            columns.append(_uints_of(&r, n, _MAX_COMPRESSION, True))
        elif what == 8:
            if max_payload < 0:
                _fail("a size above max_payload")
            columns.append(_uints_of(&r, n, limit, limited))
        else:
            columns.append(_bytes_of(&r, n, 0, -1, False))
    if r.p != r.end:
        _fail("trailing bytes")
    return columns


# -- envelope batches: encoding the columns straight from the envelopes' slots ------------

cdef struct _Buf:
    unsigned char* d
    Py_ssize_t n
    Py_ssize_t cap


cdef int _grow(_Buf* b, Py_ssize_t more) except -1:
    cdef Py_ssize_t cap
    cdef unsigned char* d
    if b.n + more <= b.cap:
        return 0
    cap = max(2 * b.cap, b.n + more, 256)
    d = <unsigned char*>realloc(b.d, cap)
    if d == NULL:
        raise MemoryError()
    b.d, b.cap = d, cap
    return 0


cdef int _put_head(_Buf* b, int major, unsigned long long v) except -1:
    cdef int width, i
    _grow(b, 9)
    if v < 24:
        b.d[b.n] = (major << 5) | <unsigned char>v
        b.n += 1
        return 0
    if v < 0x100:
        width, b.d[b.n] = 1, (major << 5) | 24
    elif v < 0x10000:
        width, b.d[b.n] = 2, (major << 5) | 25
    elif v < 0x100000000:
        width, b.d[b.n] = 4, (major << 5) | 26
    else:
        width, b.d[b.n] = 8, (major << 5) | 27
    for i in range(width):
        b.d[b.n + width - i] = <unsigned char>(v >> (8 * i))
    b.n += width + 1
    return 0


cdef int _put_raw(_Buf* b, int major, const char* s, Py_ssize_t size) except -1:
    _put_head(b, major, <unsigned long long>size)
    _grow(b, size)
    memcpy(b.d + b.n, s, size)
    b.n += size
    return 0


cdef inline PyObject* _slot(object obj, Py_ssize_t offset) noexcept:
    return (<PyObject**>((<char*><PyObject*>obj) + offset))[0]


cdef int _put_value(_Buf* b, PyObject* p, int kind) except -1:
    """Append one column value; ``kind``: 0 bytes, 1 optional bytes, 2 str, 3 uint.
    Returns 1 when the value is not of the kind (nothing appended), else 0."""
    cdef Py_ssize_t size
    cdef const char* s
    cdef int overflow = 0
    cdef long long v
    if p == NULL:
        return 1
    value = <object>p
    if kind == 1 and value is None:
        _grow(b, 1)
        b.d[b.n] = 0xf6
        b.n += 1
        return 0
    if kind <= 1:
        if type(value) is not bytes:
            return 1
        _put_raw(b, 2, PyBytes_AS_STRING(value), PyBytes_GET_SIZE(value))
        return 0
    if kind == 2:
        if type(value) is not str:
            return 1
        try:
            s = PyUnicode_AsUTF8AndSize(value, &size)
        except UnicodeEncodeError:  # a lone surrogate: not UTF-8 text
            return 1
        _put_raw(b, 3, s, size)
        return 0
    if type(value) is not int:
        return 1
    v = PyLong_AsLongLongAndOverflow(value, &overflow)
    if overflow != 0 or v < 0:
        return 1
    _put_head(b, 0, <unsigned long long>v)
    return 0


# The eleven columns after the format: the envelope's field (slot index) each column
# takes, the part of it (a timestamp's 0, 1, 2; -1: the whole value), and what it holds
# (0 bytes, 1 optional bytes, 2 str, 3 uint; -1: written by encode_batch itself).
cdef int _COLUMN_SLOT[11]
cdef int _COLUMN_PART[11]
cdef int _COLUMN_KIND[11]
_COLUMN_SLOT[:] = [0, 1, 5, 6, 6, 6, 7, 8, -1, -1, 9]
_COLUMN_PART[:] = [-1, -1, -1, 0, 1, 2, -1, -1, -1, -1, -1]
_COLUMN_KIND[:] = [0, 2, 1, 3, 3, 2, 3, 1, -1, -1, 0]


cdef inline bint _holds(object e, Py_ssize_t offset, object expected) noexcept:
    """Whether slot ``offset`` of ``e`` holds ``expected`` (``None`` or a str)."""
    cdef PyObject* p = _slot(e, offset)
    if p == NULL:
        return False
    if <object>p is expected:
        return True
    return expected is not None and type(<object>p) is str and <str>p == <str>expected


def encode_batch(Layout layout, envelopes, sender, recipient, topic, threshold):
    """The batch of ``envelopes`` when it is the plain case (see the pure twin), else
    ``None``."""
    cdef _Buf b
    cdef Py_ssize_t n, i, c, limit
    cdef PyObject* p
    cdef int part
    if type(envelopes) is not list:
        envelopes = list(envelopes)
    n = len(envelopes)
    if (layout.count != 10 or not 1 <= n <= _MAX_ENVELOPES or type(threshold) is not int
            or (recipient is None) == (topic is None) or threshold < 0):
        return None
    limit = threshold if threshold < 0x7FFFFFFFFFFFFFFF else 0x7FFFFFFFFFFFFFFF
    if (sender is not None and type(sender) is not str) or (
            recipient is not None and type(recipient) is not str) or (
            topic is not None and type(topic) is not str):
        return None
    for e in envelopes:  # the type, the address and the payload sizes, before any work
        if type(e) is not layout.cls:
            return None
        if not (_holds(e, layout.offsets[2], sender) and _holds(e, layout.offsets[3], recipient)
                and _holds(e, layout.offsets[4], topic)):
            return None
        p = _slot(e, layout.offsets[9])
        if p == NULL or type(<object>p) is not bytes or PyBytes_GET_SIZE(<object>p) >= limit:
            return None
    b.d, b.n, b.cap = NULL, 0, 0
    try:
        _put_head(&b, 4, _BATCH_ITEMS)
        _put_head(&b, 0, _BATCH_FORMAT)
        for c in range(11):
            _put_head(&b, 4, <unsigned long long>n)
            for e in envelopes:
                if c == 8:  # compression: none
                    _put_head(&b, 0, 0)
                    continue
                if c == 9:  # sizes
                    _put_head(&b, 0, <unsigned long long>PyBytes_GET_SIZE(
                        <object>_slot(e, layout.offsets[9])))
                    continue
                p = _slot(e, layout.offsets[_COLUMN_SLOT[c]])
                part = _COLUMN_PART[c]
                if part >= 0:
                    if p == NULL or type(<object>p) is not _Timestamp or PyTuple_GET_SIZE(
                            <object>p) != 3:
                        return None
                    p = PyTuple_GET_ITEM(<object>p, part)
                if _put_value(&b, p, _COLUMN_KIND[c]):
                    return None
        return PyBytes_FromStringAndSize(<const char*>b.d, b.n)
    finally:
        free(b.d)
