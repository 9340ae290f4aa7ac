"""Scoreboard shared by the cocotb testbenches: compare observed vs expected, report exactly."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class Mismatch:
    where: str
    expected: Any
    got: Any
    inputs: str = ""

    def __str__(self) -> str:
        extra = f" inputs: {self.inputs}" if self.inputs else ""
        return f"{self.where}: expected {self.expected}, got {self.got}{extra}"


@dataclass
class Scoreboard:
    """Counts comparisons; keeps the first mismatches (all are counted)."""

    name: str
    seed: int
    keep: int = 10
    compared: int = 0
    mismatches: int = 0
    first: list[Mismatch] = field(default_factory=list)

    def compare(self, where: str, expected: Any, got: Any, inputs: str = "") -> bool:
        self.compared += 1
        if expected == got:
            return True
        self.mismatches += 1
        if len(self.first) < self.keep:
            self.first.append(Mismatch(where, expected, got, inputs))
        return False

    def report(self) -> str:
        head = (f"{self.name}: {self.mismatches} mismatches in {self.compared} comparisons "
                f"(seed {self.seed})")
        return "\n".join([head, *(f"  {m}" for m in self.first)])

    def check(self, min_compared: int = 1) -> None:
        """Raise AssertionError with the report unless every comparison matched."""
        assert self.compared >= min_compared, (
            f"{self.name}: only {self.compared} comparisons (expected >= {min_compared})")
        assert self.mismatches == 0, self.report()
