"""Rooflines of the benchmarks, checked by hand on the issue's examples."""

from model.config import HardwareConfig
from sim.bench.roofline import array_bound, gemm_roofline


def test_gemm_roofline_by_hand():
    hw = HardwareConfig()  # 16x16, 16 B/cycle
    # A 16x64 (1,024 B) + B 64x64 (4,096 B) in = 320 beats; array 1*4 tiles * 64 = 256;
    # out 16x64 int32 = 4,096 B = 256 beats
    assert gemm_roofline(16, 64, 64, hw) == (320, "data in")
    # 512^3: 32*32 tiles * 512 = 524,288 array cycles dominate
    assert gemm_roofline(512, 512, 512, hw) == (524288, "array")
    # requantized: int8 out, 4 B bias + 4 B params per column in
    assert gemm_roofline(32, 32, 32, hw, bias=True, requant=True) == (
        max(4 * 32, -(-(32 * 32 * 2 + 8 * 32) // 16), 32 * 32 // 16), "data in")


def test_array_bound_sums_tiles():
    assert array_bound([(17, 10, 16), (1, 3, 33)], 16, 16) == 2 * 1 * 10 + 1 * 3 * 3
