"""Latencies of the vector-unit and mover engines: ``done`` cycle minus ``start`` cycle.

Pure Python: the closed forms the opcode table's timing rules use (``hw/opcodes.py``) and
that each engine's RTL implements (its module docstring says how); the engines' unit tests
compare the RTL's measured latency with these functions, the program-level tests compare
the RTL's counters with the timing model built on them.
"""

from __future__ import annotations

from typing import Any

from hw.uarch import AccelParams


def mcopy_latency(a: Any, p: AccelParams) -> int:
    """Word ``i`` read at ``c + i``, written at ``c + 1 + i``."""
    return a.count


LATENCY = {"MCOPY": mcopy_latency}


def latency(op: str, a: Any, p: AccelParams) -> int:
    """Latency of ``op`` with fields ``a`` on hardware ``p``."""
    return LATENCY[op](a, p)


__all__ = ["LATENCY", "latency", "mcopy_latency"]
