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

from sim.perf.counts import BANKS, RTL_BUSY, Counts


def traffic_counts(instrs: list, hw, footprint: dict | None = None
                   ) -> tuple[Counts, dict[str, int]]:
    """SRAM/host traffic, MAC slots and datapath operations of decoded ``instrs`` (no cycles).

    Returns ``(counts, host_in_by_bank)``: the counts (``mac_slots`` = array MAC slots,
    ``host_in_bytes`` = all LOAD bytes) and the LOAD bytes per destination bank, which the
    caller splits into weights and activations. ``hw``: a ``HardwareConfig`` or the
    ``hw.uarch.AccelParams`` derived from it. ``footprint``: the masks of the words touched
    per bank when already known (``Program.footprint``, the dependency tracker's).
    """
    import numpy as np

    from hw.deps import regions
    from hw.opspec import region_words
    from hw.uarch import BANK_KEYS, as_params
    p = as_params(hw)
    c = Counts()
    touched = [np.zeros(p.depth(b), bool) for b in range(len(BANK_KEYS))] if footprint is None \
        else None
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
        if touched is None:
            continue
        reads, writes = regions(ins, p)
        for region in reads + writes:
            touched[region[0]][region_words(region)] = True
    c.host_in_bytes = sum(loads.values())
    masks = footprint if touched is None else dict(enumerate(touched))
    c.sram_peak = {key: int(np.count_nonzero(masks[b])) * p.word_bytes(b)
                   for b, key in enumerate(BANK_KEYS)}
    c.instructions = len(instrs)
    return c, loads


def timed_counts(instrs: list, hw, footprint: dict | None = None
                 ) -> tuple[Counts, dict[str, int]]:
    """:func:`traffic_counts` plus the cycle counters of :func:`hw.timing.program_cycles`
    (``cycles``, ``stall``, busy cycles per unit): what the RTL's counters report."""
    from hw.timing import program_cycles
    from hw.uarch import as_params
    p = as_params(hw)
    cyc = program_cycles(instrs, p)
    c, loads = traffic_counts(instrs, p, footprint)
    c.cycles = cyc["total"]
    c.stall = cyc["stall"]
    for key, unit in RTL_BUSY.items():
        c.busy[unit] = cyc[key]
    return c, loads


def footprint_bytes(programs: list, hw) -> dict[str, int]:
    """Per bank, the bytes of the words that builder-made ``programs`` (``Program.footprint``)
    touch together: the SRAM a stream of programs that share the banks occupies."""
    import numpy as np

    from hw.uarch import BANK_KEYS, as_params
    p = as_params(hw)
    return {key: int(np.count_nonzero(np.logical_or.reduce(
        [prog.footprint[b] for prog in programs]))) * p.word_bytes(b)
        for b, key in enumerate(BANK_KEYS)}


def op_profile(instrs: list, hw) -> list[dict]:
    """Per opcode, in order of first use: instructions, unit, and the cycles the unit is
    occupied by them (their timing rules' ``free``; overlapping units run concurrently)."""
    from hw.uarch import UNITS, as_params
    p = as_params(hw)
    out: dict[str, dict] = {}
    for ins in instrs:
        if ins.unit is None:
            continue
        row = out.setdefault(ins.op, {"op": ins.op, "unit": UNITS[ins.unit].lower(),
                                      "count": 0, "occupancy": 0})
        row["count"] += 1
        row["occupancy"] += ins.spec.need("cost")(ins.args, p).free
    return list(out.values())
