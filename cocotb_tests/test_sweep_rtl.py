"""`foldaccel sweep --verify-rtl`: every point's layer programs run on Verilator, checked
against the golden model, with the steady segment's RTL cycles equal to the estimate.

Uses the 16x16 hardware of ``configs/tiny.toml`` (the Verilator build the layer tests share).
"""

import csv
import json

import pytest

from hw.layer.compiler import steady_segment
from model.config import CONFIG_DIR, load_config
from sim.cli import main
from sim.perf.estimate import estimate_model

pytestmark = pytest.mark.rtl

TINY = str(CONFIG_DIR / "tiny.toml")


def test_verify_rtl_sweep_records_rtl_cycles_and_zero_mismatches(tmp_path, capsys):
    out = tmp_path / "sw"
    argv = ["sweep", "--config", TINY, "--fold", "1,2", "--verify-rtl", "--no-area",
            "--jobs", "1", "--no-progress", "--out", str(out), "--json"]
    assert main(argv) == 0
    res = json.loads(capsys.readouterr().out)
    assert res["points"] == 2 and res["rtl_mismatches"] == 0 and res["errors"] == 0
    rows = list(csv.DictReader((out / "sweep.csv").open()))
    base = load_config(TINY)
    for r in rows:
        cfg = base.replace(fold_factor=int(r["fold"]))
        # every output element of segments 0..steady and the final state were compared
        mc = cfg.model
        outputs = (steady_segment(mc) + 1) * mc.segment_length * mc.d_model
        assert int(r["rtl_compared"]) > outputs
        assert r["rtl_mismatches"] == "0" and r["error"] == ""
        assert int(r["rtl_cycles"]) == int(r["cycles"]) == estimate_model(cfg)["cycles"]
    doc = json.loads((out / "sweep.json").read_text())
    assert doc["options"]["verify_rtl"] is True
    assert all(p["rtl_s"] > 0 for p in doc["points"])
    # the RTL rows are cached under their own key: a re-run simulates nothing
    assert main(argv) == 0
    assert json.loads(capsys.readouterr().out)["cached"] == 2
