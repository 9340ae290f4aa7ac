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
* ``ports``: the shared bank ports it uses (``hw/deps.py`` orders the instructions of
  different units that share one, so at most one unit drives a port in any cycle);
* ``ordered_raw``: which read-after-write on its own unit the unit's pipeline orders;
* ``cost`` and ``spacing``: its timing rule (``hw/timing.py``, the watchdog budget);
* ``traffic``: SRAM bytes, host bytes and datapath operations (``sim/perf/program.py``);
* ``execute``: its functional semantics on a :class:`Machine` (``sim/isa_sim.py``).

A consumer that needs a rule an opcode does not define calls :meth:`OpSpec.need`, which
raises :class:`OpcodeError` naming the opcode and the missing rule: nothing falls through to
another opcode's behaviour. The form of an entry and the rule helpers are in
``hw/opspec.py``; this module holds the GEMM core and control opcodes, ``hw/vector/ops.py``
the vector-unit and mover opcodes. ``docs/ISA.md`` documents every entry.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from hw.hostio import beats_to_words, int32_words, words_int32, words_to_beats
from hw.opspec import (
    Cost,
    ExecutionError,
    Machine,
    OpcodeError,
    OpSpec,
    Region,
    Rule,
    Traffic,
    always_ordered,
    cdiv,
    no_ports,
    no_regions,
    no_traffic,
    nothing,
    past_end,
    pick,
    strided,
    zero,
)
from hw.uarch import ACC, ACT, BANK_KEYS, BANK_NAMES, PMEM, ROWS_PER_ACC_WORD, VMEM, WGT
from hw.vector.ops import MOVER_FIELDS, VECTOR_FIELDS, VECTOR_OPS
from model import intops

#: MATMUL modes: what the drained tile is added to.
MODES = {"OVERWRITE": 0, "ACCUMULATE": 1, "BIAS": 2}
MODE_NAMES = {v: k for k, v in MODES.items()}

#: A REQUANT parameter word is an ACC word whose 32-bit lane j holds column j's multiplier
#: ``m`` in bits 0..14 and shift ``s`` in bits 16..21 (other bits ignored, write 0); the widths
#: are those of the requantization contract (``model.intops``).
PARAM_M_BITS = intops.M_BITS
PARAM_S_SHIFT = 16
PARAM_S_BITS = intops.S_MAX.bit_length()


def _wrap32(x: np.ndarray) -> np.ndarray:
    return ((np.asarray(x, np.int64) + 2**31) % 2**32 - 2**31).astype(np.int32)


# -- CONFIG


def _config_exec(m: Machine, a, where: str) -> None:
    m.budget = a.budget


_CONFIG = OpSpec(
    "CONFIG", 1, (("budget", 32), ("rows", 8), ("cols", 8)), control="immediate",
    rules=(Rule(lambda a, p: (a.rows != p.rows) | (a.cols != p.cols),
                lambda a, p: f"program is for a {a.rows}x{a.cols} array, the hardware is "
                             f"{p.rows}x{p.cols} (recompile for this config)"),),
    regions=no_regions, ports=no_ports, traffic=no_traffic, execute=_config_exec)


# -- LOAD


def _load_regions(a, p):
    return [], [(a.bank, a.addr, a.addr + a.count)]


def _load_cost(a, p):
    n = a.count * p.beats(a.bank)
    return Cost(free=n, done=n, busy={"dma_in_busy": n}, serial=n, host_beats=n)


#: The shared write port a LOAD uses (PMEM's write port is LOAD's alone).
_LOAD_PORTS = {ACT: ["ACT.w"], WGT: ["WGT.w"], ACC: ["ACC.w"], VMEM: ["VMEM.w"], PMEM: []}


def _load_traffic(a, p):
    t = Traffic()
    key = BANK_KEYS[a.bank]
    t.writes[key] = t.host_in[key] = a.count * p.word_bytes(a.bank)
    return t


def _load_exec(m: Machine, a, where: str) -> None:
    beats = m.take_beats(a.count * m.p.beats(a.bank), where)
    m.banks[a.bank][a.addr:a.addr + a.count] = beats_to_words(beats, m.p.word_bytes(a.bank))


_LOAD = OpSpec(
    "LOAD", 2, (("bank", 3), ("addr", 16), ("count", 17)), unit="LOAD",
    rules=(Rule(lambda a, p: a.bank > PMEM,
                lambda a, p: f"'bank'={a.bank} is not "
                             + ", ".join(f"{n}({b})" for b, n in enumerate(BANK_NAMES))),
           zero("count"),
           past_end("addr", lambda a, p: a.count, lambda a: a.bank,
                    guard=lambda a: (a.bank <= PMEM) & (a.count != 0))),
    regions=_load_regions, ports=lambda a, p: _LOAD_PORTS[a.bank],
    ordered_raw=always_ordered, cost=_load_cost,
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
           zero("k"),
           past_end("act", lambda a, p: a.k, ACT),
           past_end("wgt", lambda a, p: a.k, WGT),
           past_end("acc", lambda a, p: p.rows, ACC),
           past_end("bias", lambda a, p: 1, ACC, guard=lambda a: a.mode == MODES["BIAS"]),
           Rule(lambda a, p: (a.mode != MODES["BIAS"]) & (a.bias != 0),
                lambda a, p: f"'bias'={a.bias} is set but mode is not BIAS (must be 0)")),
    regions=_matmul_regions, ports=no_ports,
    # the pipeline orders an ACCUMULATE after the MATMUL that last wrote the same tile
    ordered_raw=lambda ins, other: (ins.op == other.op == "MATMUL"
                                    and ins["mode"] == MODES["ACCUMULATE"]
                                    and ins["acc"] == other["acc"]),
    cost=_matmul_cost, spacing=_matmul_spacing, stall_counter="stall",
    traffic=_matmul_traffic, execute=_matmul_exec,
    value_names={"mode": MODE_NAMES})


# -- REQUANT

#: REQUANT ``out``: packed int8 rows in ACC (four per word), int8 or int16 rows in VMEM.
REQUANT_OUT = {"ACC8": 0, "VMEM8": 1, "VMEM16": 2}
REQUANT_OUT_NAMES = {v: k for k, v in REQUANT_OUT.items()}


def _requant_words(a) -> Any:
    return cdiv(a.rows, ROWS_PER_ACC_WORD)


def _requant_regions(a, p):
    reads = [(ACC, a.param, a.param + 1), (ACC, a.src, a.src + a.rows)]
    if a.out == REQUANT_OUT["ACC8"]:
        return reads, [(ACC, a.dst, a.dst + _requant_words(a))]
    return reads, strided(VMEM, a.dst, a.rows, a.dstride)


def _requant_cost(a, p):
    return Cost(free=a.rows + 1, done=a.rows + p.REQUANT_LATENCY,
                busy={"requant_busy": a.rows + 1}, serial=a.rows + p.REQUANT_LATENCY + 1)


def _requant_traffic(a, p):
    t = Traffic()
    t.reads["acc"] = (1 + a.rows) * p.word_bytes(ACC)
    if a.out == REQUANT_OUT["ACC8"]:
        t.writes["acc"] = a.rows * p.cols          # int8 rows, byte-enabled into ACC words
    else:
        t.writes["vmem"] = a.rows * p.word_bytes(VMEM)
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
    fn = intops.requantize_i16 if a.out == REQUANT_OUT["VMEM16"] else intops.requantize
    try:
        y = fn(acc, mult, shift, relu=bool(a.relu))
    except intops.IntOpsError as e:
        raise ExecutionError(f"{where}: parameter word ACC[{a.param}] is not a valid (m, s) "
                             f"per column: {e}") from None
    if a.out != REQUANT_OUT["ACC8"]:
        for r in range(n):
            m.put_lanes(VMEM, a.dst + r * a.dstride, y[r:r + 1], "<i2")
        return
    words = _requant_words(a)
    rows = np.zeros((words * ROWS_PER_ACC_WORD, C), np.int8)  # rows past n-1 are 0
    rows[:n] = y
    banks[ACC][a.dst:a.dst + words] = rows.view(np.uint8).reshape(words, -1)


def _requant_vmem(a) -> Any:
    return a.out != REQUANT_OUT["ACC8"]


_REQUANT = OpSpec(
    "REQUANT", 4, (("src", 16), ("dst", 16), ("param", 16), ("rows", 17), ("relu", 1),
                   ("out", 2), ("dstride", 10)),
    unit="REQUANT",
    rules=(zero("rows"),
           Rule(lambda a, p: a.out > REQUANT_OUT["VMEM16"],
                lambda a, p: f"'out'={a.out} is not ACC8(0), VMEM8(1) or VMEM16(2)"),
           past_end("src", lambda a, p: a.rows, ACC),
           past_end("param", lambda a, p: 1, ACC),
           past_end("dst", lambda a, p: _requant_words(a), ACC,
                    guard=lambda a: a.out == REQUANT_OUT["ACC8"]),
           Rule(lambda a, p: (a.out == REQUANT_OUT["ACC8"]) & (a.dstride != 0),
                lambda a, p: f"'dstride'={a.dstride} is set but out is ACC8 (must be 0)"),
           Rule(lambda a, p: _requant_vmem(a) & (a.dstride == 0) & (a.rows > 1),
                lambda a, p: "'dstride'=0 with several rows into VMEM (must be >= 1)"),
           past_end("dst", lambda a, p: (a.rows - 1) * a.dstride + 1, VMEM,
                    guard=lambda a: _requant_vmem(a) & (a.rows != 0)
                    & (a.out <= REQUANT_OUT["VMEM16"]))),
    regions=_requant_regions,
    ports=lambda a, p: ["VMEM.w"] if a.out != REQUANT_OUT["ACC8"] else [],
    ordered_raw=lambda ins, other: False, cost=_requant_cost,
    traffic=_requant_traffic, execute=_requant_exec,
    value_names={"out": REQUANT_OUT_NAMES})


# -- STORE

#: STORE ``bank``: the accumulators or the vector memory.
STORE_BANKS = {0: ACC, 1: VMEM}


def _store_cost(a, p):
    n = a.count * p.beats(STORE_BANKS[a.bank])
    return Cost(free=n, done=n, busy={"dma_out_busy": n}, serial=n, host_beats=n)


def _store_traffic(a, p):
    t = Traffic()
    bank = STORE_BANKS[a.bank]
    t.reads[BANK_KEYS[bank]] = t.host_out = a.count * p.word_bytes(bank)
    return t


def _store_exec(m: Machine, a, where: str) -> None:
    bank = STORE_BANKS[a.bank]
    m.dout.append(words_to_beats(m.banks[bank][a.addr:a.addr + a.count], m.p.host_bytes))


_STORE = OpSpec(
    "STORE", 5, (("addr", 16), ("count", 17), ("bank", 1)), unit="STORE",
    rules=(zero("count"),
           past_end("addr", lambda a, p: a.count, lambda a: pick(a.bank, STORE_BANKS, ACC))),
    regions=lambda a, p: ([(STORE_BANKS[a.bank], a.addr, a.addr + a.count)], []),
    ports=lambda a, p: ["VMEM.r"] if STORE_BANKS[a.bank] == VMEM else [],
    ordered_raw=always_ordered, cost=_store_cost, traffic=_store_traffic,
    execute=_store_exec, value_names={"bank": {0: "ACC", 1: "VMEM"}})


# -- FENCE, DONE

_FENCE = OpSpec("FENCE", 6, (), control="barrier", regions=no_regions, ports=no_ports,
                traffic=no_traffic, execute=nothing)
_DONE = OpSpec("DONE", 7, (), control="barrier", ends=True, regions=no_regions,
               ports=no_ports, traffic=no_traffic, execute=nothing)

#: The opcode table, by name. Opcode 0 (an all-zero word) is illegal.
TABLE: dict[str, OpSpec] = {s.name: s for s in
                            (_CONFIG, _LOAD, _MATMUL, _REQUANT, _STORE, _FENCE, _DONE,
                             *VECTOR_OPS)}


def spec(op: str) -> OpSpec:
    """The table entry of opcode ``op``; :class:`OpcodeError` for an unknown name."""
    try:
        return TABLE[op]
    except KeyError:
        raise OpcodeError(f"unknown opcode {op!r}; the table defines {sorted(TABLE)}") from None


__all__ = ["Cost", "ExecutionError", "MODES", "MODE_NAMES", "MOVER_FIELDS", "Machine", "OpSpec",
           "OpcodeError", "PARAM_M_BITS", "PARAM_S_BITS", "PARAM_S_SHIFT", "REQUANT_OUT",
           "Region", "Rule", "STORE_BANKS", "TABLE", "Traffic", "VECTOR_FIELDS", "cdiv", "pick",
           "spec", "unpack_params"]
