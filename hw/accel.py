"""The accelerator: controller, per-unit queues, DMA, systolic array, requantizer, SRAM banks.

::

    instr stream --> fetch (IR) --> decode/check --> dispatch --+--> LOAD queue --> LoadUnit
                                                                +--> MATMUL q.  --> MatmulUnit
    din stream  --> LoadUnit --> ACT / WGT / ACC banks          +--> REQUANT q. --> RequantUnit
    ACC bank --> StoreUnit --> dout stream                      +--> STORE q.   --> StoreUnit

Instructions issue in order into one queue per unit; each unit executes its queue in order.
An instruction's dependency fields (hw/isa.py) become "completion count" requirements at
dispatch; a unit starts its head instruction only when those are met. The cycle-level rules
are written down in docs/ISA.md and mirrored by hw/timing.py.
"""

from __future__ import annotations

from amaranth.hdl import Cat, Const, Module, Mux, Signal, signed
from amaranth.lib import data, stream, wiring
from amaranth.lib.fifo import SyncFIFO
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from hw.array import SystolicArray
from hw.decoder import illegal_signal
from hw.isa import DEP_SLOTS, OPCODES, PAYLOAD_BITS, UNIT_OF, instr_layout, payload_layout
from hw.opcodes import MODES, PARAM_M_BITS, PARAM_S_BITS, TABLE, OpcodeError
from hw.requant import Requantizer, param_fields
from hw.uarch import (
    ACC,
    ACT,
    COUNTERS,
    DRAIN_RING,
    INSTR_BITS,
    QUEUE_DEPTH,
    ROWS_PER_ACC_WORD,
    UNITS,
    WGT,
    AccelParams,
)

PC_BITS = 16
COUNT_BITS = 16  # completion counters (compared modulo 2**16)
#: Opcodes each unit's RTL implements (an opcode of the table without RTL is an error).
IMPLEMENTED = {"LOAD": ("LOAD",), "MATMUL": ("MATMUL",), "REQUANT": ("REQUANT",),
               "STORE": ("STORE",)}
COUNTER_LAYOUT = data.StructLayout({name: 32 for name in COUNTERS})
#: ``error`` codes.
ERR_NONE, ERR_ILLEGAL, ERR_WATCHDOG = 0, 1, 2
N_UNITS = len(UNITS)

ENTRY = data.StructLayout({
    "pc": PC_BITS,
    "payload": PAYLOAD_BITS,
    "dep_on": N_UNITS,
    "dep_req": data.ArrayLayout(COUNT_BITS, N_UNITS),
})


class _Unit:
    """What the controller connects to every unit: its queue and its dependency check."""

    def __init__(self, op: str, fifo: SyncFIFO, deps_ok: Signal):
        self.fifo = fifo
        self.deps_ok = deps_ok
        self.head = data.View(ENTRY, fifo.r_data)
        self.args = data.View(payload_layout(op), self.head.payload[:payload_layout(op).size])
        self.pop = Signal(name=f"{op.lower()}_pop")
        self.done = Signal(name=f"{op.lower()}_done")
        self.active = Signal(name=f"{op.lower()}_active")

    def connect_pop(self, m: Module, can_start) -> None:
        m.d.comb += [self.pop.eq(self.fifo.r_rdy & self.deps_ok & can_start),
                     self.fifo.r_en.eq(self.pop)]


class LoadUnit(_Unit):
    """Host data-in stream -> ACT/WGT/ACC words; one beat per cycle, no gap between LOADs."""

    def __init__(self, p: AccelParams, fifo, deps_ok, din, wports):
        super().__init__("LOAD", fifo, deps_ok)
        self.p, self.din, self.wports = p, din, wports
        self.fire = Signal(name="load_fire")

    def elaborate(self, m: Module) -> None:
        p, bits = self.p, self.p.beat_bits
        bmax = max(p.beats(b) for b in (ACT, WGT, ACC))
        bank = Signal(2, name="load_bank")
        addr = Signal(16, name="load_addr")
        left = Signal(17, name="load_left")
        beat = Signal(range(bmax), name="load_beat")
        buf = Signal(max(1, (bmax - 1) * bits), name="load_buf")
        nbeats = Signal(range(bmax + 1), name="load_nbeats")
        m.d.comb += nbeats.eq(Mux(bank == ACT, p.beats(ACT), Mux(bank == WGT, p.beats(WGT),
                                                                 p.beats(ACC))))
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
                         port.en.eq(word_end & (bank == b))]
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


class StoreUnit(_Unit):
    """ACC words -> host data-out stream; one beat per cycle, no gap between STOREs."""

    def __init__(self, p: AccelParams, fifo, deps_ok, dout, rport):
        super().__init__("STORE", fifo, deps_ok)
        self.p, self.dout, self.rport = p, dout, rport
        self.fire = Signal(name="store_fire")

    def elaborate(self, m: Module) -> None:
        p, bits = self.p, self.p.beat_bits
        nb = p.beats(ACC)
        addr = Signal(16, name="store_addr")
        left = Signal(17, name="store_left")
        beat = Signal(range(max(nb, 2)), name="store_beat")
        padded = Cat(self.rport.data, Const(0, nb * bits - 32 * p.cols))
        word_end = Signal(name="store_word_end")
        m.d.comb += [
            self.dout.valid.eq(self.active),
            self.dout.payload.eq(padded.word_select(beat, bits)),
            self.fire.eq(self.active & self.dout.ready),
            word_end.eq(self.fire & (beat == nb - 1)),
            self.done.eq(word_end & (left == 1)),
        ]
        self.connect_pop(m, ~self.active | self.done)
        m.d.comb += [self.rport.en.eq(self.pop | (word_end & (left != 1))),
                     self.rport.addr.eq(Mux(self.pop, self.args.addr, addr))]
        with m.If(self.fire & ~word_end):
            m.d.sync += beat.eq(beat + 1)
        with m.If(word_end):
            m.d.sync += [beat.eq(0), left.eq(left - 1), addr.eq(addr + 1)]
        with m.If(self.done):
            m.d.sync += self.active.eq(0)
        with m.If(self.pop):
            m.d.sync += [self.active.eq(1), addr.eq(self.args.addr + 1),
                         left.eq(self.args.count), beat.eq(0)]


class MatmulUnit(_Unit):
    """Feeds tiles from ACT/WGT into the array and drains results into ACC.

    Start at cycle c: ACT/WGT words k = 0..K-1 are read at cycles c..c+K-1 and enter the
    array one cycle later. The next MATMUL (depth K') may start at c' >= c + K with
    c' + K' >= c + K + G (G = drain_gap). Row i of the tile is written to ACC at cycle
    c + K + cols + i (OVERWRITE: the result; ACCUMULATE: old word + result; BIAS: bias
    word + result, lanes wrap modulo 2**32); the instruction completes with row rows-1.
    """

    def __init__(self, p: AccelParams, fifo, deps_ok, act_rd, wgt_rd, acc_rd, acc_wr):
        super().__init__("MATMUL", fifo, deps_ok)
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


class RequantUnit(_Unit):
    """ACC int32 rows -> int8 rows packed four per ACC word, per-column (m, s), optional ReLU.

    Start at cycle c: the param word is read at c, source rows r = 0..n-1 at c+1+r; row r is
    written at c+3+r into word dst + r//4, byte lanes [(r%4)*cols, (r%4+1)*cols); the last
    row also zeroes the later quarters of its word, so the n rows fill ceil(n/4) whole words.
    The next REQUANT may start at c + n + 1.
    """

    def __init__(self, p: AccelParams, fifo, deps_ok, acc_rd, acc_wr):
        super().__init__("REQUANT", fifo, deps_ok)
        self.p, self.acc_rd, self.acc_wr = p, acc_rd, acc_wr
        self.busy_cycle = Signal(name="rq_busy_cycle")

    def elaborate(self, m: Module) -> None:
        C = self.p.cols
        m.submodules.requantizer = rq = Requantizer(C)
        a = self.args
        left = Signal(17, name="rq_left")
        src = Signal(16, name="rq_src")
        row = Signal(17, name="rq_row")
        dst = Signal(16, name="rq_dst")
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
                         relu.eq(a.relu)]
        with m.Elif(reading):
            m.d.sync += [left.eq(left - 1), src.eq(src + 1), row.eq(row + 1)]
        # Stage 1: the row read last cycle is on acc_rd.data; requantizer registers it.
        s1_valid = Signal(name="rq_s1_valid")
        s1_row = Signal(17, name="rq_s1_row")
        s1_dst = Signal(16, name="rq_s1_dst")
        s1_last = Signal(name="rq_s1_last")
        s1_relu = Signal(name="rq_s1_relu")
        m.d.sync += [s1_valid.eq(reading), s1_row.eq(row), s1_dst.eq(dst),
                     s1_last.eq(left == 1), s1_relu.eq(relu)]
        m.d.comb += [rq.valid.eq(s1_valid), rq.acc.as_value().eq(self.acc_rd.data),
                     rq.m.eq(m_reg), rq.s.eq(s_reg), rq.relu.eq(s1_relu)]
        # Stage 2: write the int8 row into its quarter of the destination word.
        s2_row = Signal(17, name="rq_s2_row")
        s2_dst = Signal(16, name="rq_s2_dst")
        s2_last = Signal(name="rq_s2_last")
        m.d.sync += [s2_row.eq(s1_row), s2_dst.eq(s1_dst), s2_last.eq(s1_last & s1_valid)]
        quarter = s2_row[:2]
        en_bits = Signal(ROWS_PER_ACC_WORD * C, name="rq_wr_en")
        y = rq.y.as_value()
        lanes_q = []
        for q in range(ROWS_PER_ACC_WORD):
            # the row's own quarter; after the last row, the word's later quarters get zeros
            own = quarter == q
            tail = s2_last & (quarter < q)
            m.d.comb += en_bits[q * C:(q + 1) * C].eq(
                Mux(rq.y_valid & (own | tail), (1 << C) - 1, 0))
            lanes_q.append(Mux(own, y, 0))
        m.d.comb += [
            self.acc_wr.addr.eq(s2_dst + s2_row[2:]),
            self.acc_wr.data.eq(Cat(*lanes_q)),
            self.acc_wr.en.eq(en_bits),
            self.done.eq(s2_last),
            self.active.eq(reading | s1_valid | rq.y_valid),
        ]


def status_members() -> dict:
    """The accelerator's status outputs (see :class:`Accelerator`); the host harness
    forwards the same members to its ports."""
    return {
        "done": Out(1),
        "error": Out(2),
        "err_pc": Out(PC_BITS),
        "last_pc": Out(PC_BITS),
        "busy": Out(N_UNITS),
        "unit_pc": Out(data.ArrayLayout(PC_BITS, N_UNITS)),
        "waiting": Out(N_UNITS),
        "head_pc": Out(data.ArrayLayout(PC_BITS, N_UNITS)),
        "counters": Out(COUNTER_LAYOUT),
    }


class Accelerator(wiring.Component):
    """The accelerator core behind three host streams (see the module docstring).

    ``start`` (one cycle, after reset) begins fetching; ``done`` rises when a DONE
    instruction retires; ``error`` is ERR_ILLEGAL (``err_pc`` = the malformed instruction)
    or ERR_WATCHDOG (``err_pc`` = the instruction waiting to dispatch). ``last_pc`` is the
    most recently started instruction; per unit u, ``busy[u]`` = executing ``unit_pc[u]`` (the
    last instruction it started), ``waiting[u]`` = its queue holds ``head_pc[u]``, not yet
    started. ``counters`` are counted while running.
    """

    def __init__(self, p: AccelParams):
        self.p = p
        super().__init__({
            "instr": In(stream.Signature(INSTR_BITS)),
            "din": In(stream.Signature(p.beat_bits)),
            "dout": Out(stream.Signature(p.beat_bits)),
            "start": In(1),
            "running": Out(1),
            **status_members(),
        })

    def elaborate(self, platform):
        for name, spec in TABLE.items():
            if spec.unit is not None and name not in IMPLEMENTED.get(spec.unit, ()):
                raise OpcodeError(f"opcode {name} runs on unit {spec.unit}, whose RTL does not "
                                  "implement it (hw/accel.py)")
        m = Module()
        p = self.p
        # ---------------------------------------------------------------- SRAM banks
        m.submodules.act_sram = act = Memory(shape=8 * p.rows, depth=p.act_depth, init=[])
        m.submodules.wgt_sram = wgt = Memory(shape=8 * p.cols, depth=p.wgt_depth, init=[])
        m.submodules.acc_sram = acc = Memory(shape=32 * p.cols, depth=p.acc_depth, init=[])
        # ---------------------------------------------------------------- queues, deps
        fifos = []
        for name in UNITS:
            fifo = SyncFIFO(width=ENTRY.size, depth=QUEUE_DEPTH)
            m.submodules[f"q_{name.lower()}"] = fifo
            fifos.append(fifo)
        dispatched = [Signal(COUNT_BITS, name=f"dispatched_{n.lower()}") for n in UNITS]
        completed = [Signal(COUNT_BITS, name=f"completed_{n.lower()}") for n in UNITS]
        deps_ok = []
        for u in range(N_UNITS):
            head = data.View(ENTRY, fifos[u].r_data)
            ok = Signal(name=f"deps_ok_{UNITS[u].lower()}")
            conds = [~head.dep_on[v] | ~(completed[v] - head.dep_req[v])[COUNT_BITS - 1]
                     for v in range(N_UNITS)]
            m.d.comb += ok.eq(Cat(*conds).all())
            deps_ok.append(ok)
        # ---------------------------------------------------------------- units
        load = LoadUnit(p, fifos[0], deps_ok[0], self.din,
                        {ACT: act.write_port(), WGT: wgt.write_port(), ACC: acc.write_port()})
        mm = MatmulUnit(p, fifos[1], deps_ok[1], act.read_port(), wgt.read_port(),
                        acc.read_port(), acc.write_port())
        rq = RequantUnit(p, fifos[2], deps_ok[2], acc.read_port(), acc.write_port(granularity=8))
        st = StoreUnit(p, fifos[3], deps_ok[3], self.dout, acc.read_port())
        units = [load, mm, rq, st]
        for unit in units:
            unit.elaborate(m)
        for u, unit in enumerate(units):
            with m.If(unit.done):
                m.d.sync += completed[u].eq(completed[u] + 1)
        # ---------------------------------------------------------------- fetch + decode
        ir = Signal(INSTR_BITS, name="ir")
        ir_valid = Signal(name="ir_valid")
        ir_pc = Signal(PC_BITS, name="ir_pc")
        fetch_pc = Signal(PC_BITS, name="fetch_pc")
        view = data.View(instr_layout(), ir)
        op = view.opcode
        illegal = illegal_signal(m, ir, p)
        budget = Signal(32, name="wd_budget")
        trip = Signal(name="wd_trip")
        m.d.comb += trip.eq((budget != 0) & (self.counters.total >= budget))
        go = Signal(name="go")
        m.d.comb += go.eq(self.running & ~trip)
        all_done = Cat(*(completed[u] == dispatched[u] for u in range(N_UNITS))).all()
        can = Signal(name="can_dispatch")
        with m.Switch(op):
            for name, spec in TABLE.items():
                with m.Case(spec.code):
                    if spec.unit is not None:
                        m.d.comb += can.eq(fifos[UNIT_OF[name]].w_rdy)
                    elif spec.need("control") == "immediate":
                        m.d.comb += can.eq(1)
                    elif spec.control == "barrier":
                        m.d.comb += can.eq(all_done)
                    else:
                        raise OpcodeError(f"opcode {name}: no RTL for control kind "
                                          f"{spec.control!r}")
        consume = Signal(name="consume")
        m.d.comb += [consume.eq(go & ir_valid & ~illegal & can),
                     self.instr.ready.eq(go & (~ir_valid | consume))]
        with m.If(self.instr.valid & self.instr.ready):
            m.d.sync += [ir.eq(self.instr.payload), ir_valid.eq(1), ir_pc.eq(fetch_pc),
                         fetch_pc.eq(fetch_pc + 1)]
        with m.Elif(consume):
            m.d.sync += ir_valid.eq(0)
        # ---------------------------------------------------------------- dispatch
        entry = Signal(ENTRY, name="entry")
        m.d.comb += [entry.pc.eq(ir_pc), entry.payload.eq(view.payload.raw)]
        for v in range(N_UNITS):
            d = view.deps[v]
            m.d.comb += [entry.dep_on[v].eq(d != 0),
                         entry.dep_req[v].eq(dispatched[v] - d + 1)]
        for name, u in UNIT_OF.items():
            push = consume & (op == OPCODES[name])
            m.d.comb += [fifos[u].w_data.eq(entry), fifos[u].w_en.eq(push)]
            with m.If(push):
                m.d.sync += dispatched[u].eq(dispatched[u] + 1)
        with m.If(consume & (op == OPCODES["CONFIG"])):
            m.d.sync += budget.eq(view.payload.config.budget)
        ends = [spec.code for spec in TABLE.values() if spec.ends]
        with m.If(consume & Cat(*(op == code for code in ends)).any()):
            m.d.sync += [self.done.eq(1), self.running.eq(0)]
        with m.If(self.start & ~self.running & ~self.done & (self.error == ERR_NONE)):
            m.d.sync += self.running.eq(1)
        with m.If(go & ir_valid & illegal):
            m.d.sync += [self.error.eq(ERR_ILLEGAL), self.err_pc.eq(ir_pc),
                         self.running.eq(0)]
        with m.If(self.running & trip):
            m.d.sync += [self.error.eq(ERR_WATCHDOG),
                         self.err_pc.eq(Mux(ir_valid, ir_pc, fetch_pc)),
                         self.running.eq(0)]
        # ---------------------------------------------------------------- status, counters
        latest = Const(0, PC_BITS)
        any_pop = Const(0, 1)
        for u, unit in enumerate(units):
            m.d.comb += [self.busy[u].eq(unit.active), self.waiting[u].eq(fifos[u].r_rdy),
                         self.head_pc[u].eq(unit.head.pc)]
            with m.If(unit.pop):
                m.d.sync += self.unit_pc[u].eq(unit.head.pc)
            latest = Mux(unit.pop & (~any_pop | (unit.head.pc > latest)), unit.head.pc, latest)
            any_pop = any_pop | unit.pop
        with m.If(any_pop):
            m.d.sync += self.last_pc.eq(latest)
        cnt = self.counters
        with m.If(go):
            m.d.sync += [
                cnt.total.eq(cnt.total + 1),
                cnt.array_busy.eq(cnt.array_busy + mm.feed_valid),
                cnt.dma_in_busy.eq(cnt.dma_in_busy + load.fire),
                cnt.dma_out_busy.eq(cnt.dma_out_busy + st.fire),
                cnt.dma_busy.eq(cnt.dma_busy + (load.fire | st.fire)),
                cnt.requant_busy.eq(cnt.requant_busy + rq.busy_cycle),
                cnt.stall.eq(cnt.stall + mm.stall),
            ]
        return m


assert DEP_SLOTS >= N_UNITS
