"""Folding attention: layout, mask expansion, and equality with ordinary multi-head attention."""

import dataclasses

import pytest
import torch
import torch.nn.functional as F

from model.config import ModelConfig
from model.folding import FeedForward, FoldingAttention, expand_mask, fold, unfold

DT = torch.float64


def _randn(*shape: int) -> torch.Tensor:
    return torch.randn(*shape, dtype=DT)


def _cfg(**kw) -> ModelConfig:
    c = dataclasses.replace(ModelConfig(d_model=32, n_heads=4, ffn_dim=48), **kw)
    c.validate()
    return c


def _attn(cfg: ModelConfig, seed: int = 0) -> FoldingAttention:
    torch.manual_seed(seed)
    return FoldingAttention(cfg).double()


def _random_mask(tq: int, tk: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    m = torch.rand(tq, tk, generator=g) < 0.6
    m[:, 0] = True  # every query sees at least one key
    return m


def test_fold_puts_subtoken_j_of_token_t_at_row_t_times_n_plus_j():
    t, d, n = 3, 12, 4
    x = torch.arange(t * d, dtype=torch.float64).reshape(t, d)
    f = fold(x, n)
    assert f.shape == (t * n, d // n)
    for tok in range(t):
        for j in range(n):
            assert torch.equal(f[tok * n + j], x[tok, j * (d // n):(j + 1) * (d // n)])
    assert torch.equal(unfold(f, n), x)


def test_fold_rejects_indivisible_width():
    with pytest.raises(ValueError, match="does not divide"):
        fold(torch.zeros(2, 10), 4)


def test_expand_mask_is_kron_with_ones():
    m = _random_mask(3, 5, 1)
    for n in (1, 2, 3):
        expected = torch.kron(m.int(), torch.ones(n, n, dtype=torch.int)).bool()
        assert torch.equal(expand_mask(m, n), expected)


def test_projection_shapes_shrink_by_fold_squared():
    for n in (1, 2, 4):
        a = FoldingAttention(_cfg(fold_factor=n))
        for proj in (a.q_proj, a.k_proj, a.v_proj, a.out_proj):
            assert proj.weight.shape == (32 // n, 32 // n)
            assert proj.bias.shape == (32 // n,)


@pytest.mark.parametrize("head_mode", ["shrink", "keep"])
def test_fold1_equals_torch_multihead_attention(head_mode):
    cfg = _cfg(fold_factor=1, head_mode=head_mode)
    a = _attn(cfg)
    mha = torch.nn.MultiheadAttention(32, 4, bias=True).double()
    with torch.no_grad():
        mha.in_proj_weight.copy_(torch.cat([a.q_proj.weight, a.k_proj.weight, a.v_proj.weight]))
        mha.in_proj_bias.copy_(torch.cat([a.q_proj.bias, a.k_proj.bias, a.v_proj.bias]))
        mha.out_proj.weight.copy_(a.out_proj.weight)
        mha.out_proj.bias.copy_(a.out_proj.bias)
    q, kv = _randn(5, 32), _randn(7, 32)
    allowed = _random_mask(5, 7, 2)
    ref, _ = mha(q, kv, kv, attn_mask=~allowed, need_weights=False)  # True = blocked
    torch.testing.assert_close(a(q, kv, allowed), ref, rtol=0, atol=1e-12)


def test_fold1_equals_scaled_dot_product_attention():
    cfg = _cfg(fold_factor=1)
    a = _attn(cfg, 3)
    q, kv = _randn(6, 32), _randn(9, 32)
    allowed = _random_mask(6, 9, 4)

    def heads(x):
        return x.reshape(x.shape[0], 4, 8).transpose(0, 1)

    qh = heads(F.linear(q, a.q_proj.weight, a.q_proj.bias))
    kh = heads(F.linear(kv, a.k_proj.weight, a.k_proj.bias))
    vh = heads(F.linear(kv, a.v_proj.weight, a.v_proj.bias))
    ctx = F.scaled_dot_product_attention(qh, kh, vh, attn_mask=allowed)
    ref = F.linear(ctx.transpose(0, 1).reshape(6, 32), a.out_proj.weight, a.out_proj.bias)
    torch.testing.assert_close(a(q, kv, allowed), ref, rtol=0, atol=1e-12)


@pytest.mark.parametrize("n,head_mode,heads", [(2, "shrink", 2), (4, "shrink", 1),
                                               (2, "keep", 4)])
def test_folded_attention_is_mha_over_the_reshaped_sequence(n, head_mode, heads):
    """Folding by N == ordinary MHA of width D/N over the (T*N, D/N) sequence with the
    kron-expanded mask, unfolded afterwards."""
    cfg = _cfg(fold_factor=n, head_mode=head_mode)
    assert cfg.attn_heads == heads
    a = _attn(cfg, n)
    dn = 32 // n
    mha = torch.nn.MultiheadAttention(dn, heads, bias=True).double()
    with torch.no_grad():
        mha.in_proj_weight.copy_(torch.cat([a.q_proj.weight, a.k_proj.weight, a.v_proj.weight]))
        mha.in_proj_bias.copy_(torch.cat([a.q_proj.bias, a.k_proj.bias, a.v_proj.bias]))
        mha.out_proj.weight.copy_(a.out_proj.weight)
        mha.out_proj.bias.copy_(a.out_proj.bias)
    q, kv = _randn(5, 32), _randn(6, 32)
    allowed = _random_mask(5, 6, 5)
    big = torch.kron(allowed.int(), torch.ones(n, n, dtype=torch.int)).bool()
    ref, _ = mha(q.reshape(5 * n, dn), kv.reshape(6 * n, dn), kv.reshape(6 * n, dn),
                 attn_mask=~big, need_weights=False)
    torch.testing.assert_close(a(q, kv, allowed), ref.reshape(5, 32), rtol=0, atol=1e-12)


def test_attend_masks_and_normalizes():
    cfg = _cfg(fold_factor=2)
    a = _attn(cfg)
    q, kv = _randn(3, 32), _randn(4, 32)
    allowed = _random_mask(3, 4, 6)
    big = expand_mask(allowed, 2)
    k, v = a.project_kv(kv)
    out = a.attend(a.project_q(q), k, v, big)
    assert out["probs"].shape == (cfg.attn_heads, 6, 8)
    assert torch.all(out["probs"][:, ~big] == 0)
    assert torch.all(torch.isinf(out["scores"][:, ~big]))
    torch.testing.assert_close(out["probs"].sum(-1), torch.ones(cfg.attn_heads, 6, dtype=DT))


def test_folded_ffn_shares_weights_over_subtokens():
    cfg = _cfg(fold_factor=4, fold_scope="attn+ffn")
    torch.manual_seed(0)
    ffn = FeedForward(cfg).double()
    assert ffn.fc1.weight.shape == (12, 8) and ffn.fc2.weight.shape == (8, 12)
    x = _randn(3, 32)
    out = ffn(x)
    for t in range(3):
        for j in range(4):
            piece = x[t, 8 * j: 8 * (j + 1)]
            expected = ffn.fc2(torch.relu(ffn.fc1(piece)))
            torch.testing.assert_close(out[t, 8 * j: 8 * (j + 1)], expected)


def test_unfolded_ffn_with_attn_scope():
    cfg = _cfg(fold_factor=4, fold_scope="attn")
    ffn = FeedForward(cfg).double()
    assert ffn.fc1.weight.shape == (48, 32) and ffn.fc2.weight.shape == (32, 48)
    x = _randn(3, 32)
    torch.testing.assert_close(ffn(x), ffn.fc2(torch.relu(ffn.fc1(x))))
