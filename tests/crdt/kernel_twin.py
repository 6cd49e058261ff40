"""``check_same``: run one kernel on both backends and require the same outcome.

Shared by the kernel test files of tests/crdt: the pure twin defines the result (or
the exception type) and the state its in-place arguments are left in; the native twin
must match both, including the types of the results and of the arguments after.
"""

from __future__ import annotations

import contextlib
import copy
import importlib
from collections.abc import Callable, Iterator
from types import ModuleType
from typing import Any

import pytest

from vsm_phoenix.crdt import _backend, _pure

native: ModuleType | None
try:
    native = importlib.import_module("vsm_phoenix.crdt._native")
except ImportError:  # pragma: no cover - depends on the build
    native = None

needs_native = pytest.mark.skipif(native is None, reason="vsm_phoenix.crdt._native not built")

#: The kernel modules to run a property on: pure always, native when built.
BACKENDS: list[ModuleType] = [_pure] if native is None else [_pure, native]


def _outcome(fn: Callable[..., Any], args: tuple[Any, ...]) -> tuple[str, Any]:
    try:
        return ("returned", fn(*args))
    except Exception as exc:  # the type is what we compare
        return ("raised", type(exc))


def _types(x: Any) -> Any:
    if type(x) in (tuple, list):
        return (type(x), [_types(v) for v in x])
    return type(x)


def check_same(name: str, *args: Any) -> Any:
    """Run ``name`` from both backends on deep copies of ``args`` (aliasing kept)."""
    assert native is not None
    p_args, n_args = copy.deepcopy(args), copy.deepcopy(args)
    p = _outcome(getattr(_pure, name), p_args)
    n = _outcome(getattr(native, name), n_args)
    assert p[0] == n[0], f"{name}: pure {p}, native {n}"
    if p[0] == "raised":
        assert p[1] is n[1], f"{name}: pure raised {p[1]}, native raised {n[1]}"
    else:
        assert _types(p[1]) == _types(n[1]) and p[1] == n[1], f"{name}: results differ"
    assert p_args == n_args, f"{name}: arguments left in different states"
    assert _types(p_args) == _types(n_args)
    for x, y in zip(p_args, n_args, strict=True):  # a dict's order is observable
        if type(x) is dict:
            assert list(x) == list(y), f"{name}: dict order differs"
    return n[1]


@contextlib.contextmanager
def kernels_of(mod: ModuleType) -> Iterator[None]:
    """Hand the types the kernels of ``mod`` (via ``_backend``) for the block."""
    names = [n for n in _backend.__all__ if n not in ("BACKEND", "kernels")]
    saved = {n: getattr(_backend, n) for n in names}
    try:
        for n in names:
            setattr(_backend, n, getattr(mod, n))
        yield
    finally:
        for n, fn in saved.items():
            setattr(_backend, n, fn)
