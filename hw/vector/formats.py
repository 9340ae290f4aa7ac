"""Word formats of the vector memories and layouts of the vector ops' parameter words.

Pure Python + numpy (the compiler, the ISA simulator and the estimator import it); the RTL
engines slice the same fields (:func:`field_slice`), so one table defines each layout.

* **VMEM word**: ``cols`` lanes of 16 bits, lane ``j`` = bits ``16j .. 16j+15`` (little
  endian), a signed value: int16 data as is, int8 data sign-extended, softmax outputs as the
  int8 array operand ``p - 128``. A tensor row of ``W`` elements occupies ``ceil(W / cols)``
  consecutive words (element ``e`` in word ``e // cols``, lane ``e % cols``; padding lanes 0).
  A *block-padded* row of ``blocks`` blocks of ``block`` elements starts each block at a word
  boundary (:func:`block_lanes`), so a fold block is a whole number of words.
* **PMEM word**: ``cols`` lanes of 64 bits. LayerNorm's per-feature words hold, in lane ``j``,
  feature ``w*cols + j``'s ``beta_q`` (bits 0..31, int32) and ``gamma_q`` (bits 32..39, int8).
  A vector op's *parameter word* holds its scalar parameters, laid out by :data:`PARAM_LAYOUTS`.
* **LUT entries**: the exp / squash table ``ELUT`` has 256 entries of 16 bits (exp values
  ``0 .. 2**15`` unsigned; squash tables int8, sign-extended); ``RLUT`` has 192 entries of
  16 bits (the rsqrt table). ``VLUT`` loads either from consecutive VMEM words (entry ``i`` =
  lane ``i % cols`` of word ``src + i // cols``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

VMEM_LANE_BITS = 16
PMEM_LANE_BITS = 64
ELUT_SIZE = 256
RLUT_SIZE = 192
LUT_ENTRY_BITS = 16


@dataclass(frozen=True)
class ParamField:
    """One scalar of a parameter word: ``bits`` bits at ``offset`` of 64-bit lane ``lane``."""

    name: str
    lane: int
    offset: int
    bits: int
    signed: bool = False


def _fields(*items: tuple) -> dict[str, ParamField]:
    return {f[0]: ParamField(*f) for f in items}


#: Scalar parameters of each vector op, in its PMEM parameter word.
PARAM_LAYOUTS: dict[str, dict[str, ParamField]] = {
    # LayerNorm: eps_int (< 2**60), output requantization (m, s), int16 output flag
    "VLN": _fields(("eps", 0, 0, 62), ("m", 1, 0, 15), ("s", 1, 16, 6), ("out16", 1, 24, 1)),
    # residual add: sat16((a*m_a + b*m_b + 2**(s-1)) >> s), optional ReLU
    "VADD": _fields(("m_a", 0, 0, 15), ("m_b", 0, 16, 15), ("s", 0, 32, 6), ("relu", 0, 40, 1)),
    # column sums: y = sat(((S + off) * m + 2**(s-1)) >> s) + post), out 0 int8 / 1 int16 /
    # 2 int32 (saturation to the output type after adding post)
    "VSUM": _fields(("off", 0, 0, 32, True), ("post", 0, 32, 16, True), ("m", 1, 0, 15),
                    ("s", 1, 16, 6)),
    # memory squash: mode 0: clamp(sat8((x*m + 2**(s-1)) >> s), lo, hi); mode 1: ELUT[x + 128]
    "VSQUASH": _fields(("mode", 0, 0, 1), ("m", 0, 8, 15), ("s", 0, 24, 6),
                       ("lo", 0, 32, 8, True), ("hi", 0, 40, 8, True)),
}


def field_slice(lane_value, f: ParamField):
    """The field's bits of a 64-bit lane (Python int or Amaranth value; signed if ``f`` is)."""
    if isinstance(lane_value, (int, np.integer)):
        v = (int(lane_value) >> f.offset) & ((1 << f.bits) - 1)
        return v - (1 << f.bits) if f.signed and v >> (f.bits - 1) else v
    bits = lane_value[f.offset:f.offset + f.bits]
    return bits.as_signed() if f.signed else bits


def pack_param_word(op: str, cols: int, **values: int) -> np.ndarray:
    """The PMEM parameter word of ``op`` with the given scalars, as ``cols`` uint64 lanes."""
    layout = PARAM_LAYOUTS[op]
    unknown = set(values) - set(layout)
    if unknown:
        raise ValueError(f"{op} has no parameter(s) {sorted(unknown)}; it has {sorted(layout)}")
    lanes = [0] * cols
    for name, f in layout.items():
        v = int(values.get(name, 0))
        lo, hi = (-(1 << (f.bits - 1)), (1 << (f.bits - 1)) - 1) if f.signed else \
            (0, (1 << f.bits) - 1)
        if not lo <= v <= hi:
            raise ValueError(f"{op} parameter {name}={v} does not fit {f.bits} "
                             f"{'signed ' if f.signed else ''}bits")
        lanes[f.lane] |= (v & ((1 << f.bits) - 1)) << f.offset
    return np.array(lanes, np.uint64)


def unpack_param_word(op: str, lanes) -> dict[str, int]:
    """Inverse of :func:`pack_param_word` (the scalars the engine reads)."""
    return {name: field_slice(int(lanes[f.lane]), f) for name, f in PARAM_LAYOUTS[op].items()}


def pack_ln_features(gamma_q, beta_q, cols: int) -> np.ndarray:
    """LayerNorm per-feature PMEM words: ``(ceil(D/cols), cols)`` uint64 lanes."""
    g = np.asarray(gamma_q, np.int64)
    b = np.asarray(beta_q, np.int64)
    words = -(-len(g) // cols)
    lanes = np.zeros(words * cols, np.uint64)
    lanes[:len(g)] = ((b & 0xFFFFFFFF) | ((g & 0xFF) << 32)).astype(np.uint64)
    return lanes.reshape(words, cols)


def unpack_ln_features(words) -> tuple[np.ndarray, np.ndarray]:
    """(gamma_q, beta_q) int64 arrays of LayerNorm PMEM words (all lanes)."""
    lanes = np.asarray(words, np.uint64).reshape(-1).astype(object)
    beta = np.array([int(v) & 0xFFFFFFFF for v in lanes], np.int64)
    gamma = np.array([(int(v) >> 32) & 0xFF for v in lanes], np.int64)
    return np.where(gamma > 127, gamma - 256, gamma), np.where(beta >= 2**31, beta - 2**32, beta)


def block_lanes(blocks: int, block: int, cols: int) -> np.ndarray:
    """Lane positions (within a row of ``blocks * ceil(block/cols)`` words) of the
    ``blocks * block`` elements of a block-padded row: element ``e`` of block ``b`` is lane
    ``(b * ceil(block/cols)) * cols + e``."""
    bw = -(-block // cols)
    return (np.arange(blocks)[:, None] * bw * cols + np.arange(block)[None, :]).reshape(-1)


def block_pad(values, blocks: int, block: int, cols: int) -> np.ndarray:
    """``(..., blocks*block)`` values -> ``(..., blocks*ceil(block/cols)*cols)`` with each
    block starting at a word boundary (padding 0): the lanes of block-padded rows."""
    v = np.asarray(values, np.int64)
    bw = -(-block // cols)
    out = np.zeros(v.shape[:-1] + (blocks * bw * cols,), np.int64)
    out[..., block_lanes(blocks, block, cols)] = v
    return out


def vmem_rows(values, cols: int) -> np.ndarray:
    """A (rows, W) integer tensor as VMEM words: ``(rows * ceil(W/cols), cols)`` int16 lanes."""
    v = np.asarray(values, np.int64)
    rows, width = v.shape
    words = -(-width // cols)
    out = np.zeros((rows, words * cols), np.int16)
    out[:, :width] = v
    return out.reshape(rows * words, cols)


def rows_from_vmem(words, width: int, cols: int) -> np.ndarray:
    """Inverse of :func:`vmem_rows`: VMEM words (int16 lanes) -> (rows, width) int64."""
    w = np.asarray(words, np.int64).reshape(-1, cols)
    per = -(-width // cols)
    return w.reshape(-1, per * cols)[:, :width]


__all__ = ["ELUT_SIZE", "LUT_ENTRY_BITS", "PARAM_LAYOUTS", "PMEM_LANE_BITS", "ParamField",
           "RLUT_SIZE", "VMEM_LANE_BITS", "block_lanes", "block_pad", "field_slice",
           "pack_ln_features", "pack_param_word", "rows_from_vmem", "unpack_ln_features",
           "unpack_param_word", "vmem_rows"]
