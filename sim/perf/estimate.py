"""Estimates of a GEMM, any program, a stream of segments and the whole model, without RTL.

Everything is a compiled program timed by the accelerator's timing model
(``docs/PERF_MODEL.md``), so ``cycles`` equal the RTL's counters for the same arguments:

* a GEMM: the GEMM compiler's program (:mod:`sim.perf.gemm`);
* a layer stream (:func:`estimate_layer`): the layer compiler's step program of each
  segment (``hw/layer/compiler.py``, what ``foldaccel rtl layer`` runs; memory bank and
  left-context cache filling up), ``cycles`` their sum, the preload program reported apart;
* the model (:func:`estimate_model`): the step program of one steady-state segment (full
  bank and cache) through all layers.

SRAM, traffic and energy are read off the same programs' instructions (:mod:`sim.perf.layer`,
:mod:`sim.perf.program`). :func:`report` turns counts into the result dict: cycles, busy
cycles per unit, utilization, peak SRAM per bank, SRAM reads/writes per bank, host bytes by
kind, energy, and for streams the weight and state placement and the real-time factor.
"""

from __future__ import annotations

from typing import Any

from hw.uarch import bank_kib
from model.config import Config, HardwareConfig
from sim.perf.counts import BANKS, UNITS, Counts, total
from sim.perf.energy import HOROWITZ_45NM, EnergyTable
from sim.perf.gemm import gemm_counts, program_counts, rtl_counters

#: Size of the LUTs the vector unit reads (exp and rsqrt tables), for their read energy.
LUT_KIB = 0.5


def energy_pj(c: Counts, hw: HardwareConfig, table: EnergyTable, dram_bytes: int,
              wgt_kib: float | None = None) -> dict[str, float]:
    """Energy breakdown (pJ) of ``c``: array MAC slots, element ops (vector unit and REQUANT
    lanes), LUT reads, SRAM per bank (``wgt_kib`` overrides the weight bank size), DRAM bytes;
    plus ``total``."""
    kib = bank_kib(hw)
    if wgt_kib:
        kib["wgt"] = wgt_kib
    out = {"mac": c.mac_slots * table.mac_pj,
           "elementwise": (c.ops["int8_add"] * table.int8_add_pj
                           + c.ops["int8_mult"] * table.int8_mult_pj
                           + c.ops["int32_add"] * table.int32_add_pj
                           + c.ops["int32_mult"] * table.int32_mult_pj),
           "lut": c.ops["lut_bytes"] * table.sram_pj_per_byte(LUT_KIB)}
    for b in BANKS:
        out[f"sram_{b}"] = (c.sram_reads[b] + c.sram_writes[b]) * table.sram_pj_per_byte(kib[b])
    out["dram"] = dram_bytes * table.dram_pj_per_byte
    out["total"] = sum(out.values())
    return out


def report(c: Counts, hw: HardwareConfig, table: EnergyTable, weight_bytes_unique: int,
           sram_bytes: dict[str, int] | None = None) -> dict[str, Any]:
    """The estimator's result dict for counts ``c`` of programs on ``hw``: every byte that
    crosses the host interface (input rows, constants, spilled state, outputs) is a DRAM
    byte; ``weight_bytes_unique`` are the distinct constant bytes the programs use;
    ``sram_bytes`` (default: ``c``'s peaks) the SRAM they occupy per bank."""
    cap = {b: kib * 1024 for b, kib in bank_kib(hw).items()}
    sram = dict(c.sram_peak if sram_bytes is None else sram_bytes)
    dram = c.host_in_bytes + c.weight_bytes + c.host_out_bytes
    energy = energy_pj(c, hw, table, dram)
    slots = c.cycles * hw.rows * hw.cols
    needed = dram / c.cycles if c.cycles else 0.0
    return {
        "cycles": c.cycles,
        "busy": dict(c.busy),
        "stall": c.stall,
        "macs": c.macs,
        "mac_slots": c.mac_slots,
        "utilization": c.macs / slots if slots else 0.0,
        "busy_fraction": {u: (c.busy[u] / c.cycles if c.cycles else 0.0) for u in UNITS},
        "time_us": c.cycles / hw.clock_mhz,
        "instructions": c.instructions,
        "sram_bytes": sram,
        "sram_capacity_bytes": cap,
        "sram_fits": {b: sram[b] <= cap[b] for b in BANKS},
        "sram_reads": dict(c.sram_reads),
        "sram_writes": dict(c.sram_writes),
        "host_bytes": {"in_input": c.host_in_bytes - c.state_in_bytes,
                       "in_weights": c.weight_bytes, "in_state": c.state_in_bytes,
                       "out": c.host_out_bytes - c.state_out_bytes,
                       "out_state": c.state_out_bytes},
        "weight_loads": dict(c.weight_loads),
        "dram_bytes": dram,
        "weight_bytes_unique": weight_bytes_unique,
        "dram_bytes_per_cycle_needed": needed,
        "dram_bandwidth_ok": needed <= hw.dram_bytes_per_cycle,
        "energy_pj": energy["total"],
        "energy_breakdown_pj": energy,
    }


# ------------------------------------------------------------------------------ entry points


def estimate_gemm(m: int, k: int, n: int, hw: HardwareConfig, *, bias: bool = False,
                  requant: bool = False, relu: bool = False, weight: bool = True,
                  table: EnergyTable = HOROWITZ_45NM) -> dict[str, Any]:
    """The compiler's program for one ``(m x k) @ (k x n)`` GEMM on ``hw`` (the flags of
    :func:`hw.compiler.compile_gemm`: int32 output unless ``requant``); ``weight``: B is a
    weight matrix (else an activation such as K^T, and the bias, like P@V's zero-point bias, is
    computed per step: an activation too). ``rtl_counters`` are the RTL's
    performance counters of that program, counter by counter."""
    for name, v in (("m", m), ("k", k), ("n", n)):
        if not isinstance(v, int) or isinstance(v, bool) or v < 1:
            raise ValueError(f"GEMM dimension {name}={v!r} must be a positive integer")
    if relu and not requant:
        raise ValueError("relu needs requant (ReLU is part of the requantization)")
    c = gemm_counts(m, k, n, hw, bias=bias, weight=weight, requant=requant, relu=relu)
    unique = (k * n + 4 * n * bias if weight else 0) + (4 * n if requant else 0)
    out: dict[str, Any] = {"gemm": {"m": m, "k": k, "n": n, "bias": bias, "requant": requant,
                                    "relu": relu, "weight": weight}}
    out.update(report(c, hw, table, unique))
    out["weights"] = "streamed"
    out["rtl_counters"] = rtl_counters(c)
    return out


def estimate_program(program, hw: HardwareConfig, *, macs: int | None = None,
                     weight: bool = True,
                     table: EnergyTable = HOROWITZ_45NM) -> dict[str, Any]:
    """Any accelerator program (``Instr`` list, 128-bit words or a ``GemmProgram``): cycles
    from the timing model, traffic from its instructions. ``macs`` (useful MACs) defaults to
    ``M*K*N`` of a ``GemmProgram``, else the array's MAC slots; the unique weight bytes are
    the weight-bank and ACC-bank bytes it loads."""
    if macs is None:
        macs = program.macs if hasattr(program, "macs") else None
    c = program_counts(program, hw, macs=macs or 0, weight=weight)
    if macs is None:
        c.macs = c.mac_slots
    out = report(c, hw, table, c.weight_bytes)
    out["rtl_counters"] = rtl_counters(c)
    return out


def _stream_estimate(cfg: Config, segments: list[int], layers: int | None,
                     table: EnergyTable, ops: bool) -> dict[str, Any]:
    """The step programs of ``segments`` (indices) of a stream of ``layers`` layers, timed
    and reported together, plus the preload program and the compiler's placement."""
    from sim.perf.layer import stream_counts
    sc = stream_counts(cfg, segments, layers, ops)
    mc, hw = cfg.model, cfg.hardware
    c = total(sc.segments)
    pre = sc.preload
    # the stream's programs share the banks: its SRAM is the words they touch together
    out = report(c, hw, table, sc.unique_bytes, sc.footprint_bytes)
    audio_ms = len(segments) * mc.segment_length * mc.frame_ms
    compute_ms = c.cycles / (hw.clock_mhz * 1e3)
    out.update({
        "segments": len(segments),
        "layers": sc.layers,
        "per_segment_cycles": [x.cycles for x in sc.segments],
        "weights": "resident" if sc.resident["wgt"] else "streamed",
        "resident": dict(sc.resident),
        "state": "spilled" if sc.spill else "on chip",
        "preload": {"cycles": pre.cycles, "bytes": pre.weight_bytes,
                    "energy_pj": energy_pj(pre, hw, table, pre.weight_bytes)["total"]},
        "audio_ms": audio_ms,
        "compute_ms": compute_ms,
        "rtf": compute_ms / audio_ms,
    })
    if ops:
        out["ops"] = [dict(o) for o in sc.ops]
    return out


def estimate_layer(cfg: Config, segments: int = 1, layers: int | None = None, *,
                   table: EnergyTable = HOROWITZ_45NM, ops: bool = False) -> dict[str, Any]:
    """The first ``segments`` segments of a stream through the first ``layers`` layers
    (default all) -- the programs of ``foldaccel rtl layer`` with the same arguments, whose
    ``cycles`` (the sum of the step programs') the RTL's equal. ``per_segment_cycles``:
    each segment's; with ``ops``, ``ops`` profiles the last segment's program by opcode."""
    if not isinstance(segments, int) or isinstance(segments, bool) or segments < 1:
        raise ValueError(f"segments={segments!r} must be a positive integer")
    return _stream_estimate(cfg, list(range(segments)), layers, table, ops)


def estimate_model(cfg: Config, *, table: EnergyTable = HOROWITZ_45NM,
                   ops: bool = False) -> dict[str, Any]:
    """One steady-state segment (full memory bank and left-context cache: segment
    ``steady_segment``) through all layers; ``rtf`` = compute time / segment audio; ``ops``
    as in :func:`estimate_layer`."""
    from hw.layer.compiler import steady_segment
    out = _stream_estimate(cfg, [steady_segment(cfg.model)], None, table, ops)
    out["segment"] = steady_segment(cfg.model)
    return out


#: Metrics of the folding report: (key, label, getter on an estimate_model result).
FOLD_METRICS = (
    ("weight_bytes", "constant bytes (deployed)", lambda e: e["weight_bytes_unique"]),
    ("sram_bytes", "peak SRAM, all banks (bytes)", lambda e: sum(e["sram_bytes"].values())),
    ("dram_bytes", "host/DRAM bytes / segment", lambda e: e["dram_bytes"]),
    ("weight_dram_bytes", "weight bytes streamed / segment",
     lambda e: e["host_bytes"]["in_weights"]),
    ("energy_pj", "energy / segment (pJ)", lambda e: e["energy_pj"]),
    ("power_mw", "power at real time (mW)", lambda e: e["energy_pj"] / e["audio_ms"] * 1e-6),
    ("cycles", "cycles / segment", lambda e: e["cycles"]),
    ("macs", "MACs / segment", lambda e: e["macs"]),
    ("utilization", "MAC utilization", lambda e: e["utilization"]),
    ("rtf", "real-time factor", lambda e: e["rtf"]),
)


def compare_fold(cfg: Config, folds: list[int], *,
                 table: EnergyTable = HOROWITZ_45NM) -> dict[str, Any]:
    """The folding report: :data:`FOLD_METRICS` of :func:`estimate_model` per fold factor and
    the reduction against fold 1 (``1 - value / value_at_fold_1``; negative = growth). Fold 1
    is always evaluated as the baseline."""
    if not folds or any(not isinstance(f, int) or f < 1 for f in folds):
        raise ValueError(f"fold factors {folds!r} must be positive integers")
    order = [1] + [f for f in dict.fromkeys(folds) if f != 1]
    results = {f: estimate_model(cfg.replace(fold_factor=f), table=table) for f in order}
    metrics = {key: {f: get(results[f]) for f in order} for key, _, get in FOLD_METRICS}
    reduction = {key: {f: (1.0 - v[f] / v[1] if v[1] else 0.0) for f in order}
                 for key, v in metrics.items()}
    return {"config": cfg.source, "folds": order,
            "labels": {key: label for key, label, _ in FOLD_METRICS},
            "metrics": {k: {str(f): v for f, v in m.items()} for k, m in metrics.items()},
            "reduction_vs_fold1": {k: {str(f): v for f, v in m.items()}
                                   for k, m in reduction.items()},
            "weights": {str(f): results[f]["weights"] for f in order},
            "state": {str(f): results[f]["state"] for f in order}}
