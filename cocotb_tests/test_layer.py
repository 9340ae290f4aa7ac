"""The streaming encoder on the Verilated accelerator: every output element of every segment
and the final memory banks and left-context caches equal the golden model's, every
program's RTL counters equal the timing model's, and the estimator's cycles equal the RTL's.

All runs use the default 16x16 hardware of ``configs/tiny.toml`` (one Verilator build, shared
with the other default-array tests). The models are seeded exports (``quantize_model``); the
reference is ``model/golden.py``, independent of the compiler and the RTL.
"""

import dataclasses
import json

import numpy as np
import pytest

from model.config import CONFIG_DIR, load_config
from model.quantize import quantize_model
from sim.perf.estimate import estimate_layer
from sim.rtl.layer_run import run_stream

pytestmark = pytest.mark.rtl

TINY = load_config(CONFIG_DIR / "tiny.toml")


def _check(cfg, segments: int, layers: int | None = None, seed: int = 0):
    """Run the stream on the RTL; assert bit-exactness, counters and estimator equality."""
    qm = quantize_model(cfg, seed=seed)
    r = run_stream(cfg, qm, segments, layers, seed=seed + 1)
    assert r.first is None and r.mismatches == 0, f"{cfg.model}: {r.first} (seed {seed})"
    assert not r.counter_mismatches, r.counter_mismatches
    assert r.compared > 0 and r.ok
    est = estimate_layer(cfg, segments, layers)
    assert est["per_segment_cycles"] == r.cycles_per_segment
    assert est["cycles"] == r.cycles
    assert est["preload"]["cycles"] == r.preload_cycles
    assert est["weights"] == r.weights and est["state"] == r.state
    assert est["sram_bytes"] == r.sram_bytes
    return r, est


@pytest.mark.parametrize("fold", [1, 2])
def test_tiny_all_layers_six_segments(fold):
    # 6 segments: the memory ring (M=2) and the left-context ring (C=4 frames = 1 segment,
    # x N sub-rows) both wrap
    r, _ = _check(TINY.replace(fold_factor=fold), 6)
    assert r.layers == 2 and len(r.cycles_per_segment) == 6
    assert r.compared >= 6 * 4 * 64


@pytest.mark.parametrize("fold", [1, 2])
def test_tiny_one_layer(fold):
    r, _ = _check(TINY.replace(fold_factor=fold), 6, layers=1)
    assert r.layers == 1


@pytest.mark.parametrize("changes", [
    {"fold_factor": 4},
    {"fold_factor": 2, "fold_scope": "attn+ffn"},
    {"fold_factor": 2, "head_mode": "keep"},
    {"fold_factor": 2, "memory_squash": "tanh"},
], ids=["fold4", "attn+ffn", "keep", "tanh"])
def test_tiny_variants(changes):
    _check(TINY.replace(**changes), 4, seed=5)


@pytest.mark.parametrize("fold", [1, 2])
def test_odd_shapes(fold):
    # a folded width that is not a multiple of the array (48/2 = 24 lanes), an FFN width that
    # is not a power of two, other contexts and memory size
    cfg = TINY.replace(fold_factor=fold, d_model=48, ffn_dim=72, segment_length=3,
                       right_context=2, left_context=5, max_memory=3)
    _check(cfg, 5, seed=7)


def test_spilled_state():
    # 14 layers of state do not fit VMEM with a step's tensors: each layer's rings are stored
    # to the host after the layer and loaded back before it in the next segment
    cfg = TINY.replace(fold_factor=2, n_layers=14, left_context=16, max_memory=4)
    r, est = _check(cfg, 6, seed=2)
    assert r.state == "spilled" and est["host_bytes"]["in_state"] > 0


def test_corrupted_weight_is_caught_and_named():
    cfg = TINY.replace(fold_factor=2)
    qm = quantize_model(cfg, seed=0)
    tensors = {k: np.array(v, copy=True) for k, v in qm.tensors.items()}
    name = "L1.fc2.weight"
    tensors[name][:, 7] = -1 - tensors[name][:, 7]           # one output channel, flipped
    bad = dataclasses.replace(qm, tensors=tensors)
    r = run_stream(cfg, qm, 2, seed=1, compiler_qm=bad)
    assert r.mismatches > 0 and not r.ok
    first = r.first
    # the wrong weights are in layer 1's FFN: the first wrong element is segment 0's output
    assert (first.segment, first.layer, first.tensor) == (0, 1, "output")
    assert first.expected != first.got and first.seed == 1
    text = str(first)
    assert "segment 0" in text and "layer 1" in text and "output" in text
    assert f"expected {first.expected}, got {first.got}" in text


def test_cli_rtl_layer_json_and_exported_weights(capsys, tmp_path):
    from sim.cli import main

    tiny = str(CONFIG_DIR / "tiny.toml")
    assert main(["rtl", "layer", "--config", tiny, "--segments", "2", "--layers", "1",
                 "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    for key in ("cycles", "cycles_per_segment", "mismatches", "first_mismatch", "sram_bytes",
                "weights", "counters", "wall_s"):
        assert key in out, key
    assert out["mismatches"] == 0 and out["first_mismatch"] is None
    assert out["cycles"] == sum(out["cycles_per_segment"]) and len(out["counters"]) == 2
    est = estimate_layer(TINY, 2, 1)
    assert out["cycles"] == est["cycles"] and out["sram_bytes"] == est["sram_bytes"]
    # the same model through `foldaccel export` and --weights: the same run
    assert main(["export", "--config", tiny, "--out", str(tmp_path / "w"), "--seed", "0"]) == 0
    capsys.readouterr()
    assert main(["rtl", "layer", "--config", tiny, "--weights", str(tmp_path / "w"),
                 "--segments", "2", "--layers", "1", "--json"]) == 0
    again = json.loads(capsys.readouterr().out)
    assert again["mismatches"] == 0 and again["cycles"] == out["cycles"]


@pytest.mark.parametrize("argv,needle", [
    (["--layers", "3"], "--layers 3 must be in 1..2"),
    (["--segments", "0"], "--segments 0"),
    (["--weights", "/no/such/dir"], "/no/such/dir"),
    (["--fold", "1", "--weights", "EXPORT"], "'model.fold_factor' = 2 differs"),
])
def test_cli_rtl_layer_bad_input_exits_2(capsys, tmp_path, argv, needle):
    from sim.cli import main

    tiny = str(CONFIG_DIR / "tiny.toml")
    if "EXPORT" in argv:                          # a fold-2 export run with --fold 1
        assert main(["export", "--config", tiny, "--out", str(tmp_path / "w")]) == 0
        capsys.readouterr()
        argv = [str(tmp_path / "w") if a == "EXPORT" else a for a in argv]
    assert main(["rtl", "layer", "--config", tiny, *argv]) == 2
    err = capsys.readouterr()
    assert err.out == "" and needle in err.err and "Traceback" not in err.err
