"""Training: it learns, it resumes exactly after a kill, DDP ranks agree, checkpoints say what they hold.

All runs use --threads 1: the same thread count in every run is what makes float results
reproducible, and on a busy machine one thread per process is also the fastest.
"""

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from flowvj.data import load_dataset
from flowvj.flow import RealNVP, load_model, preset_config, read_checkpoint
from flowvj.lab.train import TrainOptions, evaluate, to_unit, train

from conftest import REPO

TESTS = REPO / "tests"
FLOWVJ = Path(sys.executable).with_name("flowvj")


def _metrics(run):
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines() if line]


def _parameters(state_dict):
    """The trainable tensors of a tiny RealNVP state dict (batch-norm running stats left out)."""
    names = [name for name, _ in RealNVP(preset_config("tiny", 8)).named_parameters()]
    return {name: state_dict[name] for name in names}


# ---------------------------------------------------------------- learning


@pytest.mark.heavy
def test_tiny_model_training_lowers_test_bits_per_dim(cifar_train_5000, cifar_test_500, decode_cache_dir,
                                                       tmp_path, in_process_torch):
    # Measured at 16x16 (the flow is fully convolutional, and a quarter of the pixels makes a step
    # ~2.4x cheaper than at 32x32): 7.94 bits/dim untrained -> 5.82 after 300 steps of 32 images,
    # a drop of 2.12 in 14 s on an idle core (32x32: 2.49 in 33 s, 101 s on a busy CI machine);
    # the 1.5 asked for leaves 0.6 bits/dim of margin.
    size = 16
    test_images = load_dataset(cifar_test_500, "test", size, decode_cache_dir).images
    assert len(test_images) == 500
    torch.manual_seed(0)  # the weights train() starts from with seed 0
    before = evaluate(RealNVP(preset_config("tiny", size)), test_images, show_progress=False)

    model, state = train(TrainOptions(data=str(cifar_train_5000), out=str(tmp_path / "run"), preset="tiny",
                                      image_size=size, batch_size=32, max_steps=300, threads=1,
                                      cache_dir=str(decode_cache_dir)))
    after = evaluate(model, test_images, show_progress=False)

    assert state["step"] == 300
    assert after["bits_per_dim"] < before["bits_per_dim"] - 1.5, (before, after)


# ---------------------------------------------------------------- exact resume


RESUME_STEPS = 200
RESUME_CHECKPOINT_STEPS = 100
RESUME_STEPS_PER_EPOCH = 2000 // 8


def _last_logged_step(log):
    """The step of the last complete line of a metrics log being written (0 if none yet)."""
    complete = log.read_text().rpartition("\n")[0].splitlines()
    try:
        return json.loads(complete[-1])["step"] if complete else 0
    except ValueError:  # caught the writer mid-line; look again next time
        return 0


def _kill_once_the_log_passes_the_checkpoint(process, run, timeout_s=240):
    """SIGKILL `process` as soon as metrics.jsonl on disk holds a step past the checkpoint's.

    The trainer flushes its log at checkpoints and when the 8 KB write buffer fills (~73 lines),
    so with checkpoints 100 steps apart the log passes the checkpoint ~27 steps before the next one.
    """
    ckpt, log = run / "ckpt.pt", run / "metrics.jsonl"
    seen_mtime, ckpt_step = None, None
    deadline = time.monotonic() + timeout_s
    while process.poll() is None and time.monotonic() < deadline:
        if ckpt.exists() and ckpt.stat().st_mtime_ns != seen_mtime:
            seen_mtime = ckpt.stat().st_mtime_ns
            ckpt_step = read_checkpoint(ckpt)["step"]
        if ckpt_step is not None and log.exists() and _last_logged_step(log) > ckpt_step:
            process.send_signal(signal.SIGKILL)
            break
        time.sleep(0.01)
    process.wait(timeout=60)
    assert process.returncode == -signal.SIGKILL, (
        f"the run ended by itself (exit {process.returncode}) before its log passed a checkpoint")


def test_resume_after_kill_reproduces_the_uninterrupted_loss_curve(run_flowvj, subprocess_env,
                                                                   cifar_train_2000, tmp_path):
    # 2,000 images in batches of 8 = 250 steps per epoch, so every checkpoint before step 200 is mid-epoch.
    args = ["train", "--preset", "tiny", "--image-size", "8", "--data", str(cifar_train_2000),
            "--batch-size", "8", "--threads", "1", "--max-steps", str(RESUME_STEPS),
            "--checkpoint-steps", str(RESUME_CHECKPOINT_STEPS)]
    straight, killed = tmp_path / "straight", tmp_path / "killed"
    result = run_flowvj(*args, "--out", straight)
    assert result.returncode == 0, result.stderr

    process = subprocess.Popen([str(FLOWVJ), *args, "--out", str(killed)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=subprocess_env)
    try:
        _kill_once_the_log_passes_the_checkpoint(process, killed)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    record = read_checkpoint(killed / "ckpt.pt")
    logged_before_kill = _metrics(killed)[-1]["step"]
    assert 0 < record["step"] < RESUME_STEPS and record["step"] % RESUME_STEPS_PER_EPOCH != 0
    assert logged_before_kill > record["step"]  # steps past the checkpoint were lost and must be redone

    result = run_flowvj(*args, "--out", killed, "--resume")
    assert result.returncode == 0, result.stderr

    straight_bpd = {r["step"]: r["bpd"] for r in _metrics(straight)}
    resumed_steps = [r["step"] for r in _metrics(killed)]
    resumed_bpd = {r["step"]: r["bpd"] for r in _metrics(killed)}
    assert resumed_steps == list(range(1, RESUME_STEPS + 1))  # each step logged once
    assert sorted(straight_bpd) == resumed_steps
    worst = max(abs(straight_bpd[step] - resumed_bpd[step]) for step in resumed_steps)
    assert worst <= 1e-6, f"resumed run differs from the uninterrupted one by up to {worst} bits/dim"


# ---------------------------------------------------------------- DDP


@pytest.mark.heavy
def test_torchrun_ranks_hold_identical_weights(small_cifar10, subprocess_env, tmp_path):
    steps = 6
    result = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
         str(TESTS / "ddp_worker.py"), str(small_cifar10), str(tmp_path), str(steps)],
        capture_output=True, text=True, env=subprocess_env, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]

    rank0 = _parameters(torch.load(tmp_path / "rank0.pt", weights_only=True))
    rank1 = _parameters(torch.load(tmp_path / "rank1.pt", weights_only=True))
    torch.manual_seed(0)
    initial = dict(RealNVP(preset_config("tiny", 8)).named_parameters())
    assert [name for name in rank0 if not torch.equal(rank0[name], rank1[name])] == []
    # Every weight trained. (Conv biases are left out: most feed a batch norm, which subtracts them
    # again, so their gradient is zero or rounding noise and Adam may leave them exactly as they were.)
    weights = [name for name in rank0 if not name.endswith(".bias")]
    assert len(weights) > 100 and [name for name in weights if torch.equal(rank0[name], initial[name])] == []

    # The ranks trained on different images: no picture of rank 0's first batch is in rank 1's.
    first0, first1 = (np.load(tmp_path / f"rank{r}-first-batch.npy") for r in (0, 1))
    assert len(first0) == len(first1) == 8
    assert not {image.tobytes() for image in first0} & {image.tobytes() for image in first1}


# ---------------------------------------------------------------- checkpoints


def test_checkpoint_records_config_dataset_epoch_step_and_test_bpd(one_epoch_run, small_cifar10,
                                                                   decode_cache_dir, in_process_torch):
    ckpt = one_epoch_run / "ckpt.pt"
    record = read_checkpoint(ckpt)
    test_images = load_dataset(small_cifar10, "test", 8, decode_cache_dir).images
    model = load_model(ckpt)

    assert record["config"] == preset_config("tiny", 8).to_dict()
    assert record["preset"] == "tiny"
    assert record["dataset"] == "cifar10/train"
    assert (record["epoch"], record["step"]) == (1, 400 // 8)
    # The recorded figure is the saved model's bits/dim on the first --test-limit test images.
    assert record["test_bits_per_dim"] == pytest.approx(
        evaluate(model, test_images[:100], show_progress=False)["bits_per_dim"], abs=1e-4)

    assert not any(module.training for module in model.modules())
    with torch.no_grad():
        x = to_unit(test_images)
        z, _ = model(x)
        assert float((model.inverse(z) - x).abs().max()) < 1e-4


def test_max_minutes_stops_cleanly_with_a_checkpoint(run_flowvj, small_cifar10, tmp_path):
    # 50 steps per epoch and 100 epochs: far more than 3 s of work, so the clock is what stops it.
    out = tmp_path / "run"
    result = run_flowvj("train", "--preset", "tiny", "--image-size", 8, "--data", small_cifar10, "--out", out,
                        "--batch-size", 8, "--test-limit", 20, "--threads", 1, "--max-minutes", 0.05)

    assert result.returncode == 0, result.stderr
    record = read_checkpoint(out / "ckpt.pt")
    assert record["train_state"]["wall_s"] >= 0.05 * 60
    assert 0 < record["step"] < 100 * 50 and record["epoch"] < 100
    assert record["step"] == _metrics(out)[-1]["step"]  # the checkpoint holds the last step taken


# ---------------------------------------------------------------- known library bugs


def test_epoch_history_records_the_mean_train_bpd_of_the_epoch(one_epoch_run):
    history = [json.loads(line) for line in (one_epoch_run / "history.jsonl").read_text().splitlines()]
    epoch_bpd = [r["bpd"] for r in _metrics(one_epoch_run) if r["epoch"] == 0]
    assert len(history) == 1 and len(epoch_bpd) == 50
    assert history[0]["train_bits_per_dim"] == pytest.approx(sum(epoch_bpd) / len(epoch_bpd), abs=1e-6)


def test_resuming_a_run_that_reached_max_steps_trains_no_further(small_cifar10, decode_cache_dir, tmp_path,
                                                                 in_process_torch):
    options = dict(data=str(small_cifar10), out=str(tmp_path / "run"), preset="tiny", image_size=8,
                   batch_size=8, max_steps=2, threads=1, cache_dir=str(decode_cache_dir))
    train(TrainOptions(**options))
    _, state = train(TrainOptions(**options, resume=True))
    assert state["step"] == 2
    assert [r["step"] for r in _metrics(tmp_path / "run")] == [1, 2]


def test_training_through_the_api_leaves_the_signal_handlers_as_it_found_them(small_cifar10, decode_cache_dir,
                                                                               tmp_path, in_process_torch):
    before = signal.getsignal(signal.SIGINT)
    train(TrainOptions(data=str(small_cifar10), out=str(tmp_path / "run"), preset="tiny", image_size=8,
                       batch_size=8, max_steps=1, threads=1, cache_dir=str(decode_cache_dir)))
    assert signal.getsignal(signal.SIGINT) is before
