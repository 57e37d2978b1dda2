"""The DJ's clock: MIDI clock (24 ticks a beat; start, stop, continue, song position) and Ableton
Link give the show its tempo and beats, the beat is reported at now + latency, and a quantised
change lands on the bar line. Link runs inside a private network namespace (`unshare -n`, only
loopback with a multicast route), so no Link traffic leaves the machine; the MIDI clock runs
over a private JACK server (tests/jack.py). Timing figures are benchmarks/control/clock_sync.py's."""

import json
import subprocess
import sys
import time
from pathlib import Path

import mido
import pytest
import torch

from conftest import FLOWVJ, REPO
from flowvj.audio.sources import FileSource, SilentPlayback
from flowvj.audio.synth import synth_track, write_track
from flowvj.control.clock import FirstClock, MidiClock
from flowvj.images import load_show_images
from flowvj.show.live.loop import LiveLoop
from flowvj.show.pipeline import Show
from flowvj.flow import RealNVP
from jack import jack  # noqa: F401  (fixture)
from test_bad_input import one_line_error
from test_pipeline import image_files  # noqa: F401  (fixture)
from test_flow import perturbed

PEER = REPO / "tests" / "link_peer.py"
NAMESPACE_SETUP = "ip link set lo up && ip link set lo multicast on && ip route add 224.0.0.0/4 dev lo"


def fed(clock, bpm, beats, t0=100.0, start=True, jitter_s=0.0):
    """Feed `clock` Start and the ticks of `beats` beats at `bpm` from t0; returns the last tick's time."""
    if start:
        clock.feed(mido.Message("start"), t0)
    period = 60.0 / bpm / 24
    for k in range(round(beats * 24)):
        clock.feed(mido.Message("clock"), t0 + k * period + (jitter_s if k % 2 else 0.0))
    return t0 + (round(beats * 24) - 1) * period


# -- MIDI clock ---------------------------------------------------------------------------------

def test_midi_clock_tempo_is_fitted_through_jittery_ticks():
    clock = MidiClock()
    last = fed(clock, 124.0, 4, jitter_s=0.003)        # every other tick 3 ms late: one JACK period's worth
    tempo, position = clock.state(last)
    assert tempo == pytest.approx(124.0, abs=0.2)
    assert position == pytest.approx(4 - 1 / 24, abs=0.01)


def test_midi_clock_counts_beats_from_start_and_reports_them_latency_ahead():
    clock, ahead = MidiClock(), MidiClock(latency_s=0.1)
    for c in (clock, ahead):
        last = fed(c, 120.0, 2)
    assert clock.state(last)[1] == pytest.approx(2 - 1 / 24)
    assert ahead.state(last)[1] == pytest.approx(2 - 1 / 24 + 0.2)    # 100 ms at 2 beats a second
    clock.feed(mido.Message("start"), last + 1.0)     # the DJ restarts: beat 0 again
    assert clock.state(last + 1.0) is None           # no tick yet since
    last = fed(clock, 120.0, 1, t0=last + 1.0, start=False)
    assert clock.state(last)[1] == pytest.approx(1 - 1 / 24)


def test_midi_clock_is_absent_when_stopped_or_silent_and_continues_from_song_position():
    clock = MidiClock(timeout_s=1.0)
    last = fed(clock, 120.0, 2)
    assert clock.state(last + 0.9) is not None
    assert clock.state(last + 1.1) is None                     # no tick for over a second
    clock.feed(mido.Message("stop"), last + 0.1)
    assert clock.state(last + 0.2) is None
    clock.feed(mido.Message("songpos", pos=16), last + 0.3)    # 16 sixteenths = beat 4
    clock.feed(mido.Message("continue"), last + 0.4)
    last = fed(clock, 120.0, 1, t0=last + 0.5, start=False)
    assert clock.state(last)[1] == pytest.approx(4 + 1 - 1 / 24)


def test_a_midi_clock_without_start_counts_from_its_first_tick():
    clock = MidiClock()
    last = fed(clock, 128.0, 1, start=False)
    tempo, position = clock.state(last)
    assert tempo == pytest.approx(128.0) and position == pytest.approx(1 - 1 / 24)


def test_the_first_present_clock_leads():
    class Absent:
        def state(self, now_s):
            return None

    midi = MidiClock()
    last = fed(midi, 120.0, 1)
    assert FirstClock([Absent(), midi]).state(last) == midi.state(last)
    assert FirstClock([Absent()]).state(last) is None


# -- a quantised change on a real MIDI clock ---------------------------------------------------

DJ_CLOCK = r"""
import sys, time
import mido
bpm, beats = float(sys.argv[1]), int(sys.argv[2])
out = mido.Backend("mido.backends.rtmidi/UNIX_JACK").open_output("clock", virtual=True, client_name="dj")
print("ready", flush=True)
sys.stdin.readline()
period = 60.0 / bpm / 24
t0 = time.perf_counter() + 0.1
print(f"{t0:.9f}", flush=True)
out.send(mido.Message("start"))
for k in range(beats * 24):
    due = t0 + k * period
    while (left := due - time.perf_counter()) > 0.001:
        time.sleep(left - 0.001)
    while time.perf_counter() < due:
        pass
    out.send(mido.Message("clock"))
"""


@pytest.fixture(scope="module")
def show_parts(image_files, tmp_path_factory):  # noqa: F811
    torch.manual_seed(0)
    model = perturbed(RealNVP.from_preset("tiny"))
    track = tmp_path_factory.mktemp("clock") / "t.wav"
    write_track(track, synth_track(bpm=128, duration_s=30.0, seed=4))
    return model, load_show_images(image_files, 32), track


class ReadClock:
    """The clock as the live loop reads it, each read's time kept (one read a frame)."""

    def __init__(self, clock):
        self.clock, self.reads = clock, []

    def state(self, now_s):
        self.reads.append(now_s)
        return self.clock.state(now_s)


class BarWatcher:
    """An output that asks for a mode change in the second bar and notes each frame's mode."""

    def __init__(self, clock):
        self.clock, self.loop = clock, None
        self.frames, self.posted_at, self.applied_at = [], None, None

    def show(self, frame, meters):
        now = time.perf_counter()
        state = self.clock.state(now)
        self.frames.append((now, meters["mode"], meters["tempo_bpm"]))
        if state is not None and self.posted_at is None and 5.0 < state[1] < 7.0:   # mid bar 2
            self.loop.bus.post("mode", "weighted", source="test")
            self.posted_at = state[1]
        if self.applied_at is not None and now - self.applied_at > 0.3:
            self.loop.bus.post("quit")

    def control_applied(self, name, value, caption):
        if name == "mode":
            self.applied_at = time.perf_counter()


def test_a_quantised_change_lands_within_one_frame_of_the_midi_clocks_bar_line(show_parts, jack):  # noqa: F811
    model, images, track = show_parts
    bpm, beat_s = 120.0, 0.5
    sender = subprocess.Popen([sys.executable, "-c", DJ_CLOCK, str(bpm), "24"], env=jack.env,
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert sender.stdout.readline().strip() == "ready"
        clock = MidiClock.open("dj:clock")
        watcher = BarWatcher(clock)
        with SilentPlayback(FileSource(track)) as source:
            reads = ReadClock(clock)
            watcher.loop = LiveLoop(Show(model, images, mode="explore"), source, [watcher], fps=30,
                                    clock=reads, quantum=4)
            time.sleep(0.2)
            sender.stdin.write("go\n")
            sender.stdin.flush()
            t0 = float(sender.stdout.readline())
            watcher.loop.run(duration_s=15)
        clock.close()
    finally:
        sender.kill()
        sender.wait(10)
    assert watcher.posted_at is not None and watcher.applied_at is not None, watcher.frames[-3:]
    bar_line = t0 + 8 * beat_s                           # beat 8: the bar after the one posted in
    *_, previous, applying = [t for t in reads.reads if t <= watcher.applied_at]
    # Applied in the first frame that read the clock past the bar line: the frame before read
    # it before (the clock hears the ticks up to one JACK period late: 6 ms of slack), this one
    # after, so the change lands within one frame of the bar line.
    assert previous - 0.006 <= bar_line <= applying + 0.001, (previous - bar_line, applying - bar_line)
    assert applying - bar_line <= applying - previous + 0.006
    assert all(mode == "explore" for t, mode, _ in watcher.frames if t < bar_line)
    assert watcher.frames[-1][1] == "weighted"
    assert watcher.frames[-1][2] == pytest.approx(bpm, abs=0.5)          # the clock's tempo in the meters


def test_play_follows_a_midi_clock(show_parts, jack, subprocess_env, tmp_path):  # noqa: F811
    _, _, track = show_parts
    stats = tmp_path / "s.json"
    sender = subprocess.Popen([sys.executable, "-c", DJ_CLOCK, "120", "60"], env=jack.env,
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    env = dict(subprocess_env, JACK_DEFAULT_SERVER=jack.name, JACK_NO_START_SERVER="1",
               SDL_VIDEODRIVER="dummy", SDL_RENDER_DRIVER="software")
    try:
        assert sender.stdout.readline().strip() == "ready"
        show = subprocess.Popen([str(FLOWVJ), "play", track, "--silent", "--duration", "5", "--gen-size", "64x36",
                                 "--midi-clock", "dj:clock", "--latency-ms", "20", "--stats", stats],
                                env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            line = show.stdout.readline()
            while line and not line.startswith("MIDI clock: from dj:clock"):
                line = show.stdout.readline()
            assert line, show.stderr.read()[-3000:]
            sender.stdin.write("go\n")
            sender.stdin.flush()
            _, err = show.communicate(timeout=120)
        finally:
            show.kill()
    finally:
        sender.kill()
        sender.wait(10)
    assert show.returncode == 0, err[-3000:]
    # not the track's 128; 1 BPM: under a loaded machine the clock's tick timing read 120.7 once
    assert json.loads(stats.read_text())["tempo_bpm"] == pytest.approx(120.0, abs=1.0)


def test_an_unknown_midi_clock_port_is_one_line(run_flowvj):
    one_line_error(run_flowvj("play", "--silent", "--midi-clock", "CDJ-3000", timeout=60),
                   "--midi-clock CDJ-3000: no MIDI input port matches")


# -- Ableton Link --------------------------------------------------------------------------------

CLOCK_PROCESS = r"""
import json, sys, time
from flowvj.control.clock import LinkClock
clock = LinkClock(quantum=4)
deadline = time.perf_counter() + 10
while clock.state(time.perf_counter()) is None and time.perf_counter() < deadline:
    time.sleep(0.01)
samples, ahead = [], []
for _ in range(200):
    now = time.perf_counter()
    state = clock.state(now)
    if state is not None:
        samples.append((now, *state))
        clock.latency_s = 0.1
        ahead.append(clock.state(now)[1] - state[1])
        clock.latency_s = 0.0
    time.sleep(0.01)
clock.close()
print(json.dumps(ahead))
print(json.dumps(samples))
"""


def in_namespace(script, timeout_s=90, env=None):
    """Run a shell script inside a private network namespace (loopback only); fails, never
    skips, where unshare is refused (it needs root or user namespaces)."""
    result = subprocess.run(["unshare", "-n", "sh", "-c", f"{NAMESPACE_SETUP} && {script}"], capture_output=True,
                            text=True, timeout=timeout_s, env=env)
    if "unshare failed" in result.stderr or "Operation not permitted" in result.stderr:
        pytest.fail(f"cannot make a private network namespace for Link: {result.stderr.strip()}")
    return result


def peer_first(bpm, seconds, out):
    """Shell: start the Link peer (lines to `out`), wait until it has enabled Link, then one
    second more, so its session is there first; exit 3 if it never comes up. Both waits are
    needed: a fixed `sleep 1` alone lost when the peer's Python was slow to start, and `ready`
    alone lost about half the time (CI, 2026-12-05), since Link takes sessions begun within
    0.5 s of each other as simultaneous and keeps the one with the lower random id."""
    return (f"{sys.executable} {PEER} {bpm} {seconds} > {out} & P=$!; i=0; "
            f"until grep -q ready {out}; do sleep 0.05; i=$((i+1)); [ $i -gt 600 ] && {{ kill $P; exit 3; }}; done; "
            "sleep 1")


def test_a_link_clock_takes_the_sessions_tempo_and_phase_from_the_peer_there_first(tmp_path):
    peer_out = tmp_path / "peer.txt"
    result = in_namespace(f"{peer_first(124, 30, peer_out)}; {sys.executable} -c '{CLOCK_PROCESS}'; kill $P")
    assert result.returncode == 0, result.stderr[-3000:]
    samples, ahead = json.loads(result.stdout.splitlines()[-1]), json.loads(result.stdout.splitlines()[-2])
    assert ahead and all(difference == pytest.approx(0.1 * 124 / 60, abs=1e-3) for difference in ahead)
    peer_lines = [line.split() for line in peer_out.read_text().splitlines()[1:-1]]     # past "ready"
    peer_t = [float(p[0]) for p in peer_lines if int(p[3])]
    peer_beat = [float(p[1]) for p in peer_lines if int(p[3])]
    assert len(samples) > 100 and len(peer_t) > 100
    assert {round(tempo, 1) for _, tempo, _ in samples} == {124.0}
    errors = []
    for now, _, position in samples:
        later = next((i for i, t in enumerate(peer_t) if t > now), None)
        if later:
            a = later - 1
            theirs = peer_beat[a] + (peer_beat[later] - peer_beat[a]) * (now - peer_t[a]) / (peer_t[later] - peer_t[a])
            errors.append(abs((position - theirs + 2) % 4 - 2) * 60 / 124 * 1000)
    assert sorted(errors)[len(errors) // 2] < 5.0, sorted(errors)[len(errors) // 2]


def test_play_follows_a_link_session_at_its_tempo(tmp_path, subprocess_env):
    track, stats = tmp_path / "t.wav", tmp_path / "s.json"
    write_track(track, synth_track(bpm=128, duration_s=20, seed=0))
    show = f"{FLOWVJ} play {track} --silent --duration 6 --gen-size 64x36 --link --stats {stats}"
    env = dict(subprocess_env, SDL_VIDEODRIVER="dummy", SDL_RENDER_DRIVER="software")
    result = in_namespace(f"{peer_first(124, 120, tmp_path / 'peer.txt')}; {show}; R=$?; kill $P; exit $R",
                          timeout_s=180, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Link: on (quantum 4)" in result.stdout
    assert json.loads(stats.read_text())["tempo_bpm"] == pytest.approx(124.0, abs=0.05)   # not the track's 128


def test_a_quantum_of_zero_is_one_line(run_flowvj):
    one_line_error(run_flowvj("play", "--silent", "--link", "--quantum", "0", timeout=60),
                   "--quantum", "expected a positive number")
