"""cocotb testbench of the MTRANS engine (hw/vector/transpose.py) in the engine harness.

``directed_cases`` transposes views of a row-major int8 tensor ``X`` (tokens x D, stored as
VMEM rows, ``formats.vmem_rows``): a head's column slice (``stride`` = the row's words), a
folded view ``X.reshape(T*N, D/N)`` (``stride`` = the folded row's words), a slice starting
inside the tensor; the reference is the numpy transpose of that view, placed at byte
``boff``. ``random_cases`` draws ``src``, ``stride`` (including 0 and strides shorter than a
row), ``rows``, ``ncols``, ``bank``, ``dst`` and ``boff``; its reference is numpy indexing of
the VMEM image (element ``(r, c)`` = low byte of lane ``c % cols`` of word
``src + r*stride + c // cols``). Both banks, ``boff > 0``, ``rows`` below the word's bytes,
``ncols`` not a multiple of ``cols``. Every byte of the destination bank (all words: the
written bytes and the ones that must be unchanged) and the latency
(``hw.vector.latency_softmax_mover.mtrans_latency``) are scoreboarded.
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
from hw.vector.formats import vmem_rows
from hw.vector.latency_softmax_mover import mtrans_latency
from sim.rtl.scoreboard import Scoreboard

SEED, C, R, CASES = testbench_params(cols=3, rows=5, cases=40)
BANKS = ("act", "wgt")
SPAN = 256


class Bench:
    def __init__(self, dut, name: str):
        self.drv = EngineDriver(dut)
        self.sb = Scoreboard(name, SEED)
        self.rng = np.random.default_rng(SEED)

    def nbytes(self, bank: int) -> int:
        return (R, C)[bank]

    async def case(self, where: str, vmem, view, src: int, stride: int, bank: int, dst: int,
                   boff: int) -> None:
        """``view`` (n, ncols): the elements the instruction must transpose, from the
        caller's own indexing of ``vmem`` (the VMEM image, (SPAN, C) lanes)."""
        drv, sb, rng = self.drv, self.sb, self.rng
        n, ncols = view.shape
        nb = self.nbytes(bank)
        name = BANKS[bank]
        for i in range(SPAN):
            drv.write("vmem", i, lanes_to_int(vmem[i], 16))
        before = rng.integers(0, 256, (DEPTHS[name], nb))
        for i in range(DEPTHS[name]):
            drv.write(name, i, lanes_to_int(before[i], 8))
        want = before.copy()
        want[dst:dst + ncols, boff:boff + n] = np.asarray(view).T & 0xFF
        args = pack_args("MTRANS", src=src, stride=stride, rows=n, ncols=ncols, bank=bank,
                         dst=dst, boff=boff)
        cycles = await drv.run(args)
        info = (f"{where} (src={src} stride={stride} rows={n} ncols={ncols} bank={name} "
                f"dst={dst} boff={boff})")
        a = SimpleNamespace(src=src, stride=stride, rows=n, ncols=ncols, bank=bank, dst=dst,
                            boff=boff)
        sb.compare(f"{info} latency", mtrans_latency(a, SimpleNamespace(cols=C, rows=R)),
                   cycles)
        for i in range(DEPTHS[name]):
            got = int_to_lanes(drv.read(name, i), 8, nb, signed=False)
            if dst <= i < dst + ncols:
                for b in range(nb):
                    sb.compare(f"{info} {name.upper()}[{i}] byte {b}", int(want[i, b]), got[b])
            else:
                sb.compare(f"{info} untouched {name.upper()}[{i}]",
                           [int(x) for x in want[i]], got)


def _image(rng, tensor=None, base: int = 0):
    """A random VMEM image (garbage int16 lanes), with ``tensor`` stored as VMEM rows."""
    img = rng.integers(-2**15, 2**15, (SPAN, C))
    if tensor is not None:
        words = vmem_rows(tensor, C).astype(np.int64)
        img[base:base + len(words)] = words
    return img


@cocotb.test()
async def directed_cases(dut):
    bench = Bench(dut, f"mtrans.directed.c{C}r{R}")
    await bench.drv.reset()
    rng = bench.rng
    for bank in (0, 1):
        nb = bench.nbytes(bank)
        # a head's column slice of X (T, D): row stride = D / cols words
        tokens, d = 2 * nb + 1, 6 * C
        x = rng.integers(-128, 128, (tokens, d))
        base = 7
        img = _image(rng, x, base)
        head, hd = 1, 2 * C
        n, t0 = nb, 1
        view = x[t0:t0 + n, head * hd:(head + 1) * hd]
        await bench.case(f"head slice bank {bank}", img, view,
                         base + t0 * (d // C) + head * hd // C, d // C, bank, 11, 0)
        # same slice, fewer rows, at a byte offset, ncols not a multiple of cols
        n, boff = max(1, nb - 2), min(2, nb - 1)
        n = min(n, nb - boff)
        view = x[t0:t0 + n, head * hd:head * hd + hd - 1]
        await bench.case(f"head slice boff bank {bank}", img, view,
                         base + t0 * (d // C) + head * hd // C, d // C, bank, 40, boff)
        # folded view: X (T, D) -> (T*N, D/N), rows of D/N elements (a multiple of cols)
        fold = 3
        xf = x.reshape(tokens * fold, d // fold)
        n = nb
        view = xf[2:2 + n, :d // fold - 1]
        await bench.case(f"folded view bank {bank}", img, view,
                         base + 2 * (d // fold // C), d // fold // C, bank, 100, nb - n)
        # one row, one column; and one row across many words
        await bench.case(f"1x1 bank {bank}", img, x[:1, :1], base, 0, bank, 0, nb - 1)
        await bench.case(f"1 row bank {bank}", img, x[3:4, :5 * C + 1], base + 3 * (d // C),
                         d // C, bank, 255 - 5 * C - 1, 0)
        # long: ncols = 40 (many word-columns), all bytes of the word
        y = rng.integers(-128, 128, (nb, 40))
        img2 = _image(rng, y, 20)
        await bench.case(f"40 columns bank {bank}", img2, y, 20, -(-40 // C), bank, 200, 0)
    bench.sb.check(min_compared=100)


@cocotb.test()
async def random_cases(dut):
    bench = Bench(dut, f"mtrans.random.c{C}r{R}")
    await bench.drv.reset()
    rng = bench.rng
    for case in range(CASES):
        bank = int(rng.integers(0, 2))
        nb = bench.nbytes(bank)
        n = int(rng.integers(1, nb + 1))
        boff = int(rng.integers(0, nb - n + 1))
        ncols = int(rng.integers(1, 8 * C + 1))
        groups = -(-ncols // C)
        stride = int(rng.integers(0, 2 * groups + 3))
        src = int(rng.integers(0, SPAN - (n - 1) * stride - groups + 1))
        dst = int(rng.integers(0, DEPTHS[BANKS[bank]] - ncols + 1))
        img = _image(rng)
        view = np.array([[img[src + r * stride + c // C, c % C] for c in range(ncols)]
                         for r in range(n)])
        await bench.case(f"random {case}", img, view, src, stride, bank, dst, boff)
    bench.sb.check(min_compared=CASES * 2)
