"""Chromium's own CPU for the flowvj page, per canvas smoothing quality and frame size.

WebOutput sends 30 frames a second of random pixels at each --sizes to a headless Chromium page
(1280x720 viewport) that draws them with view.js; the CPU time of every Chromium process over
--seconds (from /proc) is printed as % of a core and ms per frame. `--smoothing` forces the
canvas's imageSmoothingQuality (an init script overrides its setter), so "high" (bicubic),
"medium" and "low" (bilinear, what view.js asks for) are measured in the same run, interleaved
--rounds times. Linux only (reads /proc).

    .venv/bin/python benchmarks/outputs/page_cpu.py [--sizes 192x108 256x144] [--seconds 15] [--rounds 2]
"""

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "live"))  # show_targets' Chromium setup
from show_targets import CHROMIUM, CHROMIUM_ARGS, SIZE  # noqa: E402

TICK_S = 1.0 / os.sysconf("SC_CLK_TCK")
FORCE_SMOOTHING = """(() => {
  const property = Object.getOwnPropertyDescriptor(CanvasRenderingContext2D.prototype, "imageSmoothingQuality");
  Object.defineProperty(CanvasRenderingContext2D.prototype, "imageSmoothingQuality", {
    get() { return property.get.call(this); },
    set(_) { property.set.call(this, "%s"); },
  });
})();"""


def chromium_cpu_s():
    """CPU seconds (user + system) of every process whose name says Chromium or headless shell."""
    total = 0.0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue
        name = text[text.index("(") + 1:text.rindex(")")].lower()
        if "chrom" in name or "headless" in name:
            fields = text[text.rindex(")") + 2:].split()
            total += (int(fields[11]) + int(fields[12])) * TICK_S
    return total


def measure(browser, size, smoothing, seconds):
    from flowvj.outputs.web import WebOutput

    w, h = size
    frames = [np.random.default_rng(i).integers(0, 255, (h, w, 3), dtype=np.uint8) for i in range(8)]
    web = WebOutput(port=0).start()
    page = browser.new_page(viewport={"width": SIZE[0], "height": SIZE[1]})
    try:
        page.add_init_script(FORCE_SMOOTHING % smoothing)
        page.goto(web.url)
        deadline = time.monotonic() + 15.0
        while page.evaluate("window.flowvjFrames") == 0:      # connected and drawing first
            if time.monotonic() > deadline:
                raise RuntimeError("the headless Chromium page drew no frame within 15 s")
            web.show(frames[0], {})
            page.wait_for_timeout(50)
        cpu, drawn, start = chromium_cpu_s(), page.evaluate("window.flowvjFrames"), time.perf_counter()
        sent, next_s = 0, start
        while time.perf_counter() - start < seconds:
            web.show(frames[sent % len(frames)], {})
            sent += 1
            next_s += 1 / 30
            time.sleep(max(0.0, next_s - time.perf_counter()))
        elapsed = time.perf_counter() - start
        used = chromium_cpu_s() - cpu
        return {"core_pct": 100 * used / elapsed, "ms_per_frame": 1000 * used / sent,
                "page_fps": (page.evaluate("window.flowvjFrames") - drawn) / elapsed}
    finally:
        page.close()
        web.close()


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", nargs="+", default=["192x108", "256x144"])
    parser.add_argument("--smoothing", nargs="+", default=["high", "medium", "low"])
    parser.add_argument("--seconds", type=float, default=15.0)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    results = {}
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        for round_ in range(args.rounds):
            for text in args.sizes:
                for smoothing in args.smoothing:
                    size = tuple(int(v) for v in text.split("x"))
                    r = measure(browser, size, smoothing, args.seconds)
                    results.setdefault((text, smoothing), []).append(r)
                    print(f"round {round_ + 1}: {text} {smoothing}: {r['core_pct']:.1f} % of a core, "
                          f"{r['ms_per_frame']:.1f} ms/frame, page {r['page_fps']:.1f} fps", file=sys.stderr, flush=True)
        browser.close()
    print("| frame | smoothing | Chromium % of a core (median) | ms per frame | page fps |")
    print("|---|---|---|---|---|")
    for (text, smoothing), runs in results.items():
        print(f"| {text} | {smoothing} | {statistics.median(r['core_pct'] for r in runs):.1f} "
              f"| {statistics.median(r['ms_per_frame'] for r in runs):.1f} "
              f"| {statistics.median(r['page_fps'] for r in runs):.1f} |")


if __name__ == "__main__":
    main()
