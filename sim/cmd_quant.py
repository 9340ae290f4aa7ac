"""``foldaccel export`` and ``foldaccel golden``: quantized weights and the integer model.

``export`` builds the float model from ``--seed``, calibrates it on seeded calibration data,
quantizes it and writes ``weights.npz``, ``manifest.json`` and ``hex/`` atomically.
``golden`` loads an export (validated against ``--config``), streams a seeded utterance
through the integer golden model and the float model and reports the SQNR per layer.
"""

from __future__ import annotations

import argparse
import logging
import math
from typing import Any

from model.export import ExportError
from model.intops import IntOpsError
from sim.cliutil import (
    USER_ERRORS,
    UserError,
    add_config_args,
    add_json_arg,
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
        "seeded calibration data, quantize to int8/int32 and write DIR/weights.npz, "
        "DIR/manifest.json and DIR/hex/*.hex ($readmemh). The same seed and config give "
        "byte-identical files; the write is atomic.")
    add_config_args(ex)
    ex.add_argument("--out", required=True, metavar="DIR", help="output directory")
    ex.add_argument("--seed", type=int, default=0, metavar="S",
                    help="seed of the float weights and the calibration data (default 0)")
    add_json_arg(ex)
    ex.set_defaults(func=cmd_export)

    go = sub.add_parser(
        "golden", help="run the integer golden model and report SQNR vs the float model",
        description="Load an export, stream a seeded synthetic log-mel utterance of S "
        "segments through the integer golden model and the float model, and report the "
        "SQNR (dB) of each layer's output and of the encoder output.")
    add_config_args(go)
    go.add_argument("--weights", required=True, metavar="DIR",
                    help="directory written by 'foldaccel export'")
    go.add_argument("--segments", type=int, default=8, metavar="S",
                    help="streaming segments to run (default 8)")
    go.add_argument("--seed", type=int, default=1234, metavar="S",
                    help="seed of the input utterance (default 1234)")
    go.add_argument("--per-op", action="store_true",
                    help="also report the SQNR of every intermediate tensor per layer")
    add_json_arg(go)
    go.set_defaults(func=cmd_golden)


def cmd_export(args: argparse.Namespace) -> int:
    from model.export import export_model

    cfg = config_from_args(args)
    log.info("quantizing %s (seed %d) ...", cfg.source, args.seed)
    path, qm = export_model(cfg, args.out, seed=args.seed)
    nbytes = sum(int(a.nbytes) for a in qm.tensors.values())
    log.info("wrote %s", path)
    result = {"out": str(path), "seed": args.seed, "config_digest": cfg.digest(),
              "tensors": len(qm.tensors), "tensor_bytes": nbytes}
    if args.json:
        emit(result)
    else:
        print(format_table(["field", "value"], [[k, v] for k, v in result.items()]))
    return 0


def _db(v: float) -> float | None:
    """JSON-safe dB value (``None`` for an exact match)."""
    return None if math.isinf(v) else round(v, 3)


def cmd_golden(args: argparse.Namespace) -> int:
    from model.export import load_export
    from model.golden import compare_with_float

    if args.segments < 1:
        raise UserError(f"--segments must be >= 1, got {args.segments}")
    cfg = config_from_args(args)
    qm = load_export(args.weights, cfg)
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
