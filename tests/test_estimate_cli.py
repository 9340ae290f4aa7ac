"""`foldaccel estimate gemm|layer|model`: JSON contract, human output, folding report, errors."""

import json

import pytest

from hw.compiler import compile_gemm
from hw.timing import program_cycles
from model.config import CONFIG_DIR, load_config
from sim.cli import main

TINY = str(CONFIG_DIR / "tiny.toml")
BASE = str(CONFIG_DIR / "emformer_base.toml")


@pytest.fixture(autouse=True)
def _private_cache(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("FOLDACCEL_BUILD_DIR", str(tmp_path_factory.getbasetemp() / "build"))


def _json(capsys, *argv) -> dict:
    assert main(list(argv)) == 0
    return json.loads(capsys.readouterr().out)  # exactly one JSON object on stdout


def test_gemm_json(capsys):
    out = _json(capsys, "estimate", "gemm", "--m", "33", "--k", "70", "--n", "20", "--rows",
                "8", "--cols", "4", "--bias", "--requant", "--relu", "--config", TINY,
                "--json")
    hw = load_config(TINY).replace(rows=8, cols=4).hardware
    ref = program_cycles(compile_gemm(33, 70, 20, hw, bias=True, requant=True, relu=True), hw)
    assert out["cycles"] == ref["total"] and out["rtl_counters"] == ref
    # default: int32 output, the same program as 'foldaccel rtl gemm' without flags
    plain = _json(capsys, "estimate", "gemm", "--m", "33", "--k", "70", "--n", "20", "--rows",
                  "8", "--cols", "4", "--config", TINY, "--json")
    assert plain["rtl_counters"] == program_cycles(compile_gemm(33, 70, 20, hw), hw)
    assert out["hardware"] == {"rows": 8, "cols": 4}
    for key in ("utilization", "sram_bytes", "sram_reads", "sram_writes", "energy_pj",
                "host_bytes", "dram_bytes", "busy", "energy_breakdown_pj"):
        assert key in out
    assert set(out["sram_bytes"]) == {"act", "wgt", "acc", "vmem", "pmem"}
    assert out["utilization"] == pytest.approx(33 * 70 * 20 / (ref["total"] * 8 * 4))


def test_gemm_human(capsys):
    assert main(["estimate", "gemm", "--m", "16", "--k", "16", "--n", "16"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("GEMM 16x16 @ 16x16 on a 16x16 array")
    assert "in: weights/constants" in out and "energy breakdown" in out


def test_layer_json_segments_and_layers(capsys):
    one = _json(capsys, "estimate", "layer", "--config", TINY, "--segments", "1", "--json")
    three = _json(capsys, "estimate", "layer", "--config", TINY, "--segments", "3", "--json")
    assert three["cycles"] == sum(three["per_segment_cycles"])
    assert three["per_segment_cycles"][0] == one["cycles"]
    assert three["segments"] == 3 and three["layers"] == 2 and "rtf" in three
    for key in ("weights", "state", "preload", "resident", "energy_pj", "sram_bytes"):
        assert key in three
    every = _json(capsys, "estimate", "layer", "--config", TINY, "--segments", "3",
                  "--layers", "all", "--json")
    assert every["cycles"] == three["cycles"]
    first = _json(capsys, "estimate", "layer", "--config", TINY, "--segments", "3",
                  "--layers", "1", "--json")
    assert first["layers"] == 1 and first["cycles"] < three["cycles"]


def test_model_json_and_fold_override(capsys):
    out = _json(capsys, "estimate", "model", "--config", TINY, "--fold", "1", "--json")
    assert out["layers"] == 2 and out["rtf"] > 0 and out["weights"] == "streamed"
    two = _json(capsys, "estimate", "model", "--config", TINY, "--json")
    assert two["weight_bytes_unique"] < out["weight_bytes_unique"]
    assert two["weights"] == "resident" and "ops" not in two


def test_model_human_with_ops(capsys):
    assert main(["estimate", "model", "--config", TINY, "--ops"]) == 0
    out = capsys.readouterr().out
    assert "real-time factor" in out and "steady-state segment 2" in out
    assert all(op in out for op in ("MATMUL", "REQUANT", "VSOFTMAX", "VLN", "MTRANS"))
    est = _json(capsys, "estimate", "model", "--config", TINY, "--ops", "--json")
    assert sum(o["count"] for o in est["ops"]) + 2 == est["instructions"]  # + CONFIG, DONE


def test_compare_fold_table_json_and_plot(capsys, tmp_path):
    png = tmp_path / "fold.png"
    rep = _json(capsys, "estimate", "model", "--config", BASE, "--compare-fold", "2,4",
                "--plot", str(png), "--json")
    assert rep["folds"] == [1, 2, 4]
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert rep["plot"] == str(png)
    m = rep["metrics"]
    assert rep["reduction_vs_fold1"]["weight_bytes"]["2"] == pytest.approx(
        1 - m["weight_bytes"]["2"] / m["weight_bytes"]["1"])
    assert main(["estimate", "model", "--config", BASE, "--compare-fold", "1,2,4"]) == 0
    text = capsys.readouterr().out
    row = next(line for line in text.splitlines() if line.startswith("constant bytes"))
    assert row.split()[-2:] == [
        f"{-100 * rep['reduction_vs_fold1']['weight_bytes'][f]:+.1f}%" for f in ("2", "4")]


@pytest.mark.parametrize("argv,needle", [
    (["estimate", "gemm", "--m", "4", "--k", "4", "--n", "4", "--config", "nope.toml"],
     "not found"),
    (["estimate", "gemm", "--m", "4", "--k", "4", "--n", "4", "--rows", "65"], "rows"),
    (["estimate", "layer", "--config", TINY, "--fold", "3"], "fold_factor"),
    (["estimate", "layer", "--config", TINY, "--layers", "3"], "layers=3"),
    (["estimate", "model", "--config", TINY, "--plot", "x.png"], "--compare-fold"),
    (["estimate", "model", "--config", TINY, "--compare-fold", "1,3"], "fold_factor"),
    (["estimate", "model", "--config", TINY, "--energy-table", "missing.toml"], "not found"),
    (["estimate", "model", "--config", TINY, "--compare-fold", "2", "--plot",
      "/no/such/dir/x.png"], "does not exist"),
])
def test_user_errors_exit_2(capsys, argv, needle):
    assert main(argv) == 2
    err = capsys.readouterr()
    assert err.out == "" and needle in err.err and "error:" in err.err


def test_bad_energy_table_key(capsys, tmp_path):
    f = tmp_path / "t.toml"
    f.write_text("sram = 1\n")
    assert main(["estimate", "model", "--config", TINY, "--energy-table", str(f)]) == 2
    assert "unknown key 'sram'" in capsys.readouterr().err


def test_energy_table_override_changes_dram_energy(capsys, tmp_path):
    f = tmp_path / "t.toml"
    f.write_text("dram_pj_per_64b = 2600.0\n")
    lo = _json(capsys, "estimate", "model", "--config", TINY, "--json")
    hi = _json(capsys, "estimate", "model", "--config", TINY, "--energy-table", str(f),
               "--json")
    assert hi["energy_breakdown_pj"]["dram"] == pytest.approx(
        2 * lo["energy_breakdown_pj"]["dram"])
    assert hi["cycles"] == lo["cycles"]


@pytest.mark.parametrize("argv", [["estimate", "gemm", "--m", "0", "--k", "1", "--n", "1"],
                                  ["estimate", "layer", "--segments", "0"],
                                  ["estimate", "layer", "--layers", "x"],
                                  ["estimate", "model", "--compare-fold", "1,x"]])
def test_argument_errors_exit_2(argv):
    with pytest.raises(SystemExit) as e:
        main(argv)
    assert e.value.code == 2


def test_estimate_reports_its_time_and_which_cache_answered(capsys, tmp_path, monkeypatch):
    import json

    from sim.cli import main
    monkeypatch.setenv("FOLDACCEL_BUILD_DIR", str(tmp_path))   # an empty disk cache
    argv = ["estimate", "gemm", "--m", "40", "--k", "72", "--n", "24", "--json"]

    def run(*extra):
        assert main([*argv, *extra]) == 0
        return json.loads(capsys.readouterr().out)

    cold = run()
    assert cold["cache"] == "none" and cold["estimate_s"] > 0
    warm = run()
    assert warm["cache"] == "memory" and warm["cycles"] == cold["cycles"]
    from sim.perf.gemm import _cached
    _cached.cache_clear()
    assert run()["cache"] == "disk"
    monkeypatch.setenv("FOLDACCEL_PERF_CACHE", "0")
    off = run()
    assert off["cache"] == "none" and off["cycles"] == cold["cycles"]
