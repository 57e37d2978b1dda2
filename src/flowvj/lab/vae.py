"""The VAE baseline: a small convolutional VAE for 32x32x3 images, trained like the flow.

It exists to test the original claim that the flow, unlike a VAE, works on any images: a VAE's
encoder and decoder only approximately invert each other, and only near its training set.

Decoder likelihood: one discretised logistic per sub-pixel (as in PixelCNN++ without the
mixture), so its log-likelihood is of the uint8 pixels themselves and its negative ELBO in
bits/dim is directly comparable with the flow's bits/dim. The ELBO is a lower bound on the
log-likelihood, so the VAE's reported bits/dim is an upper bound on its true NLL.
"""

import math
from dataclasses import asdict, dataclass, replace

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from ..errors import UserError
from ..flow.checkpoint import ASSETS, model_from_record, read_checkpoint
from ..progress import ProgressReport
from .seeding import step_generator

FORMAT = "flowvj-vae"
DEFAULT_VAE = ASSETS / "default-vae.pt"


@dataclass(frozen=True)
class VAEConfig:
    image_size: int = 32
    channels: tuple = (32, 64, 128)  # per stride-2 stage; the last stage is image_size / 2**len
    latent_dim: int = 128

    def validate(self):
        if self.image_size % (2 ** len(self.channels)):
            raise ValueError(f"image_size {self.image_size} is not divisible by 2**{len(self.channels)}")
        if self.latent_dim < 1 or not self.channels:
            raise ValueError("latent_dim and channels must be positive")
        return self

    def to_dict(self):
        d = asdict(self)
        d["channels"] = list(self.channels)
        return d

    @classmethod
    def from_dict(cls, d):
        return cls(**{**d, "channels": tuple(d["channels"])}).validate()


PRESETS = {
    "small": VAEConfig(channels=(32, 64, 128), latent_dim=128),
    "tiny": VAEConfig(channels=(8, 16), latent_dim=16),
}


def preset_config(name, image_size=None):
    if name not in PRESETS:
        raise UserError(f"unknown VAE preset {name!r}; expected one of {', '.join(PRESETS)}")
    config = PRESETS[name]
    return (config if image_size is None else replace(config, image_size=image_size)).validate()


def discretised_logistic_log_prob(pixels, mean, log_scale):
    """log P(pixels) under one logistic per sub-pixel, binned to the 256 uint8 levels.

    pixels: long tensor of levels 0..255; mean and log_scale live on [-1, 1], where level k sits
    at 2k/255 - 1 and its bin is 2/255 wide. The end bins take the tails, so the 256
    probabilities sum to one exactly.
    """
    x = pixels.float() * (2.0 / 255.0) - 1.0
    inv_scale = torch.exp(-log_scale)
    upper = inv_scale * (x - mean + 1.0 / 255.0)
    lower = inv_scale * (x - mean - 1.0 / 255.0)
    log_cdf_upper = upper - F.softplus(upper)  # log sigmoid(upper), for level 0
    log_sf_lower = -F.softplus(lower)  # log (1 - sigmoid(lower)), for level 255
    bin_prob = torch.sigmoid(upper) - torch.sigmoid(lower)
    # When a bin's probability underflows, the density at its centre times its width stands in.
    centre = inv_scale * (x - mean)
    log_density_mid = centre - log_scale - 2.0 * F.softplus(centre) + math.log(2.0 / 255.0)
    log_mid = torch.where(bin_prob > 1e-5, torch.log(bin_prob.clamp(min=1e-12)), log_density_mid)
    return torch.where(pixels == 0, log_cdf_upper, torch.where(pixels == 255, log_sf_lower, log_mid))


class VAE(nn.Module):
    """Encoder q(z|x) = N(mu, sigma^2), prior N(0, I), decoder a discretised logistic per sub-pixel."""

    checkpoint_format = FORMAT  # flow.checkpoint.save_checkpoint writes VAEs under this name

    def __init__(self, config: VAEConfig):
        super().__init__()
        self.config = config.validate()
        self.shape = (3, config.image_size, config.image_size)
        self.dims = 3 * config.image_size ** 2
        c = config.channels
        self.bottom = config.image_size // 2 ** len(c)
        flat = c[-1] * self.bottom ** 2
        layers, prev = [nn.Conv2d(3, c[0], 3, padding=1), nn.SiLU()], c[0]
        for ch in c:
            layers += [nn.Conv2d(prev, ch, 4, stride=2, padding=1), nn.SiLU()]
            prev = ch
        self.encoder = nn.Sequential(*layers, nn.Flatten(), nn.Linear(flat, 2 * config.latent_dim))
        layers = [nn.Linear(config.latent_dim, flat), nn.SiLU(), nn.Unflatten(1, (c[-1], self.bottom, self.bottom))]
        for ch_in, ch_out in zip(c[::-1], list(c[-2::-1]) + [c[0]]):
            layers += [nn.ConvTranspose2d(ch_in, ch_out, 4, stride=2, padding=1), nn.SiLU()]
        self.decoder = nn.Sequential(*layers, nn.Conv2d(c[0], 6, 3, padding=1))

    @classmethod
    def from_preset(cls, name, image_size=None):
        return cls(preset_config(name, image_size))

    def encode(self, x):
        """Images in [0, 1] (N, 3, H, W) -> posterior mean and log-variance (N, latent_dim) each."""
        mu, log_var = self.encoder(x * 2.0 - 1.0).chunk(2, dim=1)
        return mu, log_var.clamp(-30.0, 20.0)

    def decode_params(self, z):
        """Latents -> the decoder's logistic mean and log-scale on [-1, 1], each (N, 3, H, W)."""
        mean, log_scale = self.decoder(z).chunk(2, dim=1)
        return torch.tanh(mean), log_scale.clamp(min=-7.0)

    def decode(self, z):
        """Latents -> the decoder's mean image in [0, 1]: what the VAE shows for a point."""
        return (self.decode_params(z)[0] + 1.0) / 2.0

    def forward(self, pixels, generator=None):
        """uint8-valued long (N, 3, H, W) -> per-image negative ELBO in bits/dim, and its two parts.

        One reparameterised sample z = mu + sigma * eps, eps drawn from `generator` so a resumed
        run draws what an uninterrupted one would have.
        """
        mu, log_var = self.encode(pixels.float() / 255.0)
        eps = torch.randn(mu.shape, generator=generator)
        z = mu + torch.exp(0.5 * log_var) * eps
        mean, log_scale = self.decode_params(z)
        recon_nats = -discretised_logistic_log_prob(pixels, mean, log_scale).flatten(1).sum(1)
        kl_nats = 0.5 * (mu.pow(2) + log_var.exp() - 1.0 - log_var).sum(1)
        scale = 1.0 / (self.dims * math.log(2.0))
        return (recon_nats + kl_nats) * scale, recon_nats * scale, kl_nats * scale


def to_levels(pixels_uint8):
    """uint8 NHWC -> long NCHW levels, the VAE's input."""
    return torch.from_numpy(np.ascontiguousarray(pixels_uint8)).permute(0, 3, 1, 2).long()


@torch.no_grad()
def evaluate_vae(model, images, batch_size=250, seed=0, show_progress=True):
    """Negative ELBO in bits/dim over `images` (uint8): an upper bound on the VAE's NLL."""
    model.eval()
    totals, n = {"bits_per_dim": 0.0, "recon_bits_per_dim": 0.0, "kl_bits_per_dim": 0.0}, len(images)
    report = ProgressReport("eval", n, unit="img") if show_progress else None
    for start in range(0, n, batch_size):
        batch = images[start:start + batch_size]
        parts = model(to_levels(batch), step_generator(seed, "eval", start))
        for key, value in zip(totals, parts):
            totals[key] += float(value.sum())
        if report:
            report.update(len(batch), bpd=totals["bits_per_dim"] / min(n, start + batch_size))
    if report:
        report.close()
    result = {key: value / n for key, value in totals.items()}
    result.update(images=n, bound="negative ELBO: an upper bound on the NLL")
    return result


def vae_from_record(record, path, expect_config=None):
    return model_from_record(record, path, expect_config, VAE, VAEConfig.from_dict)


def load_vae(path=None):
    """The VAE in a checkpoint, in eval mode; with no path, the one bundled with flowvj."""
    if path is None:
        if not DEFAULT_VAE.is_file():
            raise UserError(f"no bundled VAE at {DEFAULT_VAE}; train one (flowvj train --model vae) "
                            "and pass its checkpoint with --vae")
        path = DEFAULT_VAE
    return vae_from_record(read_checkpoint(path, FORMAT), path).eval()
