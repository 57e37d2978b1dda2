"""`flowvj compare`: the flow against its VAE baseline and a pixel cross-fade, measured.

The original claims were that the flow works on any images the user brings while a VAE only
works on images like its training set, and that flow interpolation beats a cross-fade. This
turns both into figures: reconstruction error (flow x -> z -> x against VAE encode -> decode),
on the user's images and on CIFAR-10 test images, and a judge of in-between frames that is not
the flow itself (the VAE's negative ELBO and two natural-image statistics from `judge`).

The show draws at a generation size such as 128x72 or 256x144, not the 32x32 the model was
trained on (the flow is fully convolutional), so every figure for the user's images is repeated
at each of `sizes`, and a slow path between two images is measured for flicker: how much the
picture changes from one frame to the next, flow latent slerp against cross-fade. The VAE ends
its encoder and starts its decoder with a fully connected layer sized for 32x32, so it runs at
that size only; elsewhere the report is flow against cross-fade. CIFAR-10 test images are
compared at their own 32x32: blown up they would no longer be in distribution.

A tuned flow (`flowvj tune`, or any checkpoint) is also set beside the model it started from
(`base`: the one the checkpoint records, or --base): the section "bundled vs tuned" has both
models' in-betweens of a few pairs side by side on one sheet at each show size, the same judges
for each (detail, kurtosis, flicker) and both models' bits/dim on those images, since the
in-betweens are where tuning shows and the endpoints are exact either way.

The report is one folder: index.html, summary.json with every figure, and the PNGs.
"""

import json
import math
import os
import re
import shutil
from pathlib import Path

import numpy as np
import torch

from ..data import list_image_files, load_dataset
from ..errors import UserError
from ..flow import load_model, read_checkpoint
from ..flow.checkpoint import BUNDLED_MODELS, DEFAULT_MODEL, resolve_checkpoint
from ..images import DEFAULT_IMAGES, check_image_specs, load_show_images
from ..progress import ProgressReport
from . import judge
from .seeding import step_generator
from .train import to_unit

METHODS = ("flow_lerp", "flow_slerp", "vae_lerp", "crossfade")
FLICKER_METHODS = ("flow_slerp", "vae_lerp", "crossfade")  # the show's path, the baseline, the fade
JUDGES = ("vae_bits_per_dim", "hf_energy_ratio", "gradient_kurtosis", "gradient_kurtosis_ratio")
DEFAULT_SIZES = "32x32,128x72,256x144"  # the model's own, and two generation sizes of a 16:9 show
SIZES_EXPECTED = "expected WIDTHxHEIGHT sizes with even sides, comma-separated, such as " + DEFAULT_SIZES
TILE_MIN_PX = 96  # small frames are upscaled (nearest neighbour: the pixels stay honest) to this height
BATCH = 8  # images per flow call: a 256x144 batch of 61 would hold GBs of activations
LARGE_STRIPS = 2  # strips written per set above the models' size (a 256x144 one is 1.4 MB); all pairs are judged
TUNED_PAIRS = 3  # pairs on the bundled-vs-tuned sheet (more make a sheet of MBs at a show's size)
TUNED_SHEET_T = (0.0, 0.25, 0.5, 0.75, 1.0)  # its columns: the ends (the same for both), three in-betweens
DEFAULT_BASE = "hires"  # the base of a checkpoint that records none: what flowvj tune starts from


def parse_sizes(text):
    """'32x32,128x72' -> [(32, 32), (128, 72)], repeats dropped; anything else is a UserError
    naming --sizes (the flow squeezes each side in half, so sides must be even)."""
    sizes = []
    for part in str(text).split(","):
        match = re.fullmatch(r"\s*(\d+)\s*[xX]\s*(\d+)\s*", part)
        if not match or min(int(match[1]), int(match[2])) < 2 or int(match[1]) % 2 or int(match[2]) % 2:
            raise UserError(f"--sizes {text}: {part.strip()!r} is not a size; {SIZES_EXPECTED}")
        if (int(match[1]), int(match[2])) not in sizes:
            sizes.append((int(match[1]), int(match[2])))
    return sizes


def size_name(width, height):
    return f"{width}x{height}"


@torch.no_grad()
def _flow_encode(flow, x):
    return torch.cat([flow(x[i:i + BATCH])[0] for i in range(0, len(x), BATCH)])


@torch.no_grad()
def _flow_decode(flow, z):
    return torch.cat([flow.inverse(z[i:i + BATCH]) for i in range(0, len(z), BATCH)])


@torch.no_grad()
def reconstructions(flow, vae, images_uint8):
    """The two round trips of each image: flow inverse(forward(x)) and VAE decode(posterior mean);
    the VAE's is None without a VAE (at sizes it cannot run at)."""
    x = to_unit(images_uint8)
    flow_rec = _flow_decode(flow, _flow_encode(flow, x)).numpy()
    return x.numpy(), flow_rec, None if vae is None else vae.decode(vae.encode(x)[0]).numpy()


def slerp(a, b, t):
    """Spherical interpolation of flattened latents: keeps a typical latent's norm where a
    linear mix of two nearly orthogonal Gaussian vectors shrinks by up to 1/sqrt(2)."""
    a_flat, b_flat = a.reshape(-1).double(), b.reshape(-1).double()
    cos = torch.dot(a_flat, b_flat) / (a_flat.norm() * b_flat.norm())
    omega = torch.arccos(cos.clamp(-1.0, 1.0))
    if float(omega) < 1e-6:
        return torch.stack([(1 - s) * a + s * b for s in t])
    so = torch.sin(omega)
    return torch.stack([((torch.sin((1 - s) * omega) / so) * a_flat + (torch.sin(s * omega) / so) * b_flat)
                        .reshape(a.shape).float() for s in t])


@torch.no_grad()
def interpolations(flow, vae, image_a, image_b, t, methods=METHODS):
    """{method: float (len(t), 3, H, W) frames} from image a (t=0) to image b (t=1), for each of
    `methods`; vae_lerp is left out without a VAE."""
    x = to_unit(np.stack([image_a, image_b]))
    ts = torch.tensor(t, dtype=torch.float32).view(-1, 1, 1, 1)
    frames = {}
    if {"flow_lerp", "flow_slerp"} & set(methods):
        z = _flow_encode(flow, x)
    if "flow_lerp" in methods:
        frames["flow_lerp"] = _flow_decode(flow, (1 - ts) * z[0] + ts * z[1])
    if "flow_slerp" in methods:
        frames["flow_slerp"] = _flow_decode(flow, slerp(z[0], z[1], [float(s) for s in t]))
    if "vae_lerp" in methods and vae is not None:
        mu, _ = vae.encode(x)
        frames["vae_lerp"] = vae.decode((1 - ts.view(-1, 1)) * mu[0] + ts.view(-1, 1) * mu[1])
    if "crossfade" in methods:
        frames["crossfade"] = (1 - ts) * x[0] + ts * x[1]
    return {name: f.clamp(0.0, 1.0).numpy() for name, f in frames.items()}


@torch.no_grad()
def vae_bits_per_dim(vae, frames, seed=0):
    """The VAE's negative ELBO in bits/dim of each frame, quantised to uint8 as it would be shown."""
    from .vae import to_levels

    pixels = (np.clip(frames, 0, 1).transpose(0, 2, 3, 1) * 255 + 0.5).astype(np.uint8)
    return vae(to_levels(pixels), step_generator(seed, "judge"))[0].numpy().astype(np.float64)


def judge_frames(vae, frames, image_a, image_b, t):
    """Per-frame judges of in-between frames, with the two detail statistics as ratios to the
    endpoints' blended values (1.0 = as detailed / as sparse as the real images); the VAE's
    judge only with a VAE."""
    ends = to_unit(np.stack([image_a, image_b])).numpy()
    hf_ends, kurt_ends = judge.high_frequency_energy(ends), judge.gradient_kurtosis(ends)
    scores = {
        "hf_energy_ratio": judge.high_frequency_energy(frames) / judge.endpoint_blend(*hf_ends, t),
        "gradient_kurtosis": judge.gradient_kurtosis(frames),
        "gradient_kurtosis_ratio": judge.gradient_kurtosis(frames) / judge.endpoint_blend(*kurt_ends, t),
    }
    if vae is not None:
        scores["vae_bits_per_dim"] = vae_bits_per_dim(vae, frames)
    return scores


def flicker_figures(frames):
    """Frame-to-frame change along a slow path (see judge.consecutive_change), summarised:
    the mean step, the largest, their ratio (1 = a steady pace, the cross-fade's; large = a jump)
    and the path's length, all in 8-bit levels of mean absolute change."""
    steps = judge.consecutive_change(frames)
    mean = float(steps.mean())
    return {"mean_step_levels": mean, "max_step_levels": float(steps.max()),
            "max_over_mean": float(steps.max()) / max(mean, 1e-12), "path_length_levels": float(steps.sum()),
            "steps_levels": [round(float(s), 4) for s in steps]}


def _flicker_summary(per_pair):
    """Over pairs: mean step and length averaged, the largest step and max/mean of the worst
    pair, and each method's length relative to the cross-fade's straight line on the same pair."""
    summary = {}
    for m in per_pair[0]["methods"]:
        figures = [p["methods"][m] for p in per_pair]
        summary[m] = {"mean_step_levels": float(np.mean([f["mean_step_levels"] for f in figures])),
                      "max_step_levels": max(f["max_step_levels"] for f in figures),
                      "max_over_mean": max(f["max_over_mean"] for f in figures),
                      "path_length_levels": float(np.mean([f["path_length_levels"] for f in figures])),
                      "length_over_crossfade": float(np.mean(
                          [f["path_length_levels"] / max(p["methods"]["crossfade"]["path_length_levels"], 1e-12)
                           for f, p in zip(figures, per_pair)]))}
    return summary


def _recon_figures(x, flow_rec, vae_rec):
    per_image = {
        "flow_mean_abs_levels": judge.mean_abs_levels(x, flow_rec),
        "flow_psnr_db": judge.psnr(x, flow_rec),
        "flow_max_abs_error": np.abs(flow_rec - x).reshape(len(x), -1).max(axis=1),
    }
    if vae_rec is not None:
        per_image.update(vae_mean_abs_levels=judge.mean_abs_levels(x, vae_rec), vae_psnr_db=judge.psnr(x, vae_rec))
    summary = dict.fromkeys(["vae_mean_abs_levels", "vae_psnr_db"])
    summary.update({k: float(v.max() if k == "flow_max_abs_error" else v.mean()) for k, v in per_image.items()})
    summary["images"] = len(x)
    return summary, {k: [round(float(e), 6) for e in v] for k, v in per_image.items()}


def _pairs(n_images, n_pairs):
    """Consecutive pairs (0,1), (2,3), ..., then (1,2), ... so each image is used before any repeats."""
    order = [(i, i + 1) for i in range(0, n_images - 1, 2)] + [(i, i + 1) for i in range(1, n_images - 1, 2)]
    return order[:n_pairs]


def compare_size(name, images, flow, vae, n_pairs, n_frames, flicker_steps, flicker_pairs, out, report,
                 originals=None):
    """Every figure for one set of images at their size, writing its PNGs into `out`; returns
    them. vae is None at sizes it cannot run at; bits/dim are counted at the VAE's size only
    (the flow's evaluation counts the dimensions of its training size). With `originals` (the
    images at the show's output size), the first pair's in-betweens are also composed to that
    size, bilinear beside the show's detail method (compare_detail.py)."""
    from .train import evaluate
    from .vae import evaluate_vae

    height, width = images.shape[1:3]
    tag = f"{name}-{size_name(width, height)}"
    x, flow_rec, vae_rec = reconstructions(flow, vae, images)
    recon, per_image = _recon_figures(x, flow_rec, vae_rec)
    entry = {"width": width, "height": height, "vae": vae is not None, "reconstruction": recon,
             "reconstruction_per_image": per_image, "reconstruction_png": None, "bits_per_dim": None}
    if vae is not None:  # at the models' own size: show what the VAE's blur looks like, and bits/dim
        shown = slice(0, min(len(images), 16))
        entry["reconstruction_png"] = f"{tag}-reconstructions.png"
        _save_grid(out / entry["reconstruction_png"], [x[shown], flow_rec[shown], vae_rec[shown]])
        entry["bits_per_dim"] = {
            "flow_bits_per_dim": evaluate(flow, images, show_progress=False)["bits_per_dim"],
            "vae_negative_elbo_bits_per_dim": evaluate_vae(vae, images, show_progress=False)["bits_per_dim"]}
    report.update(1)

    t = np.linspace(0.0, 1.0, n_frames)
    inner = slice(1, n_frames - 1)
    methods = [m for m in METHODS if vae is not None or m != "vae_lerp"]
    scores = {m: {} for m in methods}
    entry["strips"] = []
    judged_pairs = _pairs(len(images), n_pairs)
    for i, (a, b) in enumerate(judged_pairs):
        frames = interpolations(flow, vae, images[a], images[b], t)
        if vae is not None or i < LARGE_STRIPS:
            strip = f"{tag}-strip-{a}-{b}.png"
            _save_grid(out / strip, [frames[m] for m in methods])
            entry["strips"].append({"pair": [a, b], "png": strip, "rows": methods})
        for m in methods:
            for key, values in judge_frames(vae, frames[m][inner], images[a], images[b], t[inner]).items():
                scores[m].setdefault(key, []).extend(values.tolist())
        report.update(1)
    real = to_unit(images).numpy()
    judged = {m: {**dict.fromkeys(JUDGES), **{k: float(np.mean(v)) for k, v in s.items()}}
              for m, s in scores.items()}
    judged["real_images"] = {"vae_bits_per_dim": None if vae is None else float(vae_bits_per_dim(vae, real).mean()),
                             "hf_energy_ratio": 1.0, "gradient_kurtosis_ratio": 1.0,
                             "gradient_kurtosis": float(judge.gradient_kurtosis(real).mean())}
    entry.update(interpolation_judges=judged, frames=n_frames, pairs=len(judged_pairs))

    slow = np.linspace(0.0, 1.0, flicker_steps + 1)
    per_pair = []
    for a, b in _pairs(len(images), flicker_pairs):
        frames = interpolations(flow, vae, images[a], images[b], slow, FLICKER_METHODS)
        per_pair.append({"pair": [a, b], "methods": {m: flicker_figures(f) for m, f in frames.items()}})
        report.update(1)
    entry["flicker"] = {"steps": flicker_steps, "pairs": per_pair, "summary": _flicker_summary(per_pair)}
    if originals is not None:
        from .compare_detail import SHEET_T, compare_detail

        a, b = judged_pairs[0]
        path = interpolations(flow, None, images[a], images[b], np.array(SHEET_T), ("flow_slerp",))["flow_slerp"]
        frames = (path.transpose(0, 2, 3, 1) * 255 + 0.5).astype(np.uint8)
        entry["detail"] = compare_detail(originals, images, frames, (a, b), out / f"{tag}-detail-{a}-{b}.jpg")
    return entry


def base_of(flow_path, base=None):
    """The model the flow is set beside: `base` (--base), else the one its checkpoint records it
    was tuned from (flowvj tune's `base`), else DEFAULT_BASE; None for a bundled flow with no
    --base (there is nothing it was tuned from)."""
    if base is not None:
        return str(base)
    if flow_path is None or str(flow_path) in BUNDLED_MODELS:
        return None
    return read_checkpoint(resolve_checkpoint(flow_path)).get("base") or DEFAULT_BASE


def load_base(base, flow_path, given):
    """The base flow, or a one-line UserError naming --base (or the checkpoint's record of it)."""
    where = f"--base {base}" if given else f"{flow_path} was tuned from {base}, which"
    same = Path(resolve_checkpoint(base)).resolve() == Path(resolve_checkpoint(flow_path)).resolve()
    if same:
        raise UserError(f"{where}: the flow itself; expected the model it was tuned from "
                        "(lite, hires or a checkpoint)")
    try:
        return load_model(base)
    except UserError as error:
        advice = "" if given else "; pass --base lite|hires|PATH"
        raise UserError(f"{where}: {error}{advice}") from None


def image_files(specs):
    """The files of the user's images in load_show_images's order (None: the bundled demo images)."""
    files = []
    for spec in check_image_specs(specs or [DEFAULT_IMAGES]):
        if spec.is_dir():
            files.extend(spec.resolve() / rel for rel, _, _ in list_image_files(spec.resolve()))
        else:
            files.append(spec.resolve())
    return files


def tuned_roles(files, flow_path):
    """Each image's part in the tune (from the run's split.json beside the checkpoint): "tuned",
    "held out" or "not in the tune"; None when the run's folder is not there to say."""
    from .tune import run_folder

    split_path = run_folder(flow_path) / "split.json" if flow_path else None
    if split_path is None or not split_path.is_file():
        return None
    split = json.loads(split_path.read_text())
    roles = {Path(f).resolve(): role for role, key in (("tuned", "tuned"), ("held out", "held_out"))
             for f in split.get(key, [])}
    return [roles.get(Path(f).resolve(), "not in the tune") for f in files]


def _path_of(flow, image_a, image_b, t):
    return interpolations(flow, None, image_a, image_b, t, ("flow_slerp",))["flow_slerp"]


def compare_tuned(images, models, n_pairs, n_frames, flicker_steps, flicker_pairs, out, report):
    """The section "bundled vs tuned" at the images' size: `models` is {"bundled": flow, "tuned":
    flow}; for each, bits/dim on the images, the judges of its slerp in-betweens of the first
    n_pairs pairs (as compare_size's) and their flicker; one sheet with both models' in-betweens
    of each pair, bundled above tuned, written into `out`. Returns the figures."""
    from .train import evaluate

    height, width = images.shape[1:3]
    pairs, flicker = _pairs(len(images), n_pairs), _pairs(len(images), flicker_pairs)
    t, slow = np.linspace(0.0, 1.0, n_frames), np.linspace(0.0, 1.0, flicker_steps + 1)
    inner = slice(1, n_frames - 1)
    fades = [flicker_figures(interpolations(None, None, images[a], images[b], slow, ("crossfade",))
                             ["crossfade"]) for a, b in flicker]
    entry = {"pairs": [list(p) for p in pairs], "frames": n_frames, "flicker_steps": flicker_steps,
             "sheet_t": list(TUNED_SHEET_T), "models": {}}
    rows = {}
    for role, flow in models.items():
        scores = {}
        for a, b in pairs:
            for key, values in judge_frames(None, _path_of(flow, images[a], images[b], t)[inner],
                                            images[a], images[b], t[inner]).items():
                scores.setdefault(key, []).extend(values.tolist())
            rows.setdefault((a, b), []).append(_path_of(flow, images[a], images[b], np.array(TUNED_SHEET_T)))
            report.update(1)
        steps = [flicker_figures(_path_of(flow, images[a], images[b], slow)) for a, b in flicker]
        report.update(1)
        entry["models"][role] = {
            "bits_per_dim": evaluate(flow, images, show_progress=False)["bits_per_dim"],
            "judges": {k: float(np.mean(v)) for k, v in scores.items()},
            "flicker": {"mean_step_levels": float(np.mean([f["mean_step_levels"] for f in steps])),
                        "max_over_mean": max(f["max_over_mean"] for f in steps),
                        "length_over_crossfade": float(np.mean(
                            [f["path_length_levels"] / max(c["path_length_levels"], 1e-12)
                             for f, c in zip(steps, fades)]))}}
    real = to_unit(images).numpy()
    entry["real_gradient_kurtosis"] = float(judge.gradient_kurtosis(real).mean())
    entry["sheet"] = f"user-{size_name(width, height)}-bundled-vs-tuned.png"
    _save_grid(out / entry["sheet"], [row for pair in rows.values() for row in pair])
    return entry


def _save_grid(path, rows):
    """Rows of float (N, 3, H, W) images in [0, 1] as one PNG, small frames upscaled."""
    from PIL import Image

    rows = [np.clip(np.asarray(r), 0, 1) for r in rows]
    grid = np.concatenate([np.concatenate(list(r), axis=2) for r in rows], axis=1)  # (3, rows*H, N*W)
    pixels = (grid.transpose(1, 2, 0) * 255 + 0.5).astype(np.uint8)
    scale = max(1, math.ceil(TILE_MIN_PX / rows[0].shape[2]))
    Image.fromarray(pixels).resize((pixels.shape[1] * scale, pixels.shape[0] * scale),
                                   Image.NEAREST).save(path, format="PNG")


def run_compare(out, images=None, data=None, flow_path=None, vae_path=None, cifar_limit=500,
                pairs=4, frames=9, seed=0, sizes=DEFAULT_SIZES, flicker_steps=60, flicker_pairs=2, base=None):
    """Write the report folder `out` atomically (built beside it, then renamed into place).

    sizes: 'WxH,...' text or [(width, height), ...]: where the user's images are compared.
    flicker_steps, flicker_pairs: the slow path's steps between two images (a show at 30 fps
        crossing in 2 s takes 60) and on how many pairs it is measured (each costs
        (steps + 1) flow decodes, about 2 s apiece at 256x144 on one core).
    base: the model the flow is set beside in "bundled vs tuned" (see base_of: by default the
        one a tuned checkpoint records; none for a bundled flow), at each of `sizes` but the
        models' own square (at it alone if it is the only one).
    """
    from .vae import DEFAULT_VAE, load_vae

    sizes = parse_sizes(sizes) if isinstance(sizes, str) else [tuple(s) for s in sizes]
    if frames < 3:
        raise UserError(f"--frames {frames} leaves no in-between frame; expected 3 or more")
    if flicker_steps < 2:
        raise UserError(f"--flicker-steps {flicker_steps} gives no consecutive steps to compare; expected 2 or more")
    flow, vae = load_model(flow_path), load_vae(vae_path)
    base_spec = base_of(flow_path, base)
    base_flow = None if base_spec is None else load_base(base_spec, flow_path, given=base is not None)
    native = flow.config.image_size
    if vae.config.image_size != native:
        raise UserError(f"--vae {vae_path} works on {vae.config.image_size} px images, the flow on {native} px")
    scales = max(f.config.num_scales for f in (flow, base_flow) if f is not None)
    step = 2 ** (scales - 1)
    for w, h in sizes:
        if w % step or h % step:
            models = "this flow" if base_flow is None else "the flow or its base"
            raise UserError(f"--sizes {size_name(w, h)}: {models} squeezes {scales - 1} times, "
                            f"so it needs sides that are multiples of {step}")
    tuned_sizes = ([size_name(w, h) for w, h in sizes if (w, h) != (native, native)]
                   or [size_name(native, native)])
    sets = {"user": {size_name(w, h): load_show_images(images, (w, h)) for w, h in sizes}}
    from .compare_detail import OUTPUT_SIZE

    originals = (load_show_images(images, OUTPUT_SIZE) if any((w, h) != (native, native) for w, h in sizes)
                 else None)
    if len(next(iter(sets["user"].values()))) < 2:
        raise UserError("--images gave fewer than 2 images; interpolation needs pairs")
    if data is not None:
        test = load_dataset(data, "test", native).images
        pick = np.sort(np.random.default_rng(seed).choice(len(test), min(cifar_limit, len(test)), replace=False))
        sets["cifar10_test"] = {size_name(native, native): test[pick]}

    out = Path(out)
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        tasks = sum(1 + len(_pairs(len(imgs), pairs)) + len(_pairs(len(imgs), flicker_pairs))
                    for by_size in sets.values() for imgs in by_size.values())
        n_user = len(next(iter(sets["user"].values())))
        if base_flow is not None:
            tasks += 2 * len(tuned_sizes) * (len(_pairs(n_user, min(pairs, TUNED_PAIRS))) + 1)
        report = ProgressReport("compare", tasks, unit="task")
        summary = {
            "flow": {"checkpoint": str(flow_path or DEFAULT_MODEL.name), "image_size": native,
                     "test_bits_per_dim": _record_bpd(flow_path, DEFAULT_MODEL, "flow")},
            "vae": {"checkpoint": str(vae_path or DEFAULT_VAE.name), "config": vae.config.to_dict(),
                    "test_negative_elbo_bits_per_dim": _record_bpd(vae_path, DEFAULT_VAE, "vae"),
                    "note": "negative ELBO: an upper bound on the VAE's NLL; runs at "
                            f"{size_name(native, native)} only (fully connected layers sized for it)"},
            "seed": seed, "sizes": [size_name(w, h) for w, h in sizes], "sets": {},
        }
        with torch.no_grad():
            for name, by_size in sets.items():
                entries = {}
                for key, imgs in by_size.items():
                    fits = imgs.shape[1:3] == (native, native)
                    entries[key] = compare_size(name, imgs, flow, vae if fits else None, pairs, frames,
                                                flicker_steps, flicker_pairs, tmp, report,
                                                originals if name == "user" and not fits else None)
                summary["sets"][name] = {"images": len(next(iter(by_size.values()))), "sizes": entries}
            if base_flow is not None:
                files = image_files(images)
                summary["bundled_vs_tuned"] = {
                    "bundled": base_spec, "tuned": str(flow_path or DEFAULT_MODEL.name),
                    "images": [f.name for f in files], "roles": tuned_roles(files, flow_path),
                    "sizes": {size: compare_tuned(sets["user"][size], {"bundled": base_flow, "tuned": flow},
                                                  min(pairs, TUNED_PAIRS), frames, flicker_steps,
                                                  flicker_pairs, tmp, report) for size in tuned_sizes}}
        report.close()
        (tmp / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")
        from .compare_report import write_html

        write_html(tmp / "index.html", summary)
        _replace_dir(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return summary


def _is_report_file(name):
    """A file an earlier report wrote (strips, reconstructions and detail sheets, whose set may
    differ now)."""
    return (name.endswith(".png") and ("-strip-" in name or name.endswith("-reconstructions.png")
                                       or name.endswith("-bundled-vs-tuned.png"))
            or name.endswith(".jpg") and "-detail-" in name)


def _record_bpd(path, default, kind):
    from .vae import FORMAT

    record = (read_checkpoint(path or default, FORMAT) if kind == "vae"
              else read_checkpoint(resolve_checkpoint(path)))
    value = record.get("test_bits_per_dim")
    return None if value is None or math.isnan(value) else value


def _replace_dir(new, target):
    """Put folder `new` at `target`; an old report is moved aside first and removed after.
    Files in `target` the report does not write (a README, the user's notes) move into the new
    folder first: regenerating a report must not delete what someone kept beside it."""
    old = target.with_name(f".{target.name}.{os.getpid()}.old")
    if target.exists():
        for entry in target.iterdir():
            if not (new / entry.name).exists() and not _is_report_file(entry.name):
                os.replace(entry, new / entry.name)
        os.replace(target, old)
    os.replace(new, target)
    shutil.rmtree(old, ignore_errors=True)
