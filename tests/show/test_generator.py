"""Generator: exact encode at any even size; decode to uint8 frames on both backends, fp32 and int8;
bad frames held; device and thread selection."""

import os
from pathlib import Path

import numpy as np
import pytest
import torch

from flowvj.data import load_image
from flowvj.errors import UserError
from flowvj.flow import RealNVP, load_model
from flowvj.show.generator import Generator, TWO_THREAD_PIXELS, default_threads, resolve_device
from test_flow import perturbed

from conftest import REPO

DEMO = sorted((REPO / "src" / "flowvj" / "assets" / "images").glob("*.jpg"))


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return perturbed(RealNVP.from_preset("tiny"))


@pytest.fixture(scope="module")
def lite():
    """The bundled model (lite, trained on CIFAR-10 at 32x32)."""
    return load_model()


def _images(n=3, seed=0, size=(32, 32)):
    return np.random.default_rng(seed).integers(0, 256, (n, size[1], size[0], 3), dtype=np.uint8)


def _demo(size, n=3):
    """Real photographs (the bundled demo images), aspect-filled to size (W, H)."""
    return np.stack([load_image(p, size) for p in DEMO[:n]])


def _psnr(a, b):
    return 10 * np.log10(1.0 / np.mean((np.clip(a, 0, 1) - np.clip(b, 0, 1)) ** 2))


def test_encode_is_deterministic_and_decode_returns_the_images(model):
    gen = Generator(model, backend="onnx")
    images = _images()
    z1, z2 = gen.encode(images), gen.encode(images)
    assert z1.dtype == np.float32 and z1.shape == (3, 3, 32, 32)
    assert np.array_equal(z1, z2)
    for image, z in zip(images, z1):
        assert np.abs(gen.decode(z).astype(int) - image.astype(int)).max() <= 1


def test_round_trip_is_exact_at_a_non_square_generation_size(lite):
    gen = Generator(lite, size=(64, 36))
    assert gen.size == (64, 36) and gen.shape == (3, 36, 64)
    images = _demo((64, 36))
    z = gen.encode(images)
    assert z.shape == (3, 3, 36, 64)
    back = gen.decode_float_batch(z)
    assert np.abs(back - images.transpose(0, 3, 1, 2) / 255.0).max() < 1e-4
    assert np.array_equal(gen.decode(z[0]), images[0])


@pytest.mark.parametrize("size", [(64, 36), (48, 80)])
def test_onnx_and_torch_backends_give_the_same_frames_at_any_size(lite, size):
    z = Generator(lite, size=size, backend="torch").encode(_demo(size, 2))
    mid = 0.5 * (z[0] + z[1])
    a = Generator(lite, size=size, backend="onnx").decode_float(mid)
    b = Generator(lite, size=size, backend="torch").decode_float(mid)
    assert a.shape == (3, size[1], size[0])
    assert np.abs(a - b).max() < 1e-5


def test_decode_batch_gives_the_frames_of_decode_one_by_one(lite):
    gen = Generator(lite, size=(64, 36))
    z = gen.encode(_demo((64, 36)))
    frames = gen.decode_batch(z)
    assert frames.shape == (3, 36, 64, 3) and frames.dtype == np.uint8
    for frame, latent in zip(frames, z):
        assert np.abs(frame.astype(int) - gen.decode(latent).astype(int)).max() <= 1
    assert gen.decode_ms > 0


@pytest.fixture(scope="module")
def int8_and_fp32(lite):
    size = (128, 72)
    return Generator(lite, size=size, precision="int8"), Generator(lite, size=size), _demo(size, 4)


def test_int8_decode_stays_within_35_db_of_fp32_and_is_really_quantised(int8_and_fp32):
    int8, fp32, images = int8_and_fp32
    z = fp32.encode(images)
    mid = 0.5 * (z[:-1] + z[1:])  # in-betweens, what the show mostly draws
    psnr = _psnr(int8.decode_float_batch(mid), fp32.decode_float_batch(mid))
    assert 35.0 < psnr < 60.0  # measured 41.9 dB; >= 60 would mean nothing was quantised


def test_int8_endpoints_stay_within_35_db_of_the_images(int8_and_fp32):
    int8, fp32, images = int8_and_fp32
    z = int8.encode(images)  # encode is always exact float32, whatever the decode precision
    assert np.array_equal(z, fp32.encode(images))
    assert _psnr(int8.decode_float_batch(z), images.transpose(0, 3, 1, 2) / 255.0) > 35.0


def test_int8_is_refused_off_the_onnx_cpu_path(model):
    with pytest.raises(UserError, match="--precision int8"):
        Generator(model, backend="torch", precision="int8")


def test_a_non_finite_latent_shows_the_previous_frame(model):
    gen = Generator(model, backend="onnx")
    good = gen.decode(gen.encode(_images(1))[0])
    bad = np.full((3, 32, 32), np.nan, dtype=np.float32)
    assert np.array_equal(gen.decode(bad), good)
    assert gen.bad_frames == 1


@pytest.mark.parametrize("backend", ["onnx", "torch"])
def test_bad_frames_are_held_at_a_large_size_in_decode_and_decode_batch(model, backend):
    gen = Generator(model, size=(256, 144), backend=backend)
    z = gen.encode(_images(2, size=(256, 144)))
    good = gen.decode(z[0])
    assert good.shape == (144, 256, 3)
    assert np.array_equal(gen.decode(np.full(gen.shape, np.inf, dtype=np.float32)), good)
    batch = np.stack([z[1], np.full(gen.shape, np.nan, dtype=np.float32), z[0]])
    frames = gen.decode_batch(batch)
    assert np.array_equal(frames[1], frames[0]) and not np.array_equal(frames[1], good)
    assert np.array_equal(frames[2], good)
    assert gen.bad_frames == 2


def test_encode_refuses_images_of_another_size(model):
    with pytest.raises(ValueError, match=r"\(N, 36, 64, 3\)"):
        Generator(model, size=(64, 36)).encode(_images(1))


def test_odd_generation_sizes_are_refused(model):
    with pytest.raises(ValueError, match="multiples of 2"):
        Generator(model, size=(65, 36))


def test_unknown_backend_and_precision_are_refused(model):
    with pytest.raises(ValueError, match="onnx, torch"):
        Generator(model, backend="cuda")
    with pytest.raises(ValueError, match="fp32, int8"):
        Generator(model, precision="fp16")


def test_threads_default_to_one_at_small_sizes_and_two_at_large(model):
    assert default_threads((64, 36)) == 1
    assert default_threads((128, 72)) == min(2, os.cpu_count())
    assert 64 * 36 < TWO_THREAD_PIXELS <= 128 * 72
    assert Generator(model, size=(64, 36)).threads == 1
    assert Generator(model, size=(128, 72), threads=1).threads == 1


def test_auto_device_is_cuda_exactly_when_torch_sees_a_gpu():
    assert resolve_device("auto") == ("cuda" if torch.cuda.is_available() else "cpu")
    assert resolve_device("cpu") == "cpu"
    with pytest.raises(ValueError, match="cpu, cuda, auto"):
        resolve_device("tpu")


@pytest.mark.skipif(torch.cuda.is_available(), reason="a GPU is here: see the test below")
def test_cuda_without_a_gpu_is_a_user_error_naming_device_and_what_is_there(model):
    with pytest.raises(UserError, match=r"--device cuda.*available: cpu"):
        Generator(model, device="cuda")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_decodes_the_frames_of_the_cpu(lite):
    z = Generator(lite, size=(64, 36)).encode(_demo((64, 36), 2))
    mid = 0.5 * (z[0] + z[1])
    gpu = Generator(lite, size=(64, 36), device="cuda")
    assert gpu.device == "cuda"
    assert _psnr(gpu.decode_float(mid), Generator(lite, size=(64, 36)).decode_float(mid)) > 50.0
