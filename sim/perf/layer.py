"""Counts of the layer compiler's programs: the programs ``foldaccel rtl layer`` runs, timed.

:func:`compile_stream` builds a :class:`hw.layer.compiler.StreamCompiler` for a config from a
model of zeros (``phantom_model``: the instructions do not depend on the weights' values, so
the programs are those of every exported model of that shape). :func:`step_counts` times one
compiled program with the accelerator's timing model (its cycles equal the RTL's counters)
and reads its traffic off its instructions, splitting the host-to-chip bytes by where each
LOAD's data come from: the segment's input rows, constants (weights, parameter words,
tables: streamed when their bank cannot hold them all) and spilled streaming state.

Compiling a large model is the slow part (about a second for 20 layers of
``configs/emformer_base.toml``), so :func:`stream_counts` caches its results in memory and
on disk under ``perf/stream`` (:mod:`sim.perf.diskcache`), keyed by the config, the segments
and the layers.
"""

from __future__ import annotations

import functools
import json
from dataclasses import asdict, dataclass
from typing import Any

from hw.layer.compiler import StepProgram, StreamCompiler, ring_state
from hw.uarch import BANK_KEYS, BANK_NAMES
from model.config import Config, config_from_dict
from sim.perf.counts import Counts
from sim.perf.diskcache import disk_cached, memoized
from sim.perf.gemm import timing_hw
from sim.perf.program import footprint_bytes, op_profile, timed_counts


def compile_stream(cfg: Config, layers: int | None = None) -> StreamCompiler:
    """The stream compiler of ``cfg`` (first ``layers`` layers, default all) for timing."""
    return StreamCompiler(cfg, None, layers)


def step_counts(sc: StreamCompiler, step: StepProgram) -> Counts:
    """Cycles, work and traffic of one compiled program of ``sc`` (module docstring):
    ``host_in_bytes`` = input rows + spilled state, ``weight_loads`` = constants per bank,
    ``host_out_bytes`` = output rows + spilled state."""
    p = sc.p
    c, _ = timed_counts(step.program.instrs, p, step.program.footprint)
    c.macs = step.macs
    weights = dict.fromkeys(BANK_KEYS, 0)
    data = state = 0
    for source, bank, count in step.sources:
        n = count * p.word_bytes(bank)
        if source[0] == "input":
            data += n
        elif source[0] == "spill":
            state += n
        else:
            weights[BANK_KEYS[bank]] += n
    c.weight_loads = weights
    c.host_in_bytes = data + state
    c.state_in_bytes = state
    c.state_out_bytes = sum(o.count * p.word_bytes(o.bank) for o in step.program.outputs
                            if o.tag.startswith("spill."))
    return c


@dataclass
class StreamCounts:
    """What the estimator needs of a compiled stream: counts of each requested segment's
    step program and of the preload program, and the compiler's placement decisions."""

    layers: int
    segments: list[Counts]
    preload: Counts
    resident: dict[str, bool]        # per bank (lower-case name): constants resident
    spill: bool                      # streaming state spilled to the host
    unique_bytes: int                # distinct constant bytes the programs use
    footprint_bytes: dict[str, int]  # per bank: words the programs touch together, in bytes
    ops: list[dict[str, Any]]        # the last segment's program by opcode

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["segments"] = [c.to_dict() for c in self.segments]
        d["preload"] = self.preload.to_dict()
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> StreamCounts:
        return cls(**{**d, "segments": [Counts(**c) for c in d["segments"]],
                      "preload": Counts(**d["preload"])})


def stream_counts_uncached(cfg: Config, segments: tuple[int, ...], layers: int | None,
                           ops: bool = False) -> StreamCounts:
    """Compile and time the step programs of ``segments`` (indices) now; ``ops``: also
    profile the last one by opcode."""
    sc = compile_stream(cfg, layers)
    memo: dict[tuple, Counts] = {}
    parts = []
    for s in segments:
        key = ring_state(cfg.model, s)
        if key not in memo:
            memo[key] = step_counts(sc, sc.step(s))
        parts.append(memo[key])
    pre = sc.preload()
    preload = step_counts(sc, pre)
    progs = [pre.program, *(sc.step(s).program for s in dict.fromkeys(segments))]
    return StreamCounts(sc.layers, parts, preload,
                        {BANK_NAMES[b].lower(): v for b, v in sc.resident.items()}, sc.spill,
                        sc.consts.unique_bytes(sc.p),
                        footprint_bytes(progs, sc.p),
                        op_profile(sc.step(segments[-1]).program.instrs, sc.p) if ops else [])


@functools.lru_cache(maxsize=256)
def _cached(cfg_json: str, segments: tuple[int, ...], layers: int | None,
            ops: bool) -> StreamCounts:
    cfg = json.loads(cfg_json)
    return disk_cached(
        "stream", {"config": cfg, "segments": list(segments), "layers": layers, "ops": ops},
        lambda: stream_counts_uncached(config_from_dict(cfg, "<estimate>"), segments, layers,
                                       ops),
        StreamCounts.to_dict, StreamCounts.from_dict)


def stream_counts(cfg: Config, segments: list[int], layers: int | None = None,
                  ops: bool = False) -> StreamCounts:
    """:func:`stream_counts_uncached`, cached in memory and on disk (module docstring).
    The result is shared: do not mutate it."""
    if layers is not None and layers == cfg.model.n_layers:
        layers = None
    key = Config(cfg.model, timing_hw(cfg.hardware)).to_dict()
    return memoized(_cached, json.dumps(key, sort_keys=True), tuple(segments), layers, ops)


__all__ = ["StreamCounts", "compile_stream", "step_counts", "stream_counts",
           "stream_counts_uncached"]
