"""NDI output (issue 14): `--ndi NAME` sends the show as an NDI source; without the optional
(non-free) extra it is one line saying how to install it.

The sending tests use the real NDI runtime (ndi-python, in the test extra: NOT FREE SOFTWARE, see
pyproject.toml) and a real receiver, each run inside a private network namespace (`unshare
--map-root-user --net`, loopback only), so nothing reaches the machine's network. The receiver
finds the source by unicast on 127.0.0.1 (NDI's `extra_ips`), not by mDNS: on Linux libndi
announces through avahi-daemon over D-Bus, and there is no daemon in the namespace.
"""

import json
import subprocess
import sys

import numpy as np
import pytest

from conftest import FLOWVJ
from flowvj.audio.synth import synth_track, write_track
from flowvj.errors import UserError
from flowvj.outputs.ndi import INSTALL, frame_rate_fraction, load_ndi, rgbx_frame
from flowvj.upscale import upscale
from test_bad_input import one_line_error

# Run by the tests' python inside the namespace: find NAME, receive up to N video frames (fewer
# if the show ends first), print [[xres, yres, frame_rate_N, frame_rate_D, mean R, mean G, mean B], ...] as JSON.
RECEIVER = r'''
import json, sys, time
import NDIlib as ndi

name, count, find_s = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
assert ndi.initialize()
settings = ndi.FindCreate()
settings.extra_ips = "127.0.0.1"
finder = ndi.find_create_v2(settings)
source, deadline = None, time.monotonic() + find_s
while source is None:
    if time.monotonic() > deadline:
        sys.exit(f"no NDI source named {name!r} within {find_s} s")
    ndi.find_wait_for_sources(finder, 250)
    source = next((s for s in ndi.find_get_current_sources(finder) if s.ndi_name.endswith(f"({name})")), None)
create = ndi.RecvCreateV3()
create.color_format = ndi.RECV_COLOR_FORMAT_RGBX_RGBA
receiver = ndi.recv_create_v3(create)
ndi.recv_connect(receiver, source)
frames, deadline = [], time.monotonic() + find_s  # the first frame waits for the model to load
while len(frames) < count and time.monotonic() < deadline:
    kind, video, _, _ = ndi.recv_capture_v2(receiver, 500)
    if kind == ndi.FRAME_TYPE_VIDEO:
        deadline = time.monotonic() + 3.0  # then a 3 s gap means the show has ended
        means = video.data[..., :3].reshape(-1, 3).mean(axis=0)
        frames.append([video.xres, video.yres, video.frame_rate_N, video.frame_rate_D, *map(float, means)])
        ndi.recv_free_video_v2(receiver, video)
print(json.dumps(frames))
'''

# Run inside the namespace too: an NdiOutput at SIZE and FPS, SHOWS frames shown at FPS (a new
# grey level each), a receiver in a thread; prints how long show() took and what arrived.
SENDER = r'''
import json, sys, threading, time
import numpy as np
import NDIlib as ndi
from flowvj.outputs.ndi import NdiOutput

width, height, fps, shows = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4])
output = NdiOutput("flowvj-unit", size=(width, height), fps=fps)
settings = ndi.FindCreate()
settings.extra_ips = "127.0.0.1"
finder = ndi.find_create_v2(settings)
source = None
while source is None:
    ndi.find_wait_for_sources(finder, 250)
    source = next((s for s in ndi.find_get_current_sources(finder) if s.ndi_name.endswith("(flowvj-unit)")), None)
create = ndi.RecvCreateV3()
create.color_format = ndi.RECV_COLOR_FORMAT_RGBX_RGBA
receiver = ndi.recv_create_v3(create)
ndi.recv_connect(receiver, source)
while output.connections() == 0:
    time.sleep(0.01)
received, stop = [], threading.Event()
def receive():
    while not stop.is_set():
        kind, video, _, _ = ndi.recv_capture_v2(receiver, 100)
        if kind == ndi.FRAME_TYPE_VIDEO:
            received.append([video.xres, video.yres, video.frame_rate_N, video.frame_rate_D,
                             float(video.data[..., :3].mean())])
            ndi.recv_free_video_v2(receiver, video)
thread = threading.Thread(target=receive)
thread.start()
show_ms = []
for i in range(shows):
    frame = np.full((72, 128, 3), 40 + i % 180, np.uint8)
    start = time.perf_counter()
    output.show(frame, {})
    show_ms.append(1e3 * (time.perf_counter() - start))
    time.sleep(1 / fps)
time.sleep(1.0)
output.close()
stop.set()
thread.join()
print(json.dumps(dict(show_ms=show_ms, received=received, sent=output.sent, dropped=output.dropped,
                      unwatched=output.unwatched)))
'''


def in_private_network(script, env=None, timeout=300):
    """Run the sh `script` in a new network namespace with only loopback up; CompletedProcess."""
    return subprocess.run(["unshare", "--map-root-user", "--net", "sh", "-ec", "ip link set lo up\n" + script],
                          capture_output=True, text=True, env=env, timeout=timeout)


def run_sender(tmp_path, size, fps, shows):
    (tmp_path / "send.py").write_text(SENDER)
    result = in_private_network(f"{sys.executable} {tmp_path / 'send.py'} {size[0]} {size[1]} {fps} {shows}")
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.splitlines()[-1])


@pytest.fixture
def fake_ndilib(tmp_path, monkeypatch):
    """fake_ndilib(source): an `NDIlib` module with that source code, found before the real one."""
    def install(source):
        (tmp_path / "fake").mkdir(exist_ok=True)
        (tmp_path / "fake" / "NDIlib.py").write_text(source)
        monkeypatch.syspath_prepend(str(tmp_path / "fake"))
        monkeypatch.delitem(sys.modules, "NDIlib", raising=False)
        return tmp_path / "fake"
    return install


def test_without_the_extra_ndi_is_one_line_saying_how_to_install_it(run_flowvj, fake_ndilib, subprocess_env,
                                                                    monkeypatch):
    # What Python raises when ndi-python is not installed, whichever packages this checkout has.
    fake = fake_ndilib('raise ModuleNotFoundError("No module named \'NDIlib\'", name="NDIlib")\n')
    monkeypatch.setitem(subprocess_env, "PYTHONPATH", str(fake))
    result = run_flowvj("play", "--silent", "--duration", "1", "--ndi", "flowvj-test", timeout=120)
    one_line_error(result, "--ndi", "pip install 'flowvj[ndi]'", "not free software")
    assert "drawing at" not in result.stdout  # said before the model loads


def test_a_runtime_that_does_not_load_names_the_missing_system_library(fake_ndilib):
    fake_ndilib('raise ImportError("libavahi-common.so.3: cannot open shared object file")\n')
    with pytest.raises(UserError, match=r"libavahi-common\.so\.3.*apt install libavahi-client3"):
        load_ndi()


def test_the_install_line_names_the_extra_and_the_licence():
    assert "pip install 'flowvj[ndi]'" in INSTALL and "not free software" in INSTALL


@pytest.mark.parametrize("fps, fraction", [(60, (60, 1)), (30.0, (30, 1)), (25, (25, 1)), (12.5, (25, 2)),
                                           (29.97, (30000, 1001)), (59.94, (60000, 1001)),
                                           (23.976, (24000, 1001))])
def test_the_frame_rate_is_sent_as_ndis_fraction(fps, fraction):
    assert frame_rate_fraction(fps) == fraction


def test_ndi_frames_are_framed_and_filtered_exactly_as_the_video():
    frame = np.random.default_rng(0).integers(0, 256, (72, 128, 3), np.uint8)
    for size in ((1280, 720), (640, 640), (333, 111)):
        rgbx = rgbx_frame(frame, size)
        assert rgbx.shape == (size[1], size[0], 4)
        np.testing.assert_array_equal(rgbx[..., :3], upscale(frame, size))
    np.testing.assert_array_equal(rgbx_frame(frame, (128, 72))[..., :3], frame)  # own size: unscaled


def test_a_receiver_gets_1280x720_frames_at_the_shows_frame_rate_and_show_never_waits(tmp_path):
    report = run_sender(tmp_path, (1280, 720), 29.97, 90)
    frames = report["received"]
    assert len(frames) >= 30, report
    assert {tuple(f[:4]) for f in frames} == {(1280, 720, 30000, 1001)}
    means = [f[4] for f in frames]
    assert len(set(np.round(means))) >= 20, means  # the grey levels shown, not one frame repeated
    assert report["sent"] + report["dropped"] + report["unwatched"] == 90, report
    assert np.median(report["show_ms"]) < 1.0, report["show_ms"]


def test_a_sender_slower_than_the_frame_rate_drops_frames_instead_of_delaying_show(tmp_path):
    # 4K: the upscale and the send alone take longer than a 60 fps frame here.
    report = run_sender(tmp_path, (3840, 2160), 60, 120)
    assert report["dropped"] > 0 and report["sent"] > 0, {k: v for k, v in report.items() if k != "show_ms"}
    assert report["sent"] + report["dropped"] + report["unwatched"] == 120
    assert np.median(report["show_ms"]) < 1.0 and max(report["show_ms"]) < 50, report["show_ms"]
    assert {tuple(f[:2]) for f in report["received"]} == {(3840, 2160)}


def test_flowvj_play_ndi_is_received_at_ndi_size_and_moves(subprocess_env, tmp_path):
    """The real CLI and a receiver in one namespace: the receiver waits for the source (announced
    before the model loads), takes up to 60 frames, and the show's 8 s ends on its own."""
    track, frames_path, errors_path = tmp_path / "t.wav", tmp_path / "frames.json", tmp_path / "receive.err"
    write_track(track, synth_track(bpm=128, duration_s=10, seed=0))
    (tmp_path / "receive.py").write_text(RECEIVER)
    env = dict(subprocess_env, SDL_VIDEODRIVER="dummy", SDL_RENDER_DRIVER="software")
    result = in_private_network(
        f"{sys.executable} {tmp_path / 'receive.py'} flowvj-test 60 150 > {frames_path} 2> {errors_path} &\n"
        f"{FLOWVJ} play {track} --silent --duration 8 --gen-size 64x36 --fps 30 "
        f"--ndi flowvj-test --ndi-size 320x180\n"
        "wait $!\n", env=env)
    assert result.returncode == 0, result.stderr[-3000:] + errors_path.read_text()
    assert "NDI: sending 320x180 as '" in result.stdout and "(flowvj-test)'" in result.stdout, result.stdout
    frames = json.loads(frames_path.read_text())
    assert len(frames) >= 30, (frames, errors_path.read_text())
    assert {tuple(f[:4]) for f in frames} == {(320, 180, 30, 1)}
    colours = np.array([f[4:] for f in frames])
    assert np.ptp(colours, axis=0).max() > 1.0, colours  # the picture moves: not one frame sent over
    assert "Traceback" not in result.stderr
