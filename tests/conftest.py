"""Shared fixtures: small copies of the real CIFAR-10 PNGs in ../shared, one decode cache for the
session, and a way to run the installed `flowvj` command with that cache.

Copies keep training runs cheap: a run decodes a few hundred PNGs instead of 60,000, and the
session cache means each copy is decoded once per image size, however many tests train on it.
"""

import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]      # the checkout: tests/ mirrors src/flowvj/ below it
SHARED = REPO.parent / "shared"                 # the workplace's read-only data, beside the checkout
SHARED_CIFAR10 = SHARED / "data" / "cifar10"
FLOWVJ = Path(sys.executable).with_name("flowvj")  # the console script installed beside this python
CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")


def _shared_class_files(split, class_name):
    """Sorted PNGs of one class of the shared copy; fails (never skips) if the data is missing."""
    folder = SHARED_CIFAR10 / split / class_name
    files = sorted(folder.glob("*.png"))
    if not files:
        pytest.fail(f"real CIFAR-10 PNGs missing: no *.png in {folder}")
    return files


def copy_cifar(dest, split, start, stop):
    """Copy PNGs [start:stop) of every class of the shared `split` into dest/<class>/; returns dest."""
    for class_name in CLASSES:
        files = _shared_class_files(split, class_name)[start:stop]
        assert len(files) == stop - start, f"{SHARED_CIFAR10 / split / class_name} has too few images"
        (dest / class_name).mkdir(parents=True)
        for path in files:
            shutil.copyfile(path, dest / class_name / path.name)
    return dest


@pytest.fixture(scope="session")
def decode_cache_dir(tmp_path_factory):
    """Where every test (and every flowvj subprocess) caches decoded datasets this session."""
    return tmp_path_factory.mktemp("decode-cache")


@pytest.fixture(scope="session")
def subprocess_env(decode_cache_dir):
    """Environment for flowvj subprocesses: the session cache, never the home folder."""
    return dict(os.environ, FLOWVJ_CACHE=str(decode_cache_dir), PYTHONUNBUFFERED="1")


@pytest.fixture(scope="session")
def small_cifar10(tmp_path_factory):
    """cifar10/{train,test}/<class>/: 40 + 20 real PNGs per class (400 train, 200 test images).

    Both splits come from the shared test split (first 40 / next 20 of each class), so they are
    disjoint. The folder is named cifar10 so checkpoints record the dataset as 'cifar10/train'.
    """
    root = tmp_path_factory.mktemp("small") / "cifar10"
    copy_cifar(root / "train", "test", 0, 40)
    copy_cifar(root / "test", "test", 40, 60)
    return root


@pytest.fixture(scope="session")
def cifar_train_2000(tmp_path_factory):
    """2,000 real training PNGs (200 per class) in one folder with class sub-folders, no test split."""
    return copy_cifar(tmp_path_factory.mktemp("train2000") / "images", "train", 0, 200)


@pytest.fixture(scope="session")
def cifar_train_5000(tmp_path_factory):
    """5,000 real training PNGs (500 per class), no test split: enough for a tiny model to generalise."""
    return copy_cifar(tmp_path_factory.mktemp("train5000") / "images", "train", 0, 500)


@pytest.fixture(scope="session")
def cifar_test_500(tmp_path_factory):
    """500 real test PNGs (50 per class)."""
    return copy_cifar(tmp_path_factory.mktemp("test500") / "images", "test", 0, 50)


@pytest.fixture(scope="session")
def run_flowvj(subprocess_env):
    """run_flowvj(*args, timeout=...) -> CompletedProcess of the installed `flowvj` command (text)."""
    if not FLOWVJ.is_file():
        pytest.fail(f"the flowvj command is not installed at {FLOWVJ}")

    def run(*args, timeout=300):
        return subprocess.run([str(FLOWVJ), *map(str, args)], capture_output=True, text=True,
                              env=subprocess_env, timeout=timeout)

    return run


@pytest.fixture
def in_process_torch():
    """One torch thread for a test that runs the model in this process, as every training run here
    uses (beside a busy machine's other jobs, two threads were ~10x slower than one).

    flowvj.lab.train.train also sets the thread count and installs SIGINT/SIGTERM handlers; both are
    put back afterwards so the rest of the session is unaffected.
    """
    threads = torch.get_num_threads()
    handlers = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
    for sig, handler in handlers.items():
        signal.signal(sig, handler)


@pytest.fixture(scope="session")
def one_epoch_run(run_flowvj, small_cifar10, tmp_path_factory):
    """A finished one-epoch run of the tiny preset at 8 px on small_cifar10 (50 steps of 8 images),
    evaluated on the first 100 test images at the end of the epoch. Returns the run folder."""
    out = tmp_path_factory.mktemp("one-epoch") / "run"
    result = run_flowvj("train", "--preset", "tiny", "--image-size", 8, "--data", small_cifar10,
                        "--out", out, "--batch-size", 8, "--epochs", 1, "--test-limit", 100,
                        "--threads", 1)
    assert result.returncode == 0, result.stderr
    return out


@pytest.fixture(scope="session", autouse=True)
def _cache_outside_home(decode_cache_dir):
    """Every in-process load caches in the session folder, never in the user's ~/.cache."""
    previous = os.environ.get("FLOWVJ_CACHE")
    os.environ["FLOWVJ_CACHE"] = str(decode_cache_dir)
    yield
    if previous is None:
        os.environ.pop("FLOWVJ_CACHE", None)
    else:
        os.environ["FLOWVJ_CACHE"] = previous
