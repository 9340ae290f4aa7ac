"""Text and Markdown tables for command output and reports."""

from __future__ import annotations

from typing import Any


def format_table(header: list[str], rows: list[list[Any]]) -> str:
    """Plain-text table with right-aligned numeric columns."""
    cells = [[str(h) for h in header]] + [[_fmt(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    lines = []
    for n, r in enumerate(cells):
        lines.append("  ".join(c.rjust(w) if _numeric(c) else c.ljust(w)
                               for c, w in zip(r, widths, strict=True)).rstrip())
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _numeric(cell: str) -> bool:
    return cell.lstrip("+-").replace(",", "").replace(".", "", 1).rstrip("%x").isdigit()


def _fmt(c: Any) -> str:
    if isinstance(c, float):
        return f"{c:,.4g}" if abs(c) < 1e4 else f"{c:,.0f}"
    if isinstance(c, int) and not isinstance(c, bool):
        return f"{c:,}"
    return str(c)


def md_table(header: list[str], rows: list[list[Any]]) -> str:
    """GitHub-flavoured Markdown table; numeric columns right-aligned."""
    cells = [[_fmt(c).replace("|", "\\|") for c in r] for r in rows]
    numeric = [bool(cells) and all(_numeric(r[i]) for r in cells) for i in range(len(header))]
    sep = "|" + "|".join("---:" if n else "---" for n in numeric) + "|"
    return "\n".join(["| " + " | ".join(map(str, header)) + " |", sep,
                      *("| " + " | ".join(r) + " |" for r in cells)])


__all__ = ["format_table", "md_table"]
