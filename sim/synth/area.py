"""Area of the synthesized accelerator: :func:`hardware_area` (the sweeps' entry point).

The pipeline: the accelerator's Verilog (:mod:`sim.synth.verilog_out`), memory
zero-initialisers dropped and identical modules merged (:mod:`sim.synth.dedupe`), two Yosys
runs with the top module's cells attributed to report units in between (:mod:`sim.synth.yosys`,
:mod:`sim.synth.units`), then the counts below, multiplied by how many instances each kept
module stands for, and the area model. The result is cached on disk by a hash of everything it
depends on.

The area model (docs/AREA.md has the derivation and the sources; every constant is here):

* **logic** = NAND2-equivalent gates x the NAND2_X1 area / placement utilization. Each Yosys
  generic gate (``$_AND_``, ``$_MUX_``, ``$_DFFE_PP_``, ...) counts as the area of the
  NanGate FreePDK45 Open Cell Library cell that implements it, divided by NAND2_X1's area
  (:data:`NAND2_EQ`); a flip-flop with an enable or a synchronous reset is a DFF plus the
  MUX2/AND2 in front of it.
* **memory** = bits x the 6T bitcell area / array efficiency x a port factor
  ``(1 + PORT_GROWTH * (ports - 1))**2`` (every port beyond the first adds a wordline and a
  bitline pair, so both sides of the cell grow linearly and its area quadratically: Rixner et
  al. 2000). Memories of at most ``REGFILE_WORDS`` words were mapped to flip-flops by Yosys
  and are logic.

Expected error: about +-50 % for logic (generic gates without technology mapping or ``abc``
overestimate; wiring, clock tree and buffering underestimate) and +-50 % for memories
(compiled-macro periphery varies with size and aspect ratio). Good for comparing design points
with each other, not for a tape-out budget.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import shutil
import tempfile
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

from model.config import HardwareConfig
from sim.fileio import atomic_write, read_json

log = logging.getLogger(__name__)

#: Bump when the area model, the report's layout or the preparation of the Verilog changes
#: (part of the cache key).
AREA_MODEL_VERSION = "area-1"

# ---------------------------------------------------------------------------- area model
#: µm² of NAND2_X1 in the NanGate FreePDK45 Open Cell Library (NangateOpenCellLibrary,
#: typical corner; ``area : 0.798``): the unit of the gate count.
NAND2_UM2 = 0.798
#: Cell area / core area after placement and routing. 0.7 is the usual target of a
#: standard-cell flow (OpenROAD's flow scripts use 0.3-0.7 for FreePDK45/NanGate45 designs).
UTILIZATION = 0.7
#: µm² of the 6T SRAM bitcell of Intel's 45 nm process (Mistry et al., "A 45nm logic
#: technology with high-k + metal gate transistors, strained silicon, 9 Cu interconnect layers,
#: 193nm dry patterning, and 100% Pb-free packaging", IEDM 2007).
SRAM_BITCELL_UM2 = 0.346
#: Bitcell area / macro area of a compiled SRAM of a few KiB to a few hundred KiB: decoders,
#: sense amplifiers, write drivers, column multiplexers and timing take about half (docs/AREA.md).
SRAM_ARRAY_EFFICIENCY = 0.5
#: Growth of each side of a bitcell per port beyond the first (port factor
#: ``(1 + PORT_GROWTH * (ports - 1))**2``): a 1R1W cell is 1.56x a single-port 6T cell,
#: 1R1W+1R 2.25x (Rixner et al., "Register organization for media processing", HPCA 2000:
#: cell area grows with the square of the port count).
PORT_GROWTH = 0.25

#: µm² of the NanGate FreePDK45 cells (X1 drive) the generic gates stand for.
NANGATE_UM2 = {
    "INV_X1": 0.532, "BUF_X1": 0.798, "NAND2_X1": 0.798, "NOR2_X1": 0.798,
    "AND2_X1": 1.064, "OR2_X1": 1.064, "XOR2_X1": 1.596, "XNOR2_X1": 1.596,
    "MUX2_X1": 1.862, "AOI21_X1": 1.064, "OAI21_X1": 1.064, "AOI22_X1": 1.330,
    "OAI22_X1": 1.330, "DFF_X1": 4.522, "DFFR_X1": 5.320, "DFFRS_X1": 6.384,
    "DLH_X1": 2.394,
}


def _eq(*cells: str) -> float:
    return round(sum(NANGATE_UM2[c] for c in cells) / NAND2_UM2, 4)


#: NAND2 equivalents of Yosys's generic gates (``techmap`` output; ``abc`` output uses the
#: same types). Flip-flop families are matched by :func:`nand2_eq`.
NAND2_EQ = {
    "$_BUF_": _eq("BUF_X1"), "$_NOT_": _eq("INV_X1"),
    "$_AND_": _eq("AND2_X1"), "$_OR_": _eq("OR2_X1"),
    "$_NAND_": _eq("NAND2_X1"), "$_NOR_": _eq("NOR2_X1"),
    "$_XOR_": _eq("XOR2_X1"), "$_XNOR_": _eq("XNOR2_X1"),
    "$_ANDNOT_": _eq("NOR2_X1", "INV_X1"), "$_ORNOT_": _eq("NAND2_X1", "INV_X1"),
    "$_MUX_": _eq("MUX2_X1"), "$_NMUX_": _eq("MUX2_X1", "INV_X1"),
    "$_AOI3_": _eq("AOI21_X1"), "$_OAI3_": _eq("OAI21_X1"),
    "$_AOI4_": _eq("AOI22_X1"), "$_OAI4_": _eq("OAI22_X1"),
    "$_MUX4_": _eq("MUX2_X1", "MUX2_X1", "MUX2_X1"),
}
#: Flip-flop and latch families: (pattern, NanGate cells).
_FF_EQ = (
    (r"\$_DFF_[NP]_$", ("DFF_X1",)),
    (r"\$_DFF_[NP][NP][01]_$", ("DFFR_X1",)),                       # async reset
    (r"\$_DFFE_[NP][NP]_$", ("DFF_X1", "MUX2_X1")),                 # enable
    (r"\$_DFFE_[NP][NP][01][NP]_$", ("DFFR_X1", "MUX2_X1")),
    (r"\$_SDFF_[NP][NP][01]_$", ("DFF_X1", "AND2_X1")),             # sync reset
    (r"\$_SDFFC?E_[NP][NP][01][NP]_$", ("DFF_X1", "MUX2_X1", "AND2_X1")),
    (r"\$_(DFFSRE?|ALDFFE?)_\w+_$", ("DFFRS_X1", "MUX2_X1")),
    (r"\$_(DLATCH|SR)_\w+_$", ("DLH_X1",)),
    (r"\$_DLATCHSR_\w+_$", ("DLH_X1", "AOI22_X1")),
)
_FF = re.compile(r"\$_(S?DFF|DFFE|SDFFC?E|DFFSRE?|ALDFFE?|DLATCH|DLATCHSR)_")


def nand2_eq(cell_type: str) -> float | None:
    """NAND2 equivalents of one generic gate, or None if ``cell_type`` is not one."""
    if cell_type in NAND2_EQ:
        return NAND2_EQ[cell_type]
    for pattern, cells in _FF_EQ:
        if re.match(pattern, cell_type):
            return _eq(*cells)
    return None


def is_flip_flop(cell_type: str) -> bool:
    """A one-bit storage element (flip-flop or latch) of Yosys's generic library."""
    return bool(_FF.match(cell_type))


def port_factor(ports: int) -> float:
    """Bitcell area of a ``ports``-port memory relative to a single-port 6T cell."""
    return (1 + PORT_GROWTH * (max(ports, 1) - 1)) ** 2


def memory_um2(bits: int, ports: int) -> float:
    """µm² of an SRAM macro of ``bits`` bits with ``ports`` read + write ports."""
    return bits * SRAM_BITCELL_UM2 / SRAM_ARRAY_EFFICIENCY * port_factor(ports)


def logic_um2(nand2: float) -> float:
    """µm² of ``nand2`` NAND2-equivalent gates after placement."""
    return nand2 * NAND2_UM2 / UTILIZATION


def model_constants() -> dict[str, Any]:
    """The area model's constants (reported beside every result)."""
    return {"version": AREA_MODEL_VERSION, "nand2_um2": NAND2_UM2, "utilization": UTILIZATION,
            "sram_bitcell_um2": SRAM_BITCELL_UM2,
            "sram_array_efficiency": SRAM_ARRAY_EFFICIENCY, "port_growth": PORT_GROWTH,
            "port_factor": "(1 + port_growth * (read_ports + write_ports - 1))**2"}


# ---------------------------------------------------------------------------- counting
def instance_counts(stat: dict, top: str) -> dict[str, int]:
    """How many times each module is instantiated in the design under ``top`` (Yosys
    ``stat -json``: a module's ``num_cells_by_type`` lists its submodules by type)."""
    mods = {name.lstrip("\\"): m for name, m in stat["modules"].items()}
    count: dict[str, int] = defaultdict(int)
    count[top] = 1
    order: list[str] = []
    seen: set[str] = set()

    def visit(name: str) -> None:  # post-order: a module after every module it instantiates
        if name in seen:
            return
        seen.add(name)
        for t in mods[name]["num_cells_by_type"]:
            if t.lstrip("\\") in mods:
                visit(t.lstrip("\\"))
        order.append(name)

    visit(top)
    for name in reversed(order):  # parents before children
        for t, n in mods[name]["num_cells_by_type"].items():
            if t.lstrip("\\") in mods:
                count[t.lstrip("\\")] += count[name] * n
    return dict(count)


def _unit_of_module(name: str) -> str:
    from sim.synth import units
    return units.module_unit(name)


def _empty_unit() -> dict[str, Any]:
    return {"cells": 0, "cells_by_type": Counter(), "flip_flops": 0, "nand2_eq": 0.0,
            "multipliers": Counter(), "memory_bits": 0, "memories": []}


def tally(netlist, top: str) -> dict[str, Any]:
    """Per-unit counts of a :class:`sim.synth.yosys.Netlist` with instance multiplicity."""
    from sim.synth.units import UNITS

    stat = netlist.stat
    mods = {name.lstrip("\\"): m for name, m in stat["modules"].items()}
    counts = instance_counts(stat, top)
    per = {u: _empty_unit() for u in UNITS}
    unknown: Counter = Counter()
    for name, m in mods.items():
        n = counts.get(name, 0)
        if not n:
            continue
        unit = per["controller" if name == top else _unit_of_module(name)]
        for t, k in m["num_cells_by_type"].items():
            if t.lstrip("\\") in mods or t == "$mem_v2":
                continue  # submodule instances are counted in their own module; memories below
            eq = nand2_eq(t)
            if eq is None:
                unknown[t] += k * n
                eq = 1.0
            unit["cells"] += k * n
            unit["cells_by_type"][t] += k * n
            unit["nand2_eq"] += eq * k * n
            if is_flip_flop(t):
                unit["flip_flops"] += k * n
    for c in netlist.mems:
        mod = c["module"].lstrip("\\")
        n = counts.get(mod, 0)
        p = c["params"]
        bits = int(p["SIZE"]) * int(p["WIDTH"])
        rd, wr = int(p["RD_PORTS"]), int(p["WR_PORTS"])
        for _ in range(n):
            per["memories"]["memories"].append({
                "name": f"{mod}.{str(p.get('MEMID', c['name'])).lstrip(chr(92))}",
                "depth": int(p["SIZE"]), "width": int(p["WIDTH"]), "bits": bits,
                "read_ports": rd, "write_ports": wr,
                "mm2": memory_um2(bits, rd + wr) * 1e-6})
            per["memories"]["memory_bits"] += bits
    for c in netlist.muls:
        mod = c["module"].lstrip("\\")
        n = counts.get(mod, 0)
        if mod == top:
            unit = netlist.top_units.get(c["name"], "controller")
        else:
            unit = _unit_of_module(mod)
        p = c["params"]
        sign = "s" if int(p.get("A_SIGNED", 0)) and int(p.get("B_SIGNED", 0)) else "u"
        per[unit]["multipliers"][f"{p['A_WIDTH']}x{p['B_WIDTH']}{sign}"] += n
    out: dict[str, Any] = {}
    for u, d in per.items():
        mem_mm2 = sum(m["mm2"] for m in d["memories"])
        logic_mm2 = logic_um2(d["nand2_eq"]) * 1e-6
        out[u] = {
            "cells": d["cells"],
            "cells_by_type": dict(sorted(d["cells_by_type"].items())),
            "flip_flops": d["flip_flops"],
            "nand2_eq": round(d["nand2_eq"], 1),
            "multipliers": {"count": sum(d["multipliers"].values()),
                            "widths": dict(sorted(d["multipliers"].items()))},
            "memory_bits": d["memory_bits"],
            "memory_read_ports": sum(m["read_ports"] for m in d["memories"]),
            "memory_write_ports": sum(m["write_ports"] for m in d["memories"]),
            "memories": sorted(d["memories"], key=lambda m: m["name"]),
            "logic_mm2": logic_mm2,
            "memory_mm2": mem_mm2,
            "area_mm2": logic_mm2 + mem_mm2,
        }
    return {"units": out, "unmapped_cell_types": dict(sorted(unknown.items())),
            "instances": {k: v for k, v in sorted(counts.items()) if k != top}}


def _totals(units: dict[str, Any]) -> dict[str, Any]:
    keys = ("cells", "flip_flops", "nand2_eq", "memory_bits", "memory_read_ports",
            "memory_write_ports", "logic_mm2", "memory_mm2", "area_mm2")
    tot = {k: sum(u[k] for u in units.values()) for k in keys}
    tot["nand2_eq"] = round(tot["nand2_eq"], 1)
    types: Counter = Counter()
    widths: Counter = Counter()
    for u in units.values():
        types.update(u["cells_by_type"])
        widths.update(u["multipliers"]["widths"])
    tot["cells_by_type"] = dict(sorted(types.items()))
    tot["multipliers"] = {"count": sum(widths.values()), "widths": dict(sorted(widths.items()))}
    return tot


def _round_mm2(obj: Any) -> Any:
    """Floats rounded to 6 significant digits (stable JSON across platforms)."""
    if isinstance(obj, float):
        return float(f"{obj:.6g}")
    if isinstance(obj, dict):
        return {k: _round_mm2(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_round_mm2(v) for v in obj]
    return obj


# ---------------------------------------------------------------------------- entry point
def prepared_verilog(verilog: str) -> tuple[str, dict[str, str]]:
    """What Yosys reads: ``verilog`` without zero-initialisers, identical modules merged
    (``(text, {removed module: kept module})``)."""
    from sim.synth import dedupe, units

    return dedupe.dedupe(dedupe.strip_zero_init(verilog), units.module_unit)


def cache_key(verilog: str, *, abc: bool) -> str:
    """sha256 of everything a result depends on: the Verilog, the Yosys scripts, the unit
    attribution rules, the area model and the Yosys version."""
    from sim.synth import units, yosys

    h = hashlib.sha256()
    for part in (verilog, yosys.SCRIPTS, units.VERSION, AREA_MODEL_VERSION,
                 yosys.yosys_version(), f"abc={bool(abc)}"):
        h.update(part.encode())
        h.update(b"\0")
    return h.hexdigest()


def synth_dir() -> Path:
    """``<build root>/synth``: cached results (``<key>.json``) and scratch runs."""
    from sim.rtl.runner import writable_build_root

    d = writable_build_root() / "synth"
    d.mkdir(parents=True, exist_ok=True)
    return d


def hardware_area(hw: HardwareConfig, *, abc: bool = False,
                  progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Synthesize the accelerator of ``hw`` (or load the cached result) and return its
    per-unit counts and area (module docstring). Top-level keys the sweeps read:
    ``area_mm2``, ``logic_mm2``, ``memory_mm2``, ``verilog_sha256``; also ``units`` (per
    unit: ``cells``, ``cells_by_type``, ``flip_flops``, ``multipliers``, ``memory_bits``,
    ``memories``, ``nand2_eq``, ``logic_mm2``, ``memory_mm2``, ``area_mm2``), ``total``,
    ``model`` (the constants), ``attribution``, ``cached`` and ``synth_s``.

    ``progress(note)`` is called as each step starts. Raises
    :class:`sim.synth.yosys.SynthError` if Yosys fails."""
    from sim.rtl.runner import _locked
    from sim.synth import verilog_out, yosys

    step = progress or (lambda note: None)
    step("generate Verilog")
    verilog = verilog_out.synth_verilog(hw)
    sha = hashlib.sha256(verilog.encode()).hexdigest()
    key = cache_key(verilog, abc=abc)
    root = synth_dir()
    cached = root / f"{key[:32]}.json"
    entry = read_json(cached)
    if entry is not None:
        return {**entry, "cached": True}
    with _locked(root / f".{key[:32]}.lock"):
        entry = read_json(cached)  # another process may have synthesized it meanwhile
        if entry is not None:
            return {**entry, "cached": True}
        t0 = time.monotonic()
        step("merge identical modules")
        prepared, merged = prepared_verilog(verilog)
        work = Path(tempfile.mkdtemp(prefix=f"run-{key[:12]}-", dir=root))
        netlist = yosys.synthesize(prepared, work, top=verilog_out.TOP, abc=abc, step=step)
        counts = tally(netlist, verilog_out.TOP)
        units = counts["units"]
        total = _totals(units)
        res = _round_mm2({
            "top": verilog_out.TOP, "rows": hw.rows, "cols": hw.cols,
            "verilog_sha256": sha, "cache_key": key, "yosys": yosys.yosys_version(),
            "abc": bool(abc),
            "area_mm2": total["area_mm2"], "logic_mm2": total["logic_mm2"],
            "memory_mm2": total["memory_mm2"],
            "units": units, "total": total,
            "unmapped_cell_types": counts["unmapped_cell_types"],
            "modules": {"synthesized": len(verilog_out.modules(prepared)),
                        "merged": len(merged), "instances": counts["instances"]},
            "attribution": netlist.attribution,
            "model": model_constants(),
            "synth_s": round(time.monotonic() - t0, 1),
        })
        if counts["unmapped_cell_types"]:
            log.warning("cell types without a NAND2 equivalent (counted as 1): %s",
                        counts["unmapped_cell_types"])
        text = json.dumps(res, indent=1, sort_keys=True) + "\n"
        res = json.loads(text)  # the same key order as a cached result
        atomic_write(cached, text)
        shutil.rmtree(work, ignore_errors=True)  # a failed run keeps its logs (SynthError)
    return {**res, "cached": False}
