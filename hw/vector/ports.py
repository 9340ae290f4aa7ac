"""Port signatures between the vector-unit / mover engines and the memories they use.

Seen from the engine (it drives ``addr``/``en``/``data`` out and receives ``data`` in). Every
memory port is synchronous: a read issued (``en``) in cycle ``t`` returns ``data`` in cycle
``t + 1``; a write (``en``) in cycle ``t`` is visible to reads issued from ``t + 1``. An engine
uses its ports only between its ``start`` and ``done`` cycles (the unit routes the ports of
the running engine to the memories).

Engine protocol (every engine): ``start`` is high for one cycle ``c`` with ``args`` (the
instruction's payload fields, ``hw.isa.payload_layout(op)``) valid in that cycle only; the
engine is idle before. It raises ``done`` for exactly one cycle, ``c + latency(args)``, where
``latency`` is the closed form in ``hw/vector/timing.py`` (a function of the fields and the
hardware parameters only); all its writes happen at or before that cycle. ``busy`` is high
from ``c`` through the ``done`` cycle. A new ``start`` comes at ``done + 1`` at the earliest.
"""

from __future__ import annotations

from amaranth.hdl import unsigned
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from hw.vector.formats import LUT_ENTRY_BITS, PMEM_LANE_BITS, VMEM_LANE_BITS

ADDR_BITS = 16
LUT_ADDR_BITS = 8


def vmem_word(cols: int) -> data.ArrayLayout:
    """A VMEM word: ``cols`` signed 16-bit lanes."""
    from amaranth.hdl import signed
    return data.ArrayLayout(signed(VMEM_LANE_BITS), cols)


def pmem_word(cols: int) -> data.ArrayLayout:
    """A PMEM word: ``cols`` 64-bit lanes."""
    return data.ArrayLayout(unsigned(PMEM_LANE_BITS), cols)


def acc_word(cols: int) -> data.ArrayLayout:
    """An ACC word: ``cols`` signed 32-bit lanes."""
    from amaranth.hdl import signed
    return data.ArrayLayout(signed(32), cols)


def read_port(shape, addr_bits: int = ADDR_BITS) -> wiring.Signature:
    return wiring.Signature({"addr": Out(addr_bits), "en": Out(1), "data": In(shape)})


def write_port(shape, addr_bits: int = ADDR_BITS) -> wiring.Signature:
    return wiring.Signature({"addr": Out(addr_bits), "en": Out(1), "data": Out(shape)})


def bytes_write_port(nbytes: int, addr_bits: int = ADDR_BITS) -> wiring.Signature:
    """Write port of an int8 bank (ACT or WGT) with a byte enable per byte."""
    return wiring.Signature({"addr": Out(addr_bits), "en": Out(nbytes),
                             "data": Out(8 * nbytes)})


def elut_read_port(cols: int) -> wiring.Signature:
    """``cols`` lookups per cycle in the 256-entry ELUT (lane ``j`` reads ``addr[j]``)."""
    return wiring.Signature({
        "addr": Out(data.ArrayLayout(LUT_ADDR_BITS, cols)), "en": Out(1),
        "data": In(data.ArrayLayout(LUT_ENTRY_BITS, cols))})


def lut_read_port() -> wiring.Signature:
    return read_port(LUT_ENTRY_BITS, LUT_ADDR_BITS)


def lut_write_port() -> wiring.Signature:
    return write_port(LUT_ENTRY_BITS, LUT_ADDR_BITS)


def args_layout(op: str) -> data.StructLayout:
    """The payload fields of vector/mover opcode ``op`` as an ``amaranth.lib.data`` layout."""
    from hw.opcodes import MOVER_FIELDS, VECTOR_FIELDS
    fields = {**VECTOR_FIELDS, **MOVER_FIELDS}[op]
    return data.StructLayout(dict(fields))


def engine_members(args_layout, cols: int, rows: int, ports: tuple[str, ...]) -> dict:
    """Members of an engine's signature: the protocol (``start``, ``args``, ``done``,
    ``busy``) and the named ports it uses, from:

    ``vmem_r``, ``vmem_w`` (VMEM), ``pmem_r`` (PMEM), ``acc_w`` (ACC), ``act_w`` (ACT, byte
    enables, ``rows`` bytes), ``wgt_w`` (WGT, byte enables, ``cols`` bytes), ``elut_r``
    (``cols`` ELUT lookups), ``rlut_r`` (RLUT), ``elut_w`` / ``rlut_w`` (table writes).
    """
    table = {
        "vmem_r": lambda: read_port(vmem_word(cols)),
        "vmem_w": lambda: write_port(vmem_word(cols)),
        "pmem_r": lambda: read_port(pmem_word(cols)),
        "acc_w": lambda: write_port(acc_word(cols)),
        "act_w": lambda: bytes_write_port(rows),
        "wgt_w": lambda: bytes_write_port(cols),
        "elut_r": lambda: elut_read_port(cols),
        "rlut_r": lut_read_port,
        "elut_w": lut_write_port,
        "rlut_w": lut_write_port,
    }
    unknown = set(ports) - set(table)
    if unknown:
        raise ValueError(f"unknown engine port(s) {sorted(unknown)}; known: {sorted(table)}")
    members = {"start": In(1), "args": In(args_layout), "done": Out(1), "busy": Out(1)}
    members.update({name: Out(table[name]()) for name in ports})
    return members


class Engine(wiring.Component):
    """Base of the engines: the subclass names its opcode (``OP``, whose payload layout is
    ``args``) and the ports it uses (``PORTS``, names of :func:`engine_members`)."""

    OP = ""
    PORTS = ()

    def __init__(self, cols: int, rows: int):
        self.cols, self.rows = cols, rows
        super().__init__(engine_members(args_layout(self.OP), cols, rows, self.PORTS))


__all__ = ["ADDR_BITS", "Engine", "acc_word", "args_layout", "bytes_write_port", "elut_read_port",
           "engine_members", "lut_read_port", "lut_write_port", "pmem_word", "read_port",
           "vmem_word", "write_port"]
