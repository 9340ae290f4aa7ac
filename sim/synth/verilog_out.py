"""The accelerator's synthesizable Verilog (``hw.accel.Accelerator``, not the host harness),
its port list and memories, and ``foldaccel hw verilog``'s output bundle."""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path

from model.config import Config, HardwareConfig
from sim.fileio import OutputPathError, atomic_write, make_output_dir

#: Name of the top module (submodules are ``accel.<name>``, e.g. ``accel.array.pe_0_0``).
TOP = "accel"
#: Memories of at most this many words are register files: synthesized to flip-flops
#: (``sim.synth.yosys``), not SRAM macros.
REGFILE_WORDS = 16
#: The files ``hw verilog`` writes.
BUNDLE_FILES = (f"{TOP}.v", "params.json", "config.toml")


def accel_verilog(hw: HardwareConfig) -> str:
    """Verilog of the accelerator for ``hw`` as Amaranth writes it (cached on disk by
    :func:`sim.rtl.runner.component_verilog`)."""
    from hw.accel import Accelerator
    from hw.uarch import AccelParams
    from sim.rtl.runner import component_verilog

    p = AccelParams.from_hw(hw)
    return component_verilog(TOP, lambda: Accelerator(p), dataclasses.asdict(p),
                             config_toml=Config(hardware=hw).to_toml())


_ZERO_INIT = re.compile(r"^  initial begin : foldaccel_zero_init_\d+\n    integer i;\n.*\n  end\n",
                        re.M)


def strip_zero_init(verilog: str) -> str:
    """Drop the zero-initialisation loops of memories (``compact_memory_init``): an ASIC SRAM
    has no initial contents, and Yosys would unroll every loop into one init bit per bit.
    Initial contents that are not all zero (the lookup tables) stay."""
    return _ZERO_INIT.sub("", verilog)


def synth_verilog(hw: HardwareConfig) -> str:
    """The synthesizable Verilog of ``hw``'s accelerator: :func:`accel_verilog` without the
    memories' zero-initialisers (what ``hw verilog`` writes and ``hw synth`` reads)."""
    return strip_zero_init(accel_verilog(hw))


def modules(verilog: str) -> dict[str, str]:
    """Module name (unescaped) -> its text (attribute lines, ``module`` .. ``endmodule``),
    in file order."""
    out = {}
    for m in re.finditer(r"^(?:\(\*[^\n]*\*\)\n)*module (\\?\S+?) ?\(.*?^endmodule\n?", verilog,
                         re.M | re.S):
        out[m.group(1).lstrip("\\")] = m.group(0)
    return out


_MEM = re.compile(r"^\s*reg \[(\d+):0\] (\\?\S+?) ?\[(\d+):0\];$", re.M)


def memories(verilog: str) -> list[dict]:
    """Every memory (``reg [W-1:0] m [D-1:0]``) of every module: name ``module.memory``,
    depth, width, read and write ports (a write port is one ``always`` block writing it, a
    read port one read ``m[addr]``), as in Amaranth's Verilog output, and its ``kind``: a
    memory of at most ``REGFILE_WORDS`` words is synthesized to flip-flops, others are SRAMs."""
    out = []
    for mod, text in modules(verilog).items():
        blocks = re.split(r"^\s*always @", text, flags=re.M)
        for m in _MEM.finditer(text):
            name = m.group(2)
            ref = re.escape(name) + r" ?\["
            writes = sum(1 for b in blocks[1:] if re.search(r"^\s*" + ref + r".*<=", b, re.M))
            reads = len(re.findall(r"(?:<=|=) " + ref, text))
            depth = int(m.group(3)) + 1
            out.append({"name": f"{mod}.{name.lstrip(chr(92))}", "depth": depth,
                        "width": int(m.group(1)) + 1, "read_ports": reads,
                        "write_ports": writes,
                        "kind": "flip-flops" if depth <= REGFILE_WORDS else "sram"})
    return out


def params_json(hw: HardwareConfig, verilog: str) -> dict:
    """``params.json``: the AccelParams, the top's ports and the memories."""
    from hw.uarch import AccelParams
    from sim.rtl.designs import module_ports

    ports = [{"name": n, "direction": d, "width": w} for d, n, w in module_ports(verilog, TOP)]
    return {"top": TOP, "accel_params": dataclasses.asdict(AccelParams.from_hw(hw)),
            "ports": ports, "memories": memories(verilog),
            "memory_init": "none, except the lookup tables' contents (an SRAM has no reset "
                           "contents; the simulation Verilog zero-initialises every memory)"}


def write_bundle(cfg: Config, out: Path) -> dict:
    """Write ``accel.v``, ``params.json`` and ``config.toml`` into ``out`` (atomically);
    refuse a directory that holds other files. Returns ``params.json``'s object plus paths."""
    out = Path(out)
    if out.is_dir():
        others = sorted(p.name for p in out.iterdir() if p.name not in BUNDLE_FILES)
        if others:
            raise OutputPathError(
                f"--out '{out}' already holds other files ({', '.join(others[:3])}"
                f"{', ...' if len(others) > 3 else ''}); fix: choose a new or empty directory "
                "(a previous 'hw verilog' output is overwritten)")
    make_output_dir(out, "--out")
    verilog = synth_verilog(cfg.hardware)
    params = params_json(cfg.hardware, verilog)
    atomic_write(out / BUNDLE_FILES[0], verilog)
    atomic_write(out / BUNDLE_FILES[1], json.dumps(params, indent=2) + "\n")
    atomic_write(out / BUNDLE_FILES[2], cfg.to_toml())
    return {**params, "files": [str(out / f) for f in BUNDLE_FILES]}
