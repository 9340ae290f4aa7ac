"""`foldaccel rtl gemm` and `foldaccel bench`: JSON contract, acceptance GEMM, clean errors."""

import json

import pytest

from hw.compiler import compile_gemm
from hw.timing import program_cycles
from model.config import HardwareConfig
from sim.cli import main


def _json(capsys, argv):
    code = main(argv)
    out = capsys.readouterr().out
    return code, json.loads(out)


@pytest.mark.rtl
def test_acceptance_gemm_37x100x23(capsys):
    code, res = _json(capsys, ["rtl", "gemm", "--m", "37", "--k", "100", "--n", "23",
                               "--json"])
    assert code == 0
    assert res["mismatches"] == 0 and res["isa_sim_mismatches"] == 0
    expected = program_cycles(compile_gemm(37, 100, 23, HardwareConfig()), HardwareConfig())
    assert res["cycles"] == expected["total"] == res["counters"]["total"]
    assert res["counters"] == expected and res["model_matches_rtl"] is True
    assert res["macs"] == 37 * 100 * 23
    assert res["utilization"] == pytest.approx(res["macs"] / (256 * res["cycles"]))
    assert res["wall_s"] > 0 and res["in_beats"] > 0 and res["out_beats"] > 0


@pytest.mark.rtl
def test_requantized_gemm_with_bias_and_relu(capsys):
    code, res = _json(capsys, ["rtl", "gemm", "--m", "20", "--k", "300", "--n", "40",
                               "--bias", "--requant", "--relu", "--seed", "5", "--json"])
    assert code == 0 and res["mismatches"] == 0
    prog = compile_gemm(20, 300, 40, HardwareConfig(), bias=True, requant=True, relu=True)
    assert res["cycles"] == program_cycles(prog, HardwareConfig())["total"]


@pytest.mark.parametrize("argv,fragment", [
    (["--m", "4", "--k", "131072", "--n", "4"], "K=131072 can overflow the int32 accumulator"),
    (["--m", "4", "--k", "8", "--n", "4", "--relu"], "--relu needs --requant"),
    (["--m", "0", "--k", "8", "--n", "4"], "M=0 must be a positive integer"),
    (["--m", "4", "--k", "8", "--n", "4", "--rows", "0"], "field 'rows'"),
    (["--m", "4000", "--k", "4000", "--n", "4000"], "host model holds"),
])
def test_user_errors_exit_2(capsys, argv, fragment):
    assert main(["rtl", "gemm", *argv, "--json"]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert fragment in captured.err


@pytest.mark.slow
@pytest.mark.rtl
def test_other_array_shape(capsys):
    code, res = _json(capsys, ["rtl", "gemm", "--m", "30", "--k", "77", "--n", "50",
                               "--rows", "8", "--cols", "4", "--requant", "--json"])
    assert code == 0 and res["mismatches"] == 0 and res["model_matches_rtl"]
    assert (res["rows"], res["cols"]) == (8, 4)


@pytest.mark.slow
@pytest.mark.rtl
def test_bench_sim_speed_json(capsys):
    code, res = _json(capsys, ["bench", "sim-speed", "--m", "64", "--k", "128", "--n", "64",
                               "--json"])
    assert code == 0 and res["same_result"] is True
    for key in ("cycles_per_s", "raw_cycles_per_s", "ratio"):
        assert res[key] > 0


def _runs() -> set[str]:
    from sim.fileio import build_root
    d = build_root() / "runs"
    return {p.name for p in d.iterdir()} if d.is_dir() else set()


@pytest.mark.rtl
def test_scratch_folders_are_removed_unless_kept(capsys):
    argv = ["rtl", "gemm", "--m", "8", "--k", "8", "--n", "8", "--json"]
    before = _runs()
    assert main(argv) == 0
    assert _runs() == before, "a successful run left its scratch folders in build/runs/"
    assert main([*argv, "--keep-runs"]) == 0
    kept = _runs() - before
    assert kept and all(name.startswith(("jobs-", "accel_tb-")) for name in kept)
    import shutil

    from sim.fileio import build_root
    for name in kept:  # the test's own folders
        shutil.rmtree(build_root() / "runs" / name)
    capsys.readouterr()


@pytest.mark.rtl
@pytest.mark.slow  # a tracing build of the accelerator costs ~2.5 min
def test_waves_path(tmp_path, capsys):
    want = tmp_path / "gemm.vcd"
    code, res = _json(capsys, ["rtl", "gemm", "--m", "8", "--k", "8", "--n", "8", "--waves",
                               str(want), "--json"])
    assert code == 0 and res["waves"] == str(want) and want.stat().st_size > 0
