"""What one streaming layer step computes, as GEMMs and vector ops in execution order.

The step follows ``model/encoder.py`` (``EmformerLayer.step``) with the shapes of the folded
model. Symbols: D = d_model, N = fold_factor, Dn = D/N, h = attention heads, hd = head dim,
F = ffn_dim, R = right_context, L = segment_length, m memories, c cached left-context tokens;
``Tq = R+L+1``, ``Tkv = m+R+L``, ``Tk = m+R+c+L``; ``nf = N`` if the FFN is folded else 1.

==========  =======================  =========================================
op          kind                     shape (M x K x N, count) / rows x width
==========  =======================  =========================================
ln_in       layernorm_i16 (-> int8)  (R+L) x D
summary     mean_pool_i8             L rows -> 1 x D
q_proj      GEMM (weight)            Tq*N x Dn x Dn
k_proj      GEMM (weight)            Tkv*N x Dn x Dn
v_proj      GEMM (weight)            Tkv*N x Dn x Dn
scores      GEMM (activation)        Tq*N x hd x Tk*N, h times
softmax     softmax_u8               Tq*N x Tk*N, h times
zp_bias     zero_point_bias          Tk*N rows -> 1 x hd, h times
attn_v      GEMM (activation) + bias Tq*N x Tk*N x hd, h times
out_proj    GEMM (weight)            Tq*N x Dn x Dn
squash      clamp / tanh             1 x D  (the next layer's memory vector)
resid1      add_requant_i16          (R+L) x D
ln_ffn      layernorm_i16 (-> int8)  (R+L) x D
fc1         GEMM (weight) + ReLU     (R+L)*nf x D/nf x F/nf
fc2         GEMM (weight)            (R+L)*nf x F/nf x D/nf
resid2      add_requant_i16          (R+L) x D
ln_out      layernorm_i16 (-> int16) (R+L) x D
==========  =======================  =========================================

The dataflow is that of ``model/golden.py`` (``GoldenEncoder.layer_step``,
``docs/NUMERICS.md`` section 13): the residual stream is int16 (the layer input ``x``,
``resid1``, ``resid2`` and the layer output ``out``: 2 bytes per element), every LayerNorm
takes int16 rows, softmax writes unsigned 8-bit probabilities that enter the array as
``p - 128``, and P@V adds the per-column bias ``128 * colsum(V)`` (``zp_bias``, over all
``Tk*N`` keys of the head, cached ones included; an int32 row in the ACC bank).

Every GEMM is requantized to int8 inside its program (the REQUANT unit; ReLU for fc1; the
scores' requantization also applies ``1/sqrt(hd)``); the weight GEMMs and P@V add a bias.
Folding and unfolding are address patterns and cost nothing. The MACs of the GEMMs equal
:func:`model.accounting.layer_step_counts` (tested). The model step adds, outside the layers
(:func:`sim.perf.estimate.model_counts`), the int16 input chunk from the host, layer 0's
memory vector (``sum_rows_i16`` of the segment, then one ``requantize``) and the int16
output to the host.

Each op also names the tensors it reads and writes, with their bank and bytes, so that
:func:`live_peak` can compute the on-chip working set of the step.
"""

from __future__ import annotations

from dataclasses import dataclass

from model.accounting import step_state
from model.config import Config, ModelConfig, model_config
from sim.perf.vector import VectorOp


@dataclass(frozen=True)
class GemmOp:
    """``count`` GEMMs ``(m x k) @ (k x n)`` with int8 output; ``weight``: B is a weight matrix
    (from DRAM when weights are streamed) rather than an activation; ``bias``: a bias row is
    added; ``relu``: ReLU in the requantization."""

    name: str
    m: int
    k: int
    n: int
    count: int = 1
    weight: bool = True
    bias: bool = True
    relu: bool = False

    @property
    def macs(self) -> int:
        return self.count * self.m * self.k * self.n


@dataclass(frozen=True)
class Tensor:
    name: str
    bank: str
    nbytes: int


@dataclass(frozen=True)
class Step:
    """One op of the layer step with the tensors it reads and writes (per invocation; a
    per-head op of ``count`` h keeps one head's tensors live at a time)."""

    op: GemmOp | VectorOp
    reads: tuple[str, ...]
    writes: tuple[Tensor, ...]



def layer_steps(cfg: ModelConfig | Config, n_memory: int | None = None,
                n_left: int | None = None) -> list[Step]:
    """The ops of one layer on one segment with ``n_memory`` memories and ``n_left`` cached
    left-context tokens (default: full bank and cache, the steady state)."""
    c = model_config(cfg)
    m, lc = step_state(c, n_memory, n_left)
    n, d, r, seg = c.fold_factor, c.d_model, c.right_context, c.segment_length
    dn, h, hd, f = c.folded_dim, c.attn_heads, c.head_dim, c.ffn_dim
    nf = c.ffn_fold
    tq, tkv, tk = r + seg + 1, m + r + seg, m + r + lc + seg
    rows = r + seg

    def act(name: str, nbytes: int) -> Tensor:
        return Tensor(name, "act", nbytes)

    def gemm(name, mm, kk, nn, reads, count=1, weight=True, bias=True, relu=False) -> Step:
        """A requantized GEMM; its int8 result is the tensor ``name`` (one head's, if
        ``count`` > 1)."""
        return Step(GemmOp(name, mm, kk, nn, count, weight, bias, relu), reads,
                    (act(name, mm * nn),))

    def vec(name, kind, nrows, width, reads, out: Tensor, count=1, out_bytes=None) -> Step:
        return Step(VectorOp(name, kind, nrows, width, count, out_bytes), reads, (out,))

    i16 = 2  # bytes per element of the int16 residual stream
    squash = "tanh" if c.memory_squash == "tanh" else "clamp"
    steps = [
        vec("ln_in", "layernorm_i16", rows, d, ("x",), act("ln_in", rows * d)),
        vec("summary", "mean_pool_i8", seg, d, ("ln_in",), act("summary", d)),
        gemm("q_proj", tq * n, dn, dn, ("ln_in", "summary")),
        gemm("k_proj", tkv * n, dn, dn, ("memory", "ln_in")),
        gemm("v_proj", tkv * n, dn, dn, ("memory", "ln_in")),
        gemm("scores", tq * n, hd, tk * n, ("q_proj", "k_proj", "lc_key"), count=h,
             weight=False, bias=False),
        vec("softmax", "softmax_u8", tq * n, tk * n, ("scores",),
            act("probs", tq * n * tk * n), count=h),
        vec("zp_bias", "zero_point_bias", tk * n, hd, ("v_proj", "lc_value"),
            Tensor("zp_bias", "acc", 4 * hd), count=h),
        gemm("attn_v", tq * n, tk * n, hd, ("probs", "v_proj", "lc_value", "zp_bias"),
             count=h, weight=False, bias=True),
        gemm("out_proj", tq * n, dn, dn, ("attn_v",)),
        vec("squash", squash, 1, d, ("out_proj",), act("new_memory", d)),
        vec("resid1", "add_requant_i16", rows, d, ("out_proj", "x"),
            act("resid1", i16 * rows * d)),
        vec("ln_ffn", "layernorm_i16", rows, d, ("resid1",), act("ln_ffn", rows * d)),
        gemm("fc1", rows * nf, d // nf, f // nf, ("ln_ffn",), relu=True),
        gemm("fc2", rows * nf, f // nf, d // nf, ("fc1",)),
        vec("resid2", "add_requant_i16", rows, d, ("fc2", "resid1"),
            act("resid2", i16 * rows * d)),
        vec("ln_out", "layernorm_i16", rows, d, ("resid2",), act("out", i16 * rows * d),
            out_bytes=i16),
    ]
    return steps


def gemm_ops(steps: list[Step]) -> list[GemmOp]:
    return [s.op for s in steps if isinstance(s.op, GemmOp)]


def vector_ops(steps: list[Step]) -> list[VectorOp]:
    return [s.op for s in steps if isinstance(s.op, VectorOp)]


def state_bytes(cfg: ModelConfig | Config) -> dict[str, int]:
    """On-chip state one layer keeps across segments (int8, activation bank): the memory bank
    (``M x D``) and the folded left-context key and value caches (``C*N x D/N`` each)."""
    c = model_config(cfg)
    return {"memory_bank": c.max_memory * c.d_model,
            "left_context_cache": 2 * c.left_context * c.d_model,
            "total": (c.max_memory + 2 * c.left_context) * c.d_model}


def live_peak(cfg: ModelConfig | Config, steps: list[Step]) -> dict[str, int]:
    """Peak bytes per bank of the step's live tensors: int8 and the int16 residual stream in
    the activation bank, one head's int32 zero-point bias row in the ACC bank (the GEMM
    programs' int32 tiles are inside their own SRAM footprint).

    The layer input ``x`` (``(R+L) x D`` int16) is live from the start; a tensor is live from the op
    that writes it to the last op that reads it (``out`` to the end). The state (memory bank,
    left-context caches) is not included (see :func:`state_bytes`).
    """
    c = model_config(cfg)
    x = Tensor("x", "act", 2 * (c.right_context + c.segment_length) * c.d_model)
    tensors = {x.name: x}
    last_use = {x.name: -1}
    born = {x.name: -1}
    for i, s in enumerate(steps):
        for name in s.reads:
            if name in tensors:
                last_use[name] = i
        for t in s.writes:
            tensors[t.name] = t
            born[t.name] = i
            last_use.setdefault(t.name, i)
    last_use["out"] = len(steps)
    peak: dict[str, int] = {"act": 0, "wgt": 0, "acc": 0}
    for i in range(len(steps)):
        live: dict[str, int] = {"act": 0, "wgt": 0, "acc": 0}
        for name, t in tensors.items():
            if born[name] <= i <= last_use[name]:
                live[t.bank] += t.nbytes
        for bank in peak:
            peak[bank] = max(peak[bank], live[bank])
    return peak
