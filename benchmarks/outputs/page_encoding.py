"""The page's frame encoding at the compositor's output size: raw RGB against JPEG, to a loopback page.

Since the compositor (compose.py), the page gets 1280x720 frames: 2.76 MB each raw. WebOutput
sends 30 frames a second of a real image at 720p (shifted a pixel a frame, so every frame is
new) to a headless Chromium page (1280x720 viewport) with frame_encoding "raw", "jpeg" (4:2:0 at
this size, server.FULL_CHROMA_MAX_PIXELS) and "jpeg444" (full chroma), in turn, --rounds times;
printed: Chromium's CPU (all its processes, from /proc), this process's CPU (the server thread's
encoding and sending; the feeding loop is the same in both), both as % of a core, and the frames
the page drew per second. Linux only. Writes page_encoding.json.

    .venv/bin/python benchmarks/outputs/page_encoding.py [--seconds 15] [--rounds 2]
"""

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from page_cpu import CHROMIUM, CHROMIUM_ARGS, SIZE, chromium_cpu_s  # noqa: E402


def measure(browser, encoding, seconds, frames):
    from flowvj.outputs.web import WebOutput, server

    server.FULL_CHROMA_MAX_PIXELS = SIZE[0] * SIZE[1] if encoding == "jpeg444" else 320 * 180
    web = WebOutput(port=0, frame_encoding=encoding.removesuffix("444")).start()
    page = browser.new_page(viewport={"width": SIZE[0], "height": SIZE[1]})
    try:
        page.goto(web.url)
        deadline = time.monotonic() + 15.0
        while page.evaluate("window.flowvjFrames") == 0:      # connected and drawing first
            if time.monotonic() > deadline:
                raise RuntimeError("the headless Chromium page drew no frame within 15 s")
            web.show(frames[0], {})
            page.wait_for_timeout(50)
        cpu, own, drawn = chromium_cpu_s(), time.process_time(), page.evaluate("window.flowvjFrames")
        start = next_s = time.perf_counter()
        sent = 0
        while time.perf_counter() - start < seconds:
            web.show(frames[sent % len(frames)], {})
            sent += 1
            next_s += 1 / 30
            time.sleep(max(0.0, next_s - time.perf_counter()))
        elapsed = time.perf_counter() - start
        return {"chromium_core_pct": 100 * (chromium_cpu_s() - cpu) / elapsed,
                "server_core_pct": 100 * (time.process_time() - own) / elapsed,
                "page_fps": (page.evaluate("window.flowvjFrames") - drawn) / elapsed}
    finally:
        page.close()
        web.close()


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=15.0)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    from flowvj.images import load_show_images

    image = load_show_images(None, SIZE)[0]
    frames = [np.roll(image, shift, axis=1) for shift in range(8)]
    results = {}
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True,
                                             args=CHROMIUM_ARGS)
        for round_ in range(args.rounds):
            for encoding in ("raw", "jpeg", "jpeg444"):
                r = measure(browser, encoding, args.seconds, frames)
                results.setdefault(encoding, []).append(r)
                print(f"round {round_ + 1}: {encoding}: Chromium {r['chromium_core_pct']:.1f} %, server "
                      f"{r['server_core_pct']:.1f} % of a core, page {r['page_fps']:.1f} fps",
                      file=sys.stderr, flush=True)
        browser.close()
    summary = {encoding: {key: statistics.median(r[key] for r in runs) for key in runs[0]}
               for encoding, runs in results.items()}
    print("| 1280x720 to a loopback page | Chromium % of a core | server % of a core | page fps |")
    print("|---|---|---|---|")
    for encoding, s in summary.items():
        print(f"| {encoding} | {s['chromium_core_pct']:.1f} | {s['server_core_pct']:.1f} "
              f"| {s['page_fps']:.1f} |")
    out = Path(__file__).with_suffix(".json")
    out.write_text(json.dumps({"summary": summary, "runs": results}, indent=1) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
