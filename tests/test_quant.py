"""PTQ: scales from calibration, per-channel int8 weights, int32 biases, requant parameters."""

from __future__ import annotations

import numpy as np
import pytest

from model.calibration import calibration_set
from model.config import load_config
from model.encoder import build_model
from model.quantize import (
    ACT_POINTS,
    LINEARS,
    PROB_SCALE,
    quantize_model,
    split_input,
    tensor_specs,
)

TINY = load_config("configs/tiny.toml")


@pytest.fixture(scope="module")
def qm():
    return quantize_model(TINY, seed=0)


def test_specs_match_tensors(qm):
    specs = tensor_specs(TINY)
    assert set(specs) == set(qm.tensors)
    for name, (shape, dtype) in specs.items():
        assert qm[name].shape == shape and str(qm[name].dtype) == dtype, name


def test_scales_present_positive_and_tied(qm):
    n = TINY.model.n_layers
    for layer in range(n):
        for point in ACT_POINTS:
            assert qm.scale(layer, point) > 0
        assert qm.scale(layer, "prob") == PROB_SCALE == 2.0**-7
    assert qm.scale(0, "x_in") == qm.scales["input"]
    for layer in range(1, n):
        assert qm.scale(layer, "x_in") == qm.scale(layer - 1, "ln_out")


def test_input_scales_cover_the_bulk_of_calibration_data(qm):
    data = calibration_set(TINY, 4, 8, seed=0)
    centered = np.concatenate([split_input(u)[0].ravel() for u in data])
    means = np.concatenate([split_input(u)[1] for u in data])
    for values, name in ((centered, "input"), (means, "input_mean")):
        top = qm.scales[name] * 127
        assert top <= np.abs(values).max() * (1 + 1e-6)  # never wider than the data
        assert top >= np.percentile(np.abs(values), 99)  # never clips the bulk


def test_split_input_is_lossless():
    x = np.random.default_rng(0).normal(size=(5, 8)) + np.arange(5)[:, None]
    centered, means = split_input(x)
    assert np.allclose(centered.mean(axis=1), 0)
    assert np.allclose(centered + means[:, None], x)


def test_weights_biases_and_multipliers(qm):
    model = build_model(TINY, seed=0)
    lin = {"q": "attn.q_proj", "k": "attn.k_proj", "v": "attn.v_proj", "out": "attn.out_proj",
           "fc1": "ffn.fc1", "fc2": "ffn.fc2"}
    s_in = {"q": "attn_in", "k": "attn_in", "v": "attn_in", "out": "ctx", "fc1": "ln_ffn",
            "fc2": "ffn_hidden"}
    s_out = {"q": "q", "k": "k", "v": "v", "out": "attn_out", "fc1": "ffn_hidden",
             "fc2": "ffn_out"}
    for layer, mod in enumerate(model.layers):
        for name in LINEARS:
            p = f"L{layer}.{name}."
            torch_lin = mod.get_submodule(lin[name])
            w = torch_lin.weight.detach().double().numpy().T  # (in, out) like the export
            b = torch_lin.bias.detach().double().numpy()
            wq, bq = qm[p + "weight"].astype(np.int64), qm[p + "bias"].astype(np.int64)
            s_w = qm.weight_scales[p + "weight"]
            # Symmetric per output channel: the largest |w| of each column maps to 127.
            assert np.allclose(s_w, np.abs(w).max(axis=0) / 127, rtol=1e-6)
            assert np.all(np.abs(wq).max(axis=0) == 127)
            assert np.all(np.abs(wq * s_w - w) <= s_w / 2 * (1 + 1e-6))
            si, so = qm.scale(layer, s_in[name]), qm.scale(layer, s_out[name])
            assert np.all(np.abs(bq * si * s_w - b) <= si * s_w / 2 * (1 + 1e-6))
            real = si * s_w / so
            got = qm[p + "m"] / 2.0 ** qm[p + "s"]
            assert np.all(np.abs(got - real) <= real * 2**-15 * (1 + 1e-9))


def test_attention_and_residual_parameters(qm):
    model = build_model(TINY, seed=0)
    for layer in range(TINY.model.n_layers):
        p = f"L{layer}."
        sc = qm.scale
        score_real = sc(layer, "q") * sc(layer, "k") * TINY.model.head_dim ** -0.5 \
            / sc(layer, "score")
        got = qm[p + "score.m"][0] / 2.0 ** qm[p + "score.s"][0]
        assert abs(got - score_real) <= score_real * 2**-15
        lut = qm[p + "score.exp_lut"]
        assert lut[0] == 2**15 and abs(lut[10] - 2**15 * np.exp(-10 * sc(layer, "score"))) <= 0.5
        for res, a, b in (("resid1", "attn_out", "x_in"), ("resid2", "ffn_out", "resid1")):
            s = qm[p + res + ".s"][0]
            for key, pt in (("m_a", a), ("m_b", b)):
                real = sc(layer, pt) / sc(layer, res)
                assert abs(qm[p + res + "." + key][0] / 2.0**s - real) <= 2.0 ** -(s + 1) + 1e-12
        ln = model.layers[layer].ln_ffn
        gamma = ln.weight.detach().double().numpy()
        s_g = np.abs(gamma).max() / 127
        assert np.all(np.abs(qm[p + "ln_ffn.gamma"] * s_g - gamma) <= s_g / 2 + 1e-12)


def test_clamp_bounds_follow_memory_clamp():
    cfg = TINY.replace(memory_clamp=0.5)
    q = quantize_model(cfg, seed=0)
    s = q.scale(1, "attn_in")
    assert q["L1.mem_in.hi"][0] == min(127, int(np.floor(0.5 / s + 0.5)))
    assert q["L1.mem_in.lo"][0] == max(-128, int(np.floor(-0.5 / s + 0.5)))
    assert q["L1.mem_in.hi"][0] < 127  # the clamp binds inside the int8 range here


def test_tanh_squash_uses_a_table():
    q = quantize_model(TINY.replace(memory_squash="tanh"), seed=0)
    lut = q["L1.mem_in.lut"].astype(np.int64)
    x = np.arange(-128, 128)
    want = np.clip(np.floor(np.tanh(x * q.scale(0, "attn_out")) / q.scale(1, "attn_in") + 0.5),
                   -128, 127)
    assert np.array_equal(lut, want)
    assert "L1.mem_in.m" not in q.tensors


def test_quantization_is_deterministic(qm):
    again = quantize_model(TINY, seed=0)
    assert again.scales == qm.scales
    for name, a in qm.tensors.items():
        assert np.array_equal(a, again[name]) and a.dtype == again[name].dtype
    other = quantize_model(TINY, seed=1)
    assert not np.array_equal(other["L0.q.weight"], qm["L0.q.weight"])
