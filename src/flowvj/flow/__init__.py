"""The Real-NVP flow: plain PyTorch, knows nothing of audio or display."""

from .checkpoint import load_model, read_checkpoint, save_checkpoint
from .presets import PRESETS, FlowConfig, preset_config
from .realnvp import RealNVP
