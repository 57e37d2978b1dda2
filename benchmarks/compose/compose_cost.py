"""What the compositor costs a frame, on one thread: compose() at 1280x720 (and 1920x1080) for
each method, with the frame made of 1, 2 and 3 images (the navigator's weights: an image at rest,
a morph, a weighted blend), the methods interleaved round by round so a busy moment hits them
all alike; and prepare() per image (the detail layers, made when a set loads).

The target (issue 27): at most ~5 ms a frame at 1280x720 on one core of the dev VM. Check
`uptime` first: figures at a load above ~1.5 on the 2-core VM read slow.

Usage: .venv/bin/python benchmarks/compose/compose_cost.py [--rounds 60] [--json [PATH]]
"""

import argparse
import glob
import json
import os
import sys
import time
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "src"))

from flowvj.compose import DETAIL_METHODS, Compositor  # noqa: E402
from flowvj.images import load_show_images, resize_images  # noqa: E402

SHARED = ROOT.parent / "shared" / "data" / "images"
GEN = (192, 108)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=60)
    parser.add_argument("--json", nargs="?", const=str(Path(__file__).with_suffix(".json")))
    args = parser.parse_args()
    cv2.setNumThreads(1)
    files = sorted(f for f in glob.glob(str(SHARED / "*")) if f.lower().endswith((".jpg", ".png")))[:6]
    load = os.getloadavg()[0]
    results = {"load_before": load, "gen": "%dx%d" % GEN, "sizes": {}}
    print(f"load {load:.2f}; generation size {GEN[0]}x{GEN[1]}; {args.rounds} rounds; median ms (p95)")
    for out in ((1280, 720), (1920, 1080)):
        originals = load_show_images(files, out)
        small = resize_images(originals, GEN)
        cases = {}
        for method in DETAIL_METHODS:
            compositor = Compositor(out, method=method)
            started = time.perf_counter()
            compositor.use(compositor.prepare(originals, small))
            prepare_ms = (time.perf_counter() - started) * 1000 / len(files)
            for images in ((1, 2, 3) if method == "transfer" else (1,)):
                weights = np.zeros(len(files))
                weights[:images] = 1.0 / images
                frame = np.mean(small[:images].astype(np.float32), axis=0).astype(np.uint8)
                cases[f"{method} x{images}"] = (compositor, frame, weights, prepare_ms)
        times = {name: [] for name in cases}
        for _ in range(args.rounds):
            for name, (compositor, frame, weights, _) in cases.items():
                started = time.perf_counter()
                compositor.compose(frame, weights)
                times[name].append((time.perf_counter() - started) * 1000)
        size = f"{out[0]}x{out[1]}"
        results["sizes"][size] = {}
        for name, values in times.items():
            median, p95 = float(np.median(values)), float(np.percentile(values, 95))
            prepare_ms = cases[name][3]
            results["sizes"][size][name] = {"median_ms": median, "p95_ms": p95, "prepare_ms_per_image": prepare_ms}
            print(f"{size:9s} {name:12s} {median:6.2f} ({p95:6.2f})   prepare {prepare_ms:5.1f} ms an image")
    results["load_after"] = os.getloadavg()[0]
    print(f"load after {results['load_after']:.2f}")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
    main()
