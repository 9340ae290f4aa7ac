"""The demo's output: one table per fold factor, the comparison, ``report.md`` and plots."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sim.demo.run import COMPARE
from sim.tables import format_table, md_table

#: Banks in the order the tables show them.
BANK_ORDER = ("act", "wgt", "acc", "vmem", "pmem")


def _num(v: Any) -> str:
    if isinstance(v, bool):
        return "yes" if v else "NO"
    if isinstance(v, float):
        if v == 0 or abs(v) >= 1e3:
            return f"{v:,.0f}"
        return f"{v:.4g}"
    if isinstance(v, int):
        return f"{v:,}"
    return "-" if v is None else str(v)


def fold_rows(r: dict[str, Any], segments: int, clock_mhz: float) -> list[list[str]]:
    """(quantity, value) rows of one fold factor's table."""
    cyc = r["rtl_cycles_per_segment"]
    est = r["estimated_cycles_per_segment"]
    st = r["steady_state"]
    rows = [
        ["parameters", _num(r["params"])],
        ["int8 weight bytes (matrices, biases, LayerNorm)", _num(r["weight_bytes"])],
        ["constant bytes on the accelerator", _num(r["constant_bytes"])],
        ["weights / state", f"{r['weights']} / {r['state']}"],
        [f"RTL cycles per segment (segments 0..{segments - 1})", ", ".join(map(_num, cyc))],
        ["estimated cycles per segment", ", ".join(map(_num, est))],
        ["estimate == RTL (every segment, every counter)", _num(r["cycles_equal"])],
        ["preload cycles, RTL / estimate (once)",
         f"{_num(r['preload_cycles']['rtl'])} / {_num(r['preload_cycles']['estimate'])}"],
        *[[f"peak SRAM {b.upper()} (bytes of {_num(r['sram_capacity_bytes'][b])})",
           _num(r["sram_bytes"][b])] for b in BANK_ORDER],
        ["host/DRAM bytes per segment", _num(r["host_bytes_per_segment"])],
        ["energy per segment (pJ)", _num(r["energy_pj_per_segment"])],
        ["power at real time (mW)", _num(r["power_mw"])],
        [f"real-time factor at {clock_mhz:g} MHz", _num(r["rtf"])],
        ["MAC utilization", f"{100 * r['utilization']:.1f}%"],
        [f"steady state (segment {st['segment']}, estimate): cycles / RTF",
         f"{_num(st['cycles'])} / {_num(st['rtf'])}"],
        ["SQNR golden vs float, encoder output (dB)", _num(r["sqnr_db"])],
        ["elements compared (outputs + final state)", _num(r["compared"])],
        ["mismatches", _num(r["mismatches"])],
    ]
    if r["first_mismatch"]:
        rows.append(["first mismatch", r["first_mismatch"]])
    rows += [["counter mismatch", line] for line in r["counter_mismatches"]]
    return rows


def comparison_rows(rep: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    """Header and rows of the fold comparison."""
    folds = list(rep["folds"])
    ratios = [f"fold {f} / fold 1" for f in folds if f != "1"]
    header = ["", *[f"fold {f}" for f in folds], *ratios]
    rows = []
    for key, label in COMPARE:
        row = rep["comparison"][key]
        rows.append([label, *[_num(row[f]) for f in folds],
                     *[f"{row[k]:.3f}" if k in row else "-" for k in ratios]])
    return header, rows


def _title(rep: dict[str, Any]) -> str:
    m, hw = rep["model"], rep["hardware"]
    return (f"{Path(rep['config']).name}: D={m['d_model']}, {m['n_heads']} heads, FFN "
            f"{m['ffn_dim']}, {m['n_layers']} layers, segment {m['segment_length']} + right "
            f"context {m['right_context']}, left context {m['left_context']}, memory bank "
            f"{m['max_memory']}; {hw['rows']}x{hw['cols']} array at {hw['clock_mhz']:g} MHz; "
            f"{rep['segments']} segments, seed {rep['seed']}")


def text_report(rep: dict[str, Any]) -> str:
    """What ``foldaccel demo`` prints."""
    parts = [_title(rep), ""]
    for f, r in rep["folds"].items():
        parts += [f"fold {f}", format_table(["quantity", "value"], fold_rows(
            r, rep["segments"], rep["hardware"]["clock_mhz"])), ""]
    parts += ["comparison", format_table(*comparison_rows(rep)), ""]
    parts += ["speech (trained fold-2 model)", format_table(["quantity", "value"],
                                                            speech_rows(rep["speech"])), ""]
    parts.append(_verdict(rep))
    return "\n".join(parts)


def speech_rows(sp: dict[str, Any]) -> list[list[str]]:
    """The speech step: what was said, both transcripts, the RTL run's checks."""
    return [["said (eSpeak NG, " + sp["voice"] + ")", sp["said"]],
            ["transcript on the RTL", sp["transcript_rtl"]],
            ["transcript of the golden model", sp["transcript_golden"]],
            ["logits identical", "yes" if sp["identical"] else "NO"],
            ["segments / RTL cycles", f"{len(sp['cycles_per_segment'])} / {sp['cycles']:,}"],
            ["mismatches", f"{sp['mismatches']} of {sp['compared']:,}"],
            ["estimator == RTL cycles", "yes" if sp["estimator_matches_rtl"] else "NO"]]


def _verdict(rep: dict[str, Any]) -> str:
    sp = rep["speech"]
    if rep["ok"]:
        n = sum(r["compared"] for r in rep["folds"].values())
        return (f"OK: RTL == golden model on all {n:,} elements compared, estimator == RTL "
                f"cycles for fold {' and '.join(rep['folds'])}; \"{sp['said']}\" recognized "
                f"on the RTL as \"{sp['transcript_rtl']}\" (= golden)")
    bad = [f"fold {f}" for f, r in rep["folds"].items() if not r["ok"]]
    bad += [] if sp["ok"] else ["the speech step"]
    return f"FAILED for {', '.join(bad)}: see the mismatches above"


def markdown_report(rep: dict[str, Any], files: dict[str, str]) -> str:
    """``report.md``."""
    parts = ["# foldaccel demo", "", _title(rep), "",
             f"Verilog sha256 `{rep['rtl']['verilog_sha256'][:16]}…` "
             f"({rep['rtl']['verilog_lines']:,} lines); wall time {rep['wall_s']:.1f} s.", ""]
    parts += ["## Comparison", "", md_table(*comparison_rows(rep)), ""]
    parts += ["## Speech on the RTL (trained fold-2 model)", "",
              md_table(["quantity", "value"], speech_rows(rep["speech"])), ""]
    for f, r in rep["folds"].items():
        parts += [f"## Fold {f}", "", md_table(["quantity", "value"], fold_rows(
            r, rep["segments"], rep["hardware"]["clock_mhz"])), ""]
    parts += ["## Plots", ""]
    parts += [f"![{name}]({Path(path).name})" for name, path in files.items()
              if path.endswith(".png")]
    parts += ["", _verdict(rep), ""]
    return "\n".join(parts)


def plots(rep: dict[str, Any]) -> dict[str, bytes]:
    """PNG bytes by file name: cycles, energy and SRAM per fold; RTL vs estimate per segment."""
    from sim.perf.plots import demo_fold_plot, demo_segment_plot

    folds = list(rep["folds"])
    title = Path(rep["config"]).name
    return {
        "cycles_energy.png": demo_fold_plot(
            folds, [rep["folds"][f]["cycles_per_segment"] for f in folds],
            [rep["folds"][f]["energy_breakdown_pj"] for f in folds], rep["segments"],
            {b.upper(): [rep["folds"][f]["sram_bytes"][b] / 1024 for f in folds]
             for b in BANK_ORDER}, title),
        "rtl_vs_estimate.png": demo_segment_plot(
            folds, [rep["folds"][f]["rtl_cycles_per_segment"] for f in folds],
            [rep["folds"][f]["estimated_cycles_per_segment"] for f in folds], title),
    }


def write_report(rep: dict[str, Any], out: Path) -> dict[str, str]:
    """Write the plots, ``report.json`` and ``report.md`` into ``out`` (each atomically);
    the file names by kind, also stored in ``rep["files"]``."""
    import json

    from sim.fileio import atomic_write

    blobs = plots(rep)
    files = {name.removesuffix(".png"): str(out / name) for name in blobs}
    files |= {"json": str(out / "report.json"), "markdown": str(out / "report.md")}
    rep["files"] = files
    for name, data in blobs.items():
        atomic_write(out / name, data)
    atomic_write(out / "report.json", json.dumps(rep, indent=2) + "\n")
    atomic_write(out / "report.md", markdown_report(rep, files))
    return files


__all__ = ["comparison_rows", "fold_rows", "markdown_report", "plots", "text_report",
           "write_report"]
