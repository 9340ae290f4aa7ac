"""Estimates of a GEMM, a layer over segments, and the whole model — without RTL or torch.

Composition (``docs/PERF_MODEL.md``):

* a GEMM is the compiler's program for it, timed by the accelerator's timing model
  (:mod:`sim.perf.gemm`): its cycles equal the RTL's counters;
* a layer step is the sequence of :func:`sim.perf.workload.layer_steps`: its GEMM programs and
  the vector-unit ops of :mod:`sim.perf.vector` (analytic, not yet RTL-verified), run one
  after the other, plus loading the vector unit's parameters;
* the model step is ``n_layers`` layer steps plus :func:`model_io_ops`: the int16 input
  chunk from the host, layer 0's memory vector (``sum_rows_i16`` of the raw segment, then one
  requantization) and the int16 output to the host.

Every estimate is reported by :func:`report`: cycles, busy cycles per unit, utilization, peak
SRAM per bank, SRAM reads/writes per bank, host/DRAM traffic and energy under the two weight
policies, and (for layers and models) the real-time factor.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from hw.uarch import bank_kib
from model.accounting import layer_weight_bytes
from model.config import Config, HardwareConfig, ModelConfig
from sim.perf.counts import BANKS, UNITS, Counts, total
from sim.perf.energy import HOROWITZ_45NM, EnergyTable
from sim.perf.gemm import gemm_counts, program_counts, rtl_counters
from sim.perf.vector import (
    EXP_LUT_BYTES,
    VectorOp,
    host_transfer,
    vector_cost,
    vector_param_bytes,
    vector_param_load,
)
from sim.perf.workload import GemmOp, Step, layer_steps, live_peak, state_bytes

POLICIES = ("streamed", "resident")
#: Size of the LUTs the vector unit reads (exp and rsqrt tables), for their read energy.
LUT_KIB = 0.5


@dataclass(frozen=True)
class OpResult:
    name: str
    kind: str
    shape: str
    count: int
    counts: Counts


def op_result(op: GemmOp | VectorOp, hw: HardwareConfig) -> OpResult:
    """Counts of one GEMM op (program, timing model) or vector op (analytic model)."""
    if isinstance(op, GemmOp):
        c = gemm_counts(op.m, op.k, op.n, hw, bias=op.bias, weight=op.weight,
                        relu=op.relu) * op.count
        return OpResult(op.name, "gemm", f"{op.m}x{op.k}x{op.n}", op.count, c)
    return OpResult(op.name, op.kind, f"{op.rows}x{op.width}", op.count, vector_cost(op, hw))


def layer_weight_bytes_unique(mc: ModelConfig) -> int:
    """Deployed parameter bytes of one layer: int8 matrices and int32 biases
    (:func:`model.accounting.layer_weight_bytes`), a 32-bit requant parameter per output
    channel of the six weight GEMMs and one per tensor for scores and attn@V, LayerNorm
    gamma (int8) + beta (int32), and the exp LUT."""
    wb = layer_weight_bytes(mc)
    nf = mc.ffn_fold
    requant_params = 4 * (4 * mc.folded_dim + mc.ffn_dim // nf + mc.d_model // nf + 2)
    return wb["matrices"] + wb["biases"] + requant_params + vector_param_bytes(mc.d_model)


def layer_ops(cfg: Config, n_memory: int | None = None,
              n_left: int | None = None) -> tuple[list[OpResult], list[Step]]:
    """Per-op results of one layer step (default: steady state), including the parameter
    load of the vector unit as op ``vector_params``."""
    steps = layer_steps(cfg, n_memory, n_left)
    results = [op_result(s.op, cfg.hardware) for s in steps]
    nbytes = vector_param_bytes(cfg.model.d_model)
    results.append(OpResult("vector_params", "param_load", f"{nbytes}B", 1,
                            vector_param_load(nbytes, cfg.hardware)))
    return results, steps


def _segment_shapes(mc: ModelConfig, segments: int) -> list[tuple[int, int]]:
    """(memories, left-context tokens) seen by segment 0, 1, ... (banks and caches fill up)."""
    return [(min(s, mc.max_memory), min(s * mc.segment_length, mc.left_context))
            for s in range(segments)]


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


def _pow2_kib(nbytes: int) -> int:
    kib = 1
    while kib * 1024 < nbytes:
        kib *= 2
    return kib


def report(c: Counts, hw: HardwareConfig, table: EnergyTable, weight_bytes_unique: int,
           segments: int = 1, audio_ms: float | None = None) -> dict[str, Any]:
    """The estimator's result dict for counts ``c`` covering ``segments`` segments.

    Weight policies: ``streamed`` = every weight byte the programs load comes from DRAM each
    time; ``resident`` = the ``weight_bytes_unique`` are loaded once (``preload_bytes``, not
    per segment) into a weight bank big enough to hold them next to the programs' own weight
    bank use, so the per-segment weight loads (DRAM reads and SRAM writes) disappear and the
    weight bank's per-byte energy is that of the bigger bank. Activations cross the host
    interface under both. ``weight_policy`` is ``resident`` when the configured weight bank is
    big enough, else ``streamed``; ``energy_pj`` is that policy's. ``cycles`` are those of the
    programs as compiled, which load their weights (the RTL-verified number under both).
    """
    cap = {b: kib * 1024 for b, kib in bank_kib(hw).items()}
    act_bytes = c.host_in_bytes + c.host_out_bytes
    resident_kib = max(hw.wgt_sram_kib, _pow2_kib(weight_bytes_unique + c.sram_peak["wgt"]))
    traffic = {
        "streamed": {"dram_bytes": c.weight_bytes + act_bytes, "weight_bytes": c.weight_bytes,
                     "activation_bytes": act_bytes, "preload_bytes": 0,
                     "wgt_sram_kib": hw.wgt_sram_kib},
        "resident": {"dram_bytes": act_bytes, "weight_bytes": 0, "activation_bytes": act_bytes,
                     "preload_bytes": weight_bytes_unique, "wgt_sram_kib": resident_kib},
    }
    resident = Counts(**{**c.to_dict(), "sram_writes": {
        b: c.sram_writes[b] - c.weight_loads[b] for b in BANKS}})
    energy = {"streamed": energy_pj(c, hw, table, traffic["streamed"]["dram_bytes"]),
              "resident": energy_pj(resident, hw, table, traffic["resident"]["dram_bytes"],
                                    resident_kib)}
    policy = "resident" if resident_kib == hw.wgt_sram_kib else "streamed"
    slots = c.cycles * hw.rows * hw.cols
    needed = traffic[policy]["dram_bytes"] / c.cycles if c.cycles else 0.0
    out: dict[str, Any] = {
        "cycles": c.cycles,
        "busy": dict(c.busy),
        "stall": c.stall,
        "macs": c.macs,
        "mac_slots": c.mac_slots,
        "utilization": c.macs / slots if slots else 0.0,
        "busy_fraction": {u: (c.busy[u] / c.cycles if c.cycles else 0.0) for u in UNITS},
        "time_us": c.cycles / hw.clock_mhz,
        "instructions": c.instructions,
        "sram_bytes": dict(c.sram_peak),
        "sram_capacity_bytes": cap,
        "sram_fits": {b: c.sram_peak[b] <= cap[b] for b in BANKS},
        "sram_reads": dict(c.sram_reads),
        "sram_writes": dict(c.sram_writes),
        "host_bytes": {"in_activations": c.host_in_bytes, "in_weights": c.weight_bytes,
                       "out": c.host_out_bytes},
        "weight_bytes_unique": weight_bytes_unique,
        "weight_policy": policy,
        "traffic": traffic,
        "dram_bytes_per_cycle_needed": needed,
        "dram_bandwidth_ok": needed <= hw.dram_bytes_per_cycle,
        "energy_pj": energy[policy]["total"],
        "energy_pj_by_policy": {p: e["total"] for p, e in energy.items()},
        "energy_breakdown_pj": energy,
        "segments": segments,
    }
    if audio_ms is not None:
        compute_ms = c.cycles / (hw.clock_mhz * 1e3)
        out["audio_ms"] = audio_ms
        out["compute_ms"] = compute_ms
        out["rtf"] = compute_ms / audio_ms
    return out


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


def _ops_table(results: list[OpResult]) -> list[dict[str, Any]]:
    return [{"name": r.name, "kind": r.kind, "shape": r.shape, "count": r.count,
             "cycles": r.counts.cycles, "macs": r.counts.macs, "busy": dict(r.counts.busy),
             "sram_bytes": dict(r.counts.sram_peak)} for r in results]


def estimate_layer(cfg: Config, segments: int = 1, *,
                   table: EnergyTable = HOROWITZ_45NM) -> dict[str, Any]:
    """One layer over the first ``segments`` segments of a stream (memory bank and left-context
    cache filling up as in ``model/encoder.py``); ``cycles`` is the total,
    ``per_segment_cycles`` each segment's, ``ops`` the last segment's op table."""
    if not isinstance(segments, int) or segments < 1:
        raise ValueError(f"segments={segments!r} must be a positive integer")
    mc = cfg.model
    per_segment, ops = [], None
    for m, lc in _segment_shapes(mc, segments):
        results, steps = layer_ops(cfg, m, lc)
        per_segment.append(total([r.counts for r in results]))
        ops = results, steps
    c = total(per_segment)
    wb = layer_weight_bytes_unique(mc)
    # Parameters are loaded once per segment by the programs; count the unique bytes once.
    out = report(c, cfg.hardware, table, wb, segments,
                 audio_ms=segments * mc.segment_length * mc.frame_ms)
    out["per_segment_cycles"] = [s.cycles for s in per_segment]
    out["ops"] = _ops_table(ops[0])
    out["fused_working_set_bytes"] = _working_set(cfg, ops[1])
    return out


def _working_set(cfg: Config, steps: list[Step]) -> dict[str, int]:
    """Activation bytes a fused layer program would keep on chip: the step's live int8
    tensors plus every layer's state (memory bank, left-context caches)."""
    live = live_peak(cfg, steps)["act"]
    state = state_bytes(cfg)["total"] * cfg.model.n_layers
    return {"live": live, "state_all_layers": state, "total": live + state}


def model_io_ops(cfg: Config) -> list[OpResult]:
    """The model step's work outside the layers, in order (``model/golden.py``,
    ``GoldenEncoder.infer``): the int16 input chunk (``L+R`` frames) from the host; layer 0's
    memory vector, ``sum_rows_i16`` of the segment's ``L`` raw int16 frames and one
    ``requantize`` to int8; after the last layer, the int16 segment output (``L`` rows) to
    the host."""
    mc, hw = cfg.model, cfg.hardware
    d, seg, r = mc.d_model, mc.segment_length, mc.right_context
    ops = [VectorOp("input_memory_sum", "sum_rows_i16", seg, d),
           VectorOp("input_memory_requant", "requantize", 1, d)]
    frames_in, frames_out = 2 * (seg + r) * d, 2 * seg * d
    return [OpResult("input_frames", "host_in", f"{seg + r}x{d}", 1,
                     host_transfer(frames_in, hw, into_chip=True)),
            *(op_result(op, hw) for op in ops),
            OpResult("output_frames", "host_out", f"{seg}x{d}", 1,
                     host_transfer(frames_out, hw, into_chip=False))]


def model_counts(cfg: Config) -> tuple[Counts, list[OpResult], list[Step]]:
    """Counts of one steady-state segment through the model, and one layer's ops."""
    results, steps = layer_ops(cfg)
    layer = total([r.counts for r in results])
    return layer * cfg.model.n_layers + total([r.counts for r in model_io_ops(cfg)]), \
        results, steps


def estimate_model(cfg: Config, *, table: EnergyTable = HOROWITZ_45NM) -> dict[str, Any]:
    """One steady-state segment (full memory bank and left-context cache) through all layers;
    ``rtf`` = compute time / ``segment_length * frame_ms``."""
    mc = cfg.model
    c, results, steps = model_counts(cfg)
    wb = mc.n_layers * layer_weight_bytes_unique(mc)
    out = report(c, cfg.hardware, table, wb, 1, audio_ms=mc.segment_length * mc.frame_ms)
    layer = total([r.counts for r in results])
    layer_energy = energy_pj(layer, cfg.hardware, table, layer.weight_bytes
                             + layer.host_in_bytes + layer.host_out_bytes)["total"]
    out["layer_cycles"] = layer.cycles
    # layer 0 also receives the input chunk and computes its memory vector; the last layer
    # sends the output
    io = model_io_ops(cfg)
    extra = [0] * mc.n_layers
    for r in io:
        extra[-1 if r.kind == "host_out" else 0] += r.counts.cycles
    out["layers"] = [{"layer": i, "cycles": layer.cycles + extra[i],
                      "energy_pj_streamed": layer_energy} for i in range(mc.n_layers)]
    out["ops"] = _ops_table(results)
    out["model_ops"] = _ops_table(io)
    out["fused_working_set_bytes"] = _working_set(cfg, steps)
    out["exp_lut_bytes"] = EXP_LUT_BYTES
    return out


#: Metrics of the folding report: (key, label, getter on an estimate_model result).
FOLD_METRICS = (
    ("weight_bytes", "weight bytes (deployed)", lambda e: e["weight_bytes_unique"]),
    ("sram_bytes", "peak SRAM, programs (bytes)", lambda e: sum(e["sram_bytes"].values())),
    ("working_set_bytes", "fused working set (bytes)",
     lambda e: e["fused_working_set_bytes"]["total"]),
    ("dram_bytes_streamed", "DRAM / segment, streamed",
     lambda e: e["traffic"]["streamed"]["dram_bytes"]),
    ("dram_bytes_resident", "DRAM / segment, resident",
     lambda e: e["traffic"]["resident"]["dram_bytes"]),
    ("energy_pj_streamed", "energy / segment, streamed (pJ)",
     lambda e: e["energy_pj_by_policy"]["streamed"]),
    ("energy_pj_resident", "energy / segment, resident (pJ)",
     lambda e: e["energy_pj_by_policy"]["resident"]),
    ("power_mw_streamed", "power at real time, streamed (mW)",
     lambda e: e["energy_pj_by_policy"]["streamed"] / e["audio_ms"] * 1e-6),
    ("cycles", "cycles / segment", lambda e: e["cycles"]),
    ("macs", "MACs / segment", lambda e: e["macs"]),
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
            "weight_policy": {str(f): results[f]["weight_policy"] for f in order}}
