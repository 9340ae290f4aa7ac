"""VLUT engine of the vector unit: load the exp / squash table (ELUT) or the rsqrt table (RLUT)
from VMEM.

``VLUT table, src``: ``N`` = 256 entries (``table`` 0, ELUT) or 192 (``table`` 1, RLUT);
entry ``i`` = the raw 16 bits of lane ``i % cols`` of VMEM word ``src + i // cols``. The LUT
write ports take one entry per cycle (``elut_w`` writes every copy of the ELUT at once).

Schedule (``c`` = start cycle; ``table`` and ``src`` are latched at ``c``): entry ``i`` is
handled in cycle ``c + 1 + i`` (``i = 0..N-1``); when it is the first entry of its word
(``i % cols == 0``) VMEM word ``src + i // cols`` is read in that cycle. In cycle
``c + 2 + i`` entry ``i`` is written, taken from ``vmem_r.data`` (first entry of the word,
which is also kept in a register) or from that register. ``done`` = the last write, at
``c + N + 1``: latency 257 (ELUT) or 193 (RLUT) (``latency_softmax_mover.vlut_latency``).
"""

from __future__ import annotations

from amaranth.hdl import Module, Mux, Signal

from hw.vector.formats import ELUT_SIZE, RLUT_SIZE
from hw.vector.ports import ADDR_BITS, Engine


class LutLoadEngine(Engine):
    OP = "VLUT"
    PORTS = ("vmem_r", "elut_w", "rlut_w")

    def elaborate(self, platform):
        m = Module()
        C = self.cols
        a = self.args
        table = Signal()
        active = Signal()
        idx = Signal(range(ELUT_SIZE))
        lane = Signal(range(C))
        rd_addr = Signal(ADDR_BITS)
        wr_valid = Signal()
        wr_idx = Signal(range(ELUT_SIZE))
        wr_lane = Signal(range(C))
        wr_last = Signal()
        word = Signal(16 * C)

        last_idx = Mux(table, RLUT_SIZE - 1, ELUT_SIZE - 1)
        m.d.comb += [self.vmem_r.en.eq(active & (lane == 0)), self.vmem_r.addr.eq(rd_addr)]
        m.d.sync += [wr_valid.eq(active), wr_idx.eq(idx), wr_lane.eq(lane),
                     wr_last.eq(idx == last_idx)]
        with m.If(active):
            m.d.sync += [idx.eq(idx + 1), lane.eq(lane + 1)]
            with m.If(lane == C - 1):
                m.d.sync += [lane.eq(0), rd_addr.eq(rd_addr + 1)]
            with m.If(idx == last_idx):
                m.d.sync += active.eq(0)
        with m.If(self.start):
            m.d.sync += [table.eq(a.table), rd_addr.eq(a.src), idx.eq(0), lane.eq(0),
                         active.eq(1)]

        data = self.vmem_r.data.as_value()
        cur = Mux(wr_lane == 0, data, word)
        with m.If(wr_valid & (wr_lane == 0)):
            m.d.sync += word.eq(data)
        entry = cur.word_select(wr_lane, 16)
        for port, sel in ((self.elut_w, 0), (self.rlut_w, 1)):
            m.d.comb += [port.addr.eq(wr_idx), port.data.eq(entry),
                         port.en.eq(wr_valid & (table == sel))]
        m.d.comb += self.done.eq(wr_valid & wr_last)
        busy = Signal()
        with m.If(self.start):
            m.d.sync += busy.eq(1)
        with m.Elif(self.done):
            m.d.sync += busy.eq(0)
        m.d.comb += self.busy.eq(self.start | busy)
        return m


__all__ = ["LutLoadEngine"]
