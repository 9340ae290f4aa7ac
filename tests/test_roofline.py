"""Rooflines of the benchmarks, checked by hand on the issue's examples."""

from hw.bounds import array_bound, gemm_roofline
from model.config import HardwareConfig


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


def test_fill_drain_bound_by_hand():
    from hw.bounds import gemm_fill_drain_bound
    hw = HardwareConfig()  # 16x16: 1 beat per ACT/WGT word, 4 per ACC word, latency 31
    # first tile: 64 * (1 + 1) + 31 + 256 out = 415; last: 320 in + 31 + 16 rows * 4 = 415
    assert gemm_fill_drain_bound(16, 64, 64, hw) == 415
    # requantized, M = 37: smallest tile has 5 rows -> 2 packed words of 4 beats
    last = -(-(37 * 100 + 100 * 23 + 8 * 23) // 16) + 31 + 2 * 4
    first = 100 * 2 + 31 + -(-(37 * 23) // 16)
    array = 2 + 3 * 2 * 100 + 31 + 2 * 4       # first words, k-steps, latency, last STORE
    assert gemm_fill_drain_bound(37, 100, 23, hw, bias=True, requant=True) == max(
        array, last, first)
    assert gemm_fill_drain_bound(5, 100, 23, hw, bias=True, requant=True) > gemm_roofline(
        5, 100, 23, hw, bias=True, requant=True)[0]
    # large GEMMs: the array's k-steps, plus 2 words in, the latency and a 16-row STORE
    assert gemm_fill_drain_bound(512, 512, 512, hw) == 2 + 524288 + 31 + 64


def test_compiled_programs_respect_their_bounds():
    """No program the compiler emits beats the fill/drain bound (it is a lower bound)."""
    import itertools

    from hw.bounds import gemm_fill_drain_bound
    from hw.compiler import compile_gemm
    from hw.timing import program_cycles
    for size, (m, k, n) in itertools.product((8, 16, 32), [(16, 64, 64), (32, 32, 32),
                                                           (37, 100, 23), (5, 64, 80)]):
        hw = HardwareConfig(rows=size, cols=size)
        for bias, requant in ((False, False), (True, True)):
            prog = compile_gemm(m, k, n, hw, bias=bias, requant=requant)
            cycles = program_cycles(prog, hw)["total"]
            assert cycles >= gemm_fill_drain_bound(m, k, n, hw, bias=bias, requant=requant)


def test_word_beats_by_hand_and_equal_programs_that_load_each_tile_once():
    from hw.bounds import gemm_word_beats
    from hw.compiler import compile_gemm
    hw = HardwareConfig(rows=32, cols=32)  # 32-byte ACT/WGT words: 2 beats; ACC 8 beats
    # A: 2 tiles x 100 words x 2 beats; B: 1 tile x 100 x 2; out: (32 + 5) rows x 8 beats
    assert gemm_word_beats(37, 100, 23, hw) == (600, 296)
    # requantized: + bias and parameter word (8 beats each); out 8 + 2 packed words
    assert gemm_word_beats(37, 100, 23, hw, bias=True, requant=True) == (616, 80)
    for shape, kw in (((37, 100, 23), {}), ((70, 64, 90), {"bias": True, "requant": True})):
        prog = compile_gemm(*shape, hw, **kw)
        assert gemm_word_beats(*shape, hw, **kw) == (prog.n_in_beats, prog.n_out_beats)
