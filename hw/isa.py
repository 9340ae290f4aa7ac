"""The accelerator's instruction set: one definition for the RTL, the compiler and the simulators.

An instruction is a 128-bit word (one beat of the instruction stream)::

    bits   0..4    opcode
    bits   5..7    reserved (0)
    bits   8..43   deps: 6 slots x 6 bits, slot u = unit u (LOAD, MATMUL, REQUANT, STORE,
                   VECTOR, MOVER)
    bits  44..127  payload: the opcode's fields, packed from bit 44 upwards in FIELDS order

Dependency slot ``u`` holds ``d`` in 0..63: 0 = no dependency; ``d >= 1`` = do not start
before the ``d``-th most recent unit-``u`` instruction preceding this one in program order
has completed. Every bit not used by the opcode must be 0. ``docs/ISA.md`` gives the semantics
and timing of each opcode.

This module is pure Python (the estimator imports it); :func:`instr_layout` builds the
``amaranth.lib.data`` layout the RTL decoder uses from the same field table.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from hw import opcodes
from hw.opcodes import (
    MODE_NAMES,
    MODES,
    PARAM_M_BITS,
    PARAM_S_BITS,
    PARAM_S_SHIFT,
    TABLE,
    OpcodeError,
    OpSpec,
)
from hw.uarch import ACC, ACT, INSTR_BITS, UNITS, WGT, AccelParams


class IsaError(ValueError):
    """A malformed instruction or program; the message names the instruction and field."""


#: Opcode numbers by name, and names by number (from the opcode table, ``hw/opcodes.py``).
OPCODES: dict[str, int] = {name: s.code for name, s in TABLE.items()}
OPNAMES = {v: k for k, v in OPCODES.items()}
#: Payload fields of each opcode, (name, bits), packed from payload bit 0.
FIELDS: dict[str, tuple[tuple[str, int], ...]] = {name: s.fields for name, s in TABLE.items()}
#: Unit index that executes each opcode (the others run in the dispatcher).
UNIT_OF = {name: UNITS.index(s.unit) for name, s in TABLE.items() if s.unit is not None}

#: One dependency slot per unit, 6 bits each (distances 1..63).
DEP_SLOTS = len(UNITS)
DEP_BITS = 6
DEP_MAX = (1 << DEP_BITS) - 1
OPCODE_BITS = 5
DEP_SHIFT = 8
HEADER_BITS = DEP_SHIFT + DEP_SLOTS * DEP_BITS
PAYLOAD_BITS = INSTR_BITS - HEADER_BITS


def pack_param(m: int, s: int) -> int:
    """One column's (m, s) as its 32-bit param lane."""
    if not (0 <= m < 1 << PARAM_M_BITS and 0 <= s < 1 << PARAM_S_BITS):
        raise IsaError(f"requant parameters m={m}, s={s} do not fit {PARAM_M_BITS} and "
                       f"{PARAM_S_BITS} bits")
    return m | (s << PARAM_S_SHIFT)


def unpack_param(lane: int) -> tuple[int, int]:
    """(m, s) of a 32-bit param lane, as the RTL reads it."""
    m, s = opcodes.unpack_params(lane)
    return int(m), int(s)


def op_spec(op: str) -> OpSpec:
    """The opcode table entry of ``op``; :class:`IsaError` for an opcode it does not define."""
    try:
        return opcodes.spec(op)
    except OpcodeError as e:
        raise IsaError(str(e)) from None


_DERIVED: dict[int, tuple] = {}


def _derived(spec: OpSpec) -> tuple:
    """``(fields, their names, 1 << bits per field, unit index)`` of an opcode table entry
    (computed once per entry, for validating instructions quickly)."""
    hit = _DERIVED.get(id(spec))
    if hit is None or hit[0] is not spec:
        unit = None if spec.unit is None else UNITS.index(spec.unit)
        hit = (spec, (spec.fields, frozenset(n for n, _ in spec.fields),
                      tuple(1 << b for _, b in spec.fields), unit))
        _DERIVED[id(spec)] = hit
    return hit[1]


class Fields(dict):
    """An instruction's payload fields: ``f["addr"]`` or ``f.addr`` (the opcode table's rules
    read fields as attributes, like the RTL's ``amaranth.lib.data`` views). The instance's
    attribute dictionary is the mapping itself, so ``f.addr`` is a plain lookup."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.__dict__ = self

    def __getattr__(self, name: str) -> int:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None


def field_offsets(op: str) -> dict[str, tuple[int, int]]:
    """``name -> (bit offset in the payload, width)`` for ``op``'s fields."""
    out, pos = {}, 0
    for name, bits in op_spec(op).fields:
        out[name] = (pos, bits)
        pos += bits
    return out


def used_mask(op: str) -> int:
    """Bits of the 128-bit word an ``op`` instruction may set (all others must be 0)."""
    mask = (1 << OPCODE_BITS) - 1
    mask |= ((1 << (DEP_BITS * DEP_SLOTS)) - 1) << DEP_SHIFT
    for off, bits in field_offsets(op).values():
        mask |= ((1 << bits) - 1) << (HEADER_BITS + off)
    return mask


@dataclass(frozen=True)
class Instr:
    """One decoded instruction: opcode name, payload fields and dependency distances."""

    op: str
    args: Mapping[str, int] = field(default_factory=dict)
    deps: tuple[int, ...] = (0,) * len(UNITS)

    def __post_init__(self) -> None:
        if self.op not in TABLE:
            raise IsaError(f"unknown opcode {self.op!r}; use one of {sorted(TABLE)}")
        fields, names, limits, _ = _derived(TABLE[self.op])
        args = self.args
        if not names.issuperset(args):
            unknown = set(args) - names
            raise IsaError(f"{self.op} has no field(s) {sorted(unknown)}; fields: "
                           f"{[n for n, _ in fields]}")
        full = Fields()
        for n, _ in fields:
            v = args.get(n, 0)
            full[n] = v if type(v) is int else int(v)
        object.__setattr__(self, "args", full)
        deps = self.deps
        if type(deps) is not tuple or not all(type(d) is int for d in deps):
            deps = tuple(int(d) for d in deps)
        if len(deps) != len(UNITS):
            raise IsaError(f"deps must have {len(UNITS)} entries (one per unit {UNITS})")
        object.__setattr__(self, "deps", deps)
        for (name, bits), limit in zip(fields, limits, strict=True):
            v = full[name]
            if v < 0 or v >= limit:
                raise IsaError(f"{self.op} field '{name}'={v} does not fit "
                               f"{bits} bits; fix: use 0..{limit - 1}")
        if min(deps) < 0 or max(deps) > DEP_MAX:
            u = next(k for k, d in enumerate(deps) if not 0 <= d <= DEP_MAX)
            raise IsaError(f"{self.op} dependency on {UNITS[u]} = {deps[u]} is outside "
                           f"0..{DEP_MAX}")

    def __getitem__(self, name: str) -> int:
        return self.args[name]

    def with_deps(self, deps: tuple[int, ...]) -> Instr:
        """The same instruction with other dependency fields (fields already validated)."""
        if len(deps) != len(UNITS) or not all(0 <= d <= DEP_MAX for d in deps):
            raise IsaError(f"deps {deps} must be {len(UNITS)} values in 0..{DEP_MAX}")
        out = object.__new__(Instr)
        object.__setattr__(out, "op", self.op)
        object.__setattr__(out, "args", self.args)
        object.__setattr__(out, "deps", tuple(int(d) for d in deps))
        return out

    @property
    def spec(self) -> OpSpec:
        """This opcode's entry in the opcode table."""
        return TABLE[self.op]

    @property
    def unit(self) -> int | None:
        """Unit index executing this instruction, None for dispatcher-level ops."""
        return _derived(TABLE[self.op])[3]

    def encode(self) -> int:
        """The 128-bit instruction word."""
        word = TABLE[self.op].code
        for u, d in enumerate(self.deps):
            word |= d << (DEP_SHIFT + DEP_BITS * u)
        for name, (off, _) in field_offsets(self.op).items():
            word |= self.args[name] << (HEADER_BITS + off)
        return word

    def __str__(self) -> str:
        names = TABLE[self.op].value_names
        parts = []
        for name, value in self.args.items():
            parts.append(f"{name}={names.get(name, {}).get(value, value)}")
        deps = [f"{UNITS[u]}-{d}" for u, d in enumerate(self.deps) if d]
        if deps:
            parts.append("after " + ",".join(deps))
        return " ".join([self.op, *parts])


def decode(word: int) -> Instr:
    """Instruction word -> :class:`Instr`; raises :class:`IsaError` for an unknown opcode or
    a set reserved bit (the same conditions the RTL decoder reports as illegal)."""
    if not 0 <= word < (1 << INSTR_BITS):
        raise IsaError(f"instruction word {word:#x} is not a {INSTR_BITS}-bit value")
    opcode = word & ((1 << OPCODE_BITS) - 1)
    op = next((name for name, s in TABLE.items() if s.code == opcode), None)
    if op is None:
        raise IsaError(f"word {word:#034x}: opcode {opcode} is not defined "
                       f"(defined: {sorted(s.code for s in TABLE.values())})")
    stray = word & ~used_mask(op)
    if stray:
        raise IsaError(f"word {word:#034x} ({op}): reserved bits {stray:#x} are set")
    deps = tuple((word >> (DEP_SHIFT + DEP_BITS * u)) & DEP_MAX for u in range(len(UNITS)))
    args = {name: (word >> (HEADER_BITS + off)) & ((1 << bits) - 1)
            for name, (off, bits) in field_offsets(op).items()}
    return Instr(op, args, deps)


def problems(ins: Instr, p: AccelParams) -> list[str]:
    """Range problems of a decoded instruction on hardware ``p`` (empty = legal): the
    messages of the opcode table's rules that hold. The RTL decoder (``hw/decoder.py``)
    evaluates the same rules and stops with an illegal-instruction error instead of
    executing the instruction."""
    return [r.message(ins.args, p) for r in TABLE[ins.op].rules if r.pred(ins.args, p)]


def check(ins: Instr, p: AccelParams, pc: int | None = None) -> None:
    """Raise :class:`IsaError` naming the instruction and field if ``ins`` is illegal on ``p``."""
    probs = problems(ins, p)
    if probs:
        where = f"instruction #{pc} " if pc is not None else ""
        raise IsaError(f"{where}{ins}: " + "; ".join(probs))


def encode_program(instrs: Iterable[Instr]) -> list[int]:
    return [ins.encode() for ins in instrs]


def decode_program(words: Iterable[int]) -> list[Instr]:
    out = []
    for pc, w in enumerate(words):
        try:
            out.append(decode(int(w)))
        except IsaError as e:
            raise IsaError(f"instruction #{pc}: {e}") from None
    return out


def instructions(program: Any) -> list[Instr]:
    """The decoded instructions of ``program``: a compiled program (``.instrs``), ``Instr``
    objects or 128-bit words (decoded, so malformed words raise :class:`IsaError`)."""
    items = list(program.instrs if hasattr(program, "instrs") else program)
    if all(isinstance(i, Instr) for i in items):
        return items
    return decode_program(items)


# ---------------------------------------------------------------------- amaranth layouts


@functools.cache
def payload_layout(op: str) -> Any:
    """``amaranth.lib.data.StructLayout`` of ``op``'s payload fields."""
    from amaranth.lib import data
    return data.StructLayout({name: bits for name, bits in op_spec(op).fields} or {"none": 0})


@functools.cache
def instr_layout() -> Any:
    """The 128-bit instruction word as an ``amaranth.lib.data`` layout (RTL decoder)."""
    from amaranth.lib import data
    payload = data.UnionLayout({"raw": PAYLOAD_BITS,
                                **{op.lower(): payload_layout(op) for op in TABLE}})
    return data.StructLayout({
        "opcode": OPCODE_BITS,
        "rsv": DEP_SHIFT - OPCODE_BITS,
        "deps": data.ArrayLayout(DEP_BITS, DEP_SLOTS),
        "payload": payload,
    })


# ---------------------------------------------------------------------- constructors


def _deps(after: Mapping[str, int] | None) -> tuple[int, ...]:
    d = [0] * len(UNITS)
    for unit, dist in (after or {}).items():
        d[UNITS.index(unit)] = dist
    return tuple(d)


def config(budget: int, rows: int, cols: int) -> Instr:
    return Instr("CONFIG", {"budget": budget, "rows": rows, "cols": cols})


def load(bank: int, addr: int, count: int, after: Mapping[str, int] | None = None) -> Instr:
    return Instr("LOAD", {"bank": bank, "addr": addr, "count": count}, _deps(after))


def matmul(act: int, wgt: int, acc: int, k: int, mode: str = "OVERWRITE", bias: int = 0,
           after: Mapping[str, int] | None = None) -> Instr:
    return Instr("MATMUL", {"act": act, "wgt": wgt, "acc": acc, "k": k, "bias": bias,
                            "mode": MODES[mode]}, _deps(after))


def requant(src: int, dst: int, param: int, rows: int, relu: bool = False,
            after: Mapping[str, int] | None = None) -> Instr:
    return Instr("REQUANT", {"src": src, "dst": dst, "param": param, "rows": rows,
                             "relu": int(relu)}, _deps(after))


def store(addr: int, count: int, after: Mapping[str, int] | None = None) -> Instr:
    return Instr("STORE", {"addr": addr, "count": count}, _deps(after))


def fence() -> Instr:
    return Instr("FENCE")


def done() -> Instr:
    return Instr("DONE")


__all__ = [
    "ACC", "ACT", "DEP_MAX", "FIELDS", "Instr", "IsaError", "MODES", "MODE_NAMES", "OPCODES",
    "UNITS", "WGT", "check", "config", "decode", "decode_program", "done", "encode_program",
    "fence", "instr_layout", "instructions", "load", "matmul", "op_spec", "problems", "requant",
    "store", "used_mask",
]
