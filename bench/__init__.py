"""vsm-phoenix benchmarks.

``python -m bench [--quick] [--only NAME]`` (also ``make bench`` and ``vsm-phoenix
bench``) runs every suite in this folder side by side in one run -- each
``bench/bench_*.py`` that exposes ``run(quick: bool) -> dict`` -- prints a table of
ratios and writes the whole report as JSON to ``bench/results/<timestamp>.json``.
``pytest bench/<module>.py`` runs a module's pytest-benchmark suites. Benchmarks never
assert times.
"""
