"""Benchmark: how fast the performance model answers, and against an RTL simulation.

``estimator-speed`` times, in one process on one machine:

* one GEMM estimate cold (compile + timing model + traffic), from the on-disk cache, and from
  the in-memory cache;
* the whole ``configs/emformer_base.toml`` model (20 layers, one segment: the layer
  compiler's program, timed) cold, from the on-disk cache and from the in-memory cache;
* the Verilator simulation of the same GEMM (cached RTL build; its counters must equal the
  estimate), when the RTL flow is available — the ratio is RTL time / estimator time.
"""

from __future__ import annotations

from sim.bench import benchmark, best_time, perf_caches_off

GEMM = (64, 256, 64)


def _rtl_gemm(hw, m: int, k: int, n: int):
    """(simulation seconds, RTL counters) of the GEMM on the Verilated RTL, or a reason."""
    try:
        import numpy as np

        from hw.compiler import compile_gemm
        from sim.rtl.jobs import Job, run_jobs
    except ImportError as e:
        return None, f"RTL runner not available ({e})"
    prog = compile_gemm(m, k, n, hw, bias=True, requant=True)
    rng = np.random.default_rng(0)
    a, b = rng.integers(-128, 128, (m, k)), rng.integers(-128, 128, (k, n))
    din = prog.pack_inputs(a, b, rng.integers(-(2**20), 2**20, n),
                           rng.integers(16384, 32768, n), np.full(n, 24))
    try:
        run_jobs(hw, [Job(prog.words(), din, 10**7)])  # build (cached) and warm up
        records, _ = run_jobs(hw, [Job(prog.words(), din, 10**7)])
    except Exception as e:  # noqa: BLE001 - report any toolchain problem in the table
        return None, f"RTL run failed: {type(e).__name__}: {e}"[:120]
    return records[0].wall_s, records[0].counters


@benchmark("estimator-speed")
def estimator_speed():
    from model.config import CONFIG_DIR, load_config
    from sim.perf import gemm as g
    from sim.perf.estimate import estimate_gemm, estimate_model

    hw = load_config(CONFIG_DIR / "demo.toml").hardware
    m, k, n = GEMM
    cold = best_time(lambda: g.gemm_counts_uncached(m, k, n, hw, bias=True), repeat=3)
    g.gemm_counts(m, k, n, hw, bias=True)           # fill the disk entry

    def from_disk():
        g._cached.cache_clear()
        g.gemm_counts(m, k, n, hw, bias=True)
    disk = best_time(from_disk, repeat=5)
    warm = best_time(lambda: estimate_gemm(m, k, n, hw, bias=True, requant=True), repeat=200)

    from sim.perf import layer as lay
    base = load_config(CONFIG_DIR / "emformer_base.toml")

    def model_cold():
        lay._cached.cache_clear()
        estimate_model(base)
    with perf_caches_off():
        model_cold_s = best_time(model_cold, repeat=3)
    estimate_model(base)                            # fill the disk entry

    def model_disk():
        lay._cached.cache_clear()
        estimate_model(base)
    model_disk_s = best_time(model_disk, repeat=5)
    model_warm_s = best_time(lambda: estimate_model(base), repeat=20)

    est = estimate_gemm(m, k, n, hw, bias=True, requant=True)
    rtl_s, rtl = _rtl_gemm(hw, m, k, n)

    def vs_rtl(t: float) -> str:
        return f"{rtl_s / t:,.0f}x faster" if rtl_s else "-"
    label = f"GEMM {m}x{k}x{n} (bias, requant) on {hw.rows}x{hw.cols}"
    rows = [
        [f"{label}: cold (compile + timing + counts)", f"{cold * 1e3:.2f} ms",
         f"{1 / cold:,.0f}", vs_rtl(cold)],
        [f"{label}: disk cache", f"{disk * 1e6:.0f} us", f"{1 / disk:,.0f}", vs_rtl(disk)],
        [f"{label}: memory cache", f"{warm * 1e6:.1f} us", f"{1 / warm:,.0f}", vs_rtl(warm)],
        ["emformer_base, 20 layers, one segment: cold (compile + timing + counts)",
         f"{model_cold_s * 1e3:.0f} ms", f"{1 / model_cold_s:,.2f}", "-"],
        ["emformer_base, 20 layers, one segment: disk cache", f"{model_disk_s * 1e3:.1f} ms",
         f"{1 / model_disk_s:,.0f}", "-"],
        ["emformer_base, 20 layers, one segment: memory cache",
         f"{model_warm_s * 1e3:.2f} ms", f"{1 / model_warm_s:,.0f}", "-"],
    ]
    if rtl_s is not None:
        same = "==" if rtl == est["rtl_counters"] else "!= (MISMATCH)"
        rows.append([f"{label}: Verilator RTL simulation ({rtl['total']:,} cycles, "
                     f"counters {same} estimate)", f"{rtl_s * 1e3:.0f} ms", f"{1 / rtl_s:,.1f}",
                     "1x"])
    else:
        rows.append([f"{label}: Verilator RTL simulation", "-", "-", rtl])
    return ("Estimator speed (estimates per second; RTL = simulation time only, cached build)",
            ["what", "time", "per second", "vs RTL simulation"], rows)


#: (n, target seconds) of ``estimator-targets``: cold n^3 GEMMs (issue 13: <= 1 ms up to
#: 1024^3, <= 10 ms up to 4096^3).
GEMM_TARGETS = [(64, 1e-3), (128, 1e-3), (256, 1e-3), (512, 1e-3), (1024, 1e-3),
                (2048, 10e-3), (4096, 10e-3)]
#: Target for the whole emformer_base model (20 layers, one segment), cold.
MODEL_TARGET = 0.1


@benchmark("estimator-targets")
def estimator_targets():
    from model.config import CONFIG_DIR, HardwareConfig, load_config
    from sim.perf.estimate import estimate_gemm, estimate_model

    hw = HardwareConfig()
    rows = []
    with perf_caches_off():
        for n, target in GEMM_TARGETS:
            t = best_time(lambda n=n: estimate_gemm(n, n, n, hw), repeat=2 if n < 4096 else 1)
            est = estimate_gemm(n, n, n, hw)
            rows.append([f"GEMM {n}^3 on {hw.rows}x{hw.cols}", f"{t * 1e3:,.1f} ms",
                         f"<= {target * 1e3:g} ms", "yes" if t <= target else "no",
                         f"{est['instructions']:,}", f"{est['cycles']:,}"])
        base = load_config(CONFIG_DIR / "emformer_base.toml")
        t = best_time(lambda: estimate_model(base), repeat=1)
        est = estimate_model(base)
    rows.append([f"emformer_base, {base.model.n_layers} layers, one segment",
                 f"{t * 1e3:,.0f} ms", f"<= {MODEL_TARGET * 1e3:g} ms",
                 "yes" if t <= MODEL_TARGET else "no", f"{est['instructions']:,}",
                 f"{est['cycles']:,}"])
    return ("Cold estimate time (caches off; compile + timing + counts, exact) against the "
            "issue-13 targets", ["workload", "time", "target", "met", "program instructions",
                                 "cycles"], rows)
