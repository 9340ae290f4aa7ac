"""cocotb testbench of the VSOFTMAX engine (hw/vector/softmax.py) in the engine harness.

The reference is ``model.intops``: ``softmax_u8(scores, make_exp_lut(scale), allowed)`` per row
and ``u8_to_i8`` for the stored operand; lanes past ``ncols`` (and whole extra words) must be
-128. The ELUT harness memory is preloaded with ``make_exp_lut(scale)`` for the case's scale.
Every output element, every VMEM word that must stay unchanged (inside a span around the
operands) and the measured latency (``hw.vector.latency_softmax_mover.vsoftmax_latency``) are
scoreboarded. Source padding lanes hold random 16-bit garbage (the engine must ignore it).

``directed_cases``: all-equal scores, one dominant score, every column masked but one, rows
with different masks in one instruction (``mrow``/``mcols``), ``ncols`` not a multiple of
``cols``, ``ncols = 1``, long rows (200 and 248..250 words), extreme scores -128/127, many
short rows (the row pipeline at its 9-cycle period), an extra padding word, rows without any
allowed entry (only latency and the valid rows are checked), ``rows = 0``, several exp
scales, in place and out of place. ``random_cases``: seeded random shapes, masks and scales.
Environment: FOLDACCEL_SEED, FOLDACCEL_COLS, FOLDACCEL_ROWS, FOLDACCEL_CASES.
"""

from __future__ import annotations

from types import SimpleNamespace

import cocotb
import numpy as np

from cocotb_tests.engine_harness import (
    DEPTHS,
    EngineDriver,
    int_to_lanes,
    lanes_to_int,
    pack_args,
    testbench_params,
)
from hw.vector.latency_softmax_mover import vsoftmax_latency
from model import intops
from sim.rtl.scoreboard import Scoreboard

SEED, C, R, CASES = testbench_params(cols=4, rows=4, cases=20)
SCALES = (0.01, 0.05, 0.2, 1.0, 4.0)


class Bench:
    def __init__(self, dut, name: str):
        self.drv = EngineDriver(dut)
        self.sb = Scoreboard(name, SEED)
        self.rng = np.random.default_rng(SEED)
        self.scale = None

    def load_lut(self, scale: float) -> np.ndarray:
        lut = intops.make_exp_lut(scale)
        if scale != self.scale:
            for d in range(256):
                self.drv.write("elut", d, int(lut[d]))
            self.scale = scale
        return lut

    async def case(self, where: str, scores, scale: float, mrow: int | None = None,
                   mcols: int = 0, words: int | None = None, inplace: bool = False,
                   rows: int | None = None) -> None:
        """Run one VSOFTMAX on ``scores`` (rows, ncols) and check it against intops."""
        rng, drv, sb = self.rng, self.drv, self.sb
        scores = np.asarray(scores, np.int64)
        nrows, ncols = scores.shape
        nrows = nrows if rows is None else rows
        mrow = nrows if mrow is None else mrow
        words = -(-ncols // C) if words is None else words
        size = nrows * words
        src = int(rng.integers(0, 8))
        dst = src if inplace else src + size + int(rng.integers(0, 8))
        span = min(DEPTHS["vmem"], max(src, dst) + size + 8)
        assert dst + size <= DEPTHS["vmem"], where
        lut = self.load_lut(scale)

        image = rng.integers(-2**15, 2**15, (span, C))
        lanes = rng.integers(-2**15, 2**15, (nrows, words * C))   # padding lanes: garbage
        lanes[:, :ncols] = scores[:nrows]
        image[src:src + size] = lanes.reshape(size, C)
        for i in range(span):
            drv.write("vmem", i, lanes_to_int(image[i], 16))

        allowed = np.ones((nrows, ncols), bool)
        allowed[mrow:, :mcols] = False
        want = image.copy()
        valid = allowed.any(axis=1)
        out = np.full((nrows, words * C), -128, np.int64)
        for r in np.flatnonzero(valid):
            p = intops.softmax_u8(scores[r], lut, allowed[r])
            out[r, :ncols] = intops.u8_to_i8(p)
        want[dst:dst + size] = out.reshape(size, C)
        skip = set()            # words of rows without an allowed entry: undefined
        for r in np.flatnonzero(~valid):
            skip.update(range(dst + r * words, dst + (r + 1) * words))

        args = pack_args("VSOFTMAX", src=src, dst=dst, rows=nrows, words=words, ncols=ncols,
                         mrow=mrow, mcols=mcols)
        cycles = await drv.run(args)
        info = (f"{where} (rows={nrows} words={words} ncols={ncols} mrow={mrow} mcols={mcols} "
                f"scale={scale} src={src} dst={dst})")
        a = SimpleNamespace(rows=nrows, words=words, ncols=ncols, mrow=mrow, mcols=mcols)
        sb.compare(f"{info} latency", vsoftmax_latency(a, SimpleNamespace(cols=C, rows=R)),
                   cycles)
        for i in range(span):
            if i in skip:
                continue
            got = int_to_lanes(drv.read("vmem", i), 16, C)
            if dst <= i < dst + size:
                r, k = divmod(i - dst, words)
                for j in range(C):
                    sb.compare(f"{info} row {r} element {k * C + j}", int(want[i, j]), got[j])
            else:
                sb.compare(f"{info} untouched VMEM[{i}]", [int(x) for x in want[i]], got)


def _rand_scores(rng, rows, ncols, lo=-128, hi=127):
    return rng.integers(lo, hi + 1, (rows, ncols))


@cocotb.test()
async def directed_cases(dut):
    bench = Bench(dut, f"vsoftmax.directed.c{C}")
    await bench.drv.reset()
    rng = bench.rng
    n2 = 2 * C + 1
    await bench.case("all equal", np.full((3, n2), 3), 0.05)
    await bench.case("all equal -128", np.full((2, C + 3), -128), 1.0)
    dom = np.full((4, n2), -128)
    dom[np.arange(4), rng.integers(0, n2, 4)] = 127
    await bench.case("one dominant 127 vs -128", dom, 0.01)
    dom2 = _rand_scores(rng, 4, n2, -60, 20)
    dom2[np.arange(4), rng.integers(0, n2, 4)] = 110
    await bench.case("one dominant score", dom2, 0.2)
    await bench.case("every column masked but one", _rand_scores(rng, 3, n2), 0.05,
                     mrow=0, mcols=n2 - 1)
    await bench.case("later rows see one column", _rand_scores(rng, 4, n2), 0.2,
                     mrow=1, mcols=n2 - 1)
    await bench.case("mixed masks", _rand_scores(rng, 6, 3 * C + 2), 0.05, mrow=2,
                     mcols=C + 1, inplace=True)
    await bench.case("mixed masks, mcols = 1", _rand_scores(rng, 5, 2 * C - 1), 1.0,
                     mrow=3, mcols=1)
    await bench.case("ncols = 1", _rand_scores(rng, 5, 1), 0.2)
    await bench.case("ncols = 1, many rows", _rand_scores(rng, 40, 1), 0.05, inplace=True)
    await bench.case("ncols = cols + 1, many rows", _rand_scores(rng, 30, C + 1), 0.2,
                     mrow=7, mcols=2)
    await bench.case("words = 9", _rand_scores(rng, 5, 9 * C), 0.05, mrow=1, mcols=3 * C)
    await bench.case("words = 10", _rand_scores(rng, 4, 10 * C - 1), 0.01)
    await bench.case("long rows 200", _rand_scores(rng, 3, 200), 0.05, mrow=1, mcols=37,
                     inplace=True)
    await bench.case("extreme scores", rng.choice([-128, 127], (5, 3 * C - 1)), 0.05,
                     mrow=4, mcols=C)
    await bench.case("extreme scores, large scale", rng.choice([-128, -127, 126, 127],
                                                               (3, C + 2)), 4.0)
    await bench.case("extra padding word", _rand_scores(rng, 3, C + 2), 0.2, words=3)
    await bench.case("rows without allowed entries", _rand_scores(rng, 4, C + 1), 0.05,
                     mrow=2, mcols=C + 1)
    await bench.case("rows = 0", _rand_scores(rng, 1, C), 0.05, rows=0)
    for scale in SCALES:
        await bench.case(f"scale {scale}", _rand_scores(rng, 3, 3 * C + 1), scale, mrow=2,
                         mcols=C - 1)
    w_long = 248
    await bench.case("248 words per row", _rand_scores(rng, 2, w_long * C), 0.05, mrow=1,
                     mcols=5, inplace=True)
    await bench.case("250 words per row", _rand_scores(rng, 2, 250 * C - 1), 0.01)
    bench.sb.check(min_compared=1000)


@cocotb.test()
async def random_cases(dut):
    bench = Bench(dut, f"vsoftmax.random.c{C}")
    await bench.drv.reset()
    rng = bench.rng
    for case in range(CASES):
        rows = int(rng.integers(1, 9))
        ncols = int(rng.integers(1, 6 * C + 1))
        mrow = int(rng.integers(0, rows + 1))
        mcols = int(rng.integers(0, ncols))      # every row keeps an allowed entry
        lo = int(rng.integers(-128, 100))
        scores = _rand_scores(rng, rows, ncols, lo, int(rng.integers(lo, 128)))
        await bench.case(f"random {case}", scores, float(rng.choice(SCALES)), mrow=mrow,
                         mcols=mcols, inplace=bool(rng.integers(0, 2)))
    bench.sb.check(min_compared=CASES * 2)
