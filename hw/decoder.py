"""The RTL decoder's legality check, generated from the opcode table.

An instruction word is illegal when its opcode is not in the table, when it sets a bit its
opcode does not use (``hw.isa.used_mask``), or when one of its opcode's ``rules`` holds. The
rules are the same Python functions ``hw.isa.problems`` evaluates on ints; here they are
evaluated on the ``amaranth.lib.data`` view of the word, so the hardware and the Python
checker cannot disagree (``cocotb_tests/tb_decoder.py`` checks random words on the RTL).
"""

from __future__ import annotations

from amaranth.hdl import Const, Module, Signal
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from hw.isa import instr_layout, used_mask
from hw.opcodes import TABLE
from hw.uarch import INSTR_BITS, AccelParams


def illegal_signal(m: Module, word, p: AccelParams) -> Signal:
    """A 1-bit signal: ``word`` (a 128-bit value) is illegal on hardware ``p``."""
    view = data.View(instr_layout(), word)
    bad = Signal(name="bad_fields")
    with m.Switch(view.opcode):
        for name, spec in TABLE.items():
            with m.Case(spec.code):
                fields = getattr(view.payload, name.lower())
                cond = (word & ~Const(used_mask(name), INSTR_BITS)) != 0
                for rule in spec.rules:
                    cond = cond | rule.pred(fields, p)
                m.d.comb += bad.eq(cond)
        with m.Default():
            m.d.comb += bad.eq(1)
    return bad


class InstrChecker(wiring.Component):
    """``illegal`` = the word on ``word`` is illegal on hardware ``p`` (combinational)."""

    def __init__(self, p: AccelParams):
        self.p = p
        super().__init__({"word": In(INSTR_BITS), "illegal": Out(1)})

    def elaborate(self, platform):
        m = Module()
        m.d.comb += self.illegal.eq(illegal_signal(m, self.word, self.p))
        return m


__all__ = ["InstrChecker", "illegal_signal"]
