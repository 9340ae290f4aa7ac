"""Traffic of one accelerator program, read off its instructions.

Cycles and busy cycles come from :func:`hw.timing.program_cycles` (the accelerator's timing
rules, ``docs/ISA.md``), which the RTL's counters match. Everything else is summed from the
``traffic`` rule of each instruction's opcode in the opcode table (``hw/opcodes.py``; the
table of SRAM reads and writes per opcode is in ``docs/ISA.md``), word sizes from
``hw.uarch.AccelParams``.

Peak SRAM occupancy per bank is the number of distinct words the program touches (the
``regions`` rule of each instruction) times the word size: the compiler allocates
statically, so this is its footprint. Array MAC *slots* (``k * rows * cols`` per MATMUL,
padding included) are what the array spends energy on; the useful MACs of the GEMM are the
caller's to supply.
"""

from __future__ import annotations

from sim.perf.counts import BANKS, Counts


def traffic_counts(instrs: list, hw) -> tuple[Counts, dict[str, int]]:
    """SRAM/host traffic, MAC slots and datapath operations of decoded ``instrs`` (no cycles).

    Returns ``(counts, host_in_by_bank)``: the counts (``mac_slots`` = array MAC slots,
    ``host_in_bytes`` = all LOAD bytes) and the LOAD bytes per destination bank, which the
    caller splits into weights and activations. ``hw``: a ``HardwareConfig`` or the
    ``hw.uarch.AccelParams`` derived from it.
    """
    from hw.deps import regions
    from hw.timing import union_length
    from hw.uarch import BANK_KEYS, as_params
    p = as_params(hw)
    c = Counts()
    ranges: dict[int, list[tuple[int, int]]] = {b: [] for b in range(len(BANK_KEYS))}
    loads = dict.fromkeys(BANKS, 0)
    for ins in instrs:
        t = ins.spec.need("traffic")(ins.args, p)
        for bank in BANKS:
            c.sram_reads[bank] += t.reads[bank]
            c.sram_writes[bank] += t.writes[bank]
            loads[bank] += t.host_in[bank]
        c.host_out_bytes += t.host_out
        c.mac_slots += t.mac_slots
        for name, n in t.ops.items():
            c.ops[name] += n
        reads, writes = regions(ins, p)
        for bank, lo, hi in reads + writes:
            ranges[bank].append((lo, hi - 1))
    c.host_in_bytes = sum(loads.values())
    c.sram_peak = {key: union_length(ranges[b]) * p.word_bytes(b)
                   for b, key in enumerate(BANK_KEYS)}
    c.instructions = len(instrs)
    return c, loads
