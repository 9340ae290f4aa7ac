"""Speech recognition with a trained speech model on four engines: ``float`` (the trained
float model), ``fakequant`` (the quantized model in torch), ``golden`` (the integer golden
model) and ``rtl`` (the encoder's programs on the Verilated accelerator).

Every engine streams the utterance segment by segment. The host computes the log-mel
features (:mod:`model.speech.frontend`), quantizes them to int8 (the export's ``features``
scale) and sends them; the input projection, the encoder and the classifier run on the
engine; the host takes the per-frame argmax of the logits and collapses it (CTC,
:mod:`model.speech.ctc`). ``golden``, ``fakequant`` and ``rtl`` compute the same integers, so
their transcripts are identical; ``rtl`` also checks every logit against the golden model.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from model.config import Config
from model.quantize import QuantModel
from model.speech import ctc
from model.speech.export import file_sha256
from model.speech.frontend import FrontendConfig

ENGINES = ("float", "fakequant", "golden", "rtl")
#: The committed speech models (``models/speech/fold{1,2,4}``: checkpoint + export).
MODELS_DIR = Path(__file__).resolve().parent.parent / "models" / "speech"
DEFAULT_MODEL = MODELS_DIR / "fold2"


class SpeechModelError(ValueError):
    """A speech model that cannot be used as asked; the message names the file and the fix."""


@dataclass
class SpeechModel:
    """A quantized speech model (an export) and, if known, the float checkpoint it came from."""

    weights: Path
    qm: QuantModel
    frontend: FrontendConfig
    checkpoint: Path | None = None
    _float: Any = None

    @property
    def config(self) -> Config:
        return self.qm.config

    def float_model(self):
        """The trained float model (``--engine float``)."""
        if self._float is None:
            if self.checkpoint is None:
                raise SpeechModelError(
                    f"--engine float needs the float checkpoint of {self.weights}: it is not "
                    "next to the export (DIR/../checkpoint.pt with the recorded sha256); fix: "
                    "pass --checkpoint PATH")
            from model.speech.train import load_checkpoint

            self._float = load_checkpoint(self.checkpoint).model
        return self._float


def load_speech_model(weights: str | Path | None = None,
                      checkpoint: str | Path | None = None) -> SpeechModel:
    """The export ``weights`` (default: the committed fold-2 model) and its checkpoint
    (``checkpoint``, else ``weights/../checkpoint.pt`` when its sha256 is the one the export
    recorded)."""
    from model.export import load_export
    from model.speech.train import check_speech_config

    d = Path(weights) if weights is not None else DEFAULT_MODEL / "weights"
    qm = load_export(d)
    cal = qm.calibration
    if cal.get("source") != "checkpoint":
        raise SpeechModelError(f"{d} is an export of a random model, not of a trained speech "
                               "checkpoint; fix: `foldaccel export --checkpoint PATH --out DIR`")
    frontend = FrontendConfig(**cal["frontend"])
    check_speech_config(qm.config, frontend)
    ck = Path(checkpoint) if checkpoint is not None else None
    if ck is None:
        near = d.parent / "checkpoint.pt"
        if near.is_file() and file_sha256(near) == cal.get("checkpoint_sha256"):
            ck = near
    elif not ck.is_file():
        raise SpeechModelError(f"--checkpoint {ck} not found; fix: pass the checkpoint.pt "
                               "the export was made from")
    return SpeechModel(d, qm, frontend, ck)


@dataclass
class Recognition:
    """One utterance recognized by one engine."""

    engine: str
    transcript: str
    logits: np.ndarray                 # (frames, vocab): float, or the integers
    seconds: float
    segments: int
    rtl: dict[str, Any] = field(default_factory=dict)   # rtl: cycles, mismatches, ...


def input_rows(sm: SpeechModel, audio: np.ndarray) -> np.ndarray:
    """int16 audio -> the encoder's padded float input rows (the host's front end)."""
    from model.speech.train import utterance_features

    return utterance_features(audio, sm.config, sm.frontend)


def recognize(sm: SpeechModel, audio: np.ndarray, engine: str = "golden", *,
              keep_runs: bool = False) -> Recognition:
    """Stream ``audio`` (int16 at the front end's rate) through ``engine`` -> transcript."""
    import torch

    from model.fakequant import FakeQuantEncoder
    from model.golden import GoldenEncoder
    from model.quantize import torch_single_thread

    if engine not in ENGINES:
        raise SpeechModelError(f"--engine {engine!r}: use one of {', '.join(ENGINES)}")
    t0 = time.monotonic()
    rows = input_rows(sm, audio)
    gold = GoldenEncoder(sm.qm)
    n_seg = len(gold.chunks(rows))
    extra: dict[str, Any] = {}
    with torch_single_thread():
        if engine == "float":
            model = sm.float_model()
            with torch.no_grad():
                logits = model.stream(torch.as_tensor(rows, dtype=model.dtype)).double().numpy()
        elif engine == "fakequant":
            logits = FakeQuantEncoder(sm.qm).stream(torch.as_tensor(rows)).numpy()
        elif engine == "golden":
            logits = gold.stream(gold.quantize_input(rows))
        else:
            logits, extra = _rtl_logits(sm, rows, n_seg, keep_runs)
    return Recognition(engine, ctc.greedy_transcript(logits), logits,
                       time.monotonic() - t0, n_seg, extra)


def _rtl_logits(sm: SpeechModel, rows: np.ndarray, segments: int,
                keep_runs: bool) -> tuple[np.ndarray, dict[str, Any]]:
    from sim.rtl.layer_run import run_stream

    rep = run_stream(sm.config, sm.qm, segments, frames=rows, keep_runs=keep_runs)
    if rep.first is not None or rep.counter_mismatches:
        raise RuntimeError(f"the RTL disagrees with the golden model: {rep.first or ''} "
                           f"{'; '.join(rep.counter_mismatches[:3])}")
    extra = {"cycles": rep.cycles, "cycles_per_segment": rep.cycles_per_segment,
             "mismatches": rep.mismatches, "compared": rep.compared,
             "estimator_matches_rtl": not rep.counter_mismatches, "sim_s": round(rep.sim_s, 3)}
    return np.concatenate(rep.outputs), extra
