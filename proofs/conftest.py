"""Proofs need z3 (the ``proofs`` extra); without it they skip, saying so."""

from __future__ import annotations

import importlib.util

import pytest

if importlib.util.find_spec("z3") is None:  # pragma: no cover - z3 is in the dev extra
    collect_ignore_glob = ["test_*.py"]

    def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
        return None

    def pytest_report_header() -> str:
        return "proofs: z3 is not importable (install vsm-phoenix[proofs]): SMT proofs skipped"
