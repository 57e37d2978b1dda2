"""Numbers for "looks better": image statistics that judge a frame without asking the flow.

Every function takes float images in [0, 1], shape (N, 3, H, W), and returns one value per image,
so a caller can average over in-between frames or compare with the endpoints. They are chosen
for what a bad in-between frame does: a pixel cross-fade is a double exposure (two half-contrast
edge sets, so gradients are less sparse and detail energy drops), and a VAE decoder blurs
(detail energy drops further). Natural photographs have sparse, heavy-tailed gradients.
`consecutive_change` judges a sequence instead: how evenly a path between two images moves,
frame to frame, which is what a live show's motion looks like (a jump reads as flicker).
"""

import numpy as np

LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float64)  # ITU-R BT.601


def luminance(images):
    """(N, 3, H, W) -> (N, H, W) grey levels in [0, 1]."""
    return np.einsum("nchw,c->nhw", np.asarray(images, dtype=np.float64), LUMA)


def _gradients(images):
    """All horizontal and vertical neighbour differences of each image's luminance, (N, K)."""
    y = luminance(images)
    dx = np.diff(y, axis=2).reshape(len(y), -1)
    dy = np.diff(y, axis=1).reshape(len(y), -1)
    return np.concatenate([dx, dy], axis=1)


def gradient_kurtosis(images):
    """Kurtosis of the luminance gradients per image: 3 for Gaussian noise, well above for photos.

    A sum of two images' gradients is closer to Gaussian than either (central limit), so a
    double exposure scores lower than the images it mixes.
    """
    g = _gradients(images)
    g = g - g.mean(axis=1, keepdims=True)
    var = (g ** 2).mean(axis=1)
    return (g ** 4).mean(axis=1) / np.maximum(var ** 2, 1e-20)


def high_frequency_energy(images):
    """Mean squared discrete Laplacian of the luminance per image: the energy of fine detail."""
    y = luminance(images)
    lap = 4 * y[:, 1:-1, 1:-1] - y[:, :-2, 1:-1] - y[:, 2:, 1:-1] - y[:, 1:-1, :-2] - y[:, 1:-1, 2:]
    return (lap ** 2).mean(axis=(1, 2))


def endpoint_blend(values_a, values_b, t):
    """What a frame at position t should score if it were as natural as its endpoints:
    the endpoints' statistic blended linearly, (len(t),) for scalar endpoint values."""
    t = np.asarray(t, dtype=np.float64)
    return (1.0 - t) * values_a + t * values_b


def psnr(reference, reconstruction):
    """Peak signal-to-noise ratio in dB per image, peak 1.0; the reconstruction is clipped to
    [0, 1] first (what a display shows). An exact reconstruction gives a large finite number
    (mean squared error floored at 1e-20, i.e. 200 dB) so it stays valid JSON."""
    ref = np.asarray(reference, dtype=np.float64)
    rec = np.clip(np.asarray(reconstruction, dtype=np.float64), 0.0, 1.0)
    mse = ((ref - rec) ** 2).reshape(len(ref), -1).mean(axis=1)
    return 10.0 * np.log10(1.0 / np.maximum(mse, 1e-20))


def mean_abs_levels(reference, reconstruction):
    """Mean absolute error per image in 8-bit levels (0..255), reconstruction clipped to [0, 1]."""
    ref = np.asarray(reference, dtype=np.float64)
    rec = np.clip(np.asarray(reconstruction, dtype=np.float64), 0.0, 1.0)
    return 255.0 * np.abs(ref - rec).reshape(len(ref), -1).mean(axis=1)


def consecutive_change(frames):
    """Mean absolute change from each frame to the next in 8-bit levels, (N-1,) for N frames.

    The flicker of a path: a show that walks the path at a steady pace changes the picture by
    these amounts frame after frame, so a step far above the path's typical one is a visible jump.
    A pixel cross-fade changes every pixel by the same amount each step (its steps are equal); a
    latent path need not. Summed over the path it is the path's length in mean-absolute-level
    terms, which no path between the same two frames can make shorter than the cross-fade's
    straight line (per-pixel triangle inequality).
    """
    f = np.asarray(frames, dtype=np.float64)
    return 255.0 * np.abs(np.diff(f, axis=0)).reshape(len(f) - 1, -1).mean(axis=1)
