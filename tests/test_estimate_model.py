"""Layer and model estimates: composition, weight bytes and traffic by hand, RTF, folding report,
no torch/amaranth.

Expected values use the tiny config's shapes written out here (D=64, N=2, 2 heads of 16,
F=128, R=1, L=4, C=4, M=2, 16x16 array, 64 KiB banks, host 16 B/cycle), the compiler +
timing model for GEMM cycles, and the documented vector-unit rules for the rest.
"""

import math
import subprocess
import sys

import pytest

from hw.compiler import compile_gemm
from hw.timing import program_cycles
from model.accounting import layer_step_counts, model_weight_bytes
from model.config import CONFIG_DIR, load_config
from sim.perf.energy import HOROWITZ_45NM
from sim.perf.estimate import compare_fold, estimate_layer, estimate_model

TINY = load_config(CONFIG_DIR / "tiny.toml")
BASE = load_config(CONFIG_DIR / "emformer_base.toml")


@pytest.fixture(autouse=True)
def _private_cache(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("FOLDACCEL_BUILD_DIR", str(tmp_path_factory.getbasetemp() / "build"))


def _tiny_gemms(m_mem: int, n_left: int):
    """(M, K, N, count, weight, bias, relu) of one tiny layer step, written out by hand."""
    tq, tkv, tk = 1 + 4 + 1, m_mem + 1 + 4, m_mem + 1 + n_left + 4
    return [(tq * 2, 32, 32, 1, True, True, False),          # Q projection
            (tkv * 2, 32, 32, 1, True, True, False),         # K
            (tkv * 2, 32, 32, 1, True, True, False),         # V
            (tq * 2, 16, tk * 2, 2, False, False, False),    # scores, per head
            (tq * 2, tk * 2, 16, 2, False, True, False),     # (p-128) @ V + bias, per head
            (tq * 2, 32, 32, 1, True, True, False),          # output projection
            (5, 64, 128, 1, True, True, True),               # fc1 + ReLU
            (5, 128, 64, 1, True, True, False)]              # fc2


def _vector_cycles(tk: int) -> int:
    """Vector unit, 16 lanes, fill 4 per op (docs/PERF_MODEL.md)."""
    ln = 5 * (2 * 4 + 4) + 4                     # 5 rows of 64: 2 passes x 4 chunks + 4
    summary = (4 + 1) * 4 + 4                    # 4 rows accumulate + 1 rounding pass
    softmax = 2 * (12 * (3 * math.ceil(tk * 2 / 16) + 16) + 4)  # 2 heads, 12 rows
    zp_bias = 2 * (tk * 2 * 1 + 4)               # per head: colsum of tk*2 rows of 16
    squash = 1 * 4 + 4
    resid = 5 * 4 + 4
    params = math.ceil((3 * 5 * 64 + 512) / 16)  # LN gamma/beta + exp LUT over 16 B/cycle
    return 3 * ln + summary + softmax + zp_bias + squash + 2 * resid + params


def _layer_cycles(m_mem: int, n_left: int) -> int:
    hw = TINY.hardware
    gemm = sum(cnt * program_cycles(compile_gemm(m, k, n, hw, bias=b, requant=True, relu=r),
                                    hw)["total"]
               for m, k, n, cnt, _, b, r in _tiny_gemms(m_mem, n_left))
    return gemm + _vector_cycles(m_mem + 1 + n_left + 4)


def test_layer_cycles_compose_programs_and_vector_ops():
    est = estimate_layer(TINY, segments=1)
    assert est["cycles"] == _layer_cycles(0, 0)  # first segment: empty bank and cache


def test_layer_over_segments_fills_bank_and_cache():
    # segment s sees min(s, M=2) memories and min(4s, C=4) cached frames
    est = estimate_layer(TINY, segments=4)
    expected = [_layer_cycles(0, 0), _layer_cycles(1, 4), _layer_cycles(2, 4),
                _layer_cycles(2, 4)]
    assert est["per_segment_cycles"] == expected
    assert est["cycles"] == sum(expected)
    assert est["audio_ms"] == 4 * 4 * 40.0
    assert est["rtf"] == pytest.approx(sum(expected) / (500.0 * 1e3) / (4 * 4 * 40.0))


def test_model_cycles_macs_rtf():
    est = estimate_model(TINY)
    layer = _layer_cycles(2, 4)
    # layer 0: the int16 input chunk (5 frames x 64 x 2 B over 16 B/cycle), its memory
    # vector (column sum of 4 int16 rows, then a 1-row requantization); the last layer: the
    # int16 output (4 rows)
    frames_in = 2 * 5 * 64 // 16
    memory = (4 * 4 + 4) + (1 * 4 + 4)
    frames_out = 2 * 4 * 64 // 16
    assert est["cycles"] == 2 * layer + frames_in + memory + frames_out
    assert est["layer_cycles"] == layer
    assert [x["cycles"] for x in est["layers"]] == [layer + frames_in + memory,
                                                    layer + frames_out]
    assert est["macs"] == 2 * layer_step_counts(TINY)["macs"]
    assert est["compute_ms"] == pytest.approx(est["cycles"] / 500e3)
    assert est["rtf"] == pytest.approx(est["cycles"] / 500e3 / (4 * 40.0))
    assert est["time_us"] == pytest.approx(est["cycles"] / 500.0)


def test_model_weight_bytes_and_traffic_by_hand():
    est = estimate_model(TINY)
    # unique parameters per layer: int8 matrices, int32 biases, 32-bit requant parameters
    # (per output channel of the 6 weight GEMMs, per tensor for scores and probs@V),
    # LayerNorm gamma int8 + beta int32 (x3), the 256 x 16-bit exp LUT
    matrices = 4 * 32 * 32 + 2 * 64 * 128
    biases = 4 * (4 * 32 + 128 + 64)
    params = 4 * (4 * 32 + 128 + 64 + 2)
    per_layer = matrices + biases + params + 3 * 5 * 64 + 512
    assert est["weight_bytes_unique"] == 2 * per_layer
    assert matrices + biases == model_weight_bytes(TINY)["matrices"] // 2 \
        + model_weight_bytes(TINY)["biases"] // 2
    # streamed: everything fits the 64 KiB banks, so each weight GEMM loads B once, padded to
    # 16 columns, plus a [bias][param] word pair (64 B each) per column tile; attention GEMMs
    # load one param word per column tile (P@V's bias word is an activation: 128 colsum(V) of
    # this step); the vector unit loads its parameters
    def w_gemm(k, n):
        return k * math.ceil(n / 16) * 16 + math.ceil(n / 16) * 2 * 64
    tk = 2 + 1 + 4 + 4
    layer_w = (4 * w_gemm(32, 32) + w_gemm(64, 128) + w_gemm(128, 64)
               + 2 * math.ceil(tk * 2 / 16) * 64 + 2 * 1 * 64 + 3 * 5 * 64 + 512)
    assert est["traffic"]["streamed"]["weight_bytes"] == 2 * layer_w
    # activations: every GEMM loads A (M rows padded to 16 per K word) and, for attention,
    # B (and P@V its bias word per column tile); it stores ceil(m_t/4) int8 words of 64 B per
    # output tile; the model step adds the int16 input chunk (5 x 64) and output (4 x 64)
    def a_in(m, k):
        return math.ceil(m / 16) * k * 16
    def out(m, n):
        return math.ceil(n / 16) * sum(math.ceil(min(16, m - 16 * i) / 4)
                                       for i in range(math.ceil(m / 16))) * 64
    act = 0
    for m, k, n, cnt, weight, bias, _ in _tiny_gemms(2, 4):
        b_in = 0 if weight else k * math.ceil(n / 16) * 16 + bias * math.ceil(n / 16) * 64
        act += cnt * (a_in(m, k) + b_in + out(m, n))
    frames = 2 * 5 * 64 + 2 * 4 * 64
    assert est["host_bytes"]["in_activations"] + est["host_bytes"]["out"] == 2 * act + frames
    assert est["traffic"]["streamed"]["activation_bytes"] == 2 * act + frames
    assert est["traffic"]["resident"]["dram_bytes"] == 2 * act + frames
    assert est["traffic"]["streamed"]["dram_bytes"] == 2 * (act + layer_w) + frames


def test_energy_is_counts_times_table():
    est = estimate_model(TINY)
    t = HOROWITZ_45NM

    def e64(kib):  # 64 KiB: between the cited 32 KiB (20 pJ) and 1 MiB (100 pJ) points
        return 20.0 * 5.0 ** (math.log(kib / 32) / math.log(32))
    for policy in ("streamed", "resident"):
        bd = est["energy_breakdown_pj"][policy]
        assert bd["mac"] == pytest.approx(est["mac_slots"] * (t.int8_mult_pj + t.int32_add_pj))
        assert bd["dram"] == pytest.approx(est["traffic"][policy]["dram_bytes"] * 1300 / 8)
        assert bd["sram_act"] == pytest.approx(
            (est["sram_reads"]["act"] + est["sram_writes"]["act"]) * e64(64) / 8)
        assert bd["total"] == pytest.approx(sum(v for k, v in bd.items() if k != "total"))
    # the resident policy removes the weight loads: DRAM reads and weight-bank writes
    s, r = est["energy_breakdown_pj"]["streamed"], est["energy_breakdown_pj"]["resident"]
    assert s["dram"] - r["dram"] == pytest.approx(est["host_bytes"]["in_weights"] * 1300 / 8)
    assert r["sram_wgt"] < s["sram_wgt"]
    # tiny's weights (49,040 B) fit its 64 KiB weight bank: resident is the policy in use
    assert est["weight_policy"] == "resident" and est["energy_pj"] == r["total"]


def test_emformer_base_streams_weights_and_folding_reduces_them():
    rep = compare_fold(BASE, [1, 2, 4])
    assert rep["folds"] == [1, 2, 4]
    m = rep["metrics"]
    assert all(p == "streamed" for p in rep["weight_policy"].values())  # 47 MB >> 64 KiB
    # deployed weight bytes follow the parameter counts of model/accounting.py
    for f in (1, 2, 4):
        wb = model_weight_bytes(BASE.replace(fold_factor=f))
        assert m["weight_bytes"][str(f)] > wb["matrices"] + wb["biases"]
        assert m["weight_bytes"][str(f)] - (wb["matrices"] + wb["biases"]) < 20 * 70_000
    red = rep["reduction_vs_fold1"]
    assert 0.24 < red["weight_bytes"]["2"] < 0.26
    # weight traffic dominates: DRAM bytes and energy fall with folding, roughly like weights
    assert red["dram_bytes_streamed"]["2"] > 0.2 and red["energy_pj_streamed"]["2"] > 0.15
    assert red["dram_bytes_streamed"]["4"] > red["dram_bytes_streamed"]["2"]
    assert red["cycles"]["2"] > 0
    # attention MACs grow N-fold but the projections shrink more: total MACs fall
    assert red["macs"]["2"] == pytest.approx(
        1 - layer_step_counts(BASE)["macs"] / layer_step_counts(BASE.replace(
            fold_factor=1))["macs"])
    assert all(v == 0 for k, v in red.items() for f, v in v.items() if f == "1")


def test_compare_fold_rejects_bad_fold():
    with pytest.raises(ValueError, match="fold factors"):
        compare_fold(TINY, [0])
    with pytest.raises(Exception, match="fold_factor"):
        compare_fold(TINY, [3])  # 3 does not divide d_model=64


def test_estimator_imports_neither_torch_nor_amaranth():
    code = ("import sys\n"
            "from model.config import load_config\n"
            "from sim.perf.estimate import estimate_model, estimate_gemm\n"
            "from sim.perf.sweep import evaluate\n"
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
