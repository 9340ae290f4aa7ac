"""Accounting: counts vs the built torch module, the closed forms, and measured FLOPs."""

import dataclasses
import subprocess
import sys

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from model.accounting import (
    layer_param_counts,
    layer_step_counts,
    layer_weight_bytes,
    model_info,
    model_param_count,
    model_step_counts,
    model_weight_bytes,
)
from model.config import CONFIG_DIR, ModelConfig, load_config
from model.encoder import build_model

TINY = load_config(CONFIG_DIR / "tiny.toml").model
BASE = load_config(CONFIG_DIR / "emformer_base.toml").model

SHAPES = [
    dict(fold_factor=1),
    dict(fold_factor=2),
    dict(fold_factor=4),
    dict(fold_factor=2, head_mode="keep"),
    dict(fold_factor=4, fold_scope="attn+ffn"),
    dict(fold_factor=2, right_context=0, left_context=6, max_memory=3),
]


def _cfg(base: ModelConfig = TINY, **kw) -> ModelConfig:
    c = dataclasses.replace(base, **kw)
    c.validate()
    return c


def _numel(module, prefix: str) -> int:
    return sum(p.numel() for name, p in module.named_parameters() if name.startswith(prefix))


@pytest.mark.parametrize("kw", SHAPES, ids=lambda kw: ",".join(f"{k}={v}" for k, v in kw.items()))
def test_param_counts_match_the_torch_module(kw):
    cfg = _cfg(**kw)
    model = build_model(cfg, seed=0)
    layer = model.layers[0]
    counts = layer_param_counts(cfg)
    assert counts["attention"] == _numel(layer, "attn.")
    assert counts["ffn"] == _numel(layer, "ffn.")
    assert counts["layernorm"] == _numel(layer, "ln_")
    assert counts["total"] == sum(p.numel() for p in layer.parameters())
    assert model_param_count(cfg) == sum(p.numel() for p in model.parameters())
    # int8 bytes: 2-D weights 1 byte, biases and LayerNorm parameters 4 bytes
    expected_bytes = sum(p.numel() * (1 if p.ndim == 2 else 4) for p in model.parameters())
    assert model_weight_bytes(cfg)["total"] == expected_bytes
    assert layer_weight_bytes(cfg)["total"] * cfg.n_layers == expected_bytes


def test_closed_forms_for_emformer_base():
    d, f = 512, 2048
    for n in (1, 2, 4):
        c = _cfg(BASE, fold_factor=n)
        counts = layer_param_counts(c)
        assert counts["attention"] == 4 * (d // n) ** 2 + 4 * d // n
        assert counts["ffn"] == 2 * d * f + f + d
        assert counts["layernorm"] == 3 * 2 * d
        assert model_param_count(c) == 20 * (counts["attention"] + counts["ffn"] + 6 * d)
    assert layer_param_counts(_cfg(BASE, fold_factor=2))["attention"] == 263_168
    assert layer_param_counts(_cfg(BASE, fold_factor=1))["attention"] == 1_050_624
    folded_ffn = _cfg(BASE, fold_factor=2, fold_scope="attn+ffn")
    assert layer_param_counts(folded_ffn)["ffn"] == 2 * 256 * 1024 + 1024 + 256


def test_reduction_vs_fold1_for_emformer_base():
    info = model_info(_cfg(BASE, fold_factor=2))
    per_layer_1 = 1_050_624 + 2_099_712 + 3072
    per_layer_2 = 263_168 + 2_099_712 + 3072
    assert info["baseline_fold1"]["params"]["total"] == 20 * per_layer_1
    assert info["params"]["total"] == 20 * per_layer_2
    assert info["reduction_vs_fold1"]["params_total"] == pytest.approx(
        1 - per_layer_2 / per_layer_1, abs=1e-6)
    assert 0.24 < info["reduction_vs_fold1"]["params_total"] < 0.26  # the paper's ~25%
    assert info["reduction_vs_fold1"]["attention_params_per_layer"] == pytest.approx(
        1 - 263_168 / 1_050_624, abs=1e-6)


@pytest.mark.parametrize("kw", SHAPES, ids=lambda kw: ",".join(f"{k}={v}" for k, v in kw.items()))
def test_step_macs_equal_measured_flops(kw):
    """Run one steady-state streaming step under torch's FLOP counter: 2 FLOPs per MAC."""
    cfg = _cfg(**kw)
    model = build_model(cfg, seed=0)
    g = torch.Generator().manual_seed(0)
    chunk_rows = cfg.segment_length + cfg.right_context
    segments_to_fill = max(cfg.max_memory, -(-cfg.left_context // cfg.segment_length))
    state = None
    with torch.no_grad():
        for _ in range(segments_to_fill):
            _, state = model.infer(torch.randn(chunk_rows, cfg.d_model, generator=g), state)
        for ls in state.layers:
            assert ls.memory.shape[0] == cfg.max_memory
            assert ls.lc_key.shape[0] == cfg.left_context * cfg.fold_factor
        chunk = torch.randn(chunk_rows, cfg.d_model, generator=g)
        with FlopCounterMode(display=False) as counter:
            _, _, traces = model.infer_trace(chunk, state)
    assert counter.get_total_flops() == 2 * model_step_counts(cfg)["macs"]
    # softmax exponentials = unmasked score entries, over all heads and layers
    exps = sum(cfg.attn_heads * int(tr["allowed"].sum()) for tr in traces)
    assert exps == model_step_counts(cfg)["softmax_exps"]


def test_step_macs_closed_form_and_partial_state():
    c = _cfg(BASE, fold_factor=2)
    d, f, n, length, r, m, lc = 512, 2048, 2, 4, 1, 4, 30
    tq, tk = r + length + 1, m + r + lc + length
    s = layer_step_counts(c)
    assert s["q_proj"] == s["out_proj"] == tq * d * d // n
    assert s["k_proj"] == s["v_proj"] == (m + r + length) * d * d // n
    assert s["scores"] == s["attn_v"] == tq * tk * n * d
    assert s["ffn"] == (r + length) * 2 * d * f
    empty = layer_step_counts(c, n_memory=0, n_left=0)
    assert empty["scores"] == tq * (r + length) * n * d
    with pytest.raises(ValueError, match="max_memory"):
        layer_step_counts(c, n_memory=5)


def test_accounting_does_not_need_torch():
    code = ("import sys; sys.modules['torch'] = None\n"
            "from model.config import CONFIG_DIR, load_config\n"
            "import model.accounting as a, sim.cli.model\n"
            "cfg = load_config(CONFIG_DIR / 'emformer_base.toml')\n"
            "print(a.model_info(cfg)['params']['total'])\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, cwd=CONFIG_DIR.parent)
    assert int(out.stdout) == 20 * (263_168 + 2_099_712 + 3072)
