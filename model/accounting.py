"""Parameter, weight-byte, MAC and softmax counts of the encoder — pure Python (no torch).

Symbols: D = d_model, F = ffn_dim, H = n_heads, N = fold_factor, L = segment_length,
R = right_context, C = left_context, M = max_memory.

Parameters per layer (the encoder has nothing outside its layers):

* attention: Q, K, V, out projections, each ``D/N x D/N`` + bias: ``4(D/N)^2 + 4D/N``;
* FFN: ``2DF + F + D`` (``fold_scope='attn'``) or ``2(D/N)(F/N) + F/N + D/N`` (``'attn+ffn'``);
* LayerNorms: ``LN_in``, ``LN_ffn``, ``LN_out``, each a D-wide weight and bias: ``6D``.

Weight bytes for the int8 deployment: matrix weights 1 byte each (int8), biases 4 bytes each
(int32), LayerNorm weight and bias 4 bytes each (counted as int32 fixed point; reported
separately so another convention is easy to recompute). Quantization scales are not counted.

MACs per streaming step = one chunk (L segment frames + R right-context frames) through all
layers with a full memory bank (m = M) and a full left-context cache (c = C) — the steady
state; :func:`layer_step_counts` takes other m, c. Per layer, with ``Tq = R + L + 1`` query
tokens (the summary included), ``Tkv = m + R + L`` newly projected key/value tokens and
``Tk = m + R + c + L`` keys:

* Q and output projections: ``Tq*N`` rows of ``(D/N)^2`` each -> ``Tq*D^2/N``;
* K and V projections: ``Tkv*D^2/N`` each (cached left-context keys/values are not recomputed);
* scores and probs@V: dense ``(Tq*N) x (Tk*N)`` per head over ``heads*head_dim = D/N`` ->
  ``Tq*Tk*N*D`` each (folding makes these N times larger);
* FFN on the R + L rows: ``(R+L)*2DF`` (``/N`` with ``fold_scope='attn+ffn'``).

LayerNorm, the summary mean, softmax and residual adds are vector work, not MACs. Softmax
exponentials are counted over the *unmasked* score entries (the summary does not see the
memory): ``heads * N^2 * ((R+L)*Tk + (Tk - m))``.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from model.config import Config, ConfigError, ModelConfig, model_config


def layer_param_counts(cfg: ModelConfig | Config) -> dict[str, int]:
    """Per-layer parameter counts: ``attention``, ``ffn``, ``layernorm``, ``total``."""
    c = model_config(cfg)
    dn = c.folded_dim
    nf = c.ffn_fold
    d_f, f_f = c.d_model // nf, c.ffn_dim // nf
    attention = 4 * dn * dn + 4 * dn
    ffn = 2 * d_f * f_f + f_f + d_f
    layernorm = 3 * 2 * c.d_model
    return {"attention": attention, "ffn": ffn, "layernorm": layernorm,
            "total": attention + ffn + layernorm}


def head_tail_shapes(cfg: ModelConfig | Config) -> list[tuple[int, int]]:
    """``(in, out)`` of the speech head and tail linears: the input projection
    (``n_features > 0``) and the classifier (``vocab > 0``)."""
    c = model_config(cfg)
    return ([(c.n_features, c.d_model)] if c.n_features else []) + (
        [(c.d_model, c.vocab)] if c.vocab else [])


def model_param_count(cfg: ModelConfig | Config) -> int:
    """Parameters of the whole model: the layers and the speech head and tail."""
    c = model_config(cfg)
    head_tail = sum(k * n + n for k, n in head_tail_shapes(c))
    return c.n_layers * layer_param_counts(c)["total"] + head_tail


def layer_weight_bytes(cfg: ModelConfig | Config) -> dict[str, int]:
    """Per-layer int8-deployment bytes: ``matrices`` (int8), ``biases`` (int32),
    ``layernorm`` (weight + bias, int32), ``total``."""
    c = model_config(cfg)
    dn = c.folded_dim
    nf = c.ffn_fold
    d_f, f_f = c.d_model // nf, c.ffn_dim // nf
    matrices = 4 * dn * dn + 2 * d_f * f_f
    biases = 4 * (4 * dn + f_f + d_f)
    layernorm = 4 * 3 * 2 * c.d_model
    return {"matrices": matrices, "biases": biases, "layernorm": layernorm,
            "total": matrices + biases + layernorm}


def model_weight_bytes(cfg: ModelConfig | Config) -> dict[str, int]:
    """:func:`layer_weight_bytes` times ``n_layers``, plus the speech head and tail (int8
    matrices, int32 biases)."""
    c = model_config(cfg)
    out = {k: c.n_layers * v for k, v in layer_weight_bytes(c).items()}
    for k, n in head_tail_shapes(c):
        out["matrices"] += k * n
        out["biases"] += 4 * n
        out["total"] += k * n + 4 * n
    return out


def step_state(cfg: ModelConfig | Config, n_memory: int | None = None,
               n_left: int | None = None) -> tuple[int, int]:
    """``(memories, cached left-context tokens)`` of a layer step: the full ``M`` and ``C``
    by default (the steady state); explicit values are checked against the config."""
    c = model_config(cfg)
    m = c.max_memory if n_memory is None else n_memory
    lc = c.left_context if n_left is None else n_left
    if not 0 <= m <= c.max_memory:
        raise ValueError(f"n_memory={m} is outside 0..max_memory={c.max_memory}")
    if not 0 <= lc <= c.left_context:
        raise ValueError(f"n_left={lc} is outside 0..left_context={c.left_context}")
    return m, lc


def layer_step_counts(cfg: ModelConfig | Config, n_memory: int | None = None,
                      n_left: int | None = None) -> dict[str, int]:
    """MACs and softmax exponentials of one layer on one chunk with ``n_memory`` memories
    and ``n_left`` cached left-context tokens (default: the full ``M`` and ``C``).

    Keys: ``q_proj``, ``k_proj``, ``v_proj``, ``out_proj``, ``scores``, ``attn_v``, ``ffn``,
    ``macs`` (their sum), ``softmax_exps``.
    """
    c = model_config(cfg)
    m, lc = step_state(c, n_memory, n_left)
    n, d, r, length = c.fold_factor, c.d_model, c.right_context, c.segment_length
    dn = c.folded_dim
    tq = r + length + 1
    tkv = m + r + length
    tk = m + r + lc + length
    proj_row = dn * dn
    counts = {
        "q_proj": tq * n * proj_row,
        "k_proj": tkv * n * proj_row,
        "v_proj": tkv * n * proj_row,
        "out_proj": tq * n * proj_row,
        "scores": (tq * n) * (tk * n) * dn,
        "attn_v": (tq * n) * (tk * n) * dn,
        "ffn": (r + length) * 2 * d * c.ffn_dim // c.ffn_fold,
    }
    counts["macs"] = sum(counts.values())
    counts["softmax_exps"] = c.attn_heads * n * n * ((r + length) * tk + (tk - m))
    return counts


def model_step_counts(cfg: ModelConfig | Config) -> dict[str, int]:
    """:func:`layer_step_counts` (steady state) times ``n_layers``, plus the speech head
    (``input_proj``: ``R + L`` rows) and tail (``classifier``: ``L`` rows) when present."""
    c = model_config(cfg)
    out = {k: c.n_layers * v for k, v in layer_step_counts(c).items()}
    rows = c.right_context + c.segment_length
    if c.n_features:
        out["input_proj"] = rows * c.n_features * c.d_model
    if c.vocab:
        out["classifier"] = c.segment_length * c.d_model * c.vocab
    out["macs"] += out.get("input_proj", 0) + out.get("classifier", 0)
    return out


def _reduction(new: int, base: int) -> float:
    """Fraction removed relative to ``base`` (negative = growth)."""
    return round(1.0 - new / base, 6) if base else 0.0


def _summary(c: ModelConfig) -> dict[str, Any]:
    per_layer = layer_param_counts(c)
    steps = model_step_counts(c)
    wbytes = model_weight_bytes(c)
    return {
        "params": {"attention_per_layer": per_layer["attention"],
                   "ffn_per_layer": per_layer["ffn"],
                   "layernorm_per_layer": per_layer["layernorm"],
                   "per_layer": per_layer["total"],
                   "attention_total": c.n_layers * per_layer["attention"],
                   "total": model_param_count(c)},
        "weight_bytes_int8": wbytes["total"],
        "weight_bytes_int8_breakdown": wbytes,
        "macs_per_step": steps["macs"],
        "macs_per_step_breakdown": {k: v for k, v in steps.items()
                                    if k not in ("macs", "softmax_exps")},
        "softmax_exps_per_step": steps["softmax_exps"],
    }


def model_info(cfg: ModelConfig | Config) -> dict[str, Any]:
    """Everything ``foldaccel model info`` reports, for ``cfg`` and for the same config at
    ``fold_factor = 1`` (``baseline_fold1``), with ``reduction_vs_fold1`` fractions."""
    c = model_config(cfg)
    base_cfg = dataclasses.replace(c, fold_factor=1)
    base_cfg.validate()
    info = _summary(c)
    base = _summary(base_cfg)
    info = {
        "fold_factor": c.fold_factor, "fold_scope": c.fold_scope, "head_mode": c.head_mode,
        "attn_heads": c.attn_heads, "head_dim": c.head_dim, "n_layers": c.n_layers,
        **info,
        "baseline_fold1": base,
        "reduction_vs_fold1": {
            "attention_params_per_layer": _reduction(info["params"]["attention_per_layer"],
                                                     base["params"]["attention_per_layer"]),
            "ffn_params_per_layer": _reduction(info["params"]["ffn_per_layer"],
                                               base["params"]["ffn_per_layer"]),
            "params_per_layer": _reduction(info["params"]["per_layer"],
                                           base["params"]["per_layer"]),
            "params_total": _reduction(info["params"]["total"], base["params"]["total"]),
            "weight_bytes_int8": _reduction(info["weight_bytes_int8"],
                                            base["weight_bytes_int8"]),
            "macs_per_step": _reduction(info["macs_per_step"], base["macs_per_step"]),
        },
    }
    return info


#: Most int8 weight bytes a model may have: the float model, the quantizer and the compilers
#: hold every tensor in memory (the float model 4 bytes per parameter).
MAX_WEIGHT_BYTES = 512 << 20


def check_model_fits(cfg: ModelConfig | Config) -> None:
    """Raise :class:`ConfigError` before anything is allocated if the model's tensors could
    not be held in memory (over :data:`MAX_WEIGHT_BYTES`)."""
    c = model_config(cfg)
    wbytes = model_weight_bytes(c)["total"]
    if wbytes > MAX_WEIGHT_BYTES:
        raise ConfigError(
            f"[model]: the model has {wbytes:,} bytes of int8 weights ({c.n_layers} layers, "
            f"d_model={c.d_model}, ffn_dim={c.ffn_dim}), more than the {MAX_WEIGHT_BYTES:,} "
            "this tool holds in memory; fix: fewer layers or smaller d_model/ffn_dim")
