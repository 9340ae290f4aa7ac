"""GEMM compiler + ISA simulator: every program equals numpy, is race-free and legal."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hw import isa
from hw.compiler import CompileError, compile_gemm
from hw.hostio import beats_to_words, words_to_beats
from hw.isa import Instr
from hw.timing import program_cycles, watchdog_budget
from hw.uarch import AccelParams
from model.config import HardwareConfig
from model.intops import gemm_i32, max_safe_k, requantize
from sim.isa_sim import IsaSimError, simulate
from sim.rtl.designs import SMALL_HW

SMALL = HardwareConfig(**SMALL_HW)
DEFAULT = HardwareConfig()


def run(prog, seed=0, data="random"):
    """Seeded operands -> (ISA simulator output, numpy golden)."""
    rng = np.random.default_rng(seed)
    M, K, N = prog.M, prog.K, prog.N
    if data == "min":
        a, b = np.full((M, K), -128), np.full((K, N), -128)
    else:
        a, b = rng.integers(-128, 128, (M, K)), rng.integers(-128, 128, (K, N))
    bias = rng.integers(-(2**30), 2**30, N) if prog.bias else None
    mult = rng.integers(0, 32768, N) if prog.requant else None
    shift = rng.integers(1, 48, N) if prog.requant else None
    want = gemm_i32(a, b, bias)
    if prog.requant:
        want = requantize(want, mult, shift, relu=prog.relu)
    res = simulate(prog.instrs, prog.params, prog.pack_inputs(a, b, bias, mult, shift))
    assert res.beats_in == prog.n_in_beats
    return prog.unpack_output(res.dout), want


@settings(max_examples=25, deadline=None)
@given(M=st.integers(1, 40), K=st.integers(1, 700), N=st.integers(1, 30),
       bias=st.booleans(), requant=st.booleans(), relu=st.booleans(), seed=st.integers(0, 99))
def test_small_array_programs_equal_numpy(M, K, N, bias, requant, relu, seed):
    prog = compile_gemm(M, K, N, SMALL, bias=bias, requant=requant, relu=relu and requant)
    got, want = run(prog, seed)
    assert got.dtype == want.dtype
    np.testing.assert_array_equal(got, want)


@settings(max_examples=15, deadline=None)
@given(M=st.integers(1, 150), K=st.integers(1, 300), N=st.integers(1, 150),
       requant=st.booleans(), seed=st.integers(0, 99))
def test_default_array_programs_equal_numpy(M, K, N, requant, seed):
    prog = compile_gemm(M, K, N, DEFAULT, bias=True, requant=requant)
    got, want = run(prog, seed)
    np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("shape", [(1, 1, 1), (1, 5000, 1), (3, 1, 200), (70, 9000, 20)])
def test_extreme_shapes_on_default_array(shape):
    prog = compile_gemm(*shape, DEFAULT)
    got, want = run(prog, data="min")
    np.testing.assert_array_equal(got, want)
    assert prog.plan["k_chunks"] >= shape[1] // 2048  # K beyond ACT/WGT is chunked


def test_operands_much_bigger_than_srams_stream_through():
    prog = compile_gemm(60, 900, 50, SMALL, bias=True, requant=True, relu=True)
    p = prog.params
    assert p.act_depth * p.rows < 60 * 900 and p.wgt_depth * p.cols < 900 * 50
    got, want = run(prog, seed=3)
    np.testing.assert_array_equal(got, want)


def test_programs_are_legal_and_framed():
    for hw, shape in ((SMALL, (23, 301, 17)), (DEFAULT, (37, 100, 23))):
        prog = compile_gemm(*shape, hw, bias=True, requant=True)
        p = AccelParams.from_hw(hw)
        assert prog.instrs[0].op == "CONFIG" and prog.instrs[-1].op == "DONE"
        for pc, ins in enumerate(prog.instrs):
            isa.check(ins, p, pc)
        assert prog.instrs[0]["budget"] == watchdog_budget(prog.instrs, p)
        assert program_cycles(prog, hw)["total"] <= prog.instrs[0]["budget"]


def test_k_overflow_rejected():
    prog = compile_gemm(1, max_safe_k(), 1, DEFAULT)  # the largest safe K compiles
    assert prog.K == 131071
    with pytest.raises(CompileError, match=r"K=131072 can overflow the int32 accumulator.*fix"):
        compile_gemm(1, max_safe_k() + 1, 1, DEFAULT)
    with pytest.raises(CompileError, match=r"\|bias\| <= 1073741824, K must be <= 65535"):
        compile_gemm(4, 65536, 4, DEFAULT, bias=True)
    compile_gemm(4, 65536, 4, DEFAULT, bias=True, bias_abs_max=2**20)


@pytest.mark.parametrize("kwargs,fragment", [
    ({"M": 0, "K": 3, "N": 3}, "M=0 must be a positive integer"),
    ({"M": 3, "K": 3, "N": 3, "relu": True}, "relu=True needs requant=True"),
    ({"M": 3, "K": 3, "N": 3, "k_chunks": 4}, "k_chunks=4 must be in"),
])
def test_bad_requests_rejected(kwargs, fragment):
    with pytest.raises(CompileError, match=fragment):
        compile_gemm(hw=SMALL, **kwargs)


def test_pack_inputs_validates_operands():
    prog = compile_gemm(5, 6, 7, SMALL, bias=True, requant=True)
    a, b = np.zeros((5, 6), int), np.zeros((6, 7), int)
    with pytest.raises(CompileError, match="a has shape"):
        prog.pack_inputs(np.zeros((6, 5), int), b, np.zeros(7, int), np.ones(7, int),
                         np.ones(7, int))
    with pytest.raises(CompileError, match="b holds values outside"):
        prog.pack_inputs(a, b + 128, np.zeros(7, int), np.ones(7, int), np.ones(7, int))
    with pytest.raises(CompileError, match="shift holds values outside"):
        prog.pack_inputs(a, b, np.zeros(7, int), np.ones(7, int), np.zeros(7, int))
    with pytest.raises(CompileError, match="pass bias"):
        prog.pack_inputs(a, b)


def test_missing_dependency_is_a_race():
    """Dropping the MATMUL's dependency on its operand LOAD makes the simulator refuse."""
    prog = compile_gemm(4, 8, 3, SMALL)
    pc = next(n for n, ins in enumerate(prog.instrs) if ins.op == "MATMUL")
    bad = list(prog.instrs)
    bad[pc] = Instr("MATMUL", bad[pc].args, (0,) * len(isa.UNITS))
    din = prog.pack_inputs(np.ones((4, 8), int), np.ones((8, 3), int))
    with pytest.raises(IsaSimError, match=r"#\d+ MATMUL .* races with LOAD .*fix: give it a "
                                          r"LOAD dependency"):
        simulate(bad, SMALL, din)
    simulate(bad, SMALL, din, check_races=False)  # the race checker is what caught it


def test_requant_reading_another_requants_output_needs_a_dependency():
    p = AccelParams.from_hw(SMALL)
    prog = [isa.config(0, 4, 3), isa.load(2, 0, 6), isa.requant(0, 10, 5, 4, after={"LOAD": 1}),
            isa.requant(10, 20, 5, 1), isa.done()]
    din = np.zeros((6 * p.beats(2), p.host_bytes), np.uint8)
    din.view("<u4")[:] = isa.pack_param(1, 1)  # every lane a valid (m, s)
    with pytest.raises(IsaSimError, match=r"#3 REQUANT .* reads ACC\[10:11\] and races with "
                                          r"REQUANT"):
        simulate(prog, p, din)


def test_simulator_reports_bad_programs():
    p = AccelParams.from_hw(SMALL)
    with pytest.raises(IsaSimError, match="ends without DONE"):
        simulate([isa.config(0, 4, 3)], p, np.zeros((0, 8), np.uint8))
    with pytest.raises(IsaSimError, match="needs 4 data beats, only 1"):
        simulate([isa.load(0, 0, 4), isa.done()], p, np.zeros((1, 8), np.uint8))
    with pytest.raises(IsaSimError, match="malformed program.*opcode 0"):
        simulate([0], p, np.zeros((0, 8), np.uint8))
    with pytest.raises(IsaSimError, match="'count'=0"):
        simulate([isa.store(0, 0), isa.done()], p, np.zeros((0, 8), np.uint8))


def test_words_and_beats_layout():
    words = np.arange(3 * 12, dtype=np.uint8).reshape(3, 12)
    beats = words_to_beats(words, 8)
    assert beats.shape == (6, 8)
    assert beats[1].tolist() == [8, 9, 10, 11, 0, 0, 0, 0]  # second beat: bytes 8..11, padded
    np.testing.assert_array_equal(beats_to_words(beats, 12), words)


@pytest.mark.parametrize("mt,nt", [(1, 5), (4, 1), (3, 3), (2, 7), (6, 2)])
def test_shell_order_covers_every_tile_once_and_grows_squares(mt, nt):
    from hw.compiler import shell_order
    order = shell_order(mt, nt)
    assert sorted(order) == [(i, j) for i in range(mt) for j in range(nt)]
    # after the first t tiles, every tile of the bounding box of the A and B tiles used so
    # far is done, unless its shell (max(i, j)) is the one in progress
    for t in range(1, len(order) + 1):
        done = set(order[:t])
        shell = max(max(i, j) for i, j in order[:t])
        assert all((i, j) in done for i in range(mt) for j in range(nt) if max(i, j) < shell)


def test_shell_order_beats_serpentine_when_b_tiles_are_load_bound():
    """On a 32x32 array with a 16-byte link a B tile takes 2 beats per k-step: serpentine rows
    leave the array waiting on the first row's B tiles; shells keep it fed."""
    from hw.compiler import _Compiler
    from hw.uarch import as_params
    hw = HardwareConfig(rows=32, cols=32)
    p = as_params(hw)
    auto = _Compiler(p, 256, 256, 256, False, False, False, 1, "auto").run()
    shells = _Compiler(p, 256, 256, 256, False, False, False, 1, "shells").run()
    assert shells.plan["order"] == "shells" and auto.plan["order"] == "auto"
    assert program_cycles(shells, p)["total"] < 0.95 * program_cycles(auto, p)["total"]
    best = compile_gemm(256, 256, 256, hw)
    assert best.plan["order"] == "shells"
    assert program_cycles(best, p)["total"] <= program_cycles(shells, p)["total"]
    got, want = run(compile_gemm(70, 40, 100, hw, bias=True, k_chunks=1), seed=3)
    np.testing.assert_array_equal(got, want)
    got, want = run(_Compiler(p, 70, 40, 100, True, True, True, 2, "shells").run(), seed=4)
    np.testing.assert_array_equal(got, want)


def test_unknown_order_rejected():
    from hw.compiler import _Compiler
    from hw.uarch import as_params
    with pytest.raises(ValueError, match="order"):
        _Compiler(as_params(DEFAULT), 4, 4, 4, False, False, False, 1, "diagonal")
