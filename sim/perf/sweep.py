"""Design-space sweeps: a grid of configs, evaluated on a process pool or a Ray cluster,
cached per point.

:func:`run_sweep` takes a base config and axes (``{"rows": [8, 16], "fold": [1, 2], ...}``),
validates every grid point before doing any work (a bad value is a :class:`SweepError` naming
the axis and the fix), then runs the tasks of ``sim.perf.sweep_points`` through
``sim.perf.backends.run_points``: each point's model estimate (with ``verify_rtl``, its RTL
run checked against the golden model and the estimate) and each distinct hardware config's
synthesized area. Every finished task is cached at once under ``cache_dir/<key>.json`` (the
key hashes the point's config, the energy table, the RTL seed and the sources the tasks run;
areas are keyed by the hardware alone), so a re-run after an interruption computes only what
is missing; a task whose worker failed becomes its point's ``error`` and is not cached. It
writes ``sweep.csv``, ``sweep.json`` and the Pareto plots (energy vs cycles, cycles vs SRAM
and, with area, cycles vs area and energy vs area) into the output directory, each to a
temporary name renamed into place, so an interrupted sweep leaves no half-written output.
"""

from __future__ import annotations

import csv
import hashlib
import io
import itertools
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from model.config import Config, ConfigError
from sim.fileio import atomic_write, make_output_dir, read_json
from sim.perf.backends import check_backend, run_points
from sim.perf.energy import EnergyTable
from sim.perf.sources import estimate_digest
from sim.perf.sweep_points import point_fields, run_task
from sim.progress import Progress

#: Axis name -> config fields it sets (one axis may set several fields).
AXES: dict[str, tuple[str, ...]] = {
    "rows": ("rows",),
    "cols": ("cols",),
    "fold": ("fold_factor",),
    "sram_kib": ("act_sram_kib", "wgt_sram_kib", "acc_sram_kib"),
    "act_kib": ("act_sram_kib",),
    "wgt_kib": ("wgt_sram_kib",),
    "acc_kib": ("acc_sram_kib",),
    "vmem_kib": ("vmem_kib",),
    "pmem_kib": ("pmem_kib",),
}

#: Columns of sweep.csv, in order (wall times and worker names are in sweep.json only, so
#: the CSV of a sweep is the same bytes on every backend and machine).
COLUMNS = ("rows", "cols", "fold", "act_kib", "wgt_kib", "acc_kib", "vmem_kib", "pmem_kib",
           "sram_kib", "feasible", "cycles", "compute_ms", "rtf", "utilization", "energy_uj",
           "weights", "state", "dram_kib", "weight_kib", "sram_peak_kib",
           "area_mm2", "logic_mm2", "memory_mm2", "verilog",
           "rtl_cycles", "rtl_compared", "rtl_mismatches",
           "error", "digest", "pareto_energy_cycles", "pareto_sram_cycles",
           "pareto_area_cycles", "pareto_area_energy", "pareto_area_cycles_energy")

class SweepError(ValueError):
    """Bad sweep input (axis, value, output path); the message names it and the fix."""


def parse_values(axis: str, text: str) -> list[int]:
    """``"8,16,32"`` -> ``[8, 16, 32]``; rejects empty, non-integer and duplicate values."""
    if axis not in AXES:
        raise SweepError(f"unknown sweep axis '{axis}'; fix: use one of {sorted(AXES)}")
    parts = [p.strip() for p in text.split(",")]
    try:
        values = [int(p) for p in parts]
    except ValueError:
        raise SweepError(f"--{axis.replace('_', '-')} '{text}' is not a comma-separated list "
                         "of integers; fix: e.g. 8,16,32") from None
    if len(set(values)) != len(values):
        raise SweepError(f"--{axis.replace('_', '-')} '{text}' repeats a value; "
                         "fix: list each value once")
    return values


def grid_configs(base: Config, axes: dict[str, list[int]]) -> list[Config]:
    """Every combination of the axes' values applied to ``base``, validated, in order."""
    for name in axes:
        if name not in AXES:
            raise SweepError(f"unknown sweep axis '{name}'; fix: use one of {sorted(AXES)}")
    names = list(axes)
    out = []
    for combo in itertools.product(*(axes[n] for n in names)):
        changes = {f: v for n, v in zip(names, combo, strict=True) for f in AXES[n]}
        try:
            cfg = base.replace(**changes)
        except ConfigError as e:
            point = ", ".join(f"{n}={v}" for n, v in zip(names, combo, strict=True))
            raise SweepError(f"grid point ({point}) is invalid: {e}") from None
        out.append(cfg)
    return out


def cache_key(cfg: Config, table: EnergyTable, version: str, rtl_seed: int | None = None
              ) -> str:
    """Key of a point's row: its config, the energy table, the code (``version``) and, for a
    row with the RTL check, the seed of its model and inputs."""
    text = json.dumps({"config": cfg.to_dict(), "energy": table.digest(), "code": version,
                       "rtl_seed": rtl_seed}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()


def area_key(cfg: Config, version: str) -> str:
    """Key of a hardware config's area (the model fields do not change the Verilog)."""
    text = json.dumps({"hardware": cfg.to_dict()["hardware"], "code": version}, sort_keys=True)
    return "area-" + hashlib.sha256(text.encode()).hexdigest()


def pareto_front(points: list[tuple[float, float]]) -> list[int]:
    """Indices of the points no other point beats in both coordinates (minimise both),
    ordered by the first coordinate; ties keep the first index."""
    order = sorted(range(len(points)), key=lambda i: (points[i][0], points[i][1], i))
    front, best = [], float("inf")
    for i in order:
        if points[i][1] < best:
            front.append(i)
            best = points[i][1]
    return front


def pareto_set(points: list[tuple[float, ...]]) -> list[int]:
    """Indices of the points no other point dominates in every coordinate (minimise all;
    of identical points only the first), in index order. Any number of objectives."""
    out = []
    for i, p in enumerate(points):
        if any(q == p for q in points[:i]):
            continue
        if not any(all(a <= b for a, b in zip(q, p, strict=True)) and q != p for q in points):
            out.append(i)
    return out


@dataclass
class SweepResult:
    rows: list[dict[str, Any]]
    pareto: dict[str, list[int]]
    cached: int                  # points answered from the cache
    failed: int                  # points whose worker failed (not cached; a re-run retries)
    seconds: float               # evaluation and output files
    files: dict[str, str]


def run_sweep(base: Config, axes: dict[str, list[int]], out_dir: str | Path, *,
              table: EnergyTable, jobs: int | None = None, cache_dir: str | Path | None = None,
              progress: bool = True, area: bool = True, verify_rtl: bool = False,
              seed: int = 0, backend: str = "pool", address: str | None = None
              ) -> SweepResult:
    """Evaluate the grid and write ``sweep.csv``, ``sweep.json`` and the Pareto plots into
    ``out_dir`` (see the module docstring). ``area``: synthesize each distinct hardware
    config (``area_mm2`` and the area Pareto fronts); ``verify_rtl``: run every feasible
    point on Verilator (``sim.perf.sweep_points.verify_point``) with model/input ``seed``;
    ``backend``/``address``/``jobs``: where the points run (``sim.perf.backends``)."""
    if not axes:
        raise SweepError("no sweep axis given; fix: pass e.g. --rows 8,16 --fold 1,2")
    check_backend(backend, address, jobs)
    configs = grid_configs(base, axes)
    out = Path(out_dir)
    cache = Path(cache_dir) if cache_dir is not None else out / "cache"
    make_output_dir(out, "output directory")
    make_output_dir(cache, "cache directory")
    version = estimate_digest()
    t0 = time.monotonic()
    rtl_seed = seed if verify_rtl else None
    keys = [cache_key(c, table, version, rtl_seed) for c in configs]
    hw_keys = [area_key(c, version) for c in configs] if area else []
    results: dict[str, dict[str, Any]] = {}
    for key in dict.fromkeys(keys + hw_keys):
        entry = read_json(cache / f"{key}.json")
        if entry is not None:
            results[key] = entry
    tdict = table.to_dict()
    areas: dict[str, Config] = {}                # one synthesis per distinct hardware
    for key, cfg in zip(hw_keys, configs, strict=False):
        if key not in results:
            areas.setdefault(key, cfg)
    tasks: list[tuple[str, tuple]] = [(key, ("area", cfg.to_dict()))
                                      for key, cfg in areas.items()]   # (cache key, args)
    for key, cfg in zip(keys, configs, strict=True):
        if key not in results:
            args = ("verify", cfg.to_dict(), tdict, seed) if verify_rtl else \
                ("estimate", cfg.to_dict(), tdict)
            tasks.append((key, args))
    cached = sum(k in results for k in keys)
    failures: dict[str, str] = {}
    workers: dict[str, str] = {}
    total = len(configs) + len(set(hw_keys))
    bar = Progress(total, "sweep", unit="task", enabled=progress)
    bar.update(total - len(tasks), f"cached {cached} points")
    with bar:
        for outcome in run_points(run_task, [args for _, args in tasks], backend=backend,
                                  jobs=jobs, address=address, resources={"num_cpus": 1}):
            key = tasks[outcome.index][0]
            workers[key] = outcome.worker
            if outcome.error is not None:
                failures[key] = f"worker {outcome.worker} failed: {outcome.error}"
            else:
                results[key] = outcome.result
                atomic_write(cache / f"{key}.json",
                             json.dumps(outcome.result, sort_keys=True).encode())
            bar.update(1)
    final = [_row(configs[i], keys[i], hw_keys[i] if area else None, results, failures)
             for i in range(len(configs))]
    for key, row in zip(keys, final, strict=True):
        if key in workers:
            row["worker"] = workers[key]
    pareto = _fronts(final, area)
    eval_seconds = time.monotonic() - t0
    files = _write_outputs(out, base, axes, final, pareto, table, eval_seconds, cached,
                           {"area": area, "verify_rtl": verify_rtl, "seed": seed,
                            "backend": backend, "address": address})
    return SweepResult(final, pareto, cached, sum(k in failures for k in keys),
                       time.monotonic() - t0, files)


def _row(cfg: Config, key: str, hw_key: str | None, results: dict[str, dict[str, Any]],
         failures: dict[str, str]) -> dict[str, Any]:
    """The point's row with its hardware's area merged in; a failed task is the row's
    error (and the point counts as infeasible)."""
    if key in results:
        row = dict(results[key])
    else:
        row = {**point_fields(cfg), "feasible": False, "error": failures[key]}
    if hw_key is not None:
        if hw_key in results:
            a = results[hw_key]
            row.update(area_mm2=a["area_mm2"], logic_mm2=a["logic_mm2"],
                       memory_mm2=a["memory_mm2"], verilog=a["verilog_sha256"][:16])
        else:
            row["error"] = "; ".join(e for e in (row.get("error"), "synthesis: "
                                                  + failures[hw_key]) if e)
    return row


def _fronts(rows: list[dict[str, Any]], area: bool) -> dict[str, list[int]]:
    """Pareto fronts over the points that are feasible and have no error; with ``area``
    also area vs cycles, area vs energy, and the three-way (area, cycles, energy) set."""
    ok = [i for i, r in enumerate(rows) if r["feasible"] and not r.get("error")]

    def front2(x: str, y: str) -> list[int]:
        return [ok[j] for j in pareto_front([(rows[i][x], rows[i][y]) for i in ok])]

    pareto = {"energy_cycles": front2("cycles", "energy_uj"),
              "sram_cycles": front2("sram_peak_kib", "cycles")}
    if area:
        ok = [i for i in ok if "area_mm2" in rows[i]]
        pareto["area_cycles"] = front2("area_mm2", "cycles")
        pareto["area_energy"] = front2("area_mm2", "energy_uj")
        pareto["area_cycles_energy"] = [ok[j] for j in pareto_set(
            [(rows[i]["area_mm2"], rows[i]["cycles"], rows[i]["energy_uj"]) for i in ok])]
    for name in ("energy_cycles", "sram_cycles", "area_cycles", "area_energy",
                 "area_cycles_energy"):
        for i, r in enumerate(rows):
            r[f"pareto_{name}"] = i in pareto[name] if name in pareto else ""
    return pareto


def _write_outputs(out: Path, base: Config, axes: dict[str, list[int]],
                   rows: list[dict[str, Any]], pareto: dict[str, list[int]],
                   table: EnergyTable, seconds: float, cached: int,
                   options: dict[str, Any]) -> dict[str, str]:
    from sim.perf.plots import pareto_plot
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(COLUMNS), extrasaction="ignore", lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow({k: _csv_cell(r.get(k, "")) for k in COLUMNS})
    doc = {"config": base.source, "base": base.to_dict(), "axes": axes, "options": options,
           "energy_table": table.to_dict(), "points": rows, "pareto": pareto,
           "eval_seconds": round(seconds, 3), "cached": cached}
    labels = [_label(r, axes) for r in rows]
    ok = [r["feasible"] and not r.get("error") for r in rows]
    cyc = [r.get("cycles", 0) for r in rows]
    energy = [r.get("energy_uj", 0) for r in rows]
    folds = [r["fold"] for r in rows]
    shapes = [f"{r['rows']}x{r['cols']} array" for r in rows]
    name = Path(base.source).name
    cycles_label, energy_label = "cycles per segment (whole model)", "energy per segment (µJ)"
    plots = {  # file stem (= its Pareto front's name) -> (x, y, xlabel, ylabel, title)
        "energy_cycles": (cyc, energy, cycles_label, energy_label, "Energy vs cycles"),
        "sram_cycles": ([r.get("sram_peak_kib", 0) for r in rows], cyc,
                        "peak SRAM occupancy, all banks (KiB)", cycles_label,
                        "Cycles vs SRAM"),
    }
    if "area_cycles" in pareto:
        area = [r.get("area_mm2", 0) for r in rows]
        area_label = "estimated area (mm², 45 nm; docs/AREA.md)"
        plots["area_cycles"] = (area, cyc, area_label, cycles_label, "Cycles vs area")
        plots["area_energy"] = (area, energy, area_label, energy_label, "Energy vs area")
    files = {"csv": out / "sweep.csv", "json": out / "sweep.json"}
    blobs = {"csv": buf.getvalue().encode(), "json": (json.dumps(doc, indent=2) + "\n").encode()}
    for stem, (x, y, xlabel, ylabel, title) in plots.items():
        files[f"{stem}_png"] = out / f"pareto_{stem}.png"
        blobs[f"{stem}_png"] = pareto_plot(x, y, ok, pareto[stem], folds, shapes, labels,
                                           xlabel=xlabel, ylabel=ylabel,
                                           title=f"{title} — {name}, one segment")
    for key, data in blobs.items():
        atomic_write(files[key], data)
    return {k: str(v) for k, v in files.items()}


def _csv_cell(v: Any) -> Any:
    return f"{v:.6g}" if isinstance(v, float) else v


def _label(r: dict[str, Any], axes: dict[str, list[int]]) -> str:
    parts = [f"{r['rows']}x{r['cols']}", f"N={r['fold']}"]
    if any(a in axes for a in ("sram_kib", "act_kib", "wgt_kib", "acc_kib", "vmem_kib",
                               "pmem_kib")):
        parts.append(f"{r['sram_kib']}KiB")
    return " ".join(parts)
