"""Where generated files live, and atomic writes: readers never see a half-written file."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]


def build_root() -> Path:
    """Where generated Verilog, Verilator builds, run directories and estimate caches live:
    ``$FOLDACCEL_BUILD_DIR``, default ``build/`` in the repository."""
    root = os.environ.get("FOLDACCEL_BUILD_DIR")
    return Path(root) if root else REPO_ROOT / "build"


def atomic_write(path: Path, data: bytes | str) -> None:
    """Write ``data`` to a temporary file beside ``path``, then rename it over ``path``.

    On any failure the temporary file is removed and an existing ``path`` is left as it was.
    """
    if isinstance(data, str):
        data = data.encode()
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp creates 0600; give the file normal modes
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def read_json(path: Path) -> Any | None:
    """The JSON value in ``path``, or None if it is missing or unreadable (a cache entry
    that is then recomputed)."""
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None


class OutputPathError(ValueError):
    """An output path that cannot be written; the message names it, the option and the fix."""


def check_writable(path: Path, what: str, *, directory: bool = False) -> None:
    """Raise :class:`OutputPathError` unless ``path`` (a file, or with ``directory`` a
    directory) can be created or replaced; ``what`` names it for the user (e.g. ``--out``).
    Leaves nothing behind."""
    from model.paths import cannot_create_in, nearest_existing

    path = Path(path)
    if path.exists():
        if directory and not path.is_dir():
            raise OutputPathError(f"{what} '{path}' exists and is not a directory; fix: "
                                  "choose another path")
        if not directory and path.is_dir():
            raise OutputPathError(f"{what} '{path}' is a directory; fix: name a file")
    base = nearest_existing(path if directory else path.parent)
    if not base.is_dir():
        raise OutputPathError(f"{what} '{path}' cannot be created: '{base}' is a file, not a "
                              "directory; fix: choose another path")
    why = cannot_create_in(base)
    if why:
        raise OutputPathError(f"{what} '{path}' cannot be written: {why} in '{base}'; fix: "
                              "choose a writable location")


def make_output_dir(path: Path, what: str) -> Path:
    """Create the output directory ``path`` (and its parents) after :func:`check_writable`."""
    path = Path(path)
    check_writable(path, what, directory=True)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise OutputPathError(f"{what} '{path}' cannot be created: {e.strerror}; fix: choose "
                              "a writable location") from None
    return path
