"""The stage controls on the browser page: a real `flowvj serve --silent` (MIDI from a controller
on a private JACK server, two scenes) and a real headless Chromium page. Each control is driven
by a click and by the window's key, and must be applied by the show: its line in the show's log,
its state on the page, and for blackout, freeze and brightness the frames the page draws."""

import json
import re
import signal
import subprocess
import threading
import time

import numpy as np
import pytest

from conftest import FLOWVJ
from flowvj.control.catalog import CONTROLS
from flowvj.outputs.web import CONTROL_RANGES, WebOutput
from flowvj.outputs.web.limits import Client
from flowvj.outputs.web.server import STATIC
from jack import jack, virtual_output  # noqa: F401  (fixture)
from test_midi import cc
from test_web import browser  # noqa: F401  (fixture)

SCENES = '[calm]\nspeed = 0.5\n\n[drop]\nspeed = 2.0\n'
MODES = ("weighted", "magellan", "explore")    # navigate.MODES: next_mode goes round in this order
DARK, LIT = 3, 30                              # the canvas's brightest channel, blacked out / shown


class Stage:
    """A running `flowvj serve` and a page open on it: what the show logs, what the page shows."""

    def __init__(self, process, page):
        self.process, self.page, self.lines = process, page, []
        threading.Thread(target=self._read_log, daemon=True).start()

    def _read_log(self):
        for line in self.process.stderr:
            self.lines.append(line.rstrip("\n"))

    def count(self, text):
        """How often the show has logged exactly `text` (a control applied, its caption)."""
        return self.lines.count(f"flowvj: {text}")

    def until(self, condition, what, timeout_s=8.0):
        deadline = time.monotonic() + timeout_s
        while not condition() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert condition(), f"{what}; the show's log ends: {self.lines[-8:]}"

    def logged(self, text, before):
        """Wait until the show logs `text` once more than `before` times."""
        self.until(lambda: self.count(text) > before, f"the show never applied {text!r}")

    def control(self, name):
        return self.page.evaluate(f"window.flowvjState && window.flowvjState.controls[{json.dumps(name)}]")

    def canvas(self):
        """Every 4th pixel of every 4th row of the page's canvas, as (h, w, 3) uint8, and how many
        frames the page had drawn by then."""
        width, height, frames, data = self.page.evaluate("""() => {
            const c = document.getElementById('view');
            const all = c.getContext('2d').getImageData(0, 0, c.width, c.height).data, some = [];
            for (let y = 0; y < c.height; y += 4) {
                for (let x = 0; x < c.width; x += 4) {
                    const i = 4 * (y * c.width + x);
                    some.push(all[i], all[i + 1], all[i + 2]);
                }
            }
            return [Math.ceil(c.width / 4), Math.ceil(c.height / 4), window.flowvjFrames, some];
        }""")
        return np.array(data, np.uint8).reshape(height, width, 3), frames

    def frames_after(self, frames, more=4):
        self.page.wait_for_function(f"window.flowvjFrames >= {frames + more}", timeout=10_000)

    def pressed(self, button):
        return self.page.get_attribute(button, "aria-pressed") == "true"


def start_serve(env, *args):
    """`flowvj serve --silent` on a free port, its URL read from stdout; stopped by the caller."""
    process = subprocess.Popen([str(FLOWVJ), "serve", "--silent", "--port", "0", "--duration", "100",
                                "--fps", "20", "--gen-size", "64x36", "--seed", "1",
                                # frames composed at 320x180 (raw to the page): the controls are
                                # under test here, not the cost of 720p frames on a busy machine
                                "--size", "320x180", *map(str, args)],
                               env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    for line in process.stdout:
        match = re.search(r"open (http://\S+)", line)
        if match:
            return process, match[1]
        assert time.monotonic() < deadline, "serve never printed its URL"
    process.kill()
    pytest.fail(f"serve exited with {process.wait()} before its URL: {process.stderr.read()[-3000:]}")


def stop_serve(process, stage=None):
    """SIGTERM, as a service manager stops it: the show, which no page key stopped, ends cleanly."""
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(30)
    finally:
        process.kill()
    assert process.returncode == 143
    if stage is not None:
        time.sleep(0.2)                                  # the log reader takes the last lines
        assert not any("Traceback" in line for line in stage.lines), stage.lines[-30:]


def open_page(browser, url):  # noqa: F811
    page = browser.new_page(viewport={"width": 640, "height": 480})
    page.goto(url)
    page.wait_for_function("window.flowvjFrames > 5 && window.flowvjNoticeId !== null", timeout=30_000)
    return page


@pytest.fixture(scope="module")
def controller(jack):  # noqa: F811
    port = virtual_output("stage")
    yield port
    port.close()


@pytest.fixture(scope="module")
def stage(jack, controller, browser, subprocess_env, tmp_path_factory):  # noqa: F811
    """One show for every check here: MIDI from `controller`, scenes calm (speed 0.5), drop (2)."""
    tmp_path = tmp_path_factory.mktemp("stage")
    (tmp_path / "scenes.toml").write_text(SCENES)
    env = dict(subprocess_env, JACK_DEFAULT_SERVER=jack.name, JACK_NO_START_SERVER="1")
    process, url = start_serve(env, "--midi-in", "flowvj-test:stage",
                               "--midi-map", tmp_path / "midi.toml", "--scenes", tmp_path / "scenes.toml")
    page = stage = None
    try:
        page = open_page(browser, url)
        stage = Stage(process, page)
        stage.map_path = tmp_path / "midi.toml"
        yield stage
    finally:
        if page is not None:
            page.close()
        stop_serve(process, stage)


def test_blackout_by_click_and_key_fades_the_frames_to_black_and_back(stage):
    image, frames = stage.canvas()
    assert image.max() > LIT, "the page shows no picture to black out"
    for how, expected in (("click", "blackout"), ("b", "blackout off"), ("b", "blackout"),
                          ("click", "blackout off")):
        before = stage.count(expected)
        if how == "click":
            stage.page.click("#blackout")
        else:
            stage.page.keyboard.press(how)
        stage.logged(expected, before)
        on = expected == "blackout"
        stage.until(lambda: stage.control("blackout") == int(on) and stage.pressed("#blackout") == on,
                    f"the page does not show {expected}")
        # the fade takes BLACKOUT_FADE_S (0.5 s): then every frame the page draws is black, or lit again
        stage.until(lambda: (stage.canvas()[0].max() <= DARK) if on else (stage.canvas()[0].max() > LIT),
                    f"the page's frames did not go {'black' if on else 'back to the picture'}")


def test_a_held_b_blacks_out_once(stage):
    before = stage.count("blackout")
    for _ in range(4):                               # a key held down: repeats after the first
        stage.page.keyboard.down("b")
    stage.page.keyboard.up("b")
    stage.page.click("#next_image")                  # sent after any repeat would have been
    stage.logged("next image", stage.count("next image"))
    assert stage.count("blackout") == before + 1 and stage.control("blackout") == 1
    after = stage.count("blackout off")
    stage.page.keyboard.press("b")
    stage.logged("blackout off", after)
    stage.until(lambda: stage.canvas()[0].max() > LIT, "the picture did not come back")


def test_freeze_by_click_and_key_holds_the_frames_and_brightness_dims_them(stage):
    before = stage.count("freeze")
    stage.page.click("#freeze")
    stage.logged("freeze", before)
    assert stage.pressed("#freeze") and stage.control("freeze") == 1
    stage.frames_after(stage.canvas()[1], 12)        # frames made ahead of the freeze, a fade
    held, frames = stage.canvas()
    stage.frames_after(frames)
    assert np.array_equal(stage.canvas()[0], held), "frames still change while frozen"
    assert held.max() > LIT

    # brightness: the frozen picture at half brightness is the same picture at half its level
    before = stage.count("brightness: 0.50")
    stage.page.fill("#brightness", "0.5")
    stage.logged("brightness: 0.50", before)
    assert stage.control("brightness") == 0.5
    level = held.astype(float).mean()
    stage.until(lambda: abs(stage.canvas()[0].astype(float).mean() / level - 0.5) < 0.02,
                "the frames did not dim to half their level")
    before = stage.count("brightness: 1.00")
    stage.page.fill("#brightness", "1")
    stage.logged("brightness: 1.00", before)
    stage.until(lambda: np.abs(stage.canvas()[0].astype(int) - held).max() <= 1,
                "the frames did not come back to full brightness")

    before = stage.count("freeze off")
    stage.page.keyboard.press("p")
    stage.logged("freeze off", before)
    assert not stage.pressed("#freeze") and stage.control("freeze") == 0
    stage.until(lambda: not np.array_equal(stage.canvas()[0], held), "the frames stayed frozen after p")

    before = stage.count("freeze")
    stage.page.keyboard.press("p")
    stage.logged("freeze", before)
    before = stage.count("freeze off")
    stage.page.click("#freeze")
    stage.logged("freeze off", before)


def test_next_image_by_click_n_and_space_each_press_counts(stage):
    before = stage.count("next image")
    stage.page.click("#next_image")
    stage.page.click("#next_image")                  # two within one send interval: both go
    stage.page.keyboard.press("n")
    stage.page.keyboard.press(" ")
    stage.until(lambda: stage.count("next image") == before + 4, "not every next image reached the show")


def test_next_mode_by_click_and_m_goes_round_the_modes(stage):
    mode = stage.control("mode")
    for how in ("click", "m"):
        mode = MODES[(MODES.index(mode) + 1) % len(MODES)]
        before = stage.count(f"mode: {mode}")
        if how == "click":
            stage.page.click("#next_mode")
        else:
            stage.page.keyboard.press(how)
        stage.logged(f"mode: {mode}", before)
        stage.until(lambda: stage.control("mode") == mode, f"the page does not show mode {mode}")


def test_keys_1_to_9_and_the_select_recall_scenes(stage):
    for how, scene, speed in (("2", "drop", 2.0), ("1", "calm", 0.5), ("select", "drop", 2.0)):
        before = stage.count(f"scene: {scene}")
        if how == "select":
            stage.page.select_option("#scene", scene)
        else:
            stage.page.keyboard.press(how)
        stage.logged(f"scene: {scene}", before)
        stage.until(lambda: stage.control("speed") == speed, f"scene {scene} did not set the speed")
    before = len(stage.lines)
    stage.page.keyboard.press("9")                  # no ninth scene: nothing is sent
    stage.page.keyboard.press("n")
    stage.logged("next image", stage.count("next image") - 1)
    assert not any("scene" in line for line in stage.lines[before:])


def test_keys_c_tab_and_f_switch_captions_panel_and_full_screen_on_the_page(stage):
    page = stage.page
    for expected in (False, True):
        page.keyboard.press("c")
        assert page.is_checked("#captions") is expected
    for expected in (True, False):
        page.keyboard.press("Tab")
        assert page.evaluate("document.getElementById('panel').classList.contains('off')") is expected
    for expected in (True, False):
        page.keyboard.press("f")
        page.wait_for_function(f"(document.fullscreenElement !== null) === {json.dumps(expected)}",
                               timeout=5_000)


def test_keys_are_text_while_typing_a_scene_name(stage):
    page = stage.page
    start, before = len(stage.lines), stage.count("next image")
    page.fill("#scene_name", "")
    page.focus("#scene_name")
    page.keyboard.type("bpn m2")
    assert page.input_value("#scene_name") == "bpn m2"
    page.click("#next_image")                        # after anything the typing had sent
    stage.logged("next image", before)
    applied = [line for line in stage.lines[start:]
               if line.startswith(("flowvj: blackout", "flowvj: freeze", "flowvj: next image",
                                   "flowvj: mode:", "flowvj: scene"))]
    assert applied == ["flowvj: next image"]


def test_q_and_escape_never_stop_the_show(stage):
    frames = stage.page.evaluate("window.flowvjFrames")
    stage.page.keyboard.press("q")
    stage.page.keyboard.press("Escape")
    stage.frames_after(frames, 10)
    assert stage.process.poll() is None


def learning(page, state):
    page.wait_for_function(f"document.getElementById('midi_learn').dataset.learning === '{state}'",
                           timeout=8_000)


def test_midi_learn_arms_from_the_page_and_cancels(stage):
    page = stage.page
    page.select_option("#learn_target", "next_mode")
    before = stage.count("MIDI learn: move a control for next_mode")
    page.click("#midi_learn")
    stage.logged("MIDI learn: move a control for next_mode", before)
    learning(page, "armed")
    before = stage.count("MIDI learn off")
    page.click("#midi_learn")
    stage.logged("MIDI learn off", before)
    learning(page, "")


def test_midi_learn_from_the_page_binds_the_next_knob_moved(stage, controller):
    page = stage.page
    page.select_option("#learn_target", "freeze")
    before = stage.count("MIDI learn: move a control for freeze")
    page.click("#midi_learn")
    stage.logged("MIDI learn: move a control for freeze", before)
    learning(page, "armed")
    controller.send(cc(21, 127))                     # learned, not applied
    learned = "flowvj: MIDI learn: CC 21 ch 1 -> freeze"
    stage.until(lambda: any(line.startswith(learned) for line in stage.lines), "the show did not learn CC 21")
    assert 'control = "freeze"' in stage.map_path.read_text() and stage.control("freeze") == 0
    before = stage.count("freeze")
    controller.send(cc(21, 0))
    controller.send(cc(21, 127))                     # the knob now drives freeze
    stage.logged("freeze", before)
    assert stage.control("freeze") == 1 and stage.pressed("#freeze")
    before = stage.count("freeze off")
    controller.send(cc(21, 0))
    stage.logged("freeze off", before)
    learning(page, "")                               # the show's state says learn is over


def test_midi_learn_on_a_show_without_midi_says_why(browser, subprocess_env):  # noqa: F811
    process, url = start_serve(subprocess_env)
    try:
        page = open_page(browser, url)
        stage = Stage(process, page)
        page.click("#midi_learn")
        stage.until(lambda: any("MIDI learn" in line and "--midi-in" in line for line in stage.lines),
                    "the show did not say why MIDI learn cannot arm")
        page.wait_for_function("document.getElementById('midi_learn').dataset.learning === ''", timeout=5_000)
        page.close()
    finally:
        stop_serve(process)


# -- what the server takes from a page (no browser needed) ------------------------------------------

@pytest.mark.parametrize("name, value", [
    ("blackout", 2), ("blackout", True), ("blackout", 1.0), ("freeze", "1"), ("next_image", 1),
    ("next_mode", "weighted"), ("brightness", 1.5), ("brightness", -0.1), ("brightness", 10 ** 400),
    ("midi_learn", 5), ("midi_learn", "x" * 65), ("midi_learn", "speed\n"), ("toggle_blackout", None),
])
def test_the_server_refuses_bad_stage_controls_and_keeps_going(name, value):
    web = WebOutput(port=0)
    client = Client("127.0.0.1", jpeg=False)
    web._receive(client, json.dumps({"control": name, "value": value}))
    assert web.pending_controls() == [] and client.bad.last  # one line says why


@pytest.mark.parametrize("name, value, applied", [
    ("blackout", 1, 1), ("freeze", 0, 0), ("next_image", None, None), ("next_mode", None, None),
    ("brightness", 0, 0.0), ("midi_learn", " mode=weighted ", "mode=weighted"), ("midi_learn", "", ""),
])
def test_the_server_passes_stage_controls_to_the_show(name, value, applied):
    web = WebOutput(port=0)
    client = Client("127.0.0.1", jpeg=False)
    web._receive(client, json.dumps({"control": name, "value": value}))
    assert web.pending_controls() == [(name, applied)] and client.bad.last == ""
    shown = {"blackout": 1, "freeze": 0, "brightness": 0.0, "midi_learn": None}   # None: the show says
    assert web.controls.get(name, "absent") == shown.get(name, "absent")           # actions show nothing


def test_the_pages_ranges_are_the_catalogs():
    html = (STATIC / "index.html").read_text()
    for name, (low, high) in CONTROL_RANGES.items():
        assert (low, high) == (CONTROLS[name].low, CONTROLS[name].high)
        slider = re.search(rf'<input id="{name}" data-control="{name}" type="range" '
                           r'min="([\d.]+)" max="([\d.]+)"', html)
        assert slider and (float(slider[1]), float(slider[2])) == (low, high), name
    learnable = html.split('id="learn_target"')[1].split("</select>")[0]
    for option in re.findall(r"<option>(\w+)(?:=\w+)?</option>", learnable):
        assert option in CONTROLS, option


def test_the_token_leaves_the_address_bar_and_a_reload_keeps_streaming(browser):  # noqa: F811
    with WebOutput(host="0.0.0.0", port=0) as web:
        frame = np.full((32, 32, 3), 99, np.uint8)
        page = browser.new_page(viewport={"width": 480, "height": 270})
        try:
            page.goto(f"http://127.0.0.1:{web.port}/#token={web.token}")
            for load in range(2):                    # opened with the token, then reloaded without it
                web.show(frame, {})
                page.wait_for_function("window.flowvjFrames > 0", timeout=10_000)
                assert web.token not in page.url and "token" not in page.url
                if load == 0:
                    page.reload()
        finally:
            page.close()
