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
* inputs are read from and outputs written to the banks named in :data:`OPS`; LayerNorm
  parameters (gamma int8, beta int32) are read from the weight bank.

The formulas per op are those of ``docs/NUMERICS.md``; the counts below follow them step by
step.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from model.config import HardwareConfig
from sim.perf.counts import Counts

OP_FILL = 4  # pipeline fill per op invocation


@dataclass(frozen=True)
class VecSpec:
    """Cost of one vector op per row of ``width`` elements.

    ``passes``: streaming passes over the row; ``row_latency``: extra serial cycles per row;
    ``per_elem``/``per_row``: element operations by energy class; ``reads``/``writes``:
    ``{bank: bytes per element}`` (LayerNorm's gamma/beta count as weight-bank reads);
    ``inputs``: int8 input tensors (the op's SRAM footprint is its inputs and its output).
    """

    passes: int
    row_latency: int
    per_elem: dict[str, int]
    per_row: dict[str, int]
    reads: dict[str, int]
    writes: dict[str, int]
    inputs: int = 1


#: Requantization of GEMM results is not here: the GEMM programs do it on the REQUANT unit.
OPS: dict[str, VecSpec] = {
    # y = sat8((a*m_a + b*m_b + 2^(s-1)) >> s)
    "residual_add": VecSpec(1, 0, {"int32_mult": 2, "int32_add": 2}, {},
                            {"act": 2}, {"act": 1}, inputs=2),
    # pass 1: row max; pass 2: d = M - x, e = LUT[d], S += e; one division per row;
    # pass 3: d and e again, p = sat8((e*m + 2^(s-1)) >> s).
    "softmax": VecSpec(3, 16, {"int8_add": 3, "int32_add": 2, "int32_mult": 1, "lut_bytes": 4},
                       {"int32_add": 32}, {"act": 3}, {"act": 1}),
    # pass 1: S1 += x, Q += x*x; per row: V = D*Q - S1^2 + eps, rsqrt LUT, shift;
    # pass 2: c = D*x - S1, z = (c*m + r) >> s, acc = z*gamma + beta, requantize.
    "layernorm": VecSpec(2, 4, {"int8_mult": 1, "int32_add": 5, "int32_mult": 4},
                         {"int32_mult": 2, "int32_add": 1, "lut_bytes": 2},
                         {"act": 2, "wgt": 5}, {"act": 1}),
    # one pass per input row accumulates; a final pass rounds (exact divide by L).
    "mean_pool": VecSpec(1, 0, {"int32_add": 1}, {}, {"act": 1}, {}),
    # memory squash: clamp (two compares) or tanh LUT.
    "clamp": VecSpec(1, 0, {"int8_add": 2}, {}, {"act": 1}, {"act": 1}),
    "tanh": VecSpec(1, 0, {"lut_bytes": 1}, {}, {"act": 1}, {"act": 1}),
}


@dataclass(frozen=True)
class VectorOp:
    """``count`` independent invocations of ``kind`` on ``rows`` rows of ``width`` elements.

    For ``mean_pool``, ``rows`` is the number of rows averaged into one output row.
    """

    name: str
    kind: str
    rows: int
    width: int
    count: int = 1

    def __post_init__(self) -> None:
        if self.kind not in OPS:
            raise ValueError(f"unknown vector op kind {self.kind!r}; known: {sorted(OPS)}")
        if self.rows < 1 or self.width < 1 or self.count < 1:
            raise ValueError(f"vector op {self.name}: rows, width, count must be >= 1")


def vector_cost(op: VectorOp, hw: HardwareConfig) -> Counts:
    """Cycles, element operations and SRAM traffic of ``op`` on the assumed vector unit."""
    spec = OPS[op.kind]
    chunks = math.ceil(op.width / hw.cols)
    elems = op.rows * op.width
    c = Counts()
    if op.kind == "mean_pool":
        # rows accumulate, then one rounding pass over the single output row
        c.cycles = (op.rows + 1) * chunks + OP_FILL
        per_elem_ops = {"int32_add": elems + op.width, "int32_mult": op.width}
        c.sram_writes["act"] = op.width
        c.sram_peak["act"] = elems + op.width
    else:
        c.sram_peak["act"] = (spec.inputs + 1) * elems
        c.cycles = op.rows * (spec.passes * chunks + spec.row_latency) + OP_FILL
        per_elem_ops = {k: v * elems for k, v in spec.per_elem.items()}
        for k, v in spec.per_row.items():
            per_elem_ops[k] = per_elem_ops.get(k, 0) + v * op.rows
        for bank, b in spec.writes.items():
            c.sram_writes[bank] += b * elems
    for bank, b in spec.reads.items():
        c.sram_reads[bank] += b * elems
    if "wgt" in spec.reads:  # per-column parameters (LayerNorm gamma/beta)
        c.sram_peak["wgt"] = spec.reads["wgt"] * op.width
    for k, v in per_elem_ops.items():
        c.ops[k] += v
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
