"""RTL designs the runner can build: each returns an :class:`sim.rtl.RtlDesign`."""

from __future__ import annotations

from sim.rtl import RtlDesign, component_verilog


def pe_design(in_bits: int = 8, acc_bits: int = 32) -> RtlDesign:
    """The multiply-accumulate PE alone, as Verilog module ``mac_pe``."""
    from hw.pe import MacPE

    params = {"in_bits": in_bits, "acc_bits": acc_bits}
    text = component_verilog("mac_pe", lambda: MacPE(in_bits, acc_bits), params)
    return RtlDesign("mac_pe", {"mac_pe.v": text})


def array_design(rows: int, cols: int) -> RtlDesign:
    """The systolic array alone (unit tests), as Verilog module ``systolic_array``."""
    from hw.array import SystolicArray

    params = {"rows": rows, "cols": cols}
    text = component_verilog("systolic_array", lambda: SystolicArray(rows, cols), params)
    return RtlDesign("systolic_array", {"systolic_array.v": text})


def requant_design(lanes: int) -> RtlDesign:
    """The requantization lanes alone (unit tests), as Verilog module ``requantizer``."""
    from hw.requant import Requantizer

    text = component_verilog("requantizer", lambda: Requantizer(lanes), {"lanes": lanes})
    return RtlDesign("requantizer", {"requantizer.v": text})
