"""Detail at projector resolution: the compositor's methods judged on the shared photos.

The flow draws each frame at the generation size (192x108 live); the compositor makes it 1280x720.
For every method (bilinear, `off`, is the baseline) this prints, on images held out of the choice
of its settings:

  endpoint PSNR / SSIM   a frame at an image (weights one-hot) against the original aspect-filled
                         at 720p (target >= 40 dB at every generation size from 128x72)
  mid rt dB              an in-between (t = 0.3..0.7 of a morph) against its own round trip through
                         the generation size (INTER_AREA down, bilinear up): detail above the
                         generation size's Nyquist limit shows as a LOWER figure (target <= 37 dB;
                         the originals are 27-35 dB from theirs)
  mid detail             the in-betweens' high-pass energy (the same round trip's residual) over the
                         mean of their two endpoints' originals': 0 = soft as bilinear, 1 = as sharp
  ghost                  detail of an image the frame does not show: the compositor is given a
                         frame of image a with weights 0.5 a + 0.5 b; the fraction of b's detail
                         layer found in the output (projection). Weights alone (blind transfer)
                         add 0.5. Threshold 0.10: a tenth of another photo's edges (contrast ~100
                         levels -> ~10 levels) is at the edge of visibility on a projector
  flicker                on slow paths (24 steps from a to b), how fast the detail shimmers: the mean
                         absolute change of the high-pass between consecutive frames over the mean
                         high-pass itself, over the same figure for bilinear on the same frames
                         (the flow's own texture moving). Threshold 1.0: the detail the compositor
                         adds changes no faster, for its size, than the flow's own frame does
  pops                   the p99 of those changes over their median (a spike factor), over
                         bilinear's. Threshold 1.5: a change half again as sudden as the flow's own
  grid                   energy at the generation grid's period (the checkerboard couplings'
                         pattern: frequencies gen_w/2 and gen_h/2 cycles a frame) in the in-
                         betweens, over the same in the originals' cross-fade; > 1 = magnified.
                         Reported, not a constraint (see excess); bilinear is 3.3: the pattern magnified
  ms                     compose's median cost per frame at 1280x720, one thread, in this run

Settings are chosen by 2-fold cross-validation over the 20 images (sorted by name, alternate
ones in each fold): on the tuning fold, the setting with the most mid detail among those within
the ghost and flicker thresholds and >= 40 dB at the endpoints; reported on the other fold. Both
folds' held-out rows are printed and averaged.

Usage: .venv/bin/python benchmarks/compose/detail_methods.py [--quick] [--json [PATH]]
       [--sheet DIR]  (720p frames and a 1:1 crop contact sheet, bilinear vs the chosen method)
"""

import argparse
import glob
import itertools
import json
import sys
import time
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "src"))

from flowvj.compose import LUMA, Compositor, scale_to  # noqa: E402
from flowvj.images import load_show_images, resize_images  # noqa: E402

SHARED = ROOT.parent / "shared" / "data" / "images"
OUT = (1280, 720)
STEPS = 24
GHOST_MAX, FLICKER_MAX, POPS_MAX, GRID_MAX, ENDPOINT_MIN = 0.10, 1.0, 1.5, 1.5, 40.0


# ---------------------------------------------------------------- metrics

def psnr(a, b):
    mse = np.mean((a.astype(np.float32) - b.astype(np.float32)) ** 2)
    return float(10 * np.log10(255.0 ** 2 / max(mse, 1e-10)))


def ssim(a, b):
    """Wang et al. 2004 on luma, Gaussian window sigma 1.5 (the usual constants)."""
    x, y = (np.asarray(i, np.float32) @ LUMA for i in (a, b))
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2

    def blur(i):
        return cv2.GaussianBlur(i, (11, 11), 1.5)
    mx, my = blur(x), blur(y)
    sxx, syy, sxy = blur(x * x) - mx * mx, blur(y * y) - my * my, blur(x * y) - mx * my
    return float(np.mean((2 * mx * my + c1) * (2 * sxy + c2) / ((mx * mx + my * my + c1) * (sxx + syy + c2))))


def high_pass(image, gen):
    """The image less its round trip through the generation size: what lies above its Nyquist."""
    image = np.asarray(image, np.float32)
    return image - cv2.resize(cv2.resize(image, gen, interpolation=cv2.INTER_AREA), OUT,
                              interpolation=cv2.INTER_LINEAR)


def grid_energy(image, gen):
    """Power at the generation grid's period (gen_w/2 and gen_h/2 cycles a frame: the
    checkerboard's frequencies, with a +-1 bin margin), luma."""
    luma = np.asarray(image, np.float32) @ LUMA
    power = np.abs(np.fft.rfft2(luma - luma.mean())) ** 2
    fx, fy = gen[0] // 2, gen[1] // 2
    total = 0.0
    for y0, x0 in ((fy, 0), (0, fx), (fy, fx), (OUT[1] - fy, fx)):
        total += power[max(0, y0 - 1):y0 + 2, max(0, x0 - 1):x0 + 2].sum()
    return float(total)


# ---------------------------------------------------------------- the other methods tried

class Blind(Compositor):
    """The issue's first prototype: every active image's detail added with its weight alone."""

    def coefficient_maps(self, luma, weights, layers=None):
        return [(int(k), np.full(luma.shape, weights[k], np.float32)) for k in np.argsort(-weights)[:3]
                if weights[k] > 0.01]


class Gate(Compositor):
    """The prototype's second step: weights gated by the local agreement of frame and image."""

    def coefficient_maps(self, luma, weights, layers=None):
        size = (2 * self.radius + 1,) * 2
        return [(int(k), weights[k] * np.exp(-np.square(cv2.boxFilter(np.abs(luma - (layers or self.layers).low_luma[k]),
                                                                          -1, size) / self.agree)))
                for k in np.argsort(-weights)[:3] if weights[k] > 0.01]


class Guided:
    """Fast guided upsampling (He and Sun 2015) with the weighted originals as the guide: per
    channel, the frame = a * guide + b fitted at the generation size over (2r+1)^2 windows, a and b
    scaled up and applied to the full-size guide. Self-gating (a -> 0 where the guide does not
    explain the frame), but the guide is a per-frame weighted sum of originals at 720p."""

    def __init__(self, radius=2, eps=100.0):
        self.radius, self.eps, self.out_size = radius, eps, OUT

    def prepare(self, originals, show_images):
        return originals, np.asarray(show_images, np.float32)

    def use(self, layers):
        self.originals, self.small = layers

    def compose(self, frame, weights):
        active = [k for k in np.argsort(-weights)[:3] if weights[k] > 0.01]
        w = np.array([weights[k] for k in active], np.float32)
        w /= w.sum()
        guide = sum(float(wk) * self.originals[k].astype(np.float32) for wk, k in zip(w, active))
        small = sum(float(wk) * self.small[k] for wk, k in zip(w, active))
        p = np.asarray(frame, np.float32)
        size = (2 * self.radius + 1,) * 2

        def box(x):
            return cv2.boxFilter(x, -1, size, borderType=cv2.BORDER_REFLECT)
        mi, mp = box(small), box(p)
        a = (box(small * p) - mi * mp) / (box(small * small) - mi * mi + self.eps)
        b = mp - a * mi
        out = scale_to(a, OUT) * guide + scale_to(b, OUT)
        return np.clip(out + 0.5, 0, 255).astype(np.uint8)


def make(method, **settings):
    if method == "guided":
        return Guided(**settings)
    cls = {"blind": Blind, "gate": Gate}.get(method, Compositor)
    return cls(OUT, method="transfer" if method in ("blind", "gate") else method, **settings)


GRIDS = {
    "off": [{}],
    "sharpen": [{"amount": a, "sharpen_sigma": s} for a in (0.5, 1.0) for s in (1.0, 2.0)],
    "blind": [{"strength": 0.0}],
    "gate": [{"radius": 1, "agree": g, "strength": 0.5} for g in (20.0, 40.0)],
    "guided": [{"radius": r, "eps": e} for r in (1, 2) for e in (25.0, 100.0)],
    "transfer": [{"radius": r, "ridge": 100.0, "agree": g, "strength": 0.5, "prior_power": p}
                 for r, g, p in itertools.product((1, 2), (40.0, 80.0), (1.0, 2.0))],
}


# ---------------------------------------------------------------- the frames

def flow_paths(names, small, gen, seed=0):
    """For each image a: a partner b (seeded), and the flow's frames from a to b at STEPS + 1
    points of a slerp of their latents, as the navigator's travelling modes draw them."""
    from flowvj.flow import load_model
    from flowvj.flow.checkpoint import default_model, resolve_checkpoint
    from flowvj.show.generator import Generator
    from flowvj.show.navigate import slerp

    generator = Generator(load_model(default_model("cpu")), size=gen)
    latents = generator.encode(small)
    flat = latents.reshape(len(latents), -1).astype(np.float64)
    rng = np.random.default_rng(seed)
    paths = []
    for a in range(len(names)):
        b = int((a + 1 + rng.integers(len(names) - 1)) % len(names))
        zs = [slerp(flat[a], flat[b], t).reshape(latents.shape[1:]).astype(np.float32)
              for t in np.linspace(0, 1, STEPS + 1)]
        paths.append((a, b, generator.decode_batch(np.stack(zs))))
    return paths


class Reference:
    """Per path, what the metrics compare against, computed once: the originals' high-pass
    energy, the grid energy of their cross-fade, and (`use_baseline`) bilinear's flicker and pops."""

    def __init__(self, big, paths, gen):
        self.hp_energy = [float(np.mean(high_pass(image, gen) ** 2)) for image in big]
        self.grid = []
        for a, b, _ in paths:
            mid = (0.5 * big[a].astype(np.float32) + 0.5 * big[b].astype(np.float32))
            self.grid.append(grid_energy(mid, gen))
        self.flicker = self.pops = None

    def use_baseline(self, raw):
        """Bilinear's raw flicker and pops per path (from judge(..., raw=True))."""
        self.flicker, self.pops = raw


def judge(compositor, big, small, paths, ref, folds, gen, raw=False):
    """The metrics over the paths whose first image is in `folds` (a set of image indices);
    `raw`: (flicker, pops) per path (dicts by path) unnormalised, for the baseline."""
    compositor.use(compositor.prepare(big, small))
    rows = {k: [] for k in ("endpoint", "ssim", "mid_rt", "mid_detail", "ghost", "flicker", "pops", "grid")}
    costs, raw_flicker, raw_pops = [], {}, {}
    n = len(big)
    for p, (a, b, frames) in enumerate(paths):
        if a not in folds:
            continue
        outs, hps = [], []
        for j, frame in enumerate(frames):
            t = j / STEPS
            weights = np.zeros(n)
            weights[a] += 1 - t
            weights[b] += t
            started = time.perf_counter()
            out = compositor.compose(frame, weights)
            costs.append(time.perf_counter() - started)
            outs.append(out)
            hps.append(high_pass(out, gen))
        rows["endpoint"] += [psnr(outs[0], big[a]), psnr(outs[-1], big[b])]
        rows["ssim"] += [ssim(outs[0], big[a]), ssim(outs[-1], big[b])]
        middle = [j for j in range(len(frames)) if 0.3 <= j / STEPS <= 0.7]
        rows["mid_rt"] += [psnr(outs[j], outs[j].astype(np.float32) - hps[j]) for j in middle]
        end_energy = 0.5 * (ref.hp_energy[a] + ref.hp_energy[b])
        rows["mid_detail"] += [float(np.mean(hps[j] ** 2)) / end_energy for j in middle]
        changes = np.array([np.abs(hps[j + 1] - hps[j]).mean() for j in range(len(frames) - 1)])
        raw_flicker[p] = float(changes.mean()) / float(np.mean([np.abs(h).mean() for h in hps]))
        raw_pops[p] = float(np.percentile(changes, 99) / np.median(changes))
        if not raw:
            rows["flicker"].append(raw_flicker[p] / ref.flicker[p])
            rows["pops"].append(raw_pops[p] / ref.pops[p])
        rows["grid"].append(grid_energy(outs[len(frames) // 2], gen) / ref.grid[p])
        weights = np.zeros(n)
        weights[a] = weights[b] = 0.5
        alone = np.zeros(n)
        alone[a] = 1.0
        detail_b = big[b].astype(np.float32) - scale_to(small[b], OUT).astype(np.float32)
        added = compositor.compose(frames[0], weights).astype(np.float32) - \
            compositor.compose(frames[0], alone).astype(np.float32)
        rows["ghost"].append(float(np.sum(added * detail_b) / max(np.sum(detail_b * detail_b), 1e-9)))
    if raw:
        return raw_flicker, raw_pops
    summary = {"endpoint": float(np.min(rows["endpoint"])), "endpoint_median": float(np.median(rows["endpoint"])),
               **{k: float(np.median(v)) for k, v in rows.items() if k != "endpoint"}}
    summary["ms"] = float(np.median(costs) * 1000)
    return summary


def admissible(row):
    return excess(row) == 0


def excess(row):
    """How far a row is outside the thresholds (0 inside all), each as a fraction of its limit.
    The grid is reported, not a constraint: no setting of any method tried reached GRID_MAX
    (the notch removes the period-2 pattern; the flow's coarser scales draw theirs at 4 and 8)."""
    over = [row["ghost"] / GHOST_MAX, row["flicker"] / FLICKER_MAX, row["pops"] / POPS_MAX,
            ENDPOINT_MIN / max(row["endpoint"], 1e-3)]
    return sum(max(0.0, value - 1.0) for value in over)


def choose(method, big, small, paths, ref, tune, gen, quick):
    """The setting of `method` with the most mid detail on the tuning fold among the admissible
    ones (the nearest to the thresholds when none is: a baseline that cannot reach them)."""
    grid = GRIDS[method][:4] if quick else GRIDS[method]
    if len(grid) == 1:
        return grid[0]
    scored = [(settings, judge(make(method, **settings), big, small, paths, ref, tune, gen)) for settings in grid]
    fits = [s for s in scored if admissible(s[1])]
    if not fits:
        return min(scored, key=lambda s: excess(s[1]))[0]
    return max(fits, key=lambda s: s[1]["mid_detail"])[0]


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--gen", default="192x108", help="generation size WxH (default 192x108)")
    parser.add_argument("--methods", default="off,sharpen,blind,gate,guided,transfer")
    parser.add_argument("--quick", action="store_true", help="first settings only, fewer images (a smoke run)")
    parser.add_argument("--json", nargs="?", const=str(Path(__file__).with_suffix(".json")))
    args = parser.parse_args()
    cv2.setNumThreads(1)
    gen = tuple(int(v) for v in args.gen.split("x"))
    files = sorted(f for f in glob.glob(str(SHARED / "*")) if f.lower().endswith((".jpg", ".jpeg", ".png")))
    if args.quick:
        files = files[:6]
    names = [Path(f).name for f in files]
    big = load_show_images(files, OUT)
    small = resize_images(big, gen)
    started = time.perf_counter()
    from flowvj.flow.checkpoint import default_model, resolve_checkpoint

    model = resolve_checkpoint(default_model("cpu"))     # the cache is the flow's frames: keyed by its model file too
    cache = Path.home() / ".cache" / "flowvj" / \
        f"detail-paths-{gen[0]}x{gen[1]}-{len(files)}-{model.stem}-{int(model.stat().st_mtime)}.npz"
    if cache.exists():
        saved = np.load(cache)
        paths = [(int(a), int(b), frames) for a, b, frames in zip(saved["a"], saved["b"], saved["frames"])]
    else:
        paths = flow_paths(names, small, gen)
        cache.parent.mkdir(parents=True, exist_ok=True)
        np.savez(cache, a=[p[0] for p in paths], b=[p[1] for p in paths], frames=np.stack([p[2] for p in paths]))
    ref = Reference(big, paths, gen)
    ref.use_baseline(judge(make("off"), big, small, paths, ref, set(range(len(files))), gen, raw=True))
    print(f"{len(files)} images, generation size {gen[0]}x{gen[1]} -> {OUT[0]}x{OUT[1]}; "
          f"flow paths in {time.perf_counter() - started:.0f} s", flush=True)
    folds = [set(range(0, len(files), 2)), set(range(1, len(files), 2))]
    results = {}
    header = (f"{'method':9s} {'endpoint dB':>11s} {'SSIM':>5s} {'mid rt dB':>9s} {'mid detail':>10s} "
              f"{'ghost':>5s} {'flicker':>7s} {'pops':>5s} {'grid':>5s} {'ms':>5s}  settings (fold 1 | fold 2)")
    print(header)
    for method in args.methods.split(","):
        held, chosen = [], []
        for k in range(2):
            settings = choose(method, big, small, paths, ref, folds[k], gen, args.quick)
            chosen.append(settings)
            held.append(judge(make(method, **settings), big, small, paths, ref, folds[1 - k], gen))
        row = {key: float(np.mean([h[key] for h in held])) for key in held[0]}
        row["endpoint"] = min(h["endpoint"] for h in held)
        results[method] = {"held_out": row, "folds": held, "settings": chosen}
        print(f"{method:9s} {row['endpoint']:6.1f} ({row['endpoint_median']:4.1f}) {row['ssim']:5.3f} "
              f"{row['mid_rt']:9.1f} {row['mid_detail']:10.2f} {row['ghost']:5.2f} {row['flicker']:7.2f} "
              f"{row['pops']:5.2f} {row['grid']:5.2f} {row['ms']:5.1f}  {chosen[0]} | {chosen[1]}", flush=True)
    print("endpoint dB: the worst endpoint (the median in brackets); other columns: medians over held-out "
          "paths, the mean of the two folds")
    if args.json:
        Path(args.json).write_text(json.dumps({"gen": args.gen, "images": names, "results": results,
                                               "thresholds": {"ghost": GHOST_MAX, "flicker": FLICKER_MAX,
                                                              "pops": POPS_MAX, "grid": GRID_MAX,
                                                              "endpoint": ENDPOINT_MIN}},
                                              indent=1) + "\n")


if __name__ == "__main__":
    main()
