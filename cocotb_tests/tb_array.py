"""cocotb testbench of hw.array.SystolicArray: driver -> DUT -> monitor -> scoreboard vs numpy.

Parameters (environment): FOLDACCEL_SEED, FOLDACCEL_ROWS, FOLDACCEL_COLS, FOLDACCEL_TILES.
The driver feeds tiles back to back at the densest spacing the array allows (the last k-steps
of consecutive tiles ``max(rows, cols)`` cycles apart) or with random gaps; the monitor
records every drained row; the reference is ``A @ B`` in numpy (int64).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import cocotb
import numpy as np
from cocotb.clock import Clock
from cocotb.triggers import FallingEdge, ReadOnly

from sim.rtl.scoreboard import Scoreboard

SEED = int(os.environ.get("FOLDACCEL_SEED", "1"))
ROWS = int(os.environ.get("FOLDACCEL_ROWS", "4"))
COLS = int(os.environ.get("FOLDACCEL_COLS", "3"))
TILES = int(os.environ.get("FOLDACCEL_TILES", "60"))
GAP = max(ROWS, COLS, 2)


@dataclass
class Tile:
    a: np.ndarray  # (ROWS, K) int8
    b: np.ndarray  # (K, COLS) int8
    start: int = 0  # cycle of the first k-step

    @property
    def k(self) -> int:
        return self.a.shape[1]

    @property
    def last(self) -> int:
        return self.start + self.k - 1


def pack(values, bits: int) -> int:
    word = 0
    for n, v in enumerate(values):
        word |= (int(v) & ((1 << bits) - 1)) << (bits * n)
    return word


def unpack_signed(word: int, bits: int, n: int) -> list[int]:
    out = []
    for i in range(n):
        v = (word >> (bits * i)) & ((1 << bits) - 1)
        out.append(v - (1 << bits) if v >> (bits - 1) else v)
    return out


def schedule(tiles: list[Tile], gaps: list[int]) -> int:
    """Give each tile a start cycle: after the previous tile's steps plus ``gap`` idle
    cycles, and late enough that the last steps are >= GAP cycles apart. Returns the cycle
    count needed to drain everything."""
    t = 2
    prev_last = None
    for tile, gap in zip(tiles, gaps, strict=True):
        start = t + gap
        if prev_last is not None:
            start = max(start, prev_last + GAP - tile.k + 1)
        tile.start = start
        prev_last = tile.last
        t = tile.last + 1
    return t + COLS + ROWS + 4


class Driver:
    """Drives one k-step (or an idle cycle) per clock."""

    def __init__(self, dut, tiles: list[Tile]):
        self.dut = dut
        self.steps: dict[int, tuple] = {}
        for tile in tiles:
            for k in range(tile.k):
                self.steps[tile.start + k] = (tile.a[:, k], tile.b[k, :], k == 0,
                                              k == tile.k - 1)

    def drive(self, cycle: int) -> None:
        d = self.dut
        step = self.steps.get(cycle)
        if step is None:
            d.valid.value = 0
            d.first.value = 0
            d.last.value = 0
            return
        a, b, first, last = step
        d.a.value = pack(a, 8)
        d.b.value = pack(b, 8)
        d.valid.value = 1
        d.first.value = int(first)
        d.last.value = int(last)


class Monitor:
    """Records pre/out announcements and drained rows per cycle."""

    def __init__(self, dut):
        self.dut = dut
        self.pre: dict[int, int] = {}
        self.out: dict[int, tuple[int, list[int]]] = {}

    def sample(self, cycle: int) -> None:
        d = self.dut
        if int(d.pre_valid.value):
            self.pre[cycle] = int(d.pre_row.value)
        if int(d.out_valid.value):
            row = int(d.out_row.value)
            self.out[cycle] = (row, unpack_signed(int(d.out_data.value), 32, COLS))


def reference(tiles: list[Tile]) -> tuple[dict, dict]:
    """Expected drain events: cycle -> (tile, row, values) and cycle -> row announcements."""
    out, pre = {}, {}
    for n, tile in enumerate(tiles):
        res = tile.a.astype(np.int64) @ tile.b.astype(np.int64)
        for i in range(ROWS):
            out[tile.last + COLS + i] = (n, i, [int(v) for v in res[i]])
            pre[tile.last + COLS + i - 1] = i
    return out, pre


async def run_tiles(dut, tiles: list[Tile], gaps: list[int], name: str) -> Scoreboard:
    cocotb.start_soon(Clock(dut.clk, 2, unit="ns").start())
    dut.rst.value = 1
    dut.valid.value = 0
    await FallingEdge(dut.clk)
    await FallingEdge(dut.clk)
    dut.rst.value = 0
    n_cycles = schedule(tiles, gaps)
    driver, monitor = Driver(dut, tiles), Monitor(dut)
    for cycle in range(n_cycles):
        await FallingEdge(dut.clk)
        driver.drive(cycle)
        await ReadOnly()
        monitor.sample(cycle)
    want_out, want_pre = reference(tiles)
    sb = Scoreboard(name, SEED)
    for cycle in sorted(set(want_out) | set(monitor.out)):
        if cycle not in want_out:
            sb.compare(f"cycle {cycle}", "no drained row", monitor.out[cycle])
            continue
        n, i, values = want_out[cycle]
        tile = tiles[n]
        got = monitor.out.get(cycle)
        if got is None or got[0] != i:
            sb.compare(f"tile {n} row {i} at cycle {cycle}", f"out_row={i}",
                       "nothing" if got is None else f"out_row={got[0]}")
            continue
        for j in range(COLS):
            sb.compare(f"tile {n} C[{i},{j}]", values[j], got[1][j],
                       f"K={tile.k}, A[{i},:]={tile.a[i].tolist()}, B[:,{j}]="
                       f"{tile.b[:, j].tolist()}")
    for cycle in sorted(set(want_pre) | set(monitor.pre)):
        sb.compare(f"pre_row at cycle {cycle}", want_pre.get(cycle), monitor.pre.get(cycle))
    return sb


def random_tile(rng: np.random.Generator, k: int) -> Tile:
    return Tile(rng.integers(-128, 128, (ROWS, k)).astype(np.int8),
                rng.integers(-128, 128, (k, COLS)).astype(np.int8))


@cocotb.test()
async def random_tiles(dut):
    """Seeded random tiles (K in 1..24) with random gaps, including back to back."""
    rng = np.random.default_rng(SEED)
    tiles = [random_tile(rng, int(rng.integers(1, 25))) for _ in range(TILES)]
    gaps = [int(g) for g in rng.choice([0, 0, 0, 1, 3, 7], TILES)]
    sb = await run_tiles(dut, tiles, gaps, "array.random_tiles")
    sb.check(min_compared=TILES * ROWS * COLS)


@cocotb.test()
async def corners(dut):
    """All -128 (largest sums), extreme signs, K=1 tiles at minimum spacing, K shrinking."""
    rng = np.random.default_rng(SEED + 1)
    full = np.int8(-128)
    tiles = [
        Tile(np.full((ROWS, 300), full), np.full((300, COLS), full)),
        Tile(np.full((ROWS, 40), -128, np.int8), np.full((40, COLS), 127, np.int8)),
        Tile(np.full((ROWS, 40), 127, np.int8), np.full((40, COLS), 127, np.int8)),
    ]
    tiles += [random_tile(rng, 1) for _ in range(8)]  # K=1 at the minimum spacing
    tiles += [random_tile(rng, k) for k in (GAP + 5, 1, GAP, 2, GAP + 1, 1)]
    tiles.append(Tile(np.full((ROWS, 1), full), np.full((1, COLS), full)))
    sb = await run_tiles(dut, tiles, [0] * len(tiles), "array.corners")
    sb.check(min_compared=len(tiles) * ROWS * COLS)
