"""Runs the VLN engine testbench (tb_engine_layernorm.py) on Verilated engine harnesses:
``cols = 4`` (D = 1..32, including the short rows whose rsqrt chain needs idle cycles, and
block-padded rows with ``block`` not a multiple of 4) and ``cols = 16`` (D = 64, 128, 512 in
one and several blocks, and block-padded rows of 24, 12 and 40-element blocks)."""

import pytest

from cocotb_tests.engine_harness import run_engine_tb
from hw.vector.layernorm import LayerNormEngine

pytestmark = pytest.mark.rtl

#: ``blocks x block`` shapes: first ``block % cols == 0`` (no padding), then padded blocks.
SHAPES = {
    4: "1x4,2x4,1x12,4x4,1x20,2x16,2x6,3x5,1x7,4x3,1x1,5x2",
    16: "1x64,2x64,1x128,4x32,1x512,8x64,2x24,4x12,1x40",
}


@pytest.mark.parametrize("cols,cases", [(4, 48), (16, 27)])
def test_layernorm_engine_matches_intops(cols, cases):
    rows = 4
    result = run_engine_tb(f"eng_vln{cols}", lambda: LayerNormEngine(cols, rows), "VLN", cols,
                           rows, "tb_engine_layernorm", cases,
                           expect=["layernorm_cases", "zero_size"],
                           env={"FOLDACCEL_SHAPES": SHAPES[cols]})
    assert result.ok, result.summary()
