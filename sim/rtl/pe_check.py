"""The RTL flow's self-check: a seeded random stream through the Verilated MAC PE
(``hw.pe.MacPE``), driver -> DUT -> monitor -> scoreboard vs an independent numpy reference.

``foldaccel doctor`` and the build-cache benchmark run this cocotb module to prove that a
Verilator build works end to end; ``cocotb_tests/tb_pe.py`` reuses its driver, monitor and
reference for the full PE testbench. Parameters arrive as environment variables:
FOLDACCEL_SEED (stimulus seed) and FOLDACCEL_PE_CYCLES (length of the random stream).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import cocotb
import numpy as np
from cocotb.clock import Clock
from cocotb.triggers import FallingEdge

from sim.rtl.scoreboard import Scoreboard

SEED = int(os.environ.get("FOLDACCEL_SEED", "1"))
RANDOM_CYCLES = int(os.environ.get("FOLDACCEL_PE_CYCLES", "6000"))


@dataclass(frozen=True)
class Beat:
    """Inputs of one cycle."""

    a: int
    b: int
    valid: int
    clear: int


def reference_acc(beats: list[Beat]) -> np.ndarray:
    """Accumulator after each cycle, computed with numpy independently of the RTL's rule.

    A ``clear`` starts a new group; within a group the accumulator is the running sum of
    ``valid * a * b``; the int32 accumulator wraps modulo 2**32.
    """
    arr = np.array([(x.a, x.b, x.valid, x.clear) for x in beats], dtype=np.int64)
    a, b, valid, clear = arr.T
    contrib = valid * a * b
    total = np.cumsum(contrib)
    group = np.cumsum(clear)
    # running sum restarted at each clear: subtract the total just before the group began
    starts = np.flatnonzero(clear)
    before = np.concatenate([[0], total[starts - 1] if len(starts) else []]).astype(np.int64)
    if len(starts) and starts[0] == 0:
        before[1] = 0
    acc = total - before[group]
    return (acc & 0xFFFFFFFF).astype(np.uint32).view(np.int32)


class Driver:
    """Applies one Beat per cycle at the falling edge."""

    def __init__(self, dut) -> None:
        self.dut = dut

    def drive(self, beat: Beat) -> None:
        self.dut.a.value = beat.a
        self.dut.b.value = beat.b
        self.dut.valid.value = beat.valid
        self.dut.clear.value = beat.clear


class Monitor:
    """Samples the PE outputs at the falling edge (after the rising edge updated them)."""

    def __init__(self, dut) -> None:
        self.dut = dut

    def sample(self) -> dict[str, int]:
        d = self.dut
        return {"acc": d.acc.value.to_signed(), "a_out": d.a_out.value.to_signed(),
                "b_out": d.b_out.value.to_signed(), "valid_out": int(d.valid_out.value),
                "clear_out": int(d.clear_out.value)}


async def reset(dut) -> None:
    cocotb.start_soon(Clock(dut.clk, 2, unit="ns").start())
    Driver(dut).drive(Beat(0, 0, 0, 0))
    dut.rst.value = 1
    for _ in range(2):
        await FallingEdge(dut.clk)
    dut.rst.value = 0


async def run_beats(dut, beats: list[Beat], name: str) -> Scoreboard:
    """Drive ``beats``; check accumulator and forwarded outputs of every cycle vs numpy."""
    await reset(dut)
    driver, monitor = Driver(dut), Monitor(dut)
    observed = []
    for beat in beats:
        driver.drive(beat)
        await FallingEdge(dut.clk)
        observed.append(monitor.sample())
    expected_acc = reference_acc(beats)
    sb = Scoreboard(name, SEED)
    for cycle, (beat, got) in enumerate(zip(beats, observed, strict=True)):
        want = {"acc": int(expected_acc[cycle]), "a_out": beat.a, "b_out": beat.b,
                "valid_out": beat.valid, "clear_out": beat.clear}
        prev = beats[cycle - 1] if cycle else None
        sb.compare(f"cycle {cycle}", want, got, f"{beat} after {prev}")
    return sb


def random_beats(rng: np.random.Generator, n: int) -> list[Beat]:
    a = rng.integers(-128, 128, n)
    b = rng.integers(-128, 128, n)
    valid = rng.random(n) < 0.85
    clear = rng.random(n) < 0.03
    return [Beat(int(a[i]), int(b[i]), int(valid[i]), int(clear[i])) for i in range(n)]


@cocotb.test()
async def random_stream(dut):
    """Thousands of seeded random beats: random operands, valid and clears."""
    sb = await run_beats(dut, random_beats(np.random.default_rng(SEED), RANDOM_CYCLES),
                         "pe.random_stream")
    sb.check(min_compared=RANDOM_CYCLES)
