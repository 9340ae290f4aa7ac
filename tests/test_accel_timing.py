"""Timing model (hw/timing.py): hand-timed programs, and invariants on compiled ones.

The RTL side of the same hand-timed programs runs in cocotb_tests/tb_accel.py; every
compiled program the RTL tests run is also checked against the model there.
"""

import pytest

from cocotb_tests.timing_probes import PROBES
from hw import isa
from hw.compiler import compile_gemm
from hw.timing import program_cycles, schedule, watchdog_budget
from hw.uarch import AccelParams
from model.config import HardwareConfig
from sim.isa_sim import simulate
from sim.rtl.designs import SMALL_HW

SMALL = AccelParams.from_hw(HardwareConfig(**SMALL_HW))


@pytest.mark.parametrize("probe", PROBES, ids=lambda p: p.name)
def test_hand_timed_programs(probe):
    assert program_cycles(list(probe.program), SMALL) == probe.expected, probe.why
    simulate(list(probe.program), SMALL, probe.din())  # legal and race-free


def test_schedule_details_of_a_probe():
    timing, _ = schedule(list(PROBES[2].program), SMALL)
    starts = [(t.op, t.start, t.done) for t in timing if t.start >= 0]
    assert starts == [("LOAD", 3, 23), ("LOAD", 23, 43), ("MATMUL", 44, 70),
                      ("MATMUL", 66, 74), ("STORE", 75, 91)]


@pytest.mark.parametrize("hw,shape,flags", [
    (HardwareConfig(**SMALL_HW), (23, 301, 17), (True, True)),
    (HardwareConfig(), (128, 128, 128), (False, False)),
    (HardwareConfig(), (37, 100, 23), (True, True)),
    (HardwareConfig(rows=8, cols=32, host_bytes_per_cycle=32), (70, 500, 90), (True, False)),
])
def test_counter_invariants(hw, shape, flags):
    bias, requant = flags
    prog = compile_gemm(*shape, hw, bias=bias, requant=requant)
    p = AccelParams.from_hw(hw)
    c = program_cycles(prog, hw)
    m, k, n = shape
    assert c["array_busy"] == sum(i["k"] for i in prog.instrs if i.op == "MATMUL")
    assert c["array_busy"] * p.rows * p.cols >= m * k * n  # padded tiles do extra work
    assert c["dma_in_busy"] == prog.n_in_beats
    assert c["dma_out_busy"] == prog.n_out_beats
    assert max(c["dma_in_busy"], c["dma_out_busy"]) <= c["dma_busy"] <= \
        c["dma_in_busy"] + c["dma_out_busy"]
    assert c["total"] > max(c["array_busy"], c["dma_busy"], c["requant_busy"])
    assert c["total"] <= watchdog_budget(prog.instrs, p)


def test_large_gemms_near_the_mac_bound():
    """The two large benchmark GEMMs stay within 15% of M*K*N/256 (host traffic included)."""
    for m, k, n in ((64, 256, 64), (128, 128, 128)):
        for bias, requant in ((False, False), (True, True)):
            prog = compile_gemm(m, k, n, HardwareConfig(), bias=bias, requant=requant)
            ratio = program_cycles(prog, HardwareConfig())["total"] / (m * k * n / 256)
            assert ratio <= 1.15, (m, k, n, bias, requant, ratio)


def test_incomplete_program_rejected():
    with pytest.raises(isa.IsaError, match="without DONE"):
        program_cycles([isa.config(0, 4, 3)], SMALL)
