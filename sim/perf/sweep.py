"""Design-space sweeps: a grid of configs, evaluated in a process pool, cached by config hash.

:func:`run_sweep` takes a base config and axes (``{"rows": [8, 16], "fold": [1, 2], ...}``),
validates every grid point before doing any work (a bad value is a :class:`SweepError` naming
the axis and the fix), evaluates the model estimate of each point (in parallel, a progress bar
on stderr), caches each result under ``cache_dir/<key>.json`` where the key hashes the point's
config, the energy table and the estimator's sources, and writes ``sweep.csv``,
``sweep.json`` and two Pareto plots into the output directory. Every file is written to a
temporary name and renamed, so an interrupted sweep leaves no half-written output.
"""

from __future__ import annotations

import csv
import hashlib
import io
import itertools
import json
import os
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from model.config import Config, ConfigError, config_from_dict
from sim.fileio import atomic_write, make_output_dir
from sim.perf.energy import EnergyTable
from sim.perf.sources import estimate_digest
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

#: Columns of sweep.csv, in order.
COLUMNS = ("rows", "cols", "fold", "act_kib", "wgt_kib", "acc_kib", "vmem_kib", "pmem_kib",
           "sram_kib", "feasible", "cycles", "compute_ms", "rtf", "utilization", "energy_uj",
           "weights", "state", "dram_kib", "weight_kib", "sram_peak_kib",
           "error", "digest", "pareto_energy_cycles", "pareto_sram_cycles")

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


def cache_key(cfg: Config, table: EnergyTable, version: str) -> str:
    text = json.dumps({"config": cfg.to_dict(), "energy": table.digest(), "code": version},
                      sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()


def evaluate(cfg_dict: dict[str, Any], table_dict: dict[str, Any]) -> dict[str, Any]:
    """Sweep row of one point (runs in a worker process). A point the compiler or timing model
    rejects (e.g. SRAM too small) is a row with ``feasible=False`` and its ``error``."""
    from sim.perf.estimate import estimate_model
    cfg = config_from_dict(cfg_dict, "<sweep point>")
    table = EnergyTable(**{k: tuple(v) if isinstance(v, list) else v
                           for k, v in table_dict.items()})
    hw, mc = cfg.hardware, cfg.model
    row: dict[str, Any] = {
        "rows": hw.rows, "cols": hw.cols, "fold": mc.fold_factor,
        "act_kib": hw.act_sram_kib, "wgt_kib": hw.wgt_sram_kib, "acc_kib": hw.acc_sram_kib,
        "vmem_kib": hw.vmem_kib, "pmem_kib": hw.pmem_kib,
        "sram_kib": (hw.act_sram_kib + hw.wgt_sram_kib + hw.acc_sram_kib + hw.vmem_kib
                     + hw.pmem_kib),
        "digest": cfg.digest()[:16],
    }
    try:
        est = estimate_model(cfg, table=table)
    except (ConfigError, ValueError) as e:
        return {**row, "feasible": False, "error": str(e)}
    fits = all(est["sram_fits"].values())
    return {
        **row,
        "feasible": fits,
        "cycles": est["cycles"],
        "compute_ms": est["compute_ms"],
        "rtf": est["rtf"],
        "utilization": est["utilization"],
        "energy_uj": est["energy_pj"] / 1e6,
        "weights": est["weights"],
        "state": est["state"],
        "dram_kib": est["dram_bytes"] / 1024,
        "weight_kib": est["weight_bytes_unique"] / 1024,
        "sram_peak_kib": sum(est["sram_bytes"].values()) / 1024,
        "error": "" if fits else "peak SRAM exceeds a bank: " + ", ".join(
            b for b, ok in est["sram_fits"].items() if not ok),
    }


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


@dataclass
class SweepResult:
    rows: list[dict[str, Any]]
    pareto: dict[str, list[int]]
    cached: int
    seconds: float               # evaluation and output files
    files: dict[str, str]


def run_sweep(base: Config, axes: dict[str, list[int]], out_dir: str | Path, *,
              table: EnergyTable, jobs: int | None = None, cache_dir: str | Path | None = None,
              progress: bool = True) -> SweepResult:
    """Evaluate the grid and write ``sweep.csv``, ``sweep.json``, ``pareto_energy_cycles.png``
    and ``pareto_sram_cycles.png`` into ``out_dir`` (see the module docstring)."""
    if not axes:
        raise SweepError("no sweep axis given; fix: pass e.g. --rows 8,16 --fold 1,2")
    configs = grid_configs(base, axes)
    out = Path(out_dir)
    cache = Path(cache_dir) if cache_dir is not None else out / "cache"
    make_output_dir(out, "output directory")
    make_output_dir(cache, "cache directory")
    version = estimate_digest()
    t0 = time.monotonic()
    keys = [cache_key(c, table, version) for c in configs]
    rows: list[dict[str, Any] | None] = [None] * len(configs)
    todo = []
    for i, key in enumerate(keys):
        f = cache / f"{key}.json"
        if f.is_file():
            try:
                rows[i] = json.loads(f.read_text())
                continue
            except (OSError, json.JSONDecodeError):
                pass  # an unreadable entry is recomputed
        todo.append(i)
    cached = len(configs) - len(todo)
    bar = Progress(len(configs), "sweep", unit="point", enabled=progress)
    bar.update(cached, f"cached {cached}")
    tdict = table.to_dict()

    def finish(i: int, row: dict[str, Any]) -> None:
        rows[i] = row
        atomic_write(cache / f"{keys[i]}.json", json.dumps(row, sort_keys=True).encode())
        bar.update(1)

    jobs = max(1, min(jobs or os.cpu_count() or 1, len(todo) or 1))
    with bar:
        if jobs == 1:
            for i in todo:
                finish(i, evaluate(configs[i].to_dict(), tdict))
        else:
            with ProcessPoolExecutor(max_workers=jobs) as pool:
                futs = {pool.submit(evaluate, configs[i].to_dict(), tdict): i for i in todo}
                for fut in as_completed(futs):
                    finish(futs[fut], fut.result())
    final = [dict(r) for r in rows if r is not None]
    feasible = [i for i, r in enumerate(final) if r["feasible"]]
    pareto = {
        "energy_cycles": [feasible[j] for j in pareto_front(
            [(final[i]["cycles"], final[i]["energy_uj"]) for i in feasible])],
        "sram_cycles": [feasible[j] for j in pareto_front(
            [(final[i]["sram_peak_kib"], final[i]["cycles"]) for i in feasible])],
    }
    for i, r in enumerate(final):
        r["pareto_energy_cycles"] = i in pareto["energy_cycles"]
        r["pareto_sram_cycles"] = i in pareto["sram_cycles"]
    eval_seconds = time.monotonic() - t0
    files = _write_outputs(out, base, axes, final, pareto, table, eval_seconds, cached)
    return SweepResult(final, pareto, cached, time.monotonic() - t0, files)


def _write_outputs(out: Path, base: Config, axes: dict[str, list[int]],
                   rows: list[dict[str, Any]], pareto: dict[str, list[int]],
                   table: EnergyTable, seconds: float, cached: int) -> dict[str, str]:
    from sim.perf.plots import pareto_plot
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(COLUMNS), extrasaction="ignore", lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow({k: _csv_cell(r.get(k, "")) for k in COLUMNS})
    doc = {"config": base.source, "base": base.to_dict(), "axes": axes,
           "energy_table": table.to_dict(), "points": rows, "pareto": pareto,
           "eval_seconds": round(seconds, 3), "cached": cached}
    labels = [_label(r, axes) for r in rows]
    files = {"csv": out / "sweep.csv", "json": out / "sweep.json",
             "energy_cycles_png": out / "pareto_energy_cycles.png",
             "sram_cycles_png": out / "pareto_sram_cycles.png"}
    feasible = [r["feasible"] for r in rows]
    cyc = [r.get("cycles", 0) for r in rows]
    folds = [r["fold"] for r in rows]
    shapes = [f"{r['rows']}x{r['cols']} array" for r in rows]
    name = Path(base.source).name
    blobs = {
        "csv": buf.getvalue().encode(),
        "json": (json.dumps(doc, indent=2) + "\n").encode(),
        "energy_cycles_png": pareto_plot(
            cyc, [r.get("energy_uj", 0) for r in rows], feasible, pareto["energy_cycles"],
            folds, shapes, labels, xlabel="cycles per segment (whole model)",
            ylabel="energy per segment (µJ)",
            title=f"Energy vs cycles — {name}, one segment"),
        "sram_cycles_png": pareto_plot(
            [r.get("sram_peak_kib", 0) for r in rows], cyc, feasible, pareto["sram_cycles"],
            folds, shapes, labels, xlabel="peak SRAM occupancy, all banks (KiB)",
            ylabel="cycles per segment (whole model)",
            title=f"Cycles vs SRAM — {name}, one segment"),
    }
    for name, data in blobs.items():
        atomic_write(files[name], data)
    return {k: str(v) for k, v in files.items()}


def _csv_cell(v: Any) -> Any:
    return f"{v:.6g}" if isinstance(v, float) else v


def _label(r: dict[str, Any], axes: dict[str, list[int]]) -> str:
    parts = [f"{r['rows']}x{r['cols']}", f"N={r['fold']}"]
    if any(a in axes for a in ("sram_kib", "act_kib", "wgt_kib", "acc_kib", "vmem_kib",
                               "pmem_kib")):
        parts.append(f"{r['sram_kib']}KiB")
    return " ".join(parts)
