"""Benchmark: vector-op cycles per row against the lane bound, measured on the RTL.

``vector-ops`` runs VLN (LayerNorm) and VSOFTMAX over ``R`` and ``2R`` rows of width
``D = 64, 128, 512`` on the default 16x16 accelerator (one simulator process) and takes the
marginal cost per row from the RTL's ``vector_busy`` counter: ``(busy(2R) - busy(R)) / R``,
which cancels table loads and per-instruction overheads. The lane bound is
``ceil(D / cols)`` cycles per row (one VMEM word per cycle); targets: LayerNorm <= 2.5x
(at most two reads of each row), softmax <= 1.5x. The timing model's value is printed beside
it (the RTL tests assert they are equal).
"""

from __future__ import annotations

import numpy as np

from sim.bench import benchmark

WIDTHS = (64, 128, 512)
ROWS = 8
TARGETS = {"VLN": 2.5, "VSOFTMAX": 1.5}


def _program(op: str, rows: int, d: int, hw):
    from hw import isa
    from hw.program import ProgramBuilder
    from hw.vector import formats
    from model import intops

    b = ProgramBuilder(hw)
    C = b.p.cols
    words = -(-d // C)
    rng = np.random.default_rng(d + rows)
    table = intops.RSQRT_LUT if op == "VLN" else intops.make_exp_lut(0.05)
    b.load_vmem_lanes(1800, np.resize(table, -(-len(table) // C) * C).reshape(-1, C))
    b.emit(isa.Instr("VLUT", {"table": int(op == "VLN"), "src": 1800}))
    if op == "VLN":
        b.load_vmem_rows(0, rng.integers(-3000, 3000, (rows, d)))
        gamma, beta, m, s = intops.quantize_layernorm(np.ones(d), np.zeros(d), 0.05)
        b.load_pmem(0, formats.pack_param_word("VLN", C, eps=1, m=m, s=s)[None])
        b.load_pmem(1, formats.pack_ln_features(gamma, beta, C))
        b.emit(isa.Instr("VLN", {"src": 0, "dst": rows * words, "rows": rows, "blocks": 1,
                                 "block": d, "param": 0}))
    else:
        b.load_vmem_rows(0, rng.integers(-128, 128, (rows, d)))
        b.emit(isa.Instr("VSOFTMAX", {"src": 0, "dst": rows * words, "rows": rows,
                                      "words": words, "ncols": d, "mrow": rows, "mcols": 0}))
    return b.finish()


@benchmark("vector-ops")
def vector_ops():
    from hw.timing import program_cycles
    from model.config import HardwareConfig
    from sim.rtl.jobs import Job, run_jobs

    hw = HardwareConfig()
    progs = [(op, d, rows, _program(op, rows, d, hw)) for op in ("VLN", "VSOFTMAX")
             for d in WIDTHS for rows in (ROWS, 2 * ROWS)]
    jobs = [Job(p.words(), p.din, 4 * program_cycles(p.instrs, hw)["total"] + 5000)
            for *_, p in progs]
    records, _ = run_jobs(hw, jobs)
    busy = {(op, d, rows): (rec.counters["vector_busy"],
                            program_cycles(p.instrs, hw)["vector_busy"])
            for (op, d, rows, p), rec in zip(progs, records, strict=True)}
    out = []
    for op in ("VLN", "VSOFTMAX"):
        for d in WIDTHS:
            rtl = (busy[(op, d, 2 * ROWS)][0] - busy[(op, d, ROWS)][0]) / ROWS
            model = (busy[(op, d, 2 * ROWS)][1] - busy[(op, d, ROWS)][1]) / ROWS
            bound = -(-d // hw.cols)
            out.append([op, d, bound, rtl, model, round(rtl / bound, 2),
                        f"<= {TARGETS[op]}"])
    return ("vector-op cycles per row on the 16x16 RTL (marginal cost per row from the "
            "vector_busy counter) vs the lane bound ceil(D/16)",
            ["op", "D", "lane bound", "RTL cycles/row", "model", "ratio", "target"], out)
