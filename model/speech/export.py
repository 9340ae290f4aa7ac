"""Quantize a trained speech checkpoint: calibration on training audio, then the same
post-training quantization and export format as a random model (:mod:`model.quantize`,
:mod:`model.export`)."""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path

from model.quantize import QuantModel, quantize_float_model
from model.speech.train import Checkpoint, utterance_features

#: Calibration utterances (the first of the training split of the dataset seed).
CALIB_UTTERANCES = 32


def file_sha256(path: str | Path) -> str:
    """sha256 hex of a file's bytes."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def quantize_checkpoint(ck: Checkpoint, n_utterances: int = CALIB_UTTERANCES,
                        data_seed: int = 0,
                        stage: Callable[[str], AbstractContextManager] | None = None
                        ) -> QuantModel:
    """Calibrate ``ck``'s float model on the first ``n_utterances`` training utterances of
    the dataset of ``data_seed`` (synthesized in memory, training voices only) and quantize
    it. The export records the checkpoint's sha256 and the front end (``calibration``)."""
    import contextlib

    from model.speech.dataset import synth_split

    if n_utterances < 1:
        raise ValueError(f"need >= 1 calibration utterance, got {n_utterances}")
    names = iter(("synthesize the calibration audio", "calibrate: observe activation ranges",
                  "quantize the weights"))
    step = (lambda: stage(next(names))) if stage else contextlib.nullcontext
    cfg = ck.config
    with step():
        rows = [utterance_features(u.audio, cfg, ck.frontend)
                for u in synth_split("train", n_utterances, data_seed)]
    calib = {"source": "checkpoint", "checkpoint_sha256": file_sha256(ck.path),
             "frontend": dataclasses.asdict(ck.frontend), "n_utterances": n_utterances,
             "data": f"training split of the spoken-digit dataset, seed {data_seed}"}
    seed = int(ck.meta.get("options", {}).get("seed", 0))
    return quantize_float_model(cfg, ck.model, rows, seed, calib, step)
