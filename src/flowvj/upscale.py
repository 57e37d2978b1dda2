"""The flow's small frame (e.g. 32x32) scaled to the output size, for offline video.

Aspect-filling: the frame is scaled uniformly until it covers the output and the centre is kept
(a 32x32 square to 1280x720 is scaled to 1280x1280 and the middle 720 rows kept), so there are no
bars and no stretching. The filter is bicubic.

How: PIL's resize with a `box`, which resamples only the source region that the crop keeps, in
one call to PIL's C resampler (separable, 8-bit fixed-point, single-threaded): ~5 ms per 1280x720
frame here. The alternative, a precomputed bicubic matrix pair applied as two float32 matmuls
(Wy @ frame @ Wx.T), costs ~3.4 ms with one BLAS thread but 30+ ms when OpenBLAS's threads compete
with other busy threads (the x264 encoder's, a model's, a training job's), as they do on the
render path; PIL's cost does not depend on that. See tests/test_upscale.py for the measurement.
"""

import numpy as np
from PIL import Image


def fill_box(in_size, out_size):
    """The (left, top, right, bottom) region of an input of `in_size` = (w, h) that, scaled to
    `out_size` = (W, H), fills it exactly: the centred crop with the output's aspect ratio."""
    w, h = in_size
    out_w, out_h = out_size
    scale = max(out_w / w, out_h / h)
    crop_w, crop_h = out_w / scale, out_h / scale
    left, top = (w - crop_w) / 2, (h - crop_h) / 2
    return (left, top, left + crop_w, top + crop_h)


def upscale(frame, size=(1280, 720)):
    """Scale an (h, w, 3) uint8 frame to fill `size` = (width, height): uint8 (height, width, 3).

    Uniform scale to cover the output, centre crop, bicubic filter (values clipped to 0..255).
    The returned array is read-only (a view of the PIL image, not copied).
    """
    frame = np.asarray(frame)
    if frame.ndim != 3 or frame.shape[2] != 3 or frame.dtype != np.uint8:
        raise ValueError(f"upscale: expected an (h, w, 3) uint8 frame, got {frame.dtype} {frame.shape}")
    out_size = (int(size[0]), int(size[1]))
    h, w = frame.shape[:2]
    image = Image.fromarray(np.ascontiguousarray(frame), "RGB")
    scaled = image.resize(out_size, Image.Resampling.BICUBIC, box=fill_box((w, h), out_size))
    return np.asarray(scaled)
