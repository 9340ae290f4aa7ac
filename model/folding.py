"""Folding attention (Li et al. 2023): attention over sub-tokens of width D/N.

A sequence of T tokens of width D is *folded* into T*N sub-tokens of width D/N by a row-major
reshape: sub-token ``j`` of token ``t`` is row ``t*N + j``. The Q, K, V and output projections
are ``D/N x D/N`` linear layers (with bias) shared by all sub-tokens, attention runs over the
N-times-longer folded sequence, and the output projection's result is *unfolded* back to
``(T, D)``. A token-level boolean mask ``allowed[q, k]`` becomes ``kron(allowed, ones(N, N))``:
every sub-token of query token q sees every sub-token of key token k iff q may see k.

Heads (``ModelConfig.head_mode``): ``'shrink'`` keeps the head dim D/H and uses H/N heads (the
paper's arrangement); ``'keep'`` keeps H heads of width D/(N*H). Either way ``heads * head_dim
== D/N``. Scores are ``(q @ k^T) * head_dim**-0.5`` with masked entries set to ``-inf`` before
the softmax; every query row must have at least one allowed key.

With ``fold_factor = 1`` this is exactly ordinary multi-head attention (tests compare it with
``torch.nn.MultiheadAttention``).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from model.config import ModelConfig


def fold(x: Tensor, n: int) -> Tensor:
    """``(T, D) -> (T*N, D/N)``; sub-token j of token t lands on row ``t*N + j``."""
    t, d = x.shape
    if d % n:
        raise ValueError(f"cannot fold width {d} by {n}: {n} does not divide {d}")
    return x.reshape(t * n, d // n)


def unfold(x: Tensor, n: int) -> Tensor:
    """Inverse of :func:`fold`: ``(T*N, D/N) -> (T, D)``."""
    tn, dn = x.shape
    if tn % n:
        raise ValueError(f"cannot unfold {tn} rows by {n}: {n} does not divide {tn}")
    return x.reshape(tn // n, dn * n)


def expand_mask(allowed: Tensor, n: int) -> Tensor:
    """Token-level bool mask ``(Tq, Tk)`` -> sub-token mask ``kron(allowed, ones(N, N))``."""
    if n == 1:
        return allowed
    return allowed.repeat_interleave(n, dim=0).repeat_interleave(n, dim=1)


class FoldingAttention(nn.Module):
    """Multi-head attention over folded sub-tokens; parameters ``{q,k,v,out}_proj``.

    The steps are exposed separately so that a streaming caller can cache projected keys and
    values and an integer model can mirror them: :meth:`project_q`, :meth:`project_kv`,
    :meth:`attend`, :meth:`project_out`. :meth:`forward` chains them for token inputs.
    """

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.fold_factor = cfg.fold_factor
        self.heads = cfg.attn_heads
        self.head_dim = cfg.head_dim
        self.scale = self.head_dim ** -0.5
        dn = cfg.folded_dim
        self.q_proj = nn.Linear(dn, dn)
        self.k_proj = nn.Linear(dn, dn)
        self.v_proj = nn.Linear(dn, dn)
        self.out_proj = nn.Linear(dn, dn)

    def project_q(self, tokens: Tensor) -> Tensor:
        """Token rows ``(T, D)`` -> folded projected queries ``(T*N, D/N)`` (unscaled)."""
        return self.q_proj(fold(tokens, self.fold_factor))

    def project_kv(self, tokens: Tensor) -> tuple[Tensor, Tensor]:
        """Token rows ``(T, D)`` -> folded projected keys and values, each ``(T*N, D/N)``."""
        f = fold(tokens, self.fold_factor)
        return self.k_proj(f), self.v_proj(f)

    def attend(self, q: Tensor, k: Tensor, v: Tensor, allowed: Tensor) -> dict[str, Tensor]:
        """Softmax attention of folded ``q`` over folded ``k``/``v``.

        ``allowed`` is the sub-token mask ``(Tq*N, Tk*N)`` (see :func:`expand_mask`). Returns
        ``scores`` (scaled logits, ``-inf`` where masked) and ``probs``, both ``(heads, Tq*N,
        Tk*N)``, and ``context`` ``(Tq*N, D/N)``: probs @ v with heads concatenated in order.
        """
        h, hd = self.heads, self.head_dim
        qh = q.reshape(-1, h, hd).transpose(0, 1)
        kh = k.reshape(-1, h, hd).transpose(0, 1)
        vh = v.reshape(-1, h, hd).transpose(0, 1)
        scores = torch.matmul(qh, kh.transpose(1, 2)) * self.scale
        scores = scores.masked_fill(~allowed, float("-inf"))
        probs = torch.softmax(scores, dim=-1)
        context = torch.matmul(probs, vh).transpose(0, 1).reshape(q.shape[0], h * hd)
        return {"scores": scores, "probs": probs, "context": context}

    def project_out(self, context: Tensor) -> Tensor:
        """Folded context ``(Tq*N, D/N)`` -> output projection, still folded."""
        return self.out_proj(context)

    def forward(self, query: Tensor, key_value: Tensor, allowed: Tensor) -> Tensor:
        """Token-level attention: ``query (Tq, D)``, ``key_value (Tk, D)``, token mask
        ``allowed (Tq, Tk)`` (True = may attend) -> ``(Tq, D)``."""
        n = self.fold_factor
        q = self.project_q(query)
        k, v = self.project_kv(key_value)
        ctx = self.attend(q, k, v, expand_mask(allowed, n))["context"]
        return unfold(self.project_out(ctx), n)


class FeedForward(nn.Module):
    """``fc2(relu(fc1(x)))``; with ``fold_scope='attn+ffn'`` it runs on folded sub-tokens.

    Unfolded: ``fc1: D -> F``, ``fc2: F -> D``. Folded by N: the input ``(T, D)`` is folded to
    ``(T*N, D/N)``, ``fc1: D/N -> F/N`` and ``fc2: F/N -> D/N`` are shared by all sub-tokens,
    and the result is unfolded to ``(T, D)``. The pre-FFN LayerNorm is not part of this module.
    """

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.fold_factor = cfg.ffn_fold
        n = self.fold_factor
        self.fc1 = nn.Linear(cfg.d_model // n, cfg.ffn_dim // n)
        self.fc2 = nn.Linear(cfg.ffn_dim // n, cfg.d_model // n)

    def parts(self, x: Tensor) -> dict[str, Tensor]:
        """``ffn_pre`` (fc1 output), ``ffn_hidden`` (after ReLU), both in the (possibly folded)
        row layout, and ``ffn_out`` ``(T, D)`` (fc2 output, unfolded)."""
        n = self.fold_factor
        pre = self.fc1(fold(x, n))
        hidden = torch.relu(pre)
        return {"ffn_pre": pre, "ffn_hidden": hidden, "ffn_out": unfold(self.fc2(hidden), n)}

    def forward(self, x: Tensor) -> Tensor:
        return self.parts(x)["ffn_out"]
