"""ISA functional simulator: runs a program on numpy SRAM images, one instruction at a time.

Semantics are the sequential program order of docs/ISA.md; the arithmetic calls the shared
integer ops (``model.intops.gemm_i32`` for tile products, ``model.intops.requantize`` for
REQUANT). Before executing, every instruction is range-checked (``hw.isa.check``) and
race-checked against earlier ones (``hw.deps.DepTracker.check``), so a program that would
behave differently on the overlapped RTL is rejected here.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from hw import isa
from hw.deps import DepTracker
from hw.hostio import beats_to_words, int32_words, words_int32, words_to_beats
from hw.isa import MODES, Instr, IsaError
from hw.uarch import ACC, ACT, WGT, AccelParams
from model.config import HardwareConfig
from model.intops import IntOpsError, gemm_i32, requantize


class IsaSimError(RuntimeError):
    """The program cannot run as written; the message names the instruction."""


@dataclass
class SimResult:
    """Output stream and final SRAM images of a simulated run."""

    dout: np.ndarray                  # (beats, host_bytes) uint8
    banks: list[np.ndarray]           # ACT (depth, rows), WGT (depth, cols), ACC (depth, 4*cols)
    beats_in: int = 0
    executed: int = 0
    budget: int = 0
    log: list[str] = field(default_factory=list)


def _wrap32(x: np.ndarray) -> np.ndarray:
    return ((np.asarray(x, np.int64) + 2**31) % 2**32 - 2**31).astype(np.int32)


def simulate(program: Sequence[Instr] | Sequence[int], hw: HardwareConfig | AccelParams,
             din: np.ndarray, *, check_races: bool = True) -> SimResult:
    """Execute ``program`` (instructions or 128-bit words) with data-in beats ``din``."""
    p = hw if isinstance(hw, AccelParams) else AccelParams.from_hw(hw)
    try:
        instrs = [x if isinstance(x, Instr) else isa.decode(int(x)) for x in program]
    except IsaError as e:
        raise IsaSimError(f"malformed program: {e}") from None
    din = np.asarray(din, np.uint8).reshape(-1, p.host_bytes)
    banks = [np.zeros((p.depth(b), p.word_bytes(b)), np.uint8) for b in (ACT, WGT, ACC)]
    tracker = DepTracker(p) if check_races else None
    out: list[np.ndarray] = []
    pos = 0
    res = SimResult(np.zeros((0, p.host_bytes), np.uint8), banks)
    for pc, ins in enumerate(instrs):
        try:
            isa.check(ins, p, pc)
            if tracker is not None:
                tracker.check(ins, pc)
        except IsaError as e:
            raise IsaSimError(str(e)) from None
        a = ins.args
        res.executed = pc + 1
        if ins.op == "CONFIG":
            res.budget = a["budget"]
        elif ins.op == "LOAD":
            bank = a["bank"]
            need = a["count"] * p.beats(bank)
            if pos + need > len(din):
                raise IsaSimError(f"instruction #{pc} {ins} needs {need} data beats, only "
                                  f"{len(din) - pos} are left in the input stream")
            words = beats_to_words(din[pos:pos + need], p.word_bytes(bank))
            banks[bank][a["addr"]:a["addr"] + a["count"]] = words
            pos += need
        elif ins.op == "MATMUL":
            _matmul(banks, ins, p)
        elif ins.op == "REQUANT":
            _requant(banks, ins, p, pc)
        elif ins.op == "STORE":
            out.append(words_to_beats(banks[ACC][a["addr"]:a["addr"] + a["count"]],
                                      p.host_bytes))
        elif ins.op == "DONE":
            break
    else:
        raise IsaSimError("program ends without DONE (the hardware would wait for more "
                          "instructions); fix: end it with DONE")
    res.dout = np.concatenate(out) if out else res.dout
    res.beats_in = pos
    return res


def _matmul(banks: list[np.ndarray], ins: Instr, p: AccelParams) -> None:
    a = ins.args
    k = a["k"]
    a_t = banks[ACT][a["act"]:a["act"] + k].view(np.int8).T        # (rows, K)
    b_t = banks[WGT][a["wgt"]:a["wgt"] + k].view(np.int8)          # (K, cols)
    tile = gemm_i32(a_t, b_t).astype(np.int64)
    rows = slice(a["acc"], a["acc"] + p.rows)
    if a["mode"] == MODES["ACCUMULATE"]:
        tile += words_int32(banks[ACC][rows])
    elif a["mode"] == MODES["BIAS"]:
        tile += words_int32(banks[ACC][a["bias"]:a["bias"] + 1])     # broadcast over rows
    banks[ACC][rows] = int32_words(_wrap32(tile))                    # 32-bit lanes wrap


def _requant(banks: list[np.ndarray], ins: Instr, p: AccelParams, pc: int) -> None:
    a = ins.args
    C, n = p.cols, a["rows"]
    lanes = words_int32(banks[ACC][a["param"]:a["param"] + 1])[0].astype(np.int64) & 0xFFFFFFFF
    m = lanes & ((1 << isa.PARAM_M_BITS) - 1)
    s = (lanes >> isa.PARAM_S_SHIFT) & ((1 << isa.PARAM_S_BITS) - 1)
    acc = words_int32(banks[ACC][a["src"]:a["src"] + n])
    try:
        y = requantize(acc, m, s, relu=bool(a["relu"]))
    except IntOpsError as e:
        raise IsaSimError(f"instruction #{pc} {ins}: parameter word ACC[{a['param']}] is not "
                          f"a valid (m, s) per column: {e}") from None
    rows = np.zeros((-(-n // 4) * 4, C), np.int8)   # rows past n-1 in the last word are 0
    rows[:n] = y
    banks[ACC][a["dst"]:a["dst"] + len(rows) // 4] = rows.view(np.uint8).reshape(-1, 4 * C)


__all__ = ["IsaSimError", "SimResult", "simulate"]
