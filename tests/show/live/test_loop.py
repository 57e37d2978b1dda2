"""The live loop: newest audio each frame on the source's clock, paced frames, window actions."""

import threading
import time

import numpy as np
import pytest
import torch

from flowvj.audio.sources import FileSource, SilentPlayback
from flowvj.audio.synth import synth_track, write_track
from flowvj.images import load_show_images
from flowvj.show.live.loop import LiveLoop
from flowvj.show.pipeline import Show
from flowvj.flow import RealNVP
from test_pipeline import image_files  # noqa: F401  (fixture)
from test_flow import perturbed


class Recorder:
    """A test sink: keeps every frame, the meters it was shown with, and when (perf_counter)."""

    def __init__(self):
        self.frames, self.meters, self.times = [], [], []

    def show(self, frame, meters):
        self.times.append(time.perf_counter())
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
    tempo = recorder.meters[-1]["tempo_bpm"]
    assert (tempo is None or tempo > 0) and len(recorder.meters[-1]["bands"]) == 4
    assert stats["bad_frames"] == 0


def paced_run(show_parts, slow_s, every, seconds, fps=20):
    """A LiveLoop whose every `every`-th decode sleeps `slow_s` more; returns (the loop, the
    times the sink was shown frames, the threads the decodes ran in)."""
    model, images, track = show_parts
    show = Show(model, images, mode="explore")
    decode, calls, threads = show.generator.decode, [], set()

    def uneven_decode(z):
        calls.append(1)
        threads.add(threading.get_ident())
        if len(calls) % every == 0:
            time.sleep(slow_s)
        return decode(z)

    show.generator.decode = uneven_decode
    stamps = Recorder()
    with SilentPlayback(FileSource(track)) as source:
        loop = LiveLoop(show, source, [stamps], fps=fps)
        loop.run(seconds)
    return loop, stamps.times, threads


def test_frames_reach_the_screen_a_period_apart_although_their_work_varies(show_parts):
    # every other frame's work 25 ms longer (Chromium taking a core)
    loop, times, _ = paced_run(show_parts, 0.025, every=2, seconds=2.0)
    intervals = np.diff(times[10:]) * 1000.0     # after the lead has been learnt
    # shown as soon as made, the intervals would alternate ~25 / ~75 ms; held to their slots
    # they stay near the 50 ms period
    assert abs(np.median(intervals) - 50.0) < 3.0, intervals
    assert np.percentile(intervals, 90) < 62.0 and intervals.min() > 38.0, intervals
    assert np.percentile(list(loop.work_ms)[10:], 90) > 25.0      # the work really did vary


def test_a_decode_longer_than_a_period_now_and_then_still_lands_in_its_slot(show_parts):
    # every 6th frame's decode 1.4 periods long (the cores taken for a while)
    loop, times, threads = paced_run(show_parts, 0.070, every=6, seconds=4.0)
    intervals = np.diff(times[24:]) * 1000.0     # after the lead has been learnt
    # made one at a time, each spike would show 20+ ms late (~1 interval in 6 over 70 ms); with
    # the next frame's work started before this one is shown, the spikes are absorbed
    assert abs(np.median(intervals) - 50.0) < 3.0, intervals
    assert np.percentile(intervals, 95) < 60.0, intervals
    assert threading.get_ident() not in threads     # the decode ran off the loop's thread
    assert np.median(loop.latency_ms[24:]) > 70.0   # the lead that took: work started early
    # and the beat events are predicted by it (no --latency-ms here: the loop's own latency)
    assert loop.show.analyzer.latency_s == pytest.approx(np.median(loop.latency_ms[-30:]) / 1000.0, rel=0.25)


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


def run_with_controls(show, source, events, fps=30, seconds=None, **loop_options):
    """A LiveLoop with `events` [(after_frames, name, value)] posted on its bus as it runs."""
    recorder = Recorder()
    loop = LiveLoop(show, source, [recorder], fps=fps, **loop_options)
    pending = list(events)
    original_show = recorder.show

    def show_and_post(frame, meters):
        original_show(frame, meters)
        while pending and pending[0][0] <= len(recorder.frames):
            _, name, value = pending.pop(0)
            loop.bus.post(name, value, source="test")

    recorder.show = show_and_post
    with source:
        stats = loop.run(seconds)
    return loop, recorder, stats


def test_brightness_blackout_and_freeze_reach_the_picture_and_are_announced(show_parts, caplog):
    import logging

    model, images, track = show_parts
    show = Show(model, images, mode="explore")
    events = [(5, "brightness", 0.5), (15, "freeze", 1), (25, "freeze", 0), (30, "blackout", 1)]
    with caplog.at_level(logging.INFO, logger="flowvj.show.live"):
        loop, recorder, _ = run_with_controls(show, SilentPlayback(FileSource(track)), events)
    frames = [f.astype(float) for f in recorder.frames]
    # brightness 0.5 halves every pixel: nothing above 128 once it applies, brighter before
    assert max(f.max() for f in frames[:5]) > 160 and max(f.max() for f in frames[7:30]) <= 128
    assert all(np.array_equal(frames[17], f) for f in frames[17:25])      # frozen
    assert not np.array_equal(frames[28], frames[27]) or not np.array_equal(frames[29], frames[28])
    assert frames[-1].max() == 0                                          # blacked out (0.5 s fade)
    messages = [r.getMessage() for r in caplog.records]
    for text in ("brightness: 0.50", "freeze", "freeze off", "blackout"):
        assert text in messages, messages
    noticed = [m["notice"] for m in recorder.meters if m["notice"]]
    assert "brightness: 0.50" in noticed and noticed[-1] == "blackout"


def test_frames_that_run_late_step_down_to_a_smaller_size_without_a_stall(show_parts):
    model, images, track = show_parts
    from flowvj.images import resize_images

    show = Show(model, resize_images(images, (64, 36)), mode="magellan", gen_size=(64, 36))
    # at 1000 fps every frame is late: after 0.3 s the loop builds 32x18 in the background
    loop, recorder, stats = run_with_controls(show, SilentPlayback(FileSource(track)), [], fps=1000,
                                              ladder=[(32, 18), (64, 36)], late_window_s=0.3)
    sizes = [f.shape[:2] for f in recorder.frames]
    assert sizes[0] == (36, 64) and sizes[-1] == (18, 32), set(sizes)
    assert stats["gen_size"] == "32x18" and len(stats["step_downs"]) == 1
    assert stats["step_downs"][0][1:] == ["64x36", "32x18"]
    assert "32x18" in [m["gen_size"] for m in recorder.meters][-1]
    # the picture stays where it was: the first small frame is near the last big one shrunk
    switch = sizes.index((18, 32))
    from PIL import Image

    before = np.asarray(Image.fromarray(recorder.frames[switch - 1]).resize((32, 18), Image.Resampling.BOX), float)
    after = recorder.frames[switch].astype(float)
    assert np.abs(before - after).mean() < 25, np.abs(before - after).mean()


def test_the_step_down_ladder_holds_only_sizes_the_model_can_draw():
    """hires has three scales, so 96x54 and 160x90 are not sizes it can draw: stepping down
    must skip them (a live run once tried to build 96x54 and logged a traceback)."""
    from flowvj.audio.synth import demo_track
    from flowvj.show.live.session import open_live

    _, show, ladder, _ = open_live(track=demo_track(), silent=True, model_path="hires", gen_size="auto",
                                   fps=30.0)
    assert ladder and all(w % 4 == 0 and h % 4 == 0 for w, h in ladder), ladder
    assert tuple(show.gen_size) in ladder and ladder[0] == (128, 72)     # the floor, --min-gen-size


# -- the compositor: the one stage that takes the frame to the outputs' size ------------------

OUT = (320, 180)


def composed_show(show_parts, image_files, method="transfer", mode="weighted", amount=1.0):  # noqa: F811
    """A Show drawing at 32x32 (the tiny model's images) composed to OUT by a real Compositor."""
    from flowvj.compose import Compositor

    model, images, _ = show_parts
    originals = load_show_images(image_files, OUT)
    return Show(model, images, mode=mode, compositor=Compositor(OUT, method=method, amount=amount),
                originals=originals)


def high_pass(frame):
    """Mean square of the frame's luma minus its 5x5 box blur: the fine detail a frame carries."""
    import cv2

    luma = frame.astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)
    return float(np.mean((luma - cv2.blur(luma, (5, 5))) ** 2))


def test_every_output_gets_composed_frames_at_the_out_size_the_first_black_one_too(
        show_parts, image_files, monkeypatch):  # noqa: F811
    monkeypatch.setenv("SDL_VIDEODRIVER", "dummy")
    monkeypatch.setenv("SDL_RENDER_DRIVER", "software")
    from flowvj.outputs.window import Window

    show = composed_show(show_parts, image_files)
    decode, calls = show.generator.decode, []

    def first_fails(z):
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("the first decode broke")
        return decode(z)

    show.generator.decode = first_fails
    sink = Recorder()
    with Window(size=(640, 360)) as window, SilentPlayback(FileSource(show_parts[2])) as source:
        stats = LiveLoop(show, source, [sink, window], fps=30).run(duration_s=1.5)
    assert {f.shape for f in sink.frames} == {(180, 320, 3)} and window._texture_size == OUT
    assert sink.frames[0].max() == 0 and sink.frames[-1].max() > 0     # black until the first frame
    assert stats["errors"] == 1 and stats["out_size"] == "320x180" and stats["detail"] == "transfer"
    assert stats["compose_ms"] > 0
    assert sink.meters[-1]["detail"] == "transfer" and sink.meters[-1]["detail_amount"] == 1.0


def test_a_frame_at_an_image_wears_the_originals_detail(show_parts, image_files):  # noqa: F811
    # weighted mode starts at image 0: z is that image's latent, the weights one-hot
    frames = []
    for method in ("transfer", "off"):
        show = composed_show(show_parts, image_files, method=method)
        z = show.navigator.image_latents[0].reshape(show.navigator.latent_shape).astype(np.float32)
        frames.append(show.compose(show.generator.decode(z), np.eye(len(show.images))[0]))
    original = load_show_images(image_files, OUT)[0]
    assert np.abs(frames[0].astype(int) - original).mean() < 1.0            # the original itself
    assert high_pass(frames[0]) > 2 * high_pass(frames[1])                  # "off": a blown-up 32x32


def test_a_failed_compose_shows_the_last_good_picture_and_freeze_holds_the_composed_frame(
        show_parts, image_files):  # noqa: F811
    show = composed_show(show_parts, image_files, mode="explore")
    compose, calls = show.compositor.compose, []

    def failing(frame, weights=None, layers=None):
        calls.append(1)
        if len(calls) == 8:
            raise RuntimeError("compose broke")
        return compose(frame, weights, layers)

    show.compositor.compose = failing
    events = [(20, "freeze", 1)]
    source = SilentPlayback(FileSource(show_parts[2]))
    loop, sink, stats = run_with_controls(show, source, events, seconds=2.0)
    assert stats["errors"] == 1 and len(sink.frames) > 30
    assert {f.shape for f in sink.frames} == {(180, 320, 3)}
    held = [np.array_equal(sink.frames[22], f) for f in sink.frames[22:]]
    assert all(held) and not all(np.array_equal(sink.frames[0], f) for f in sink.frames[1:20])


def test_the_detail_control_sets_the_amount_live_and_the_keys_step_it(
        show_parts, image_files, caplog):  # noqa: F811
    import logging

    show = composed_show(show_parts, image_files)
    events = [(10, "detail", 0.0), (20, "detail_up", None), (21, "detail_up", None), (30, "detail", 3.0)]
    with caplog.at_level(logging.INFO, logger="flowvj.show.live"):
        loop, sink, _ = run_with_controls(show, SilentPlayback(FileSource(show_parts[2])), events,
                                          seconds=1.5)
    messages = [r.getMessage() for r in caplog.records]
    assert "detail: 0.0 (transfer)" in messages and "detail: 0.2 (transfer)" in messages, messages
    assert any("ignored control 'detail'" in m for m in messages)           # 3.0: out of range
    assert show.compositor.amount == pytest.approx(0.2) and loop.controls()["detail"] == pytest.approx(0.2)
    # at image 0 (weighted starts there, a quiet track keeps it near): 0 drops the detail
    assert high_pass(sink.frames[15]) < 0.7 * high_pass(sink.frames[8])


def test_a_size_build_makes_the_layers_for_the_new_size_and_the_frames_keep_theirs(
        show_parts, image_files):  # noqa: F811
    from flowvj.compose import Compositor

    model, images, track = show_parts
    originals = load_show_images(image_files, OUT)
    from flowvj.images import resize_images

    show = Show(model, resize_images(originals, (64, 36)), mode="magellan", gen_size=(64, 36),
                compositor=Compositor(OUT), originals=originals)
    assert show.layers.gen_size == (64, 36)
    loop, sink, stats = run_with_controls(show, SilentPlayback(FileSource(track)), [], fps=1000,
                                          ladder=[(32, 18), (64, 36)], late_window_s=0.3)
    assert stats["gen_size"] == "32x18" and show.layers.gen_size == (32, 18)
    assert {f.shape for f in sink.frames} == {(180, 320, 3)} and stats["errors"] == 0
    # the images at the new size come from the originals (the same aspect: scaled, not re-read)
    assert np.array_equal(show.images, resize_images(originals, (32, 18)))
