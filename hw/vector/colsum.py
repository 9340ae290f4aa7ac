"""VSUM engine of the vector unit: column sums with a requantizing epilogue.

``VSUM src, stride, rows, words, dst, out, param``: for each word column ``w`` in
``0..words-1`` and each lane, ``S = sum_{r < rows} VMEM[src + r*stride + w]`` (exact int16
sums, ``|S| < 2**31`` for ``rows <= 65535``); then ``y = ((S + off)*m + 2**(s-1)) >> s``
(arithmetic), ``y = y + post``, saturated to the output type: ``out`` 0 int8 ->
``VMEM[dst + w]`` (sign-extended lanes), 1 int16 -> ``VMEM[dst + w]``, 2 int32 ->
``ACC[dst + w]`` (``out`` 3 is illegal, rejected by the opcode rules; the engine treats
it as 1). Scalars ``off``, ``post``, ``m``, ``s`` from ``PMEM[param]``
(``PARAM_LAYOUTS["VSUM"]``). Uses: ``intops.sum_rows_i16`` + ``requantize`` (``off = post =
0``, int8), ``intops.zero_point_bias`` (``m = 256, s = 1``, int32: ``128 * S``) and
``intops.mean_pool_i8`` (``hw.vector.latency_arith.mean_pool_params``).

**Schedule** (``c`` = start cycle): the reads go column by column, one per cycle: read ``k =
w*rows + r`` (address ``src + w + r*stride``, 16-bit wrap) in cycle ``c + k``; ``PMEM[param]``
is read in cycle ``c``. The word of read ``k`` arrives in cycle ``c + k + 1`` and is added to
the lane accumulators (the first row of a column replaces them); in the cycle of a column's
last word the sum is registered (``S``), the next cycle registers ``P = (S + off)*m +
2**(s-1)``, and the cycle after that writes ``sat(P >> s + post)``: column ``w`` is written in
cycle ``c + (w + 1)*rows + 2``. ``done`` = the last write = ``c + rows*words + 2``: latency
``rows*words + 2`` (``latency_arith.vsum_latency``). ``rows == 0`` or ``words == 0``: no-op,
``done`` at ``c + 1``.
"""

from __future__ import annotations

from amaranth.hdl import Module, Mux, Signal, signed

from hw.vector.elementwise import busy_logic, param_signals, round_const, saturate
from hw.vector.ports import ADDR_BITS, Engine


class ColSumEngine(Engine):
    """VSUM: strided column sums + requantizing epilogue (see module docstring)."""

    OP = "VSUM"
    PORTS = ("vmem_r", "vmem_w", "pmem_r", "acc_w")

    def elaborate(self, platform):
        m = Module()
        C = self.cols
        a = self.args
        go = self.start & (a.rows != 0) & (a.words != 0)

        # ---- read issue
        n_rows = Signal(16)
        n_words = Signal(8)
        stride = Signal(8)
        col = Signal(ADDR_BITS)     # src + w of the current column
        rd = Signal(ADDR_BITS)      # address of the current read
        r = Signal(16)              # row of the current read
        w = Signal(8)               # column of the current read
        active = Signal()
        out = Signal(2)
        col_last = (r + 1) == n_rows
        all_last = col_last & ((w + 1) == n_words)
        reading = go | active
        m.d.comb += [
            self.vmem_r.en.eq(reading),
            self.vmem_r.addr.eq(Mux(self.start, a.src, rd)),
            self.pmem_r.en.eq(self.start),
            self.pmem_r.addr.eq(a.param),
        ]
        # the start cycle's read is (w, r) = (0, 0): its successor is computed from the fields
        first_col_last = a.rows == 1
        first_all_last = first_col_last & (a.words == 1)
        with m.If(go):
            m.d.sync += [n_rows.eq(a.rows), n_words.eq(a.words), stride.eq(a.stride),
                         out.eq(a.out), active.eq(~first_all_last)]
            with m.If(first_col_last):
                m.d.sync += [col.eq(a.src + 1), rd.eq(a.src + 1), r.eq(0), w.eq(1)]
            with m.Else():
                m.d.sync += [col.eq(a.src), rd.eq(a.src + a.stride), r.eq(1), w.eq(0)]
        with m.Elif(active):
            with m.If(all_last):
                m.d.sync += active.eq(0)
            with m.Elif(col_last):
                m.d.sync += [col.eq(col + 1), rd.eq(col + 1), r.eq(0), w.eq(w + 1)]
            with m.Else():
                m.d.sync += [rd.eq(rd + stride), r.eq(r + 1)]
        is_first = Mux(self.start, 1, r == 0)
        is_last = Mux(self.start, first_col_last, col_last)
        is_final = Mux(self.start, first_all_last, all_last)

        p_latch = Signal()
        m.d.sync += p_latch.eq(self.start)
        p = param_signals(m, "VSUM", self.pmem_r.data, p_latch)

        # ---- accumulate
        d_valid, d_first, d_last, d_final = Signal(), Signal(), Signal(), Signal()
        m.d.sync += [d_valid.eq(reading), d_first.eq(is_first), d_last.eq(is_last),
                     d_final.eq(reading & is_final)]
        acc = [Signal(signed(32), name=f"acc{j}") for j in range(C)]
        s_reg = [Signal(signed(32), name=f"s{j}") for j in range(C)]
        s_valid, s_final = Signal(), Signal()
        m.d.sync += [s_valid.eq(d_valid & d_last), s_final.eq(d_final)]
        for j in range(C):
            new = Mux(d_first, 0, acc[j]) + self.vmem_r.data[j]
            with m.If(d_valid):
                m.d.sync += acc[j].eq(new)
            with m.If(d_valid & d_last):
                m.d.sync += s_reg[j].eq(new)

        # ---- epilogue: P = (S + off)*m + 2**(s-1), then sat(P >> s + post)
        p_reg = [Signal(signed(66), name=f"p{j}") for j in range(C)]
        p_valid, p_final = Signal(), Signal()
        m.d.sync += [p_valid.eq(s_valid), p_final.eq(s_final)]
        rnd = round_const(p["s"])
        with m.If(s_valid):
            for j in range(C):
                m.d.sync += p_reg[j].eq((s_reg[j] + p["off"]) * p["m"] + rnd)
        wp = Signal(ADDR_BITS)
        with m.If(go):
            m.d.sync += wp.eq(a.dst)
        with m.Elif(p_valid):
            m.d.sync += wp.eq(wp + 1)
        for j in range(C):
            y = (p_reg[j] >> p["s"]) + p["post"]
            m.d.comb += [
                self.vmem_w.data[j].eq(Mux(out == 0, saturate(y, 8), saturate(y, 16))),
                self.acc_w.data[j].eq(saturate(y, 32)),
            ]
        zero_done = Signal()
        m.d.sync += zero_done.eq(self.start & ~go)
        m.d.comb += [
            self.vmem_w.addr.eq(wp), self.vmem_w.en.eq(p_valid & (out != 2)),
            self.acc_w.addr.eq(wp), self.acc_w.en.eq(p_valid & (out == 2)),
            self.done.eq((p_valid & p_final) | zero_done),
        ]
        busy_logic(m, self)
        return m


__all__ = ["ColSumEngine"]
