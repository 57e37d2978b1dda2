"""Generator: exact, deterministic encode; decode to uint8 frames on both backends; bad frames held."""

import numpy as np
import pytest
import torch

from flowvj.flow import RealNVP
from flowvj.generator import Generator
from test_flow import perturbed


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return perturbed(RealNVP.from_preset("tiny"))


def _images(n=3, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (n, 32, 32, 3), dtype=np.uint8)


def test_encode_is_deterministic_and_decode_returns_the_images(model):
    gen = Generator(model, backend="onnx")
    images = _images()
    z1, z2 = gen.encode(images), gen.encode(images)
    assert z1.dtype == np.float32 and z1.shape == (3, 3, 32, 32)
    assert np.array_equal(z1, z2)
    for image, z in zip(images, z1):
        assert np.abs(gen.decode(z).astype(int) - image.astype(int)).max() <= 1


def test_onnx_and_torch_backends_give_the_same_frames(model):
    z = Generator(model, "torch").encode(_images(2, seed=1))
    mid = 0.5 * (z[0] + z[1])
    a = Generator(model, "onnx").decode_float(mid)
    b = Generator(model, "torch").decode_float(mid)
    assert np.abs(a - b).max() < 1e-5


def test_a_non_finite_latent_shows_the_previous_frame(model):
    gen = Generator(model, "onnx")
    good = gen.decode(gen.encode(_images(1))[0])
    bad = np.full((3, 32, 32), np.nan, dtype=np.float32)
    assert np.array_equal(gen.decode(bad), good)
    assert gen.bad_frames == 1


def test_unknown_backend_is_refused(model):
    with pytest.raises(ValueError, match="onnx, torch"):
        Generator(model, "cuda")
