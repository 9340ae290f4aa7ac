"""Host model for simulation: program and data memories streamed into the accelerator.

The harness plays the host side of the three streams at the interface rate (one beat per
cycle, always ready unless the capture memory is full), so a whole program runs without the
testbench waking up: the testbench (or a C++ harness) fills ``imem`` and ``dmem``, sets
``n_instr``/``n_data``, pulses ``start`` and waits for ``finished``; the output stream is
captured in ``omem`` (``n_out`` beats). The memories can be accessed through simulator
hierarchy (cocotb) or through the backdoor port (``bd_*``, plain C++ harnesses).
"""

from __future__ import annotations

from amaranth.hdl import Module, Signal
from amaranth.lib import data, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from hw.accel import COUNTER_LAYOUT, N_UNITS, PC_BITS, Accelerator
from hw.uarch import INSTR_BITS, AccelParams

#: Backdoor ``bd_sel`` values.
BD_IMEM, BD_DMEM = 1, 2


class HostHarness(wiring.Component):
    """Accelerator + instruction/data-in/data-out memories of the given depths (beats)."""

    def __init__(self, p: AccelParams, imem_depth: int, dmem_depth: int, omem_depth: int):
        self.p = p
        self.imem_depth, self.dmem_depth, self.omem_depth = imem_depth, dmem_depth, omem_depth
        super().__init__({
            "start": In(1),
            "n_instr": In(32),
            "n_data": In(32),
            "finished": Out(1),
            "done": Out(1),
            "error": Out(2),
            "err_pc": Out(PC_BITS),
            "last_pc": Out(PC_BITS),
            "busy": Out(N_UNITS),
            "unit_pc": Out(data.ArrayLayout(PC_BITS, N_UNITS)),
            "waiting": Out(N_UNITS),
            "head_pc": Out(data.ArrayLayout(PC_BITS, N_UNITS)),
            "counters": Out(COUNTER_LAYOUT),
            "n_out": Out(32),
            "bd_we": In(1),
            "bd_sel": In(2),
            "bd_addr": In(32),
            "bd_wdata": In(INSTR_BITS),
            "bd_rdata": Out(INSTR_BITS),
        })

    def elaborate(self, platform):
        m = Module()
        p = self.p
        m.submodules.accel = acc = Accelerator(p)
        m.submodules.imem = imem = Memory(shape=INSTR_BITS, depth=self.imem_depth, init=[])
        m.submodules.dmem = dmem = Memory(shape=p.beat_bits, depth=self.dmem_depth, init=[])
        m.submodules.omem = omem = Memory(shape=p.beat_bits, depth=self.omem_depth, init=[])
        i_rd, d_rd, o_rd = (mem.read_port(domain="comb") for mem in (imem, dmem, omem))
        i_wr, d_wr, o_wr = imem.write_port(), dmem.write_port(), omem.write_port()
        iptr, dptr, optr = (Signal(32, name=n) for n in ("iptr", "dptr", "optr"))
        m.d.comb += [
            i_rd.addr.eq(iptr), acc.instr.payload.eq(i_rd.data),
            acc.instr.valid.eq(iptr < self.n_instr),
            d_rd.addr.eq(dptr), acc.din.payload.eq(d_rd.data),
            acc.din.valid.eq(dptr < self.n_data),
            acc.dout.ready.eq(optr < self.omem_depth),
            o_wr.addr.eq(optr), o_wr.data.eq(acc.dout.payload),
            o_wr.en.eq(acc.dout.valid & acc.dout.ready),
        ]
        with m.If(acc.instr.valid & acc.instr.ready):
            m.d.sync += iptr.eq(iptr + 1)
        with m.If(acc.din.valid & acc.din.ready):
            m.d.sync += dptr.eq(dptr + 1)
        with m.If(acc.dout.valid & acc.dout.ready):
            m.d.sync += optr.eq(optr + 1)
        # Backdoor: write imem/dmem, read omem (combinational).
        m.d.comb += [
            i_wr.addr.eq(self.bd_addr), i_wr.data.eq(self.bd_wdata),
            i_wr.en.eq(self.bd_we & (self.bd_sel == BD_IMEM)),
            d_wr.addr.eq(self.bd_addr), d_wr.data.eq(self.bd_wdata),
            d_wr.en.eq(self.bd_we & (self.bd_sel == BD_DMEM)),
            o_rd.addr.eq(self.bd_addr), self.bd_rdata.eq(o_rd.data),
        ]
        m.d.comb += [
            acc.start.eq(self.start),
            self.finished.eq(acc.done | (acc.error != 0)),
            self.done.eq(acc.done), self.error.eq(acc.error), self.err_pc.eq(acc.err_pc),
            self.last_pc.eq(acc.last_pc), self.busy.eq(acc.busy),
            self.unit_pc.eq(acc.unit_pc), self.counters.eq(acc.counters),
            self.waiting.eq(acc.waiting), self.head_pc.eq(acc.head_pc),
            self.n_out.eq(optr),
        ]
        return m

