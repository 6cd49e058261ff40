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

from cpython.bytes cimport PyBytes_GET_SIZE
from cpython.object cimport PyObject, PyTypeObject
from cpython.ref cimport Py_INCREF, Py_XDECREF
from cpython.tuple cimport PyTuple_GET_ITEM, PyTuple_GET_SIZE
from cpython.unicode cimport PyUnicode_GET_LENGTH

from types import MemberDescriptorType

from vsm_phoenix.crdt import Timestamp
from vsm_phoenix.errors import InvalidArgument

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
