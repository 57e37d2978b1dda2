"""`flowvj compare`: the flow against its VAE baseline and a pixel cross-fade, measured.

The original claims were that the flow works on any images the user brings while a VAE only
works on images like its training set, and that flow interpolation beats a cross-fade. This
turns both into figures: reconstruction error (flow x -> z -> x against VAE encode -> decode),
on the user's images and on CIFAR-10 test images, and a judge of in-between frames that is not
the flow itself (the VAE's negative ELBO and two natural-image statistics from `judge`).
The report is one folder: index.html, summary.json with every figure, and the PNGs.
"""

import json
import math
import os
import shutil
from pathlib import Path

import numpy as np
import torch

from . import judge
from .errors import UserError
from .progress import ProgressReport
from .train import to_unit

METHODS = ("flow_lerp", "flow_slerp", "vae_lerp", "crossfade")
UPSCALE = 3  # 32 px is too small to see on a page; nearest-neighbour keeps the pixels honest


@torch.no_grad()
def reconstructions(flow, vae, images_uint8):
    """The two round trips of each image: flow inverse(forward(x)) and VAE decode(posterior mean)."""
    x = to_unit(images_uint8)
    z, _ = flow(x)
    mu, _ = vae.encode(x)
    return x.numpy(), flow.inverse(z).numpy(), vae.decode(mu).numpy()


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
def interpolations(flow, vae, image_a, image_b, t):
    """{method: float (len(t), 3, H, W) frames} from image a (t=0) to image b (t=1)."""
    x = to_unit(np.stack([image_a, image_b]))
    z, _ = flow(x)
    mu, _ = vae.encode(x)
    ts = torch.tensor(t, dtype=torch.float32).view(-1, 1, 1, 1)
    frames = {
        "flow_lerp": flow.inverse((1 - ts) * z[0] + ts * z[1]),
        "flow_slerp": flow.inverse(slerp(z[0], z[1], [float(s) for s in t])),
        "vae_lerp": vae.decode((1 - ts.view(-1, 1)) * mu[0] + ts.view(-1, 1) * mu[1]),
        "crossfade": (1 - ts) * x[0] + ts * x[1],
    }
    return {name: f.clamp(0.0, 1.0).numpy() for name, f in frames.items()}


@torch.no_grad()
def vae_bits_per_dim(vae, frames, seed=0):
    """The VAE's negative ELBO in bits/dim of each frame, quantised to uint8 as it would be shown."""
    from .train import _step_generator
    from .vae import to_levels

    pixels = (np.clip(frames, 0, 1).transpose(0, 2, 3, 1) * 255 + 0.5).astype(np.uint8)
    return vae(to_levels(pixels), _step_generator(seed, "judge"))[0].numpy().astype(np.float64)


def judge_frames(vae, frames, image_a, image_b, t):
    """Per-frame judges of in-between frames, with the two detail statistics as ratios to the
    endpoints' blended values (1.0 = as detailed / as sparse as the real images)."""
    ends = to_unit(np.stack([image_a, image_b])).numpy()
    hf_ends, kurt_ends = judge.high_frequency_energy(ends), judge.gradient_kurtosis(ends)
    return {
        "vae_bits_per_dim": vae_bits_per_dim(vae, frames),
        "hf_energy_ratio": judge.high_frequency_energy(frames) / judge.endpoint_blend(*hf_ends, t),
        "gradient_kurtosis": judge.gradient_kurtosis(frames),
        "gradient_kurtosis_ratio": judge.gradient_kurtosis(frames) / judge.endpoint_blend(*kurt_ends, t),
    }


def _recon_figures(x, flow_rec, vae_rec):
    per_image = {
        "flow_mean_abs_levels": judge.mean_abs_levels(x, flow_rec),
        "flow_psnr_db": judge.psnr(x, flow_rec),
        "flow_max_abs_error": np.abs(flow_rec - x).reshape(len(x), -1).max(axis=1),
        "vae_mean_abs_levels": judge.mean_abs_levels(x, vae_rec),
        "vae_psnr_db": judge.psnr(x, vae_rec),
    }
    summary = {k: float(v.max() if k == "flow_max_abs_error" else v.mean()) for k, v in per_image.items()}
    summary["images"] = len(x)
    return summary, {k: [round(float(e), 6) for e in v] for k, v in per_image.items()}


def _pairs(n_images, n_pairs):
    """Consecutive pairs (0,1), (2,3), ..., then (1,2), ... so each image is used before any repeats."""
    order = [(i, i + 1) for i in range(0, n_images - 1, 2)] + [(i, i + 1) for i in range(1, n_images - 1, 2)]
    return order[:n_pairs]


def compare_set(name, images, flow, vae, n_pairs, n_frames, out, report):
    """Every figure for one set of images, writing its PNGs into `out`; returns its summary."""
    from .train import evaluate
    from .vae import evaluate_vae

    x, flow_rec, vae_rec = reconstructions(flow, vae, images)
    recon, per_image = _recon_figures(x, flow_rec, vae_rec)
    shown = slice(0, min(len(images), 16))
    _save_grid(out / f"{name}-reconstructions.png", [x[shown], flow_rec[shown], vae_rec[shown]])
    bpd = {"flow_bits_per_dim": evaluate(flow, images, show_progress=False)["bits_per_dim"],
           "vae_negative_elbo_bits_per_dim": evaluate_vae(vae, images, show_progress=False)["bits_per_dim"]}
    report.update(1)

    t = np.linspace(0.0, 1.0, n_frames)
    inner = slice(1, n_frames - 1)
    scores = {m: {} for m in METHODS}
    strips = []
    for a, b in _pairs(len(images), n_pairs):
        frames = interpolations(flow, vae, images[a], images[b], t)
        strip = out / f"{name}-strip-{a}-{b}.png"
        _save_grid(strip, [frames[m] for m in METHODS])
        strips.append({"pair": [a, b], "png": strip.name})
        for m in METHODS:
            for key, values in judge_frames(vae, frames[m][inner], images[a], images[b], t[inner]).items():
                scores[m].setdefault(key, []).extend(values.tolist())
        report.update(1)
    real = to_unit(images).numpy()
    judged = {m: {k: float(np.mean(v)) for k, v in s.items()} for m, s in scores.items()}
    judged["real_images"] = {"vae_bits_per_dim": float(vae_bits_per_dim(vae, real).mean()),
                             "hf_energy_ratio": 1.0, "gradient_kurtosis_ratio": 1.0,
                             "gradient_kurtosis": float(judge.gradient_kurtosis(real).mean())}
    return {"images": len(images), "reconstruction": recon, "reconstruction_per_image": per_image,
            "bits_per_dim": bpd, "interpolation_judges": judged, "strips": strips,
            "reconstruction_png": f"{name}-reconstructions.png", "frames": n_frames}


def _save_grid(path, rows):
    """Rows of float (N, 3, H, W) images in [0, 1] as one upscaled PNG."""
    from PIL import Image

    rows = [np.clip(np.asarray(r), 0, 1) for r in rows]
    grid = np.concatenate([np.concatenate(list(r), axis=2) for r in rows], axis=1)  # (3, rows*H, N*W)
    pixels = (grid.transpose(1, 2, 0) * 255 + 0.5).astype(np.uint8)
    Image.fromarray(pixels).resize((pixels.shape[1] * UPSCALE, pixels.shape[0] * UPSCALE),
                                   Image.NEAREST).save(path, format="PNG")


def run_compare(out, images=None, data=None, flow_path=None, vae_path=None, cifar_limit=500,
                pairs=4, frames=9, seed=0):
    """Write the report folder `out` atomically (built beside it, then renamed into place)."""
    from .data import load_dataset
    from .engine import load_show_images
    from .flow import load_model
    from .flow.checkpoint import DEFAULT_MODEL
    from .vae import DEFAULT_VAE, load_vae

    if frames < 3:
        raise UserError(f"--frames {frames} leaves no in-between frame; expected 3 or more")
    flow, vae = load_model(flow_path), load_vae(vae_path)
    size = flow.config.image_size
    if vae.config.image_size != size:
        raise UserError(f"--vae {vae_path} works on {vae.config.image_size} px images, the flow on {size} px")
    sets = {"user": load_show_images(images, size)}
    if len(sets["user"]) < 2:
        raise UserError("--images gave fewer than 2 images; interpolation needs pairs")
    if data is not None:
        test = load_dataset(data, "test", size).images
        pick = np.sort(np.random.default_rng(seed).choice(len(test), min(cifar_limit, len(test)), replace=False))
        sets["cifar10_test"] = test[pick]

    out = Path(out)
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        report = ProgressReport("compare", len(sets) * (1 + pairs), unit="task")
        summary = {
            "flow": {"checkpoint": str(flow_path or DEFAULT_MODEL.name),
                     "test_bits_per_dim": _record_bpd(flow_path, DEFAULT_MODEL, "flow")},
            "vae": {"checkpoint": str(vae_path or DEFAULT_VAE.name), "config": vae.config.to_dict(),
                    "test_negative_elbo_bits_per_dim": _record_bpd(vae_path, DEFAULT_VAE, "vae"),
                    "note": "negative ELBO: an upper bound on the VAE's NLL"},
            "seed": seed, "sets": {},
        }
        with torch.no_grad():
            for name, imgs in sets.items():
                summary["sets"][name] = compare_set(name, imgs, flow, vae, pairs, frames, tmp, report)
        report.close()
        (tmp / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")
        from .compare_report import write_html

        write_html(tmp / "index.html", summary)
        _replace_dir(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return summary


def _is_report_file(name):
    """A file an earlier report wrote (strips and reconstructions, whose set may differ now)."""
    return name.endswith(".png") and ("-strip-" in name or name.endswith("-reconstructions.png"))


def _record_bpd(path, default, kind):
    from .flow import read_checkpoint
    from .vae import FORMAT

    record = read_checkpoint(path or default, FORMAT) if kind == "vae" else read_checkpoint(path or default)
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
