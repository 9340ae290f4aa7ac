"""The committed trained speech models: transcription on every engine and the committed
evaluation numbers.

* ``transcribe --engine rtl`` runs the fold-2 model's programs on the Verilated accelerator
  and must give exactly the golden model's logits and transcript (every logit is compared
  inside the run, and the RTL counters equal the timing model's);
* ``evaluate`` on the committed test set (``models/speech/testset``: the first 20 test-voice
  utterances of the seed-0 dataset) reproduces ``models/speech/fold*/evaluation.json``;
* golden and fakequant compute the same integers, so their transcripts are equal.
"""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from model.speech.dataset import load_split
from sim.asr import MODELS_DIR, load_speech_model, recognize

TESTSET = MODELS_DIR / "testset"
FOLDS = (1, 2, 4)


def _cli(*args: str) -> dict:
    out = subprocess.run([sys.executable, "-m", "sim.cli", *args, "--json"], check=True,
                         capture_output=True, text=True)
    return json.loads(out.stdout)


def test_committed_models_load_with_their_checkpoints():
    for fold in FOLDS:
        sm = load_speech_model(MODELS_DIR / f"fold{fold}" / "weights")
        assert sm.config.model.fold_factor == fold
        assert sm.checkpoint == MODELS_DIR / f"fold{fold}" / "checkpoint.pt"


@pytest.mark.parametrize("fold", FOLDS)
def test_evaluate_reproduces_the_committed_numbers(fold):
    committed = json.loads((MODELS_DIR / f"fold{fold}" / "evaluation.json").read_text())
    got = _cli("evaluate", "--weights", str(MODELS_DIR / f"fold{fold}" / "weights"),
               "--data", str(TESTSET), "--engine", "float,fakequant,golden")
    refs = [u.text for u in load_split(TESTSET, "test")]
    assert got["references"] == refs == committed["references"]
    for engine in ("float", "fakequant", "golden"):
        want, have = committed["engines"][engine], got["engines"][engine]
        assert have["transcripts"] == want["transcripts"], engine
        assert (have["wer"], have["cer"]) == (want["wer"], want["cer"]), engine
    assert got["engines"]["golden"]["transcripts"] == got["engines"]["fakequant"]["transcripts"]


@pytest.mark.rtl
def test_transcribe_on_the_rtl_equals_golden():
    said = "2 8 5"
    gold = _cli("transcribe", "--say", said, "--engine", "golden")
    rtl = _cli("transcribe", "--say", said, "--engine", "rtl")
    assert rtl["transcript"] == gold["transcript"]
    assert rtl["mismatches"] == 0 and rtl["compared"] > 0 and rtl["estimator_matches_rtl"]
    assert len(rtl["cycles_per_segment"]) == rtl["segments"] == gold["segments"]


def test_engines_agree_on_integer_logits():
    sm = load_speech_model()
    audio = load_split(TESTSET, "test")[0].audio
    g = recognize(sm, audio, "golden")
    f = recognize(sm, audio, "fakequant")
    assert np.array_equal(np.rint(f.logits / sm.qm.output_scale), g.logits)
    assert f.transcript == g.transcript
