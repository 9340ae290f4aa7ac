"""``foldaccel export`` and ``foldaccel golden``: quantized weights and the integer model.

``export`` builds the float model from ``--seed``, calibrates it on seeded calibration data,
quantizes it and writes ``weights.npz``, ``manifest.json`` and ``hex/`` atomically.
``golden`` loads an export (validated against ``--config``), streams a seeded utterance
through the integer golden model and the float model and reports the SQNR per layer; with
``--seeds A-B`` it sweeps input seeds and reports each layer's minimum and mean.
"""

from __future__ import annotations

import argparse
import logging
import math
from typing import Any

from model.export import ExportError
from model.intops import IntOpsError
from sim.cli.common import (
    USER_ERRORS,
    UserError,
    add_config_args,
    add_json_arg,
    add_seed_arg,
    config_from_args,
    emit,
    format_table,
)

log = logging.getLogger(__name__)
USER_ERRORS.extend([ExportError, IntOpsError])


def register(sub: argparse._SubParsersAction) -> None:
    ex = sub.add_parser(
        "export", help="quantize the model and write weights.npz, manifest.json, hex images",
        description="Build the float model from --seed, calibrate (torch.ao observers) on "
        "seeded calibration data, quantize (int8 GEMM operands, int16 residual stream, int32 "
        "biases) and write DIR/weights.npz, "
        "DIR/manifest.json and DIR/hex/*.hex ($readmemh). The same seed and config give "
        "byte-identical files; the write is atomic.")
    add_config_args(ex)
    ex.add_argument("--out", required=True, metavar="DIR", help="output directory")
    ex.add_argument("--checkpoint", metavar="PATH",
                    help="quantize this trained checkpoint (`foldaccel train`) instead of a "
                    "random model, calibrated on training audio; its config is the "
                    "checkpoint's (default: a random model from --seed)")
    ex.add_argument("--calib-utterances", type=int, default=32, metavar="N",
                    help="with --checkpoint: training utterances to calibrate on")
    add_seed_arg(ex, 0, "the float weights and the calibration data (with --checkpoint: "
                 "the dataset seed of the calibration audio)")
    add_json_arg(ex)
    ex.set_defaults(func=cmd_export)

    go = sub.add_parser(
        "golden", help="run the integer golden model and report SQNR vs the float model",
        description="Load an export, stream a seeded synthetic log-mel utterance of S "
        "segments through the integer golden model and the float model, and report the "
        "SQNR (dB) of each layer's output and of the encoder output.")
    go.add_argument("--config", metavar="PATH",
                    help="TOML config the export must match (default: the config stored in "
                    "the export's manifest)")
    go.add_argument("--fold", type=int, metavar="N",
                    help="override model.fold_factor of --config (default: the config's)")
    go.add_argument("--weights", required=True, metavar="DIR",
                    help="directory written by 'foldaccel export'")
    go.add_argument("--segments", type=int, default=8, metavar="S",
                    help="streaming segments to run (default 8)")
    add_seed_arg(go, 1234, "the input utterance")
    go.add_argument("--seeds", metavar="A-B|LIST",
                    help="sweep these input seeds (e.g. 0-9 or 0,3,7) and report the minimum "
                    "and mean SQNR of each layer over them (replaces --seed; default: one "
                    "seed)")
    go.add_argument("--per-op", action="store_true",
                    help="also report the SQNR of every intermediate tensor per layer")
    add_json_arg(go)
    go.set_defaults(func=cmd_golden)


def cmd_export(args: argparse.Namespace) -> int:
    from model.export import check_export_target, export_model
    from model.quantize import QUANTIZE_STAGES
    from sim.progress import Progress

    if args.checkpoint is not None:
        return _export_checkpoint(args)
    cfg = config_from_args(args)
    check_export_target(args.out)  # before the slow quantization

    log.info("quantizing %s (seed %d) ...", cfg.source, args.seed)
    with Progress(len(QUANTIZE_STAGES) + 1, "export") as bar:
        path, qm = export_model(cfg, args.out, seed=args.seed, stage=bar.step)
        bar.update(1, "written")
    _report_export(args, path, qm, {"seed": args.seed})
    return 0


def _export_checkpoint(args: argparse.Namespace) -> int:
    """``export --checkpoint``: quantize a trained model (its own config) and export it."""
    from model.export import check_export_target, export
    from model.speech.export import quantize_checkpoint
    from model.speech.train import load_checkpoint
    from sim.progress import Progress

    if args.calib_utterances < 1:
        raise UserError(f"--calib-utterances must be >= 1, got {args.calib_utterances}")
    ck = load_checkpoint(args.checkpoint)
    if args.config is not None or args.fold is not None:
        cfg = config_from_args(args)
        if cfg.digest() != ck.config.digest():
            raise UserError(f"--config/--fold describe another model than the checkpoint "
                            f"{args.checkpoint} (its fold is {ck.config.model.fold_factor}); "
                            "fix: leave them out, the checkpoint carries its config")
    check_export_target(args.out)
    with Progress(4, "export") as bar:
        qm = quantize_checkpoint(ck, args.calib_utterances, args.seed, stage=bar.step)
        path = export(qm, args.out)
        bar.update(1, "written")
    _report_export(args, path, qm, {"checkpoint": str(args.checkpoint),
                                    "calib_utterances": args.calib_utterances})
    return 0


def _report_export(args: argparse.Namespace, path, qm, extra: dict[str, Any]) -> None:
    nbytes = sum(int(a.nbytes) for a in qm.tensors.values())
    log.info("wrote %s", path)
    result = {"out": str(path), **extra, "config_digest": qm.config.digest(),
              "tensors": len(qm.tensors), "tensor_bytes": nbytes}
    if args.json:
        emit(result)
    else:
        print(format_table(["field", "value"], [[k, v] for k, v in result.items()]))


def _db(v: float) -> float | None:
    """JSON-safe dB value (``None`` for an exact match)."""
    return None if math.isinf(v) else round(v, 3)


def _parse_seeds(text: str) -> list[int]:
    """``"0-9"`` or ``"0,3,7"`` -> a list of input seeds."""
    try:
        if "-" in text.strip("-"):
            lo, hi = (int(v) for v in text.split("-", 1))
            seeds = list(range(lo, hi + 1))
        else:
            seeds = [int(v) for v in text.split(",")]
    except ValueError:
        seeds = []
    if not seeds or min(seeds) < 0:
        raise UserError(f"--seeds {text!r}: expected a range A-B with 0 <= A <= B or a list "
                        "of non-negative seeds like 0,3,7")
    return seeds


def cmd_golden(args: argparse.Namespace) -> int:
    from model.export import load_export
    from model.golden import compare_with_float

    if args.segments < 1:
        raise UserError(f"--segments must be >= 1, got {args.segments}")
    if args.seeds is not None and args.per_op:
        raise UserError("--per-op reports one input; use it with --seed, not --seeds")
    seeds = _parse_seeds(args.seeds) if args.seeds is not None else None
    if args.config is None and args.fold is None:
        from model.export import export_config
        cfg = export_config(args.weights)  # the config the weights were exported with
    else:
        cfg = config_from_args(args)
    qm = load_export(args.weights, cfg)
    if qm.calibration.get("source") == "checkpoint":
        raise UserError(f"{args.weights} is an export of a trained checkpoint; its float model "
                        "is not a seeded random model, so compare them on speech instead: "
                        f"`foldaccel evaluate --weights {args.weights} --data DIR`")
    if seeds is not None:
        return _golden_sweep(args, qm, seeds, cfg.digest())
    log.info("running %d segments (input seed %d) ...", args.segments, args.seed)
    rep = compare_with_float(qm, args.segments, args.seed, per_op=args.per_op)
    out: dict[str, Any] = {"sqnr_db": _db(rep["sqnr_db"]),
                           "sqnr_db_per_layer": [_db(v) for v in rep["sqnr_db_per_layer"]],
                           "segments": args.segments, "input_seed": args.seed,
                           "weights": str(args.weights), "config_digest": cfg.digest()}
    if args.per_op:
        out["sqnr_db_per_op"] = {str(layer): {k: _db(v) for k, v in ops.items()}
                                 for layer, ops in rep["sqnr_db_per_op"].items()}
    if args.json:
        emit(out)
        return 0
    rows = [[f"layer {i}", v] for i, v in enumerate(out["sqnr_db_per_layer"])]
    rows.append(["encoder output", out["sqnr_db"]])
    print(format_table(["SQNR vs float (dB)", f"{args.segments} segments"], rows))
    if args.per_op:
        keys = list(rep["sqnr_db_per_op"][0])
        print()
        print(format_table(["tensor"] + [f"L{i}" for i in rep["sqnr_db_per_op"]],
                           [[k] + [out["sqnr_db_per_op"][str(i)][k]
                                   for i in rep["sqnr_db_per_op"]] for k in keys]))
    return 0


def _golden_sweep(args: argparse.Namespace, qm, seeds: list[int], digest: str) -> int:
    from model.golden import compare_with_float

    log.info("running %d segments for %d input seeds ...", args.segments, len(seeds))
    per_seed = {seed: compare_with_float(qm, args.segments, seed)["sqnr_db_per_layer"]
                for seed in seeds}
    n_layers = qm.config.model.n_layers
    lows = [min(per_seed[s][i] for s in seeds) for i in range(n_layers)]
    means = [sum(per_seed[s][i] for s in seeds) / len(seeds) for i in range(n_layers)]
    out: dict[str, Any] = {
        "input_seeds": seeds, "segments": args.segments,
        "sqnr_db_per_layer_min": [_db(v) for v in lows],
        "sqnr_db_per_layer_mean": [_db(v) for v in means],
        "worst_layer_per_seed": {str(s): _db(min(per_seed[s])) for s in seeds},
        "weights": str(args.weights), "config_digest": digest}
    if args.json:
        emit(out)
        return 0
    rows = [[f"layer {i}", out["sqnr_db_per_layer_min"][i], out["sqnr_db_per_layer_mean"][i]]
            for i in range(n_layers)]
    print(format_table([f"SQNR vs float (dB), seeds {args.seeds}", "min", "mean"], rows))
    return 0
