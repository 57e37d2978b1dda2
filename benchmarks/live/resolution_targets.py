"""Issue 12's targets: the show at its own resolution. Prints tables and PASS/FAIL lines.

1. live: `--gen-size auto` at --fps 30 and 60 on the window path (pygame, SDL dummy driver) and
   the browser path (WebOutput + headless Chromium): the size auto chose, median fps, p95 frame
   interval, latency growth, step-downs. Targets: at 30 fps a size >= 128x72, median >= 29 fps,
   p95 interval <= 40 ms, no growth; at 60 fps a size >= 64x36.
2. render: 30 s at 1280x720 with --gen-size 256x144, decoded in this process and on 2 local
   worker processes: wall time against real time (aim: 1x).
3. detail: the median frame of a 1280x720 render at 256x144 against its own 32x18 round trip
   (shrunk to 32x18 and scaled back), in dB PSNR, minus the same for a render at 32x32; target
   > 10 dB further.
4. sync: `flowvj sync` of 30 s renders at the default render size on the beat tracks, explore and
   magellan: xcorr_peak >= 0.5 at |lag| <= 1 frame.

    .venv/bin/python benchmarks/live/resolution_targets.py                       # 60 s live runs
    .venv/bin/python benchmarks/live/resolution_targets.py --live-seconds 600 --live-fps 30   # 10 minutes
    .venv/bin/python benchmarks/live/resolution_targets.py --skip-live --skip-sync

Progress goes to stderr; the tables to stdout.
"""

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
os.environ.setdefault("SDL_VIDEODRIVER", "dummy")
os.environ.setdefault("SDL_RENDER_DRIVER", "software")
os.environ.setdefault("PYGAME_HIDE_SUPPORT_PROMPT", "1")

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from show_targets import (CHROMIUM, CHROMIUM_ARGS, LIVE_TRACK, MUSIC, SYNC_MODES, SYNC_TRACKS,  # noqa: E402
                          growth, log, open_drawing_page, table, verdict)

BESIDE = Path(__file__).resolve().with_suffix(".json")  # where --json alone writes its figures
SIZE = (1280, 720)


def open_output(path, show, browser=None):
    """(output, page): a 1280x720 window (SDL dummy driver), or a WebOutput with a headless
    Chromium page connected and drawing."""
    if path == "window":
        from flowvj.outputs.window import Window

        return Window(size=SIZE, vsync=False), None
    from flowvj.outputs.web import WebOutput

    web = WebOutput(port=0).start()
    return web, open_drawing_page(browser, web, show.generator.decode(show.image_latents[0]))


def live_run(path, fps, seconds, browser=None, model=None):
    """LiveLoop on the looped track at --gen-size auto, as open_live sets it up."""
    from flowvj.audio.sources import FileSource, SilentPlayback
    from flowvj.show.live.loop import LiveLoop
    from flowvj.show.live.session import open_live
    from flowvj.show.sizes import size_text

    start = time.perf_counter()
    _, show, ladder, measured = open_live(track=LIVE_TRACK, silent=True, gen_size="auto", fps=fps, output_size=SIZE,
                                         model_path=model)
    pick_s = time.perf_counter() - start
    chosen = size_text(show.gen_size)
    log(f"  auto chose {chosen} in {pick_s:.1f} s (ladder below it: {[size_text(s) for s in ladder]})")
    output, page = open_output(path, show, browser)
    try:
        drawn_before = page.evaluate("window.flowvjFrames") if page else None
        source = SilentPlayback(FileSource(LIVE_TRACK), loop=True)
        loop = LiveLoop(show, source, [output], fps=fps, ladder=ladder, measured=measured)
        with source:
            began = time.perf_counter()
            stats = loop.run(seconds)
            elapsed = time.perf_counter() - began
        drawn = page.evaluate("window.flowvjFrames") - drawn_before if page else None
    finally:
        if page:
            page.close()
        output.close()
    intervals = loop.frame_ms[1:]
    result = {"path": path, "fps": fps, "seconds": elapsed, "chosen": chosen, "final": stats["gen_size"],
              "pick_s": pick_s, "median_fps": stats["median_fps"], "p95_frame_ms": stats["p95_frame_ms"],
              "sustained_fps": len(loop.frame_ms) / elapsed, "step_downs": stats["step_downs"],
              "latency_growth": growth(loop.latency_ms), "frame_growth": growth(intervals),
              "median_latency_ms": stats["median_latency_ms"], "bad_frames": stats["bad_frames"]}
    if page:
        result["page_fps"] = drawn / elapsed
    return result


def part_live(args):
    import torch

    torch.set_num_threads(1)
    runs, browser, playwright = [], None, None
    try:
        for path in args.live_paths:
            if path == "browser":
                from playwright.sync_api import sync_playwright

                playwright = sync_playwright().start()
                browser = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True,
                                                     args=CHROMIUM_ARGS)
            for fps in args.live_fps:
                log(f"live: {path} at --fps {fps:g}, --gen-size auto, {args.live_seconds:g} s")
                runs.append(live_run(path, fps, args.live_seconds, browser, args.model))
    finally:
        if browser:
            browser.close()
        if playwright:
            playwright.stop()
    print("## 1. live at --gen-size auto\n")
    print(table(["path", "--fps", "s", "auto chose", "at the end", "median fps", "shown fps", "page fps",
                 "p95 interval ms", "latency ms first->last 20 %", "step-downs"],
                [[r["path"], f"{r['fps']:g}", f"{r['seconds']:.0f}", r["chosen"], r["final"],
                  f"{r['median_fps']:.1f}", f"{r['sustained_fps']:.1f}",
                  f"{r['page_fps']:.1f}" if "page_fps" in r else "-", f"{r['p95_frame_ms']:.1f}",
                  f"{r['latency_growth']['first_median_ms']:.1f} -> {r['latency_growth']['last_median_ms']:.1f}",
                  "; ".join(f"{t:.0f} s {a}->{b}" for t, a, b in r["step_downs"]) or "0"] for r in runs]))
    print()
    for r in runs:
        w, h = map(int, r["final"].split("x"))
        if r["fps"] == 30.0:
            ok = (w * h >= 128 * 72 and r["median_fps"] >= 29 and r["p95_frame_ms"] <= 40
                  and not r["latency_growth"]["grew"])
            print(f"{verdict(ok)} live {r['path']} --fps 30: {r['final']} (>= 128x72), median "
                  f"{r['median_fps']:.1f} fps (>= 29), p95 {r['p95_frame_ms']:.1f} ms (<= 40), latency growth "
                  f"x{r['latency_growth']['ratio']:.2f}")
        else:
            ok = w * h >= 64 * 36
            print(f"{verdict(ok)} live {r['path']} --fps 60: {r['final']} (>= 64x36), median {r['median_fps']:.1f} fps")
    print()
    return runs


def timed_render(out, **options):
    from flowvj.show.render import render

    start = time.perf_counter()
    render(LIVE_TRACK, out, size=SIZE, fps=30, duration_s=30.0, start_s=30.0, show_progress=False, **options)
    return time.perf_counter() - start


def part_render(args):
    runs = []
    with tempfile.TemporaryDirectory() as tmp:
        for label, options in (("hires 256x144, this process", {"gen_size": (256, 144)}),
                               ("hires 256x144, 2 local workers", {"gen_size": (256, 144), "workers": 2,
                                                                   "engine": "local"}),
                               ("the default (hires, auto size), this process", {}),
                               ("lite 64x36 (this round's first default)", {"gen_size": (64, 36),
                                                                            "model_path": "lite"}),
                               ("lite 32x32 (round 1), this process", {"gen_size": (32, 32),
                                                                       "model_path": "lite"})):
            log(f"render: 30 s at 1280x720, {label}")
            wall = timed_render(Path(tmp) / "r.mp4", **options)
            runs.append({"label": label, "wall_s": wall, "ratio": wall / 30.0})
    print("## 2. render: 30 s at 1280x720, 30 fps (model load and encode included)\n")
    print(table(["gen size, decode", "wall s", "x real time"],
                [[r["label"], f"{r['wall_s']:.1f}", f"{r['ratio']:.2f}"] for r in runs]))
    print()
    best = min(r["ratio"] for r in runs[:2])
    print(f"{verdict(best <= 1.0)} render at 256x144: best {best:.2f}x real time (aim <= 1.0)")
    print(f"{verdict(runs[2]['ratio'] <= 2.2)} render at the default: {runs[2]['ratio']:.2f}x real time "
          "(about twice real time)")
    print()
    return runs


def round_trip_psnr(frame):
    from PIL import Image

    image = Image.fromarray(frame)
    back = image.resize((32, 18), Image.Resampling.BICUBIC).resize(image.size, Image.Resampling.BICUBIC)
    error = np.mean((frame.astype(float) - np.asarray(back, dtype=float)) ** 2)
    return 10 * np.log10(255.0 ** 2 / max(error, 1e-12))


def part_detail(args):
    import av

    from flowvj.show.render import render

    figures = {}
    with tempfile.TemporaryDirectory() as tmp:
        for gen in ((256, 144), (32, 32)):
            out = Path(tmp) / "d.mp4"
            log(f"detail: 10 s at 1280x720 drawn at {gen[0]}x{gen[1]}")
            render(LIVE_TRACK, out, size=SIZE, fps=30, duration_s=10.0, start_s=30.0, gen_size=gen,
                   show_progress=False)
            with av.open(str(out)) as container:
                psnrs = [round_trip_psnr(f.to_ndarray(format="rgb24")) for f in container.decode(video=0)]
            figures[f"{gen[0]}x{gen[1]}"] = statistics.median(psnrs)
    gap = figures["32x32"] - figures["256x144"]
    print("## 3. detail: median frame PSNR against its own 32x18 round trip (lower = more real detail)\n")
    print(table(["drawn at", "median PSNR dB"], [[k, f"{v:.1f}"] for k, v in figures.items()]))
    print()
    print(f"{verdict(gap > 10)} detail: 256x144 is {gap:.1f} dB further from its 32x18 round trip than 32x32 (> 10)")
    print()
    return {"psnr_db": figures, "gap_db": gap}


def part_sync(args):
    from flowvj.flow.checkpoint import default_model
    from flowvj.show.render import render, render_gen_size
    from flowvj.show.sizes import size_text
    from flowvj.flow import load_model
    from flowvj.lab.metrics import sync_report

    gen = size_text(render_gen_size(load_model(default_model("cpu")), (320, 180)))
    rows, results = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for name in SYNC_TRACKS[: args.sync_tracks]:
            for mode in SYNC_MODES:
                out = Path(tmp) / "s.mp4"
                log(f"sync: {name} {mode} at the default {gen}")
                render(MUSIC / name, out, size=(320, 180), fps=30, duration_s=30.0, start_s=30.0, mode=mode,
                       show_progress=False)
                report = sync_report(out)
                ok = report["xcorr_peak"] >= 0.5 and abs(report["xcorr_lag_ms"]) <= 1000 / 30 + 1e-6
                results.append({"track": name, "mode": mode, **report, "pass": ok})
                rows.append([name, mode, f"{report['xcorr_peak']:.2f}", f"{report['xcorr_lag_ms']:.0f}", verdict(ok)])
    print(f"## 4. sync at the default render model and size ({gen})\n")
    print(table(["track", "mode", "xcorr_peak", "lag ms", ""], rows))
    print()
    return results


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--live-seconds", type=float, default=60.0, help="seconds per live run (issue: 600)")
    parser.add_argument("--live-fps", type=float, nargs="+", default=[30.0, 60.0],
                        help="the --fps of the live runs (default: 30 60)")
    parser.add_argument("--live-paths", nargs="+", choices=("window", "browser"), default=["window", "browser"],
                        help="which live paths to run")
    parser.add_argument("--skip-live", action="store_true")
    parser.add_argument("--skip-render", action="store_true")
    parser.add_argument("--skip-detail", action="store_true")
    parser.add_argument("--skip-sync", action="store_true")
    parser.add_argument("--sync-tracks", type=int, help="only the first N beat tracks (default: all)")
    parser.add_argument("--model", help="flow checkpoint or bundled model for the live runs (default: the "
                                        "live default, hires on a CPU)")
    parser.add_argument("--json", nargs="?", const=str(BESIDE), metavar="PATH",
                        help="also write every figure to PATH (--json alone: resolution_targets.json beside this script)")
    args = parser.parse_args()
    figures = {}
    for name, part in (("live", part_live), ("render", part_render), ("detail", part_detail), ("sync", part_sync)):
        if not getattr(args, f"skip_{name}"):
            figures[name] = part(args)
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=1))


if __name__ == "__main__":
    main()
