"""RTL designs the runner can build: each returns an :class:`sim.rtl.RtlDesign`."""

from __future__ import annotations

from sim.rtl import RtlDesign, component_verilog


def pe_design(in_bits: int = 8, acc_bits: int = 32) -> RtlDesign:
    """The multiply-accumulate PE alone, as Verilog module ``mac_pe``."""
    from hw.pe import MacPE

    params = {"in_bits": in_bits, "acc_bits": acc_bits}
    text = component_verilog("mac_pe", lambda: MacPE(in_bits, acc_bits), params)
    return RtlDesign("mac_pe", {"mac_pe.v": text})


def array_design(rows: int, cols: int) -> RtlDesign:
    """The systolic array alone (unit tests), as Verilog module ``systolic_array``."""
    from hw.array import SystolicArray

    params = {"rows": rows, "cols": cols}
    text = component_verilog("systolic_array", lambda: SystolicArray(rows, cols), params)
    return RtlDesign("systolic_array", {"systolic_array.v": text})


def requant_design(lanes: int) -> RtlDesign:
    """The requantization lanes alone (unit tests), as Verilog module ``requantizer``."""
    from hw.requant import Requantizer

    text = component_verilog("requantizer", lambda: Requantizer(lanes), {"lanes": lanes})
    return RtlDesign("requantizer", {"requantizer.v": text})


#: The small accelerator the RTL tests use: non-square, odd widths, 1 KiB banks (so operands
#: larger than the SRAMs are cheap), 8-byte host beats (ACT/WGT words narrower than a beat,
#: ACC words two beats).
SMALL_HW = dict(rows=4, cols=3, act_sram_kib=1, wgt_sram_kib=1, acc_sram_kib=1,
                host_bytes_per_cycle=8)


def harness_depths(hw) -> dict[str, int]:
    """Host-model memory depths (beats) for a hardware config: room for GEMMs of a few
    hundred on each side on the default array, smaller for small arrays."""
    small = hw.rows * hw.cols <= 64
    return {"imem_depth": 1 << (13 if small else 14), "dmem_depth": 1 << (15 if small else 16),
            "omem_depth": 1 << (13 if small else 16)}


def accel_design(hw=None) -> RtlDesign:
    """Accelerator + host model (``hw.harness.HostHarness``) in an SV clock wrapper
    (module ``accel_tb``, clock inside the model so Python can sleep while it runs)."""
    from hw.harness import HostHarness
    from hw.uarch import AccelParams
    from model.config import Config, HardwareConfig

    hw = hw or HardwareConfig()
    p = AccelParams.from_hw(hw)
    depths = harness_depths(hw)
    params = {**p.__dict__, **depths}
    cfg = Config(hardware=hw)
    text = strip_zero_memory_init(
        component_verilog("accel_harness", lambda: HostHarness(p, **depths), params,
                          config_toml=cfg.to_toml()))
    wrapper = clock_wrapper(text, "accel_harness", "accel_tb", instance="harness",
                            extra=_HOST_FILES_SV,
                            extra_ports="  input wire load_req,\n  input wire dump_req")
    # Only what the testbench touches is visible to VPI (the top ports and the host model's
    # memories); everything else stays private so Verilator optimizes it (builds several
    # times faster and simulates faster than with the runner's default --public-flat-rw).
    vlt = "\n".join(["`verilator_config",
                     'public_flat_rw -module "accel_tb" -var "*"',
                     *(f'public_flat_rw -module "accel_harness" -var "{mem}"'
                       for mem in ("imem", "dmem", "omem"))]) + "\n"
    return RtlDesign("accel_tb", {"accel_harness.v": text, "accel_tb.sv": wrapper,
                                  "accel_public.vlt": vlt},
                     build_args=("--no-public-flat-rw",), timing=True)


def strip_zero_memory_init(verilog: str) -> str:
    """Drop Amaranth's ``initial`` blocks that set every memory word to zero.

    They are one line per word (1 MiB of host-model memory is 65536 lines each) and make
    Verilator's C++ build several times slower; the simulator zero-initializes anyway
    (``--x-initial fast``) and no program reads a word it has not written.
    """
    import re

    return re.sub(r"  initial begin\n(?:    \\?[\w$.]+\[\d+\] = \d+'h0+;\n)+  end\n", "",
                  verilog)


def module_ports(verilog: str, module: str) -> list[tuple[str, str, int]]:
    """``(direction, name, width)`` of ``module``'s ports in Amaranth's Verilog output."""
    import re

    start = verilog.index(f"module {module}(")
    body = verilog[start:verilog.index("endmodule", start)]
    ports = []
    for m in re.finditer(r"^\s*(input|output)\s+(?:wire\s+|reg\s+)?(?:\[(\d+):0\]\s+)?"
                         r"\\?([A-Za-z_$][\w$]*)\s*;", body, re.M):
        ports.append((m.group(1), m.group(3), int(m.group(2) or 0) + 1))
    return ports


def clock_wrapper(verilog: str, module: str, wrapper: str, instance: str = "dut",
                  half_period_ns: int = 1, extra: str = "", extra_ports: str = "") -> str:
    """SystemVerilog top that generates ``clk`` for ``module`` and exposes its other ports
    (build with ``timing=True``); ``extra`` is verbatim SV placed after the instance and
    ``extra_ports`` more port declarations for it."""
    ports = [pt for pt in module_ports(verilog, module) if pt[1] != "clk"]
    decls = [f"  {d} wire {f'[{w - 1}:0] ' if w > 1 else ''}{n}" for d, n, w in ports]
    if extra_ports:
        decls.append(extra_ports)
    conns = ",\n".join(["    .clk(clk)"] + [f"    .{n}({n})" for _, n, _ in ports])
    body = ",\n".join(decls)
    return (f"`timescale 1ns/1ps\nmodule {wrapper}(\n{body}\n);\n"
            f"  reg clk = 1'b0;\n  always #{half_period_ns} clk = ~clk;\n"
            f"  {module} {instance} (\n{conns}\n  );\n{extra}endmodule\n")


#: Files the accelerator wrapper reads/writes in the simulator's working directory.
IMEM_HEX, DMEM_HEX, OMEM_HEX = "foldaccel_imem.hex", "foldaccel_dmem.hex", "foldaccel_omem.hex"

#: Bulk host-model access for the testbench: a rising ``load_req`` reads the program and the
#: input stream from hex files, a rising ``dump_req`` writes the captured output beats.
_HOST_FILES_SV = f"""  always @(posedge load_req) begin
    $readmemh("{IMEM_HEX}", harness.imem);
    $readmemh("{DMEM_HEX}", harness.dmem);
  end
  always @(posedge dump_req) begin
    if (n_out != 0) $writememh("{OMEM_HEX}", harness.omem, 0, n_out - 1);
  end
"""
