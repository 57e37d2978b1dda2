"""How large a generation size this machine holds: decode time per size, and the `auto` choice.

The flow's cost grows with the pixels, so the live show draws at a generation size (W, H) that
the output then upscales. `pick_gen_size` measures decode at the show's start on the machine at
hand, climbing LADDER from the floor (MIN_SIZE, 128x72: the show never draws below it) and
stopping at the first size that misses the budget, and returns the largest that fits: decode
may take HEADROOM (50 %) of the frame time. `flowvj bench` prints the same figures for every
size, with the achieved GFLOP/s against a float32 matmul peak measured in the same run, and
which size auto would pick at 30 and 60 fps.

Why 50 %: the start must be a size the show can stay at. Once running, the show steps down when
a frame's whole work (navigate, decode, show) runs over the period for 3 s, and steps up only
when the work predicted at the next size is within 70 % of it (size_policy.py). The start sees
the decode alone, on a quiet stage (no output, no audio, no page), for a fraction of a second,
so it asks for more room than either: half the period for the decode, half for the rest of the
frame and for the load to grow. At 60 % the idle dev VM started at 256x144 and stepped down to
192x108 within seconds (issue 25): a wasted re-encode and a visible jump. Too cautious a start
costs less: the policy steps up after 20 s of headroom.

Conv FLOPs are counted from the folded inverse's Conv2d shapes (out elements x in channels x
kernel, x2), which scale exactly with the pixels; elementwise ops (~0.3 % for lite) are left out.
"""

import time

import numpy as np
import torch
from torch import nn

from ..errors import UserError
from ..flow import load_model
from ..flow.checkpoint import default_model
from ..flow.fast import fuse_for_inference
from .generator import Generator, check_size, default_threads, resolve_device

LADDER = ((64, 36), (96, 54), (128, 72), (160, 90), (192, 108), (256, 144), (384, 216), (512, 288),
          (640, 360), (1280, 720))
HEADROOM = 0.5  # decode's share of the frame time at the start (see the module docstring)
MIN_SIZE = (128, 72)  # the floor: the show never draws below its pixels (64x36 is colour blobs)
SHOW_FPS = (30.0, 60.0)  # the frame rates bench reports an auto pick for
MAX_BENCH_MS = 1000.0  # bench over the default ladder stops after a size this slow (no show runs it)


def size_name(size):
    return f"{size[0]}x{size[1]}"


def parse_sizes(text, flag="--sizes"):
    """'64x36,128x72' -> [(64, 36), (128, 72)]; a UserError naming the flag for anything else."""
    sizes = []
    for item in text.split(","):
        parts = item.strip().lower().split("x")
        try:
            width, height = (int(p) for p in parts)
        except ValueError:
            width = height = None
        if width is None or len(parts) != 2 or width < 2 or height < 2 or width % 2 or height % 2:
            raise UserError(f"{flag} {item.strip()!r} is not a size; expected WIDTHxHEIGHT with even "
                            f"numbers, comma-separated (e.g. 64x36,128x72)")
        sizes.append((width, height))
    return sizes


def conv_gflop(model, size):
    """GFLOP of every Conv2d in one inverse at size (W, H): 2 x MACs, counted at a small size and
    scaled by the pixels (every conv's output has H*W/4^k pixels at scale k, so this is exact)."""
    fused = fuse_for_inference(model)
    side = 2 ** fused.config.num_scales * 2
    macs = []

    def count(conv, _inputs, out):
        macs.append(out.numel() * conv.in_channels // conv.groups * conv.kernel_size[0] * conv.kernel_size[1])

    hooks = [m.register_forward_hook(count) for m in fused.modules() if isinstance(m, nn.Conv2d)]
    with torch.no_grad():
        fused.inverse(torch.zeros(1, fused.config.in_channels, side, side))
    for hook in hooks:
        hook.remove()
    return 2 * sum(macs) / 1e9 * (size[0] * size[1]) / side**2


def time_ms(fn, repeats, max_s, warmup=2):
    """Median and p90 wall time of fn() in ms: `warmup` untimed calls (ONNX Runtime plans its memory
    on the first call at a shape), then `repeats` calls or fewer once max_s is spent (at least 3)."""
    for _ in range(warmup):
        fn()
    times_ms = []
    t_end = time.perf_counter() + max_s
    while len(times_ms) < repeats and (len(times_ms) < 3 or time.perf_counter() < t_end):
        t0 = time.perf_counter()
        fn()
        times_ms.append((time.perf_counter() - t0) * 1e3)
    return float(np.median(times_ms)), float(np.percentile(times_ms, 90)), len(times_ms)


def peak_gflops(device="cpu", threads=1, repeats=10):
    """float32 peak as a large matmul achieves it, on `threads` torch threads (or the GPU)."""
    if device == "cuda":
        n = 8192
        a, b = torch.randn(n, n, device="cuda"), torch.randn(n, n, device="cuda")

        def mm():
            torch.mm(a, b)
            torch.cuda.synchronize()
        return 2 * n**3 / (time_ms(mm, repeats, 5.0)[0] / 1e3) / 1e9
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        n = 1024
        a, b = torch.randn(n, n), torch.randn(n, n)
        return 2 * n**3 / (time_ms(lambda: torch.mm(a, b), repeats, 2.0)[0] / 1e3) / 1e9
    finally:
        torch.set_num_threads(before)


def measure(model, size, repeats=5, max_s=0.5, **generator_options):
    """Decode time at one size with the Generator the show would build: a dict of figures."""
    gen = Generator(model, size=size, **generator_options)
    z = (np.random.default_rng(0).standard_normal(gen.shape) * 0.8).astype(np.float32)
    median_ms, p90_ms, calls = time_ms(lambda: gen.decode(z), repeats, max_s)
    return {"size": size_name(size), "width": size[0], "height": size[1], "threads": gen.threads,
            "backend": gen.backend, "decode_ms": median_ms, "p90_ms": p90_ms, "fps": 1e3 / median_ms,
            "calls": calls}


def measure_best(model, size, repeats=5, max_s=0.5, threads=None, **generator_options):
    """measure(), and with threads=None on the CPU the faster of 1 and 2 ONNX Runtime threads
    wherever the fixed rule (generator.default_threads) would take 2: on a machine whose other
    core is busy, two threads were 1.35-1.75x *slower* at every size (benchmarks/flow/gen_size.py), so
    the machine at hand decides, and row["threads"] says what it chose."""
    cpu_onnx = (resolve_device(generator_options.get("device", "cpu")) == "cpu"
                and generator_options.get("backend", "onnx") == "onnx")
    if threads is not None or not cpu_onnx or default_threads(size) == 1:
        return measure(model, size, repeats, max_s, threads=threads, **generator_options)
    rows = [measure(model, size, repeats, max_s, threads=t, **generator_options)
            for t in (1, default_threads(size))]
    return min(rows, key=lambda r: r["decode_ms"])


def budget_ms(fps, headroom=HEADROOM):
    return headroom * 1e3 / fps


def at_least(sizes, min_size):
    """The sizes of at least min_size's pixels, smallest first; the largest alone when none is
    (a ladder that stops short of the floor still draws at its top); all of them for None."""
    sizes = sorted(sizes, key=lambda s: s[0] * s[1])
    if min_size is None:
        return sizes
    return [s for s in sizes if s[0] * s[1] >= min_size[0] * min_size[1]] or sizes[-1:]


def pick_from(measurements, fps, headroom=HEADROOM, min_size=None):
    """The largest size, climbing in order of pixels from min_size (see at_least), before the
    first whose median decode misses headroom / fps; the smallest of those when none fits (the
    show must draw something: at the floor it lowers its frame rate instead)."""
    kept = at_least([(m["width"], m["height"]) for m in measurements], min_size)
    rows = sorted((m for m in measurements if (m["width"], m["height"]) in kept),
                  key=lambda m: m["width"] * m["height"])
    best = rows[0]
    for row in rows:
        if row["decode_ms"] > budget_ms(fps, headroom):
            break
        best = row
    return best["width"], best["height"]


def runnable(model, sizes):
    """The sizes the model's squeezes divide: a three-scale flow needs multiples of 4, so it skips
    96x54 and 160x90 of the ladder."""
    def ok(size):
        try:
            return check_size(model, size) == tuple(size)
        except ValueError:
            return False
    return [size for size in sizes if ok(size)]


def pick_gen_size(model, fps, headroom=HEADROOM, ladder=LADDER, repeats=5, max_s=0.3, min_size=None,
                  **generator_options):
    """(size, measurements): the largest rung of `ladder`, from min_size up (see at_least; the
    show passes its --min-gen-size, MIN_SIZE by default; None: from the smallest rung), whose
    decode fits headroom / fps here; the lowest of those when none fits.

    Each size's figure is the median of up to `repeats` decodes (at least 3) after 2 untimed
    ones (ONNX Runtime plans its memory on the first call at a shape): one slow call on a shared
    machine neither makes nor breaks a size. Quick enough for the show's start (about 1 s on the
    2-core dev machine): the rungs below the floor are not measured, and the climb stops at the
    first size that misses the budget (measured too: the size policy predicts the next step up
    from these rows). generator_options go to Generator (device, threads, precision, backend),
    so what is measured is what will run; with threads=None each row's "threads" is the faster
    count there (measure_best), which the show should build its Generator with.
    """
    measurements = []
    for size in at_least(runnable(model, ladder), min_size):
        measurements.append(measure_best(model, size, repeats, max_s, **generator_options))
        if measurements[-1]["decode_ms"] > budget_ms(fps, headroom):
            break
    return pick_from(measurements, fps, headroom, min_size), measurements


def run_bench(model, sizes=None, device="auto", threads=None, precision="fp32", backend="onnx",
              repeats=10, max_s=3.0):
    """Everything `flowvj bench` reports, as a dict (see format_report for the table).

    sizes: list of (W, H); None = LADDER, stopping after the first size slower than MAX_BENCH_MS.
    threads: ONNX Runtime threads; None = the faster of 1 and 2 where the rule takes 2 (measure_best).
    """
    device = resolve_device(device)
    ladder = sizes is None
    sizes = runnable(model, LADDER) if ladder else sizes

    def peak_key(row_threads):
        return "cuda" if device == "cuda" else str(row_threads)

    # The peak before and after the sizes, averaged: on a shared machine it drifts.
    counts = {threads} if threads else {1} | {default_threads(s) for s in sizes}
    peaks_start = {peak_key(t): peak_gflops(device, t) for t in sorted(counts)}
    rows = []
    for size in sizes:
        try:
            row = measure_best(model, size, repeats, max_s, device=device, threads=threads,
                               precision=precision, backend=backend)
        except ValueError as e:  # a size the model's squeezes cannot divide
            raise UserError(f"--sizes {size_name(size)}: {e}") from None
        row["gflop"] = conv_gflop(model, size)
        row["gflops"] = row["gflop"] / (row["decode_ms"] / 1e3)
        rows.append(row)
        if ladder and row["decode_ms"] > MAX_BENCH_MS:
            break
    peaks = {key: (start + peak_gflops(device, 1 if key == "cuda" else int(key))) / 2
             for key, start in peaks_start.items()}
    for row in rows:
        row["peak_pct"] = 100 * row["gflops"] / peaks[peak_key(row["threads"])]
    auto = [{"fps": fps, "budget_ms": budget_ms(fps),
             "size": size_name(pick_from(rows, fps, min_size=MIN_SIZE))} for fps in SHOW_FPS]
    return {"device": device, "backend": rows[0]["backend"], "precision": precision, "threads": threads,
            "headroom": HEADROOM, "min_size": size_name(MIN_SIZE), "peak_gflops": peaks,
            "peak_gflops_start": peaks_start,
            "sizes": rows, "auto": auto, "torch": torch.__version__}


def format_report(report):
    """The bench report as a markdown table and a line per auto pick."""
    peaks = ", ".join(f"{v:.1f} GFLOP/s on {k if k == 'cuda' else k + ' thread(s)'}"
                      for k, v in report["peak_gflops"].items())
    lines = [f"decode: {report['backend']} {report['precision']} on {report['device']}; "
             f"float32 matmul peak {peaks}",
             "", "| size | threads | decode ms (p90) | frames/s | GFLOP/frame | GFLOP/s (% peak) |",
             "|---|---|---|---|---|---|"]
    for r in report["sizes"]:
        lines.append(f"| {r['size']} | {r['threads']} | {r['decode_ms']:.1f} ({r['p90_ms']:.1f}) | "
                     f"{r['fps']:.1f} | {r['gflop']:.2f} | {r['gflops']:.1f} ({r['peak_pct']:.0f} %) |")
    lines.append("")
    for a in report["auto"]:
        lines.append(f"auto at {a['fps']:.0f} fps (decode <= {a['budget_ms']:.1f} ms, at least "
                     f"{report['min_size']}): {a['size']}")
    return "\n".join(lines)


def bench_command(model_path=None, sizes=None, **options):
    """`flowvj bench`: load the model (default: the one a live show here would use), parse
    --sizes, run; returns the report dict with the model's name or path."""
    parsed = parse_sizes(sizes) if sizes else None
    model_path = model_path or default_model(resolve_device(options.get("device", "auto")))
    report = run_bench(load_model(model_path), parsed, **options)
    report["model"] = str(model_path)
    return report
