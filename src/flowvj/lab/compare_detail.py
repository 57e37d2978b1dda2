"""`flowvj compare`'s picture at the output's size: the flow's in-betweens at a generation size,
made 1280x720 by the compositor (compose.py) with the show's default detail method beside the
plain bilinear scale, judged and shown as a contact sheet of 1:1 crops.

Why 1:1 crops: a sheet of whole 720p frames shrunk to fit a page hides exactly what differs (the
detail above the generation size); a crop of each frame at its own pixels shows it.
"""

import numpy as np

from ..compose import DEFAULT_DETAIL, Compositor
from . import judge

OUTPUT_SIZE = (1280, 720)
CROP = (480, 270)           # the middle of each 720p frame, at its own pixels
SHEET_T = (0.0, 0.25, 0.5, 0.75, 1.0)


def _unit(frames):
    """uint8 (N, H, W, 3) -> float (N, 3, H, W) in [0, 1], the judges' layout."""
    return np.asarray(frames, np.float32).transpose(0, 3, 1, 2) / 255.0


def _psnr(a, b):
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float(10 * np.log10(255.0 ** 2 / max(mse, 1e-12)))


def _crop(frame):
    height, width = frame.shape[:2]
    left, top = (width - CROP[0]) // 2, (height - CROP[1]) // 2
    return frame[top:top + CROP[1], left:left + CROP[0]]


def compare_detail(originals, small, frames, pair, sheet_path, method=DEFAULT_DETAIL):
    """`frames`: the flow's uint8 (len(SHEET_T), h, w, 3) path from image a to b of `pair` at the
    generation size; `originals` the images at OUTPUT_SIZE, `small` at the generation size.
    Writes the contact sheet (rows: bilinear, `method`; columns: SHEET_T) to `sheet_path` (JPEG)
    and returns the figures: endpoint PSNR against the originals, and the in-betweens' judges at
    720p (high-frequency energy and gradient kurtosis, each over the originals' blend)."""
    from PIL import Image

    a, b = pair
    originals_ab = np.stack([originals[a], originals[b]])
    rows, figures = [], {}
    for name in ("off", method):
        compositor = Compositor(OUTPUT_SIZE, method=name)
        compositor.use(compositor.prepare(originals_ab, np.stack([small[a], small[b]])))
        composed = np.stack([compositor.compose(frame, np.array([1.0 - t, t]))
                             for frame, t in zip(frames, SHEET_T)])
        rows.append(np.concatenate([_crop(frame) for frame in composed], axis=1))
        inner, t_inner = _unit(composed[1:-1]), np.array(SHEET_T[1:-1])
        ends = _unit(originals_ab)
        hf_ends, kurt_ends = judge.high_frequency_energy(ends), judge.gradient_kurtosis(ends)
        figures[name] = {
            "endpoint_psnr_db": [_psnr(composed[0], originals[a]), _psnr(composed[-1], originals[b])],
            "hf_energy_ratio": float(np.mean(judge.high_frequency_energy(inner)
                                             / judge.endpoint_blend(*hf_ends, t_inner))),
            "gradient_kurtosis_ratio": float(np.mean(judge.gradient_kurtosis(inner)
                                                     / judge.endpoint_blend(*kurt_ends, t_inner))),
        }
    Image.fromarray(np.concatenate(rows, axis=0)).save(sheet_path, format="JPEG", quality=88)
    return {"pair": [int(a), int(b)], "method": method, "output_size": list(OUTPUT_SIZE),
            "t": list(SHEET_T), "sheet": sheet_path.name, "figures": figures}
