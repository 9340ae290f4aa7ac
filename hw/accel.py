"""The accelerator: controller, per-unit queues, units, SRAM banks, shared-port multiplexers.

::

    instr stream --> fetch (IR) --> decode/check --> dispatch --+--> LOAD q.    --> LoadUnit
                                                                +--> MATMUL q.  --> MatmulUnit
    din stream  --> LoadUnit --> ACT/WGT/ACC/VMEM/PMEM           +--> REQUANT q. --> RequantUnit
    ACC/VMEM --> StoreUnit --> dout stream                      +--> STORE q.   --> StoreUnit
                                                                +--> VECTOR q.  --> VectorUnit
                                                                +--> MOVER q.   --> MoverUnit

Instructions issue in order into one queue per unit; each unit executes its queue in order.
An instruction's dependency fields (hw/isa.py) become "completion count" requirements at
dispatch; a unit starts its head instruction only when those are met. The cycle-level rules
are written down in docs/ISA.md and are the timing rules of the opcode table
(``hw/opcodes.py``), which ``hw/timing.py`` replays. Bank ports: docs/ISA.md, "Memories".
"""

from __future__ import annotations

from amaranth.hdl import Cat, Const, Module, Mux, Signal
from amaranth.lib import data, stream, wiring
from amaranth.lib.fifo import SyncFIFO
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from hw.decoder import illegal_signal
from hw.isa import DEP_SLOTS, OPCODES, UNIT_OF, instr_layout
from hw.opcodes import TABLE, OpcodeError
from hw.portmux import SharedPort
from hw.uarch import (
    ACC,
    ACT,
    COUNTERS,
    INSTR_BITS,
    PMEM,
    QUEUE_DEPTH,
    SHARED_PORTS,
    UNITS,
    VMEM,
    WGT,
    AccelParams,
)
from hw.units import (
    COUNT_BITS,
    ENTRY,
    N_UNITS,
    PC_BITS,
    LoadUnit,
    MatmulUnit,
    RequantUnit,
    StoreUnit,
)
from hw.vector.unit import ENGINES, MoverUnit, VectorUnit

COUNTER_LAYOUT = data.StructLayout({name: 32 for name in COUNTERS})
#: Opcodes each unit's RTL implements (an opcode of the table without RTL is an error).
IMPLEMENTED = {"LOAD": ("LOAD",), "MATMUL": ("MATMUL",), "REQUANT": ("REQUANT",),
               "STORE": ("STORE",), "VECTOR": tuple(ENGINES), "MOVER": tuple(ENGINES)}
#: ``error`` codes: an illegal instruction, the watchdog, two units on one shared port.
ERR_NONE, ERR_ILLEGAL, ERR_WATCHDOG, ERR_PORT = 0, 1, 2, 3


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
    instruction retires; ``error`` is ERR_ILLEGAL (``err_pc`` = the malformed instruction),
    ERR_WATCHDOG (``err_pc`` = the instruction waiting to dispatch) or ERR_PORT (two units
    drove one shared port in the same cycle: a program without the dependencies
    ``hw/deps.py`` requires; ``err_pc`` = the most recently started instruction). ``last_pc`` is the
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
            if spec.unit is not None and name not in IMPLEMENTED[spec.unit]:
                raise OpcodeError(f"opcode {name} runs on unit {spec.unit}, whose RTL does not "
                                  "implement it (hw/accel.py)")
        m = Module()
        p = self.p
        # ---------------------------------------------------------------- SRAM banks
        mems = {}
        for bank, name in ((ACT, "act"), (WGT, "wgt"), (ACC, "acc"), (VMEM, "vmem"),
                           (PMEM, "pmem")):
            mems[bank] = Memory(shape=8 * p.word_bytes(bank), depth=p.depth(bank), init=[])
            m.submodules[f"{name}_sram"] = mems[bank]
        act, wgt, acc, vmem, pmem = (mems[b] for b in (ACT, WGT, ACC, VMEM, PMEM))
        shared = {
            "ACT.w": SharedPort("ACT.w", act.write_port(granularity=8), write=True),
            "WGT.w": SharedPort("WGT.w", wgt.write_port(granularity=8), write=True),
            "ACC.w": SharedPort("ACC.w", acc.write_port(), write=True),
            "VMEM.r": SharedPort("VMEM.r", vmem.read_port(), write=False),
            "VMEM.w": SharedPort("VMEM.w", vmem.write_port(), write=True),
        }
        assert tuple(shared) == SHARED_PORTS
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
        def fifo(name):
            return fifos[UNITS.index(name)], deps_ok[UNITS.index(name)]

        load = LoadUnit(p, *fifo("LOAD"), self.din,
                        {ACT: shared["ACT.w"].user("load"), WGT: shared["WGT.w"].user("load"),
                         ACC: shared["ACC.w"].user("load"), VMEM: shared["VMEM.w"].user("load"),
                         PMEM: pmem.write_port()})
        mm = MatmulUnit(p, *fifo("MATMUL"), act.read_port(), wgt.read_port(), acc.read_port(),
                        acc.write_port())
        rq = RequantUnit(p, *fifo("REQUANT"), acc.read_port(), acc.write_port(granularity=8),
                         shared["VMEM.w"].user("requant"))
        st = StoreUnit(p, *fifo("STORE"), self.dout,
                       {ACC: acc.read_port(), VMEM: shared["VMEM.r"].user("store")})
        vec = VectorUnit(p, *fifo("VECTOR"), {
            "vmem_r": shared["VMEM.r"].user("vector"), "vmem_w": shared["VMEM.w"].user("vector"),
            "pmem_r": pmem.read_port(), "acc_w": shared["ACC.w"].user("vector")})
        mov = MoverUnit(p, *fifo("MOVER"), {
            "vmem_r": shared["VMEM.r"].user("mover"), "vmem_w": shared["VMEM.w"].user("mover"),
            "act_w": shared["ACT.w"].user("mover"), "wgt_w": shared["WGT.w"].user("mover")})
        units = [load, mm, rq, st, vec, mov]
        assert [u.name for u in units] == list(UNITS)
        for unit in units:
            unit.elaborate(m)
        for port in shared.values():
            port.elaborate(m)
        conflict = Signal(name="port_conflict")
        m.d.comb += conflict.eq(Cat(*(port.conflict for port in shared.values())).any())
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
        m.d.comb += [entry.pc.eq(ir_pc), entry.opcode.eq(op), entry.payload.eq(view.payload.raw)]
        for v in range(N_UNITS):
            d = view.deps[v]
            m.d.comb += [entry.dep_on[v].eq(d != 0),
                         entry.dep_req[v].eq(dispatched[v] - d + 1)]
        for u in range(N_UNITS):
            codes = [OPCODES[name] for name, v in UNIT_OF.items() if v == u]
            push = consume & Cat(*(op == code for code in codes)).any()
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
        with m.If(self.running & conflict):
            m.d.sync += [self.error.eq(ERR_PORT), self.err_pc.eq(self.last_pc),
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
                cnt.vector_busy.eq(cnt.vector_busy + vec.busy_cycle),
                cnt.mover_busy.eq(cnt.mover_busy + mov.busy_cycle),
                cnt.stall.eq(cnt.stall + mm.stall),
            ]
        return m


assert DEP_SLOTS >= N_UNITS
