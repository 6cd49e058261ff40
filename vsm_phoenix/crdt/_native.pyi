"""Type stub of the Cython kernels: the same signatures as :mod:`vsm_phoenix.crdt._pure`."""

from array import array
from collections.abc import Hashable
from typing import Any, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")

Dot = tuple[str, int]
Dots = int | tuple[int, ...]
Counts = array[int] | list[int]
Cloud = dict[str, array[int] | list[int]]

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
SPARSE: int

def ctx_contains(vv: dict[str, int], cloud: Cloud, r: str, c: int) -> bool: ...
def ctx_compact(vv: dict[str, int], cloud: Cloud) -> None: ...
def ctx_add(vv: dict[str, int], cloud: Cloud, r: str, c: int) -> None: ...
def ctx_join_into(
    vv: dict[str, int], cloud: Cloud, o_vv: dict[str, int], o_cloud: Cloud
) -> None: ...
def ctx_leq(
    vv: dict[str, int], cloud: Cloud, o_vv: dict[str, int], o_cloud: Cloud
) -> bool: ...
def dotstore_join(
    a: dict[K, Dots],
    a_vv: dict[str, int],
    a_cloud: Cloud,
    b: dict[K, Dots],
    b_vv: dict[str, int],
    b_cloud: Cloud,
) -> dict[K, Dots]: ...
def dotstore_join_into(
    a: dict[K, Dots],
    a_vv: dict[str, int],
    a_cloud: Cloud,
    b: dict[K, Dots],
    b_vv: dict[str, int],
    b_cloud: Cloud,
) -> None: ...
def dotstore_index(entries: dict[K, Dots]) -> dict[str, dict[int, K]]: ...
def dotstore_join_delta(
    a: dict[K, Dots],
    index: dict[str, dict[int, K]],
    a_vv: dict[str, int],
    a_cloud: Cloud,
    b: dict[K, Dots],
    b_vv: dict[str, int],
    b_cloud: Cloud,
) -> None: ...
def dotstore_copy(entries: dict[K, Dots]) -> dict[K, Dots]: ...
def dotfun_join(
    a: dict[int, V],
    a_vv: dict[str, int],
    a_cloud: Cloud,
    b: dict[int, V],
    b_vv: dict[str, int],
    b_cloud: Cloud,
) -> dict[int, V]: ...
def dotstore_decode(
    state: Any, vv: dict[str, int], cloud: Cloud
) -> dict[Any, Dots]: ...
def dotstore_parse(
    data: object, max_size: int, tag: bytes
) -> tuple[dict[Any, Dots], dict[str, int], Cloud] | None: ...
