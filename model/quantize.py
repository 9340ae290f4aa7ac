"""Post-training quantization: observers on seeded calibration data -> integer parameters.

Scheme (``docs/NUMERICS.md`` section "Quantized model"):

* weights int8 symmetric per output channel, ``s_w = max|w| / 127`` (``torch.ao``
  ``PerChannelMinMaxObserver``, range [-127, 127]); stored transposed as ``(in, out)`` so that a
  GEMM is ``activation (M, in) @ weight (in, out)``;
* activations int8 symmetric per tensor (``torch.ao`` ``HistogramObserver``, range [-127, 127]:
  the clipping range that minimizes the L2 quantization error of the calibration values) at
  every point the hardware materializes (:data:`ACT_POINTS`);
* biases int32 with scale ``s_in * s_w``; requantization ``(m, s)`` per output column;
* softmax probabilities have the fixed scale ``2**-7``.

The memory bank of layer ``l`` is stored at that layer's ``attn_in`` scale (the input scale of
its Q/K/V projections), so one K/V GEMM covers ``[memory; right context; segment]``.

Input frames are sent as *centered* rows ``x - mean_row(x)`` (scale ``input``) plus the per-frame
means (scale ``input_mean``), see :func:`split_input`. Layer 0 uses the centered rows for its
LayerNorm and residual path, which is exact: LayerNorm is invariant to a per-row offset and the
residual stream only reaches the output through LayerNorms. Only the memory vector that enters
layer 0's bank needs the raw mean, and it adds the means back. Log-mel frames carry a large
per-frame level; without centering it would take most of the int8 range of the input and of the
first layer's residual sums (centering gains 1.2 to 2 dB per layer on configs/demo.toml).

Integer parameters live in a flat ``{name: array}`` dict (names from :func:`tensor_specs`), the
format the exporter writes and the golden model, ISA simulator and compiler read.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from model import intops
from model.config import Config

#: Activation points of a layer, in dataflow order (each one int8 tensor with one scale).
ACT_POINTS = ("x_in", "attn_in", "q", "k", "v", "score", "prob", "ctx", "attn_out", "resid1",
              "ln_ffn", "ffn_hidden", "ffn_out", "resid2", "ln_out")
LINEARS = ("q", "k", "v", "out", "fc1", "fc2")
LAYERNORMS = ("ln_in", "ln_ffn", "ln_out")
RESIDUALS = ("resid1", "resid2")
PROB_SCALE = 2.0**-intops.PROB_BITS
CALIB_UTTERANCES = 4
CALIB_SEGMENTS = 8


@dataclass(frozen=True)
class QuantModel:
    """A quantized encoder: config, the seed that made the float weights, integer tensors,
    activation scales (``"input"`` and ``"L{l}.{point}"``) and per-channel weight scales."""

    config: Config
    seed: int
    tensors: dict[str, np.ndarray]
    scales: dict[str, float]
    weight_scales: dict[str, np.ndarray]
    calibration: dict[str, Any] = field(default_factory=dict)

    def __getitem__(self, name: str) -> np.ndarray:
        return self.tensors[name]

    def scale(self, layer: int, point: str) -> float:
        return self.scales[f"L{layer}.{point}"]


def ffn_fold(cfg: Config) -> int:
    """Fold factor of the FFN (``fold_factor`` with ``fold_scope='attn+ffn'``, else 1)."""
    m = cfg.model
    return m.fold_factor if m.fold_scope == "attn+ffn" else 1


def tensor_specs(cfg: Config) -> dict[str, tuple[tuple[int, ...], str]]:
    """Every integer tensor of a quantized model: ``name -> (shape, dtype)``."""
    m = cfg.model
    d, dn, fn = m.d_model, m.folded_dim, ffn_fold(cfg)
    one = (1,)
    specs: dict[str, tuple[tuple[int, ...], str]] = {
        "rsqrt_lut": ((intops.RSQRT_LUT_SIZE,), "int32"),
        "input_mem.m_a": (one, "int32"), "input_mem.m_b": (one, "int32"),
        "input_mem.s": (one, "int32")}
    lin_shapes = {"q": (dn, dn), "k": (dn, dn), "v": (dn, dn), "out": (dn, dn),
                  "fc1": (d // fn, m.ffn_dim // fn), "fc2": (m.ffn_dim // fn, d // fn)}
    for layer in range(m.n_layers):
        p = f"L{layer}."
        for ln in LAYERNORMS:
            specs |= {p + ln + ".gamma": ((d,), "int8"), p + ln + ".beta": ((d,), "int32"),
                      p + ln + ".m": (one, "int32"), p + ln + ".s": (one, "int32"),
                      p + ln + ".eps": (one, "int64")}
        for lin, (k, n) in lin_shapes.items():
            specs |= {p + lin + ".weight": ((k, n), "int8"), p + lin + ".bias": ((n,), "int32"),
                      p + lin + ".m": ((n,), "int32"), p + lin + ".s": ((n,), "int32")}
        specs |= {p + "score.m": (one, "int32"), p + "score.s": (one, "int32"),
                  p + "score.exp_lut": ((intops.EXP_LUT_SIZE,), "int32"),
                  p + "ctx.m": (one, "int32"), p + "ctx.s": (one, "int32")}
        for res in ("resid1", "resid2"):
            specs |= {p + res + ".m_a": (one, "int32"), p + res + ".m_b": (one, "int32"),
                      p + res + ".s": (one, "int32")}
        if layer == 0:
            continue
        if m.memory_squash == "tanh":
            specs[p + "mem_in.lut"] = ((256,), "int8")
        else:
            specs |= {p + "mem_in.m": (one, "int32"), p + "mem_in.s": (one, "int32"),
                      p + "mem_in.lo": (one, "int32"), p + "mem_in.hi": (one, "int32")}
    return specs


def split_input(frames: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Float frames ``(T, D)`` -> ``(centered (T, D), means (T,))`` in float64: ``means[t] =
    mean(frames[t])``, ``centered[t] = frames[t] - means[t]``."""
    x = np.asarray(frames, dtype=np.float64)
    means = x.mean(axis=1)
    return x - means[:, None], means


def _rhu(x: np.ndarray) -> np.ndarray:
    return np.floor(np.asarray(x, dtype=np.float64) + 0.5)


def _per_tensor_observer():
    import torch
    from torch.ao.quantization import HistogramObserver
    return HistogramObserver(dtype=torch.qint8, qscheme=torch.per_tensor_symmetric,
                             quant_min=-127, quant_max=127)


def _weight_scales(weight) -> np.ndarray:
    import torch
    from torch.ao.quantization import PerChannelMinMaxObserver
    obs = PerChannelMinMaxObserver(ch_axis=0, dtype=torch.qint8,
                                   qscheme=torch.per_channel_symmetric, quant_min=-127,
                                   quant_max=127)
    obs(weight.detach().float())
    return obs.calculate_qparams()[0].double().numpy()


def calibrate(model, utterances: list[np.ndarray]) -> dict[str, float]:
    """Activation scales from streaming the float model over ``utterances``.

    Observes the centered input rows (``"input"``) and the frame means (``"input_mean"``) of
    :func:`split_input` and, per layer, every point of :data:`ACT_POINTS` (``attn_in`` covers
    the LayerNorm output, the summary and the memory vectors the layer receives; ``score`` only
    the unmasked entries; layer 0's residual sums without the frame means, as the integer model
    computes them). ``prob`` is fixed at ``2**-7``; ``x_in``
    is the model input's scale (layer 0) or the previous layer's ``ln_out`` scale.
    """
    import torch

    cfg = model.cfg
    n_layers = cfg.n_layers
    obs = {"input": _per_tensor_observer(), "input_mean": _per_tensor_observer()}
    for layer in range(n_layers):
        for point in ACT_POINTS:
            if point not in ("x_in", "prob"):
                obs[f"L{layer}.{point}"] = _per_tensor_observer()
    trace_keys = {"q": "q", "k": "k", "v": "v", "ctx": "context", "attn_out": "attn_out",
                  "resid1": "resid1", "ln_ffn": "ln_ffn", "ffn_hidden": "ffn_hidden",
                  "ffn_out": "ffn_out", "resid2": "resid2", "ln_out": "ln_out"}
    with torch.no_grad():
        for utt in utterances:
            frames = torch.as_tensor(utt, dtype=model.dtype)
            centered, means = split_input(utt)
            obs["input"](torch.as_tensor(centered))
            obs["input_mean"](torch.as_tensor(means))
            means = torch.as_tensor(means, dtype=model.dtype)
            state = None
            length, r = cfg.segment_length, cfg.right_context
            for s, chunk in enumerate(model.chunks(frames)):
                incoming = chunk[:length].mean(dim=0, keepdim=True)
                # Per-row offset of layer 0's residual stream: the frame means, rows [rc; seg].
                mu = means[s * length: (s + 1) * length + r]
                offset = torch.cat([mu[length:], mu[:length]]).reshape(-1, 1)
                _, state, traces = model.infer_trace(chunk, state)
                for layer, tr in enumerate(traces):
                    p = f"L{layer}."
                    obs[p + "attn_in"](torch.cat([tr["ln_in"], tr["summary"], incoming]))
                    scores = tr["scores"]
                    obs[p + "score"](scores[torch.isfinite(scores)])
                    for point, key in trace_keys.items():
                        v = tr[key]
                        obs[p + point](v - offset if layer == 0 and point in RESIDUALS else v)
                    incoming = tr["new_memory"].reshape(1, -1)
    scales = {name: float(o.calculate_qparams()[0]) for name, o in obs.items()}
    for layer in range(n_layers):
        # A layer's input is the model input or the previous layer's output tensor itself.
        scales[f"L{layer}.x_in"] = scales["input" if layer == 0 else f"L{layer - 1}.ln_out"]
        scales[f"L{layer}.prob"] = PROB_SCALE
    return {k: scales[k] for k in sorted(scales)}


def _linear_params(p: str, lin, s_in: float, s_out: float, tensors: dict,
                   wscales: dict) -> None:
    w = lin.weight.detach().double().numpy()
    b = lin.bias.detach().double().numpy()
    s_w = _weight_scales(lin.weight)
    wq = np.clip(_rhu(w / s_w[:, None]), -127, 127).astype(np.int8).T
    bq = _rhu(b / (s_in * s_w))
    if np.any(np.abs(bq) > 2**30):
        raise ValueError(f"{p}bias does not fit int32 at scale s_in*s_w; the activation scale "
                         f"{s_in} is too small for this bias")
    m, s = intops.quantize_multiplier(s_in * s_w / s_out)
    tensors |= {p + "weight": np.ascontiguousarray(wq), p + "bias": bq.astype(np.int32),
                p + "m": m.astype(np.int32), p + "s": s.astype(np.int32)}
    wscales[p + "weight"] = s_w


def _ln_params(p: str, ln, s_in: float, s_out: float, tensors: dict) -> None:
    d = ln.weight.shape[0]
    g, b, m, s = intops.quantize_layernorm(ln.weight.detach().double().numpy(),
                                           ln.bias.detach().double().numpy(), s_out)
    tensors |= {p + "gamma": g, p + "beta": b, p + "m": np.array([m], np.int32),
                p + "s": np.array([s], np.int32),
                p + "eps": np.array([intops.layernorm_eps_int(ln.eps, s_in, d)], np.int64)}


def _scalars(p: str, **values: int) -> dict[str, np.ndarray]:
    return {p + k: np.array([v], np.int32) for k, v in values.items()}


def quantize_params(model, scales: dict[str, float]) -> tuple[dict, dict]:
    """Integer tensors and per-channel weight scales of ``model`` for activation ``scales``."""
    cfg = model.cfg
    tensors: dict[str, np.ndarray] = {"rsqrt_lut": intops.RSQRT_LUT.copy()}
    wscales: dict[str, np.ndarray] = {}
    for layer, mod in enumerate(model.layers):
        p = f"L{layer}."

        def sc(point: str, layer: int = layer) -> float:
            return scales[f"L{layer}.{point}"]

        _ln_params(p + "ln_in.", mod.ln_in, sc("x_in"), sc("attn_in"), tensors)
        for name, point in (("q", "q"), ("k", "k"), ("v", "v")):
            _linear_params(p + name + ".", getattr(mod.attn, f"{name}_proj"), sc("attn_in"),
                           sc(point), tensors, wscales)
        sm, ss = intops.quantize_multiplier(sc("q") * sc("k") * mod.attn.scale / sc("score"))
        tensors |= _scalars(p + "score.", m=sm, s=ss)
        tensors[p + "score.exp_lut"] = intops.make_exp_lut(sc("score"))
        cm, cs = intops.quantize_multiplier(PROB_SCALE * sc("v") / sc("ctx"))
        tensors |= _scalars(p + "ctx.", m=cm, s=cs)
        _linear_params(p + "out.", mod.attn.out_proj, sc("ctx"), sc("attn_out"), tensors,
                       wscales)
        ma, mb, s = intops.quantize_add_multipliers(sc("attn_out"), sc("x_in"), sc("resid1"))
        tensors |= _scalars(p + "resid1.", m_a=ma, m_b=mb, s=s)
        _ln_params(p + "ln_ffn.", mod.ln_ffn, sc("resid1"), sc("ln_ffn"), tensors)
        _linear_params(p + "fc1.", mod.ffn.fc1, sc("ln_ffn"), sc("ffn_hidden"), tensors,
                       wscales)
        _linear_params(p + "fc2.", mod.ffn.fc2, sc("ffn_hidden"), sc("ffn_out"), tensors,
                       wscales)
        ma, mb, s = intops.quantize_add_multipliers(sc("ffn_out"), sc("resid1"), sc("resid2"))
        tensors |= _scalars(p + "resid2.", m_a=ma, m_b=mb, s=s)
        _ln_params(p + "ln_out.", mod.ln_out, sc("resid2"), sc("ln_out"), tensors)
        # Memory entering this layer's bank: layer 0 gets the mean of the raw input segment =
        # mean of the centered rows + mean of the frame means (no squash); layer l > 0 gets
        # layer l-1's summary output, squashed (clamp or tanh table).
        if layer == 0:
            ma, mb, s = intops.quantize_add_multipliers(scales["input"], scales["input_mean"],
                                                        sc("attn_in"))
            tensors |= _scalars("input_mem.", m_a=ma, m_b=mb, s=s)
            continue
        s_src = scales[f"L{layer - 1}.attn_out"]
        if cfg.memory_squash == "tanh":
            tensors[p + "mem_in.lut"] = intops.make_tanh_lut(s_src, sc("attn_in"))
            continue
        mm, ms = intops.quantize_multiplier(s_src / sc("attn_in"))
        c = cfg.memory_clamp / sc("attn_in")
        lo = max(intops.I8_MIN, math.floor(-c + 0.5))
        hi = min(intops.I8_MAX, math.floor(c + 0.5))
        tensors |= _scalars(p + "mem_in.", m=mm, s=ms, lo=lo, hi=hi)
    return tensors, wscales


def quantize_model(cfg: Config, seed: int = 0, n_utterances: int = CALIB_UTTERANCES,
                   n_segments: int = CALIB_SEGMENTS) -> QuantModel:
    """Build the float model from ``seed`` (:func:`model.encoder.build_model`), calibrate on
    ``n_utterances`` seeded calibration utterances of ``n_segments`` segments
    (:func:`model.calibration.calibration_set` with the same seed) and quantize it."""
    from model.calibration import calibration_set
    from model.encoder import build_model

    model = build_model(cfg, seed=seed)
    data = calibration_set(cfg, n_utterances, n_segments, seed)
    scales = calibrate(model, data)
    tensors, wscales = quantize_params(model, scales)
    specs = tensor_specs(cfg)
    if set(specs) != set(tensors):  # internal consistency: the spec is the export contract
        raise AssertionError(f"quantizer/spec mismatch: {sorted(set(specs) ^ set(tensors))}")
    calib = {"n_utterances": n_utterances, "n_segments": n_segments, "data_seed": seed,
             "observer": "activations torch.ao HistogramObserver, weights "
                         "PerChannelMinMaxObserver; symmetric [-127, 127]"}
    return QuantModel(cfg, seed, {k: tensors[k] for k in sorted(tensors)}, scales, wscales,
                      calib)
