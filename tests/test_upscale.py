"""upscale: the flow's 32x32 frame filling a 1280x720 (or any) output, bicubic, centre-cropped."""

import time

import numpy as np
import pytest

from flowvj.upscale import fill_box, upscale


def test_output_is_uint8_of_the_requested_size():
    frame = np.random.default_rng(0).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    for width, height in [(1280, 720), (720, 1280), (64, 64), (1920, 1080)]:
        out = upscale(frame, (width, height))
        assert out.shape == (height, width, 3) and out.dtype == np.uint8


def test_a_constant_frame_stays_constant():
    frame = np.empty((32, 32, 3), np.uint8)
    frame[...] = (17, 128, 250)
    out = upscale(frame, (1280, 720))
    assert np.array_equal(out, np.broadcast_to(np.array([17, 128, 250], np.uint8), out.shape))


def test_a_left_right_split_stays_split_at_the_centre():
    frame = np.zeros((32, 32, 3), np.uint8)
    frame[:, 16:] = 255
    out = upscale(frame, (1280, 720)).astype(int)
    # 40 output pixels per input pixel; the bicubic kernel reaches 2 input pixels either side
    assert np.all(out[:, :640 - 80] == 0) and np.all(out[:, 640 + 80:] == 255)
    assert np.all(out[:, 639] < 128) and np.all(out[:, 640] >= 128)
    assert np.all(np.abs(out[:, 639] + out[:, 640] - 255) <= 1)      # symmetric about x = 640
    assert np.all(out == out[:1])                                    # every row alike


def test_fill_crops_the_centre_not_stretches():
    # top half black, bottom half white: after filling 1280x720 (a 1280x1280 square, the middle
    # 720 rows kept) the edge is still at the middle row, and the crop drops 280/1280 of the
    # square at the top and at the bottom: 7 of the 32 input rows on each side.
    frame = np.zeros((32, 32, 3), np.uint8)
    frame[16:] = 255
    out = upscale(frame, (1280, 720)).astype(int)
    assert np.all(out[359] < 128) and np.all(out[360] >= 128)
    assert fill_box((32, 32), (1280, 720)) == pytest.approx((0, 7, 32, 25))
    # a pattern row: input row 7 is the crop's first row, so its colour shows at the top
    frame = np.zeros((32, 32, 3), np.uint8)
    frame[:8] = 255         # rows 0..7 white: inside the crop only row 7 (the top 40 output rows)
    top = upscale(frame, (1280, 720)).astype(int)
    assert top[0].min() >= 200 and top[100].max() <= 10


def test_rejects_a_frame_that_is_not_uint8_rgb():
    with pytest.raises(ValueError, match="uint8"):
        upscale(np.zeros((32, 32, 3), np.float32))
    with pytest.raises(ValueError):
        upscale(np.zeros((32, 32), np.uint8))


def test_cost_per_1280x720_frame_is_measured():
    frame = np.random.default_rng(1).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    upscale(frame, (1280, 720))
    times_ms = []
    for _ in range(40):
        t0 = time.perf_counter()
        upscale(frame, (1280, 720))
        times_ms.append(1e3 * (time.perf_counter() - t0))
    print(f"\nupscale 32x32 -> 1280x720: median {np.median(times_ms):.2f} ms, "
          f"min {min(times_ms):.2f} ms per frame")
