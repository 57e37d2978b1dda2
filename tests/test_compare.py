"""flowvj compare: the flow's round trip is exact where the VAE's is not, the judges rank a double
exposure below real images, and the report holds every figure and image it names."""

import json
import re

import numpy as np
import pytest
import torch

from flowvj import judge
from flowvj.compare import interpolations, reconstructions, slerp
from flowvj.data import load_dataset
from flowvj.engine import DEFAULT_IMAGES, load_show_images
from flowvj.flow import load_model, read_checkpoint, save_checkpoint
from flowvj.flow.checkpoint import DEFAULT_MODEL
from flowvj.vae import VAE

DEMO = sorted(p for p in DEFAULT_IMAGES.iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png"))


@pytest.fixture(scope="module")
def untrained_vae(tmp_path_factory):
    """A 32 px VAE checkpoint, untrained: enough to exercise the report; the bundled one is trained."""
    path = tmp_path_factory.mktemp("vae") / "vae.pt"
    torch.manual_seed(0)
    save_checkpoint(path, VAE.from_preset("tiny"), preset="tiny", dataset="none", epoch=0, step=0)
    return path


@pytest.fixture(scope="module")
def report(run_flowvj, small_cifar10, untrained_vae, tmp_path_factory):
    out = tmp_path_factory.mktemp("compare") / "report"
    result = run_flowvj("compare", "-o", out, "--vae", untrained_vae, "--data", small_cifar10, "--limit", 12,
                        "--pairs", 2, "--frames", 5, "--threads", 1)
    assert result.returncode == 0, result.stderr
    return out


def test_flow_round_trip_is_exact_on_the_demo_images_and_the_vae_round_trip_is_not():
    images = load_show_images(None, 32)
    torch.set_num_threads(1)
    x, flow_rec, vae_rec = reconstructions(load_model(), VAE.from_preset("tiny"), images)
    assert np.abs(flow_rec - x).max() < 1e-4
    assert judge.psnr(x, flow_rec).min() > 80 and judge.psnr(x, vae_rec).max() < 30


def test_slerp_keeps_the_latent_norm_where_lerp_shrinks_it():
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(3, 32, 32, generator=g), torch.randn(3, 32, 32, generator=g)
    mid = slerp(a, b, [0.0, 0.5, 1.0])
    assert torch.allclose(mid[0], a, atol=1e-5) and torch.allclose(mid[2], b, atol=1e-5)
    assert abs(float(mid[1].norm() / a.norm()) - 1) < 0.02
    assert abs(float((0.5 * a + 0.5 * b).norm() / a.norm()) - 2 ** -0.5) < 0.03


def test_a_cross_fade_is_less_sparse_and_less_detailed_than_the_images_it_mixes(small_cifar10):
    images = load_dataset(small_cifar10, "test", 32).images[:40]
    x = images.transpose(0, 3, 1, 2) / 255.0
    a, b = x[0::2], x[1::2]
    fade = 0.5 * a + 0.5 * b
    ends_kurtosis = (judge.gradient_kurtosis(a) + judge.gradient_kurtosis(b)) / 2
    ends_energy = (judge.high_frequency_energy(a) + judge.high_frequency_energy(b)) / 2
    assert np.median(judge.gradient_kurtosis(fade) / ends_kurtosis) < 0.95
    assert np.median(judge.high_frequency_energy(fade) / ends_energy) < 0.7


def test_interpolations_start_and_end_at_the_images_except_the_vae():
    images = load_show_images(None, 32)[:2]
    frames = interpolations(load_model(), VAE.from_preset("tiny"), images[0], images[1], np.linspace(0, 1, 5))
    ends = images.transpose(0, 3, 1, 2) / 255.0
    for method in ("flow_lerp", "flow_slerp", "crossfade"):
        assert frames[method].shape == (5, 3, 32, 32)
        assert np.abs(frames[method][[0, -1]] - ends).max() < 1e-4, method
    assert np.abs(frames["vae_lerp"][[0, -1]] - ends).mean() > 0.05


def test_report_holds_every_figure_for_both_image_sets(report):
    summary = json.loads((report / "summary.json").read_text())
    assert set(summary["sets"]) == {"user", "cifar10_test"}
    assert summary["sets"]["user"]["images"] == 8 and summary["sets"]["cifar10_test"]["images"] == 12
    # the figure recorded in the bundled checkpoint, carried into the report
    recorded = read_checkpoint(DEFAULT_MODEL)["test_bits_per_dim"]
    assert recorded < 4.0 and summary["flow"]["test_bits_per_dim"] == pytest.approx(recorded, abs=1e-6)
    for figures in summary["sets"].values():
        recon = figures["reconstruction"]
        assert recon["flow_max_abs_error"] < 1e-4 and recon["flow_psnr_db"] > 80
        assert recon["vae_psnr_db"] < 30 and recon["vae_mean_abs_levels"] > 1
        assert set(figures["interpolation_judges"]) == {"flow_lerp", "flow_slerp", "vae_lerp", "crossfade",
                                                        "real_images"}
        for scores in figures["interpolation_judges"].values():
            assert set(scores) == {"vae_bits_per_dim", "hf_energy_ratio", "gradient_kurtosis",
                                   "gradient_kurtosis_ratio"}
            assert all(np.isfinite(v) for v in scores.values())
        assert len(figures["strips"]) == 2 and len(figures["reconstruction_per_image"]["vae_psnr_db"]) == \
            figures["images"]


def test_report_page_shows_every_image_and_the_psnr_figures(report):
    html = (report / "index.html").read_text()
    shown = set(re.findall(r"src='([^']+\.png)'", html))
    assert shown == {p.name for p in report.glob("*.png")} and len(shown) == 2 * (1 + 2)
    summary = json.loads((report / "summary.json").read_text())
    assert f"{summary['sets']['user']['reconstruction']['vae_psnr_db']:.2f}" in html
    assert "upper bound" in html
    assert [p.name for p in report.parent.iterdir()] == ["report"]  # no temporary folder left behind


def test_bad_inputs_give_one_line_errors_and_leave_an_old_report_alone(run_flowvj, report, untrained_vae,
                                                                       tmp_path):
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a checkpoint")
    before = (report / "summary.json").read_text()
    cases = {
        ("--images", tmp_path / "missing", "--vae", untrained_vae): "does not exist",
        ("--vae", DEFAULT_MODEL): "is not a flowvj VAE checkpoint",
        ("--vae", garbage): "is unreadable",
        ("--flow", garbage, "--vae", untrained_vae): "is unreadable",
    }
    for args, message in cases.items():
        result = run_flowvj("compare", "-o", report, *args)
        assert result.returncode == 2, (args, result.stderr)
        assert result.stderr.count("\n") == 1 and message in result.stderr, result.stderr
    assert (report / "summary.json").read_text() == before


def test_a_rerun_replaces_the_report_but_keeps_files_kept_beside_it(run_flowvj, untrained_vae, tmp_path):
    out = tmp_path / "report"
    args = ("compare", "-o", out, "--vae", untrained_vae, "--pairs", 1, "--frames", 3, "--threads", 1)
    assert run_flowvj(*args, "--images", *DEMO[:3]).returncode == 0
    (out / "README.md").write_text("licences of the images shown here\n")
    before = sorted(p.name for p in out.glob("user-strip-*.png"))
    result = run_flowvj(*args, "--images", *DEMO[3:5])
    assert result.returncode == 0, result.stderr
    assert (out / "README.md").read_text() == "licences of the images shown here\n"
    after = sorted(p.name for p in out.glob("user-strip-*.png"))
    assert len(after) == 1 and len(before) == 1        # the old run's strips went with the old report
    assert json.loads((out / "summary.json").read_text())["sets"]["user"]["images"] == 2
