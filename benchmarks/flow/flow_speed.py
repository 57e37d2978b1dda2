"""How fast is each Real-NVP preset: compute per frame, batch-1 decode latency, training throughput.

For every preset it prints one table row with
- parameters (as trained: weight-norm g and v both counted), and GMAC / GFLOP per 32x32 frame of
  the inverse. Only convolutions are counted (out_elements * in_channels/groups * kh * kw, from
  the shapes seen by forward hooks); the elementwise ops (BN, ReLU, tanh, exp, masks), at one
  FLOP per output element, add about 0.1 % (full), 0.3 % (lite) and 2 % (tiny), so are left out;
- inverse latency at batch 1 on one thread (median and p90 ms, frames/s) for three paths: the
  eager model as trained (weight norm recomputed every call), the eager folded model
  (`fuse_for_inference`) and ONNX Runtime on one thread (`OnnxInverse`);
- achieved GFLOP/s of each path, and its share of this machine's single-core float32 peak,
  measured in the same run as a 2048 x 2048 torch.mm on one thread (before and after);
- training images/s at batch 64 on --train-threads threads, default 2 (forward + bits/dim +
  backward + Adam step).

The models are randomised first (weight-norm scales g ~ N(0.5, 0.05), one train-mode forward to
give batch norm real running statistics), because a fresh flow's output convs are zero.
The folded and ONNX paths must match the eager inverse to < 1e-4, or the script exits with 1.

    .venv/bin/python benchmarks/flow/flow_speed.py [--presets lite,tiny] [--json out.json] [--skip-train]
"""

import argparse
import datetime
import json
import platform
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import onnxruntime
import torch
from torch import nn

from flowvj.flow.fast import OnnxInverse, fuse_for_inference
from flowvj.flow.presets import PRESETS
from flowvj.flow.realnvp import RealNVP

BESIDE = Path(__file__).resolve().with_suffix(".json")  # where --json alone writes its figures
TARGET_FPS = 60.0  # lite must decode this many frames/s at batch 1 on one core
TRAIN_BATCH = 64
TRAIN_BUDGET_S = 60.0  # time training steps until this is spent: at least 2, at most 8 steps
PATHS = ("eager", "folded", "onnx")


def say(message):
    print(f"[flow_speed] {message}", file=sys.stderr, flush=True)


def time_ms(fn, repeats, warmup=5):
    """Median and p90 wall time of fn() in ms, after `warmup` untimed calls."""
    for _ in range(warmup):
        fn()
    times_ms = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times_ms.append((time.perf_counter() - t0) * 1e3)
    return float(np.median(times_ms)), float(np.percentile(times_ms, 90))


def peak_gflops(repeats, n=2048):
    """Single-core float32 peak, as achieved by a large matmul: 2 n^3 FLOP / median time."""
    torch.set_num_threads(1)
    a, b = torch.randn(n, n), torch.randn(n, n)
    median_ms, _ = time_ms(lambda: torch.mm(a, b), repeats, warmup=3)
    return 2 * n**3 / (median_ms / 1e3) / 1e9


def conv_gmac(model, z):
    """Multiply-accumulates of every Conv2d in one batch-1 inverse, in GMAC."""
    macs = []

    def count(conv, _inputs, out):
        kh, kw = conv.kernel_size
        macs.append(out.numel() * conv.in_channels // conv.groups * kh * kw)

    hooks = [m.register_forward_hook(count) for m in model.modules() if isinstance(m, nn.Conv2d)]
    with torch.no_grad():
        model.inverse(z)
    for hook in hooks:
        hook.remove()
    return sum(macs) / 1e9


def randomised(name, seed=0):
    """A preset model that is not the identity: random g, batch-norm stats from one batch."""
    torch.manual_seed(seed)
    model = RealNVP.from_preset(name)
    with torch.no_grad():
        for param_name, param in model.named_parameters():
            if param_name.endswith("weight.original0"):
                param.normal_(0.5, 0.05)
        model.train()
        model(torch.rand(16, *model.shape))
    return model.eval()


def train_images_per_s(name, threads):
    """Median images/s of full training steps at batch 64 on random dequantised data."""
    torch.set_num_threads(threads)
    model = randomised(name).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)

    def step(batch):
        pixels = torch.round(torch.rand(batch, *model.shape) * 255)
        x = (pixels + torch.rand(pixels.shape)) / 256
        loss = model.nll_bits_per_dim(x).mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    # Warm up on 1/8 of a batch: a full-preset step takes a minute or more on a busy machine.
    step(TRAIN_BATCH // 8)
    step_s = []
    while len(step_s) < 2 or (len(step_s) < 8 and sum(step_s) < TRAIN_BUDGET_S):
        t0 = time.perf_counter()
        step(TRAIN_BATCH)
        step_s.append(time.perf_counter() - t0)
        say(f"{name}: training step {len(step_s)}: {step_s[-1]:.2f} s")
    return TRAIN_BATCH / float(np.median(step_s)), len(step_s)


def bench_preset(name, repeats, skip_train, train_threads):
    model = randomised(name)
    z = torch.randn(1, *model.shape) * 0.7
    gmac = conv_gmac(model, z)
    row = {"preset": name, "params": sum(p.numel() for p in model.parameters()),
           "gmac": gmac, "gflop": 2 * gmac}

    say(f"{name}: folding and exporting to ONNX")
    torch.set_num_threads(1)
    folded = fuse_for_inference(model)
    onnx_inverse = OnnxInverse(model, threads=1)
    z_np = z.numpy()
    with torch.no_grad():
        calls = {
            "eager": lambda: model.inverse(z),
            "folded": lambda: folded.inverse(z),
            "onnx": lambda: onnx_inverse(z_np),
        }
        want = model.inverse(z)
        for path in ("folded", "onnx"):
            got = torch.as_tensor(calls[path]())
            row[f"{path}_max_diff"] = float((got - want).abs().max())
            say(f"{name}: {path} vs eager inverse, max |diff| {row[f'{path}_max_diff']:.2e}")
            if not row[f"{path}_max_diff"] < 1e-4:
                say(f"error: {name} {path} inverse differs from eager by {row[f'{path}_max_diff']:.2e}, "
                    "expected < 1e-4")
                sys.exit(1)
        for path in PATHS:
            say(f"{name}: timing {path} inverse, {repeats} calls at batch 1 on 1 thread")
            median_ms, p90_ms = time_ms(calls[path], repeats)
            row[f"{path}_ms"], row[f"{path}_p90_ms"] = median_ms, p90_ms
            row[f"{path}_fps"] = 1e3 / median_ms
            row[f"{path}_gflops"] = row["gflop"] / (median_ms / 1e3)

    if not skip_train:
        say(f"{name}: timing training steps at batch {TRAIN_BATCH} on {train_threads} threads")
        row["train_img_s"], row["train_steps"] = train_images_per_s(name, train_threads)
    return row


def print_table(rows, peak):
    header = ["preset", "params", "GMAC/frame", "GFLOP/frame"]
    for path in PATHS:
        header += [f"{path} ms (p90)", f"{path} fps", f"{path} GFLOP/s (% peak)"]
    header.append("train img/s (steps)")
    print("| " + " | ".join(header) + " |")
    print("|" + "|".join("---" for _ in header) + "|")
    for r in rows:
        cells = [r["preset"], f"{r['params']:,}", f"{r['gmac']:.3f}", f"{r['gflop']:.3f}"]
        for path in PATHS:
            gflops = r[f"{path}_gflops"]
            cells += [f"{r[f'{path}_ms']:.2f} ({r[f'{path}_p90_ms']:.2f})", f"{r[f'{path}_fps']:.0f}",
                      f"{gflops:.1f} ({100 * gflops / peak:.0f} %)"]
        cells.append(f"{r['train_img_s']:.1f} ({r['train_steps']})" if "train_img_s" in r else "skipped")
        print("| " + " | ".join(cells) + " |")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--presets", default=",".join(PRESETS), help="comma-separated preset names")
    parser.add_argument("--repeats", type=int, default=50, help="timed calls per inference path")
    parser.add_argument("--json", nargs="?", const=str(BESIDE), metavar="PATH",
                        help="also write every figure to PATH (--json alone: flow_speed.json beside this script)")
    parser.add_argument("--skip-train", action="store_true", help="do not time training steps")
    parser.add_argument("--train-threads", type=int, default=2, help="torch threads for training")
    args = parser.parse_args()
    names = [n.strip() for n in args.presets.split(",") if n.strip()]
    for name in names:
        if name not in PRESETS:
            parser.error(f"unknown preset {name!r}; expected some of {', '.join(PRESETS)}")

    # torch.onnx.export traces RealNVP._check_shape; the shape is fixed, so the warning is noise.
    warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
    t_start = time.monotonic()
    say("measuring single-core float32 peak (2048x2048 torch.mm, 1 thread)")
    peak_start = peak_gflops(args.repeats)
    print(f"single-core float32 peak at start: {peak_start:.1f} GFLOP/s (torch.mm 2048x2048, 1 thread)")
    rows = [bench_preset(name, args.repeats, args.skip_train, args.train_threads) for name in names]
    say("measuring single-core float32 peak again")
    peak_end = peak_gflops(args.repeats)
    peak = (peak_start + peak_end) / 2

    print(f"\nbatch-1 inverse, 1 thread, median of {args.repeats} calls; GMAC counts Conv2d only "
          f"(elementwise ops add ~0.1-2 %); % peak against the mean of both peak runs ({peak:.1f} GFLOP/s); "
          f"training at batch {TRAIN_BATCH} on {args.train_threads} threads\n")
    print_table(rows, peak)
    print()
    for r in rows:
        print(f"{r['preset']}: max |folded - eager| {r['folded_max_diff']:.1e}, "
              f"max |onnx - eager| {r['onnx_max_diff']:.1e}")
    print(f"single-core float32 peak: {peak_start:.1f} GFLOP/s at start, {peak_end:.1f} GFLOP/s at end")
    drift = abs(peak_end - peak_start) / min(peak_start, peak_end)
    if drift > 0.10:
        print(f"warning: the two peak runs differ by {100 * drift:.0f} % (> 10 %): the machine was busy "
              "and these figures are unreliable")
    lite = next((r for r in rows if r["preset"] == "lite"), None)
    if lite is None:
        print(f"target (lite >= {TARGET_FPS:.0f} frames/s at batch 1 on one core): lite not measured")
    else:
        verdicts = ", ".join(f"{path} {'MEETS' if lite[f'{path}_fps'] >= TARGET_FPS else 'MISSES'} "
                             f"({lite[f'{path}_fps']:.0f} fps)" for path in PATHS)
        print(f"target (lite >= {TARGET_FPS:.0f} frames/s at batch 1 on one core): {verdicts}")
    elapsed_s = time.monotonic() - t_start
    print(f"total time {elapsed_s:.0f} s")

    if args.json:
        record = {"date": datetime.datetime.now().isoformat(timespec="seconds"),
                  "machine": platform.processor() or platform.machine(), "torch": torch.__version__,
                  "onnxruntime": onnxruntime.__version__, "repeats": args.repeats,
                  "train_batch": TRAIN_BATCH, "train_threads": args.train_threads,
                  "peak_gflops_start": peak_start, "peak_gflops_end": peak_end, "target_fps": TARGET_FPS,
                  "elapsed_s": elapsed_s, "presets": rows}
        with open(args.json, "w") as f:
            json.dump(record, f, indent=2)
        say(f"wrote {args.json}")


if __name__ == "__main__":
    main()
