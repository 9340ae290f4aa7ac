"""Integer operations of the accelerator: the one implementation every executor calls.

The integer golden model, the ISA simulator and the fake-quant path all call these functions;
the RTL implements the same formulas (``docs/NUMERICS.md`` states each one exactly). numpy
only, no torch. Every function checks the ranges of its integer inputs and raises
:class:`IntOpsError` naming the argument when a contract is broken, so an overflow can never
pass silently.

Widths (the hardware contract):

* operands int8 ``[-128, 127]``; accumulators int32;
* requantization multiplier ``m`` unsigned 15-bit ``[0, 2**15 - 1]``, shift ``s`` in
  ``[1, 47]``; ``x * m + 2**(s-1)`` fits a signed 48-bit intermediate for int32 ``x``;
  ``>>`` is an arithmetic shift (floor division by ``2**s``);
* the residual stream (model input frames, residual sums, layer outputs, hence every
  LayerNorm input) is int16 ``[-32768, 32767]``: :func:`add_requant_i16` adds an int8 branch
  output to it and :func:`layernorm_i16` normalizes it to int8 (GEMM inputs) or int16 (the
  layer output); its exact sums need ``2*log2(D) + 31`` bits (49 for ``D = 512``);
* softmax probabilities are unsigned 8-bit (:func:`softmax_u8`), fed to the int8 array as
  ``p - 128`` with the exact correction :func:`zero_point_bias` as the GEMM bias.
"""

from __future__ import annotations

import math
from fractions import Fraction
from typing import Any

import numpy as np

I8_MIN, I8_MAX = -128, 127
I16_MIN, I16_MAX = -(2**15), 2**15 - 1
I32_MIN, I32_MAX = -(2**31), 2**31 - 1
M_BITS = 15
M_MAX = 2**M_BITS - 1
S_MIN, S_MAX = 1, 47

#: softmax_i8: probabilities are int8 in [0, 127] with the fixed scale 2**-PROB_BITS.
PROB_BITS = 7
#: softmax_u8: probabilities are unsigned 8-bit [0, 255] with the fixed scale 2**-PROB_U8_BITS,
#: stored as the int8 GEMM operand ``p - PROB_ZERO_POINT`` (see :func:`zero_point_bias`).
PROB_U8_BITS = 8
PROB_ZERO_POINT = 128
#: The exp LUT holds ``round(2**EXP_BITS * exp(-scale * d))``; entry 0 is 2**EXP_BITS.
EXP_BITS = 15
EXP_LUT_SIZE = 256
#: Longest softmax row: the int32 row sum of at most this many 2**15 entries cannot overflow.
MAX_SOFTMAX_LEN = 2**16 - 1
#: LayerNorm: normalized values are int32 with LN_FRAC_BITS fractional bits.
LN_FRAC_BITS = 8
#: rsqrt LUT: entry i = round(2**RSQRT_BITS / sqrt(i + 64.5)), i in [0, 192).
RSQRT_BITS = 17
RSQRT_LUT_BASE = 64
RSQRT_LUT_SIZE = 192
#: rsqrt_multiplier accepts 1 <= v < 2**RSQRT_V_BITS (int16 LayerNorm variances up to D = 2**15).
RSQRT_V_BITS = 62
#: Widest row of the int8 / int16 LayerNorms.
LN_MAX_D_I8 = 2**16 - 1
LN_MAX_D_I16 = 2**15
#: Most rows :func:`sum_rows_i16` adds (the int32 column sum cannot overflow).
MAX_SUM_ROWS_I16 = 2**16 - 1


class IntOpsError(ValueError):
    """An integer op received an out-of-contract argument; the message names it."""


# ----------------------------------------------------------------------------- helpers


def _ints(x: Any, name: str, lo: int, hi: int) -> np.ndarray:
    """``x`` as an int64 array, checked to be integer-valued and within ``[lo, hi]``."""
    a = np.asarray(x)
    if a.dtype == bool or not np.issubdtype(a.dtype, np.integer):
        raise IntOpsError(f"{name} must be an integer array, got dtype {a.dtype}")
    a = a.astype(np.int64, copy=False)
    if a.size:
        amin, amax = int(a.min()), int(a.max())
        if amin < lo or amax > hi:
            bad = amin if amin < lo else amax
            raise IntOpsError(f"{name} holds {bad}, outside its range [{lo}, {hi}]")
    return a


def _round_half_up(q: Fraction) -> int:
    """floor(q + 1/2), exactly."""
    return math.floor(q + Fraction(1, 2))


def _bit_length(a: np.ndarray) -> np.ndarray:
    """Bit length of non-negative int64 values below 2**62, exact: each 31-bit half is
    exactly representable in float64, where ``frexp`` gives its bit length."""
    a = np.asarray(a, dtype=np.int64)
    hi = a >> 31
    lo = a & (2**31 - 1)
    bl = lambda v: np.frexp(v.astype(np.float64))[1].astype(np.int64)  # noqa: E731
    return np.where(hi > 0, 31 + bl(hi), bl(lo))


def saturate_i8(x: Any) -> np.ndarray:
    """Clip integers to int8 ``[-128, 127]``."""
    return np.clip(np.asarray(x, dtype=np.int64), I8_MIN, I8_MAX).astype(np.int8)


def saturate_i16(x: Any) -> np.ndarray:
    """Clip integers to int16 ``[-32768, 32767]``."""
    return np.clip(np.asarray(x, dtype=np.int64), I16_MIN, I16_MAX).astype(np.int16)


def relu(x: Any) -> np.ndarray:
    """``max(x, 0)`` on int8 values."""
    return np.maximum(_ints(x, "x", I8_MIN, I8_MAX), 0).astype(np.int8)


def clamp_i8(x: Any, lo: int, hi: int) -> np.ndarray:
    """``min(max(x, lo), hi)`` on int8 values, ``-128 <= lo <= hi <= 127``."""
    if not I8_MIN <= lo <= hi <= I8_MAX:
        raise IntOpsError(f"clamp bounds lo={lo}, hi={hi} must satisfy -128 <= lo <= hi <= 127")
    return np.clip(_ints(x, "x", I8_MIN, I8_MAX), lo, hi).astype(np.int8)


# ----------------------------------------------------------------------------- requantization


def quantize_multiplier(real_scale: Any) -> tuple[Any, Any]:
    """The most precise ``(m, s)`` with ``m / 2**s ~= real_scale``.

    ``s`` is the largest shift in ``[1, 47]`` with ``m = round_half_up(real_scale * 2**s) <=
    2**15 - 1``. Then ``m >= 2**14`` unless ``s == 47``, so the relative error is at most
    ``2**-15``. Accepts a scalar (returns two ints) or an array (returns two int64 arrays, one
    pair per element: per-output-channel parameters).
    """
    arr = np.asarray(real_scale, dtype=np.float64)
    flat = arr.reshape(-1)
    ms = np.empty(flat.shape, np.int64)
    ss = np.empty(flat.shape, np.int64)
    for i, r in enumerate(flat.tolist()):
        if not math.isfinite(r) or r < 0:
            raise IntOpsError(f"real_scale must be finite and >= 0, got {r}")
        if _round_half_up(Fraction(r) * 2**S_MIN) > M_MAX:
            raise IntOpsError(
                f"real_scale {r} is too large: m/2**s can express at most "
                f"{(M_MAX + 0.5) / 2**S_MIN} (check the scales that produced it)")
        fr = Fraction(r)
        # Largest s with round(r*2**s) <= M_MAX: start from the exponent estimate, then adjust.
        s = S_MAX if r == 0 else min(S_MAX, max(S_MIN, M_BITS - 1 - math.frexp(r)[1]))
        while s < S_MAX and _round_half_up(fr * 2 ** (s + 1)) <= M_MAX:
            s += 1
        while _round_half_up(fr * 2**s) > M_MAX:
            s -= 1
        ms[i], ss[i] = _round_half_up(fr * 2**s), s
    if arr.ndim == 0:
        return int(ms[0]), int(ss[0])
    return ms.reshape(arr.shape), ss.reshape(arr.shape)


def _shift_params(m: Any, s: Any) -> tuple[np.ndarray, np.ndarray]:
    return _ints(m, "m", 0, M_MAX), _ints(s, "s", S_MIN, S_MAX)


def mul_shift_round(x: Any, m: Any, s: Any) -> np.ndarray:
    """``(x * m + 2**(s-1)) >> s`` for int32 ``x``, without saturation (int64 result).

    ``m`` and ``s`` broadcast against ``x`` (per-column parameters along the last axis).
    This is the single rounding rule of the whole design: round half up (towards +inf).
    """
    xa = _ints(x, "x", I32_MIN, I32_MAX)
    ma, sa = _shift_params(m, s)
    return (xa * ma + (np.int64(1) << (sa - 1))) >> sa


def requantize(acc: Any, m: Any, s: Any, relu: bool = False) -> np.ndarray:
    """int32 accumulator -> int8: ``sat8((acc * m + 2**(s-1)) >> s)``, optionally ReLU first.

    ``m``/``s`` are scalars or per-column arrays broadcast along the last axis of ``acc``.
    """
    y = mul_shift_round(acc, m, s)
    if relu:
        y = np.maximum(y, 0)
    return saturate_i8(y)


def requantize_i16(acc: Any, m: Any, s: Any, relu: bool = False) -> np.ndarray:
    """int32 accumulator -> int16: ``sat16((acc * m + 2**(s-1)) >> s)`` (:func:`requantize`
    with a 16-bit saturation; the same 48-bit datapath)."""
    y = mul_shift_round(acc, m, s)
    if relu:
        y = np.maximum(y, 0)
    return saturate_i16(y)


# ----------------------------------------------------------------------------- GEMM


def max_safe_k(bias_abs_max: int = 0) -> int:
    """Largest K for which any int8 GEMM of depth K plus a bias ``|b| <= bias_abs_max`` fits
    int32: ``K * 128 * 128 + bias_abs_max <= 2**31 - 1`` (131071 without a bias)."""
    if not 0 <= bias_abs_max <= I32_MAX:
        raise IntOpsError(f"bias_abs_max={bias_abs_max} must be in [0, 2**31 - 1]")
    return (I32_MAX - bias_abs_max) // (128 * 128)


def gemm_i32(a: Any, b: Any, bias: Any = None) -> np.ndarray:
    """``a @ b + bias`` for int8 ``a`` (M, K), int8 ``b`` (K, N), int32 ``bias`` (N,) -> int32.

    The sum is computed exactly; a result outside int32 raises :class:`IntOpsError` (it cannot
    happen when ``K <= max_safe_k(max|bias|)``). Because the exact result fits int32, a
    wrapping 32-bit hardware accumulator yields it in any summation order.
    """
    aa = _ints(a, "a", I8_MIN, I8_MAX)
    ba = _ints(b, "b", I8_MIN, I8_MAX)
    if aa.ndim != 2 or ba.ndim != 2 or aa.shape[1] != ba.shape[0]:
        raise IntOpsError(f"gemm shapes a{aa.shape} @ b{ba.shape} do not match (need (M,K)@(K,N))")
    # float64 matmul is exact here: every partial sum stays below 2**53 for K < 2**39.
    acc = (aa.astype(np.float64) @ ba.astype(np.float64)).astype(np.int64)
    if bias is not None:
        bb = _ints(bias, "bias", I32_MIN, I32_MAX)
        if bb.shape != (ba.shape[1],):
            raise IntOpsError(f"bias shape {bb.shape} does not match N={ba.shape[1]}")
        acc = acc + bb
    if acc.size and (acc.min() < I32_MIN or acc.max() > I32_MAX):
        raise IntOpsError(
            f"gemm result overflows int32 (K={aa.shape[1]}, max_safe_k={max_safe_k()}); "
            "reduce K or the bias magnitude")
    return acc.astype(np.int32)


# ----------------------------------------------------------------------------- residual add


def quantize_add_multipliers(scale_a: float, scale_b: float, scale_out: float
                             ) -> tuple[int, int, int]:
    """``(m_a, m_b, s)`` with a shared shift: ``m_x / 2**s ~= scale_x / scale_out``.

    ``s`` is the shift :func:`quantize_multiplier` picks for the larger ratio, so the larger
    ratio keeps 15 significant bits; the other is rounded half up at the same shift.
    """
    if not scale_out > 0:
        raise IntOpsError(f"scale_out must be > 0, got {scale_out}")
    ra, rb = scale_a / scale_out, scale_b / scale_out
    _, s = quantize_multiplier(max(ra, rb))
    ma = quantize_multiplier(ra)[0] if ra >= rb else _round_half_up(Fraction(ra) * 2**s)
    mb = quantize_multiplier(rb)[0] if rb > ra else _round_half_up(Fraction(rb) * 2**s)
    return int(ma), int(mb), int(s)


def _add_shift(a: Any, b: Any, m_a: Any, m_b: Any, s: Any, lo: int, hi: int,
               relu: bool) -> np.ndarray:
    """``(a*m_a + b*m_b + 2**(s-1)) >> s`` (optionally ReLU) for operands in ``[lo, hi]``,
    before saturation: the shared core of the residual adds."""
    aa = _ints(a, "a", lo, hi)
    ba = _ints(b, "b", lo, hi)
    ma = _ints(m_a, "m_a", 0, M_MAX)
    mb = _ints(m_b, "m_b", 0, M_MAX)
    sa = _ints(s, "s", S_MIN, S_MAX)
    y = (aa * ma + ba * mb + (np.int64(1) << (sa - 1))) >> sa
    return np.maximum(y, 0) if relu else y


def add_requant(a: Any, b: Any, m_a: int, m_b: int, s: int, relu: bool = False) -> np.ndarray:
    """Residual add of int8 ``a`` (scale s_a) and ``b`` (scale s_b) into int8 (scale s_y):
    ``sat8((a*m_a + b*m_b + 2**(s-1)) >> s)``; ``|a*m_a + b*m_b| < 2**23``."""
    return saturate_i8(_add_shift(a, b, m_a, m_b, s, I8_MIN, I8_MAX, relu))


def add_requant_i16(a: Any, b: Any, m_a: int, m_b: int, s: int, relu: bool = False
                    ) -> np.ndarray:
    """Residual add into the int16 residual stream: int16 ``a`` (scale s_a; an int8 branch
    output is an int16 value) and int16 ``b`` (scale s_b) -> int16 (scale s_y):
    ``sat16((a*m_a + b*m_b + 2**(s-1)) >> s)``. ``|a*m_a + b*m_b| <= 2**31 - 2**16`` (signed
    32-bit); with the rounding constant the intermediate is the 48-bit requantization datapath.
    Parameters from :func:`quantize_add_multipliers` (one shared shift)."""
    return saturate_i16(_add_shift(a, b, m_a, m_b, s, I16_MIN, I16_MAX, relu))


# ----------------------------------------------------------------------------- softmax


def make_exp_lut(score_scale: float) -> np.ndarray:
    """``LUT[d] = floor(2**15 * exp(-score_scale * d) + 1/2)`` for ``d = 0..255`` (int32).

    ``d`` is an int8 score's distance below its row maximum; ``score_scale`` is the real value
    of one score LSB. Entries lie in ``[0, 2**15]`` (16-bit unsigned in hardware).
    """
    if not (math.isfinite(score_scale) and score_scale > 0):
        raise IntOpsError(f"score_scale must be finite and > 0, got {score_scale}")
    return np.array([math.floor(2**EXP_BITS * math.exp(-score_scale * d) + 0.5)
                     for d in range(EXP_LUT_SIZE)], dtype=np.int32)


def softmax_reciprocal(row_sum: Any, prob_bits: int = PROB_BITS
                       ) -> tuple[np.ndarray, np.ndarray]:
    """Per-row normalizer ``(m, s)`` with ``m / 2**s ~= 2**prob_bits / row_sum``.

    With ``L = bit_length(row_sum)``: ``m = floor((2**(L+14) - 1) / row_sum)`` (one integer
    division, quotient in ``[2**14, 2**15 - 1]``) and ``s = L + 14 - prob_bits`` (``L + 7``
    for :func:`softmax_i8`, ``L + 6`` for :func:`softmax_u8`). Needs ``row_sum >= 2**15``
    (the row maximum alone contributes ``2**15``).
    """
    total = _ints(row_sum, "row_sum", 2**EXP_BITS, I32_MAX)
    if prob_bits not in (PROB_BITS, PROB_U8_BITS):
        raise IntOpsError(f"prob_bits={prob_bits} must be {PROB_BITS} or {PROB_U8_BITS}")
    bitlen = _bit_length(total)
    m = ((np.int64(1) << (bitlen + 14)) - 1) // total
    return m, bitlen + 14 - prob_bits


def _softmax_e(scores: Any, exp_lut: Any, mask: Any) -> tuple[np.ndarray, np.ndarray]:
    """Checked exp-table values ``e`` (0 where masked) of a softmax, and the int32 row sums."""
    x = _ints(scores, "scores", I8_MIN, I8_MAX)
    lut = _ints(exp_lut, "exp_lut", 0, 2**EXP_BITS)
    if lut.shape != (EXP_LUT_SIZE,) or lut[0] != 2**EXP_BITS:
        raise IntOpsError(f"exp_lut must have {EXP_LUT_SIZE} entries with exp_lut[0] = "
                          f"{2**EXP_BITS} (build it with make_exp_lut)")
    if x.ndim == 0 or x.shape[-1] > MAX_SOFTMAX_LEN:
        raise IntOpsError(f"scores need a last axis of length 1..{MAX_SOFTMAX_LEN}, "
                          f"got shape {x.shape}")
    allowed = np.ones(x.shape, bool) if mask is None else np.broadcast_to(
        np.asarray(mask, dtype=bool), x.shape)
    if not np.all(allowed.any(axis=-1)):
        raise IntOpsError("softmax row with no allowed entry (mask is all False for a row)")
    row_max = np.where(allowed, x, I8_MIN).max(axis=-1, keepdims=True)
    e = np.where(allowed, lut[np.where(allowed, row_max - x, 0)], 0)
    return e, e.sum(axis=-1, keepdims=True)


def softmax_i8(scores: Any, exp_lut: Any, mask: Any = None) -> np.ndarray:
    """Softmax over the last axis of int8 ``scores`` -> int8 probabilities in [0, 127], scale
    ``2**-7``.

    Per row over allowed entries (``mask`` True, broadcast to ``scores``; default all):
    ``M = max x``; ``e_j = exp_lut[M - x_j]``; ``S = sum e_j`` (int32);
    ``(m, s) = softmax_reciprocal(S)``; ``p_j = sat8((e_j*m + 2**(s-1)) >> s)``.
    Disallowed entries get 0. Every row needs at least one allowed entry.
    """
    e, total = _softmax_e(scores, exp_lut, mask)
    m, s = softmax_reciprocal(total)
    return saturate_i8(mul_shift_round(e, m, s))


def softmax_u8(scores: Any, exp_lut: Any, mask: Any = None) -> np.ndarray:
    """:func:`softmax_i8` with one more bit: unsigned 8-bit probabilities ``p`` in [0, 255],
    scale ``2**-8`` (returned as int16 values): ``(m, s) = softmax_reciprocal(S, 8)``,
    ``p_j = min(255, (e_j*m + 2**(s-1)) >> s)``; disallowed entries get 0.

    The int8 x int8 array consumes ``p - 128`` (:func:`u8_to_i8`) and adds
    :func:`zero_point_bias` of the other operand, which restores ``sum_j p_j v_j`` exactly.
    """
    e, total = _softmax_e(scores, exp_lut, mask)
    m, s = softmax_reciprocal(total, PROB_U8_BITS)
    return np.minimum(mul_shift_round(e, m, s), 2 * PROB_ZERO_POINT - 1).astype(np.int16)


def u8_to_i8(p: Any) -> np.ndarray:
    """Unsigned 8-bit values ``[0, 255]`` -> the int8 operand ``p - 128`` (zero point 128)."""
    return (_ints(p, "p", 0, 2 * PROB_ZERO_POINT - 1) - PROB_ZERO_POINT).astype(np.int8)


def zero_point_bias(b: Any) -> np.ndarray:
    """int32 GEMM bias ``128 * sum_k b[k, j]`` of an int8 ``b`` (K, N), ``K <= 2**16 - 1``:
    ``gemm_i32(u8_to_i8(p), b, zero_point_bias(b)) == p @ b`` exactly."""
    ba = _ints(b, "b", I8_MIN, I8_MAX)
    if ba.ndim != 2 or not 1 <= ba.shape[0] <= MAX_SOFTMAX_LEN:
        raise IntOpsError(f"zero_point_bias needs b of shape (K, N), 1 <= K <= "
                          f"{MAX_SOFTMAX_LEN}; got {ba.shape}")
    return (PROB_ZERO_POINT * ba.sum(axis=0)).astype(np.int32)


# ----------------------------------------------------------------------------- LayerNorm


def make_rsqrt_lut() -> np.ndarray:
    """``LUT[i] = floor(2**17 / sqrt(i + 64.5) + 1/2)`` for ``i = 0..191`` (int32, 15-bit)."""
    return np.array([_round_half_up(Fraction(2**RSQRT_BITS / math.sqrt(i + RSQRT_LUT_BASE + 0.5)))
                     for i in range(RSQRT_LUT_SIZE)], dtype=np.int32)


RSQRT_LUT = make_rsqrt_lut()
RSQRT_LUT.flags.writeable = False


def rsqrt_multiplier(v: Any) -> tuple[np.ndarray, np.ndarray]:
    """``(m, s)`` with ``m / 2**s ~= 2**LN_FRAC_BITS / sqrt(v)`` for integers ``1 <= v < 2**62``.

    ``L = bit_length(v)``, ``k = floor((L - 7) / 2)``; ``u = v >> 2k`` (``v << -2k`` when
    ``k < 0``) lies in ``[64, 255]``; ``m = RSQRT_LUT[u - 64]``, ``s = 17 + k - 8``
    (``s`` in ``[6, 36]``; ``[6, 29]`` for ``v < 2**47``). Relative error below 0.4 %.
    """
    va = _ints(v, "v", 1, 2**RSQRT_V_BITS - 1)
    bitlen = _bit_length(va)
    k = (bitlen - 7) // 2
    u = np.where(k >= 0, va >> np.maximum(2 * k, 0), va << np.maximum(-2 * k, 0))
    return RSQRT_LUT[u - RSQRT_LUT_BASE].astype(np.int64), RSQRT_BITS + k - LN_FRAC_BITS


def layernorm_eps_int(eps: float, in_scale: float, d: int) -> int:
    """LayerNorm epsilon in the integer variance units of :func:`layernorm_normalize`:
    ``round_half_up(d**2 * eps / in_scale**2)``."""
    if not (eps >= 0 and in_scale > 0 and d >= 1):
        raise IntOpsError(f"need eps >= 0, in_scale > 0, d >= 1 (got {eps}, {in_scale}, {d})")
    return _round_half_up(Fraction(d * d) * Fraction(eps) / Fraction(in_scale) ** 2)


def _layernorm_z(xa: np.ndarray, eps_int: int) -> np.ndarray:
    """The shared normalization core (``xa`` already range-checked int64)."""
    d = xa.shape[-1]
    s1 = xa.sum(axis=-1, keepdims=True)
    c = d * xa - s1
    v = d * (xa * xa).sum(axis=-1, keepdims=True) - s1 * s1 + eps_int
    safe = np.maximum(v, 1)
    m, s = rsqrt_multiplier(safe)
    z = mul_shift_round(c, m, s)
    return np.where(v > 0, z, 0).astype(np.int32)


def layernorm_normalize(x: Any, eps_int: int = 0) -> np.ndarray:
    """int8 rows (last axis, width D) -> ``z ~= 2**8 * (x - mean) / sqrt(var + eps)`` (int32).

    ``S = sum x``; ``c_i = D*x_i - S``; ``V = D*sum x_i**2 - S**2 + eps_int`` (``= D**2 *
    (var + eps)``, at most ``2**14*D**2 + eps_int``); ``(m, s) = rsqrt_multiplier(V)``;
    ``z_i = (c_i*m + 2**(s-1)) >> s``; rows with ``V = 0`` give ``z = 0``.
    """
    xa = _ints(x, "x", I8_MIN, I8_MAX)
    d = xa.shape[-1]
    if not 1 <= d <= LN_MAX_D_I8:
        raise IntOpsError(f"layernorm width {d} must be in [1, {LN_MAX_D_I8}]")
    if not 0 <= eps_int < 2**46:
        raise IntOpsError(f"eps_int={eps_int} must be in [0, 2**46)")
    return _layernorm_z(xa, eps_int)


def layernorm_normalize_i16(x: Any, eps_int: int = 0) -> np.ndarray:
    """:func:`layernorm_normalize` of int16 rows (width ``1 <= D <= 2**15``), same formula.

    Widths: ``|S| <= 2**15 D``; ``V = sum_{i<j} (x_i - x_j)**2 < 2**30 D**2`` (``2**48`` for
    ``D = 512``), so ``D*sum x**2`` and ``S**2`` need ``2*log2(D) + 31`` bits unsigned;
    ``|c_i| <= 65535 (D - 1) < 2**31``; ``eps_int < 2**60`` keeps ``V < 2**62``. On int8
    rows the result equals :func:`layernorm_normalize` bit for bit.
    """
    xa = _ints(x, "x", I16_MIN, I16_MAX)
    d = xa.shape[-1]
    if not 1 <= d <= LN_MAX_D_I16:
        raise IntOpsError(f"layernorm width {d} must be in [1, {LN_MAX_D_I16}]")
    if not 0 <= eps_int < 2**60:
        raise IntOpsError(f"eps_int={eps_int} must be in [0, 2**60)")
    return _layernorm_z(xa, eps_int)


def quantize_layernorm(gamma: Any, beta: Any, out_scale: float
                       ) -> tuple[np.ndarray, np.ndarray, int, int]:
    """Integer affine parameters of LayerNorm for output scale ``out_scale``.

    ``gamma_q = round(gamma / s_g)`` int8 with ``s_g = max|gamma| / 127``;
    ``beta_q = round(beta / (s_g * 2**-8))`` int32; ``(m, s) = quantize_multiplier(s_g *
    2**-8 / out_scale)``. Returns ``(gamma_q, beta_q, m, s)``.
    """
    g = np.asarray(gamma, dtype=np.float64)
    b = np.asarray(beta, dtype=np.float64)
    if g.shape != b.shape or g.ndim != 1:
        raise IntOpsError(f"gamma {g.shape} and beta {b.shape} must be equal 1-D shapes")
    gmax = float(np.max(np.abs(g))) if g.size else 0.0
    s_g = (gmax if gmax > 0 else 1.0) / I8_MAX
    gq = np.floor(g / s_g + 0.5).astype(np.int64)
    acc_scale = s_g * 2.0**-LN_FRAC_BITS
    bq = np.floor(b / acc_scale + 0.5)
    if np.any(np.abs(bq) > 2**30):
        raise IntOpsError("LayerNorm beta is too large relative to gamma for an int32 bias "
                          "(|beta/gamma_max| * 2**8 * 127 must stay below 2**30)")
    m, s = quantize_multiplier(acc_scale / out_scale)
    return gq.astype(np.int8), bq.astype(np.int32), m, s


def layernorm_z_max(d: int) -> int:
    """Bound on ``|z|`` of :func:`layernorm_normalize` / :func:`layernorm_normalize_i16` for
    rows of width ``d``: ``|x_i - mean| <= sqrt((d-1) var)`` and the rsqrt gain error is below
    0.4 %, so ``|z| <= floor(256 * sqrt(d - 1) * 1.004 + 1)`` (a one-hot row comes close)."""
    if d < 1:
        raise IntOpsError(f"layernorm width {d} must be >= 1")
    return math.floor(2**LN_FRAC_BITS * math.sqrt(d - 1) * 1.004 + 1)


def _layernorm_affine(z: np.ndarray, gamma_q: Any, beta_q: Any, m: int, s: int,
                      out_bits: int = 8) -> np.ndarray:
    z = z.astype(np.int64)
    g = _ints(gamma_q, "gamma_q", I8_MIN, I8_MAX)
    b = _ints(beta_q, "beta_q", I32_MIN, I32_MAX)
    if g.shape != (z.shape[-1],) or b.shape != g.shape:
        raise IntOpsError(f"gamma_q {g.shape} / beta_q {b.shape} must have shape "
                          f"({z.shape[-1]},)")
    acc = z * g + b
    if acc.size and (acc.min() < I32_MIN or acc.max() > I32_MAX):
        raise IntOpsError("LayerNorm affine accumulator overflows int32; reduce beta_q")
    if out_bits == 8:
        return requantize(acc, m, s)
    if out_bits == 16:
        return requantize_i16(acc, m, s)
    raise IntOpsError(f"out_bits={out_bits} must be 8 or 16")


def layernorm_i8(x: Any, gamma_q: Any, beta_q: Any, m: int, s: int, eps_int: int = 0
                 ) -> np.ndarray:
    """LayerNorm of int8 rows -> int8: ``sat8(((z_i*gamma_q[i] + beta_q[i])*m + 2**(s-1))
    >> s)`` with ``z = layernorm_normalize(x, eps_int)``."""
    return _layernorm_affine(layernorm_normalize(x, eps_int), gamma_q, beta_q, m, s)


def layernorm_i16(x: Any, gamma_q: Any, beta_q: Any, m: int, s: int, eps_int: int = 0,
                  out_bits: int = 8) -> np.ndarray:
    """LayerNorm of int16 rows (the residual stream) -> int8 (``out_bits=8``, GEMM inputs) or
    int16 (``out_bits=16``, the layer output): :func:`layernorm_i8`'s formula with ``z =
    layernorm_normalize_i16(x, eps_int)`` and ``sat8`` or ``sat16`` at the end. With
    ``out_bits=8`` it equals :func:`layernorm_i8` on int8 rows."""
    return _layernorm_affine(layernorm_normalize_i16(x, eps_int), gamma_q, beta_q, m, s,
                             out_bits)


# ----------------------------------------------------------------------------- pooling, LUTs


def mean_pool_i8(x: Any, axis: int = 0) -> np.ndarray:
    """Mean of int8 values along ``axis``, rounded half up exactly:
    ``floor((2*S + L) / (2*L))`` with ``S`` the int32 sum and ``L`` the count."""
    xa = _ints(x, "x", I8_MIN, I8_MAX)
    n = xa.shape[axis]
    if n < 1:
        raise IntOpsError("mean_pool_i8 over an empty axis")
    total = xa.sum(axis=axis)
    return ((2 * total + n) // (2 * n)).astype(np.int8)


def sum_rows_i16(x: Any, axis: int = 0) -> np.ndarray:
    """Exact sum of int16 values along ``axis`` -> int32. At most ``2**16 - 1`` values, so
    ``|S| <= (2**16 - 1) * 2**15 < 2**31``. Followed by a requantization with ``m / 2**s ~=
    s_in / (n * s_out)`` it is a mean pool plus a scale change with one rounding."""
    xa = _ints(x, "x", I16_MIN, I16_MAX)
    n = xa.shape[axis]
    if not 1 <= n <= MAX_SUM_ROWS_I16:
        raise IntOpsError(f"sum_rows_i16 over {n} values; need 1 .. {MAX_SUM_ROWS_I16}")
    return xa.sum(axis=axis).astype(np.int32)


def make_lut_i8(fn: Any, in_scale: float, out_scale: float) -> np.ndarray:
    """256-entry int8 table of a real function: ``LUT[i] = sat8(floor(fn(in_scale*(i-128)) /
    out_scale + 1/2))``, indexed by ``x + 128`` for int8 ``x``."""
    if not (in_scale > 0 and out_scale > 0):
        raise IntOpsError(f"scales must be > 0 (got in={in_scale}, out={out_scale})")
    vals = [math.floor(float(fn(in_scale * (i - 128))) / out_scale + 0.5) for i in range(256)]
    return saturate_i8(vals)


def make_tanh_lut(in_scale: float, out_scale: float) -> np.ndarray:
    """Table of ``tanh`` (the memory squash ``memory_squash='tanh'``)."""
    return make_lut_i8(math.tanh, in_scale, out_scale)


def lut_i8(x: Any, lut: Any) -> np.ndarray:
    """Apply a 256-entry int8 table: ``y = lut[x + 128]``."""
    table = _ints(lut, "lut", I8_MIN, I8_MAX)
    if table.shape != (256,):
        raise IntOpsError(f"lut must have 256 entries, got shape {table.shape}")
    return table[_ints(x, "x", I8_MIN, I8_MAX) + 128].astype(np.int8)


# ----------------------------------------------------------------------------- ring buffers


def ring_push(buf: np.ndarray, head: int, count: int, rows: Any
              ) -> tuple[np.ndarray, int, int]:
    """Append ``rows`` to a ring of capacity ``C = len(buf)``; returns a new ``(buf, head,
    count)``.

    Row ``i`` of ``rows`` goes to slot ``(head + i) mod C``; ``head`` advances by the number of
    rows and ``count`` saturates at ``C``. Only the last ``C`` rows survive. ``C = 0`` keeps
    nothing. The memory bank (one vector per segment) and the left-context K/V cache
    (``segment_length * N`` folded rows per segment) both use it.
    """
    cap = len(buf)
    new = np.asarray(rows)
    if new.shape[1:] != buf.shape[1:] or new.dtype != buf.dtype:
        raise IntOpsError(f"ring rows {new.shape}/{new.dtype} do not fit ring rows "
                          f"{buf.shape[1:]}/{buf.dtype}")
    if not (0 <= count <= cap and (cap == 0 or 0 <= head < cap)):
        raise IntOpsError(f"ring state head={head}, count={count} invalid for capacity {cap}")
    if cap == 0:
        return buf.copy(), 0, 0
    out = buf.copy()
    n = len(new)
    for i in range(max(0, n - cap), n):
        out[(head + i) % cap] = new[i]
    return out, (head + n) % cap, min(cap, count + n)


def ring_view(buf: np.ndarray, head: int, count: int) -> np.ndarray:
    """The ``count`` valid rows of a ring, oldest first: slots ``(head - count + i) mod C``."""
    cap = len(buf)
    if not 0 <= count <= cap:
        raise IntOpsError(f"ring count={count} invalid for capacity {cap}")
    if count == 0:
        return buf[:0].copy()
    idx = (head - count + np.arange(count)) % cap
    return buf[idx]
