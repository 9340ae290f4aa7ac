"""MCOPY engine of the mover: VMEM words -> VMEM words, or VMEM words -> WGT rows.

``MCOPY src, dst, count, bank, stride``: for ``i`` in ``0..count-1``, word
``src + i*stride`` of VMEM goes to word ``dst + i`` of VMEM (``bank`` 0) or of WGT (``bank``
1: byte ``j`` = the low byte of lane ``j``, i.e. an int8 row of a B operand such as V; a
stride picks one word-column of multi-word rows).

Timing (``hw.vector.timing``): word ``i`` is read in cycle ``c + i`` (``c`` = start) and
written in cycle ``c + 1 + i``; ``done`` = ``c + count``.
"""

from __future__ import annotations

from amaranth.hdl import Cat, Module, Mux, Signal

from hw.vector.ports import ADDR_BITS, Engine


class CopyEngine(Engine):
    OP = "MCOPY"
    PORTS = ("vmem_r", "vmem_w", "wgt_w")

    def elaborate(self, platform):
        m = Module()
        C = self.cols
        a = self.args
        left = Signal(17)           # reads still to issue (after the start cycle's)
        rd_next = Signal(ADDR_BITS)
        stride = Signal(8)
        wr_addr = Signal(ADDR_BITS)
        bank = Signal()
        wr_valid = Signal()         # the word read last cycle is on vmem_r.data
        wr_last = Signal()
        reading = self.start | (left != 0)
        m.d.comb += [self.vmem_r.en.eq(reading),
                     self.vmem_r.addr.eq(Mux(self.start, a.src, rd_next))]
        with m.If(self.start):
            m.d.sync += [left.eq(a.count - 1), rd_next.eq(a.src + a.stride), wr_addr.eq(a.dst),
                         bank.eq(a.bank), stride.eq(a.stride)]
        with m.Elif(left != 0):
            m.d.sync += [left.eq(left - 1), rd_next.eq(rd_next + stride)]
        m.d.sync += [wr_valid.eq(reading), wr_last.eq(Mux(self.start, a.count == 1, left == 1))]
        with m.If(wr_valid):
            m.d.sync += wr_addr.eq(wr_addr + 1)
        lanes = self.vmem_r.data
        m.d.comb += [
            self.vmem_w.addr.eq(wr_addr), self.vmem_w.data.eq(lanes),
            self.vmem_w.en.eq(wr_valid & (bank == 0)),
            self.wgt_w.addr.eq(wr_addr), self.wgt_w.data.eq(Cat(*(lanes[j][:8] for j in range(C)))),
            self.wgt_w.en.eq(Mux(wr_valid & (bank == 1), (1 << C) - 1, 0)),
            self.done.eq(wr_valid & wr_last),
        ]
        busy = Signal()
        with m.If(self.start):
            m.d.sync += busy.eq(1)
        with m.Elif(self.done):
            m.d.sync += busy.eq(0)
        m.d.comb += self.busy.eq(self.start | busy)
        return m
