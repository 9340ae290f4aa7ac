"""Estimator building blocks: energy table, vector-unit model, layer workload, counts algebra.

Expected values are derived here from the cited table, the documented vector-unit rules and
the float model's own traces (torch), not from the estimator's output.
"""

import dataclasses
import math

import pytest
import torch

from model.accounting import layer_step_counts
from model.config import CONFIG_DIR, load_config
from model.encoder import build_model
from sim.perf.counts import Counts, total
from sim.perf.energy import (
    HOROWITZ_45NM,
    EnergyTable,
    EnergyTableError,
    load_energy_table,
    sram_pj_per_64b,
)
from sim.perf.vector import VectorOp, host_transfer, vector_cost
from sim.perf.workload import GemmOp, layer_steps, live_peak, state_bytes

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


# ------------------------------------------------------------------------------ vector unit


def test_vector_layernorm_by_hand():
    # layernorm_i16 on 5 int16 rows of 64, 16 lanes: 2 passes of 4 chunks + 4 serial cycles per
    # row, fill 4.
    hw = TINY.hardware
    c = vector_cost(VectorOp("ln", "layernorm_i16", 5, 64), hw)
    assert c.cycles == 5 * (2 * 4 + 4) + 4 == c.busy["vector"]
    elems = 5 * 64
    assert c.sram_reads["act"] == 2 * 2 * elems      # two passes over the int16 row
    assert c.sram_reads["wgt"] == 5 * elems          # gamma int8 + beta int32 per element
    assert c.sram_writes["act"] == elems             # int8 output (LN_in, LN_ffn)
    assert c.ops["int8_mult"] == 0                    # x*x is an int16 product now
    assert c.ops["int32_mult"] == 5 * elems + 2 * 5   # x*x + 4 per element, 2 per row
    assert c.ops["lut_bytes"] == 2 * 5                # one 15-bit rsqrt entry per row
    assert c.sram_peak == {"act": (2 + 1) * elems, "wgt": 5 * 64, "acc": 0,
                           "vmem": 0, "pmem": 0}  # in + out
    # LN_out writes int16: same cycles and operations, twice the output bytes
    o = vector_cost(VectorOp("ln", "layernorm_i16", 5, 64, out_bytes=2), hw)
    assert (o.cycles, o.ops) == (c.cycles, c.ops)
    assert o.sram_writes["act"] == 2 * elems and o.sram_peak["act"] == (2 + 2) * elems


def test_vector_softmax_ragged_width_and_count():
    hw = dataclasses.replace(TINY.hardware, cols=8)
    c = vector_cost(VectorOp("sm", "softmax_u8", 3, 20, count=2), hw)
    # ceil(20/8) = 3 chunks, 3 passes, 16 serial cycles per row (division), fill 4; 2 heads
    assert c.cycles == 2 * (3 * (3 * 3 + 16) + 4)
    # int8 scores read in 3 passes; uint8 probabilities (stored as p - 128) written once
    assert c.sram_reads["act"] == 2 * 3 * 3 * 20 and c.sram_writes["act"] == 2 * 3 * 20
    assert c.ops["int32_add"] == 2 * (2 * 3 * 20 + 32 * 3)


def test_vector_mean_pool_and_residual_add():
    hw = TINY.hardware
    c = vector_cost(VectorOp("mp", "mean_pool_i8", 4, 64), hw)
    assert c.cycles == (4 + 1) * 4 + 4  # 4 accumulating passes + 1 rounding pass
    assert c.sram_reads["act"] == 4 * 64 and c.sram_writes["act"] == 64
    assert c.sram_peak["act"] == 4 * 64 + 64
    # int8 branch + int16 stream -> int16
    r = vector_cost(VectorOp("r", "add_requant_i16", 5, 64, count=3), hw)
    assert r.cycles == 3 * (5 * 4 + 4)
    assert r.sram_reads["act"] == 3 * (1 + 2) * 5 * 64
    assert r.sram_writes["act"] == 3 * 2 * 5 * 64
    assert r.sram_peak["act"] == (1 + 2 + 2) * 5 * 64  # both inputs and the output, once


def test_vector_column_sums_and_requantize():
    hw = TINY.hardware
    # P@V's zero-point bias: 22 int8 rows of one head (hd = 16) -> one int32 row in ACC,
    # 22 accumulating passes of 1 chunk, no final pass (x128 is a shift); 2 heads
    z = vector_cost(VectorOp("zp", "zero_point_bias", 22, 16, count=2), hw)
    assert z.cycles == 2 * (22 * 1 + 4)
    assert z.ops["int32_add"] == 2 * 22 * 16 and z.ops["int32_mult"] == 0
    assert z.sram_reads["act"] == 2 * 22 * 16 and z.sram_writes == {"act": 0, "wgt": 0,
                                                                     "acc": 2 * 4 * 16,
                                                                     "vmem": 0, "pmem": 0}
    assert z.sram_peak == {"act": 22 * 16, "wgt": 0, "acc": 4 * 16, "vmem": 0, "pmem": 0}
    # layer 0's memory vector: column sum of 4 int16 frames of 64 -> int32, then requantize
    s = vector_cost(VectorOp("s", "sum_rows_i16", 4, 64), hw)
    assert s.cycles == 4 * 4 + 4
    assert s.sram_reads["act"] == 2 * 4 * 64 and s.sram_writes["act"] == 4 * 64
    assert s.ops["int32_add"] == 4 * 64
    q = vector_cost(VectorOp("q", "requantize", 1, 64), hw)
    assert q.cycles == 4 + 4
    assert q.sram_reads["act"] == 4 * 64 and q.sram_writes["act"] == 64
    assert q.ops["int32_mult"] == 64 == q.ops["int32_add"]


def test_vector_host_transfer():
    hw = TINY.hardware
    i = host_transfer(2 * 5 * 64, hw, into_chip=True)   # int16 chunk of 5 frames
    assert i.cycles == 640 // 16 == i.busy["dma_in"] == i.busy["dma"]
    assert i.host_in_bytes == 640 == i.sram_writes["act"] and i.weight_bytes == 0
    o = host_transfer(2 * 4 * 64 + 1, hw, into_chip=False)
    assert o.cycles == math.ceil(513 / 16) == o.busy["dma_out"]
    assert o.host_out_bytes == 513 == o.sram_reads["act"]


def test_vector_op_rejects_bad_kind():
    with pytest.raises(ValueError, match="unknown vector op kind"):
        VectorOp("x", "gelu", 1, 1)
    with pytest.raises(ValueError, match="cannot write 2-byte"):
        VectorOp("x", "softmax_u8", 1, 1, out_bytes=2)


# ------------------------------------------------------------------------------ workload

SHAPES = [dict(fold_factor=1), dict(fold_factor=2), dict(fold_factor=4),
          dict(fold_factor=2, head_mode="keep"), dict(fold_factor=4, fold_scope="attn+ffn"),
          dict(fold_factor=2, right_context=0, left_context=6, max_memory=3)]


@pytest.mark.parametrize("kw", SHAPES)
@pytest.mark.parametrize("base", [TINY, BASE], ids=["tiny", "base"])
def test_workload_macs_equal_accounting(base, kw):
    cfg = base.replace(**kw)
    for m, lc in [(None, None), (0, 0), (1, 2)]:
        steps = layer_steps(cfg, m, lc)
        ref = layer_step_counts(cfg, m, lc)
        got = {s.op.name: s.op.macs for s in steps if isinstance(s.op, GemmOp)}
        assert {k: got[k] for k in ("q_proj", "k_proj", "v_proj", "out_proj", "scores",
                                    "attn_v")} == {k: ref[k] for k in got if k in ref}
        assert got["fc1"] + got["fc2"] == ref["ffn"]
        assert sum(got.values()) == ref["macs"]


@pytest.mark.parametrize("kw", SHAPES)
def test_workload_shapes_match_float_model_trace(kw):
    """GEMM output shapes equal the tensors of the torch model's traced streaming step."""
    cfg = TINY.replace(**kw)
    mc = cfg.model
    model = build_model(mc, seed=0, dtype=torch.float64)
    x = torch.randn(mc.right_context + mc.segment_length, mc.d_model, dtype=torch.float64)
    n, dn = mc.fold_factor, mc.folded_dim
    mem = torch.randn(1, mc.d_model, dtype=torch.float64)
    lck = torch.randn(2 * n, dn, dtype=torch.float64)
    tr = model.layers[0].step(x, mem, lck, lck.clone(), trace=True).trace
    steps = {s.op.name: s.op for s in layer_steps(cfg, 1, 2)}
    q, k, probs, ctx = tr["q"], tr["k"], tr["probs"], tr["context"]
    assert (steps["q_proj"].m, steps["q_proj"].n) == tuple(q.shape)
    assert steps["q_proj"].k == dn
    # K/V projections cover the newly projected rows: all keys minus the cached ones
    assert (steps["k_proj"].m + lck.shape[0], steps["k_proj"].n) == tuple(k.shape)
    assert (steps["scores"].count, steps["scores"].m, steps["scores"].n) == tuple(probs.shape)
    assert steps["scores"].k == mc.head_dim == steps["attn_v"].n
    assert steps["attn_v"].k == probs.shape[-1]
    assert steps["attn_v"].count * steps["attn_v"].n == ctx.shape[1]
    assert (steps["out_proj"].m, steps["out_proj"].n) == tuple(tr["out_proj"].shape)
    assert (steps["fc1"].m, steps["fc1"].n) == tuple(tr["ffn_pre"].shape)
    assert steps["fc2"].m * steps["fc2"].n == tr["ffn_out"].numel()
    assert {s.op.name for s in layer_steps(cfg, 1, 2) if s.op.__class__.__name__ ==
            "VectorOp" and s.op.kind == "layernorm_i16"} == {"ln_in", "ln_ffn", "ln_out"}
    # P@V adds the zero-point bias: a column sum over every key of the head
    assert steps["attn_v"].bias and not steps["attn_v"].weight
    zp = steps["zp_bias"]
    assert (zp.kind, zp.count, zp.rows, zp.width) == ("zero_point_bias", probs.shape[0],
                                                      probs.shape[-1], mc.head_dim)


def test_workload_rejects_out_of_range_state():
    with pytest.raises(ValueError, match="n_memory"):
        layer_steps(TINY, n_memory=TINY.model.max_memory + 1)
    with pytest.raises(ValueError, match="n_left"):
        layer_steps(TINY, n_left=-1)


def test_live_peak_and_state_by_hand():
    # tiny: D=64, N=2, 2 heads x 16 (shrink), F=128, R=1, L=4, C=4, M=2
    cfg = TINY
    steps = layer_steps(cfg)
    tq, tk = 1 + 4 + 1, 2 + 1 + 4 + 4
    rows = 5
    peak = live_peak(cfg, steps)
    # act peak, while the V projection runs: x (int16, kept for the residual), ln_in (int8, its
    # input), q, and the new k, v rows ((2+1+4)*64 each); the summary died after the Q
    # projection
    x = 2 * rows * 64
    kv_new = (2 + 1 + 4) * 64
    at_v_proj = x + rows * 64 + tq * 64 + 2 * kv_new
    # softmax: x, v, one head's int8 scores and uint8 probs
    at_softmax = x + kv_new + 2 * (tq * 2) * (tk * 2)
    # resid1: x, out_proj and the int16 resid1; resid2: resid1, fc2 and the int16 resid2
    at_resid1 = x + tq * 64 + 2 * rows * 64
    at_resid2 = 2 * rows * 64 + rows * 64 + 2 * rows * 64
    assert peak["act"] == max(at_v_proj, at_softmax, at_resid1, at_resid2) == at_v_proj
    # int32 GEMM results stay inside the programs; one head's zero-point bias row (int32)
    assert peak["acc"] == 4 * 16
    assert state_bytes(cfg) == {"memory_bank": 2 * 64, "left_context_cache": 2 * 4 * 64,
                                "total": 2 * 64 + 2 * 4 * 64}
