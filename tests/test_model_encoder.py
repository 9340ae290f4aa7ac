"""The streaming encoder: whole-utterance forward == streaming infer == an independent
token-by-token reference written from the spec; memory/left-context semantics; traces."""

import dataclasses

import pytest
import torch
import torch.nn.functional as F

from model.config import CONFIG_DIR, ModelConfig, load_config
from model.encoder import (
    StreamState,
    build_model,
    full_attention_mask,
    step_attention_mask,
)

DT = torch.float64
TINY = load_config(CONFIG_DIR / "tiny.toml").model  # D=64, H=4, F=128, 2 layers, L=4, R=1, C=4, M=2


def _cfg(**kw) -> ModelConfig:
    c = dataclasses.replace(TINY, **kw)
    c.validate()
    return c


def _frames(cfg: ModelConfig, n_segments: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    n = n_segments * cfg.segment_length + cfg.right_context
    return torch.randn(n, cfg.d_model, generator=g, dtype=DT)


def reference_encoder(model, frames: torch.Tensor) -> torch.Tensor:
    """Spec, written independently: segment by segment, layer by layer, with explicit token
    lists, full histories instead of caches, and F.scaled_dot_product_attention."""
    c = model.cfg
    n, d, length, r = c.fold_factor, c.d_model, c.segment_length, c.right_context
    dn, h = d // n, c.attn_heads
    fn = c.ffn_fold
    p = dict(model.named_parameters())
    s_n = (frames.shape[0] - r) // length
    ln_history = [[] for _ in range(c.n_layers)]  # LN_in'd segment rows seen by each layer
    fed = [[] for _ in range(c.n_layers)]          # memory vectors fed to each layer
    outputs = []

    def ln(name, x):
        return F.layer_norm(x, (d,), p[f"{name}.weight"], p[f"{name}.bias"], eps=1e-5)

    def lin(name, x):
        return F.linear(x, p[f"{name}.weight"], p[f"{name}.bias"])

    for s in range(s_n):
        seg = frames[s * length:(s + 1) * length]
        rc = frames[(s + 1) * length:(s + 1) * length + r]
        incoming = seg.mean(0)
        for i in range(c.n_layers):
            pre = f"layers.{i}"
            x = torch.cat([rc, seg])
            normed = ln(f"{pre}.ln_in", x)
            summary = normed[r:].mean(0)
            bank = fed[i][-c.max_memory:]
            left = ln_history[i][-c.left_context:] if c.left_context else []
            queries = [("row", t) for t in normed] + [("summary", summary)]
            keys = ([("memory", t) for t in bank] + [("rc", t) for t in normed[:r]]
                    + [("left", t) for t in left] + [("seg", t) for t in normed[r:]])
            q_tok = torch.stack([t for _, t in queries])
            k_tok = torch.stack([t for _, t in keys])
            mask = torch.tensor([[not (qk == "summary" and kk == "memory") for kk, _ in keys]
                                 for qk, _ in queries])
            sub_mask = torch.zeros(len(queries) * n, len(keys) * n, dtype=torch.bool)
            for a in range(len(queries) * n):
                for b in range(len(keys) * n):
                    sub_mask[a, b] = mask[a // n, b // n]

            qh, kh, vh = (
                lin(f"{pre}.attn.{name}", tok.reshape(-1, dn)).reshape(-1, h, dn // h)
                .transpose(0, 1)
                for name, tok in (("q_proj", q_tok), ("k_proj", k_tok), ("v_proj", k_tok)))
            ctx = F.scaled_dot_product_attention(qh, kh, vh, attn_mask=sub_mask)
            att = lin(f"{pre}.attn.out_proj", ctx.transpose(0, 1).reshape(-1, dn))
            att = att.reshape(len(queries), d)
            mem = att[-1]
            mem = torch.tanh(mem) if c.memory_squash == "tanh" else mem.clamp(
                -c.memory_clamp, c.memory_clamp)
            y = att[:-1] + x
            hid = F.relu(lin(f"{pre}.ffn.fc1", ln(f"{pre}.ln_ffn", y).reshape(-1, d // fn)))
            y = lin(f"{pre}.ffn.fc2", hid).reshape(-1, d) + y
            y = ln(f"{pre}.ln_out", y)
            ln_history[i].extend(normed[r:])
            fed[i].append(incoming)
            incoming = mem
            rc, seg = y[:r], y[r:]
        outputs.append(seg)
    return torch.cat(outputs)


VARIANTS = [
    {},
    {"head_mode": "keep"},
    {"fold_scope": "attn+ffn", "memory_squash": "tanh"},
    {"left_context": 6, "right_context": 0, "max_memory": 3},  # lc spans 2 segments, no rc
    {"left_context": 0, "right_context": 2},
]


@pytest.mark.parametrize("fold", [1, 2, 4])
def test_forward_equals_streaming_and_reference(fold):
    """>= 5 segments so that the memory bank (M=2) and left context (C=4) fill and roll."""
    cfg = _cfg(fold_factor=fold)
    model = build_model(cfg, seed=fold, dtype=DT)
    x = _frames(cfg, 6, seed=fold)
    with torch.no_grad():
        full = model(x)
        streamed = model.stream(x)
        ref = reference_encoder(model, x)
    assert full.shape == (24, 64)
    torch.testing.assert_close(streamed, full, rtol=0, atol=1e-5)
    torch.testing.assert_close(full, ref, rtol=0, atol=1e-5)


@pytest.mark.parametrize("fold", [2, 4])
@pytest.mark.parametrize("variant", VARIANTS[1:], ids=lambda v: ",".join(v))
def test_variants_forward_equals_streaming_and_reference(fold, variant):
    cfg = _cfg(fold_factor=fold, **variant)
    model = build_model(cfg, seed=3, dtype=DT)
    x = _frames(cfg, 5, seed=7)
    with torch.no_grad():
        full = model(x)
        torch.testing.assert_close(model.stream(x), full, rtol=0, atol=1e-5)
        torch.testing.assert_close(reference_encoder(model, x), full, rtol=0, atol=1e-5)


def test_float32_streaming_matches_full():
    cfg = _cfg(fold_factor=2)
    model = build_model(cfg, seed=1)
    x = _frames(cfg, 6).float()
    with torch.no_grad():
        torch.testing.assert_close(model.stream(x), model(x), rtol=0, atol=1e-5)


def test_infer_chunk_by_chunk_and_state_layout():
    cfg = _cfg(fold_factor=2, left_context=6)
    model = build_model(cfg, seed=0, dtype=DT)
    x = _frames(cfg, 5)
    state = None
    with torch.no_grad():
        full = model(x)
        for s in range(5):
            chunk = x[s * 4: s * 4 + 5]
            out, state = model.infer(chunk, state)
            torch.testing.assert_close(out, full[s * 4: s * 4 + 4], rtol=0, atol=1e-5)
            assert isinstance(state, StreamState) and state.segments == s + 1
            for ls in state.layers:
                assert ls.memory.shape == (min(s + 1, cfg.max_memory), 64)
                n_left = min((s + 1) * 4, 6)
                assert ls.lc_key.shape == ls.lc_value.shape == (n_left * 2, 32)
    # layer 0's bank holds the raw means of the last M segments, oldest first
    means = x[:20].reshape(5, 4, 64).mean(1)
    torch.testing.assert_close(state.layers[0].memory, means[-2:])


def _output_dependence(model, x, segment):
    """Which output segments change when input ``segment``'s frames change."""
    length = model.cfg.segment_length
    y = x.clone()
    g = torch.Generator().manual_seed(99)  # not a constant shift: LayerNorm would remove that
    y[segment * length:(segment + 1) * length] += torch.randn(length, x.shape[1], generator=g,
                                                              dtype=x.dtype)
    with torch.no_grad():
        a, b = model(x), model(y)
    diff = (a - b).abs().reshape(-1, length, model.cfg.d_model).amax(dim=(1, 2))
    return [bool(v > 1e-9) for v in diff]


def test_reach_of_memory_and_left_context():
    """One layer, no left context, M=2: segment s sees segments s-2..s (memories = raw means of
    the two previous segments) and its right context (the first frame of segment s+1)."""
    cfg = _cfg(n_layers=1, left_context=0, max_memory=2, fold_factor=2)
    model = build_model(cfg, seed=0, dtype=DT)
    x = _frames(cfg, 7)
    assert _output_dependence(model, x, 3) == [False, False, True, True, True, True, False]
    # with left context 4 (one segment) and no memory influence beyond it, the same reach
    cfg2 = _cfg(n_layers=1, left_context=4, max_memory=1, fold_factor=2)
    model2 = build_model(cfg2, seed=0, dtype=DT)
    assert _output_dependence(model2, x, 3) == [False, False, True, True, True, False, False]


def test_memory_reach_does_not_chain_through_summaries():
    """Two layers, no left or right context, M=1. Layer 1's memory for segment j is layer 0's
    summary output at j, and a summary never attends to the memory, so it depends on segment j
    only: the reach stays s-1..s however many layers there are."""
    cfg = _cfg(n_layers=2, left_context=0, max_memory=1, fold_factor=2, right_context=0)
    model = build_model(cfg, seed=0, dtype=DT)
    x = _frames(cfg, 7)
    assert _output_dependence(model, x, 2) == [False, False, True, True, False, False, False]


def test_step_trace_is_consistent():
    cfg = _cfg(fold_factor=2, memory_clamp=0.05)
    model = build_model(cfg, seed=2, dtype=DT)
    x = _frames(cfg, 4)
    state = None
    with torch.no_grad():
        for chunk in model.chunks(x):
            out, state, traces = model.infer_trace(chunk, state)
    tr = traces[0]
    n, heads = 2, cfg.attn_heads
    m, c = cfg.max_memory, cfg.left_context
    tq, tk = 1 + 4 + 1, m + 1 + c + 4
    expected_keys = {"x_in", "ln_in", "summary", "q", "k", "v", "allowed", "scores", "probs",
                     "context", "out_proj", "attn_out", "resid1", "ln_ffn", "ffn_pre",
                     "ffn_hidden", "ffn_out", "resid2", "ln_out", "new_memory", "lc_key",
                     "lc_value"}
    assert set(tr) == expected_keys
    assert tr["q"].shape == (tq * n, 32) and tr["k"].shape == tr["v"].shape == (tk * n, 32)
    assert tr["probs"].shape == (heads, tq * n, tk * n)
    # the summary's sub-token rows put no weight on the memory's sub-token columns
    assert torch.all(tr["probs"][:, -n:, : m * n] == 0)
    assert torch.all(tr["probs"][:, :-n, : m * n] > 0)
    torch.testing.assert_close(tr["summary"][0], tr["ln_in"][1:].mean(0))
    torch.testing.assert_close(tr["new_memory"], tr["attn_out"][-1].clamp(-0.05, 0.05))
    assert tr["new_memory"].abs().max() <= 0.05
    torch.testing.assert_close(tr["resid1"], tr["attn_out"][:-1] + tr["x_in"])
    torch.testing.assert_close(tr["ffn_hidden"], torch.relu(tr["ffn_pre"]))
    torch.testing.assert_close(tr["resid2"], tr["resid1"] + tr["ffn_out"])
    torch.testing.assert_close(traces[1]["x_in"], tr["ln_out"])
    torch.testing.assert_close(out, traces[-1]["ln_out"][1:])
    # the next layer's bank received this layer's new memory
    torch.testing.assert_close(state.layers[1].memory[-1], tr["new_memory"])
    # the left-context cache is the last C tokens of the key sequence (its segment part)
    torch.testing.assert_close(tr["lc_key"], tr["k"][-c * n:])
    torch.testing.assert_close(tr["lc_value"], tr["v"][-c * n:])


def test_layer_step_is_callable_directly():
    cfg = _cfg(fold_factor=2)
    model = build_model(cfg, seed=5, dtype=DT)
    layer = model.layers[0]
    x = _frames(cfg, 1)[:5]
    with torch.no_grad():
        res = layer.step(x, torch.zeros(0, 64, dtype=DT), torch.zeros(0, 32, dtype=DT),
                         torch.zeros(0, 32, dtype=DT))
    assert res.out.shape == (5, 64) and res.new_memory.shape == (64,)
    assert res.lc_key.shape == (8, 32) and res.trace is None
    with pytest.raises(ValueError, match="right_context"):
        layer.step(x[:4], torch.zeros(0, 64, dtype=DT), torch.zeros(0, 32, dtype=DT),
                   torch.zeros(0, 32, dtype=DT))
    with pytest.raises(ValueError, match="max_memory"):
        layer.step(x, torch.zeros(3, 64, dtype=DT), torch.zeros(0, 32, dtype=DT),
                   torch.zeros(0, 32, dtype=DT))


def test_masks_match_the_spec():
    allowed = step_attention_mask(2, 1, 3, 4)
    assert allowed.shape == (6, 10)
    assert allowed[:-1].all() and not allowed[-1, :2].any() and allowed[-1, 2:].all()
    cfg = _cfg(segment_length=2, right_context=1, left_context=3, max_memory=1)
    full = full_attention_mask(cfg, 3)
    # rows: rc0 rc1 rc2 | u0..u5 | s0 s1 s2 ; cols: m0 m1 | rc0 rc1 rc2 | u0..u5
    rc_row_seg2 = [0, 1, 0, 0, 1, 0, 1, 1, 1, 1, 1]  # memory 1 only (M=1), lc = u1..u3
    assert full[2].int().tolist() == rc_row_seg2
    assert full[3 + 4].int().tolist() == rc_row_seg2  # u4 is in segment 2
    assert full[9 + 2].int().tolist() == [0, 0, 0, 0, 1, 0, 1, 1, 1, 1, 1]  # summary 2
    assert full[9].int().tolist() == [0, 0, 1, 0, 0, 1, 1, 0, 0, 0, 0]     # summary 0


def test_input_errors_are_clear():
    cfg = _cfg()
    model = build_model(cfg, seed=0)
    with pytest.raises(ValueError, match="n_segments\\*segment_length \\+ right_context"):
        model(torch.zeros(4 * 3 + 3, 64))
    with pytest.raises(ValueError, match="chunk must have"):
        model.infer(torch.zeros(4, 64))
    with pytest.raises(ValueError, match="d_model=64"):
        model(torch.zeros(9, 32))
    with pytest.raises(TypeError, match="dtype"):
        model(torch.zeros(9, 64, dtype=DT))


def test_seeded_init_is_deterministic_and_named():
    cfg = _cfg(fold_factor=2)
    a, b, c = build_model(cfg, seed=11), build_model(cfg, seed=11), build_model(cfg, seed=12)
    sa, sb, sc = a.state_dict(), b.state_dict(), c.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert not torch.equal(sa["layers.0.attn.q_proj.weight"], sc["layers.0.attn.q_proj.weight"])
    d = build_model(cfg, seed=11, dtype=DT)
    assert all(torch.equal(sa[k].double(), v) for k, v in d.state_dict().items())
    expected = {f"layers.{i}.{m}.{w}" for i in range(2) for w in ("weight", "bias")
                for m in ("ln_in", "attn.q_proj", "attn.k_proj", "attn.v_proj",
                          "attn.out_proj", "ln_ffn", "ffn.fc1", "ffn.fc2", "ln_out")}
    assert set(sa) == expected
    # LayerNorm parameters are perturbed away from the identity
    assert not torch.equal(sa["layers.0.ln_in.weight"], torch.ones(64))
