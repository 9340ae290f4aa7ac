"""Log-mel front end: 22,050 Hz int16 audio -> 40 log-mel bands every 20 ms, two frames
stacked into one 40 ms encoder frame.

The mel spectrogram comes from ``librosa.feature.melspectrogram`` (Hann window of 25 ms, hop
20 ms, ``center=True`` with zero padding, power 2, Slaney mel filterbank with Slaney area
normalisation): librosa is a well-kept reference implementation, so there is no custom DSP
here to verify. Features are ``log(mel + 1e-6)`` of audio scaled to [-1, 1), in float32; no
global mean/variance normalisation is applied (the model's input projection learns it).
Scaling the audio by ``g`` adds ``2 ln g`` to every band well above the floor. The same input
gives the same bytes.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: Added to the mel power before the log: a floor of about -13.8 for digital silence.
LOG_FLOOR = 1e-6


@dataclass(frozen=True)
class FrontendConfig:
    """Parameters of :func:`log_mel` and :func:`features` (lengths in samples)."""

    sample_rate: int = 22050
    n_fft: int = 1024
    win_length: int = 551  # 25 ms
    hop_length: int = 441  # 20 ms
    n_mels: int = 40
    fmin: float = 20.0
    fmax: float = 8000.0
    stack: int = 2  # 20 ms frames per encoder frame

    def __post_init__(self) -> None:
        if not 0 < self.win_length <= self.n_fft:
            raise ValueError(f"win_length {self.win_length} must be in 1..n_fft ({self.n_fft})")
        if self.hop_length < 1 or self.n_mels < 1 or self.stack < 1:
            raise ValueError("hop_length, n_mels and stack must be >= 1")
        if not 0 <= self.fmin < self.fmax <= self.sample_rate / 2:
            raise ValueError(f"need 0 <= fmin ({self.fmin}) < fmax ({self.fmax}) <= "
                             f"sample_rate / 2 ({self.sample_rate / 2})")

    @property
    def feature_dim(self) -> int:
        """Width of one encoder frame: ``n_mels * stack``."""
        return self.n_mels * self.stack

    @property
    def frame_ms(self) -> float:
        """Duration of one encoder frame in ms (40.0 by default)."""
        return self.hop_length * self.stack * 1000 / self.sample_rate


def _as_float(audio: np.ndarray) -> np.ndarray:
    a = np.asarray(audio)
    if a.dtype != np.int16 or a.ndim != 1:
        raise ValueError(f"audio must be a 1-D int16 array, got {a.ndim}-D {a.dtype}; fix: pass "
                         "the samples as read from the dataset (mono int16)")
    return a.astype(np.float32) / np.float32(32768.0)


def log_mel(audio: np.ndarray, cfg: FrontendConfig = FrontendConfig()) -> np.ndarray:
    """int16 mono ``audio`` at ``cfg.sample_rate`` -> float32 log-mel ``(T, n_mels)`` with
    ``T = 1 + len(audio) // hop_length``."""
    import librosa

    mel = librosa.feature.melspectrogram(
        y=_as_float(audio), sr=cfg.sample_rate, n_fft=cfg.n_fft, hop_length=cfg.hop_length,
        win_length=cfg.win_length, window="hann", center=True, pad_mode="constant", power=2.0,
        n_mels=cfg.n_mels, fmin=cfg.fmin, fmax=cfg.fmax, htk=False, norm="slaney")
    return np.ascontiguousarray(np.log(mel + np.float32(LOG_FLOOR)).T, dtype=np.float32)


def features(audio: np.ndarray, cfg: FrontendConfig = FrontendConfig()) -> np.ndarray:
    """Encoder input frames ``(T // stack, feature_dim)`` float32: each row concatenates
    ``stack`` consecutive log-mel frames (oldest first); a ragged tail of fewer than ``stack``
    frames is dropped (at most 20 ms of audio by default)."""
    frames = log_mel(audio, cfg)
    t = frames.shape[0] // cfg.stack
    return np.ascontiguousarray(frames[: t * cfg.stack].reshape(t, cfg.feature_dim))


__all__ = ["LOG_FLOOR", "FrontendConfig", "features", "log_mel"]
