"""`flowvj tune` end to end: a short tune on a few real photos learns them, resumes exactly, refuses
a set too small to learn from, is measured by `flowvj eval --size` as it reports, and plays in a show.

Runs at 64x36 (hires needs sides divisible by 4; 36x36 crops) and one thread, so each tune takes
seconds; no CIFAR-10 is given, so the forgetting figure is left out (its sample is 500 images).
"""

import json
import shutil
from pathlib import Path

import av
import pytest

from flowvj.flow import load_model, read_checkpoint
from flowvj.flow.checkpoint import BUNDLED_MODELS

from conftest import SHARED

PHOTOS = ("skimage_astronaut.png", "skimage_chelsea.png", "skimage_coffee.png", "skimage_rocket.jpg",
          "skimage_hubble_deep_field.jpg", "mate_nature_Aqua.jpg")
TRACK = SHARED / "data" / "music" / "lmms_EsoXLB-CPU_128bpm.ogg"
SMALL = ["--size", "64x36", "--threads", "1"]


def _metrics(run):
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines() if line]


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    """Six real photos of ../shared/data/images in a folder: 2 held out, 4 tuned on (the least tune takes)."""
    folder = tmp_path_factory.mktemp("photos") / "collection"
    folder.mkdir()
    for name in PHOTOS:
        shutil.copyfile(SHARED / "data" / "images" / name, folder / name)
    return folder


@pytest.fixture(scope="module")
def tuned(run_flowvj, photos, tmp_path_factory):
    """(model path, report, CompletedProcess) of an 8-step tune of hires on the photos."""
    out = tmp_path_factory.mktemp("tuned") / "mine.pt"
    result = run_flowvj("tune", "--images", photos, "--out", out, "--max-steps", 8, *SMALL, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    return out, json.loads(out.with_suffix(".tune").joinpath("report.json").read_text()), result


@pytest.mark.heavy
def test_a_short_tune_lowers_the_bits_per_dim_of_the_tuned_images(tuned):
    out, report, result = tuned
    assert report["steps"] == 8 and report["images"] == {"tuned": 4, "held_out": 2, "cifar10": None}
    # 8 steps of lr 1e-4 (warm-up 10) from the bundled hires: measured 4.52 -> 4.47 bits/dim
    assert report["after"]["tuned"] < report["before"]["tuned"] - 0.01, report
    assert "held-out images (2)" in result.stdout and "not measured: no CIFAR-10" in result.stdout
    record = read_checkpoint(out)  # a plain flow checkpoint the show takes, of hires's own config
    assert record["preset"] == "hires"
    assert record["config"] == read_checkpoint(BUNDLED_MODELS["hires"])["config"]
    model = load_model(out)
    assert not any(m.training for m in model.modules())


@pytest.mark.heavy
def test_a_resumed_tune_draws_what_an_uninterrupted_one_does(run_flowvj, photos, tmp_path):
    straight, split = tmp_path / "straight.pt", tmp_path / "split.pt"
    assert run_flowvj("tune", "--images", photos, "--out", straight, "--max-steps", 6, *SMALL,
                      timeout=600).returncode == 0
    first = run_flowvj("tune", "--images", photos, "--out", split, "--max-steps", 3, *SMALL, timeout=600)
    assert first.returncode == 0, first.stderr[-3000:]
    again = run_flowvj("tune", "--images", photos, "--out", split, "--max-steps", 6, *SMALL, timeout=600)
    assert again.returncode == 2 and "--resume" in again.stderr  # no silent restart over a run
    resumed = run_flowvj("tune", "--images", photos, "--out", split, "--max-steps", 6, "--resume", *SMALL,
                         timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-3000:]

    straight_bpd = [r["bpd"] for r in _metrics(straight.with_suffix(".tune"))]
    resumed_log = _metrics(split.with_suffix(".tune"))
    assert [r["step"] for r in resumed_log] == [1, 2, 3, 4, 5, 6]
    worst = max(abs(a - r["bpd"]) for a, r in zip(straight_bpd, resumed_log))
    assert worst <= 1e-6, f"the resumed tune differs from the straight one by up to {worst} bits/dim"


def test_too_few_images_are_refused_with_how_many_it_needs(run_flowvj, photos, tmp_path):
    five = [photos / name for name in PHOTOS[:5]]
    result = run_flowvj("tune", "--images", *five, "--out", tmp_path / "x.pt", *SMALL, timeout=120)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode == 2 and len(lines) == 1, result.stderr
    assert "5 images are too few" in lines[0] and "at least 6" in lines[0]
    assert not (tmp_path / "x.pt").exists()


def test_eval_at_a_size_measures_what_tune_reports(run_flowvj, tuned, photos, tmp_path):
    out, report, _ = tuned
    held = json.loads(out.with_suffix(".tune").joinpath("split.json").read_text())["held_out"]
    folder = tmp_path / "held"
    folder.mkdir()
    for path in held:
        shutil.copyfile(path, folder / Path(path).name)
    result = run_flowvj("eval", "--model", out, "--data", folder, "--size", "64x36", "--json", timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    figures = json.loads(result.stdout)
    assert figures["images"] == 2
    assert figures["bits_per_dim"] == pytest.approx(report["after"]["held_out"], abs=1e-4)


def test_eval_refuses_a_size_the_model_cannot_take(run_flowvj, tuned, photos):
    result = run_flowvj("eval", "--model", tuned[0], "--data", photos, "--size", "66x36", "--json",
                        timeout=120)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode == 2 and len(lines) == 1 and "divisible by 4" in lines[0], result.stderr


def test_a_show_renders_with_the_tuned_model(run_flowvj, tuned, photos, tmp_path):
    video = tmp_path / "show.mp4"
    result = run_flowvj("render", TRACK, "-o", video, "--model", tuned[0], "--images", photos,
                        "--duration", "2", "--size", "320x180", "--gen-size", "64x36", "--fps", "15",
                        timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    with av.open(str(video)) as container:
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    assert len(frames) == 30 and frames[0].shape == (180, 320, 3)
