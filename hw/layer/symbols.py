"""Symbolic tensors: what the golden dataflow computes on when the backend emits instructions.

The golden model (``model/golden.py``) is written against an ops backend and numpy-style
indexing; run with :class:`hw.layer.backend.InstrOps`, its tensors are these handles instead
of arrays. A :class:`Buf` is a tensor in VMEM (an address, rows, a row layout and stride);
slicing, folding (``reshape``) and transposing it is addressing: new handles onto the same
words. :class:`Cat` / :class:`CatCols` are concatenations that stay virtual until a consumer
needs them; the ``Pending*`` handles are results an op consumes directly (a GEMM's int32
accumulators are only ever requantized, a column sum only ever requantized, ...).

**Row layout** (:class:`Layout`): a row of ``blocks`` blocks of ``block`` elements, each
block starting at a VMEM word boundary (``ceil(block/cols)`` words). The residual stream's
rows are blocks of the folded width ``D/N``, so a fold block is whole words whatever ``D/N``
is; q/k/v rows are blocks of the head width, so a head slice is whole words.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np


class LayerCompileError(ValueError):
    """The layer cannot be compiled as asked; the message names the cause and the fix."""


@dataclass(frozen=True)
class Layout:
    """``blocks`` word-aligned blocks of ``block`` elements per row."""

    blocks: int
    block: int

    @property
    def cols(self) -> int:
        return self.blocks * self.block

    def block_words(self, cols: int) -> int:
        return -(-self.block // cols)

    def words(self, cols: int) -> int:
        return self.blocks * self.block_words(cols)


class Sym:
    """Base of the symbolic tensors (numpy-like ``shape``)."""

    shape: tuple[int, ...]

    @property
    def T(self) -> Transposed:  # noqa: N802 - numpy spelling
        return Transposed(self)

    def __len__(self) -> int:
        return self.shape[0]


def _row_range(key: Any, n: int) -> tuple[int, int, bool]:
    """``(start, stop, scalar)`` of a row index or unit-step slice over ``n`` rows."""
    if isinstance(key, (int, np.integer)):
        k = int(key) + (n if key < 0 else 0)
        if not 0 <= k < n:
            raise IndexError(f"row {key} of {n}")
        return k, k + 1, True
    if isinstance(key, slice):
        start, stop, step = key.indices(n)
        if step != 1:
            raise LayerCompileError(f"row slice with step {step}: only unit steps are "
                                    "addressing")
        return start, max(start, stop), False
    raise LayerCompileError(f"unsupported index {key!r}")


@dataclass
class Buf(Sym):
    """A tensor in VMEM: row ``r`` starts at word ``addr + r*rstride``; ``dtype`` is "i8",
    "i16" or "p8" (softmax probabilities stored as the int8 operand ``p - 128``)."""

    addr: int
    rows: int
    layout: Layout
    rstride: int
    dtype: str
    cols_hw: int
    vector: bool = False          # a 1-D tensor (one row)
    name: str = ""
    alloc: Any = field(default=None, repr=False)   # the VMEM block (shared by views)

    @property
    def shape(self) -> tuple[int, ...]:
        return (self.layout.cols,) if self.vector else (self.rows, self.layout.cols)

    @property
    def row_words(self) -> int:
        return self.layout.words(self.cols_hw)

    @property
    def span(self) -> int:
        """Words from the first word of row 0 past the last word of the last row."""
        return (self.rows - 1) * self.rstride + self.row_words if self.rows else 0

    @property
    def contiguous(self) -> bool:
        return self.rows <= 1 or self.rstride == self.row_words

    def rows_slice(self, lo: int, hi: int) -> Buf:
        return replace(self, addr=self.addr + lo * self.rstride, rows=hi - lo, vector=False)

    def __getitem__(self, key: Any) -> Buf:
        if self.vector:
            raise LayerCompileError("indexing a 1-D symbolic tensor")
        rkey, ckey = (key if isinstance(key, tuple) else (key, slice(None)))
        lo, hi, scalar = _row_range(rkey, self.rows)
        out = self.rows_slice(lo, hi)
        if ckey != slice(None):
            out = out.cols_slice(ckey)
        if scalar:
            out = replace(out, vector=True)
        return out

    def cols_slice(self, key: slice) -> Buf:
        """Columns ``key`` (whole blocks only: a head slice of q/k/v rows)."""
        c0, c1, step = key.indices(self.layout.cols)
        b = self.layout.block
        if step != 1 or c0 % b or (c1 % b and c1 != self.layout.cols):
            raise LayerCompileError(f"column slice {c0}:{c1} does not fall on the {b}-element "
                                    "blocks of the row layout")
        nb = -(-(c1 - c0) // b)
        return replace(self, addr=self.addr + (c0 // b) * self.layout.block_words(self.cols_hw),
                       layout=Layout(nb, b))

    def reshape(self, *shape: int) -> Buf:
        shape = shape[0] if len(shape) == 1 and isinstance(shape[0], tuple) else shape
        if self.vector:
            if tuple(shape) in ((1, -1), (1, self.layout.cols)):
                return replace(self, vector=False, rows=1)
            raise LayerCompileError(f"reshape of a 1-D tensor to {shape}")
        if len(shape) != 2 or shape[0] != -1:
            raise LayerCompileError(f"reshape to {shape}: only (-1, width) folds and unfolds")
        width = shape[1]
        lay, cols = self.layout, self.layout.cols
        if width == cols:
            return self
        if not self.contiguous:
            raise LayerCompileError("folding rows that are not contiguous")
        bw = lay.block_words(self.cols_hw)
        if width < cols:                       # fold: each row becomes cols/width rows
            if width % lay.block or lay.blocks % (width // lay.block):
                raise LayerCompileError(f"fold of {lay.blocks}x{lay.block}-element rows to "
                                        f"width {width} is not whole blocks")
            k = width // lay.block
            n = cols // width
            return replace(self, rows=self.rows * n, layout=Layout(k, lay.block),
                           rstride=k * bw)
        n, rem = divmod(width, cols)           # unfold: n rows become one
        if rem or self.rows % n:
            raise LayerCompileError(f"unfold of {self.rows} rows of {cols} to width {width}")
        return replace(self, rows=self.rows // n, layout=Layout(lay.blocks * n, lay.block),
                       rstride=self.rstride * n)


@dataclass
class Cat(Sym):
    """Rows of ``parts`` (symbolic tensors with the same columns) concatenated."""

    parts: list[Sym]

    def __post_init__(self) -> None:
        flat: list[Sym] = []
        for p in self.parts:
            flat.extend(p.parts if isinstance(p, Cat) else [p])
        self.parts = [p for p in flat if p.shape[0] > 0]
        widths = {p.shape[1] for p in self.parts}
        if len(widths) > 1:
            raise LayerCompileError(f"concatenating rows of widths {sorted(widths)}")

    @property
    def shape(self) -> tuple[int, int]:
        return (sum(p.shape[0] for p in self.parts), self.parts[0].shape[1])

    def __getitem__(self, key: Any) -> Sym:
        rkey, ckey = (key if isinstance(key, tuple) else (key, slice(None)))
        lo, hi, scalar = _row_range(rkey, self.shape[0])
        out, pos = [], 0
        for p in self.parts:
            n = p.shape[0]
            a, b = max(lo, pos), min(hi, pos + n)
            if a < b:
                out.append(p[a - pos:b - pos] if (a, b) != (pos, pos + n) else p)
            pos += n
        if ckey != slice(None):
            out = [p[:, ckey] for p in out]
        if scalar:
            if len(out) != 1:
                raise LayerCompileError("row index into an empty concatenation")
            return out[0][0]
        return out[0] if len(out) == 1 else Cat(out)

    def reshape(self, *shape: int) -> Cat:
        return Cat([p.reshape(*shape) for p in self.parts])


@dataclass
class CatCols(Sym):
    """Columns of ``parts`` (same rows) concatenated (the heads' contexts)."""

    parts: list[Sym]

    @property
    def shape(self) -> tuple[int, int]:
        return (self.parts[0].shape[0], sum(p.shape[1] for p in self.parts))


@dataclass
class Transposed(Sym):
    """``base.T``: only a GEMM's B operand (K^T of the scores) consumes it."""

    base: Sym

    @property
    def shape(self) -> tuple[int, int]:
        r, c = self.base.shape
        return (c, r)


@dataclass
class Const(Sym):
    """A tensor of the quantized model (weights, biases, per-channel parameters, tables)."""

    name: str
    value: np.ndarray

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.value.shape)


@dataclass
class Input(Sym):
    """The host's int16 chunk of one step: ``rows`` x ``cols`` (rows ``lo..hi`` of it)."""

    rows: int
    cols: int
    lo: int = 0
    hi: int | None = None

    @property
    def shape(self) -> tuple[int, int]:
        return ((self.rows if self.hi is None else self.hi) - self.lo, self.cols)

    def __getitem__(self, key: Any) -> Input:
        lo, hi, scalar = _row_range(key, self.shape[0])
        if scalar:
            raise LayerCompileError("a single input row")
        return replace(self, lo=self.lo + lo, hi=self.lo + hi)


@dataclass
class Mask(Sym):
    """A softmax ``allowed`` mask (numpy bool)."""

    allowed: np.ndarray

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.allowed.shape)


@dataclass
class PendingGemm(Sym):
    """``gemm_i32(a, b, bias)``: int32 accumulators, consumed by ``requantize``."""

    a: Sym
    b: Sym
    bias: Sym | None

    @property
    def shape(self) -> tuple[int, int]:
        return (self.a.shape[0], self.b.shape[1])


@dataclass
class PendingColSum(Sym):
    """``sum_rows_i16(x, axis=0)``: int32 column sums, consumed by ``requantize``."""

    x: Buf

    @property
    def shape(self) -> tuple[int]:
        return (self.x.shape[1],)


@dataclass
class PendingZeroPoint(Sym):
    """``zero_point_bias(v)``: the int32 bias of P@V, consumed as a GEMM bias."""

    v: Sym

    @property
    def shape(self) -> tuple[int]:
        return (self.v.shape[1],)


@dataclass
class PendingRequant(Sym):
    """``requantize`` of an int8 tensor (the clamp squash), consumed by ``clamp_i8``."""

    x: Buf
    m: int
    s: int

    @property
    def shape(self) -> tuple[int, ...]:
        return self.x.shape


@dataclass
class Trace(Sym):
    """A value only the golden model's optional trace dict holds (never consumed)."""

    what: str
    shape: tuple[int, ...] = field(default=(0,))


__all__ = ["Buf", "Cat", "CatCols", "Const", "Input", "LayerCompileError", "Layout", "Mask",
           "PendingColSum", "PendingGemm", "PendingRequant", "PendingZeroPoint", "Sym",
           "Trace", "Transposed"]
