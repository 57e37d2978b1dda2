"""The audience's voice (serve --audience): phones on the audience page vote in a real headless
Chromium and real aiohttp clients, the VJ page shows the tally and its switch turns their say off,
the votes reach a real LiveLoop's navigator through the control path, the room's scene (one the
VJ allowed) is recalled only on a clear lead after the hold, the audience's token opens no VJ
control, and every message is bounded; `flowvj serve --audience` end to end."""

import asyncio
import concurrent.futures
import json
import re
import time

import aiohttp
import numpy as np
import pytest

from flowvj.control.catalog import CONTROLS, MODES
from flowvj.control.scenes import Scene
from flowvj.outputs.web import WebOutput
from flowvj.outputs.web.audience import (
    FULL_VOICE,
    MESSAGE_BURST,
    MAX_MESSAGE_BYTES,
    VOTE_INTERVAL_S,
    VOTE_TTL_S,
    VOTERS_PER_ADDRESS,
    Audience,
)
from flowvj.show.live import controls as live_controls
from flowvj.show.live.loop import LiveLoop
from flowvj.show.navigate import AUDIENCE_PICK_GAIN, MOOD_DRIVE, Navigator
from test_navigate import features, image_latents
from test_serve import StubShow, run_for
from test_web import browser  # noqa: F401  (fixture)
from test_web_controls import start_serve, stop_serve
from web_feed import feeding

IMAGES = {"demo": ["sky", "sea", "sun", "moon"], "faces": ["ann", "bob"]}
CATALOG_VALUES = {"s": "weighted", "f": 0.5, "i": 1, "": None}   # a valid value of each kind
SCENES = {"calm": Scene("calm", speed=0.5, audience=True), "drop": Scene("drop", speed=2.0, audience=True),
          "vj": Scene("vj", speed=3.0)}                          # "vj": the VJ's alone (not allowed)
ALLOWED = ["calm", "drop"]


@pytest.fixture
def web():
    """A show's page open to the network (so the VJ's token is needed too), with an audience,
    shown a frame ~30 times a second by a thread (the engine)."""
    with WebOutput(host="0.0.0.0", port=0, image_sets=list(IMAGES), audience=IMAGES) as web:
        with feeding(web, np.full((32, 32, 3), 99, np.uint8)):
            yield web


@pytest.fixture
def scened():
    """As `web`, with the scenes of SCENES, those of ALLOWED on the audience's ballot."""
    with WebOutput(host="0.0.0.0", port=0, image_sets=list(IMAGES), scenes=list(SCENES), audience=IMAGES,
                   audience_scenes=ALLOWED) as web:
        with feeding(web, np.full((32, 32, 3), 99, np.uint8)):
            yield web


def show_for(web, scenes=None):
    """A real LiveLoop (its navigator explore on four images) that takes `web`'s controls."""
    navigator = Navigator(image_latents(), mode="explore", seed=1)
    return LiveLoop(StubShow(navigator, {}), None, [web], image_sets=dict.fromkeys(IMAGES),
                    scenes=scenes), navigator


def run(coroutine, timeout_s=30):
    """The coroutine run to its end in a thread of its own: the module's Chromium (playwright's
    sync API) holds an event loop in this one."""
    with concurrent.futures.ThreadPoolExecutor(1) as thread:
        return thread.submit(asyncio.run, asyncio.wait_for(coroutine, timeout_s)).result()


async def phone(session, port, token, voter=None):
    """An audience socket and its welcome."""
    query = {"token": token, **({"voter": voter} if voter else {})}
    ws = await session.ws_connect(f"http://127.0.0.1:{port}/audience/ws", params=query)
    return ws, json.loads((await ws.receive(timeout=5)).data)


async def ballot(ws, message):
    await ws.send_str(json.dumps(message))
    return json.loads((await ws.receive(timeout=5)).data)


def vote(web, ballots):
    """Each ballot cast by a phone of its own, each from an address of its own (127.0.0.20, ...);
    returns the replies."""
    async def cast():
        replies = []
        for n, message in enumerate(ballots):
            connector = aiohttp.TCPConnector(local_addr=(f"127.0.0.{20 + n}", 0))
            async with aiohttp.ClientSession(connector=connector) as session:
                ws, _ = await phone(session, web.port, web.audience.token)
                replies.append(await ballot(ws, message))
                await ws.close()
        return replies

    return run(cast())


def drain_until(loop, done, timeout_s=10.0):
    """Drain the loop's controls (as its frames do) every 20 ms until done() or timeout_s."""
    deadline = time.monotonic() + timeout_s
    while not done() and time.monotonic() < deadline:
        loop._drain_controls()
        time.sleep(0.02)
    return done()


def counted(loop, name, n):
    """Whether the engine has the server's bias with n ballots for scene `name`."""
    return lambda: (loop.audience_bias or {}).get("scene", {}).get("counts", {}).get(name) == n


# -- in Chromium: a phone votes, the VJ page shows it, the show leans, the switch ------------

def open_pages(browser, web):  # noqa: F811
    vj = browser.new_page(viewport={"width": 800, "height": 450})
    vj.goto(f"http://127.0.0.1:{web.port}/#token={web.token}")
    audience = browser.new_page(viewport={"width": 390, "height": 844})   # a phone
    audience.goto(f"http://127.0.0.1:{web.port}/audience#token={web.audience.token}")
    audience.wait_for_function("window.flowvjAudience.choices !== null", timeout=10_000)
    return vj, audience


def test_a_phones_vote_shows_in_the_vj_pages_tally_and_leans_the_show(browser, web):  # noqa: F811
    vj, audience = open_pages(browser, web)
    try:
        audience.click('#image button[data-choice="sea"]')
        audience.click('#mood button[data-choice="intense"]')       # sent one interval later
        vj.wait_for_function("window.flowvjTally && window.flowvjTally.image.sea === 1 "
                             "&& window.flowvjTally.mood.intense === 1", timeout=15_000)
        assert "sea 1" in vj.text_content("#tally") and "intense 1" in vj.text_content("#tally")
        assert audience.is_hidden("#scene_section")                    # no scene allowed: none offered
        assert vj.get_attribute("#qr", "src").startswith("data:image/svg+xml")
        vj.click("#show_qr")
        assert vj.is_visible("#qr_screen") and web.audience_urls[0] in vj.text_content("#qr_url")
        loop, navigator = show_for(web)
        loop._drain_controls()
        # one phone of a room of FULL_VOICE: a tenth of the say, on the image it chose
        assert navigator.mode.audience.tolist() == [0, 1 / FULL_VOICE, 0, 0]
        assert navigator.mode.drive_gain == pytest.approx(1 + MOOD_DRIVE / FULL_VOICE)
        assert web.pending_controls() == [] and audience.evaluate("window.flowvjAudience.accepted") == 2
    finally:
        vj.close()
        audience.close()


def test_the_vj_pages_switch_turns_the_audiences_say_off_and_on(browser, web):  # noqa: F811
    vj, audience = open_pages(browser, web)
    loop, navigator = show_for(web)
    try:
        audience.click('#mood button[data-choice="calm"]')
        vj.wait_for_function("window.flowvjTally && window.flowvjTally.mood.calm === 1", timeout=10_000)
        loop._drain_controls()
        assert navigator.mode.drive_gain == pytest.approx(1 - MOOD_DRIVE / FULL_VOICE)
        vj.click("#audience")
        vj.wait_for_function("window.flowvjState.controls.audience === 0", timeout=5_000)
        loop._drain_controls()                               # the switch, through the control path
        assert not loop.audience_on and navigator.mode.drive_gain == 1.0 and navigator.mode.audience is None
        audience.wait_for_selector("#paused", state="visible", timeout=5_000)   # the phones are told
        audience.click('#image button[data-choice="sun"]')  # still counted, followed by nothing
        vj.wait_for_function("window.flowvjTally.image.sun === 1", timeout=10_000)
        loop._drain_controls()
        assert navigator.mode.drive_gain == 1.0 and navigator.mode.audience is None
        vj.click("#audience")
        vj.wait_for_function("window.flowvjState.controls.audience === 1", timeout=5_000)
        loop._drain_controls()
        assert loop.audience_on and navigator.mode.audience.tolist() == [0, 0, 1 / FULL_VOICE, 0]
    finally:
        vj.close()
        audience.close()


def test_the_phones_page_offers_only_the_allowed_scenes(browser, scened):  # noqa: F811
    vj, audience = open_pages(browser, scened)
    try:
        offered = audience.eval_on_selector_all("#scene button", "bs => bs.map(b => b.dataset.choice)")
        assert offered == ALLOWED and audience.is_visible("#scene_section")
        audience.click('#scene button[data-choice="drop"]')
        vj.wait_for_function("window.flowvjTally && window.flowvjTally.scene.drop === 1", timeout=15_000)
        assert "scenes: drop 1" in vj.text_content("#tally")
        assert vj.evaluate("window.flowvjTally.scene") == {"calm": 0, "drop": 1}
    finally:
        vj.close()
        audience.close()


# -- the room's scene: allowed, a clear lead, the hold, never over the VJ ------------------------

def test_the_rooms_allowed_scene_is_recalled_once_it_clearly_leads_after_the_hold(scened, monkeypatch):
    monkeypatch.setattr(live_controls, "AUDIENCE_SCENE_HOLD_S", 0.3)
    loop, _ = show_for(scened, SCENES)
    replies = vote(scened, [{"scene": "drop"}] * 3 + [{"scene": "calm"}])
    assert all(reply["accepted"] for reply in replies)
    assert drain_until(loop, lambda: loop.scene == "drop")
    assert loop.speed == 2.0 and loop.notice == "scene: drop (the audience's pick)"
    assert loop.audience_bias["scene"] == {"leader": "drop", "counts": {"calm": 1, "drop": 3}, "voters": 4}


def test_a_scene_the_vj_did_not_allow_is_refused_as_a_ballot(scened):
    replies = vote(scened, [{"scene": "vj"}, {"scene": "nowhere"}, {"scene": ["drop"]}])
    assert [reply["accepted"] for reply in replies] == [False, False, False]
    assert scened.audience.tally()["scene"] == {"calm": 0, "drop": 0}
    assert scened.audience.choices()["scene"] == ALLOWED


@pytest.mark.parametrize("counts, voters, recalled", [
    ({"drop": 3}, 3, "drop"),
    ({"drop": 2}, 2, None),                     # under AUDIENCE_SCENE_VOTES
    ({"drop": 3}, 20, None),                    # under a fifth of the room
    ({"drop": 4, "calm": 4}, 8, None),          # a tie: no clear lead
    ({"drop": 5, "calm": 4}, 9, "drop"),        # 1.25 times the second
    ({"drop": 4, "calm": 4, "vj": 9}, 17, None),    # the VJ's own scene counts for nothing
])
def test_the_engine_recalls_only_a_clear_lead_among_the_allowed_scenes(monkeypatch, counts, voters, recalled):
    monkeypatch.setattr(live_controls, "AUDIENCE_SCENE_HOLD_S", 0.0)
    loop = LiveLoop(StubShow(Navigator(image_latents(), mode="explore"), {}), None, [], scenes=SCENES)
    loop.bus.post("audience_bias", {"image_set": None, "images": [], "mood": 0.0,
                                    "scene": {"leader": max(counts, key=counts.get), "counts": counts,
                                              "voters": voters}}, source="page")
    for _ in range(3):
        loop._drain_controls()
    assert loop.scene == recalled


def test_with_the_switch_off_the_room_recalls_no_scene(scened, monkeypatch):
    monkeypatch.setattr(live_controls, "AUDIENCE_SCENE_HOLD_S", 0.2)
    loop, _ = show_for(scened, SCENES)
    loop.bus.post("audience", 0, source="page")                  # the VJ's switch
    vote(scened, [{"scene": "calm"}] * 3)
    assert drain_until(loop, counted(loop, "calm", 3))
    drain_until(loop, lambda: False, timeout_s=0.6)               # past the hold
    assert loop.scene is None and not loop.audience_on
    loop.bus.post("audience", 1, source="page")
    assert drain_until(loop, lambda: loop.scene == "calm")        # on again: the room is heard


def test_a_vjs_recall_restarts_the_hold_and_wins(scened, monkeypatch):
    hold_s = 1.0
    monkeypatch.setattr(live_controls, "AUDIENCE_SCENE_HOLD_S", hold_s)
    loop, _ = show_for(scened, SCENES)
    assert drain_until(loop, lambda: loop.audience_bias is not None)   # the hold runs from here
    time.sleep(hold_s / 2)
    vote(scened, [{"scene": "drop"}] * 3)
    loop.bus.post("scene", "vj", source="key")                    # the VJ's own choice
    vj_at = time.monotonic()
    loop._drain_controls()
    assert loop.scene == "vj" and loop.speed == 3.0
    assert drain_until(loop, counted(loop, "drop", 3)) and loop.scene == "vj"
    assert drain_until(loop, lambda: loop.scene == "drop")
    assert loop.scene_changed_s - vj_at >= hold_s                  # a whole hold after the VJ's recall


# -- the audience's token opens no VJ control -----------------------------------------------

def test_every_catalog_control_sent_on_the_audience_socket_is_refused(web):
    async def attempt():
        async with aiohttp.ClientSession() as session:
            replies = []
            for name, control in CONTROLS.items():      # a socket each: under its message rate
                ws, welcome = await phone(session, web.port, web.audience.token)
                replies.append(await ballot(ws, {"control": name, "value": CATALOG_VALUES[control.kind]}))
            await asyncio.sleep(0.3)                        # frames shown meanwhile: none comes here
            others = []
            while True:
                try:
                    others.append(await ws.receive(timeout=0.2))
                except asyncio.TimeoutError:
                    return welcome, replies, others

    welcome, replies, others = run(attempt())
    assert set(welcome) == {"type", "voter", "choices", "on", "interval_s", "refresh_s"}
    assert all(reply["type"] == "ballot" and not reply["accepted"] for reply in replies)
    assert web.audience.control_attempts == len(CONTROLS) and web.audience.accepted == 0
    assert [name for name, _ in web.pending_controls() if name != "audience_bias"] == []
    assert others == [] and web.controls["mode"] == MODES[0] and "blackout" not in web.controls


def test_the_audience_and_the_vj_each_have_a_token_of_their_own(web):
    async def status(path, token):
        async with aiohttp.ClientSession() as session:
            try:
                async with session.ws_connect(f"http://127.0.0.1:{web.port}{path}", params={"token": token}):
                    return 101
            except aiohttp.WSServerHandshakeError as error:
                return error.status

    assert web.audience.token != web.token
    assert run(status("/ws", web.audience.token)) == 403           # the QR code's token: no controls
    assert run(status("/audience/ws", web.token)) == 403
    assert run(status("/audience/ws", "")) == 403
    assert run(status("/audience/ws", web.audience.token)) == 101
    assert run(status("/ws", web.token)) == 101
    assert all("audience#token=" + web.audience.token in url for url in web.audience_urls)
    assert not any(web.token in url for url in web.audience_urls)


# -- what holds a room ------------------------------------------------------------------------

def test_one_ballot_per_phone_per_interval_and_a_forged_id_is_replaced():
    audience = Audience(list(IMAGES), IMAGES)
    voter = audience.voter()
    assert audience.voter(voter) == voter
    forged = voter.split(".")[0] + ".0123456789abcdef01234567"
    assert audience.voter(forged) != forged and audience.voter("anything") != "anything"
    assert audience.cast(voter, "10.0.0.2", {"mood": "calm"}, now=100.0)[0]
    accepted, _, retry_s = audience.cast(voter, "10.0.0.2", {"mood": "intense"}, now=101.0)
    assert not accepted and retry_s == pytest.approx(VOTE_INTERVAL_S - 1.0)
    assert audience.cast(voter, "10.0.0.2", {"mood": "intense"}, now=100.0 + VOTE_INTERVAL_S)[0]
    assert audience.tally()["mood"] == {"calm": 0, "intense": 1}
    audience.sweep(now=100.0 + VOTE_INTERVAL_S + VOTE_TTL_S)        # a ballot lasts VOTE_TTL_S
    assert audience.tally()["voters"] == 0


def test_one_address_counts_for_at_most_a_few_phones():
    audience = Audience(list(IMAGES), IMAGES)
    verdicts = [audience.cast(audience.voter(), "10.0.0.2", {"image": "sky"}, now=1.0)[0]
                for _ in range(VOTERS_PER_ADDRESS + 2)]
    assert verdicts == [True] * VOTERS_PER_ADDRESS + [False, False]
    assert audience.cast(audience.voter(), "10.0.0.3", {"image": "sky"}, now=1.0)[0]
    assert audience.tally()["image"]["sky"] == VOTERS_PER_ADDRESS + 1


@pytest.mark.parametrize("message", [{"image": "ann"}, {"mood": "angry"}, {"volume": 3}, {}, [1], "x",
                                     {"image": ["sky"]}])
def test_a_ballot_names_only_what_is_offered_now(message):
    audience = Audience(list(IMAGES), IMAGES)                     # "ann" is in the set not shown
    with pytest.raises(ValueError):
        audience.cast(audience.voter(), "10.0.0.2", message)


def test_a_few_phones_speak_with_a_smaller_voice_than_a_room():
    audience = Audience(list(IMAGES), IMAGES)
    for address, choice in (("10.0.0.2", "sea"), ("10.0.0.3", "sea"), ("10.0.0.4", "sky")):
        audience.cast(audience.voter(), address, {"image": choice, "mood": "intense"})
    bias = audience.bias()
    assert bias["images"] == [1 / FULL_VOICE, 2 / FULL_VOICE, 0, 0] and bias["mood"] == 3 / FULL_VOICE
    for n in range(20):
        audience.cast(audience.voter(), f"10.0.1.{n}", {"image": "sun", "mood": "calm"})
    bias = audience.bias()
    assert bias["images"][2] == pytest.approx(20 / 23) and bias["mood"] == pytest.approx(-17 / 23)


def test_the_audience_socket_bounds_size_rate_and_addresses(web):
    async def flood():
        async with aiohttp.ClientSession() as session:
            big, _ = await phone(session, web.port, web.audience.token)
            await big.send_str("x" * (MAX_MESSAGE_BYTES + 1))
            big_close = await big.receive(timeout=5)
            fast, _ = await phone(session, web.port, web.audience.token)
            for _ in range(MESSAGE_BURST + 5):
                await fast.send_str("{}")
            kinds = [(await fast.receive(timeout=5)) for _ in range(MESSAGE_BURST + 1)]
        verdicts = []
        for _ in range(VOTERS_PER_ADDRESS + 1):      # phones on one address (127.0.0.7)
            connector = aiohttp.TCPConnector(local_addr=("127.0.0.7", 0))
            async with aiohttp.ClientSession(connector=connector) as session:
                ws, _ = await phone(session, web.port, web.audience.token)
                verdicts.append((await ballot(ws, {"mood": "calm"}))["accepted"])
        return big_close, kinds, verdicts

    big_close, replies, verdicts = run(flood())
    assert big_close.type == aiohttp.WSMsgType.CLOSE and big_close.data == aiohttp.WSCloseCode.MESSAGE_TOO_BIG
    assert [r.type for r in replies[:MESSAGE_BURST]] == [aiohttp.WSMsgType.TEXT] * MESSAGE_BURST
    assert replies[-1].type == aiohttp.WSMsgType.CLOSE
    assert replies[-1].data == aiohttp.WSCloseCode.POLICY_VIOLATION
    assert verdicts == [True] * VOTERS_PER_ADDRESS + [False]


# -- how the navigator leans --------------------------------------------------------------------

def test_explore_picks_the_rooms_image_more_often_and_every_image_stays_possible():
    navigator = Navigator(image_latents(), mode="explore", seed=2)
    navigator.set_bias([0.0, 1.0, 0.0, 0.0])
    picks = np.bincount([navigator.mode._pick_other(0) for _ in range(6000)], minlength=4)
    expected = (1 + AUDIENCE_PICK_GAIN) / (3 + AUDIENCE_PICK_GAIN)            # 0.6 against 1/3
    assert picks[0] == 0 and picks[1] / 6000 == pytest.approx(expected, abs=0.02) and picks[2:].min() > 1000


def test_weighted_leans_its_blend_toward_the_rooms_image():
    navigator = Navigator(image_latents(), mode="weighted", temperature=0.5)
    navigator.set_bias([0.0, 0.0, 1.0, 0.0])
    run_for(navigator, 4.0)                                       # even bands: an even blend without votes
    assert navigator.mode.weights() == pytest.approx([0.2, 0.2, 0.4, 0.2], abs=0.01)


def test_the_show_without_votes_is_the_show_as_it_was():
    plain, leaned = (Navigator(image_latents(), mode=mode, seed=5) for mode in ("explore", "explore"))
    leaned.set_bias([0.0, 1.0, 0.0, 0.0], mood=1.0)
    leaned.set_bias(None, 0.0)
    a, b = run_for(plain, 3.0, kick=True, beat=True), run_for(leaned, 3.0, kick=True, beat=True)
    assert np.array_equal(a, b)


def test_an_intense_room_moves_the_travelling_modes_further():
    def travelled(mood):
        navigator = Navigator(image_latents(), mode="magellan", images_per_s=0.0, drift=0.0)
        navigator.set_bias(None, mood)
        run_for(navigator, 2.0)
        return navigator.mode.position

    assert travelled(1.0) == pytest.approx((1 + MOOD_DRIVE) * travelled(0.0))
    assert travelled(-1.0) == pytest.approx((1 - MOOD_DRIVE) * travelled(0.0))


def test_a_set_swapped_in_drops_the_old_sets_shares_and_keeps_the_mood():
    navigator = Navigator(image_latents(), mode="explore")
    navigator.set_bias([0.0, 1.0, 0.0, 0.0], mood=1.0)
    navigator.set_images(image_latents(n=3, seed=4))
    assert navigator.mode.audience is None and navigator.mode.drive_gain == 1 + MOOD_DRIVE
    navigator.step(features(0.0, 1 / 30), 1 / 30)


# -- end to end ---------------------------------------------------------------------------------

def test_flowvj_serve_audience_prints_the_phones_url_and_their_votes_reach_the_show(subprocess_env, tmp_path):
    scenes = tmp_path / "scenes.toml"
    scenes.write_text("[calm]\nspeed = 0.5\naudience = true\n\n[vj]\nspeed = 2.0\n")
    process, url = start_serve(subprocess_env, "--audience", "--scenes", scenes)
    try:
        lines = [next(process.stdout) for _ in range(2)]
        audience_url = next(re.search(r"phones open (\S+)", s)[1] for s in lines if "phones open" in s)
        assert any("--host 0.0.0.0" in line for line in lines)     # loopback: said, phones need the LAN
        port, token = re.search(r":(\d+)/audience#token=(\S+)", audience_url).groups()

        async def vote_and_switch_off():
            async with aiohttp.ClientSession() as session:
                vj = await session.ws_connect(url.replace("http://", "ws://") + "ws")
                ws, welcome = await phone(session, int(port), token)
                assert welcome["choices"]["scene"] == ["calm"]              # the file's allowed scene
                reply = await ballot(ws, {"image": welcome["choices"]["image"][0], "mood": "intense"})
                tally = notice = None
                while tally is None or tally["voters"] < 1:
                    message = await vj.receive(timeout=10)
                    if message.type == aiohttp.WSMsgType.TEXT and '"tally"' in message.data[:20]:
                        tally = json.loads(message.data)
                await vj.send_str(json.dumps({"control": "audience", "value": 0}))
                while notice != "audience: off":            # the show's caption: it took the switch
                    message = await vj.receive(timeout=10)
                    if message.type == aiohttp.WSMsgType.TEXT and '"meters"' in message.data[:20]:
                        notice = json.loads(message.data)["meters"]["notice"]
                return reply, tally

        reply, tally = run(vote_and_switch_off(), timeout_s=90)     # a busy machine: slow frames
        assert reply["accepted"] and tally["mood"]["intense"] == 1 and tally["on"] is True
    finally:
        stop_serve(process)
