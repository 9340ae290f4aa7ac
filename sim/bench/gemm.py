"""Accelerator benchmarks (``make bench``): GEMM cycles vs the MAC bound, simulation speed.

* ``gemm-cycles``: RTL total cycles (host transfers included) of four GEMMs on the default
  16x16 array, divided by the MAC bound ``M*K*N / (rows*cols)``, beside the timing model.
* ``sim-speed``: simulated cycles per second of a long GEMM through the project's runner
  (cocotb, clock inside the model, Python asleep) divided by a plain Verilator C++ harness
  that drives the same Verilog (``accel_host``: harness + host memories) with the same
  program and data.
"""

from __future__ import annotations

import json
import logging
import subprocess
import time
from pathlib import Path

import numpy as np

from sim.bench import benchmark

log = logging.getLogger("foldaccel.bench")

GEMM_SHAPES = [(16, 64, 64), (32, 128, 128), (64, 256, 64), (128, 128, 128)]
#: target ratio (total cycles / MAC bound) for the two large shapes
TARGET = 1.15
SPEED_SHAPE = (256, 512, 256)


def gemm_cycles_rows(variants=(("int32 out", False, False), ("bias+requant int8", True, True))):
    """Rows of the gemm-cycles table; every shape/variant runs on the RTL in one process."""
    from hw.compiler import compile_gemm
    from hw.timing import program_cycles
    from model.config import HardwareConfig
    from sim.cli.rtl import random_operands
    from sim.rtl.jobs import Job, run_jobs

    hw = HardwareConfig()
    jobs, meta = [], []
    for shape in GEMM_SHAPES:
        for label, bias, requant in variants:
            m, k, n = shape
            prog = compile_gemm(m, k, n, hw, bias=bias, requant=requant)
            a, b, bv, mult, shift = random_operands(m, k, n, 1, bias, requant)
            model = program_cycles(prog, hw)["total"]
            jobs.append(Job(prog.words(), prog.pack_inputs(a, b, bv, mult, shift),
                            4 * model + 10000))
            meta.append((shape, label, model))
    records, _ = run_jobs(hw, jobs)
    rows = []
    for (shape, label, model), rec in zip(meta, records, strict=True):
        m, k, n = shape
        bound = m * k * n / (hw.rows * hw.cols)
        cycles = rec.counters["total"]
        big = m * k * n >= 64 * 256 * 64
        rows.append([f"{m}x{k}x{n}", label, cycles, model, int(bound),
                     round(cycles / bound, 3), f"<= {TARGET}" if big else "-",
                     round(rec.counters["array_busy"] / cycles, 3)])
    return rows


@benchmark("gemm-cycles")
def gemm_cycles():
    header = ["GEMM MxKxN", "variant", "RTL cycles", "model cycles", "MAC bound",
              "cycles/bound", "target", "array busy"]
    return ("16x16 array: total cycles (host transfers included) / MAC bound M*K*N/256",
            header, gemm_cycles_rows())


# ------------------------------------------------------------------------------ sim speed

_MAIN_CPP = r"""
// Plain Verilator harness: same harness Verilog, same program and data as the cocotb run.
#include "Vaccel_host.h"
#include "verilated.h"
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <fstream>
#include <vector>

int main(int argc, char** argv) {
    VerilatedContext ctx;
    Vaccel_host top{&ctx};
    std::ifstream in(argv[1]);
    uint64_t n_instr, n_data, data_words, max_cycles;
    in >> n_instr >> n_data >> data_words >> max_cycles;
    std::vector<uint32_t> iw(n_instr * 4), dw(n_data * data_words);
    for (auto& w : iw) in >> std::hex >> w;
    for (auto& w : dw) in >> std::hex >> w;
    auto tick = [&] { top.clk = 0; top.eval(); top.clk = 1; top.eval(); };
    auto t0 = std::chrono::steady_clock::now();
    top.rst = 1; tick(); tick(); tick(); top.rst = 0;
    top.bd_we = 1;
    for (uint64_t i = 0; i < n_instr; i++) {
        top.bd_sel = 1; top.bd_addr = i;
        for (int j = 0; j < 4; j++) top.bd_wdata[j] = iw[i * 4 + j];
        tick();
    }
    for (uint64_t i = 0; i < n_data; i++) {
        top.bd_sel = 2; top.bd_addr = i;
        for (int j = 0; j < 4; j++)
            top.bd_wdata[j] = j < (int)data_words ? dw[i * data_words + j] : 0;
        tick();
    }
    top.bd_we = 0;
    top.n_instr = n_instr; top.n_data = n_data;
    top.start = 1; tick(); top.start = 0;
    auto t1 = std::chrono::steady_clock::now();
    uint64_t ticks = 0;
    while (!top.finished && ticks < max_cycles) { tick(); ticks++; }
    auto t2 = std::chrono::steady_clock::now();
    uint64_t sum = 1469598103934665603ull;
    for (uint32_t i = 0; i < top.n_out; i++) {
        top.bd_addr = i; top.eval();
        for (int j = 0; j < (int)data_words; j++) {
            sum ^= top.bd_rdata[j];
            sum *= 1099511628211ull;
        }
    }
    auto t3 = std::chrono::steady_clock::now();
    auto s = [](auto a, auto b) { return std::chrono::duration<double>(b - a).count(); };
    std::printf("{\"total\": %u, \"finished\": %d, \"error\": %u, \"n_out\": %u, "
                "\"checksum\": \"%016llx\", \"run_s\": %.6f, \"job_s\": %.6f}\n",
                top.counters[0], (int)top.finished, (unsigned)top.error, top.n_out,
                (unsigned long long)sum, s(t1, t2), s(t0, t3));
    return 0;
}
"""


def output_checksum(dout: np.ndarray) -> str:
    """FNV-1a over the output beats' 32-bit words (same as the C++ harness)."""
    h = 1469598103934665603
    words = np.ascontiguousarray(dout, np.uint8).view("<u4")
    for w in words.reshape(-1):
        h ^= int(w)
        h = (h * 1099511628211) & 0xFFFFFFFFFFFFFFFF
    return f"{h:016x}"


def build_raw_harness(sources: dict[str, str]) -> Path:
    """Compile the C++ harness against the ``accel_host`` module (harness Verilog + host SV,
    cached by content); return the binary."""
    import hashlib

    from sim.rtl.runner import BASE_BUILD_ARGS, build_root
    from sim.rtl.toolchain import activate

    tc = activate()
    files = {name: sources[name] for name in ("accel_harness.v", "accel_host.sv")}
    key = hashlib.sha256(("".join(files.values()) + _MAIN_CPP + tc.verilator_version
                          + tc.makeflags).encode()).hexdigest()[:16]
    bdir = build_root() / "bench" / f"raw-{key}"
    exe = bdir / "obj" / "Vaccel_host"
    if exe.is_file():
        return exe
    bdir.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (bdir / name).write_text(text)
    (bdir / "main.cpp").write_text(_MAIN_CPP)
    cmd = ["verilator", "--cc", "--exe", "--build", "-j", "2", *BASE_BUILD_ARGS,
           "--top-module", "accel_host", "--Mdir", "obj", *files, "main.cpp"]
    t0 = time.monotonic()
    out = subprocess.run(cmd, cwd=bdir, capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(f"raw Verilator harness build failed:\n{out.stderr[-3000:]}")
    log.info("built the plain C++ harness in %.1f s", time.monotonic() - t0)
    return exe


def sim_speed(m: int = SPEED_SHAPE[0], k: int = SPEED_SHAPE[1], n: int = SPEED_SHAPE[2],
              repeats: int = 3) -> dict:
    """Cycles/s through the runner vs a plain C++ harness, same Verilog and stimulus.

    The two engines run alternately ``repeats`` times and each keeps its best time, so a
    burst of load on the machine does not decide the ratio."""
    from hw.compiler import compile_gemm
    from hw.timing import program_cycles
    from model.config import HardwareConfig
    from sim.cli.rtl import random_operands
    from sim.rtl.designs import accel_design
    from sim.rtl.jobs import Job, run_jobs

    hw = HardwareConfig()
    prog = compile_gemm(m, k, n, hw, bias=True, requant=True)
    a, b, bv, mult, shift = random_operands(m, k, n, 7, True, True)
    din = prog.pack_inputs(a, b, bv, mult, shift)
    words = prog.words()
    model = program_cycles(prog, hw)["total"]
    design = accel_design(hw)
    exe = build_raw_harness(dict(design.sources))
    stim = exe.parent.parent / "stimulus.txt"
    data_words = hw.host_bytes_per_cycle // 4
    lines = [f"{len(words)} {len(din)} {data_words} {4 * model + 10000}"]
    lines += [" ".join(f"{(w >> (32 * j)) & 0xFFFFFFFF:x}" for j in range(4)) for w in words]
    dv = np.ascontiguousarray(din, np.uint8).view("<u4").reshape(len(din), data_words)
    lines += [" ".join(f"{int(x):x}" for x in row) for row in dv]
    stim.write_text("\n".join(lines) + "\n")
    recs, raws = [], []
    for _ in range(repeats):
        records, result = run_jobs(hw, [Job(words, din, 4 * model + 10000)])
        if not records[0].ok:
            raise RuntimeError(f"runner: {records[0].describe(words)}")
        recs.append(records[0])
        raws.append(json.loads(subprocess.run([str(exe), str(stim)], capture_output=True,
                                              text=True, check=True).stdout))
    rec = min(recs, key=lambda r: r.wall_s)
    raw = min(raws, key=lambda r: r["job_s"])
    run_only = min(r.phases_s["run"] for r in recs)
    raw_run_only = min(r["run_s"] for r in raws)
    cycles = rec.counters["total"]
    same = (raw["total"] == cycles and raw["n_out"] == len(rec.dout)
            and raw["checksum"] == output_checksum(rec.dout))
    ours = cycles / rec.wall_s
    theirs = cycles / raw["job_s"]
    return {
        "gemm": [m, k, n], "cycles": cycles, "model_cycles": model,
        "cycles_per_s": round(ours), "raw_cycles_per_s": round(theirs),
        "ratio": round(ours / theirs, 3),
        "runner_job_s": round(rec.wall_s, 3), "raw_job_s": round(raw["job_s"], 3),
        "run_only_cycles_per_s": round(cycles / run_only),
        "raw_run_only_cycles_per_s": round(cycles / raw_run_only),
        "run_only_ratio": round(raw_run_only / run_only, 3),
        "same_result": same, "repeats": repeats,
    }


@benchmark("sim-speed")
def sim_speed_bench():
    r = sim_speed()
    rows = [["runner (cocotb, clock in SV wrapper, Python asleep)", r["cycles_per_s"],
             r["runner_job_s"], r["ratio"], r["run_only_cycles_per_s"], r["run_only_ratio"]],
            ["plain Verilator C++ harness", r["raw_cycles_per_s"], r["raw_job_s"], 1.0,
             r["raw_run_only_cycles_per_s"], 1.0]]
    title = (f"simulation speed, GEMM {'x'.join(map(str, r['gemm']))} ({r['cycles']} cycles; "
             f"job = preload + run + read-back; best of {r['repeats']} alternating runs; "
             f"same output: {r['same_result']}; target ratio >= 0.75)")
    return title, ["engine", "cycles/s (job)", "job s", "ratio", "cycles/s (run only)",
                   "ratio (run only)"], rows
