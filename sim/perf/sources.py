"""The source files an estimate depends on, and their hash (the estimate caches' code key).

The set is not a hand-written list (lists drift: a new module the estimator starts to use is
forgotten and its edits leave stale cache entries). :func:`import_closure` follows every
``import`` statement of the estimator's entry modules -- including imports inside functions
-- through the repository's packages, statically (nothing is imported), so any module the
estimate can run is in the set and :func:`estimate_digest` changes when any of them does.
"""

from __future__ import annotations

import ast
import functools
import hashlib
from collections.abc import Callable, Iterable
from pathlib import Path

from sim.fileio import REPO_ROOT

#: The repository's packages (imports of anything else are library imports).
PACKAGES = ("model", "hw", "sim")
#: Where the estimator starts: the GEMM/program counts, layer/model estimates and sweeps.
ESTIMATE_ROOTS = ("sim.perf.estimate", "sim.perf.sweep", "sim.perf.gemm")


def module_file(name: str, root: Path = REPO_ROOT) -> Path | None:
    """The file of repository module ``name`` (``a.b`` -> ``a/b.py`` or ``a/b/__init__.py``)."""
    base = root.joinpath(*name.split("."))
    for path in (base.with_suffix(".py"), base / "__init__.py"):
        if path.is_file():
            return path
    return None


def _imported(path: Path, name: str, is_package: bool) -> set[str]:
    """Repository modules named by the import statements of one module."""
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative import: resolve against this module's package
                parts = name.split(".") if is_package else name.split(".")[:-1]
                parts = parts[:len(parts) - node.level + 1]
                base = ".".join(parts + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            out.add(base)
            out.update(f"{base}.{alias.name}" for alias in node.names)  # from pkg import mod
    return {m for m in out if m.split(".")[0] in PACKAGES}


def import_closure(roots: Iterable[str], root: Path = REPO_ROOT) -> list[Path]:
    """Files of the repository modules ``roots`` import, transitively, with the ``__init__``
    of every package on the way (sorted)."""
    seen: dict[str, Path] = {}
    todo = list(roots)
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        path = module_file(name, root)
        if path is None:
            continue  # "from pkg import function": not a module
        seen[name] = path
        parts = name.split(".")
        todo += [".".join(parts[:i]) for i in range(1, len(parts))]  # parent packages
        todo += sorted(_imported(path, name, path.name == "__init__.py"))
    return sorted(set(seen.values()))


def digest(paths: Iterable[Path], read: Callable[[Path], bytes] = Path.read_bytes,
           root: Path = REPO_ROOT) -> str:
    """sha256 over the relative names and contents of ``paths``."""
    h = hashlib.sha256()
    for path in sorted(paths):
        h.update(str(path.relative_to(root)).encode())
        h.update(b"\0")
        h.update(read(path))
        h.update(b"\0")
    return h.hexdigest()


@functools.cache
def estimate_digest() -> str:
    """Hash of every source file an estimate depends on (see the module docstring)."""
    return digest(import_closure(ESTIMATE_ROOTS))


__all__ = ["ESTIMATE_ROOTS", "digest", "estimate_digest", "import_closure", "module_file"]
