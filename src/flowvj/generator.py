"""The Generator stage: the flow's two directions as the show uses them.

`encode` maps the user's images to their exact latents once (x -> z, deterministic: no
dequantisation noise, so the same image always gives the same point). `decode` turns one latent
into one uint8 frame every frame (z -> x), on one thread: on the fast ONNX Runtime path by
default, or in eager torch, which gives the same frames to float32 rounding.

A live show must never stop on one bad frame: a latent that decodes to NaN or infinity shows the
previous good frame instead and is counted in `bad_frames`.
"""

import numpy as np
import torch

BACKENDS = ("onnx", "torch")


class Generator:
    def __init__(self, model, backend="onnx"):
        if backend not in BACKENDS:
            raise ValueError(f"unknown backend {backend!r}; expected one of {', '.join(BACKENDS)}")
        self.model = model.eval()
        self.shape = model.shape
        self.backend = backend
        if backend == "onnx":
            from .flow.fast import OnnxInverse

            self._onnx = OnnxInverse(model, threads=1)
        else:
            from .flow.fast import fuse_for_inference

            self._fused = fuse_for_inference(model)
        self.bad_frames = 0
        self._last_frame = np.zeros((self.shape[1], self.shape[2], 3), dtype=np.uint8)

    @torch.no_grad()
    def encode(self, images):
        """uint8 (N, H, W, 3) images at the model's size -> float32 latents (N, 3, H, W), exactly."""
        x = torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).float() / 255.0
        z, _ = self.model(x)
        return z.numpy()

    def decode_float(self, z):
        """One latent (3, H, W) -> the flow's image (3, H, W) in about [0, 1], float32."""
        z = np.asarray(z, dtype=np.float32).reshape(1, *self.shape)
        if self.backend == "onnx":
            return self._onnx(z)[0]
        with torch.no_grad():
            return self._fused.inverse(torch.from_numpy(z))[0].numpy()

    def decode(self, z):
        """One latent -> a uint8 (H, W, 3) frame; the previous frame if this one is not finite."""
        x = self.decode_float(z)
        if not np.isfinite(x).all():
            self.bad_frames += 1
            return self._last_frame
        frame = (np.clip(x, 0.0, 1.0).transpose(1, 2, 0) * 255.0 + 0.5).astype(np.uint8)
        self._last_frame = frame
        return frame
