"""VSOFTMAX engine of the vector unit: masked row softmax, int8 scores -> uint8 probabilities.

``VSOFTMAX src, dst, rows, words, ncols, mrow, mcols``: row ``r`` (``0..rows-1``) is the
``words`` VMEM words at ``src + r*words``; element ``j`` (word ``j // cols``, lane
``j % cols``) is an int8 score (the lane's low byte). Entry ``j`` is allowed when
``j < ncols`` and not (``r >= mrow`` and ``j < mcols``). The row's output is
``model.intops.softmax_u8`` with the exp table read through ``elut_r`` (entry ``d`` =
``exp_lut[d]``), stored as the int8 operand ``p - 128`` in the ``words`` words at
``dst + r*words`` (not-allowed and padding lanes: ``p = 0``, i.e. ``-128``).

Datapath per row (``W`` = ``words``):

* **P1** reads the row's ``W`` VMEM words once: running maximum ``M`` of the allowed scores
  (not-allowed lanes count as -128) and a copy of the scores plus the allowed bits in the
  score buffer ``SB`` (256 words, circular).
* **P2** reads ``SB``, looks up ``e_j = ELUT[M - x_j]`` (``cols`` lookups per cycle; 0 where
  not allowed), accumulates the int32 row sum ``S`` and stores the ``e`` words in the e
  buffer ``EB`` (256 words, circular).
* **DIV**: ``L = bit_length(S)``, ``m = floor((2**(L+14) - 1) / S)`` by restoring division
  (remainder starts at ``2**(L-2) - 1``, 16 quotient bits, two per cycle), ``s = L + 6``.
* **P3** reads ``EB``: ``p = min(255, ((e*m >> (s-1)) + 1) >> 1)`` (= ``(e*m + 2**(s-1))
  >> s``), writes ``p - 128`` lanes to VMEM.

Schedule (``c`` = start cycle; the fields are latched at ``c``). Row ``r`` starts at
``R = c + 1 + r*T``, ``T = max(W, 9, 2W - 247)`` (``latency_softmax_mover``): the VMEM read
port needs ``W`` cycles per row, the divider 9, and for ``W >= 248`` a row's e words must
not be overwritten in ``EB`` (256 words) by the next row before P3 read them. For word
``k = 0..W-1`` of row ``r``:

* ``R + k``: P1 reads VMEM ``src + r*W + k``; ``R + k + 1``: max update, ``SB`` write
  (``R + W``: ``M`` final, latched for P2);
* ``R + W + k``: P2 reads ``SB`` (transparent: ``W = 1`` reads the word written in that
  cycle); ``R + W + k + 1``: ELUT lookup issued; ``R + W + k + 2``: ``EB`` write, ``S`` add;
* ``R + 2W + 2``: divider loads ``S`` (``L``, start remainder); ``R + 2W + 3 .. R + 2W + 10``:
  two quotient bits per cycle; at ``R + 2W + 10`` ``m`` and ``s`` are latched;
* ``R + 2W + 10 + k``: P3 reads ``EB``; ``R + 2W + 11 + k``: ``e*m`` registered;
  ``R + 2W + 12 + k``: VMEM write of ``dst + r*W + k``.

Rows overlap: P1 of row ``r+1`` runs while row ``r`` is in P2, DIV, P3 (each stage has its own
counters and registers; ``M``, ``S``, ``m``/``s`` are latched per stage so they may change
while the previous row still uses the previous value). ``done`` = the last write, at
``c + 1 + (rows-1)*T + 3W + 11``. ``rows = 0`` or ``words = 0``: nothing is read or written,
``done`` at ``c + 1``. Rows with no allowed entry give undefined outputs, same timing.

Hazards: a row's VMEM words are all read before its first output word is written, but row
``r``'s output is written while later rows are still being read. The result equals "read
every row, then write" (the ISA semantics) when ``dst <= src`` (in place included) or the
output words do not overlap the input words; ``src < dst < src + rows*words`` is not
supported.

Buffers: ``SB`` 256 x ``9*cols`` bits, ``EB`` 256 x ``16*cols`` bits (simple dual-port
memories); VMEM is read once per row, the second pass over the scores reads ``SB``.
"""

from __future__ import annotations

from amaranth.hdl import Cat, Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib.memory import Memory

from hw.vector.ports import ADDR_BITS, Engine

#: Buffer depths (words): circular, so any ``words`` <= 255 fits (see the period ``T``).
BUF_DEPTH = 256
E_BITS = 16          # exp table entries 0 .. 2**15
DIV_STEPS = 8        # two quotient bits per step: 16 bits, the top one always 0


def _max(a, b):
    return Mux(a > b, a, b)


def _tree(values, op):
    values = list(values)
    while len(values) > 1:
        nxt = [op(values[i], values[i + 1]) for i in range(0, len(values) - 1, 2)]
        if len(values) % 2:
            nxt.append(values[-1])
        values = nxt
    return values[0]


class SoftmaxEngine(Engine):
    OP = "VSOFTMAX"
    PORTS = ("vmem_r", "vmem_w", "elut_r")

    def elaborate(self, platform):
        m = Module()
        C = self.cols
        a = self.args

        m.submodules.sb = sb = Memory(shape=unsigned(9 * C), depth=BUF_DEPTH, init=[])
        m.submodules.eb = eb = Memory(shape=unsigned(E_BITS * C), depth=BUF_DEPTH, init=[])
        sb_w = sb.write_port()
        sb_r = sb.read_port(transparent_for=(sb_w,))
        eb_w = eb.write_port()
        eb_r = eb.read_port()

        # ---- fields latched at start
        n_rows = Signal(8)
        words = Signal(8)
        ncols = Signal(12)
        mrow = Signal(8)
        mcols = Signal(12)
        period = Signal(9)
        quick = Signal()        # rows == 0 or words == 0: done at c + 1

        # ---- P1: VMEM reads, max, SB writes
        p1_active = Signal()
        p1_t = Signal(9)        # cycle within the row period
        p1_row = Signal(8)
        rd_addr = Signal(ADDR_BITS)
        rem = Signal(signed(18))    # ncols - (first column of the word being read)
        remm = Signal(signed(18))   # mcols - (first column of the word being read)
        p1d_valid = Signal()
        p1d_first = Signal()
        p1d_last = Signal()
        p1d_rem = Signal(signed(18))
        p1d_remm = Signal(signed(18))
        p1d_late = Signal()
        m_acc = Signal(signed(8))
        m_use = Signal(signed(8))
        sbw = Signal(8)

        # ---- P2: SB reads, ELUT lookups, EB writes, row sum
        p2_left = Signal(9)
        sbr = Signal(8)
        p2d_valid = Signal()
        p2d_first = Signal()
        p2d_last = Signal()
        p2e_valid = Signal()
        p2e_first = Signal()
        p2e_last = Signal()
        p2e_allowed = Signal(C)
        ebw = Signal(8)
        row_sum = Signal(32)
        s_done = Signal()

        # ---- divider
        div_cnt = Signal(range(DIV_STEPS + 1))
        div_s = Signal(32)
        div_r = Signal(32)
        div_q = Signal(16)
        div_l = Signal(6)
        mult = Signal(15)
        shift = Signal(4)       # s - 22 = L - 16

        # ---- P3: EB reads, multiply, VMEM writes
        p3_left = Signal(8)
        p3_row = Signal(8)
        p3_final_row = Signal()
        ebr = Signal(8)
        p3d_valid = Signal()
        p3d_final = Signal()
        prods = [Signal(31, name=f"prod{j}") for j in range(C)]
        prod_shift = Signal(4)
        wr_valid = Signal()
        wr_final = Signal()
        wr_addr = Signal(ADDR_BITS)

        # ------------------------------------------------------------------ start
        w_in = a.words
        t_in = Mux(w_in >= 248, (w_in << 1) - 247, Mux(w_in > 9, w_in, 9))
        degenerate = (a.rows == 0) | (a.words == 0)
        m.d.sync += quick.eq(0)

        # ------------------------------------------------------------------ P1
        p1_read = p1_active & (p1_t < words)
        m.d.comb += [self.vmem_r.en.eq(p1_read), self.vmem_r.addr.eq(rd_addr)]
        m.d.sync += [p1d_valid.eq(p1_read), p1d_first.eq(p1_t == 0),
                     p1d_last.eq(p1_t == words - 1), p1d_rem.eq(rem), p1d_remm.eq(remm),
                     p1d_late.eq(p1_row >= mrow)]
        with m.If(p1_active):
            m.d.sync += p1_t.eq(p1_t + 1)
            with m.If(p1_read):
                m.d.sync += [rd_addr.eq(rd_addr + 1), rem.eq(rem - C), remm.eq(remm - C)]
            with m.If(p1_t == period - 1):
                m.d.sync += [p1_t.eq(0), p1_row.eq(p1_row + 1), rem.eq(ncols),
                             remm.eq(mcols)]
                with m.If(p1_row == n_rows - 1):
                    m.d.sync += p1_active.eq(0)

        lanes = self.vmem_r.data
        xs = [lanes[j][:8].as_signed() for j in range(C)]
        allowed = [(p1d_rem > j) & ~(p1d_late & (p1d_remm > j)) for j in range(C)]
        xm = [Mux(allowed[j], xs[j], Const(-128, signed(8))) for j in range(C)]
        wmax = _tree(xm, _max)
        m_new = Mux(p1d_first, wmax, _max(m_acc, wmax))
        m.d.comb += [sb_w.addr.eq(sbw), sb_w.en.eq(p1d_valid),
                     sb_w.data.eq(Cat(*(lanes[j][:8] for j in range(C)), *allowed))]
        with m.If(p1d_valid):
            m.d.sync += [m_acc.eq(m_new), sbw.eq(sbw + 1)]
            with m.If(p1d_last):
                m.d.sync += m_use.eq(m_new)

        # ------------------------------------------------------------------ P2
        p2_issue = p2_left != 0
        m.d.comb += [sb_r.addr.eq(sbr), sb_r.en.eq(p2_issue)]
        m.d.sync += [p2d_valid.eq(p2_issue), p2d_first.eq(p2_left == words),
                     p2d_last.eq(p2_left == 1)]
        with m.If(p2_issue):
            m.d.sync += [p2_left.eq(p2_left - 1), sbr.eq(sbr + 1)]
        with m.If(p1_read & (p1_t == words - 1)):   # P1 issues a row's last word
            m.d.sync += p2_left.eq(words)

        sbd = sb_r.data
        for j in range(C):
            d = (m_use - sbd[8 * j:8 * j + 8].as_signed())[:8]
            m.d.comb += self.elut_r.addr[j].eq(d)
        m.d.comb += self.elut_r.en.eq(p2d_valid)
        m.d.sync += [p2e_valid.eq(p2d_valid), p2e_first.eq(p2d_first),
                     p2e_last.eq(p2d_last), p2e_allowed.eq(sbd[8 * C:9 * C])]

        es = [Mux(p2e_allowed[j], self.elut_r.data[j], 0) for j in range(C)]
        esum = _tree(es, lambda x, y: x + y)
        m.d.comb += [eb_w.addr.eq(ebw), eb_w.en.eq(p2e_valid), eb_w.data.eq(Cat(*es))]
        with m.If(p2e_valid):
            m.d.sync += [ebw.eq(ebw + 1),
                         row_sum.eq(Mux(p2e_first, 0, row_sum) + esum)]
        m.d.sync += s_done.eq(p2e_valid & p2e_last)

        # ------------------------------------------------------------------ divider
        smear = Signal(32)
        m.d.comb += smear.eq(_tree([row_sum >> i for i in range(32)], lambda x, y: x | y))
        bitlen = Signal(6)
        for i in range(32):
            with m.If(row_sum[i]):
                m.d.comb += bitlen.eq(i + 1)

        def step(r):
            r2 = Cat(Const(1, 1), r)                 # 2r + 1 (the dividend's bits are ones)
            ge = r2 >= div_s
            return Mux(ge, r2 - div_s, r2)[:32], ge

        r1, b1 = step(div_r)
        r2, b2 = step(r1)
        q_next = Cat(b2, b1, div_q[:14])
        div_last = div_cnt == 1
        with m.If(s_done):
            m.d.sync += [div_s.eq(row_sum), div_r.eq(smear >> 2), div_l.eq(bitlen),
                         div_q.eq(0), div_cnt.eq(DIV_STEPS)]
        with m.Elif(div_cnt != 0):
            m.d.sync += [div_r.eq(r2), div_q.eq(q_next), div_cnt.eq(div_cnt - 1)]
        with m.If(div_last):
            m.d.sync += [mult.eq(q_next[:15]), shift.eq((div_l - 16)[:4])]

        # ------------------------------------------------------------------ P3
        p3_issue = div_last | (p3_left != 0)
        p3_last_word = Mux(div_last, words == 1, p3_left == 1)
        p3_in_final = Mux(div_last, p3_row == n_rows - 1, p3_final_row)
        m.d.comb += [eb_r.addr.eq(ebr), eb_r.en.eq(p3_issue)]
        with m.If(p3_issue):
            m.d.sync += ebr.eq(ebr + 1)
        with m.If(div_last):
            m.d.sync += [p3_left.eq(words - 1), p3_row.eq(p3_row + 1),
                         p3_final_row.eq(p3_row == n_rows - 1)]
        with m.Elif(p3_left != 0):
            m.d.sync += p3_left.eq(p3_left - 1)
        m.d.sync += [p3d_valid.eq(p3_issue), p3d_final.eq(p3_issue & p3_last_word & p3_in_final)]

        ebd = eb_r.data
        for j in range(C):
            m.d.sync += prods[j].eq(ebd[E_BITS * j:E_BITS * (j + 1)] * mult)
        m.d.sync += [prod_shift.eq(shift), wr_valid.eq(p3d_valid), wr_final.eq(p3d_final)]

        for j in range(C):
            u = prods[j][21:31] >> prod_shift          # e*m >> (s - 1), s - 1 = L + 5
            pr = (u + 1) >> 1
            p = Mux(pr > 255, 255, pr)[:8]
            m.d.comb += self.vmem_w.data[j].eq(p - 128)   # sign-extended to the lane
        m.d.comb += [self.vmem_w.en.eq(wr_valid), self.vmem_w.addr.eq(wr_addr)]
        with m.If(wr_valid):
            m.d.sync += wr_addr.eq(wr_addr + 1)

        # ------------------------------------------------------------------ protocol
        with m.If(self.start):
            m.d.sync += [n_rows.eq(a.rows), words.eq(a.words), ncols.eq(a.ncols),
                         mrow.eq(a.mrow), mcols.eq(a.mcols), period.eq(t_in),
                         quick.eq(degenerate), p1_active.eq(~degenerate), p1_t.eq(0),
                         p1_row.eq(0), rd_addr.eq(a.src), rem.eq(a.ncols), remm.eq(a.mcols),
                         sbw.eq(0), sbr.eq(0), ebw.eq(0), ebr.eq(0), p2_left.eq(0),
                         div_cnt.eq(0), p3_left.eq(0), p3_row.eq(0), wr_addr.eq(a.dst)]
        m.d.comb += self.done.eq(quick | (wr_valid & wr_final))
        busy = Signal()
        with m.If(self.start):
            m.d.sync += busy.eq(1)
        with m.Elif(self.done):
            m.d.sync += busy.eq(0)
        m.d.comb += self.busy.eq(self.start | busy)
        return m


__all__ = ["SoftmaxEngine"]
