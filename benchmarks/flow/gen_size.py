"""Decode time per generation size and lever, int8 quality, and what `auto` picks (issue #12).

For each generation size (W, H) it builds one Generator per lever from the bundled model
(lite) and times `decode` (batch 1, uint8 frame out, what the live show pays per frame):

    fp32 1t   ONNX Runtime float32 on one intra-op thread    (the baseline)
    fp32 2t   ONNX Runtime float32 on two threads
    int8 1t   ONNX Runtime int8 QDQ (fast.quantize_inverse) on one thread
    int8 2t   the same on two threads
    torch     the folded model in eager torch on one thread

The levers' calls are interleaved round-robin (one call of each, repeated), so a machine that
gets busier or quieter during the run moves every lever alike; the table gives each lever's
median ms, frames/s and its ratio to the fp32-1t median of the same size in the same run.

Quality, on the bundled demo photographs aspect-filled to each size:
    int8 mid  PSNR of int8 against fp32 on the midpoints between the images' latents (in-betweens)
    int8 end  PSNR of int8 decode(encode(image)) against the image itself (fp32: > 100 dB)
    torch     max |torch - fp32 ONNX| over the same frames (float32 rounding expected)

Finally `bench.pick_gen_size` runs as the show would at its start (fp32, threads chosen per
size) for 30 and 60 fps, and the script prints what it picked and how long that took.

    .venv/bin/python benchmarks/flow/gen_size.py [--sizes 64x36,128x72] [--seconds 6] [--json out.json]
"""

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

from flowvj.show.bench import HEADROOM, pick_gen_size, parse_sizes, size_name
from flowvj.data import load_image
from flowvj.flow import load_model
from flowvj.show.generator import DEMO_IMAGES, Generator

BESIDE = Path(__file__).resolve().with_suffix(".json")  # where --json alone writes its figures
LEVERS = {
    "fp32 1t": dict(precision="fp32", threads=1),
    "fp32 2t": dict(precision="fp32", threads=2),
    "int8 1t": dict(precision="int8", threads=1),
    "int8 2t": dict(precision="int8", threads=2),
    "torch": dict(backend="torch"),
}
DEFAULT_SIZES = "64x36,96x54,128x72,160x90,192x108,256x144"


def say(message):
    print(f"[gen_size] {message}", file=sys.stderr, flush=True)


def psnr(a, b):
    return float(10 * np.log10(1.0 / np.mean((np.clip(a, 0, 1) - np.clip(b, 0, 1)) ** 2)))


def time_levers(gens, z, seconds, min_rounds=5, max_rounds=40):
    """Round-robin: one decode per lever per round, until `seconds` are spent. -> {lever: [ms]}."""
    for gen in gens.values():  # warm-up: ONNX Runtime plans memory on the first call at a shape
        gen.decode(z)
        gen.decode(z)
    times = {name: [] for name in gens}
    t_end = time.perf_counter() + seconds
    while len(times["fp32 1t"]) < min_rounds or (time.perf_counter() < t_end
                                                 and len(times["fp32 1t"]) < max_rounds):
        for name, gen in gens.items():
            t0 = time.perf_counter()
            gen.decode(z)
            times[name].append((time.perf_counter() - t0) * 1e3)
    return times


def bench_size(model, size, seconds, files):
    images = np.stack([load_image(p, size) for p in files])
    gens = {}
    for name, options in LEVERS.items():
        t0 = time.perf_counter()
        gens[name] = Generator(model, size=size, **options)
        say(f"{size_name(size)}: {name} built in {time.perf_counter() - t0:.2f} s")
    z = gens["fp32 1t"].encode(images)
    mid = 0.5 * (z + np.roll(z, 1, axis=0))
    fp32_mid = gens["fp32 1t"].decode_float_batch(mid)
    x = images.transpose(0, 3, 1, 2) / 255.0
    row = {"size": size_name(size), "pixels": size[0] * size[1],
           "fp32_end_psnr": psnr(gens["fp32 1t"].decode_float_batch(z), x),
           "int8_mid_psnr": psnr(gens["int8 1t"].decode_float_batch(mid), fp32_mid),
           "int8_end_psnr": psnr(gens["int8 1t"].decode_float_batch(z), x),
           "torch_max_diff": float(np.abs(gens["torch"].decode_float_batch(mid) - fp32_mid).max())}
    say(f"{size_name(size)}: timing {len(gens)} levers round-robin for ~{seconds:.0f} s")
    times = time_levers(gens, z[0], seconds)
    base = float(np.median(times["fp32 1t"]))
    row["rounds"] = len(times["fp32 1t"])
    row["levers"] = {name: {"ms": float(np.median(t)), "fps": 1e3 / float(np.median(t)),
                            "ratio": float(np.median(t)) / base,
                            "paired_ratio": float(np.median(np.array(t) / np.array(times["fp32 1t"])))}
                     for name, t in times.items()}
    return row


def print_table(rows):
    header = ["size", "rounds"] + [f"{name} ms (fps) x" for name in LEVERS]
    print("| " + " | ".join(header) + " |")
    print("|" + "|".join("---" for _ in header) + "|")
    for r in rows:
        cells = [r["size"], str(r["rounds"])]
        for name in LEVERS:
            lever = r["levers"][name]
            cells.append(f"{lever['ms']:.1f} ({lever['fps']:.1f}) {lever['ratio']:.2f}x")
        print("| " + " | ".join(cells) + " |")
    print("\nx = median ms / fp32-1t median ms of the same size, same run (< 1 is faster)\n")
    print("| size | fp32 endpoint PSNR | int8 in-between PSNR vs fp32 | int8 endpoint PSNR "
          "| max abs torch - onnx |")
    print("|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['size']} | {r['fp32_end_psnr']:.1f} dB | {r['int8_mid_psnr']:.1f} dB | "
              f"{r['int8_end_psnr']:.1f} dB | {r['torch_max_diff']:.1e} |")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default=DEFAULT_SIZES, help="comma-separated WIDTHxHEIGHT")
    parser.add_argument("--seconds", type=float, default=6.0, help="round-robin timing per size")
    parser.add_argument("--model", help="flow checkpoint (default: the bundled model)")
    parser.add_argument("--json", nargs="?", const=str(BESIDE), metavar="PATH",
                        help="also write every figure to PATH (--json alone: gen_size.json beside this script)")
    args = parser.parse_args()
    sizes = parse_sizes(args.sizes)
    torch.set_num_threads(1)  # the torch lever, and encode, on one thread as the show runs them
    files = sorted(p for p in Path(DEMO_IMAGES).iterdir() if p.suffix.lower() == ".jpg")
    model = load_model(args.model)
    load_start = os.getloadavg()
    t0 = time.perf_counter()
    say("building the fp32 export and the int8 calibration (once per model)")
    Generator(model, precision="int8")
    say(f"export + int8 calibration: {time.perf_counter() - t0:.1f} s")
    rows = [bench_size(model, size, args.seconds, files) for size in sizes]
    picks = {}
    for fps in (30.0, 60.0):
        t0 = time.perf_counter()
        size, measured = pick_gen_size(model, fps)
        picks[fps] = {"size": size_name(size), "seconds": time.perf_counter() - t0,
                      "measured": [(m["size"], m["threads"], round(m["decode_ms"], 1)) for m in measured]}
    load_end = os.getloadavg()

    print(f"{args.model or 'bundled default (lite)'} inverse, batch 1, decode() to a uint8 frame; load average {load_start[0]:.1f} at start, "
          f"{load_end[0]:.1f} at end (2 cores)\n")
    print_table(rows)
    print()
    for fps, pick in picks.items():
        print(f"auto at {fps:.0f} fps (decode <= {HEADROOM * 1e3 / fps:.1f} ms): {pick['size']} "
              f"(measured {pick['measured']} in {pick['seconds']:.1f} s)")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"rows": rows, "picks": {str(k): v for k, v in picks.items()},
                       "load_start": load_start, "load_end": load_end}, f, indent=2)
        say(f"wrote {args.json}")


if __name__ == "__main__":
    main()
