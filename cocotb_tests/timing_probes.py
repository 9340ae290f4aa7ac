"""Hand-timed programs for the small array (4x3, 8-byte host beats): the expected counters
are worked out by hand from the rules in docs/ISA.md ("Timing") and the engines' documented
schedules, not by the timing model.

``tests/test_accel_timing.py`` checks the timing model against them and
``cocotb_tests/tb_accel.py`` (``timing_probes``) checks the RTL. Cycle 0 is the first cycle
after ``start``; beats per word: ACT 1, WGT 1, ACC 2; drain gap G = 4; MATMUL latency
K + cols + rows - 1 = K + 6; REQUANT latency rows + 2; VMEM words (6 bytes) 1 beat, PMEM words
(24 bytes) 3 beats; VADD latency 2*count + 1, MCOPY count, MTRANS
1 + n + (G-1)*max(n, cols) + last; a vector/mover instruction frees its unit one cycle after
its done.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from hw import isa
from hw.isa import Instr
from hw.uarch import COUNTERS

HOST_BYTES = 8


@dataclass(frozen=True)
class Probe:
    name: str
    program: tuple[Instr, ...]
    din_beats: int
    expected: dict[str, int]
    why: str

    def din(self) -> np.ndarray:
        """Input beats: small operands; every ACC lane a valid param (m=1, s=1)."""
        beats = np.full((self.din_beats, HOST_BYTES), 1, np.uint8)
        lanes = beats.view("<u4")
        lanes[:] = isa.pack_param(1, 1)
        return beats


def _c(**kw) -> dict[str, int]:
    base = dict.fromkeys(COUNTERS, 0)
    base.update(kw)
    return base


PROBES = [
    Probe(
        "load-matmul-store",
        (isa.config(0, 4, 3), isa.load(0, 0, 5), isa.load(1, 0, 5),
         isa.matmul(0, 0, 0, 5, after={"LOAD": 1}), isa.store(0, 4, after={"MATMUL": 1}),
         isa.done()),
        10,
        _c(total=36, array_busy=5, dma_in_busy=10, dma_out_busy=8, dma_busy=18, stall=9),
        "CONFIG dispatches at 1. LOAD A: dispatch 2, start 3, beats 4..8, done 8. LOAD B: "
        "dispatch 3, starts in A's last beat cycle 8, done 13. MATMUL: dispatch 4, head from 5, "
        "waits for LOAD B -> start 14 (stall 14-5 = 9), done 14+5+6 = 25. STORE: waits for "
        "MATMUL -> start 26, 4 words x 2 beats, done 34. DONE at 35 -> total 36. DMA busy "
        "[4,13] + [27,34] = 18."),
    Probe(
        "load-queue-full",
        (isa.config(0, 4, 3), *(isa.load(0, 10 * j, 10) for j in range(6)), isa.store(0, 1),
         isa.done()),
        60,
        _c(total=65, dma_in_busy=60, dma_out_busy=2, dma_busy=60),
        "LOADs j=0..5 (10 beats each): L0 starts 3, each next one starts in the previous last "
        "beat cycle: 13, 23, 33, 43, 53; done 63. The LOAD queue (4 entries) holds L1..L4 "
        "until L1 starts at 13, so L5 dispatches at 14 and the STORE at 15: start 16, beats "
        "17..18. DONE waits for L5 (done 63) -> 64, total 65. DMA busy [4,63]."),
    Probe(
        "matmul-drain-gap",
        (isa.config(0, 4, 3), isa.load(0, 0, 20), isa.load(1, 0, 20),
         isa.matmul(0, 0, 0, 20, after={"LOAD": 1}), isa.matmul(0, 0, 4, 2),
         isa.store(0, 8, after={"MATMUL": 1}), isa.done()),
        40,
        _c(total=93, array_busy=22, dma_in_busy=40, dma_out_busy=16, dma_busy=56, stall=39),
        "LOADs done 23 and 43. MATMUL k=20: head from 5, starts 44 (stall 39), done "
        "44+20+6 = 70. MATMUL k=2: feed free at 64, but its last step must enter >= G=4 "
        "cycles after the previous tile's: 44+20+4-2 = 66 -> start 66, done 66+2+6 = 74. "
        "STORE after it: start 75, 8 words x 2 beats, done 91. DONE 92, total 93."),
    Probe(
        "requant-pair",
        (isa.config(0, 4, 3), isa.load(2, 0, 5), isa.requant(0, 8, 4, 4, after={"LOAD": 1}),
         isa.requant(0, 9, 4, 3), isa.store(8, 2, after={"REQUANT": 1}), isa.done()),
        10,
        _c(total=31, dma_in_busy=10, dma_out_busy=4, dma_busy=14, requant_busy=9),
        "LOAD 5 ACC words (2 beats each): start 3, done 13. REQUANT 4 rows: start 14, busy "
        "14..18, done 14+4+2 = 20. REQUANT 3 rows: unit free at 19, done 19+3+2 = 24. STORE "
        "2 words: start 25, done 29. DONE 30, total 31. Requant busy 5 + 4."),
    Probe(
        "fence",
        (isa.config(0, 4, 3), isa.load(0, 0, 3), isa.fence(), isa.load(1, 0, 2), isa.done()),
        5,
        _c(total=13, dma_in_busy=5, dma_busy=5),
        "LOAD: dispatch 2, start 3, done 6. FENCE in IR from 3 waits for it: dispatches at 7, "
        "so the next LOAD is fetched at 7, dispatches at 8, starts 9, done 11. DONE 12, "
        "total 13."),
    Probe(
        "vadd",
        (isa.config(0, 4, 3), isa.load(3, 0, 2), isa.load(4, 0, 1),
         isa.Instr("VADD", {"a": 0, "b": 0, "dst": 4, "count": 2, "param": 0},
                   isa._deps({"LOAD": 1})),
         isa.Instr("STORE", {"addr": 4, "count": 2, "bank": 1}, isa._deps({"VECTOR": 1})),
         isa.done()),
        5,
        _c(total=19, dma_in_busy=5, dma_out_busy=2, dma_busy=7, vector_busy=6),
        "LOAD VMEM 2 words (1 beat each): dispatch 2, start 3, done 5. LOAD PMEM 1 word "
        "(3 beats): dispatch 3, starts when the unit is free at 5, done 8. VADD: dispatch 4, "
        "waits for the PMEM LOAD -> start 9, latency 2*2+1 = 5 -> done 14 (busy 9..14 = 6). "
        "STORE VMEM: dispatch 5, waits for VADD -> start 15, 2 beats, done 17. DONE 18, "
        "total 19. DMA busy [4,5] + [6,8] + [16,17] = 7."),
    Probe(
        "mcopy-mtrans",
        (isa.config(0, 4, 3), isa.load(3, 0, 3),
         isa.Instr("MCOPY", {"src": 0, "dst": 10, "count": 3, "bank": 0, "stride": 1},
                   isa._deps({"LOAD": 1})),
         isa.Instr("MTRANS", {"src": 0, "stride": 1, "rows": 3, "ncols": 3, "bank": 0,
                              "dst": 0, "boff": 0}, isa._deps({"LOAD": 1})),
         isa.Instr("STORE", {"addr": 10, "count": 3, "bank": 1}, isa._deps({"MOVER": 1})),
         isa.done()),
        3,
        _c(total=24, dma_in_busy=3, dma_out_busy=3, dma_busy=6, mover_busy=12),
        "LOAD 3 VMEM words: start 3, done 6. MCOPY: dispatch 3, start 7, latency 3 -> done "
        "10, unit free 11 (busy 4). MTRANS (n=3, one word-column of 3): dispatch 4, starts "
        "when the mover is free at 11, latency 1 + 3 + 0 + 3 = 7 -> done 18 (busy 8). STORE "
        "waits for the mover (it shares the VMEM read port with MTRANS): start 19, 3 beats, "
        "done 22. DONE 23, total 24."),
]
