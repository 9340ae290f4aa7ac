"""Tokens and CTC decoding of the spoken-digit task (the host's only step after the encoder).

The vocabulary is the CTC blank (id 0) and the ten digits (id ``d + 1`` for digit ``d``); a
transcript is written as digits separated by spaces, e.g. ``"3 1 4"``. The classifier of a
speech config (``[model] vocab``) has :data:`VOCAB` outputs.
"""

from __future__ import annotations

import numpy as np

BLANK = 0
VOCAB = 11


def encode(text: str) -> list[int]:
    """``"3 1 4"`` -> ``[4, 2, 5]``; a token that is not one digit is a ``ValueError``."""
    ids = []
    for tok in text.split():
        if len(tok) != 1 or not tok.isdigit():
            raise ValueError(f"transcript token {tok!r} is not a digit 0-9; fix: write digits "
                             "separated by spaces, e.g. \"3 1 4\"")
        ids.append(int(tok) + 1)
    return ids


def collapse(ids: np.ndarray | list[int]) -> list[int]:
    """CTC collapse of a frame-wise token path: merge repeats, then drop blanks."""
    out, prev = [], None
    for t in (int(i) for i in ids):
        if t != prev and t != BLANK:
            out.append(t)
        prev = t
    return out


def greedy_transcript(logits: np.ndarray) -> str:
    """Best-path decoding of ``(frames, VOCAB)`` logits (float or integer) -> ``"3 1 4"``.
    Ties go to the lower id (``numpy.argmax``), so equal integer logits decode equally."""
    logits = np.asarray(logits)
    if logits.ndim != 2 or logits.shape[1] != VOCAB:
        raise ValueError(f"logits must be (frames, {VOCAB}), got {logits.shape}")
    return " ".join(str(t - 1) for t in collapse(np.argmax(logits, axis=1)))


def error_rates(refs: list[str], hyps: list[str]) -> dict[str, float]:
    """Word and character error rates (jiwer) of transcripts; a word is a digit, the
    characters are the digits without spaces."""
    import jiwer

    if len(refs) != len(hyps) or not refs:
        raise ValueError(f"need as many hypotheses as references (>0), got {len(refs)} and "
                         f"{len(hyps)}")
    # an empty hypothesis becomes one wrong token: 1 substitution + (n - 1) deletions, the
    # same n errors as n deletions (jiwer refuses empty strings)
    wer = float(jiwer.wer(refs, [h or "#" for h in hyps]))
    chars_r = [r.replace(" ", "") for r in refs]
    chars_h = [h.replace(" ", "") or "#" for h in hyps]
    cer = float(jiwer.cer(chars_r, chars_h))
    return {"wer": wer, "cer": cer}
