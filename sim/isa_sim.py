"""ISA functional simulator: runs a program on numpy SRAM images, one instruction at a time.

Semantics are the sequential program order of docs/ISA.md; each instruction executes the
functional semantics of its entry in the opcode table (``hw/opcodes.py``, ``execute``),
whose arithmetic calls the shared integer ops of ``model.intops``. Before executing, every
instruction is range-checked (``hw.isa.check``) and race-checked against earlier ones
(``hw.deps.DepTracker.check``), so a program that would behave differently on the
overlapped RTL is rejected here.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace

import numpy as np

from hw import isa
from hw.deps import DepTracker
from hw.isa import Instr, IsaError
from hw.opcodes import ExecutionError, Machine
from hw.uarch import AccelParams, as_params
from model.config import HardwareConfig


class IsaSimError(RuntimeError):
    """The program cannot run as written; the message names the instruction."""


@dataclass
class SimResult:
    """Output stream and final SRAM images of a simulated run."""

    dout: np.ndarray                  # (beats, host_bytes) uint8
    banks: list[np.ndarray]           # per bank (depth, word bytes), hw.uarch.BANKS order
    machine: Machine | None = None    # the state after the run (pass it to the next program)
    beats_in: int = 0
    executed: int = 0
    budget: int = 0
    log: list[str] = field(default_factory=list)


def simulate(program: Sequence[Instr] | Sequence[int], hw: HardwareConfig | AccelParams,
             din: np.ndarray, *, check_races: bool = True,
             machine: Machine | None = None) -> SimResult:
    """Execute ``program`` (instructions or 128-bit words) with data-in beats ``din``, from
    empty memories or, with ``machine``, from the state an earlier program left (SRAM
    contents and the vector unit's tables persist between programs, as on the hardware)."""
    p = as_params(hw)
    try:
        instrs = isa.instructions(program)
    except IsaError as e:
        raise IsaSimError(f"malformed program: {e}") from None
    if machine is None:
        machine = Machine.empty(p, din)
    else:
        machine = replace(machine, din=np.asarray(din, np.uint8).reshape(-1, p.host_bytes),
                          pos=0, dout=[])
    tracker = DepTracker(p) if check_races else None
    res = SimResult(np.zeros((0, p.host_bytes), np.uint8), machine.banks, machine)
    for pc, ins in enumerate(instrs):
        try:
            isa.check(ins, p, pc)
            if tracker is not None:
                tracker.check(ins, pc)
            ins.spec.need("execute")(machine, ins.args, f"instruction #{pc} {ins}")
        except (IsaError, ExecutionError) as e:
            raise IsaSimError(str(e)) from None
        res.executed = pc + 1
        if ins.spec.ends:
            break
    else:
        raise IsaSimError("program ends without DONE (the hardware would wait for more "
                          "instructions); fix: end it with DONE")
    res.dout = np.concatenate(machine.dout) if machine.dout else res.dout
    res.beats_in = machine.pos
    res.budget = machine.budget
    return res


__all__ = ["IsaSimError", "SimResult", "simulate"]
