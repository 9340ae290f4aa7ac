"""`make bench`: run the benchmark scripts and print their tables.

A benchmark is a function decorated with :func:`benchmark`; it measures *ratios within one
run* (ours vs a reference on the same machine) and returns ``(title, header, rows)``.
Benchmark modules are listed in :data:`BENCH_MODULES`. Benchmarks print; tests never assert
wall-clock time.

Usage: ``python -m sim.bench [NAME ...]`` (default: all).
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import os
import sys
import time
from collections.abc import Callable, Iterator

from sim.cli.common import format_table

BENCH_MODULES = [
    "sim.bench.rtl_cache",
    "sim.bench.gemm",
    "sim.bench.estimate",
    "sim.bench.vector",
    "sim.bench.layer",
    "sim.bench.roofline",
    "sim.bench.peers",
]

Result = tuple[str, list[str], list[list]]
_REGISTRY: dict[str, Callable[[], Result]] = {}


def benchmark(name: str) -> Callable[[Callable[[], Result]], Callable[[], Result]]:
    """Register ``fn`` as benchmark ``name``."""
    def deco(fn: Callable[[], Result]) -> Callable[[], Result]:
        _REGISTRY[name] = fn
        return fn
    return deco


def best_time(fn: Callable[[], object], repeat: int = 1) -> float:
    """Best-of-``repeat`` wall time of ``fn()`` in seconds."""
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


@contextlib.contextmanager
def perf_caches_off() -> Iterator[None]:
    """``FOLDACCEL_PERF_CACHE=0`` inside the block (cold estimates), restored after it."""
    saved = os.environ.get("FOLDACCEL_PERF_CACHE")
    os.environ["FOLDACCEL_PERF_CACHE"] = "0"
    try:
        yield
    finally:
        if saved is None:
            os.environ.pop("FOLDACCEL_PERF_CACHE", None)
        else:
            os.environ["FOLDACCEL_PERF_CACHE"] = saved


def load_all() -> dict[str, Callable[[], Result]]:
    for mod in BENCH_MODULES:
        importlib.import_module(mod)
    return _REGISTRY


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sim.bench", description=__doc__)
    parser.add_argument("names", nargs="*", help="benchmarks to run (default: all)")
    args = parser.parse_args(argv)
    registry = load_all()
    unknown = [n for n in args.names if n not in registry]
    if unknown:
        print(f"unknown benchmark(s) {unknown}; known: {sorted(registry)}", file=sys.stderr)
        return 2
    for name in args.names or list(registry):
        t0 = time.monotonic()
        print(f"== {name}", file=sys.stderr, flush=True)
        title, header, rows = registry[name]()
        print(f"\n{title}  ({time.monotonic() - t0:.1f} s)")
        print(format_table(header, rows))
    return 0

