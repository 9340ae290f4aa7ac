"""The layer compiler's programs on the ISA simulator over many shapes: every output element
of every segment and the final rings equal the golden model's (``model/golden.py``).

The RTL runs of ``cocotb_tests/test_layer.py`` cover a representative subset; these cover the
shape space quickly (the ISA simulator executes the same instruction words).
"""

import numpy as np
import pytest

from hw.layer import compiler
from hw.layer.compiler import StreamCompiler
from hw.layer.symbols import LayerCompileError
from model.config import CONFIG_DIR, load_config
from model.quantize import quantize_model
from sim.isa_sim import simulate
from sim.stream import isa_stream

TINY = load_config(CONFIG_DIR / "tiny.toml")

SHAPES = {
    "fold1": {"fold_factor": 1},
    "fold2": {"fold_factor": 2},
    "fold4": {"fold_factor": 4},
    "attn+ffn": {"fold_factor": 2, "fold_scope": "attn+ffn"},
    "keep": {"fold_factor": 2, "head_mode": "keep"},
    "tanh": {"fold_factor": 1, "memory_squash": "tanh"},
    "d40-2heads": {"fold_factor": 1, "d_model": 40, "n_heads": 2},
    "d48-ffn72": {"fold_factor": 2, "d_model": 48, "ffn_dim": 72},
    "d80-ffn96-fold2": {"fold_factor": 2, "d_model": 80, "ffn_dim": 96, "n_heads": 2},
    "contexts": {"fold_factor": 2, "segment_length": 3, "right_context": 2,
                 "left_context": 5, "max_memory": 3},
    "no-contexts": {"fold_factor": 1, "left_context": 0, "right_context": 0},
    "3-layers-8-heads": {"fold_factor": 2, "n_layers": 3, "n_heads": 8},
    "speech-fold1": {"fold_factor": 1, "n_features": 80, "vocab": 11},
    "speech-fold4": {"fold_factor": 4, "n_features": 80, "vocab": 11},
    "features-only": {"fold_factor": 2, "n_features": 40},
    "classifier-only": {"fold_factor": 2, "vocab": 29},
}


@pytest.mark.parametrize("changes", list(SHAPES.values()), ids=list(SHAPES))
def test_stream_bit_exact_on_the_isa_simulator(changes):
    cfg = TINY.replace(**changes)
    r = isa_stream(cfg, quantize_model(cfg, seed=11), 6, seed=3)
    assert r.first is None, f"{changes}: {r.first}"
    assert r.ok and r.compared >= 6 * cfg.model.segment_length * cfg.model.output_dim


def test_spilled_state_bit_exact():
    cfg = TINY.replace(fold_factor=2, n_layers=8, left_context=12, max_memory=3, vmem_kib=32)
    r = isa_stream(cfg, quantize_model(cfg, seed=1), 5, seed=1)
    assert r.state == "spilled" and r.first is None and r.ok


def test_first_layers_only():
    cfg = TINY.replace(fold_factor=2, n_layers=3)
    r = isa_stream(cfg, quantize_model(cfg, seed=2), 3, layers=2, seed=4)
    assert r.layers == 2 and r.ok


def test_layers_out_of_range_is_an_error():
    with pytest.raises(LayerCompileError, match="layers=3"):
        isa_stream(TINY, quantize_model(TINY, seed=0), 1, layers=3)


def test_spilled_state_in_parts_bit_exact(monkeypatch):
    """Resident weights leave the host link idle between GEMM tiles: the spilled state is
    LOADed (and STOREd) there in parts (small ones here), the rest before its layer."""
    monkeypatch.setattr(compiler, "SPILL_CHUNK", 16)
    cfg = TINY.replace(fold_factor=2, n_layers=8, left_context=12, max_memory=3, vmem_kib=32,
                       wgt_sram_kib=256)
    qm = quantize_model(cfg, seed=1)
    r = isa_stream(cfg, qm, 6, seed=1)
    assert r.state == "spilled" and r.weights == "resident" and r.first is None and r.ok
    sc = StreamCompiler(cfg, qm)
    parts = [src for src, _, _ in sc.step(5).sources if src[0] == "spill"]
    assert any(hi - lo == 16 for _, _, lo, hi in parts)


def test_steps_start_and_end_with_layer_0s_exp_table():
    """The preload program loads layer 0's exp table and every step leaves it loaded (each
    layer loads the next one's during its FFN): no softmax waits for its table."""
    cfg = TINY.replace(fold_factor=2, n_layers=3)
    qm = quantize_model(cfg, seed=5)
    sc = StreamCompiler(cfg, qm)
    machine = simulate(sc.preload().program.instrs, sc.p, sc.din(sc.preload())).machine
    lut = np.asarray(qm.tensors["L0.score.exp_lut"])
    assert np.array_equal(machine.elut[:len(lut)], lut)
    step = sc.step(0)
    assert sum(ins.op == "VLUT" for ins in step.program.instrs) == cfg.model.n_layers
    chunk = np.zeros((cfg.model.segment_length + cfg.model.right_context, cfg.model.input_dim),
                     np.int64)
    machine = simulate(step.program.instrs, sc.p, sc.din(step, chunk), machine=machine).machine
    assert np.array_equal(machine.elut[:len(lut)], lut)
