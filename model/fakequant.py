"""Fake-quant torch path: the golden model's dataflow on torch tensors, bit-identical.

:class:`TorchOps` re-implements each :mod:`model.intops` op with exact int64 torch arithmetic
(same formulas, same rounding; ``docs/NUMERICS.md``), and :class:`FakeQuantEncoder` runs the
one dataflow of :class:`model.golden.GoldenEncoder` with it, returning real values (integers
times their scales). Use it for accuracy studies in torch; tests check it equals the numpy
golden model bit for bit. Range checks stay in the numpy ops (the reference): these functions
assume in-contract inputs, except :meth:`TorchOps.gemm_i32`, which checks int32 overflow.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import Tensor

from model import intops
from model.golden import GoldenEncoder, GoldenState
from model.quantize import QuantModel

I64 = torch.int64
_RSQRT_LUT = torch.tensor(intops.RSQRT_LUT.tolist(), dtype=I64)


def _t(v: Any) -> Tensor:
    return v if isinstance(v, Tensor) else torch.as_tensor(np.asarray(v), dtype=I64)


def _bit_length(v: Tensor) -> Tensor:
    """Exact bit length of non-negative int64 values below 2**62 (31-bit halves, as intops)."""
    hi, lo = v >> 31, v & (2**31 - 1)
    bl = lambda t: torch.frexp(t.double()).exponent.to(I64)  # noqa: E731
    return torch.where(hi > 0, 31 + bl(hi), bl(lo))


def _msr(x: Tensor, m: Any, s: Any) -> Tensor:
    """``(x*m + 2**(s-1)) >> s`` (int64)."""
    m, s = _t(m), _t(s)
    return (x * m + torch.bitwise_left_shift(torch.ones_like(s), s - 1)) >> s


def _sat8(x: Tensor) -> Tensor:
    return torch.clamp(x, intops.I8_MIN, intops.I8_MAX)


def _sat16(x: Tensor) -> Tensor:
    return torch.clamp(x, intops.I16_MIN, intops.I16_MAX)


class TorchOps:
    """:mod:`model.intops` on int64 torch tensors (values stay in the documented ranges)."""

    @staticmethod
    def asarray(a: Any) -> Tensor:
        a = np.asarray(a)
        return torch.as_tensor(a) if a.dtype == bool else torch.as_tensor(a, dtype=I64)

    @staticmethod
    def constant(name: str, a: Any) -> Tensor:
        """A tensor of the quantized model, by name."""
        return TorchOps.asarray(a)

    @staticmethod
    def begin_layer(layer: int) -> None:
        """Nothing to do here; the instruction backend switches its buffers."""

    @staticmethod
    def to_numpy(a: Tensor) -> np.ndarray:
        return a.numpy()

    @staticmethod
    def cat(parts: list[Tensor], axis: int = 0) -> Tensor:
        return torch.cat(parts, dim=axis)

    @staticmethod
    def stack(parts: list[Tensor]) -> Tensor:
        return torch.stack(parts)

    @staticmethod
    def gemm_i32(a: Tensor, b: Tensor, bias: Tensor | None = None) -> Tensor:
        acc = a @ b
        if bias is not None:
            acc = acc + bias
        if acc.numel() and (acc.min() < intops.I32_MIN or acc.max() > intops.I32_MAX):
            raise intops.IntOpsError(f"gemm result overflows int32 (K={a.shape[1]})")
        return acc

    @staticmethod
    def requantize(acc: Tensor, m: Any, s: Any, relu: bool = False) -> Tensor:
        y = _msr(acc, m, s)
        return _sat8(y.clamp_min(0) if relu else y)

    @staticmethod
    def requantize_i16(acc: Tensor, m: Any, s: Any, relu: bool = False) -> Tensor:
        y = _msr(acc, m, s)
        return _sat16(y.clamp_min(0) if relu else y)

    @staticmethod
    def add_requant(a: Tensor, b: Tensor, m_a: int, m_b: int, s: int,
                    relu: bool = False) -> Tensor:
        y = (a * m_a + b * m_b + (1 << (s - 1))) >> s
        return _sat8(y.clamp_min(0) if relu else y)

    @staticmethod
    def add_requant_i16(a: Tensor, b: Tensor, m_a: int, m_b: int, s: int,
                        relu: bool = False) -> Tensor:
        y = (a * m_a + b * m_b + (1 << (s - 1))) >> s
        return _sat16(y.clamp_min(0) if relu else y)

    @staticmethod
    def _softmax_e(scores: Tensor, exp_lut: Tensor, mask: Tensor | None) -> Tensor:
        allowed = torch.ones_like(scores, dtype=torch.bool) if mask is None else \
            mask.expand_as(scores)
        row_max = torch.where(allowed, scores, intops.I8_MIN).amax(dim=-1, keepdim=True)
        return torch.where(allowed, exp_lut[torch.where(allowed, row_max - scores, 0)], 0)

    @staticmethod
    def _softmax_p(e: Tensor, prob_bits: int) -> Tensor:
        total = e.sum(dim=-1, keepdim=True)
        bitlen = _bit_length(total)
        m = torch.div((1 << (bitlen + 14)) - 1, total, rounding_mode="floor")
        return _msr(e, m, bitlen + 14 - prob_bits)

    @staticmethod
    def softmax_i8(scores: Tensor, exp_lut: Tensor, mask: Tensor | None = None) -> Tensor:
        e = TorchOps._softmax_e(scores, exp_lut, mask)
        return _sat8(TorchOps._softmax_p(e, intops.PROB_BITS))

    @staticmethod
    def softmax_u8(scores: Tensor, exp_lut: Tensor, mask: Tensor | None = None) -> Tensor:
        e = TorchOps._softmax_e(scores, exp_lut, mask)
        return TorchOps._softmax_p(e, intops.PROB_U8_BITS).clamp_max(
            2 * intops.PROB_ZERO_POINT - 1)

    @staticmethod
    def u8_to_i8(p: Tensor) -> Tensor:
        return p - intops.PROB_ZERO_POINT

    @staticmethod
    def zero_point_bias(b: Tensor) -> Tensor:
        return intops.PROB_ZERO_POINT * b.sum(dim=0)

    @staticmethod
    def _layernorm_z(x: Tensor, eps_int: int) -> Tensor:
        d = x.shape[-1]
        s1 = x.sum(dim=-1, keepdim=True)
        c = d * x - s1
        v = d * (x * x).sum(dim=-1, keepdim=True) - s1 * s1 + eps_int
        safe = v.clamp_min(1)
        k = torch.div(_bit_length(safe) - 7, 2, rounding_mode="floor")
        u = torch.where(k >= 0, safe >> (2 * k).clamp_min(0), safe << (-2 * k).clamp_min(0))
        shift = intops.RSQRT_BITS + k - intops.LN_FRAC_BITS
        z = _msr(c, _RSQRT_LUT[u - intops.RSQRT_LUT_BASE], shift)
        return torch.where(v > 0, z, 0)

    @staticmethod
    def layernorm_i8(x: Tensor, gamma_q: Tensor, beta_q: Tensor, m: int, s: int,
                     eps_int: int = 0) -> Tensor:
        z = TorchOps._layernorm_z(x, eps_int)
        return TorchOps.requantize(z * gamma_q + beta_q, m, s)

    @staticmethod
    def layernorm_i16(x: Tensor, gamma_q: Tensor, beta_q: Tensor, m: int, s: int,
                      eps_int: int = 0, out_bits: int = 8) -> Tensor:
        acc = TorchOps._layernorm_z(x, eps_int) * gamma_q + beta_q
        if acc.numel() and (acc.min() < intops.I32_MIN or acc.max() > intops.I32_MAX):
            raise intops.IntOpsError("LayerNorm affine accumulator overflows int32")
        y = _msr(acc, m, s)
        return _sat16(y) if out_bits == 16 else _sat8(y)

    @staticmethod
    def sum_rows_i16(x: Tensor, axis: int = 0) -> Tensor:
        return x.sum(dim=axis)

    @staticmethod
    def mean_pool_i8(x: Tensor, axis: int = 0) -> Tensor:
        n = x.shape[axis]
        return torch.div(2 * x.sum(dim=axis) + n, 2 * n, rounding_mode="floor")

    @staticmethod
    def clamp_i8(x: Tensor, lo: int, hi: int) -> Tensor:
        return torch.clamp(x, lo, hi)

    @staticmethod
    def lut_i8(x: Tensor, lut: Tensor) -> Tensor:
        return lut[x + 128]

    @staticmethod
    def ring_push(buf: Tensor, head: int, count: int, rows: Tensor) -> tuple[Tensor, int, int]:
        cap = len(buf)
        if cap == 0:
            return buf.clone(), 0, 0
        out, n = buf.clone(), len(rows)
        for i in range(max(0, n - cap), n):
            out[(head + i) % cap] = rows[i]
        return out, (head + n) % cap, min(cap, count + n)

    @staticmethod
    def ring_view(buf: Tensor, head: int, count: int) -> Tensor:
        if count == 0:
            return buf[:0].clone()
        return buf[(head - count + torch.arange(count)) % len(buf)]


TORCH_OPS = TorchOps()


class FakeQuantEncoder:
    """The quantized encoder in torch: :class:`GoldenEncoder`'s dataflow on :class:`TorchOps`.

    :meth:`infer` / :meth:`stream` take and return real-valued float64 tensors; the outputs are
    exactly ``integer * scale`` of the golden model's integers (int16 layer outputs).
    """

    def __init__(self, qm: QuantModel):
        self.qm = qm
        self.engine = GoldenEncoder(qm, TORCH_OPS)
        self.out_scale = qm.output_scale

    def quantize_input(self, frames: Tensor) -> Tensor:
        """Float frames -> the host's integer rows (an int64 tensor), as the golden model."""
        return TORCH_OPS.asarray(self.engine.quantize_input(np.asarray(frames, np.float64)))

    def infer(self, chunk: Tensor, state: GoldenState | None = None
              ) -> tuple[Tensor, GoldenState]:
        """One streaming step on a float chunk ``(L+R, D)`` -> ``(output (L, D), state)``."""
        out, state, _ = self.engine.infer(self.quantize_input(chunk), state)
        return out.double() * self.out_scale, state

    def stream_int(self, frames: Tensor) -> Tensor:
        """Whole float utterance -> the integer outputs ``(S*L, D)`` (int64 tensor)."""
        return self.engine.stream(self.quantize_input(frames))

    def stream(self, frames: Tensor) -> Tensor:
        """Whole float utterance -> real outputs ``(S*L, D)`` (float64)."""
        return self.stream_int(frames).double() * self.out_scale
