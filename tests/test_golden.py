"""Integer golden model: mirrors the float streaming step, accuracy, fake-quant bit identity."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from model import intops
from model.calibration import calibration_utterance
from model.config import load_config
from model.encoder import build_model, step_attention_mask
from model.fakequant import TORCH_OPS, FakeQuantEncoder
from model.folding import expand_mask
from model.golden import GoldenEncoder, compare_with_float, sqnr_db, step_mask
from model.quantize import quantize_model, torch_single_thread

TINY = load_config("configs/tiny.toml")
DEMO = load_config("configs/demo.toml")


@pytest.fixture(scope="module", autouse=True)
def _one_torch_thread():
    """Small per-segment tensors: one intra-op thread is much faster (model.quantize.
    torch_single_thread); restored after this module."""
    with torch_single_thread():
        yield


@pytest.fixture(scope="module")
def tiny_qm():
    return quantize_model(TINY, seed=0)


@pytest.fixture(scope="module")
def demo_qm():
    return quantize_model(DEMO, seed=0)


def _run(qm, n_segments, seed=7):
    gold = GoldenEncoder(qm)
    xq = gold.quantize_input(calibration_utterance(qm.config, n_segments, seed))
    states, traces, outs = [gold.init_state()], [], []
    for chunk in gold.chunks(xq):
        out, st, tr = gold.infer(chunk, states[-1], trace=True)
        states.append(st)
        traces.append(tr)
        outs.append(out)
    return gold, states, traces, outs


def test_step_mask_matches_the_float_model():
    for m, r, c, length, n in ((0, 1, 0, 4, 2), (2, 1, 4, 4, 2), (3, 0, 2, 3, 1), (1, 2, 1, 2, 4)):
        want = expand_mask(step_attention_mask(m, r, c, length), n).numpy()
        assert np.array_equal(step_mask(m, r, c, length, n), want)


def test_layer_steps_mirror_the_float_step(tiny_qm):
    """Feed the float layer step the golden model's dequantized inputs and state: outputs,
    new memory and left-context caches must agree to quantization noise, segment by segment
    (the first segments exercise partially filled banks and caches)."""
    qm, c = tiny_qm, TINY.model
    model = build_model(TINY, seed=0).double()
    _, states, traces, _ = _run(qm, 4)
    t64 = lambda a: torch.as_tensor(np.asarray(a, np.float64))  # noqa: E731
    pairs = {"out": ([], []), "memory": ([], []), "lc_key": ([], []), "lc_value": ([], [])}
    for seg, tr in enumerate(traces):
        for layer in range(c.n_layers):
            sc = lambda p, layer=layer: qm.scale(layer, p)  # noqa: E731
            before, after = states[seg].layers[layer], states[seg + 1].layers[layer]
            mem = intops.ring_view(before.memory, before.mem_head, before.mem_count)
            assert mem.shape[0] == min(seg, c.max_memory)
            lck = intops.ring_view(before.lc_key, before.lc_head, before.lc_count)
            lcv = intops.ring_view(before.lc_value, before.lc_head, before.lc_count)
            assert lck.shape[0] == min(seg * c.segment_length, c.left_context) * c.fold_factor
            with torch.no_grad():
                res = model.layers[layer].step(
                    t64(tr[layer]["x_in"] * sc("x_in")), t64(mem * sc("attn_in")),
                    t64(lck * sc("k")), t64(lcv * sc("v")))
            new_k = intops.ring_view(after.lc_key, after.lc_head, after.lc_count)
            new_v = intops.ring_view(after.lc_value, after.lc_head, after.lc_count)
            got = {"out": tr[layer]["ln_out"] * sc("ln_out"), "lc_key": new_k * sc("k"),
                   "lc_value": new_v * sc("v")}
            want = {"out": res.out, "lc_key": res.lc_key, "lc_value": res.lc_value}
            if layer + 1 < c.n_layers:
                got["memory"] = tr[layer]["new_memory"] * qm.scale(layer + 1, "attn_in")
                want["memory"] = res.new_memory
            for key, g in got.items():
                pairs[key][0].append(want[key].numpy().ravel())
                pairs[key][1].append(np.asarray(g, np.float64).ravel())
    db = {k: sqnr_db(np.concatenate(f), np.concatenate(g)) for k, (f, g) in pairs.items()}
    assert db["out"] >= 28 and db["lc_key"] >= 30 and db["lc_value"] >= 30, db
    assert db["memory"] >= 20, db  # one row per step: fewer values, noisier estimate


def test_memory_bank_and_cache_contents(tiny_qm):
    c = TINY.model
    gold, states, traces, _ = _run(tiny_qm, 4)
    final = states[-1]
    # Layer 1's bank holds layer 0's last max_memory squashed summary outputs, oldest first.
    l1 = final.layers[1]
    bank = intops.ring_view(l1.memory, l1.mem_head, l1.mem_count)
    want = [traces[s][0]["new_memory"] for s in range(4)][-c.max_memory:]
    assert np.array_equal(bank, np.stack(want))
    # The left-context cache holds the last C*N segment key rows (after rc and memory rows).
    l0 = final.layers[0]
    cache = intops.ring_view(l0.lc_key, l0.lc_head, l0.lc_count)
    seg_rows = []
    for s in range(4):
        k = traces[s][0]["k"]
        seg_rows.append(k[len(k) - c.segment_length * c.fold_factor:])
    assert np.array_equal(cache, np.concatenate(seg_rows)[-c.left_context * c.fold_factor:])


def test_probabilities_and_masking(tiny_qm):
    c = TINY.model
    _, _, traces, _ = _run(tiny_qm, 3)
    tr = traces[2][0]
    probs, allowed = tr["probs"].astype(int), tr["allowed"]
    n_mem = 2 * c.fold_factor  # two memories after two segments
    assert np.all(probs[:, -c.fold_factor:, :n_mem] == 0)  # summary rows never see memory
    assert np.all(probs[:, :-c.fold_factor, :n_mem].sum(axis=-1) > 0)
    assert np.all(probs[:, ~allowed] == 0) and probs.min() >= 0 and probs.max() <= 255
    assert np.all(np.abs(probs.sum(axis=-1) - 256) <= probs.shape[-1])  # scale 2**-8


def test_int16_stream_stays_inside_its_range(tiny_qm):
    """Residual sums and layer outputs are int16 with worst-case scales: no value reaches
    the saturation limits (the input is the only int16 tensor with a calibrated range)."""
    _, _, traces, outs = _run(tiny_qm, 4, seed=3)
    for tr in traces:
        for layer in tr:
            assert layer["x_in"].dtype == np.int16
            for key in ("resid1", "resid2", "ln_out"):
                v = np.asarray(layer[key]).astype(int)
                assert layer[key].dtype == np.int16 and v.min() > -32768 and v.max() < 32767
            assert layer["ln_in"].dtype == np.int8 and layer["ln_ffn"].dtype == np.int8
    assert all(o.dtype == np.int16 for o in outs)


# Acceptance (docs/NUMERICS.md, "Accuracy"): >= 25 dB for every layer over 8 segments, export
# seed 0, every input seed 0..9 and the default 1234. Measured worst layer: tiny 31.4 dB,
# demo 29.9 dB (seed 7); the old int8 residual stream failed on demo seeds 0, 1, 7 and tiny 1.
@pytest.mark.parametrize("name", ["tiny", "demo"])
def test_sqnr_acceptance_every_input_seed(name, tiny_qm, demo_qm):
    qm = tiny_qm if name == "tiny" else demo_qm
    worst = {}
    for seed in [*range(10), 1234]:
        rep = compare_with_float(qm, 8, seed)
        assert len(rep["sqnr_db_per_layer"]) == qm.config.model.n_layers
        assert rep["sqnr_db"] == rep["sqnr_db_per_layer"][-1]
        worst[seed] = min(rep["sqnr_db_per_layer"])
    assert min(worst.values()) >= 25.0, worst


@pytest.mark.slow
@pytest.mark.parametrize("name", ["tiny", "demo"])
def test_sqnr_robust_over_export_and_input_seeds(name):
    """Beyond the acceptance: export seeds 1..3, input seeds 0..39 (measured worst layer
    28.9 dB on tiny, 28.2 dB on demo)."""
    cfg = TINY if name == "tiny" else DEMO
    for export_seed in (1, 2, 3):
        qm = quantize_model(cfg, seed=export_seed)
        worst = {seed: min(compare_with_float(qm, 8, seed)["sqnr_db_per_layer"])
                 for seed in range(40)}
        assert min(worst.values()) >= 25.0, (export_seed, worst)


VARIANTS = [{}, {"fold_factor": 1}, {"fold_scope": "attn+ffn", "memory_squash": "tanh"},
            {"head_mode": "keep", "left_context": 0}, {"right_context": 0, "max_memory": 1},
            {"n_features": 80, "vocab": 11}, {"n_features": 24, "fold_factor": 4},
            {"vocab": 5, "fold_factor": 1}]


@pytest.mark.parametrize("kw", VARIANTS, ids=lambda kw: ",".join(kw) or "tiny")
def test_fakequant_is_bit_identical(kw):
    cfg = TINY.replace(**kw)
    qm = quantize_model(cfg, seed=2, n_utterances=2, n_segments=4)
    frames = calibration_utterance(cfg, 5, 11)
    gold = GoldenEncoder(qm)
    want = gold.stream(gold.quantize_input(frames))
    fq = FakeQuantEncoder(qm)
    got = fq.stream_int(torch.as_tensor(frames))
    assert np.array_equal(got.numpy(), want.astype(np.int64))
    assert torch.equal(fq.stream(torch.as_tensor(frames)),
                       torch.as_tensor(want, dtype=torch.float64) * fq.out_scale)


def test_fakequant_traces_match_step_by_step(tiny_qm):
    gold, fgold = GoldenEncoder(tiny_qm), GoldenEncoder(tiny_qm, TORCH_OPS)
    xq = gold.quantize_input(calibration_utterance(TINY, 3, 5))
    sg, sf = None, None
    for chunk in gold.chunks(xq):
        _, sg, tg = gold.infer(chunk, sg, trace=True)
        _, sf, tf = fgold.infer(TORCH_OPS.asarray(chunk), sf, trace=True)
        for lg, lf in zip(tg, tf, strict=True):
            for key in lg:
                assert np.array_equal(np.asarray(lf[key]), lg[key]), key


def test_torch_ops_match_numpy_ops_on_random_inputs():
    rng = np.random.default_rng(0)
    x = rng.integers(-128, 128, (6, 40))
    t = TORCH_OPS.asarray
    m, s = rng.integers(0, 2**15, 40), rng.integers(1, 48, 40)
    acc = rng.integers(-(2**31), 2**31, (6, 40))
    assert np.array_equal(TORCH_OPS.requantize(t(acc), t(m), t(s), relu=True).numpy(),
                          intops.requantize(acc, m, s, relu=True))
    lut = intops.make_exp_lut(0.07)
    mask = rng.random((6, 40)) < 0.7
    mask[:, 0] = True
    assert np.array_equal(TORCH_OPS.softmax_i8(t(x), t(lut), t(mask)).numpy(),
                          intops.softmax_i8(x, lut, mask))
    p = intops.softmax_u8(x, lut, mask)
    assert np.array_equal(TORCH_OPS.softmax_u8(t(x), t(lut), t(mask)).numpy(), p)
    v = rng.integers(-128, 128, (40, 7))
    assert np.array_equal(TORCH_OPS.u8_to_i8(t(p)).numpy(), intops.u8_to_i8(p))
    assert np.array_equal(TORCH_OPS.zero_point_bias(t(v)).numpy(), intops.zero_point_bias(v))
    g, b = rng.integers(-127, 128, 40), rng.integers(-5000, 5000, 40)
    x[0] = 3  # a constant row
    assert np.array_equal(TORCH_OPS.layernorm_i8(t(x), t(g), t(b), 20000, 22, 5).numpy(),
                          intops.layernorm_i8(x, g, b, 20000, 22, 5))
    x16 = rng.integers(-(2**15), 2**15, (6, 40))
    x16[1] = -(2**15)  # constant row
    x16[2] = np.where(np.arange(40) % 2, 2**15 - 1, -(2**15))  # largest variance
    for bits in (8, 16):
        assert np.array_equal(
            TORCH_OPS.layernorm_i16(t(x16), t(g), t(b), 20000, 22, 7, bits).numpy(),
            intops.layernorm_i16(x16, g, b, 20000, 22, 7, out_bits=bits))
    # Variances beyond 2**53 (exact bit length in both backends): a wide row.
    wide = np.where(np.arange(2**15) % 3 == 0, 2**15 - 1, -(2**15))[None, :]
    gw, bw = np.full(2**15, 100), np.zeros(2**15, np.int64)
    assert np.array_equal(TORCH_OPS.layernorm_i16(t(wide), t(gw), t(bw), 2**14, 14, 0, 16)
                          .numpy(), intops.layernorm_i16(wide, gw, bw, 2**14, 14, 0, 16))
    assert np.array_equal(TORCH_OPS.mean_pool_i8(t(x), axis=0).numpy(),
                          intops.mean_pool_i8(x, axis=0))
    assert np.array_equal(TORCH_OPS.sum_rows_i16(t(x16), axis=0).numpy(),
                          intops.sum_rows_i16(x16, axis=0))
    assert np.array_equal(TORCH_OPS.add_requant(t(x), t(x[::-1].copy()), 300, 20000, 15).numpy(),
                          intops.add_requant(x, x[::-1], 300, 20000, 15))
    assert np.array_equal(
        TORCH_OPS.add_requant_i16(t(x), t(x16), 30000, 20000, 15).numpy(),
        intops.add_requant_i16(x, x16, 30000, 20000, 15))
    assert np.array_equal(
        TORCH_OPS.add_requant_i16(t(x16), t(x16[::-1].copy()), 2**15 - 1, 2**15 - 1, 1)
        .numpy(), intops.add_requant_i16(x16, x16[::-1], 2**15 - 1, 2**15 - 1, 1))


def test_bad_chunk_shape_is_rejected(tiny_qm):
    gold = GoldenEncoder(tiny_qm)
    with pytest.raises(ValueError, match="chunk must have shape"):
        gold.infer(np.zeros((3, 64), np.int16))


def test_speech_head_and_tail_follow_the_float_model():
    """With an input projection and a classifier the golden logits are ``integer * s_logits``
    of values close to the float model's logits, and the host sends int8 features."""
    cfg = TINY.replace(n_features=80, vocab=11)
    qm = quantize_model(cfg, seed=4)
    assert qm["input_proj.weight"].shape == (80, 64) and qm["classifier.weight"].shape == (64, 11)
    frames = calibration_utterance(cfg, 6, 9)
    gold = GoldenEncoder(qm)
    xq = gold.quantize_input(frames)
    assert xq.shape == (6 * 4 + 1, 80) and xq.min() >= -128 and xq.max() <= 127
    logits = gold.stream(xq)
    assert logits.shape == (24, 11) and np.abs(logits).max() <= 127
    with torch.no_grad():
        want = build_model(cfg, seed=4)(torch.as_tensor(frames)).double().numpy()
    assert sqnr_db(want, logits * qm.output_scale) > 20.0
    # the last layer's LayerNorm output is int8 (the classifier's operand), the others int16
    _, _, traces = gold.infer(xq[:5], trace=True)
    assert np.abs(traces[-1]["ln_out"]).max() <= 127
    assert qm.output_scale == qm.scales["logits"]
