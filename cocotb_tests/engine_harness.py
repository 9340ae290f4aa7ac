"""Unit-test harness for one vector-unit / mover engine (hw/vector/ports.py protocol).

:class:`EngineHarness` wraps an engine with the memories its ports name (``vmem``, ``pmem``,
``acc``, ``act``, ``wgt``, ``elut``, ``rlut``; small depths) and exposes ``start``, ``args``
(the raw payload bits), ``done``, ``busy`` and ``cycles`` (``done`` cycle minus ``start``
cycle, latched at ``done``). cocotb preloads and reads the memories element by element
(``dut.vmem[i].value``), which is fine for unit tests; program-level tests move data through
the host interface instead. :func:`engine_design` builds the Verilator design,
:class:`EngineDriver` runs one instruction.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path

from amaranth.hdl import Module, Signal
from amaranth.lib import wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from hw.vector.formats import ELUT_SIZE, LUT_ENTRY_BITS, PMEM_LANE_BITS, RLUT_SIZE, VMEM_LANE_BITS

#: Memory depths of the harness (words).
DEPTHS = {"vmem": 1024, "pmem": 64, "acc": 64, "act": 256, "wgt": 256}


class EngineHarness(wiring.Component):
    """``factory()`` (an engine) plus the memories of its ports."""

    def __init__(self, factory: Callable[[], wiring.Component], args_bits: int, cols: int,
                 rows: int):
        self.factory, self.cols, self.rows = factory, cols, rows
        super().__init__({"start": In(1), "args": In(args_bits), "done": Out(1),
                          "busy": Out(1), "cycles": Out(32)})

    def elaborate(self, platform):
        m = Module()
        m.submodules.engine = eng = self.factory()
        C, R = self.cols, self.rows
        ports = set(eng.signature.members) - {"start", "args", "done", "busy"}
        m.d.comb += [eng.start.eq(self.start), eng.args.as_value().eq(self.args),
                     self.done.eq(eng.done), self.busy.eq(eng.busy)]
        count = Signal(32)
        m.d.sync += count.eq(count + 1)
        with m.If(self.start):
            m.d.sync += count.eq(1)
        with m.If(eng.done):
            m.d.sync += self.cycles.eq(count)
        with m.If(self.start & eng.done):
            m.d.sync += self.cycles.eq(0)
        widths = {"vmem": VMEM_LANE_BITS * C, "pmem": PMEM_LANE_BITS * C, "acc": 32 * C,
                  "act": 8 * R, "wgt": 8 * C}
        for bank, width in widths.items():
            rd, wr = f"{bank}_r", f"{bank}_w"
            if rd not in ports and wr not in ports:
                continue
            mem = Memory(shape=width, depth=DEPTHS[bank], init=[])
            m.submodules[bank] = mem
            if rd in ports:
                p = mem.read_port()
                e = getattr(eng, rd)
                m.d.comb += [p.addr.eq(e.addr), p.en.eq(e.en), e.data.as_value().eq(p.data)]
            if wr in ports:
                p = mem.write_port(granularity=8 if bank in ("act", "wgt") else None)
                e = getattr(eng, wr)
                m.d.comb += [p.addr.eq(e.addr), p.data.eq(e.data.as_value()
                                                          if hasattr(e.data, "as_value")
                                                          else e.data), p.en.eq(e.en)]
        if "elut_r" in ports or "elut_w" in ports:
            m.submodules.elut = elut = Memory(shape=LUT_ENTRY_BITS, depth=ELUT_SIZE, init=[])
            if "elut_r" in ports:
                e = eng.elut_r
                for j in range(C):
                    p = elut.read_port()
                    m.d.comb += [p.addr.eq(e.addr[j]), p.en.eq(e.en), e.data[j].eq(p.data)]
            if "elut_w" in ports:
                p = elut.write_port()
                m.d.comb += [p.addr.eq(eng.elut_w.addr), p.data.eq(eng.elut_w.data),
                             p.en.eq(eng.elut_w.en)]
        if "rlut_r" in ports or "rlut_w" in ports:
            m.submodules.rlut = rlut = Memory(shape=LUT_ENTRY_BITS, depth=RLUT_SIZE, init=[])
            if "rlut_r" in ports:
                p = rlut.read_port()
                m.d.comb += [p.addr.eq(eng.rlut_r.addr), p.en.eq(eng.rlut_r.en),
                             eng.rlut_r.data.eq(p.data)]
            if "rlut_w" in ports:
                p = rlut.write_port()
                m.d.comb += [p.addr.eq(eng.rlut_w.addr), p.data.eq(eng.rlut_w.data),
                             p.en.eq(eng.rlut_w.en)]
        return m


def engine_design(name: str, factory: Callable[[], wiring.Component], args_bits: int,
                  cols: int, rows: int, params: dict):
    """Verilator design of ``factory()`` in an :class:`EngineHarness` (top ``name``).
    ``params`` must name everything the engine's RTL depends on besides the ``hw`` sources."""
    from sim.rtl.runner import RtlDesign, component_verilog

    harness_src = hashlib.sha256(Path(__file__).read_bytes()).hexdigest()
    text = component_verilog(name, lambda: EngineHarness(factory, args_bits, cols, rows),
                             {**params, "cols": cols, "rows": rows, "harness": harness_src})
    return RtlDesign(name, {f"{name}.v": text})


#: The seed the engine tests pass to their testbenches.
ENGINE_SEED = 2026


def run_engine_tb(name: str, factory: Callable[[], wiring.Component], op: str, cols: int,
                  rows: int, tb: str, cases: int, *, expect=None, testcase=None,
                  env: dict[str, str] | None = None):
    """Build the harness of ``factory()`` (top ``name``, ``op``'s argument layout) and run the
    cocotb testbench ``cocotb_tests.<tb>`` with the environment :func:`testbench_params`
    reads (plus ``env``)."""
    from sim.rtl.runner import run_cocotb

    design = engine_design(name, factory, args_bits(op), cols, rows, {"engine": op})
    full = {"FOLDACCEL_SEED": str(ENGINE_SEED), "FOLDACCEL_COLS": str(cols),
            "FOLDACCEL_ROWS": str(rows), "FOLDACCEL_CASES": str(cases), **(env or {})}
    return run_cocotb(design, f"cocotb_tests.{tb}", env=full, expect=expect,
                      testcase=testcase)


def testbench_params(cols: int, rows: int, cases: int) -> tuple[int, int, int, int]:
    """``(seed, cols, rows, cases)`` of an engine testbench: from the environment
    :func:`run_engine_tb` sets (FOLDACCEL_SEED, _COLS, _ROWS, _CASES), else seed 1 and the
    given defaults."""
    import os

    env = os.environ
    return (int(env.get("FOLDACCEL_SEED", "1")), int(env.get("FOLDACCEL_COLS", str(cols))),
            int(env.get("FOLDACCEL_ROWS", str(rows))), int(env.get("FOLDACCEL_CASES", str(cases))))


class EngineDriver:
    """Clock, reset, memory access and one-instruction runs of an :class:`EngineHarness`."""

    def __init__(self, dut):
        self.dut = dut

    async def reset(self) -> None:
        import cocotb
        from cocotb.clock import Clock
        from cocotb.triggers import RisingEdge

        d = self.dut
        cocotb.start_soon(Clock(d.clk, 2, unit="ns").start())
        d.rst.value = 1
        d.start.value = 0
        d.args.value = 0
        for _ in range(2):
            await RisingEdge(d.clk)
        d.rst.value = 0
        await RisingEdge(d.clk)

    def write(self, bank: str, addr: int, value: int) -> None:
        getattr(self.dut, bank)[addr].value = int(value)

    def read(self, bank: str, addr: int) -> int:
        return int(getattr(self.dut, bank)[addr].value)

    async def run(self, args: int, max_cycles: int = 100_000) -> int:
        """Start the engine with payload ``args``; wait for ``done``; return its latency."""
        from cocotb.triggers import ReadOnly, RisingEdge

        d = self.dut
        d.args.value = int(args)
        d.start.value = 1
        await RisingEdge(d.clk)
        d.start.value = 0
        for _ in range(max_cycles):
            await ReadOnly()
            if int(d.done.value):
                break
            await RisingEdge(d.clk)
        else:
            raise AssertionError(f"engine did not finish within {max_cycles} cycles")
        await RisingEdge(d.clk)
        await ReadOnly()
        cycles = int(d.cycles.value)
        await RisingEdge(d.clk)
        return cycles


__all__ = ["DEPTHS", "EngineDriver", "EngineHarness", "args_bits", "engine_design", "int_to_lanes",
           "lanes_to_int", "pack_args"]


def pack_args(op: str, **values: int) -> int:
    """The payload bits of ``op`` with the given field values (the layout of
    ``hw.vector.ports.args_layout``: fields from bit 0 in table order)."""
    from hw.opcodes import MOVER_FIELDS, VECTOR_FIELDS

    fields = {**VECTOR_FIELDS, **MOVER_FIELDS}[op]
    unknown = set(values) - {n for n, _ in fields}
    if unknown:
        raise ValueError(f"{op} has no field(s) {sorted(unknown)}")
    word, pos = 0, 0
    for name, bits in fields:
        v = int(values.get(name, 0))
        if not 0 <= v < 1 << bits:
            raise ValueError(f"{op} field {name}={v} does not fit {bits} bits")
        word |= v << pos
        pos += bits
    return word


def args_bits(op: str) -> int:
    from hw.opcodes import MOVER_FIELDS, VECTOR_FIELDS

    return sum(bits for _, bits in {**VECTOR_FIELDS, **MOVER_FIELDS}[op])


def lanes_to_int(values, bits: int) -> int:
    """Little-endian lanes (signed or unsigned ints) -> one word."""
    word = 0
    for j, v in enumerate(values):
        word |= (int(v) & ((1 << bits) - 1)) << (bits * j)
    return word


def int_to_lanes(word: int, bits: int, n: int, signed: bool = True) -> list[int]:
    out = []
    for j in range(n):
        v = (word >> (bits * j)) & ((1 << bits) - 1)
        out.append(v - (1 << bits) if signed and v >> (bits - 1) else v)
    return out
