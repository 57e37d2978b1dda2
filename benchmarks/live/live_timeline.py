"""Where a live path's late frames come from (issue 12's p95 frame interval).

One LiveLoop run per path at a fixed generation size (explore mode, the looped live track, no
sound device), as resolution_targets.py runs it, with each output's show() call timed. A late
interval (over 1.2 periods: 40 ms at 30 fps) is put down to

- "started late": the frame reached show() late (its decode was not done by its slot, or the
  loop's thread woke late): the work and the scheduling of the cores;
- "show() blocked": show() itself took over 5 ms (the output's own work, or a wait for the GIL
  held by another of the process's threads).

    .venv/bin/python benchmarks/live/live_timeline.py --paths browser --seconds 90 --gen-size 192x108

This is the measurement that found the GIL hand-off in WebOutput.show (benchmarks/JOURNAL.md,
sixth session). Progress goes to stderr; the table to stdout.
"""

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
os.environ.setdefault("SDL_VIDEODRIVER", "dummy")
os.environ.setdefault("SDL_RENDER_DRIVER", "software")
os.environ.setdefault("PYGAME_HIDE_SUPPORT_PROMPT", "1")

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from resolution_targets import SIZE, open_output  # noqa: E402
from show_targets import CHROMIUM, CHROMIUM_ARGS, LIVE_TRACK, log, table  # noqa: E402
BLOCKED_MS = 5.0


def timeline(path, gen_size, fps, seconds, browser=None):
    """(start, end) perf_counter pairs of every show() call of one run, and the loop's stats."""
    from flowvj.audio.sources import FileSource, SilentPlayback
    from flowvj.show.live.loop import LiveLoop
    from flowvj.show.live.session import open_live

    _, show, _, measured = open_live(track=LIVE_TRACK, silent=True, gen_size=gen_size, fps=fps,
                                    output_size=SIZE)
    output, page = open_output(path, show, browser)
    calls, original = [], output.show

    def timed_show(frame, meters):
        start = time.perf_counter()
        original(frame, meters)
        calls.append((start, time.perf_counter()))

    output.show = timed_show
    try:
        with SilentPlayback(FileSource(LIVE_TRACK), loop=True) as source:
            loop = LiveLoop(show, source, [output], fps=fps, measured=measured)
            stats = loop.run(seconds)
    finally:
        if page:
            page.close()
        output.close()
    return calls, stats


def figures(calls, stats, fps):
    starts, ends = np.array([c[0] for c in calls]), np.array([c[1] for c in calls])
    intervals = np.diff(ends) * 1000.0
    late = intervals > 1200.0 / fps
    blocked = ((ends - starts)[1:] * 1000.0) > BLOCKED_MS
    return {"frames": len(calls), "p50": np.percentile(intervals, 50), "p95": np.percentile(intervals, 95),
            "p99": np.percentile(intervals, 99), "late %": 100.0 * late.mean(),
            "started late %": 100.0 * (late & ~blocked).mean(), "show() blocked %": 100.0 * (late & blocked).mean(),
            "show() median ms": statistics.median((ends - starts) * 1000.0),
            "latency ms": stats["median_latency_ms"]}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--paths", nargs="+", default=["browser", "window"], choices=["browser", "window"])
    parser.add_argument("--seconds", type=float, default=90.0)
    parser.add_argument("--fps", type=float, default=30.0)
    parser.add_argument("--gen-size", default="192x108")
    args = parser.parse_args()
    gen_size = tuple(int(v) for v in args.gen_size.split("x"))
    import torch

    torch.set_num_threads(1)
    rows, browser, playwright = [], None, None
    try:
        for path in args.paths:
            if path == "browser" and browser is None:
                from playwright.sync_api import sync_playwright

                playwright = sync_playwright().start()
                browser = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True,
                                                     args=CHROMIUM_ARGS)
            log(f"live timeline: {path} at {args.gen_size}, --fps {args.fps:g}, {args.seconds:g} s")
            calls, stats = timeline(path, gen_size, args.fps, args.seconds, browser)
            rows.append((path, figures(calls, stats, args.fps)))
    finally:
        if browser:
            browser.close()
        if playwright:
            playwright.stop()
    keys = list(rows[0][1])
    print(table(["path", *keys], [[path, *(f"{f[k]:.1f}" if k != "frames" else str(f[k]) for k in keys)]
                                  for path, f in rows]))


if __name__ == "__main__":
    main()
