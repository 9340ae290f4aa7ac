"""Seeded, realistic calibration input: log-mel-like feature frames (numpy only).

Real encoders see log-mel filterbank frames, not white noise; quantization ranges calibrated on
noise are wrong for speech. :func:`log_mel_frames` synthesises an utterance frame by frame:

* a layout of silences (150-600 ms) and words of 2-6 phones (60-200 ms each);
* phones are vowels (three formant bands), nasals (weaker, low formant), fricatives (a broad
  high-frequency band) or stops (a closure, then a broadband burst onset);
* formant centres and levels move smoothly between phone targets (coarticulation), energy has
  fast onsets and slower decays, and a word's level declines over its length;
* a stationary pinkish background noise about 60 dB below the speech peaks fills silences;
* the power spectrum of each frame is a sum of Gaussian bands on the mel axis with a spectral
  tilt (smooth in frequency) times a mildly smoothed gamma fluctuation (periodogram-like
  variance), and the output is its natural logarithm: speech peaks near +2, background near
  -12.

:func:`calibration_frames` optionally applies per-utterance mean/variance normalization per bin
(CMVN, as speech front-ends do), which gives values of order ±3 for the int8 input scale. All
functions return float32 and depend only on their arguments: the same seed gives the same bytes.
"""

from __future__ import annotations

import numpy as np

from model.config import Config, ModelConfig, model_config

NOISE_LEVEL = 1e-6  # background power relative to a speech peak of 1 (-60 dB)
PEAK_LOG = 2.0      # log power of a speech peak


def _layout(rng: np.random.Generator, n_frames: int, frame_ms: float) -> list[tuple[str, int]]:
    """(kind, duration in frames) segments covering at least ``n_frames``."""
    def frames(lo_ms: float, hi_ms: float) -> int:
        return max(1, round(rng.uniform(lo_ms, hi_ms) / frame_ms))

    segs: list[tuple[str, int]] = [("sil", frames(80, 400))]
    total = segs[0][1]
    while total < n_frames:
        for _ in range(int(rng.integers(2, 7))):
            kind = rng.choice(["vowel", "vowel", "nasal", "fricative", "stop"])
            segs.append((str(kind), frames(60, 200)))
            total += segs[-1][1]
        segs.append(("sil", frames(150, 600)))
        total += segs[-1][1]
    return segs


def _phone_targets(rng: np.random.Generator, kind: str) -> tuple[np.ndarray, np.ndarray,
                                                                  np.ndarray, float]:
    """Band centres (0..1 on the mel axis), widths, relative amplitudes and level of a phone."""
    if kind == "vowel":
        centres = np.array([rng.uniform(0.08, 0.22), rng.uniform(0.28, 0.5),
                            rng.uniform(0.55, 0.72)])
        return centres, np.array([0.035, 0.05, 0.06]), np.array([1.0, 0.5, 0.2]), 1.0
    if kind == "nasal":
        centres = np.array([rng.uniform(0.04, 0.1), rng.uniform(0.3, 0.45), 0.65])
        return centres, np.array([0.03, 0.06, 0.06]), np.array([1.0, 0.08, 0.03]), 0.15
    if kind == "fricative":
        centres = np.array([0.2, rng.uniform(0.72, 0.9), 0.95])
        return centres, np.array([0.1, 0.09, 0.05]), np.array([0.02, 1.0, 0.5]), 0.08
    # stop: the burst is broadband; the closure is handled by the energy envelope
    return (np.array([0.15, 0.5, 0.8]), np.array([0.2, 0.25, 0.2]), np.array([0.4, 0.6, 0.5]),
            0.3)


def _smooth(x: np.ndarray, width: int, axis: int = 0) -> np.ndarray:
    """Moving average with edge padding along ``axis`` (odd ``width``)."""
    if width <= 1:
        return x
    pad = [(0, 0)] * x.ndim
    pad[axis] = (width // 2, width // 2)
    xp = np.pad(x, pad, mode="edge")
    kernel = np.ones(width) / width
    return np.apply_along_axis(lambda v: np.convolve(v, kernel, mode="valid"), axis, xp)


def log_mel_frames(n_frames: int, n_mels: int, seed: int,
                   frame_ms: float = 40.0) -> np.ndarray:
    """``(n_frames, n_mels)`` float32 natural-log mel-power frames of a synthetic utterance."""
    if n_frames < 1 or n_mels < 1:
        raise ValueError(f"need n_frames >= 1 and n_mels >= 1, got {n_frames}, {n_mels}")
    if not frame_ms > 0:
        raise ValueError(f"frame_ms must be > 0, got {frame_ms}")
    rng = np.random.default_rng(seed)
    segs = _layout(rng, n_frames, frame_ms)
    total = sum(d for _, d in segs)
    n_bands = 3
    centres = np.zeros((total, n_bands))
    widths = np.zeros((total, n_bands))
    amps = np.zeros((total, n_bands))
    level = np.zeros(total)
    t = 0
    prev = _phone_targets(rng, "vowel")
    for kind, dur in segs:
        if kind == "sil":
            c, w, a, _ = prev
            centres[t:t + dur], widths[t:t + dur], amps[t:t + dur] = c, w, a
            t += dur
            continue
        c, w, a, lvl = _phone_targets(rng, kind)
        lvl *= rng.uniform(0.5, 1.5)
        ramp = np.linspace(0.0, 1.0, dur)[:, None]
        blend = np.minimum(1.0, 2.0 * ramp)  # glide from the previous phone for half the phone
        centres[t:t + dur] = prev[0] + blend * (c - prev[0])
        widths[t:t + dur] = prev[1] + blend * (w - prev[1])
        amps[t:t + dur] = prev[2] + blend * (a - prev[2])
        env = np.ones(dur)
        if kind == "stop":
            closure = max(1, dur // 2)
            env[:closure] = 0.0
            env[closure:] = np.exp(-np.arange(dur - closure) / 1.5)
        else:
            env[0] = 0.35  # onset: one frame of attack
            env *= np.exp(-np.arange(dur) / (6.0 * dur))
        level[t:t + dur] = lvl * env
        prev = (c, w, a, lvl)
        t += dur
    # word-level declination: the level falls towards the end of each voiced stretch
    voiced = level > 0
    run_pos = np.zeros(total)
    for i in range(1, total):
        run_pos[i] = run_pos[i - 1] + 1 if voiced[i] and voiced[i - 1] else 0
    level *= np.exp(-0.02 * run_pos)
    centres = _smooth(centres, 3)
    level = np.maximum(level[:n_frames], 0.0)
    centres, widths, amps = centres[:n_frames], widths[:n_frames], amps[:n_frames]

    f = (np.arange(n_mels) + 0.5) / n_mels
    bands = amps[:, :, None] * np.exp(
        -0.5 * ((f[None, None, :] - centres[:, :, None]) / widths[:, :, None]) ** 2)
    tilt = np.exp(-2.5 * f)
    speech = level[:, None] * bands.sum(axis=1) * tilt[None, :]
    noise = NOISE_LEVEL * np.exp(-1.5 * f)[None, :] * np.ones((n_frames, 1))
    fluct = rng.gamma(shape=12.0, scale=1.0 / 12.0, size=(n_frames, n_mels))
    fluct = _smooth(_smooth(fluct, 3, axis=1), 3, axis=0)
    power = (speech + noise) * fluct
    return (np.log(power) + PEAK_LOG).astype(np.float32)


def cmvn(frames: np.ndarray, eps: float = 1e-5) -> np.ndarray:
    """Per-bin mean/variance normalization over time (float32)."""
    mean = frames.mean(axis=0, keepdims=True)
    std = frames.std(axis=0, keepdims=True)
    return ((frames - mean) / (std + eps)).astype(np.float32)


def calibration_frames(n_frames: int, d_model: int, seed: int, normalize: bool = True,
                       frame_ms: float = 40.0) -> np.ndarray:
    """``(n_frames, d_model)`` float32 calibration input: :func:`log_mel_frames`, then
    :func:`cmvn` when ``normalize`` (default)."""
    x = log_mel_frames(n_frames, d_model, seed, frame_ms)
    return cmvn(x) if normalize else x


def calibration_utterance(cfg: ModelConfig | Config, n_segments: int, seed: int,
                          normalize: bool = True) -> np.ndarray:
    """An utterance the encoder accepts: ``(n_segments*segment_length + right_context,
    input_dim)`` frames from :func:`calibration_frames`."""
    c = model_config(cfg)
    if n_segments < 1:
        raise ValueError(f"n_segments must be >= 1, got {n_segments}")
    n = n_segments * c.segment_length + c.right_context
    return calibration_frames(n, c.input_dim, seed, normalize, c.frame_ms)


def calibration_set(cfg: ModelConfig | Config, n_utterances: int, n_segments: int, seed: int,
                    normalize: bool = True) -> list[np.ndarray]:
    """``n_utterances`` independent utterances (:func:`calibration_utterance`), seeded from
    ``seed`` via ``numpy.random.SeedSequence.spawn``."""
    children = np.random.SeedSequence(seed).spawn(n_utterances)
    return [calibration_utterance(cfg, n_segments, int(ch.generate_state(1)[0]), normalize)
            for ch in children]
