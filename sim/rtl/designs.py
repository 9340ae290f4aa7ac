"""RTL designs the runner can build: each returns an :class:`sim.rtl.runner.RtlDesign`."""

from __future__ import annotations

from sim.rtl.runner import RtlDesign, component_verilog


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


def decoder_design(hw=None) -> RtlDesign:
    """The instruction legality checker alone (``hw.decoder.InstrChecker``), as Verilog
    module ``instr_checker``, for the hardware config ``hw``."""
    from hw.decoder import InstrChecker
    from hw.uarch import AccelParams
    from model.config import HardwareConfig

    p = AccelParams.from_hw(hw or HardwareConfig())
    text = component_verilog("instr_checker", lambda: InstrChecker(p), p.__dict__)
    return RtlDesign("instr_checker", {"instr_checker.v": text})


#: The small accelerator the RTL tests use: non-square, odd widths, 1 KiB banks (so operands
#: larger than the SRAMs are cheap), 8-byte host beats (ACT/WGT words narrower than a beat,
#: ACC words two beats).
SMALL_HW = dict(rows=4, cols=3, act_sram_kib=1, wgt_sram_kib=1, acc_sram_kib=1,
                host_bytes_per_cycle=8)


def harness_depths(hw) -> dict[str, int]:
    """Host-model memory depths (beats) for a hardware config: room for GEMMs of a few
    hundred on each side on the default array, and for the streamed weights of one segment
    of the demo model on arrays down to 8x8 (98,384 data-in beats at fold 1); fewer
    instruction and output words for small arrays."""
    small = hw.rows * hw.cols <= 64
    return {"imem_depth": 1 << (13 if small else 14), "dmem_depth": 1 << 17,
            "omem_depth": 1 << (13 if small else 16)}


def accel_design(hw=None) -> RtlDesign:
    """Accelerator + host model, clocked from inside the simulation (top ``accel_tb``).

    Three sources: the Amaranth ``HostHarness`` (accelerator + stream adapters), the
    SystemVerilog host module ``accel_host`` (program / data-in / data-out memories, bulk
    ``$readmemh``/``$writememh`` on ``load_req``/``dump_req``, a backdoor port for plain C++
    harnesses) and the clock wrapper ``accel_tb`` (``always #1 clk = ~clk``), so Python can
    sleep while a program runs.
    """
    from hw.harness import HostHarness
    from hw.uarch import AccelParams
    from model.config import Config, HardwareConfig

    hw = hw or HardwareConfig()
    p = AccelParams.from_hw(hw)
    depths = harness_depths(hw)
    params = {**p.__dict__, "omem_depth": depths["omem_depth"]}
    text = component_verilog("accel_harness", lambda: HostHarness(p, depths["omem_depth"]),
                             params, config_toml=Config(hardware=hw).to_toml())
    host = host_module(text, p.beat_bits, depths)
    wrapper = clock_wrapper(host, "accel_host", "accel_tb", instance="host")
    # Only the top ports are visible to VPI; everything else stays private so Verilator
    # optimizes it (builds several times faster and simulates faster than with the runner's
    # default --public-flat-rw).
    vlt = '`verilator_config\npublic_flat_rw -module "accel_tb" -var "*"\n'
    return RtlDesign("accel_tb", {"accel_harness.v": text, "accel_host.sv": host,
                                  "accel_tb.sv": wrapper, "accel_public.vlt": vlt},
                     build_args=("--no-public-flat-rw",), timing=True)


#: Files the host module reads/writes in the simulator's working directory.
IMEM_HEX, DMEM_HEX, OMEM_HEX = "foldaccel_imem.hex", "foldaccel_dmem.hex", "foldaccel_omem.hex"
_MEM_PORTS = ("imem_addr", "imem_data", "dmem_addr", "dmem_data", "omem_we", "omem_addr",
              "omem_data")


def host_module(harness_verilog: str, beat_bits: int, depths: dict[str, int]) -> str:
    """SystemVerilog ``accel_host``: the harness plus its three host memories.

    Ports: the harness's control/status ports, ``bd_we/bd_sel/bd_addr/bd_wdata`` (write
    imem (sel 1) or dmem (sel 2)), ``bd_rdata`` (omem at ``bd_addr``), and ``load_req`` /
    ``dump_req`` (rising edge: ``$readmemh`` the program and input files / ``$writememh`` the
    ``n_out`` captured beats). No delays: plain Verilator C++ harnesses can drive it.
    """
    ports = [pt for pt in module_ports(harness_verilog, "accel_harness")
             if pt[1] not in _MEM_PORTS]
    inner = [n for _, n, _ in ports]
    ports += [("input", "bd_we", 1), ("input", "bd_sel", 2), ("input", "bd_addr", 32),
              ("input", "bd_wdata", 128), ("output", "bd_rdata", 128),
              ("input", "load_req", 1), ("input", "dump_req", 1)]
    iw, dw, ow = (depths[k].bit_length() - 1 for k in ("imem_depth", "dmem_depth",
                                                        "omem_depth"))
    decl = "\n".join(f"  {d} {f'[{w - 1}:0] ' if w > 1 else ''}{n};" for d, n, w in ports)
    names = ", ".join(n for _, n, _ in ports)
    conns = ",\n".join(f"    .{n}({n})" for n in inner)
    b = beat_bits
    pad = f"{{{128 - b}{{1'b0}}}}, " if b < 128 else ""
    return f"""module accel_host({names});
{decl}
  reg [127:0] imem [0:{(1 << iw) - 1}];
  reg [{b - 1}:0] dmem [0:{(1 << dw) - 1}];
  reg [{b - 1}:0] omem [0:{(1 << ow) - 1}];
  wire [31:0] imem_addr, dmem_addr, omem_addr;
  wire [{b - 1}:0] omem_data;
  wire omem_we;
  accel_harness core (
{conns},
    .imem_addr(imem_addr), .imem_data(imem[imem_addr[{iw - 1}:0]]),
    .dmem_addr(dmem_addr), .dmem_data(dmem[dmem_addr[{dw - 1}:0]]),
    .omem_we(omem_we), .omem_addr(omem_addr), .omem_data(omem_data)
  );
  always @(posedge clk) begin
    if (omem_we) omem[omem_addr[{ow - 1}:0]] <= omem_data;
    if (bd_we && bd_sel == 2'd1) imem[bd_addr[{iw - 1}:0]] <= bd_wdata;
    if (bd_we && bd_sel == 2'd2) dmem[bd_addr[{dw - 1}:0]] <= bd_wdata[{b - 1}:0];
  end
  assign bd_rdata = {{{pad}omem[bd_addr[{ow - 1}:0]]}};
  always @(posedge load_req) begin
    $readmemh("{IMEM_HEX}", imem);
    $readmemh("{DMEM_HEX}", dmem);
  end
  always @(posedge dump_req) begin
    if (n_out != 0) $writememh("{OMEM_HEX}", omem, 0, n_out - 1);
  end
endmodule
"""


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
                  half_period_ns: int = 1) -> str:
    """SystemVerilog top that generates ``clk`` for ``module`` and exposes its other ports
    (build with ``timing=True``)."""
    ports = [pt for pt in module_ports(verilog, module) if pt[1] != "clk"]
    decl = ",\n".join(f"  {d} wire {f'[{w - 1}:0] ' if w > 1 else ''}{n}" for d, n, w in ports)
    conns = ",\n".join(["    .clk(clk)"] + [f"    .{n}({n})" for _, n, _ in ports])
    return (f"`timescale 1ns/1ps\nmodule {wrapper}(\n{decl}\n);\n"
            f"  reg clk = 1'b0;\n  always #{half_period_ns} clk = ~clk;\n"
            f"  {module} {instance} (\n{conns}\n  );\nendmodule\n")
