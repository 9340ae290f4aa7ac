"""The work of one sweep point, run on a worker (a pool process or a Ray task).

:func:`estimate_point` is the point's row from the performance model; :func:`verify_point`
adds the RTL check (``--verify-rtl``): the point's layer programs run on Verilator for the
first ``steady_segment + 1`` segments through every layer and are compared element by element
with the golden model, and the steady segment's RTL cycle count with the estimate;
:func:`area_point` is the synthesized area of one hardware config (shared by every point with
that hardware). Every function takes and returns plain JSON-able values.
"""

from __future__ import annotations

import time
from typing import Any

from model.config import Config, ConfigError, config_from_dict
from sim.perf.energy import EnergyTable


def point_fields(cfg: Config) -> dict[str, Any]:
    """The columns of a row that name the point: its axes' values and config digest."""
    hw = cfg.hardware
    return {"rows": hw.rows, "cols": hw.cols, "fold": cfg.model.fold_factor,
            "act_kib": hw.act_sram_kib, "wgt_kib": hw.wgt_sram_kib,
            "acc_kib": hw.acc_sram_kib, "vmem_kib": hw.vmem_kib, "pmem_kib": hw.pmem_kib,
            "sram_kib": (hw.act_sram_kib + hw.wgt_sram_kib + hw.acc_sram_kib + hw.vmem_kib
                         + hw.pmem_kib),
            "digest": cfg.digest()[:16]}


def estimate_point(cfg_dict: dict[str, Any], table_dict: dict[str, Any]) -> dict[str, Any]:
    """Sweep row of one point. A point the compiler or timing model rejects (e.g. SRAM too
    small) is a row with ``feasible=False`` and its ``error``."""
    from sim.perf.estimate import estimate_model
    cfg = config_from_dict(cfg_dict, "<sweep point>")
    table = EnergyTable(**{k: tuple(v) if isinstance(v, list) else v
                           for k, v in table_dict.items()})
    row = point_fields(cfg)
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


def verify_point(cfg_dict: dict[str, Any], table_dict: dict[str, Any], seed: int
                 ) -> dict[str, Any]:
    """:func:`estimate_point` plus the RTL run of a feasible point (module docstring):
    ``rtl_cycles`` (the steady segment's RTL ``total`` counter), ``rtl_compared`` and
    ``rtl_mismatches`` (elements checked against the golden model and the ones that differ,
    plus counters that differ from the timing model), ``rtl_first`` (the first mismatch,
    named) and ``rtl_s`` (wall seconds, Verilator build included). A run that fails is the
    row's ``error``; ``rtl_cycles`` differing from ``cycles`` is one too."""
    from hw.layer.compiler import steady_segment
    from model.quantize import quantize_model
    from sim.rtl.layer_run import run_stream

    row = estimate_point(cfg_dict, table_dict)
    if not row["feasible"]:
        return row
    cfg = config_from_dict(cfg_dict, "<sweep point>")
    t0 = time.monotonic()
    steady = steady_segment(cfg.model)
    try:
        rep = run_stream(cfg, quantize_model(cfg, seed=seed), steady + 1, seed=seed)
    except (ConfigError, ValueError, RuntimeError) as e:
        return {**row, "rtl_s": round(time.monotonic() - t0, 2), "error": f"RTL: {e}"}
    row.update(rtl_cycles=rep.cycles_per_segment[steady], rtl_compared=rep.compared,
               rtl_mismatches=rep.mismatches + len(rep.counter_mismatches)
               + len(rep.isa_mismatches),
               rtl_first=_first_problem(rep), rtl_s=round(time.monotonic() - t0, 2))
    if row["rtl_cycles"] != row["cycles"]:
        row["error"] = (f"RTL cycles {row['rtl_cycles']} != estimate {row['cycles']} "
                        f"(segment {steady})")
    elif row["rtl_mismatches"]:
        row["error"] = f"RTL differs from the golden model: {row['rtl_first']}"
    return row


def _first_problem(rep) -> str:
    if rep.first is not None:
        return str(rep.first)
    return (rep.counter_mismatches + rep.isa_mismatches + [""])[0]


def area_point(cfg_dict: dict[str, Any]) -> dict[str, Any]:
    """Synthesized area of a point's hardware (``sim.synth``; cached by the Verilog's hash
    on the worker): ``area_mm2``, ``logic_mm2``, ``memory_mm2``, ``verilog_sha256``."""
    from sim.synth import hardware_area

    res = hardware_area(config_from_dict(cfg_dict, "<sweep point>").hardware)
    return {k: res[k] for k in ("area_mm2", "logic_mm2", "memory_mm2", "verilog_sha256")}


#: The kinds of sweep task, by the name a task is sent with.
TASKS = {"estimate": estimate_point, "verify": verify_point, "area": area_point}


def run_task(kind: str, *args: Any) -> dict[str, Any]:
    """Run one sweep task (the function a pool process or Ray worker is given)."""
    return TASKS[kind](*args)


__all__ = ["TASKS", "area_point", "estimate_point", "point_fields", "run_task",
           "verify_point"]
