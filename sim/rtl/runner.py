"""RTL runner: Amaranth component -> Verilog -> Verilator build -> cocotb test module.

Both expensive steps are cached on disk under :func:`build_root` (``build/`` in the repo,
or ``$FOLDACCEL_BUILD_DIR``):

* Verilog, keyed by the design name, its parameters, the sources of the ``hw`` package and
  the Amaranth version (:func:`component_verilog`);
* Verilator builds, keyed by a hash of the Verilog text, the build flags and the toolchain
  versions (:func:`build`). A build directory is reused only after a completed build.

:func:`run_cocotb` runs one cocotb test module (many tests) in one simulator process and
returns per-test results parsed from cocotb's xUnit XML. Its scratch directory
(``build/runs/<top>-XXXX``) is removed after a successful run unless asked to keep it
(``keep_runs=True`` or ``FOLDACCEL_KEEP_RUNS=1``); waveforms go to ``build/waves/`` or a given
path. Every entry point first checks that the build directory is writable
(:func:`writable_build_root`); a cache-missing build shows progress on a terminal.
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
import sys
import tempfile
import threading
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from model.paths import cannot_create_in
from sim.fileio import REPO_ROOT, atomic_write, build_root
from sim.rtl.toolchain import Toolchain, ToolchainError, activate, fst_supported

log = logging.getLogger(__name__)

HW_DIR = REPO_ROOT / "hw"

# Flags every Verilator build gets. Amaranth's Verilog trips lint warnings (TOOLCHAIN.md).
BASE_BUILD_ARGS = ("-Wno-fatal", "-Wno-lint", "-Wno-style", "--x-assign", "fast",
                   "--x-initial", "fast")


class RtlBuildError(RuntimeError):
    """Verilator or the C++ build failed; the message carries the first error and the log's
    path (the log stays on disk until the next build attempt of the same design)."""


class RtlRunError(RuntimeError):
    """The simulator did not produce results (crash, timeout, missing test module)."""


def writable_build_root() -> Path:
    """:func:`build_root`, created if needed; raise :class:`ToolchainError` if it cannot be
    created or written. Every RTL entry point calls this before doing any work."""
    root = build_root()
    try:
        root.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=root):
            pass
    except OSError as e:
        why = f"{e.strerror}: {e.filename}" if e.strerror and e.filename else str(e)
        env = os.environ.get("FOLDACCEL_BUILD_DIR")
        setting = (f"set by FOLDACCEL_BUILD_DIR={env}" if env else
                   "the default; FOLDACCEL_BUILD_DIR is not set")
        raise ToolchainError(
            f"cannot create or write the build directory {root} ({setting}): {why}; fix: "
            f"point FOLDACCEL_BUILD_DIR at a writable directory (e.g. export "
            f"FOLDACCEL_BUILD_DIR=/tmp/foldaccel-build) or make {root} writable") from None
    return root


def keep_runs_requested(keep_runs: bool = False) -> bool:
    """Whether run scratch directories are kept after a successful run: ``keep_runs`` or
    the environment override ``FOLDACCEL_KEEP_RUNS=1`` (read here only)."""
    env = os.environ.get("FOLDACCEL_KEEP_RUNS", "").strip().lower()
    return keep_runs or env not in ("", "0", "false", "no")


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
    root = writable_build_root()
    amaranth_version = importlib.metadata.version("amaranth")
    key = _sha(name, json.dumps(params, sort_keys=True, default=str), hw_source_digest(),
               amaranth_version, _VERILOG_POSTPROCESS)[:16]
    vdir = root / "verilog"
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


# The line that starts a build failure: Verilator's ``%Error``, g++'s ``error:`` (also
# ``fatal error:``) or the linker's ``undefined reference``; make's ``***`` only if none.
_ERROR_LINE = re.compile(r"^%Error|\berror:|undefined reference")
_MAKE_ERROR = re.compile(r"^make(\[\d+\])?: \*\*\*")


def build_failure(log_file: Path, context: int = 3) -> str:
    """The first error in a build log with ``context`` lines after it, the line number and
    the log's path; the last 30 lines when no line looks like an error."""
    try:
        lines = log_file.read_text(errors="replace").splitlines()
    except OSError as e:
        return f"no build log ({log_file}: {e.strerror})"
    hits = [i for i, line in enumerate(lines) if _ERROR_LINE.search(line)]
    hits = hits or [i for i, line in enumerate(lines) if _MAKE_ERROR.search(line)]
    if not hits:
        return f"no error line found; last 30 lines of {log_file}:\n{_tail(log_file)}"
    first = hits[0]
    where = "Verilator" if lines[first].startswith("%") else "the C++ compile/link (make)"
    more = f"; {len(hits) - 1} more error line(s) in the log" if len(hits) > 1 else ""
    excerpt = "\n".join("  " + line for line in lines[first:first + 1 + context])
    return f"first error, in {where} (line {first + 1} of {log_file}{more}):\n{excerpt}"


def _quiet(runner: Any) -> Any:
    """cocotb's runner logs every command at INFO; keep that for ``-v`` only."""
    runner.log.setLevel(logging.DEBUG if log.isEnabledFor(logging.DEBUG) else logging.WARNING)
    return runner


_warned_vcd: set[str] = set()


def waves_format(tc: Toolchain) -> str:
    """``"fst"`` when the FST writer can be compiled, else ``"vcd"`` (warns once)."""
    if fst_supported(tc):
        return "fst"
    if str(tc.gxx) not in _warned_vcd:
        _warned_vcd.add(str(tc.gxx))
        log.warning("FST waveforms need the lz4 headers (fix: apt-get install liblz4-dev); "
                    "writing VCD instead")
    return "vcd"


# Makefile lists (Vtop_classes.mk, Vtop.mk) naming the sources make compiles, one object each.
_OBJECT_LIST = re.compile(r"^(VM_(?:CLASSES|SUPPORT|GLOBAL)_(?:FAST|SLOW)|VM_USER_CLASSES)"
                          r"\s*\+?=")


def _object_total(bdir: Path) -> int | None:
    """Objects make will compile, counted from Verilator's makefiles; None before Verilator
    wrote them. Without ``VM_PARALLEL_BUILDS = 1`` the model's classes go into one
    ``Vtop__ALL.o``."""
    counts: dict[str, int] = {}
    parallel = False
    for mk in ("Vtop_classes.mk", "Vtop.mk"):
        try:
            lines = (bdir / mk).read_text(errors="replace").splitlines()
        except OSError:
            return None
        var = None
        for line in lines:
            if m := _OBJECT_LIST.match(line):
                var = m.group(1)
                counts.setdefault(var, 0)
            elif var and line.strip().rstrip("\\").strip():
                counts[var] += 1
            else:
                var = None
            parallel = parallel or bool(re.match(r"VM_PARALLEL_BUILDS\s*=\s*1\b", line))
    model = sum(n for v, n in counts.items() if v.startswith(("VM_CLASSES", "VM_SUPPORT")))
    rest = sum(n for v, n in counts.items() if v.startswith(("VM_GLOBAL", "VM_USER")))
    return (model if parallel else min(model, 1)) + rest


def _build_phase(bdir: Path) -> str:
    total = _object_total(bdir)
    if total is None:
        return "Verilator is generating C++"
    done = sum(1 for _ in bdir.glob("*.o"))
    return f"compiled {done}/{total} objects" if done < total else "linking"


@contextlib.contextmanager
def _build_progress(bdir: Path, label: str) -> Iterator[None]:
    """A tqdm line on stderr (elapsed time, compiled objects) while a build runs: shown when
    stderr is a terminal (refreshed every 0.5 s) or INFO logging is on (every 15 s); never
    fails the build; stops with the block, also on errors and KeyboardInterrupt."""
    tty = getattr(sys.stderr, "isatty", lambda: False)()
    bar = None
    if tty or log.isEnabledFor(logging.INFO):
        try:
            from tqdm import tqdm
            try:  # a pseudo-terminal may report a 0x0 size; tqdm would then print nothing
                cols, rows = os.get_terminal_size(sys.stderr.fileno())
            except (OSError, ValueError, AttributeError):
                cols = rows = 0
            bar = tqdm(desc=label, file=sys.stderr, bar_format="{desc}{postfix} [{elapsed}]",
                       leave=False, ncols=cols if cols > 20 else 100,
                       nrows=rows if rows > 2 else 20, mininterval=0)
        except Exception:  # progress is cosmetic: never fail the build
            bar = None
    stop = threading.Event()

    def poll() -> None:
        while not stop.wait(0.5 if tty else 15.0):
            try:
                bar.set_postfix_str(_build_phase(bdir), refresh=False)
                bar.refresh()
            except Exception:
                return

    thread = threading.Thread(target=poll, name="foldaccel-build-progress", daemon=True)
    if bar is not None:
        thread.start()
    try:
        yield
    finally:
        stop.set()
        if bar is not None:
            thread.join(timeout=2)
            with contextlib.suppress(Exception):
                bar.close()


def build(design: RtlDesign, waves: bool = False) -> Path:
    """Compile ``design`` with Verilator (cached); return the build directory.

    ``waves=True`` builds with tracing: FST when possible, otherwise VCD. That is a second
    build beside the plain one, on purpose. Measured on the 16x16 accelerator
    (``accel_design`` of configs/tiny.toml, 2 cores): compiling tracing in nearly triples
    the cold build (51 s -> 144 s; Verilator writes ~11 MB of trace C++) and a tracing build
    run with tracing off simulates ~12 % slower (median 93k vs 106k cycles/s on 40 GEMMs of
    64x256x64). So the normal build stays without tracing and ``--waves`` pays for its own
    (cached) build once.
    """
    writable_build_root()
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
            with _build_progress(bdir, f"building {design.toplevel}"):
                runner.build(sources=paths, hdl_toplevel=design.toplevel, build_dir=bdir,
                             build_args=args, waves=waves, timescale=("1ns", "1ps"),
                             log_file=build_log)
        except (RuntimeError, subprocess.CalledProcessError, SystemExit, OSError) as e:
            raise RtlBuildError(f"Verilator build of {design.toplevel} failed ({e}); "
                                f"{build_failure(build_log)}") from None
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
    ran and passed; a skipped test never counts as passed. ``run_dir`` (and ``log_file``
    inside it) exist only while :attr:`kept`: a successful run's scratch directory is removed
    unless the caller asked to keep it. ``waves_file`` lives outside it.
    """

    tests: list[TestOutcome] = field(default_factory=list)
    run_dir: Path = Path()
    log_file: Path = Path()
    waves_file: Path | None = None
    wall_s: float = 0.0
    expected: tuple[str, ...] = ()
    kept: bool = True

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
        where = (f"log {self.log_file}" if self.kept else "run directory removed; "
                 "keep_runs=True or FOLDACCEL_KEEP_RUNS=1 keeps it")
        lines = [f"{head} ({self.wall_s:.1f} s, {where})"]
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


def remove_run_dir(result: RunResult) -> None:
    """Delete ``result.run_dir`` (the waveform lives elsewhere) and mark it not kept."""
    shutil.rmtree(result.run_dir, ignore_errors=True)
    result.kept = False


def waves_target(toplevel: str, fmt: str, waves_path: str | os.PathLike | None = None) -> Path:
    """Where a run's waveform goes: ``waves_path``, or ``build/waves/<top>-<timestamp>.<fmt>``.

    Checked before anything runs: ``waves_path``'s directory must exist and be writable, else
    :class:`ToolchainError` naming the fix.
    """
    if waves_path is not None:
        path = Path(waves_path).expanduser().absolute()
        parent = path.parent
        why = parent.is_dir() and cannot_create_in(parent)
        problem = ("is a directory" if path.is_dir() else
                   f"its directory {parent} does not exist" if not parent.is_dir() else
                   f"its directory {parent} is not writable ({why})" if why else None)
        if problem:
            raise ToolchainError(f"cannot write the waveform to {path}: {problem}; fix: "
                                 "create that directory or choose a writable path")
        if path.suffix.lower() != f".{fmt}":
            log.warning("waveform %s will hold %s data", path, fmt.upper())
        return path
    wdir = writable_build_root() / "waves"
    wdir.mkdir(exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    for n in range(1000):  # reserve a fresh name (parallel runs may start in one second)
        path = wdir / f"{toplevel}-{stamp}{f'-{n}' if n else ''}.{fmt}"
        try:
            os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666))
            return path
        except FileExistsError:
            continue
    raise ToolchainError(f"no free waveform name in {wdir}; fix: clean up {wdir}")


def run_cocotb(design: RtlDesign, test_module: str, *, testcase: str | list[str] | None = None,
               env: Mapping[str, str] | None = None, waves: bool = False,
               waves_path: str | os.PathLike | None = None, seed: int = 0,
               expect: Iterable[str] | None = None, keep_runs: bool = False) -> RunResult:
    """Build (cached) and run the cocotb tests in ``test_module`` against ``design``.

    ``env`` reaches the test module as environment variables (use it for parameters).
    ``expect`` names the tests that must run and pass for the result to be ``ok`` (default:
    the ``testcase`` filter, if any). Raises :class:`RtlRunError` when the simulator produced
    no results.

    Each run works in a scratch directory ``build/runs/<top>-XXXX``; it is removed after an
    ``ok`` run unless ``keep_runs`` (or ``FOLDACCEL_KEEP_RUNS=1``), and kept otherwise (the
    log inside explains the failure). ``waves=True`` (implied by ``waves_path``) writes a
    waveform straight to ``waves_path`` or to ``build/waves/<top>-<timestamp>.fst|vcd`` (see
    :func:`waves_target`); ``RunResult.waves_file`` names it.
    """
    writable_build_root()
    waves = waves or waves_path is not None
    target = waves_target(design.toplevel, waves_format(activate()), waves_path) if waves \
        else None
    try:
        result = _run(design, test_module, testcase, env, waves, target, seed, expect)
    finally:  # drop the name reserved for a waveform that was never written
        if (target is not None and waves_path is None and target.is_file()
                and target.stat().st_size == 0):
            target.unlink()
    if result.ok and not keep_runs_requested(keep_runs):
        remove_run_dir(result)
    return result


def _run(design: RtlDesign, test_module: str, testcase: str | list[str] | None,
         env: Mapping[str, str] | None, waves: bool, target: Path | None, seed: int,
         expect: Iterable[str] | None) -> RunResult:
    bdir = build(design, waves)
    runs = build_root() / "runs"
    runs.mkdir(parents=True, exist_ok=True)
    run_dir = Path(tempfile.mkdtemp(prefix=f"{design.toplevel}-", dir=runs))
    results = run_dir / "results.xml"
    sim_log = run_dir / "sim.log"
    from cocotb_tools.runner import get_runner
    runner = _quiet(get_runner("verilator"))
    if target is not None and target.is_file():
        target.write_bytes(b"")  # never report an old file as this run's waveform
    t0 = time.monotonic()
    try:
        runner.test(test_module=test_module, hdl_toplevel=design.toplevel,
                    hdl_toplevel_lang="verilog", build_dir=bdir, test_dir=run_dir,
                    testcase=testcase, extra_env=dict(env or {}), waves=waves, seed=seed,
                    test_args=["--trace-file", str(target)] if target else [],
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
    wf = target if target is not None and target.is_file() and target.stat().st_size else None
    if expect is None:
        expect = [testcase] if isinstance(testcase, str) else (testcase or [])
    return RunResult(tests, run_dir, sim_log, wf, wall, tuple(expect))


__all__ = [
    "RtlBuildError", "RtlDesign", "RtlRunError", "RunResult", "TestOutcome", "ToolchainError",
    "build", "build_failure", "build_root", "component_verilog", "keep_runs_requested",
    "remove_run_dir", "run_cocotb", "waves_target", "writable_build_root",
]
