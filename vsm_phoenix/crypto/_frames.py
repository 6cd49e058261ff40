"""Selects the frame kernels (:mod:`vsm_phoenix.crypto._frames_pure`): the Cython twin
when it is built, else pure Python; ``VSM_PHOENIX_PURE=1`` at import time forces pure,
as for the CRDT kernels. ``BACKEND`` names the active one."""

from __future__ import annotations

from collections.abc import Callable

from vsm_phoenix._kernels import select
from vsm_phoenix.crypto import _frames_pure
from vsm_phoenix.crypto._frames_pure import Shape

kernels, BACKEND = select(_frames_pure, "vsm_phoenix.crypto._frames_native")

match_header: Callable[
    [bytes, int, dict[bytes, Shape], tuple[int, ...]], tuple[Shape, int, int] | None
] = kernels.match_header
seal_header: Callable[[bytes, bytes, bytes, bytes, int, int], bytes] = kernels.seal_header
slide_mark: Callable[[list[int], int, int], None] = kernels.slide_mark

__all__ = ["BACKEND", "kernels", "match_header", "seal_header", "slide_mark"]
