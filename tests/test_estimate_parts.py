"""Estimator building blocks: energy table, counts algebra, a program's footprint.

Expected values are derived here from the cited table and by hand, not from the estimator's
output.
"""

import math

import pytest

from model.config import CONFIG_DIR, load_config
from sim.perf.counts import Counts, total
from sim.perf.energy import (
    HOROWITZ_45NM,
    EnergyTable,
    EnergyTableError,
    load_energy_table,
    sram_pj_per_64b,
)

TINY = load_config(CONFIG_DIR / "tiny.toml")
BASE = load_config(CONFIG_DIR / "emformer_base.toml")


# ------------------------------------------------------------------------------ energy table


@pytest.mark.parametrize("kib,pj", [(8, 10.0), (32, 20.0), (1024, 100.0)])
def test_sram_reproduces_cited_points(kib, pj):
    assert sram_pj_per_64b(HOROWITZ_45NM, kib) == pytest.approx(pj, rel=1e-12)
    assert HOROWITZ_45NM.sram_pj_per_byte(kib) == pytest.approx(pj / 8, rel=1e-12)


def test_sram_interpolates_log_log_and_extrapolates_end_slopes():
    # 16 KiB is the log midpoint of 8 and 32 KiB: geometric mean of 10 and 20 pJ.
    assert sram_pj_per_64b(HOROWITZ_45NM, 16) == pytest.approx(math.sqrt(10 * 20))
    # below 8 KiB: the 8->32 KiB slope (energy ~ sqrt(size)): 2 KiB -> 5 pJ
    assert sram_pj_per_64b(HOROWITZ_45NM, 2) == pytest.approx(5.0)
    # above 1 MiB: the 32 KiB -> 1 MiB slope, log(100/20)/log(32)
    slope = math.log(5) / math.log(32)
    assert sram_pj_per_64b(HOROWITZ_45NM, 4096) == pytest.approx(100 * 4 ** slope)
    # monotonic over the sizes a sweep uses
    sizes = [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048]
    vals = [sram_pj_per_64b(HOROWITZ_45NM, s) for s in sizes]
    assert vals == sorted(vals)


def test_table_values_are_horowitz():
    t = HOROWITZ_45NM
    assert (t.int8_add_pj, t.int8_mult_pj, t.int32_add_pj, t.int32_mult_pj) == (
        0.03, 0.2, 0.1, 3.1)
    assert t.mac_pj == pytest.approx(0.2 + 0.1)
    assert t.dram_pj_per_byte == pytest.approx(1300 / 8)


def test_table_override_file(tmp_path):
    f = tmp_path / "mine.toml"
    f.write_text("dram_pj_per_64b = 2600.0\nsram_kib = [4, 64]\nsram_pj_per_64b = [5, 20]\n")
    t = load_energy_table(f)
    assert t.name == "mine" and t.dram_pj_per_64b == 2600.0 and t.int8_mult_pj == 0.2
    assert sram_pj_per_64b(t, 16) == pytest.approx(10.0)
    assert t.digest() != HOROWITZ_45NM.digest()
    assert load_energy_table(None) is HOROWITZ_45NM


@pytest.mark.parametrize("text,needle", [
    ("dram_pj = 1.0\n", "unknown key 'dram_pj'"),
    ("int8_add_pj = -1\n", "'int8_add_pj'"),
    ("sram_kib = [8, 32]\n", "same length"),
    ("sram_kib = [32, 8, 1024]\n", "strictly increasing"),
    ("int8_add_pj = \n", "not valid TOML"),
])
def test_table_override_errors(tmp_path, text, needle):
    f = tmp_path / "bad.toml"
    f.write_text(text)
    with pytest.raises(EnergyTableError, match="fix:") as e:
        load_energy_table(f)
    assert needle in str(e.value)


def test_table_missing_file(tmp_path):
    with pytest.raises(EnergyTableError, match="not found"):
        load_energy_table(tmp_path / "nope.toml")


def test_table_rejects_bool():
    with pytest.raises(EnergyTableError):
        EnergyTable(int8_add_pj=True)


# ------------------------------------------------------------------------------ counts algebra


def test_counts_serial_sum_and_repeat():
    a, b = Counts(cycles=10, macs=5), Counts(cycles=3, macs=1)
    a.sram_peak["act"], b.sram_peak["act"] = 100, 40
    a.sram_reads["wgt"], b.sram_reads["wgt"] = 7, 2
    a.busy["array"] = 8
    s = total([a, b])
    assert (s.cycles, s.macs, s.sram_reads["wgt"], s.busy["array"]) == (13, 6, 9, 8)
    assert s.sram_peak["act"] == 100  # peak is a max, not a sum
    r = b * 4
    assert (r.cycles, r.sram_reads["wgt"], r.sram_peak["act"]) == (12, 8, 40)
    assert (b * 0).cycles == 0
    with pytest.raises(ValueError):
        b * -1


# ------------------------------------------------------------------------------ footprint


def test_footprint_of_the_tracker_equals_the_regions_union():
    """A builder's program carries the words its instructions touch (from the dependency
    tracker); summing the opcode table's regions gives the same peak SRAM."""
    from hw.layer.compiler import StreamCompiler
    from sim.perf.program import traffic_counts
    sc = StreamCompiler(TINY)
    prog = sc.step(2).program
    fast, _ = traffic_counts(prog.instrs, sc.p, prog.footprint)
    slow, _ = traffic_counts(prog.instrs, sc.p)
    assert fast.sram_peak == slow.sram_peak and all(v > 0 for k, v in slow.sram_peak.items()
                                                   if k != "pmem")


def test_footprint_by_hand():
    from hw.isa import Instr
    from hw.program import ProgramBuilder
    from hw.uarch import VMEM
    b = ProgramBuilder(TINY.hardware)
    b.load_vmem_rows(10, [[1] * 16, [2] * 16])          # 2 words at 10..11
    b.emit(Instr("MCOPY", {"src": 10, "dst": 20, "count": 2, "bank": 0, "stride": 1}))
    b.store(VMEM, 20, 2, "out")
    prog = b.finish()
    assert list(prog.footprint[VMEM].nonzero()[0]) == [10, 11, 20, 21]
