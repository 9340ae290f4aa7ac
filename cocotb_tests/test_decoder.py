"""Runs the decoder testbench (tb_decoder.py): RTL legality check == Python checker."""

import pytest

from model.config import Config, HardwareConfig
from sim.rtl.designs import SMALL_HW, decoder_design
from sim.rtl.runner import run_cocotb

pytestmark = pytest.mark.rtl


@pytest.mark.parametrize("hw", [HardwareConfig(**SMALL_HW), HardwareConfig()],
                         ids=["small", "default"])
def test_rtl_decoder_agrees_with_python(hw):
    env = {"FOLDACCEL_CONFIG": Config(hardware=hw).to_toml(), "FOLDACCEL_SEED": "2026",
           "FOLDACCEL_WORDS": "4000"}
    result = run_cocotb(decoder_design(hw), "cocotb_tests.tb_decoder", env=env,
                        expect=["random_words_agree"])
    assert result.ok, result.summary()
