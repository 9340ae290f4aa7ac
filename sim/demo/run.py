"""The demo's steps: per fold factor, model -> quantization -> export -> RTL -> checks.

Every number the demo reports comes from one of the project's executors: the RTL counters
and output streams (``sim/rtl/layer_run.py``), the estimator (``sim/perf/estimate.py``) of
the same programs, the integer golden model and the float model (``model/golden.py``), and
the parameter accounting (``model/accounting.py``). Nothing is computed twice to be compared
with itself: the RTL's cycles are compared with the estimator's, its outputs with the golden
model's.
"""

from __future__ import annotations

import hashlib
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from model.config import Config
from sim.progress import Progress

log = logging.getLogger("foldaccel.demo")

#: Fold factors the demo compares (fold 1 is the unfolded baseline).
FOLDS = (1, 2)
#: Segments of the streaming run: the default, and with ``--quick``.
SEGMENTS, QUICK_SEGMENTS = 4, 2
#: Config of ``--quick`` (the test suite's small shape).
QUICK_CONFIG = "tiny.toml"
#: Digits the speech step synthesizes (with a test voice) and recognizes on the RTL.
SPEECH_SAY, QUICK_SPEECH_SAY = "3 1 4 1 5", "7"


@dataclass(frozen=True)
class DemoPlan:
    """What one demo run does."""

    cfg: Config
    out: Path
    segments: int
    folds: tuple[int, ...] = FOLDS
    seed: int = 0
    keep_runs: bool = False
    say: str = SPEECH_SAY

    def weights_dir(self, fold: int) -> Path:
        return self.out / "weights" / f"fold{fold}"


def _sha256_file(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def build_rtl(plan: DemoPlan) -> dict[str, Any]:
    """Generate the accelerator's Verilog for the config's hardware and build it (cached)."""
    from sim.rtl.designs import accel_design
    from sim.rtl.runner import build

    t0 = time.monotonic()
    design = accel_design(plan.cfg.hardware)
    bdir = build(design)
    verilog = design.sources["accel_harness.v"]
    return {"verilog_sha256": hashlib.sha256(verilog.encode()).hexdigest(),
            "verilog_lines": verilog.count("\n"), "build_dir": str(bdir),
            "seconds": round(time.monotonic() - t0, 2)}


def run_fold(plan: DemoPlan, fold: int, bar: Progress) -> dict[str, Any]:
    """Every step of one fold factor; the per-fold entry of ``report.json``."""
    from model.accounting import model_info
    from model.export import check_export_target, export, load_export
    from model.golden import compare_with_float
    from model.quantize import quantize_model
    from sim.perf.estimate import estimate_layer, estimate_model
    from sim.rtl.layer_run import run_stream
    from sim.stream import report_dict

    cfg = plan.cfg.replace(fold_factor=fold)
    s = plan.segments
    check_export_target(plan.weights_dir(fold))
    qm = quantize_model(cfg, seed=plan.seed, stage=lambda name: bar.step(f"fold {fold}: {name}"))
    with bar.step(f"fold {fold}: export the weights"):
        wdir = export(qm, plan.weights_dir(fold))
        qm = load_export(wdir, cfg)  # the RTL runs what was written, checksums verified
    with bar.step(f"fold {fold}: golden model vs float model"):
        sq = compare_with_float(qm, s, plan.seed)
    with bar.step(f"fold {fold}: estimate the programs"):
        est = estimate_layer(cfg, s)
        steady = estimate_model(cfg)
    with bar.step(f"fold {fold}: {s} segments on the RTL"):
        rep = run_stream(cfg, qm, s, seed=plan.seed, keep_runs=plan.keep_runs)
    rtl = report_dict(rep)
    info = model_info(cfg)
    audio_ms = cfg.model.segment_length * cfg.model.frame_ms
    energy_seg = est["energy_pj"] / s
    cycles_seg = rtl["cycles"] / s
    return {
        "fold": fold,
        "params": info["params"]["total"],
        "weight_bytes": info["weight_bytes_int8"],
        "constant_bytes": est["weight_bytes_unique"],
        "weights_dir": str(wdir),
        "weights_sha256": _sha256_file(wdir / "weights.npz"),
        "rtl_cycles_per_segment": rtl["cycles_per_segment"],
        "estimated_cycles_per_segment": est["per_segment_cycles"],
        "cycles_equal": (rtl["cycles_per_segment"] == est["per_segment_cycles"]
                         and rtl["model_matches_rtl"]),
        "rtl_cycles": rtl["cycles"],
        "estimated_cycles": est["cycles"],
        "cycles_per_segment": cycles_seg,
        "preload_cycles": {"rtl": rtl["preload_cycles"], "estimate": est["preload"]["cycles"]},
        "sram_bytes": rtl["sram_bytes"],
        "estimated_sram_bytes": est["sram_bytes"],
        "sram_capacity_bytes": est["sram_capacity_bytes"],
        "host_bytes_per_segment": est["dram_bytes"] / s,
        "host_bytes": est["host_bytes"],
        "energy_pj_per_segment": energy_seg,
        "energy_breakdown_pj": est["energy_breakdown_pj"],
        "power_mw": energy_seg / audio_ms * 1e-6,
        "rtf": cycles_seg / (cfg.hardware.clock_mhz * 1e3) / audio_ms,
        "utilization": est["utilization"],
        "steady_state": {"segment": steady["segment"], "cycles": steady["cycles"],
                         "energy_pj": steady["energy_pj"],
                         "power_mw": steady["energy_pj"] / steady["audio_ms"] * 1e-6,
                         "rtf": steady["rtf"], "utilization": steady["utilization"]},
        "weights": rtl["weights"],
        "state": rtl["state"],
        "sqnr_db": sq["sqnr_db"],
        "sqnr_db_per_layer": sq["sqnr_db_per_layer"],
        "compared": rtl["compared"],
        "mismatches": rtl["mismatches"],
        "first_mismatch": rtl["first_mismatch"],
        "counter_mismatches": rtl["counter_mismatches"],
        "ok": rep.ok and rtl["cycles_per_segment"] == est["per_segment_cycles"],
        "rtl_sim_s": rtl["sim_s"],
    }


#: Rows of the comparison: (key in the per-fold entry, label). Ratios are fold N / fold 1.
COMPARE = (
    ("params", "parameters"),
    ("weight_bytes", "int8 weight bytes"),
    ("cycles_per_segment", "RTL cycles / segment"),
    ("host_bytes_per_segment", "host/DRAM bytes / segment"),
    ("energy_pj_per_segment", "energy / segment (pJ)"),
    ("power_mw", "power at real time (mW)"),
    ("rtf", "real-time factor"),
    ("sqnr_db", "SQNR golden vs float (dB)"),
    ("mismatches", "mismatches"),
)


def run_speech(plan: DemoPlan) -> dict[str, Any]:
    """Recognize ``plan.say`` (synthesized with a test voice) with the committed fold-2 speech
    model on the golden model and on the RTL; the transcripts must be identical."""
    from model.speech.dataset import DEFAULT_VOICE, say
    from sim.asr import load_speech_model, recognize

    sm = load_speech_model()
    audio = say(plan.say, voice=DEFAULT_VOICE)
    gold = recognize(sm, audio, "golden")
    rtl = recognize(sm, audio, "rtl", keep_runs=plan.keep_runs)
    same = bool(gold.transcript == rtl.transcript and (gold.logits == rtl.logits).all())
    return {"said": plan.say, "voice": DEFAULT_VOICE, "weights": str(sm.weights),
            "fold": sm.config.model.fold_factor,
            "audio_seconds": round(len(audio) / sm.frontend.sample_rate, 3),
            "transcript_golden": gold.transcript, "transcript_rtl": rtl.transcript,
            "identical": same, **rtl.rtl,
            "ok": same and rtl.rtl["mismatches"] == 0 and rtl.rtl["estimator_matches_rtl"]}


def comparison(folds: dict[str, dict[str, Any]]) -> dict[str, dict[str, float]]:
    """``{key: {fold: value, ..., "fold N / fold 1": ratio}}`` over :data:`COMPARE`."""
    base = folds[min(folds, key=int)]
    out: dict[str, dict[str, float]] = {}
    for key, _ in COMPARE:
        row: dict[str, float] = {f: r[key] for f, r in folds.items()}
        for f, r in folds.items():
            if f != "1" and key not in ("mismatches", "sqnr_db") and base[key]:
                row[f"fold {f} / fold 1"] = r[key] / base[key]
        out[key] = row
    return out


#: What a demo writes into its output directory (a re-run replaces these and nothing else).
OUTPUTS = ("report.json", "report.md", "cycles_energy.png", "rtl_vs_estimate.png", "weights")


class DemoError(ValueError):
    """A demo that cannot start (e.g. an unusable output directory); names the fix."""


def preflight() -> None:
    """Fail fast, before any output exists: the toolchain is there and the build directory
    is writable (raises the runner's ``ToolchainError``)."""
    from sim.rtl.runner import writable_build_root
    from sim.rtl.toolchain import activate

    activate()
    writable_build_root()


def prepare_out(out: Path) -> Path:
    """Check and create the output directory before any work: new, empty, or a previous
    demo's (it holds ``report.json``); anything else is refused, so no user file is lost."""
    from sim.fileio import make_output_dir

    out = Path(out)
    if out.is_dir() and any(out.iterdir()) and not (out / "report.json").is_file():
        raise DemoError(f"--out '{out}' is a non-empty directory that is not a demo's output "
                        "(no report.json); fix: choose a new or empty directory")
    return make_output_dir(out, "--out")


def run_demo(plan: DemoPlan, *, progress: bool = True) -> dict[str, Any]:
    """Run the demo (module doc) -> the ``report.json`` object (without the file names)."""
    t0 = time.monotonic()
    from model.quantize import QUANTIZE_STAGES

    total = 2 + (4 + len(QUANTIZE_STAGES)) * len(plan.folds)
    with Progress(total, "demo", enabled=progress) as bar:
        with bar.step("generate the RTL and build it with Verilator"):
            rtl = build_rtl(plan)
        folds = {str(f): run_fold(plan, f, bar) for f in plan.folds}
        with bar.step(f"speech: recognize \"{plan.say}\" on the RTL"):
            speech = run_speech(plan)
    hw, m = plan.cfg.hardware, plan.cfg.model
    return {
        "config": plan.cfg.source,
        "config_digest": plan.cfg.digest(),
        "model": {k: getattr(m, k) for k in ("d_model", "n_heads", "ffn_dim", "n_layers",
                                             "segment_length", "right_context",
                                             "left_context", "max_memory", "fold_scope",
                                             "head_mode", "memory_squash", "frame_ms")},
        "hardware": {k: getattr(hw, k) for k in ("rows", "cols", "clock_mhz",
                                                 "host_bytes_per_cycle")},
        "segments": plan.segments,
        "seed": plan.seed,
        "rtl": rtl,
        "folds": folds,
        "comparison": comparison(folds),
        "speech": speech,
        "ok": all(r["ok"] for r in folds.values()) and speech["ok"],
        "wall_s": round(time.monotonic() - t0, 2),
    }


__all__ = ["COMPARE", "FOLDS", "OUTPUTS", "QUICK_CONFIG", "QUICK_SEGMENTS", "QUICK_SPEECH_SAY",
           "SEGMENTS", "SPEECH_SAY",
           "DemoError", "DemoPlan", "comparison", "preflight", "prepare_out", "run_demo"]
