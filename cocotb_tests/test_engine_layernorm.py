"""Runs the VLN engine testbench (tb_engine_layernorm.py) on Verilated engine harnesses:
``cols = 4`` (D = 4..32, including the short rows whose rsqrt chain needs idle cycles) and
``cols = 16`` (D = 64, 128, 512)."""

import pytest

from cocotb_tests.engine_harness import args_bits, engine_design
from hw.vector.layernorm import LayerNormEngine
from sim.rtl.runner import run_cocotb

pytestmark = pytest.mark.rtl


@pytest.mark.parametrize("cols,words,cases", [(4, "1,2,3,4,5,8", 36), (16, "4,8,32", 12)])
def test_layernorm_engine_matches_intops(cols, words, cases):
    rows = 4
    design = engine_design(f"eng_vln{cols}", lambda: LayerNormEngine(cols, rows),
                           args_bits("VLN"), cols, rows, {"engine": "VLN"})
    result = run_cocotb(design, "cocotb_tests.tb_engine_layernorm",
                        env={"FOLDACCEL_SEED": "2026", "FOLDACCEL_COLS": str(cols),
                             "FOLDACCEL_ROWS": str(rows), "FOLDACCEL_CASES": str(cases),
                             "FOLDACCEL_WORDS": words},
                        expect=["layernorm_cases", "zero_size"])
    assert result.ok, result.summary()
