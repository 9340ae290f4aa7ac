"""The vector/mover program cases (cocotb_tests/vector_cases.py) on the ISA simulator equal
model.intops / numpy on the original tensors (the RTL runs the same cases in tb_vector.py)."""

import numpy as np
import pytest

from cocotb_tests import vector_cases as vc
from hw.uarch import AccelParams
from model.config import HardwareConfig
from sim.isa_sim import simulate
from sim.rtl.designs import SMALL_HW

PARAMS = {"small": AccelParams.from_hw(HardwareConfig(**SMALL_HW)),
          "default": AccelParams.from_hw(HardwareConfig())}


def cases(p: AccelParams, seed: int) -> list[vc.Case]:
    rng = np.random.default_rng(seed)
    C = p.cols
    out = [vc.layernorm_case(p, rng, 3, 4 * C, out16, kind)
           for out16 in (False, True) for kind in ("random", "flat", "extreme")]
    out += [vc.layernorm_case(p, rng, 2, d, False, "random", blocks)
            for d, blocks in ((2 * C + 2, 2), (3 * C + 1, 1), (6, 3))]
    out += [vc.softmax_case(p, rng, 5, 2 * C + 1, kind) for kind in
            ("random", "equal", "dominant", "extreme")]
    out += [vc.softmax_case(p, rng, 4, 7, mrow=0, mcols=6),   # every column masked but one
            vc.softmax_case(p, rng, 6, 13, mrow=4, mcols=5),  # rows of different masks
            vc.softmax_case(p, rng, 2, 1),
            vc.softmax_case(p, rng, 2, 200, scale=0.01)]
    out += [vc.add_case(p, rng, 3, kind, relu) for kind in ("random", "saturate")
            for relu in (False, True)]
    out += [vc.squash_case(p, rng, mode) for mode in ("clamp", "tanh")]
    out += [vc.colsum_case(p, rng, kind, 5, 2 * C + 1) for kind in ("mean", "sum16",
                                                                     "zero_point")]
    out += [vc.requant_vmem_case(p, rng, out16, d) for out16 in (False, True) for d in (1, 3)]
    out += [vc.chain_case(p, rng, kind) for kind in ("A", "KT", "V", "concat", "fold")]
    return out


@pytest.mark.parametrize("suite", sorted(PARAMS))
def test_cases_on_the_isa_simulator(suite):
    p = PARAMS[suite]
    for case in cases(p, 11):
        res = simulate(case.program.instrs, p, case.program.din)
        got = case.program.unpack(res.dout)
        for tag, (want, decode) in case.want.items():
            assert np.array_equal(decode(got[tag]), want), (case.name, tag)
