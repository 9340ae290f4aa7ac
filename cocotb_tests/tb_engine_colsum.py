"""cocotb testbench of the VSUM engine (hw/vector/colsum.py) in the engine harness.

The three uses of VSUM, each against its ``model.intops`` golden op:

* ``sum_requant``: ``intops.requantize(intops.sum_rows_i16(X), m, s)`` (int8 to VMEM) and
  ``intops.requantize_i16`` (int16 to VMEM) of int16 rows, strided (``stride > words``, and
  ``stride == 0``: one word summed 65535 times, ``|S|`` near ``2**31``), extreme inputs;
* ``zero_point``: ``intops.zero_point_bias(V)`` of int8 ``V`` (K, N) to ACC (int32,
  ``m = 256, s = 1``);
* ``mean_pool``: ``intops.mean_pool_i8`` over ``n = 1..40`` rows with
  ``latency_arith.mean_pool_params(n)`` (random, extreme and rounding-tie columns; for
  ``n <= 3`` every possible column sum).

Every word of the checked VMEM span / the whole ACC and the latency
(``latency_arith.vsum_latency``) are scoreboarded. Environment: FOLDACCEL_SEED,
FOLDACCEL_COLS, FOLDACCEL_ROWS, FOLDACCEL_CASES.
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
from hw.vector.formats import pack_param_word, vmem_rows
from hw.vector.latency_arith import mean_pool_params, vsum_latency
from model import intops
from sim.rtl.scoreboard import Scoreboard

SEED, C, R, CASES = testbench_params(cols=4, rows=4, cases=20)
PARAM = 3
HW = SimpleNamespace(cols=C, rows=R)


class Bench:
    """The driver plus a shadow copy of the VMEM / ACC words it preloaded."""

    def __init__(self, dut, name: str, seed: int):
        self.drv = EngineDriver(dut)
        self.sb = Scoreboard(name, seed)
        self.vmem = np.zeros((DEPTHS["vmem"], C), np.int64)
        self.acc = np.zeros((DEPTHS["acc"], C), np.int64)

    async def reset(self) -> None:
        await self.drv.reset()

    def load(self, addr: int, words: np.ndarray) -> None:
        for i, w in enumerate(np.asarray(words, np.int64)):
            self.drv.write("vmem", addr + i, lanes_to_int(w, 16))
            self.vmem[addr + i] = w

    def scramble_acc(self, rng) -> None:
        self.acc = rng.integers(-2**31, 2**31, self.acc.shape)
        for i, w in enumerate(self.acc):
            self.drv.write("acc", i, lanes_to_int(w, 32))

    async def run(self, where: str, **fields) -> None:
        args = SimpleNamespace(**fields)
        cycles = await self.drv.run(pack_args("VSUM", **fields))
        self.sb.compare(f"{where} latency", vsum_latency(args, HW), cycles)

    def check_vmem(self, where: str, lo: int, hi: int) -> None:
        for i in range(lo, hi):
            self.sb.compare(f"{where} VMEM[{i}]", [int(v) for v in self.vmem[i]],
                            int_to_lanes(self.drv.read("vmem", i), 16, C))

    def check_acc(self, where: str) -> None:
        for i in range(len(self.acc)):
            self.sb.compare(f"{where} ACC[{i}]", [int(v) for v in self.acc[i]],
                            int_to_lanes(self.drv.read("acc", i), 32, C))


def strided(values: np.ndarray, stride: int, words: int) -> np.ndarray:
    """Rows of ``words`` words at ``stride``-word pitch (gap words random)."""
    n = len(values)
    out = np.zeros((max(1, (n - 1) * stride + words), C), np.int64)
    for r in range(n):
        out[r * stride:r * stride + words] = vmem_rows(values[r:r + 1], C)
    return out


def param_word(off=0, post=0, m=0, s=1) -> int:
    return lanes_to_int(pack_param_word("VSUM", C, off=off, post=post, m=m, s=s), 64)


@cocotb.test()
async def sum_requant(dut):
    rng = np.random.default_rng(SEED)
    b = Bench(dut, "vsum.sum_requant", SEED)
    await b.reset()
    for case in range(CASES):
        n = int(rng.integers(1, 51))
        words = int(rng.integers(1, 5))
        stride = words + int(rng.integers(0, 4))
        width = words * C - int(rng.integers(0, C))       # padding lanes stay 0
        x = rng.integers(-2**15, 2**15, (n, width))
        if case % 5 == 1:
            x = rng.choice([-2**15, 2**15 - 1], (n, width))
        elif case % 5 == 2:
            x[:] = -2**15
        out = case % 2
        m, s = intops.quantize_multiplier(float(rng.uniform(0.2, 4.0)) /
                                          (n * (256.0 if out == 0 else 1.0)))
        if case % 7 == 3:
            m, s = int(rng.integers(0, 2**15)), int(rng.integers(1, 48))
        src = int(rng.integers(0, 200))
        dst = int(rng.integers(600, 1000))
        block = strided(x, stride, words)
        b.load(src, rng.integers(-2**15, 2**15, (len(block) + 4, C)))   # gap garbage
        for r in range(n):
            b.load(src + r * stride, block[r * stride:r * stride + words])
        b.load(dst, rng.integers(-2**15, 2**15, (words + 2, C)))
        b.drv.write("pmem", PARAM, param_word(m=m, s=s))
        total = intops.sum_rows_i16(x, axis=0)
        y = intops.requantize(total, m, s) if out == 0 else intops.requantize_i16(total, m, s)
        b.vmem[dst:dst + words] = vmem_rows(y[None, :], C)
        where = f"case {case} (n={n} words={words} stride={stride} m={m} s={s} out={out})"
        await b.run(where, src=src, stride=stride, rows=n, words=words, dst=dst, out=out,
                    param=PARAM)
        b.check_vmem(where, dst - 1, dst + words + 2)
    # stride 0: one word summed 65535 times (|S| up to 2**31 - 2**15), int16 output
    for k, word in enumerate((np.full(C, -2**15), np.full(C, 2**15 - 1),
                              rng.integers(-2**15, 2**15, C))):
        n = 65535
        m, s = intops.quantize_multiplier(1.0 / n)
        b.load(10, word[None, :])
        b.drv.write("pmem", PARAM, param_word(m=m, s=s))
        y = intops.requantize_i16(intops.sum_rows_i16(np.tile(word, (n, 1)), axis=0), m, s)
        b.vmem[500] = y
        where = f"stride 0 case {k} (n={n})"
        await b.run(where, src=10, stride=0, rows=n, words=1, dst=500, out=1, param=PARAM)
        b.check_vmem(where, 499, 502)
    # rows == 0: a no-op
    await b.run("rows 0", src=0, stride=1, rows=0, words=2, dst=0, out=0, param=PARAM)
    b.check_vmem("rows 0", 0, 4)
    b.sb.check(min_compared=CASES * 2)


@cocotb.test()
async def zero_point(dut):
    rng = np.random.default_rng(SEED + 1)
    b = Bench(dut, "vsum.zero_point", SEED)
    await b.reset()
    for case in range(max(4, CASES // 2)):
        k = int(rng.integers(1, 120))
        words = int(rng.integers(1, 7))
        v = rng.integers(-128, 128, (k, words * C))
        if case == 1:
            v[:] = -128
        elif case == 2:
            v[:] = 127
        stride = words + int(rng.integers(0, 3))
        src = int(rng.integers(0, 50))
        block = strided(v, stride, words)
        b.load(src, rng.integers(-128, 128, (len(block), C)))
        for r in range(k):
            b.load(src + r * stride, block[r * stride:r * stride + words])
        b.scramble_acc(rng)
        b.drv.write("pmem", PARAM, param_word(m=256, s=1))
        dst = int(rng.integers(0, DEPTHS["acc"] - words))
        b.acc[dst:dst + words] = intops.zero_point_bias(v).reshape(words, C)
        where = f"case {case} (K={k} words={words} stride={stride} dst={dst})"
        await b.run(where, src=src, stride=stride, rows=k, words=words, dst=dst, out=2,
                    param=PARAM)
        b.check_acc(where)
    b.sb.check(min_compared=4 * DEPTHS["acc"])


def columns_with_sums(sums: np.ndarray, n: int, rng) -> np.ndarray:
    """(n, len(sums)) int8 values whose column sums are ``sums`` (each in [-128n, 127n])."""
    q, r = np.divmod(np.asarray(sums, np.int64), n)
    out = np.repeat(q[None, :], n, axis=0) + (np.arange(n)[:, None] < r[None, :])
    return rng.permuted(out, axis=0)


@cocotb.test()
async def mean_pool(dut):
    rng = np.random.default_rng(SEED + 2)
    b = Bench(dut, "vsum.mean_pool", SEED)
    await b.reset()
    ties = 0
    for n, exhaustive in [(n, False) for n in range(1, 41)] + [(n, True) for n in (1, 2, 3)]:
        if exhaustive:
            sums = np.arange(-128 * n, 127 * n + 1)
            sums = np.concatenate([sums, np.zeros(-len(sums) % C, np.int64)])
            x = columns_with_sums(rng.permutation(sums), n, rng)
        else:
            words = int(rng.integers(1, 5))
            x = rng.integers(-128, 128, (n, words * C))
            kind = n % 4
            if kind == 1:             # rounding ties (and their neighbours) for this n
                base = rng.integers(-128, 127, words * C) * n
                x = columns_with_sums(np.clip(base + n // 2 + rng.integers(-1, 2, words * C),
                                              -128 * n, 127 * n), n, rng)
            elif kind == 2:           # extremes
                x[:, :C] = -128
                x[:, -C:] = 127
        words = x.shape[1] // C
        ties += int((((2 * x.sum(axis=0) + n) % (2 * n)) == 0).sum())
        off, m, s, post = mean_pool_params(n)
        src = int(rng.integers(0, 8))
        stride = words + int(rng.integers(0, 2))
        dst = src + n * stride + int(rng.integers(0, 4))
        assert dst + words <= DEPTHS["vmem"]
        block = strided(x, stride, words)
        b.load(src, block)
        b.load(dst, rng.integers(-2**15, 2**15, (words + 1, C)))
        b.drv.write("pmem", PARAM, param_word(off=off, post=post, m=m, s=s))
        want = intops.mean_pool_i8(x, axis=0)
        b.vmem[dst:dst + words] = vmem_rows(want[None, :], C)
        where = f"n={n} (words={words} stride={stride} off={off} m={m} s={s} post={post}" \
                f"{' all sums' if exhaustive else ''})"
        await b.run(where, src=src, stride=stride, rows=n, words=words, dst=dst, out=0,
                    param=PARAM)
        b.check_vmem(where, dst, dst + words + 1)
    assert ties > 0, "no rounding tie exercised"
    dut._log.info("mean pool: %d rounding ties", ties)
    b.sb.check(min_compared=43 * 2)
