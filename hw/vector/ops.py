"""Opcode-table entries of the vector unit (VLUT, VLN, VSOFTMAX, VADD, VSUM, VSQUASH) and
the mover (MTRANS, MCOPY): fields, legality, SRAM regions, shared ports, timing, traffic and
functional semantics (``docs/ISA.md``, sections "Vector unit" and "Mover").

The semantics call ``model.intops`` on the lanes of VMEM/PMEM words (formats in
``hw/vector/formats.py``); the timing rules are the engines' closed-form latencies
(``hw/vector/timing.py``). Both units finish one instruction before they start the next, so
hazards between two instructions of the same unit are always ordered.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from hw.opspec import (
    ExecutionError,
    Machine,
    OpSpec,
    Rule,
    Traffic,
    always_ordered,
    cdiv,
    engine_cost,
    overlap,
    past_end,
    pick,
    strided,
    zero,
)
from hw.uarch import ACC, ACT, BANK_KEYS, PMEM, VMEM, WGT, AccelParams
from hw.vector import formats
from hw.vector.timing import latency
from model import intops

#: Payload fields of the vector-unit and mover opcodes.
VECTOR_FIELDS: dict[str, tuple[tuple[str, int], ...]] = {
    "VLUT": (("table", 1), ("src", 16)),
    "VLN": (("src", 16), ("dst", 16), ("rows", 8), ("blocks", 8), ("block", 12),
            ("param", 16)),
    "VSOFTMAX": (("src", 16), ("dst", 16), ("rows", 8), ("words", 8), ("ncols", 12),
                 ("mrow", 8), ("mcols", 12)),
    "VADD": (("a", 16), ("b", 16), ("dst", 16), ("count", 16), ("param", 16)),
    "VSUM": (("src", 16), ("stride", 8), ("rows", 16), ("words", 8), ("dst", 16), ("out", 2),
             ("param", 16)),
    "VSQUASH": (("src", 16), ("dst", 16), ("count", 16), ("param", 16)),
}
MOVER_FIELDS: dict[str, tuple[tuple[str, int], ...]] = {
    "MTRANS": (("src", 16), ("stride", 8), ("rows", 7), ("ncols", 12), ("bank", 1),
               ("dst", 16), ("boff", 6)),
    "MCOPY": (("src", 16), ("dst", 16), ("count", 16), ("bank", 1), ("stride", 8)),
}

#: VLUT ``table``: the exp/squash table (256 entries) or the rsqrt table (192 entries).
LUT_TABLES = {0: ("ELUT", formats.ELUT_SIZE), 1: ("RLUT", formats.RLUT_SIZE)}
#: VSUM ``out``: int8 or int16 rows in VMEM, int32 words in ACC.
VSUM_OUT = {"VMEM8": 0, "VMEM16": 1, "ACC32": 2}
#: MTRANS ``bank``: ACT (A operand, K-major) or WGT (B operand rows, e.g. K^T).
MTRANS_BANKS = {0: ACT, 1: WGT}
#: MCOPY ``bank``: VMEM or WGT (a B operand, e.g. V).
MCOPY_BANKS = {0: VMEM, 1: WGT}


def _lut_words(a, p) -> Any:
    return pick(a.table, {t: -(-n // p.cols) for t, (_, n) in LUT_TABLES.items()}, 0)


def _span(a, rows: str, stride: Any, width: Any) -> Any:
    """Words from the first to past the last of ``rows`` rows ``stride`` apart, ``width``
    words each (0 rows: 0)."""
    return (getattr(a, rows) - 1) * stride + width


def _params(m: Machine, op: str, addr: int) -> dict[str, int]:
    return formats.unpack_param_word(op, m.lanes(PMEM, addr, addr + 1, "<u8")[0])


def _vmem_rows(m: Machine, src: int, rows: int, stride: int, words: int) -> np.ndarray:
    """``rows`` rows of ``words`` VMEM words, ``stride`` words apart: (rows, words*cols)."""
    return np.stack([m.lanes(VMEM, src + r * stride, src + r * stride + words, "<i2")
                     .reshape(-1) for r in range(rows)])


def _checked(where: str, fn, *args, **kw):
    try:
        return fn(*args, **kw)
    except intops.IntOpsError as e:
        raise ExecutionError(f"{where}: {e}") from None


def _vector(name: str, code: int, fields, rules, regions, ports, traffic, execute) -> OpSpec:
    return OpSpec(name, code, fields, unit="VECTOR", rules=rules, regions=regions,
                  ports=ports, ordered_raw=always_ordered,
                  cost=lambda a, p: engine_cost(latency(name, a, p), "vector_busy"),
                  traffic=traffic, execute=execute)


def _mover(name: str, code: int, fields, rules, regions, ports, traffic, execute) -> OpSpec:
    return OpSpec(name, code, fields, unit="MOVER", rules=rules, regions=regions,
                  ports=ports, ordered_raw=always_ordered,
                  cost=lambda a, p: engine_cost(latency(name, a, p), "mover_busy"),
                  traffic=traffic, execute=execute)


def _traffic(p: AccelParams, reads: dict[int, int], writes: dict[int, int],
             ops: dict[str, int] | None = None) -> Traffic:
    t = Traffic()
    for bank, words in reads.items():
        t.reads[BANK_KEYS[bank]] += words * p.word_bytes(bank)
    for bank, words in writes.items():
        t.writes[BANK_KEYS[bank]] += words * p.word_bytes(bank)
    t.ops = dict(ops or {})
    return t


# -- VLUT


def _vlut_exec(m: Machine, a, where: str) -> None:
    name, n = LUT_TABLES[a.table]
    words = -(-n // m.p.cols)
    entries = m.lanes(VMEM, a.src, a.src + words, "<u2").reshape(-1)[:n]
    (m.elut if name == "ELUT" else m.rlut)[:] = entries


_VLUT = _vector(
    "VLUT", 8, VECTOR_FIELDS["VLUT"],
    rules=(past_end("src", _lut_words, VMEM),),
    regions=lambda a, p: ([(VMEM, a.src, a.src + _lut_words(a, p))], []),
    ports=lambda a, p: ["VMEM.r"],
    traffic=lambda a, p: _traffic(p, {VMEM: _lut_words(a, p)}, {},
                                  {"lut_bytes": 2 * LUT_TABLES[a.table][1]}),
    execute=_vlut_exec)


# -- VLN


def block_words(block: Any, cols: int) -> Any:
    """Words of one block of ``block`` elements (a block starts at a word boundary)."""
    return cdiv(block, cols)


def _vln_words(a, p) -> Any:
    """Words of one VLN row: ``blocks`` blocks of ``block`` elements, each word-aligned."""
    return a.blocks * block_words(a.block, p.cols)


def _vln_span(a, p) -> Any:
    return a.rows * _vln_words(a, p)


def _rows_words(a) -> Any:
    return a.rows * a.words


def _vln_exec(m: Machine, a, where: str) -> None:
    if not np.array_equal(m.rlut, intops.RSQRT_LUT):
        raise ExecutionError(f"{where}: the RLUT does not hold the rsqrt table "
                             "(model.intops.RSQRT_LUT); load it with VLUT table=1 first")
    C = m.p.cols
    words = _vln_words(a, m.p)
    valid = formats.block_lanes(a.blocks, a.block, C)          # lane positions of the D
    prm = _params(m, "VLN", a.param)
    gamma, beta = formats.unpack_ln_features(
        m.lanes(PMEM, a.param + 1, a.param + 1 + words, "<u8"))
    x = _vmem_rows(m, a.src, a.rows, words, words)[:, valid]
    y = _checked(where, intops.layernorm_i16, x, gamma[valid], beta[valid], prm["m"],
                 prm["s"], prm["eps"], 16 if prm["out16"] else 8)
    out = np.zeros((a.rows, words * C), np.int64)              # padding lanes written 0
    out[:, valid] = y
    m.put_lanes(VMEM, a.dst, out.reshape(-1, C), "<i2")


_VLN = _vector(
    "VLN", 9, VECTOR_FIELDS["VLN"],
    rules=(zero("rows"), zero("blocks"), zero("block"),
           Rule(lambda a, p: _vln_words(a, p) > 255,
                lambda a, p: f"a row of 'blocks'={a.blocks} x 'block'={a.block} elements "
                             f"takes {_vln_words(a, p)} words (at most 255)"),
           past_end("src", lambda a, p: _vln_span(a, p), VMEM),
           past_end("dst", lambda a, p: _vln_span(a, p), VMEM),
           past_end("param", lambda a, p: 1 + _vln_words(a, p), PMEM),
           overlap("dst", lambda a, p: _vln_span(a, p), "src", lambda a, p: _vln_span(a, p))),
    regions=lambda a, p: ([(VMEM, a.src, a.src + _vln_span(a, p)),
                           (PMEM, a.param, a.param + 1 + _vln_words(a, p))],
                          [(VMEM, a.dst, a.dst + _vln_span(a, p))]),
    ports=lambda a, p: ["VMEM.r", "VMEM.w"],
    traffic=lambda a, p: _traffic(
        p, {VMEM: 2 * _vln_span(a, p), PMEM: 1 + _vln_span(a, p)}, {VMEM: _vln_span(a, p)},
        {"int32_add": 4 * a.rows * a.blocks * a.block,
         "int32_mult": 4 * a.rows * a.blocks * a.block}),
    execute=_vln_exec)


# -- VSOFTMAX


def _softmax_exec(m: Machine, a, where: str) -> None:
    C = m.p.cols
    x = _vmem_rows(m, a.src, a.rows, a.words, a.words)[:, :a.ncols]
    allowed = np.ones(x.shape, bool)
    allowed[a.mrow:, :a.mcols] = False
    p_u8 = _checked(where, intops.softmax_u8, x, m.elut, allowed)
    out = np.full((a.rows, a.words * C), -intops.PROB_ZERO_POINT, np.int64)
    out[:, :a.ncols] = intops.u8_to_i8(p_u8)
    m.put_lanes(VMEM, a.dst, out.reshape(-1, C), "<i2")


_VSOFTMAX = _vector(
    "VSOFTMAX", 10, VECTOR_FIELDS["VSOFTMAX"],
    rules=(zero("rows"), zero("words"), zero("ncols"),
           Rule(lambda a, p: a.ncols > a.words * p.cols,
                lambda a, p: f"'ncols'={a.ncols} is more than the {a.words * p.cols} columns "
                             f"of 'words'={a.words}"),
           Rule(lambda a, p: (a.mrow < a.rows) & (a.mcols >= a.ncols),
                lambda a, p: f"rows from 'mrow'={a.mrow} see no column ('mcols'={a.mcols} "
                             f">= 'ncols'={a.ncols})"),
           past_end("src", lambda a, p: _rows_words(a), VMEM),
           past_end("dst", lambda a, p: _rows_words(a), VMEM),
           overlap("dst", lambda a, p: _rows_words(a), "src", lambda a, p: _rows_words(a))),
    regions=lambda a, p: ([(VMEM, a.src, a.src + _rows_words(a))],
                          [(VMEM, a.dst, a.dst + _rows_words(a))]),
    ports=lambda a, p: ["VMEM.r", "VMEM.w"],
    traffic=lambda a, p: _traffic(
        p, {VMEM: _rows_words(a)}, {VMEM: _rows_words(a)},
        {"lut_bytes": 4 * a.rows * a.ncols, "int32_add": 3 * a.rows * a.ncols,
         "int32_mult": a.rows * a.ncols}),
    execute=_softmax_exec)


# -- VADD


def _vadd_exec(m: Machine, a, where: str) -> None:
    prm = _params(m, "VADD", a.param)
    x = m.lanes(VMEM, a.a, a.a + a.count, "<i2")
    y = m.lanes(VMEM, a.b, a.b + a.count, "<i2")
    out = _checked(where, intops.add_requant_i16, x, y, prm["m_a"], prm["m_b"], prm["s"],
                   bool(prm["relu"]))
    m.put_lanes(VMEM, a.dst, out, "<i2")


_VADD = _vector(
    "VADD", 11, VECTOR_FIELDS["VADD"],
    rules=(zero("count"),
           past_end("a", lambda a, p: a.count, VMEM), past_end("b", lambda a, p: a.count, VMEM),
           past_end("dst", lambda a, p: a.count, VMEM),
           past_end("param", lambda a, p: 1, PMEM),
           overlap("dst", lambda a, p: a.count, "a", lambda a, p: a.count),
           overlap("dst", lambda a, p: a.count, "b", lambda a, p: a.count)),
    regions=lambda a, p: ([(VMEM, a.a, a.a + a.count), (VMEM, a.b, a.b + a.count),
                           (PMEM, a.param, a.param + 1)], [(VMEM, a.dst, a.dst + a.count)]),
    ports=lambda a, p: ["VMEM.r", "VMEM.w"],
    traffic=lambda a, p: _traffic(
        p, {VMEM: 2 * a.count, PMEM: 1}, {VMEM: a.count},
        {"int32_mult": 2 * a.count * p.cols, "int32_add": 2 * a.count * p.cols}),
    execute=_vadd_exec)


# -- VSUM


def _vsum_dst_bank(a) -> Any:
    return pick(a.out, {0: VMEM, 1: VMEM, 2: ACC}, VMEM)


def _vsum_reads(a) -> list:
    if a.stride == a.words:
        return [(VMEM, a.src, a.src + a.rows * a.words)]
    return [(VMEM, a.src + r * a.stride, a.src + r * a.stride + a.words) for r in range(a.rows)]


def _vsum_exec(m: Machine, a, where: str) -> None:
    prm = _params(m, "VSUM", a.param)
    total = _vmem_rows(m, a.src, a.rows, a.stride, a.words).sum(axis=0)
    y = _checked(where, intops.mul_shift_round, total + prm["off"], prm["m"], prm["s"])
    y = y + prm["post"]
    if a.out == VSUM_OUT["ACC32"]:
        m.put_lanes(ACC, a.dst, np.clip(y, intops.I32_MIN, intops.I32_MAX)
                    .reshape(-1, m.p.cols), "<i4")
    else:
        sat = intops.saturate_i8 if a.out == VSUM_OUT["VMEM8"] else intops.saturate_i16
        m.put_lanes(VMEM, a.dst, sat(y).reshape(-1, m.p.cols), "<i2")


_VSUM = _vector(
    "VSUM", 12, VECTOR_FIELDS["VSUM"],
    rules=(zero("rows"), zero("words"),
           Rule(lambda a, p: a.out > VSUM_OUT["ACC32"],
                lambda a, p: f"'out'={a.out} is not VMEM8(0), VMEM16(1) or ACC32(2)"),
           past_end("src", lambda a, p: _span(a, "rows", a.stride, a.words), VMEM,
                    guard=lambda a: a.rows != 0),
           past_end("dst", lambda a, p: a.words, _vsum_dst_bank),
           past_end("param", lambda a, p: 1, PMEM),
           overlap("dst", lambda a, p: a.words, "src",
                   lambda a, p: _span(a, "rows", a.stride, a.words),
                   guard=lambda a: (a.out != VSUM_OUT["ACC32"]) & (a.rows != 0))),
    regions=lambda a, p: (_vsum_reads(a) + [(PMEM, a.param, a.param + 1)],
                          [(_vsum_dst_bank(a), a.dst, a.dst + a.words)]),
    ports=lambda a, p: ["VMEM.r", "ACC.w" if a.out == VSUM_OUT["ACC32"] else "VMEM.w"],
    traffic=lambda a, p: _traffic(
        p, {VMEM: a.rows * a.words, PMEM: 1}, {_vsum_dst_bank(a): a.words},
        {"int32_add": (a.rows + 2) * a.words * p.cols, "int32_mult": a.words * p.cols}),
    execute=_vsum_exec)


# -- VSQUASH


def _vsquash_exec(m: Machine, a, where: str) -> None:
    prm = _params(m, "VSQUASH", a.param)
    x = m.lanes(VMEM, a.src, a.src + a.count, "<i2")
    if prm["mode"] == 1:
        table = np.where(m.elut >= 2**15, m.elut - 2**16, m.elut)
        y = _checked(where, intops.lut_i8, x, table)
    else:
        q = _checked(where, intops.requantize, x, prm["m"], prm["s"])
        y = _checked(where, intops.clamp_i8, q, prm["lo"], prm["hi"])
    m.put_lanes(VMEM, a.dst, y, "<i2")


_VSQUASH = _vector(
    "VSQUASH", 13, VECTOR_FIELDS["VSQUASH"],
    rules=(zero("count"), past_end("src", lambda a, p: a.count, VMEM),
           past_end("dst", lambda a, p: a.count, VMEM), past_end("param", lambda a, p: 1, PMEM),
           overlap("dst", lambda a, p: a.count, "src", lambda a, p: a.count)),
    regions=lambda a, p: ([(VMEM, a.src, a.src + a.count), (PMEM, a.param, a.param + 1)],
                          [(VMEM, a.dst, a.dst + a.count)]),
    ports=lambda a, p: ["VMEM.r", "VMEM.w"],
    traffic=lambda a, p: _traffic(p, {VMEM: a.count, PMEM: 1}, {VMEM: a.count},
                                  {"int32_mult": a.count * p.cols,
                                   "int32_add": a.count * p.cols,
                                   "lut_bytes": a.count * p.cols}),
    execute=_vsquash_exec)


# -- MTRANS


def _mtrans_bank(a) -> Any:
    return pick(a.bank, MTRANS_BANKS, ACT)


def _col_words(a, p) -> Any:
    return cdiv(a.ncols, p.cols)


def _mtrans_reads(a, p) -> list:
    w = _col_words(a, p)
    if a.stride == w:
        return [(VMEM, a.src, a.src + a.rows * w)]
    return [(VMEM, a.src + r * a.stride, a.src + r * a.stride + w) for r in range(a.rows)]


def _mtrans_exec(m: Machine, a, where: str) -> None:
    C = m.p.cols
    w = -(-a.ncols // C)
    x = _vmem_rows(m, a.src, a.rows, a.stride, w)[:, :a.ncols]      # (rows, ncols)
    bank = MTRANS_BANKS[a.bank]
    m.banks[bank][a.dst:a.dst + a.ncols, a.boff:a.boff + a.rows] = (x.T & 0xFF).astype(np.uint8)


_MTRANS = _mover(
    "MTRANS", 14, MOVER_FIELDS["MTRANS"],
    rules=(zero("rows"), zero("ncols"),
           Rule(lambda a, p: a.boff + a.rows > pick(a.bank, {0: p.rows, 1: p.cols}, 0),
                lambda a, p: f"'boff'={a.boff} + 'rows'={a.rows} bytes do not fit a "
                             f"{('ACT', 'WGT')[a.bank]} word ({(p.rows, p.cols)[a.bank]} bytes)"),
           past_end("src", lambda a, p: _span(a, "rows", a.stride, _col_words(a, p)), VMEM,
                    guard=lambda a: a.rows != 0),
           past_end("dst", lambda a, p: a.ncols, _mtrans_bank, banks=(ACT, WGT))),
    regions=lambda a, p: (_mtrans_reads(a, p),
                          [(MTRANS_BANKS[a.bank], a.dst, a.dst + a.ncols)]),
    ports=lambda a, p: ["VMEM.r", ("ACT.w", "WGT.w")[a.bank]],
    traffic=lambda a, p: _mtrans_traffic(a, p),
    execute=_mtrans_exec)


def _mtrans_traffic(a, p) -> Traffic:
    t = _traffic(p, {VMEM: a.rows * _col_words(a, p)}, {})
    t.writes[("act", "wgt")[a.bank]] = a.rows * a.ncols      # byte-enabled writes
    return t


# -- MCOPY


def _mcopy_span(a) -> Any:
    return (a.count - 1) * a.stride + 1


def _mcopy_reads(a) -> list:
    return strided(VMEM, a.src, a.count, a.stride)


def _mcopy_exec(m: Machine, a, where: str) -> None:
    x = _vmem_rows(m, a.src, a.count, a.stride, 1)
    if MCOPY_BANKS[a.bank] == VMEM:
        m.put_lanes(VMEM, a.dst, x, "<i2")
    else:
        m.banks[WGT][a.dst:a.dst + a.count] = (x & 0xFF).astype(np.uint8)


_MCOPY = _mover(
    "MCOPY", 15, MOVER_FIELDS["MCOPY"],
    rules=(zero("count"), zero("stride"),
           past_end("src", lambda a, p: _mcopy_span(a), VMEM, guard=lambda a: a.count != 0),
           past_end("dst", lambda a, p: a.count, lambda a: pick(a.bank, MCOPY_BANKS, VMEM),
                    banks=(VMEM, WGT)),
           overlap("dst", lambda a, p: a.count, "src", lambda a, p: _mcopy_span(a),
                   guard=lambda a: (a.bank == 0) & (a.count != 0))),
    regions=lambda a, p: (_mcopy_reads(a), [(MCOPY_BANKS[a.bank], a.dst, a.dst + a.count)]),
    ports=lambda a, p: ["VMEM.r", ("VMEM.w", "WGT.w")[a.bank]],
    traffic=lambda a, p: _traffic(p, {VMEM: a.count}, {MCOPY_BANKS[a.bank]: a.count}),
    execute=_mcopy_exec)

#: The vector-unit and mover entries of the opcode table.
VECTOR_OPS = (_VLUT, _VLN, _VSOFTMAX, _VADD, _VSUM, _VSQUASH, _MTRANS, _MCOPY)

__all__ = ["LUT_TABLES", "MCOPY_BANKS", "MOVER_FIELDS", "MTRANS_BANKS", "VECTOR_FIELDS",
           "VECTOR_OPS", "VSUM_OUT"]
