"""Latencies (``done`` cycle minus ``start`` cycle) of the arithmetic vector engines.

Pure Python, no Amaranth: ``a`` carries the instruction fields as attributes, ``p`` the
hardware parameters (``p.cols``). Each engine's module docstring gives the per-cycle schedule
these closed forms follow (``hw/vector/layernorm.py``, ``elementwise.py``, ``colsum.py``).
A zero-size instruction (a zero ``count`` / ``rows`` / ``words``) is a no-op of latency 1.

Also :func:`mean_pool_params`: the VSUM parameters that make VSUM compute
``model.intops.mean_pool_i8`` exactly.
"""

from __future__ import annotations

from functools import cache
from typing import Any

#: LayerNorm: cycles from a row's last stats read to the earliest start of its normalize pass.
VLN_CHAIN = 5
#: LayerNorm: cycles from a normalize read to the write of its result.
VLN_NORM_STAGES = 4


def vln_read_cycles(rows: int, words: int) -> int:
    """Length of VLN's read phase: ``2*W*R + (R-1)*max(0, 4 - W)``; ``2*W + 4`` for one row."""
    gap = max(0, VLN_CHAIN - 1 - words)
    if rows == 1:
        return 2 * words + VLN_CHAIN - 1
    return 2 * words * rows + (rows - 1) * gap


def vln_words(a: Any, p: Any) -> int:
    """Words of one block-padded VLN row: ``blocks * ceil(block / cols)``."""
    return a.blocks * -(-a.block // p.cols)


def vln_latency(a: Any, p: Any) -> int:
    """Fields latched and the parameter word read in the start cycle; the read passes (stats
    and normalize, ``W = blocks * ceil(block / cols)`` cycles each, interleaved with the next
    row's stats) fill cycles ``1 .. Lr`` (:func:`vln_read_cycles` of ``rows, W``); the last
    read is written 4 cycles later: ``Lr + 4``. Depends on ``cols`` only through ``W``; a zero
    ``rows``, ``blocks`` or ``block`` is a no-op of latency 1."""
    if a.rows == 0 or a.blocks == 0 or a.block == 0:
        return 1
    return vln_read_cycles(a.rows, vln_words(a, p)) + VLN_NORM_STAGES


def vadd_latency(a: Any, p: Any) -> int:
    """A of word ``i`` read at ``2i``, B at ``2i + 1``, written at ``2i + 3``: ``2*count + 1``."""
    return 1 if a.count == 0 else 2 * a.count + 1


def vsquash_latency(a: Any, p: Any) -> int:
    """Word ``i`` read at ``i``, ELUT looked up at ``i + 1``, written at ``i + 2``:
    ``count + 1``."""
    return 1 if a.count == 0 else a.count + 1


def vsum_latency(a: Any, p: Any) -> int:
    """Read ``w*rows + r`` at that cycle; column ``w`` written at ``(w + 1)*rows + 2``:
    ``rows*words + 2``."""
    if a.rows == 0 or a.words == 0:
        return 1
    return a.rows * a.words + 2


LATENCY = {"VLN": vln_latency, "VADD": vadd_latency, "VSQUASH": vsquash_latency,
           "VSUM": vsum_latency}


# ----------------------------------------------------------------------------- mean pool


M_MAX = 2**15 - 1
S_MAX = 47


def _vsum_mean_exact(n: int, s: int, m: int) -> bool:
    """Whether VSUM with ``off = 128n, m, s, post = -128`` equals ``floor((2S + n) / (2n))``
    for every column sum ``S`` of ``n`` int8 values (``T = S + 128n`` in ``0 .. 255n``)."""
    import numpy as np

    t = np.arange(0, 255 * n + 1, dtype=np.int64)
    want = (2 * (t - 128 * n) + n) // (2 * n)
    got = ((t * m + (1 << (s - 1))) >> s) - 128
    return bool(np.array_equal(want, got))


@cache
def mean_pool_params(n: int) -> tuple[int, int, int, int]:
    """``(off, m, s, post)`` for VSUM (int8 output) over ``n`` rows of int8 values so that it
    equals ``intops.mean_pool_i8`` exactly.

    Rule: ``off = 128*n``, ``post = -128``, ``s`` the largest shift with ``m = ceil(2**s / n)
    <= 2**15 - 1``. This is exact for every ``n`` in ``1 .. 54`` (checked exhaustively over all
    ``255n + 1`` column sums); the first failure is ``n = 55``. For larger ``n`` the function
    falls back to the first exhaustively exact pair in the order (largest ``s`` first, ``ceil``
    then ``floor``), which exists up to ``n = 106``; beyond that no 15-bit multiplier is exact
    for every input and it raises ``ValueError``.
    """
    if not 1 <= n <= 65535:
        raise ValueError(f"mean pool over n={n} rows; need 1 <= n <= 65535")
    s_top = max(s for s in range(1, S_MAX + 1) if -(-(1 << s) // n) <= M_MAX)
    for s in range(min(S_MAX, s_top + 1), 0, -1):
        for mult in (-(-(1 << s) // n), (1 << s) // n):
            if 0 < mult <= M_MAX and _vsum_mean_exact(n, s, mult):
                return 128 * n, mult, s, -128
    raise ValueError(f"no VSUM multiplier m <= {M_MAX} gives an exact mean pool over n={n} "
                     "rows (exact up to n = 106): split the pool")


def latency(op: str, a: Any, p: Any) -> int:
    return LATENCY[op](a, p)


__all__ = ["LATENCY", "VLN_CHAIN", "VLN_NORM_STAGES", "latency", "mean_pool_params",
           "vadd_latency", "vln_latency", "vln_read_cycles", "vln_words", "vsquash_latency",
           "vsum_latency"]
