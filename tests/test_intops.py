"""Property tests of model/intops.py against exact rational or float references."""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from model import intops as io

I32 = st.integers(-(2**31), 2**31 - 1)
I8 = st.integers(-128, 127)
M = st.integers(0, 2**15 - 1)
S = st.integers(1, 47)


def ref_round(q: Fraction) -> int:
    """Round half up (towards +inf), exactly."""
    return math.floor(q + Fraction(1, 2))


def ref_sat(v: int) -> int:
    return max(-128, min(127, v))


def i8_arrays(shape):
    return st.lists(I8, min_size=int(np.prod(shape)), max_size=int(np.prod(shape))).map(
        lambda v: np.array(v, dtype=np.int8).reshape(shape))


# ----------------------------------------------------------------------------- multiplier


@given(st.floats(0, 16383.7, allow_nan=False))
def test_quantize_multiplier_most_precise(r):
    m, s = io.quantize_multiplier(r)
    assert 0 <= m <= 2**15 - 1 and 1 <= s <= 47
    assert m == ref_round(Fraction(r) * 2**s)
    # s is maximal: one more bit of shift would need a 16-bit multiplier.
    assert s == 47 or ref_round(Fraction(r) * 2 ** (s + 1)) > 2**15 - 1
    if s < 47:
        assert m >= 2**14
        assert abs(Fraction(m, 2**s) - Fraction(r)) <= Fraction(r) * Fraction(1, 2**15)


def test_quantize_multiplier_examples_and_errors():
    assert io.quantize_multiplier(1.0) == (2**14, 14)
    assert io.quantize_multiplier(0.5) == (2**14, 15)
    assert io.quantize_multiplier(0.0) == (0, 47)
    assert io.quantize_multiplier(2.0**-40) == (128, 47)
    m, s = io.quantize_multiplier(np.array([1.0, 0.5]))
    assert m.tolist() == [2**14, 2**14] and s.tolist() == [14, 15]
    for bad in (-1.0, float("nan"), float("inf"), 16384.0):
        with pytest.raises(io.IntOpsError, match="real_scale"):
            io.quantize_multiplier(bad)


# ----------------------------------------------------------------------------- requantize


@given(I32, M, S, st.booleans())
def test_requantize_matches_exact_rounding(x, m, s, relu):
    rounded = ref_round(Fraction(x * m, 2**s))
    assert int(io.mul_shift_round(x, m, s)) == rounded
    got = io.requantize(np.array([x], np.int32), m, s, relu=relu)
    assert got.dtype == np.int8 and int(got[0]) == ref_sat(max(rounded, 0) if relu else rounded)


def test_requantize_ties_round_up_for_both_signs():
    # x * m / 2**s = k + 1/2 exactly: always rounds towards +inf.
    x = np.array([1, 3, 5, -1, -3, -5, -255, 255], np.int32)
    got = io.requantize(x, 1, 1)  # x / 2
    assert got.tolist() == [1, 2, 3, 0, -1, -2, -127, 127]
    # 2.5 -> 3 and -2.5 -> -2 through a non-trivial multiplier: 5 * 3 / 6 is not a power of
    # two, so use m=5, s=2 on x=+-2: 10/4 = 2.5.
    assert io.requantize(np.array([2, -2], np.int32), 5, 2).tolist() == [3, -2]


def test_requantize_saturation_largest_shift_and_zero_multiplier():
    big = np.array([2**31 - 1, -(2**31)], np.int32)
    assert io.requantize(big, 1, 1).tolist() == [127, -128]
    assert io.requantize(big, 2**15 - 1, 47).tolist() == [0, 0]  # +-(2**46)/2**47 ~ +-0.25
    # Exact ties +-1/2 at a large shift: x*m = +-2**44 at s = 45 -> 1 and 0.
    assert io.requantize(np.array([2**30, -(2**30)], np.int32), 2**14, 45).tolist() == [1, 0]
    assert io.requantize(np.array([12345, -12345, 2**31 - 1], np.int32), 0, 5).tolist() == [0] * 3
    assert io.requantize(np.array([-1000], np.int32), 2**14, 14, relu=True).tolist() == [0]
    assert io.requantize(np.array([128, -129], np.int32), 2**14, 14).tolist() == [127, -128]


def test_requantize_per_column_broadcast():
    acc = np.array([[100, 100, 100], [-7, -7, -7]], np.int32)
    m = np.array([2**14, 2**14, 3 * 2**12])
    s = np.array([14, 15, 14])  # scales 1, 0.5, 0.75
    assert io.requantize(acc, m, s).tolist() == [[100, 50, 75], [-7, -3, -5]]


@pytest.mark.parametrize("kwargs, name", [
    (dict(acc=[2**31], m=1, s=1), "x"),
    (dict(acc=[1], m=2**15, s=1), "m"),
    (dict(acc=[1], m=-1, s=1), "m"),
    (dict(acc=[1], m=1, s=0), "s"),
    (dict(acc=[1], m=1, s=48), "s"),
    (dict(acc=np.array([1.5]), m=1, s=1), "x"),
])
def test_requantize_rejects_out_of_contract(kwargs, name):
    with pytest.raises(io.IntOpsError, match=rf"^{name} "):
        io.requantize(np.asarray(kwargs["acc"]), kwargs["m"], kwargs["s"])


def test_relu_and_clamp():
    x = np.array([-128, -1, 0, 1, 127], np.int8)
    assert io.relu(x).tolist() == [0, 0, 0, 1, 127]
    assert io.clamp_i8(x, -10, 10).tolist() == [-10, -1, 0, 1, 10]
    with pytest.raises(io.IntOpsError, match="clamp bounds"):
        io.clamp_i8(x, 5, -5)


# ----------------------------------------------------------------------------- GEMM


@settings(max_examples=50)
@given(st.integers(1, 6), st.integers(1, 40), st.integers(1, 6), st.data())
def test_gemm_exact(mm, k, n, data):
    a = data.draw(i8_arrays((mm, k)))
    b = data.draw(i8_arrays((k, n)))
    bias = np.array(data.draw(st.lists(st.integers(-(2**24), 2**24), min_size=n, max_size=n)),
                    np.int32)
    got = io.gemm_i32(a, b, bias)
    assert got.dtype == np.int32
    for i in range(mm):
        for j in range(n):
            want = sum(int(a[i, t]) * int(b[t, j]) for t in range(k)) + int(bias[j])
            assert int(got[i, j]) == want


def test_max_safe_k_bound_is_tight():
    k = io.max_safe_k()
    assert k == (2**31 - 1) // 2**14 == 131071
    a = np.full((1, k), -128, np.int8)
    assert int(io.gemm_i32(a, a.T.copy())[0, 0]) == k * 2**14
    a1 = np.full((1, k + 1), -128, np.int8)
    with pytest.raises(io.IntOpsError, match="overflows int32"):
        io.gemm_i32(a1, a1.T.copy())
    kb = io.max_safe_k(2**30)
    a = np.full((1, kb), -128, np.int8)
    assert int(io.gemm_i32(a, a.T.copy(), np.array([2**30], np.int32))[0, 0]) <= 2**31 - 1


def test_gemm_shape_errors():
    with pytest.raises(io.IntOpsError, match="shapes"):
        io.gemm_i32(np.zeros((2, 3), np.int8), np.zeros((4, 2), np.int8))
    with pytest.raises(io.IntOpsError, match="bias shape"):
        io.gemm_i32(np.zeros((2, 3), np.int8), np.zeros((3, 2), np.int8), np.zeros(3, np.int32))
    with pytest.raises(io.IntOpsError, match="^a "):
        io.gemm_i32(np.full((1, 1), 200), np.zeros((1, 1), np.int8))


# ----------------------------------------------------------------------------- residual add

SCALE = st.floats(1e-4, 1.0)


@given(SCALE, SCALE, SCALE, I8, I8)
def test_add_requant_within_bound(sa, sb, sy, a, b):
    assume(max(sa, sb) / sy <= 16000)
    ma, mb, s = io.quantize_add_multipliers(sa, sb, sy)
    assert 0 <= ma < 2**15 and 0 <= mb < 2**15 and 1 <= s <= 47
    got = int(io.add_requant(np.int8(a), np.int8(b), ma, mb, s))
    # Exact integer formula.
    assert got == ref_sat(ref_round(Fraction(a * ma + b * mb, 2**s)))
    # Against real arithmetic: rounding plus the multipliers' quantization error.
    real = a * sa / sy + b * sb / sy
    err = abs(a) * abs(ma / 2**s - sa / sy) + abs(b) * abs(mb / 2**s - sb / sy)
    assert abs(got - min(127.0, max(-128.0, real))) <= 0.5 + err + 1e-9
    assert err <= 128 * 2 * (max(sa, sb) / sy) * 2**-14


def test_add_requant_same_scales_is_rounded_sum():
    ma, mb, s = io.quantize_add_multipliers(0.1, 0.1, 0.2)  # y = (a + b) / 2
    a = np.array([1, -1, 3, 100, 127], np.int8)
    b = np.array([0, 0, 0, 100, 127], np.int8)
    assert io.add_requant(a, b, ma, mb, s).tolist() == [1, 0, 2, 100, 127]
    assert io.add_requant(a, -b, ma, mb, s, relu=True).tolist() == [1, 0, 2, 0, 0]


# ----------------------------------------------------------------------------- softmax


def ref_softmax_lsb(x: np.ndarray, scale: float, mask: np.ndarray) -> np.ndarray:
    z = np.where(mask, scale * x.astype(np.float64), -np.inf)
    z = z - z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return np.minimum(e / e.sum(axis=-1, keepdims=True) * 128, 127)


@settings(max_examples=200)
@given(st.integers(1, 64), st.floats(0.005, 2.0), st.data())
def test_softmax_close_to_float(n, scale, data):
    x = data.draw(i8_arrays((3, n)))
    mask = np.array(data.draw(st.lists(st.booleans(), min_size=3 * n, max_size=3 * n)),
                    bool).reshape(3, n)
    mask[:, data.draw(st.integers(0, n - 1))] = True
    p = io.softmax_i8(x, io.make_exp_lut(scale), mask)
    assert p.dtype == np.int8 and p.min() >= 0
    assert np.all(p[~mask] == 0)
    want = ref_softmax_lsb(x, scale, mask)
    assert np.max(np.abs(p - want)) <= 0.52 + n / 512


def test_softmax_single_key_shift_invariance_and_errors():
    lut = io.make_exp_lut(0.1)
    assert io.softmax_i8(np.array([[5, -3]], np.int8), lut, [[False, True]]).tolist() == [[0, 127]]
    x = np.array([[10, 0, -20, 7]], np.int8)
    assert np.array_equal(io.softmax_i8(x, lut), io.softmax_i8(x + 50, lut))
    # Two equal scores: 64 each.
    assert io.softmax_i8(np.array([[3, 3]], np.int8), lut).tolist() == [[64, 64]]
    with pytest.raises(io.IntOpsError, match="no allowed entry"):
        io.softmax_i8(x, lut, np.zeros((1, 4), bool))
    with pytest.raises(io.IntOpsError, match="exp_lut"):
        io.softmax_i8(x, lut[:100])


def test_exp_lut_formula():
    lut = io.make_exp_lut(math.log(2))  # exp(-d ln 2) = 2**-d
    assert lut.dtype == np.int32 and lut.shape == (256,)
    assert lut[:16].tolist() == [2 ** (15 - d) for d in range(16)]
    assert np.all(lut[17:] == 0)
    assert np.all(np.diff(io.make_exp_lut(0.013)) <= 0)


@given(st.integers(2**15, 2**31 - 1))
def test_softmax_reciprocal(total):
    m, s = io.softmax_reciprocal(total)
    assert 2**14 <= int(m) <= 2**15 - 1 and 1 <= int(s) <= 47
    # m / 2**s approximates 128 / total from below within 2**-14 relative.
    approx, exact = Fraction(int(m), 2 ** int(s)), Fraction(128, total)
    assert approx <= exact and exact - approx <= exact * Fraction(1, 2**14)


# ----------------------------------------------------------------------------- LayerNorm


@given(st.integers(1, 2**47 - 1))
def test_rsqrt_multiplier_within_0_4_percent(v):
    m, s = io.rsqrt_multiplier(v)
    assert 0 < int(m) < 2**15 and 1 <= int(s) <= 47
    assert abs(int(m) / 2 ** int(s) * math.sqrt(v) / 2**8 - 1) <= 0.004


def test_rsqrt_lut_values():
    lut = io.RSQRT_LUT
    assert lut.shape == (192,) and lut.max() < 2**15
    assert int(lut[0]) == round(2**17 / math.sqrt(64.5))
    assert int(lut[191]) == round(2**17 / math.sqrt(255.5))


@settings(max_examples=150)
@given(st.sampled_from([4, 16, 33, 64, 128, 512]), st.floats(0.002, 0.2), st.data())
def test_layernorm_close_to_float(d, out_scale, data):
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1)))
    spread = data.draw(st.sampled_from([1, 5, 40, 127]))
    x = np.clip(rng.integers(-spread, spread + 1, (3, d)) + rng.integers(-100, 100), -128,
                127).astype(np.int8)
    gamma = rng.uniform(-2.0, 2.0, d)
    beta = rng.uniform(-1.0, 1.0, d)
    in_scale, eps = 0.05, 1e-5
    gq, bq, m, s = io.quantize_layernorm(gamma, beta, out_scale)
    eps_int = io.layernorm_eps_int(eps, in_scale, d)
    y = io.layernorm_i8(x, gq, bq, m, s, eps_int)
    assert y.dtype == np.int8
    # Float LayerNorm of the real input with the quantized gamma/beta.
    s_g = np.max(np.abs(gamma)) / 127
    g_real, b_real = gq * s_g, bq * s_g / 256
    xr = x.astype(np.float64) * in_scale
    denom = np.sqrt(xr.var(-1, keepdims=True) + eps_int * in_scale**2 / d**2)
    centered = xr - xr.mean(-1, keepdims=True)
    norm = np.divide(centered, denom, out=np.zeros_like(xr), where=denom > 0)
    want = (norm * g_real + b_real) / out_scale
    # z error: 0.4 % rsqrt gain + 1/2 LSB of 2**-8; then the final rounding, the multiplier.
    tol = (np.abs(g_real) * (0.004 * np.abs(norm) + 2**-9)) / out_scale + 0.5 \
        + np.abs(want) * 2**-14 + 1e-6
    assert np.all(np.abs(y - np.clip(want, -128, 127)) <= tol)


@given(st.integers(1, 64), st.data())
def test_layernorm_exact_invariances(d, data):
    x = data.draw(i8_arrays((2, d))).astype(np.int64)
    x = np.clip(x, -60, 60)
    shift = data.draw(st.integers(-60, 60))
    z = io.layernorm_normalize(x)
    # Adding a constant changes neither the centered values nor the variance: exact.
    assert np.array_equal(io.layernorm_normalize(x + shift), z)
    # Doubling: the variance is 4x, the rsqrt LUT index unchanged, shift + 1: exact.
    assert np.array_equal(io.layernorm_normalize(2 * x), z)


def test_layernorm_constant_row_gives_beta():
    gq, bq, m, s = io.quantize_layernorm(np.ones(8), np.full(8, 0.5), 0.01)
    y = io.layernorm_i8(np.full((1, 8), 17, np.int8), gq, bq, m, s)
    assert y.tolist() == [[50] * 8]
    with pytest.raises(io.IntOpsError, match="gamma_q"):
        io.layernorm_i8(np.zeros((1, 8), np.int8), gq[:4], bq, m, s)


# ----------------------------------------------------------------------------- pooling, LUTs


@given(st.integers(1, 40), st.integers(1, 5), st.data())
def test_mean_pool_exact(rows, cols, data):
    x = data.draw(i8_arrays((rows, cols)))
    got = io.mean_pool_i8(x, axis=0)
    for j in range(cols):
        assert int(got[j]) == ref_round(Fraction(int(x[:, j].astype(np.int64).sum()), rows))


def test_mean_pool_ties():
    x = np.array([[1, -1, 3, -3], [0, 0, 0, 0]], np.int8)  # means .5, -.5, 1.5, -1.5
    assert io.mean_pool_i8(x).tolist() == [1, 0, 2, -1]


@given(st.floats(0.01, 0.5), st.floats(0.002, 0.2))
def test_tanh_lut_within_half_lsb(in_scale, out_scale):
    lut = io.make_tanh_lut(in_scale, out_scale)
    x = np.arange(-128, 128, dtype=np.int64)
    got = io.lut_i8(x.astype(np.int8), lut)
    want = np.clip(np.tanh(x * in_scale) / out_scale, -128, 127)
    assert np.max(np.abs(got - want)) <= 0.5 + 1e-9


def test_lut_indexing():
    lut = np.arange(-128, 128)[::-1].astype(np.int8)  # y = -1 - x
    assert io.lut_i8(np.array([-128, 0, 127], np.int8), lut).tolist() == [127, -1, -128]


# ----------------------------------------------------------------------------- rings


@given(st.integers(0, 5), st.lists(st.integers(0, 4), max_size=12))
def test_ring_matches_list_model(cap, pushes):
    buf = np.zeros((cap, 2), np.int8)
    head = count = 0
    history: list[list[int]] = []
    val = 0
    for n in pushes:
        rows = np.array([[val + i, -(val + i)] for i in range(n)], np.int8).reshape(n, 2)
        val += n
        history += rows.tolist()
        buf, head, count = io.ring_push(buf, head, count, rows)
        want = history[len(history) - min(cap, len(history)):] if cap else []
        assert io.ring_view(buf, head, count).tolist() == want


def test_ring_rejects_bad_rows():
    with pytest.raises(io.IntOpsError, match="ring rows"):
        io.ring_push(np.zeros((2, 3), np.int8), 0, 0, np.zeros((1, 4), np.int8))


# ----------------------------------------------------------------------------- exhaustive


def test_rsqrt_multiplier_exhaustive_small_v():
    v = np.arange(1, 2**20, dtype=np.int64)
    m, s = io.rsqrt_multiplier(v)
    rel = m / np.exp2(s) * np.sqrt(v.astype(np.float64)) / 2**8 - 1
    assert np.abs(rel).max() <= 0.004


def test_add_requant_exhaustive_int8_pairs():
    a, b = np.meshgrid(np.arange(-128, 128), np.arange(-128, 128))
    for scales in ((0.02, 0.05, 0.04), (0.3, 0.001, 0.01), (0.01, 0.01, 0.5)):
        ma, mb, s = io.quantize_add_multipliers(*scales)
        got = io.add_requant(a, b, ma, mb, s)
        t = a.astype(np.int64) * ma + b.astype(np.int64) * mb
        # Independent exact reference: round half up of t / 2**s via Python integers.
        want = np.array([ref_sat(ref_round(Fraction(int(v), 2**s))) for v in t.ravel()])
        assert np.array_equal(got.ravel(), want)


@pytest.mark.slow
def test_rsqrt_multiplier_every_bit_length_densely():
    for bits in range(20, io.RSQRT_V_BITS + 1):  # up to the int16 LayerNorm's V < 2**62
        v = (np.int64(1) << (bits - 1)) + np.arange(0, 2**20, dtype=np.int64) * max(
            1, 2 ** (bits - 1) // 2**20)
        m, s = io.rsqrt_multiplier(v)
        rel = m / np.exp2(s) * np.sqrt(v.astype(np.float64)) / 2**8 - 1
        assert np.abs(rel).max() <= 0.004, bits


# ----------------------------------------------------------------------------- int16 stream

I16 = st.integers(-(2**15), 2**15 - 1)


def ref_sat16(v: int) -> int:
    return max(-(2**15), min(2**15 - 1, v))


@given(I32, M, S, st.booleans())
def test_requantize_i16_matches_exact_rounding(x, m, s, relu):
    rounded = ref_round(Fraction(x * m, 2**s))
    got = io.requantize_i16(np.array([x], np.int32), m, s, relu=relu)
    assert got.dtype == np.int16
    assert int(got[0]) == ref_sat16(max(rounded, 0) if relu else rounded)


@given(SCALE, SCALE, SCALE, st.one_of(I8, I16), I16)
def test_add_requant_i16_within_bound(sa, sb, sy, a, b):
    assume(max(sa, sb) / sy <= 16000)
    ma, mb, s = io.quantize_add_multipliers(sa, sb, sy)
    got = io.add_requant_i16(np.array([a]), np.array([b]), ma, mb, s)
    assert got.dtype == np.int16
    # Exact integer formula (the products fit signed 32 bit).
    assert abs(a * ma + b * mb) <= 2**31 - 2**16
    assert int(got[0]) == ref_sat16(ref_round(Fraction(a * ma + b * mb, 2**s)))
    # Against real arithmetic: rounding plus the multipliers' quantization error.
    real = a * sa / sy + b * sb / sy
    err = abs(a) * abs(ma / 2**s - sa / sy) + abs(b) * abs(mb / 2**s - sb / sy)
    assert abs(int(got[0]) - min(32767.0, max(-32768.0, real))) <= 0.5 + err + 1e-6
    assert err <= (abs(a) + abs(b)) * 2.0 ** -(s + 1) + 1e-12


def test_add_requant_i16_ties_saturation_and_largest_values():
    # y = (a + b) / 2 exactly: ties round towards +inf for both signs.
    ma, mb, s = io.quantize_add_multipliers(0.1, 0.1, 0.2)
    a = np.array([1, -1, 3, -3, 127, -128])
    b = np.array([0, 0, 0, 0, 32767, -32768])
    assert io.add_requant_i16(a, b, ma, mb, s).tolist() == [1, 0, 2, -1, 16447, -16448]
    # Largest operands and multipliers: |t| <= 2**31 - 2**16, the result saturates at int16.
    big = np.array([32767, -32768])
    assert io.add_requant_i16(big, big, 2**15 - 1, 2**15 - 1, 1).tolist() == [32767, -32768]
    assert io.add_requant_i16(big, big, 2**15 - 1, 2**15 - 1, 47).tolist() == [0, 0]
    assert io.add_requant_i16(big, big, 0, 0, 5).tolist() == [0, 0]
    assert io.add_requant_i16(np.array([-5]), np.array([2]), 2**14, 2**14, 14,
                              relu=True).tolist() == [0]
    # An int8 branch plus an int16 stream (the model's residual add) equals add_requant on
    # int8 pairs except for the saturation bound.
    grid_a, grid_b = np.meshgrid(np.arange(-128, 128), np.arange(-128, 128))
    ma, mb, s = io.quantize_add_multipliers(0.02, 0.05, 0.001)
    wide = io.add_requant_i16(grid_a, grid_b, ma, mb, s).astype(np.int64)
    assert np.array_equal(io.add_requant(grid_a, grid_b, ma, mb, s), np.clip(wide, -128, 127))


@pytest.mark.parametrize("kwargs, name", [
    (dict(a=[2**15], b=[0]), "a"), (dict(a=[0], b=[-(2**15) - 1]), "b"),
    (dict(a=[0], b=[0], m_a=2**15), "m_a"), (dict(a=[0], b=[0], s=0), "s"),
])
def test_add_requant_i16_rejects_out_of_contract(kwargs, name):
    args = dict(m_a=1, m_b=1, s=1) | kwargs
    with pytest.raises(io.IntOpsError, match=rf"^{name} "):
        io.add_requant_i16(np.array(args["a"]), np.array(args["b"]), args["m_a"], args["m_b"],
                           args["s"])


@given(st.integers(1, 2**62 - 1))
def test_rsqrt_multiplier_wide_range_within_0_4_percent(v):
    m, s = io.rsqrt_multiplier(v)
    assert 0 < int(m) < 2**15 and 6 <= int(s) <= 36
    assert abs(int(m) / 2 ** int(s) * math.sqrt(v) / 2**8 - 1) <= 0.004


def test_bit_length_is_exact_beyond_float_precision():
    v = np.array([1, 2**53 - 1, 2**53, 2**53 + 1, 2**62 - 1, 2**31 - 1, 2**31, 0])
    assert io._bit_length(v).tolist() == [int(x).bit_length() for x in v.tolist()]
    with pytest.raises(io.IntOpsError, match="^v "):
        io.rsqrt_multiplier(2**62)


def _float_layernorm(x, gq, bq, gamma, eps_int, in_scale, d):
    s_g = np.max(np.abs(gamma)) / 127
    g_real, b_real = gq * s_g, bq * s_g / 256
    xr = x.astype(np.float64) * in_scale
    denom = np.sqrt(xr.var(-1, keepdims=True) + eps_int * in_scale**2 / d**2)
    centered = xr - xr.mean(-1, keepdims=True)
    norm = np.divide(centered, denom, out=np.zeros_like(xr), where=denom > 0)
    return norm, g_real, b_real


@settings(max_examples=150)
@given(st.sampled_from([4, 16, 33, 128, 512]), st.sampled_from([8, 16]), st.data())
def test_layernorm_i16_close_to_float(d, out_bits, data):
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1)))
    spread = data.draw(st.sampled_from([1, 7, 300, 20000, 32767]))
    offset = data.draw(st.integers(-30000, 30000))
    x = np.clip(rng.integers(-spread, spread + 1, (3, d)) + offset, -(2**15), 2**15 - 1)
    if data.draw(st.booleans()):  # a peaky row: one large value over a flat background
        x[0] = offset // 2
        x[0, rng.integers(d)] = 2**15 - 1
    gamma, beta = rng.uniform(-2.0, 2.0, d), rng.uniform(-1.0, 1.0, d)
    top = 127 if out_bits == 8 else 32767
    out_scale = data.draw(st.floats(0.002, 0.2)) * 127 / top
    in_scale, eps = 1e-4, 1e-5
    gq, bq, m, s = io.quantize_layernorm(gamma, beta, out_scale)
    eps_int = io.layernorm_eps_int(eps, in_scale, d)
    y = io.layernorm_i16(x, gq, bq, m, s, eps_int, out_bits=out_bits)
    assert y.dtype == (np.int8 if out_bits == 8 else np.int16)
    z = io.layernorm_normalize_i16(x, eps_int)
    assert np.abs(z).max() <= io.layernorm_z_max(d)
    norm, g_real, b_real = _float_layernorm(x, gq, bq, gamma, eps_int, in_scale, d)
    want = (norm * g_real + b_real) / out_scale
    tol = (np.abs(g_real) * (0.004 * np.abs(norm) + 2**-9)) / out_scale + 0.5 \
        + np.abs(want) * 2**-14 + 1e-6
    assert np.all(np.abs(y - np.clip(want, -top - 1, top)) <= tol)


@settings(max_examples=100)
@given(st.integers(1, 64), st.integers(0, 2**20), st.data())
def test_layernorm_i16_equals_i8_on_int8_rows(d, eps_int, data):
    x = data.draw(i8_arrays((3, d)))
    rng = np.random.default_rng(d)
    gq, bq = rng.integers(-127, 128, d), rng.integers(-5000, 5000, d)
    assert np.array_equal(io.layernorm_normalize_i16(x, eps_int),
                          io.layernorm_normalize(x, eps_int))
    assert np.array_equal(io.layernorm_i16(x, gq, bq, 20000, 22, eps_int),
                          io.layernorm_i8(x, gq, bq, 20000, 22, eps_int))


@given(st.integers(1, 64), st.data())
def test_layernorm_i16_exact_invariances(d, data):
    x = np.array(data.draw(st.lists(st.integers(-8000, 8000), min_size=2 * d,
                                    max_size=2 * d))).reshape(2, d)
    shift = data.draw(st.integers(-8000, 8000))
    z = io.layernorm_normalize_i16(x)
    assert np.array_equal(io.layernorm_normalize_i16(x + shift), z)
    assert np.array_equal(io.layernorm_normalize_i16(4 * x), z)  # V x16: u same, s + 2


def test_layernorm_i16_largest_values_do_not_overflow():
    # Widest variance at D = 512 (half the row at each end of int16): V = 2**30 * D**2 ~ 2**48.
    for d in (512, 2**15):
        x = np.where(np.arange(d) % 2 == 0, 2**15 - 1, -(2**15))[None, :]
        z = io.layernorm_normalize_i16(x, 2**60 - 1 if d == 2**15 else 0)
        assert np.all(np.abs(z) <= io.layernorm_z_max(d))
        if d == 512:
            assert np.all(np.abs(np.abs(z) - 256) <= 2)  # +-1 standard deviation
    # A one-hot row reaches the |z| bound up to the rsqrt gain error.
    d = 512
    x = np.full((1, d), -(2**15))
    x[0, 3] = 2**15 - 1
    z = io.layernorm_normalize_i16(x)
    assert 0.99 * 256 * math.sqrt(d - 1) <= z.max() <= io.layernorm_z_max(d)
    y = io.layernorm_i16(x, np.full(d, 127), np.zeros(d, np.int64), 2**15 - 1, 1, out_bits=16)
    assert y.max() == 2**15 - 1  # saturates, never wraps
    with pytest.raises(io.IntOpsError, match="layernorm width"):
        io.layernorm_normalize_i16(np.zeros((1, 2**15 + 1), np.int16))
    with pytest.raises(io.IntOpsError, match="eps_int"):
        io.layernorm_normalize_i16(np.zeros((1, 4), np.int16), 2**60)
    with pytest.raises(io.IntOpsError, match="^x "):
        io.layernorm_normalize_i16(np.array([[2**15]]))
    with pytest.raises(io.IntOpsError, match="out_bits"):
        io.layernorm_i16(np.zeros((1, 4), np.int16), np.ones(4, np.int8), np.zeros(4, np.int32),
                         1, 1, out_bits=4)


def test_sum_rows_i16_exact_and_limits():
    x = np.full((2**16 - 1, 2), -(2**15))
    x[:, 1] = 2**15 - 1
    got = io.sum_rows_i16(x)
    assert got.dtype == np.int32 and got.tolist() == [-(2**15) * (2**16 - 1),
                                                      (2**15 - 1) * (2**16 - 1)]
    with pytest.raises(io.IntOpsError, match="sum_rows_i16"):
        io.sum_rows_i16(np.zeros((2**16, 1), np.int16))


# ----------------------------------------------------------------------------- softmax u8


def ref_softmax_u8(x: np.ndarray, scale: float, mask: np.ndarray) -> np.ndarray:
    z = np.where(mask, scale * x.astype(np.float64), -np.inf)
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return np.minimum(e / e.sum(axis=-1, keepdims=True) * 256, 255)


@settings(max_examples=200)
@given(st.integers(1, 64), st.floats(0.005, 2.0), st.data())
def test_softmax_u8_close_to_float(n, scale, data):
    x = data.draw(i8_arrays((3, n)))
    mask = np.array(data.draw(st.lists(st.booleans(), min_size=3 * n, max_size=3 * n)),
                    bool).reshape(3, n)
    mask[:, data.draw(st.integers(0, n - 1))] = True
    p = io.softmax_u8(x, io.make_exp_lut(scale), mask)
    assert p.min() >= 0 and p.max() <= 255 and np.all(p[~mask] == 0)
    # Output rounding 0.5, reciprocal 256 * 2**-14, LUT rounding n/256.
    assert np.max(np.abs(p - ref_softmax_u8(x, scale, mask))) <= 0.53 + n / 256


def test_softmax_u8_examples():
    lut = io.make_exp_lut(0.1)
    assert io.softmax_u8(np.array([[5, -3]], np.int8), lut, [[False, True]]).tolist() == \
        [[0, 255]]  # 256 saturates
    assert io.softmax_u8(np.array([[3, 3]], np.int8), lut).tolist() == [[128, 128]]
    x = np.array([[10, 0, -20, 7]], np.int8)
    assert np.array_equal(io.softmax_u8(x, lut), io.softmax_u8(x + 50, lut))
    # One more bit than softmax_i8: within one step of twice its output.
    assert np.max(np.abs(io.softmax_u8(x, lut) - 2 * io.softmax_i8(x, lut).astype(int))) <= 1
    with pytest.raises(io.IntOpsError, match="no allowed entry"):
        io.softmax_u8(x, lut, np.zeros((1, 4), bool))


@given(st.integers(2**15, 2**31 - 1))
def test_softmax_reciprocal_u8(total):
    m, s = io.softmax_reciprocal(total, io.PROB_U8_BITS)
    approx, exact = Fraction(int(m), 2 ** int(s)), Fraction(256, total)
    assert approx <= exact and exact - approx <= exact * Fraction(1, 2**14)
    assert io.softmax_reciprocal(total)[1] == s + 1  # prob_bits=7 (default): one more shift


@settings(max_examples=50)
@given(st.integers(1, 6), st.integers(1, 70), st.integers(1, 5), st.data())
def test_zero_point_gemm_is_exact(rows, k, n, data):
    p = np.array(data.draw(st.lists(st.integers(0, 255), min_size=rows * k,
                                    max_size=rows * k))).reshape(rows, k)
    v = data.draw(i8_arrays((k, n)))
    got = io.gemm_i32(io.u8_to_i8(p), v, io.zero_point_bias(v))
    assert np.array_equal(got, p @ v.astype(np.int64))


def test_zero_point_helpers_reject_out_of_contract():
    assert io.u8_to_i8(np.array([0, 128, 255])).tolist() == [-128, 0, 127]
    with pytest.raises(io.IntOpsError, match="^p "):
        io.u8_to_i8(np.array([256]))
    with pytest.raises(io.IntOpsError, match="zero_point_bias"):
        io.zero_point_bias(np.zeros(3, np.int8))
    # Largest magnitudes: K = 65535 rows of -128 -> bias -2**30 * 65535 / 2**16 ~ -2**30.
    v = np.full((2**16 - 1, 1), -128, np.int8)
    assert int(io.zero_point_bias(v)[0]) == -128 * 128 * (2**16 - 1)
