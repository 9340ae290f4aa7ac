"""MTRANS engine of the mover: transpose a tile of int8 VMEM rows into ACT or WGT words.

``MTRANS src, stride, rows, ncols, bank, dst, boff`` (``n`` = ``rows``): source row ``r``
(``0..n-1``), element ``c`` (``0..ncols-1``) is the low byte of lane ``c % cols`` of VMEM word
``src + r*stride + c // cols``. Destination word ``dst + c`` of ACT (``bank`` 0, ``rows``-byte
words) or WGT (``bank`` 1, ``cols``-byte words) gets element ``(r, c)`` in byte ``boff + r``
for every ``r``; its other bytes are left unchanged (byte enables). Legal programs have
``boff + n <=`` the destination word's bytes (bytes beyond it are dropped).

Word-column ``g`` (``0..G-1``, ``G = ceil(ncols / cols)``) is the ``n`` source words
``src + r*stride + g``; it fills destination words ``dst + g*cols + j`` for
``j = 0..w_g-1``, ``w_g = min(cols, ncols - g*cols)``. Two transpose buffers (``max(rows,
cols)`` x ``cols`` bytes each): group ``g`` goes to buffer ``g % 2``, byte row ``boff + r``.

Schedule (``c`` = start cycle, fields latched at ``c``): stages ``s = 0..G`` follow each
other from ``c + 1``; stage ``s`` lasts ``L_s = max(n if s < G else 0, w_{s-1} if s >= 1 else
0)`` cycles (``L_0 = n``, ``L_s = max(n, cols)`` for ``0 < s < G``, ``L_G = w_{G-1}``). In
stage cycle ``t`` of stage ``s`` (absolute cycle ``S_s + t``):

* ``t < n`` and ``s < G``: read VMEM ``src + t*stride + s`` (captured into buffer ``s % 2``
  at ``S_s + t + 1``);
* ``t < w_{s-1}`` and ``s >= 1``: write request for destination word ``dst + (s-1)*cols +
  t`` (lane ``t`` of buffer ``(s-1) % 2``), performed at ``S_s + t + 1``.

Group ``s-1``'s last row is captured by ``S_s`` (visible from ``S_s + 1``, its first write);
group ``s+1``'s first capture (``S_{s+1} + 1``) comes after group ``s-1``'s last write
(``<= S_{s+1}``). ``done`` = the last write, at ``c + 1 + sum(L_s)``: latency ``1 + n + (G-1) *
max(n, cols) + w_{G-1}`` (``latency_softmax_mover.mtrans_latency``); ``n = 0`` or
``ncols = 0``: nothing is written, ``done`` at ``c + 1``.
"""

from __future__ import annotations

from amaranth.hdl import Cat, Module, Mux, Signal, signed

from hw.vector.ports import ADDR_BITS, Engine


class TransposeEngine(Engine):
    OP = "MTRANS"
    PORTS = ("vmem_r", "act_w", "wgt_w")

    def elaborate(self, platform):
        m = Module()
        C, R = self.cols, self.rows
        NB = max(R, C)                      # byte rows of a transpose buffer
        a = self.args

        n = Signal(7)
        stride = Signal(8)
        bank = Signal()
        boff = Signal(6)
        bytes_en = Signal(NB)               # destination bytes boff .. boff+n-1
        quick = Signal()

        tmax = max(128, C + 1)
        active = Signal()
        t = Signal(range(tmax))             # cycle within the stage
        length = Signal(range(tmax + 1))    # L_s
        rd_on = Signal()                    # this stage reads a group
        wr_cnt = Signal(range(C + 1))       # words this stage writes (w_{s-1} or 0)
        rd_rem = Signal(signed(14))         # columns not yet read before this stage's group
        par = Signal()                      # buffer of the group this stage reads
        col_base = Signal(ADDR_BITS)        # src + s
        rd_addr = Signal(ADDR_BITS)
        wr_addr = Signal(ADDR_BITS)

        cap_valid = Signal()
        cap_row = Signal(8)
        cap_par = Signal()
        wr_valid = Signal()
        wr_lane = Signal(range(C))
        wr_par = Signal()
        wr_word = Signal(ADDR_BITS)
        wr_final = Signal()

        bufs = [[Signal(8 * C, name=f"buf{p}_{b}") for b in range(NB)] for p in range(2)]

        # ---------------------------------------------------------------- stage control
        rd = active & rd_on & (t < n)
        wr = active & (t < wr_cnt)
        m.d.comb += [self.vmem_r.en.eq(rd), self.vmem_r.addr.eq(rd_addr)]
        m.d.sync += [cap_valid.eq(rd), cap_row.eq(boff + t), cap_par.eq(par),
                     wr_valid.eq(wr), wr_lane.eq(t), wr_par.eq(~par), wr_word.eq(wr_addr),
                     wr_final.eq(wr & ~rd_on & (t == wr_cnt - 1))]
        next_rd_on = rd_on & (rd_rem > C)
        next_wr_cnt = Mux(rd_on, Mux(rd_rem > C, C, rd_rem), 0)
        next_rd_len = Mux(next_rd_on, n, 0)
        next_len = Mux(next_rd_len > next_wr_cnt, next_rd_len, next_wr_cnt)
        with m.If(active):
            m.d.sync += t.eq(t + 1)
            with m.If(rd):
                m.d.sync += rd_addr.eq(rd_addr + stride)
            with m.If(wr):
                m.d.sync += wr_addr.eq(wr_addr + 1)
            with m.If(t == length - 1):
                m.d.sync += [t.eq(0), rd_on.eq(next_rd_on), wr_cnt.eq(next_wr_cnt),
                             length.eq(next_len), rd_rem.eq(rd_rem - C), par.eq(~par),
                             col_base.eq(col_base + 1), rd_addr.eq(col_base + 1)]
                with m.If(next_len == 0):
                    m.d.sync += active.eq(0)

        # ---------------------------------------------------------------- capture
        lanes = self.vmem_r.data
        row_bytes = Cat(*(lanes[j][:8] for j in range(C)))
        with m.If(cap_valid):
            for p in range(2):
                for b in range(NB):
                    with m.If((cap_par == p) & (cap_row == b)):
                        m.d.sync += bufs[p][b].eq(row_bytes)

        # ---------------------------------------------------------------- writes
        out = [Mux(wr_par, bufs[1][b], bufs[0][b]).word_select(wr_lane, 8) for b in range(NB)]
        m.d.comb += [
            self.act_w.addr.eq(wr_word), self.act_w.data.eq(Cat(*out[:R])),
            self.act_w.en.eq(Mux(wr_valid & (bank == 0), bytes_en[:R], 0)),
            self.wgt_w.addr.eq(wr_word), self.wgt_w.data.eq(Cat(*out[:C])),
            self.wgt_w.en.eq(Mux(wr_valid & (bank == 1), bytes_en[:C], 0)),
        ]

        # ---------------------------------------------------------------- protocol
        degenerate = (a.rows == 0) | (a.ncols == 0)
        m.d.sync += quick.eq(0)
        with m.If(self.start):
            m.d.sync += [n.eq(a.rows), stride.eq(a.stride), bank.eq(a.bank), boff.eq(a.boff),
                         bytes_en.eq(Cat(*((b >= a.boff) & (b < a.boff + a.rows)
                                           for b in range(NB)))),
                         quick.eq(degenerate), active.eq(~degenerate), t.eq(0),
                         length.eq(a.rows), rd_on.eq(1), wr_cnt.eq(0), rd_rem.eq(a.ncols),
                         par.eq(0), col_base.eq(a.src), rd_addr.eq(a.src), wr_addr.eq(a.dst)]
        m.d.comb += self.done.eq(quick | (wr_valid & wr_final))
        busy = Signal()
        with m.If(self.start):
            m.d.sync += busy.eq(1)
        with m.Elif(self.done):
            m.d.sync += busy.eq(0)
        m.d.comb += self.busy.eq(self.start | busy)
        return m


__all__ = ["TransposeEngine"]
