"""VideoWriter: H.264 + AAC in MP4, audio and video in sync from t = 0, written atomically.

Every file here is decoded back with PyAV (and the sync one also with flowvj's own decoder), and
kept small (160x96, 1.5 s) because encoding shares the machine with other work.
"""

from fractions import Fraction

import av
import numpy as np
import pytest

from flowvj.audio.decode import decode
from flowvj.errors import UserError
from flowvj.outputs.video import VideoWriter, parse_size

SIZE = (160, 96)
FPS = 30
FRAMES = 45                      # 1.5 s
FLASH = 20                       # the white frame; the click starts at FLASH / FPS = 0.667 s
RATE = 44100


def flash_frames(n=FRAMES, flash=FLASH, size=SIZE):
    for i in range(n):
        yield np.full((size[1], size[0], 3), 255 if i == flash else 0, np.uint8)


def click_track(seconds, at_s, rate=RATE):
    """Silence with a 30 ms 1 kHz burst starting at `at_s`."""
    samples = np.zeros(round(seconds * rate), np.float32)
    start = round(at_s * rate)
    t = np.arange(round(0.03 * rate)) / rate
    samples[start:start + len(t)] = 0.8 * np.sin(2 * np.pi * 1000 * t)
    return samples


def write(path, frames, **kwargs):
    with VideoWriter(path, **{"size": SIZE, "fps": FPS, **kwargs}) as out:
        for frame in frames:
            out.write(frame)
    return path


def decoded_video(path):
    """[(time_s, mean brightness)] of every decoded video frame, and the stream."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        frames = [(float(f.pts * f.time_base), f.to_ndarray(format="rgb24").mean())
                  for f in container.decode(stream)]
        return frames, stream.codec_context.name, stream.average_rate, stream.width, stream.height


def decoded_audio(path):
    """(samples (channels, n), time_s of the first sample from the decoded frames' pts, stream)"""
    with av.open(str(path)) as container:
        stream = container.streams.audio[0]
        chunks, first_s = [], None
        for f in container.decode(stream):
            if first_s is None:
                first_s = float(f.pts * f.time_base)
            chunks.append(f.to_ndarray())
        info = dict(codec=stream.codec_context.name, rate=stream.rate, channels=stream.channels,
                    duration_s=float(stream.duration * stream.time_base))
    return np.concatenate(chunks, axis=1), first_s, info


@pytest.fixture(scope="module")
def flash_video(tmp_path_factory):
    """The flash/click video; its track (2 s) is longer than the video and must be trimmed."""
    path = tmp_path_factory.mktemp("video") / "flash.mp4"
    return write(path, flash_frames(), audio=click_track(2.0, FLASH / FPS))


def test_video_has_every_frame_at_the_size_and_rate(flash_video):
    frames, codec, rate, width, height = decoded_video(flash_video)
    assert codec == "h264"
    assert (width, height) == SIZE
    assert rate == FPS
    assert len(frames) == FRAMES
    assert [t for t, _ in frames] == pytest.approx([i / FPS for i in range(FRAMES)], abs=1e-6)


def test_audio_is_aac_and_as_long_as_the_video(flash_video):
    _, first_s, info = decoded_audio(flash_video)
    assert info["codec"] == "aac" and info["rate"] == RATE and info["channels"] == 1
    assert first_s == 0.0                            # the priming is declared and dropped
    assert abs(info["duration_s"] - FRAMES / FPS) < 1 / FPS


def test_the_click_is_heard_when_the_flash_is_seen(flash_video):
    frames, *_ = decoded_video(flash_video)
    flash_s = next(t for t, brightness in frames if brightness > 128)
    assert flash_s == pytest.approx(FLASH / FPS, abs=1e-6)

    samples, first_s, _ = decoded_audio(flash_video)
    click_s = first_s + np.argmax(np.abs(samples[0]) > 0.1) / RATE
    assert abs(click_s - flash_s) < 1 / FPS, f"audio {1e3 * (click_s - flash_s):+.1f} ms from video"
    # AAC's 1024-sample priming is 23 ms, under one frame at 30 fps: so that mishandling it
    # (no edit list, or trimming it twice) would fail too, the sync must also be within 2 ms
    assert abs(click_s - flash_s) < 0.002, f"audio {1e3 * (click_s - flash_s):+.1f} ms from video"
    # flowvj's own decoder (used to analyse tracks) reads the priming the same way
    mono = decode(flash_video)
    assert abs(np.argmax(np.abs(mono) > 0.1) / RATE - flash_s) < 1 / FPS
    assert len(mono) == round(FRAMES / FPS * RATE)   # trimmed to the video


def test_short_stereo_audio_is_padded_to_the_video(tmp_path):
    left = click_track(0.5, 0.1)
    stereo = np.stack([left, -left], axis=1)         # (n, 2)
    path = write(tmp_path / "stereo.mp4", flash_frames(), audio=stereo)
    samples, _, info = decoded_audio(path)
    assert info["channels"] == 2
    assert abs(info["duration_s"] - FRAMES / FPS) < 1 / FPS
    assert np.abs(samples[:, round(0.6 * RATE):]).max() < 0.01   # silence after the track ends


def test_colours_survive_the_yuv_round_trip(tmp_path):
    colour = np.array([200, 60, 110], np.uint8)
    frame = np.broadcast_to(colour, (SIZE[1], SIZE[0], 3))
    path = write(tmp_path / "colour.mp4", [frame] * 3)
    with av.open(str(path)) as container:
        rgb = next(container.decode(video=0)).to_ndarray(format="rgb24")
    assert np.abs(rgb.reshape(-1, 3).mean(axis=0) - colour).max() < 4
    assert not list(tmp_path.glob(".*.tmp"))


def test_a_silent_video_has_no_audio_stream(tmp_path):
    path = write(tmp_path / "silent.mp4", flash_frames(6))
    with av.open(str(path)) as container:
        assert len(container.streams.audio) == 0 and container.streams.video[0].frames == 6


@pytest.mark.parametrize("interrupt", [RuntimeError, KeyboardInterrupt])
def test_an_error_inside_the_block_keeps_the_previous_file(tmp_path, interrupt):
    target = tmp_path / "show.mp4"
    target.write_bytes(b"the previous render")
    with pytest.raises(interrupt):
        with VideoWriter(target, size=SIZE, fps=FPS, audio=click_track(1.0, 0.1)) as out:
            for frame in flash_frames(10):
                out.write(frame)
            raise interrupt()
    assert target.read_bytes() == b"the previous render"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["show.mp4"]


def test_a_finished_video_replaces_the_previous_file(tmp_path):
    target = tmp_path / "sub" / "show.mp4"            # the folder is created
    target.parent.mkdir()
    target.write_bytes(b"old")
    write(target, flash_frames(3))
    assert target.stat().st_size > 100
    assert sorted(p.name for p in target.parent.iterdir()) == ["show.mp4"]


@pytest.mark.parametrize("size", [(0, 0), (1281, 720), (1280, 721), (-1280, 720), (1280.5, 720)])
def test_bad_sizes_are_user_errors(tmp_path, size):
    with pytest.raises(UserError, match=r"^--size .*expected WIDTHxHEIGHT with positive even"):
        VideoWriter(tmp_path / "x.mp4", size=size)
    assert not list(tmp_path.iterdir())


def test_parse_size():
    assert parse_size("1280x720") == (1280, 720)
    assert parse_size("640X360") == (640, 360)
    for text in ["0x0", "1281x720", "1280", "wide", "1280x720x3", "-2x2"]:
        with pytest.raises(UserError, match=f"^--size {text}: expected WIDTHxHEIGHT"):
            parse_size(text)


@pytest.mark.parametrize("fps", [0, -30, float("nan"), "fast"])
def test_bad_fps_is_a_user_error(tmp_path, fps):
    with pytest.raises(UserError, match=r"^--fps .*expected a positive number"):
        VideoWriter(tmp_path / "x.mp4", fps=fps)


def test_unwritable_paths_are_user_errors_naming_them(tmp_path):
    (tmp_path / "file").write_text("")
    blocked = tmp_path / "file" / "show.mp4"            # its folder would be inside a file
    with pytest.raises(UserError, match=f"^{blocked}: cannot create the folder"):
        VideoWriter(blocked)
    with pytest.raises(UserError, match="expected an .mp4"):
        VideoWriter(tmp_path / "show.avi")


def test_a_frame_of_the_wrong_shape_is_refused(tmp_path):
    with VideoWriter(tmp_path / "x.mp4", size=SIZE) as out:
        with pytest.raises(ValueError, match="expected a uint8 frame of shape"):
            out.write(np.zeros((SIZE[0], SIZE[1], 3), np.uint8))
        out.write(next(flash_frames(1)))
    assert Fraction(decoded_video(tmp_path / "x.mp4")[2]) == FPS
