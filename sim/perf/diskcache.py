"""The estimator's on-disk result cache (GEMM counts, layer-stream counts).

An entry is ``$FOLDACCEL_BUILD_DIR/perf/<kind>/<sha256>.json`` (default ``build/perf/``),
keyed by what the result depends on plus a hash of every source file the estimate depends on
(``sim.perf.sources``), so editing any of them invalidates the entries. An unreadable entry
is recomputed and overwritten; a read-only build directory only costs speed;
``FOLDACCEL_PERF_CACHE=0`` turns the disk cache off (nothing is read, written or hashed).
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from sim.fileio import atomic_write, build_root
from sim.perf.sources import estimate_digest

T = TypeVar("T")


def cache_dir(kind: str) -> Path:
    return build_root() / "perf" / kind


def disk_cached(kind: str, key: dict[str, Any], compute: Callable[[], T],
                dump: Callable[[T], dict], load: Callable[[dict], T]) -> T:
    """``compute()``, or the entry of ``key`` under ``kind`` (``load`` reads it back,
    ``dump`` writes it; see the module docstring)."""
    if os.environ.get("FOLDACCEL_PERF_CACHE", "1") == "0":
        return compute()
    text = json.dumps({**key, "code": estimate_digest()}, sort_keys=True)
    path = cache_dir(kind) / f"{hashlib.sha256(text.encode()).hexdigest()}.json"
    if path.is_file():
        try:
            return load(json.loads(path.read_text()))
        except (OSError, ValueError, TypeError):
            pass  # unreadable entry: recompute and overwrite
    out = compute()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(path, json.dumps(dump(out)).encode())
    except OSError:
        pass  # a read-only build dir only costs speed
    return out


__all__ = ["cache_dir", "disk_cached"]
