"""The contract every CRDT in the catalogue honours.

A CRDT here is a *join-semilattice* with a bottom element:

* ``T()`` is bottom;
* ``a | b`` returns the least upper bound (a new object), ``a |= b`` joins in place;
* ``a <= b`` is the lattice order (``a <= b`` iff ``a | b == b``);
* ``a == b`` is state equality, and equal states have equal ``to_bytes()``;
* ``value`` is the plain Python value the state stands for;
* mutators change the replica in place and *return the delta*, an object of the same
  type with ``before | delta == after`` (delta-state CRDTs).

Joining two different types raises ``TypeError`` before anything changes. Subclasses
implement ``_join_into``, ``_leq``, ``_eq_state``, ``_encode_state``, ``_from_state``
and ``copy``; the operators and the codec plumbing live here, once.
"""

from __future__ import annotations

import abc
from typing import Any, ClassVar, Self

from vsm_phoenix.crdt import codec
from vsm_phoenix.errors import DecodeError, TypeMismatch

__all__ = ["CRDT"]


class CRDT(abc.ABC):
    """Base class of every state-based CRDT."""

    #: Type tag in the canonical encoding; unique per class.
    TAG: ClassVar[str]
    #: Format version of ``_encode_state``'s layout.
    VERSION: ClassVar[int] = 1

    __slots__ = ()
    __hash__ = None  # type: ignore[assignment]  # mutable: not hashable

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "TAG" in cls.__dict__:
            codec.register(cls.TAG, cls)

    # -- what subclasses provide -------------------------------------------------------

    @abc.abstractmethod
    def _join_into(self, other: Self) -> None:
        """``self := self ⊔ other``; ``other`` has the same type and is compatible."""

    def _check_compatible(self, other: Self) -> None:  # noqa: B027 - optional hook
        """Raise before any change when ``other`` cannot be joined into ``self``
        (beyond being the same type). Default: always compatible."""

    @abc.abstractmethod
    def _leq(self, other: Self) -> bool:
        """The lattice order against a same-type ``other``."""

    @abc.abstractmethod
    def _eq_state(self, other: Self) -> bool:
        """State equality against a same-type ``other``."""

    @abc.abstractmethod
    def _encode_state(self) -> Any:
        """The canonical CBOR-able layout of the state (one layout per state)."""

    @classmethod
    @abc.abstractmethod
    def _from_state(cls, state: Any) -> Self:
        """Build from a decoded layout, validating every invariant (``DecodeError``)."""

    @abc.abstractmethod
    def copy(self) -> Self:
        """An independent deep copy."""

    def __copy__(self) -> Self:
        """``copy.copy(x)`` is :meth:`copy`: a replica never shares its state."""
        return self.copy()

    @property
    @abc.abstractmethod
    def value(self) -> Any:
        """The plain Python value this state stands for."""

    # -- the lattice -----------------------------------------------------------------

    def _same_type(self, other: object, op: str) -> Self:
        if type(other) is not type(self):
            raise TypeMismatch(
                f"cannot {op} {type(self).__name__} with {type(other).__name__}"
            )
        return other

    def __or__(self, other: object) -> Self:
        o = self._same_type(other, "join")
        self._check_compatible(o)
        out = self.copy()
        out._join_into(o)
        return out

    def __ior__(self, other: object) -> Self:
        o = self._same_type(other, "join")
        self._check_compatible(o)
        if o is not self:
            self._join_into(o)
        return self

    def join(self, other: Self) -> Self:
        """Join ``other`` into this replica in place and return ``self``."""
        self |= other
        return self

    def __le__(self, other: object) -> bool:
        o = self._same_type(other, "compare")
        self._check_compatible(o)
        return self._leq(o)

    def __ge__(self, other: object) -> bool:
        o = self._same_type(other, "compare")
        return o.__le__(self)

    def __lt__(self, other: object) -> bool:
        return self.__le__(other) and not self.__eq__(other)

    def __gt__(self, other: object) -> bool:
        return self.__ge__(other) and not self.__eq__(other)

    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        return self._eq_state(other)

    # -- the codec -------------------------------------------------------------------

    def to_bytes(self) -> bytes:
        """Canonical CBOR ``[tag, version, state]``; equal states give equal bytes."""
        return codec.encode_object(self.TAG, self.VERSION, self._encode_state())

    @classmethod
    def from_bytes(cls, data: bytes, max_size: int = codec.MAX_DECODE_BYTES) -> Self:
        """Decode bytes produced by :meth:`to_bytes` of this type.

        Raises ``DecodeError`` for anything else (wrong tag, unknown version,
        malformed, non-canonical or invalid state) and ``TypeError`` for non-bytes.
        """
        raw, (tag, version, state) = codec.parse_object(data, max_size)
        if tag != cls.TAG:
            raise DecodeError(f"expected type tag {cls.TAG!r}, got {tag!r}")
        return cls._decode_checked(raw, version, state)

    @classmethod
    def _decode_checked(cls, raw: bytes, version: int, state: Any) -> Self:
        """Build from a parsed ``state`` and require that ``raw`` is exactly its
        canonical encoding.

        One comparison covers every canonicality rule at once -- deterministic CBOR,
        no trailing bytes, sorted members, no redundant entries, compact contexts, in
        nested values too -- because the encoder only ever writes the one canonical
        form of a state.
        """
        obj = cls._decode_state(version, state)
        if obj.to_bytes() != raw:
            raise DecodeError(f"{cls.TAG}: not the canonical encoding of its state")
        return obj

    @classmethod
    def _decode_state(cls, version: int, state: Any) -> Self:
        """Build from a parsed layout, validating every invariant. The caller checks
        canonical form (see :meth:`_decode_checked`)."""
        if version != cls.VERSION:
            raise DecodeError(f"unknown {cls.TAG} format version {version}")
        try:
            obj = cls._from_state(state)
        except DecodeError:
            raise
        except (TypeError, ValueError, KeyError, IndexError, AttributeError, RecursionError) as exc:
            raise DecodeError(f"invalid {cls.TAG} state: {exc}") from exc
        return obj

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.value!r})"
