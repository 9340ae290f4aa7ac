"""Benchmark: a streaming encoder step on the RTL against its roofline.

``layer-roofline`` runs ``configs/tiny.toml`` and ``configs/demo.toml`` at fold 1, 2 and 4 on
the Verilated accelerator (``sim/rtl/layer_run.py``, bit-exact with the golden model) up to
the first steady-state segment (full memory bank and left-context cache) and divides that
segment's RTL cycles by its roofline (``hw/bounds.py``)

    max(sum over the step's GEMMs of ceil(M/rows) * ceil(N/cols) * K   (the array-tile bound),
        host bytes in / host bytes per cycle, host bytes out / host bytes per cycle)

(target <= 1.10, issue 13). ``configs/emformer_base.toml`` takes minutes per segment on the
RTL, so its rows use the estimator, whose cycles the RTL's equal (asserted on tiny/demo).
It also prints the MAC utilization (useful MACs / (cycles * rows * cols)) and the share of
cycles in which the vector unit is the only unit at work (from the timing model's schedule,
whose counters the RTL's equal).
"""

from __future__ import annotations

from sim.bench import benchmark

FOLDS = (1, 2, 4)
CASES = [(name, f, True) for name in ("tiny.toml", "demo.toml") for f in FOLDS]
CASES += [("emformer_base.toml", f, False) for f in FOLDS]   # estimate only (see above)
TARGET = 1.10


def only_unit_share(instrs, p, unit: str) -> float:
    """Share of a program's cycles in which ``unit`` is busy and no other unit is."""
    from hw.timing import schedule
    from hw.uarch import UNITS

    timing, cnt = schedule(instrs, p)
    busy: dict[str, list[tuple[int, int]]] = {u: [] for u in UNITS}
    for ins, t in zip(instrs, timing, strict=False):
        if ins.unit is None or t.start < 0:
            continue
        free = ins.spec.need("cost")(ins.args, p).free
        busy[UNITS[ins.unit]].append((t.start, t.start + max(1, free)))
    total = cnt["total"]
    mark = [0] * (total + 1)
    solo = [False] * (total + 1)
    for u, spans in busy.items():
        for lo, hi in spans:
            for c in range(lo, min(hi, total)):
                mark[c] += 1
                if u == unit:
                    solo[c] = True
    n = sum(1 for c in range(total) if solo[c] and mark[c] == 1)
    return n / total if total else 0.0


@benchmark("layer-roofline")
def layer_roofline():
    from hw.bounds import array_bound, roofline
    from hw.layer.compiler import steady_segment
    from hw.uarch import WGT
    from model.config import CONFIG_DIR, load_config
    from model.quantize import quantize_model
    from sim.perf.estimate import estimate_layer
    from sim.perf.layer import compile_stream, step_counts
    from sim.rtl.layer_run import run_stream

    rows = []
    for name, fold, on_rtl in CASES:
        cfg = load_config(CONFIG_DIR / name).replace(fold_factor=fold)
        hw = cfg.hardware
        seg = steady_segment(cfg.model)
        sc = compile_stream(cfg)
        step = sc.step(seg)
        c = step_counts(sc, step)
        est = estimate_layer(cfg, seg + 1)["per_segment_cycles"][-1]
        if on_rtl:
            r = run_stream(cfg, quantize_model(cfg, seed=0), seg + 1, seed=1)
            cycles = r.cycles_per_segment[-1]
            ok = "ok" if r.ok and est == cycles else "MISMATCH"
            sim = f"{r.sim_s / (seg + 1):.2f} s"
        else:
            cycles, ok, sim = est, "estimate", "-"
        bound, which = roofline(array_bound(step.gemms, hw.rows, hw.cols),
                                c.host_in_bytes + c.weight_bytes, c.host_out_bytes,
                                hw.host_bytes_per_cycle)
        util = step.macs / (cycles * hw.rows * hw.cols)
        vec = only_unit_share(step.program.instrs, sc.p, "VECTOR") if on_rtl else None
        rows.append([f"{name.removesuffix('.toml')} fold {fold}", f"{cycles:,}", ok,
                     f"{bound:,} ({which})", f"{cycles / bound:.2f}", f"{TARGET:.2f}",
                     "yes" if cycles / bound <= TARGET else "no", f"{100 * util:.1f}%",
                     "-" if vec is None else f"{100 * vec:.1f}%",
                     "streamed" if not sc.resident[WGT] else "resident", sim])
    return ("Layer step vs its roofline (first steady-state segment; RTL cycles, or the "
            "estimator's where marked)",
            ["config", "cycles/segment", "golden+estimate", "roofline", "ratio", "target",
             "met", "MAC util", "vector-only", "weights", "RTL sim/segment"], rows)
