"""One checkpoint file: weights, the config that shapes them, and where they came from.

Saved atomically (temporary file, fsync, rename), so a kill mid-save never replaces a good
checkpoint with a half-written one. Loading anything else, or a checkpoint of another config
than asked for, fails with one line naming the file.
"""

from pathlib import Path

import torch

from ..atomic import atomic_path
from ..errors import UserError
from .presets import FlowConfig
from .realnvp import RealNVP

FORMAT = "flowvj-realnvp"
VERSION = 1
ASSETS = Path(__file__).resolve().parent.parent / "assets"
DEFAULT_MODEL = ASSETS / "default-model.pt"
# The models that ship with flowvj, by the name --model takes: `lite` (the default; the sharpest
# in-betweens per pixel) and `hires` (the preset built for large frames, ~17x cheaper a pixel, so
# a live show on a small CPU draws 128x72 where lite draws 32x18; see assets/hires-model.md).
BUNDLED_MODELS = {"lite": DEFAULT_MODEL, "hires": ASSETS / "hires-model.pt"}


def save_checkpoint(path, model, *, preset, dataset, epoch, step, test_bits_per_dim=None,
                    optimizer=None, train_state=None):
    """Write the model (and, for resuming, optimiser and loop state) to `path` atomically.

    Any model with a `config` (to_dict) can be saved; one naming a `checkpoint_format` (the VAE)
    is saved under that format, so readers can tell the kinds apart.
    """
    record = {
        "format": getattr(model, "checkpoint_format", FORMAT),
        "version": VERSION,
        "config": model.config.to_dict(),
        "preset": preset,
        "dataset": dataset,
        "epoch": int(epoch),
        "step": int(step),
        "test_bits_per_dim": None if test_bits_per_dim is None else float(test_bits_per_dim),
        "state_dict": model.state_dict(),
        "optimizer": None if optimizer is None else optimizer.state_dict(),
        "train_state": train_state or {},
    }
    with atomic_path(path) as tmp:
        torch.save(record, tmp)


KIND_NAMES = {FORMAT: "Real-NVP", "flowvj-vae": "VAE"}


def read_checkpoint(path, expect_format=FORMAT):
    """The checkpoint's record, or a one-line UserError naming the file.

    The VAE baseline shares this file layout under its own format name, so a flow passed where a
    VAE is expected (or the reverse) is refused by name rather than failing on its weights.
    """
    path = Path(path)
    if not path.is_file():
        raise UserError(f"checkpoint {path} does not exist (expected a .pt file written by flowvj train)")
    try:
        record = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # torch raises many kinds, with long multi-line texts, for a foreign file
        raise UserError(f"checkpoint {path} is unreadable: not a PyTorch checkpoint; expected a .pt "
                        "file written by flowvj train (or the bundled model)") from None
    if not isinstance(record, dict) or record.get("format") != expect_format:
        found = KIND_NAMES.get(record.get("format")) if isinstance(record, dict) else None
        held = f" (it holds a {found})" if found else ""
        raise UserError(f"checkpoint {path} is not a flowvj {KIND_NAMES[expect_format]} checkpoint{held}")
    if record.get("version") != VERSION:
        raise UserError(f"checkpoint {path} has format version {record.get('version')}, expected {VERSION}")
    return record


def model_from_record(record, path, expect_config=None, model_class=RealNVP,
                      config_from=lambda d: FlowConfig(**d).validate()):
    """Build the model a record describes; refuse a record of another config than expected.

    model_class and config_from default to the flow; the VAE baseline passes its own.
    """
    try:
        config = config_from(record["config"])
    except (TypeError, ValueError, KeyError) as e:
        raise UserError(f"checkpoint {path} holds an invalid model config: {e}") from None
    if expect_config is not None and config != expect_config:
        raise UserError(
            f"checkpoint {path} holds a model of config {config.to_dict()}, expected {expect_config.to_dict()}"
        )
    model = model_class(config)
    try:
        model.load_state_dict(record["state_dict"])
    except RuntimeError as e:
        raise UserError(f"checkpoint {path} does not match its own config: {str(e).splitlines()[0]}") from None
    return model


def resolve_checkpoint(name_or_path=None):
    """The checkpoint file --model names: a bundled model's name, a path, or None for the default."""
    if name_or_path is None:
        name_or_path = "lite"
    if str(name_or_path) in BUNDLED_MODELS:
        path = BUNDLED_MODELS[str(name_or_path)]
        if not path.is_file():
            raise UserError(f"--model {name_or_path}: the bundled model {path} is missing from this "
                            "install; pass a checkpoint path")
        return path
    return Path(name_or_path)


def load_model(path=None, expect_config=None):
    """The flow in a checkpoint, in eval mode: `path` is a file, a bundled model's name
    (BUNDLED_MODELS) or None for the bundled default."""
    path = resolve_checkpoint(path)
    model = model_from_record(read_checkpoint(path), path, expect_config)
    return model.eval()


def default_model(device):
    """The bundled model a show or render uses without --model: `hires` on a CPU, where lite's cost a
    pixel caps the frame at 32x18 on a 2-core VM at 30 fps while hires draws 128x72 (bench); `lite`
    on a CUDA GPU, which has the speed for lite's sharper in-betweens, and wherever hires is not
    bundled."""
    return "lite" if device == "cuda" or not BUNDLED_MODELS["hires"].is_file() else "hires"
