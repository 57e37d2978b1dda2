"""The Generator stage: the flow's two directions as the show uses them, at a generation size.

The flow is fully convolutional, so the bundled 32x32 model maps an image of any even size to a
latent of that size and back exactly; the generation size (W, H) is a knob traded against frame
time (bench.pick_gen_size chooses it at the show's start).

`encode` maps the user's images to their exact latents once (x -> z, deterministic: no
dequantisation noise, so the same image always gives the same point), always in float32 torch.
`decode` turns one latent into one uint8 frame every frame (z -> x): on the ONNX Runtime path by
default, or in eager torch (folded), which gives the same frames to float32 rounding; on CUDA
through torch (or ONNX Runtime's CUDA provider where that is installed). `decode_batch` decodes
several latents in one call, which offline renders want: batch > 1 is far more efficient.

A live show must never stop on one bad frame: a latent that decodes to NaN or infinity shows the
previous good frame instead and is counted in `bad_frames`.

Construction is cheap enough for the show's start and for a background thread (the engine builds
a smaller Generator while frames run late): the ONNX export and the int8 calibration are done once
per model and cached, in memory and in the cache folder (flow/fast.py), so a second size costs one
session, ~0.1-0.4 s. ONNX Runtime releases the GIL while it runs, so a background build does not
stall the frames of the first.
"""

import hashlib
import time
from collections import deque
from pathlib import Path

import numpy as np
import torch

from ..data import IMAGE_EXTENSIONS, default_cache_dir, load_image
from ..errors import UserError
from ..flow import fast

BACKENDS = ("onnx", "torch")
PRECISIONS = ("fp32", "int8")
DEVICES = ("cpu", "cuda", "auto")
DEMO_IMAGES = Path(__file__).resolve().parents[1] / "assets" / "images"
# int8 activation ranges come from latents at this size. Calibrated at 64x36 they clipped the
# larger sizes' extremes: endpoint PSNR at 256x144 fell to 33.4 dB; at 128x72, 40.9 dB (256x144
# itself: 41.7 dB for 3.4x the calibration time). Once per model: the result is cached on disk.
CALIBRATION_SIZE = (128, 72)
# threads=None: ONNX Runtime on two threads from this many pixels up, one below. Two threads gave
# 1.6-1.8x from 128x72 up on the 2-core machine while its other core was free (the lead's figures;
# the crossover below that could not be measured here: the other core was never free). With the
# other core busy two threads were 1.35-1.75x *slower* at every size from 64x36 to 256x144
# (benchmarks/flow/gen_size.py at load 5-6), so bench.pick_gen_size measures 1 and 2 threads and keeps
# the faster; this rule is only the default for a Generator built without measuring.
TWO_THREAD_PIXELS = 128 * 72
RECENT_DECODES = 120  # decode_ms is the median of this many recent decode calls (2 s at 60 fps)


def resolve_device(device):
    """'cpu' | 'cuda' | 'auto' -> 'cpu' or 'cuda'; 'auto' takes CUDA when torch can see a GPU."""
    if device not in DEVICES:
        raise ValueError(f"unknown device {device!r}; expected one of {', '.join(DEVICES)}")
    available = torch.cuda.is_available()
    if device == "auto":
        return "cuda" if available else "cpu"
    if device == "cuda" and not available:
        raise UserError(f"--device cuda: no CUDA GPU is visible to torch {torch.__version__} "
                        f"(available: cpu); use --device cpu or auto")
    return device


def default_threads(size):
    """Intra-op threads for ONNX Runtime at a generation size (W, H): 1 below TWO_THREAD_PIXELS, else 2."""
    import os

    return 1 if size[0] * size[1] < TWO_THREAD_PIXELS else min(2, os.cpu_count() or 1)


def check_size(model, size):
    """(W, H) -> (W, H) as ints, or ValueError when the flow cannot run at that size."""
    step = 2 ** (model.config.num_scales - 1)
    try:
        width, height = (int(v) for v in size)
    except (TypeError, ValueError):
        raise ValueError(f"size must be (width, height), got {size!r}") from None
    if width < step or height < step or width % step or height % step:
        raise ValueError(f"size {width}x{height}: width and height must be positive multiples of {step}")
    return width, height


def calibration_latents(model, size=CALIBRATION_SIZE):
    """Latents like the show's: the bundled demo images encoded at `size`, and their midpoints."""
    files = sorted(p for p in DEMO_IMAGES.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS)
    if not files:
        raise UserError(f"no demo images in {DEMO_IMAGES} to calibrate int8 decode on; use --precision fp32")
    images = np.stack([load_image(p, size) for p in files])
    with torch.no_grad():
        z = model(torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255.0)[0].numpy()
    return np.concatenate([z, 0.5 * (z + np.roll(z, 1, axis=0))])


def _calibration_key():
    """Names the calibration set (the demo files and the size) in the int8 cache's file name."""
    h = hashlib.sha256(repr(CALIBRATION_SIZE).encode())
    for p in sorted(DEMO_IMAGES.iterdir()):
        h.update(f"{p.name}:{p.stat().st_size}".encode())
    return h.hexdigest()[:12]


class Generator:
    """encode / decode at one generation size.

    model: a RealNVP (any training size; its config fixes only the channels and scales).
    size: (width, height) of the frames, even numbers; None = the model's training size.
    backend: "onnx" (fast at batch 1) or "torch" (the folded model, eager).
    threads: ONNX Runtime intra-op threads; None = 1 below TWO_THREAD_PIXELS, else 2. The torch
        backend runs on torch's own process-wide setting (torch.set_num_threads).
    precision: "fp32", or "int8" (ONNX on the CPU only; decode only, encode stays exact).
    device: "cpu", "cuda" or "auto" (cuda when torch sees a GPU).
    cache_dir: where ONNX exports are kept between runs (default: data.default_cache_dir(),
        $FLOWVJ_CACHE or ~/.cache/flowvj).
    """

    def __init__(self, model, size=None, backend="onnx", threads=None, precision="fp32", device="cpu",
                 cache_dir=None):
        if backend not in BACKENDS:
            raise ValueError(f"unknown backend {backend!r}; expected one of {', '.join(BACKENDS)}")
        if precision not in PRECISIONS:
            raise ValueError(f"unknown precision {precision!r}; expected one of {', '.join(PRECISIONS)}")
        self.model = model.eval()
        c = model.config
        self.size = check_size(model, size or (c.image_size, c.image_size))
        self.shape = (c.in_channels, self.size[1], self.size[0])
        self.device = resolve_device(device)
        self.precision = precision
        self.threads = threads or default_threads(self.size)
        if precision == "int8" and (backend != "onnx" or self.device != "cpu"):
            raise UserError("--precision int8 decodes through ONNX Runtime on the CPU only; "
                            "use --precision fp32 with this device or backend")

        if backend == "onnx" and fast.onnx_providers(self.device) is None:
            backend = "torch"  # no onnxruntime-gpu here: torch CUDA runs the same folded inverse
        self.backend = backend
        if backend == "onnx":
            cache_dir = default_cache_dir(cache_dir)
            onnx_bytes = fast.inverse_onnx(model, cache_dir)
            if precision == "int8":
                onnx_bytes = fast.cached(model, f"int8-{_calibration_key()}", lambda: fast.quantize_inverse(
                    onnx_bytes, calibration_latents(model)), cache_dir)
            self._onnx = fast.OnnxInverse(onnx_bytes, threads=self.threads, device=self.device)
        else:
            # On CUDA the convolutions run in TF32 (cuDNN's default on Ampere and later); fp16
            # is not offered: the coupling inverse's exp(-s) amplifies its rounding.
            self._fused = fast.fuse_for_inference(model).to(self.device)
        self.bad_frames = 0
        self.reset_last_frame()
        self._recent_ms = deque(maxlen=RECENT_DECODES)

    def __repr__(self):
        return (f"Generator({self.size[0]}x{self.size[1]}, {self.backend}, {self.precision}, "
                f"{self.device}, threads={self.threads})")

    @torch.no_grad()
    def encode(self, images):
        """uint8 (N, H, W, 3) images at this size -> float32 latents (N, 3, H, W), exactly.

        Always the unfolded model in float32 on the CPU, one image at a time (memory stays
        bounded at large sizes): the endpoints must be the user's images, on any machine.
        """
        images = np.asarray(images)
        want = (self.size[1], self.size[0], 3)
        if images.ndim != 4 or images.shape[1:] != want:
            raise ValueError(f"expected uint8 images (N, {want[0]}, {want[1]}, 3), got {images.shape}")
        latents = []
        for image in images:
            x = torch.from_numpy(np.array(image, dtype=np.uint8)).permute(2, 0, 1)[None].float() / 255.0
            latents.append(self.model(x)[0][0].numpy())
        return np.stack(latents)

    def decode_float_batch(self, zs):
        """Latents (N, 3, H, W) -> the flow's images (N, 3, H, W) in about [0, 1], float32."""
        z = np.ascontiguousarray(zs, dtype=np.float32).reshape(-1, *self.shape)
        if self.backend == "onnx":
            return self._onnx(z)
        with torch.no_grad():
            return self._fused.inverse(torch.from_numpy(z).to(self.device)).cpu().numpy()

    def decode_float(self, z):
        """One latent (3, H, W) -> the flow's image (3, H, W) in about [0, 1], float32."""
        return self.decode_float_batch(np.asarray(z)[None])[0]

    def _frame(self, x):
        """A float image (3, H, W) -> uint8 (H, W, 3); the previous good frame if it is not finite."""
        if not np.isfinite(x).all():
            self.bad_frames += 1
            return self._last_frame
        frame = (np.clip(x, 0.0, 1.0).transpose(1, 2, 0) * 255.0 + 0.5).astype(np.uint8)
        self._last_frame = frame
        return frame

    def reset_last_frame(self):
        """Black is what a bad first frame shows (never a picture from an earlier use)."""
        self._last_frame = np.zeros((self.size[1], self.size[0], 3), dtype=np.uint8)

    def decode(self, z):
        """One latent -> a uint8 (H, W, 3) frame; the previous frame if this one is not finite."""
        t0 = time.perf_counter()
        frame = self._frame(self.decode_float(z))
        self._recent_ms.append((time.perf_counter() - t0) * 1e3)
        return frame

    def decode_batch(self, zs):
        """Latents (N, 3, H, W) -> uint8 frames (N, H, W, 3), in order, bad frames held as in decode."""
        return np.stack([self._frame(x) for x in self.decode_float_batch(zs)])

    @property
    def decode_ms(self):
        """Median wall time of the recent `decode` calls in ms (None before the first)."""
        return float(np.median(self._recent_ms)) if self._recent_ms else None
