"""The browser view: a real headless Chromium (Debian's, driven by playwright) opens the page of a
WebOutput on a free port and must receive frames, draw them full screen, show the meters and the
notices, and send controls back."""

import json
import logging
import socket
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest

from flowvj.errors import UserError
from flowvj.outputs.web import WebOutput

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
RED, GREEN, BLUE = (230, 20, 20), (20, 230, 20), (20, 20, 230)
BANDS = [0.8, 0.3, 0.05]


def stripes(height=32, width=32):
    """A frame with three vertical stripes: red left, green middle, blue right."""
    frame = np.empty((height, width, 3), np.uint8)
    third = width // 3
    frame[:, :third], frame[:, third:width - third], frame[:, width - third:] = RED, GREEN, BLUE
    return frame


def engine_meters(**changes):
    """Meters as the engine passes them to show (numpy types included, as the engine may)."""
    meters = {"fps": 30.0, "frame_ms": 33.3, "tempo_bpm": np.float32(124.0), "rms": 0.4,
              "bands": np.array(BANDS), "gen_size": "32x32", "mode": "weighted", "notice": "",
              "notice_id": 0}
    meters.update(changes)
    return meters


@dataclass
class Feed:
    """A started WebOutput and what the feeding thread shows it each frame (tests may swap both)."""
    web: WebOutput
    frame: np.ndarray = field(default_factory=stripes)
    meters: dict = field(default_factory=engine_meters)


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
def feed(request):
    """A started WebOutput on a free port, fed at ~30 fps by a background thread. Parametrize
    indirectly with {"size": (h, w), **WebOutput keywords} for other frames or servers."""
    options = dict(getattr(request, "param", {}))
    size = options.pop("size", (32, 32))
    feed = Feed(WebOutput(port=0, image_sets=["demo", "faces"], **options).start(), stripes(*size))
    stop = threading.Event()

    def run():
        while not stop.is_set():
            feed.web.show(feed.frame, feed.meters)
            stop.wait(1 / 30)

    feeder = threading.Thread(target=run, daemon=True)
    feeder.start()
    yield feed
    stop.set()
    feeder.join()
    feed.web.close()


@pytest.fixture
def streaming(feed):
    return feed.web


@pytest.fixture
def page(browser, feed):
    page = browser.new_page(viewport={"width": 480, "height": 270})
    page.goto(feed.web.url)
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


def text_of(page, selector):
    return page.eval_on_selector(selector, "e => e.textContent")


CAPTION_OPACITY = """() => { const c = document.getElementById('caption'), s = getComputedStyle(c);
    return s.display === 'none' ? 0 : Number(s.opacity); }"""


def test_page_receives_frames_at_the_rate_they_are_shown(page):
    start_frames = page.evaluate("window.flowvjFrames")
    time.sleep(1.0)
    received = page.evaluate("window.flowvjFrames") - start_frames
    print(f"frames delivered to the browser: {received}/s (shown at ~30/s)")
    assert received >= 20


@pytest.mark.parametrize("feed", [{}, {"size": (360, 640), "frame_encoding": "jpeg"}],
                         ids=["32x32-raw", "640x360-jpeg"], indirect=True)
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
    page.wait_for_function("document.getElementById('tempo').textContent === '124.0 BPM'", timeout=5_000)
    assert text_of(page, "#gen_size") == "32x32"
    assert text_of(page, "#fps") == "30 fps" and text_of(page, "#meter_mode") == "weighted"


def test_band_meters_draw_at_their_levels(page):
    page.wait_for_function(f"document.querySelectorAll('#levels div').length === {len(BANDS)}", timeout=5_000)
    heights = page.eval_on_selector_all("#levels div", "ds => ds.map(d => d.getBoundingClientRect().height)")
    full = page.eval_on_selector("#levels", "e => e.getBoundingClientRect().height")
    assert full == 24
    assert np.allclose(heights, np.array(BANDS) * full, atol=1.0), heights


@pytest.mark.parametrize("tempo_bpm", [None, 0.0])
def test_tempo_shows_dashes_until_it_locks(page, feed, tempo_bpm):
    page.wait_for_function("document.getElementById('tempo').textContent === '124.0 BPM'", timeout=5_000)
    feed.meters = engine_meters(tempo_bpm=tempo_bpm)
    page.wait_for_function("document.getElementById('tempo').textContent === '-- BPM'", timeout=5_000)


def test_meters_missing_keys_show_dashes(page, feed):
    feed.meters = {"fps": 25.0}
    page.wait_for_function("document.getElementById('fps').textContent === '25 fps'", timeout=5_000)
    assert text_of(page, "#tempo") == "-- BPM" and text_of(page, "#gen_size") == "--"
    assert page.eval_on_selector_all("#levels div", "ds => ds.length") == 0
    frames = page.evaluate("window.flowvjFrames")
    page.wait_for_function(f"window.flowvjFrames > {frames}", timeout=5_000)  # still drawing


def test_a_new_notice_shows_as_a_caption_then_fades(page, feed):
    feed.meters = engine_meters(notice="mode: magellan", notice_id=1)
    page.wait_for_function(f"({CAPTION_OPACITY})() > 0.9", timeout=5_000)
    assert text_of(page, "#caption") == "mode: magellan"
    page.wait_for_function(f"({CAPTION_OPACITY})() === 0", timeout=10_000)  # ~2 s, then a fade


def test_captions_checkbox_hides_notices(page, feed):
    page.uncheck("#captions")
    feed.meters = engine_meters(notice="image set: faces", notice_id=2)
    page.wait_for_function("window.flowvjNoticeId === 2", timeout=5_000)  # the page has handled it
    assert text_of(page, "#caption") != "image set: faces"
    page.wait_for_timeout(400)  # long enough for a caption's 0.15 s fade-in, were one shown
    assert page.evaluate(CAPTION_OPACITY) == 0
    page.check("#captions")
    feed.meters = engine_meters(notice="mode: explore", notice_id=3)
    page.wait_for_function(f"({CAPTION_OPACITY})() > 0.9", timeout=5_000)
    assert text_of(page, "#caption") == "mode: explore"


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


def test_a_fast_slider_drag_is_coalesced_and_keeps_the_page_connected(page, streaming):
    # 500 input events at once: sent one by one they would be over the server's message rate
    page.evaluate("""() => {
        const slider = document.getElementById('speed');
        for (let i = 1; i <= 500; i++) {
            slider.value = String(4 * i / 500);
            slider.dispatchEvent(new Event('input'));
        }
    }""")
    received, deadline = [], time.monotonic() + 5.0
    while ("speed", 4.0) not in received and time.monotonic() < deadline:
        received += streaming.pending_controls()
        time.sleep(0.02)
    assert received[-1] == ("speed", 4.0) and len(received) <= 5, received
    frames = page.evaluate("window.flowvjFrames")
    page.wait_for_function(f"window.flowvjFrames > {frames}", timeout=5_000)
    assert page.evaluate("window.flowvjSocket.readyState === WebSocket.OPEN")


def test_update_controls_from_the_engine_thread_shows_in_the_page(page, streaming):
    engine = threading.Thread(target=streaming.update_controls, args=({"mode": "magellan", "speed": 2.5},))
    engine.start()
    engine.join()
    page.wait_for_function("document.getElementById('mode').value === 'magellan'", timeout=5_000)
    assert page.eval_on_selector("#speed", "e => e.value") == "2.5"
    assert text_of(page, "output[for=speed]") == "2.50"


def test_invalid_control_messages_are_ignored_and_logged_in_one_summary(page, streaming, caplog):
    bad = ["not json", json.dumps({"control": "volume", "value": 1}),
           json.dumps({"control": "speed", "value": 99}), json.dumps({"control": "speed", "value": "fast"}),
           json.dumps({"control": "mode", "value": "chaos"}), json.dumps([1, 2]), "[" * 4000]
    with caplog.at_level(logging.WARNING, logger="flowvj.outputs.web"):
        page.evaluate("""(messages) => {
            for (const m of messages) window.flowvjSocket.send(m);
            window.flowvjSocket.send(JSON.stringify({control: 'speed', value: 2.5}));
        }""", bad)
        received = wait_for_controls(streaming, 1)
        assert received == [("speed", 2.5)]  # the valid message after the bad ones still arrives
        frames = page.evaluate("window.flowvjFrames")
        page.wait_for_function(f"window.flowvjFrames > {frames}", timeout=5_000)  # still streaming
        page.close()  # the summary of the rest comes when the page goes (or after 5 s)
        deadline = time.monotonic() + 5.0
        while len(caplog.records) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
    lines = [record.getMessage() for record in caplog.records]
    assert len(lines) == 2, lines
    assert lines[0].startswith("web output: ignored a bad message from 127.0.0.1: 'not json'")
    assert lines[1].startswith(f"web output: ignored {len(bad) - 1} bad messages from 127.0.0.1 in the last")


def test_page_reconnects_when_the_socket_drops(page):
    page.evaluate("window.flowvjSocket.close()")
    page.wait_for_function("window.flowvjSocket.readyState === WebSocket.OPEN", timeout=5_000)
    frames = page.evaluate("window.flowvjFrames")
    page.wait_for_function(f"window.flowvjFrames > {frames + 5}", timeout=5_000)


def test_page_opened_with_the_token_streams_when_bound_beyond_loopback(browser):
    with WebOutput(host="0.0.0.0", port=0) as web:
        web.show(stripes(), engine_meters())
        page = browser.new_page(viewport={"width": 480, "height": 270})
        try:
            # the token in the fragment (never sent to the server); the page passes it on /ws
            page.goto(f"http://127.0.0.1:{web.port}/#token={web.token}")
            web.show(stripes(), engine_meters())
            page.wait_for_function("window.flowvjFrames > 0", timeout=10_000)  # view.js and /ws passed
        finally:
            page.close()


@pytest.mark.parametrize("height, width", [(32, 32), (144, 256), (360, 640)])
def test_show_never_blocks_without_a_client(height, width):
    with WebOutput(port=0) as web:
        frame = stripes(height, width)
        start = time.perf_counter()
        for i in range(1000):
            web.show(frame, engine_meters(tempo_bpm=120.0 + i))
        elapsed_s = time.perf_counter() - start
    print(f"show at {width}x{height}: {elapsed_s * 1000 / 1000:.3f} ms per call")
    assert elapsed_s < 2.0, f"1,000 shows took {elapsed_s:.3f} s"


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
        assert web.urls == [web.url] and web.token is None  # loopback stays token-free
        page = urlopen(web.url, timeout=5).read().decode()
        script = urlopen(web.url + "static/view.js", timeout=5).read().decode()
    assert '<canvas id="view">' in page and "flowvjFrames" in script
