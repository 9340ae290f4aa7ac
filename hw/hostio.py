"""Host-side data layout: SRAM words <-> host stream beats (little-endian bytes).

A word of ``W`` bytes travels as ``ceil(W / host_bytes)`` beats; beat ``t`` carries word bytes
``[t*host_bytes, (t+1)*host_bytes)``, the last beat zero-padded. Beats are rows of a
``(n, host_bytes)`` uint8 array.
"""

from __future__ import annotations

import numpy as np


def words_to_beats(words: np.ndarray, host_bytes: int) -> np.ndarray:
    """``(n, W)`` uint8 words -> ``(n * ceil(W/H), H)`` uint8 beats."""
    words = np.ascontiguousarray(words, dtype=np.uint8)
    n, w = words.shape
    per = -(-w // host_bytes)
    padded = np.zeros((n, per * host_bytes), np.uint8)
    padded[:, :w] = words
    return padded.reshape(n * per, host_bytes)


def beats_to_words(beats: np.ndarray, word_bytes: int) -> np.ndarray:
    """Inverse of :func:`words_to_beats` (padding dropped)."""
    beats = np.ascontiguousarray(beats, dtype=np.uint8)
    nb, h = beats.shape
    per = -(-word_bytes // h)
    if nb % per:
        raise ValueError(f"{nb} beats are not a whole number of {word_bytes}-byte words")
    return beats.reshape(nb // per, per * h)[:, :word_bytes]


def int32_words(lanes: np.ndarray) -> np.ndarray:
    """``(n, cols)`` int32 lanes -> ``(n, 4*cols)`` uint8 ACC words."""
    return np.ascontiguousarray(lanes, dtype="<i4").view(np.uint8).reshape(len(lanes), -1)


def words_int32(words: np.ndarray) -> np.ndarray:
    """``(n, 4*cols)`` uint8 ACC words -> ``(n, cols)`` int32 lanes."""
    return np.ascontiguousarray(words, dtype=np.uint8).view("<i4").astype(np.int32)
