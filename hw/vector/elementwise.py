"""Word-wise engines of the vector unit: VADD (int16 residual add) and VSQUASH (memory squash).

Both read their scalar parameters from the PMEM parameter word ``param`` (layouts
``hw.vector.formats.PARAM_LAYOUTS``) in the start cycle and latch them one cycle later; every
lane of a VMEM word is processed in parallel. ``c`` is the start cycle below; ``count == 0``
is a no-op (no reads or writes, ``done`` at ``c + 1``). Latencies:
``hw.vector.latency_arith``.

**VADD a, b, dst, count, param** (:class:`AddEngine`): word ``i`` of ``dst`` gets, per lane,
``sat16(relu?((A*m_a + B*m_b + 2**(s-1)) >> s))`` with ``A = VMEM[a+i]``, ``B = VMEM[b+i]``
(``model.intops.add_requant_i16``). VMEM has one read port, so the reads alternate:

* cycle ``c + 2i``: read ``VMEM[a+i]`` (cycle ``c`` also reads ``PMEM[param]``);
* cycle ``c + 2i + 1``: read ``VMEM[b+i]``; ``A`` arrives and is registered;
* cycle ``c + 2i + 2``: ``B`` arrives; ``P = A*m_a + B*m_b + 2**(s-1)`` is registered;
* cycle ``c + 2i + 3``: ``VMEM[dst+i] <- sat16(relu?(P >> s))``.

The last write is at ``c + 2*count + 1`` = ``done``: latency ``2*count + 1``. In place
(``dst == a`` or ``dst == b``) is safe: word ``i`` is written after both its reads.

**VSQUASH src, dst, count, param** (:class:`SquashEngine`), on int8 values in the lanes:
mode 0 ``clamp(sat8((x*m + 2**(s-1)) >> s), lo, hi)`` (``intops.clamp_i8(intops.requantize(
x, m, s), lo, hi)``), mode 1 ``ELUT[x + 128]`` (the 16 raw bits of the entry, an int8 value
sign-extended: ``intops.lut_i8``):

* cycle ``c + i``: read ``VMEM[src+i]`` (cycle ``c`` also reads ``PMEM[param]``);
* cycle ``c + i + 1``: ``x`` arrives and is registered; the ``cols`` ELUT lookups at
  ``(x + 128) mod 256`` are issued (both modes);
* cycle ``c + i + 2``: ELUT data arrive; ``VMEM[dst+i] <- mode ? ELUT : clamp(...)``.

The last write is at ``c + count + 1`` = ``done``: latency ``count + 1``. In place
(``dst == src``) is safe.
"""

from __future__ import annotations

from amaranth.hdl import Const, Module, Mux, Signal, signed

from hw.vector.formats import PARAM_LAYOUTS, field_slice
from hw.vector.ports import ADDR_BITS, Engine


def round_const(s):
    """``2**(s-1)`` for an unsigned shift signal ``s`` (0 when ``s == 0``)."""
    return (Const(1, 1) << s) >> 1


def saturate(v, bits: int):
    """``v`` clipped to the signed ``bits``-bit range."""
    lo, hi = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    return Mux(v > hi, hi, Mux(v < lo, lo, v))


def param_signals(m: Module, op: str, lanes, latch) -> dict:
    """Registers for the scalar parameters of ``op``, loaded from the PMEM word ``lanes`` in
    the cycles where ``latch`` is high."""
    regs = {}
    for name, f in PARAM_LAYOUTS[op].items():
        reg = Signal(signed(f.bits) if f.signed else f.bits, name=f"p_{name}")
        with m.If(latch):
            m.d.sync += reg.eq(field_slice(lanes[f.lane], f))
        regs[name] = reg
    return regs


def busy_logic(m: Module, eng) -> None:
    """``busy`` from ``start`` through ``done``."""
    busy = Signal()
    with m.If(eng.start):
        m.d.sync += busy.eq(1)
    with m.Elif(eng.done):
        m.d.sync += busy.eq(0)
    m.d.comb += eng.busy.eq(eng.start | busy)


class AddEngine(Engine):
    """VADD: int16 residual add with a shared-shift requantization (see module docstring)."""

    OP = "VADD"
    PORTS = ("vmem_r", "vmem_w", "pmem_r")

    def elaborate(self, platform):
        m = Module()
        C = self.cols
        a = self.args
        go = self.start & (a.count != 0)

        # ---- read issue: A at even, B at odd cycles
        rd_a = Signal(ADDR_BITS)
        rd_b = Signal(ADDR_BITS)
        left = Signal(17)           # A reads still to issue after the current one
        phase_b = Signal()          # the next read is B
        active = Signal()           # reads after the start cycle remain
        issue_a = go | (active & ~phase_b)
        issue_b = active & phase_b
        m.d.comb += [
            self.vmem_r.en.eq(issue_a | issue_b),
            self.vmem_r.addr.eq(Mux(self.start, a.a, Mux(phase_b, rd_b, rd_a))),
            self.pmem_r.en.eq(self.start),
            self.pmem_r.addr.eq(a.param),
        ]
        with m.If(go):
            m.d.sync += [rd_a.eq(a.a + 1), rd_b.eq(a.b), left.eq(a.count - 1),
                         phase_b.eq(1), active.eq(1)]
        with m.Elif(issue_b):
            m.d.sync += [rd_b.eq(rd_b + 1), phase_b.eq(0)]
            with m.If(left == 0):
                m.d.sync += active.eq(0)
        with m.Elif(issue_a):
            m.d.sync += [rd_a.eq(rd_a + 1), left.eq(left - 1), phase_b.eq(1)]

        p_latch = Signal()
        m.d.sync += p_latch.eq(self.start)
        p = param_signals(m, "VADD", self.pmem_r.data, p_latch)

        # ---- data stages
        a_valid = Signal()          # A read last cycle
        b_valid = Signal()          # B read last cycle
        b_last = Signal()
        m.d.sync += [a_valid.eq(issue_a), b_valid.eq(issue_b),
                     b_last.eq(issue_b & (left == 0))]
        a_reg = [Signal(signed(16), name=f"a{j}") for j in range(C)]
        # |A*m_a + B*m_b| < 2**32; the rounding constant is below 2**63 for any 6-bit s
        p_reg = [Signal(signed(65), name=f"p{j}") for j in range(C)]
        p_valid = Signal()
        p_last = Signal()
        rnd = round_const(p["s"])
        for j in range(C):
            with m.If(a_valid):
                m.d.sync += a_reg[j].eq(self.vmem_r.data[j])
            with m.If(b_valid):
                m.d.sync += p_reg[j].eq(a_reg[j] * p["m_a"] + self.vmem_r.data[j] * p["m_b"]
                                        + rnd)
        m.d.sync += [p_valid.eq(b_valid), p_last.eq(b_last)]

        # ---- write stage
        wr = Signal(ADDR_BITS)
        with m.If(self.start):
            m.d.sync += wr.eq(a.dst)
        with m.Elif(p_valid):
            m.d.sync += wr.eq(wr + 1)
        for j in range(C):
            y = p_reg[j] >> p["s"]
            y = Mux(p["relu"] & (y < 0), 0, y)
            m.d.comb += self.vmem_w.data[j].eq(saturate(y, 16))
        zero_done = Signal()
        m.d.sync += zero_done.eq(self.start & (a.count == 0))
        m.d.comb += [self.vmem_w.addr.eq(wr), self.vmem_w.en.eq(p_valid),
                     self.done.eq((p_valid & p_last) | zero_done)]
        busy_logic(m, self)
        return m


class SquashEngine(Engine):
    """VSQUASH: clamp-requantize (mode 0) or ELUT table (mode 1) of int8 lanes."""

    OP = "VSQUASH"
    PORTS = ("vmem_r", "vmem_w", "pmem_r", "elut_r")

    def elaborate(self, platform):
        m = Module()
        C = self.cols
        a = self.args
        go = self.start & (a.count != 0)

        rd = Signal(ADDR_BITS)
        left = Signal(17)           # reads still to issue after the start cycle's
        reading = go | (left != 0)
        m.d.comb += [
            self.vmem_r.en.eq(reading),
            self.vmem_r.addr.eq(Mux(self.start, a.src, rd)),
            self.pmem_r.en.eq(self.start),
            self.pmem_r.addr.eq(a.param),
        ]
        with m.If(go):
            m.d.sync += [rd.eq(a.src + 1), left.eq(a.count - 1)]
        with m.Elif(left != 0):
            m.d.sync += [rd.eq(rd + 1), left.eq(left - 1)]

        p_latch = Signal()
        m.d.sync += p_latch.eq(self.start)
        p = param_signals(m, "VSQUASH", self.pmem_r.data, p_latch)

        # ---- stage 1: x arrives; ELUT lookups issued; x registered
        x_valid = Signal()
        x_last = Signal()
        m.d.sync += [x_valid.eq(reading), x_last.eq(reading & Mux(self.start, a.count == 1,
                                                                  left == 1))]
        x_reg = [Signal(signed(16), name=f"x{j}") for j in range(C)]
        for j in range(C):
            x = self.vmem_r.data[j]
            m.d.comb += self.elut_r.addr[j].eq((x + 128)[:8])
            with m.If(x_valid):
                m.d.sync += x_reg[j].eq(x)
        m.d.comb += self.elut_r.en.eq(x_valid)

        # ---- stage 2: write
        y_valid = Signal()
        y_last = Signal()
        m.d.sync += [y_valid.eq(x_valid), y_last.eq(x_valid & x_last)]
        wr = Signal(ADDR_BITS)
        with m.If(self.start):
            m.d.sync += wr.eq(a.dst)
        with m.Elif(y_valid):
            m.d.sync += wr.eq(wr + 1)
        rnd = round_const(p["s"])
        for j in range(C):
            q = saturate((x_reg[j] * p["m"] + rnd) >> p["s"], 8)
            q = Mux(q < p["lo"], p["lo"], q)
            q = Mux(q > p["hi"], p["hi"], q)
            m.d.comb += self.vmem_w.data[j].eq(Mux(p["mode"], self.elut_r.data[j], q))
        zero_done = Signal()
        m.d.sync += zero_done.eq(self.start & (a.count == 0))
        m.d.comb += [self.vmem_w.addr.eq(wr), self.vmem_w.en.eq(y_valid),
                     self.done.eq((y_valid & y_last) | zero_done)]
        busy_logic(m, self)
        return m


__all__ = ["AddEngine", "SquashEngine", "busy_logic", "param_signals", "round_const",
           "saturate"]
