"""Analytic model of the vector unit — NOT YET RTL-VERIFIED.

There is no vector-unit RTL yet, so its cycles, element operations and SRAM traffic come from
this one function, :func:`vector_cost`, which replaces nothing else and can be swapped for the
timing rules of the RTL when it lands. The assumed unit (``docs/PERF_MODEL.md``):

* ``hw.cols`` lanes; one *pass* streams a row through the lanes, ``ceil(width / cols)``
  cycles per row per pass; an op on ``rows`` rows takes
  ``rows * (passes * ceil(width / cols) + row_latency) + OP_FILL`` cycles;
* the per-row latencies are the serial steps between passes (softmax: the one division of the
  row; LayerNorm: variance, rsqrt LUT and shift), the fill is the pipeline depth;
* element operations are counted per energy class, a multiply with an operand wider than 8
  bits as ``int32_mult`` (an upper bound); LUT reads count ``lut_bytes``;
* a reduction (mean pool, column sums) folds ``rows`` rows into one: one accumulating pass
  per input row plus its final passes, ``(rows + final_passes) * ceil(width / cols) +
  OP_FILL`` cycles;
* inputs are read from and outputs written to the banks named in :data:`OPS` with their
  element widths (the int16 residual stream: 2 bytes, int32 sums and biases: 4); LayerNorm
  parameters (gamma int8, beta int32) are read from the weight bank.

The formulas per op are those of ``docs/NUMERICS.md``; the counts below follow them step by
step.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from model.config import HardwareConfig
from sim.perf.counts import Counts

OP_FILL = 4  # pipeline fill per op invocation


@dataclass(frozen=True)
class VecSpec:
    """Cost of one vector op per row of ``width`` elements.

    ``passes``: streaming passes over the row; ``row_latency``: extra serial cycles per row;
    ``per_elem``/``per_row``: element operations by energy class; ``reads``: ``{bank: bytes
    per input element}`` over all passes (LayerNorm's gamma/beta count as weight-bank reads);
    ``in_bytes``: bytes per element of each input tensor and ``out_bytes`` of the output
    (``out_choices``: the widths an op may select instead), written to ``out_bank`` (the op's
    SRAM footprint is its inputs and its output).

    A *reduction* (``reduce``) folds its ``rows`` into one output row: one accumulating pass
    per input row plus ``final_passes`` over the output row, ``per_out`` operations per
    output element.
    """

    passes: int
    row_latency: int
    per_elem: dict[str, int]
    per_row: dict[str, int]
    reads: dict[str, int]
    in_bytes: tuple[int, ...]
    out_bytes: int
    out_choices: tuple[int, ...] = ()
    out_bank: str = "act"
    reduce: bool = False
    final_passes: int = 0
    per_out: dict[str, int] = field(default_factory=dict)


#: The vector ops of the layer step, named after their ``model/intops.py`` functions.
#: Requantization of GEMM results is not here: the GEMM programs do it on the REQUANT unit.
OPS: dict[str, VecSpec] = {
    # int8 branch a + int16 stream b -> int16: y = sat16((a*m_a + b*m_b + 2^(s-1)) >> s)
    "add_requant_i16": VecSpec(1, 0, {"int32_mult": 2, "int32_add": 2}, {},
                               {"act": 1 + 2}, (1, 2), 2),
    # int8 scores -> uint8 probabilities, written as the array operand p - 128 (an MSB flip,
    # free). pass 1: row max; pass 2: d = M - x, e = LUT[d], S += e; one division per row;
    # pass 3: d and e again, p = min(255, (e*m + 2^(s-1)) >> s).
    "softmax_u8": VecSpec(3, 16, {"int8_add": 3, "int32_add": 2, "int32_mult": 1,
                                  "lut_bytes": 4},
                          {"int32_add": 32}, {"act": 3}, (1,), 1),
    # int16 rows -> int8 (LN_in, LN_ffn) or int16 (LN_out). pass 1: S1 += x, Q += x*x (an
    # int16 product: int32_mult); per row: V = D*Q - S1^2 + eps, rsqrt LUT, shift;
    # pass 2: c = D*x - S1, z = (c*m + r) >> s, acc = z*gamma + beta, requantize.
    "layernorm_i16": VecSpec(2, 4, {"int32_add": 5, "int32_mult": 5},
                             {"int32_mult": 2, "int32_add": 1, "lut_bytes": 2},
                             {"act": 2 * 2, "wgt": 5}, (2,), 1, out_choices=(1, 2)),
    # summary: int8 rows accumulate (int32), a final pass rounds (exact divide by L).
    "mean_pool_i8": VecSpec(1, 0, {"int32_add": 1}, {}, {"act": 1}, (1,), 1, reduce=True,
                            final_passes=1, per_out={"int32_add": 1, "int32_mult": 1}),
    # layer 0's memory vector: int16 rows accumulate into an int32 column sum.
    "sum_rows_i16": VecSpec(1, 0, {"int32_add": 1}, {}, {"act": 2}, (2,), 4, reduce=True),
    # int32 -> int8: sat8((x*m + 2^(s-1)) >> s).
    "requantize": VecSpec(1, 0, {"int32_mult": 1, "int32_add": 1}, {}, {"act": 4}, (4,), 1),
    # P@V's zero-point bias: int32 column sums of one head's int8 V (x128 is a shift),
    # written as the GEMM's bias row into the ACC bank.
    "zero_point_bias": VecSpec(1, 0, {"int32_add": 1}, {}, {"act": 1}, (1,), 4,
                               out_bank="acc", reduce=True),
    # memory squash: clamp(requantize(x)) (a requantization and two compares) or tanh LUT.
    "clamp": VecSpec(1, 0, {"int32_mult": 1, "int32_add": 1, "int8_add": 2}, {},
                     {"act": 1}, (1,), 1),
    "tanh": VecSpec(1, 0, {"lut_bytes": 1}, {}, {"act": 1}, (1,), 1),
}


@dataclass(frozen=True)
class VectorOp:
    """``count`` independent invocations of ``kind`` on ``rows`` rows of ``width`` elements.

    For a reduction (``mean_pool_i8``, ``sum_rows_i16``, ``zero_point_bias``), ``rows`` is the
    number of rows reduced into one output row. ``out_bytes``: the output width when the kind
    offers a choice (``layernorm_i16``: 1 = int8, 2 = int16); ``None`` = the kind's default.
    """

    name: str
    kind: str
    rows: int
    width: int
    count: int = 1
    out_bytes: int | None = None

    def __post_init__(self) -> None:
        if self.kind not in OPS:
            raise ValueError(f"unknown vector op kind {self.kind!r}; known: {sorted(OPS)}")
        if self.rows < 1 or self.width < 1 or self.count < 1:
            raise ValueError(f"vector op {self.name}: rows, width, count must be >= 1")
        spec = OPS[self.kind]
        if self.out_bytes is not None and self.out_bytes not in (spec.out_bytes,
                                                                 *spec.out_choices):
            raise ValueError(f"vector op {self.name}: {self.kind} cannot write "
                             f"{self.out_bytes}-byte elements")

    @property
    def output_bytes(self) -> int:
        """Bytes per output element."""
        return OPS[self.kind].out_bytes if self.out_bytes is None else self.out_bytes


def vector_cost(op: VectorOp, hw: HardwareConfig) -> Counts:
    """Cycles, element operations and SRAM traffic of ``op`` on the assumed vector unit."""
    spec = OPS[op.kind]
    chunks = math.ceil(op.width / hw.cols)
    elems = op.rows * op.width
    c = Counts()
    ops = {k: v * elems for k, v in spec.per_elem.items()}
    if spec.reduce:
        # one accumulating pass per input row, then the final passes over the output row
        c.cycles = (op.rows + spec.final_passes) * chunks + OP_FILL
        out_elems = op.width
    else:
        c.cycles = op.rows * (spec.passes * chunks + spec.row_latency) + OP_FILL
        out_elems = elems
        for k, v in spec.per_row.items():
            ops[k] = ops.get(k, 0) + v * op.rows
    for k, v in spec.per_out.items():
        ops[k] = ops.get(k, 0) + v * out_elems
    for k, v in ops.items():
        c.ops[k] += v
    for bank, b in spec.reads.items():
        c.sram_reads[bank] += b * elems
    out_b = op.output_bytes * out_elems
    c.sram_writes[spec.out_bank] += out_b
    c.sram_peak["act"] = sum(spec.in_bytes) * elems
    c.sram_peak[spec.out_bank] += out_b
    if "wgt" in spec.reads:  # per-column parameters (LayerNorm gamma/beta)
        c.sram_peak["wgt"] = spec.reads["wgt"] * op.width
    c.busy["vector"] = c.cycles
    return c * op.count


#: Bytes of one softmax exp LUT (256 entries x 16 bit), one per layer (docs/NUMERICS.md).
EXP_LUT_BYTES = 256 * 2
#: Deployed LayerNorm parameter bytes per element: gamma int8 + beta int32.
LN_PARAM_BYTES = 1 + 4


def vector_param_bytes(d_model: int, n_layernorms: int = 3) -> int:
    """Bytes of the vector unit's per-layer parameters: LayerNorm gamma/beta and the exp LUT."""
    return n_layernorms * LN_PARAM_BYTES * d_model + EXP_LUT_BYTES


def vector_param_load(nbytes: int, hw: HardwareConfig) -> Counts:
    """Loading ``nbytes`` of vector-unit parameters over the host link into the weight bank:
    ``ceil(nbytes / host_bytes_per_cycle)`` DMA cycles, serial."""
    c = Counts()
    c.cycles = c.busy["dma"] = math.ceil(nbytes / hw.host_bytes_per_cycle)
    c.weight_loads["wgt"] = nbytes
    c.sram_writes["wgt"] = nbytes
    c.sram_peak["wgt"] = nbytes
    return c


def host_transfer(nbytes: int, hw: HardwareConfig, *, into_chip: bool) -> Counts:
    """Moving ``nbytes`` of activations over the host link, into the activation bank
    (``into_chip``: the model's int16 input chunk) or out of it (the int16 encoder output):
    ``ceil(nbytes / host_bytes_per_cycle)`` DMA cycles, serial. Analytic like the vector
    unit: the GEMM programs' own host transfers are in their instructions."""
    c = Counts()
    c.cycles = c.busy["dma"] = math.ceil(nbytes / hw.host_bytes_per_cycle)
    c.sram_peak["act"] = nbytes
    if into_chip:
        c.busy["dma_in"] = c.cycles
        c.host_in_bytes = nbytes
        c.sram_writes["act"] = nbytes
    else:
        c.busy["dma_out"] = c.cycles
        c.host_out_bytes = nbytes
        c.sram_reads["act"] = nbytes
    return c
