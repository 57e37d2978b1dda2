"""Training and evaluation of the flow (and its VAE baseline): one loop in plain sight, single
process or torchrun DDP. The model and its loss are the only difference between the two
(`_Recipe`); progress, checkpoints, resume, logs and DDP are shared. `flowvj tune` (tune.py) runs
the same loop (`run_loop`) from a bundled model on crops of the user's images: what it brings is
its own recipe and batches (`EpochBatches` here is train's), nothing else.

Reproducibility is by construction rather than by saving generator states: the data order of
epoch e is a permutation seeded by (seed, e) and the dequantisation noise (or the VAE's
reparameterisation noise) of step k by (seed, k, rank). A resumed run therefore draws exactly what an uninterrupted run would have,
given the same model and optimiser state, which the checkpoint holds.
"""

import gc
import json
import math
import os
import signal
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

from ..atomic import atomic_path
from ..data import has_test_split, load_dataset, load_image_folder
from ..errors import UserError
from ..flow import RealNVP, load_model, preset_config, read_checkpoint, save_checkpoint
from ..flow.checkpoint import model_from_record
from ..flow.realnvp import bits_per_dim_from, log_prob_from
from ..images import resize_images
from ..progress import ProgressReport, format_duration
from . import vae as vae_module
from .seeding import step_generator

MODELS = ("flow", "vae")
DEFAULT_PRESETS = {"flow": "lite", "vae": "small"}


@dataclass
class TrainOptions:
    data: str
    out: str
    test_data: str = None
    preset: str = None  # default: lite for the flow, small for the VAE
    model: str = "flow"  # or "vae", the baseline
    image_size: int = 32
    batch_size: int = 64  # per process
    lr: float = 1e-3
    warmup_steps: int = 200
    max_grad_norm: float = 100.0
    weight_norm_l2: float = 5e-5  # the paper's L2 on the weight-norm scales
    epochs: int = 100
    max_minutes: float = None
    max_steps: int = None
    checkpoint_minutes: float = 10.0
    checkpoint_steps: int = None
    test_limit: int = None
    resume: bool = False
    seed: int = 0
    threads: int = None
    cache_dir: str = None
    download: bool = False


def dequantise(pixels_uint8, generator):
    """uint8 NHWC -> float NCHW in [0,1): (k + u) / 256 with u ~ U[0,1)."""
    x = torch.from_numpy(pixels_uint8).permute(0, 3, 1, 2).float()
    return (x + torch.rand(x.shape, generator=generator)) / 256.0


def to_unit(pixels_uint8):
    """uint8 NHWC -> float NCHW k/255 in [0,1], the model's image convention."""
    return torch.from_numpy(pixels_uint8).permute(0, 3, 1, 2).float() / 255.0


class _Recipe:
    """What differs between training the flow and the VAE: the model, its loss and its evaluation."""

    def __init__(self, kind):
        if kind not in MODELS:
            raise UserError(f"unknown --model {kind!r}; expected one of {', '.join(MODELS)}")
        self.kind = kind

    def config(self, preset, image_size):
        if self.kind == "vae":
            return vae_module.preset_config(preset, image_size)
        try:
            return preset_config(preset, image_size)
        except ValueError as e:
            raise UserError(str(e)) from None

    def build(self, config):
        return vae_module.VAE(config) if self.kind == "vae" else RealNVP(config)

    def read(self, path):
        return read_checkpoint(path, vae_module.FORMAT) if self.kind == "vae" else read_checkpoint(path)

    def from_record(self, record, path, config):
        if self.kind == "vae":
            return vae_module.vae_from_record(record, path, config)
        return model_from_record(record, path, expect_config=config)

    def loss(self, net, model, batch, generator, opts):
        """(loss to minimise, mean bits/dim) of one uint8 batch; `net` may be the DDP wrapper."""
        if self.kind == "vae":
            bpd = net(vae_module.to_levels(batch), generator)[0].mean()
            return bpd, bpd
        x = dequantise(batch, generator)
        bpd = bits_per_dim_from(log_prob_from(*net(x)), x[0].numel()).mean()
        penalty = sum(g.pow(2).sum() for g in model.weight_norm_scales())
        return bpd + opts.weight_norm_l2 * penalty, bpd

    def evaluate(self, model, images):
        if self.kind == "vae":
            return vae_module.evaluate_vae(model, images, show_progress=False)
        return evaluate(model, images, show_progress=False)

    def save_samples(self, model, path, seed):
        save_sample_grid(model, path, seed=seed, temperature=1.0 if self.kind == "vae" else 0.7)

    def train_mode(self, net):
        """Put the model in the mode its steps run in: train mode (batch statistics) here."""
        net.train()


def load_checkpoint_model(path=None):
    """(kind, model in eval mode) of a flow or VAE checkpoint; no path means the bundled flow."""
    if path is not None:
        try:
            record = read_checkpoint(path, vae_module.FORMAT)
        except UserError:
            record = None
        if record is not None:
            return "vae", vae_module.vae_from_record(record, path).eval()

    return "flow", load_model(path)


@torch.no_grad()
def evaluate(model, images, batch_size=250, seed=0, show_progress=True):
    """Test bits/dim, mean NLL in nats, and the worst x -> z -> x error over `images` (uint8,
    any size the flow takes: the flow is fully convolutional, bits/dim count the images' pixels)."""
    model.eval()
    total_bits, total_nats, worst, n = 0.0, 0.0, 0.0, len(images)
    dims = int(np.prod(images.shape[1:]))
    report = ProgressReport("eval", n, unit="img") if show_progress else None
    for start in range(0, n, batch_size):
        batch = images[start:start + batch_size]
        x = dequantise(batch, step_generator(seed, "eval", start))
        log_p = model.log_prob(x)
        total_nats += float((-log_p + dims * math.log(256)).sum())
        total_bits += float(bits_per_dim_from(log_p, dims).sum())
        exact = to_unit(batch)
        z, _ = model(exact)
        worst = max(worst, float((model.inverse(z) - exact).abs().max()))
        if report:
            report.update(len(batch), bpd=total_bits / min(n, start + batch_size))
    if report:
        report.close()
    return {"bits_per_dim": total_bits / n, "nll_nats": total_nats / n, "images": n,
            "max_reconstruction_error": worst}


def images_at_size(spec, size, model, cache_dir=None, download=False):
    """The test images `flowvj eval --size` measures a flow on: uint8 (N, H, W, 3), each aspect-filled
    to `size` = (width, height), so a tuned model is judged at the show's size. `spec` as
    load_dataset takes it (a folder, its test/ split when it has one; an archive at 32 px, scaled)."""
    step = 2 ** (model.config.num_scales - 1)
    if not isinstance(model, RealNVP):
        raise UserError("--size is for a flow; a VAE is evaluated at its own size")
    if size[0] % step or size[1] % step:
        raise UserError(f"--size {size[0]}x{size[1]}: this model needs sides divisible by {step}")
    path = Path(spec).expanduser()
    if path.is_dir():
        if has_test_split(spec):
            path = path / "test"
        return load_image_folder(path, size=tuple(size), cache_dir=cache_dir).images
    return resize_images(load_dataset(spec, "test", 32, cache_dir, download).images, tuple(size))


def save_sample_grid(model, path, n=64, temperature=0.7, seed=0):
    """An 8x8 grid of samples at the given temperature, written atomically as PNG."""
    from PIL import Image

    model.eval()
    if isinstance(model, vae_module.VAE):  # the decoder's mean image of prior samples
        z = torch.randn(n, model.config.latent_dim, generator=step_generator(seed, "samples")) * temperature
        with torch.no_grad():
            x = model.decode(z)
    else:
        x = model.sample(n, temperature, generator=step_generator(seed, "samples"))
    side = int(math.ceil(math.sqrt(n)))
    c, h, w = model.shape
    grid = torch.zeros(c, side * h, side * w)
    for i, img in enumerate(x):
        r, col = divmod(i, side)
        grid[:, r * h:(r + 1) * h, col * w:(col + 1) * w] = img
    pixels = (grid.permute(1, 2, 0).numpy() * 255 + 0.5).astype(np.uint8)
    with atomic_path(path) as tmp:
        Image.fromarray(pixels).save(tmp, format="PNG")


class Distributed:
    """Rank, world size and the few collective calls the loop needs; trivial without torchrun."""

    def __init__(self):
        self.world = int(os.environ.get("WORLD_SIZE", "1"))
        self.rank = int(os.environ.get("RANK", "0"))
        if self.world > 1 and not dist.is_initialized():
            dist.init_process_group("gloo")

    @property
    def is_main(self):
        return self.rank == 0

    def agree(self, *flags):
        """Every rank acts on a flag if any rank raised it (time and signals differ per rank)."""
        if self.world == 1:
            return flags
        t = torch.tensor([float(f) for f in flags])
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
        return tuple(bool(v) for v in t.tolist())

    def barrier(self):
        if self.world > 1:
            dist.barrier()

    def close(self, finished):
        """Tear the group down together, and for good, before Python shuts down.

        A gloo worker thread drops its last finished work (holding tensors with Python objects)
        a moment after the collective returns; if the group is still alive when the interpreter
        finalises, that thread needs the GIL, is killed, and the rank aborts (std::terminate; a
        core showed ~AsyncBarrierWork in ProcessGroupGloo::runLoop). The caller frees the DDP
        wrapper first, whose reducer holds the group, so that destroying it here joins the
        threads. Under torchrun with the other core busy: 7 aborts in 180 runs with the barrier
        alone, 0 in 100 with the wrapper freed as well. After an error a barrier could hang, so
        only a run that finished waits for the others."""
        if self.world > 1 and dist.is_initialized():
            if finished:
                dist.barrier()
            dist.destroy_process_group()


def _truncate_log(path, last_step):
    """Drop log lines past the checkpoint: a resumed run redoes those steps."""
    if not path.exists():
        return
    keep = []
    for line in path.read_text().splitlines():
        try:
            if json.loads(line)["step"] <= last_step:
                keep.append(line)
        except (ValueError, KeyError, TypeError):
            pass  # a line torn by a crash: the resumed run rewrites that step anyway
    with atomic_path(path) as tmp:
        tmp.write_text("".join(line + "\n" for line in keep))


class EpochBatches:
    """train's batches: epoch e visits the images in a permutation seeded by (seed, e), each rank
    its own share of it, `batch_size` at a time."""

    def __init__(self, image_set, batch_size, ddp):
        self.images, self.name, self.batch_size, self.ddp = image_set.images, image_set.name, batch_size, ddp
        self.n_per_rank = len(self.images) // ddp.world
        self.steps_per_epoch = self.n_per_rank // batch_size
        self._epoch, self._mine = None, None

    def batch(self, seed, epoch, index, step):
        if epoch != self._epoch:
            order = torch.randperm(len(self.images), generator=step_generator(seed, "epoch", epoch)).numpy()
            self._epoch, self._mine = epoch, order[self.ddp.rank::self.ddp.world][:self.n_per_rank]
        return self.images[self._mine[index * self.batch_size:(index + 1) * self.batch_size]]


def train(opts: TrainOptions):
    if opts.threads:
        torch.set_num_threads(opts.threads)
    ddp = Distributed()
    recipe = _Recipe(opts.model)
    preset = opts.preset or DEFAULT_PRESETS[opts.model]
    config = recipe.config(preset, opts.image_size)

    # Rank 0 decodes and caches the data first; the others then read the cache.
    if not ddp.is_main:
        ddp.barrier()
    train_set = load_dataset(opts.data, "train", opts.image_size, opts.cache_dir, opts.download)
    test_set = load_dataset(opts.test_data or opts.data, "test", opts.image_size, opts.cache_dir,
                            opts.download) if (opts.test_data or has_test_split(opts.data)) else None
    if ddp.is_main:
        ddp.barrier()
    test_images = None if test_set is None else test_set.images[: opts.test_limit]

    torch.manual_seed(opts.seed)  # the same initial weights on every rank
    model = recipe.build(config)
    batches = EpochBatches(train_set, opts.batch_size, ddp)
    if batches.steps_per_epoch == 0:
        raise UserError(f"--data {opts.data} has {len(train_set.images)} images, fewer than one batch of "
                        f"{opts.batch_size} per process")
    return run_loop(opts, recipe, model, batches, test_images, preset, ddp)


def run_loop(opts, recipe, model, batches, test_images, preset, ddp):
    """The one training loop (train and tune): `opts` a TrainOptions (out, lr, warmup, clipping,
    epochs, limits, checkpoints, resume, seed); `recipe` the model's loss, evaluation and step mode;
    `model` the starting weights (replaced by ckpt.pt's on --resume); `batches` what each step
    learns from (`steps_per_epoch`, `name`, `batch(seed, epoch, index, step)`, a pure function of
    its arguments, so a resumed run draws what an uninterrupted one would); `test_images`
    evaluated at each epoch's end (None: no test figure). Returns (model, state)."""
    out = Path(opts.out)
    ckpt_path = out / "ckpt.pt"
    optimizer = torch.optim.Adam(model.parameters(), lr=opts.lr)
    state = {"epoch": 0, "step": 0, "cpu_s": 0.0, "wall_s": 0.0, "seed": opts.seed}
    test_bpd = None
    if opts.resume and ckpt_path.exists():
        record = recipe.read(ckpt_path)
        model = recipe.from_record(record, ckpt_path, model.config)
        optimizer = torch.optim.Adam(model.parameters(), lr=opts.lr)
        optimizer.load_state_dict(record["optimizer"])
        state.update(record["train_state"])
        test_bpd = record["test_bits_per_dim"]
        if ddp.is_main:
            print(f"resuming from {ckpt_path}: epoch {state['epoch']}, step {state['step']}", flush=True)
    elif ckpt_path.exists():
        raise UserError(f"{ckpt_path} exists; pass --resume to continue it or choose another --out")
    seed = state["seed"]
    net = DistributedDataParallel(model) if ddp.world > 1 else model
    steps_per_epoch = batches.steps_per_epoch
    log_path = out / "metrics.jsonl"
    history_path = out / "history.jsonl"
    if ddp.is_main:
        out.mkdir(parents=True, exist_ok=True)
        _truncate_log(log_path, state["step"])
        _truncate_log(history_path, state["step"])

    stop_requested = []
    previous_handlers = {}
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGINT, signal.SIGTERM):  # finish the step, checkpoint, then stop
            previous_handlers[sig] = signal.signal(sig, lambda *_: stop_requested.append(True))

    def checkpoint():
        if ddp.is_main:
            save_checkpoint(ckpt_path, model, preset=preset, dataset=batches.name,
                            epoch=state["epoch"], step=state["step"], test_bits_per_dim=test_bpd,
                            optimizer=optimizer, train_state=dict(state))

    t_start, cpu_start = time.monotonic(), time.process_time()
    base_wall, base_cpu = state["wall_s"], state["cpu_s"]
    last_ckpt = time.monotonic()
    stop = opts.max_steps is not None and state["step"] >= opts.max_steps
    total_steps = opts.epochs * steps_per_epoch
    if opts.max_steps is not None:
        total_steps = min(total_steps, opts.max_steps)
    report = ProgressReport("train", total_steps, unit="step", start=state["step"]) if ddp.is_main else None
    log_file = open(log_path, "a", buffering=1) if ddp.is_main else None  # line-buffered: tail -f works
    finished = False
    try:
        while state["epoch"] < opts.epochs and not stop:
            epoch = state["epoch"]
            recipe.train_mode(net)
            for i in range(state["step"] - epoch * steps_per_epoch, steps_per_epoch):
                step = state["step"]
                lr = opts.lr * min(1.0, (step + 1) / max(1, opts.warmup_steps))
                for group in optimizer.param_groups:
                    group["lr"] = lr
                batch = batches.batch(seed, epoch, i, step)
                loss, bpd = recipe.loss(net, model, batch, step_generator(seed, "noise", step, ddp.rank), opts)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), opts.max_grad_norm)
                optimizer.step()
                state["step"] = step + 1
                state["wall_s"] = base_wall + time.monotonic() - t_start
                state["cpu_s"] = base_cpu + time.process_time() - cpu_start
                if ddp.is_main:
                    log_file.write(json.dumps({"step": step + 1, "epoch": epoch, "bpd": bpd.item(),
                                               "loss": loss.item(), "grad_norm": grad_norm.item()}) + "\n")
                    img_s = report.rate * opts.batch_size * ddp.world
                    report.update(1, epoch=epoch, loss=loss.item(), bpd=bpd.item(), img_s=img_s)
                out_of_time = opts.max_minutes is not None and state["wall_s"] - base_wall >= opts.max_minutes * 60
                at_max = opts.max_steps is not None and state["step"] >= opts.max_steps
                due = (opts.checkpoint_steps and state["step"] % opts.checkpoint_steps == 0) or \
                      time.monotonic() - last_ckpt >= opts.checkpoint_minutes * 60
                save, stop = ddp.agree(due, out_of_time or at_max or bool(stop_requested))
                if save or stop:
                    log_file and log_file.flush()
                    checkpoint()
                    last_ckpt = time.monotonic()
                if stop:
                    break
            else:
                state["epoch"] = epoch + 1
                if test_images is not None and ddp.is_main:
                    test_bpd = recipe.evaluate(model, test_images)["bits_per_dim"]
                if ddp.is_main:
                    log_file.flush()
                    recipe.save_samples(model, out / f"samples-epoch{epoch + 1:03d}.png", seed)
                    entry = {"epoch": epoch + 1, "step": state["step"], "cpu_hours": state["cpu_s"] / 3600,
                             "wall_hours": state["wall_s"] / 3600, "test_bits_per_dim": test_bpd,
                             "train_bits_per_dim": _mean_bpd(log_path, epoch), "lr": opts.lr}
                    best_before = _best_test_bpd(history_path)
                    with open(history_path, "a") as f:
                        f.write(json.dumps(entry) + "\n")
                    print(f"epoch {epoch + 1} done: train {entry['train_bits_per_dim']:.4f} bpd, "
                          f"test {test_bpd if test_bpd is None else round(test_bpd, 4)} bpd, "
                          f"{state['cpu_s'] / 3600:.2f} CPU-hours", flush=True)
                checkpoint()
                if ddp.is_main:  # weights only, at the epoch's end: what a shipped model is cut from
                    save_checkpoint(out / "model-latest-epoch.pt", model, preset=preset,
                                    dataset=batches.name, epoch=state["epoch"], step=state["step"],
                                    test_bits_per_dim=test_bpd)
                    if test_bpd is not None and (best_before is None or test_bpd < best_before):
                        # the test curve bounces at a constant learning rate: keep the best epoch too
                        save_checkpoint(out / "model-best.pt", model, preset=preset,
                                        dataset=batches.name, epoch=state["epoch"], step=state["step"],
                                        test_bits_per_dim=test_bpd)
                last_ckpt = time.monotonic()
                ddp.barrier()
        finished = True
    finally:
        if report:
            report.close()
        if log_file:
            log_file.close()
        for sig, handler in previous_handlers.items():
            signal.signal(sig, handler)
        del net  # its reducer holds the process group (see Distributed.close)
        gc.collect()
        ddp.close(finished)
    if ddp.is_main:
        print(f"stopped at epoch {state['epoch']}, step {state['step']} after "
              f"{format_duration(state['wall_s'] - base_wall)}; checkpoint {ckpt_path}", flush=True)
    return model, state


def _best_test_bpd(history_path):
    if not history_path.exists():
        return None
    values = [r.get("test_bits_per_dim") for r in map(json.loads, history_path.read_text().splitlines())]
    values = [v for v in values if v is not None]
    return min(values) if values else None


def _mean_bpd(log_path, epoch):
    values = [r["bpd"] for r in map(json.loads, log_path.read_text().splitlines()) if r["epoch"] == epoch]
    return sum(values) / len(values) if values else float("nan")
