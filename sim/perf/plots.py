"""PNG plots of sweeps and folding reports (matplotlib, Agg backend; returns PNG bytes)."""

from __future__ import annotations

import io
from collections.abc import Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=120, metadata={"Software": None})
    plt.close(fig)
    return buf.getvalue()


def _log_if_wide(ax, axis: str, values: Sequence[float]) -> None:
    vals = [v for v in values if v > 0]
    if vals and max(vals) / min(vals) > 30:
        (ax.set_xscale if axis == "x" else ax.set_yscale)("log")


MARKERS = "osD^v<>ph*X"


def pareto_plot(x: Sequence[float], y: Sequence[float], feasible: Sequence[bool],
                front: Sequence[int], groups: Sequence, kinds: Sequence, labels: Sequence[str],
                *, xlabel: str, ylabel: str, title: str, group_name: str = "fold") -> bytes:
    """Scatter of all points, colour by ``groups`` (e.g. fold), marker by ``kinds`` (e.g. array
    shape), infeasible points hollow; the Pareto ``front`` (indices, in x order) is joined by a
    staircase, circled and labelled."""
    fig, ax = plt.subplots(figsize=(9, 6))
    cmap = plt.get_cmap("tab10")
    gs, ks = sorted(set(groups)), list(dict.fromkeys(kinds))
    for i in range(len(x)):
        color = cmap(gs.index(groups[i]) % 10)
        marker = MARKERS[ks.index(kinds[i]) % len(MARKERS)]
        if feasible[i]:
            ax.scatter(x[i], y[i], s=40, color=color, marker=marker, zorder=2)
        elif x[i] and y[i]:
            ax.scatter(x[i], y[i], s=40, facecolors="none", edgecolors=color, marker=marker,
                       zorder=2)
    if front:
        fx, fy = [x[i] for i in front], [y[i] for i in front]
        ax.step(fx, fy, where="post", color="black", linewidth=1.2, zorder=1)
        ax.scatter(fx, fy, s=140, facecolors="none", edgecolors="black", linewidths=1.5,
                   zorder=3)
        for i in front:
            ax.annotate(labels[i], (x[i], y[i]), textcoords="offset points", xytext=(7, 7),
                        fontsize=8)
    handles = [Line2D([], [], linestyle="", marker="o", color=cmap(gi % 10),
                      label=f"{group_name} {g}") for gi, g in enumerate(gs)]
    handles += [Line2D([], [], linestyle="", marker=MARKERS[ki % len(MARKERS)], color="grey",
                       label=str(k)) for ki, k in enumerate(ks)]
    handles.append(Line2D([], [], color="black", marker="o", markerfacecolor="none",
                          label="Pareto front"))
    drawn = sum(1 for i in range(len(x)) if not feasible[i] and x[i] and y[i])
    if drawn:
        handles.append(Line2D([], [], linestyle="", marker="o", markerfacecolor="none",
                              color="grey", label=f"{drawn} over an SRAM bank (hollow)"))
    missing = sum(1 for i in range(len(x)) if not feasible[i]) - drawn
    if missing:
        handles.append(Line2D([], [], linestyle="", label=f"{missing} rejected, not drawn "
                              "(see CSV 'error')"))
    _log_if_wide(ax, "x", x)
    _log_if_wide(ax, "y", y)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(handles=handles, fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0),
              borderaxespad=0)
    fig.tight_layout()
    return _png(fig)


def fold_plot(folds: Sequence[int], metrics: dict[str, Sequence[float]], title: str) -> bytes:
    """Grouped bars of each metric relative to fold 1 (= 1.0), one group per metric."""
    fig, ax = plt.subplots(figsize=(9, 5))
    names = list(metrics)
    width = 0.8 / len(folds)
    cmap = plt.get_cmap("tab10")
    for fi, f in enumerate(folds):
        xs = [m + (fi - (len(folds) - 1) / 2) * width for m in range(len(names))]
        vals = [metrics[n][fi] for n in names]
        bars = ax.bar(xs, vals, width=width, color=cmap(fi % 10), label=f"fold {f}")
        for b, v in zip(bars, vals, strict=True):
            ax.annotate(f"{v:.2f}", (b.get_x() + b.get_width() / 2, v), ha="center",
                        va="bottom", fontsize=7, textcoords="offset points", xytext=(0, 2))
    ax.axhline(1.0, color="black", linewidth=0.8)
    ax.set_xticks(range(len(names)))
    ax.set_xticklabels(names, fontsize=9)
    ax.set_ylabel("relative to fold 1")
    ax.set_ylim(0, 1.2 * max(max(v) for v in metrics.values()))
    ax.set_title(title)
    ax.grid(True, axis="y", alpha=0.3)
    ax.legend(fontsize=8, loc="upper center", ncol=len(folds))
    fig.tight_layout()
    return _png(fig)


def demo_fold_plot(folds: Sequence[str], cycles: Sequence[float],
                   energy: Sequence[dict[str, float]], segments: int,
                   sram_kib: dict[str, Sequence[float]], title: str) -> bytes:
    """Three panels per fold factor: RTL cycles per segment, energy per segment stacked by
    component (``energy``: breakdowns of all ``segments`` in pJ) and peak SRAM per bank."""
    fig, (ax_c, ax_e, ax_s) = plt.subplots(1, 3, figsize=(13, 4.5))
    cmap = plt.get_cmap("tab10")
    labels = [f"fold {f}" for f in folds]
    bars = ax_c.bar(labels, cycles, color=[cmap(i % 10) for i in range(len(folds))])
    for b, v in zip(bars, cycles, strict=True):
        ax_c.annotate(f"{v:,.0f}", (b.get_x() + b.get_width() / 2, v), ha="center",
                      va="bottom", fontsize=8, textcoords="offset points", xytext=(0, 2))
    ax_c.set_ylabel("RTL cycles per segment (mean)")
    ax_c.set_title("cycles")
    parts = [k for k in energy[0] if k != "total"]
    bottom = [0.0] * len(folds)
    for pi, part in enumerate(parts):
        vals = [e[part] / segments / 1e6 for e in energy]
        ax_e.bar(labels, vals, bottom=bottom, color=plt.get_cmap("tab20")(pi % 20), label=part)
        bottom = [b + v for b, v in zip(bottom, vals, strict=True)]
    ax_e.set_ylabel("energy per segment (µJ)")
    ax_e.set_title("energy by component")
    ax_e.legend(fontsize=7, loc="upper right")
    width = 0.8 / len(folds)
    banks = list(sram_kib)
    for fi, f in enumerate(folds):
        xs = [b + (fi - (len(folds) - 1) / 2) * width for b in range(len(banks))]
        ax_s.bar(xs, [sram_kib[b][fi] for b in banks], width=width, color=cmap(fi % 10),
                 label=f"fold {f}")
    ax_s.set_xticks(range(len(banks)))
    ax_s.set_xticklabels(banks)
    ax_s.set_ylabel("peak SRAM occupancy (KiB)")
    ax_s.set_title("SRAM per bank")
    ax_s.legend(fontsize=8)
    for ax in (ax_c, ax_e, ax_s):
        ax.grid(True, axis="y", alpha=0.3)
    fig.suptitle(title)
    fig.tight_layout()
    return _png(fig)


def demo_segment_plot(folds: Sequence[str], rtl: Sequence[Sequence[int]],
                      estimate: Sequence[Sequence[int]], title: str) -> bytes:
    """Cycles of every streaming segment per fold factor: RTL counters (markers) over the
    estimator's prediction (line); they coincide when the estimator is exact."""
    fig, ax = plt.subplots(figsize=(8, 4.5))
    cmap = plt.get_cmap("tab10")
    for fi, f in enumerate(folds):
        seg = list(range(len(rtl[fi])))
        ax.plot(seg, estimate[fi], color=cmap(fi % 10), linewidth=1.5,
                label=f"fold {f}: estimate")
        ax.scatter(seg, rtl[fi], color=cmap(fi % 10), marker="o", s=60, facecolors="none",
                   linewidths=1.5, label=f"fold {f}: RTL counters", zorder=3)
    ax.set_xlabel("segment (memory bank and left context filling up)")
    ax.set_ylabel("cycles")
    ax.set_xticks(range(max(len(r) for r in rtl)))
    ax.set_title(f"RTL vs estimate per segment — {title}")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return _png(fig)
