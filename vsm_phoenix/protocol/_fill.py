"""Selects the envelope kernels -- slot filling, the batch encoder and parser
(:mod:`vsm_phoenix.protocol._fill_pure`): the Cython
twin when it is built, else pure Python; ``VSM_PHOENIX_PURE=1`` at import time forces
pure, as for the CRDT and frame kernels. ``BACKEND`` names the active one."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

from vsm_phoenix._kernels import select
from vsm_phoenix.protocol import _fill_pure

kernels, BACKEND = select(_fill_pure, "vsm_phoenix.protocol._fill_native")

Layout: Callable[[type, Sequence[str]], Any] = kernels.Layout
build: Callable[[Any, Sequence[Any]], Any] = kernels.build
build_many: Callable[[Any, int, Sequence[Iterable[Any]]], list[Any]] = kernels.build_many
envelope_init: Callable[..., bool] = kernels.envelope_init
parse_columns: Callable[[object, int], list[list[Any]]] = kernels.parse_columns
encode_batch: Callable[[Any, Sequence[Any], Any, Any, Any, int], bytes | None] = (
    kernels.encode_batch)

__all__ = ["BACKEND", "Layout", "build", "build_many", "encode_batch", "envelope_init",
           "kernels", "parse_columns"]
