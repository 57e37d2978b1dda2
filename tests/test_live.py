"""The live loop: newest audio each frame on the source's clock, paced frames, window actions."""

import numpy as np
import pytest
import torch

from flowvj.audio.sources import FileSource, SilentPlayback
from flowvj.audio.synth import synth_track, write_track
from flowvj.engine import LiveLoop, Show, load_show_images
from flowvj.flow import RealNVP
from test_engine import image_files  # noqa: F401  (fixture)
from test_flow import perturbed


class Recorder:
    """A test sink: keeps every frame and the meters it was shown with."""

    def __init__(self):
        self.frames, self.meters = [], []

    def show(self, frame, meters):
        self.frames.append(frame.copy())
        self.meters.append(meters)


@pytest.fixture(scope="module")
def show_parts(image_files, tmp_path_factory):  # noqa: F811
    torch.manual_seed(0)
    model = perturbed(RealNVP.from_preset("tiny"))
    track = tmp_path_factory.mktemp("live") / "t.wav"
    write_track(track, synth_track(bpm=128, duration_s=3.0, seed=4))
    return model, load_show_images(image_files, 32), track


def test_the_live_loop_follows_the_track_clock_and_moves_the_picture(show_parts):
    model, images, track = show_parts
    source = SilentPlayback(FileSource(track))
    recorder = Recorder()
    show = Show(model, images, mode="explore")
    with source:
        stats = LiveLoop(show, source, [recorder], fps=30).run()
    assert source.finished
    assert 30 <= stats["frames"] <= 100  # ~3 s at up to 30 fps; ends with the track
    motion = np.abs(np.diff(np.stack(recorder.frames).astype(np.int16), axis=0)).mean()
    assert motion > 0.1
    assert recorder.meters[-1]["tempo_bpm"] >= 0 and len(recorder.meters[-1]["bands"]) == 4
    assert stats["bad_frames"] == 0


def test_window_quit_and_mode_keys_reach_the_loop(show_parts, monkeypatch):
    monkeypatch.setenv("SDL_VIDEODRIVER", "dummy")
    monkeypatch.setenv("SDL_RENDER_DRIVER", "software")
    import pygame

    from flowvj.outputs.window import Window

    model, images, track = show_parts
    show = Show(model, images, mode="weighted")
    with Window(size=(320, 180)) as window, SilentPlayback(FileSource(track)) as source:
        pygame.event.post(pygame.event.Event(pygame.KEYDOWN, key=pygame.K_m, mod=0, unicode="m"))
        pygame.event.post(pygame.event.Event(pygame.QUIT))
        stats = LiveLoop(show, source, [window], fps=30).run(duration_s=5)
    assert stats["frames"] == 1
    assert show.navigator.mode_name == "magellan"


def test_a_looping_silent_playback_wraps_the_samples_and_never_finishes(show_parts):
    _, _, track = show_parts
    source = SilentPlayback(FileSource(track), loop=True).start()
    source._t0 -= source.source.duration_s + 1.0  # as if started 1 s past the track's end
    samples, time_s = source.read_latest(441)
    assert time_s > source.source.duration_s and not source.finished
    start = round((time_s - source.source.duration_s) * source.rate) - 441
    assert np.array_equal(samples, source.source.samples[start:start + 441])
