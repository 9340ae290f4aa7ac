"""Vector-unit and mover opcodes at the ISA level: legality, shared-port ordering, and programs
(host data packed into VMEM/PMEM words, the op, STOREs unpacked) on the ISA simulator equal to
model.intops applied to the original tensors."""

import numpy as np
import pytest

from hw import isa
from hw.deps import DepTracker
from hw.program import ProgramBuilder, vmem_values
from hw.uarch import ACC, ACT, PMEM, VMEM, WGT, AccelParams
from hw.vector import formats
from hw.vector.latency_arith import mean_pool_params
from model import intops
from model.config import HardwareConfig
from sim.isa_sim import IsaSimError, simulate

HW = HardwareConfig(rows=4, cols=4, act_sram_kib=1, wgt_sram_kib=1, acc_sram_kib=1,
                    vmem_kib=8, pmem_kib=4, host_bytes_per_cycle=8)
P = AccelParams.from_hw(HW)
C = P.cols


def run(b: ProgramBuilder) -> dict[str, np.ndarray]:
    prog = b.finish()
    res = simulate(prog.instrs, P, prog.din)
    return prog.unpack(res.dout)


def test_new_banks_geometry():
    assert (P.vmem_depth, P.pmem_depth) == (8 * 1024 // 8, 4 * 1024 // 32)
    assert P.word_bytes(VMEM) == 2 * C and P.word_bytes(PMEM) == 8 * C
    assert [P.beats(b) for b in (ACT, WGT, ACC, VMEM, PMEM)] == [1, 1, 2, 1, 4]


@pytest.mark.parametrize("ins,fragment", [
    (isa.Instr("VLN", {"src": 0, "dst": 0, "rows": 0, "blocks": 1, "block": 4}), "'rows'=0"),
    (isa.Instr("VLN", {"src": P.vmem_depth - 3, "rows": 2, "blocks": 2, "block": 3}), "'src'"),
    (isa.Instr("VLN", {"rows": 1, "blocks": 2, "block": 5, "param": P.pmem_depth - 4}),
     "'param'"),
    (isa.Instr("VLN", {"rows": 1, "blocks": 200, "block": 9}), "takes 600 words"),
    (isa.Instr("VSOFTMAX", {"rows": 1, "words": 1, "ncols": C + 1}), "'ncols'=5 is more"),
    (isa.Instr("VSOFTMAX", {"rows": 2, "words": 1, "ncols": 3, "mrow": 1, "mcols": 3}),
     "see no column"),
    (isa.Instr("VSUM", {"rows": 2, "words": 1, "stride": 1, "out": 3}), "'out'=3"),
    (isa.Instr("VSUM", {"rows": 1, "words": 2, "out": 2, "dst": P.acc_depth - 1}),
     "runs past the ACC bank"),
    (isa.Instr("MTRANS", {"rows": 4, "ncols": 1, "boff": 1, "bank": 0}), "do not fit a ACT"),
    (isa.Instr("MTRANS", {"rows": 1, "ncols": 2, "bank": 1, "dst": P.wgt_depth - 1}),
     "runs past the WGT bank"),
    (isa.Instr("MCOPY", {"count": 0}), "'count'=0"),
    (isa.Instr("REQUANT", {"rows": 2, "out": 1, "dstride": 0}), "'dstride'=0"),
    (isa.Instr("REQUANT", {"rows": 2, "out": 0, "dstride": 3}), "out is ACC8"),
    (isa.Instr("REQUANT", {"rows": 4, "out": 2, "dstride": 300, "dst": 200}),
     "runs past the VMEM bank"),
])
def test_vector_rules(ins, fragment):
    probs = isa.problems(ins, P)
    assert any(fragment in p for p in probs), probs


def test_units_sharing_a_port_are_ordered():
    """A STORE from VMEM after a VSQUASH on other words still waits for it: both use the
    VMEM read port."""
    t = DepTracker(P)
    t.add(isa.config(0, P.rows, P.cols))
    t.add(isa.Instr("VSQUASH", {"src": 0, "dst": 10, "count": 4, "param": 0}))
    st = t.add(isa.Instr("STORE", {"addr": 100, "count": 2, "bank": 1}))
    assert st.deps[isa.UNITS.index("VECTOR")] == 1
    # a STORE from ACC uses its own port: no dependency
    st2 = t.add(isa.Instr("STORE", {"addr": 0, "count": 2, "bank": 0}))
    assert st2.deps[isa.UNITS.index("VECTOR")] == 0


def test_missing_port_dependency_is_reported():
    t = DepTracker(P)
    t.check(isa.config(0, P.rows, P.cols), 0)
    t.check(isa.Instr("VSQUASH", {"src": 0, "dst": 10, "count": 4, "param": 0}), 1)
    with pytest.raises(isa.IsaError, match="#2 STORE .* uses port VMEM.r and races with "
                                           "VECTOR instruction VSQUASH"):
        t.check(isa.Instr("STORE", {"addr": 100, "count": 2, "bank": 1}), 2)


def _ln_case(rng, rows, d, out16):
    x = rng.integers(-32768, 32768, (rows, d))
    x[0] = 77                                            # a zero-variance row
    gamma, beta, m, s = intops.quantize_layernorm(rng.normal(1, 0.2, d), rng.normal(0, 0.1, d),
                                                  0.02 if not out16 else 0.001)
    eps = intops.layernorm_eps_int(1e-5, 1.0, d)
    return x, gamma, beta, m, s, eps


@pytest.mark.parametrize("out16", [False, True])
def test_layernorm_program(out16):
    rng = np.random.default_rng(7)
    rows, d = 3, 3 * C
    x, gamma, beta, m, s, eps = _ln_case(rng, rows, d, out16)
    b = ProgramBuilder(P)
    b.load_vmem_lanes(0, intops.RSQRT_LUT.reshape(-1, C))
    b.emit(isa.Instr("VLUT", {"table": 1, "src": 0}))
    b.load_vmem_rows(100, x)
    b.load_pmem(0, formats.pack_param_word("VLN", C, eps=eps, m=m, s=s, out16=int(out16))[None])
    b.load_pmem(1, formats.pack_ln_features(gamma, beta, C))
    b.emit(isa.Instr("VLN", {"src": 100, "dst": 200, "rows": rows, "blocks": 1, "block": d,
                             "param": 0}))
    b.store(VMEM, 200, rows * d // C, "y")
    got = vmem_values(run(b)["y"], d, C)
    want = intops.layernorm_i16(x, gamma, beta, m, s, eps, 16 if out16 else 8)
    assert np.array_equal(got, want)


def test_layernorm_needs_the_rsqrt_table():
    b = ProgramBuilder(P)
    b.load_pmem(0, formats.pack_param_word("VLN", C, m=1, s=1)[None])
    b.emit(isa.Instr("VLN", {"src": 0, "dst": 0, "rows": 1, "blocks": 1, "block": C,
                             "param": 0}))
    prog = b.finish()
    with pytest.raises(IsaSimError, match="RLUT does not hold the rsqrt table"):
        simulate(prog.instrs, P, prog.din)


def test_softmax_program_with_mask():
    rng = np.random.default_rng(3)
    rows, ncols = 5, 9
    words = -(-ncols // C)
    scores = rng.integers(-128, 128, (rows, ncols))
    lut = intops.make_exp_lut(0.05)
    b = ProgramBuilder(P)
    b.load_vmem_lanes(0, lut.reshape(-1, C))
    b.emit(isa.Instr("VLUT", {"table": 0, "src": 0}))
    b.load_vmem_rows(100, scores)
    b.emit(isa.Instr("VSOFTMAX", {"src": 100, "dst": 150, "rows": rows, "words": words,
                                  "ncols": ncols, "mrow": 3, "mcols": 4}))
    b.store(VMEM, 150, rows * words, "p")
    got = vmem_values(run(b)["p"], words * C, C)
    allowed = np.ones((rows, ncols), bool)
    allowed[3:, :4] = False
    want = intops.u8_to_i8(intops.softmax_u8(scores, lut, allowed))
    assert np.array_equal(got[:, :ncols], want)
    assert np.all(got[:, ncols:] == -128)


def test_add_sum_squash_programs():
    rng = np.random.default_rng(5)
    a = rng.integers(-128, 128, (2, 2 * C))
    bb = rng.integers(-32768, 32768, (2, 2 * C))
    ma, mb, s = intops.quantize_add_multipliers(0.1, 0.01, 0.02)
    n = 4
    seg = rng.integers(-128, 128, (n, 2 * C))
    off, mp, sp, post = mean_pool_params(n)
    tanh = intops.make_tanh_lut(0.1, 1 / 127)
    b = ProgramBuilder(P)
    b.load_vmem_rows(0, a)
    b.load_vmem_rows(10, bb)
    b.load_vmem_rows(20, seg)
    b.load_vmem_lanes(40, tanh.reshape(-1, C))
    b.load_pmem(0, np.stack([
        formats.pack_param_word("VADD", C, m_a=ma, m_b=mb, s=s),
        formats.pack_param_word("VSUM", C, off=off, m=mp, s=sp, post=post),
        formats.pack_param_word("VSUM", C, m=256, s=1),
        formats.pack_param_word("VSQUASH", C, mode=0, m=20000, s=16, lo=-10, hi=10),
        formats.pack_param_word("VSQUASH", C, mode=1)]))
    b.emit(isa.Instr("VADD", {"a": 0, "b": 10, "dst": 30, "count": 4, "param": 0}))
    b.emit(isa.Instr("VSUM", {"src": 20, "stride": 2, "rows": n, "words": 2, "dst": 34,
                              "out": 0, "param": 1}))
    b.emit(isa.Instr("VSUM", {"src": 20, "stride": 2, "rows": n, "words": 2, "dst": 0,
                              "out": 2, "param": 2}))
    b.emit(isa.Instr("VSQUASH", {"src": 0, "dst": 36, "count": 2, "param": 3}))
    b.emit(isa.Instr("VLUT", {"table": 0, "src": 40}))
    b.emit(isa.Instr("VSQUASH", {"src": 0, "dst": 38, "count": 2, "param": 4}))
    for tag, addr, count in (("add", 30, 4), ("mean", 34, 2), ("clamp", 36, 2),
                             ("tanh", 38, 2)):
        b.store(VMEM, addr, count, tag)
    b.store(ACC, 0, 2, "zp")
    out = run(b)
    assert np.array_equal(vmem_values(out["add"], 2 * C, C),
                          intops.add_requant_i16(a, bb, ma, mb, s))
    assert np.array_equal(vmem_values(out["mean"], 2 * C, C)[0], intops.mean_pool_i8(seg))
    assert np.array_equal(out["zp"].view("<i4").reshape(-1), intops.zero_point_bias(seg))
    assert np.array_equal(vmem_values(out["clamp"], 2 * C, C)[0],
                          intops.clamp_i8(intops.requantize(a[0], 20000, 16), -10, 10))
    assert np.array_equal(vmem_values(out["tanh"], 2 * C, C)[0], intops.lut_i8(a[0], tanh))


def test_transpose_copy_and_requant_to_vmem():
    rng = np.random.default_rng(9)
    x = rng.integers(-128, 128, (3, 6))                  # 3 rows, 6 columns (2 words each)
    b = ProgramBuilder(P)
    b.load_vmem_rows(0, x)
    b.emit(isa.Instr("MTRANS", {"src": 0, "stride": 2, "rows": 3, "ncols": 6, "bank": 0,
                                "dst": 10, "boff": 1}))
    b.emit(isa.Instr("MCOPY", {"src": 0, "dst": 20, "count": 6, "bank": 1, "stride": 1}))
    b.emit(isa.Instr("MCOPY", {"src": 0, "dst": 50, "count": 6, "bank": 0, "stride": 1}))
    b.emit(isa.Instr("MCOPY", {"src": 1, "dst": 60, "count": 3, "bank": 0, "stride": 2}))
    acc = rng.integers(-(2**20), 2**20, (3, C))
    b.load_acc(0, acc)
    b.load_acc(8, np.array([[isa.pack_param(30000, 14)] * C], np.uint32).view(np.int32))
    b.emit(isa.Instr("REQUANT", {"src": 0, "dst": 70, "param": 8, "rows": 3, "out": 2,
                                 "dstride": 2}))
    b.store(VMEM, 50, 6, "copy")
    b.store(VMEM, 70, 5, "rq")
    b.store(VMEM, 60, 3, "strided")
    prog = b.finish()
    res = simulate(prog.instrs, P, prog.din)
    out = prog.unpack(res.dout)
    act = res.banks[ACT]
    assert np.array_equal(act[10:16, 1:4].view(np.int8).T, x)
    assert np.all(act[10:16, 0] == 0)
    wgt = res.banks[WGT][20:26].view(np.int8)
    assert np.array_equal(wgt.reshape(3, 2 * C)[:, :6], x)
    assert np.array_equal(vmem_values(out["copy"], 6, C), x)
    assert np.array_equal(vmem_values(out["strided"], C, C), formats.vmem_rows(x, C)[1::2])
    rq = vmem_values(out["rq"], C, C)
    assert np.array_equal(rq[::2], intops.requantize_i16(acc, 30000, 14))
