"""Streaming segments of the encoder on the Verilated accelerator, checked against the golden
model (``foldaccel rtl layer``, the layer tests, the demo).

:func:`run_stream` compiles the preload, one step program per segment and the ring readback
(``hw/layer/compiler.py``), runs them in order in one simulator process (SRAM contents and
the vector unit's tables persist between programs, as on the hardware), and compares every
output element of every segment and the final memory banks and left-context caches with
``model.golden.GoldenEncoder``; every program's RTL counters with the timing model; and,
with ``isa_sim=True``, every output stream byte for byte with the ISA simulator's.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from hw.layer.compiler import StepProgram, StreamCompiler
from hw.timing import program_cycles
from hw.uarch import BANK_NAMES, WGT
from model.config import Config
from model.golden import GoldenEncoder, GoldenState
from model.quantize import QuantModel


@dataclass
class Mismatch:
    """The first differing element of a comparison."""

    segment: int | None
    layer: int | None
    tensor: str
    index: tuple[int, ...]
    expected: int
    got: int
    seed: int

    def __str__(self) -> str:
        where = [f"segment {self.segment}" if self.segment is not None else "final state",
                 f"layer {self.layer}" if self.layer is not None else ""]
        return (f"{', '.join(w for w in where if w)}, {self.tensor}{list(self.index)}: "
                f"expected {self.expected}, got {self.got} (input seed {self.seed})")


@dataclass
class StreamReport:
    """What a streaming run measured and found."""

    segments: int
    layers: int
    cycles_per_segment: list[int]
    model_cycles_per_segment: list[int]
    preload_cycles: int
    counters: list[dict[str, int]]
    mismatches: int = 0
    compared: int = 0
    first: Mismatch | None = None
    counter_mismatches: list[str] = field(default_factory=list)
    isa_mismatches: list[str] = field(default_factory=list)
    wall_s: float = 0.0
    sim_s: float = 0.0
    weights: str = ""
    state: str = ""
    resident: dict[str, bool] = field(default_factory=dict)
    sram_bytes: dict[str, int] = field(default_factory=dict)

    @property
    def cycles(self) -> int:
        return sum(self.cycles_per_segment)

    @property
    def ok(self) -> bool:
        return (self.mismatches == 0 and not self.counter_mismatches
                and not self.isa_mismatches and self.compared > 0)


def _compare(report: StreamReport, want: np.ndarray, got: np.ndarray, segment: int | None,
             layer: int | None, tensor: str, seed: int) -> None:
    want, got = np.asarray(want, np.int64), np.asarray(got, np.int64)
    if want.shape != got.shape:
        report.mismatches += 1
        if report.first is None:
            report.first = Mismatch(segment, layer, f"{tensor} shape", (), want.size, got.size,
                                    seed)
        return
    bad = np.argwhere(want != got)
    report.compared += want.size
    report.mismatches += len(bad)
    if len(bad) and report.first is None:
        idx = tuple(int(i) for i in bad[0])
        report.first = Mismatch(segment, layer, tensor, idx, int(want[idx]), int(got[idx]),
                                seed)


def golden_stream(qm: QuantModel, layers: int, segments: int, seed: int
                  ) -> tuple[list[np.ndarray], list[np.ndarray], GoldenState]:
    """The input chunks, the golden outputs per segment and the final state, over the first
    ``layers`` layers, for the seeded utterance of ``segments`` segments."""
    from model.calibration import calibration_utterance

    gold = GoldenEncoder(qm)
    frames = calibration_utterance(qm.config, segments, seed)
    chunks = gold.chunks(gold.quantize_input(frames))
    init = gold.init_state()
    state = GoldenState(init.layers[:layers], 0)
    outs = []
    for chunk in chunks:
        out, state, _ = gold.infer(chunk, state)
        outs.append(out)
    return chunks, outs, state


def valid_ring_rows(cap: int, count: int) -> slice:
    """The ring slots that hold data: ``0..count`` until it wraps, then all."""
    return slice(0, cap if count >= cap else count)


def run_stream(cfg: Config, qm: QuantModel, segments: int, layers: int | None = None, *,
               seed: int = 0, waves: bool = False, isa_sim: bool = False,
               compiler_qm: QuantModel | None = None) -> StreamReport:
    """Run ``segments`` segments of ``layers`` layers on the RTL and check them (module doc).
    ``compiler_qm``: the model the programs are compiled from (default ``qm``; a corrupted
    copy shows that the checks catch a wrong weight)."""
    from sim.rtl.jobs import Job, run_jobs

    t0 = time.monotonic()
    sc = StreamCompiler(cfg, compiler_qm or qm, layers)
    layers = sc.layers
    chunks, want_outs, want_state = golden_stream(qm, layers, segments, seed)
    progs: list[tuple[StepProgram, np.ndarray]] = [(sc.preload(), None)]
    progs += [(sc.step(s), chunks[s]) for s in range(segments)]
    progs.append((sc.readback(), None))
    jobs, models = [], []
    for n, (step, chunk) in enumerate(progs):
        model = program_cycles(step.program.instrs, sc.p)
        models.append(model)
        feed = []
        if sc.spill and 1 < n <= segments:          # the state the previous segment spilled
            feed = [(beat, n - 1, lo, hi) for beat, lo, hi in
                    sc.spill_feed(step, progs[n - 1][0])]
        jobs.append(Job(step.program.words(), sc.din(step, chunk), 4 * model["total"] + 5000,
                        feed))
    _check_host_model(cfg, progs, jobs)
    records, result = run_jobs(cfg.hardware, jobs, waves=waves)
    report = StreamReport(segments, layers,
                          [r.counters["total"] for r in records[1:-1]],
                          [m["total"] for m in models[1:-1]], records[0].counters["total"],
                          [r.counters for r in records[1:-1]], wall_s=0.0,
                          sim_s=result.wall_s)
    names = ("preload", *(f"segment {s}" for s in range(segments)), "readback")
    for (step, _), rec, model, name in zip(progs, records, models, names, strict=True):
        if not rec.ok:
            raise RuntimeError(f"{name}: {rec.describe(step.program.words())}")
        for key, value in model.items():
            if rec.counters[key] != value:
                report.counter_mismatches.append(
                    f"{name}: counter {key}: timing model {value}, RTL {rec.counters[key]}")
    for s in range(segments):
        got = sc.output_rows(progs[1 + s][0], records[1 + s].dout)
        _compare(report, want_outs[s], got, s, layers - 1, "output", seed)
    last = (progs[-2][0], records[-2].dout) if sc.spill else (progs[-1][0], records[-1].dout)
    rings = sc.rings_of(*last)
    for i, st in enumerate(want_state.layers):
        for tag, buf, count in (("memory", st.memory, st.mem_count),
                                ("key", st.lc_key, st.lc_count),
                                ("value", st.lc_value, st.lc_count)):
            if len(buf) == 0:
                continue
            rows = valid_ring_rows(len(buf), count)
            _compare(report, np.asarray(buf)[rows], rings[f"L{i}.{tag}"][rows], None, i,
                     f"{tag} ring", seed)
    if isa_sim:
        report.isa_mismatches = _isa_check(sc, progs, records)
    report.weights = "resident" if sc.resident[WGT] else "streamed"
    report.state = "spilled" if sc.spill else "on chip"
    report.resident = {BANK_NAMES[b].lower(): v for b, v in sc.resident.items()}
    report.sram_bytes = sram_peak([step.program for step, _ in progs], sc.p)
    report.wall_s = time.monotonic() - t0
    return report


def _check_host_model(cfg: Config, progs, jobs) -> None:
    """Every program fits the simulation host model's memories (or a clear error)."""
    from sim.rtl.designs import harness_depths

    depths = harness_depths(cfg.hardware)
    for (step, _), job in zip(progs, jobs, strict=True):
        for what, need, have in (("instructions", len(job.words), depths["imem_depth"]),
                                 ("data-in beats", len(job.din), depths["dmem_depth"]),
                                 ("data-out beats", step.program.n_out_beats,
                                  depths["omem_depth"])):
            if need > have:
                raise ValueError(f"a step program needs {need} {what}; the simulation host "
                                 f"model holds {have}; fix: fewer layers (--layers) or a "
                                 "smaller model")


def sram_peak(programs, p) -> dict[str, int]:
    """Peak SRAM bytes per bank the programs touch together (their static footprint)."""
    from sim.perf.program import traffic_counts

    instrs = [ins for prog in programs for ins in prog.instrs]
    return dict(traffic_counts(instrs, p)[0].sram_peak)


def _isa_check(sc: StreamCompiler, progs, records) -> list[str]:
    """The ISA simulator runs the same programs (state carried along): streams must match."""
    from sim.isa_sim import simulate

    out, machine, spilled = [], None, None
    for (step, chunk), rec in zip(progs, records, strict=True):
        res = simulate(step.program.instrs, sc.p, sc.din(step, chunk, spilled),
                       machine=machine)
        machine = res.machine
        if sc.spill and step.out is not None:
            spilled = sc.spill_words(step, res.dout)
        if res.dout.shape != rec.dout.shape or not np.array_equal(res.dout, rec.dout):
            out.append(f"output stream of program {len(out)} differs from the ISA simulator's")
    return out


def report_dict(r: StreamReport) -> dict[str, Any]:
    """The ``--json`` object of ``foldaccel rtl layer``."""
    return {"segments": r.segments, "layers": r.layers, "cycles": r.cycles,
            "cycles_per_segment": r.cycles_per_segment,
            "model_cycles_per_segment": r.model_cycles_per_segment,
            "model_matches_rtl": not r.counter_mismatches,
            "preload_cycles": r.preload_cycles, "mismatches": r.mismatches,
            "compared": r.compared, "first_mismatch": str(r.first) if r.first else None,
            "counter_mismatches": r.counter_mismatches, "isa_mismatches": r.isa_mismatches,
            "weights": r.weights, "state": r.state, "resident": r.resident,
            "sram_bytes": r.sram_bytes,
            "counters": r.counters, "sim_s": round(r.sim_s, 3), "wall_s": round(r.wall_s, 3)}


__all__ = ["Mismatch", "StreamReport", "golden_stream", "report_dict", "run_stream"]
