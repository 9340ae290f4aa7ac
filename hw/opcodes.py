"""The opcode table: every opcode of the accelerator, described once.

Each :class:`OpSpec` holds everything the rest of the design needs to know about one opcode:

* ``fields``: its payload fields ``(name, bits)`` (``hw/isa.py`` packs them);
* ``unit``: the execution unit that runs it (``None``: the dispatcher handles it, see
  ``control``);
* ``rules``: its legality conditions. A rule's predicate is written with operators only, so
  the same function evaluates on Python ints (``hw.isa.problems``, the ISA simulator) and
  on Amaranth values (the RTL decoder, ``hw/decoder.py``): one definition, two executors;
* ``regions``: the SRAM words it reads and writes (``hw/deps.py`` derives hazards, the
  estimator the SRAM footprint);
* ``ordered_raw``: which read-after-write on its own unit the unit's pipeline orders;
* ``cost`` and ``spacing``: its timing rule (``hw/timing.py``, the watchdog budget);
* ``traffic``: SRAM bytes, host bytes and datapath operations (``sim/perf/program.py``);
* ``execute``: its functional semantics on a :class:`Machine` (``sim/isa_sim.py``).

A consumer that needs a rule an opcode does not define calls :meth:`OpSpec.need`, which
raises :class:`OpcodeError` naming the opcode and the missing rule: nothing falls through to
another opcode's behaviour. ``docs/ISA.md`` documents every entry.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from hw.hostio import beats_to_words, int32_words, words_int32, words_to_beats
from hw.uarch import ACC, ACT, BANK_KEYS, BANK_NAMES, ROWS_PER_ACC_WORD, WGT, AccelParams
from model import intops

Region = tuple[int, int, int]  # (bank, first word, end word)

#: MATMUL modes: what the drained tile is added to.
MODES = {"OVERWRITE": 0, "ACCUMULATE": 1, "BIAS": 2}
MODE_NAMES = {v: k for k, v in MODES.items()}

#: A REQUANT parameter word is an ACC word whose 32-bit lane j holds column j's multiplier
#: ``m`` in bits 0..14 and shift ``s`` in bits 16..21 (other bits ignored, write 0); the widths
#: are those of the requantization contract (``model.intops``).
PARAM_M_BITS = intops.M_BITS
PARAM_S_SHIFT = 16
PARAM_S_BITS = intops.S_MAX.bit_length()


#: Payload fields of the vector-unit and mover opcodes (docs/ISA.md, "Vector unit" and
#: "Mover"); the engines read them through ``hw.vector.ports.args_layout``.
VECTOR_FIELDS: dict[str, tuple[tuple[str, int], ...]] = {
    "VLUT": (("table", 1), ("src", 16)),
    "VLN": (("src", 16), ("dst", 16), ("rows", 8), ("words", 8), ("param", 16)),
    "VSOFTMAX": (("src", 16), ("dst", 16), ("rows", 8), ("words", 8), ("ncols", 12),
                 ("mrow", 8), ("mcols", 12)),
    "VADD": (("a", 16), ("b", 16), ("dst", 16), ("count", 16), ("param", 16)),
    "VSUM": (("src", 16), ("stride", 8), ("rows", 16), ("words", 8), ("dst", 16), ("out", 2),
             ("param", 16)),
    "VSQUASH": (("src", 16), ("dst", 16), ("count", 16), ("param", 16)),
}
MOVER_FIELDS: dict[str, tuple[tuple[str, int], ...]] = {
    "MTRANS": (("src", 16), ("stride", 8), ("rows", 7), ("ncols", 12), ("bank", 1),
               ("dst", 16), ("boff", 6)),
    "MCOPY": (("src", 16), ("dst", 16), ("count", 16), ("bank", 1)),
}


class OpcodeError(ValueError):
    """The opcode table has no rule for what a consumer asked (names opcode and rule)."""


class ExecutionError(RuntimeError):
    """An instruction cannot execute on the given machine state (names the instruction)."""


# ----------------------------------------------------------------------------- rule helpers


def _is_int(x: Any) -> bool:
    return isinstance(x, (int, np.integer))


def pick(sel: Any, options: Mapping[int, Any], default: Any) -> Any:
    """``options[sel]`` (``default`` if absent), for a Python int or an Amaranth value."""
    if _is_int(sel):
        return options.get(int(sel), default)
    from amaranth.hdl import Mux
    out = default
    for key, value in options.items():
        out = Mux(sel == key, value, out)
    return out


def cdiv(a: Any, b: int) -> Any:
    """``ceil(a / b)`` for a non-negative Python int or an unsigned Amaranth value (``b`` a
    power of two for Amaranth values: a shift)."""
    if _is_int(a):
        return -(-a // b)
    if b & (b - 1):
        raise OpcodeError(f"cdiv by {b} in a rule: the RTL form needs a power of two")
    return (a + (b - 1)) >> (b.bit_length() - 1)


@dataclass(frozen=True)
class Rule:
    """One legality condition: the instruction is illegal where ``pred(a, p)`` holds.

    ``pred`` uses only ``+ - // == != < <= > >= & |`` and :func:`pick`/:func:`cdiv` on the
    fields ``a.<name>``, so it works on ints and on Amaranth values; ``message(a, p)`` (ints)
    explains the problem and names the field.
    """

    pred: Callable[[Any, AccelParams], Any]
    message: Callable[[Any, AccelParams], str]


def _past_end(name: str, count: Callable, bank: Callable | int, guard: Callable | None = None
              ) -> Rule:
    """``a.<name> + count(a, p)`` words run past the end of the bank ``bank(a)``."""
    bank_of = bank if callable(bank) else (lambda a, b=bank: b)

    def depth(a, p):
        return pick(bank_of(a), {b: p.depth(b) for b in (ACT, WGT, ACC)}, 0)

    def pred(a, p):
        over = getattr(a, name) + count(a, p) > depth(a, p)
        return over if guard is None else guard(a) & over

    def message(a, p):
        b = bank_of(a)
        return (f"'{name}'={getattr(a, name)} + {count(a, p)} words runs past the "
                f"{BANK_NAMES[b]} bank ({p.depth(b)} words)")

    return Rule(pred, message)


def _zero(name: str) -> Rule:
    return Rule(lambda a, p: getattr(a, name) == 0, lambda a, p: f"'{name}'=0 (must be >= 1)")


# ----------------------------------------------------------------------------- costs, traffic


@dataclass(frozen=True)
class Cost:
    """Timing of one instruction, in cycles after the cycle its unit starts it.

    ``free``: the unit may start its next instruction at ``start + free``; ``done``: it
    completes at ``start + done`` (its effects are visible from ``done + 1``); ``busy``: the
    RTL busy counters it adds to; ``host_beats``: it moves a host-stream beat in each cycle
    ``start+1 .. start+host_beats`` (``dma_busy`` is their union); ``serial``: cycles it can
    take when it runs alone (the watchdog budget adds these).
    """

    free: int
    done: int
    busy: Mapping[str, int]
    serial: int
    host_beats: int = 0


@dataclass
class Traffic:
    """SRAM and host bytes and datapath operations of one instruction (estimator keys)."""

    reads: dict[str, int] = field(default_factory=lambda: dict.fromkeys(BANK_KEYS, 0))
    writes: dict[str, int] = field(default_factory=lambda: dict.fromkeys(BANK_KEYS, 0))
    host_in: dict[str, int] = field(default_factory=lambda: dict.fromkeys(BANK_KEYS, 0))
    host_out: int = 0
    mac_slots: int = 0
    ops: dict[str, int] = field(default_factory=dict)


# ----------------------------------------------------------------------------- machine state


@dataclass
class Machine:
    """Architectural state the functional semantics act on (``sim/isa_sim.py`` drives it):
    SRAM images (``(depth, word_bytes)`` uint8 per bank), the data-in stream and its read
    position, the data-out beats produced so far and the watchdog budget."""

    p: AccelParams
    banks: list[np.ndarray]
    din: np.ndarray
    pos: int = 0
    dout: list[np.ndarray] = field(default_factory=list)
    budget: int = 0

    @classmethod
    def empty(cls, p: AccelParams, din: np.ndarray) -> Machine:
        banks = [np.zeros((p.depth(b), p.word_bytes(b)), np.uint8) for b in (ACT, WGT, ACC)]
        return cls(p, banks, np.asarray(din, np.uint8).reshape(-1, p.host_bytes))

    def take_beats(self, n: int, what: str) -> np.ndarray:
        if self.pos + n > len(self.din):
            raise ExecutionError(f"{what} needs {n} data beats, only {len(self.din) - self.pos} "
                                 "are left in the input stream")
        out = self.din[self.pos:self.pos + n]
        self.pos += n
        return out


def _wrap32(x: np.ndarray) -> np.ndarray:
    return ((np.asarray(x, np.int64) + 2**31) % 2**32 - 2**31).astype(np.int32)


# ----------------------------------------------------------------------------- the table


@dataclass(frozen=True)
class OpSpec:
    """One opcode (see the module docstring for what each rule is used for)."""

    name: str
    code: int
    fields: tuple[tuple[str, int], ...]
    unit: str | None = None
    #: dispatcher-level opcodes: "immediate" (dispatches at once) or "barrier" (waits until
    #: every earlier instruction completed); ``ends``: the program stops here
    control: str | None = None
    ends: bool = False
    rules: tuple[Rule, ...] = ()
    regions: Callable[[Any, AccelParams], tuple[list[Region], list[Region]]] | None = None
    ordered_raw: Callable[[Any, Any], bool] | None = None
    cost: Callable[[Any, AccelParams], Cost] | None = None
    spacing: Callable[[Any, Any, AccelParams], int] | None = None
    stall_counter: str | None = None
    traffic: Callable[[Any, AccelParams], Traffic] | None = None
    execute: Callable[[Machine, Any, str], None] | None = None
    #: field -> names of its values, for printing (e.g. LOAD bank=WGT)
    value_names: Mapping[str, Mapping[int, str]] = field(default_factory=dict)

    def need(self, rule: str) -> Callable:
        """The rule ``rule`` (an attribute name); :class:`OpcodeError` if it is missing."""
        fn = getattr(self, rule)
        if fn is None:
            raise OpcodeError(f"opcode {self.name} has no '{rule}' rule in the opcode table "
                              "(hw/opcodes.py); add one before using it")
        return fn


def _no_regions(a, p):
    return [], []


def _no_traffic(a, p):
    return Traffic()


def _nothing(m: Machine, a, where: str) -> None:
    return None


# -- CONFIG


def _config_exec(m: Machine, a, where: str) -> None:
    m.budget = a.budget


_CONFIG = OpSpec(
    "CONFIG", 1, (("budget", 32), ("rows", 8), ("cols", 8)), control="immediate",
    rules=(Rule(lambda a, p: (a.rows != p.rows) | (a.cols != p.cols),
                lambda a, p: f"program is for a {a.rows}x{a.cols} array, the hardware is "
                             f"{p.rows}x{p.cols} (recompile for this config)"),),
    regions=_no_regions, traffic=_no_traffic, execute=_config_exec)


# -- LOAD


def _load_regions(a, p):
    return [], [(a.bank, a.addr, a.addr + a.count)]


def _load_cost(a, p):
    n = a.count * p.beats(a.bank)
    return Cost(free=n, done=n, busy={"dma_in_busy": n}, serial=n, host_beats=n)


def _load_traffic(a, p):
    t = Traffic()
    key = BANK_KEYS[a.bank]
    t.writes[key] = t.host_in[key] = a.count * p.word_bytes(a.bank)
    return t


def _load_exec(m: Machine, a, where: str) -> None:
    beats = m.take_beats(a.count * m.p.beats(a.bank), where)
    m.banks[a.bank][a.addr:a.addr + a.count] = beats_to_words(beats, m.p.word_bytes(a.bank))


_LOAD = OpSpec(
    "LOAD", 2, (("bank", 2), ("addr", 16), ("count", 17)), unit="LOAD",
    rules=(Rule(lambda a, p: a.bank > ACC,
                lambda a, p: f"'bank'={a.bank} is not ACT(0), WGT(1) or ACC(2)"),
           _zero("count"),
           _past_end("addr", lambda a, p: a.count, lambda a: a.bank,
                     guard=lambda a: (a.bank <= ACC) & (a.count != 0))),
    regions=_load_regions, ordered_raw=lambda ins, other: True, cost=_load_cost,
    traffic=_load_traffic, execute=_load_exec,
    value_names={"bank": dict(enumerate(BANK_NAMES))})


# -- MATMUL


def _matmul_regions(a, p):
    tile = (ACC, a.acc, a.acc + p.rows)
    reads = [(ACT, a.act, a.act + a.k), (WGT, a.wgt, a.wgt + a.k)]
    if a.mode == MODES["ACCUMULATE"]:
        reads.append(tile)
    elif a.mode == MODES["BIAS"]:
        reads.append((ACC, a.bias, a.bias + 1))
    return reads, [tile]


def _matmul_cost(a, p):
    return Cost(free=a.k, done=a.k + p.matmul_latency, busy={"array_busy": a.k},
                serial=a.k + p.drain_gap + p.matmul_latency + 1)


def _matmul_spacing(prev, a, p):
    """The last k-steps of consecutive tiles enter the array at least G cycles apart."""
    return prev.k + p.drain_gap - a.k


def _matmul_traffic(a, p):
    t = Traffic()
    t.reads["act"] = a.k * p.word_bytes(ACT)
    t.reads["wgt"] = a.k * p.word_bytes(WGT)
    if a.mode in (MODES["BIAS"], MODES["ACCUMULATE"]):  # BIAS re-reads its word once per row
        t.reads["acc"] = p.rows * p.word_bytes(ACC)
    t.writes["acc"] = p.rows * p.word_bytes(ACC)
    t.mac_slots = a.k * p.rows * p.cols
    return t


def _matmul_exec(m: Machine, a, where: str) -> None:
    banks, p = m.banks, m.p
    a_t = banks[ACT][a.act:a.act + a.k].view(np.int8).T        # (rows, K)
    b_t = banks[WGT][a.wgt:a.wgt + a.k].view(np.int8)          # (K, cols)
    tile = intops.gemm_i32(a_t, b_t).astype(np.int64)
    rows = slice(a.acc, a.acc + p.rows)
    if a.mode == MODES["ACCUMULATE"]:
        tile += words_int32(banks[ACC][rows])
    elif a.mode == MODES["BIAS"]:
        tile += words_int32(banks[ACC][a.bias:a.bias + 1])     # broadcast over rows
    banks[ACC][rows] = int32_words(_wrap32(tile))              # 32-bit lanes wrap


_MATMUL = OpSpec(
    "MATMUL", 3,
    (("act", 16), ("wgt", 16), ("acc", 16), ("k", 17), ("bias", 16), ("mode", 2)),
    unit="MATMUL",
    rules=(Rule(lambda a, p: a.mode > MODES["BIAS"],
                lambda a, p: f"'mode'={a.mode} is not OVERWRITE(0), ACCUMULATE(1) or BIAS(2)"),
           _zero("k"),
           _past_end("act", lambda a, p: a.k, ACT),
           _past_end("wgt", lambda a, p: a.k, WGT),
           _past_end("acc", lambda a, p: p.rows, ACC),
           _past_end("bias", lambda a, p: 1, ACC, guard=lambda a: a.mode == MODES["BIAS"]),
           Rule(lambda a, p: (a.mode != MODES["BIAS"]) & (a.bias != 0),
                lambda a, p: f"'bias'={a.bias} is set but mode is not BIAS (must be 0)")),
    regions=_matmul_regions,
    # the pipeline orders an ACCUMULATE after the MATMUL that last wrote the same tile
    ordered_raw=lambda ins, other: (ins.op == other.op == "MATMUL"
                                    and ins["mode"] == MODES["ACCUMULATE"]
                                    and ins["acc"] == other["acc"]),
    cost=_matmul_cost, spacing=_matmul_spacing, stall_counter="stall",
    traffic=_matmul_traffic, execute=_matmul_exec,
    value_names={"mode": MODE_NAMES})


# -- REQUANT


def _requant_words(a) -> Any:
    return cdiv(a.rows, ROWS_PER_ACC_WORD)


def _requant_regions(a, p):
    return ([(ACC, a.param, a.param + 1), (ACC, a.src, a.src + a.rows)],
            [(ACC, a.dst, a.dst + _requant_words(a))])


def _requant_cost(a, p):
    return Cost(free=a.rows + 1, done=a.rows + p.REQUANT_LATENCY,
                busy={"requant_busy": a.rows + 1}, serial=a.rows + p.REQUANT_LATENCY + 1)


def _requant_traffic(a, p):
    t = Traffic()
    t.reads["acc"] = (1 + a.rows) * p.word_bytes(ACC)
    t.writes["acc"] = a.rows * p.cols          # int8 rows, byte-enabled into ACC words
    lanes = a.rows * p.cols
    t.ops = {"int32_mult": lanes, "int32_add": lanes}
    return t


def unpack_params(lanes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-column ``(m, s)`` of a REQUANT parameter word's int32 lanes, as the RTL reads it."""
    lanes = np.asarray(lanes).astype(np.int64) & 0xFFFFFFFF
    return (lanes & ((1 << PARAM_M_BITS) - 1),
            (lanes >> PARAM_S_SHIFT) & ((1 << PARAM_S_BITS) - 1))


def _requant_exec(m: Machine, a, where: str) -> None:
    banks, C, n = m.banks, m.p.cols, a.rows
    mult, shift = unpack_params(words_int32(banks[ACC][a.param:a.param + 1])[0])
    acc = words_int32(banks[ACC][a.src:a.src + n])
    try:
        y = intops.requantize(acc, mult, shift, relu=bool(a.relu))
    except intops.IntOpsError as e:
        raise ExecutionError(f"{where}: parameter word ACC[{a.param}] is not a valid (m, s) "
                             f"per column: {e}") from None
    words = _requant_words(a)
    rows = np.zeros((words * ROWS_PER_ACC_WORD, C), np.int8)  # rows past n-1 are 0
    rows[:n] = y
    banks[ACC][a.dst:a.dst + words] = rows.view(np.uint8).reshape(words, -1)


_REQUANT = OpSpec(
    "REQUANT", 4, (("src", 16), ("dst", 16), ("param", 16), ("rows", 17), ("relu", 1)),
    unit="REQUANT",
    rules=(_zero("rows"),
           _past_end("src", lambda a, p: a.rows, ACC),
           _past_end("dst", lambda a, p: _requant_words(a), ACC),
           _past_end("param", lambda a, p: 1, ACC)),
    regions=_requant_regions, ordered_raw=lambda ins, other: False, cost=_requant_cost,
    traffic=_requant_traffic, execute=_requant_exec)


# -- STORE


def _store_cost(a, p):
    n = a.count * p.beats(ACC)
    return Cost(free=n, done=n, busy={"dma_out_busy": n}, serial=n, host_beats=n)


def _store_traffic(a, p):
    t = Traffic()
    t.reads["acc"] = t.host_out = a.count * p.word_bytes(ACC)
    return t


def _store_exec(m: Machine, a, where: str) -> None:
    m.dout.append(words_to_beats(m.banks[ACC][a.addr:a.addr + a.count], m.p.host_bytes))


_STORE = OpSpec(
    "STORE", 5, (("addr", 16), ("count", 17)), unit="STORE",
    rules=(_zero("count"), _past_end("addr", lambda a, p: a.count, ACC)),
    regions=lambda a, p: ([(ACC, a.addr, a.addr + a.count)], []),
    ordered_raw=lambda ins, other: True, cost=_store_cost, traffic=_store_traffic,
    execute=_store_exec)


# -- FENCE, DONE

_FENCE = OpSpec("FENCE", 6, (), control="barrier", regions=_no_regions, traffic=_no_traffic,
                execute=_nothing)
_DONE = OpSpec("DONE", 7, (), control="barrier", ends=True, regions=_no_regions,
               traffic=_no_traffic, execute=_nothing)

#: The opcode table, by name. Opcode 0 (an all-zero word) and 8..15 are illegal.
TABLE: dict[str, OpSpec] = {s.name: s for s in
                            (_CONFIG, _LOAD, _MATMUL, _REQUANT, _STORE, _FENCE, _DONE)}


def spec(op: str) -> OpSpec:
    """The table entry of opcode ``op``; :class:`OpcodeError` for an unknown name."""
    try:
        return TABLE[op]
    except KeyError:
        raise OpcodeError(f"unknown opcode {op!r}; the table defines {sorted(TABLE)}") from None


__all__ = ["Cost", "ExecutionError", "MODES", "MODE_NAMES", "Machine", "OpSpec", "OpcodeError",
           "PARAM_M_BITS", "PARAM_S_BITS", "PARAM_S_SHIFT", "Region", "Rule", "TABLE", "Traffic",
           "cdiv", "pick", "spec", "unpack_params"]
