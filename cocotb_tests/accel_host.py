"""Host side of the accelerator testbenches: driver (preload + start), monitor (results).

The design is ``sim.designs.accel_design``: the clock runs inside the simulation and the
host model streams the preloaded program and data, so between ``start`` and ``finished``
Python sleeps. Memories are written and read through simulator hierarchy (no cycles spent).
"""

from __future__ import annotations

import time

import numpy as np
from cocotb.triggers import First, RisingEdge, Timer

from hw.accel import COUNTERS, N_UNITS, PC_BITS
from hw.hostio import beats_to_ints, ints_to_beats
from hw.isa import UNITS
from sim.accel_run import RunRecord

CLOCK_NS = 2  # the wrapper toggles clk every 1 ns


class HostModelError(RuntimeError):
    """The program or its data do not fit the simulation host model's memories."""


class HarnessDriver:
    """Preloads the host model's memories and starts a run."""

    def __init__(self, dut):
        self.dut = dut
        self.h = dut.harness

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
        await Timer(3 * CLOCK_NS, unit="ns")
        d.rst.value = 0
        await Timer(CLOCK_NS, unit="ns")

    def preload(self, words: list[int], din: np.ndarray) -> None:
        for what, n, mem in (("instructions", len(words), self.h.imem),
                             ("data-in beats", len(din), self.h.dmem)):
            if n > len(mem):
                raise HostModelError(f"the program needs {n} {what}; the host model holds "
                                     f"{len(mem)} (fix: a smaller GEMM)")
        mem = self.h.imem
        for i, w in enumerate(words):
            mem[i].value = w
        dmem = self.h.dmem
        for i, v in enumerate(beats_to_ints(din)):
            dmem[i].value = v
        self.dut.n_instr.value = len(words)
        self.dut.n_data.value = len(din)

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

    def read(self, finished: bool) -> RunRecord:
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
        omem = d.harness.omem
        dout = ints_to_beats([int(omem[i].value) for i in range(n_out)], self.host_bytes)
        return RunRecord(finished, bool(int(d.done.value)), int(d.error.value),
                         int(d.err_pc.value), int(d.last_pc.value), units(d.busy),
                         per_unit(d.unit_pc), units(d.waiting), per_unit(d.head_pc),
                         counters, dout)


async def run_program(dut, words: list[int], din: np.ndarray, host_bytes: int,
                      max_cycles: int) -> RunRecord:
    """Reset, preload, run and read back one program."""
    t0 = time.monotonic()
    driver = HarnessDriver(dut)
    await driver.reset()
    driver.preload(words, din)
    finished = await driver.run(max_cycles)
    rec = HarnessMonitor(dut, host_bytes).read(finished)
    rec.wall_s = time.monotonic() - t0
    return rec
