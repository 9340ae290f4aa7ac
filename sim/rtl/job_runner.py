"""Runs programs handed over by ``sim.rtl.jobs.run_jobs`` (CLI, benchmarks) and writes the
results back; checking is the caller's job.

Environment: FOLDACCEL_CONFIG (TOML), FOLDACCEL_JOBS (input .npz), FOLDACCEL_RESULTS (output).
"""

from __future__ import annotations

import os
import tomllib

import cocotb
import numpy as np

from model.config import config_from_dict
from sim.rtl.host import run_program
from sim.rtl.jobs import array_to_words


@cocotb.test()
async def run_jobs(dut):
    hw = config_from_dict(tomllib.loads(os.environ["FOLDACCEL_CONFIG"])).hardware
    out = {}
    douts = []
    with np.load(os.environ["FOLDACCEL_JOBS"]) as jobs:
        for n in range(int(jobs["n"])):
            din = np.array(jobs[f"din{n}"])
            for beat, src, lo, hi in jobs[f"feed{n}"]:   # the host copies earlier outputs
                din[beat:beat + hi - lo] = douts[src][lo:hi]
            rec = await run_program(dut, hw, array_to_words(jobs[f"words{n}"]), din,
                                    int(jobs[f"max{n}"]))
            douts.append(rec.dout)
            out[f"rec{n}"] = np.array(rec.to_json())
            out[f"dout{n}"] = rec.dout
    np.savez(os.environ["FOLDACCEL_RESULTS"], **out)
