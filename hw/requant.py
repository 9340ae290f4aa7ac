"""Per-column requantization lanes: int32 accumulator -> int8 or int16 (docs/NUMERICS.md
section 2)."""

from __future__ import annotations

from amaranth.hdl import Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from hw.opcodes import PARAM_M_BITS as M_BITS
from hw.opcodes import PARAM_S_BITS as S_BITS
from hw.opcodes import PARAM_S_SHIFT as S_SHIFT


class Requantizer(wiring.Component):
    """``lanes`` parallel ``sat8((acc*m + 2**(s-1)) >> s)`` (``sat16`` with ``out16``),
    optionally ReLU, one register stage.

    Inputs in cycle ``t`` (``valid``, ``acc``, ``m``, ``s``, ``relu``, ``out16``) give ``y``
    (int16 lanes; int8 results sign-extended) with ``y_valid`` in cycle ``t + 1``. ``m`` is
    unsigned 15 bit, ``s`` is 6 bit and must be in [1, 47] (``model.intops.requantize``
    rejects other shifts; the lanes then compute ``(acc*m + (2**s >> 1)) >> s``).
    """

    def __init__(self, lanes: int):
        self.lanes = lanes
        super().__init__({
            "valid": In(1),
            "acc": In(data.ArrayLayout(signed(32), lanes)),
            "m": In(data.ArrayLayout(unsigned(M_BITS), lanes)),
            "s": In(data.ArrayLayout(unsigned(S_BITS), lanes)),
            "relu": In(1),
            "out16": In(1),
            "y_valid": Out(1),
            "y": Out(data.ArrayLayout(signed(16), lanes)),
        })

    def elaborate(self, platform):
        m = Module()
        m.d.sync += self.y_valid.eq(self.valid)
        for j in range(self.lanes):
            prod = Signal(signed(48), name=f"prod{j}")
            t = Signal(signed(49), name=f"t{j}")
            q = Signal(signed(49), name=f"q{j}")
            m.d.comb += [
                prod.eq(self.acc[j] * self.m[j]),
                t.eq(prod + ((Const(1, 1) << self.s[j]) >> 1)),
                q.eq(t >> self.s[j]),
            ]
            high = Mux(self.out16, 32767, 127)
            low = Mux(self.relu, 0, Mux(self.out16, -32768, -128))
            m.d.sync += self.y[j].eq(Mux(q > high, high, Mux(q < low, low, q)))
        return m


def param_fields(lane):
    """(m, s) slices of one 32-bit param lane (an Amaranth value)."""
    return lane[:M_BITS], lane[S_SHIFT:S_SHIFT + S_BITS]
