"""Live controls that act: next_image in every mode, speed, sensitivity and temperature in the live
loop, and `serve` end to end: a real LiveLoop feeding a WebOutput, a real headless Chromium page
receiving its frames and sending controls that switch the loop's navigator."""

import logging
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
from flowvj.show.navigate import Navigator
from test_pipeline import image_files  # noqa: F401  (fixture)
from test_flow import perturbed
from test_navigate import features, image_latents, mean_norm, steps
from test_web import browser  # noqa: F401  (fixture)

DT = 1 / 60


def nearest(navigator):
    """Index of the image latent nearest the navigator's position r."""
    return int(np.argmin(np.linalg.norm(navigator.image_latents - navigator.r, axis=1)))


def run_for(navigator, seconds, **feature_args):
    return np.stack([navigator.step(features(i * DT, DT, **feature_args), DT) for i in range(round(seconds / DT))])


# mode -> (options, Features that hold the picture on one image, the image it settles on)
SETTLED = {
    "weighted": ({"temperature": 0.02}, {"band_energy": (0.2, 0.9, 0.2, 0.2)}, 1),
    "magellan": ({"images_per_s": 0.0}, {}, 0),                       # no travel of its own
    "explore": ({}, {"rms_smooth": 0.0}, 0),                          # no morph, no beats: home
}


@pytest.mark.parametrize("mode", list(SETTLED))
def test_next_image_heads_for_the_next_image_with_no_jump(mode):
    options, held, start = SETTLED[mode]
    latents = image_latents()
    nav = Navigator(latents, mode=mode, seed=3, **options)
    run_for(nav, 2.0, **held)
    assert nearest(nav) == start
    zs = [nav.r.reshape(latents.shape[1:]).astype(np.float32)[None]]
    for expected in (start + 1, start + 2):
        nav.next_image()
        zs.append(run_for(nav, 2.0, **held))
        assert nearest(nav) == expected % len(latents), f"{mode}: did not reach image {expected}"
    # image to image is ~1.4x the norm; at 60 fps no frame moves 6% of it (an uncross-faded jump: ~20%)
    assert steps(np.concatenate(zs)).max() / mean_norm(latents) < 0.06


def test_next_image_during_a_mode_switch_keeps_that_fade():
    nav = Navigator(image_latents(), mode="explore")
    nav.set_mode("magellan")
    nav.step(features(0, DT), DT)
    fading = nav._old_mode
    nav.next_image()
    assert nav._old_mode is fading and nav.mode_name == "magellan"


class StubShow(Show):
    """A Show without a model: fixed Features from a stub analyzer (at t = 10 s, past the
    navigator's warm-up), a real Navigator, z as frame."""

    def __init__(self, navigator, feature_args):
        self.navigator, self.features, self.sample_rate = navigator, None, 44100
        self.analyzer = type("A", (), {"process": staticmethod(lambda block: features(10.0, DT, **feature_args))})()
        self.generator = type("G", (), {"decode": staticmethod(lambda z: z), "bad_frames": 0,
                                        "shape": (3, 4, 4)})()
        self.compositor = self.layers = self.originals = None       # frames stay z


def travelled(speed=1.0, sensitivity=1.0, seconds=2.0):
    """Images magellan travels in `seconds` of live frames at 30 fps with these controls."""
    nav = Navigator(image_latents(), mode="magellan", images_per_s=0.25, drift=0.0, flux_speed=0.0)
    loop = LiveLoop(StubShow(nav, {"rms_smooth": 0.5}), None, [])
    loop._apply("speed", speed)
    loop._apply("sensitivity", sensitivity)
    for _ in range(round(seconds * 30)):
        loop._next_frame(np.zeros(1470, np.float32), 1 / 30)
    return nav.mode.position, loop


def test_speed_scales_the_navigators_clock_and_zero_freezes_it():
    normal, _ = travelled()
    # 0.25 images/s at average loudness, less the activity's 0.05 s rise from 0 at the start
    assert normal == pytest.approx(0.5, rel=0.03)
    assert travelled(speed=2.0)[0] == pytest.approx(2 * normal, rel=0.02)
    frozen, loop = travelled(speed=0.0)
    assert frozen == 0.0 and np.allclose(loop.show.navigator.r, loop.show.navigator.image_latents[0])


def test_sensitivity_is_a_gain_on_the_levels_the_navigator_and_meters_see():
    normal, _ = travelled()
    louder, loop = travelled(sensitivity=2.0)
    assert louder == pytest.approx(2 * normal)               # magellan travels with 2 x rms_smooth
    assert loop.show.features.rms_smooth == pytest.approx(1.0) and loop.stage.heard.rms_smooth == 0.5
    assert loop._meters()["rms"] == pytest.approx(1.0)
    assert travelled(sensitivity=0.0)[0] == 0.0              # deaf (drift 0): no travel


def test_temperature_applies_to_weighted_and_survives_mode_switches(caplog):
    nav = Navigator(image_latents(), mode="weighted")
    loop = LiveLoop(StubShow(nav, {}), None, [])
    loop._apply("temperature", 0.5)
    assert nav.mode.temperature == 0.5
    loop._apply("mode", "magellan")
    loop._apply("temperature", 0.7)                          # remembered while another mode runs
    loop._apply("next_mode")                                 # magellan -> explore
    loop._apply("mode", "weighted")
    assert nav.mode_name == "weighted" and nav.mode.temperature == 0.7
    with caplog.at_level(logging.INFO, logger="flowvj.show.live"):
        loop._apply("temperature", 0.0)                      # invalid: logged, nothing changes
        loop._apply("volume", 3)
        caption = loop._apply("image_set", "faces")         # says why, on screen too
        loop._apply("speed", -1)
    assert nav.mode.temperature == 0.7 and loop.speed == 1.0
    assert len([r for r in caplog.records if "ignored control" in r.getMessage()]) == 3
    assert caption.startswith("no image set 'faces'; offered: ")


@pytest.fixture(scope="module")
def serving(image_files, tmp_path_factory):  # noqa: F811
    """A LiveLoop (explore, tiny perturbed model, a silent 30 s synth track, composed to 640x360)
    feeding a WebOutput on a free port from a background thread; stopped at the end."""
    from flowvj.compose import Compositor
    from flowvj.outputs.web import WebOutput

    torch.manual_seed(0)
    model = perturbed(RealNVP.from_preset("tiny"))
    track = tmp_path_factory.mktemp("serve") / "t.wav"
    write_track(track, synth_track(bpm=128, duration_s=30.0, seed=4))
    show = Show(model, load_show_images(image_files, 32), mode="explore", compositor=Compositor((640, 360)),
                originals=load_show_images(image_files, (640, 360)))
    sets = {"picks": image_files, "two": image_files[:2]}
    web = WebOutput(port=0, controls={"mode": "explore"}, image_sets=list(sets)).start()
    source = SilentPlayback(FileSource(track)).start()
    loop = LiveLoop(show, source, [web], fps=20, image_sets=sets)
    result = {}
    thread = threading.Thread(target=lambda: result.update(loop.run(duration_s=40)), daemon=True)
    thread.start()
    yield loop, web
    loop.running = False
    thread.join(10)
    web.close()
    assert not thread.is_alive() and result["frames"] > 10 and result["bad_frames"] == 0


def test_serve_end_to_end_frames_reach_the_page_and_its_controls_drive_the_loop(browser, serving):  # noqa: F811
    loop, web = serving
    navigator = loop.show.navigator
    page = browser.new_page(viewport={"width": 320, "height": 180})
    try:
        page.goto(web.url)
        page.wait_for_function("window.flowvjFrames > 0", timeout=15_000)
        start = page.evaluate("window.flowvjFrames")
        page.wait_for_function(f"window.flowvjFrames >= {start + 10}", timeout=10_000)
        pixels = np.array(page.evaluate("""() => {
            const c = document.getElementById('view');
            return Array.from(c.getContext('2d').getImageData(0, 0, c.width, c.height).data);
        }""")).reshape(-1, 4)[:, :3]
        assert pixels.max() > 30 and pixels.std() > 5, "the canvas is blank"
        assert page.evaluate("window.flowvjFrameSize") == [640, 360]     # the compositor's, as sent

        def until(condition, what, timeout_s=5.0):
            deadline = time.monotonic() + timeout_s
            while not condition() and time.monotonic() < deadline:
                time.sleep(0.05)
            assert condition(), what

        page.select_option("#mode", "weighted")
        until(lambda: navigator.mode_name == "weighted", "mode weighted did not reach the navigator")
        page.fill("#temperature", "0.5")
        until(lambda: navigator.mode.temperature == 0.5, "temperature did not reach the weighted mode")
        page.fill("#speed", "2")
        page.fill("#sensitivity", "1.5")
        until(lambda: (loop.speed, loop.sensitivity) == (2.0, 1.5), "speed/sensitivity did not reach the loop")
        page.fill("#detail", "0.5")
        until(lambda: loop.show.compositor.amount == 0.5, "detail did not reach the compositor")
        page.select_option("#mode", "magellan")
        until(lambda: navigator.mode_name == "magellan", "mode magellan did not reach the navigator")
        assert loop.temperature == 0.5
        n_before = len(navigator.image_latents)
        page.select_option("#image_set", "two")              # loaded and encoded off the frame loop
        until(lambda: len(navigator.image_latents) == 2 != n_before, "image set 'two' did not reach the navigator")
        assert len(loop.show.layers) == 2 and loop.show.originals.shape == (2, 360, 640, 3)   # made with it
        assert np.allclose(navigator.image_latents, loop.show.generator.encode(
            load_show_images(loop.image_sets["two"], 32)).reshape(2, -1), atol=1e-5)
        frames = page.evaluate("window.flowvjFrames")
        page.wait_for_function(f"window.flowvjFrames > {frames + 5}", timeout=5_000)   # still streaming
    finally:
        page.close()
