"""`foldaccel doctor`: report the toolchain and prove that an RTL build runs."""

from __future__ import annotations

import argparse
import contextlib
import importlib.metadata
import platform
import time

from sim.cli.common import add_json_arg, emit, format_table


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("doctor", help="check the toolchain and build/run the PE testbench once",
                       description="Print versions of python, torch, amaranth, cocotb, "
                       "Verilator and g++, then build the MAC PE with Verilator and run its "
                       "cocotb testbench. Exit 1 when the RTL flow does not work.")
    add_json_arg(p)
    p.add_argument("--fresh", action="store_true",
                   help="build in a temporary directory instead of using the build cache")
    p.set_defaults(func=run)


def _version(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def check(fresh: bool = False) -> dict:
    """Versions and an end-to-end RTL check; never raises for toolchain problems."""
    from sim.rtl.toolchain import ToolchainError, find_toolchain

    report: dict = {
        "python": platform.python_version(),
        "torch": _version("torch"),
        "numpy": _version("numpy"),
        "amaranth": _version("amaranth"),
        "cocotb": _version("cocotb"),
        "verilator_version": None,
        "gxx": None,
        "toolchain": None,
        "rtl_build_ok": False,
        "rtl_error": None,
        "rtl_seconds": None,
    }
    try:
        tc = find_toolchain()
        report["verilator_version"] = tc.verilator_version
        report["gxx"] = tc.gxx_version
        report["toolchain"] = tc.describe()
    except ToolchainError as e:
        report["rtl_error"] = str(e)
        return report
    from sim.rtl.designs import pe_design
    from sim.rtl.runner import RtlBuildError, RtlRunError, fresh_build_root, run_cocotb

    t0 = time.monotonic()
    try:
        with fresh_build_root("foldaccel-doctor-") if fresh else contextlib.nullcontext():
            result = run_cocotb(pe_design(), "sim.rtl.pe_check",
                                env={"FOLDACCEL_SEED": "1", "FOLDACCEL_PE_CYCLES": "2000"})
        report["rtl_build_ok"] = result.ok
        if not result.ok:
            report["rtl_error"] = result.summary()
    except (ToolchainError, RtlBuildError, RtlRunError) as e:
        report["rtl_error"] = str(e)
    report["rtl_seconds"] = round(time.monotonic() - t0, 2)
    return report


def run(args: argparse.Namespace) -> int:
    report = check(args.fresh)
    if args.json:
        emit(report)
    else:
        rows = [[k, report[k]] for k in ("python", "torch", "numpy", "amaranth", "cocotb",
                                         "verilator_version", "gxx")]
        rows.append(["RTL build + PE testbench", "ok" if report["rtl_build_ok"] else "FAILED"])
        print(format_table(["component", "version / status"], rows))
        if report["rtl_error"]:
            print(f"\nRTL check failed: {report['rtl_error']}")
    return 0 if report["rtl_build_ok"] else 1
