"""PTQ: scales from calibration, per-channel int8 weights, int32 biases, requant parameters."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import model.quantize as mq
from model import intops
from model.calibration import calibration_set
from model.config import load_config
from model.encoder import build_model
from model.quantize import (
    ACT_POINTS,
    I16_POINTS,
    LINEARS,
    PROB_SCALE,
    is_int16,
    ln_out_bound,
    quantize_model,
    residual_scale,
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
        assert qm.scale(layer, "prob") == PROB_SCALE == 2.0**-8
    assert qm.scale(0, "x_in") == qm.scales["input"]
    for layer in range(1, n):
        assert qm.scale(layer, "x_in") == qm.scale(layer - 1, "ln_out")
    assert is_int16("input") and all(is_int16(f"L1.{p}") for p in I16_POINTS)
    assert not any(is_int16(f"L0.{p}") for p in ACT_POINTS if p not in I16_POINTS)


def test_input_scale_is_twice_the_calibration_maximum(qm):
    data = calibration_set(TINY, 4, 8, seed=0)
    top = max(float(np.abs(u).max()) for u in data)
    assert qm.scales["input"] == pytest.approx(2 * top / 32767, rel=1e-6)


def test_int16_scales_are_worst_case_bounds(qm):
    model = build_model(TINY, seed=0)
    for layer in range(TINY.model.n_layers):
        sc = lambda p, layer=layer: qm.scale(layer, p)  # noqa: E731
        assert sc("resid1") == residual_scale(sc("attn_out"), sc("x_in"))
        assert sc("resid2") == residual_scale(sc("ffn_out"), sc("resid1"))
        assert sc("ln_out") == ln_out_bound(model.layers[layer].ln_out) / 32767
        # The bound: max |z| * |gamma| + |beta| in real units, a little wider.
        ln = model.layers[layer].ln_out
        g, b = ln.weight.detach().double().numpy(), ln.bias.detach().double().numpy()
        real = np.max(intops.layernorm_z_max(64) / 256 * np.abs(g) + np.abs(b))
        assert real <= sc("ln_out") * 32767 <= real * 1.01


@settings(max_examples=300)
@given(st.floats(1e-4, 1.0), st.floats(1e-6, 1.0), st.sampled_from([127, -128]),
       st.sampled_from([32767, -32768]))
def test_residual_add_with_residual_scale_never_saturates(s_branch, s_stream, a, b):
    s_out = residual_scale(s_branch, s_stream)
    ma, mb, s = intops.quantize_add_multipliers(s_branch, s_stream, s_out)
    assert s >= 7
    t = a * ma + b * mb + 2 ** (s - 1)
    assert -32768 < t >> s < 32767  # strictly inside: sat16 never acts


def test_derive_scales_headroom_bounds_and_ties():
    """derive_scales on synthetic observer scales: the input and I8_HEADROOM_POINTS widened,
    other int8 points as observed, prob fixed, int16 points worst-case bounds."""
    model = build_model(TINY, seed=0)
    n = TINY.model.n_layers
    i8 = [p for p in ACT_POINTS if p not in mq.I16_POINTS and p != "prob"]
    observed = {"input": 0.001} | {f"L{layer}.{p}": 0.01 * (k + 1) + layer
                                   for layer in range(n) for k, p in enumerate(i8)}
    sc = mq.derive_scales(model, observed)
    assert set(sc) == {"input"} | {f"L{layer}.{p}" for layer in range(n) for p in ACT_POINTS}
    assert sc["input"] == 0.002
    for layer in range(n):
        for p in i8:
            want = observed[f"L{layer}.{p}"] * (1.5 if p in mq.I8_HEADROOM_POINTS else 1.0)
            assert sc[f"L{layer}.{p}"] == want, p
        assert sc[f"L{layer}.prob"] == 2.0**-8
        assert sc[f"L{layer}.x_in"] == (sc["input"] if layer == 0 else sc[f"L{layer - 1}.ln_out"])
        assert sc[f"L{layer}.ln_out"] == ln_out_bound(model.layers[layer].ln_out) / 32767
    assert set(mq.I8_HEADROOM_POINTS) == {"attn_in", "ln_ffn", "ctx", "attn_out"}


def test_quantize_model_derives_its_scales_from_observed_ranges(qm):
    model = build_model(TINY, seed=0)
    obs = mq.observe_ranges(model, calibration_set(TINY, 4, 8, seed=0))
    assert mq.derive_scales(model, obs) == qm.scales


def test_input_memory_multiplier(qm):
    real = qm.scales["input"] / (TINY.model.segment_length * qm.scale(0, "attn_in"))
    m, s = int(qm["input_mem.m"][0]), int(qm["input_mem.s"][0])
    assert abs(m / 2**s - real) <= real * 2**-15


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
        ctx_real = 2.0**-8 * sc(layer, "v") / sc(layer, "ctx")
        got = qm[p + "ctx.m"][0] / 2.0 ** qm[p + "ctx.s"][0]
        assert abs(got - ctx_real) <= ctx_real * 2**-15
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


def _variant(cfg, qm):
    """Integer parameters of a config variant at the calibrated scales of ``qm`` (the
    parameters under test depend on the config, not on how the scales were found)."""
    tensors, ws = mq.quantize_params(build_model(cfg, seed=0), qm.scales)
    return mq.QuantModel(cfg, 0, tensors, qm.scales, ws)


def test_clamp_bounds_follow_memory_clamp(qm):
    cfg = TINY.replace(memory_clamp=0.5)
    q = _variant(cfg, qm)
    s = q.scale(1, "attn_in")
    assert q["L1.mem_in.hi"][0] == min(127, int(np.floor(0.5 / s + 0.5)))
    assert q["L1.mem_in.lo"][0] == max(-128, int(np.floor(-0.5 / s + 0.5)))
    assert q["L1.mem_in.hi"][0] < 127  # the clamp binds inside the int8 range here


def test_tanh_squash_uses_a_table(qm):
    q = _variant(TINY.replace(memory_squash="tanh"), qm)
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
    other, _ = mq.quantize_params(build_model(TINY, seed=1), qm.scales)
    assert not np.array_equal(other["L0.q.weight"], qm["L0.q.weight"])
