"""Latencies (``done`` cycle minus ``start`` cycle) of the VSOFTMAX, VLUT and MTRANS engines.

Pure Python, no Amaranth: ``a`` has the instruction's payload fields as attributes
(``hw.opcodes.VECTOR_FIELDS`` / ``MOVER_FIELDS``), ``p`` the hardware parameters ``p.cols`` and
``p.rows``. Each engine's module docstring gives the per-cycle schedule these closed forms
count (``hw/vector/softmax.py``, ``hw/vector/lutload.py``, ``hw/vector/transpose.py``); the
engines' cocotb tests compare the measured latencies with these functions.
"""

from __future__ import annotations

from typing import Any

#: VLUT: entries of each table (ELUT = table 0, RLUT = table 1).
VLUT_ENTRIES = (256, 192)

#: VSOFTMAX: cycles the divider occupies per row (1 load cycle + 8 two-bit steps).
SOFTMAX_DIV_CYCLES = 9


def vsoftmax_row_period(words: int) -> int:
    """Cycles between the starts of consecutive rows of one VSOFTMAX: ``max(words, 9,
    2*words - 247)`` (VMEM read port, divider, and the 256-word e buffer for rows of 248+
    words)."""
    return max(words, SOFTMAX_DIV_CYCLES, 2 * words - 247)


def vsoftmax_latency(a: Any, p: Any) -> int:
    """Row ``r`` starts at ``c + 1 + r*T`` (``T`` = :func:`vsoftmax_row_period`); its last
    output word is written ``3*words + 11`` cycles later. No rows or no words: ``1``."""
    if a.rows == 0 or a.words == 0:
        return 1
    return (a.rows - 1) * vsoftmax_row_period(a.words) + 3 * a.words + 12


def vlut_latency(a: Any, p: Any) -> int:
    """Entry ``i`` read at ``c + 1 + i`` (its word's first entry) and written at
    ``c + 2 + i``: 257 cycles for the ELUT, 193 for the RLUT."""
    return VLUT_ENTRIES[a.table] + 1


def mtrans_latency(a: Any, p: Any) -> int:
    """``1 + n + (G - 1) * max(n, cols) + last`` with ``n`` = ``rows``, ``G = ceil(ncols /
    cols)`` word-columns and ``last = ncols - (G - 1)*cols`` words in the last one (stage 0
    reads group 0, stage ``s`` reads group ``s`` while writing group ``s - 1``, stage ``G``
    writes the last group). ``rows`` or ``ncols`` zero: ``1``."""
    n, ncols, cols = a.rows, a.ncols, p.cols
    if n == 0 or ncols == 0:
        return 1
    groups = -(-ncols // cols)
    last = ncols - (groups - 1) * cols
    return 1 + n + (groups - 1) * max(n, cols) + last


LATENCY = {"VSOFTMAX": vsoftmax_latency, "VLUT": vlut_latency, "MTRANS": mtrans_latency}

__all__ = ["LATENCY", "SOFTMAX_DIV_CYCLES", "VLUT_ENTRIES", "mtrans_latency", "vlut_latency",
           "vsoftmax_latency", "vsoftmax_row_period"]
