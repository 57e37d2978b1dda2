"""Real-NVP (Dinh, Sohl-Dickstein and Bengio, "Density estimation using Real NVP", ICLR 2017).

The whole model, top to bottom: masks, the residual s/t network, the affine coupling, the
multi-scale architecture, and the logit preprocessing. Every layer returns its log-determinant
so that `forward` gives log|det dz/dx| of the complete map x -> z.

Conventions:
- x is an image batch (N, 3, H, W) in [0, 1]; z has the same shape. The factored-out halves are
  put back where they came from (unsqueezed), so z is a plain tensor, not a list.
- In eval mode the flow is a fixed bijection: batch norm inside the s/t nets uses its running
  statistics, so encode and decode agree exactly. In train mode the batch statistics are treated
  as constants of the map, as in the paper.
"""

import math

import torch
from torch import nn
from torch.nn import functional as F
from torch.nn.utils.parametrizations import weight_norm

from .presets import FlowConfig, preset_config

LOG_256 = math.log(256.0)


# ---- masks and reshapes -------------------------------------------------------------------------


def checkerboard_mask(height, width, reverse=False):
    """b = 1 where the sum of the spatial coordinates is odd (Dinh et al.); 1 - b when reversed."""
    rows = torch.arange(height).view(-1, 1)
    cols = torch.arange(width).view(1, -1)
    odd = ((rows + cols) % 2 == 1).float()
    mask = 1.0 - odd if reverse else odd
    return mask.view(1, 1, height, width)


def channel_mask(channels, reverse=False):
    """b = 1 on the first half of the channels (kept); the second half is transformed."""
    mask = torch.zeros(channels)
    mask[: channels // 2] = 1.0
    if reverse:
        mask = 1.0 - mask
    return mask.view(1, channels, 1, 1)


def squeeze2x2(x):
    """(N, C, H, W) -> (N, 4C, H/2, W/2): each 2x2 sub-square becomes 4 channels."""
    n, c, h, w = x.shape
    x = x.view(n, c, h // 2, 2, w // 2, 2).permute(0, 1, 3, 5, 2, 4)
    return x.reshape(n, c * 4, h // 2, w // 2)


def unsqueeze2x2(x):
    """Exact inverse of squeeze2x2."""
    n, c, h, w = x.shape
    x = x.view(n, c // 4, 2, 2, h, w).permute(0, 1, 4, 2, 5, 3)
    return x.reshape(n, c // 4, h * 2, w * 2)


# ---- the s/t network ----------------------------------------------------------------------------


def wn_conv(in_channels, out_channels, kernel_size):
    """A weight-normalised convolution (Salimans & Kingma): weight = g * v / ||v||."""
    conv = nn.Conv2d(in_channels, out_channels, kernel_size, padding=kernel_size // 2)
    return weight_norm(conv)


class ResidualBlock(nn.Module):
    """Pre-activation residual block: BN, ReLU, conv3x3, BN, ReLU, conv3x3, plus the input."""

    def __init__(self, channels):
        super().__init__()
        self.in_norm = nn.BatchNorm2d(channels)
        self.in_conv = wn_conv(channels, channels, 3)
        self.mid_norm = nn.BatchNorm2d(channels)
        self.out_conv = wn_conv(channels, channels, 3)

    def forward(self, x):
        h = self.in_conv(F.relu(self.in_norm(x)))
        h = self.out_conv(F.relu(self.mid_norm(h)))
        return x + h


class ResNetST(nn.Module):
    """One residual conv net per coupling, giving both s and t from the unchanged half.

    Each block's output also feeds a 1x1 skip connection summed before the output layer, which
    shortens the gradient path to the early blocks. The output layer starts at zero, so every
    coupling, and the untrained flow as a whole, starts as the identity (after the logit step).
    """

    def __init__(self, in_channels, mid_channels, out_channels, num_blocks):
        super().__init__()
        self.in_norm = nn.BatchNorm2d(in_channels)
        self.in_conv = wn_conv(in_channels, mid_channels, 3)
        self.blocks = nn.ModuleList(ResidualBlock(mid_channels) for _ in range(num_blocks))
        self.skips = nn.ModuleList(wn_conv(mid_channels, mid_channels, 1) for _ in range(num_blocks))
        self.out_norm = nn.BatchNorm2d(mid_channels)
        self.out_conv = wn_conv(mid_channels, 2 * out_channels, 1)
        with torch.no_grad():
            self.out_conv.parametrizations.weight.original0.zero_()
            self.out_conv.bias.zero_()

    def forward(self, x):
        h = self.in_conv(self.in_norm(x))
        skip = 0.0
        for block, to_skip in zip(self.blocks, self.skips):
            h = block(h)
            skip = skip + to_skip(h)
        out = self.out_conv(F.relu(self.out_norm(skip)))
        s, t = out.chunk(2, dim=1)
        return s, t


# ---- the coupling layer -------------------------------------------------------------------------


class AffineCoupling(nn.Module):
    """y = b*x + (1-b)*(x*exp(s(b*x)) + t(b*x)), with s = scale * tanh(raw) bounded.

    Checkerboard couplings pass b*x (all channels, half the pixels zeroed) to the net; channel-
    wise couplings pass only the kept half of the channels, which is the same thing without
    the zeros. Both return log|det| = sum over transformed entries of s.
    """

    def __init__(self, channels, mid_channels, num_blocks, mask_type, reverse):
        super().__init__()
        assert mask_type in ("checkerboard", "channel")
        self.mask_type = mask_type
        self.reverse = reverse
        half = channels if mask_type == "checkerboard" else channels // 2
        self.net = ResNetST(half, mid_channels, half, num_blocks)
        self.s_scale = nn.Parameter(torch.ones(1, half, 1, 1))

    def _mask(self, x):
        return checkerboard_mask(x.shape[2], x.shape[3], self.reverse).to(x)

    def _split(self, x):
        """Channel-wise: (kept, changed) halves; b = 1 on the first half unless reversed."""
        first, second = x.chunk(2, dim=1)
        return (second, first) if self.reverse else (first, second)

    def _join(self, kept, changed):
        return torch.cat((changed, kept) if self.reverse else (kept, changed), dim=1)

    def _st(self, x_kept):
        raw_s, t = self.net(x_kept)
        return self.s_scale * torch.tanh(raw_s), t

    def forward(self, x):
        if self.mask_type == "checkerboard":
            b = self._mask(x)
            s, t = self._st(x * b)
            s, t = s * (1 - b), t * (1 - b)
            y = x * b + (1 - b) * (x * torch.exp(s) + t)
            return y, s.flatten(1).sum(1)
        kept, changed = self._split(x)
        s, t = self._st(kept)
        changed = changed * torch.exp(s) + t
        return self._join(kept, changed), s.flatten(1).sum(1)

    def inverse(self, y):
        if self.mask_type == "checkerboard":
            b = self._mask(y)
            s, t = self._st(y * b)
            s, t = s * (1 - b), t * (1 - b)
            return y * b + (1 - b) * ((y - t) * torch.exp(-s))
        kept, changed = self._split(y)
        s, t = self._st(kept)
        return self._join(kept, (changed - t) * torch.exp(-s))


# ---- the multi-scale architecture --------------------------------------------------------------


class Scale(nn.Module):
    """One scale: 3 checkerboard couplings, squeeze, 3 channel-wise couplings, factor out half,
    recurse on the other half. The last scale is 4 checkerboard couplings.

    The factored-out half is modelled as Gaussian directly (it leaves the flow here); it is put
    back beside the recursed half and unsqueezed, so the output has the input's shape.
    """

    def __init__(self, index, config, channels, mid_channels):
        super().__init__()
        self.is_last = index == config.num_scales - 1
        blocks = config.num_blocks
        n_checker = 4 if self.is_last else 3
        self.in_couplings = nn.ModuleList(
            AffineCoupling(channels, mid_channels, blocks, "checkerboard", reverse=bool(i % 2))
            for i in range(n_checker)
        )
        if not self.is_last:
            self.out_couplings = nn.ModuleList(
                AffineCoupling(4 * channels, 2 * mid_channels, blocks, "channel", reverse=bool(i % 2))
                for i in range(3)
            )
            self.next = Scale(index + 1, config, 2 * channels, 2 * mid_channels)

    def forward(self, x):
        logdet = x.new_zeros(x.shape[0])
        for coupling in self.in_couplings:
            x, ld = coupling(x)
            logdet = logdet + ld
        if self.is_last:
            return x, logdet
        x = squeeze2x2(x)
        for coupling in self.out_couplings:
            x, ld = coupling(x)
            logdet = logdet + ld
        kept, factored = x.chunk(2, dim=1)
        kept, ld = self.next(kept)
        x = unsqueeze2x2(torch.cat((kept, factored), dim=1))
        return x, logdet + ld

    def inverse(self, z):
        if not self.is_last:
            kept, factored = squeeze2x2(z).chunk(2, dim=1)
            z = torch.cat((self.next.inverse(kept), factored), dim=1)
            for coupling in reversed(self.out_couplings):
                z = coupling.inverse(z)
            z = unsqueeze2x2(z)
        for coupling in reversed(self.in_couplings):
            z = coupling.inverse(z)
        return z


def log_prob_from(z, logdet):
    """log p(x) = log N(z; 0, I) + log|det dz/dx|, per image, in nats."""
    log_pz = -0.5 * (z.pow(2) + math.log(2 * math.pi)).flatten(1).sum(1)
    return log_pz + logdet


def bits_per_dim_from(log_prob, dims):
    """Bits/dim of 8-bit data from the log-density of x dequantised into [0,1]^D.

    The discrete probability of a pixel bin is p(x) * (1/256)^D, hence the D log 256 term.
    """
    return (-log_prob + dims * LOG_256) / (dims * math.log(2))


class RealNVP(nn.Module):
    """x in [0,1]^D  <->  z ~ N(0, I), exactly invertible, with exact log-likelihood."""

    def __init__(self, config: FlowConfig):
        super().__init__()
        self.config = config.validate()
        self.scales = Scale(0, config, config.in_channels, config.mid_channels)

    @classmethod
    def from_preset(cls, name, image_size=None):
        return cls(preset_config(name, image_size))

    @property
    def dims(self):
        c = self.config
        return c.in_channels * c.image_size * c.image_size

    def _check_shape(self, x):
        """Any (N, C, H, W) with H and W divisible by the squeezes: the flow is fully convolutional
        and its masks come from the input's shape, so a model trained at 32x32 maps an image of
        any such size to a latent of that size and back, exactly."""
        if torch.jit.is_tracing():  # shapes are fixed (or symbolic) in an exported graph
            return
        c = self.config
        step = 2 ** (c.num_scales - 1)
        if (x.dim() != 4 or x.shape[1] != c.in_channels or x.shape[2] % step or x.shape[3] % step
                or x.shape[2] < step or x.shape[3] < step):
            raise ValueError(f"expected a batch of shape (N, {c.in_channels}, H, W) with H and W "
                             f"multiples of {step}, got {tuple(x.shape)}")

    def to_logit(self, x):
        """x in [0,1] -> logit(alpha + (1 - 2 alpha) x), with the log-determinant of that map."""
        a = self.config.alpha
        y = a + (1 - 2 * a) * x
        u = torch.log(y) - torch.log1p(-y)
        logdet = (math.log(1 - 2 * a) - torch.log(y) - torch.log1p(-y)).flatten(1).sum(1)
        return u, logdet

    def from_logit(self, u):
        """Exact inverse of to_logit: undoes the squeeze too, so pixels come back in [0,1]."""
        a = self.config.alpha
        return (torch.sigmoid(u) - a) / (1 - 2 * a)

    def forward(self, x):
        """x -> (z, log|det dz/dx|), the logit step included. Deterministic: no noise here."""
        self._check_shape(x)
        u, logdet = self.to_logit(x)
        z, ld = self.scales(u)
        return z, logdet + ld

    def inverse(self, z):
        """z -> x, the exact inverse of forward."""
        self._check_shape(z)
        return self.from_logit(self.scales.inverse(z))

    def log_prob(self, x):
        """Continuous log-density of x in [0,1]^D, nats per image (no dequantisation here)."""
        return log_prob_from(*self(x))

    def nll_bits_per_dim(self, x_dequantised):
        """-log p of already dequantised data in bits/dim of the 8-bit discrete model."""
        return bits_per_dim_from(self.log_prob(x_dequantised), x_dequantised[0].numel())

    def bits_per_dim(self, x, generator=None):
        """Per image bits/dim of 8-bit images x = k/255, with uniform dequantisation noise.

        Pixel k becomes (k + u) / 256, u ~ U[0, 1): the continuous density on [0,1]^D then
        lower-bounds the discrete likelihood, which is the standard figure to report.
        """
        pixels = torch.round(x * 255.0)
        noise = torch.rand(x.shape, generator=generator, dtype=x.dtype, device=x.device)
        return self.nll_bits_per_dim((pixels + noise) / 256.0)

    @torch.no_grad()
    def sample(self, n, temperature=0.7, generator=None):
        z = torch.randn(n, *self.shape, generator=generator) * temperature
        return self.inverse(z).clamp(0, 1)

    @property
    def shape(self):
        c = self.config
        return (c.in_channels, c.image_size, c.image_size)

    def weight_norm_scales(self):
        """The g of every weight-normalised conv: the paper puts an L2 penalty on these."""
        return [p for name, p in self.named_parameters() if name.endswith("weight.original0")]
