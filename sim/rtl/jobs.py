"""Run accelerator programs on the Verilated RTL from Python (CLI, benchmarks).

Programs travel to the simulator process in an ``.npz`` file; ``sim/rtl/job_runner.py``
runs each on the host-model harness (Python asleep while the design runs) and writes the
output streams, status and performance counters back. :class:`RunRecord` is what one run
produced; :meth:`RunRecord.describe` turns an error into a message naming the instruction
and the units involved.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from hw import isa
from model.config import Config, HardwareConfig

ERR_NAMES = {0: "none", 1: "illegal instruction", 2: "watchdog", 3: "shared-port conflict"}


class AccelRunError(RuntimeError):
    """The RTL run could not be set up or did not produce results."""


@dataclass
class RunRecord:
    """Status, counters and output stream of one program run on the RTL."""

    finished: bool
    done: bool
    error: int
    err_pc: int
    last_pc: int
    busy: list[str]
    unit_pc: dict[str, int]
    waiting: list[str]
    head_pc: dict[str, int]
    counters: dict[str, int]
    dout: np.ndarray = field(default_factory=lambda: np.zeros((0, 1), np.uint8))
    wall_s: float = 0.0                       # reset + preload + run + read-back
    phases_s: dict[str, float] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.done and self.error == 0

    def describe(self, words: list[int]) -> str:
        """One-line account of how the run ended, naming instructions and busy units."""
        def name(pc: int) -> str:
            if not 0 <= pc < len(words):
                return f"#{pc} (past the end of the {len(words)}-instruction program)"
            try:
                return f"#{pc} {isa.decode(words[pc])}"
            except isa.IsaError as e:
                return f"#{pc} {e}"

        if self.error == 1:
            return f"illegal instruction {name(self.err_pc)}"
        if self.error == 3:
            units = [f"{u} executing {name(self.unit_pc[u])}" for u in self.busy]
            return (f"shared-port conflict: two units drove one bank port in the same cycle "
                    f"(the program lacks a dependency hw/deps.py requires); last instruction "
                    f"started: {name(self.last_pc)}; busy: {'; '.join(units) or 'no unit'}")
        if self.error == 2:
            units = [f"{u} executing {name(self.unit_pc[u])}" for u in self.busy]
            units += [f"{u} waiting to start {name(self.head_pc[u])} (dependencies not met)"
                      for u in self.waiting if u not in self.busy]
            return (f"watchdog: no DONE within the budget of {self.counters['total']} cycles; "
                    f"last instruction started: {name(self.last_pc)}; "
                    f"busy: {'; '.join(units) or 'no unit'}; dispatcher at {name(self.err_pc)}")
        if not self.finished:
            return "the simulation time limit ran out before the design finished"
        return f"done in {self.counters['total']} cycles"

    def to_json(self) -> str:
        d = asdict(self)
        d.pop("dout")
        return json.dumps(d)

    @classmethod
    def from_json(cls, text: str, dout: np.ndarray) -> RunRecord:
        return cls(**json.loads(text), dout=dout)


def words_to_array(words: list[int]) -> np.ndarray:
    """128-bit instruction words as ``(n, 16)`` uint8 (little-endian)."""
    return np.array([list(int(w).to_bytes(16, "little")) for w in words],
                    np.uint8).reshape(-1, 16)


def array_to_words(arr: np.ndarray) -> list[int]:
    return [int.from_bytes(bytes(row), "little") for row in np.asarray(arr, np.uint8)]


@dataclass
class Job:
    """One program and its data-in stream; ``max_cycles`` bounds the simulation.

    ``feed``: ``(beat, job, lo, hi)`` -- before this job runs, beats ``lo..hi`` of an earlier
    job's data-out stream are copied into ``din`` at ``beat`` (the host memory holding spilled
    state between segments; no arithmetic)."""

    words: list[int]
    din: np.ndarray
    max_cycles: int
    feed: list[tuple[int, int, int, int]] = field(default_factory=list)


def run_jobs(hw: HardwareConfig, jobs: list[Job], *, waves: bool = False,
             waves_path: str | os.PathLike | None = None, keep_runs: bool = False
             ) -> tuple[list[RunRecord], object]:
    """Run ``jobs`` in one simulator process on the accelerator built for ``hw``.

    Returns the run records (in job order) and the runner's :class:`sim.rtl.runner.RunResult`
    (log file, waveform path, wall time). The scratch directories (``build/runs/jobs-XXXX``
    with the job files, and the simulator's) are removed when every job ended ``ok``, unless
    ``keep_runs`` or ``FOLDACCEL_KEEP_RUNS=1``; a failed run keeps them for its log.
    ``waves``/``waves_path``: as for :func:`sim.rtl.runner.run_cocotb`.
    """
    from sim.rtl.designs import accel_design
    from sim.rtl.runner import (
        RtlRunError,
        keep_runs_requested,
        remove_run_dir,
        run_cocotb,
        writable_build_root,
    )

    root = writable_build_root()
    for n, job in enumerate(jobs):
        for _, src, _, _ in job.feed:
            if not 0 <= src < n:
                raise AccelRunError(f"job {n} is fed from job {src}, which does not run before")
    design = accel_design(hw)
    work = Path(tempfile.mkdtemp(prefix="jobs-", dir=_mkdir(root / "runs")))
    job_file, result_file = work / "jobs.npz", work / "results.npz"
    arrays = {}
    for n, job in enumerate(jobs):
        arrays[f"words{n}"] = words_to_array(job.words)
        arrays[f"din{n}"] = np.asarray(job.din, np.uint8)
        arrays[f"max{n}"] = np.array(job.max_cycles, np.int64)
        arrays[f"feed{n}"] = np.array(job.feed, np.int64).reshape(-1, 4)
    np.savez(job_file, n=np.array(len(jobs)), **arrays)
    env = {"FOLDACCEL_CONFIG": Config(hardware=hw).to_toml(), "FOLDACCEL_JOBS": str(job_file),
           "FOLDACCEL_RESULTS": str(result_file)}
    try:
        result = run_cocotb(design, "sim.rtl.job_runner", env=env, waves=waves,
                            waves_path=waves_path, expect=["run_jobs"], keep_runs=True)
    except RtlRunError:
        raise  # the simulator ran and failed: keep the job files beside its log
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)  # nothing ran (build or toolchain error)
        raise
    if not result.ok or not result_file.is_file():
        raise AccelRunError(f"RTL job run failed: {result.summary()} (job files in {work})")
    with np.load(result_file) as res:
        records = [RunRecord.from_json(str(res[f"rec{n}"]), res[f"dout{n}"])
                   for n in range(len(jobs))]
    if all(r.ok for r in records) and not keep_runs_requested(keep_runs):
        shutil.rmtree(work, ignore_errors=True)
        remove_run_dir(result)
    return records, result


def _mkdir(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path


__all__ = ["AccelRunError", "Job", "RunRecord", "array_to_words", "run_jobs", "words_to_array"]
