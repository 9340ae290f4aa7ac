"""GEMM estimates: SRAM/host traffic and energy derived by hand from the ISA rules and the
energy table, and one plumbing check that the cycles are the timing model's.

The cycle counts are checked where an independent reference exists: against the RTL's
counters (cocotb_tests/) and hand-timed probes (tests/test_accel_timing.py).
"""

import dataclasses
import math

import pytest

from hw.compiler import compile_gemm
from hw.timing import program_cycles
from model.config import CONFIG_DIR, load_config
from sim.perf.energy import HOROWITZ_45NM
from sim.perf.estimate import estimate_gemm
from sim.perf.gemm import gemm_counts, gemm_counts_uncached

HW = load_config(CONFIG_DIR / "tiny.toml").hardware


@pytest.fixture(autouse=True)
def _private_cache(tmp_path, monkeypatch):
    """Each test uses its own disk cache, so a stale entry can never answer for the code."""
    monkeypatch.setenv("FOLDACCEL_BUILD_DIR", str(tmp_path / "build"))


def _hw(rows, cols, **kw):
    hw = dataclasses.replace(HW, rows=rows, cols=cols, **kw)
    hw.validate()
    return hw


def test_estimate_is_the_timing_model_of_the_compiled_program():
    """Plumbing: estimate_gemm reports the timing model's counters of the program the
    compiler emits (the model itself is checked against hand-timed probes and the RTL)."""
    hw = _hw(8, 16, host_bytes_per_cycle=4)
    ref = program_cycles(compile_gemm(17, 33, 40, hw, bias=True, requant=True, relu=True), hw)
    est = estimate_gemm(17, 33, 40, hw, bias=True, requant=True, relu=True)
    assert est["cycles"] == ref["total"]
    assert est["rtl_counters"] == ref  # every counter, by RTL name
    busy = est["busy"]
    assert (busy["array"], busy["dma_in"], busy["dma_out"], busy["dma"], busy["requant"],
            est["stall"]) == (ref["array_busy"], ref["dma_in_busy"], ref["dma_out_busy"],
                              ref["dma_busy"], ref["requant_busy"], ref["stall"])


def test_memory_and_disk_cache_return_the_same_counts(tmp_path):
    hw = _hw(8, 8)
    fresh = gemm_counts_uncached(20, 40, 30, hw, bias=True)
    cached = gemm_counts(20, 40, 30, hw, bias=True)
    assert cached.to_dict() == fresh.to_dict()
    files = list((tmp_path / "build" / "perf" / "gemm").glob("*.json"))
    assert len(files) == 1
    from sim.perf import gemm as g
    g._cached.cache_clear()  # the next call reads the disk entry
    assert gemm_counts(20, 40, 30, hw, bias=True).to_dict() == fresh.to_dict()
    # clock and DRAM width do not change the program: same entry
    other = dataclasses.replace(hw, clock_mhz=123.0, dram_bytes_per_cycle=4)
    assert gemm_counts(20, 40, 30, other, bias=True).to_dict() == fresh.to_dict()
    assert len(list((tmp_path / "build" / "perf" / "gemm").glob("*.json"))) == 1


def _e64(kib):
    """Per-64-bit SRAM energy by hand: log-log between the cited 32 KiB and 1 MiB points."""
    assert 32 <= kib <= 1024
    return 20.0 * (100.0 / 20.0) ** (math.log(kib / 32) / math.log(1024 / 32))


def test_traffic_and_energy_by_hand():
    """40x64 @ 64x48, bias + requant, on 16x16 with 64 KiB banks: everything fits, so every A
    and B tile and every bias/param pair is loaded exactly once."""
    hw = _hw(16, 16, act_sram_kib=64, wgt_sram_kib=64, acc_sram_kib=64,
             host_bytes_per_cycle=16)
    m, k, n, r, c = 40, 64, 48, 16, 16
    prog = compile_gemm(m, k, n, hw, bias=True, requant=True)
    nk = prog.plan["k_chunks"]  # the compiler's K split (MATMULs per tile)
    est = estimate_gemm(m, k, n, hw, bias=True, requant=True)
    mt, nt = 3, 3
    m_t = [16, 16, 8]                      # rows per row tile
    tiles = mt * nt
    acc_word = 4 * c                       # 64 bytes
    # LOADs: A tiles (k words of r bytes), B tiles (k words of c bytes), [bias][param] words
    a_in, b_in, const_in = mt * k * r, nt * k * c, nt * 2 * acc_word
    assert est["sram_writes"]["act"] == a_in == est["host_bytes"]["in_input"]
    assert est["host_bytes"]["in_weights"] == b_in + const_in
    # MATMUL reads k ACT + k WGT words per tile
    assert est["sram_reads"]["act"] == tiles * k * r
    assert est["sram_reads"]["wgt"] == tiles * k * c
    assert est["sram_writes"]["wgt"] == b_in
    # ACC: each MATMUL reads r words (bias word per row, or the old rows) and writes r words;
    # REQUANT reads its param word + m_t rows and writes m_t int8 rows of c bytes;
    # STORE reads ceil(m_t/4) words
    rq_rows = nt * sum(m_t)
    store_words = nt * sum(math.ceil(x / 4) for x in m_t)
    assert est["sram_reads"]["acc"] == (tiles * nk * r + tiles + rq_rows + store_words) \
        * acc_word
    assert est["sram_writes"]["acc"] == tiles * nk * r * acc_word + rq_rows * c + const_in
    assert est["host_bytes"]["out"] == store_words * acc_word
    assert est["mac_slots"] == tiles * k * r * c
    assert est["macs"] == m * k * n
    assert est["utilization"] == pytest.approx(m * k * n / (est["cycles"] * r * c))
    # the program loads B and the constants from the host: every host byte is a DRAM byte
    act_bytes = a_in + store_words * acc_word
    assert est["dram_bytes"] == act_bytes + b_in + const_in
    assert est["weight_bytes_unique"] == k * n + 4 * n + 4 * n  # B, bias, params
    assert est["weights"] == "streamed"
    # energy = counts x table (Horowitz 45 nm); 64 KiB banks
    tab = HOROWITZ_45NM
    per_byte = _e64(64) / 8
    sram = sum(est["sram_reads"][b] + est["sram_writes"][b] for b in ("act", "wgt", "acc"))
    lanes = rq_rows * c                     # REQUANT: one multiply + one add per lane
    energy = (tiles * k * r * c * (0.2 + 0.1) + lanes * (3.1 + 0.1) + sram * per_byte
              + (act_bytes + b_in + const_in) * 1300 / 8)
    assert est["energy_pj"] == pytest.approx(energy, rel=1e-9)
    assert tab.mac_pj == pytest.approx(0.3)


def test_activation_b_counts_as_host_traffic():
    hw = _hw(16, 16)
    w = estimate_gemm(12, 16, 40, hw, requant=True, weight=True)
    a = estimate_gemm(12, 16, 40, hw, requant=True, weight=False)
    assert a["cycles"] == w["cycles"]
    b_bytes = 16 * 3 * 16                   # k words x 3 column tiles x 16 bytes
    assert w["host_bytes"]["in_weights"] - a["host_bytes"]["in_weights"] == b_bytes
    assert a["host_bytes"]["in_input"] - w["host_bytes"]["in_input"] == b_bytes


def test_sram_peak_within_capacity_and_covers_operands():
    hw = _hw(8, 8, act_sram_kib=4, wgt_sram_kib=4, acc_sram_kib=8)
    est = estimate_gemm(64, 1000, 64, hw, bias=True)
    cap = est["sram_capacity_bytes"]
    assert all(est["sram_bytes"][b] <= cap[b] for b in cap) and all(est["sram_fits"].values())
    # K = 1000 does not fit: operand tiles stream through the banks, filling them
    assert est["sram_bytes"]["act"] > cap["act"] // 2
    assert est["host_bytes"]["in_input"] > 64 * 1000  # A re-loaded for column tiles


def test_int32_output_by_hand():
    """Without requantization the program stores m_t int32 rows per tile: no REQUANT work."""
    hw = _hw(8, 8)
    est = estimate_gemm(10, 8, 12, hw)
    tiles_rows = 2 * (8 + 2)               # 2 column tiles x (8 + 2) rows
    assert est["host_bytes"]["out"] == tiles_rows * 4 * 8
    assert est["busy"]["requant"] == 0 and est["host_bytes"]["in_weights"] == 8 * 2 * 8
    assert est["weight_bytes_unique"] == 8 * 12


def test_estimate_program_matches_estimate_gemm():
    from sim.perf.estimate import estimate_program
    hw = _hw(8, 16)
    prog = compile_gemm(20, 30, 40, hw, bias=True, requant=True)
    by_prog = estimate_program(prog, hw)
    by_gemm = estimate_gemm(20, 30, 40, hw, bias=True, requant=True)
    for key in ("cycles", "rtl_counters", "sram_reads", "sram_writes", "sram_bytes", "macs",
                "host_bytes", "energy_pj"):
        assert by_prog[key] == by_gemm[key], key
    words = estimate_program(prog.words(), hw)  # 128-bit words decode to the same program
    assert words["cycles"] == by_prog["cycles"] and words["macs"] == words["mac_slots"]


@pytest.mark.parametrize("m,k,n", [(0, 1, 1), (1, -1, 1), (1, 1, 1.5), (True, 1, 1)])
def test_bad_dimensions(m, k, n):
    with pytest.raises(ValueError, match="must be a positive integer"):
        estimate_gemm(m, k, n, HW)
    with pytest.raises(ValueError, match="relu needs requant"):
        estimate_gemm(1, 1, 1, HW, relu=True)
