"""Scenes (--scenes FILE): read and checked at start, recalled live over the bus, by the keys 1-9
and from the page, saved from the show's state to a file that reads back equal."""

import logging
import threading
import time

import numpy as np
import pytest
import torch

from flowvj.audio.sources import FileSource, SilentPlayback
from flowvj.audio.synth import synth_track, write_track
from flowvj.control.scenes import DEMO, Scene, load_scenes, save_scene, scene_now
from flowvj.images import load_show_images
from flowvj.show.live.loop import LiveLoop
from flowvj.show.pipeline import Show
from flowvj.errors import UserError
from flowvj.flow import RealNVP
from test_pipeline import SHARED_IMAGES
from test_flow import perturbed

CALM = [SHARED_IMAGES / "skimage_astronaut.png", SHARED_IMAGES / "skimage_coffee.png"]
DROP = [SHARED_IMAGES / "ukui_goldfish.png", SHARED_IMAGES / "mate_nature_Aqua.jpg"]


@pytest.fixture(scope="module")
def parts(tmp_path_factory):
    assert all(path.is_file() for path in CALM + DROP), f"shared images missing under {SHARED_IMAGES}"
    torch.manual_seed(0)
    track = tmp_path_factory.mktemp("scenes") / "t.wav"
    write_track(track, synth_track(bpm=128, duration_s=12.0, seed=4))
    return perturbed(RealNVP.from_preset("tiny")), track


def scenes_file(path):
    path.write_text(f'''# two looks
[calm]
images = ["{CALM[0]}", "{CALM[1]}"]
mode = "weighted"
speed = 1.0

["drop"]   # the big one
images = ["{DROP[0]}", "{DROP[1]}"]
mode = "magellan"
interpolation = "linear"
speed = 2.5
sensitivity = 1.5
brightness = 0.5
gen_size = "64x36"
''')
    return path


def run_loop(parts, scenes, events, outputs=(), seconds=None, until=None, **options):
    """A LiveLoop on the calm images with `events` [(after_frames, name, value)] posted on its
    bus, for `seconds` or until `until(meters)`; returns the loop and the frames it showed."""
    model, track = parts
    shown, times = [], []

    class Sink:
        def show(self, frame, meters):
            shown.append((frame.copy(), meters))
            times.append(time.perf_counter())
            if until is not None and until(meters):
                loop.running = False
            while events and events[0][0] <= len(shown):
                _, name, value = events.pop(0)
                loop.bus.post(name, value, source="test")

    compositor = options.pop("compositor", None)
    show = Show(model, load_show_images(CALM, 32), mode="weighted", compositor=compositor)
    loop = LiveLoop(show, SilentPlayback(FileSource(track)), [Sink(), *outputs], fps=30,
                    image_sets={"calm": CALM}, scenes=scenes, **options)
    loop.times = times
    with loop.source:
        loop.run(seconds)
    return loop, shown


def test_a_scene_recalled_over_the_bus_sets_what_the_file_says(parts, tmp_path, caplog):
    scenes = load_scenes(scenes_file(tmp_path / "scenes.toml"))
    with caplog.at_level(logging.INFO, logger="flowvj.show.live"):
        loop, shown = run_loop(parts, scenes, [(5, "scene", "drop")], seconds=11,
                               until=lambda meters: meters["image_set"] == "drop")
    navigator = loop.show.navigator
    assert navigator.mode_name == "magellan" and navigator.interpolation == "linear"
    assert (loop.speed, loop.sensitivity, loop.brightness) == (2.5, 1.5, 0.5)
    assert loop.scene == "drop" and loop.image_set == "drop"        # the images arrived
    assert np.array_equal(loop.show.images, load_show_images(DROP, 32))
    assert max(frame.max() for frame, _ in shown[:5]) > 160
    assert max(frame.max() for frame, _ in shown[8:]) <= 128         # brightness 0.5
    # the generation size is kept (the scene's 64x36 is not built live), and the caption says so
    caption = "scene: drop (drawn at 32x32, not its 64x36)"
    assert caption in [record.getMessage() for record in caplog.records]
    assert caption in [meters["notice"] for _, meters in shown]
    assert shown[-1][1]["scene"] == "drop"


def test_the_keys_1_to_9_recall_the_scenes_in_file_order(parts, tmp_path, monkeypatch):
    monkeypatch.setenv("SDL_VIDEODRIVER", "dummy")
    monkeypatch.setenv("SDL_RENDER_DRIVER", "software")
    import pygame

    from flowvj.outputs.window import Window

    scenes = load_scenes(scenes_file(tmp_path / "scenes.toml"))
    with Window(size=(160, 90)) as window:
        pygame.event.post(pygame.event.Event(pygame.KEYDOWN, key=pygame.K_2, mod=0, unicode="2"))
        pygame.event.post(pygame.event.Event(pygame.KEYDOWN, key=pygame.K_9, mod=0, unicode="9"))
        loop, _ = run_loop(parts, scenes, [], outputs=[window], seconds=0.5)
    assert loop.scene == "drop" and loop.speed == 2.5     # 2: the second; 9: no such scene


def test_a_bar_quantised_scene_waits_for_the_bar_line(parts, tmp_path):
    class Clock:   # 120 BPM from the first frame: a bar (4 beats) every 2 s
        t0 = None

        def state(self, now_s):
            self.t0 = now_s if self.t0 is None else self.t0
            return 120.0, (now_s - self.t0) * 2.0

    scenes, clock = load_scenes(scenes_file(tmp_path / "scenes.toml")), Clock()
    loop, shown = run_loop(parts, scenes, [(5, "scene", "drop")], seconds=2.6, clock=clock, quantum=4)
    recalled = next(i for i, (_, meters) in enumerate(shown) if meters["scene"] == "drop")
    assert loop.times[recalled] - clock.t0 >= 1.95 and loop.speed == 2.5   # at the bar line, 2 s in
    assert loop.times[5] - clock.t0 < 1.9


def test_saving_the_shows_state_writes_a_file_that_loads_back_equal(parts, tmp_path):
    path = tmp_path / "new" / "scenes.toml"
    loop, _ = run_loop(parts, {}, [(3, "speed", 1.75), (3, "brightness", 0.8), (3, "mode", "explore"),
                                   (5, "save_scene", "my look")], seconds=1.0)
    assert not path.exists()      # no scene_file: the save was refused, the show went on
    loop.scene_file = path
    loop._scene_control("save_scene", "my look")
    assert not path.exists()      # written off the frame loop, not in the control's call
    loop.write_scenes()
    saved = load_scenes(path)["my look"]
    assert saved == loop.scenes["my look"]
    assert saved == Scene("my look", images=tuple(p.resolve() for p in CALM), mode="explore",
                          interpolation="slerp", speed=1.75, sensitivity=1.0, brightness=0.8,
                          gen_size=(32, 32))
    # saved again under another name and recalled: the same look, read from the file
    loop.speed = 3.0
    loop._scene_control("save_scene", "faster")
    loop.write_scenes()
    assert list(load_scenes(path)) == ["my look", "faster"]
    assert loop._scene_control("scene", 1) == "scene: my look" and loop.speed == 1.75


def test_a_scene_keeps_the_detail_amount_it_was_saved_with(parts, tmp_path):
    from flowvj.compose import Compositor

    path = tmp_path / "scenes.toml"
    compositor = Compositor((64, 64), "sharpen")
    loop, _ = run_loop(parts, {}, [(3, "detail", 0.4)], seconds=0.5, compositor=compositor)
    loop.scene_file = path
    loop._scene_control("save_scene", "soft")
    loop.write_scenes()
    assert load_scenes(path)["soft"].detail == 0.4 and "detail = 0.4" in path.read_text()
    loop.show.compositor.amount = 1.5
    assert loop._scene_control("scene", "soft") == "scene: soft" and loop.show.compositor.amount == 0.4


def test_saving_keeps_a_hand_written_files_comments_and_replaces_its_scene_in_place(tmp_path):
    path = scenes_file(tmp_path / "scenes.toml")
    before = load_scenes(path)
    changed = scene_now("calm", None, "explore", "slerp", 0.3, 0.5, 1.0, 1.0, (32, 18))
    after = save_scene(path, changed)
    text = path.read_text()
    assert text.startswith("# two looks\n") and '["drop"]   # the big one' in text
    assert list(after) == ["calm", "drop"] and after["drop"] == before["drop"]
    assert load_scenes(path) == after and after["calm"].images == DEMO


def test_a_page_select_recalls_and_the_save_button_saves(tmp_path):
    from test_web import CHROMIUM, CHROMIUM_ARGS, wait_for_controls

    from flowvj.outputs.web import WebOutput

    from playwright.sync_api import sync_playwright

    web = WebOutput(port=0, scenes=["calm", "drop"]).start()
    stop = threading.Event()

    def feed():   # the engine's frames and meters, ~30 a second
        while not stop.is_set():
            web.show(np.zeros((18, 32, 3), np.uint8), {"scene": "calm"})
            stop.wait(1 / 30)

    feeder = threading.Thread(target=feed, daemon=True)
    feeder.start()
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True,
                                                 args=CHROMIUM_ARGS)
            page = browser.new_page(viewport={"width": 480, "height": 400})
            page.goto(web.url)
            page.wait_for_function("window.flowvjFrames > 0", timeout=10_000)
            assert page.eval_on_selector_all("#scene option", "os => os.map(o => o.value)") == ["", "calm", "drop"]
            page.wait_for_function("document.getElementById('scene').value === 'calm'", timeout=5_000)
            page.select_option("#scene", "drop")
            page.fill("#scene_name", "  my look ")
            page.click("#save_scene")
            assert wait_for_controls(web, 2) == [("scene", "drop"), ("save_scene", "my look")]
            web.control_applied("save_scene", "my look", "scene saved: my look")   # the engine saved it
            page.wait_for_function("[...document.querySelectorAll('#scene option')].some(o => o.value === 'my look')",
                                   timeout=5_000)
            browser.close()
    finally:
        stop.set()
        feeder.join()
        web.close()


def test_without_scenes_the_page_hides_them_and_refuses_scene_controls():
    from flowvj.outputs.web import WebOutput

    web = WebOutput(port=0)
    for message in ({"control": "scene", "value": "drop"}, {"control": "save_scene", "value": "x"}):
        with pytest.raises(ValueError):
            web._validate(message)
    with pytest.raises(ValueError):
        WebOutput(port=0, scenes=["a"])._validate({"control": "save_scene", "value": "\x1b[31m"})
    assert '"scenes": null' in web._state_message()


@pytest.mark.parametrize("text, needles", [
    ('[drop]\nspeed = \n', ["scenes.toml: Invalid value (at line 2, column 9)"]),
    ('[drop]\nspeed = 9\n', ["scenes.toml: scene 'drop': speed 9 is out of 0..4"]),
    ('[drop]\nmood = "dark"\n', ["scenes.toml: scene 'drop': unknown field 'mood'"]),
    ('[drop]\nmode = "wild"\n', ["scenes.toml: scene 'drop': mode \"wild\" is not one of"]),
    ('[drop]\nimages = ["nowhere"]\n', ["scenes.toml: scene 'drop': images ", "nowhere does not exist"]),
    ('[drop]\nmodel = "hirse"\n', ["scenes.toml: scene 'drop': model \"hirse\" is neither a bundled model "
                                   "(lite, hires) nor a checkpoint's path"]),
    ('[drop]\nmodel = 2\n', ["scenes.toml: scene 'drop': model 2 is neither a bundled model"]),
    ('[drop]\nmodel = "gone/tuned.pt"\n',
     ["scenes.toml: scene 'drop': model ", "gone/tuned.pt does not exist"]),
])
def test_a_malformed_scenes_file_is_one_line_and_exit_2_before_the_model_loads(run_flowvj, tmp_path, text,
                                                                                 needles, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "scenes.toml").write_text(text)
    result = run_flowvj("play", "--silent", "--scenes", "scenes.toml", "--duration", "1", timeout=120)
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and all(n in result.stderr for n in needles), result.stderr
    assert "drawing at" not in result.stdout


def test_a_scene_file_not_made_yet_is_empty_and_a_broken_one_is_never_overwritten(tmp_path):
    assert load_scenes(tmp_path / "later.toml") == {}
    broken = tmp_path / "broken.toml"
    broken.write_text("[drop\n")
    with pytest.raises(UserError, match="broken.toml"):
        save_scene(broken, Scene("x", speed=1.0))
    assert broken.read_text() == "[drop\n"


def test_a_scenes_model_round_trips_through_the_file(tmp_path):
    """A bundled name stays a name; a checkpoint's path is read relative to the file and written
    back relative to it (one beside the file without a suffix as ./name, so it reads back as a path)."""
    path = tmp_path / "show" / "scenes.toml"
    path.parent.mkdir()
    path.write_text('[bundled]\nmodel = "lite"\n\n[tuned]\nmodel = "../models/mine.pt"\n')
    scenes = load_scenes(path)
    assert scenes["bundled"].model == "lite"
    assert scenes["tuned"].model == (tmp_path / "models" / "mine.pt").resolve()
    look = ("explore", "slerp", None, 1.0, 1.0, 1.0, (32, 32))
    beside = scene_now("beside", None, *look, path.parent / "mine")
    saved = save_scene(path, scene_now("hires", None, *look, "hires"), beside)
    text = path.read_text()
    assert 'model = "../models/mine.pt"' in text and 'model = "hires"' in text and 'model = "./mine"' in text
    assert load_scenes(path) == saved and saved["beside"].model == (path.parent / "mine").resolve()
    assert saved["hires"].model == "hires" and saved["tuned"] == scenes["tuned"]


def test_saving_records_the_model_only_when_it_is_not_the_default(parts, tmp_path):
    """A scene saved while the show draws with the machine's default has no model (so it stays
    portable between a CPU and a GPU machine, which each keep their own); one saved while a
    tuned checkpoint draws names it."""
    path, tuned = tmp_path / "scenes.toml", tmp_path / "tuned.pt"
    loop, _ = run_loop(parts, {}, [], seconds=0.2)
    loop.scene_file, loop.default_model_name = path, "hires"
    loop.model_name = "hires"
    loop._scene_control("save_scene", "default")
    loop.model_name = tuned
    loop._scene_control("save_scene", "tuned")
    loop.write_scenes()
    scenes = load_scenes(path)
    assert scenes["default"].model is None and scenes["tuned"].model == tuned.resolve()
    assert "model =" not in path.read_text().split("[tuned]")[0]


def test_the_audience_flag_round_trips_and_a_save_keeps_the_files_flag(tmp_path):
    """`audience = true` lets the audience choose a scene; unsaid or false, it is the VJ's alone.
    A scene saved from the page (audience unsaid) keeps the flag the file gave its name."""
    path = tmp_path / "scenes.toml"
    path.write_text('[calm]\nspeed = 0.5\naudience = true\n\n[drop]\naudience = false\n\n[vj]\nspeed = 2.0\n')
    scenes = load_scenes(path)
    assert [scenes[name].audience for name in ("calm", "drop", "vj")] == [True, False, None]
    look = ("explore", "slerp", None, 1.0, 1.0, 1.0, (32, 32))
    saved = save_scene(path, scene_now("calm", None, *look), scene_now("new", None, *look))
    assert (saved["calm"].audience, saved["drop"].audience, saved["new"].audience) == (True, False, None)
    assert load_scenes(path) == saved
    assert path.read_text().split("[drop]")[0].count("audience = true") == 1    # calm's, in place
    save_scene(path, scene_now("calm", None, *look, audience=False))             # said: it is the VJ's
    assert load_scenes(path)["calm"].audience is False


@pytest.mark.parametrize("value", ['"yes"', "1", "[true]"])
def test_an_audience_flag_that_is_not_true_or_false_is_refused_naming_the_file_and_scene(tmp_path, value):
    path = tmp_path / "scenes.toml"
    path.write_text(f"[calm]\nspeed = 0.5\n\n[drop]\naudience = {value}\n")
    with pytest.raises(UserError) as error:
        load_scenes(path)
    assert str(error.value).startswith(f"{path}: scene 'drop': audience ") and "\n" not in str(error.value)
    assert "true or false" in str(error.value)


def test_saving_the_shows_state_keeps_the_audience_flag_of_the_scene_it_replaces(parts, tmp_path):
    path = tmp_path / "scenes.toml"
    path.write_text("[drop]\nspeed = 2.0\naudience = true\n")
    loop, _ = run_loop(parts, load_scenes(path), [], seconds=0.2)
    loop.scene_file = path
    loop._scene_control("save_scene", "drop")
    loop._scene_control("save_scene", "new")
    assert loop.scenes["drop"].audience is True and loop.scenes["new"].audience is None
    loop.write_scenes()
    scenes = load_scenes(path)
    assert scenes["drop"].audience is True and scenes["new"].audience is None
