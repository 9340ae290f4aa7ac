"""RTL runner: Amaranth component -> Verilog -> Verilator build -> cocotb test module.

Both expensive steps are cached on disk under :func:`build_root` (``build/`` in the repo,
or ``$FOLDACCEL_BUILD_DIR``):

* Verilog, keyed by the design name, its parameters, the sources of the ``hw`` package and
  the Amaranth version (:func:`component_verilog`);
* Verilator builds, keyed by a hash of the Verilog text, the build flags and the toolchain
  versions (:func:`build`). A build directory is reused only after a completed build.

:func:`run_cocotb` runs one cocotb test module (many tests) in one simulator process and
returns per-test results parsed from cocotb's xUnit XML.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import importlib.metadata
import json
import logging
import os
import re
import shutil
import subprocess
import tempfile
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sim.fileio import REPO_ROOT, atomic_write, build_root
from sim.rtl.toolchain import Toolchain, ToolchainError, activate, fst_supported

log = logging.getLogger(__name__)

HW_DIR = REPO_ROOT / "hw"

# Flags every Verilator build gets. Amaranth's Verilog trips lint warnings (TOOLCHAIN.md).
BASE_BUILD_ARGS = ("-Wno-fatal", "-Wno-lint", "-Wno-style", "--x-assign", "fast",
                   "--x-initial", "fast")


class RtlBuildError(RuntimeError):
    """Verilator or the C++ build failed; the message carries the log tail and its path."""


class RtlRunError(RuntimeError):
    """The simulator did not produce results (crash, timeout, missing test module)."""


@contextlib.contextmanager
def fresh_build_root(prefix: str = "foldaccel-") -> Iterator[Path]:
    """Point :func:`build_root` at a new temporary directory (a cold cache) for the block;
    restore the previous setting and delete the directory afterwards."""
    saved = os.environ.get("FOLDACCEL_BUILD_DIR")
    with tempfile.TemporaryDirectory(prefix=prefix) as tmp:
        os.environ["FOLDACCEL_BUILD_DIR"] = tmp
        try:
            yield Path(tmp)
        finally:
            if saved is None:
                os.environ.pop("FOLDACCEL_BUILD_DIR", None)
            else:
                os.environ["FOLDACCEL_BUILD_DIR"] = saved


def _sha(*parts: str | bytes) -> str:
    h = hashlib.sha256()
    for p in parts:
        h.update(p.encode() if isinstance(p, str) else p)
        h.update(b"\0")
    return h.hexdigest()


def hw_source_digest() -> str:
    """Hash of every ``hw/**/*.py`` file: generated Verilog depends on all of them."""
    h = hashlib.sha256()
    for path in sorted(HW_DIR.rglob("*.py")):
        h.update(str(path.relative_to(HW_DIR)).encode())
        h.update(path.read_bytes())
    return h.hexdigest()


# Bump when the post-processing of generated Verilog changes (part of the Verilog cache key).
_VERILOG_POSTPROCESS = "meminit-loop-1"
_ZERO_INIT = re.compile(r"^\s*(\\\S+ |[A-Za-z_][\w$]*)\[(\d+)\] = (\d+)'[hd]0+;$")


def compact_memory_init(text: str) -> str:
    """Replace ``initial`` blocks that zero a memory word by word with one loop.

    Yosys writes ``mem[i] = 128'h0;`` for every word of every Amaranth memory; for the host and
    SRAM memories that is >100k lines, which Verilator compiles into huge functions (minutes
    of C++ build). A block that zeroes words ``0..n-1`` of one memory becomes a ``for`` loop;
    any other ``initial`` block (e.g. a lookup table's contents) is left as it is.
    """
    lines = text.split("\n")
    out: list[str] = []
    i, n_loops = 0, 0
    while i < len(lines):
        if lines[i].strip() != "initial begin":
            out.append(lines[i])
            i += 1
            continue
        j = i + 1
        names, indices, width = set(), [], None
        while j < len(lines) and (m := _ZERO_INIT.match(lines[j])):
            names.add(m.group(1))
            indices.append(int(m.group(2)))
            width = m.group(3)
            j += 1
        closes = j < len(lines) and lines[j].strip() == "end"
        if closes and len(names) == 1 and indices == list(range(len(indices))) and indices:
            name = names.pop()
            out += [f"  initial begin : foldaccel_zero_init_{n_loops}",
                    "    integer i;",
                    f"    for (i = 0; i < {len(indices)}; i = i + 1) {name}[i] = {width}'h0;",
                    "  end"]
            n_loops += 1
            i = j + 1
        else:
            out.append(lines[i])
            i += 1
    return "\n".join(out)


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """Exclusive inter-process lock (parallel tests may build the same design)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def component_verilog(name: str, factory: Callable[[], Any], params: Mapping[str, Any],
                      config_toml: str | None = None) -> str:
    """Verilog of ``factory()`` (an Amaranth component) as module ``name``, cached on disk.

    ``params`` must hold everything ``factory`` depends on besides the ``hw`` sources.
    With ``config_toml``, the config the design came from is stored beside the Verilog.
    """
    amaranth_version = importlib.metadata.version("amaranth")
    key = _sha(name, json.dumps(params, sort_keys=True, default=str), hw_source_digest(),
               amaranth_version, _VERILOG_POSTPROCESS)[:16]
    vdir = build_root() / "verilog"
    vfile = vdir / f"{name}-{key}.v"
    if vfile.is_file():
        return vfile.read_text()
    with _locked(vdir / f".{name}-{key}.lock"):
        if vfile.is_file():
            return vfile.read_text()
        from amaranth.back import verilog
        t0 = time.monotonic()
        text = compact_memory_init(verilog.convert(factory(), name=name, emit_src=False))
        log.info("generated Verilog for %s in %.1f s -> %s", name, time.monotonic() - t0, vfile)
        if config_toml is not None:
            atomic_write(vdir / f"{name}-{key}.toml", config_toml)
        atomic_write(vfile, text)
    return text


@dataclass(frozen=True)
class RtlDesign:
    """Verilog sources ready for Verilator and the top module to simulate."""

    toplevel: str
    sources: Mapping[str, str]  # file name -> Verilog text
    build_args: tuple[str, ...] = ()
    timing: bool = False  # build with --timing (needed for `always #d` clocks in a wrapper)
    # C++ optimisation of the Verilated model's hot code (make's OPT_FAST/OPT_GLOBAL; the
    # constructor-style "slow" files stay unoptimised). None keeps Verilator's -Os. On the
    # 16x16 accelerator -O0 compiles ~5x faster than -Os and simulates slower: right for
    # short test simulations, wrong for speed benchmarks.
    opt: str | None = None

    def key(self, tc: Toolchain, waves: str) -> str:
        """Hash of everything the compiled simulator depends on."""
        parts = [self.toplevel, *BASE_BUILD_ARGS, *self.build_args, str(self.timing),
                 str(self.opt),
                 str(waves), tc.verilator_version, tc.gxx_version, tc.makeflags,
                 importlib.metadata.version("cocotb")]
        for fname in sorted(self.sources):
            parts += [fname, self.sources[fname]]
        return _sha(*parts)[:16]


def _tail(path: Path, n: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-n:])
    except OSError:
        return "(no log)"


def _quiet(runner: Any) -> Any:
    """cocotb's runner logs every command at INFO; keep that for ``-v`` only."""
    runner.log.setLevel(logging.DEBUG if log.isEnabledFor(logging.DEBUG) else logging.WARNING)
    return runner


def waves_format(tc: Toolchain) -> str:
    """``"fst"`` when the FST writer can be compiled, else ``"vcd"`` (with a warning)."""
    if fst_supported(tc):
        return "fst"
    log.warning("FST waveforms need the lz4 headers (fix: apt-get install liblz4-dev); "
                "writing VCD instead")
    return "vcd"


def build(design: RtlDesign, waves: bool = False) -> Path:
    """Compile ``design`` with Verilator (cached); return the build directory.

    ``waves=True`` builds with tracing: FST when possible, otherwise VCD.
    """
    tc = activate()
    fmt = waves_format(tc) if waves else ""
    key = design.key(tc, fmt)
    bdir = build_root() / "rtl" / f"{design.toplevel}-{key}"
    stamp = bdir / ".complete"
    if stamp.is_file():
        return bdir
    with _locked(bdir.with_name(bdir.name + ".lock")):
        if stamp.is_file():
            return bdir
        if bdir.exists():  # an interrupted build: start over (stale PCH files break make)
            shutil.rmtree(bdir)
        src = bdir / "src"
        src.mkdir(parents=True)
        paths = []
        for fname, text in design.sources.items():
            (src / fname).write_text(text)
            paths.append(src / fname)
        args = list(BASE_BUILD_ARGS) + list(design.build_args)
        if design.timing:
            args.append("--timing")
        if fmt == "fst":
            args.append("--trace-fst")
        from cocotb_tools.runner import get_runner
        runner = _quiet(get_runner("verilator"))
        build_log = bdir / "build.log"
        t0 = time.monotonic()
        log.info("building %s with Verilator %s (cache miss, key %s)", design.toplevel,
                 tc.verilator_version, key)
        saved_makeflags = os.environ.get("MAKEFLAGS")
        if design.opt is not None:  # make reads command-line variables from MAKEFLAGS
            os.environ["MAKEFLAGS"] = " ".join(
                f for f in (saved_makeflags, f"OPT_FAST={design.opt} OPT_GLOBAL={design.opt}")
                if f)
        try:
            runner.build(sources=paths, hdl_toplevel=design.toplevel, build_dir=bdir,
                         build_args=args, waves=waves, timescale=("1ns", "1ps"),
                         log_file=build_log)
        except (RuntimeError, subprocess.CalledProcessError, SystemExit, OSError) as e:
            raise RtlBuildError(f"Verilator build of {design.toplevel} failed ({e}); log "
                                f"{build_log}:\n{_tail(build_log)}") from None
        finally:
            if saved_makeflags is None:
                os.environ.pop("MAKEFLAGS", None)
            else:
                os.environ["MAKEFLAGS"] = saved_makeflags
        log.info("built %s in %.1f s", design.toplevel, time.monotonic() - t0)
        stamp.write_text(json.dumps({"key": key, "seconds": time.monotonic() - t0}))
    return bdir


@dataclass
class TestOutcome:
    """One cocotb test's result: ``status`` is ``"passed"``, ``"failed"`` or ``"skipped"``."""

    name: str
    status: str
    message: str = ""
    sim_time_ns: float = 0.0

    @property
    def passed(self) -> bool:
        return self.status == "passed"


@dataclass
class RunResult:
    """Results of one simulator process running a cocotb test module.

    ``expected`` names the tests the caller needs: the run is :attr:`ok` only if each of them
    ran and passed; a skipped test never counts as passed.
    """

    tests: list[TestOutcome] = field(default_factory=list)
    run_dir: Path = Path()
    log_file: Path = Path()
    waves_file: Path | None = None
    wall_s: float = 0.0
    expected: tuple[str, ...] = ()

    @property
    def failed(self) -> list[TestOutcome]:
        return [t for t in self.tests if t.status == "failed"]

    @property
    def skipped(self) -> list[TestOutcome]:
        return [t for t in self.tests if t.status == "skipped"]

    @property
    def missing(self) -> list[str]:
        """Expected tests that did not run."""
        ran = {t.name for t in self.tests}
        return [name for name in self.expected if name not in ran]

    @property
    def ok(self) -> bool:
        return bool(self.tests) and not (self.failed or self.skipped or self.missing)

    def summary(self) -> str:
        n_pass = sum(t.passed for t in self.tests)
        head = f"{n_pass} passed, {len(self.failed)} failed, {len(self.skipped)} skipped"
        if self.missing:
            head += f", {len(self.missing)} expected but not run"
        lines = [f"{head} ({self.wall_s:.1f} s, log {self.log_file})"]
        lines += [f"FAILED {t.name}: {t.message}" for t in self.failed]
        lines += [f"SKIPPED {t.name}: {t.message or 'skipped'}" for t in self.skipped]
        lines += [f"NOT RUN {name}" for name in self.missing]
        return "\n".join(lines)


def parse_results(xml_file: Path) -> list[TestOutcome]:
    """Per-test outcomes of a cocotb xUnit results file."""
    outcomes = []
    for case in ET.parse(xml_file).getroot().iter("testcase"):
        status, node = "passed", None
        for tag, kind in (("failure", "failed"), ("error", "failed"), ("skipped", "skipped")):
            node = case.find(tag)
            if node is not None:
                status = kind
                break
        msg = "" if node is None else (node.get("message") or node.text or status).strip()
        props = {p.get("name"): p.get("value") for p in case.iter("property")}
        outcomes.append(TestOutcome(case.get("name", "?"), status, msg,
                                    float(props.get("sim_time_duration") or 0)))
    return outcomes


def run_cocotb(design: RtlDesign, test_module: str, *, testcase: str | list[str] | None = None,
               env: Mapping[str, str] | None = None, waves: bool = False,
               seed: int = 0, expect: Iterable[str] | None = None) -> RunResult:
    """Build (cached) and run the cocotb tests in ``test_module`` against ``design``.

    ``env`` reaches the test module as environment variables (use it for parameters).
    ``expect`` names the tests that must run and pass for the result to be ``ok`` (default:
    the ``testcase`` filter, if any). Raises :class:`RtlRunError` when the simulator produced
    no results.
    """
    bdir = build(design, waves)
    runs = build_root() / "runs"
    runs.mkdir(parents=True, exist_ok=True)
    run_dir = Path(tempfile.mkdtemp(prefix=f"{design.toplevel}-", dir=runs))
    results = run_dir / "results.xml"
    sim_log = run_dir / "sim.log"
    from cocotb_tools.runner import get_runner
    runner = _quiet(get_runner("verilator"))
    t0 = time.monotonic()
    try:
        runner.test(test_module=test_module, hdl_toplevel=design.toplevel,
                    hdl_toplevel_lang="verilog", build_dir=bdir, test_dir=run_dir,
                    testcase=testcase, extra_env=dict(env or {}), waves=waves, seed=seed,
                    results_xml=str(results), log_file=sim_log)
    except SystemExit:
        pass  # cocotb exits when tests fail; the results file says which
    except (RuntimeError, subprocess.CalledProcessError) as e:
        raise RtlRunError(f"simulator failed ({e}); log {sim_log}:\n{_tail(sim_log)}") from None
    wall = time.monotonic() - t0
    if not results.is_file():
        raise RtlRunError(f"simulation of {design.toplevel} with {test_module} produced no "
                          f"results; log {sim_log}:\n{_tail(sim_log)}")
    tests = parse_results(results)
    if not tests:
        raise RtlRunError(f"{test_module} ran no tests (filter {testcase!r}); log {sim_log}")
    dumps = [run_dir / "dump.fst", run_dir / "dump.vcd"]
    wf = next((p for p in dumps if p.is_file()), None)
    if expect is None:
        expect = [testcase] if isinstance(testcase, str) else (testcase or [])
    return RunResult(tests, run_dir, sim_log, wf, wall, tuple(expect))


__all__ = [
    "RtlBuildError", "RtlDesign", "RtlRunError", "RunResult", "TestOutcome", "ToolchainError",
    "build", "build_root", "component_verilog", "run_cocotb",
]
