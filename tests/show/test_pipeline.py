"""The engine: the shared per-frame pipeline, and `flowvj render` end to end on real files."""

import subprocess
import sys
from pathlib import Path

import av
import numpy as np
import pytest
import torch

from flowvj.audio.synth import synth_track, write_track
from flowvj.images import load_show_images
from flowvj.show.pipeline import Show, frame_bounds
from flowvj.flow import RealNVP, save_checkpoint
from test_flow import perturbed

from conftest import SHARED

SHARED_IMAGES = SHARED / "data" / "images"
FLOWVJ = Path(sys.executable).with_name("flowvj")
DEMO_PICKS = ["skimage_astronaut.png", "skimage_coffee.png", "ukui_goldfish.png", "mate_nature_Aqua.jpg"]


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return perturbed(RealNVP.from_preset("tiny"))


@pytest.fixture(scope="module")
def checkpoint(model, tmp_path_factory):
    path = tmp_path_factory.mktemp("model") / "tiny.pt"
    save_checkpoint(path, model, preset="tiny", dataset="unit", epoch=0, step=0)
    return path


@pytest.fixture(scope="module")
def image_files():
    files = [SHARED_IMAGES / name for name in DEMO_PICKS]
    assert all(f.is_file() for f in files), f"shared demo images missing under {SHARED_IMAGES}"
    return files


@pytest.fixture(scope="module")
def track(tmp_path_factory):
    path = tmp_path_factory.mktemp("track") / "demo.wav"
    write_track(path, synth_track(bpm=128, duration_s=4.0, seed=1))
    return path


def _frames(show, audio, fps=30, rate=44100):
    frames = []
    for i in range(int(len(audio) / rate * fps)):
        a, b = frame_bounds(i, fps, rate)
        frames.append(show.next_frame(audio[a:b], (b - a) / rate))
    return np.stack(frames)


def test_frame_bounds_cover_the_track_without_gaps_or_drift():
    for delay_s in (0.0, 0.0087):
        bounds = [frame_bounds(i, 29.97, 44100, delay_s) for i in range(1000)]
        assert bounds[0][0] == 0 and all(b == a2 for (_, b), (a2, _) in zip(bounds, bounds[1:]))
        assert bounds[-1][1] == round((999.5 / 29.97 + delay_s) * 44100)


def test_images_of_any_size_and_mode_load_at_the_model_resolution(image_files):
    images = load_show_images([str(f) for f in image_files], 32)
    assert images.shape == (4, 32, 32, 3) and images.dtype == np.uint8


def test_the_same_seed_gives_the_same_frames_and_another_seed_others(model, image_files):
    images = load_show_images(image_files, 32)
    audio = synth_track(bpm=128, duration_s=3.0, seed=2).audio
    a = _frames(Show(model, images, mode="explore", seed=5), audio)
    b = _frames(Show(model, images, mode="explore", seed=5), audio)
    c = _frames(Show(model, images, mode="explore", seed=6), audio)
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c)


@pytest.mark.parametrize("mode", ["weighted", "magellan", "explore"])
def test_music_moves_the_picture_in_every_mode(model, image_files, mode):
    images = load_show_images(image_files, 32)
    frames = _frames(Show(model, images, mode=mode), synth_track(bpm=128, duration_s=4.0, seed=3).audio)
    motion = np.abs(np.diff(frames.astype(np.int16), axis=0)).mean(axis=(1, 2, 3))
    assert motion[30:].mean() > 0.1, f"{mode}: the picture barely moves"


def test_render_writes_an_mp4_with_the_track_muxed_in(checkpoint, image_files, track, tmp_path):
    out = tmp_path / "video.mp4"
    result = subprocess.run([str(FLOWVJ), "render", str(track), "-o", str(out), "--model", str(checkpoint),
                             "--images", *map(str, image_files), "--size", "320x180", "--duration", "2"],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    with av.open(str(out)) as container:
        video, audio = container.streams.video[0], container.streams.audio[0]
        assert (video.codec_context.name, audio.codec_context.name) == ("h264", "aac")
        assert (video.width, video.height) == (320, 180)
        assert sum(1 for _ in container.decode(video=0)) == 60
    assert not list(tmp_path.glob(".*tmp")), "temporary file left behind"


@pytest.mark.parametrize("args,named", [
    (["--size", "0x0"], "--size"),
    (["--images", "EMPTY"], "EMPTY"),
    (["--mode", "disco"], "--mode"),
    (["--start", "999"], "--start"),
])
def test_bad_render_input_is_one_line_and_writes_nothing(checkpoint, image_files, track, tmp_path, args, named):
    empty = tmp_path / "empty"
    empty.mkdir()
    out = tmp_path / "video.mp4"
    args = [str(empty) if a == "EMPTY" else a for a in args]
    named = str(empty) if named == "EMPTY" else named
    base = [str(FLOWVJ), "render", str(track), "-o", str(out), "--model", str(checkpoint)]
    if "--images" not in args:
        base += ["--images", *map(str, image_files)]
    result = subprocess.run(base + args, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert named in result.stderr and "Traceback" not in result.stderr
    assert not out.exists()


def test_an_unreadable_track_is_one_line_naming_it(checkpoint, image_files, tmp_path):
    bad = tmp_path / "song.mp3"
    bad.write_bytes(b"this is not audio" * 100)
    result = subprocess.run([str(FLOWVJ), "render", str(bad), "-o", str(tmp_path / "v.mp4"), "--model",
                             str(checkpoint), "--images", *map(str, image_files)],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "song.mp3" in lines[0]
