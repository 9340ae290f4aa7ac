"""CTC training, checkpoints and the quantized export of a trained speech model.

A short run on the tiny speech config (a few dozen synthesized utterances, fixed seed, a few
seconds) must lower the CTC loss and repeat its loss curve exactly; a checkpoint loads with
``weights_only=True`` into the same float model; its export round-trips and streams the same
integers after loading.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from model.config import CONFIG_DIR, load_config
from model.export import export, load_export
from model.golden import GoldenEncoder
from model.speech import ctc
from model.speech.dataset import synth_split
from model.speech.export import quantize_checkpoint
from model.speech.train import (
    CheckpointError,
    TrainOptions,
    check_speech_config,
    load_checkpoint,
    pad_to_segments,
    train,
    utterance_features,
)

TINY = load_config(CONFIG_DIR / "speech_tiny.toml")
OPTS = TrainOptions(steps=40, batch=4, lr=3e-3, warmup=5, eval_every=20, eval_utterances=6,
                    seed=3)


@pytest.fixture(scope="module")
def items():
    tr = [(utterance_features(u.audio, TINY), u.text) for u in synth_split("train", 24, 5)]
    va = [(utterance_features(u.audio, TINY), u.text) for u in synth_split("valid", 6, 5)]
    return tr, va


@pytest.fixture(scope="module")
def trained(items, tmp_path_factory):
    out = tmp_path_factory.mktemp("train")
    return train(TINY, *items, out, OPTS), out


def test_short_training_lowers_the_loss_and_repeats_exactly(items, trained, tmp_path):
    res, out = trained
    first, last = np.mean(res.losses[:5]), np.mean(res.losses[-5:])
    assert last < 0.5 * first, (first, last)
    again = train(TINY, *items, tmp_path, OPTS)
    assert again.losses == res.losses                     # same seed: the same curve
    assert [w for _, w in again.valid] == [w for _, w in res.valid]
    assert (out / "training_curve.png").stat().st_size > 1000
    other = train(TINY, *items, tmp_path / "s4", TrainOptions(**{**OPTS.__dict__, "seed": 4}))
    assert other.losses != res.losses


def test_checkpoint_roundtrip(items, trained):
    res, _ = trained
    ck = load_checkpoint(res.checkpoint)
    assert ck.config.digest() == TINY.digest()
    data = torch.load(res.checkpoint, weights_only=True)   # plain tensors and values only
    x = torch.as_tensor(items[0][0][0])
    with torch.no_grad():
        got = ck.model(x)
    ref = type(ck.model)(TINY)
    ref.load_state_dict(data["state_dict"])
    with torch.no_grad():
        assert torch.equal(ref(x), got)
    assert data["losses"] == res.losses


def test_checkpoint_export_roundtrip(trained, tmp_path):
    ck = load_checkpoint(trained[0].checkpoint)
    qm = quantize_checkpoint(ck, n_utterances=3)
    assert qm.calibration["source"] == "checkpoint"
    assert qm.calibration["frontend"]["n_mels"] * qm.calibration["frontend"]["stack"] == 80
    back = load_export(export(qm, tmp_path / "w"))
    assert back.calibration == qm.calibration
    for name, a in qm.tensors.items():
        assert np.array_equal(back.tensors[name], a), name
    audio = synth_split("test", 1, 9)[0].audio
    rows = utterance_features(audio, TINY)
    g1, g2 = GoldenEncoder(qm), GoldenEncoder(back)
    l1 = g1.stream(g1.quantize_input(rows))
    assert np.array_equal(l1, g2.stream(g2.quantize_input(rows)))
    assert l1.shape == (rows.shape[0] - 1, ctc.VOCAB)
    # the same checkpoint quantizes to the same bytes
    assert all(np.array_equal(a, quantize_checkpoint(ck, n_utterances=3).tensors[k])
               for k, a in qm.tensors.items())


def test_bad_checkpoints_are_named(tmp_path):
    with pytest.raises(CheckpointError, match="not found"):
        load_checkpoint(tmp_path / "none.pt")
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="cannot be read"):
        load_checkpoint(junk)
    torch.save({"format": "other"}, tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match="not a foldaccel checkpoint"):
        load_checkpoint(tmp_path / "other.pt")


def test_speech_config_checks():
    from model.speech.frontend import FrontendConfig

    with pytest.raises(CheckpointError, match="n_features"):
        check_speech_config(load_config(CONFIG_DIR / "tiny.toml"), FrontendConfig())
    with pytest.raises(CheckpointError, match="vocab"):
        check_speech_config(TINY.replace(vocab=5), FrontendConfig())


def test_padding_repeats_the_last_frame():
    x = np.arange(14 * 2, dtype=np.float32).reshape(14, 2)
    y = pad_to_segments(x, TINY)                  # L=4, R=1: 14 -> 4*4 + 1 = 17
    assert y.shape == (17, 2) and np.array_equal(y[:14], x)
    assert np.array_equal(y[14:], np.repeat(x[-1:], 3, axis=0))
    assert pad_to_segments(x[:2], TINY).shape == (5, 2)


def test_ctc_tokens_and_decoding():
    assert ctc.encode("3 1 4") == [4, 2, 5]
    with pytest.raises(ValueError, match="'12'"):
        ctc.encode("12 3")
    path = [0, 4, 4, 0, 4, 2, 2, 0, 0, 5]
    assert ctc.collapse(path) == [4, 4, 2, 5]
    logits = np.full((len(path), ctc.VOCAB), -5.0)
    logits[np.arange(len(path)), path] = 1.0
    assert ctc.greedy_transcript(logits) == "3 3 1 4"
    rates = ctc.error_rates(["3 1 4", "5 5"], ["3 4", ""])
    assert rates["wer"] == pytest.approx(3 / 5) and rates["cer"] == pytest.approx(3 / 5)
