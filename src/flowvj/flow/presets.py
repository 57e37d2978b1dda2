"""Named model sizes. `full` is the paper's CIFAR-10 model; `lite` is sized by
benchmarks/flow/flow_speed.py to decode >= 60 frames/s at batch 1 on one CPU core through ONNX Runtime
(fast.OnnxInverse; eager torch is overhead-bound at batch 1 and reaches ~40-75); `tiny` is for tests.

`hires` is built for large frames: a third scale, so most of the work happens at a quarter and an
eighth of the frame's resolution, a quarter of lite's channels at full resolution (8, doubling per
squeeze) and one residual block per s/t net: 0.047 MFLOP per output pixel against lite's 0.80
(count in bench.conv_gflop), at the price of frame sides divisible by 4. Sized on this project's
2-core AMD EPYC VM (AVX2, ~35 GFLOP/s a core), where lite decodes 128x72 in ~130 ms on two
threads: of the candidates measured (8/12/16 channels, 1-2 blocks, 3-4 scales) it is the one whose
128x72 decode (~17 ms, two threads) fits 60 % of a 30 fps frame; 8 channels with 2 blocks took 29 ms
and 16 with 2 (the first hires) 100 ms. Trained on CIFAR-10 like lite (`make train-hires`) and
compared with lite on bits/dim and in-between quality in src/flowvj/assets/hires-model.md."""

from dataclasses import asdict, dataclass, replace


@dataclass(frozen=True)
class FlowConfig:
    """Everything that fixes the shape of a RealNVP; stored in every checkpoint."""

    image_size: int = 32
    in_channels: int = 3
    mid_channels: int = 64  # feature maps of the s/t nets at the first scale; doubled per squeeze
    num_blocks: int = 8  # residual blocks per s/t net
    num_scales: int = 2
    alpha: float = 0.05  # logit squeeze: y = alpha + (1 - 2 alpha) x keeps logit finite

    def validate(self):
        smallest = 2 ** self.num_scales
        s = self.image_size
        if s < smallest or s & (s - 1):
            raise ValueError(
                f"image_size must be a power of two >= {smallest} for {self.num_scales} scales, got {s}"
            )
        for name in ("in_channels", "mid_channels", "num_blocks", "num_scales"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if not 0.0 < self.alpha < 0.5:
            raise ValueError(f"alpha must lie in (0, 0.5), got {self.alpha}")
        return self

    def to_dict(self):
        return asdict(self)

PRESETS = {
    "full": FlowConfig(mid_channels=64, num_blocks=8, num_scales=2),
    "lite": FlowConfig(mid_channels=32, num_blocks=2, num_scales=2),
    "tiny": FlowConfig(mid_channels=8, num_blocks=1, num_scales=2),
    "hires": FlowConfig(mid_channels=8, num_blocks=1, num_scales=3),
    # Candidates to replace hires at its cost a pixel (issue 27; benchmarks/flow/hires_candidates.py):
    # the third scale's share of the work moved to the first two, as wider nets (0.045 MFLOP/px) or
    # a second residual block (0.054), since the finest scale holds half the dimensions.
    "hires-2scale": FlowConfig(mid_channels=10, num_blocks=1, num_scales=2),
    "hires-2block": FlowConfig(mid_channels=8, num_blocks=2, num_scales=2),
}


def preset_config(name, image_size=None):
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; expected one of {', '.join(PRESETS)}")
    config = PRESETS[name]
    if image_size is not None:
        config = replace(config, image_size=image_size)
    return config.validate()
