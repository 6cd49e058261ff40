"""Selects the kernel backend: native (Cython) when built, else pure Python.

``VSM_PHOENIX_PURE=1`` in the environment at import time forces the pure backend.
``BACKEND`` names the active one (``"native"`` or ``"pure"``).
"""

from __future__ import annotations

from vsm_phoenix._kernels import select
from vsm_phoenix.crdt import _pure

kernels, BACKEND = select(_pure, "vsm_phoenix.crdt._native")

vc_join_into = kernels.vc_join_into
vc_leq = kernels.vc_leq
vc_compare = kernels.vc_compare
vc_join_arrays = kernels.vc_join_arrays
vc_leq_arrays = kernels.vc_leq_arrays
vc_compare_arrays = kernels.vc_compare_arrays
ctx_contains = kernels.ctx_contains
ctx_add = kernels.ctx_add
ctx_compact = kernels.ctx_compact
ctx_join_into = kernels.ctx_join_into
ctx_leq = kernels.ctx_leq
dotstore_join = kernels.dotstore_join
dotstore_join_into = kernels.dotstore_join_into
dotstore_index = kernels.dotstore_index
dotstore_join_delta = kernels.dotstore_join_delta
dotstore_copy = kernels.dotstore_copy
dotstore_decode = kernels.dotstore_decode
dotstore_parse = kernels.dotstore_parse
dotfun_join = kernels.dotfun_join

__all__ = [
    "BACKEND",
    "ctx_add",
    "ctx_compact",
    "ctx_contains",
    "ctx_join_into",
    "ctx_leq",
    "dotfun_join",
    "dotstore_copy",
    "dotstore_decode",
    "dotstore_join",
    "dotstore_index",
    "dotstore_join_delta",
    "dotstore_join_into",
    "dotstore_parse",
    "kernels",
    "vc_compare",
    "vc_compare_arrays",
    "vc_join_arrays",
    "vc_join_into",
    "vc_leq",
    "vc_leq_arrays",
]
