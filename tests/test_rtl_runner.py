"""The RTL runner: Verilog post-processing, build keys, build errors, run directories,
waveforms and build progress."""

import io
import logging
import os
import re
import shutil
import sys
import threading
import time
from pathlib import Path

import pytest

from sim.rtl.runner import RtlDesign, compact_memory_init
from sim.rtl.toolchain import find_toolchain

ZEROED = """module m(clk);
  reg [127:0] mem [3:0];
  initial begin
    mem[0] = 128'h00000000000000000000000000000000;
    mem[1] = 128'h00000000000000000000000000000000;
    mem[2] = 128'h00000000000000000000000000000000;
    mem[3] = 128'h00000000000000000000000000000000;
  end
  reg [7:0] \\lut.rom  [1:0];
  initial begin
    \\lut.rom [0] = 8'h00;
    \\lut.rom [1] = 8'h2a;
  end
  reg [7:0] gap [2:0];
  initial begin
    gap[0] = 8'h00;
    gap[2] = 8'h00;
  end
endmodule"""


def test_zero_init_becomes_one_loop():
    out = compact_memory_init(ZEROED)
    assert "for (i = 0; i < 4; i = i + 1) mem[i] = 128'h0;" in out
    assert "mem[0] = " not in out and "mem[3] = " not in out
    assert out.count("initial begin : foldaccel_zero_init_") == 1


def test_non_zero_or_sparse_init_is_kept():
    out = compact_memory_init(ZEROED)
    assert "\\lut.rom [1] = 8'h2a;" in out and "\\lut.rom [0] = 8'h00;" in out
    assert "gap[0] = 8'h00;" in out and "gap[2] = 8'h00;" in out


def test_text_without_zero_blocks_is_unchanged():
    text = ZEROED.split("  reg [7:0] \\lut.rom")[0].replace("128'h000", "128'h100") + "endmodule"
    assert compact_memory_init(text) == text


def test_build_key_covers_sources_flags_and_opt():
    tc = find_toolchain()
    base = RtlDesign("top", {"a.v": "module top; endmodule"})
    variants = [
        RtlDesign("top", {"a.v": "module top; endmodule // x"}),
        RtlDesign("top", {"a.v": "module top; endmodule"}, build_args=("-DX",)),
        RtlDesign("top", {"a.v": "module top; endmodule"}, timing=True),
        RtlDesign("top", {"a.v": "module top; endmodule"}, opt="-O0"),
    ]
    keys = {base.key(tc, "")} | {v.key(tc, "") for v in variants} | {base.key(tc, "fst")}
    assert len(keys) == 6
    assert base.key(tc, "") == RtlDesign("top", {"a.v": "module top; endmodule"}).key(tc, "")


def test_fresh_build_root_is_temporary_and_restores(monkeypatch, tmp_path):
    from sim.rtl.runner import build_root, fresh_build_root

    monkeypatch.setenv("FOLDACCEL_BUILD_DIR", str(tmp_path / "mine"))
    with fresh_build_root() as root:
        assert build_root() == root and root.is_dir() and root != tmp_path / "mine"
    assert build_root() == tmp_path / "mine"
    assert not root.exists()
    monkeypatch.delenv("FOLDACCEL_BUILD_DIR")
    with fresh_build_root():
        pass
    assert "FOLDACCEL_BUILD_DIR" not in os.environ


RESULTS_XML = """<?xml version="1.0" encoding="UTF-8"?>
<testsuites><testsuite name="all">
  <testcase name="good" classname="m"><property name="sim_time_duration" value="12.5"/></testcase>
  <testcase name="bad" classname="m"><failure message="mismatch at C[0,1]"/></testcase>
  <testcase name="later" classname="m"><skipped message="not this suite"/></testcase>
</testsuite></testsuites>
"""


def test_results_distinguish_passed_failed_and_skipped(tmp_path):
    from sim.rtl.runner import RunResult, parse_results

    xml = tmp_path / "results.xml"
    xml.write_text(RESULTS_XML)
    tests = parse_results(xml)
    assert [(t.name, t.status) for t in tests] == [("good", "passed"), ("bad", "failed"),
                                                   ("later", "skipped")]
    assert tests[0].sim_time_ns == 12.5 and tests[1].message == "mismatch at C[0,1]"
    assert not RunResult(tests).ok
    only_good = RunResult([tests[0]], expected=("good",))
    assert only_good.ok
    skipped = RunResult([tests[0], tests[2]])
    assert not skipped.ok and "SKIPPED later: not this suite" in skipped.summary()


def test_an_expected_test_that_did_not_run_fails_the_suite():
    from sim.rtl.runner import RunResult, TestOutcome

    result = RunResult([TestOutcome("corners", "passed")], expected=("corners", "watchdog"))
    assert result.missing == ["watchdog"]
    assert not result.ok
    assert "NOT RUN watchdog" in result.summary()


# --- build failures: the first error, not the log's tail ------------------------------------

GXX_LOG = """- V e r i l a t i o n   R e p o r t: ...
make: Entering directory '/b'
c++ -I. -c -o Vtop__ALL.o Vtop__ALL.cpp
Vtop___024root__0.cpp:12:5: error: 'foo' was not declared in this scope
   12 |     foo();
      |     ^~~
Vtop___024root__0.cpp:20:1: error: expected ';' before '}' token
make: *** [Vtop.mk:60: Vtop__ALL.o] Error 1
""" + "\n".join(f"noise {i}" for i in range(40))


def test_build_failure_names_the_first_compiler_error(tmp_path):
    from sim.rtl.runner import build_failure

    log = tmp_path / "build.log"
    log.write_text(GXX_LOG)
    msg = build_failure(log)
    assert "error: 'foo' was not declared" in msg and "    foo();" in msg
    assert f"line 4 of {log}" in msg and "1 more error line(s)" in msg
    assert "C++ compile" in msg and "noise" not in msg
    log.write_text("\n".join(f"line {i}" for i in range(50)))
    assert "no error line found" in build_failure(log) and "line 49" in build_failure(log)
    assert "no build log" in build_failure(tmp_path / "missing.log")


@pytest.mark.rtl
def test_verilog_syntax_error_shows_the_verilator_error(monkeypatch, tmp_path):
    from sim.rtl.runner import RtlBuildError, build

    monkeypatch.setenv("FOLDACCEL_BUILD_DIR", str(tmp_path))
    bad = RtlDesign("broken", {"broken.v": "module broken(input clk);\n  wire x = ;\nendmodule\n"})
    with pytest.raises(RtlBuildError) as e:
        build(bad)
    msg = str(e.value)
    first = next(line for line in msg.splitlines() if "%Error" in line)
    assert "broken.v:2:" in first and "syntax error" in first
    assert "wire x = ;" in msg  # Verilator's source excerpt, the context after the error
    assert "Exiting due to" not in msg.split("%Error", 1)[0]
    log = Path(re.search(r"of (\S+build\.log)", msg).group(1))
    assert log.is_file() and "%Error" in log.read_text()  # the log stays on disk
    assert len(msg.splitlines()) <= 6


@pytest.mark.rtl
def test_cxx_failure_shows_the_compiler_error(monkeypatch, tmp_path):
    from sim.rtl.runner import RtlBuildError, build

    monkeypatch.setenv("FOLDACCEL_BUILD_DIR", str(tmp_path))
    design = RtlDesign("cxxfail", {"cxxfail.v": "module cxxfail(input clk);\nendmodule\n"},
                       build_args=("-CFLAGS", "-includefoldaccel_no_such_header.h"))
    with pytest.raises(RtlBuildError) as e:
        build(design)
    msg = str(e.value)
    assert "the C++ compile/link (make)" in msg
    assert "fatal error: foldaccel_no_such_header.h" in msg.splitlines()[1]
    assert not list(tmp_path.glob("rtl/cxxfail-*/.complete"))


# --- run scratch directories and waveforms --------------------------------------------------

def test_keep_runs_override(monkeypatch):
    from sim.rtl.runner import keep_runs_requested

    monkeypatch.delenv("FOLDACCEL_KEEP_RUNS", raising=False)
    assert not keep_runs_requested() and keep_runs_requested(True)
    for value, kept in (("1", True), ("yes", True), ("0", False), ("", False)):
        monkeypatch.setenv("FOLDACCEL_KEEP_RUNS", value)
        assert keep_runs_requested() is kept


def test_waves_target_checks_the_path_before_the_run(monkeypatch, tmp_path):
    from sim.rtl.runner import ToolchainError, waves_target

    monkeypatch.setenv("FOLDACCEL_BUILD_DIR", str(tmp_path / "b"))
    with pytest.raises(ToolchainError, match=r"nowhere does not exist.*fix:"):
        waves_target("top", "vcd", tmp_path / "nowhere" / "w.vcd")
    with pytest.raises(ToolchainError, match="is a directory"):
        waves_target("top", "vcd", tmp_path)
    assert waves_target("top", "vcd", tmp_path / "w.vcd") == tmp_path / "w.vcd"
    first, second = waves_target("top", "fst", None), waves_target("top", "fst", None)
    assert first.parent == tmp_path / "b" / "waves" and first != second
    assert first.name.startswith("top-") and first.suffix == ".fst"


def _pe_run(**kw):
    from sim.rtl.designs import pe_design
    from sim.rtl.runner import run_cocotb

    return run_cocotb(pe_design(), "cocotb_tests.tb_pe", testcase="random_stream",
                      env={"FOLDACCEL_PE_CYCLES": "50"}, **kw)


@pytest.mark.rtl
def test_run_dir_removed_after_success_kept_on_request_or_failure(monkeypatch):
    monkeypatch.delenv("FOLDACCEL_KEEP_RUNS", raising=False)
    done = _pe_run()
    assert done.ok and not done.kept and not done.run_dir.exists()
    assert "run directory removed" in done.summary()
    kept = _pe_run(keep_runs=True)
    assert kept.kept and kept.log_file.is_file() and (kept.run_dir / "results.xml").is_file()
    monkeypatch.setenv("FOLDACCEL_KEEP_RUNS", "1")
    by_env = _pe_run()
    assert by_env.kept and by_env.run_dir.is_dir()
    monkeypatch.delenv("FOLDACCEL_KEEP_RUNS")
    failed = _pe_run(expect=["random_stream", "not_a_test"])
    assert not failed.ok and failed.kept and failed.log_file.is_file()
    assert str(failed.log_file) in failed.summary()
    for result in (kept, by_env, failed):
        shutil.rmtree(result.run_dir)


@pytest.mark.rtl
def test_waveform_survives_the_cleanup(tmp_path):
    result = _pe_run(waves_path=tmp_path / "pe.vcd")
    assert result.ok and not result.run_dir.exists()
    assert result.waves_file == tmp_path / "pe.vcd" and result.waves_file.stat().st_size > 0
    default = _pe_run(waves=True)
    assert default.waves_file.parent.name == "waves" and default.waves_file.stat().st_size > 0
    default.waves_file.unlink()


@pytest.mark.rtl
def test_run_jobs_cleans_up_only_after_good_jobs():
    from hw.compiler import compile_gemm
    from model.config import HardwareConfig
    from sim.cli.rtl import random_operands
    from sim.rtl.designs import SMALL_HW
    from sim.rtl.jobs import Job, run_jobs
    from sim.rtl.runner import build_root

    hw = HardwareConfig(**SMALL_HW)
    prog = compile_gemm(5, 7, 4, hw)
    din = prog.pack_inputs(*random_operands(5, 7, 4, 1, False, False)[:2])
    runs = build_root() / "runs"
    before = set(runs.glob("*")) if runs.is_dir() else set()
    records, result = run_jobs(hw, [Job(prog.words(), din, 10**5)])
    assert records[0].ok and not result.run_dir.exists()
    assert set(runs.glob("*")) == before
    records, result = run_jobs(hw, [Job(prog.words(), din, 10**5)], keep_runs=True)
    assert result.run_dir.is_dir() and len(set(runs.glob("jobs-*")) - before) == 1
    records, failed = run_jobs(hw, [Job(prog.words(), din, 3)])  # watchdog
    assert not records[0].ok and failed.log_file.is_file()
    for path in set(runs.glob("*")) - before:
        shutil.rmtree(path)


# --- build progress --------------------------------------------------------------------------

class _Tty(io.StringIO):
    def isatty(self):
        return True


def _fake_build_dir(tmp_path):
    (tmp_path / "Vtop_classes.mk").write_text(
        "VM_PARALLEL_BUILDS = 1\nVM_CLASSES_FAST += \\\n  Vtop \\\n  Vtop__0 \\\n\n"
        "VM_CLASSES_SLOW += \\\n  Vtop__Slow \\\n\nVM_GLOBAL_FAST += \\\n  verilated \\\n\n")
    (tmp_path / "Vtop.mk").write_text("VM_USER_CLASSES = \\\n  verilator \\\n\n")
    (tmp_path / "Vtop.o").write_bytes(b"")


def test_build_progress_counts_objects_on_a_terminal(monkeypatch, tmp_path):
    from sim.rtl import runner

    assert runner._build_phase(tmp_path) == "Verilator is generating C++"
    _fake_build_dir(tmp_path)
    assert runner._object_total(tmp_path) == 5
    assert runner._build_phase(tmp_path) == "compiled 1/5 objects"
    err = _Tty()
    monkeypatch.setattr(sys, "stderr", err)
    with runner._build_progress(tmp_path, "building top"):
        time.sleep(0.8)
    out = err.getvalue()
    assert "building top, compiled 1/5 objects [00:0" in out
    assert not [t for t in threading.enumerate() if t.name == "foldaccel-build-progress"]


def test_build_progress_silent_off_terminal_and_stops_on_errors(monkeypatch, tmp_path):
    from sim.rtl import runner

    err = io.StringIO()
    monkeypatch.setattr(sys, "stderr", err)
    level = runner.log.level
    runner.log.setLevel(logging.WARNING)
    try:
        with runner._build_progress(tmp_path, "building top"):
            time.sleep(0.1)
    finally:
        runner.log.setLevel(level)
    assert err.getvalue() == ""
    monkeypatch.setattr(sys, "stderr", _Tty())
    with pytest.raises(KeyboardInterrupt), runner._build_progress(tmp_path, "building top"):
        raise KeyboardInterrupt
    assert not [t for t in threading.enumerate() if t.name == "foldaccel-build-progress"]
