"""Counts of one accelerator program: cycles from the timing model, traffic from its instructions.

Cycles and busy cycles come from :func:`sim.timing.program_cycles` (the accelerator's timing
rules, ``docs/ISA.md``), which the RTL's counters match. Everything else is read off the
decoded instructions (``hw/isa.py``), word sizes from ``hw.uarch.AccelParams``:

==========  ===================================  ===================================
opcode      SRAM reads (words)                   SRAM writes (words) / host bytes
==========  ===================================  ===================================
LOAD        -                                    ``count`` words of ``bank``; host in
MATMUL      ``k`` ACT + ``k`` WGT; + ``rows`` ACC   ``rows`` ACC words
            (BIAS: the bias word once per row;
            ACCUMULATE: the old rows)
REQUANT     1 param + ``rows`` ACC words         ``rows`` int8 rows (``cols`` bytes
                                                 each, byte-enabled into ACC words)
STORE       ``count`` ACC words                  host out ``count`` ACC words
==========  ===================================  ===================================

Peak SRAM occupancy per bank is the number of distinct words the program touches times the
word size (the compiler allocates statically, so this is its footprint). Array MAC *slots*
(``k * rows * cols`` per MATMUL, padding included) are what the array spends energy on; the
useful MACs of the GEMM are the caller's to supply.
"""

from __future__ import annotations

from sim.perf.counts import BANKS, Counts

_BANK_OF = {0: "act", 1: "wgt", 2: "acc"}


def instructions(program) -> list:
    """Decoded instructions of ``program``: a ``GemmProgram``, ``Instr`` objects or 128-bit
    words (decoded with ``hw.isa``, which rejects malformed words)."""
    from hw.isa import Instr, decode_program
    items = list(program.instrs if hasattr(program, "instrs") else program)
    if all(isinstance(i, Instr) for i in items):
        return items
    return decode_program(items)


def _union_words(ranges: list[tuple[int, int]]) -> int:
    """Distinct words covered by half-open ``[start, end)`` ranges."""
    total, cur_s, cur_e = 0, None, None
    for s, e in sorted(ranges):
        if cur_e is None or s > cur_e:
            if cur_e is not None:
                total += cur_e - cur_s
            cur_s, cur_e = s, e
        else:
            cur_e = max(cur_e, e)
    if cur_e is not None:
        total += cur_e - cur_s
    return total


def traffic_counts(instrs: list, hw) -> tuple[Counts, dict[str, int]]:
    """SRAM/host traffic, MAC slots and requant lane-ops of decoded ``instrs`` (no cycles).

    Returns ``(counts, host_in_by_bank)``: the counts (``mac_slots`` = array MAC slots,
    ``host_in_bytes`` = all LOAD bytes) and the LOAD bytes per destination bank, which the
    caller splits into weights and activations. ``hw``: a ``HardwareConfig`` or the
    ``hw.uarch.AccelParams`` derived from it.
    """
    from hw.isa import MODES
    from hw.uarch import AccelParams
    p = hw if isinstance(hw, AccelParams) else AccelParams.from_hw(hw)
    wb = {name: p.word_bytes(i) for i, name in _BANK_OF.items()}
    c = Counts()
    ranges: dict[str, list[tuple[int, int]]] = {b: [] for b in BANKS}
    loads = dict.fromkeys(BANKS, 0)

    def rd(bank: str, start: int, words: int) -> None:
        c.sram_reads[bank] += words * wb[bank]
        ranges[bank].append((start, start + words))

    def wr(bank: str, start: int, words: int) -> None:
        c.sram_writes[bank] += words * wb[bank]
        ranges[bank].append((start, start + words))

    for ins in instrs:
        a = ins.args
        if ins.op == "LOAD":
            bank = _BANK_OF[a["bank"]]
            wr(bank, a["addr"], a["count"])
            loads[bank] += a["count"] * wb[bank]
        elif ins.op == "MATMUL":
            rd("act", a["act"], a["k"])
            rd("wgt", a["wgt"], a["k"])
            if a["mode"] == MODES["BIAS"]:
                rd("acc", a["bias"], 1)
                c.sram_reads["acc"] += (p.rows - 1) * wb["acc"]  # re-read once per row
            elif a["mode"] == MODES["ACCUMULATE"]:
                rd("acc", a["acc"], p.rows)
            wr("acc", a["acc"], p.rows)
            c.mac_slots += a["k"] * p.rows * p.cols
        elif ins.op == "REQUANT":
            rd("acc", a["param"], 1)
            rd("acc", a["src"], a["rows"])
            ranges["acc"].append((a["dst"], a["dst"] + -(-a["rows"] // 4)))
            c.sram_writes["acc"] += a["rows"] * p.cols
            lanes = a["rows"] * p.cols
            c.ops["int32_mult"] += lanes
            c.ops["int32_add"] += lanes
        elif ins.op == "STORE":
            rd("acc", a["addr"], a["count"])
            c.host_out_bytes += a["count"] * wb["acc"]
    c.host_in_bytes = sum(loads.values())
    c.sram_peak = {b: _union_words(ranges[b]) * wb[b] for b in BANKS}
    c.instructions = len(instrs)
    return c, loads
