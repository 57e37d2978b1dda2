"""`flowvj tune`: a bundled flow fine-tuned on the DJ's own images, so that the in-betweens the show
draws are shaped by their collection rather than by CIFAR-10's textures (issue 28).

It runs train.py's one loop (`run_loop`: progress, atomic checkpoints, Ctrl-C/SIGTERM, --resume,
torchrun) with two things of its own:
- `CropBatches`: each step a batch of square crops of the user's images, aspect-filled at and
  around the generation size (the scale the show draws them at), flipped at random; every few
  steps a batch of CIFAR-10 training images instead, if asked (a guard against forgetting).
- `_TuneRecipe`: the flow's loss with batch norm in eval mode. The bundled model's running
  statistics are what the show decodes with; updating them from a handful of photos (train mode)
  made every figure worse in the lead's measurement (issue 28: 2.86 -> 3.51 bits/dim).

It holds a few of the images out (seeded), and measures bits/dim before and after on the tuned
images and on the held-out ones at the show's size, and on a CIFAR-10 test sample (what it
forgot). The tuned checkpoint records the model it started from (`base`), so `flowvj compare
--flow` sets the two side by side without being told which.

The defaults were chosen by cross-validation (benchmarks/flow/tune_table.py, figures in
tune_table.json): hires tuned 100 steps on 7 of half of ../shared/data/images, judged on 3 of
them held out (before 3.428 bits/dim): lr 1e-4 without CIFAR (the lead's) -0.022 held out, +0.044
CIFAR; lr 3e-4 +0.034, +0.107 (it learns the tuned images faster and the collection worse);
aspect-fill scale 1 only (no 1.5, 2) +0.002, +0.058; batch norm in train mode +1.312, +1.650
(the lead's finding held); a CIFAR-10 batch every 4th step -0.050 held
out, -0.004 CIFAR: the best on both, so it is the default wherever CIFAR-10 is at hand (--cifar
or the downloaded archive; without it tune runs on the user's crops alone).

Measured on the other half, never seen while choosing (7 tuned, 3 held out, 192x108): hires,
450 steps (252 CPU-seconds: 4.2 minutes of one core) took the tuned images from 4.408 to 3.755
bits/dim, the held-out ones from 4.347 to 4.184, CIFAR-10 from 3.922 to 3.955.

Default starting model: `hires` (DEFAULT_START), because it is the model a CPU show draws with
(flow.checkpoint.default_model): lite costs ~6.6x hires's CPU time a step here and a CPU show can
draw it at only 32x18. By bits/dim lite is the better start (held out: bundled lite 3.579 against
hires 4.347, and tuned for 26 steps, 3.537); pass --model lite to tune the model a GPU show uses.
"""

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..atomic import atomic_path
from ..data import default_cache_dir, list_image_files, load_dataset, load_image
from ..errors import UserError
from ..flow import load_model, read_checkpoint, save_checkpoint
from ..flow.checkpoint import BUNDLED_MODELS, resolve_checkpoint
from ..images import check_image_specs
from .seeding import step_generator
from .train import Distributed, TrainOptions, _Recipe, evaluate, run_loop

DEFAULT_START = "hires"
DEFAULT_SIZE = (192, 108)  # the generation size a CPU show draws hires at
MIN_TUNED = 4  # fewer images than this teach the flow the images, not the collection
CIFAR_SAMPLE = 500  # CIFAR-10 test images the forgetting is measured on


@dataclass
class TuneOptions:
    images: list
    out: str  # the tuned model (.pt); its run folder (checkpoints, logs, report) is OUT with .tune
    model: str = None  # bundled name or checkpoint path; default DEFAULT_START
    minutes: float = 4.0
    max_steps: int = None
    resume: bool = False
    size: tuple = DEFAULT_SIZE  # (width, height) the show draws at: the scale of the crops and the figures
    holdout: int = None  # default: a quarter of the images, 2 to 8
    seed: int = 0
    lr: float = 1e-4
    batch_size: int = 16
    crop: int = 64  # crop side in px (clipped to the smallest image at the smallest scale)
    scales: tuple = (1.0, 1.5, 2.0)  # the images are aspect-filled at size x each scale
    batch_norm: str = "eval"  # or "train" (batch statistics, running ones updated)
    cifar: str = None  # CIFAR-10 folder or archive: the forgetting sample (and cifar_every's batches)
    cifar_every: int = 4  # every Nth step a CIFAR-10 training batch, when there is CIFAR (0: never)
    warmup_steps: int = 10
    steps_per_epoch: int = 25  # the held-out figure is logged this often (history.jsonl)
    checkpoint_minutes: float = 1.0
    threads: int = None


def default_holdout(n_images):
    """A quarter of the images, at least 2 (one held-out image says little) and at most 8."""
    return max(2, min(8, n_images // 4))


def image_files(specs):
    """The image files the specs name (folders searched as flowvj's image sets are), sorted, once each."""
    files = []
    for spec in check_image_specs(specs):
        if spec.is_dir():
            files.extend(spec / rel for rel, _, _ in list_image_files(spec.resolve()))
        else:
            files.append(spec)
    return sorted(dict.fromkeys(Path(f).resolve() for f in files))


def split_files(files, holdout, seed):
    """(tuned, held out): `holdout` files drawn by a permutation seeded by `seed`, in sorted order."""
    order = torch.randperm(len(files), generator=step_generator(seed, "holdout")).tolist()
    held = sorted(order[:holdout])
    return [f for i, f in enumerate(files) if i not in held], [files[i] for i in held]


def check_set_size(n_images, holdout):
    if holdout < 0:
        raise UserError(f"--holdout {holdout}: expected a number of images, 0 or more")
    if n_images - holdout < MIN_TUNED:
        raise UserError(f"--images: {n_images} images are too few to tune on; tune needs at least "
                        f"{MIN_TUNED + holdout} ({MIN_TUNED} to learn from, {holdout} held out to check it)")


def scaled_size(size, scale):
    return max(1, round(size[0] * scale)), max(1, round(size[1] * scale))


class CropBatches:
    """Batches for the loop: `batch_size` square crops, each of a random image at a random scale,
    at a random place, flipped left-right half the time; every `cifar_every`th step (when given
    CIFAR-10 images) a batch of those instead. A pure function of (seed, step, rank), as the loop
    needs for an exact --resume."""

    def __init__(self, pyramids, crop, batch_size, name, steps_per_epoch, ddp, cifar=None, cifar_every=0):
        self.pyramids, self.crop, self.batch_size, self.name = pyramids, crop, batch_size, name
        self.steps_per_epoch, self.ddp = steps_per_epoch, ddp
        self.cifar, self.cifar_every = cifar, cifar_every if cifar is not None else 0

    def batch(self, seed, epoch, index, step):
        g = step_generator(seed, "crops", step, self.ddp.rank)
        if self.cifar_every and step % self.cifar_every == self.cifar_every - 1:
            return self.cifar[torch.randint(len(self.cifar), (self.batch_size,), generator=g).numpy()]
        c = self.crop
        out = np.empty((self.batch_size, c, c, 3), dtype=np.uint8)
        for j in range(self.batch_size):
            image, scale, flip = (int(v) for v in torch.randint(1 << 30, (3,), generator=g))
            levels = self.pyramids[image % len(self.pyramids)]
            level = levels[scale % len(levels)]
            top, left = (int(v) for v in torch.randint(1 << 30, (2,), generator=g))
            top, left = top % (level.shape[0] - c + 1), left % (level.shape[1] - c + 1)
            patch = level[top:top + c, left:left + c]
            out[j] = patch[:, ::-1] if flip % 2 else patch
        return out


class _TuneRecipe(_Recipe):
    """The flow's recipe, with batch norm held in eval mode (see the module docstring) and no
    sample grids (32x32 samples say nothing of the show; `flowvj compare --flow` judges it)."""

    def __init__(self, batch_norm):
        if batch_norm not in ("eval", "train"):
            raise UserError(f"batch norm mode {batch_norm!r}; expected eval or train")
        super().__init__("flow")
        self.batch_norm = batch_norm

    def train_mode(self, net):
        net.train()
        if self.batch_norm == "eval":
            for module in net.modules():
                if isinstance(module, nn.modules.batchnorm._BatchNorm):
                    module.eval()

    def save_samples(self, model, path, seed):
        pass


def _load_at(files, size):
    return np.stack([load_image(path, size) for path in files])


def _cifar_path(cifar):
    """The CIFAR-10 the forgetting is measured on: --cifar, else a downloaded archive in the cache."""
    if cifar is not None:
        return cifar
    archive = default_cache_dir() / "cifar-10-python.tar.gz"
    return str(archive) if archive.is_file() else None


def measure(model, sets):
    """{name: bits/dim} of the model on each uint8 image array (None where a set is None)."""
    return {name: None if images is None else evaluate(model, images, show_progress=False)["bits_per_dim"]
            for name, images in sets.items()}


def run_folder(out):
    return Path(out).with_suffix(".tune")


def tune(opts: TuneOptions):
    """Fine-tune, write opts.out and a report; returns the report (a JSON-ready dict)."""
    if opts.threads:
        torch.set_num_threads(opts.threads)
    start = opts.model or DEFAULT_START
    start_path = resolve_checkpoint(start)
    model = load_model(start_path)
    preset = read_checkpoint(start_path).get("preset")
    step = 2 ** (model.config.num_scales - 1)
    width, height = opts.size
    if width % step or height % step:
        raise UserError(f"--size {width}x{height}: the {start} model needs sides divisible by {step}")
    folder = run_folder(opts.out)
    split = _split(opts, folder)
    tuned_files, held_files = [Path(f) for f in split["tuned"]], [Path(f) for f in split["held_out"]]

    smallest = min(min(scaled_size(opts.size, s)) for s in opts.scales)
    crop = min(opts.crop, smallest) // step * step
    if crop < step:
        raise UserError(f"--size {width}x{height}: too small for crops the model takes")
    pyramids = [[load_image(path, scaled_size(opts.size, s)) for s in opts.scales] for path in tuned_files]
    sets = {"tuned": _load_at(tuned_files, opts.size),
            "held_out": _load_at(held_files, opts.size) if held_files else None, "cifar10": None}
    cifar_path, cifar_train = _cifar_path(opts.cifar), None
    if cifar_path is not None:
        sets["cifar10"] = load_dataset(cifar_path, "test", 32).images[:CIFAR_SAMPLE]
        if opts.cifar_every:
            cifar_train = load_dataset(cifar_path, "train", 32).images

    ddp = Distributed()
    before = measure(model, sets) if ddp.is_main else None
    batches = CropBatches(pyramids, crop, opts.batch_size, f"tune:{Path(opts.out).stem}",
                          opts.steps_per_epoch, ddp, cifar_train, opts.cifar_every)
    train_opts = TrainOptions(data=None, out=str(folder), lr=opts.lr, batch_size=opts.batch_size,
                              warmup_steps=opts.warmup_steps, epochs=10 ** 6, max_minutes=opts.minutes,
                              max_steps=opts.max_steps, checkpoint_minutes=opts.checkpoint_minutes,
                              resume=opts.resume, seed=opts.seed)
    model, state = run_loop(train_opts, _TuneRecipe(opts.batch_norm), model, batches, sets["held_out"],
                            preset, ddp)
    if not ddp.is_main:
        return None
    model.eval()
    after = measure(model, sets)
    save_checkpoint(opts.out, model, preset=preset, dataset=batches.name, epoch=state["epoch"],
                    step=state["step"], test_bits_per_dim=after["held_out"])
    record_base(opts.out, start)
    report = {"model": str(start), "out": str(opts.out), "size": f"{width}x{height}", "crop": crop,
              "steps": state["step"], "wall_s": state["wall_s"], "cpu_s": state["cpu_s"],
              "images": {"tuned": len(tuned_files), "held_out": len(held_files),
                         "cifar10": None if sets["cifar10"] is None else len(sets["cifar10"])},
              "before": before, "after": after,
              "options": {k: v for k, v in asdict(opts).items() if k not in ("images", "out")}}
    with atomic_path(folder / "report.json") as tmp:
        tmp.write_text(json.dumps(report, indent=1, default=str))
    return report


def base_name(start):
    """What a tuned model records it started from: a bundled model by its name (portable between
    installs), a checkpoint by its absolute path."""
    return str(start) if str(start) in BUNDLED_MODELS else str(Path(start).resolve())


def record_base(path, start):
    """Add `base` (base_name(start)) to the checkpoint at `path`, so `flowvj compare --flow` can set
    the tuned model beside the one it started from without being told which."""
    record = torch.load(path, map_location="cpu", weights_only=True)
    record["base"] = base_name(start)
    with atomic_path(path) as tmp:
        torch.save(record, tmp)


def _split(opts, folder):
    """The tuned and held-out files: drawn now, or on --resume the run's own (split.json)."""
    split_path = folder / "split.json"
    if opts.resume and split_path.exists():
        split = json.loads(split_path.read_text())
        missing = [f for f in split["tuned"] + split["held_out"] if not Path(f).is_file()]
        if missing:
            raise UserError(f"--resume: {missing[0]} of the run in {folder} is gone; tune it afresh with "
                            "another --out")
        return split
    if Path(opts.out).exists() or (folder / "ckpt.pt").exists():
        raise UserError(f"--out {opts.out} exists (or its run {folder}); pass --resume to continue it "
                        "or choose another --out")
    files = image_files(opts.images)
    holdout = default_holdout(len(files)) if opts.holdout is None else opts.holdout
    check_set_size(len(files), holdout)
    tuned, held = split_files(files, holdout, opts.seed)
    split = {"tuned": [str(f) for f in tuned], "held_out": [str(f) for f in held]}
    folder.mkdir(parents=True, exist_ok=True)
    with atomic_path(split_path) as tmp:
        tmp.write_text(json.dumps(split, indent=1))
    return split


def format_report(report):
    """The before/after table `flowvj tune` prints."""
    lines = [f"tuned {report['model']} for {report['steps']} steps ({report['wall_s'] / 60:.1f} min) "
             f"-> {report['out']}", f"bits/dim at {report['size']}    before   after   change"]
    labels = {"tuned": "tuned images", "held_out": "held-out images", "cifar10": "CIFAR-10 32x32"}
    for name, label in labels.items():
        b, a = report["before"][name], report["after"][name]
        count = report["images"][name]
        if b is None:
            why = "none held out" if name == "held_out" else "no CIFAR-10 (pass --cifar)"
            lines.append(f"  {label:<22}  not measured: {why}")
        else:
            lines.append(f"  {label + f' ({count})':<22} {b:7.3f} {a:7.3f} {a - b:+7.3f}")
    return "\n".join(lines)
