"""Microarchitecture parameters of the accelerator, derived from the hardware config.

Pure Python (no amaranth): the RTL generator, the compiler, the ISA simulator and the timing
model (``hw/timing.py``) all read the same :class:`AccelParams`, so bank depths, word
widths, beats per word, the names of the banks, units and performance counters and the
timing constants below are defined exactly once. ``docs/ISA.md`` explains each number.
"""

from __future__ import annotations

from dataclasses import dataclass

from model.config import ConfigError, HardwareConfig

#: SRAM banks, in LOAD ``bank`` field order: the array's operand banks, the accumulators, the
#: vector memory (int8/int16 tensors, 16-bit lanes) and the vector-parameter memory.
ACT, WGT, ACC, VMEM, PMEM = 0, 1, 2, 3, 4
BANK_NAMES = ("ACT", "WGT", "ACC", "VMEM", "PMEM")
BANKS = (ACT, WGT, ACC, VMEM, PMEM)
#: Bank ports that several units use: a multiplexer in front of each, and the dependency
#: tracker orders the instructions of different units that use the same one, so at most one
#: unit drives it in any cycle (the RTL flags a violation as ERR_PORT).
SHARED_PORTS = ("ACT.w", "WGT.w", "ACC.w", "VMEM.r", "VMEM.w")
#: The hardware-config field that sizes each bank (KiB).
BANK_SIZE_FIELDS = ("act_sram_kib", "wgt_sram_kib", "acc_sram_kib", "vmem_kib", "pmem_kib")
#: The same banks as the estimator's traffic keys (``sim.perf.counts``).
BANK_KEYS = tuple(name.lower() for name in BANK_NAMES)

#: Execution units, in dependency-slot order (``hw/isa.py``).
UNITS = ("LOAD", "MATMUL", "REQUANT", "STORE", "VECTOR", "MOVER")
#: Performance counters of the RTL (``counters`` port, 32 bits each, in this order); the
#: timing model returns the same names.
COUNTERS = ("total", "array_busy", "dma_in_busy", "dma_out_busy", "dma_busy",
            "requant_busy", "vector_busy", "mover_busy", "stall")

#: Entries in each unit's instruction queue.
QUEUE_DEPTH = 4
#: Address fields are 16 bits: a bank holds at most this many words.
MAX_BANK_WORDS = 1 << 16
#: Descriptor ring of tiles between the array feeder and the drain (see MatmulUnit).
DRAIN_RING = 4
#: Host instruction word width.
INSTR_BITS = 128
#: Bytes of one ACC lane (an int32 accumulator), one VMEM lane (int16) and one PMEM lane.
ACC_LANE_BYTES = 4
VMEM_LANE_BYTES = 2
PMEM_LANE_BYTES = 8
#: REQUANT packs this many int8 rows into one accumulator word (one byte per row per lane).
ROWS_PER_ACC_WORD = ACC_LANE_BYTES


def _ceil_div(a: int, b: int) -> int:
    return -(-a // b)


@dataclass(frozen=True)
class AccelParams:
    """Sizes the RTL is generated for; everything else about timing follows from these."""

    rows: int
    cols: int
    host_bytes: int
    act_depth: int
    wgt_depth: int
    acc_depth: int
    vmem_depth: int
    pmem_depth: int

    @classmethod
    def from_hw(cls, hw: HardwareConfig) -> AccelParams:
        """Derive bank depths (words) from the SRAM sizes; reject what the ISA cannot address."""
        hw.validate()
        depths = {}
        for name, kib, word in (("act_sram_kib", hw.act_sram_kib, hw.rows),
                                ("wgt_sram_kib", hw.wgt_sram_kib, hw.cols),
                                ("acc_sram_kib", hw.acc_sram_kib, ACC_LANE_BYTES * hw.cols),
                                ("vmem_kib", hw.vmem_kib, VMEM_LANE_BYTES * hw.cols),
                                ("pmem_kib", hw.pmem_kib, PMEM_LANE_BYTES * hw.cols)):
            depth = kib * 1024 // word
            if depth > MAX_BANK_WORDS:
                raise ConfigError(
                    f"[hardware]: field '{name}'={kib} gives {depth} words of {word} bytes, "
                    f"more than the {MAX_BANK_WORDS} a 16-bit ISA address reaches; fix: use at "
                    f"most {MAX_BANK_WORDS * word // 1024} KiB or a wider array")
            depths[name] = depth
        p = cls(hw.rows, hw.cols, hw.host_bytes_per_cycle, depths["act_sram_kib"],
                depths["wgt_sram_kib"], depths["acc_sram_kib"], depths["vmem_kib"],
                depths["pmem_kib"])
        if p.acc_depth < p.rows + 2:
            raise ConfigError(
                f"[hardware]: field 'acc_sram_kib'={hw.acc_sram_kib} holds {p.acc_depth} words; "
                f"one output tile needs {p.rows} words plus a bias and a parameter word; fix: "
                f"raise acc_sram_kib to at least "
                f"{_ceil_div((p.rows + 2) * ACC_LANE_BYTES * hw.cols, 1024)}")
        return p

    # ------------------------------------------------------------------ words and beats
    def word_bytes(self, bank: int) -> int:
        """Bytes per word: ACT words hold one A column slice (rows bytes), WGT words one B row
        slice (cols bytes), ACC words cols int32 lanes, VMEM words cols 16-bit lanes, PMEM
        words cols 64-bit lanes."""
        return (self.rows, self.cols, ACC_LANE_BYTES * self.cols, VMEM_LANE_BYTES * self.cols,
                PMEM_LANE_BYTES * self.cols)[bank]

    def depth(self, bank: int) -> int:
        return (self.act_depth, self.wgt_depth, self.acc_depth, self.vmem_depth,
                self.pmem_depth)[bank]

    def beats(self, bank: int) -> int:
        """Host stream beats per word (a word is split into host_bytes pieces, last padded)."""
        return _ceil_div(self.word_bytes(bank), self.host_bytes)

    @property
    def beat_bits(self) -> int:
        return 8 * self.host_bytes

    # ------------------------------------------------------------------ timing constants
    @property
    def drain_gap(self) -> int:
        """G: the last k-steps of consecutive tiles enter the array at least G cycles apart
        (the drain writes one row per cycle and reads the result registers in place)."""
        return max(self.rows, self.cols, 2)

    @property
    def matmul_latency(self) -> int:
        """Cycles from a MATMUL's start to its completion, minus K: row i of the tile is
        written at start + K + cols + i, the last at start + K + cols + rows - 1."""
        return self.cols + self.rows - 1

    #: REQUANT: param read at start, rows read at start+1..start+n, row r written at
    #: start+3+r; completion at start + n + REQUANT_LATENCY.
    REQUANT_LATENCY = 2


__all__ = ["ACC", "ACT", "AccelParams", "BANKS", "BANK_KEYS", "BANK_NAMES", "COUNTERS",
           "DRAIN_RING", "PMEM", "VMEM",
           "INSTR_BITS", "MAX_BANK_WORDS", "QUEUE_DEPTH", "ROWS_PER_ACC_WORD", "UNITS", "WGT",
           "SHARED_PORTS", "as_params", "bank_kib"]


def bank_kib(hw: HardwareConfig) -> dict[str, int]:
    """KiB of each bank, by estimator key (``act``, ``wgt``, ...)."""
    return {key: getattr(hw, name) for key, name in zip(BANK_KEYS, BANK_SIZE_FIELDS,
                                                        strict=True)}


def as_params(hw: HardwareConfig | AccelParams) -> AccelParams:
    """``hw`` itself if it already is :class:`AccelParams`, else derived from the config."""
    return hw if isinstance(hw, AccelParams) else AccelParams.from_hw(hw)
