"""The estimator's on-disk result cache (GEMM counts, layer-stream counts).

An entry is ``$FOLDACCEL_BUILD_DIR/perf/<kind>/<sha256>.json`` (default ``build/perf/``),
keyed by what the result depends on plus a hash of every source file the estimate depends on
(``sim.perf.sources``), so editing any of them invalidates the entries. An unreadable entry
is recomputed and overwritten; a read-only build directory only costs speed;
``FOLDACCEL_PERF_CACHE=0`` turns the caches off, on disk and in memory (nothing is read,
written or hashed).

Every lookup records which cache answered (:func:`cache_answers`): ``memory`` (an in-process
``functools.lru_cache``, see :func:`memoized`), ``disk``, or ``none`` (computed), so an
estimate can say whether it was cold.
"""

from __future__ import annotations

import contextlib
import contextvars
import hashlib
import json
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

from sim.fileio import atomic_write, build_root
from sim.perf.sources import estimate_digest

T = TypeVar("T")


def cache_dir(kind: str) -> Path:
    return build_root() / "perf" / kind


def caches_on() -> bool:
    """False when ``FOLDACCEL_PERF_CACHE=0``: no disk or memory cache answers."""
    return os.environ.get("FOLDACCEL_PERF_CACHE", "1") != "0"


_answers: contextvars.ContextVar[list[str] | None] = contextvars.ContextVar(
    "foldaccel_cache_answers", default=None)


def _record(source: str) -> None:
    answers = _answers.get()
    if answers is not None:
        answers.append(source)


@contextlib.contextmanager
def cache_answers() -> Iterator[list[str]]:
    """Collect which cache answered each lookup inside the block (see :func:`answered_by`)."""
    answers: list[str] = []
    token = _answers.set(answers)
    try:
        yield answers
    finally:
        _answers.reset(token)


def answered_by(answers: list[str]) -> str:
    """``none`` if anything was computed, else ``disk`` if the disk answered, else
    ``memory``."""
    if not answers or "none" in answers:
        return "none"
    return "disk" if "disk" in answers else "memory"


def memoized(fn: Callable[..., T], *args: Any) -> T:
    """``fn(*args)`` for an ``lru_cache``-wrapped ``fn``, recording a memory hit; with the
    caches off, ``fn.__wrapped__(*args)``."""
    if not caches_on():
        return fn.__wrapped__(*args)
    hits = fn.cache_info().hits
    out = fn(*args)
    if fn.cache_info().hits > hits:
        _record("memory")
    return out


def disk_cached(kind: str, key: dict[str, Any], compute: Callable[[], T],
                dump: Callable[[T], dict], load: Callable[[dict], T]) -> T:
    """``compute()``, or the entry of ``key`` under ``kind`` (``load`` reads it back,
    ``dump`` writes it; see the module docstring)."""
    if not caches_on():
        _record("none")
        return compute()
    text = json.dumps({**key, "code": estimate_digest()}, sort_keys=True)
    path = cache_dir(kind) / f"{hashlib.sha256(text.encode()).hexdigest()}.json"
    if path.is_file():
        try:
            out = load(json.loads(path.read_text()))
            _record("disk")
            return out
        except (OSError, ValueError, TypeError):
            pass  # unreadable entry: recompute and overwrite
    _record("none")
    out = compute()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(path, json.dumps(dump(out)).encode())
    except OSError:
        pass  # a read-only build dir only costs speed
    return out


__all__ = ["answered_by", "cache_answers", "cache_dir", "caches_on", "disk_cached",
           "memoized"]
