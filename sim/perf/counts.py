"""The additive record every estimate is built from.

A :class:`Counts` holds what one piece of work (a GEMM program, a vector op, a layer step, a
model step) costs: cycles and busy cycles per unit, MACs (useful, and array slots), vector
element operations by energy class, SRAM bytes read and written per bank, the peak SRAM
occupancy per bank, and the bytes that cross the host interface. ``a + b`` is *serial*
composition (b runs after a): everything adds except the peaks, which take the maximum.
``c * k`` is k repetitions.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields

from hw.uarch import BANK_KEYS as BANKS
from hw.uarch import COUNTERS

#: Busy-cycle categories: the RTL's busy counters (``<unit>_busy``, hw.uarch.COUNTERS).
RTL_BUSY = {name: name.removesuffix("_busy") for name in COUNTERS if name.endswith("_busy")}
UNITS = tuple(RTL_BUSY.values())
# Energy classes of vector-unit element operations (priced by sim.perf.energy).
OP_CLASSES = ("int8_add", "int8_mult", "int32_add", "int32_mult", "lut_bytes")


def _zeros(keys: tuple[str, ...]) -> dict[str, int]:
    return dict.fromkeys(keys, 0)


@dataclass
class Counts:
    """Cycles, work and traffic of one piece of work (see the module docstring)."""

    cycles: int = 0
    busy: dict[str, int] = field(default_factory=lambda: _zeros(UNITS))
    stall: int = 0
    macs: int = 0                # useful MACs of the work
    mac_slots: int = 0           # MACs the array performs, tile padding included
    ops: dict[str, int] = field(default_factory=lambda: _zeros(OP_CLASSES))
    sram_reads: dict[str, int] = field(default_factory=lambda: _zeros(BANKS))
    sram_writes: dict[str, int] = field(default_factory=lambda: _zeros(BANKS))
    sram_peak: dict[str, int] = field(default_factory=lambda: _zeros(BANKS))
    host_in_bytes: int = 0       # activations/data host -> chip (weights excluded)
    host_out_bytes: int = 0      # chip -> host
    state_in_bytes: int = 0      # of host_in_bytes: spilled streaming state loaded back
    state_out_bytes: int = 0     # of host_out_bytes: streaming state spilled to the host
    # weights and parameters host -> chip, by destination bank (from DRAM when streamed)
    weight_loads: dict[str, int] = field(default_factory=lambda: _zeros(BANKS))
    instructions: int = 0

    @property
    def weight_bytes(self) -> int:
        return sum(self.weight_loads.values())

    def __add__(self, other: Counts) -> Counts:
        out = Counts()
        for f in fields(self):
            a, b = getattr(self, f.name), getattr(other, f.name)
            if isinstance(a, dict):
                op = max if f.name == "sram_peak" else int.__add__
                setattr(out, f.name, {k: op(a[k], b[k]) for k in a})
            else:
                setattr(out, f.name, a + b)
        return out

    def __mul__(self, k: int) -> Counts:
        if not isinstance(k, int) or k < 0:
            raise ValueError(f"repeat count must be a non-negative int, got {k!r}")
        out = Counts()
        for f in fields(self):
            a = getattr(self, f.name)
            if isinstance(a, dict):
                setattr(out, f.name, dict(a) if f.name == "sram_peak" and k else
                        {key: v * k for key, v in a.items()})
            else:
                setattr(out, f.name, a * k)
        return out

    __rmul__ = __mul__

    def to_dict(self) -> dict:
        return {f.name: (dict(getattr(self, f.name)) if isinstance(getattr(self, f.name), dict)
                         else getattr(self, f.name)) for f in fields(self)}


def total(parts: list[Counts]) -> Counts:
    """Serial composition of ``parts``."""
    out = Counts()
    for p in parts:
        out = out + p
    return out
