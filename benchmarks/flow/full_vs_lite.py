"""Compare two Real-NVP checkpoints (meant for `full` and `lite` after the same wall time).

Why: issue 5 asks whether `full`, trained for a fraction of an epoch on this CPU, beats `lite`
in test bits/dim and interpolation quality, and whether it could run in real time. One script
gives every figure for both, from the checkpoints alone, and prints a markdown table:

- training so far, from the checkpoint's train_state: steps, images seen (steps x --batch-size),
  fraction of the 50,000-image CIFAR-10 epoch, CPU-hours and wall hours of the training process;
- train bits/dim per image seen: the mean of metrics.jsonl (beside the checkpoint) over the 20
  steps ending at the step both runs reached, so the two are compared at equal images seen;
- test bits/dim on the first --limit CIFAR-10 test images with `flowvj.lab.train.evaluate`, which is
  what `flowvj eval --limit N --json` runs (dequantisation seed 0), and the max x -> z -> x error;
- interpolation: for 4 pairs of the bundled demo images, 10 frames of latent slerp (the show's
  default) and lerp; for each in-between frame the total variation (mean |neighbour difference|)
  and the high-frequency energy (share of FFT power above half Nyquist), each divided by the same
  figure blended from the two endpoints. 1 = as sharp as the endpoints; a pixel cross-fade is
  below 1 (blending averages edges away); far above 1 = noise the endpoints do not have;
- inverse latency at batch 1 on one thread: eager PyTorch and ONNX Runtime (median ms).

It also writes the strips of both models and the pixel fade side by side (-o, a PNG).

    .venv/bin/python benchmarks/flow/full_vs_lite.py runs/full-frac/ckpt.pt runs/lite-frac/ckpt.pt \
        -o docs/full-vs-lite.png
"""

import argparse
import json
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "docs"))
from flow_speed import time_ms  # noqa: E402  (this folder is on sys.path when run as a script)
from make_contact_sheet import FRAMES, PAIRS, encode, latent_path, pixel_fade, stack, strip  # noqa: E402

from flowvj.atomic import atomic_path  # noqa: E402
from flowvj.data import load_dataset  # noqa: E402
from flowvj.images import load_show_images  # noqa: E402
from flowvj.flow import load_model, read_checkpoint  # noqa: E402
from flowvj.flow.fast import OnnxInverse  # noqa: E402
from flowvj.show.navigate import lerp, slerp  # noqa: E402
from flowvj.lab.train import evaluate  # noqa: E402

CIFAR10_TRAIN_IMAGES = 50_000
MATCH_STEPS = 20


def say(message):
    print(f"[full_vs_lite] {message}", file=sys.stderr, flush=True)


def total_variation(pixels_uint8):
    x = pixels_uint8.astype(np.float64) / 255
    return np.abs(np.diff(x, axis=0)).mean() + np.abs(np.diff(x, axis=1)).mean()


def high_freq_share(pixels_uint8):
    """Share of the (mean-removed, grey) image's FFT power above half the Nyquist frequency."""
    grey = pixels_uint8.astype(np.float64).mean(axis=2)
    power = np.abs(np.fft.fft2(grey - grey.mean())) ** 2
    fy, fx = np.meshgrid(np.fft.fftfreq(grey.shape[0]), np.fft.fftfreq(grey.shape[1]), indexing="ij")
    return power[np.hypot(fy, fx) > 0.25].sum() / max(power.sum(), 1e-12)


def relative_to_endpoints(frames, statistic):
    """Mean over in-between frames of statistic(frame) / the endpoints' statistic blended at t."""
    t = np.linspace(0, 1, len(frames))
    ends = statistic(frames[0]), statistic(frames[-1])
    return float(np.mean([statistic(f) / ((1 - ti) * ends[0] + ti * ends[1])
                          for f, ti in zip(frames[1:-1], t[1:-1])]))


def interpolation_scores(path_frames):
    """{'tv': ..., 'hf': ...} averaged over the pairs' frame strips."""
    return {name: float(np.mean([relative_to_endpoints(f, stat) for f in path_frames]))
            for name, stat in (("tv", total_variation), ("hf", high_freq_share))}


def train_bpd_at(ckpt_path, step):
    """Mean training bits/dim over the MATCH_STEPS steps ending at `step` (metrics.jsonl)."""
    log = Path(ckpt_path).parent / "metrics.jsonl"
    rows = [json.loads(line) for line in log.read_text().splitlines()]
    values = [r["bpd"] for r in rows if step - MATCH_STEPS < r["step"] <= step]
    return float(np.mean(values))


def measure(path, test_images, demos, args):
    record = read_checkpoint(path)
    model = load_model(path)
    state = record["train_state"]
    row = {"path": str(path), "preset": record["preset"], "params": sum(p.numel() for p in model.parameters()),
           "step": state["step"], "images": state["step"] * args.batch_size,
           "cpu_h": state["cpu_s"] / 3600, "wall_h": state["wall_s"] / 3600}
    row["epochs"] = row["images"] / CIFAR10_TRAIN_IMAGES
    say(f"{row['preset']}: test bits/dim on {len(test_images)} images")
    result = evaluate(model, test_images, seed=0, show_progress=False)
    row["test_bpd"], row["recon_err"] = result["bits_per_dim"], result["max_reconstruction_error"]
    z = encode(model, demos)
    row["strips"] = {name: [latent_path(model, z[a], z[b], fn) for a, b in PAIRS]
                     for name, fn in (("slerp", slerp), ("lerp", lerp))}
    row.update({f"{name}_{k}": v for name, frames in row["strips"].items()
                for k, v in interpolation_scores(frames).items()})
    say(f"{row['preset']}: timing the batch-1 inverse on one thread")
    z1 = torch.randn(1, *model.shape) * 0.7
    with torch.no_grad():
        row["eager_ms"] = time_ms(lambda: model.inverse(z1), args.repeats)[0]
    onnx_inverse = OnnxInverse(model, threads=1)
    row["onnx_ms"] = time_ms(lambda: onnx_inverse(z1.numpy()), args.repeats)[0]
    return row


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoints", nargs=2, help="two checkpoints, e.g. runs/full-frac/ckpt.pt runs/lite-frac/ckpt.pt")
    parser.add_argument("--data", default=str(REPO.parent / "shared/data/cifar10"))
    parser.add_argument("--limit", type=int, default=2000, help="first N test images")
    parser.add_argument("--batch-size", type=int, default=64, help="the runs' training batch size")
    parser.add_argument("--repeats", type=int, default=30, help="timed inverse calls per path")
    parser.add_argument("-o", "--out", help="PNG of both models' slerp strips and the pixel fade")
    args = parser.parse_args()
    torch.set_num_threads(1)
    warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)

    test_images = load_dataset(args.data, "test", 32).images[: args.limit]
    demos = load_show_images(None, 32)
    rows = [measure(path, test_images, demos, args) for path in args.checkpoints]
    common_step = min(r["step"] for r in rows)
    for r in rows:
        r["train_bpd_common"] = train_bpd_at(r["path"], common_step)
    fades = [pixel_fade(demos[a], demos[b]) for a, b in PAIRS]
    fade = interpolation_scores(fades)

    print(f"| preset | params | steps | images seen | epochs | CPU-h | wall-h | train bpd at step {common_step} "
          f"| test bpd ({len(test_images)}) | slerp TV / HF | lerp TV / HF | inverse eager ms | inverse ONNX ms |")
    print("|" + "---|" * 13)
    for r in rows:
        print(f"| {r['preset']} | {r['params'] / 1e6:.2f} M | {r['step']:,} | {r['images']:,} | {r['epochs']:.3f} "
              f"| {r['cpu_h']:.3f} | {r['wall_h']:.3f} | {r['train_bpd_common']:.3f} | {r['test_bpd']:.3f} "
              f"| {r['slerp_tv']:.2f} / {r['slerp_hf']:.2f} | {r['lerp_tv']:.2f} / {r['lerp_hf']:.2f} "
              f"| {r['eager_ms']:.1f} | {r['onnx_ms']:.1f} |")
    print(f"| pixel fade | | | | | | | | | {fade['tv']:.2f} / {fade['hf']:.2f} | | | |")
    print("\nmax x -> z -> x error: " + ", ".join(f"{r['preset']} {r['recon_err']:.1e}" for r in rows))

    if args.out:
        blocks = [(f"demo {a} -> demo {b}: latent slerp, {FRAMES} frames", [
            *(strip(r["strips"]["slerp"][i], f"{r['preset']} slerp") for r in rows),
            strip(fades[i], "pixel fade")]) for i, (a, b) in enumerate(PAIRS)]
        with atomic_path(args.out) as tmp:
            stack(blocks).save(tmp, format="PNG")
        say(f"wrote {args.out}")


if __name__ == "__main__":
    main()
