"""``foldaccel model ...``: facts about the float model.

``model info`` reports parameters, int8 weight bytes, MACs and softmax exponentials per
streaming step for the configured fold factor and the reduction against fold 1. It uses
:mod:`model.accounting` only, so it runs without torch.
"""

from __future__ import annotations

import argparse
import logging

from model.accounting import model_info
from sim.cli.common import add_config_args, add_json_arg, config_from_args, emit, format_table

log = logging.getLogger(__name__)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("model", help="float model facts (parameters, weight bytes, MACs)",
                       description="Facts about the streaming encoder with folding attention.")
    msub = p.add_subparsers(dest="model_command", metavar="SUBCOMMAND")
    msub.required = True
    info = msub.add_parser(
        "info", help="parameters, int8 weight bytes and MACs per step vs fold 1",
        description="Per-layer and whole-encoder parameter counts, int8 weight bytes, MACs "
        "and softmax exponentials per streaming step (one segment through all layers, full "
        "memory bank and left-context cache), and the reduction against fold_factor = 1.")
    add_config_args(info)
    add_json_arg(info)
    info.set_defaults(func=cmd_info)


def _ratio(new: int, base: int) -> str:
    """``new / base`` with 3 decimals: below 1 = smaller than at fold 1."""
    return f"{new / base:.3f}" if base else "-"


def _rows(info: dict) -> list[list]:
    cur, base = info, info["baseline_fold1"]

    def row(label: str, a: int, b: int) -> list:
        return [label, a, b, _ratio(a, b)]

    p, bp = cur["params"], base["params"]
    mb, bmb = cur["macs_per_step_breakdown"], base["macs_per_step_breakdown"]
    proj = ("q_proj", "k_proj", "v_proj", "out_proj")
    n = info["n_layers"]
    return [
        row("attention params / layer", p["attention_per_layer"], bp["attention_per_layer"]),
        row("FFN params / layer", p["ffn_per_layer"], bp["ffn_per_layer"]),
        row("LayerNorm params / layer", p["layernorm_per_layer"], bp["layernorm_per_layer"]),
        row("params / layer", p["per_layer"], bp["per_layer"]),
        row(f"params, encoder ({n} layers)", p["total"], bp["total"]),
        row("int8 weight bytes, encoder", cur["weight_bytes_int8"], base["weight_bytes_int8"]),
        row("MACs / step: projections", sum(mb[k] for k in proj), sum(bmb[k] for k in proj)),
        row("MACs / step: scores + attn@V", mb["scores"] + mb["attn_v"],
            bmb["scores"] + bmb["attn_v"]),
        row("MACs / step: FFN", mb["ffn"], bmb["ffn"]),
        row("MACs / step: total", cur["macs_per_step"], base["macs_per_step"]),
        row("softmax exps / step", cur["softmax_exps_per_step"],
            base["softmax_exps_per_step"]),
    ]


def cmd_info(args: argparse.Namespace) -> int:
    cfg = config_from_args(args)
    info = {"config": cfg.source, **model_info(cfg)}
    log.debug("model info for %s at fold %d", cfg.source, info["fold_factor"])
    if args.json:
        emit(info)
        return 0
    m = cfg.model
    print(f"config {cfg.source}: d_model={m.d_model} ffn_dim={m.ffn_dim} n_layers={m.n_layers} "
          f"fold_factor={m.fold_factor} fold_scope={m.fold_scope} head_mode={m.head_mode} "
          f"({m.attn_heads} heads x {m.head_dim})")
    n = m.fold_factor
    print(format_table(["", f"fold {n}", "fold 1", f"fold {n} / fold 1"], _rows(info)))
    red = info["reduction_vs_fold1"]
    print(f"reduction vs fold 1: parameters {100 * red['params_total']:.2f}%, int8 weight bytes "
          f"{100 * red['weight_bytes_int8']:.2f}%, MACs per step {100 * red['macs_per_step']:.2f}%")
    print("step = one segment (+ right context) through all layers with a full memory bank "
          "and left-context cache; weight bytes: int8 matrices, int32 biases and LayerNorm")
    return 0
