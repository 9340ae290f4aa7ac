"""Host side of the accelerator testbenches: driver (preload + start), monitor (results).

The design is ``sim.rtl.designs.accel_design``: the clock runs inside the simulation and the
host model streams the preloaded program and data, so between ``start`` and ``finished``
Python sleeps. The host model's memories are filled and dumped in bulk by the SV wrapper
(``$readmemh``/``$writememh`` on a ``load_req``/``dump_req`` pulse); no cycles are spent.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
from cocotb.triggers import First, RisingEdge, Timer

from hw.accel import N_UNITS, PC_BITS
from hw.isa import UNITS
from hw.uarch import COUNTERS
from sim.rtl.designs import DMEM_HEX, IMEM_HEX, OMEM_HEX, harness_depths
from sim.rtl.jobs import RunRecord

CLOCK_NS = 2  # the wrapper toggles clk every 1 ns


def hex_lines(beats: np.ndarray) -> str:
    """``$readmemh`` text: one beat per line, most significant byte first."""
    rows = np.ascontiguousarray(np.asarray(beats, np.uint8)[:, ::-1])
    return "\n".join(row.tobytes().hex() for row in rows) + "\n"


def parse_hex_lines(text: str, host_bytes: int) -> np.ndarray:
    """``$writememh`` text -> ``(n, host_bytes)`` uint8 beats (comments skipped)."""
    lines = [ln.strip() for ln in text.splitlines()]
    lines = [ln for ln in lines if ln and not ln.startswith(("//", "@"))]
    out = np.zeros((len(lines), host_bytes), np.uint8)
    for i, ln in enumerate(lines):
        out[i] = np.frombuffer(bytes.fromhex(ln.rjust(2 * host_bytes, "0"))[::-1], np.uint8)
    return out


class HostModelError(RuntimeError):
    """The program or its data do not fit the simulation host model's memories."""


class HarnessDriver:
    """Preloads the host model's memories and starts a run."""

    def __init__(self, dut, depths: dict[str, int]):
        self.dut = dut
        self.depths = depths

    async def reset(self) -> None:
        d = self.dut
        d.rst.value = 1
        d.start.value = 0
        d.bd_we.value = 0
        d.bd_sel.value = 0
        d.bd_addr.value = 0
        d.bd_wdata.value = 0
        d.n_instr.value = 0
        d.n_data.value = 0
        d.load_req.value = 0
        d.dump_req.value = 0
        await Timer(3 * CLOCK_NS, unit="ns")
        d.rst.value = 0
        await Timer(CLOCK_NS, unit="ns")

    async def preload(self, words: list[int], din: np.ndarray) -> None:
        """Write the program and input beats to hex files and have the wrapper load them
        with ``$readmemh`` (one event instead of a VPI write per word)."""
        for what, n, depth in (("instructions", len(words), self.depths["imem_depth"]),
                               ("data-in beats", len(din), self.depths["dmem_depth"])):
            if n > depth:
                raise HostModelError(f"the program needs {n} {what}; the host model holds "
                                     f"{depth} (fix: a smaller GEMM)")
        Path(IMEM_HEX).write_text("\n".join(f"{w:032x}" for w in words or [0]) + "\n")
        Path(DMEM_HEX).write_text(hex_lines(din if len(din) else np.zeros((1, 1), np.uint8)))
        d = self.dut
        d.n_instr.value = len(words)
        d.n_data.value = len(din)
        d.load_req.value = 1
        await Timer(CLOCK_NS, unit="ns")
        d.load_req.value = 0

    async def run(self, max_cycles: int) -> bool:
        """Pulse start; sleep until finished or ``max_cycles``. True if finished."""
        d = self.dut
        d.start.value = 1
        await Timer(CLOCK_NS, unit="ns")
        d.start.value = 0
        if int(d.finished.value):
            return True
        res = await First(RisingEdge(d.finished), Timer(max_cycles * CLOCK_NS, unit="ns"))
        return isinstance(res, RisingEdge) or bool(int(d.finished.value))


class HarnessMonitor:
    """Reads status, counters and the captured output stream."""

    def __init__(self, dut, host_bytes: int):
        self.dut = dut
        self.host_bytes = host_bytes

    async def read(self, finished: bool) -> RunRecord:
        d = self.dut
        cnt = int(d.counters.value)
        counters = {name: (cnt >> (32 * i)) & 0xFFFFFFFF for i, name in enumerate(COUNTERS)}

        def per_unit(port) -> dict[str, int]:
            v = int(port.value)
            return {UNITS[u]: (v >> (PC_BITS * u)) & 0xFFFF for u in range(N_UNITS)}

        def units(port) -> list[str]:
            bits = int(port.value)
            return [UNITS[u] for u in range(N_UNITS) if bits >> u & 1]

        n_out = int(d.n_out.value)
        dout = np.zeros((0, self.host_bytes), np.uint8)
        if n_out:
            out_file = Path(OMEM_HEX)
            out_file.unlink(missing_ok=True)
            d.dump_req.value = 1
            await Timer(CLOCK_NS, unit="ns")
            d.dump_req.value = 0
            dout = parse_hex_lines(out_file.read_text(), self.host_bytes)
        return RunRecord(finished, bool(int(d.done.value)), int(d.error.value),
                         int(d.err_pc.value), int(d.last_pc.value), units(d.busy),
                         per_unit(d.unit_pc), units(d.waiting), per_unit(d.head_pc),
                         counters, dout)


async def run_program(dut, hw, words: list[int], din: np.ndarray,
                      max_cycles: int) -> RunRecord:
    """Reset, preload, run and read back one program on the design built for ``hw``."""
    t0 = time.monotonic()
    driver = HarnessDriver(dut, harness_depths(hw))
    await driver.reset()
    await driver.preload(words, din)
    t1 = time.monotonic()
    finished = await driver.run(max_cycles)
    t2 = time.monotonic()
    rec = await HarnessMonitor(dut, hw.host_bytes_per_cycle).read(finished)
    t3 = time.monotonic()
    rec.wall_s = t3 - t0
    rec.phases_s = {"preload": t1 - t0, "run": t2 - t1, "readback": t3 - t2}
    return rec
