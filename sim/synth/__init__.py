"""Synthesizable Verilog out, Yosys synthesis and a cited area model (docs/AREA.md).

:func:`hardware_area` is the entry point the sweeps call: it synthesizes the accelerator of a
hardware config (or loads the result from the disk cache) and returns cells, flip-flops,
multipliers, memory bits and mm² per unit.
"""

from __future__ import annotations

from sim.synth.area import hardware_area

__all__ = ["hardware_area"]
