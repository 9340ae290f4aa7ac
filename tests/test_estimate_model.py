"""Layer-stream and model estimates: the layer compiler's programs, timed; traffic, MACs,
energy and RTF by hand; the folding report; no torch/amaranth.

Expected values are written out here from the configs' shapes (tiny: D=64, 2 layers, N=1 or
2, R=1, L=4, C=4, M=2, 16x16 array, 16-lane VMEM words of 32 B, 16 B WGT words), from
``model/accounting.py`` (MACs) and from the cited energy table; that the estimator's cycles
are the RTL's is asserted by the RTL layer tests (``cocotb_tests/test_layer.py``).
"""

import math
import subprocess
import sys

import pytest

from hw.layer.compiler import StreamCompiler, steady_segment
from model.accounting import layer_step_counts, model_weight_bytes
from model.config import CONFIG_DIR, load_config
from model.quantize import quantize_model
from sim.perf.energy import HOROWITZ_45NM
from sim.perf.estimate import compare_fold, estimate_layer, estimate_model

TINY = load_config(CONFIG_DIR / "tiny.toml")
BASE = load_config(CONFIG_DIR / "emformer_base.toml")


@pytest.fixture(autouse=True)
def _private_cache(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("FOLDACCEL_BUILD_DIR", str(tmp_path_factory.getbasetemp() / "build"))


@pytest.mark.parametrize("fold", [1, 2])
def test_programs_do_not_depend_on_the_weights(fold):
    """The estimator compiles a model of zeros; an exported model of the same shape gives the
    same instruction words, so the estimate times the programs the RTL runs."""
    cfg = TINY.replace(fold_factor=fold)
    real = StreamCompiler(cfg, quantize_model(cfg, seed=3))
    zeros = StreamCompiler(cfg)
    for s in range(steady_segment(cfg.model) + 2):
        assert real.step(s).program.words() == zeros.step(s).program.words(), s
    assert real.preload().program.words() == zeros.preload().program.words()


def test_layer_stream_per_segment_and_rtf():
    est = estimate_layer(TINY, segments=4)
    assert est["cycles"] == sum(est["per_segment_cycles"]) and len(est["per_segment_cycles"]) == 4
    # the rings fill over segments 0..2 (M=2 memories, C=4 frames): later programs are longer
    c = est["per_segment_cycles"]
    assert c[0] < c[1] < c[2] == c[3]
    assert est["audio_ms"] == 4 * 4 * 40.0
    assert est["rtf"] == pytest.approx(est["cycles"] / 500e3 / (4 * 4 * 40.0))
    assert est["time_us"] == pytest.approx(est["cycles"] / 500.0)
    assert est["layers"] == 2 and est["segments"] == 4
    # the first layer alone: a shorter program per segment
    one = estimate_layer(TINY, segments=4, layers=1)
    assert one["layers"] == 1
    assert all(a < b for a, b in zip(one["per_segment_cycles"], c, strict=True))


def test_model_is_the_steady_segment_of_the_stream():
    seg = steady_segment(TINY.model)
    assert seg == 2                                   # max(M=2, ceil(C/L)=1)
    model = estimate_model(TINY)
    stream = estimate_layer(TINY, segments=seg + 1)
    assert model["segment"] == seg
    assert model["cycles"] == stream["per_segment_cycles"][seg]


@pytest.mark.parametrize("fold", [1, 2, 4])
def test_macs_equal_the_accounting(fold):
    cfg = TINY.replace(fold_factor=fold)
    est = estimate_model(cfg)
    assert est["macs"] == cfg.model.n_layers * layer_step_counts(cfg)["macs"]
    assert est["utilization"] == pytest.approx(est["macs"] / (est["cycles"] * 256))
    assert est["mac_slots"] >= est["macs"]


def test_host_traffic_by_hand_fold1_streams_weights():
    est = estimate_model(TINY.replace(fold_factor=1))
    h = est["host_bytes"]
    # input: L+R = 5 int16 rows of 64 lanes = 4 VMEM words of 32 B; output: the L=4 rows
    assert h["in_input"] == 5 * 4 * 32 and h["out"] == 4 * 4 * 32
    # weights do not fit the 64 KiB weight bank with their ring: every segment loads each
    # weight matrix once, K words of 16 B per 16-column tile: q, k, v, out 64x64 (4 tiles of
    # 64 words), fc1 64x128 (8 tiles of 64), fc2 128x64 (4 tiles of 128) -- per layer
    per_layer = 4 * (4 * 64 * 16) + 8 * 64 * 16 + 4 * 128 * 16
    assert est["weights"] == "streamed" and h["in_weights"] == 2 * per_layer
    assert est["weight_loads"]["wgt"] == 2 * per_layer       # the other banks are resident
    assert h["in_state"] == h["out_state"] == 0 and est["state"] == "on chip"
    assert est["dram_bytes"] == h["in_input"] + h["in_weights"] + h["out"]


def test_fold2_weights_resident_preloaded_once():
    est = estimate_model(TINY)
    assert est["weights"] == "resident" and all(est["resident"].values())
    assert est["host_bytes"]["in_weights"] == 0
    # the preload carries every constant once: int8 weights (16 B WGT words), the ACC bias and
    # requantization words, PMEM parameters, VMEM tables -- at least the matrices and biases
    wb = model_weight_bytes(TINY)
    assert est["preload"]["bytes"] == est["weight_bytes_unique"]
    assert est["weight_bytes_unique"] >= wb["matrices"] + wb["biases"]
    assert est["preload"]["cycles"] > est["preload"]["bytes"] // 16      # 16 B per cycle


def test_sram_within_banks():
    for cfg in (TINY, TINY.replace(fold_factor=1), BASE):
        est = estimate_model(cfg)
        assert all(est["sram_fits"].values())
        assert all(0 < est["sram_bytes"][b] <= est["sram_capacity_bytes"][b]
                   for b in ("act", "wgt", "acc", "vmem"))


def test_energy_is_counts_times_table():
    est = estimate_model(TINY.replace(fold_factor=1))
    t = HOROWITZ_45NM
    bd = est["energy_breakdown_pj"]

    def e64(kib):  # 64 KiB: between the cited 32 KiB (20 pJ) and 1 MiB (100 pJ) points
        return 20.0 * 5.0 ** (math.log(kib / 32) / math.log(32))
    assert bd["mac"] == pytest.approx(est["mac_slots"] * (t.int8_mult_pj + t.int32_add_pj))
    assert bd["dram"] == pytest.approx(est["dram_bytes"] * 1300 / 8)
    assert bd["sram_act"] == pytest.approx(
        (est["sram_reads"]["act"] + est["sram_writes"]["act"]) * e64(64) / 8)
    assert bd["total"] == pytest.approx(sum(v for k, v in bd.items() if k != "total"))
    assert est["energy_pj"] == bd["total"]


def test_emformer_base_spills_state_and_streams_weights():
    est = estimate_model(BASE)
    assert est["weights"] == "streamed" and est["state"] == "spilled"
    # each layer's state (fold 2): memory 4 rows of 2 x 256 lanes (32 words), key and value
    # rings of 30*2 rows of 4 heads x 64 lanes (16 words): 2048 VMEM words of 32 B, stored
    # and loaded back every segment for all 20 layers
    state = 20 * (4 * 32 + 2 * 60 * 16) * 32
    h = est["host_bytes"]
    assert h["in_state"] == h["out_state"] == state
    wb = model_weight_bytes(BASE)
    assert h["in_weights"] >= wb["matrices"]
    assert est["macs"] == 20 * layer_step_counts(BASE)["macs"]


def test_folding_report_on_emformer_base():
    rep = compare_fold(BASE, [1, 2, 4])
    assert rep["folds"] == [1, 2, 4]
    assert all(p == "streamed" for p in rep["weights"].values())
    m, red = rep["metrics"], rep["reduction_vs_fold1"]
    for f in (1, 2, 4):
        wb = model_weight_bytes(BASE.replace(fold_factor=f))
        assert m["weight_bytes"][str(f)] >= wb["matrices"] + wb["biases"]
    # folding shrinks the attention projections N^2: a quarter of the weight bytes at N=2
    assert 0.2 < red["weight_bytes"]["2"] < 0.3 and red["weight_bytes"]["4"] > 0.3
    # streamed weights dominate the traffic: DRAM bytes fall with the weights
    assert red["dram_bytes"]["2"] > 0.1 and red["dram_bytes"]["4"] > red["dram_bytes"]["2"]
    assert red["macs"]["2"] == pytest.approx(
        1 - layer_step_counts(BASE)["macs"] / layer_step_counts(BASE.replace(
            fold_factor=1))["macs"])
    assert all(v == 0 for k, v in red.items() for f, v in v.items() if f == "1")


def test_compare_fold_rejects_bad_fold():
    with pytest.raises(ValueError, match="fold factors"):
        compare_fold(TINY, [0])
    with pytest.raises(Exception, match="fold_factor"):
        compare_fold(TINY, [3])  # 3 does not divide d_model=64


def test_working_set_that_cannot_fit_is_rejected_with_the_bank_named():
    with pytest.raises(ValueError, match="VMEM bank is too small.*vmem_kib"):
        estimate_model(TINY.replace(vmem_kib=2))


def test_estimator_imports_neither_torch_nor_amaranth():
    code = ("import sys\n"
            "from model.config import load_config\n"
            "from sim.perf.estimate import estimate_model, estimate_gemm\n"
            "from sim.perf.sweep_points import estimate_point as evaluate\n"
            "from sim.perf.energy import HOROWITZ_45NM\n"
            "cfg = load_config('configs/tiny.toml')\n"
            "estimate_model(cfg); estimate_gemm(8, 8, 8, cfg.hardware)\n"
            "evaluate(cfg.to_dict(), HOROWITZ_45NM.to_dict())\n"
            "import sim.cli.estimate\n"
            "bad = [m for m in ('torch', 'amaranth') if m in sys.modules]\n"
            "assert not bad, bad\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       cwd=str(CONFIG_DIR.parent), timeout=300)
    assert r.returncode == 0, r.stderr


def test_stream_counts_disk_cache_returns_the_same_counts(tmp_path, monkeypatch):
    from sim.perf import layer as lay
    monkeypatch.setenv("FOLDACCEL_BUILD_DIR", str(tmp_path / "b"))
    lay._cached.cache_clear()
    fresh = lay.stream_counts_uncached(TINY, (0, 1), None)
    cached = lay.stream_counts(TINY, [0, 1])
    assert cached.to_dict() == fresh.to_dict()
    files = list((tmp_path / "b" / "perf" / "stream").glob("*.json"))
    assert len(files) == 1
    lay._cached.cache_clear()                  # the next call reads the disk entry
    assert lay.stream_counts(TINY, [0, 1]).to_dict() == fresh.to_dict()
    # clock and DRAM width do not change the programs: same entry
    lay.stream_counts(TINY.replace(clock_mhz=123.0, dram_bytes_per_cycle=4), [0, 1])
    assert len(list((tmp_path / "b" / "perf" / "stream").glob("*.json"))) == 1
