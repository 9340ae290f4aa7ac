"""Calibration input: deterministic bytes, and the properties that make it speech-like."""

import numpy as np
import pytest
import torch

from model.calibration import (
    calibration_frames,
    calibration_set,
    calibration_utterance,
    log_mel_frames,
)
from model.config import CONFIG_DIR, load_config
from model.encoder import build_model

TINY = load_config(CONFIG_DIR / "tiny.toml")


def _prominent_peaks(v: np.ndarray, min_prominence: float) -> int:
    """Local maxima standing at least ``min_prominence`` above the higher of the two minima
    between them and the nearest higher point (or the edge) on each side."""
    count = 0
    for i in range(1, len(v) - 1):
        if not (v[i] > v[i - 1] and v[i] >= v[i + 1]):
            continue
        lo, hi = i, i
        while lo > 0 and v[lo - 1] <= v[i]:
            lo -= 1
        while hi < len(v) - 1 and v[hi + 1] <= v[i]:
            hi += 1
        left = v[lo:i].min() if lo < i else v[i]
        right = v[i + 1:hi + 1].min() if hi > i else v[i]
        count += v[i] - max(left, right) >= min_prominence
    return count


def test_same_seed_same_bytes():
    a = calibration_frames(150, 64, seed=5)
    b = calibration_frames(150, 64, seed=5)
    assert a.dtype == np.float32 and a.shape == (150, 64)
    assert a.tobytes() == b.tobytes()
    assert a.tobytes() != calibration_frames(150, 64, seed=6).tobytes()
    s1, s2 = calibration_set(TINY, 3, 5, seed=1), calibration_set(TINY, 3, 5, seed=1)
    assert [u.tobytes() for u in s1] == [u.tobytes() for u in s2]
    assert len({u.tobytes() for u in s1}) == 3  # independent utterances


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_looks_like_log_mel_speech(seed):
    x = log_mel_frames(200, 64, seed).astype(np.float64)
    frame_peak = x.max(axis=1)
    # dynamic range between background and the loudest frames: 40..90 dB (in natural log)
    spread = frame_peak.max() - frame_peak.min()
    assert np.log(1e4) < spread < np.log(1e9)
    # both silence (near the floor) and speech (well above it) are present
    silent = frame_peak < frame_peak.min() + 3
    loud = frame_peak > frame_peak.max() - 4
    assert 0.1 < silent.mean() < 0.8 and loud.mean() > 0.2
    # smooth in frequency and in time: neighbours differ far less than random pairs
    rng = np.random.default_rng(0)
    freq_ratio = (np.abs(np.diff(x, axis=1)).mean()
                  / np.abs(x - x[:, rng.permutation(x.shape[1])]).mean())
    time_ratio = (np.abs(np.diff(x, axis=0)).mean()
                  / np.abs(x - x[rng.permutation(x.shape[0])]).mean())
    assert freq_ratio < 0.3 and time_ratio < 0.6
    # onsets: the frame level jumps by more than 20 dB (4.6 nats) from one frame to the next
    assert np.diff(frame_peak).max() > np.log(100)
    # formant-like bands: most loud frames show >= 2 spectral peaks with >= 1 nat prominence
    with_bands = np.mean([_prominent_peaks(v, 1.0) >= 2 for v in x[loud]])
    assert with_bands > 0.5


def test_cmvn_normalizes_each_bin():
    x = calibration_frames(300, 32, seed=3).astype(np.float64)
    np.testing.assert_allclose(x.mean(axis=0), 0, atol=1e-4)
    np.testing.assert_allclose(x.std(axis=0), 1, atol=1e-3)
    raw = calibration_frames(300, 32, seed=3, normalize=False)
    assert raw.max() > 0 > raw.min() and np.abs(raw).max() > 5


def test_utterance_fits_the_model():
    cfg = TINY.model
    u = calibration_utterance(TINY, 5, seed=0)
    assert u.shape == (5 * cfg.segment_length + cfg.right_context, cfg.d_model)
    model = build_model(cfg, seed=0)
    with torch.no_grad():
        out = model(torch.from_numpy(u))
    assert out.shape == (20, cfg.d_model) and torch.isfinite(out).all()


def test_bad_arguments():
    with pytest.raises(ValueError, match="n_frames"):
        log_mel_frames(0, 8, seed=0)
    with pytest.raises(ValueError, match="n_segments"):
        calibration_utterance(TINY, 0, seed=0)
