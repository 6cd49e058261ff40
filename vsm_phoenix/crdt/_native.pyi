"""Type stub of the Cython kernels: the same signatures as :mod:`vsm_phoenix.crdt._pure`."""

from array import array
from collections.abc import Hashable
from typing import Any, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")

Dot = tuple[str, int]
Dots = Dot | set[Dot]
Counts = array[int] | list[int]

EQUAL: int
BEFORE: int
AFTER: int
CONCURRENT: int

def vc_join_into(a: dict[str, int], b: dict[str, int]) -> None: ...
def vc_leq(a: dict[str, int], b: dict[str, int]) -> bool: ...
def vc_compare(a: dict[str, int], b: dict[str, int]) -> int: ...
def vc_join_arrays(
    ai: Any, an: Counts, bi: Any, bn: Counts
) -> tuple[array[int], Counts]: ...
def vc_leq_arrays(ai: Any, an: Counts, bi: Any, bn: Counts) -> bool: ...
def vc_compare_arrays(ai: Any, an: Counts, bi: Any, bn: Counts) -> int: ...
def ctx_contains(vv: dict[str, int], cloud: set[Dot], r: str, c: int) -> bool: ...
def ctx_compact(vv: dict[str, int], cloud: set[Dot]) -> None: ...
def ctx_add(vv: dict[str, int], cloud: set[Dot], r: str, c: int) -> None: ...
def ctx_join_into(
    vv: dict[str, int], cloud: set[Dot], o_vv: dict[str, int], o_cloud: set[Dot]
) -> None: ...
def ctx_leq(
    vv: dict[str, int], cloud: set[Dot], o_vv: dict[str, int], o_cloud: set[Dot]
) -> bool: ...
def dotstore_join(
    a: dict[K, Dots],
    a_vv: dict[str, int],
    a_cloud: set[Dot],
    b: dict[K, Dots],
    b_vv: dict[str, int],
    b_cloud: set[Dot],
) -> dict[K, Dots]: ...
def dotstore_join_into(
    a: dict[K, Dots],
    a_vv: dict[str, int],
    a_cloud: set[Dot],
    b: dict[K, Dots],
    b_vv: dict[str, int],
    b_cloud: set[Dot],
) -> None: ...
def dotstore_index(entries: dict[K, Dots]) -> dict[str, dict[int, K]]: ...
def dotstore_join_delta(
    a: dict[K, Dots],
    index: dict[str, dict[int, K]],
    a_vv: dict[str, int],
    a_cloud: set[Dot],
    b: dict[K, Dots],
    b_vv: dict[str, int],
    b_cloud: set[Dot],
) -> None: ...
def dotstore_copy(entries: dict[K, Dots]) -> dict[K, Dots]: ...
def dotfun_join(
    a: dict[int, V],
    a_vv: dict[str, int],
    a_cloud: set[Dot],
    b: dict[int, V],
    b_vv: dict[str, int],
    b_cloud: set[Dot],
) -> dict[int, V]: ...
def dotstore_decode(
    state: Any, vv: dict[str, int], cloud: set[Dot]
) -> dict[Any, Dots]: ...
def dotstore_parse(
    data: object, max_size: int, tag: bytes
) -> tuple[dict[Any, Dots], dict[str, int], set[Dot]] | None: ...
