"""OSC in and out (issue 14): /flowvj/<control> messages reach the live loop's control bus,
bad ones are dropped with a rate-limited warning, telemetry leaves on a non-blocking socket,
and `flowvj play --osc-port --osc-send` does both in a real show. Real UDP on 127.0.0.1 and
python-osc clients and servers throughout."""

import json
import logging
import socket
import subprocess
import threading
import time

import pytest
from pythonosc.dispatcher import Dispatcher
from pythonosc.osc_bundle_builder import OscBundleBuilder
from pythonosc.osc_message_builder import OscMessageBuilder
from pythonosc.osc_server import BlockingOSCUDPServer
from pythonosc.udp_client import SimpleUDPClient

from conftest import FLOWVJ
from flowvj.audio.synth import synth_track, write_track
from flowvj.control import CONTROLS, ControlBus
from flowvj.control.osc import OscInput, OscTelemetry, addresses, parse_port, parse_target
from flowvj.errors import UserError
from test_bad_input import one_line_error
from osc_show import read_osc_port


def wait_for(condition, timeout_s=5.0):
    """Poll until condition() holds (UDP on loopback arrives in well under a millisecond; the
    deadline only keeps a broken test from hanging)."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.005)


class Lines(logging.Handler):
    """The warning lines one logger writes, kept (caplog misses them once the CLI, run in this
    process by another test, has stopped flowvj's logger propagating)."""

    def __init__(self):
        super().__init__(logging.WARNING)
        self.lines = []

    def emit(self, record):
        self.lines.append(record.getMessage())


@pytest.fixture
def osc_warnings():
    logger, handler = logging.getLogger("flowvj.control.osc"), Lines()
    logger.addHandler(handler)
    yield handler.lines
    logger.removeHandler(handler)


@pytest.fixture
def listening():
    """(bus, OscInput on a free port, a client sending to it); closed afterwards."""
    bus = ControlBus()
    with OscInput(bus, port=0) as osc:
        yield bus, osc, SimpleUDPClient("127.0.0.1", osc.port)


class Receiver:
    """A real OSC server on a free loopback port, keeping (address, args) of all it gets."""

    def __init__(self):
        self.messages = []
        dispatcher = Dispatcher()
        dispatcher.set_default_handler(lambda address, *args: self.messages.append((address, args)))
        self.server = BlockingOSCUDPServer(("127.0.0.1", 0), dispatcher)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True).start()

    def of(self, address):
        return [args for a, args in list(self.messages) if a == address]

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver():
    r = Receiver()
    yield r
    r.close()


# -- in ----------------------------------------------------------------------------------------

def test_each_valid_control_is_posted_typed_from_osc(listening):
    bus, osc, client = listening
    sent = [("/flowvj/mode", "magellan"), ("/flowvj/speed", 2), ("/flowvj/temperature", 0.5),
            ("/flowvj/blackout", 1.0), ("/flowvj/freeze", True), ("/flowvj/brightness", 0),
            ("/flowvj/image_set", "night"), ("/flowvj/scene", "drop"), ("/flowvj/next_image", []),
            ("/flowvj/next_mode", 1.0), ("/flowvj/next_mode", 0.0)]   # the last: a button's release
    for address, value in sent:
        client.send_message(address, value)
    wait_for(lambda: osc.received == len(sent))
    events = bus.drain()
    assert [(e.name, e.value) for e in events] == [
        ("mode", "magellan"), ("speed", 2.0), ("temperature", 0.5), ("blackout", 1), ("freeze", 1),
        ("brightness", 0.0), ("image_set", "night"), ("scene", "drop"), ("next_image", None),
        ("next_mode", None)]
    assert {e.source for e in events} == {"osc"} and type(events[1].value) is float
    assert type(events[3].value) is int and osc.bad == 0


def test_every_control_of_the_catalog_has_its_address(listening):
    bus, osc, client = listening
    example = {"s": "magellan", "f": 0.5, "i": 1, "": []}
    for name, control in CONTROLS.items():
        client.send_message(f"/flowvj/{name}", example[control.kind])
    wait_for(lambda: osc.received == len(CONTROLS))
    assert [e.name for e in bus.drain()] == list(CONTROLS) and osc.bad == 0


def test_bad_messages_are_dropped_counted_and_warned_once(listening, osc_warnings):
    bus, osc, client = listening
    bad = [("/flowvj/nope", 1.0), ("/flowvj/speed", "fast"), ("/flowvj/speed", 9.0),
           ("/flowvj/speed", [1.0, 2.0]), ("/flowvj/mode", "sideways"), ("/flowvj/mode", []),
           ("/flowvj/blackout", 0.5), ("/flowvj/brightness", float("nan")), ("/flowvj/next_image", "x"),
           ("/other/speed", 1.0)]
    for address, value in bad:
        client.send_message(address, value)
    client._sock.sendto(b"\x00\x01 not osc at all", ("127.0.0.1", osc.port))
    wait_for(lambda: osc.bad == len(bad) + 1)
    client.send_message("/flowvj/speed", 1.5)          # and the show goes on
    wait_for(lambda: osc.posted == 1)
    assert [(e.name, e.value) for e in bus.drain()] == [("speed", 1.5)]
    assert len(osc_warnings) == 1 and "/flowvj/nope" in osc_warnings[0], osc_warnings
    osc.close()
    assert len(osc_warnings) == 2 and "ignored 10 more bad messages" in osc_warnings[1], osc_warnings


def test_a_flood_of_junk_is_summarised_every_few_seconds_not_per_message(osc_warnings):
    with OscInput(ControlBus(), port=0, warn_every_s=1.0) as osc:
        client = SimpleUDPClient("127.0.0.1", osc.port)
        for _ in range(200):
            client.send_message("/flowvj/speed", -1.0)
        wait_for(lambda: osc.bad == 200)
        assert len(osc_warnings) == 1
        wait_for(lambda: len(osc_warnings) == 2)    # the first at once, the summary a second later
        assert "ignored 199 more bad messages" in osc_warnings[1]
        assert "speed expects a number in 0..4" in osc_warnings[1]
    assert len(osc_warnings) == 2


def test_controls_keep_their_order_and_a_bundle_applies_at_once(listening):
    bus, osc, client = listening
    for i in range(100):
        client.send_message("/flowvj/speed", i / 32)   # exact in OSC's float32
    bundle = OscBundleBuilder(time.time() + 3600)     # a timetag an hour ahead: applied now anyway
    for address, value in (("/flowvj/mode", "weighted"), ("/flowvj/freeze", 1)):
        message = OscMessageBuilder(address)
        message.add_arg(value)
        bundle.add_content(message.build())
    client.send(bundle.build())
    wait_for(lambda: osc.posted == 102)
    events = bus.drain()
    assert [e.value for e in events[:100]] == [i / 32 for i in range(100)]
    assert [(e.name, e.value) for e in events[100:]] == [("mode", "weighted"), ("freeze", 1)]


def test_a_port_in_use_or_a_host_not_here_is_a_user_error_naming_the_flag():
    taken = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    taken.bind(("127.0.0.1", 0))
    port = taken.getsockname()[1]
    with pytest.raises(UserError, match=f"--osc-port {port}: UDP port {port} on 127.0.0.1 is in use"):
        OscInput(ControlBus(), port=port)
    taken.close()
    for host in ("no-such-host.invalid", "192.0.2.1"):
        with pytest.raises(UserError, match=f"--osc-host {host}: cannot listen there"):
            OscInput(ControlBus(), host=host, port=0)


def test_the_flags_values_are_checked():
    assert parse_port("0") == 0 and parse_port("9000") == 9000
    assert parse_target("127.0.0.1:9000") == ("127.0.0.1", 9000)
    assert parse_target("[::1]:57120") == ("::1", 57120)
    assert parse_target("mixer.local:8000") == ("mixer.local", 8000)
    for text in ("70000", "-1", "x"):
        with pytest.raises(ValueError, match="UDP port 0..65535"):
            parse_port(text)
    for text in ("nonsense", "host:", ":9000", "host:0", "host:70000", "::1:9000"):
        with pytest.raises(ValueError, match="expected HOST:PORT"):
            parse_target(text)


# -- out ---------------------------------------------------------------------------------------

def meters(**changes):
    """A frame's meters as the live loop gives them (engine.LiveLoop._meters' keys)."""
    base = {"fps": 60.0, "frame_ms": 16.7, "tempo_bpm": None, "rms": 0.25, "bands": [0.1, 0.2, 0.3, 0.4],
            "gen_size": "32x18", "mode": "explore", "beat": False, "image_set": "demo", "brightness": 1.0,
            "blackout": False, "frozen": False, "notice": "", "notice_id": 0}
    return dict(base, **changes)


def test_telemetry_sends_beats_tempo_levels_fps_and_state(receiver):
    with OscTelemetry("127.0.0.1", receiver.port) as sink:
        sink.show(None, meters())
        sink.show(None, meters(beat=True, tempo_bpm=127.9))
        sink.show(None, meters(tempo_bpm=127.92))                 # within 0.05 BPM: not sent
        sink.show(None, meters(beat=True, tempo_bpm=128.0, mode="magellan"))
        wait_for(lambda: len(receiver.of("/flowvj/state")) == 2)
    assert receiver.of("/flowvj/beat") == [(1,), (2,)]
    assert [round(bpm, 2) for bpm, in receiver.of("/flowvj/tempo")] == [0.0, 127.9, 128.0]
    assert receiver.of("/flowvj/state") == [("explore", "", "demo"), ("magellan", "", "demo")]
    assert receiver.of("/flowvj/fps") == [(60.0,)]                # once a second
    levels = receiver.of("/flowvj/levels")[0]
    assert [round(v, 3) for v in levels] == [0.25, 0.1, 0.2, 0.3, 0.4]
    assert sink.errors == 0


def test_telemetry_levels_are_at_most_thirty_a_second_and_fps_once(receiver):
    sink = OscTelemetry("127.0.0.1", receiver.port)
    started = time.monotonic()
    while time.monotonic() - started < 1.0:
        sink.show(None, meters())
        time.sleep(0.002)          # up to ~400 frames a second (fewer on a busy machine)
    elapsed = time.monotonic() - started
    sink.close()
    wait_for(lambda: len(receiver.of("/flowvj/levels")) >= 5)
    time.sleep(0.1)
    assert len(receiver.of("/flowvj/levels")) <= 30 * elapsed + 1
    assert len(receiver.of("/flowvj/fps")) == 1 and len(receiver.of("/flowvj/tempo")) == 1


def test_telemetry_to_nobody_or_from_bad_meters_never_raises(osc_warnings):
    nobody = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    nobody.bind(("127.0.0.1", 0))
    port = nobody.getsockname()[1]
    nobody.close()                 # nothing listens there now
    with OscTelemetry("127.0.0.1", port) as sink:
        sink.show(None, meters(beat=True, bands="not numbers"))
        for _ in range(100):
            sink.show(None, meters(beat=True))
        assert sink.beats == 101 and sink.errors == 1
    assert len([line for line in osc_warnings if "telemetry" in line]) == 1


def test_an_unknown_telemetry_host_is_a_user_error_naming_the_flag():
    with pytest.raises(UserError, match="--osc-send no-such-host.invalid:9000: cannot look up"):
        OscTelemetry("no-such-host.invalid", 9000)


# -- the command -------------------------------------------------------------------------------

def test_osc_addresses_lists_every_control_and_the_telemetry(run_flowvj):
    result = run_flowvj("osc-addresses", "--json", timeout=60)
    assert result.returncode == 0, result.stderr
    listing = json.loads(result.stdout)
    assert listing == addresses()
    assert [c["address"] for c in listing["controls"]] == [f"/flowvj/{name}" for name in CONTROLS]
    speed = next(c for c in listing["controls"] if c["address"] == "/flowvj/speed")
    assert (speed["type"], speed["low"], speed["high"]) == ("f", 0.0, 4.0)
    assert [t["address"] for t in listing["telemetry"]] == [
        "/flowvj/beat", "/flowvj/tempo", "/flowvj/levels", "/flowvj/fps", "/flowvj/state"]
    text = run_flowvj("osc-addresses", timeout=60).stdout
    assert "/flowvj/mode" in text and "weighted | magellan | explore" in text and "/flowvj/state" in text


@pytest.mark.parametrize("args, needles", [
    (("--osc-port", "70000"), ("--osc-port", "0..65535")),
    (("--osc-send", "nonsense"), ("--osc-send", "HOST:PORT")),
    (("--osc-send", "no-such-host.invalid:9000"), ("--osc-send", "cannot look up")),
    (("--osc-port", "0", "--osc-host", "192.0.2.1"), ("--osc-host", "cannot listen")),
])
def test_bad_osc_flags_are_one_line_before_the_model_loads(run_flowvj, args, needles):
    result = run_flowvj("play", "--silent", *args, timeout=60)
    one_line_error(result, *needles)
    assert "drawing at" not in result.stdout


def test_play_takes_osc_controls_and_sends_telemetry(subprocess_env, receiver, tmp_path):
    track, stats_path = tmp_path / "t.wav", tmp_path / "s.json"
    write_track(track, synth_track(bpm=128, duration_s=10, seed=0))
    env = dict(subprocess_env, SDL_VIDEODRIVER="dummy", SDL_RENDER_DRIVER="software")
    show = subprocess.Popen([str(FLOWVJ), "play", track, "--silent", "--duration", "8", "--gen-size", "64x36",
                             "--osc-port", "0", "--osc-send", f"127.0.0.1:{receiver.port}", "--stats", stats_path],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        port, printed = read_osc_port(show)
        assert port, "".join(printed) + show.stderr.read()
        wait_for(lambda: receiver.of("/flowvj/state"), timeout_s=60)   # the loop is running
        client = SimpleUDPClient("127.0.0.1", port)
        client.send_message("/flowvj/mode", "magellan")
        client.send_message("/flowvj/speed", 2.0)
        client.send_message("/flowvj/speed", "fast")
        client.send_message("/flowvj/warp", 1.0)
        client._sock.sendto(b"junk", ("127.0.0.1", port))
        out, err = show.communicate(timeout=120)
    finally:
        show.kill()
    assert show.returncode == 0, err[-3000:]
    stats = json.loads(stats_path.read_text())
    assert stats["mode"] == "magellan", stats
    assert ("magellan", "", "demo") in receiver.of("/flowvj/state"), receiver.of("/flowvj/state")
    assert receiver.of("/flowvj/fps") and receiver.of("/flowvj/levels") and receiver.of("/flowvj/tempo")
    assert receiver.of("/flowvj/beat")[:3] == [(1,), (2,), (3,)]
    assert "mode: magellan" in err and "speed: 2.00x" in err, err
    warnings = [line for line in err.splitlines() if "OSC: ignored" in line]
    assert 1 <= len(warnings) <= 2, err
    assert "Traceback" not in err
