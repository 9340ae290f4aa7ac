"""Benchmark: the estimator's speed against SCALE-Sim 3.0.0 on the same GEMMs.

SCALE-Sim (the systolic-array simulator users compare with) lives in its own virtual
environment, because it needs ``numpy < 2.4``: ``make bench-peers`` (``python -m
sim.bench.peers --setup``) creates it under ``build/peers/venv`` from the package registry.
``estimator-vs-scalesim`` then times, on the same machine and in one run:

* our estimate of each GEMM, cold (compile + timing model + counts, caches off), best of 3;
* SCALE-Sim's simulation of the same GEMM (output-stationary, same array, 64 KiB buffers,
  16 B/cycle interface), timed inside its own process after its import, best of 2;
* the whole ``configs/emformer_base.toml`` model (20 layers, one steady-state segment) cold,
  against SCALE-Sim on the step's GEMMs.

The ratio is SCALE-Sim's time over ours (the issue's target: >= 1000x). SCALE-Sim's cycle
counts are printed for information: its model (no host link, ideal prefetch) is not ours.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

from sim.bench import benchmark, best_time, perf_caches_off
from sim.fileio import build_root

#: What ``make bench-peers`` installs into the peer environment.
PEER_PACKAGES = ("scalesim==3.0.0", "numpy<2.4")
#: GEMMs (M, K, N) of the comparison: small, square, and a layer-like skinny one. SCALE-Sim
#: takes ~0.1 s on 64^3, ~0.8 s on 128^3, ~10 s on 256^3 and ~320 s on 512^3 here, which
#: bounds the grid.
GEMMS = [(64, 64, 64), (128, 128, 128), (256, 256, 256), (5, 512, 512), (5, 512, 2048)]
#: Target from the issue: cold estimate at least this many times faster than SCALE-Sim.
TARGET = 1000

# Runs inside the peer environment: one SCALE-Sim run per topology row, timed after import.
_RUNNER = r'''
import contextlib, io, json, sys, time
from scalesim.scale_sim import scalesim
cfg, layout, jobs, repeat = sys.argv[1], sys.argv[2], json.loads(sys.argv[3]), int(sys.argv[4])
out = []
for n, topo in enumerate(jobs):
    best = None
    for r in range(repeat):
        t0 = time.perf_counter()
        with contextlib.redirect_stdout(io.StringIO()):
            s = scalesim(save_disk_space=True, verbose=False, config=cfg, topology=topo,
                         layout=layout, input_type_gemm=True)
            s.run_scale(top_path=f"run{n}_{r}")
        dt = time.perf_counter() - t0
        best = dt if best is None else min(best, dt)
    rep = open(f"run{n}_0/foldaccel_peer/COMPUTE_REPORT.csv").read().splitlines()[1:]
    cycles = sum(int(line.split(",")[1]) for line in rep if line.strip())
    out.append({"seconds": best, "cycles": cycles})
print(json.dumps(out))
'''

_CONFIG = """[general]
run_name = foldaccel_peer

[architecture_presets]
ArrayHeight: {rows}
ArrayWidth: {cols}
IfmapSramSzkB: {act_kib}
FilterSramSzkB: {wgt_kib}
OfmapSramSzkB: {acc_kib}
IfmapOffset: 0
FilterOffset: 10000000
OfmapOffset: 20000000
Bandwidth: {bw}
Dataflow: os
ReadRequestBuffer: 32
WriteRequestBuffer: 32

[layout]
IfmapCustomLayout: False
IfmapSRAMBankBandwidth: 10
IfmapSRAMBankNum: 10
IfmapSRAMBankPort: 2
FilterCustomLayout: False
FilterSRAMBankBandwidth: 10
FilterSRAMBankNum: 10
FilterSRAMBankPort: 2

[sparsity]
SparsitySupport: false
SparseRep: ellpack_block
OptimizedMapping: false
BlockSize: 8
RandomNumberGeneratorSeed: 40

[run_presets]
InterfaceBandwidth: USER
UseRamulatorTrace: False
"""


def peer_python() -> Path:
    """The peer environment's interpreter (``make bench-peers`` creates it)."""
    return build_root() / "peers" / "venv" / "bin" / "python"


def setup() -> int:
    """Create the peer environment (idempotent): a venv with :data:`PEER_PACKAGES`."""
    py = peer_python()
    if not py.is_file():
        subprocess.run([sys.executable, "-m", "venv", str(py.parent.parent)], check=True)
    subprocess.run([str(py), "-m", "pip", "install", "--quiet", *PEER_PACKAGES], check=True)
    print(f"SCALE-Sim environment ready: {py}")
    return 0


def scalesim_times(hw, gemm_lists: list[list[tuple[int, int, int]]], repeat: int = 2
                   ) -> list[dict]:
    """SCALE-Sim's best-of-``repeat`` seconds and total cycles for each list of (M, K, N)
    GEMMs (one topology file each), on ``hw``'s array."""
    with tempfile.TemporaryDirectory(prefix="foldaccel-scalesim-") as tmp:
        d = Path(tmp)
        (d / "scale.cfg").write_text(_CONFIG.format(
            rows=hw.rows, cols=hw.cols, act_kib=hw.act_sram_kib, wgt_kib=hw.wgt_sram_kib,
            acc_kib=hw.acc_sram_kib, bw=hw.host_bytes_per_cycle))
        orders = ",".join(["1"] * 6 + ["0", "1", "2", "0", "1", "2", "0", "1", "2", "3",
                                       "0", "1"])
        topos = []
        for n, gemms in enumerate(gemm_lists):
            names = [f"g{i}" for i in range(len(gemms))]
            (d / f"layout{n}.csv").write_text(
                "Layer name," + ",".join(f"f{i}" for i in range(18)) + ",\n"
                + "".join(f"{nm},{orders},\n" for nm in names))
            (d / f"gemm{n}.csv").write_text(
                "Layer, M, N, K,\n" + "".join(f"{nm}, {m}, {nn}, {k},\n"
                                              for nm, (m, k, nn) in zip(names, gemms,
                                                                        strict=True)))
            topos.append(f"gemm{n}.csv")
        results = []
        for n, topo in enumerate(topos):  # the layout file must list the topology's layers
            r = subprocess.run([str(peer_python()), "-c", _RUNNER, "scale.cfg",
                                f"layout{n}.csv", json.dumps([topo]), str(repeat)],
                               cwd=d, capture_output=True, text=True, check=True)
            results.append(json.loads(r.stdout.strip().splitlines()[-1])[0])
        return results


def _cold(fn, repeat: int = 3) -> float:
    """Best-of-``repeat`` seconds of ``fn()`` with the estimator's caches off."""
    with perf_caches_off():
        return best_time(fn, repeat)


def _ms(s: float) -> str:
    return f"{s * 1e3:,.2f} ms" if s < 1 else f"{s:,.2f} s"


@benchmark("estimator-vs-scalesim")
def estimator_vs_scalesim():
    from hw.layer.compiler import steady_segment
    from model.config import CONFIG_DIR, load_config
    from sim.perf.estimate import estimate_gemm, estimate_model
    from sim.perf.layer import compile_stream

    cfg = load_config(CONFIG_DIR / "emformer_base.toml")
    hw = cfg.hardware
    title = (f"Estimator (cold, caches off) vs SCALE-Sim 3.0.0 on the same GEMMs, {hw.rows}x"
             f"{hw.cols} output-stationary (target >= {TARGET}x faster)")
    header = ["workload", "ours", "SCALE-Sim", "SCALE-Sim / ours", ">= target",
              "our cycles", "SCALE-Sim cycles"]
    ours = [(_cold(lambda g=g: estimate_gemm(*g, hw)), estimate_gemm(*g, hw)["cycles"])
            for g in GEMMS]
    step = compile_stream(cfg).step(steady_segment(cfg.model))
    model_s = _cold(lambda: estimate_model(cfg), repeat=1)
    model_cycles = estimate_model(cfg)["cycles"]
    layer_gemms = step.gemms[:len(step.gemms) // cfg.model.n_layers]
    if not peer_python().is_file():
        note = "not installed: run `make bench-peers`"
        rows = [[f"GEMM {m}x{k}x{n}", _ms(t), note, "-", "-", f"{c:,}", "-"]
                for (m, k, n), (t, c) in zip(GEMMS, ours, strict=True)]
        rows.append(["emformer_base, 20 layers, one segment", _ms(model_s), note, "-", "-",
                     f"{model_cycles:,}", "-"])
        return title, header, rows
    peer = scalesim_times(hw, [[g] for g in GEMMS] + [layer_gemms])
    rows = []
    for (m, k, n), (t, c), p in zip(GEMMS, ours, peer, strict=False):
        ratio = p["seconds"] / t
        rows.append([f"GEMM {m}x{k}x{n}", _ms(t), _ms(p["seconds"]), f"{ratio:,.1f}x",
                     "yes" if ratio >= TARGET else "no", f"{c:,}", f"{p['cycles']:,}"])
    layer_peer = peer[-1]
    n_layers = cfg.model.n_layers
    whole = layer_peer["seconds"] * n_layers
    rows.append([f"emformer_base, {n_layers} layers, one segment ({len(step.gemms)} GEMMs; "
                 f"SCALE-Sim: one layer's {len(layer_gemms)} GEMMs x {n_layers})",
                 _ms(model_s), _ms(whole), f"{whole / model_s:,.1f}x",
                 "yes" if whole / model_s >= TARGET else "no", f"{model_cycles:,}",
                 f"{layer_peer['cycles'] * n_layers:,}"])
    return title, header, rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sim.bench.peers",
                                     description="Set up the peer simulators' environment.")
    parser.add_argument("--setup", action="store_true",
                        help="create build/peers/venv with SCALE-Sim 3.0.0 (default off)")
    args = parser.parse_args(argv)
    return setup() if args.setup else 0


if __name__ == "__main__":
    sys.exit(main())
