"""The vector unit and the mover: a queue, engines (one per opcode), their port multiplexers.

An :class:`EngineUnit` pops the head of its queue when it is idle and its dependencies are
met, starts the engine of the head's opcode (``hw/vector/ports.py`` protocol) and is busy
until that engine's ``done``; the next instruction can start the cycle after. Only one
engine runs at a time, so the unit's memory ports are the OR of its engines' (each masked by
its own enable). The vector unit also holds the two tables its engines read: the ELUT (256
entries, ``cols`` read ports: one lookup per lane per cycle) and the RLUT (192 entries).
"""

from __future__ import annotations

import importlib

from amaranth.hdl import Const, Module, Mux, Signal
from amaranth.lib.memory import Memory

from hw.opcodes import TABLE
from hw.uarch import AccelParams
from hw.units import QueuedUnit
from hw.vector.formats import ELUT_SIZE, LUT_ENTRY_BITS, RLUT_SIZE

#: The engine class of each opcode: (module, class name); constructed as ``cls(cols, rows)``.
ENGINES = {
    "VLUT": ("hw.vector.lutload", "LutLoadEngine"),
    "VLN": ("hw.vector.layernorm", "LayerNormEngine"),
    "VSOFTMAX": ("hw.vector.softmax", "SoftmaxEngine"),
    "VADD": ("hw.vector.elementwise", "AddEngine"),
    "VSUM": ("hw.vector.colsum", "ColSumEngine"),
    "VSQUASH": ("hw.vector.elementwise", "SquashEngine"),
    "MTRANS": ("hw.vector.transpose", "TransposeEngine"),
    "MCOPY": ("hw.vector.copy", "CopyEngine"),
}
#: Engine ports that reach the accelerator's memories (the others are the unit's tables).
MEMORY_PORTS = ("vmem_r", "vmem_w", "pmem_r", "acc_w", "act_w", "wgt_w")


def _value(x):
    return x.as_value() if hasattr(x, "as_value") else x


def make_engine(op: str, p: AccelParams):
    module, cls = ENGINES[op]
    return getattr(importlib.import_module(module), cls)(p.cols, p.rows)


class EngineUnit(QueuedUnit):
    """A unit whose opcodes each run on an engine. ``ports``: memory port name (one of
    :data:`MEMORY_PORTS`) -> the port (or shared-port user) the unit drives."""

    def __init__(self, name: str, p: AccelParams, fifo, deps_ok, ports: dict):
        ops = tuple(op for op, s in TABLE.items() if s.unit == name)
        super().__init__(name, ops, fifo, deps_ok)
        self.p, self.ports = p, ports
        self.engines = {op: make_engine(op, p) for op in ops}
        self.busy_cycle = Signal(name=f"{name.lower()}_busy_cycle")

    def elaborate(self, m: Module) -> None:
        running = Signal(name=f"{self.name.lower()}_running")
        self.connect_pop(m, ~running)
        done = Const(0, 1)
        for op, eng in self.engines.items():
            m.submodules[f"{self.name.lower()}_{op.lower()}"] = eng
            size = len(eng.args.as_value())
            m.d.comb += [eng.start.eq(self.pop & (self.head.opcode == TABLE[op].code)),
                         eng.args.as_value().eq(self.head.payload[:size])]
            done = done | eng.done
        m.d.comb += [self.done.eq(done), self.active.eq(running),
                     self.busy_cycle.eq(self.pop | running)]
        with m.If(self.pop):
            m.d.sync += running.eq(1)
        with m.Elif(self.done):
            m.d.sync += running.eq(0)
        self.connect_ports(m, self.ports)

    def engines_with(self, port: str) -> list:
        return [e for e in self.engines.values() if port in e.signature.members]

    def connect_ports(self, m: Module, ports: dict) -> None:
        """Drive each port in ``ports`` with the OR of the engines that have it (read data
        goes to all of them)."""
        for name, target in ports.items():
            users = self.engines_with(name)
            addr = Const(0, len(target.addr))
            en = Const(0, len(target.en))
            wdata = Const(0, len(_value(target.data)))
            for eng in users:
                port = getattr(eng, name)
                on = port.en.any()
                addr = addr | Mux(on, port.addr, 0)
                en = en | port.en
                if name.endswith("_w"):
                    wdata = wdata | Mux(on, _value(port.data), 0)
                else:
                    m.d.comb += _value(port.data).eq(_value(target.data))
            m.d.comb += [target.addr.eq(addr), target.en.eq(en)]
            if name.endswith("_w"):
                m.d.comb += _value(target.data).eq(wdata)


class VectorUnit(EngineUnit):
    """The vector unit: VLUT, VLN, VSOFTMAX, VADD, VSUM, VSQUASH, and the ELUT/RLUT tables."""

    def __init__(self, p: AccelParams, fifo, deps_ok, ports: dict):
        super().__init__("VECTOR", p, fifo, deps_ok, ports)

    def elaborate(self, m: Module) -> None:
        super().elaborate(m)
        C = self.p.cols
        m.submodules.elut = elut = Memory(shape=LUT_ENTRY_BITS, depth=ELUT_SIZE, init=[])
        m.submodules.rlut = rlut = Memory(shape=LUT_ENTRY_BITS, depth=RLUT_SIZE, init=[])
        lanes = [elut.read_port() for _ in range(C)] if self.engines_with("elut_r") else []
        for eng in self.engines_with("elut_r"):
            for j, port in enumerate(lanes):
                m.d.comb += eng.elut_r.data[j].eq(port.data)
        for j, port in enumerate(lanes):
            addr = Const(0, len(port.addr))
            en = Const(0, 1)
            for eng in self.engines_with("elut_r"):
                addr = addr | Mux(eng.elut_r.en, eng.elut_r.addr[j], 0)
                en = en | eng.elut_r.en
            m.d.comb += [port.addr.eq(addr), port.en.eq(en)]
        tables = {"rlut_r": rlut.read_port(), "elut_w": elut.write_port(),
                  "rlut_w": rlut.write_port()}
        self.connect_ports(m, tables)


class MoverUnit(EngineUnit):
    """The mover: MTRANS (tile transposer) and MCOPY."""

    def __init__(self, p: AccelParams, fifo, deps_ok, ports: dict):
        super().__init__("MOVER", p, fifo, deps_ok, ports)


__all__ = ["ENGINES", "EngineUnit", "MEMORY_PORTS", "MoverUnit", "VectorUnit", "make_engine"]
