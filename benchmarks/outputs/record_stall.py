"""Does --record stall the show? The show's p95 frame interval with and without it, idle and loaded.

    python benchmarks/outputs/record_stall.py [--track T.ogg] [--seconds 40] [--pairs 2] [--gen-size 128x72]
                                              [--loads idle,loaded]

Runs the real CLI, `flowvj play --silent TRACK --gen-size 128x72 --duration 40 --stats S.json`,
without and with `--record`, alternating (the order flips every pair, so a drift in the
machine's load falls on both), first on the machine as it is ("idle") and then with a CPU hog
(one `python -c 'while 1: pass'`, pinned to one core) running beside it ("loaded"). Headless:
SDL's dummy video driver. For each run it prints the show's median fps, p95 frame interval, the
worst interval and the p95 of the first 10 s (where the issue saw freezes), and for recorded
runs the frames recorded and dropped and what the recorder's hear() + show() cost the frame loop
per frame, p95 and worst, in wall time (which counts the thread being descheduled on a busy
machine) and in the thread's own CPU time (the work itself). Then the medians per condition and
the ratio with/without.

The CLI runs through a small harness (HARNESS below) that calls `flowvj.cli.main` unchanged
and adds two lists to the --stats JSON: every frame interval (for the first 10 s and the worst
freeze, which the aggregate figures hide) and, when recording, how long each call into the
recorder took on the loop's thread.

Target (issue 25): the recording may drop frames (counted); the show's own pacing does not
change: p95 with --record within the run-to-run noise of p95 without, idle and loaded.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

TRACK = Path(__file__).resolve().parents[3] / "shared/data/music/lmms_EsoXLB-CPU_128bpm.ogg"

HARNESS = r"""
import json, sys, time
import flowvj.show.live.loop as engine
from flowvj.outputs import recorder as recorder_module

calls_ms, calls_cpu_ms = [], []
def timed(method):
    def wrapper(*args, **kwargs):
        begin, begin_cpu = time.perf_counter(), time.thread_time()
        try:
            return method(*args, **kwargs)
        finally:
            calls_ms.append((time.perf_counter() - begin) * 1000.0)
            calls_cpu_ms.append((time.thread_time() - begin_cpu) * 1000.0)
    return wrapper

# one frame's calls (hear then show) are summed below: timed per call here
recorder_module.Recorder.hear = timed(recorder_module.Recorder.hear)
recorder_module.Recorder.show = timed(recorder_module.Recorder.show)
stats = engine.LiveLoop.stats
def with_lists(self):
    figures = stats(self)
    figures["frame_ms_all"] = list(self.frame_ms)
    figures["record_call_ms_all"] = [a + b for a, b in zip(calls_ms[0::2], calls_ms[1::2])]
    figures["record_cpu_ms_all"] = [a + b for a, b in zip(calls_cpu_ms[0::2], calls_cpu_ms[1::2])]
    return figures
engine.LiveLoop.stats = with_lists
from flowvj.cli import main
sys.exit(main(sys.argv[1:]))
"""


def percentile(values, q):
    values = sorted(values)
    return values[int(q * (len(values) - 1))] if values else 0.0


def run(args, workdir, record, index):
    """One `flowvj play` run; returns its --stats figures plus the harness's lists."""
    stats = workdir / f"stats-{index}.json"
    out = workdir / f"set-{index}.mp4"
    command = [sys.executable, "-c", HARNESS, "play", str(args.track), "--silent",
               "--duration", str(args.seconds), "--gen-size", args.gen_size, "--stats", str(stats)]
    if record:
        command += ["--record", str(out)]
    env = dict(os.environ, SDL_VIDEODRIVER="dummy", SDL_RENDER_DRIVER="software")
    result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=args.seconds + 300)
    if result.returncode != 0:
        sys.exit(f"record_stall: play failed ({result.returncode}):\n{result.stderr[-3000:]}")
    figures = json.loads(stats.read_text())
    out.unlink(missing_ok=True)
    intervals = figures["frame_ms_all"][1:]
    elapsed, first = 0.0, []
    for interval in intervals:
        elapsed += interval
        if elapsed <= 10_000.0:
            first.append(interval)
    figures.update(p95_ms=percentile(intervals, 0.95), worst_ms=max(intervals, default=0.0),
                   p95_first10_ms=percentile(first, 0.95), fps_first10=len(first) / 10.0)
    calls, cpu = figures.pop("record_call_ms_all"), figures.pop("record_cpu_ms_all")
    figures.update(call_p95_ms=percentile(calls, 0.95), call_worst_ms=max(calls, default=0.0),
                   cpu_p95_ms=percentile(cpu, 0.95), cpu_worst_ms=max(cpu, default=0.0))
    return figures


def describe(figures, record):
    line = (f"median {figures['median_fps']:5.1f} fps, p95 {figures['p95_ms']:5.1f} ms, worst "
            f"{figures['worst_ms']:6.1f} ms; first 10 s: {figures['fps_first10']:4.1f} fps, p95 "
            f"{figures['p95_first10_ms']:5.1f} ms")
    for key in ("min_fps_1s", "p5_fps"):
        if key in figures:
            line += f"; {key} {figures[key]:.1f}"
    if record:
        line += (f"; recorded {figures['record_frames']}, dropped {figures['record_dropped']} of "
                 f"{figures['frames']}; recorder on the loop: wall p95 {figures['call_p95_ms']:.2f} ms, "
                 f"worst {figures['call_worst_ms']:.2f}; CPU p95 {figures['cpu_p95_ms']:.2f} ms, worst "
                 f"{figures['cpu_worst_ms']:.2f}")
    return line


def condition(args, workdir, load):
    """`args.pairs` pairs of runs under `load` ("idle" or "loaded"); prints and returns the medians."""
    hog = None
    if load == "loaded":
        hog = subprocess.Popen([sys.executable, "-c", "while 1: pass"])
        os.sched_setaffinity(hog.pid, {0})
    runs = {False: [], True: []}
    try:
        for pair in range(args.pairs):
            for record in ((False, True) if pair % 2 == 0 else (True, False)):
                figures = run(args, workdir, record, f"{load}-{pair}-{int(record)}")
                runs[record].append(figures)
                print(f"{load:6s} pair {pair + 1} {'with   ' if record else 'without'} --record: "
                      f"{describe(figures, record)}", flush=True)
    finally:
        if hog is not None:
            hog.kill()
            hog.wait()
    medians = {}
    for record, figures in runs.items():
        medians[record] = {key: statistics.median(f[key] for f in figures)
                           for key in ("median_fps", "p95_ms", "worst_ms", "p95_first10_ms", "fps_first10")}
    dropped = sum(f["record_dropped"] for f in runs[True])
    shown = sum(f["frames"] for f in runs[True])
    without, with_record = medians[False], medians[True]
    print(f"{load}: p95 frame interval without --record {without['p95_ms']:.1f} ms, with "
          f"{with_record['p95_ms']:.1f} ms (x{with_record['p95_ms'] / without['p95_ms']:.2f}); median fps "
          f"{without['median_fps']:.1f} / {with_record['median_fps']:.1f}; first 10 s p95 "
          f"{without['p95_first10_ms']:.1f} / {with_record['p95_first10_ms']:.1f} ms; worst "
          f"{without['worst_ms']:.0f} / {with_record['worst_ms']:.0f} ms; record_dropped {dropped} of "
          f"{shown} shown", flush=True)
    return medians


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--track", type=Path, default=TRACK, help="the track played (longer than --seconds)")
    parser.add_argument("--seconds", type=float, default=40.0, help="length of each run")
    parser.add_argument("--pairs", type=int, default=2, help="runs without and with --record, per load")
    parser.add_argument("--gen-size", default="128x72", help="the show's generation size")
    parser.add_argument("--loads", default="idle,loaded", help="idle, loaded or both (comma-separated)")
    args = parser.parse_args()
    if not args.track.exists():
        sys.exit(f"record_stall: {args.track}: no such track")
    print(f"load average before: {os.getloadavg()[0]:.2f}; {args.pairs} pair(s) of {args.seconds:g} s at "
          f"{args.gen_size}, {args.track.name}", flush=True)
    with tempfile.TemporaryDirectory() as folder:
        for load in args.loads.split(","):
            condition(args, Path(folder), load)


if __name__ == "__main__":
    main()
