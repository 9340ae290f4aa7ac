"""Post-training quantization: observers on seeded calibration data -> integer parameters.

Scheme (``docs/NUMERICS.md`` section "Quantized model"):

* weights int8 symmetric per output channel, ``s_w = max|w| / 127`` (``torch.ao``
  ``PerChannelMinMaxObserver``, range [-127, 127]); stored transposed as ``(in, out)`` so that a
  GEMM is ``activation (M, in) @ weight (in, out)``;
* GEMM-side activations int8 symmetric per tensor (``torch.ao`` ``HistogramObserver``, range
  [-127, 127]: the clipping range that minimizes the L2 quantization error of the calibration
  values), with :data:`I8_HEADROOM` on the LayerNorm outputs that feed GEMMs and on the
  attention context and output (:data:`I8_HEADROOM_POINTS`);
* the residual stream int16 symmetric per tensor (:data:`I16_POINTS`): the input frames the
  host sends (``input``: ``MinMaxObserver`` range times :data:`INPUT_HEADROOM`), the residual
  sums ``resid1``/``resid2`` (every LayerNorm input) and the layer outputs ``ln_out``; their
  scales after the input are worst-case bounds, so they cannot saturate;
* biases int32 with scale ``s_in * s_w``; requantization ``(m, s)`` per output column;
* softmax probabilities unsigned 8-bit with the fixed scale ``2**-8``, fed to the int8 array
  with zero point 128.

The memory bank of layer ``l`` is stored at that layer's ``attn_in`` scale (the input scale of
its Q/K/V projections), so one K/V GEMM covers ``[memory; right context; segment]``. Layer 0's
bank receives the mean of the raw input segment: the int32 column sum of the int16 frames,
requantized straight to ``L0.attn_in`` (``input_mem``, the ``1/L`` folded into the multiplier).

Integer parameters live in a flat ``{name: array}`` dict (names from :func:`tensor_specs`), the
format the exporter writes and the golden model, ISA simulator and compiler read.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
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
#: Activation points held as int16 (the residual stream); ``x_in`` is ``input`` (layer 0) or
#: the previous layer's ``ln_out``, so it is int16 too.
I16_POINTS = ("x_in", "resid1", "resid2", "ln_out")
#: The input scale is ``INPUT_HEADROOM * max|calibration frame value| / 32767``.
INPUT_HEADROOM = 2.0
#: int8 points whose calibrated range is widened by I8_HEADROOM: the LayerNorm outputs that
#: feed GEMMs and the attention context and output. Unseen utterances with peaky or flat
#: frames or unusual attention patterns exceed the calibration maximum there
#: (docs/NUMERICS.md, "Accuracy").
I8_HEADROOM_POINTS = ("attn_in", "ln_ffn", "ctx", "attn_out")
I8_HEADROOM = 1.5
PROB_SCALE = 2.0**-intops.PROB_U8_BITS
#: The speech head and tail (``n_features`` / ``vocab`` > 0): int8 GEMMs on the accelerator.
HEAD = "input_proj"
TAIL = "classifier"
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

    @property
    def output_scale(self) -> float:
        """Scale of a step's output: the logits, or the last layer's ``ln_out``."""
        m = self.config.model
        return self.scales["logits"] if m.vocab else self.scale(m.n_layers - 1, "ln_out")


def model_points(cfg: Config) -> list[str]:
    """The activation scales outside the layers: ``features`` (the host's int8 feature rows,
    with an input projection), ``input`` (int16, the first layer's input rows), ``logits``
    (int8, with a classifier)."""
    m = cfg.model
    return (["features"] if m.n_features else []) + ["input"] + (["logits"] if m.vocab else [])


def _linear_spec(p: str, k: int, n: int) -> dict[str, tuple[tuple[int, ...], str]]:
    return {p + "weight": ((k, n), "int8"), p + "bias": ((n,), "int32"),
            p + "m": ((n,), "int32"), p + "s": ((n,), "int32")}


def tensor_specs(cfg: Config) -> dict[str, tuple[tuple[int, ...], str]]:
    """Every integer tensor of a quantized model: ``name -> (shape, dtype)``."""
    m = cfg.model
    d, dn, fn = m.d_model, m.folded_dim, m.ffn_fold
    one = (1,)
    specs: dict[str, tuple[tuple[int, ...], str]] = {
        "rsqrt_lut": ((intops.RSQRT_LUT_SIZE,), "int32"),
        "input_mem.m": (one, "int32"), "input_mem.s": (one, "int32")}
    if m.n_features:
        specs |= _linear_spec(HEAD + ".", m.n_features, d)
    if m.vocab:
        specs |= _linear_spec(TAIL + ".", d, m.vocab)
    lin_shapes = {"q": (dn, dn), "k": (dn, dn), "v": (dn, dn), "out": (dn, dn),
                  "fc1": (d // fn, m.ffn_dim // fn), "fc2": (m.ffn_dim // fn, d // fn)}
    for layer in range(m.n_layers):
        p = f"L{layer}."
        for ln in LAYERNORMS:
            specs |= {p + ln + ".gamma": ((d,), "int8"), p + ln + ".beta": ((d,), "int32"),
                      p + ln + ".m": (one, "int32"), p + ln + ".s": (one, "int32"),
                      p + ln + ".eps": (one, "int64")}
        for lin, (k, n) in lin_shapes.items():
            specs |= _linear_spec(p + lin + ".", k, n)
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


def is_int16(name: str, cfg: Config | None = None) -> bool:
    """Whether the activation scale ``name`` (``"input"``, ``"features"``, ``"logits"`` or
    ``"L{l}.{point}"``) belongs to an int16 tensor (the residual stream) rather than an int8
    one. With a classifier (``cfg.model.vocab``) the last layer's ``ln_out`` is int8: it is
    the classifier's GEMM operand."""
    if cfg is not None and name == last_ln_out(cfg):
        return False
    return name == "input" or name.rsplit(".", 1)[-1] in I16_POINTS


def last_ln_out(cfg: Config) -> str | None:
    """The scale name of the last layer's output when it is int8 (a classifier follows)."""
    m = cfg.model
    return f"L{m.n_layers - 1}.ln_out" if m.vocab else None


def _rhu(x: np.ndarray) -> np.ndarray:
    return np.floor(np.asarray(x, dtype=np.float64) + 0.5)


@contextmanager
def torch_single_thread() -> Iterator[None]:
    """Run torch on one intra-op thread inside the block, then restore the setting.

    Streaming runs many small per-segment ops; extra threads only add synchronization.
    Measured on the shared 2-core machine: quantizing configs/tiny.toml 0.25 s with one
    thread against 6.8 s with two, configs/emformer_base.toml 9 s against 24 s.
    """
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _per_tensor_observer():
    import torch
    from torch.ao.quantization import HistogramObserver
    return HistogramObserver(dtype=torch.qint8, qscheme=torch.per_tensor_symmetric,
                             quant_min=-127, quant_max=127)


def _int16_observer():
    import torch
    from torch.ao.quantization import MinMaxObserver
    return MinMaxObserver(dtype=torch.qint32, qscheme=torch.per_tensor_symmetric,
                          quant_min=-intops.I16_MAX, quant_max=intops.I16_MAX)


def _weight_scales(weight) -> np.ndarray:
    import torch
    from torch.ao.quantization import PerChannelMinMaxObserver
    obs = PerChannelMinMaxObserver(ch_axis=0, dtype=torch.qint8,
                                   qscheme=torch.per_channel_symmetric, quant_min=-127,
                                   quant_max=127)
    obs(weight.detach().float())
    return obs.calculate_qparams()[0].double().numpy()


def observe_ranges(model, utterances: list[np.ndarray]) -> dict[str, float]:
    """Observer scales from streaming the float model over ``utterances``: ``input``
    (``MinMaxObserver``, int16 range) and, per layer, the int8 points of :data:`ACT_POINTS`
    (``HistogramObserver``; ``attn_in`` covers the LayerNorm output, the summary and the memory
    vectors the layer receives; ``score`` only the unmasked entries). The values of a point are
    gathered over all utterances and segments and observed in one call."""
    import torch

    cfg = model.cfg
    i8_points = [p for p in ACT_POINTS if p not in I16_POINTS and p != "prob"]
    last = f"L{cfg.n_layers - 1}.ln_out"
    values: dict[str, list] = {"input": []}
    if cfg.n_features:
        values["features"] = []
    if cfg.vocab:
        values |= {"logits": [], last: []}
    values |= {f"L{layer}.{point}": [] for layer in range(cfg.n_layers) for point in i8_points}
    trace_keys = {"q": "q", "k": "k", "v": "v", "ctx": "context", "attn_out": "attn_out",
                  "ln_ffn": "ln_ffn", "ffn_hidden": "ffn_hidden", "ffn_out": "ffn_out"}
    with torch.no_grad(), torch_single_thread():
        for utt in utterances:
            frames = torch.as_tensor(utt, dtype=model.dtype)
            if cfg.n_features:
                values["features"].append(frames)
            values["input"].append(model.project(frames))
            state = None
            for chunk in model.chunks(frames):
                incoming = model.project(chunk)[:cfg.segment_length].mean(dim=0, keepdim=True)
                out, state, traces = model.infer_trace(chunk, state)
                if cfg.vocab:
                    values["logits"].append(out)
                    values[last].append(traces[-1]["ln_out"])
                for layer, tr in enumerate(traces):
                    p = f"L{layer}."
                    values[p + "attn_in"].append(torch.cat([tr["ln_in"], tr["summary"],
                                                            incoming]))
                    scores = tr["scores"]
                    values[p + "score"].append(scores[torch.isfinite(scores)])
                    for point, key in trace_keys.items():
                        values[p + point].append(tr[key])
                    incoming = tr["new_memory"].reshape(1, -1)
    observed = {}
    with torch_single_thread():
        for name, parts in values.items():
            obs = _int16_observer() if name == "input" else _per_tensor_observer()
            obs(torch.cat([t.reshape(-1) for t in parts]))
            observed[name] = float(obs.calculate_qparams()[0])
    return observed


def derive_scales(model, observed: dict[str, float]) -> dict[str, float]:
    """All activation scales from the observer scales of :func:`observe_ranges`:

    * ``input`` (int16) times :data:`INPUT_HEADROOM`;
    * int8 points as observed, times :data:`I8_HEADROOM` for :data:`I8_HEADROOM_POINTS`;
      ``prob`` is fixed at ``2**-8``;
    * int16 points are worst-case bounds, not observed, so nothing after the host's input
      quantization can saturate: ``ln_out`` from :func:`ln_out_bound`, ``resid1 =
      residual_scale(s_attn_out, s_x_in)``, ``resid2 = residual_scale(s_ffn_out, s_resid1)``;
      ``x_in`` is ``input`` (layer 0) or the previous layer's ``ln_out``.
    """
    scales = dict(observed)
    scales["input"] *= INPUT_HEADROOM
    n_layers = model.cfg.n_layers
    for layer in range(n_layers):
        p = f"L{layer}."
        for point in I8_HEADROOM_POINTS:
            scales[p + point] *= I8_HEADROOM
        scales[p + "prob"] = PROB_SCALE
        # A layer's input is the model input or the previous layer's output tensor itself.
        scales[p + "x_in"] = scales["input" if layer == 0 else f"L{layer - 1}.ln_out"]
        scales[p + "resid1"] = residual_scale(scales[p + "attn_out"], scales[p + "x_in"])
        scales[p + "resid2"] = residual_scale(scales[p + "ffn_out"], scales[p + "resid1"])
        if layer == n_layers - 1 and model.cfg.vocab:
            scales[p + "ln_out"] *= I8_HEADROOM      # int8: the classifier's operand
        else:
            scales[p + "ln_out"] = ln_out_bound(model.layers[layer].ln_out) / intops.I16_MAX
    if model.cfg.vocab:
        scales["logits"] *= I8_HEADROOM
    return {k: scales[k] for k in sorted(scales)}


def calibrate(model, utterances: list[np.ndarray]) -> dict[str, float]:
    """Activation scales of ``model`` calibrated on ``utterances``:
    ``derive_scales(model, observe_ranges(model, utterances))``."""
    return derive_scales(model, observe_ranges(model, utterances))


def residual_scale(s_branch: float, s_stream: float) -> float:
    """int16 scale of ``branch (int8) + stream (int16)`` that no input can saturate:
    ``(128 s_branch + 32768 s_stream) (1 + 2**-6) / 32767``. The branch ratio is then below
    252, so the shared shift is ``s >= 7``, and the multipliers' rounding in
    :func:`intops.add_requant_i16` adds at most ``(128 + 32768) * 2**-(s+1) + 1/2 < 130`` LSB,
    inside the ``> 500`` LSB margin."""
    return (128 * s_branch + 32768 * s_stream) * (1 + 2**-6) / intops.I16_MAX


def ln_out_bound(ln) -> float:
    """Largest ``|real value|`` a LayerNorm's integer output can take: ``max_i (z_max |g_q[i]|
    + |b_q[i]|) * s_g / 2**8`` with ``z_max = intops.layernorm_z_max(D)`` and the quantized
    ``gamma_q``, ``beta_q`` of :func:`intops.quantize_layernorm` (independent of the output
    scale), widened by ``2**-10`` so that the rounded multiplier cannot push a value past
    ``sat16``."""
    g_real = ln.weight.detach().double().numpy()
    gq, bq, _, _ = intops.quantize_layernorm(g_real, ln.bias.detach().double().numpy(), 1.0)
    gmax = float(np.max(np.abs(g_real)))
    s_g = (gmax if gmax > 0 else 1.0) / intops.I8_MAX
    zmax = intops.layernorm_z_max(g_real.shape[0])
    acc_max = float(np.max(zmax * np.abs(gq.astype(np.float64)) + np.abs(bq)))
    return max(acc_max, 1.0) * s_g * 2.0**-intops.LN_FRAC_BITS * (1 + 2**-10)


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
    if cfg.n_features:
        _linear_params(HEAD + ".", model.input_proj, scales["features"], scales["input"],
                       tensors, wscales)
    if cfg.vocab:
        _linear_params(TAIL + ".", model.classifier, scales[f"L{cfg.n_layers - 1}.ln_out"],
                       scales["logits"], tensors, wscales)
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
        # Memory entering this layer's bank: layer 0 gets the mean of the raw input segment (an
        # int32 column sum of the int16 frames, requantized with the 1/L folded into the
        # multiplier; no squash); layer l > 0 gets layer l-1's summary output, squashed (clamp
        # or tanh table).
        if layer == 0:
            mm, ms = intops.quantize_multiplier(
                scales["input"] / (cfg.segment_length * sc("attn_in")))
            tensors |= _scalars("input_mem.", m=mm, s=ms)
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


#: The stages of :func:`quantize_model`, in order (for progress displays).
QUANTIZE_STAGES = ("build the float model", "make the calibration data",
                   "calibrate: observe activation ranges", "quantize the weights")


def quantize_model(cfg: Config, seed: int = 0, n_utterances: int = CALIB_UTTERANCES,
                   n_segments: int = CALIB_SEGMENTS,
                   stage: Callable[[str], AbstractContextManager] | None = None) -> QuantModel:
    """Build the float model from ``seed`` (:func:`model.encoder.build_model`), calibrate on
    ``n_utterances`` seeded calibration utterances of ``n_segments`` segments
    (:func:`model.calibration.calibration_set` with the same seed) and quantize it.
    ``stage(name)``, if given, wraps each of :data:`QUANTIZE_STAGES` (e.g. a progress step)."""
    from model.calibration import calibration_set
    from model.encoder import build_model

    names = iter(QUANTIZE_STAGES)
    step = (lambda: stage(next(names))) if stage else contextlib.nullcontext
    with step():
        model = build_model(cfg, seed=seed)
    with step():
        data = calibration_set(cfg, n_utterances, n_segments, seed)
    calib = {"n_utterances": n_utterances, "n_segments": n_segments, "data_seed": seed}
    return quantize_float_model(cfg, model, data, seed, calib, step)


OBSERVERS = ("activations torch.ao HistogramObserver, weights PerChannelMinMaxObserver; "
             "symmetric [-127, 127]")


def quantize_float_model(cfg: Config, model, data: list[np.ndarray], seed: int,
                         calibration: dict[str, Any],
                         step: Callable[[], AbstractContextManager] = contextlib.nullcontext
                         ) -> QuantModel:
    """Calibrate the float ``model`` (of ``cfg``) on the utterances ``data`` and quantize it;
    ``calibration`` describes the data (recorded in the export). ``step()`` wraps the two
    stages (calibrate, quantize) for progress displays."""
    with step():
        scales = calibrate(model, data)
    with step():
        tensors, wscales = quantize_params(model, scales)
    specs = tensor_specs(cfg)
    if set(specs) != set(tensors):  # internal consistency: the spec is the export contract
        raise AssertionError(f"quantizer/spec mismatch: {sorted(set(specs) ^ set(tensors))}")
    calib = {**calibration, "observer": OBSERVERS}
    return QuantModel(cfg, seed, {k: tensors[k] for k in sorted(tensors)}, scales, wscales,
                      calib)
