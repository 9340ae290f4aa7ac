"""Energy per operation and per memory access — the table the estimator multiplies counts by.

Default table: Horowitz, "Computing's energy problem (and what we can do about it)",
ISSCC 2014, 45 nm, 0.9 V (values in pJ). ``docs/PERF_MODEL.md`` cites every entry and states
the two scaling rules implemented here:

* SRAM energy per 64-bit access is interpolated log-log between the cited bank sizes (8 KB,
  32 KB, 1 MB) and extrapolated with the slope of the nearest segment;
* energy of a wider or narrower access scales linearly with its width, so one byte read or
  written costs ``E64(bank) / 8``; a write costs the same as a read.

A table can be overridden from a TOML file of ``key = value`` pairs (``load_energy_table``);
unknown keys and non-positive values are rejected with the key named.
"""

from __future__ import annotations

import hashlib
import json
import math
import tomllib
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path


class EnergyTableError(ValueError):
    """A bad energy table file; the message names the key and the fix."""


@dataclass(frozen=True)
class EnergyTable:
    """Energies in pJ. ``sram_kib``/``sram_pj_per_64b`` are the interpolation points."""

    name: str = "horowitz-isscc2014-45nm"
    int8_add_pj: float = 0.03
    int8_mult_pj: float = 0.2
    int32_add_pj: float = 0.1
    int32_mult_pj: float = 3.1
    sram_kib: tuple[float, ...] = (8.0, 32.0, 1024.0)
    sram_pj_per_64b: tuple[float, ...] = (10.0, 20.0, 100.0)
    # Horowitz gives 1.3-2.6 nJ per 64-bit DRAM access; the default is the low end.
    dram_pj_per_64b: float = 1300.0

    def __post_init__(self) -> None:
        for f in fields(self):
            v = getattr(self, f.name)
            if f.name == "name":
                continue
            vals = v if isinstance(v, tuple) else (v,)
            if not vals or any(not isinstance(x, int | float) or isinstance(x, bool)
                               or not x > 0 for x in vals):
                raise EnergyTableError(f"energy table '{self.name}': '{f.name}' = {v!r} must be "
                                       "positive number(s); fix: give a value in pJ (or KiB)")
        if len(self.sram_kib) != len(self.sram_pj_per_64b) or len(self.sram_kib) < 2:
            raise EnergyTableError(
                f"energy table '{self.name}': 'sram_kib' and 'sram_pj_per_64b' must be lists "
                "of the same length >= 2; fix: give matching (size, energy) points")
        if list(self.sram_kib) != sorted(set(self.sram_kib)):
            raise EnergyTableError(f"energy table '{self.name}': 'sram_kib' must be strictly "
                                   "increasing; fix: sort the points by size")

    @property
    def mac_pj(self) -> float:
        """One int8 x int8 multiply plus one int32 accumulate."""
        return self.int8_mult_pj + self.int32_add_pj

    def sram_pj_per_byte(self, bank_kib: float) -> float:
        """Energy of reading or writing one byte of a ``bank_kib`` KiB SRAM bank."""
        return sram_pj_per_64b(self, bank_kib) / 8.0

    @property
    def dram_pj_per_byte(self) -> float:
        return self.dram_pj_per_64b / 8.0

    def digest(self) -> str:
        """sha256 of the table's values (part of the sweep cache key)."""
        text = json.dumps(asdict(self), sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()

    def to_dict(self) -> dict:
        d = asdict(self)
        d["sram_kib"], d["sram_pj_per_64b"] = list(self.sram_kib), list(self.sram_pj_per_64b)
        return d


HOROWITZ_45NM = EnergyTable()


def sram_pj_per_64b(table: EnergyTable, bank_kib: float) -> float:
    """Piecewise log-log interpolation of the table's SRAM points (end slopes extrapolate)."""
    if not bank_kib > 0:
        raise ValueError(f"SRAM bank size must be > 0 KiB, got {bank_kib}")
    xs = [math.log(x) for x in table.sram_kib]
    ys = [math.log(y) for y in table.sram_pj_per_64b]
    x = math.log(bank_kib)
    i = 1
    while i < len(xs) - 1 and x > xs[i]:
        i += 1
    t = (x - xs[i - 1]) / (xs[i] - xs[i - 1])
    return math.exp(ys[i - 1] + t * (ys[i] - ys[i - 1]))


def load_energy_table(path: str | Path | None) -> EnergyTable:
    """The default table, with the keys of a TOML file (if given) overriding it."""
    if path is None:
        return HOROWITZ_45NM
    p = Path(path)
    if not p.is_file():
        raise EnergyTableError(f"energy table file '{p}' not found; fix: pass an existing TOML "
                               "file of key = value pairs (see docs/PERF_MODEL.md)")
    try:
        data = tomllib.loads(p.read_text())
    except tomllib.TOMLDecodeError as e:
        raise EnergyTableError(f"energy table file '{p}' is not valid TOML: {e}; "
                               "fix: correct the syntax") from None
    known = {f.name for f in fields(EnergyTable)}
    for key in data:
        if key not in known:
            raise EnergyTableError(f"energy table file '{p}': unknown key '{key}'; fix: use "
                                   f"one of {sorted(known)}")
    data = {k: tuple(v) if isinstance(v, list) else v for k, v in data.items()}
    data.setdefault("name", p.stem)
    return replace(HOROWITZ_45NM, **data)
