"""Filesystem checks shared by everything that writes output (exports, reports, plots).

Kept in ``model`` (the lowest layer) so the export and the ``sim`` commands use one check.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


def cannot_create_in(directory: Path) -> str | None:
    """Why nothing can be created in the existing ``directory`` (None if something can).

    Probes for real -- creates and removes an empty temporary directory -- because
    permission bits do not tell the whole story (root ignores them; ``/proc`` refuses
    anyway; read-only mounts)."""
    if not os.access(directory, os.W_OK | os.X_OK):
        return "no write permission"
    try:
        probe = tempfile.mkdtemp(prefix=".foldaccel-probe-", dir=directory)
    except OSError as e:
        return e.strerror or str(e)
    os.rmdir(probe)
    return None


def nearest_existing(path: Path) -> Path:
    """``path`` itself or its nearest ancestor that exists."""
    p = Path(path).absolute()
    while not os.path.lexists(p) and p != p.parent:
        p = p.parent
    return p


__all__ = ["cannot_create_in", "nearest_existing"]
