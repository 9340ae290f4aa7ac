"""``foldaccel demo --quick``: its report agrees with ``foldaccel rtl layer`` and
``foldaccel estimate layer`` run separately on the same config, and its files are complete."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
TINY = str(REPO / "configs" / "tiny.toml")
SEGMENTS = 2  # --quick's default

pytestmark = pytest.mark.rtl


def cli(*argv: str) -> dict:
    r = subprocess.run([sys.executable, "-m", "sim.cli", *argv, "--json"], cwd=REPO,
                       capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stderr
    assert "Traceback" not in r.stderr
    return json.loads(r.stdout)


@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> tuple[dict, Path]:
    out = tmp_path_factory.mktemp("demo") / "out"
    return cli("demo", "--quick", "--no-progress", "--out", str(out)), out


def test_demo_writes_its_files(demo):
    rep, out = demo
    assert rep["ok"] is True
    on_disk = json.loads((out / "report.json").read_text())
    assert on_disk["folds"] == rep["folds"]
    for name in ("cycles_energy.png", "rtl_vs_estimate.png"):
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    md = (out / "report.md").read_text()
    assert "## Comparison" in md and "![cycles_energy](cycles_energy.png)" in md
    for fold in ("1", "2"):
        assert "| RTL cycles / segment |" in md
        assert (out / "weights" / f"fold{fold}" / "manifest.json").is_file()
    assert not [p for p in out.rglob("*") if p.name.endswith(".tmp")]


def test_demo_recognizes_speech_on_the_rtl(demo):
    rep, out = demo
    sp = rep["speech"]
    assert sp["said"] == "7" and sp["fold"] == 2
    assert sp["transcript_rtl"] == sp["transcript_golden"] and sp["identical"] is True
    assert sp["mismatches"] == 0 and sp["compared"] > 0 and sp["estimator_matches_rtl"]
    assert sp["ok"] is True
    assert "## Speech on the RTL" in (out / "report.md").read_text()


@pytest.mark.parametrize("fold", [1, 2])
def test_demo_agrees_with_rtl_layer_and_estimate_layer(demo, fold):
    rep, _ = demo
    r = rep["folds"][str(fold)]
    rtl = cli("rtl", "layer", "--config", TINY, "--fold", str(fold), "--segments",
              str(SEGMENTS))
    est = cli("estimate", "layer", "--config", TINY, "--fold", str(fold), "--segments",
              str(SEGMENTS))
    assert r["rtl_cycles_per_segment"] == rtl["cycles_per_segment"]
    assert r["estimated_cycles_per_segment"] == est["per_segment_cycles"]
    assert rtl["cycles_per_segment"] == est["per_segment_cycles"]   # estimator == RTL
    assert r["cycles_equal"] is True
    assert r["mismatches"] == rtl["mismatches"] == 0
    assert r["compared"] == rtl["compared"] > 0
    assert r["sram_bytes"] == rtl["sram_bytes"] == est["sram_bytes"]
    assert r["preload_cycles"] == {"rtl": rtl["preload_cycles"],
                                   "estimate": est["preload"]["cycles"]}
    assert r["energy_pj_per_segment"] == pytest.approx(est["energy_pj"] / SEGMENTS)
    assert r["host_bytes_per_segment"] == pytest.approx(est["dram_bytes"] / SEGMENTS)
    assert r["weights"] == rtl["weights"] == est["weights"]


def test_demo_comparison_is_fold2_over_fold1(demo):
    rep, _ = demo
    f1, f2 = rep["folds"]["1"], rep["folds"]["2"]
    assert f2["params"] < f1["params"]           # folding shrinks the attention weights
    row = rep["comparison"]["params"]
    assert row["fold 2 / fold 1"] == pytest.approx(f2["params"] / f1["params"])


def test_rerun_into_the_same_directory_keeps_user_files(demo, tmp_path):
    _, out = demo
    (out / "my-notes.txt").write_text("mine\n")
    rep = cli("demo", "--quick", "--no-progress", "--out", str(out))
    assert rep["ok"] is True
    assert (out / "my-notes.txt").read_text() == "mine\n"


def test_demo_refuses_a_foreign_directory(tmp_path):
    (tmp_path / "thesis.tex").write_text("x")
    r = subprocess.run([sys.executable, "-m", "sim.cli", "demo", "--quick", "--out",
                        str(tmp_path)], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and "not a demo's output" in r.stderr
    assert "Traceback" not in r.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["thesis.tex"]
