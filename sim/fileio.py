"""Where generated files live, and atomic writes: readers never see a half-written file."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

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
