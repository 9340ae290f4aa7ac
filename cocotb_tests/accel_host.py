"""Host side of the accelerator testbenches: driver (preload + start), monitor (results).

The design is ``sim.designs.accel_design``: the clock runs inside the simulation and the
host model streams the preloaded program and data, so between ``start`` and ``finished``
Python sleeps. Memories are written and read through simulator hierarchy (no cycles spent).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from cocotb.triggers import First, RisingEdge, Timer

from hw.accel import COUNTERS, ERR_ILLEGAL, ERR_WATCHDOG, N_UNITS, PC_BITS
from hw.hostio import beats_to_ints, ints_to_beats
from hw.isa import UNITS

CLOCK_NS = 2  # the wrapper toggles clk every 1 ns


@dataclass
class RunRecord:
    """What the monitor saw after a run."""

    finished: bool
    done: bool
    error: int
    err_pc: int
    last_pc: int
    busy: list[str]
    unit_pc: dict[str, int]
    counters: dict[str, int]
    dout: np.ndarray = field(default_factory=lambda: np.zeros((0, 1), np.uint8))

    def describe_error(self, instrs) -> str:
        """Human-readable error naming the instruction and the busy units."""
        def name(pc):
            return f"#{pc} {instrs[pc]}" if 0 <= pc < len(instrs) else f"#{pc} (past the end)"

        if self.error == ERR_ILLEGAL:
            return f"illegal instruction {name(self.err_pc)}"
        if self.error == ERR_WATCHDOG:
            busy = ", ".join(f"{u} (executing {name(self.unit_pc[u])})" for u in self.busy)
            return (f"watchdog: no DONE after {self.counters['total']} cycles; last instruction "
                    f"started: {name(self.last_pc)}; busy: {busy or 'no unit'}; dispatcher "
                    f"waiting at {name(self.err_pc)}")
        if not self.finished:
            return "simulation time limit reached without finished"
        return "ok"


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
        upc = int(d.unit_pc.value)
        unit_pc = {UNITS[u]: (upc >> (PC_BITS * u)) & 0xFFFF for u in range(N_UNITS)}
        busy_bits = int(d.busy.value)
        n_out = int(d.n_out.value)
        omem = d.harness.omem
        dout = ints_to_beats([int(omem[i].value) for i in range(n_out)], self.host_bytes)
        return RunRecord(finished, bool(int(d.done.value)), int(d.error.value),
                         int(d.err_pc.value), int(d.last_pc.value),
                         [UNITS[u] for u in range(N_UNITS) if busy_bits >> u & 1], unit_pc,
                         counters, dout)


async def run_program(dut, words: list[int], din: np.ndarray, host_bytes: int,
                      max_cycles: int) -> RunRecord:
    """Reset, preload, run and read back one program."""
    driver = HarnessDriver(dut)
    await driver.reset()
    driver.preload(words, din)
    finished = await driver.run(max_cycles)
    return HarnessMonitor(dut, host_bytes).read(finished)
