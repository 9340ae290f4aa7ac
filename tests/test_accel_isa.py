"""The instruction set: encoding, decoding, legality, and agreement with the RTL's layout."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hw import isa
from hw.isa import FIELDS, HEADER_BITS, Instr, IsaError
from hw.uarch import AccelParams
from model.config import ConfigError, HardwareConfig

P16 = AccelParams.from_hw(HardwareConfig())


@st.composite
def instructions(draw):
    op = draw(st.sampled_from(sorted(isa.OPCODES)))
    args = {name: draw(st.integers(0, (1 << bits) - 1)) for name, bits in FIELDS[op]}
    deps = tuple(draw(st.integers(0, isa.DEP_MAX)) for _ in isa.UNITS)
    return Instr(op, args, deps)


@settings(max_examples=300, deadline=None)
@given(instructions())
def test_encode_decode_roundtrip(ins):
    word = ins.encode()
    assert 0 <= word < 1 << 128
    assert isa.decode(word) == ins
    assert word & ~isa.used_mask(ins.op) == 0


@settings(max_examples=60, deadline=None)
@given(instructions())
def test_amaranth_layout_reads_the_encoded_fields(ins):
    """The RTL decoder's amaranth.lib.data view of a word yields the encoder's fields."""
    from amaranth.hdl import Const
    from amaranth.lib import data

    layout = isa.instr_layout()
    assert layout.size == 128
    view = data.View(layout, Const(ins.encode(), 128))

    def value(v):
        return Const.cast(v).value

    assert value(view.opcode) == isa.OPCODES[ins.op]
    assert [value(view.deps[u]) for u in range(len(isa.UNITS))] == list(ins.deps)
    fields = getattr(view.payload, ins.op.lower())
    for name, _ in FIELDS[ins.op]:
        assert value(getattr(fields, name)) == ins[name], name


def test_all_zero_and_undefined_opcodes_are_illegal():
    with pytest.raises(IsaError, match="opcode 0"):
        isa.decode(0)
    for op in range(16, 32):
        with pytest.raises(IsaError, match=f"opcode {op} is not defined"):
            isa.decode(op)


def test_reserved_bits_are_illegal():
    good = isa.store(3, 4).encode()
    for bit in (5, 7, HEADER_BITS + 34, 127):
        with pytest.raises(IsaError, match="reserved bits"):
            isa.decode(good | (1 << bit))
    assert isa.decode(good) == isa.store(3, 4)


def test_field_overflow_rejected_at_construction():
    with pytest.raises(IsaError, match="'k'=131072 does not fit 17 bits"):
        isa.matmul(0, 0, 0, 1 << 17)
    with pytest.raises(IsaError, match="no field"):
        Instr("LOAD", {"bogus": 1})
    with pytest.raises(IsaError, match="dependency on STORE = 64"):
        Instr("STORE", {"addr": 0, "count": 1}, (0, 0, 0, 64, 0, 0))


@pytest.mark.parametrize("ins,fragment", [
    (isa.load(7, 0, 1), "'bank'=7"),
    (isa.load(0, 0, 0), "'count'=0"),
    (isa.load(0, P16.act_depth - 3, 4), "runs past the ACT bank"),
    (isa.load(2, P16.acc_depth - 1, 2), "runs past the ACC bank"),
    (isa.matmul(0, 0, 0, 0), "'k'=0"),
    (isa.matmul(P16.act_depth - 10, 0, 0, 11), "'act'"),
    (isa.matmul(0, P16.wgt_depth - 10, 0, 11), "'wgt'"),
    (isa.matmul(0, 0, P16.acc_depth - 15, 1), "'acc'"),
    (isa.matmul(0, 0, 0, 1, mode="OVERWRITE", bias=5), "mode is not BIAS"),
    (Instr("MATMUL", {"k": 1, "mode": 3}), "'mode'=3"),
    (isa.requant(0, 0, 0, 0), "'rows'=0"),
    (isa.requant(0, P16.acc_depth - 1, 0, 5), "'dst'"),
    (isa.requant(0, 0, P16.acc_depth, 1), "'param'"),
    (isa.store(P16.acc_depth - 1, 2), "runs past the ACC bank"),
    (isa.config(0, 8, 16), "program is for a 8x16 array"),
])
def test_range_problems(ins, fragment):
    probs = isa.problems(ins, P16)
    assert any(fragment in p for p in probs), probs
    with pytest.raises(IsaError, match="instruction #7"):
        isa.check(ins, P16, pc=7)


def test_legal_edges_pass():
    for ins in (isa.load(0, P16.act_depth - 4, 4), isa.matmul(0, 0, P16.acc_depth - 16, 1),
                isa.requant(0, P16.acc_depth - 1, 0, 4), isa.store(0, P16.acc_depth),
                isa.matmul(0, 0, 0, 1, mode="BIAS", bias=P16.acc_depth - 1),
                isa.config(5, 16, 16), isa.fence(), isa.done()):
        assert isa.problems(ins, P16) == []


def test_bank_geometry_from_config():
    p = AccelParams.from_hw(HardwareConfig(rows=4, cols=3, act_sram_kib=1, wgt_sram_kib=1,
                                           acc_sram_kib=1, host_bytes_per_cycle=8))
    assert (p.act_depth, p.wgt_depth, p.acc_depth) == (256, 341, 85)
    assert [p.beats(b) for b in range(3)] == [1, 1, 2]
    assert P16.beats(2) == 4 and P16.drain_gap == 16


def test_config_the_isa_cannot_address_is_rejected():
    with pytest.raises(ConfigError, match="act_sram_kib.*16-bit ISA address.*fix"):
        AccelParams.from_hw(HardwareConfig(rows=1, cols=16, act_sram_kib=128))
    with pytest.raises(ConfigError, match="acc_sram_kib.*fix: raise acc_sram_kib"):
        AccelParams.from_hw(HardwareConfig(rows=64, cols=64, acc_sram_kib=16))
