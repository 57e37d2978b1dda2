"""Progress for long work (training, evaluation, rendering) with rate and ETA.

On a terminal it is a live rich bar; in a log file or CI (no TTY) a bar would be noise, so it
prints one plain line every `log_every_s` seconds and one at the end instead.
"""

import math
import sys
import time

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn


def format_duration(seconds):
    seconds = int(max(0, seconds))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


class ProgressReport:
    """Counts `total` units of work; `update(n, **fields)` adds n done and shows the fields."""

    def __init__(self, description, total, unit="it", log_every_s=10.0, stream=None, start=0):
        self.description = description
        self.total = total
        self.unit = unit
        self.log_every_s = log_every_s
        self.stream = stream or sys.stderr
        self.done = start
        self._start_count = start
        self._t0 = time.monotonic()
        self._last_log = self._t0
        self._fields = ""
        self._bar = None
        if self.stream.isatty():
            console = Console(file=self.stream)
            self._bar = Progress(
                TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                TextColumn("{task.fields[rate]}"), TimeRemainingColumn(), TextColumn("{task.fields[info]}"),
                console=console, transient=False,
            )
            self._task = self._bar.add_task(description, total=total, completed=start, rate="", info="")
            self._bar.start()

    @property
    def rate(self):
        elapsed = time.monotonic() - self._t0
        return (self.done - self._start_count) / elapsed if elapsed > 0 else 0.0

    @property
    def eta_s(self):
        rate = self.rate
        return (self.total - self.done) / rate if rate > 0 and self.total else float("nan")

    def update(self, n=1, **fields):
        self.done += n
        if fields:
            self._fields = "  ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in fields.items())
        now = time.monotonic()
        if self._bar is not None:
            self._bar.update(self._task, completed=self.done, rate=f"{self.rate:.1f} {self.unit}/s", info=self._fields)
        elif now - self._last_log >= self.log_every_s:
            self._last_log = now
            self._log_line()

    def _log_line(self):
        eta_s = self.eta_s
        eta = "?" if math.isnan(eta_s) else format_duration(eta_s)
        pct = f" ({100 * self.done / self.total:.0f}%)" if self.total else ""
        print(f"{self.description}: {self.done}/{self.total}{pct}  {self.rate:.1f} {self.unit}/s  "
              f"ETA {eta}  {self._fields}", file=self.stream, flush=True)

    def close(self, final=True):
        """Stop the bar; without one, print the last progress line unless `final` is False
        (a run that failed: its one error line must stand alone)."""
        if self._bar is not None:
            self._bar.stop()
        elif final:
            self._log_line()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
