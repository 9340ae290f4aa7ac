"""Streaming segments of the encoder on the Verilated accelerator, checked against the golden
model (``foldaccel rtl layer``, the layer tests, the demo).

:func:`run_stream` compiles the preload, one step program per segment and the ring readback
(``hw/layer/compiler.py``), runs them in order in one simulator process (SRAM contents and
the vector unit's tables persist between programs, as on the hardware), and compares every
output element of every segment and the final memory banks and left-context caches with
``model.golden.GoldenEncoder`` (``sim/stream.py``); every program's RTL counters with the
timing model; and, with ``isa_sim=True``, every output stream byte for byte with the ISA
simulator's.
"""

from __future__ import annotations

import time

import numpy as np

from hw.layer.compiler import StepProgram, StreamCompiler
from hw.timing import program_cycles
from model.config import Config
from model.quantize import QuantModel
from sim.stream import StreamReport, compare_stream, describe_compiler, golden_stream


def run_stream(cfg: Config, qm: QuantModel, segments: int, layers: int | None = None, *,
               seed: int = 0, waves: bool = False, isa_sim: bool = False,
               compiler_qm: QuantModel | None = None, keep_runs: bool = False,
               waves_path=None, frames: np.ndarray | None = None) -> StreamReport:
    """Run ``segments`` segments of ``layers`` layers on the RTL and check them (module doc).
    ``compiler_qm``: the model the programs are compiled from (default ``qm``; a corrupted
    copy shows that the checks catch a wrong weight); ``keep_runs``/``waves_path``: as in
    :func:`sim.rtl.jobs.run_jobs`; ``frames``: the float input rows of the utterance
    (default: the seeded calibration utterance; :func:`sim.stream.golden_stream`). The RTL's
    outputs per segment are in the report's ``outputs``."""
    from sim.rtl.jobs import Job, run_jobs

    t0 = time.monotonic()
    sc = StreamCompiler(cfg, compiler_qm or qm, layers)
    layers = sc.layers
    chunks, want_outs, want_state = golden_stream(qm, layers, segments, seed, frames)
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
    records, result = run_jobs(cfg.hardware, jobs, waves=waves, keep_runs=keep_runs,
                               waves_path=waves_path)
    report = StreamReport(segments, layers,
                          [r.counters["total"] for r in records[1:-1]],
                          [m["total"] for m in models[1:-1]], records[0].counters["total"],
                          [r.counters for r in records[1:-1]], wall_s=0.0,
                          sim_s=result.wall_s,
                          waves=str(result.waves_file) if result.waves_file else None)
    names = ("preload", *(f"segment {s}" for s in range(segments)), "readback")
    for (step, _), rec, model, name in zip(progs, records, models, names, strict=True):
        if not rec.ok:
            raise RuntimeError(f"{name}: {rec.describe(step.program.words())}")
        for key, value in model.items():
            if rec.counters[key] != value:
                report.counter_mismatches.append(
                    f"{name}: counter {key}: timing model {value}, RTL {rec.counters[key]}")
    last = (progs[-2][0], records[-2].dout) if sc.spill else (progs[-1][0], records[-1].dout)
    compare_stream(report, sc, [step for step, _ in progs[1:-1]],
                   [rec.dout for rec in records[1:-1]], sc.rings_of(*last), want_outs,
                   want_state, seed)
    if isa_sim:
        report.isa_mismatches = _isa_check(sc, progs, records)
    describe_compiler(report, sc, [step.program for step, _ in progs])
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


__all__ = ["run_stream"]
