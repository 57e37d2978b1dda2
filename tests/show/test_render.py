"""`flowvj render` through the compositor: the video at --size, the user's image itself where the
picture is one image (the detail from the original), and --detail off a plain bilinear scale."""

import subprocess
import sys
from pathlib import Path

import av
import numpy as np
import pytest

from flowvj.compose import scale_to
from flowvj.images import load_show_images, resize_images
from test_pipeline import SHARED_IMAGES, checkpoint, model  # noqa: F401  (fixtures)

FLOWVJ = Path(sys.executable).with_name("flowvj")
IMAGE = SHARED_IMAGES / "skimage_chelsea.png"   # H.264 at crf 18 keeps it at 41.9 dB (coffee: 39.2)
SIZE, GEN = (1280, 720), (128, 72)


def psnr(a, b):
    return 10 * np.log10(255.0 ** 2 / np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))


def frames_of(path):
    with av.open(str(path)) as container:
        return [frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)]


@pytest.fixture(scope="module")
def renders(checkpoint, tmp_path_factory):  # noqa: F811
    """One second of one image in weighted mode, rendered with each --detail: {method: frames}."""
    folder, videos = tmp_path_factory.mktemp("render"), {}
    for detail in ("transfer", "off"):
        out = folder / f"{detail}.mp4"
        result = subprocess.run([str(FLOWVJ), "render", "--images", str(IMAGE), "--mode", "weighted",
                                 "--model", str(checkpoint), "--gen-size", "128x72", "--size", "1280x720",
                                 "--duration", "1", "--detail", detail, "-o", str(out)],
                                capture_output=True, text=True, timeout=600)
        assert result.returncode == 0, result.stderr[-3000:]
        videos[detail] = frames_of(out)
    return videos


def test_the_video_has_the_compositors_size(renders):
    for frames in renders.values():
        assert len(frames) == 30 and {frame.shape for frame in frames} == {(720, 1280, 3)}


def test_one_image_renders_as_the_original_at_the_output_size(renders):
    original = load_show_images([IMAGE], SIZE)[0]
    transfer = [psnr(frame, original) for frame in renders["transfer"]]
    blown_up = [psnr(frame, original) for frame in renders["off"]]
    assert min(transfer) >= 40.0, transfer         # the original's own detail, through H.264
    assert max(blown_up) < 35.0, blown_up          # a 128x72 picture blown up is not the original


def test_detail_off_is_a_plain_bilinear_scale_of_the_flows_frame(renders):
    # at one image the flow draws that image at the generation size (exactly invertible)
    small = resize_images(load_show_images([IMAGE], SIZE), GEN)[0]
    bilinear = scale_to(small, SIZE)
    assert min(psnr(frame, bilinear) for frame in renders["off"]) >= 40.0


@pytest.mark.parametrize("command, args, needle", [
    ("render", ("--detail", "blur"), "argument --detail: invalid choice: 'blur'"),
    ("render", ("--detail-amount", "x"), "argument --detail-amount: expected a number in 0..2"),
    ("play", ("--detail-amount", "3"), "argument --detail-amount: expected a number in 0..2"),
    ("serve", ("--detail", "auto"), "argument --detail: invalid choice: 'auto'"),
    ("live", ("--detail-amount", "-0.1"), "argument --detail-amount: expected a number in 0..2"),
])
def test_bad_detail_values_exit_2_with_one_line(command, args, needle, tmp_path):
    extra = ("-o", str(tmp_path / "x.mp4")) if command == "render" else ()
    result = subprocess.run([str(FLOWVJ), command, *extra, *args], capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and needle in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
