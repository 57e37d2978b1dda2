"""The browser view: a real headless Chromium (Debian's, driven by playwright) opens the page of a
WebOutput on a free port and must receive frames, draw them full screen, and send controls back."""

import json
import logging
import socket
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from flowvj.errors import UserError
from flowvj.outputs.web import WebOutput

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
RED, GREEN, BLUE = (230, 20, 20), (20, 230, 20), (20, 20, 230)


def stripes(height=32, width=32):
    """A frame with three vertical stripes: red left, green middle, blue right."""
    frame = np.empty((height, width, 3), np.uint8)
    third = width // 3
    frame[:, :third], frame[:, third:width - third], frame[:, width - third:] = RED, GREEN, BLUE
    return frame


@pytest.fixture(scope="module")
def browser():
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: `make setup` installs Debian's chromium (as root), "
                    "which the browser-view test drives")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True,
                                             args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def streaming():
    """A started WebOutput on a free port, fed stripes at ~30 fps with meters by a background thread."""
    web = WebOutput(port=0, image_sets=["demo", "faces"]).start()
    stop = threading.Event()

    def feed():
        frame = stripes()
        while not stop.is_set():
            web.show(frame, {"fps": 30.0, "tempo_bpm": np.float32(124.0), "levels": np.array([0.8, 0.3])})
            stop.wait(1 / 30)

    feeder = threading.Thread(target=feed, daemon=True)
    feeder.start()
    yield web
    stop.set()
    feeder.join()
    web.close()


@pytest.fixture
def page(browser, streaming):
    page = browser.new_page(viewport={"width": 480, "height": 270})
    page.goto(streaming.url)
    page.wait_for_function("window.flowvjFrames > 0", timeout=10_000)
    yield page
    page.close()


def wait_for_controls(web, count, timeout_s=5.0):
    """The first `count` controls drained from web.pending_controls() within timeout_s."""
    received, deadline = [], time.monotonic() + timeout_s
    while len(received) < count and time.monotonic() < deadline:
        received += web.pending_controls()
        time.sleep(0.02)
    return received


def test_page_receives_frames_at_the_rate_they_are_shown(page):
    start_frames = page.evaluate("window.flowvjFrames")
    time.sleep(1.0)
    received = page.evaluate("window.flowvjFrames") - start_frames
    print(f"frames delivered to the browser: {received}/s (shown at ~30/s)")
    assert received >= 20


def test_canvas_shows_the_frame_scaled_to_fill_the_screen(page):
    pixels = page.evaluate("""() => {
        const c = document.getElementById('view'), g = c.getContext('2d'), y = c.height >> 1;
        return [0.05, 0.5, 0.95].map(f => Array.from(g.getImageData(Math.floor(c.width * f), y, 1, 1).data));
    }""")
    size = page.evaluate("[document.getElementById('view').width, document.getElementById('view').height]")
    assert size == [480, 270]  # the canvas fills the viewport (device pixel ratio 1)
    for pixel, colour in zip(pixels, (RED, GREEN, BLUE)):
        assert np.abs(np.array(pixel[:3]) - colour).max() <= 12, (pixels, colour)


def test_state_fills_the_image_sets_and_meters_show(page):
    assert page.eval_on_selector_all("#image_set option", "os => os.map(o => o.value)") == ["demo", "faces"]
    page.wait_for_function("document.getElementById('tempo').textContent === '124.0 bpm'", timeout=5_000)
    assert page.eval_on_selector_all("#levels div", "ds => ds.length") == 2


def test_control_changes_in_the_page_reach_pending_controls(page, streaming):
    called = []
    streaming.on_control = lambda name, value: called.append((name, value))
    page.select_option("#mode", "explore")
    page.fill("#temperature", "0.5")  # sets a range input's value and fires input + change
    page.select_option("#image_set", "faces")
    received = wait_for_controls(streaming, 3)
    assert received == [("mode", "explore"), ("temperature", 0.5), ("image_set", "faces")]
    assert called == received
    assert streaming.controls["mode"] == "explore"


def test_invalid_control_messages_are_logged_and_ignored(page, streaming, caplog):
    bad = ["not json", json.dumps({"control": "volume", "value": 1}),
           json.dumps({"control": "speed", "value": 99}), json.dumps({"control": "speed", "value": "fast"}),
           json.dumps({"control": "mode", "value": "chaos"}), json.dumps([1, 2])]
    with caplog.at_level(logging.WARNING, logger="flowvj.outputs.web"):
        page.evaluate("""(messages) => {
            for (const m of messages) window.flowvjSocket.send(m);
            window.flowvjSocket.send(JSON.stringify({control: 'speed', value: 2.5}));
        }""", bad)
        received = wait_for_controls(streaming, 1)
    assert received == [("speed", 2.5)]  # the valid message after the bad ones still arrives
    assert sum("ignored control message" in r.getMessage() for r in caplog.records) == len(bad)
    frames = page.evaluate("window.flowvjFrames")
    page.wait_for_function(f"window.flowvjFrames > {frames}", timeout=5_000)  # still streaming


def test_page_reconnects_when_the_socket_drops(page):
    page.evaluate("window.flowvjSocket.close()")
    page.wait_for_function("window.flowvjSocket.readyState === WebSocket.OPEN", timeout=5_000)
    frames = page.evaluate("window.flowvjFrames")
    page.wait_for_function(f"window.flowvjFrames > {frames + 5}", timeout=5_000)


def test_show_never_blocks_without_a_client():
    with WebOutput(port=0) as web:
        frame = stripes()
        start = time.perf_counter()
        for i in range(1000):
            web.show(frame, {"tempo_bpm": 120.0 + i})
        elapsed_s = time.perf_counter() - start
    assert elapsed_s < 0.5, f"1,000 shows took {elapsed_s:.3f} s"


def test_port_in_use_is_a_user_error_naming_port():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(UserError, match=f"--port {port}") as error:
            WebOutput(port=port).start()
    assert "\n" not in str(error.value)


def test_port_zero_picks_a_free_port_and_serves_the_page():
    from urllib.request import urlopen

    with WebOutput(port=0) as web:
        assert web.port != 0 and web.url == f"http://127.0.0.1:{web.port}/"
        page = urlopen(web.url, timeout=5).read().decode()
        script = urlopen(web.url + "static/view.js", timeout=5).read().decode()
    assert '<canvas id="view">' in page and "flowvjFrames" in script
