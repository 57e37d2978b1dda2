"""Named model sizes. `full` is the paper's CIFAR-10 model; `lite` is sized by
benchmarks/flow_speed.py to decode >= 60 frames/s at batch 1 on one CPU core through ONNX Runtime
(fast.OnnxInverse; eager torch is overhead-bound at batch 1 and reaches ~40-75); `tiny` is for tests.

`hires` is built for large frames: a third scale, so most of the work happens at a quarter and an
eighth of the frame's resolution, and half lite's channels at full resolution (16, doubling per
squeeze): about 0.32 MFLOP per output pixel against lite's 0.82 (count in bench.conv_gflop), at
the price of frame sides divisible by 4. Trained on CIFAR-10 in the background like lite
(`make train-hires`); compared with lite on bits/dim and in-between quality when it has trained."""

from dataclasses import replace

from .realnvp import FlowConfig

PRESETS = {
    "full": FlowConfig(mid_channels=64, num_blocks=8, num_scales=2),
    "lite": FlowConfig(mid_channels=32, num_blocks=2, num_scales=2),
    "tiny": FlowConfig(mid_channels=8, num_blocks=1, num_scales=2),
    "hires": FlowConfig(mid_channels=16, num_blocks=2, num_scales=3),
}


def preset_config(name, image_size=None):
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; expected one of {', '.join(PRESETS)}")
    config = PRESETS[name]
    if image_size is not None:
        config = replace(config, image_size=image_size)
    return config.validate()
