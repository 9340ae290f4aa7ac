"""Progress on stderr for work that takes longer than a second (the demo, sweeps, builds).

On a terminal, :class:`Progress` is a `tqdm <https://tqdm.github.io>`_ bar whose elapsed time
keeps ticking during a long step; when stderr is a file or a pipe it writes one plain line per
finished step (at most one per 10 % of the total), so logs stay readable. Output never goes to
stdout, which belongs to the command's result (``--json``).
"""

from __future__ import annotations

import contextlib
import sys
import threading
import time
from collections.abc import Iterator
from typing import TextIO

from tqdm import tqdm

#: Seconds between refreshes of a terminal bar while a step runs.
TICK_S = 0.5


class Progress:
    """A progress display over ``total`` units of work named ``desc`` (see the module doc).

    Use it as a context manager; :meth:`step` wraps one unit of work, :meth:`begin` starts
    one (a callback), :meth:`update` counts units done elsewhere (e.g. by a process pool).
    ``enabled=False`` shows nothing; ``quiet_s``: without a terminal, no line until that many
    seconds have passed.
    """

    def __init__(self, total: int, desc: str, *, unit: str = "step",
                 stream: TextIO | None = None, enabled: bool = True, quiet_s: float = 0.0):
        self.total, self.desc, self.enabled, self.quiet_s = total, desc, enabled, quiet_s
        self.stream = stream or sys.stderr
        self.tty = enabled and bool(getattr(self.stream, "isatty", lambda: False)())
        self.done = 0
        self.note = ""
        self.t0 = time.monotonic()
        self._last_decile = -1
        self._begun = False
        self._bar = tqdm(total=total, desc=desc, unit=unit, file=self.stream, leave=True,
                         dynamic_ncols=True, disable=not self.tty)
        self._stop = threading.Event()
        self._ticker = None
        if self.tty:
            self._ticker = threading.Thread(target=self._tick, daemon=True)
            self._ticker.start()

    def _tick(self) -> None:
        while not self._stop.wait(TICK_S):
            with contextlib.suppress(Exception):  # never let a display problem stop the work
                self._bar.refresh()

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        self._stop.set()
        if self._ticker is not None:
            self._ticker.join()
        self._bar.close()

    def update(self, n: int = 1, note: str | None = None) -> None:
        """``n`` more units are done; ``note`` replaces the text shown beside the bar."""
        self.done += n
        if note is not None:
            self.note = note
            self._bar.set_postfix_str(note, refresh=False)
        self._bar.update(n)
        if self.enabled and not self.tty and time.monotonic() - self.t0 >= self.quiet_s:
            decile = 10 * self.done // self.total if self.total else 10
            if decile != self._last_decile or self.done == self.total:
                self._last_decile = decile
                self.stream.write(f"{self.desc} [{self.done}/{self.total}] {self.note} "
                                  f"{time.monotonic() - self.t0:.1f}s\n".replace("  ", " "))
                self.stream.flush()

    def begin(self, note: str) -> None:
        """Start the next unit of work, shown with ``note``, and count the one begun before
        as done: the callback for code that reports each step as it starts."""
        self.update(1 if self._begun else 0, note)
        self._begun = True

    @contextlib.contextmanager
    def step(self, note: str) -> Iterator[None]:
        """One unit of work: ``note`` is shown while it runs; counted when it returns."""
        self.note = note
        self._bar.set_postfix_str(note)
        t0 = time.monotonic()
        yield
        self.update(1, f"{note} ({time.monotonic() - t0:.1f} s)")


@contextlib.contextmanager
def working(desc: str, note: str, *, enabled: bool = True) -> Iterator[None]:
    """One long step shown as a :class:`Progress` of one unit (elapsed time on a terminal;
    without one, a line only if it took a second or more)."""
    with Progress(1, desc, enabled=enabled, quiet_s=1.0) as bar, bar.step(note):
        yield


__all__ = ["Progress", "working"]
