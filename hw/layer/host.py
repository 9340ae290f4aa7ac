"""Host-side packing of a layer program's constants and rows into SRAM words.

Pure numpy, no arithmetic on activations: exported weights, biases and parameters are laid
out in the words the program loads (weights into WGT column tiles, bias and requantization
words into ACC, LayerNorm and op parameters into PMEM, tables into VMEM), input rows into
block-padded VMEM rows, and output rows are read back out of them.
"""

from __future__ import annotations

import numpy as np

from hw import isa
from hw.layer.symbols import Layout
from hw.vector import formats


def tile_columns(out: Layout, cols: int) -> list[np.ndarray]:
    """Per output column tile (in VMEM word order), the output columns it holds: tiles never
    cross a block, so tile ``b*bw + t`` holds columns ``b*block + t*cols ..`` of block ``b``."""
    bw = out.block_words(cols)
    tiles = []
    for b in range(out.blocks):
        for t in range(bw):
            lo = t * cols
            tiles.append(b * out.block + np.arange(lo, min(lo + cols, out.block)))
    return tiles


def weight_tiles(w: np.ndarray, out: Layout, cols: int) -> np.ndarray:
    """``(K, N)`` int8 weights -> ``(tiles, K, cols)`` int8 WGT words (zero padding)."""
    w = np.asarray(w, np.int64)
    tiles = tile_columns(out, cols)
    words = np.zeros((len(tiles), w.shape[0], cols), np.int8)
    for n, c in enumerate(tiles):
        words[n, :, :len(c)] = w[:, c]
    return words


def bias_words(bias: np.ndarray, out: Layout, cols: int) -> np.ndarray:
    """``(N,)`` int32 bias -> one ACC word (int32 lanes) per output tile, padding 0."""
    b = np.broadcast_to(np.asarray(bias, np.int64), (out.cols,))
    tiles = tile_columns(out, cols)
    words = np.zeros((len(tiles), cols), np.int64)
    for n, c in enumerate(tiles):
        words[n, :len(c)] = b[c]
    return words


def param_words(m: np.ndarray, s: np.ndarray, out: Layout, cols: int) -> np.ndarray:
    """Per-column (or scalar) requantization ``(m, s)`` -> one ACC parameter word per output
    tile; padding columns ``m=0, s=1`` (output 0)."""
    mm = np.broadcast_to(np.asarray(m, np.int64), (out.cols,))
    ss = np.broadcast_to(np.asarray(s, np.int64), (out.cols,))
    tiles = tile_columns(out, cols)
    pad = isa.pack_param(0, 1)
    words = np.full((len(tiles), cols), pad, np.int64)
    for n, c in enumerate(tiles):
        words[n, :len(c)] = [isa.pack_param(int(a), int(b)) for a, b in zip(mm[c], ss[c],
                                                                           strict=True)]
    return words.astype(np.uint32).view(np.int32).astype(np.int64)


def layernorm_words(gamma, beta, m: int, s: int, eps: int, out16: bool, layout: Layout,
                    cols: int) -> np.ndarray:
    """VLN's PMEM block: the parameter word, then one feature word per row word."""
    head = formats.pack_param_word("VLN", cols, eps=eps, m=m, s=s, out16=int(out16))[None]
    g = formats.block_pad(gamma, layout.blocks, layout.block, cols)
    b = formats.block_pad(beta, layout.blocks, layout.block, cols)
    return np.concatenate([head, formats.pack_ln_features(g, b, cols)])


def table_word_count(entries: int, cols: int) -> int:
    """VMEM words of a lookup table of ``entries`` entries (one per lane)."""
    return -(-entries // cols)


def table_words(entries: np.ndarray, cols: int) -> np.ndarray:
    """A lookup table's entries as VMEM lanes (raw 16 bits), ``(ceil(n/cols), cols)``."""
    e = np.asarray(entries, np.int64) & 0xFFFF
    padded = np.zeros(table_word_count(len(e), cols) * cols, np.int64)
    padded[:len(e)] = e
    return padded.reshape(-1, cols)


def rows_to_lanes(values: np.ndarray, layout: Layout, cols: int) -> np.ndarray:
    """``(rows, blocks*block)`` values -> block-padded VMEM lanes ``(rows*words, cols)``."""
    lanes = formats.block_pad(values, layout.blocks, layout.block, cols)
    return lanes.reshape(-1, cols)


def lanes_to_rows(lanes: np.ndarray, layout: Layout, cols: int) -> np.ndarray:
    """Inverse of :func:`rows_to_lanes`: the valid elements of block-padded rows."""
    words = layout.words(cols)
    flat = np.asarray(lanes, np.int64).reshape(-1, words * cols)
    return flat[:, formats.block_lanes(layout.blocks, layout.block, cols)]


def vmem_bytes(lanes: np.ndarray) -> np.ndarray:
    """int16 lanes ``(n, cols)`` -> VMEM words as bytes."""
    raw = np.asarray(lanes, np.int64) & 0xFFFF
    return np.ascontiguousarray(raw.astype("<u2")).view(np.uint8).reshape(len(raw), -1)


def pmem_bytes(lanes: np.ndarray) -> np.ndarray:
    raw = np.ascontiguousarray(np.asarray(lanes, np.uint64).astype("<u8"))
    return raw.view(np.uint8).reshape(len(raw), -1)


def acc_bytes(lanes: np.ndarray) -> np.ndarray:
    raw = np.ascontiguousarray(np.asarray(lanes, np.int64).astype("<i4"))
    return raw.view(np.uint8).reshape(len(raw), -1)


def wgt_bytes(words: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(np.asarray(words, np.int8)).view(np.uint8).reshape(
        -1, np.asarray(words).shape[-1])


__all__ = ["acc_bytes", "bias_words", "lanes_to_rows", "layernorm_words", "param_words",
           "pmem_bytes", "rows_to_lanes", "table_word_count", "table_words", "tile_columns",
           "vmem_bytes", "weight_tiles", "wgt_bytes"]
