"""Latencies of the vector-unit and mover engines: ``done`` cycle minus ``start`` cycle.

Pure Python: the closed forms the opcode table's timing rules use (``hw/vector/ops.py``)
and that each engine's RTL implements (its module docstring gives the per-cycle schedule).
The engines' unit tests compare the RTL's measured latency with these functions; the
program-level tests compare the RTL's counters with the timing model built on them. The
closed forms live next to their engines' families: ``latency_arith.py`` (VLN, VADD,
VSQUASH, VSUM) and ``latency_softmax_mover.py`` (VSOFTMAX, VLUT, MTRANS).
"""

from __future__ import annotations

import functools
from typing import Any

from hw.uarch import AccelParams


def mcopy_latency(a: Any, p: AccelParams) -> int:
    """Word ``i`` read at ``c + i``, written at ``c + 1 + i``."""
    return a.count


@functools.cache
def latencies() -> dict:
    """Opcode -> latency function of every engine."""
    from hw.vector import latency_arith, latency_softmax_mover

    return {"MCOPY": mcopy_latency, **latency_arith.LATENCY, **latency_softmax_mover.LATENCY}


def latency(op: str, a: Any, p: AccelParams) -> int:
    """Latency of ``op`` with fields ``a`` on hardware ``p``."""
    try:
        fn = latencies()[op]
    except KeyError:
        from hw.opspec import OpcodeError
        raise OpcodeError(f"opcode {op} has no engine latency in hw/vector/timing.py") from None
    return fn(a, p)


__all__ = ["latencies", "latency", "mcopy_latency"]
