"""Streaming segments of the encoder checked against the golden model, without the RTL.

The pieces every stream run shares (``foldaccel rtl layer`` on the Verilated RTL in
``sim/rtl/layer_run.py``, the ISA-simulator runs of the tests): the seeded input and the
golden outputs (:func:`golden_stream`), the element-by-element comparison that names the
first mismatch (:class:`Mismatch`), the report, and :func:`isa_stream`, which runs the
compiled programs (``hw/layer/compiler.py``) on the ISA simulator (``sim/isa_sim.py``)
with the machine state carried from program to program, as the hardware keeps its SRAMs.
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
from sim.perf.program import footprint_bytes


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
    waves: str | None = None                 # the waveform file of an RTL run, if any
    outputs: list[np.ndarray] = field(default_factory=list)   # the executor's, per segment

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


def golden_stream(qm: QuantModel, layers: int, segments: int, seed: int,
                  frames: np.ndarray | None = None
                  ) -> tuple[list[np.ndarray], list[np.ndarray], GoldenState]:
    """The input chunks, the golden outputs per segment and the final state, over the first
    ``layers`` layers, for the seeded utterance of ``segments`` segments, or for the float
    input rows ``frames`` (``(segments*L + R, input_dim)``, e.g. an utterance's features)."""
    from model.calibration import calibration_utterance

    gold = GoldenEncoder(qm)
    if frames is None:
        frames = calibration_utterance(qm.config, segments, seed)
    elif len(gold.chunks(np.asarray(frames))) != segments:
        raise ValueError(f"the input rows make {len(gold.chunks(np.asarray(frames)))} "
                         f"segments, not {segments}")
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


def compare_stream(report: StreamReport, sc: StreamCompiler, steps: list[StepProgram],
                   douts: list[np.ndarray], rings: dict[str, np.ndarray],
                   want_outs: list[np.ndarray], want_state: GoldenState, seed: int) -> None:
    """Compare every segment's output rows (``douts[s]`` of ``steps[s]``) and the final
    rings with the golden model's; mismatches go into ``report``."""
    layers = sc.layers
    for s, (step, dout) in enumerate(zip(steps, douts, strict=True)):
        got = sc.output_rows(step, dout)
        report.outputs.append(got)
        _compare(report, want_outs[s], got, s, layers - 1, "output", seed)
    for i, st in enumerate(want_state.layers):
        for tag, buf, count in (("memory", st.memory, st.mem_count),
                                ("key", st.lc_key, st.lc_count),
                                ("value", st.lc_value, st.lc_count)):
            if len(buf) == 0:
                continue
            rows = valid_ring_rows(len(buf), count)
            _compare(report, np.asarray(buf)[rows], rings[f"L{i}.{tag}"][rows], None, i,
                     f"{tag} ring", seed)


def describe_compiler(report: StreamReport, sc: StreamCompiler, programs) -> None:
    """Weights, state placement and peak SRAM of the compiled programs into ``report``."""
    report.weights = "resident" if sc.resident[WGT] else "streamed"
    report.state = "spilled" if sc.spill else "on chip"
    report.resident = {BANK_NAMES[b].lower(): v for b, v in sc.resident.items()}
    report.sram_bytes = footprint_bytes(programs, sc.p)


def isa_stream(cfg: Config, qm: QuantModel, segments: int, layers: int | None = None, *,
               seed: int = 0, compiler_qm: QuantModel | None = None,
               frames: np.ndarray | None = None) -> StreamReport:
    """Run ``segments`` segments of ``layers`` layers on the ISA simulator and check every
    output element and the final rings against the golden model. Cycles are the timing
    model's (what the RTL's counters equal). ``compiler_qm`` as in
    :func:`sim.rtl.layer_run.run_stream`; ``frames``: the input rows (as
    :func:`golden_stream`)."""
    from sim.isa_sim import simulate

    t0 = time.monotonic()
    sc = StreamCompiler(cfg, compiler_qm or qm, layers)
    chunks, want_outs, want_state = golden_stream(qm, sc.layers, segments, seed, frames)
    pre = sc.preload()
    machine = simulate(pre.program.instrs, sc.p, sc.din(pre)).machine
    steps, douts, models, spilled = [], [], [], None
    for s in range(segments):
        step = sc.step(s)
        res = simulate(step.program.instrs, sc.p, sc.din(step, chunks[s], spilled),
                       machine=machine)
        machine = res.machine
        if sc.spill:
            spilled = sc.spill_words(step, res.dout)
        steps.append(step)
        douts.append(res.dout)
        models.append(program_cycles(step.program.instrs, sc.p))
    if sc.spill:
        rings = sc.rings_of(steps[-1], douts[-1])
    else:
        rb = sc.readback()
        rings = sc.rings_of(rb, simulate(rb.program.instrs, sc.p, sc.din(rb),
                                         machine=machine).dout)
    cycles = [m["total"] for m in models]
    report = StreamReport(segments, sc.layers, cycles, cycles,
                          program_cycles(pre.program.instrs, sc.p)["total"], models)
    compare_stream(report, sc, steps, douts, rings, want_outs, want_state, seed)
    describe_compiler(report, sc, [pre.program, *(st.program for st in steps)])
    report.wall_s = time.monotonic() - t0
    return report


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
            "counters": r.counters, "sim_s": round(r.sim_s, 3), "wall_s": round(r.wall_s, 3),
            "waves": r.waves}


__all__ = ["Mismatch", "StreamReport", "compare_stream", "describe_compiler", "golden_stream",
           "isa_stream", "report_dict", "valid_ring_rows"]
