"""The units of the GEMM core and the host DMA: LOAD, MATMUL, REQUANT, STORE.

Each unit pops the head of its instruction queue when its dependencies are met
(``deps_ok``) and it can start (its own structural rule), executes it in order and raises
``done`` in the instruction's completion cycle; the cycle-level rules are docs/ISA.md,
section "Timing", and the opcode table's ``cost`` rules. A unit talks to memory ports (an
``amaranth.lib.memory`` port it owns, or a :class:`hw.portmux.PortUser` of a shared port):
``addr``, ``en`` and ``data``.
"""

from __future__ import annotations

from amaranth.hdl import Cat, Const, Module, Mux, Signal, signed
from amaranth.lib import data
from amaranth.lib.fifo import SyncFIFO

from hw.array import SystolicArray
from hw.isa import OPCODE_BITS, PAYLOAD_BITS, payload_layout
from hw.opcodes import MODES, PARAM_M_BITS, PARAM_S_BITS, REQUANT_OUT, STORE_BANKS
from hw.requant import Requantizer, param_fields
from hw.uarch import DRAIN_RING, ROWS_PER_ACC_WORD, UNITS, AccelParams

PC_BITS = 16
COUNT_BITS = 16  # completion counters (compared modulo 2**16)
N_UNITS = len(UNITS)

#: A queue entry: the instruction's index, opcode, payload and dependency requirements.
ENTRY = data.StructLayout({
    "pc": PC_BITS,
    "opcode": OPCODE_BITS,
    "payload": PAYLOAD_BITS,
    "dep_on": N_UNITS,
    "dep_req": data.ArrayLayout(COUNT_BITS, N_UNITS),
})


def all_ones(port) -> int:
    return (1 << len(port.en)) - 1


class QueuedUnit:
    """What the controller connects to every unit: its queue and its dependency check.

    ``args_of(op)`` views the head entry's payload as ``op``'s fields (``args`` for a unit
    that runs one opcode); ``pop``, ``done`` and ``active`` are the unit's to drive.
    """

    def __init__(self, name: str, ops: tuple[str, ...], fifo: SyncFIFO, deps_ok: Signal):
        self.name, self.ops = name, ops
        self.fifo = fifo
        self.deps_ok = deps_ok
        self.head = data.View(ENTRY, fifo.r_data)
        self.args = self.args_of(ops[0])
        self.pop = Signal(name=f"{name.lower()}_pop")
        self.done = Signal(name=f"{name.lower()}_done")
        self.active = Signal(name=f"{name.lower()}_active")
        #: cycles counted by the unit's busy counter (``None``: the unit has none of its own)
        self.busy_cycle: Signal | None = None

    def args_of(self, op: str) -> data.View:
        layout = payload_layout(op)
        return data.View(layout, self.head.payload[:layout.size])

    def connect_pop(self, m: Module, can_start) -> None:
        m.d.comb += [self.pop.eq(self.fifo.r_rdy & self.deps_ok & can_start),
                     self.fifo.r_en.eq(self.pop)]


class LoadUnit(QueuedUnit):
    """Host data-in stream -> words of any bank; one beat per cycle, no gap between LOADs.
    ``wports``: bank -> write port (full words: every byte enable)."""

    def __init__(self, p: AccelParams, fifo, deps_ok, din, wports):
        super().__init__("LOAD", ("LOAD",), fifo, deps_ok)
        self.p, self.din, self.wports = p, din, wports
        self.fire = Signal(name="load_fire")

    def elaborate(self, m: Module) -> None:
        p, bits = self.p, self.p.beat_bits
        bmax = max(p.beats(b) for b in self.wports)
        bank = Signal(3, name="load_bank")
        addr = Signal(16, name="load_addr")
        left = Signal(17, name="load_left")
        beat = Signal(range(bmax), name="load_beat")
        buf = Signal(max(1, (bmax - 1) * bits), name="load_buf")
        nbeats = Signal(range(bmax + 1), name="load_nbeats")
        beats_of = Const(0, nbeats.shape())
        for b in self.wports:
            beats_of = Mux(bank == b, p.beats(b), beats_of)
        m.d.comb += nbeats.eq(beats_of)
        word_end = Signal(name="load_word_end")
        m.d.comb += [
            self.din.ready.eq(self.active),
            self.fire.eq(self.active & self.din.valid),
            word_end.eq(self.fire & (beat == nbeats - 1)),
            self.done.eq(word_end & (left == 1)),
        ]
        self.connect_pop(m, ~self.active | self.done)
        for b, port in self.wports.items():
            nb = p.beats(b)
            word = Cat(buf[:(nb - 1) * bits], self.din.payload) if nb > 1 else self.din.payload
            m.d.comb += [port.addr.eq(addr), port.data.eq(word[:8 * p.word_bytes(b)]),
                         port.en.eq(Mux(word_end & (bank == b), all_ones(port), 0))]
        with m.If(self.fire & ~word_end):
            if bmax > 1:
                m.d.sync += buf.word_select(beat, bits).eq(self.din.payload)
            m.d.sync += beat.eq(beat + 1)
        with m.If(word_end):
            m.d.sync += [beat.eq(0), addr.eq(addr + 1), left.eq(left - 1)]
        with m.If(self.done):
            m.d.sync += self.active.eq(0)
        with m.If(self.pop):
            m.d.sync += [self.active.eq(1), bank.eq(self.args.bank), addr.eq(self.args.addr),
                         left.eq(self.args.count), beat.eq(0)]


class StoreUnit(QueuedUnit):
    """ACC or VMEM words -> host data-out stream; one beat per cycle, no gap between STOREs.
    ``rports``: bank -> read port."""

    def __init__(self, p: AccelParams, fifo, deps_ok, dout, rports):
        super().__init__("STORE", ("STORE",), fifo, deps_ok)
        self.p, self.dout, self.rports = p, dout, rports
        self.fire = Signal(name="store_fire")

    def elaborate(self, m: Module) -> None:
        p, bits = self.p, self.p.beat_bits
        nbmax = max(p.beats(b) for b in self.rports)
        addr = Signal(16, name="store_addr")
        left = Signal(17, name="store_left")
        beat = Signal(range(max(nbmax, 2)), name="store_beat")
        sel = Signal(name="store_sel")                    # the running STORE's bank field
        sel_now = Mux(self.pop, self.args.bank, sel)
        word = Const(0, nbmax * bits)
        nb = Const(0, range(nbmax + 1))
        for field, bank in STORE_BANKS.items():
            port = self.rports[bank]
            word = Mux(sel == field, Cat(port.data, Const(0, nbmax * bits - len(port.data))),
                       word)
            nb = Mux(sel == field, p.beats(bank), nb)
        word_end = Signal(name="store_word_end")
        m.d.comb += [
            self.dout.valid.eq(self.active),
            self.dout.payload.eq(word.word_select(beat, bits)),
            self.fire.eq(self.active & self.dout.ready),
            word_end.eq(self.fire & (beat == nb - 1)),
            self.done.eq(word_end & (left == 1)),
        ]
        self.connect_pop(m, ~self.active | self.done)
        read = self.pop | (word_end & (left != 1))
        for field, bank in STORE_BANKS.items():
            port = self.rports[bank]
            m.d.comb += [port.en.eq(read & (sel_now == field)),
                         port.addr.eq(Mux(self.pop, self.args.addr, addr))]
        with m.If(self.fire & ~word_end):
            m.d.sync += beat.eq(beat + 1)
        with m.If(word_end):
            m.d.sync += [beat.eq(0), left.eq(left - 1), addr.eq(addr + 1)]
        with m.If(self.done):
            m.d.sync += self.active.eq(0)
        with m.If(self.pop):
            m.d.sync += [self.active.eq(1), addr.eq(self.args.addr + 1),
                         left.eq(self.args.count), beat.eq(0), sel.eq(self.args.bank)]


class MatmulUnit(QueuedUnit):
    """Feeds tiles from ACT/WGT into the array and drains results into ACC.

    Start at cycle c: ACT/WGT words k = 0..K-1 are read at cycles c..c+K-1 and enter the
    array one cycle later. The next MATMUL (depth K') may start at c' >= c + K with
    c' + K' >= c + K + G (G = drain_gap). Row i of the tile is written to ACC at cycle
    c + K + cols + i (OVERWRITE: the result; ACCUMULATE: old word + result; BIAS: bias
    word + result, lanes wrap modulo 2**32); the instruction completes with row rows-1.
    """

    def __init__(self, p: AccelParams, fifo, deps_ok, act_rd, wgt_rd, acc_rd, acc_wr):
        super().__init__("MATMUL", ("MATMUL",), fifo, deps_ok)
        self.p = p
        self.act_rd, self.wgt_rd, self.acc_rd, self.acc_wr = act_rd, wgt_rd, acc_rd, acc_wr
        self.feed_valid = Signal(name="mm_feed_valid")
        self.stall = Signal(name="mm_stall")

    def elaborate(self, m: Module) -> None:
        p = self.p
        R, C, G = p.rows, p.cols, p.drain_gap
        m.submodules.array = arr = SystolicArray(R, C)
        a = self.args
        feed_left = Signal(17, name="mm_feed_left")
        act_next = Signal(16, name="mm_act_next")
        wgt_next = Signal(16, name="mm_wgt_next")
        drain_wait = Signal(18, name="mm_drain_wait")
        can_start = Signal(name="mm_can_start")
        m.d.comb += can_start.eq((feed_left == 0) & (a.k >= drain_wait))
        self.connect_pop(m, can_start)
        m.d.comb += self.stall.eq(self.fifo.r_rdy & can_start & ~self.deps_ok)
        issuing = self.pop | (feed_left != 0)
        m.d.comb += [
            self.act_rd.addr.eq(Mux(self.pop, a.act, act_next)),
            self.wgt_rd.addr.eq(Mux(self.pop, a.wgt, wgt_next)),
            self.act_rd.en.eq(1), self.wgt_rd.en.eq(1),
        ]
        first = Signal(name="mm_first")
        last = Signal(name="mm_last")
        m.d.sync += [self.feed_valid.eq(issuing), first.eq(self.pop),
                     last.eq(Mux(self.pop, a.k == 1, feed_left == 1))]
        with m.If(self.pop):
            m.d.sync += [act_next.eq(a.act + 1), wgt_next.eq(a.wgt + 1),
                         feed_left.eq(a.k - 1), drain_wait.eq(a.k + G - 1)]
        with m.Else():
            with m.If(feed_left != 0):
                m.d.sync += [act_next.eq(act_next + 1), wgt_next.eq(wgt_next + 1),
                             feed_left.eq(feed_left - 1)]
            with m.If(drain_wait != 0):
                m.d.sync += drain_wait.eq(drain_wait - 1)
        m.d.comb += [arr.a.as_value().eq(self.act_rd.data), arr.b.as_value().eq(self.wgt_rd.data),
                     arr.valid.eq(self.feed_valid), arr.first.eq(first), arr.last.eq(last)]

        # Descriptor ring: pushed at start, read when the tile's rows are announced.
        desc = data.StructLayout({"acc": 16, "bias": 16, "mode": 2})
        ring = [Signal(desc, name=f"mm_ring{n}") for n in range(DRAIN_RING)]
        wr_ptr = Signal(range(DRAIN_RING), name="mm_ring_wr")
        rd_ptr = Signal(range(DRAIN_RING), name="mm_ring_rd")
        count = Signal(range(DRAIN_RING + 1), name="mm_ring_count")
        with m.If(self.pop):
            for n in range(DRAIN_RING):
                with m.If(wr_ptr == n):
                    m.d.sync += [ring[n].acc.eq(a.acc), ring[n].bias.eq(a.bias),
                                 ring[n].mode.eq(a.mode)]
            m.d.sync += wr_ptr.eq(Mux(wr_ptr == DRAIN_RING - 1, 0, wr_ptr + 1))
        cur = Signal(desc, name="mm_ring_head")
        for n in range(DRAIN_RING):
            with m.If(rd_ptr == n):
                m.d.comb += cur.eq(ring[n])
        # Pre stage (cycle before row i is presented): read the word the row is added to.
        row_addr = Signal(16, name="mm_row_addr")
        m.d.comb += [
            row_addr.eq(cur.acc + arr.pre_row),
            self.acc_rd.addr.eq(Mux(cur.mode == MODES["BIAS"], cur.bias, row_addr)),
            self.acc_rd.en.eq(1),
        ]
        st_addr = Signal(16, name="mm_st_addr")
        st_mode = Signal(2, name="mm_st_mode")
        st_last = Signal(name="mm_st_last")
        ring_pop = arr.pre_valid & (arr.pre_row == R - 1)
        with m.If(arr.pre_valid):
            m.d.sync += [st_addr.eq(row_addr), st_mode.eq(cur.mode),
                         st_last.eq(arr.pre_row == R - 1)]
        with m.If(ring_pop):
            m.d.sync += rd_ptr.eq(Mux(rd_ptr == DRAIN_RING - 1, 0, rd_ptr + 1))
        m.d.sync += count.eq(count + self.pop - ring_pop)
        # Drain stage: add and write.
        old = data.View(data.ArrayLayout(signed(32), C), self.acc_rd.data)
        new = Signal(data.ArrayLayout(signed(32), C), name="mm_new_row")
        for j in range(C):
            m.d.comb += new[j].eq(Mux(st_mode == MODES["OVERWRITE"], 0, old[j])
                                  + arr.out_data[j])
        m.d.comb += [self.acc_wr.addr.eq(st_addr), self.acc_wr.data.eq(new),
                     self.acc_wr.en.eq(arr.out_valid),
                     self.done.eq(arr.out_valid & st_last),
                     self.active.eq((feed_left != 0) | (count != 0))]


class RequantUnit(QueuedUnit):
    """ACC int32 rows -> int8 rows packed four per ACC word (``out`` ACC8), or int8/int16
    rows one per VMEM word (VMEM8/VMEM16, word ``dst + r*dstride``); per-column (m, s),
    optional ReLU.

    Start at cycle c: the param word is read at c, source rows r = 0..n-1 at c+1+r; row r is
    written at c+3+r: ACC8 into word dst + r//4, byte lanes [(r%4)*cols, (r%4+1)*cols), the
    last row also zeroing the later quarters of its word, so the n rows fill ceil(n/4) whole
    words; VMEM8/16 as a whole VMEM word. The next REQUANT may start at c + n + 1.
    """

    def __init__(self, p: AccelParams, fifo, deps_ok, acc_rd, acc_wr, vmem_wr):
        super().__init__("REQUANT", ("REQUANT",), fifo, deps_ok)
        self.p, self.acc_rd, self.acc_wr, self.vmem_wr = p, acc_rd, acc_wr, vmem_wr
        self.busy_cycle = Signal(name="rq_busy_cycle")

    def elaborate(self, m: Module) -> None:
        C = self.p.cols
        m.submodules.requantizer = rq = Requantizer(C)
        a = self.args
        left = Signal(17, name="rq_left")
        src = Signal(16, name="rq_src")
        row = Signal(17, name="rq_row")
        dst = Signal(16, name="rq_dst")
        vdst = Signal(16, name="rq_vdst")        # VMEM word of the row being read
        dstride = Signal(10, name="rq_dstride")
        out = Signal(2, name="rq_out")
        relu = Signal(name="rq_relu")
        params_due = Signal(name="rq_params_due")
        self.connect_pop(m, left == 0)
        reading = left != 0
        m.d.comb += [
            self.busy_cycle.eq(self.pop | reading),
            self.acc_rd.addr.eq(Mux(self.pop, a.param, src)),
            self.acc_rd.en.eq(1),
        ]
        m.d.sync += params_due.eq(self.pop)
        lanes = data.View(data.ArrayLayout(32, C), self.acc_rd.data)
        m_reg = Signal(data.ArrayLayout(PARAM_M_BITS, C), name="rq_m")
        s_reg = Signal(data.ArrayLayout(PARAM_S_BITS, C), name="rq_s")
        with m.If(params_due):
            for j in range(C):
                mj, sj = param_fields(lanes[j])
                m.d.sync += [m_reg[j].eq(mj), s_reg[j].eq(sj)]
        with m.If(self.pop):
            m.d.sync += [left.eq(a.rows), src.eq(a.src), row.eq(0), dst.eq(a.dst),
                         vdst.eq(a.dst), dstride.eq(a.dstride), out.eq(a.out),
                         relu.eq(a.relu)]
        with m.Elif(reading):
            m.d.sync += [left.eq(left - 1), src.eq(src + 1), row.eq(row + 1),
                         vdst.eq(vdst + dstride)]
        # Stage 1: the row read last cycle is on acc_rd.data; requantizer registers it.
        s1_valid = Signal(name="rq_s1_valid")
        s1_row = Signal(17, name="rq_s1_row")
        s1_dst = Signal(16, name="rq_s1_dst")
        s1_last = Signal(name="rq_s1_last")
        s1_relu = Signal(name="rq_s1_relu")
        s1_vdst = Signal(16, name="rq_s1_vdst")
        s1_out = Signal(2, name="rq_s1_out")
        m.d.sync += [s1_valid.eq(reading), s1_row.eq(row), s1_dst.eq(dst),
                     s1_last.eq(left == 1), s1_relu.eq(relu), s1_vdst.eq(vdst),
                     s1_out.eq(out)]
        m.d.comb += [rq.valid.eq(s1_valid), rq.acc.as_value().eq(self.acc_rd.data),
                     rq.m.eq(m_reg), rq.s.eq(s_reg), rq.relu.eq(s1_relu),
                     rq.out16.eq(s1_out == REQUANT_OUT["VMEM16"])]
        # Stage 2: write the int8 row into its quarter of the destination word.
        s2_row = Signal(17, name="rq_s2_row")
        s2_dst = Signal(16, name="rq_s2_dst")
        s2_last = Signal(name="rq_s2_last")
        s2_vdst = Signal(16, name="rq_s2_vdst")
        s2_acc = Signal(name="rq_s2_acc")
        m.d.sync += [s2_row.eq(s1_row), s2_dst.eq(s1_dst), s2_last.eq(s1_last & s1_valid),
                     s2_vdst.eq(s1_vdst), s2_acc.eq(s1_out == REQUANT_OUT["ACC8"])]
        quarter = s2_row[:2]
        en_bits = Signal(ROWS_PER_ACC_WORD * C, name="rq_wr_en")
        y = Cat(*(rq.y[j][:8] for j in range(C)))
        lanes_q = []
        for q in range(ROWS_PER_ACC_WORD):
            # the row's own quarter; after the last row, the word's later quarters get zeros
            own = quarter == q
            tail = s2_last & (quarter < q)
            m.d.comb += en_bits[q * C:(q + 1) * C].eq(
                Mux(rq.y_valid & s2_acc & (own | tail), (1 << C) - 1, 0))
            lanes_q.append(Mux(own, y, 0))
        m.d.comb += [
            self.acc_wr.addr.eq(s2_dst + s2_row[2:]),
            self.acc_wr.data.eq(Cat(*lanes_q)),
            self.acc_wr.en.eq(en_bits),
            self.vmem_wr.addr.eq(s2_vdst),
            self.vmem_wr.data.eq(rq.y.as_value()),
            self.vmem_wr.en.eq(rq.y_valid & ~s2_acc),
            self.done.eq(s2_last),
            self.active.eq(reading | s1_valid | rq.y_valid),
        ]
