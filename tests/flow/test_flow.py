"""Real-NVP: exact inverse, exact log-determinant, masks, bits/dim, presets, fast paths, checkpoints."""

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from flowvj.data import load_image_folder
from flowvj.errors import UserError
from flowvj.flow import FlowConfig, RealNVP, load_model, save_checkpoint
from flowvj.flow.fast import OnnxInverse, _edge_convs, export_inverse_onnx, fuse_for_inference, inverse_onnx
from flowvj.flow.realnvp import (
    AffineCoupling, channel_mask, checkerboard_mask, squeeze2x2, unsqueeze2x2,
)

from conftest import SHARED

CIFAR = SHARED / "data" / "cifar10"


def perturbed(model, seed=0, input_shape=None):
    """A model that is not the identity: random output layers and non-trivial BN statistics.

    A fresh flow's output convs start at zero, so every coupling is the identity and an
    invertibility test would pass trivially.
    """
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("weight.original0"):
                p.copy_(0.5 + 0.1 * torch.randn(p.shape, generator=g))
            elif name.endswith("s_scale"):
                p.copy_(0.5 + 0.5 * torch.rand(p.shape, generator=g))
        model.train()
        model(torch.rand(8, *(input_shape or model.shape), generator=g))
    return model.eval()


@pytest.fixture(scope="module")
def cifar_test_images():
    assert CIFAR.is_dir(), f"shared CIFAR-10 missing at {CIFAR}"
    images = load_image_folder(CIFAR / "test" / "ship").images[:16]
    return torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255.0


@pytest.mark.parametrize("preset", ["tiny", "lite", pytest.param("full", marks=pytest.mark.heavy)])
def test_reconstruction_of_real_cifar_images_is_exact(preset, cifar_test_images):
    torch.manual_seed(0)
    model = perturbed(RealNVP.from_preset(preset))
    with torch.no_grad():
        z, _ = model(cifar_test_images)
        x = model.inverse(z)
    assert z.shape == cifar_test_images.shape
    assert (z - model.to_logit(cifar_test_images)[0]).abs().max() > 0.1, "flow is still the identity"
    assert (x - cifar_test_images).abs().max().item() < 1e-4


def test_logdet_equals_brute_force_jacobian():
    torch.manual_seed(1)
    model = perturbed(RealNVP.from_preset("tiny", image_size=4)).double()
    x = torch.rand(1, 3, 4, 4, dtype=torch.float64) * 0.9 + 0.05
    _, logdet = model(x)
    jac = torch.autograd.functional.jacobian(lambda v: model(v.view(1, 3, 4, 4))[0].flatten(), x.flatten())
    sign, brute = torch.linalg.slogdet(jac)
    assert sign.item() == 1.0
    assert abs(logdet.item() - brute.item()) / abs(brute.item()) < 1e-4


def test_each_coupling_logdet_matches_its_jacobian():
    torch.manual_seed(2)
    for mask_type, channels in (("checkerboard", 3), ("channel", 12)):
        for reverse in (False, True):
            layer = perturbed(AffineCoupling(channels, 8, 1, mask_type, reverse), input_shape=(channels, 4, 4))
            layer.double()
            x = torch.randn(1, channels, 4, 4, dtype=torch.float64)
            y, logdet = layer(x)
            jac = torch.autograd.functional.jacobian(lambda v: layer(v.view_as(x))[0].flatten(), x.flatten())
            assert torch.allclose(logdet, torch.linalg.slogdet(jac)[1], rtol=1e-6)
            assert torch.allclose(layer.inverse(y), x, atol=1e-10)


def test_checkerboard_mask_is_one_where_coordinate_sum_is_odd():
    mask = checkerboard_mask(4, 6)[0, 0]
    for i in range(4):
        for j in range(6):
            assert mask[i, j].item() == (i + j) % 2
    assert torch.equal(checkerboard_mask(4, 6, reverse=True), 1 - checkerboard_mask(4, 6))


def test_channel_mask_keeps_first_half_then_second():
    assert channel_mask(8).flatten().tolist() == [1, 1, 1, 1, 0, 0, 0, 0]
    assert channel_mask(8, reverse=True).flatten().tolist() == [0, 0, 0, 0, 1, 1, 1, 1]


@pytest.mark.parametrize("mask_type,channels", [("checkerboard", 3), ("channel", 12)])
@pytest.mark.parametrize("reverse", [False, True])
def test_coupling_leaves_masked_entries_unchanged(mask_type, channels, reverse):
    layer = perturbed(AffineCoupling(channels, 8, 1, mask_type, reverse), input_shape=(channels, 4, 4))
    x = torch.randn(2, channels, 4, 4)
    with torch.no_grad():
        y, _ = layer(x)
    b = checkerboard_mask(4, 4, reverse) if mask_type == "checkerboard" else channel_mask(channels, reverse)
    assert torch.equal(y * b, x * b)
    assert (y * (1 - b) - x * (1 - b)).abs().max() > 1e-3


def test_squeeze_moves_each_2x2_square_into_channels_and_back():
    x = torch.arange(2 * 3 * 4 * 4, dtype=torch.float32).view(2, 3, 4, 4)
    s = squeeze2x2(x)
    assert s.shape == (2, 12, 2, 2)
    assert s[0, :4, 0, 0].tolist() == [x[0, 0, 0, 0], x[0, 0, 0, 1], x[0, 0, 1, 0], x[0, 0, 1, 1]]
    assert torch.equal(unsqueeze2x2(s), x)


def _identity_log_density(u, alpha=0.05):
    """log p of one dimension for the flow at identity: logit step then a standard normal."""
    y = alpha + (1 - 2 * alpha) * u
    logit = np.log(y) - np.log1p(-y)
    return -0.5 * (logit ** 2 + np.log(2 * np.pi)) + np.log(1 - 2 * alpha) - np.log(y * (1 - y))


def test_bits_per_dim_at_identity_initialisation_matches_closed_form():
    model = RealNVP.from_preset("tiny").eval()  # zero output layers: every coupling is the identity
    x = torch.rand(4, 3, 32, 32, dtype=torch.float64)
    model.double()
    log_p = model.log_prob(x).detach().numpy()
    expected = _identity_log_density(x.numpy()).reshape(4, -1).sum(1)
    np.testing.assert_allclose(log_p, expected, rtol=1e-9)

    # Uniform 8-bit images, dequantised: x is uniform on [0,1)^D, so the expected bits/dim is
    # (log 256 - E[log p_1(u)]) / ln 2 with the one-dimensional integral done numerically.
    grid = (np.arange(200_000) + 0.5) / 200_000
    expected_bpd = (math.log(256) - _identity_log_density(grid).mean()) / math.log(2)
    g = torch.Generator().manual_seed(0)
    pixels = torch.randint(0, 256, (64, 3, 32, 32), generator=g).double() / 255
    measured = model.bits_per_dim(pixels, generator=g).mean().item()
    assert abs(measured - expected_bpd) < 0.01, (measured, expected_bpd)


def test_eval_mode_is_deterministic_and_noise_free():
    model = perturbed(RealNVP.from_preset("tiny"))
    x = torch.rand(3, 3, 32, 32)
    with torch.no_grad():
        z1, ld1 = model(x)
        z2, ld2 = model(x)
    assert torch.equal(z1, z2) and torch.equal(ld1, ld2)


def test_log_prob_is_the_gaussian_density_of_z_plus_logdet():
    model = perturbed(RealNVP.from_preset("tiny", image_size=8))
    x = torch.rand(2, 3, 8, 8)
    with torch.no_grad():
        z, logdet = model(x)
        expected = torch.distributions.Normal(0, 1).log_prob(z).flatten(1).sum(1) + logdet
        assert torch.allclose(model.log_prob(x), expected, rtol=1e-6)


def test_presets_have_their_documented_sizes():
    full = RealNVP.from_preset("full")
    count = sum(p.numel() for p in full.parameters())
    assert 19.0e6 < count < 20.0e6  # the paper's CIFAR-10 model: ~19.6 M
    assert (full.config.mid_channels, full.config.num_blocks, full.config.num_scales) == (64, 8, 2)
    assert sum(p.numel() for p in RealNVP.from_preset("lite").parameters()) < count / 10


def test_preset_accepts_power_of_two_sizes_and_refuses_others():
    assert RealNVP.from_preset("tiny", image_size=8).shape == (3, 8, 8)
    assert RealNVP.from_preset("tiny", image_size=64).shape == (3, 64, 64)
    for bad in (2, 12, 30):
        with pytest.raises(ValueError, match="power of two"):
            RealNVP.from_preset("tiny", image_size=bad)
    with pytest.raises(ValueError, match="unknown preset"):
        RealNVP.from_preset("huge")


@pytest.mark.parametrize("shape", [(1, 3, 16, 15), (1, 3, 7, 16), (1, 4, 16, 16), (3, 16, 16)])
def test_a_shape_the_squeezes_cannot_divide_is_refused(shape):
    model = RealNVP.from_preset("tiny", image_size=8)
    with pytest.raises(ValueError, match=r"\(N, 3, H, W\) with H and W multiples of 2"):
        model(torch.rand(*shape))


def test_a_model_trained_at_one_size_runs_exactly_at_another():
    model = perturbed(RealNVP.from_preset("tiny", image_size=8))
    x = torch.rand(2, 3, 12, 20)
    with torch.no_grad():
        z, _ = model(x)
        assert z.shape == x.shape
        assert (model.inverse(z) - x).abs().max().item() < 1e-5


def test_folded_and_onnx_inverses_give_the_same_frames():
    model = perturbed(RealNVP.from_preset("lite"))
    z = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        reference = model.inverse(z)
        folded = fuse_for_inference(model).inverse(z)
    onnx = OnnxInverse(model, threads=1)(z.numpy())
    assert (folded - reference).abs().max().item() < 1e-5
    assert np.abs(onnx - reference.numpy()).max() < 1e-5
    # folding must not alter the model it was given
    with torch.no_grad():
        assert torch.equal(model.inverse(z), reference)


def test_checkpoint_round_trip_gives_identical_outputs(tmp_path):
    model = perturbed(RealNVP.from_preset("tiny", image_size=8))
    path = tmp_path / "ckpt.pt"
    save_checkpoint(path, model, preset="tiny", dataset="unit", epoch=3, step=42, test_bits_per_dim=4.5)
    loaded = load_model(path)
    assert not loaded.training
    x = torch.rand(2, 3, 8, 8)
    with torch.no_grad():
        assert torch.equal(loaded(x)[0], model(x)[0])
    assert not list(tmp_path.glob("*.tmp")), "temporary file left behind"


def test_checkpoint_of_another_config_is_refused_naming_the_file(tmp_path):
    path = tmp_path / "small.pt"
    save_checkpoint(path, RealNVP.from_preset("tiny", image_size=8), preset="tiny", dataset="x", epoch=0, step=0)
    with pytest.raises(UserError, match="small.pt.*expected"):
        load_model(path, expect_config=FlowConfig(image_size=8, mid_channels=32, num_blocks=2))


@pytest.mark.parametrize("content", [b"", b"not a checkpoint at all", b"PK\x03\x04garbage"])
def test_corrupt_checkpoint_is_a_one_line_error_naming_the_file(tmp_path, content):
    path = tmp_path / "broken.pt"
    path.write_bytes(content)
    with pytest.raises(UserError) as err:
        load_model(path)
    assert "broken.pt" in str(err.value) and "\n" not in str(err.value)


def test_failed_save_keeps_the_previous_checkpoint(tmp_path):
    model = RealNVP.from_preset("tiny", image_size=8)
    path = tmp_path / "ckpt.pt"
    save_checkpoint(path, model, preset="tiny", dataset="x", epoch=1, step=10)
    good = path.read_bytes()
    with pytest.raises(TypeError):
        save_checkpoint(path, model, preset="tiny", dataset="x", epoch=object(), step=11)
    assert path.read_bytes() == good


# ---- the fast paths at any generation size (Generator sizes, issue #12) -------------------------


def _bn_state(model):
    return {name: b.clone() for name, b in model.named_buffers() if "running" in name}


@pytest.mark.parametrize("shape", [(2, 3, 32, 32), (1, 3, 36, 64), (3, 3, 40, 24)])
def test_one_onnx_export_serves_any_batch_and_even_size(shape):
    model = perturbed(RealNVP.from_preset("tiny"))
    z = torch.randn(*shape) * 0.8
    with torch.no_grad():
        reference = model.inverse(z)
    assert np.abs(OnnxInverse(model)(z.numpy()) - reference.numpy()).max() < 1e-5


def test_export_leaves_the_folded_copy_in_eval_mode_and_batch_norm_statistics_unchanged():
    model = perturbed(RealNVP.from_preset("tiny"))
    before = _bn_state(model)
    fused = fuse_for_inference(model)
    folded_before = _bn_state(fused)
    export_inverse_onnx(fused)
    assert not any(m.training for m in fused.modules())
    with torch.no_grad():  # eager calls after the export, as the torch backend makes them
        for _ in range(3):
            fused.inverse(torch.randn(4, 3, 36, 64))
            model.inverse(torch.randn(4, 3, 36, 64))
    for name, value in _bn_state(fused).items():
        assert torch.equal(value, folded_before[name]), name
    for name, value in _bn_state(model).items():
        assert torch.equal(value, before[name]), name


def test_export_is_cached_until_the_weights_change():
    model = perturbed(RealNVP.from_preset("tiny"))
    first = inverse_onnx(model)
    assert inverse_onnx(model) is first
    with torch.no_grad():
        next(model.parameters()).mul_(1.01)
    assert inverse_onnx(model) != first


def test_int8_keeps_each_st_nets_first_and_last_conv_in_float():
    model = RealNVP.from_preset("tiny")
    couplings = sum(isinstance(m, AffineCoupling) for m in model.modules())
    assert len(_edge_convs(inverse_onnx(model))) == 2 * couplings


def test_export_is_kept_on_disk_for_the_next_run_of_the_same_weights(tmp_path):
    model = perturbed(RealNVP.from_preset("tiny"))
    first = inverse_onnx(model, tmp_path)
    files = list((tmp_path / "onnx").glob("*-fp32.onnx"))
    assert len(files) == 1 and files[0].read_bytes() == first
    files[0].write_bytes(b"marker")  # so a read from disk shows
    twin = RealNVP(model.config)  # what the next run loads from the same checkpoint
    twin.load_state_dict(model.state_dict())
    assert inverse_onnx(twin.eval(), tmp_path) == b"marker"
    other = perturbed(RealNVP.from_preset("tiny"), seed=1)
    assert inverse_onnx(other, tmp_path) != b"marker"
    assert len(list((tmp_path / "onnx").glob("*-fp32.onnx"))) == 2


def test_bundled_models_load_by_name_with_their_presets():
    from flowvj.flow.presets import PRESETS

    for name in ("lite", "hires"):
        config = load_model(name).config
        assert (config.mid_channels, config.num_blocks, config.num_scales) == (
            PRESETS[name].mid_channels, PRESETS[name].num_blocks, PRESETS[name].num_scales), name
    assert load_model(None).config == load_model("lite").config


def test_a_missing_bundled_model_is_one_line_naming_it(monkeypatch, tmp_path):
    from flowvj.flow import checkpoint

    monkeypatch.setitem(checkpoint.BUNDLED_MODELS, "hires", tmp_path / "gone.pt")
    with pytest.raises(UserError, match=r"--model hires: the bundled model .*gone.pt is missing") as err:
        load_model("hires")
    assert "\n" not in str(err.value)


def test_live_shows_default_to_hires_on_a_cpu_and_lite_on_a_gpu(monkeypatch, tmp_path):
    from flowvj.flow.checkpoint import default_model
    from flowvj.flow import checkpoint

    assert default_model("cpu") == "hires" and default_model("cuda") == "lite"
    monkeypatch.setitem(checkpoint.BUNDLED_MODELS, "hires", tmp_path / "gone.pt")
    assert default_model("cpu") == "lite"
