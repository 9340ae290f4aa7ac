"""Multiply-accumulate processing element for an output-stationary systolic array."""

from __future__ import annotations

from amaranth.hdl import Module, Mux, Signal, signed
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out


class MacPE(wiring.Component):
    """int8 x int8 -> int32 multiply-accumulate cell.

    Each cycle, with ``valid`` high the product ``a * b`` is accumulated; with ``clear`` high
    the accumulator restarts: ``acc <= a*b`` if ``valid`` else ``acc <= 0``. The accumulator
    wraps modulo 2**acc_bits (the compiler keeps K small enough that it never does).

    For systolic use, ``a``/``valid``/``clear`` are forwarded one cycle later on the
    ``*_out`` ports (to the right neighbour) and ``b`` on ``b_out`` (to the one below).

    With ``drain=True`` the PE also has a ``last`` input (forwarded on ``last_out`` like
    ``clear``) and a result register ``res``: on ``valid & last`` it captures the finished
    sum (the value ``acc`` takes at the same edge) and holds it until the next ``valid &
    last``, so the array can read a finished tile while the next one accumulates. In this
    mode the datapath registers (``acc``, ``res``, ``a_out``, ``b_out``) have no reset (a
    tile always starts with ``clear``); the control bits still reset.
    """

    def __init__(self, in_bits: int = 8, acc_bits: int = 32, drain: bool = False):
        self.in_bits = in_bits
        self.acc_bits = acc_bits
        self.drain = drain
        members = {
            "a": In(signed(in_bits)),
            "b": In(signed(in_bits)),
            "valid": In(1),
            "clear": In(1),
            "a_out": Out(signed(in_bits)),
            "b_out": Out(signed(in_bits)),
            "valid_out": Out(1),
            "clear_out": Out(1),
            "acc": Out(signed(acc_bits)),
        }
        if drain:
            members.update({"last": In(1), "last_out": Out(1), "res": Out(signed(acc_bits))})
        super().__init__(members)

    def elaborate(self, platform):
        m = Module()
        product = Signal(signed(2 * self.in_bits))
        m.d.comb += product.eq(self.a * self.b)
        # datapath registers: reset-less in drain mode (see the class docstring)
        keep = not self.drain
        acc = Signal(signed(self.acc_bits), reset_less=self.drain) if self.drain else self.acc
        a_reg = Signal(signed(self.in_bits), reset_less=True) if self.drain else self.a_out
        b_reg = Signal(signed(self.in_bits), reset_less=True) if self.drain else self.b_out
        base = Mux(self.clear, 0, acc)
        total = Signal(signed(self.acc_bits))
        m.d.comb += total.eq(base + product)
        with m.If(self.valid):
            m.d.sync += acc.eq(total)
        with m.Elif(self.clear):
            m.d.sync += acc.eq(0)
        m.d.sync += [
            a_reg.eq(self.a),
            b_reg.eq(self.b),
            self.valid_out.eq(self.valid),
            self.clear_out.eq(self.clear),
        ]
        if not keep:
            res = Signal(signed(self.acc_bits), reset_less=True)
            m.d.comb += [self.acc.eq(acc), self.a_out.eq(a_reg), self.b_out.eq(b_reg),
                         self.res.eq(res)]
            m.d.sync += self.last_out.eq(self.last)
            with m.If(self.valid & self.last):
                m.d.sync += res.eq(total)
        return m
