"""sim/progress.py: lines without a terminal, a tqdm bar with one, nothing when disabled."""

from __future__ import annotations

import io

import pytest

from sim.progress import Progress


class Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_lines_without_a_terminal():
    s = io.StringIO()
    with Progress(3, "job", stream=s) as bar:
        for name in ("a", "b", "c"):
            with bar.step(name):
                pass
    lines = s.getvalue().splitlines()
    assert [ln.split(" (")[0] for ln in lines] == ["job [1/3] a", "job [2/3] b", "job [3/3] c"]


def test_disabled_and_quiet_show_nothing():
    s = io.StringIO()
    with Progress(2, "job", stream=s, enabled=False) as bar:
        bar.update(2)
    with Progress(1, "q", stream=s, quiet_s=60) as bar:
        bar.update(1)
    assert s.getvalue() == ""


def test_terminal_bar_and_errors_pass_through():
    s = Tty()
    with pytest.raises(KeyError), Progress(2, "job", stream=s) as bar, bar.step("boom"):
        raise KeyError("x")
    assert "job" in s.getvalue() and bar.done == 0   # a failed step is not counted
    assert not bar._ticker.is_alive()


def test_begin_counts_the_step_begun_before():
    s = io.StringIO()
    with Progress(3, "job", stream=s) as bar:
        for note in ("read", "map", "count"):
            bar.begin(note)
        assert bar.done == 2 and bar.note == "count"  # the last step is still running
        bar.update(bar.total - bar.done, "done")
    lines = s.getvalue().splitlines()
    assert [ln.split(" ")[1] for ln in lines] == ["[0/3]", "[1/3]", "[2/3]", "[3/3]"]
    assert lines[1].startswith("job [1/3] map") and lines[-1].startswith("job [3/3] done")
