"""Who may reach the browser view, and what a misbehaving client gets: real WebOutput servers on
127.0.0.1 (or 0.0.0.0) port 0, real aiohttp clients; no browser needed (test_web.py has one)."""

import asyncio
import io
import json
import logging
import threading

import aiohttp
import numpy as np
import pytest
from PIL import Image

from flowvj.outputs.web import WebOutput
from flowvj.outputs.web.server import MAX_MESSAGE_BYTES
from web_feed import feeding

FOREIGN_HOSTS = ["evil.example", "evil.example:{port}", "127.0.0.1.evil.example:{port}", "127.0.0.1:1"]
ROUTES = ["/", "/static/view.js", "/ws"]


@pytest.fixture
def web():
    with WebOutput(port=0) as web:
        yield web


@pytest.fixture
def lan_web():
    with WebOutput(host="0.0.0.0", port=0) as web:
        yield web


@pytest.fixture
def showing(web):
    """The loopback server, shown a 32x32 frame ~30 times a second by a thread (the engine)."""
    with feeding(web, np.full((32, 32, 3), 99, np.uint8)):
        yield web


def run(coroutine):
    return asyncio.run(asyncio.wait_for(coroutine, 30))


async def get(url, headers=None, session=None):
    """(status, text, response cookies) of a GET."""
    async with aiohttp.ClientSession() if session is None else _borrowed(session) as client:
        async with client.get(url, headers=headers or {}) as response:
            return response.status, await response.text(), response.cookies


class _borrowed:
    def __init__(self, session):
        self.session = session

    async def __aenter__(self):
        return self.session

    async def __aexit__(self, *exc):
        pass


async def first_state(url, session=None, **options):
    """The first message a WebSocket at `url` receives (the state), as a dict."""
    async with aiohttp.ClientSession() if session is None else _borrowed(session) as client:
        async with client.ws_connect(url, **options) as ws:
            message = await ws.receive(timeout=10)
            return json.loads(message.data)


async def handshake_status(url, **options):
    try:
        await first_state(url, **options)
    except aiohttp.WSServerHandshakeError as error:
        return error.status
    return 101


async def until_closed(ws):
    """Read (and drop) what a WebSocket receives until it closes; returns its close code."""
    while True:
        message = await ws.receive(timeout=15)
        if message.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSING, aiohttp.WSMsgType.CLOSED,
                            aiohttp.WSMsgType.ERROR):
            return ws.close_code


def warnings_logged(caplog):
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]


# -- Origin and Host --------------------------------------------------------------------------

@pytest.mark.parametrize("origin", ["http://evil.example", "http://127.0.0.1:1", "null",
                                    "https://127.0.0.1:{port}"])
def test_a_websocket_from_a_foreign_origin_is_refused(web, origin):
    origin = origin.format(port=web.port)
    assert run(handshake_status(web.url + "ws", origin=origin)) == 403
    status, text, _ = run(get(web.url + "ws", {"Origin": origin}))
    assert status == 403 and text.startswith("flowvj: refused: Origin") and text.count("\n") == 1


@pytest.mark.parametrize("name", ["127.0.0.1", "localhost"])
def test_a_websocket_from_the_pages_own_origin_is_accepted(web, name):
    url = f"http://{name}:{web.port}/ws"
    state = run(first_state(url, origin=f"http://{name}:{web.port}"))
    assert state["type"] == "state" and state["controls"]["mode"] == "weighted"


def test_a_program_without_origin_is_accepted_on_loopback(web):
    assert run(first_state(web.url + "ws"))["type"] == "state"  # aiohttp sends no Origin


@pytest.mark.parametrize("route", ROUTES)
@pytest.mark.parametrize("host", FOREIGN_HOSTS)
def test_a_foreign_host_name_is_refused_on_every_route(web, route, host):
    # DNS rebinding: the browser connected to 127.0.0.1, but for a name that is not ours
    status, text, _ = run(get(f"http://127.0.0.1:{web.port}{route}", {"Host": host.format(port=web.port)}))
    assert status == 403 and text.startswith("flowvj: refused: Host"), text


@pytest.mark.parametrize("route", ROUTES[:2])
def test_loopback_names_with_the_port_are_served(web, route):
    for host in (f"127.0.0.1:{web.port}", f"localhost:{web.port}", f"[::1]:{web.port}"):
        status, _, _ = run(get(f"http://127.0.0.1:{web.port}{route}", {"Host": host}))
        assert status == 200, host


def test_refusals_are_logged_in_a_summary_not_one_line_each(caplog):
    async def thirty(url):
        async with aiohttp.ClientSession() as session:
            return [(await get(url, {"Host": "evil.example"}, session))[0] for _ in range(30)]

    with caplog.at_level(logging.WARNING, logger="flowvj.outputs.web"):
        with WebOutput(port=0) as web:
            assert run(thirty(web.url)) == [403] * 30
    lines = warnings_logged(caplog)
    # the first at once, the rest summed up at close (or, were this machine very slow, every 5 s)
    assert lines[0].startswith("web output: refused a request: 127.0.0.1 GET /: Host 'evil.example'")
    assert 2 <= len(lines) <= 3, lines
    assert 1 + sum(int(line.split()[3]) for line in lines[1:]) == 30, lines


# -- bound beyond loopback: the token ---------------------------------------------------------

def test_urls_name_the_machine_with_the_token_when_bound_beyond_loopback(lan_web):
    assert lan_web.token and len(lan_web.token) >= 16
    assert lan_web.urls and lan_web.url == lan_web.urls[0]
    for url in lan_web.urls:
        # in the fragment: a browser never sends it (not in a request line, not in a Referer)
        assert "0.0.0.0" not in url and url.endswith(f":{lan_web.port}/#token={lan_web.token}")


def test_a_page_on_another_machine_opens_the_printed_url_and_gets_jpeg_frames(lan_web):
    # the machine's own LAN address stands for another machine: the peer is not loopback
    if lan_web.urls[0].startswith("http://127.0.0.1:"):
        pytest.fail(f"no LAN address found for 0.0.0.0 (urls {lan_web.urls}): this test needs one")
    lan_web.show(np.zeros((144, 256, 3), np.uint8), {})

    async def first_frame():
        async with aiohttp.ClientSession() as browser:
            status, _, _ = await get(lan_web.url, session=browser)
            origin = lan_web.url.split("/#")[0]
            # as view.js does: the token from the fragment, on the WebSocket's URL
            async with browser.ws_connect(f"{origin}/ws?token={lan_web.token}", origin=origin) as ws:
                while (message := await ws.receive(timeout=10)).type != aiohttp.WSMsgType.BINARY:
                    pass
                return status, message.data

    status, frame = run(first_frame())
    assert status == 200 and frame[4] == 1 and frame[5:7] == b"\xff\xd8"  # encoding 1: a JPEG


def test_loopback_urls_carry_no_token(web):
    assert web.token is None and web.urls == [f"http://127.0.0.1:{web.port}/"]


@pytest.mark.parametrize("token", [None, "", "wrong"])
def test_without_the_token_the_websocket_is_refused(lan_web, token):
    query = "" if token is None else f"?token={token}"
    status, text, _ = run(get(f"http://127.0.0.1:{lan_web.port}/ws{query}"))
    assert status == 403 and "#token=" in text
    assert run(handshake_status(f"http://127.0.0.1:{lan_web.port}/ws{query}")) == 403


def test_the_page_and_its_files_are_served_without_the_token_and_set_no_cookie(lan_web):
    # the token arrives in the fragment, which the browser keeps to itself: the page must load
    # without it; and no cookie, which every other port of this host would be sent (access.py)
    base = f"http://127.0.0.1:{lan_web.port}"

    async def visit():
        async with aiohttp.ClientSession() as browser:
            async with browser.get(f"{base}/") as page, browser.get(f"{base}/static/view.js") as script:
                return page.status, "Set-Cookie" in page.headers, script.status, await script.text()

    page_status, page_cookie, script_status, script = run(visit())
    assert page_status == 200 and script_status == 200 and "flowvjFrames" in script
    assert not page_cookie


def test_with_the_token_on_its_url_the_websocket_is_served(lan_web):
    state = run(first_state(f"http://127.0.0.1:{lan_web.port}/ws?token={lan_web.token}"))
    assert state["type"] == "state"


def test_the_token_does_not_excuse_a_foreign_origin(lan_web):
    url = f"http://127.0.0.1:{lan_web.port}/ws?token={lan_web.token}"
    assert run(handshake_status(url, origin="http://evil.example")) == 403


# -- misbehaving clients ----------------------------------------------------------------------

def test_a_junk_flood_drops_the_sender_logs_two_lines_and_other_pages_keep_receiving(showing, caplog):
    url = showing.url + "ws"

    async def flood():
        async with aiohttp.ClientSession() as session:
            async with session.ws_connect(url) as bystander, session.ws_connect(url) as flooder:
                for i in range(2000):
                    try:
                        await flooder.send_str(f"junk {i}")
                    except ConnectionError:  # dropped while still sending
                        break
                code = await until_closed(flooder)
                frames = 0
                while frames < 10:  # the show goes on for the other page
                    message = await bystander.receive(timeout=10)
                    assert message.type != aiohttp.WSMsgType.CLOSE
                    frames += message.type == aiohttp.WSMsgType.BINARY
                return code

    with caplog.at_level(logging.WARNING, logger="flowvj.outputs.web"):
        code = run(flood())
    assert code == 1008
    lines = warnings_logged(caplog)
    print("\n".join(lines))
    assert len(lines) == 2, lines
    assert lines[0].startswith("web output: ignored a bad message from 127.0.0.1: 'junk 0'")
    assert "dropped the page: more than 50 messages/s" in lines[1]


def test_an_oversize_message_drops_the_sender(showing, caplog):
    async def oversize():
        async with aiohttp.ClientSession() as session:
            async with session.ws_connect(showing.url + "ws") as ws:
                await ws.send_str(json.dumps({"control": "mode", "value": "x" * MAX_MESSAGE_BYTES}))
                code = await until_closed(ws)
        return code, await first_state(showing.url + "ws")  # the server still serves

    with caplog.at_level(logging.WARNING, logger="flowvj.outputs.web"):
        code, state = run(oversize())
    assert code == 1009 and state["type"] == "state"
    lines = warnings_logged(caplog)
    assert len(lines) == 1 and lines[0].startswith("web output: dropped the page at 127.0.0.1"), lines
    assert showing.pending_controls() == []


def test_controls_at_a_sane_rate_are_all_accepted(web):
    async def clicks():
        async with aiohttp.ClientSession() as session:
            async with session.ws_connect(web.url + "ws") as ws:
                for i in range(80):  # a burst: well within the allowance
                    await ws.send_str(json.dumps({"control": "speed", "value": i / 20}))
                await ws.send_str(json.dumps({"control": "mode", "value": "explore"}))
                while ("mode", "explore") not in web.pending_controls()[-1:]:
                    await asyncio.sleep(0.02)
                return ws.closed

    assert run(clicks()) is False
    assert web.controls["speed"] == 79 / 20 and web.controls["mode"] == "explore"


# -- what the engine calls --------------------------------------------------------------------

def test_update_controls_from_the_engine_thread_reaches_every_page(web):
    async def two_pages():
        async with aiohttp.ClientSession() as session:
            async with session.ws_connect(web.url + "ws") as one, session.ws_connect(web.url + "ws") as two:
                for ws in (one, two):
                    assert json.loads((await ws.receive(timeout=10)).data)["controls"]["mode"] == "weighted"
                engine = threading.Thread(target=web.update_controls, args=({"mode": "magellan", "speed": 2.0},))
                engine.start()
                engine.join()
                return [json.loads((await ws.receive(timeout=10)).data) for ws in (one, two)]

    for state in run(two_pages()):
        assert state["type"] == "state"
        assert state["controls"]["mode"] == "magellan" and state["controls"]["speed"] == 2.0
    assert web.pending_controls() == []  # the engine's own change is not sent back to it


@pytest.mark.parametrize("size, encoding, kind", [
    ((320, 180), "auto", 0), ((320, 180), "jpeg", 1), ((1280, 720), "auto", 1), ((1280, 720), "raw", 0)])
def test_frames_go_raw_to_loopback_up_to_320x180_and_as_jpeg_above_or_when_asked(size, encoding, kind):
    # the compositor's 720p frames go as JPEG to loopback pages too (server.py's docstring says why)
    width, height = size
    frame = np.zeros((height, width, 3), np.uint8)
    frame[:, :width // 2] = (200, 40, 40)
    frame[:, width // 2:] = (40, 40, 200)

    async def one_frame(url):
        async with aiohttp.ClientSession() as session:
            async with session.ws_connect(url) as ws:
                while True:
                    message = await ws.receive(timeout=10)
                    if message.type == aiohttp.WSMsgType.BINARY:
                        return message.data

    with WebOutput(port=0, frame_encoding=encoding) as web:
        web.show(frame, {})
        data = run(one_frame(web.url + "ws"))
    header = int.from_bytes(data[:2], "little"), int.from_bytes(data[2:4], "little"), data[4]
    assert header == (width, height, kind)
    if kind == 0:
        assert np.array_equal(np.frombuffer(data[5:], np.uint8).reshape(frame.shape), frame)
    else:
        decoded = np.asarray(Image.open(io.BytesIO(data[5:])).convert("RGB")).astype(int)
        assert len(data) < frame.nbytes / 10
        # quality 90; full chroma up to 320x180, 4:2:0 above (off the colour edge: as exact)
        edge = slice(width // 2 - 16, width // 2 + 16) if width * height > 320 * 180 else slice(0, 0)
        decoded[:, edge] = frame[:, edge]
        assert np.abs(decoded - frame).max() <= 4
