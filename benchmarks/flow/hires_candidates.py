"""Candidates for the CPU show's model (issue 27): at `hires`' cost a pixel, which draws photos best?

Why: the bundled `hires` (0.047 MFLOP a pixel, the CPU default) is about 0.6 bits/dim worse than
`lite` (0.80 MFLOP) on the user's photos at the show's 192x108, and a model of the same cost that
closes half of that gap would draw better in-betweens at no cost in frame rate. This script puts
every candidate checkpoint beside the two bundled models, measured in the same run:

- MFLOP per output pixel of one inverse (`show.bench.conv_gflop`: conv FLOPs, exact per pixel);
- decode ms at the size: the show's Generator (ONNX Runtime, one thread, what a loaded 2-core
  machine runs best), timed round-robin over the models (--decode-rounds rounds of 5 decodes
  each, the median of the rounds' medians), so that a load that comes and goes falls on every
  model alike; and its ratio to `hires`. The machine's load (`os.getloadavg`) is printed too;
- bits/dim at the size (aspect-filled, as the show loads them; dequantisation seed 0; bits per
  dimension of the photo's own 3 x H x W, not the model's 32x32) on the shared photos, split by
  name-sorted position: the even positions are the tuning half (what candidates may be chosen on),
  the odd the held-out half (what is reported), and `gap_closed`, (hires - candidate) / (hires -
  lite) on the held-out half, where 0.5 is issue 27's target;
- CIFAR-10 test bits/dim on --cifar-limit test images drawn at random (seed 0; the folder is
  stored class by class, and its first 1000, all aeroplanes, read 0.3-0.4 lower than the whole)
  with `lab.train.evaluate`, the training objective: whether a gain on photos is bought with a
  loss there;
- a contact sheet per candidate (`hires_candidates/NAME.png`): 4 pairs of photos, each row the
  two endpoints (the exact round trips) and the latent slerp at t = 0.25, 0.5 and 0.75, the show's
  way of travelling between images, drawn at the size. PNG, cut to 256 colours if larger than
  300 KB.

Figures go to stdout as a table and to `hires_candidates.json` beside this script.

    .venv/bin/python benchmarks/flow/hires_candidates.py \\
        --candidate hires-epoch6=runs/hires-epoch006.pt \\
        --candidate hires-2scale-epoch1=runs/cand-hires-2scale/model-latest-epoch.pt
"""

import argparse
import json
import os
import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw

from flowvj.atomic import atomic_path
from flowvj.data import IMAGE_EXTENSIONS, load_dataset
from flowvj.flow import load_model
from flowvj.flow.checkpoint import read_checkpoint, resolve_checkpoint
from flowvj.images import load_show_images
from flowvj.lab.train import evaluate
from flowvj.show.bench import conv_gflop, parse_sizes, time_ms
from flowvj.show.generator import Generator
from flowvj.show.navigate import slerp

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
SHARED = REPO.parent / "shared" / "data"
BASELINE, REFERENCE = "hires", "lite"  # the model to beat and the one whose figures are the goal
PAIRS = [("mate_nature_Storm", "ukui_goldfish"), ("mate_nature_LadyBird", "skimage_coffee"),
         ("skimage_chelsea", "mate_nature_YellowFlower"), ("ukui_calla", "skimage_rocket")]
STEPS = (0.25, 0.5, 0.75)
MAX_SHEET_BYTES = 300_000
LABEL_H, GAP = 14, 2


def say(message):
    print(f"[hires_candidates] {message}", file=sys.stderr, flush=True)


def photo_files(folder):
    files = sorted(p for p in Path(folder).iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS)
    if len(files) < 4:
        sys.exit(f"--images {folder}: expected a folder of at least 4 photos, found {len(files)}")
    return files


@torch.no_grad()
def photo_bits_per_dim(model, pixels_uint8, seed=0):
    """Per-photo bits/dim of uint8 NHWC photos at their own size, uniform dequantisation noise
    (seeded): the flow is fully convolutional, so the dimensions are the photo's, not 3x32x32."""
    x = torch.from_numpy(pixels_uint8).permute(0, 3, 1, 2).float()
    x = (x + torch.rand(x.shape, generator=torch.Generator().manual_seed(seed))) / 256.0
    return np.array([float(model.nll_bits_per_dim(x[i:i + 1])) for i in range(len(x))])


@torch.no_grad()
def in_betweens(model, a_uint8, b_uint8):
    """[a's round trip, slerp at STEPS..., b's round trip] as uint8 HWC frames: the show's path."""
    x = torch.from_numpy(np.stack([a_uint8, b_uint8])).permute(0, 3, 1, 2).float() / 255.0
    z = model(x)[0]
    za, zb = z[0].flatten().double().numpy(), z[1].flatten().double().numpy()
    path = [za] + [slerp(za, zb, t) for t in STEPS] + [zb]
    frames = model.inverse(torch.from_numpy(np.stack(path)).float().reshape(len(path), *z.shape[1:]))
    return (frames.clamp(0, 1).permute(0, 2, 3, 1).numpy() * 255 + 0.5).astype(np.uint8)


def contact_sheet(model, photos, names, title, path):
    """One row a pair, five frames a row at the photos' size; written atomically, < 300 KB."""
    rows = [in_betweens(model, photos[names.index(a)], photos[names.index(b)]) for a, b in PAIRS]
    h, w = photos.shape[1:3]
    sheet = Image.new("RGB", (5 * w + 4 * GAP, LABEL_H + len(rows) * (h + LABEL_H)), "white")
    draw = ImageDraw.Draw(sheet)
    steps = ", ".join(map(str, STEPS))
    draw.text((2, 1), f"{title}: endpoints and latent slerp at t = {steps}", fill="black")
    for r, (frames, (a, b)) in enumerate(zip(rows, PAIRS)):
        y = LABEL_H + r * (h + LABEL_H)
        draw.text((2, y + 1), f"{a} -> {b}", fill="black")
        for c, frame in enumerate(frames):
            sheet.paste(Image.fromarray(frame), (c * (w + GAP), y + LABEL_H))
    for image in (sheet, sheet.quantize(256, dither=Image.Dither.NONE)):
        with atomic_path(path) as tmp:
            image.save(tmp, format="PNG", optimize=True)
        if path.stat().st_size <= MAX_SHEET_BYTES:
            break
    return path.stat().st_size


def decode_ms(candidates, size, rounds):
    """{name: median over rounds of each round's median decode ms}, the models timed in turn."""
    z = (np.random.default_rng(0).standard_normal((3, size[1], size[0])) * 0.8).astype(np.float32)
    gens = {name: Generator(load_model(spec), size=size, threads=1) for name, spec in candidates.items()}
    per_round = {name: [] for name in gens}
    for _ in range(rounds):
        for name, gen in gens.items():
            per_round[name].append(time_ms(lambda: gen.decode(z), 5, 10.0)[0])
    return {name: float(np.median(ms)) for name, ms in per_round.items()}


def training_state(spec):
    """Epoch, step and CPU-hours the checkpoint was trained for (None where it does not say)."""
    record = read_checkpoint(resolve_checkpoint(spec))
    state = record.get("train_state") or {}
    cpu_s = state.get("cpu_s")
    return {"epoch": record.get("epoch"), "step": record.get("step"),
            "cpu_hours": None if cpu_s is None else round(cpu_s / 3600, 3)}


def parse_candidates(items):
    candidates = {BASELINE: BASELINE, REFERENCE: REFERENCE}
    for item in items:
        name, sep, spec = item.partition("=")
        if not sep or not name or not spec:
            sys.exit(f"--candidate {item!r}: expected NAME=CHECKPOINT")
        if name in candidates:
            sys.exit(f"--candidate {item!r}: the name {name} is taken")
        if not Path(spec).is_file():
            sys.exit(f"--candidate {item!r}: {spec} is not a file")
        candidates[name] = spec
    return candidates


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--candidate", action="append", default=[], metavar="NAME=CHECKPOINT",
                        help="a flow checkpoint to measure beside the bundled hires and lite (repeatable)")
    parser.add_argument("--images", default=str(SHARED / "images"),
                        help="folder of photos (default: the shared 20)")
    parser.add_argument("--size", default="192x108", help="WIDTHxHEIGHT the photos are drawn at")
    parser.add_argument("--cifar", default=str(SHARED / "cifar10"), help="CIFAR-10 folder (its test/ split)")
    parser.add_argument("--cifar-limit", type=int, default=1000, help="CIFAR-10 test images evaluated")
    parser.add_argument("--decode-rounds", type=int, default=7,
                        help="round-robin timing rounds (5 decodes each)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads for the bits/dim")
    parser.add_argument("--out-dir", default=str(HERE / "hires_candidates"),
                        help="where the contact sheets go")
    parser.add_argument("--json", default=str(HERE / "hires_candidates.json"), help="where the figures go")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    size = parse_sizes(args.size, "--size")[0]
    candidates = parse_candidates(args.candidate)

    files = photo_files(args.images)
    names = [f.stem for f in files]
    photos = load_show_images([str(f) for f in files], size)
    tune, held_out = np.arange(0, len(files), 2), np.arange(1, len(files), 2)
    cifar = load_dataset(args.cifar, "test", 32).images  # stored class by class: sample across them
    cifar = cifar[np.sort(np.random.default_rng(0).choice(len(cifar), min(args.cifar_limit, len(cifar)),
                                                           replace=False))]
    out_dir = Path(args.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)

    rows = {}
    for name, spec in candidates.items():
        say(f"{name}: {spec}")
        model = load_model(spec)
        c = model.config
        per_photo = photo_bits_per_dim(model, photos)
        rows[name] = {
            "checkpoint": str(spec), "config": [c.mid_channels, c.num_blocks, c.num_scales],
            **training_state(spec),
            "mflop_per_px": conv_gflop(model, size) * 1e3 / (size[0] * size[1]),
            "photo_bpd_tune": float(per_photo[tune].mean()),
            "photo_bpd_held_out": float(per_photo[held_out].mean()),
            "photo_bpd": dict(zip(names, np.round(per_photo, 4).tolist())),
            "cifar_bpd": evaluate(model, cifar, show_progress=False)["bits_per_dim"],
            "sheet_bytes": contact_sheet(model, photos, names, name, out_dir / f"{name}.png"),
        }

    for name, ms in decode_ms(candidates, size, args.decode_rounds).items():
        rows[name]["decode_ms"] = ms
    load = os.getloadavg()[0]

    base, goal = rows[BASELINE], rows[REFERENCE]
    for row in rows.values():
        for half in ("tune", "held_out"):
            gap = base[f"photo_bpd_{half}"] - goal[f"photo_bpd_{half}"]
            row[f"gap_closed_{half}"] = (base[f"photo_bpd_{half}"] - row[f"photo_bpd_{half}"]) / gap
        row["cost_ratio"] = row["mflop_per_px"] / base["mflop_per_px"]
        row["decode_ratio"] = row["decode_ms"] / base["decode_ms"]

    w, h = size
    print(f"photos at {w}x{h}: tune = {', '.join(names[i] for i in tune)}")
    print(f"               held out = {', '.join(names[i] for i in held_out)}")
    print(f"load average after the timing: {load:.1f}")
    print(f"| model (ch, blocks, scales) | epoch | MFLOP/px (x hires) | "
          f"decode ms {w}x{h}, 1 thread (x hires) | "
          f"photo bpd tune | photo bpd held out | gap closed (held out) | CIFAR-10 bpd ({len(cifar)}) |")
    print("|---|---|---|---|---|---|---|---|")
    for name, r in rows.items():
        print(f"| {name} {tuple(r['config'])} | {r['epoch']} | "
              f"{r['mflop_per_px']:.4f} ({r['cost_ratio']:.2f}) | "
              f"{r['decode_ms']:.1f} ({r['decode_ratio']:.2f}) | "
              f"{r['photo_bpd_tune']:.3f} | {r['photo_bpd_held_out']:.3f} | {r['gap_closed_held_out']:.2f} | "
              f"{r['cifar_bpd']:.3f} |")
    result = {"size": [w, h], "images": args.images, "tune": [names[i] for i in tune],
              "held_out": [names[i] for i in held_out], "cifar_test_images": len(cifar),
              "load_after_timing": load,
              "pairs": PAIRS, "steps": STEPS, "models": rows}
    with atomic_path(Path(args.json)) as tmp:
        tmp.write_text(json.dumps(result, indent=1) + "\n")
    say(f"wrote {args.json} and {len(rows)} sheets in {out_dir}")


if __name__ == "__main__":
    main()
